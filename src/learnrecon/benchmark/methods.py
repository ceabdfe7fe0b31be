"""The methods a benchmark compares, each a reconstructor ``method(y, op)``: the tuned classical baselines, the
shipped models, the user's checkpoints, a model trained during the run, and the reproduction runs.

The configs the presets train with ship inside the package (``learnrecon/configs/``), so every preset runs from an
installed wheel; :func:`preset_config` finds them.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from pathlib import Path

from learnrecon.benchmark.presets import Preset
from learnrecon.benchmark.tasks import Task
from learnrecon.benchmark.tuning import tune_fbp, tune_tv
from learnrecon.config import Config, from_dict, load_config
from learnrecon.errors import DataFileError
from learnrecon.evaluation import Reconstructor
from learnrecon.io.checkpoint import training_history
from learnrecon.models.hub import load_model, pretrained
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.fbp import fbp
from learnrecon.operators.registry import operator_config
from learnrecon.solvers import tv_pdhg
from learnrecon.training import Trainer

__all__ = [
    "PRETRAINED_LABELS",
    "REGULARISER_LABELS",
    "checkpoint_methods",
    "classical_methods",
    "pretrained_methods",
    "preset_config",
    "regulariser_methods",
    "reproduced_methods",
    "scratch_config",
    "train_from_scratch",
    "training_record",
]

#: Report labels of the shipped models.
PRETRAINED_LABELS = {
    "fbpconvnet-ellipses": "FBPConvNet (shipped)",
    "fbpconvnet-dival": "FBPConvNet (shipped, adapted to DIVal)",
    "lgd-ellipses": "LGD (shipped)",
    "lpd-ellipses": "LPD (shipped)",
    "lpd-dival": "LPD (shipped, adapted to DIVal)",
    "deq-grad-ellipses": "DE-Grad (shipped)",
    "automap-ellipses": "AUTOMAP (fully learned, shipped)",
}

#: Report labels of the learned-regulariser methods (:data:`learnrecon.regularisers.methods.LEARNED_METHODS`).
REGULARISER_LABELS = {
    "ar": "AR (adversarial regulariser, shipped)",
    "acr": "ACR (adversarial convex regulariser, shipped)",
    "pnp-pgd": "PnP-PGD (learned denoiser, shipped)",
    "pnp-admm": "PnP-ADMM (learned denoiser, shipped)",
    "hqs": "PnP-HQS (learned denoiser, shipped)",
    "red": "RED (learned denoiser, shipped)",
}


def classical_methods(
    preset: Preset, op: LinearOperator, task: Task, progress: bool = True
) -> tuple[dict[str, Reconstructor], dict]:
    """FBP and TV with their parameters tuned on ``task.validation``, and what the tuning chose and tried."""
    cutoff, cutoffs = tune_fbp(preset, op, task.validation)
    tv_params, grids = tune_tv(preset, op, task.validation, progress)
    tuned = {
        "FBP": {"frequency_scaling": cutoff, "validation": task.validation.name, "grid": cutoffs},
        "TV": {**tv_params, "validation": task.validation.name, "grids": grids},
    }
    methods: dict[str, Reconstructor] = {
        f"FBP ({preset.fbp_filter})": lambda y, op: fbp(y, op, preset.fbp_filter, cutoff),
        "TV": lambda y, op: tv_pdhg(y, op, n_iter=preset.tv_iterations, **tv_params),
    }
    return methods, tuned


def pretrained_methods(preset: Preset, op: LinearOperator) -> tuple[dict[str, Reconstructor], dict[str, dict]]:
    """The shipped models of ``preset`` by their report labels, and their provenance (steps, time, device, PSNR)."""
    methods, provenance = {}, {}
    for name in preset.pretrained:
        model = pretrained(name)
        label = _noted(PRETRAINED_LABELS.get(name, name), trained_elsewhere(model.provenance, op))
        methods[label] = model
        provenance[label] = {"name": name, **training_record(model.provenance)}
    return methods, provenance


def regulariser_methods(preset: Preset, op: LinearOperator) -> tuple[dict[str, Reconstructor], dict[str, dict]]:
    """The learned-regulariser methods of ``preset`` (shipped weights, tuned parameters) by their report labels,
    and their provenance (the shipped checkpoint, its training, the parameters it runs with)."""
    from learnrecon.regularisers.methods import LEARNED_METHODS, load_regulariser, reconstruct_with
    from learnrecon.regularisers.pnp import SCHEME_SETTINGS

    methods, provenance = {}, {}
    for name in preset.learned_regularisers:
        kind, shipped, scheme = LEARNED_METHODS[name]
        model = load_regulariser(shipped, kind)
        label = _noted(REGULARISER_LABELS.get(name, name), trained_elsewhere(model.provenance, op))
        methods[label] = functools.partial(reconstruct_with, name)
        if scheme:
            settings = {k: v for k, v in model.settings(scheme).items() if k in SCHEME_SETTINGS[scheme]}
        else:
            settings = {"lam": model.lam, "n_iter": model.n_iter}
        provenance[label] = {"name": shipped, "method": name, "settings": settings, **training_record(model.provenance)}
    return methods, provenance


def checkpoint_methods(preset: Preset, op: LinearOperator) -> tuple[dict[str, Reconstructor], dict[str, dict]]:
    """The checkpoints of ``preset.checkpoints`` labelled ``<path> (<steps> steps)``, and their provenance
    (model, steps, time, device, validation PSNR, commit)."""
    methods, provenance = {}, {}
    for path in preset.checkpoints:
        model = load_model(path)
        label = _noted(f"{path} ({model.provenance.get('step', '?')} steps)", trained_elsewhere(model.provenance, op))
        methods[label] = model
        provenance[label] = {"model": model.provenance["model"].get("name"), **training_record(model.provenance)}
    return methods, provenance


def trained_elsewhere(meta: dict, op: LinearOperator) -> str:
    """The note "trained for <operator>" when a checkpoint was trained for another operator than ``op``, else ""
    (the models run on any geometry, so such a checkpoint is scored, and labelled so)."""
    saved = meta.get("operator")
    if saved is None or saved == operator_config(op):
        return ""
    return f"trained for {_describe(saved)}"


def _describe(cfg: dict) -> str:
    """An operator config in a few words: its image size, angles and detectors where it has them."""
    size = cfg.get("image_size")
    parts = ["×".join(map(str, size)) if isinstance(size, list) else str(size)] if size is not None else []
    if "angles" in cfg:
        parts.append(f"{len(cfg['angles'])} angles")
    if "n_detectors" in cfg:
        parts.append(f"{cfg['n_detectors']} detectors")
    return f"{cfg.get('type', 'another operator')} " * (not parts) + ", ".join(parts)


def _noted(label: str, note: str) -> str:
    """``label`` with ``note`` added inside its closing parenthesis: "LPD (shipped)" → "LPD (shipped, note)"."""
    if not note:
        return label
    return f"{label[:-1]}, {note})" if label.endswith(")") else f"{label} ({note})"


def training_record(meta: dict) -> dict:
    """What a checkpoint's metadata says of its training: steps and hours over all its rounds
    (:func:`~learnrecon.io.training_history`), the last round's steps and device, its best validation
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


def scratch_config(preset: Preset) -> Config:
    """The config of the model a preset trains from scratch: its data, a constant learning rate, frequent
    checkpoints (the run is cut by time)."""
    simulation = {"size": preset.simulation_size, "upsampling": preset.simulation_upsampling}
    phantom = {"type": preset.phantom, **({"scaling": preset.ellipse_scaling} if preset.phantom == "ellipses" else {})}
    return from_dict(
        {
            "model": {"name": preset.train_model, "params": dict(preset.train_params)},
            "data": {
                "operator": preset.operator_section(),
                "phantom": phantom,
                "noise": preset.noise,
                "simulation": simulation if preset.simulation_size else None,
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


def train_from_scratch(preset: Preset, folder: Path, progress: bool = True) -> tuple[str, Reconstructor, dict]:
    """Train ``preset.train_model`` for ``train_minutes`` (or ``train_steps``) into ``folder``.

    Returns its label, the trained model, and a summary (steps, minutes, validation PSNR, config).
    """
    config = scratch_config(preset)
    trainer = Trainer.from_config(config, folder, progress=progress)
    summary = trainer.train(max_seconds=60 * preset.train_minutes)
    trainer.close()
    model = trainer.model.cpu().eval()  # evaluated on the CPU like every other method, wherever it trained
    label = f"{preset.train_model.upper()} (trained here, {summary['steps']} steps)"
    info = {
        "steps": summary["steps"],
        "minutes": round(summary["seconds"] / 60, 2),
        "best_validation_psnr": summary["best_psnr"] if math.isfinite(summary["best_psnr"]) else None,
        "config": config.to_dict(),
    }
    return label, model, info


def preset_config(path: str) -> Path:
    """``path`` when it names a file, else the config of that name shipped in the package (``learnrecon/configs``)."""
    given = Path(path)
    if given.is_file():
        return given
    shipped = Path(str(resources.files("learnrecon") / "configs" / given.name))
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.name for p in shipped.parent.glob("*.yaml")))
    raise DataFileError(f"config {path} does not exist, and the package ships no config of that name ({names})")


def reproduced_methods(preset: Preset, progress: bool = True) -> tuple[dict[str, Reconstructor], dict]:
    """Train each of ``preset.reproduce`` to its last step (resuming a run found in ``runs_dir``) and return
    its best-validation checkpoint, with a summary per run."""
    methods, runs = {}, {}
    for path in preset.reproduce:
        config = load_config(preset_config(path))
        folder = Path(preset.runs_dir) / Path(path).stem
        started = (folder / "last.safetensors").exists()  # a run stopped before its first checkpoint starts again
        trainer = Trainer.from_config(config, folder, resume=started, overwrite=not started, progress=progress)
        trainer.train()
        trainer.close()
        model = load_model(folder / "best")
        label = f"{config.model.name.upper()} ({Path(path).stem}, {model.provenance['step']} steps)"
        methods[label] = model
        runs[label] = {"config": path, "run": str(folder), "steps": trainer.step, "best_step": model.provenance["step"]}
    return methods, runs
