"""Robustness sweeps: every method of a preset against the noise level and against the number of angles, the
shipped models used as shipped (trained at one point of each sweep), with the range where each stays above TV.

At each point the data are simulated again (Shepp–Logan and ``n_test`` held-out ellipses, the noise ``relative:
level``, the angles uniform in [0, π)); TV's weight is tuned at that point on ``n_validation`` validation ellipses
(isotropic, a log grid with ``tv_tuning_iterations`` PDHG iterations, no sign constraint when the ellipses take
either sign), FBP keeps the preset's filter. Output (beside the benchmark's usual files)::

    report.md, results.json    the PSNR tables per sweep and test set, the ranges above TV, the tuned λ
    figures/sweep-noise.png, figures/sweep-angles.png    PSNR curves, the training point marked
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from tqdm.auto import tqdm

from learnrecon import phantoms
from learnrecon.benchmark.methods import PRETRAINED_LABELS, trained_elsewhere
from learnrecon.benchmark.presets import Preset
from learnrecon.benchmark.tasks import EvalSet
from learnrecon.benchmark.tuning import mean_psnr
from learnrecon.data.simulate import simulate_pairs
from learnrecon.models.hub import pretrained
from learnrecon.operators.fbp import fbp
from learnrecon.report import machine_info, markdown_table, write_json
from learnrecon.report.figures import plt
from learnrecon.solvers import tv_pdhg

__all__ = ["above", "run_sweeps", "write_sweep_report"]


def _sets(preset: Preset, op, noise: str) -> tuple[EvalSet, list[EvalSet]]:
    """The validation ellipses and the test sets (Shepp–Logan, held-out ellipses) of one sweep point."""

    def ellipses(n: int, seed: int):
        return lambda shape: phantoms.draw_ellipses(
            preset.phantom, n=n, size=shape, seed=seed, scaling=preset.ellipse_scaling
        )

    def shepp_logan(shape):
        return phantoms.shepp_logan(shape).float()[None, None]

    validation = EvalSet(
        "validation ellipses",
        *simulate_pairs(ellipses(preset.n_validation, preset.seed + 1), op, noise, seed=preset.seed + 1),
    )
    tests = [
        EvalSet("Shepp–Logan", *simulate_pairs(shepp_logan, op, noise, seed=preset.seed + 3)),
        EvalSet("ellipses", *simulate_pairs(ellipses(preset.n_test, preset.seed + 2), op, noise, seed=preset.seed + 2)),
    ]
    return validation, tests


def _tune_tv(preset: Preset, op, validation: EvalSet) -> float:
    nonneg = bool((validation.x >= 0).all())
    scores = {
        lam: mean_psnr(
            lambda y, op, lam=lam: tv_pdhg(y, op, lam=lam, n_iter=preset.tv_tuning_iterations, nonneg=nonneg),
            validation,
            op,
        )
        for lam in preset.tv_lambdas
    }
    return max(scores, key=scores.get)


def run_sweeps(preset: Preset, progress: bool = True) -> dict:
    """Every method at every point of ``preset.sweep_noise`` (at ``preset.n_angles``) and ``preset.sweep_angles``
    (at ``preset.noise``); returns the results (mean PSNR/SSIM per method, point and test set)."""
    models = {PRETRAINED_LABELS.get(name, name): pretrained(name) for name in preset.pretrained}
    base_noise = float(preset.noise.partition(":")[2])
    points = [("noise", level, replace(preset, noise=f"relative:{level}")) for level in preset.sweep_noise]
    points += [("angles", n, replace(preset, n_angles=n)) for n in preset.sweep_angles]
    sweeps: dict = {"noise": [], "angles": []}
    for kind, value, point in tqdm(points, desc="robustness sweeps", disable=not progress):
        start = time.perf_counter()
        op = point.operator()
        validation, tests = _sets(point, op, point.noise)
        lam = _tune_tv(point, op, validation)
        nonneg = bool((validation.x >= 0).all())
        methods = {
            f"FBP ({preset.fbp_filter})": lambda y, op: fbp(y, op, preset.fbp_filter),
            "TV": lambda y, op, lam=lam, nonneg=nonneg: tv_pdhg(
                y, op, lam=lam, n_iter=preset.tv_iterations, nonneg=nonneg
            ),
            **models,
        }
        scores = {
            label: {test.name: mean_psnr(method, test, op) for test in tests} for label, method in methods.items()
        }
        notes = {label: trained_elsewhere(model.provenance, op) for label, model in models.items()}
        sweeps[kind].append(
            {"value": value, "tv_lambda": lam, "psnr": scores, "seconds": time.perf_counter() - start, "notes": notes}
        )
    training = {"noise": base_noise, "angles": preset.n_angles}
    ranges = {
        kind: {label: {test: above(rows, label, test) for test in ("Shepp–Logan", "ellipses")} for label in models}
        for kind, rows in sweeps.items()
        if rows
    }
    return {
        "preset": asdict(preset),
        "machine": machine_info(),
        "training_point": training,
        "sweeps": sweeps,
        "above_tv": ranges,
    }


def above(rows: list[dict], label: str, test: str, reference: str = "TV") -> list:
    """The sweep values at which ``label``'s mean PSNR on ``test`` exceeds ``reference``'s."""
    return [row["value"] for row in rows if row["psnr"][label][test] > row["psnr"][reference][test]]


def _figure(path: Path, kind: str, rows: list[dict], training: float) -> Path:
    tests = list(next(iter(rows[0]["psnr"].values())))
    fig, axes = plt.subplots(1, len(tests), figsize=(5.2 * len(tests), 3.8), squeeze=False)
    values = [100 * r["value"] if kind == "noise" else r["value"] for r in rows]
    for ax, test in zip(axes[0], tests, strict=True):
        for label in rows[0]["psnr"]:
            ax.plot(values, [r["psnr"][label][test] for r in rows], marker="o", label=label)
        ax.axvline(100 * training if kind == "noise" else training, color="gray", ls="--", lw=1, label="training point")
        ax.set_xscale("log")
        ax.set_xlabel("relative noise (%)" if kind == "noise" else "angles")
        ax.set_ylabel("mean PSNR (dB)")
        ax.set_title(test)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_sweep_report(folder: Path, summary: dict) -> None:
    """``report.md``, ``results.json`` and the sweep figures in ``folder``."""
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    preset = summary["preset"]
    lines = [
        f"# Robustness sweeps ({preset['name']} preset)\n",
        f"{preset['description']}.\n",
        f"Machine: {summary['machine'].get('platform')}, {summary['machine'].get('cpu_count')} CPUs, "
        f"torch {summary['machine'].get('torch')} ({summary['machine'].get('torch_threads')} threads). "
        f"Command: `learnrecon benchmark --preset {preset['name']}`.\n",
    ]
    for kind, rows in summary["sweeps"].items():
        if not rows:
            continue
        training = summary["training_point"][kind]
        unit = "relative noise" if kind == "noise" else "angles"
        _figure(folder / "figures" / f"sweep-{kind}.png", kind, rows, training)
        lines.append(f"## Against {unit} (the shipped models were trained at {training:g})\n")
        for test in ("Shepp–Logan", "ellipses"):
            columns = ["method"] + [f"{r['value']:g}" for r in rows]
            table = [
                {"method": label, **{f"{r['value']:g}": r["psnr"][label][test] for r in rows}}
                for label in rows[0]["psnr"]
            ]
            lines.append(f"Mean PSNR (dB) on {test}:\n\n{markdown_table(table, columns)}")
        lines.append("TV's λ at each point: " + ", ".join(f"{r['value']:g}: {r['tv_lambda']:g}" for r in rows) + ".\n")
        lines.append(f"Where each learned model is above TV ({unit}):\n")
        for label, ranges in summary["above_tv"][kind].items():
            parts = [f"{test}: {', '.join(f'{v:g}' for v in values) or 'nowhere'}" for test, values in ranges.items()]
            lines.append(f"- {label}: {'; '.join(parts)}")
        lines.append(f"\n![PSNR against {unit}](figures/sweep-{kind}.png)\n")
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    write_json(folder / "results.json", summary)
