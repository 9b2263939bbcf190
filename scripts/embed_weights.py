"""Embed trained weights into the package, and record their photos24 figures.

    python scripts/embed_weights.py RUN/q1.safetensors RUN/q3.safetensors ...
    shallowcodec eval ../shared/data/photos24 --model two-layer --qualities 1 3 5 --json R.json
    python scripts/embed_weights.py --annotate R.json

The first form re-writes each file as src/shallowcodec/weights/<architecture>-q<quality>.safetensors
(parameters unchanged, fp16). ``--annotate`` stores the mean bpp (file bytes), PSNR and MS-SSIM of
an eval result into the metadata of the embedded files it covers, which `shallowcodec models` shows.
"""

import argparse
import json
from pathlib import Path

from shallowcodec.zoo import embedded_models, load_weights, save_weights, weights_dir


def rewrite(src: Path, dst: Path, **extra) -> None:
    """Re-save weights ``src`` as ``dst`` with the same parameters and metadata plus ``extra`` facts."""
    loaded = load_weights(src)
    facts = {k: json.loads(v) for k, v in loaded.metadata.items() if k not in ("architecture", "quality", "lmbda", "config")}
    save_weights(dst, loaded.model, loaded.architecture, json.loads(loaded.metadata["config"]),
                 loaded.quality, loaded.lmbda, **{**facts, **extra})


def annotate(result_path: Path) -> None:
    """Store the per-quality means of an eval result file in the embedded weights it evaluated."""
    result = json.loads(result_path.read_text())
    files = embedded_models()[result["model"]]
    for point in result["points"]:
        mean = point["mean"]
        rewrite(files[point["quality"]], files[point["quality"]], photos24_bpp=round(mean["bpp"], 4),
                photos24_psnr=round(mean["psnr"], 3), photos24_ms_ssim=round(mean["ms_ssim"], 5))
        print(f"{result['model']} q{point['quality']}: {mean['bpp']:.4f} bpp, {mean['psnr']:.2f} dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="*")
    parser.add_argument("--annotate", type=Path, help="eval result file of embedded weights")
    args = parser.parse_args()
    for src in args.weights:
        loaded = load_weights(src)
        dst = weights_dir() / f"{loaded.architecture}-q{loaded.quality}.safetensors"
        rewrite(src, dst)
        print(f"{src} -> {dst}")
    if args.annotate:
        annotate(args.annotate)


if __name__ == "__main__":
    main()
