"""Seconds per SGA iteration at 768×512 and where they go (h_s, g_s, priors, rounding, backward).

    python benchmarks/sga_speed.py [--model two-layer] [--quality Q] [--threads 2] [--steps 20]

Times the full iteration of sga.refine, then each part alone (forward and backward), median of
``--steps`` runs each, on photos24 eval01 (768×512).
"""

import argparse
from pathlib import Path

import torch

from shallowcodec import load, sga
from shallowcodec.bench import median_seconds
from shallowcodec.codec import mirror_pad
from shallowcodec.images import read_image

PHOTO = Path(__file__).resolve().parents[2] / "shared/data/photos24/eval01_kodim23.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="two-layer")
    parser.add_argument("--quality", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--image", type=Path, default=PHOTO)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = load(args.model, args.quality)
    model = codec.loaded.model.requires_grad_(False)
    x8, _ = read_image(args.image)
    size = tuple(x8.shape[-2:])
    x = mirror_pad(x8[None].float() / 255)
    with torch.no_grad():
        y0 = model.g_a(x)
        z0 = model.h_a(y0)
    y, z = y0.clone().requires_grad_(True), z0.clone().requires_grad_(True)
    medians = model.z_medians()
    g = torch.Generator().manual_seed(0)

    def full():
        z_t = medians + sga.sga_round(z - medians, 0.3, g)
        mu, sigma = model.h_s(z_t)
        y_t = mu + sga.sga_round(y - mu, 0.3, g)
        sga.rd_cost(model, x, y_t, z_t, codec.lmbda, size, (mu, sigma))[0].sum().backward()

    def part(fn):
        return lambda: fn().sum().backward()

    y_fixed = y0.detach().round().requires_grad_(True)
    z_fixed = z0.detach().round().requires_grad_(True)
    mu0, sigma0 = (t.detach() for t in model.h_s(z0))
    rows = {
        "full iteration": full,
        "h_s": part(lambda: model.h_s(z_fixed)[1]),
        "g_s": part(lambda: model.g_s(y_fixed)),
        "priors (bits of y and z)": part(lambda: model.y_bits(y_fixed, mu0, sigma0) + model.z_bits(z_fixed)),
        "SGA rounding (y and z)": part(lambda: sga.sga_round(y_fixed, 0.3, g).sum() + sga.sga_round(z_fixed, 0.3, g).sum()),
    }
    print(f"{args.model} q{codec.quality}, {size[1]}×{size[0]}, {args.threads} threads, median of {args.steps}")
    results = {name: median_seconds(fn, args.steps) for name, fn in rows.items()}
    for name, seconds in results.items():
        print(f"  {name:26s} {seconds * 1000:8.1f} ms (forward + backward)")
    per_image = 3000 * results["full iteration"]
    print(f"3000 iterations: {per_image / 60:.1f} min per image")


if __name__ == "__main__":
    main()
