"""Set each run's ``training.steps`` so that its cosine schedule ends within a time budget.

    python scripts/fit_steps.py runs/gpu-trial 6.8 lpd_ellipses lpd_dival

reads the steps per second of a short trial run of ``configs/<run>_gpu.yaml`` (its ``FOLDER/<run>/metrics.csv``,
from a third of the way in to its last row, validation included) and writes ``steps = rate × MINUTES × 60``,
rounded down to a multiple of 500 (at least 500), into that config. benchmarks/gpu_session.sh ``fit`` uses it: on
a GPU the rate depends on the batch and on how many runs share the device, so it is measured rather than guessed.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path


def steps_per_second(metrics: Path) -> float:
    """Steps per second between the row a third of the way into ``metrics`` and its last row."""
    with metrics.open() as f:
        rows = list(csv.DictReader(f))
    if len(rows) < 3:
        raise SystemExit(f"{metrics}: {len(rows)} rows, too few to measure a rate (let the trial run longer)")
    first, last = rows[len(rows) // 3], rows[-1]
    return (int(last["step"]) - int(first["step"])) / (float(last["seconds"]) - float(first["seconds"]))


def set_steps(config: Path, steps: int) -> None:
    text, n = re.subn(r"\n  steps: \d+", f"\n  steps: {steps}", config.read_text())
    if n != 1:
        raise SystemExit(f"{config}: expected one 'training.steps' line, found {n}")
    config.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trial", type=Path, help="folder of the trial runs (FOLDER/<run>/metrics.csv)")
    parser.add_argument("minutes", type=float, help="training time to fill")
    parser.add_argument("runs", nargs="+", help="run names: configs/<run>_gpu.yaml")
    args = parser.parse_args()
    for run in args.runs:
        rate = steps_per_second(args.trial / run / "metrics.csv")
        steps = max(int(rate * args.minutes * 60) // 500 * 500, 500)
        set_steps(Path(f"configs/{run}_gpu.yaml"), steps)
        print(f"{run}: {rate:.2f} steps/s -> training.steps {steps}", flush=True)


if __name__ == "__main__":
    main()
