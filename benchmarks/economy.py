"""The training-economy record: photos24 BD-rate against JPEG 4:2:0 and PSNR at q3 per cumulative budget.

    python benchmarks/economy.py add RESULT.json --weights WEIGHTS [--label TEXT] [--branch] [--record FILE]
    python benchmarks/economy.py plot [--record FILE] [-o results/economy.png]

``add`` appends one point to the record (default ``results/economy.json``): the architecture,
cumulative training steps, core-hours and GPU-minutes from the weights' metadata
(``shallowcodec models``), and from the result file (``shallowcodec eval --json`` on photos24,
qualities 0–6) the PSNR BD-rate against ``results/jpeg420.json`` (Bjøntegaard, PCHIP, as
``shallowcodec compare``), the mean bpp and PSNR at q3 and the smallest q6/q0 file-size ratio
over the images; ``--branch`` marks an evaluation branch (e.g. a campaign's lr-decayed side
branch) rather than the embedded lineage. ``plot`` draws BD-rate and q3 PSNR against core-hours
per architecture (lines: the embedded weights; open markers: branches) and prints the record as
a Markdown table.
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shallowcodec import bdrate  # noqa: E402
from shallowcodec.evaluation import check_same_images, curve, load_result  # noqa: E402
from shallowcodec.model_files import model_card  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def point(result_path: Path, weights: Path, label: str | None, branch: bool) -> dict:
    """One record entry from a photos24 result file and the weights it evaluated.

    Raises:
        ValueError: the result has no q0, q3 and q6 points, other images than JPEG's, or a curve that does
            not overlap JPEG's.
    """
    result, anchor, card = load_result(result_path), load_result(RESULTS / "jpeg420.json"), model_card(weights)
    check_same_images(anchor, result)
    points = {p["quality"]: p for p in result["points"]}
    if not {0.0, 3.0, 6.0} <= points.keys():
        raise ValueError(f"{result_path} lacks q0, q3 or q6")
    q0 = {i["image"]: i["bpp"] for i in points[0.0]["images"]}
    ratio = min(i["bpp"] / q0[i["image"]] for i in points[6.0]["images"])
    (rate_a, psnr_a), (rate_b, psnr_b) = curve(anchor), curve(result)
    return {"architecture": card["architecture"], "label": label or result["label"],
            "total_steps": card.get("total_steps", card.get("steps")), "core_hours": card.get("core_hours", 0.0),
            "gpu_minutes": round(60 * card.get("gpu_hours", 0.0), 1),
            "bd_rate_vs_jpeg420": round(bdrate.bd_rate(rate_a, psnr_a, rate_b, psnr_b), 2),
            "bpp_q3": round(points[3.0]["mean"]["bpp"], 4), "psnr_q3": round(points[3.0]["mean"]["psnr"], 3),
            "min_q6_over_q0": round(ratio, 2), "branch": branch, "result": result_path.name}


def table(record: list[dict]) -> str:
    """The record as a Markdown table, by architecture then budget."""
    lines = ["| model | core-hours | GPU-min | steps | BD-rate vs JPEG 4:2:0 | q3 bpp / PSNR | min q6/q0 | point |",
             "|---|---:|---:|---:|---:|---|---:|---|"]
    for p in sorted(record, key=lambda p: (p["architecture"], p["core_hours"])):
        lines.append(f"| {p['architecture']} | {p['core_hours']:.2f} | {p['gpu_minutes']:g} | {p['total_steps']:,} | "
                     f"{p['bd_rate_vs_jpeg420']:+.1f} % | {p['bpp_q3']:.3f} / {p['psnr_q3']:.2f} | "
                     f"{p['min_q6_over_q0']:.1f}× | {p['label']}{' (branch)' if p['branch'] else ''} |")
    return "\n".join(lines)


def plot(record: list[dict], output: Path) -> None:
    """BD-rate against JPEG 4:2:0 and q3 PSNR against cumulative core-hours, one line per architecture."""
    fig, (ax_bd, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4.2))
    for architecture in sorted({p["architecture"] for p in record}):
        rows = sorted((p for p in record if p["architecture"] == architecture), key=lambda p: p["core_hours"])
        for ax, key in ((ax_bd, "bd_rate_vs_jpeg420"), (ax_psnr, "psnr_q3")):
            line, = ax.plot([p["core_hours"] for p in rows if not p["branch"]],
                            [p[key] for p in rows if not p["branch"]], "o-", label=architecture)
            ax.plot([p["core_hours"] for p in rows if p["branch"]], [p[key] for p in rows if p["branch"]], "o",
                    mfc="none", color=line.get_color())
    ax_bd.axhline(0, color="gray", lw=0.8)
    ax_bd.axhline(-10, color="gray", lw=0.8, ls="--")
    ax_bd.set(xlabel="cumulative core-hours", ylabel="PSNR BD-rate vs JPEG 4:2:0 (%)",
              title="photos24 BD-rate (dashed: issue 9 target for two-layer)")
    ax_psnr.set(xlabel="cumulative core-hours", ylabel="mean PSNR at q3 (dB)",
               title="photos24 PSNR at q3 (λ 0.01; 0.0078 from 6.5 core-hours)")
    for ax in (ax_bd, ax_psnr):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(output, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, default=RESULTS / "economy.json")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="append a point")
    add.add_argument("result", type=Path, help="shallowcodec eval --json result on photos24, q0–6")
    add.add_argument("--weights", type=Path, required=True, help="the weights the result evaluated")
    add.add_argument("--label", help="what the point is (default: the result's label)")
    add.add_argument("--branch", action="store_true", help="an evaluation branch, not embedded weights")
    draw = sub.add_parser("plot", help="PNG of the record and a Markdown table on stdout")
    draw.add_argument("-o", "--output", type=Path, default=RESULTS / "economy.png")
    args = parser.parse_args()
    record = json.loads(args.record.read_text()) if args.record.exists() else []
    if args.command == "add":
        try:
            record.append(point(args.result, args.weights, args.label, args.branch))
        except (OSError, ValueError) as e:
            sys.exit(f"economy: {e}")
        args.record.write_text(json.dumps(record, indent=1) + "\n")
        print(table(record[-1:]))
    else:
        plot(record, args.output)
        print(table(record))


if __name__ == "__main__":
    main()
