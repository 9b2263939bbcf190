"""Long fuzz run of the decoder (issue 12 item 4): mutated files, each decode in a watchdogged worker.

    PYTHONPATH=src python benchmarks/fuzz.py --decodes 100000 [--seed 0] [--timeout 60]

Files of every embedded model (crops of photos24) are mutated by shallowcodec.fuzz (CRC
recomputed) and sent one at a time to a worker process (``python -m shallowcodec.fuzz``) that
decodes each twice. The parent counts outcomes and reports crashes (the worker died, e.g. by a
signal), hangs (no answer within --timeout s: the worker is killed), failures (an exception other
than ContainerError, a multi-line error, or two decodes that differ) and the workers' peak RSS.
A dead or killed worker is replaced. Prints one JSON summary; exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from shallowcodec import fuzz

PHOTOS24 = Path(__file__).resolve().parents[2] / "shared/data/photos24"
#: Decodes between two progress lines on stderr.
PROGRESS_EVERY = 1000


class Worker:
    """One ``python -m shallowcodec.fuzz`` process, niced, fed files over a pipe."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "shallowcodec.fuzz"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, preexec_fn=lambda: os.nice(10))
        self.process.stdout.readline()  # {"ready": true} after imports and model loading (or EOF if it died)

    def decode(self, data: bytes, timeout: float) -> dict:
        """The worker's JSON answer for ``data``, or {"crash": returncode} / {"hang": timeout}."""
        try:
            self.process.stdin.write(struct.pack("<I", len(data)) + data)
            self.process.stdin.flush()
        except BrokenPipeError:
            return {"crash": self.process.wait()}
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""
        if line:
            return json.loads(line)
        if not ready:
            self.process.kill()
            self.process.wait()
            return {"hang": timeout}
        return {"crash": self.process.wait()}

    def close(self) -> None:
        """End the worker (EOF on its stdin)."""
        self.process.stdin.close()
        self.process.wait()


def run(decodes: int, seed: int, timeout: float, photos: Path) -> dict:
    """Mutate and decode ``decodes`` files; the summary dict (counts, failures with their seeds, peak RSS)."""
    seeds = fuzz.seed_files(photos)
    rng, counts, failures, peak = random.Random(seed), Counter(), [], 0.0
    worker, start = Worker(), time.perf_counter()
    for i in range(decodes):
        data = fuzz.mutate(rng.choice(seeds), rng, seeds)
        answer = worker.decode(data, timeout)
        peak = max(peak, answer.get("rss_mb", 0.0))
        kind = next(k for k in ("crash", "hang", "failure", "outcome") if k in answer)
        counts[kind if kind != "outcome" else answer["outcome"].split()[0]] += 1
        if kind != "outcome":
            failures.append({"decode": i, kind: answer[kind], "file": data.hex()})
            if kind in ("crash", "hang"):
                worker = Worker()
        if (i + 1) % PROGRESS_EVERY == 0:  # a running summary on stderr: a long run stopped early still reports
            print(json.dumps(summary(i + 1, seed, start, counts, peak, [])), file=sys.stderr, flush=True)
    worker.close()
    return summary(decodes, seed, start, counts, peak, failures)


def summary(decodes: int, seed: int, start: float, counts: Counter, peak: float, failures: list) -> dict:
    """Counts after ``decodes`` files: images, one-line errors, crashes, hangs, failures, peak RSS (MB)."""
    return {"decodes": decodes, "seed": seed, "seconds": round(time.perf_counter() - start, 1),
            "images": counts["image"], "errors": counts["error"], "crashes": counts["crash"],
            "hangs": counts["hang"], "failures": counts["failure"], "peak_rss_mb": round(peak, 1),
            "failed": failures[:20]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--decodes", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a decode may take before it counts as a hang")
    p.add_argument("--photos", type=Path, default=PHOTOS24)
    args = p.parse_args()
    summary = run(args.decodes, args.seed, args.timeout, args.photos)
    print(json.dumps(summary, indent=1))
    sys.exit(1 if summary["crashes"] + summary["hangs"] + summary["failures"] else 0)


if __name__ == "__main__":
    main()
