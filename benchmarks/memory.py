"""Peak training memory and step time of LPD, checkpointed LPD, invertible LPD and greedy training, by iterations;
and the matrix-free ray transform's time and memory against the CSR matrices.

Usage:
    python benchmarks/memory.py [--iterations 10,20,30] [--size 128] [--angles 30] [--batch 2] [--steps 2]
                                [--device cpu] [--threads 1] [--projector-sizes 128,256]

Training (one fresh process per case, so that nothing of one case is left in the next): the model, the operator
(its CSR matrices built) and a batch are set up, one warm-up training step (forward, MSE loss, backward, Adam)
builds the operator's caches and Adam's state, then the peak memory is reset and ``--steps`` more steps run (the
time is their median). Peak memory is the peak of the steps above the memory held before them (so it leaves out the
weights and Adam's two moments, 12 bytes a parameter, but counts the gradients, 4 bytes a parameter): on the CPU
the process's peak resident set (VmHWM, reset through /proc/self/clear_refs; glibc told to return large buffers
at once with MALLOC_MMAP_THRESHOLD_ so that the resident set follows the live tensors), on a GPU torch's peak
allocation.
Greedy is the last (the largest) stage of iteration-wise training: all iterations but the last run frozen
without gradients, the last one trains.

Projector: forward + adjoint of a batch of 1 on a parallel-beam geometry at each ``--projector-sizes`` side (as many
angles as pixels along a side, the default detectors; ``lodopab``: LoDoPaB-CT's 362², 1000 angles, 513 cells),
native CSR and matrix-free: time (median of 3 after a
warm-up), the operator's own memory (the CSR matrices; for the matrix-free backend its per-ray line parameters)
and the peak memory of one forward + adjoint above the data (a fresh process each).

Writes benchmarks/results/memory-<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from results_file import RESULTS, provenance, publish

from learnrecon.report import machine_info, markdown_table

MODELS = ("lpd", "lpd-checkpointed", "ilpd", "lpd-greedy")


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class PeakMemory:
    """The peak memory of a block above what was held when it began (bytes)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the present resident set
            self.start = 1024 * _rss_kib("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.start
        else:
            self.peak = 1024 * _rss_kib("VmHWM") - self.start


def _keep_freed_memory() -> None:
    """glibc: serve large requests from the heap and keep freed memory (what ``learnrecon.runtime.tune_malloc``
    sets; called directly because this process's environment sets ``MALLOC_MMAP_THRESHOLD_`` for the peaks)."""
    import ctypes

    from learnrecon.runtime import M_MMAP_MAX, M_TRIM_THRESHOLD

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


def _operator(size: int, angles: int, backend: str):
    from learnrecon.operators import ParallelBeam2D

    return ParallelBeam2D(size, n_angles=angles, backend=backend)


def train_case(args: argparse.Namespace) -> dict:
    """In this process: one model at one iteration count, ``args.steps`` + 1 training steps."""
    from learnrecon import phantoms
    from learnrecon.data.simulate import measure
    from learnrecon.models import InvertibleLearnedPrimalDual, LearnedPrimalDual

    device = torch.device(args.device)
    torch.manual_seed(0)
    op = _operator(args.size, args.angles, args.backend)
    n = args.iterations_one
    if args.model == "ilpd":
        model = InvertibleLearnedPrimalDual(n, width=args.ilpd_width)
    else:
        model = LearnedPrimalDual(n)
        model.checkpoint_activations = args.model == "lpd-checkpointed"
        if args.model == "lpd-greedy":
            model.set_greedy_stage(n - 1)
    model = model.to(device)
    x = phantoms.random_ellipses(args.batch, args.size, seed=0, scaling="minmax")
    y = measure(op, x, "relative:0.05", seed=0)
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> tuple[float, float]:
        start, start_cpu = time.perf_counter(), time.process_time()
        loss = (model(y, op) - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, time.process_time() - start_cpu

    step()  # warm-up: builds the operator's matrices and norm, and Adam's state
    with PeakMemory(device) as peak:
        times = [step() for _ in range(args.steps)]
    return {
        "model": args.model,
        "iterations": n,
        "parameters": sum(p.numel() for p in model.parameters()),
        "peak_bytes": peak.peak,
        "seconds_per_step": statistics.median(t for t, _ in times),
        "cpu_seconds_per_step": statistics.median(c for _, c in times),
    }


def projector_case(args: argparse.Namespace) -> dict:
    """In this process: forward + adjoint of one image with one backend at one size."""
    device = torch.device(args.device)
    if args.size == 0:  # LoDoPaB-CT's geometry
        from learnrecon.data.lodopab import lodopab_operator

        op = lodopab_operator(backend=args.backend)
    else:
        op = _operator(args.size, args.size, args.backend)
    x = torch.rand(1, *op.domain_shape, device=device)
    op.H(op(x))  # builds what the backend caches (CSR matrices, or the per-ray lines)
    own = op.memory_bytes()
    y = op(x)
    with PeakMemory(device) as peak:
        op.H(op(x))
    _keep_freed_memory()  # time as the learnrecon command runs (glibc's mmap off), not with the peak's setting
    times, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        op.H(op(x))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    del y
    return {
        "size": args.size,
        "geometry": f"{op.domain_shape[0]}², {op.range_shape[0]} angles, {op.range_shape[1]} cells",
        "backend": args.backend,
        "operator_bytes": own,
        "peak_bytes": peak.peak,
        "seconds": statistics.median(times),
        "cpu_seconds": statistics.median(cpu),
    }


#: Small geometries (side, angles, cells) that the LoDoPaB-size memory is extrapolated from; the last one checks.
_FIT_GEOMETRIES = ((64, 30, 91), (64, 120, 91), (96, 30, 137), (128, 60, 183))


def lodopab_extrapolation() -> list[dict]:
    """What a training forward pass keeps for the backward pass (:class:`learnrecon.runtime.SavedTensors`, batch 1),
    at 1 and 2 iterations on small geometries, fitted as ``α·pixels + β·sinogram cells + γ`` (base and per
    iteration; exact for convolutions, whose activations scale with the pixels), checked on a fourth geometry and
    extrapolated to LoDoPaB-CT's 362², 1000 × 513 (one forward pass there takes minutes on this CPU)."""
    from learnrecon.models import InvertibleLearnedPrimalDual, LearnedPrimalDual
    from learnrecon.operators import ParallelBeam2D
    from learnrecon.runtime import SavedTensors

    out = []
    for name, cls in (("lpd", LearnedPrimalDual), ("ilpd", InvertibleLearnedPrimalDual)):
        rows = []
        for size, angles, cells in _FIT_GEOMETRIES:
            op = ParallelBeam2D(size, angles, n_detectors=cells)
            kept = []
            for n in (1, 2):
                torch.manual_seed(0)
                model = cls(n)
                y = op(torch.rand(1, 1, size, size))
                with SavedTensors() as saved:
                    model(y, op)
                kept.append(saved.bytes)
            rows.append((size * size, angles * cells, kept[0] - (kept[1] - kept[0]), kept[1] - kept[0]))
        design = torch.tensor([[r[0], r[1], 1.0] for r in rows[:3]], dtype=torch.float64)
        case = {"model": name}
        for j, key in ((2, "base"), (3, "per_iteration")):
            coef = torch.linalg.solve(design, torch.tensor([float(r[j]) for r in rows[:3]], dtype=torch.float64))
            check = torch.tensor([rows[3][0], rows[3][1], 1.0], dtype=torch.float64)
            case[f"{key}_check_error"] = float(coef @ check) - rows[3][j]
            case[f"{key}_bytes"] = float(coef @ torch.tensor([362.0 * 362, 1000.0 * 513, 1.0], dtype=torch.float64))
        case["lodopab_10_iterations_batch_2_bytes"] = 2 * (case["base_bytes"] + 10 * case["per_iteration_bytes"])
        out.append(case)
    return out


def _worker(args: argparse.Namespace, extra: list[str]) -> dict:
    command = [sys.executable, __file__, "--device", args.device, "--threads", str(args.threads), *extra]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": str(args.threads or 1)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def _lodopab_text(cases: list[dict]) -> str:
    rows = [
        {
            "model": c["model"],
            "kept per iteration MB": c["per_iteration_bytes"] / 2**20,
            "kept besides MB": c["base_bytes"] / 2**20,
            "fit error on the check geometry B": max(abs(c["base_check_error"]), abs(c["per_iteration_check_error"])),
            "10 iterations, batch 2 GB": c["lodopab_10_iterations_batch_2_bytes"] / 2**30,
        }
        for c in cases
    ]
    digits = {"kept per iteration MB": 1, "kept besides MB": 1, "fit error on the check geometry B": 0}
    digits["10 iterations, batch 2 GB"] = 2
    return (
        "\n## LoDoPaB-CT size (362², 1000 angles, 513 cells): what a training forward pass keeps for backward, "
        "extrapolated\n\n"
        "learnrecon.runtime.SavedTensors (the tensors autograd saves) at batch 1, 1 and 2 iterations, on the "
        f"geometries {', '.join(f'{s}²/{a}×{d}' for s, a, d in _FIT_GEOMETRIES[:3])}, fitted as a·pixels + "
        f"b·sinogram cells + c and checked on {'{}²/{}×{}'.format(*_FIT_GEOMETRIES[3])}; the LoDoPaB column is "
        "that fit, not a measurement (per sample ×2 for the batch). At 128² the measured peak of a training step "
        "was within 1 % of what is kept (235 MB against 237 MB for lpd, 10 iterations, batch 2). ilpd keeps its "
        "states only; its backward pass needs one iteration's recomputation on top.\n\n"
        + markdown_table(rows, list(rows[0]), digits=digits)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", default="10,20,30")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--angles", type=int, default=30)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up")
    parser.add_argument(
        "--parts", default="training,projector,lodopab", help="what to run; a part left out is kept from the results"
    )
    parser.add_argument("--ilpd-width", type=int, default=32)
    parser.add_argument("--backend", default="native", help="the ray transform's backend in the training cases")
    parser.add_argument(
        "--projector-sizes", default="128,256,lodopab", help="sides for the projector part, 'lodopab': LoDoPaB-CT's"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=("train", "projector"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--iterations-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        case = {"train": train_case, "projector": projector_case}[args.worker](args)
        print(json.dumps(case))
        return
    common = ["--size", str(args.size), "--angles", str(args.angles), "--batch", str(args.batch)]
    common += ["--steps", str(args.steps), "--ilpd-width", str(args.ilpd_width), "--backend", args.backend]
    parts = args.parts.split(",")
    info = machine_info()
    device_name = info.get("gpu", "cpu").replace(" ", "-") if args.device != "cpu" else "cpu"
    stem = f"memory-{device_name}"
    previous_file = RESULTS / f"{stem}.json"
    previous = json.loads(previous_file.read_text()) if previous_file.exists() else {}
    training = [] if "training" in parts else previous.get("training", [])
    for model in args.models.split(",") if "training" in parts else ():
        for n in (int(i) for i in args.iterations.split(",")):
            case = _worker(args, ["--worker", "train", "--model", model, "--iterations-one", str(n), *common])
            print(case, file=sys.stderr)
            training.append(case)
    sizes = (
        [0 if s == "lodopab" else int(s) for s in args.projector_sizes.split(",") if s] if "projector" in parts else []
    )
    projector = [c for c in previous.get("projector", []) if c["size"] not in sizes]  # the cases not rerun
    for size in sizes:
        for backend in ("native", "matrix_free"):
            case = _worker(args, ["--worker", "projector", "--size", str(size), "--backend", backend])
            print(case, file=sys.stderr)
            projector.append(case)
    lodopab = lodopab_extrapolation() if "lodopab" in parts else previous.get("lodopab", [])
    first = {c["model"]: c for c in training if c["iterations"] == min(r["iterations"] for r in training)}
    rows = [
        {
            "model": c["model"],
            "iterations": c["iterations"],
            "parameters": c["parameters"],
            "peak MB": c["peak_bytes"] / 2**20,
            "× first": c["peak_bytes"] / first[c["model"]]["peak_bytes"],
            "s/step": c["seconds_per_step"],
            **({"CPU s/step": c["cpu_seconds_per_step"]} if "cpu_seconds_per_step" in c else {}),
        }
        for c in training
    ]
    text = (
        f"# Training memory by iterations, {args.size}², {args.angles} angles, batch {args.batch}, "
        f"device {args.device}\n\n"
        "Peak memory of a training step above what was held before it (CPU: peak resident set; GPU: torch's peak "
        f"allocation), median wall and CPU time (the process's, one thread) of {args.steps} steps after a warm-up; "
        "one fresh process a case. lpd-greedy: the last stage of greedy training (all iterations but the last "
        "frozen, run without gradients). The CPU is shared with other jobs: CPU time is the steadier measure. "
        f"ilpd width {args.ilpd_width} (four couplings an iteration).\n"
        f"{provenance(info)}\n\n"
    )
    if rows:
        digits = {"iterations": 0, "parameters": 0, "peak MB": 1, "× first": 2, "s/step": 2, "CPU s/step": 2}
        text += markdown_table(rows, list(rows[0]), digits=digits) + "\n"
    if projector:
        projector.sort(key=lambda c: (c["size"] == 0, c["size"], c["backend"] != "native"))
        prows = [
            {
                "geometry": c["geometry"] + (" (LoDoPaB)" if c["size"] == 0 else ""),
                "backend": c["backend"],
                "operator MB": c["operator_bytes"] / 2**20,
                "peak of forward+adjoint MB": c["peak_bytes"] / 2**20,
                "forward+adjoint s": c["seconds"],
                "forward+adjoint CPU s": c.get("cpu_seconds", float("nan")),
            }
            for c in projector
        ]
        text += (
            "\n## Ray transform backends: forward + adjoint of one image\n\n"
            "Times after glibc's mmap for large allocations is turned off (as the learnrecon command runs).\n\n"
            "operator MB: what the operator keeps (the CSR pair; the matrix-free backend's per-ray line parameters). "
            "peak: above the image and the operator, during one forward + adjoint.\n\n"
        )
        digits = {"operator MB": 1, "peak of forward+adjoint MB": 1, "forward+adjoint s": 3, "forward+adjoint CPU s": 3}
        text += markdown_table(prows, list(prows[0]), digits=digits) + "\n"
    if lodopab:
        text += _lodopab_text(lodopab)
    record = {"machine": info, "command": sys.argv, "training": training, "projector": projector, "lodopab": lodopab}
    publish(stem, record, text)


if __name__ == "__main__":
    main()
