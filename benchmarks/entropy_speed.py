"""Entropy coding speed of y: shallowcodec.entropy_coding (constriction ANS) vs CompressAI's rANS.

    PYTHONPATH=src python benchmarks/entropy_speed.py [--model two-layer] [--repeats 5]

The y latents of a real photo (photos24 eval01, 768×512, and the same photo resized to
1920×1080) through the embedded model at quality 3, with the exact entropy parameters; both
coders code the same symbols (round(y_g − μ_g)) with the same integer tables, one thread.
Prints symbols/s (best of --repeats) of encode and decode for each coder and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

from shallowcodec import entropy_coding
from shallowcodec.codec import mirror_pad
from shallowcodec.images import image_to_tensor
from shallowcodec.zoo import load_embedded

PHOTO = Path(__file__).resolve().parents[2] / "shared/data/photos24/eval01_kodim23.png"


def best_time(fn, repeats: int) -> float:
    """Shortest wall time (s) of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(model, image: Image.Image, repeats: int) -> dict:
    """Symbols/s of both coders on the y of ``image``: {"symbols", "ours", "compressai"}, each (encode, decode)."""
    with torch.no_grad():
        y, z = model.analysis(mirror_pad(image_to_tensor(image)[0][None].float() / 255), 3.0)
        z_hat = model.entropy_bottleneck.decompress(model.entropy_bottleneck.compress(z), z.shape[-2:])
        params = model.entropy_parameters(z_hat, 3.0)
    gc = model.gaussian_conditional
    tables = model.tables("y")
    mu, indexes = torch.from_numpy(params.mu), params.indexes  # the exact parameters are numpy
    index_tensor = torch.from_numpy(indexes.astype("int32"))
    symbols = torch.round(y.double() - mu).int().numpy()
    data = entropy_coding.encode(symbols, indexes, tables)
    assert (entropy_coding.decode(data, indexes, tables) == symbols).all()
    strings = gc.compress(y.double(), index_tensor, means=mu)
    n = symbols.size
    ours = (n / best_time(lambda: entropy_coding.encode(symbols, indexes, tables), repeats),
            n / best_time(lambda: entropy_coding.decode(data, indexes, tables), repeats))
    theirs = (n / best_time(lambda: gc.compress(y.double(), index_tensor, means=mu), repeats),
              n / best_time(lambda: gc.decompress(strings, index_tensor, torch.float64, means=mu), repeats))
    return {"symbols": n, "shape": tuple(y.shape), "ours": ours, "compressai": theirs,
            "bytes": (len(data), len(strings[0]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="two-layer")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_embedded(args.model).model
    photo = Image.open(PHOTO).convert("RGB")
    print(f"{'image':>10} {'symbols':>9} {'direction':>9} {'ours M/s':>9} {'CompressAI M/s':>15} {'ratio':>6} "
          f"{'bytes (ours/CAI)':>17}")
    for label, image in (("768×512", photo), ("1920×1080", photo.resize((1920, 1080), Image.LANCZOS))):
        r = measure(model, image, args.repeats)
        for i, direction in enumerate(("encode", "decode")):
            ours, theirs = r["ours"][i], r["compressai"][i]
            print(f"{label:>10} {r['symbols']:>9} {direction:>9} {ours / 1e6:>9.1f} {theirs / 1e6:>15.1f} "
                  f"{ours / theirs:>6.1f} {r['bytes'][0]:>8}/{r['bytes'][1]}")


if __name__ == "__main__":
    main()
