"""Embed trained variable-rate weights into the package, and record their figures on the evaluation sets.

    python scripts/embed_weights.py RUN/two-layer-vr.safetensors ... [--cores 1]
    shallowcodec eval ../shared/data/photos24 --model two-layer --qualities 0 1 2 3 4 5 6 --json P.json
    shallowcodec eval ../shared/data/detail24 --model two-layer --qualities 0 1 2 3 4 5 6 --json D.json
    python scripts/embed_weights.py --annotate P.json D.json

The first form re-writes each file as src/shallowcodec/weights/<architecture>.safetensors
(parameters unchanged, fp16). The trainer records the cumulative ``core_hours`` (and
``gpu_hours`` for GPU runs) in the weights; for older weights without them, ``core_hours`` =
total training seconds × ``--cores`` (the cores each run used). ``--annotate`` stores the
per-quality means (bpp from file bytes, PSNR, MS-SSIM) of each eval result under the name of its
image folder (``photos24``, ``detail24``) in the metadata of the embedded file it covers, which
``shallowcodec models`` shows.
"""

import argparse
import json
from pathlib import Path

from shallowcodec.model_files import embedded_models, weights_dir
from shallowcodec.zoo import load_weights, save_weights


def rewrite(src: Path, dst: Path, **extra) -> None:
    """Re-save weights ``src`` as ``dst`` with the same parameters and metadata plus ``extra`` facts."""
    loaded = load_weights(src)
    facts = {k: json.loads(v) for k, v in loaded.metadata.items() if k not in ("architecture", "quality", "lmbda", "config")}
    save_weights(dst, loaded.model, loaded.architecture, json.loads(loaded.metadata["config"]),
                 loaded.quality, loaded.lmbda, **{**facts, **extra})


def _core_hours(metadata: dict, cores: int) -> float:
    """Recorded ``core_hours``, or (older weights) total training seconds × ``cores`` / 3600."""
    if "core_hours" in metadata:
        return json.loads(metadata["core_hours"])
    if "gpu_hours" in metadata:  # trained on GPUs only
        return 0.0
    return json.loads(metadata.get("total_train_seconds", metadata["train_seconds"])) * cores / 3600


def annotate(result_path: Path) -> None:
    """Store the per-quality means of an eval result file in the embedded weights it evaluated, under
    the name of its image folder."""
    result = json.loads(result_path.read_text())
    path = embedded_models()[result["model"]]
    means = {f"{p['quality']:g}": {"bpp": round(p["mean"]["bpp"], 4), "psnr": round(p["mean"]["psnr"], 3),
                                   "ms_ssim": round(p["mean"]["ms_ssim"], 5)} for p in result["points"]}
    rewrite(path, path, **{result["images"]: means})
    for q, rd in means.items():
        print(f"{result['model']} {result['images']} q{q}: {rd['bpp']:.4f} bpp, {rd['psnr']:.2f} dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="*")
    parser.add_argument("--cores", type=int, default=1,
                        help="CPU cores each training run used (only for weights that record no core_hours)")
    parser.add_argument("--annotate", type=Path, nargs="+", help="eval result files of embedded weights")
    args = parser.parse_args()
    for src in args.weights:
        loaded = load_weights(src)
        if not loaded.variable_rate:
            parser.error(f"{src} is a fixed-λ model; the package embeds variable-rate weights")
        dst = weights_dir() / f"{loaded.architecture}.safetensors"
        rewrite(src, dst, core_hours=round(_core_hours(loaded.metadata, args.cores), 2))
        print(f"{src} -> {dst}")
    for result in args.annotate or []:
        annotate(result)


if __name__ == "__main__":
    main()
