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

from shallowcodec import bdrate
from shallowcodec.atomic import atomic_write
from shallowcodec.evaluation import check_same_images, curve, load_result


def check_fixed(fixed: dict) -> dict:
    """``fixed`` if it is a result of one point (one quality of a fixed-λ model).

    Raises:
        ValueError: more points than one.
    """
    if len(fixed["points"]) != 1:
        raise ValueError(f"the fixed-λ result must have one point (one quality), {fixed.get('label')} has "
                         f"{len(fixed['points'])}")
    return fixed


def gap(fixed: dict, variable: dict) -> dict:
    """The variable-rate curve at the fixed model's one point.

    Returns:
        {"bpp": the fixed model's mean bpp, "fixed_psnr", "variable_psnr", "gap_psnr" (variable −
        fixed, dB), and the same for MS-SSIM in dB ("fixed_ms_ssim_db", … "gap_ms_ssim_db")}.

    Raises:
        ValueError: other images, a fixed result of more than one point, a variable curve of fewer
            than 2 points, or a fixed bpp outside it.
    """
    check_same_images(fixed, variable)
    check_fixed(fixed)
    if len(variable["points"]) < 2:
        raise ValueError(f"{variable.get('label')} has {len(variable['points'])} point: a curve needs at least 2")
    out = {}
    for metric in ("psnr", "ms_ssim_db"):
        bpp, value = (float(a[0]) for a in curve(fixed, metric))
        rates, values = curve(variable, metric)
        if not rates.min() <= bpp <= rates.max():
            raise ValueError(f"{variable.get('label')}: {bpp:.4f} bpp is outside its curve "
                             f"({rates.min():.4f}–{rates.max():.4f} bpp)")
        at = bdrate.quality_at(rates, values, bpp)
        out |= {"bpp": bpp, f"fixed_{metric}": value, f"variable_{metric}": at, f"gap_{metric}": at - value}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixed", type=Path)
    parser.add_argument("variable", type=Path, nargs="+")
    parser.add_argument("--json", type=Path, help="write the gaps as JSON")
    parser.add_argument("--force", action="store_true", help="overwrite --json")
    args = parser.parse_args()
    if args.json and args.json.exists() and not args.force:
        parser.error(f"{args.json} exists (--force overwrites it)")
    if args.json and not args.json.parent.is_dir():
        parser.error(f"no folder {args.json.parent} for --json")
    rows, path = {}, args.fixed
    try:
        fixed = check_fixed(load_result(path))
        for path in args.variable:
            rows[str(path)] = gap(fixed, load_result(path))
    except (OSError, ValueError) as error:
        message = str(error)
        print(f"fixed_gap: {message if str(path) in message else f'{path}: {message}'}", file=sys.stderr)
        return 1
    for path, row in rows.items():
        print(f"{path}: at the fixed model's {row['bpp']:.4f} bpp ({row['fixed_psnr']:.2f} dB) "
              f"{row['variable_psnr']:.2f} dB: {row['gap_psnr']:+.2f} dB PSNR, "
              f"{row['gap_ms_ssim_db']:+.2f} dB MS-SSIM")
    if args.json:
        atomic_write(args.json, (json.dumps({"fixed": str(args.fixed), "gaps": rows}, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
