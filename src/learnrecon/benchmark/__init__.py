"""Reference benchmarks: presets, their tasks and methods, the evaluation and the report (and the operators'
timing benchmark, :mod:`learnrecon.benchmark.operators`)."""

from learnrecon.benchmark.methods import (
    PRETRAINED_LABELS,
    checkpoint_methods,
    classical_methods,
    preset_config,
    pretrained_methods,
    train_from_scratch,
    training_record,
)
from learnrecon.benchmark.presets import PRESETS, Preset, get_preset
from learnrecon.benchmark.report import results_table
from learnrecon.benchmark.runner import dry_run, run_benchmark
from learnrecon.benchmark.tasks import EvalSet, Task, make_tasks
from learnrecon.benchmark.tuning import mean_psnr, tune_fbp, tune_log_grid, tune_tv

__all__ = [
    "PRESETS",
    "PRETRAINED_LABELS",
    "EvalSet",
    "Preset",
    "Task",
    "checkpoint_methods",
    "classical_methods",
    "dry_run",
    "get_preset",
    "make_tasks",
    "mean_psnr",
    "pretrained_methods",
    "preset_config",
    "results_table",
    "run_benchmark",
    "train_from_scratch",
    "training_record",
    "tune_fbp",
    "tune_log_grid",
    "tune_tv",
]
