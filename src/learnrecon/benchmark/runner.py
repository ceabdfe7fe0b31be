"""Run a benchmark preset: build its tasks and methods, evaluate every method on every test set, write the report.

Output folder (written to a temporary folder and renamed when complete; locked while a run writes it)::

    report.md      the table, the tuned parameters, the machine, the figures (report.html: the same page)
    results.json   every number in the report, plus per-image metrics
    figures/       reconstructions.png (grid with error maps), psnr.png, ssim.png, training.png
    training/      the run of the model trained from scratch (checkpoints, CSV logs, figures)

The parts: :mod:`.tasks` (test and validation sets), :mod:`.tuning` and :mod:`.methods` (what is compared),
:func:`learnrecon.evaluation.evaluate` (the one inference loop and metric convention) and :mod:`.report`.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import asdict
from pathlib import Path

from learnrecon.benchmark.methods import (
    checkpoint_methods,
    classical_methods,
    preset_config,
    pretrained_methods,
    regulariser_methods,
    reproduced_methods,
    scratch_config,
    train_from_scratch,
)
from learnrecon.benchmark.presets import Preset
from learnrecon.benchmark.report import write_outputs
from learnrecon.benchmark.sweeps import run_sweeps, write_sweep_report
from learnrecon.benchmark.tasks import EvalSet, make_tasks
from learnrecon.config import load_config
from learnrecon.data.sources import make_training_data, make_validation_data
from learnrecon.errors import DataFileError
from learnrecon.evaluation import evaluate
from learnrecon.io.checkpoint import load_checkpoint
from learnrecon.io.lock import output_lock
from learnrecon.models.hub import build_model
from learnrecon.report import machine_info

__all__ = ["dry_run", "run_benchmark"]


def run_benchmark(preset: Preset, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Run ``preset`` and write its report into ``out``; returns the results (without images).

    Everything is written into a temporary folder beside ``out`` that replaces ``out`` only when complete.
    """
    out = Path(out).resolve()
    _check_output(out, overwrite)
    for path in preset.checkpoints:  # a missing or corrupt checkpoint fails now, not after the simulation
        load_checkpoint(path)
    with output_lock(out, f"learnrecon benchmark --preset {preset.name}"):
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        created = [folder for folder in tmp.parents if not folder.exists()]  # deepest first
        try:
            tmp.mkdir(parents=True)  # fails now, not after the run, where the folder cannot be written
        except OSError as err:
            raise DataFileError(f"cannot write the benchmark folder beside {out}: {err}") from err
        try:
            if preset.is_sweep:
                summary = run_sweeps(preset, progress)
                write_sweep_report(tmp, summary)
            else:
                summary, tests, results = _run(preset, tmp, progress)
                write_outputs(tmp, preset, tests, results, summary)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            for folder in created:  # the folders made for a run that failed: nothing half-written is left
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return summary


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataFileError(f"{out} is a file; the benchmark writes a folder there")
    if out.exists() and not overwrite:
        raise DataFileError(f"benchmark folder {out} already exists; choose another --out or pass --overwrite")
    if out.exists() and any(out.iterdir()) and not (out / "results.json").exists():
        raise DataFileError(
            f"{out} holds files that are not a benchmark's (no results.json); --overwrite replaces only a "
            "benchmark folder: choose another --out"
        )


def _run(preset: Preset, folder: Path, progress: bool) -> tuple[dict, list[EvalSet], dict]:
    op = preset.operator()
    tasks = make_tasks(preset, op)
    learned, provenance = pretrained_methods(preset, op)
    regularisers, regulariser_provenance = regulariser_methods(preset, op)
    learned.update(regularisers)
    provenance.update(regulariser_provenance)
    given, checkpoints = checkpoint_methods(preset, op)
    reproduced, runs = reproduced_methods(preset, progress)
    learned.update(given)
    learned.update(reproduced)
    trained = {}
    if preset.train_model is not None:
        label, model, trained = train_from_scratch(preset, folder / "training", progress)
        learned[label] = model
    results: dict = {}
    tuned: dict = {}
    for task in tasks:
        classical, tuned[task.test.name] = classical_methods(preset, op, task, progress)
        for name, method in {**classical, **learned}.items():
            desc = f"{name} on {task.test.name}"
            result = evaluate(method, task.test.y, task.test.x, op, progress=progress, desc=desc)
            results.setdefault(name, {})[task.test.name] = result
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


def dry_run(preset: Preset) -> list[str]:
    """Build everything ``preset`` would run, without training or reconstructing: its operator and test sets,
    its shipped models and checkpoints, and for each training config (the model trained here, the reproduction
    runs) the config, its data and its model. Returns a line per part built."""
    op = preset.operator()
    lines = [f"operator: {op!r}"]
    if preset.is_sweep:
        lines += [f"sweep: relative noise {', '.join(map(str, preset.sweep_noise))} at {preset.n_angles} angles"]
        lines += [f"sweep: {', '.join(map(str, preset.sweep_angles))} angles at {preset.noise}"]
        lines += [f"model: {name}" for name in preset.pretrained]
        return lines
    lines += [
        f"task: {t.test.name} ({len(t.test.x)} images), tuned on {t.validation.name}" for t in make_tasks(preset, op)
    ]
    built = {
        **pretrained_methods(preset, op)[0],
        **regulariser_methods(preset, op)[0],
        **checkpoint_methods(preset, op)[0],
    }
    for label in built:
        lines.append(f"model: {label}")
    configs = [(f"{preset.train_model} trained here", scratch_config(preset))] if preset.train_model else []
    configs += [(str(preset_config(path)), load_config(preset_config(path))) for path in preset.reproduce]
    for name, config in configs:
        _, data_op = make_training_data(config.data)
        make_validation_data(config.data, data_op)
        build_model(config.model.name, config.model.params, op=data_op)
        lines.append(f"training: {name}: {config.model.name} on {data_op!r}, {config.training.steps} steps")
    return lines
