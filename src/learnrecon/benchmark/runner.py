"""Run a benchmark preset: simulate data, tune the classical baselines, evaluate, write the report.

Output folder (written to a temporary folder and renamed when complete)::

    report.md      the table, the tuned parameters, the machine, the figures
    results.json   every number in the report, plus per-image metrics
    figures/       reconstructions.png (grid with error maps), psnr.png, ssim.png, training.png
    training/      the run of the model trained from scratch (checkpoints, CSV logs, figures)

Methods: FBP and TV (tuned on validation data of each kind), the shipped pretrained models, and a
model trained from scratch for a few minutes (labelled as such; it shows the trainer at work and is
not expected to compete with the shipped weights).
"""

from __future__ import annotations

import contextlib
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
from learnrecon.data.simulate import finer_operator, simulate_pairs
from learnrecon.errors import DataFileError
from learnrecon.io.checkpoint import load_checkpoint, training_history
from learnrecon.operators.registry import operator_config
from learnrecon.operators.tomography import ParallelBeam2D
from learnrecon.report import (
    machine_info,
    markdown_table,
    metric_bars,
    reconstruction_grid,
    training_curve,
    write_html_report,
    write_json,
)
from learnrecon.solvers import fbp, tv_pdhg

__all__ = ["EvalSet", "Method", "Task", "run_benchmark"]

#: Reconstruction method: measurements (B, 1, *range) -> images (B, 1, H, W).
Method = Callable[[torch.Tensor], torch.Tensor]


class EvalSet(NamedTuple):
    """Named truth/measurement pairs: ``x`` (n, 1, H, W), ``y`` (n, 1, n_angles, n_detectors)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor


class Task(NamedTuple):
    """A test set and the validation set of the same kind that tunes the methods' parameters for it."""

    validation: EvalSet
    test: EvalSet


def make_tasks(preset: Preset, op: ParallelBeam2D) -> list[Task]:
    """Shepp–Logan (validated on another noise draw of itself) and held-out ellipses (validated on
    ellipses with another seed). The relative noise has a different absolute level on each kind of
    image, so each test set gets its own regularisation parameters. With ``preset.simulation_size`` the
    data are simulated on that finer grid (see ``preset.simulation_upsampling``)."""
    sim_op = finer_operator(op, preset.simulation_size) if preset.simulation_size else None

    def shepp_logan(shape: tuple[int, int]) -> torch.Tensor:
        return phantoms.shepp_logan(shape).float()[None, None]

    def ellipses(n: int, seed: int) -> Callable[[tuple[int, int]], torch.Tensor]:
        return lambda size: phantoms.draw_ellipses(
            preset.phantom, n=n, size=size, seed=seed, scaling=preset.ellipse_scaling
        )

    def eval_set(name: str, render: Callable[[tuple[int, int]], torch.Tensor], noise_seed: int) -> EvalSet:
        pairs = simulate_pairs(
            render, op, preset.noise, seed=noise_seed, simulation_op=sim_op, upsampling=preset.simulation_upsampling
        )
        return EvalSet(name, *pairs)

    return [
        Task(
            eval_set("Shepp–Logan (validation noise)", shepp_logan, preset.seed + 4),
            eval_set("Shepp–Logan", shepp_logan, preset.seed + 3),
        ),
        Task(
            eval_set("validation ellipses", ellipses(preset.n_validation, preset.seed + 1), preset.seed + 1),
            eval_set("ellipses", ellipses(preset.n_test, preset.seed + 2), preset.seed + 2),
        ),
    ]


def reconstruct(
    method: Method, y: torch.Tensor, batch_size: int = 16, desc: str | None = None, progress: bool = False
) -> torch.Tensor:
    """Apply ``method`` to ``y`` in batches, without gradients (a progress bar over batches if asked)."""
    starts = range(0, y.shape[0], batch_size)
    bar = tqdm(starts, desc=desc, leave=False, disable=not progress or len(starts) < 2)
    with torch.no_grad():
        return torch.cat([method(y[i : i + batch_size]) for i in bar])


def tune_log_grid(
    score: Callable[[float], float],
    grid: tuple[float, ...],
    desc: str,
    progress: bool = True,
    max_extend: int = 4,
    bounds: tuple[float, float] = (0.0, math.inf),
    integer: bool = False,
) -> tuple[float, list[dict]]:
    """Maximise ``score`` over a log grid: extend past an edge that wins (up to ``max_extend`` times),
    then try 4 points around the best, never leaving ``bounds`` (and rounding when ``integer``).
    Returns the best value and every value tried with its score."""
    tried: dict[float, float] = {}
    values = sorted(grid)
    ratio = values[1] / values[0] if len(values) > 1 else 10.0
    bar = tqdm(desc=desc, total=len(values) + 4, disable=not progress)

    def evaluate(value: float) -> None:
        value = min(max(value, bounds[0]), bounds[1])
        value = float(round(value)) if integer else value
        if value not in tried:
            tried[value] = score(value)
            bar.total = max(bar.total, bar.n + 1)  # extending past an edge adds evaluations
            bar.update()

    for value in values:
        evaluate(value)
    for _ in range(max_extend):
        best = max(tried, key=tried.get)
        if best == min(tried):
            evaluate(best / ratio)
        elif best == max(tried):
            evaluate(best * ratio)
        else:
            break
    best = max(tried, key=tried.get)
    for factor in (ratio**-0.5, ratio**-0.25, ratio**0.25, ratio**0.5):
        evaluate(best * factor)
    bar.close()
    best = max(tried, key=tried.get)
    return best, [{"lambda": v, "mean PSNR": p} for v, p in sorted(tried.items())]


def tune_tv(
    preset: Preset, op: ParallelBeam2D, validation: EvalSet, progress: bool = True
) -> tuple[dict, dict[str, list[dict]]]:
    """The TV variant (isotropic or anisotropic) and weight maximising mean PSNR on ``validation``, with
    non-negativity imposed when the validation images are non-negative (raw ellipses take either sign).

    Returns the chosen keyword arguments of :func:`tv_pdhg` and, per variant, every λ tried with its score.
    """
    grids, best = {}, None
    nonneg = bool((validation.x >= 0).all())
    for isotropic in (True, False):
        variant = "isotropic" if isotropic else "anisotropic"

        def score(lam: float, isotropic=isotropic) -> float:
            solve = lambda y: tv_pdhg(  # noqa: E731
                y, op, lam=lam, n_iter=preset.tv_iterations, isotropic=isotropic, nonneg=nonneg
            )
            return float(metrics.psnr(reconstruct(solve, validation.y), validation.x).mean())

        lam, grid = tune_log_grid(score, preset.tv_lambdas, f"tuning {variant} TV λ on {validation.name}", progress)
        grids[variant] = grid
        psnr = max(row["mean PSNR"] for row in grid)
        if best is None or psnr > best[0]:
            best = (psnr, {"lam": lam, "isotropic": isotropic, "nonneg": nonneg})
    return best[1], grids


def tune_fbp(preset: Preset, op: ParallelBeam2D, validation: EvalSet) -> tuple[float, list[dict]]:
    """The FBP cut-off of ``preset.fbp_frequency_scalings`` maximising mean PSNR on ``validation``.

    Returns it and every cut-off tried with its score.
    """
    grid = [
        {
            "frequency_scaling": f,
            "mean PSNR": float(metrics.psnr(fbp(validation.y, op, preset.fbp_filter, f), validation.x).mean()),
        }
        for f in preset.fbp_frequency_scalings
    ]
    return max(grid, key=lambda row: row["mean PSNR"])["frequency_scaling"], grid


def evaluate(methods: dict[str, Method], test: EvalSet, progress: bool = True) -> dict:
    """Per method: reconstructions of ``test``, per-image PSNR/SSIM, their means and time per image."""
    results: dict = {}
    for name, method in methods.items():
        start = time.perf_counter()
        x_hat = reconstruct(method, test.y, desc=f"{name} on {test.name}", progress=progress)
        seconds = time.perf_counter() - start
        psnr = metrics.psnr(x_hat, test.x).reshape(-1)
        ssim = metrics.ssim(x_hat, test.x).reshape(-1)
        results[name] = {
            "psnr": float(psnr.mean()),
            "psnr_std": float(psnr.std()) if psnr.numel() > 1 else 0.0,
            "ssim": float(ssim.mean()),
            "ms_per_image": 1000 * seconds / test.y.shape[0],
            "psnr_per_image": psnr.tolist(),
            "ssim_per_image": ssim.tolist(),
            "reconstruction": x_hat,
        }
    return results


#: Report labels of the shipped models.
PRETRAINED_LABELS = {
    "fbpconvnet-ellipses": "FBPConvNet (shipped)",
    "fbpconvnet-dival": "FBPConvNet (shipped, adapted to DIVal)",
    "lgd-ellipses": "LGD (shipped)",
    "lpd-ellipses": "LPD (shipped)",
    "lpd-dival": "LPD (shipped, adapted to DIVal)",
}


def pretrained_methods(preset: Preset, op: ParallelBeam2D) -> tuple[dict[str, Method], dict[str, dict]]:
    """The shipped models of ``preset`` as methods, and their provenance (steps, time, device, PSNR)."""
    from learnrecon.models import pretrained

    methods, provenance = {}, {}
    for name in preset.pretrained:
        model = pretrained(name)
        label = _noted(PRETRAINED_LABELS.get(name, name), _trained_elsewhere(model.provenance, op))
        methods[label] = lambda y, m=model: m(y, op)
        provenance[label] = {"name": name, **_training_record(model.provenance)}
    return methods, provenance


def checkpoint_methods(preset: Preset, op: ParallelBeam2D) -> tuple[dict[str, Method], dict[str, dict]]:
    """The checkpoints of ``preset.checkpoints`` as methods labelled ``<path> (<steps> steps)``, and their
    provenance (model, steps, time, device, validation PSNR, commit)."""
    from learnrecon.models import load_model

    methods, provenance = {}, {}
    for path in preset.checkpoints:
        model = load_model(path)
        label = _noted(f"{path} ({model.provenance.get('step', '?')} steps)", _trained_elsewhere(model.provenance, op))
        methods[label] = lambda y, m=model: m(y, op)
        provenance[label] = {"model": model.provenance["model"]["name"], **_training_record(model.provenance)}
    return methods, provenance


def _trained_elsewhere(meta: dict, op: ParallelBeam2D) -> str:
    """The note "trained for <geometry>" when a checkpoint was trained for another geometry than ``op``'s,
    else "" (the models run on any image size and angles, so such a checkpoint is scored, and labelled so)."""
    saved = meta.get("operator")
    if saved is None or saved == operator_config(op):
        return ""
    size = "×".join(map(str, saved.get("image_size", []))) or "?"
    return f"trained for {size}, {len(saved.get('angles', []))} angles, {saved.get('n_detectors', '?')} detectors"


def _noted(label: str, note: str) -> str:
    """``label`` with ``note`` added inside its closing parenthesis: "LPD (shipped)" → "LPD (shipped, note)"."""
    if not note:
        return label
    return f"{label[:-1]}, {note})" if label.endswith(")") else f"{label} ({note})"


def _training_record(meta: dict) -> dict:
    """What a checkpoint's metadata says of its training: steps and hours over all its rounds
    (:func:`~learnrecon.training.training_history`), the last round's steps and device, its best validation
    PSNR and commit."""
    history = training_history(meta)
    return {
        "steps": history["steps"],
        "rounds": history["rounds"],
        "training_hours": round(history["seconds"] / 3600, 2),
        "last_round_steps": meta.get("step"),
        "last_round_device": meta.get("device"),
        "validation_psnr": meta.get("best_psnr"),
        "commit": meta.get("commit"),
    }


def train_from_scratch(preset: Preset, folder: Path, progress: bool = True) -> tuple[str, Method, dict]:
    """Train ``preset.train_model`` for ``train_minutes`` (or ``train_steps``) into ``folder``.

    Returns its label, the trained model as a method, and a summary (steps, minutes, validation PSNR).
    """
    from learnrecon.config import from_dict
    from learnrecon.training import Trainer

    config = from_dict(
        {
            "model": {"name": preset.train_model, "params": dict(preset.train_params)},
            "data": {
                "image_size": preset.image_size,
                "n_angles": preset.n_angles,
                "n_detectors": preset.n_detectors,
                "noise": preset.noise,
                "simulation_size": preset.simulation_size,
                "simulation_upsampling": preset.simulation_upsampling,
                "phantom": preset.phantom,
                "ellipse_scaling": preset.ellipse_scaling,
                "n_validation": 8,
            },
            "training": {
                "steps": preset.train_steps,
                "batch_size": preset.train_batch_size,
                "schedule": "constant",
                "validate_every": 50,
                "checkpoint_every": 50,
                "figure_every": 10**9,
                "log_every": 5,
            },
        }
    )
    trainer = Trainer.from_config(config, folder, progress=progress)
    summary = trainer.train(max_seconds=60 * preset.train_minutes)
    model = trainer.model.cpu().eval()  # evaluated on the CPU like every other method, wherever it trained
    label = f"{preset.train_model.upper()} (trained here, {summary['steps']} steps)"
    info = {
        "steps": summary["steps"],
        "minutes": round(summary["seconds"] / 60, 2),
        "best_validation_psnr": summary["best_psnr"] if math.isfinite(summary["best_psnr"]) else None,
        "config": config.to_dict(),
    }
    return label, (lambda y: model(y, trainer.op)), info


def reproduced_methods(preset: Preset, op: ParallelBeam2D, progress: bool = True) -> tuple[dict[str, Method], dict]:
    """Train each of ``preset.reproduce`` to its last step (resuming a run found in ``runs_dir``) and return
    its best-validation checkpoint as a method, with a summary per run."""
    from learnrecon.config import load_config
    from learnrecon.models import load_model
    from learnrecon.training import Trainer

    methods, runs = {}, {}
    for path in preset.reproduce:
        config = load_config(_config_path(path))
        folder = Path(preset.runs_dir) / Path(path).stem
        started = (folder / "last.safetensors").exists()  # a run stopped before its first checkpoint starts again
        trainer = Trainer.from_config(config, folder, resume=started, overwrite=not started, progress=progress)
        trainer.train()
        model = load_model(folder / "best")
        label = f"{config.model.name.upper()} ({Path(path).stem}, {model.provenance['step']} steps)"
        methods[label] = lambda y, m=model: m(y, op)
        runs[label] = {"config": path, "run": str(folder), "steps": trainer.step, "best_step": model.provenance["step"]}
    return methods, runs


def _config_path(path: str) -> Path:
    """``path`` as given, or else relative to the source tree the package runs from (``configs/`` is there)."""
    given = Path(path)
    in_tree = Path(__file__).resolve().parents[3] / path
    if given.exists() or given.is_absolute() or not in_tree.exists():
        return given
    return in_tree


def run_benchmark(preset: Preset, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Run ``preset`` and write its report into ``out``; returns the results (without images).

    Everything is written into a temporary folder beside ``out`` that replaces ``out`` only when complete.
    """
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise DataFileError(f"{out} is a file; the benchmark writes a folder there")
    if out.exists() and not overwrite:
        raise DataFileError(f"benchmark folder {out} already exists; choose another --out or pass --overwrite")
    if out.exists() and any(out.iterdir()) and not (out / "results.json").exists():
        raise DataFileError(
            f"{out} holds files that are not a benchmark's (no results.json); --overwrite replaces only a "
            "benchmark folder: choose another --out"
        )
    for path in preset.checkpoints:  # a missing or corrupt checkpoint fails now, not after the simulation
        load_checkpoint(path)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    created = [folder for folder in tmp.parents if not folder.exists()]  # deepest first
    try:
        tmp.mkdir(parents=True)  # fails now, not after the run, where the folder cannot be written
    except OSError as err:
        raise DataFileError(f"cannot write the benchmark folder beside {out}: {err}") from err
    try:
        summary, tests, results = _run(preset, tmp, progress)
        _write_outputs(tmp, preset, tests, results, summary)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # the folders made for a run that failed: nothing half-written is left
            with contextlib.suppress(OSError):
                folder.rmdir()
    return summary


def _run(preset: Preset, folder: Path, progress: bool) -> tuple[dict, list[EvalSet], dict]:
    op = preset.operator()
    tasks = make_tasks(preset, op)
    learned, provenance = pretrained_methods(preset, op)
    given, checkpoints = checkpoint_methods(preset, op)
    reproduced, runs = reproduced_methods(preset, op, progress)
    learned.update(given)
    learned.update(reproduced)
    trained = {}
    if preset.train_model is not None:
        label, method, trained = train_from_scratch(preset, folder / "training", progress)
        learned[label] = method
    results: dict = {}
    tuned: dict = {}
    for task in tasks:
        cutoff, cutoffs = tune_fbp(preset, op, task.validation)
        tv_params, grids = tune_tv(preset, op, task.validation, progress)
        tuned[task.test.name] = {
            "FBP": {"frequency_scaling": cutoff, "validation": task.validation.name, "grid": cutoffs},
            "TV": {**tv_params, "validation": task.validation.name, "grids": grids},
        }
        methods: dict[str, Method] = {
            f"FBP ({preset.fbp_filter})": lambda y, f=cutoff: fbp(y, op, preset.fbp_filter, f),
            "TV": lambda y, kw=tv_params: tv_pdhg(y, op, n_iter=preset.tv_iterations, **kw),
            **learned,
        }
        for method, result in evaluate(methods, task.test, progress).items():
            results.setdefault(method, {})[task.test.name] = result
    summary = {
        "preset": asdict(preset),
        "machine": machine_info(),
        "tuned": tuned,
        "pretrained": provenance,
        "checkpoints": checkpoints,
        "reproduced": runs,
        "trained_here": trained,
        "results": {
            m: {t: {k: v for k, v in r.items() if k != "reconstruction"} for t, r in res.items()}
            for m, res in results.items()
        },
    }
    return summary, [task.test for task in tasks], results


def results_table(summary: dict) -> str:
    """The Markdown table of mean PSNR/SSIM per test set and time per image."""
    rows = []
    for method, per_set in summary["results"].items():
        row = {"method": method}
        for test, r in per_set.items():
            row[f"{test} PSNR"] = r["psnr"]
            row[f"{test} SSIM"] = r["ssim"]
        largest = max(summary["results"][method], key=lambda t: len(per_set[t]["psnr_per_image"]))
        row["ms / image"] = per_set[largest]["ms_per_image"]
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
    if (folder / "training" / "metrics.csv").exists():
        training_curve(
            figures / "training.png", folder / "training", f"{preset.train_model.upper()} trained from scratch"
        )
    (folder / "report.md").write_text(_report_markdown(preset, summary))
    write_html_report(folder)


#: The columns of the report's tables of trained checkpoints (keys of :func:`_training_record`).
HISTORY_COLUMNS = ["steps", "rounds", "training_hours", "last_round_steps", "last_round_device", "validation_psnr"]


def _learned_markdown(preset: Preset, summary: dict) -> str:
    """The provenance of the shipped models, the checkpoints given, and the runs trained during the benchmark."""
    text = ""
    if summary["pretrained"]:
        rows = [{"model": label, **info} for label, info in summary["pretrained"].items()]
        text += (
            "## Shipped models\n\nWeights from `learnrecon/pretrained/`, trained with `learnrecon train` on random "
            "ellipses in rounds, each continuing the last (each checkpoint's JSON holds its config and, under "
            "`started_from`, the rounds before; steps and hours count every round, on CPU and GPU; validation "
            "PSNR: the trainer's best on 16 other ellipses, with data range 1):\n\n"
            + markdown_table(rows, ["model", "name", *HISTORY_COLUMNS])
            + "\n"
        )
    if summary["checkpoints"]:
        rows = [{"method": label, **info} for label, info in summary["checkpoints"].items()]
        columns = ["method", "model", *HISTORY_COLUMNS]
        text += (
            "## Checkpoints evaluated\n\nGiven with `--checkpoint` (validation PSNR: the trainer's best, with data "
            "range 1):\n\n" + markdown_table(rows, columns) + "\n"
        )
    if summary["reproduced"]:
        rows = [{"model": label, **info} for label, info in summary["reproduced"].items()]
        text += (
            f"## Reproduction runs\n\nTrained to completion in `{preset.runs_dir}/` (rerun the benchmark to resume "
            "an interrupted run) and evaluated at the checkpoint with the best validation PSNR:\n\n"
            + markdown_table(rows, ["model", "config", "run", "steps", "best_step"])
            + "\n"
        )
    trained = summary["trained_here"]
    if trained:
        text += (
            f"## Trained here\n\n{preset.train_model.upper()} trained from scratch during this benchmark for "
            f"{trained['steps']} steps ({trained['minutes']} min, constant learning rate; config in "
            "`training/config.yaml`), evaluated at its last step. It shows the trainer at work; it is not expected "
            "to match the shipped weights.\n\n![training curve](figures/training.png)\n\n"
        )
    return text


def _fbp_tuning(fbp_tuned: dict) -> str:
    """A sentence naming the chosen FBP cut-off and the others tried (empty when there was one)."""
    if len(fbp_tuned["grid"]) < 2:
        return ""
    tried = ", ".join(f"{row['frequency_scaling']:g}: {row['mean PSNR']:.2f} dB" for row in fbp_tuned["grid"])
    return f" FBP cut-off {fbp_tuned['frequency_scaling']:g} of Nyquist, chosen the same way ({tried})."


def _nonneg_sets(summary: dict) -> str:
    """Which test sets' TV had non-negativity imposed, in words."""
    imposed = [test for test, t in summary["tuned"].items() if t["TV"]["nonneg"]]
    return ", ".join(imposed) if imposed else "none here"


def _report_markdown(preset: Preset, summary: dict) -> str:
    machine = summary["machine"]
    tuning = "".join(
        f"\n**{test}**: {'isotropic' if t['TV']['isotropic'] else 'anisotropic'} TV, λ = {t['TV']['lam']:.4g}, "
        f"{'with' if t['TV']['nonneg'] else 'without'} non-negativity, chosen by mean PSNR on "
        f"{t['TV']['validation']}.{_fbp_tuning(t['FBP'])}\n\n"
        + markdown_table(
            [{"variant": v, **row} for v, grid in t["TV"]["grids"].items() for row in grid],
            ["variant", "lambda", "mean PSNR"],
            digits={"lambda": 4},
        )
        for test, t in summary["tuned"].items()
    )
    return (
        f"# learnrecon benchmark: preset `{preset.name}`\n\n{preset.description}.\n\n"
        f"## Results (mean over each test set)\n\n{results_table(summary)}\n"
        "PSNR and SSIM take each reference image's range (max − min) as the data range. Time per image is "
        "measured on the largest test set, reconstructed in batches of 16.\n\n"
        f"## Tuned parameters\n\nTV: PDHG, {preset.tv_iterations} iterations, non-negativity where the validation "
        f"images are non-negative ({_nonneg_sets(summary)}); the variant (isotropic or anisotropic) and λ, and "
        "FBP's cut-off, are tuned separately for each test set on validation data of the same kind (relative "
        "noise has a different absolute level on Shepp–Logan and on ellipses). For Shepp–Logan the validation "
        "data are the same phantom under another noise draw: an oracle choice for TV and FBP, which the learned "
        "models, trained on ellipses only, do not get.\n"
        f"{tuning}\n"
        f"{_learned_markdown(preset, summary)}"
        "## Figures\n\n![reconstructions](figures/reconstructions.png)\n\n![PSNR](figures/psnr.png)\n\n"
        "![SSIM](figures/ssim.png)\n\n"
        f"## Machine\n\n{machine['platform']}, {machine['cpu_count']} CPUs, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), learnrecon {machine['learnrecon']}, device {machine['device']}.\n"
    )
