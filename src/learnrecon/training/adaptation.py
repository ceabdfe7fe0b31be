"""Model adaptation to a new forward operator without ground truth (Gilton, Ongie & Willett 2021).

A model ``f(y; θ₀, A)`` trained for one operator meets data of another, ``A_new`` (other angles, geometry, noise,
a shifted centre of rotation). :func:`adapt` minimises over the weights, on the new measurements alone,

    L(θ) = mean_i ‖y_i − A_new f(y_i; θ, A_new)‖² / ‖y_i‖²  +  μ ‖θ − θ₀‖²,

the data term relative per sample (so μ does not depend on the data's scale) and ``‖θ − θ₀‖²`` summed over
every weight. Operator parameters held as tensors (:mod:`learnrecon.operators.calibrated`, e.g. a detector
shift) may be optimised with θ: calibration jointly with the weights. :func:`adapt_checkpoint` does it for a
checkpoint and a data file and writes a checkpoint that records both (``learnrecon adapt``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from learnrecon.errors import DataFileError, ParameterError, ShapeError
from learnrecon.io.checkpoint import checkpoint_paths, save_checkpoint
from learnrecon.io.lock import output_lock
from learnrecon.models.hub import checkpoint_location, load_model
from learnrecon.operators.registry import operator_config

__all__ = ["AdaptationResult", "MODALITIES", "adapt", "adapt_checkpoint", "modality"]

#: Operator type → the kind of data it produces; adaptation refuses a data set of another kind.
MODALITIES = {
    "ParallelBeam2D": "ct",
    "FanBeam2D": "ct",
    "BeerLambert": "ct-prelog",
    "MRI": "mri",
    "Blur": "deblurring",
    "Identity": "denoising",
}


def modality(operator: Mapping[str, Any] | None) -> str | None:
    """The modality (:data:`MODALITIES`) of an operator config, or None when unknown."""
    return None if not operator else MODALITIES.get(operator.get("type"))


class AdaptationResult(NamedTuple):
    """The adapted model (in place), the loss per step and the final operator parameters."""

    model: nn.Module
    history: list[dict[str, float]]
    parameters: dict[str, float]


def _check(mu: float, steps: int, lr: float, batch_size: int) -> None:
    if not (isinstance(mu, int | float) and math.isfinite(mu) and mu >= 0):
        raise ParameterError(f"mu must be a finite number >= 0 (the weight of ‖θ − θ₀‖²), got {mu!r}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ParameterError(f"steps must be a positive integer, got {steps!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ParameterError(f"lr must be a positive finite number, got {lr!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ParameterError(f"batch_size must be a positive integer, got {batch_size!r}")


def adapt(
    model: nn.Module,
    op,
    y: torch.Tensor,
    *,
    mu: float = 1e-3,
    steps: int = 100,
    lr: float = 1e-5,
    batch_size: int = 4,
    seed: int = 0,
    parameters: Mapping[str, torch.Tensor] | None = None,
    parameter_lr: float = 1e-2,
) -> AdaptationResult:
    """Adapt ``model`` (in place) to ``op`` on measurements ``y`` ``(n, 1, *op.range_shape)`` (see the module
    docstring): Adam with ``lr`` on the weights for ``steps`` steps of ``batch_size`` samples (a fresh permutation
    per pass, seeded by ``seed``). ``parameters``: operator tensors (``requires_grad``) optimised with
    ``parameter_lr``."""
    _check(mu, steps, lr, batch_size)
    if y.ndim != len(op.range_shape) + 2 or tuple(y.shape[2:]) != tuple(op.range_shape):
        raise ShapeError(
            f"adaptation data have shape {tuple(y.shape)} but {op.name} needs "
            f"(n, 1, {', '.join(map(str, op.range_shape))})"
        )
    weights = [p for p in model.parameters() if p.requires_grad]
    reference = [p.detach().clone() for p in weights]
    groups = [{"params": weights, "lr": lr}]
    extra = dict(parameters or {})
    for name, tensor in extra.items():
        if not (isinstance(tensor, torch.Tensor) and tensor.requires_grad and tensor.is_leaf):
            raise ParameterError(f"operator parameter {name!r} must be a leaf tensor with requires_grad=True")
    if extra:
        groups.append({"params": list(extra.values()), "lr": parameter_lr})
    optimizer = torch.optim.Adam(groups)
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    history = []
    model.train()
    device = next(iter(weights)).device if weights else y.device
    for step in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(y.shape[0], generator=generator).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        yb = y[batch].to(device)
        x_hat = model(yb, op)
        residual = op(x_hat.to(yb.dtype)) - yb
        data = ((residual.flatten(1) ** 2).sum(1) / (yb.flatten(1) ** 2).sum(1)).mean()
        penalty = sum(((p - p0) ** 2).sum() for p, p0 in zip(weights, reference, strict=True))
        loss = data + mu * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        row = {
            "step": step + 1,
            "loss": float(loss.detach()),
            "data": float(data.detach()),
            "penalty": float(penalty.detach()),
        }
        row.update({name: float(t.detach()) for name, t in extra.items()})
        history.append(row)
    model.eval()
    return AdaptationResult(model, history, {name: float(t.detach()) for name, t in extra.items()})


def adapt_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    mu: float = 1e-3,
    steps: int = 100,
    lr: float = 1e-5,
    batch_size: int = 4,
    seed: int = 0,
    n_samples: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Adapt the model of ``checkpoint`` (a path or a shipped name) to the operator of the data file ``data``
    (its measurements only, no truth used) and write ``out/adapted`` (safetensors + JSON) with the provenance of
    both; every input is checked before anything is written."""
    from learnrecon.data.hdf5 import load

    _check(mu, steps, lr, batch_size)
    out = Path(out)
    weights_path, _ = checkpoint_paths(out / "adapted")
    if weights_path.exists() and not overwrite:
        raise DataFileError(f"{weights_path} exists; pass --overwrite to replace it")
    location = checkpoint_location(str(checkpoint))
    model = load_model(location)
    meta = dict(model.provenance)
    dataset = load(data)
    new_op = dataset.op
    new_config = operator_config(new_op)
    old_config = meta.get("operator")
    if modality(old_config) is not None and modality(new_config) != modality(old_config):
        raise ParameterError(
            f"the checkpoint's model reconstructs {modality(old_config)} data ({old_config.get('type')}) but {data} "
            f"holds {modality(new_config) or 'unknown'} data ({new_config.get('type')}); adapt it to data of its kind"
        )
    if old_config and "image_size" in old_config and "image_size" in new_config:
        if list(old_config["image_size"]) != list(new_config["image_size"]):
            raise ShapeError(
                f"the checkpoint's model reconstructs images of {old_config['image_size']} but {data} holds images of "
                f"{new_config['image_size']}; adaptation changes the operator, not the image size"
            )
    n = len(dataset) if n_samples is None else min(int(n_samples), len(dataset))
    y = dataset.tensors(slice(0, n)).y.float()
    started = time.perf_counter()
    with output_lock(out, "learnrecon adapt"):
        result = adapt(model, new_op, y, mu=mu, steps=steps, lr=lr, batch_size=batch_size, seed=seed)
        record = {
            "model": meta.get("model"),
            "operator": new_config,
            "config": meta.get("config"),
            "step": steps,
            "seconds": time.perf_counter() - started,
            "adapted_from": {
                "checkpoint": str(checkpoint),
                "sha256": meta.get("sha256"),
                "operator": old_config,
                "best_psnr": meta.get("best_psnr"),
            },
            "adaptation": {
                "method": "Gilton, Ongie & Willett 2021: ‖y − A f(y; θ, A)‖²/‖y‖² + μ‖θ − θ₀‖²",
                "data": str(data),
                "data_attrs": {k: v for k, v in dataset.attrs.items() if k in ("noise", "seed", "phantom")},
                "n_samples": n,
                "mu": mu,
                "steps": steps,
                "lr": lr,
                "batch_size": batch_size,
                "seed": seed,
                "first_loss": result.history[0]["loss"],
                "last_loss": result.history[-1]["loss"],
            },
        }
        out.mkdir(parents=True, exist_ok=True)
        return save_checkpoint(out / "adapted", model, record)
