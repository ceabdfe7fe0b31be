"""Operator benchmark (see :mod:`learnrecon.benchmark.operators`); results go to benchmarks/results/.

Usage: python benchmarks/operators.py [--cases a,b,c,fan] [--repeats 5] [--device cpu] [--no-astra] [--no-deepinv]
(the same as ``learnrecon benchmark operators ... --out benchmarks/results``).
"""

import argparse
from pathlib import Path

from learnrecon.benchmark.operators import run_operator_benchmark

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="a,b")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-astra", action="store_true", help="do not time ASTRA even when it is installed")
    parser.add_argument("--no-deepinv", action="store_true", help="do not time DeepInverse even when it is installed")
    args = parser.parse_args()
    out = Path(__file__).parent / "results"
    cases = args.cases.split(",")
    # The results files in benchmarks/results/ are refreshed: overwrite=True.
    print(run_operator_benchmark(cases, out, args.repeats, args.device, not args.no_astra, not args.no_deepinv, True))
