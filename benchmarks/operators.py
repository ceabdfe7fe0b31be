"""Time learnrecon's ray transforms: forward, adjoint and FBP per image, build time and matrix memory.

Usage: python benchmarks/operators.py [--cases a,b,c,fan] [--repeats 5]
Writes benchmarks/results/operators-<device>.json and .md. The comparison against ASTRA and
DeepInverse in the same process is the subject of the operator-speed issue.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from learnrecon.operators import FanBeam2D, ParallelBeam2D
from learnrecon.phantoms import shepp_logan
from learnrecon.report import machine_info, markdown_table, write_json
from learnrecon.solvers import fbp

CASES = {
    "a": lambda: ParallelBeam2D(128, 30, n_detectors=183),
    "b": lambda: ParallelBeam2D(256, 180, n_detectors=363),
    "c": lambda: ParallelBeam2D(362, 1000, n_detectors=513),
    "fan": lambda: FanBeam2D(256, 360, 363, source_distance=512.0, detector_distance=256.0),
}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(name: str, repeats: int, device: torch.device) -> list[dict]:
    op = CASES[name]()
    start = time.perf_counter()
    op._matrices(torch.float32, device)
    build = time.perf_counter() - start
    rows = []
    for batch in (1, 16):
        x = shepp_logan(op.image_shape[0]).float().to(device).expand(batch, 1, *op.image_shape).contiguous()
        y = op(x)
        rows.append(
            {
                "case": name,
                "geometry": repr(op),
                "batch": batch,
                "forward ms/img": 1e3 * median_seconds(lambda x=x: op(x), repeats) / batch,
                "adjoint ms/img": 1e3 * median_seconds(lambda y=y: op.H(y), repeats) / batch,
                "fbp ms/img": 1e3 * median_seconds(lambda y=y: fbp(y, op, filter="hann"), repeats) / batch,
                "build s": build,
                "matrix MB": op.memory_bytes() / 2**20,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="a,b")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [row for name in args.cases.split(",") for row in run_case(name, args.repeats, device)]
    info = machine_info(device)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    tag = info.get("gpu", "cpu").replace(" ", "-")
    write_json(out / f"operators-{tag}.json", {"machine": info, "rows": rows})
    columns = ["case", "batch", "forward ms/img", "adjoint ms/img", "fbp ms/img", "build s", "matrix MB"]
    table = markdown_table(rows, columns, digits={"forward ms/img": 3, "adjoint ms/img": 3, "fbp ms/img": 2})
    text = (
        f"# learnrecon ray transforms, float32, median of {args.repeats} runs after warm-up\n\n"
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads), device {info['device']}.\n\n{table}"
    )
    (out / f"operators-{tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
