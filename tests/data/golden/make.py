"""Write the golden bitstreams of test_golden.py: files of the embedded models with their expected ŷ.

    python tests/data/golden/make.py

Run after embedding new weights (the test fails, naming this script, while the golden files are
of other weights), on the machine that embeds them: every other machine must then decode these
files to the same ŷ (sha256) and, within ±1 level per pixel, the same image (PSNR to 0.01 dB).
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
PHOTOS24 = HERE.parents[2].parent / "shared/data/photos24"

from shallowcodec import container, images  # noqa: E402
from shallowcodec.codec import Codec  # noqa: E402
from shallowcodec.decoder import embedded_decoder  # noqa: E402
from shallowcodec.metrics import psnr_of_mse  # noqa: E402
from shallowcodec.model_files import embedded_models  # noqa: E402
from shallowcodec.train import cpu_has_native_bf16  # noqa: E402
from shallowcodec.zoo import load_embedded  # noqa: E402

#: Fractional qualities interpolate the gains; q0 and q6 are the ends.
QUALITIES = (0.0, 3.5, 6.0)
#: A textured crop (symbols far from μ, escapes) and a smooth one: (name, top, left, height, width).
CROPS = (("eval10_Sea-of-Lanterns.png", 200, 300, 96, 112), ("eval01_kodim23.png", 128, 192, 64, 80))


def crop(name: str, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """(3, height, width) uint8 crop of a photos24 image."""
    return images.read_image(PHOTOS24 / name)[0][:, top : top + height, left : left + width].contiguous()


def psnr(decoded: np.ndarray, x: torch.Tensor) -> float:
    """PSNR (dB, peak 255) of decoded (H, W, 3) uint8 pixels against the (3, H, W) uint8 original."""
    diff = decoded.astype(np.float64) - x.permute(1, 2, 0).numpy()
    return float(psnr_of_mse(torch.tensor((diff**2).mean())))


def main() -> None:
    torch.set_num_threads(1)
    expected = {}
    for architecture in sorted(embedded_models()):
        decoder, loaded = embedded_decoder(architecture), load_embedded(architecture)
        for i, spec in enumerate(CROPS):
            x = crop(*spec)
            for q in QUALITIES:
                data = Codec(loaded, q).compress(x)
                name = f"{architecture}-{i}-q{q:g}.sdc"
                (HERE / name).write_bytes(data)
                stream = container.unpack(data)
                y_hat = decoder.decode_latents(stream)
                expected[name] = {"crop": spec, "weights_id": stream.header.weights_id,
                                  "y_hat_sha256": hashlib.sha256(y_hat.tobytes()).hexdigest(),
                                  "psnr": round(psnr(decoder.render(y_hat, q, *x.shape[1:]), x), 4)}
    made_on = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_native_bf16()}
    (HERE / "expected.json").write_text(json.dumps({"made_on": made_on, "files": expected}, indent=1) + "\n")
    print(f"{len(expected)} golden files in {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
