"""Run a benchmark preset: simulate data, tune the classical baselines, evaluate, write the report.

Output folder (written to a temporary folder and renamed when complete)::

    report.md      the table, the tuned parameters, the machine, the figures
    results.json   every number in the report, plus per-image metrics
    figures/       reconstructions.png (grid with error maps), psnr.png, ssim.png
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from learnrecon import metrics, phantoms
from learnrecon.benchmark.presets import Preset
from learnrecon.data.simulate import measure
from learnrecon.errors import DataFileError
from learnrecon.operators.tomography import ParallelBeam2D
from learnrecon.report import machine_info, markdown_table, metric_bars, reconstruction_grid, write_json
from learnrecon.solvers import fbp, tv_pdhg

__all__ = ["EvalSet", "Method", "run_benchmark"]

#: Reconstruction method: measurements (B, 1, *range) -> images (B, 1, H, W).
Method = Callable[[torch.Tensor], torch.Tensor]


class EvalSet(NamedTuple):
    """Named truth/measurement pairs: ``x`` (n, 1, H, W), ``y`` (n, 1, n_angles, n_detectors)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor


def make_eval_sets(preset: Preset, op: ParallelBeam2D) -> tuple[EvalSet, list[EvalSet]]:
    """The validation set (ellipses, seed+1) and the test sets (Shepp–Logan; ellipses, seed+2)."""
    size = preset.image_size

    def ellipses(n: int, seed: int) -> torch.Tensor:
        return phantoms.random_ellipses(n, size, seed=seed).float()

    x_val = ellipses(preset.n_validation, preset.seed + 1)
    x_sl = phantoms.shepp_logan(size).float().reshape(1, 1, size, size)
    x_test = ellipses(preset.n_test, preset.seed + 2)
    validation = EvalSet("validation ellipses", x_val, measure(op, x_val, preset.noise, preset.seed + 1))
    tests = [
        EvalSet("Shepp–Logan", x_sl, measure(op, x_sl, preset.noise, preset.seed + 3)),
        EvalSet("ellipses", x_test, measure(op, x_test, preset.noise, preset.seed + 2)),
    ]
    return validation, tests


def reconstruct(method: Method, y: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Apply ``method`` to ``y`` in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([method(y[i : i + batch_size]) for i in range(0, y.shape[0], batch_size)])


def tune_tv(preset: Preset, op: ParallelBeam2D, validation: EvalSet, progress: bool = True) -> tuple[float, list[dict]]:
    """The TV weight maximising mean validation PSNR: the coarse grid, then 4 points around its best.

    Returns the best λ and the table of every λ tried with its mean PSNR.
    """
    tried: dict[float, float] = {}

    def score(lam: float) -> float:
        if lam not in tried:
            x_hat = reconstruct(lambda y: tv_pdhg(y, op, lam=lam, n_iter=preset.tv_iterations), validation.y)
            tried[lam] = float(metrics.psnr(x_hat, validation.x).mean())
        return tried[lam]

    coarse = list(preset.tv_lambdas)
    bar = tqdm(total=len(coarse) + 4, desc="tuning TV λ", disable=not progress)
    for lam in coarse:
        score(lam)
        bar.update()
    best = max(tried, key=tried.get)
    ratio = math.sqrt(coarse[1] / coarse[0]) if len(coarse) > 1 else 2.0
    for factor in (1 / ratio, ratio**-0.5, ratio**0.5, ratio):
        score(best * factor)
        bar.update()
    bar.close()
    best = max(tried, key=tried.get)
    return best, [{"lambda": lam, "mean PSNR": psnr} for lam, psnr in sorted(tried.items())]


def evaluate(methods: dict[str, Method], tests: list[EvalSet], progress: bool = True) -> dict:
    """Per method and test set: reconstructions, per-image PSNR/SSIM, their means and time per image."""
    results: dict = {}
    for name, method in tqdm(methods.items(), desc="evaluating", disable=not progress):
        results[name] = {}
        for test in tests:
            start = time.perf_counter()
            x_hat = reconstruct(method, test.y)
            seconds = time.perf_counter() - start
            psnr = metrics.psnr(x_hat, test.x).reshape(-1)
            ssim = metrics.ssim(x_hat, test.x).reshape(-1)
            results[name][test.name] = {
                "psnr": float(psnr.mean()),
                "psnr_std": float(psnr.std()) if psnr.numel() > 1 else 0.0,
                "ssim": float(ssim.mean()),
                "ms_per_image": 1000 * seconds / test.y.shape[0],
                "psnr_per_image": psnr.tolist(),
                "ssim_per_image": ssim.tolist(),
                "reconstruction": x_hat,
            }
    return results


def run_benchmark(preset: Preset, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Run ``preset`` and write its report into ``out``; returns the results (without images)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataFileError(f"benchmark folder {out} already exists; choose another --out or pass --overwrite")
    op = ParallelBeam2D(preset.image_size, preset.n_angles, n_detectors=preset.n_detectors)
    validation, tests = make_eval_sets(preset, op)
    lam, tv_grid = tune_tv(preset, op, validation, progress)
    methods: dict[str, Method] = {
        f"FBP ({preset.fbp_filter})": lambda y: fbp(y, op, filter=preset.fbp_filter),
        "TV": lambda y: tv_pdhg(y, op, lam=lam, n_iter=preset.tv_iterations),
    }
    results = evaluate(methods, tests, progress)
    summary = {
        "preset": asdict(preset),
        "machine": machine_info(),
        "tuned": {"TV": {"lambda": lam, "grid": tv_grid}},
        "results": {
            m: {t: {k: v for k, v in r.items() if k != "reconstruction"} for t, r in res.items()}
            for m, res in results.items()
        },
    }
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_outputs(tmp, preset, tests, results, summary)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def results_table(summary: dict) -> str:
    """The Markdown table of mean PSNR/SSIM per test set and time per image."""
    rows = []
    for method, per_set in summary["results"].items():
        row = {"method": method}
        for test, r in per_set.items():
            row[f"{test} PSNR"] = r["psnr"]
            row[f"{test} SSIM"] = r["ssim"]
        row["ms / image"] = max(r["ms_per_image"] for r in per_set.values())
        rows.append(row)
    columns = list(rows[0])
    return markdown_table(rows, columns, digits={c: 3 for c in columns if c.endswith("SSIM")} | {"ms / image": 1})


def _write_outputs(folder: Path, preset: Preset, tests: list[EvalSet], results: dict, summary: dict) -> None:
    figures = folder / "figures"
    figures.mkdir(parents=True)
    write_json(folder / "results.json", summary)
    shown = [(t, i) for t in tests for i in range(min(2, t.x.shape[0]))]
    recon = {m: [results[m][t.name]["reconstruction"][i] for t, i in shown] for m in results}
    captions = {
        m: [
            f"{results[m][t.name]['psnr_per_image'][i]:.2f} dB / {results[m][t.name]['ssim_per_image'][i]:.3f}"
            for t, i in shown
        ]
        for m in results
    }
    reconstruction_grid(
        figures / "reconstructions.png",
        [t.x[i] for t, i in shown],
        recon,
        [f"{t.name} {i}" if t.x.shape[0] > 1 else t.name for t, i in shown],
        captions,
    )
    for metric in ("psnr", "ssim"):
        values = {t.name: {m: results[m][t.name][metric] for m in results} for t in tests}
        metric_bars(figures / f"{metric}.png", values, metric.upper())
    (folder / "report.md").write_text(_report_markdown(preset, summary))


def _report_markdown(preset: Preset, summary: dict) -> str:
    machine = summary["machine"]
    tv = summary["tuned"]["TV"]
    return (
        f"# learnrecon benchmark: preset `{preset.name}`\n\n{preset.description}.\n\n"
        f"## Results (mean over each test set)\n\n{results_table(summary)}\n"
        f"TV: isotropic TV by PDHG, {preset.tv_iterations} iterations, non-negativity, "
        f"λ = {tv['lambda']:.4g} chosen by "
        f"mean PSNR on {preset.n_validation} validation ellipses (seed {preset.seed + 1}).\n\n"
        f"{markdown_table(tv['grid'], ['lambda', 'mean PSNR'], digits={'lambda': 4})}\n"
        "## Figures\n\n![reconstructions](figures/reconstructions.png)\n\n![PSNR](figures/psnr.png)\n\n"
        "![SSIM](figures/ssim.png)\n\n"
        f"## Machine\n\n{machine['platform']}, {machine['cpu_count']} CPUs, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), learnrecon {machine['learnrecon']}, device {machine['device']}.\n"
    )
