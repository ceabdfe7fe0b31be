"""The classical baselines on the LGD/LPD ellipse setup: each method tuned on validation data, then tested.

Setup (REFERENCES.md): 128² images, parallel beam, 30 angles in [0, π), 183 detectors, white Gaussian
noise σ = 0.05·mean|Ax| per image. Test sets: the modified Shepp–Logan phantom and held-out random
ellipses as the quick preset draws them (Adler & Öktem's raw sums, values of either sign; TV is
constrained to x ≥ 0 on Shepp–Logan only). Every parameter (α, λ, iteration counts) is tuned by mean
PSNR on validation data of the same kind (another noise draw of Shepp–Logan; ellipses with another seed);
Landweber stops by the discrepancy principle with the true noise norm δ = σ·√m instead.

Usage: python benchmarks/classical.py [--n-test 16] [--n-validation 4]
Writes benchmarks/results/classical.md and classical.json.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from results_file import provenance, publish

from learnrecon import metrics
from learnrecon.benchmark import PRESETS, EvalSet, make_tasks, tune_log_grid
from learnrecon.evaluation import predict
from learnrecon.operators import ParallelBeam2D
from learnrecon.report import machine_info, markdown_table
from learnrecon.solvers import cgls, fbp, fista, landweber, sart, tikhonov, tv_pdhg


def noise_norms(op: ParallelBeam2D, x: torch.Tensor, relative: float) -> torch.Tensor:
    """δ_i = σ_i·√m with σ_i = relative·mean|A x_i|: the expected norm of each sample's noise."""
    clean = op(x).flatten(1)
    return relative * clean.abs().mean(dim=1) * math.sqrt(clean.shape[1])


def methods(op: ParallelBeam2D, nonneg: bool) -> dict[str, tuple]:
    """name -> (solver(y, value) -> x, parameter name, coarse log grid, bounds of the parameter).

    Parameters named "n_iter" or "sweeps" are integers."""
    return {
        "FBP (Hann)": (
            lambda y, v: fbp(y, op, filter="hann", frequency_scaling=v),
            "frequency_scaling",
            (0.25, 0.5, 1.0),
            (0.05, 1.0),
        ),
        "Tikhonov (CG)": (
            lambda y, v: tikhonov(y, op, alpha=v, n_iter=300),
            "alpha",
            (10.0, 100.0, 1000.0),
            (0.0, math.inf),
        ),
        "CGLS (early stopping)": (lambda y, v: cgls(y, op, n_iter=int(v)), "n_iter", (2.0, 4.0, 8.0, 16.0), (1, 200)),
        "SART (10 subsets)": (
            lambda y, v: sart(y, op, n_iter=int(v), n_subsets=10),
            "sweeps",
            (1.0, 2.0, 4.0, 8.0),
            (1, 100),
        ),
        "FISTA-wavelet (db2)": (
            lambda y, v: fista(y, op, lam=v, wavelet="db2", n_iter=300),
            "lambda",
            (1.0, 10.0, 100.0),
            (0.0, math.inf),
        ),
        "TV anisotropic (PDHG, 1000 it.)": (
            lambda y, v: tv_pdhg(y, op, lam=v, n_iter=1000, isotropic=False, nonneg=nonneg),
            "lambda",
            (0.3, 1.0, 3.0, 10.0, 30.0),
            (0.0, math.inf),
        ),
        "TV isotropic (PDHG, 1000 it.)": (
            lambda y, v: tv_pdhg(y, op, lam=v, n_iter=1000, nonneg=nonneg),
            "lambda",
            (0.3, 1.0, 3.0, 10.0, 30.0),
            (0.0, math.inf),
        ),
    }


def evaluate(solve, test: EvalSet, op) -> dict:
    start = time.perf_counter()
    x_hat = predict(lambda y, op: solve(y), test.y, op)
    seconds = (time.perf_counter() - start) / test.y.shape[0]
    return {
        "psnr": float(metrics.psnr(x_hat, test.x).mean()),
        "ssim": float(metrics.ssim(x_hat, test.x).mean()),
        "ms_per_image": 1000 * seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--n-validation", type=int, default=4)
    args = parser.parse_args()
    preset = PRESETS["quick"]
    overrides = {"n_test": args.n_test, "n_validation": args.n_validation}
    preset = type(preset)(**{**preset.__dict__, **overrides})
    op = preset.operator()
    relative = float(preset.noise.split(":")[1])
    rows, record = [], {"machine": machine_info(), "setup": preset.__dict__, "results": {}}
    for task in make_tasks(preset, op):
        # TV imposes x ≥ 0 only where the validation images satisfy it (Shepp–Logan, not the raw ellipses).
        nonneg = bool((task.validation.x >= 0).all())
        for name, (solve, param, grid, bounds) in methods(op, nonneg).items():

            def score(value, solve=solve, validation=task.validation):
                x_hat = predict(lambda y, op: solve(y, value), validation.y, op)
                return float(metrics.psnr(x_hat, validation.x).mean())

            integer = param in ("n_iter", "sweeps")
            best, tried = tune_log_grid(
                score, grid, f"{name} on {task.validation.name}", bounds=bounds, integer=integer
            )
            result = evaluate(lambda y, solve=solve, best=best: solve(y, best), task.test, op)
            result.update(parameter=param, value=best, grid=tried)
            record["results"].setdefault(name, {})[task.test.name] = result
        # Landweber: no tuning, the discrepancy principle with the true noise level.
        delta = noise_norms(op, task.test.x, relative)
        start = time.perf_counter()
        info = landweber(task.test.y, op, n_iter=5000, delta=delta.reshape(-1), return_info=True)
        seconds = (time.perf_counter() - start) / task.test.y.shape[0]
        record["results"].setdefault("Landweber + discrepancy", {})[task.test.name] = {
            "psnr": float(metrics.psnr(info.x, task.test.x).mean()),
            "ssim": float(metrics.ssim(info.x, task.test.x).mean()),
            "ms_per_image": 1000 * seconds,
            "parameter": "iterations (τ = 1.02)",
            "value": info.n_iter,
        }
    for name, per_set in record["results"].items():
        row = {"method": name}
        for test, r in per_set.items():
            row[f"{test} PSNR"], row[f"{test} SSIM"] = r["psnr"], r["ssim"]
            row[f"{test} parameter"] = f"{r['parameter']} = {r['value']:.4g}"
        row["ms / image (ellipses, batch 16)"] = per_set["ellipses"]["ms_per_image"]
        rows.append(row)
    columns = list(rows[0])
    text = (
        "# Classical baselines, LGD/LPD ellipse setup\n\n"
        f"128², 30 angles, 183 detectors, 5 % relative Gaussian noise; Shepp–Logan and {args.n_test} held-out "
        "ellipses (the quick preset's raw ellipses, values of either sign; TV with x ≥ 0 on Shepp–Logan only); "
        f"parameters tuned by mean PSNR on validation data of the same kind ({args.n_validation} ellipses; "
        "another noise draw of Shepp–Logan). Landweber stops by the discrepancy principle (τ = 1.02, true δ).\n\n"
        + markdown_table(rows, columns, digits={c: 3 for c in columns if c.endswith("SSIM")})
        + f"\n{provenance(record['machine'])}\n"
    )
    publish("classical", record, text)


if __name__ == "__main__":
    main()
