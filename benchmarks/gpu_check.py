"""Correctness on a CUDA device: every operator, solver and model gives there what it gives on the CPU.

Usage: python benchmarks/gpu_check.py [--device cuda]
Writes benchmarks/results/gpu-check-<gpu>.json and .md. Each row is one check with its measured value,
its tolerance and whether it passed; a check that raises is recorded as failed with the error, and the
script exits non-zero if any check failed. The tests never need a GPU; this script is how a lent one is used.

Checks (random inputs drawn afresh per check):
- operators: the dot-product test ``|<A x, y> − <x, A* y>| / (‖A x‖ ‖y‖)`` on the device, and the relative
  difference ``‖A_dev x − A_cpu x‖ / ‖A_cpu x‖`` (and for ``A*``), in float64 and float32 (the ray transforms
  also with the matrix-free backend, whose CPU results are the CSR backend's: tests/test_matrix_free.py);
- FBP of noiseless Shepp–Logan data: PSNR on the device against the CPU's;
- solvers (CGLS, Landweber, FISTA with wavelets, TV by PDHG) in float64: device against CPU, within ten times
  the CPU's own change under a rounding-level (1e-15) perturbation of the data;
- every model in float64: output and parameter gradients, device against CPU; bfloat16 autocast runs finite;
- the shipped checkpoints: PSNR on held-out ellipses, device against CPU;
- training: a few steps on the device, and the out-of-memory error's message.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path

import torch
from results_file import provenance, publish

from learnrecon import metrics, phantoms
from learnrecon.data.simulate import measure
from learnrecon.models import SMALL_PARAMS, build_model, pretrained, pretrained_names
from learnrecon.operators import FiniteDifference2D, ParallelBeam2D, subset
from learnrecon.operators.base import adjoint_mismatch
from learnrecon.operators.blur import Blur, gaussian_kernel
from learnrecon.operators.mri import MRI, cartesian_mask, gaussian_coil_maps
from learnrecon.operators.registry import build_operator, make_operator
from learnrecon.operators.wavelet import Wavelet2D
from learnrecon.report import machine_info, markdown_table
from learnrecon.solvers import cgls, fbp, fista, landweber, tv_pdhg


class Checks:
    """Collects rows ``{check, value, tolerance, passed, note}``."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, check: str, value: float, tolerance: float, note: str = "", larger_is_worse: bool = True) -> None:
        passed = math.isfinite(value) and (value <= tolerance if larger_is_worse else value >= tolerance)
        self.rows.append({"check": check, "value": value, "tolerance": tolerance, "passed": passed, "note": note})
        print(f"{'ok  ' if passed else 'FAIL'} {check}: {value:.3g} (tolerance {tolerance:g}) {note}", flush=True)

    def run(self, name: str, fn, *args) -> None:
        """Run ``fn(self, *args)``; an exception becomes a failed row."""
        try:
            fn(self, *args)
        except Exception as err:  # noqa: BLE001 - every failure is recorded, the other checks go on
            traceback.print_exc()
            self.rows.append({"check": name, "value": float("nan"), "tolerance": float("nan"), "passed": False,
                              "note": f"{type(err).__name__}: {err}"[:300]})  # fmt: skip


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a − b‖ / ‖b‖`` computed on the CPU in float64."""
    a, b = a.detach().cpu().to(torch.complex128 if a.is_complex() else torch.float64), b.detach().cpu()
    b = b.to(a.dtype)
    return float((a - b).abs().norm() / b.abs().norm())


def random(shape, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """Standard normal ``(2, 1, *shape)`` of ``dtype`` (real or complex), drawn in double precision."""
    wide = torch.complex128 if dtype.is_complex else torch.float64
    return torch.randn((2, 1, *shape), generator=gen, dtype=wide).to(dtype)


def operators() -> dict:
    """One operator of every family, by name."""
    parallel = ParallelBeam2D(128, 30, n_detectors=183)
    mask = cartesian_mask((64, 64), 4, seed=1)
    return {
        "parallel 128², 30 angles": parallel,
        "fan 128², 30 angles": make_operator("fan", 128, 30),
        "parallel subset (10 of 30 angles)": subset(parallel, list(range(0, 30, 3))),
        "parallel 128², 30 angles, matrix-free": ParallelBeam2D(128, 30, n_detectors=183, backend="matrix_free"),
        "fan 128², 30 angles, matrix-free": build_operator(
            {**make_operator("fan", 128, 30).config(), "backend": "matrix_free"}
        ),
        "MRI single-coil 64², 4×": MRI(mask),
        "MRI 4 coils 64², 4×": MRI(mask, gaussian_coil_maps(4, (64, 64))),
        "blur (zero boundary) 64²": Blur(gaussian_kernel(2.0), 64),
        "blur (periodic) 64²": Blur(gaussian_kernel(2.0), 64, boundary="periodic"),
        "finite differences 64²": FiniteDifference2D(64),
        "wavelet db2 64²": Wavelet2D(64),
    }


def check_operator(c: Checks, name: str, op, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    for dtype, tol_dot, tol_cpu in ((torch.float64, 1e-12, 1e-12), (torch.float32, 1e-5, 1e-5)):
        x, y = random(op.domain_shape, dtype, gen), random(op.range_shape, dtype, gen)
        x = x.to(x.dtype.to_complex()) if op.domain_complex else x
        y = y.to(y.dtype.to_complex()) if op.range_complex else y
        x_dev, y_dev = x.to(device), y.to(device)
        ax, aty = op(x_dev), op.H(y_dev)
        assert ax.device.type == device.type and aty.device.type == device.type, "result left the device"
        bits = str(dtype).removeprefix("torch.")
        c.add(f"{name}: adjoint mismatch on the device ({bits})", adjoint_mismatch(op, x_dev, y_dev), tol_dot)
        c.add(f"{name}: A x device vs CPU ({bits})", rel(ax, op(x)), tol_cpu)
        c.add(f"{name}: A* y device vs CPU ({bits})", rel(aty, op.H(y)), tol_cpu)


def check_fbp(c: Checks, device: torch.device) -> None:
    op = ParallelBeam2D(128, 180, n_detectors=183)
    x = phantoms.shepp_logan(128, dtype=torch.float32)[None, None]
    y = op(x)
    on_cpu = float(metrics.psnr(fbp(y, op), x, data_range=1.0))
    on_dev = float(metrics.psnr(fbp(y.to(device), op).cpu(), x, data_range=1.0))
    c.add("FBP of Shepp–Logan 128², 180 angles: |PSNR device − CPU| (dB)", abs(on_dev - on_cpu), 0.01,
          f"device {on_dev:.2f} dB, CPU {on_cpu:.2f} dB")  # fmt: skip


def check_solvers(c: Checks, device: torch.device) -> None:
    """Device against CPU, with the tolerance set by the solver's own sensitivity to rounding: CGLS, for one,
    amplifies a 1e-16 relative change of ``y`` to 2e-9 after 10 iterations and 8e-4 after 30 on this problem
    (measured on the CPU), so summing in another order on the device moves it as much."""
    op = ParallelBeam2D(64, 20)
    x = phantoms.shepp_logan(64)[None, None]
    y = measure(op, x, "relative:0.02", seed=0)
    nudged = y * (1 + 1e-15 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype))
    runs = {
        "CGLS 10 iterations": lambda y: cgls(y, op, n_iter=10),
        "CGLS 30 iterations": lambda y: cgls(y, op, n_iter=30),
        "Landweber 50 iterations": lambda y: landweber(y, op, n_iter=50),
        "FISTA db2 wavelets 50 iterations": lambda y: fista(y, op, lam=1e-3, n_iter=50, wavelet="db2"),
        "TV by PDHG 100 iterations": lambda y: tv_pdhg(y, op, lam=0.02, n_iter=100),
    }
    for name, solve in runs.items():
        on_cpu = solve(y)
        sensitivity = rel(solve(nudged), on_cpu)
        c.add(f"{name} (float64): device vs CPU", rel(solve(y.to(device)), on_cpu), max(1e-9, 10 * sensitivity),
              f"the CPU's own change when y moves by 1e-15 (relative): {sensitivity:.1e}")  # fmt: skip


def check_model(c: Checks, name: str, device: torch.device) -> None:
    op = ParallelBeam2D(64, 20)
    x = phantoms.random_ellipses(2, 64, seed=3, dtype=torch.float64)
    y = measure(op, x, "relative:0.05", seed=3)
    torch.manual_seed(0)
    model = build_model(name, SMALL_PARAMS[name], op=op).double()
    with torch.no_grad():  # perturbed weights: no zero-initialised layer hides a difference
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    outputs, grads = {}, {}
    for where in ("cpu", device):
        model.to(where).zero_grad()
        out = model(y.to(where), op)
        torch.nn.functional.mse_loss(out, x.to(where)).backward()
        outputs[str(where)] = out.detach().cpu()
        grads[str(where)] = torch.cat([p.grad.flatten().cpu() for p in model.parameters() if p.grad is not None])
    dev = str(device)
    c.add(f"model {name} (float64): output device vs CPU", rel(outputs[dev], outputs["cpu"]), 1e-9)
    c.add(f"model {name} (float64): gradients device vs CPU", rel(grads[dev], grads["cpu"]), 1e-7)
    model.float().to(device)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        low = model(y.float().to(device), op).float()
    c.add(f"model {name}: bfloat16 autocast vs float64 output", rel(low, outputs["cpu"]), 5e-2)


def check_pretrained(c: Checks, name: str, device: torch.device) -> None:
    model = pretrained(name)
    op = ParallelBeam2D(128, 30, n_detectors=183)
    x = phantoms.random_ellipses(8, 128, seed=2)
    y = measure(op, x, "relative:0.05", seed=2)
    with torch.no_grad():
        on_cpu = float(metrics.psnr(model(y, op), x, data_range=1.0).mean())
        model.to(device)
        on_dev = float(metrics.psnr(model(y.to(device), op).cpu(), x, data_range=1.0).mean())
    c.add(f"shipped {name}: |PSNR device − CPU| on 8 ellipses (dB)", abs(on_dev - on_cpu), 0.01,
          f"device {on_dev:.2f} dB, CPU {on_cpu:.2f} dB")  # fmt: skip


def check_training(c: Checks, device: torch.device) -> None:
    from learnrecon.config import from_dict
    from learnrecon.training import Trainer, TrainingError

    small = {
        "model": {"name": "lpd", "params": SMALL_PARAMS["lpd"]},
        "data": {"operator": {"type": "ParallelBeam2D", "image_size": 64, "n_angles": 20}, "n_validation": 2},
        "training": {"steps": 20, "batch_size": 4, "validate_every": 10, "checkpoint_every": 10, "device": str(device),
                     "amp": True, "num_workers": 2},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        summary = Trainer.from_config(from_dict(small), Path(tmp) / "run", progress=False).train()
        losses = torch.tensor(summary["losses"])
        first, last = float(losses[0]), float(losses[-1])
        c.add("training 20 steps on the device (bf16 autocast, 2 workers): last/first loss", last / first, 1.0,
              f"losses {first:.3g} → {last:.3g}")  # fmt: skip
        small["training"].update(batch_size=256, amp=False, num_workers=0)
        torch.cuda.empty_cache()  # then allow 64 MiB more than is held: batch 256 needs several times that
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved(device) + 2**26) / total, device)
        try:
            Trainer.from_config(from_dict(small), Path(tmp) / "oom", progress=False).train(until=1)
            message = ""
        except TrainingError as err:
            message = str(err)
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, device)
        ok = "out of GPU memory" in message and "batch_size" in message
        c.add("out-of-memory error names batch size (1 = yes)", float(ok), 1.0, message[:120], larger_is_worse=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type != "cuda" or not torch.cuda.is_available():
        print("gpu_check needs a CUDA device", file=sys.stderr)
        return 2
    device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    start = time.perf_counter()
    c = Checks()
    for name, op in operators().items():
        c.run(name, check_operator, name, op, device)
    c.run("FBP", check_fbp, device)
    c.run("solvers", check_solvers, device)
    for name in SMALL_PARAMS:
        c.run(f"model {name}", check_model, name, device)
    for name in pretrained_names():
        c.run(f"shipped {name}", check_pretrained, name, device)
    c.run("training", check_training, device)
    info = machine_info(device)
    failed = [r for r in c.rows if not r["passed"]]
    tag = info["gpu"].replace(" ", "-")
    seconds = time.perf_counter() - start
    shown = [{**r, "value": f"{r['value']:.3g}", "tolerance": f"{r['tolerance']:g}"} for r in c.rows]
    table = markdown_table(shown, ["check", "value", "tolerance", "passed", "note"])
    text = (
        f"# Correctness on {info['gpu']}: device against CPU\n\n{provenance(info)} "
        f"{len(c.rows) - len(failed)} of {len(c.rows)} checks passed in {seconds:.0f} s.\n\n{table}"
    )
    publish(f"gpu-check-{tag}", {"machine": info, "seconds": seconds, "rows": c.rows}, text)
    print(f"{len(c.rows) - len(failed)} of {len(c.rows)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
