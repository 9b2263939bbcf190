"""Variable rate against a fixed-λ model: the variable-rate model's PSNR at the fixed model's bpp.

    python benchmarks/fixed_gap.py FIXED.json VARIABLE.json [VARIABLE.json ...] [--json OUT.json]

FIXED.json is ``shallowcodec eval --json`` of a fixed-λ model (or of a variable-rate model
fine-tuned at one quality: ``train --variable-rate --train-qualities 1 --rate-weighting 0``) at
one quality; each VARIABLE.json the same images at qualities 0–6. For each variable-rate curve the
PSNR (dB) and MS-SSIM at the fixed model's mean bpp are interpolated (PCHIP over log bpp, as
Bjøntegaard; bdrate.py) and the gap printed: negative = the variable-rate model is worse at that
rate. Issue 9 item 5 asks for a q1 gap within 0.3 dB at equal training steps
(benchmarks/README.md "Variable rate against fixed-λ models").
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from shallowcodec.evaluation import check_same_images, curve, load_result


def gap(fixed: dict, variable: dict) -> dict:
    """The variable-rate curve at the fixed model's (first) point.

    Returns:
        {"bpp": the fixed model's mean bpp, "fixed_psnr", "variable_psnr", "gap_psnr" (variable −
        fixed, dB), and the same for MS-SSIM in dB ("fixed_ms_ssim_db", … "gap_ms_ssim_db")}.

    Raises:
        ValueError: other images, a variable curve of fewer than 2 points, or a fixed bpp outside it.
    """
    check_same_images(fixed, variable)
    out = {}
    for metric in ("psnr", "ms_ssim_db"):
        bpp, value = (float(a[0]) for a in curve(fixed, metric))
        rates, values = curve(variable, metric)
        if len(rates) < 2 or not rates.min() <= bpp <= rates.max():
            raise ValueError(f"{variable.get('label')}: {bpp:.4f} bpp is outside its curve "
                             f"({rates.min():.4f}–{rates.max():.4f} bpp)")
        order = np.argsort(rates)
        at = float(PchipInterpolator(np.log(rates[order]), values[order])(np.log(bpp)))
        out |= {"bpp": bpp, f"fixed_{metric}": value, f"variable_{metric}": at, f"gap_{metric}": at - value}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixed", type=Path)
    parser.add_argument("variable", type=Path, nargs="+")
    parser.add_argument("--json", type=Path, help="write the gaps as JSON")
    args = parser.parse_args()
    try:
        fixed = load_result(args.fixed)
        rows = {str(path): gap(fixed, load_result(path)) for path in args.variable}
    except (OSError, ValueError) as error:
        print(f"fixed_gap: {error}", file=sys.stderr)
        return 1
    for path, row in rows.items():
        print(f"{path}: at the fixed model's {row['bpp']:.4f} bpp ({row['fixed_psnr']:.2f} dB) "
              f"{row['variable_psnr']:.2f} dB: {row['gap_psnr']:+.2f} dB PSNR, "
              f"{row['gap_ms_ssim_db']:+.2f} dB MS-SSIM")
    if args.json:
        args.json.write_text(json.dumps({"fixed": str(args.fixed), "gaps": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
