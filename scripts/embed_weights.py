"""Evaluate trained weights on a folder of photos and embed them into the package.

    python scripts/embed_weights.py RUN/q1.safetensors RUN/q3.safetensors ... \
        --photos ../shared/data/photos24

Each file is evaluated with real bitstreams (bpp of the file bytes, PSNR after rounding) and
re-written as src/shallowcodec/weights/<architecture>-q<quality>.safetensors with the means
stored in its metadata (photos24_bpp, photos24_psnr), which `shallowcodec models` shows.
"""

import argparse
import json
from pathlib import Path

import torch

from shallowcodec.codec import Codec, image_files
from shallowcodec.evaluation import evaluate
from shallowcodec.zoo import load_weights, save_weights, weights_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = image_files(args.photos)
    for src in args.weights:
        loaded = load_weights(src)
        result = evaluate(Codec(loaded), paths)
        facts = {k: json.loads(v) for k, v in loaded.metadata.items() if k not in ("architecture", "quality", "lmbda", "config")}
        facts.update(photos24_bpp=round(result["mean"]["bpp"], 4), photos24_psnr=round(result["mean"]["psnr"], 3),
                     photos24_ms_ssim=round(result["mean"].get("ms_ssim", float("nan")), 5))
        dst = weights_dir() / f"{loaded.architecture}-q{loaded.quality}.safetensors"
        save_weights(dst, loaded.model, loaded.architecture, json.loads(loaded.metadata["config"]),
                     loaded.quality, loaded.lmbda, **facts)
        print(f"{dst.name}: {result['mean']['bpp']:.4f} bpp, {result['mean']['psnr']:.2f} dB")


if __name__ == "__main__":
    main()
