"""The learned regularisers as named methods, ``learnrecon reconstruct --method ar|acr|pnp-pgd|pnp-admm|hqs|red``.

Each loads its weights (a shipped model's name or a checkpoint path, checked to hold that kind of regulariser) and
runs with the checkpoint's parameters, any of which a method parameter overrides.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from learnrecon.errors import DataFileError
from learnrecon.models.hub import checkpoint_location, load_model
from learnrecon.operators.base import LinearOperator

__all__ = ["KINDS", "LEARNED_METHODS", "load_regulariser", "reconstruct_with"]

#: The model (registry name) each kind of learned regulariser is.
KINDS = {"ar": "adversarial regulariser", "acr": "adversarial convex regulariser", "pnp": "plug-and-play denoiser"}

#: Method name -> (model kind, shipped weights, plug-and-play scheme or None).
LEARNED_METHODS = {
    "ar": ("ar", "ar-ellipses", None),
    "acr": ("acr", "acr-ellipses", None),
    "pnp-pgd": ("pnp", "pnp-ellipses", "pgd"),
    "pnp-admm": ("pnp", "pnp-ellipses", "admm"),
    "hqs": ("pnp", "pnp-ellipses", "hqs"),
    "red": ("pnp", "pnp-ellipses", "red"),
}


@functools.lru_cache(maxsize=8)
def _load(path: Path, kind: str) -> nn.Module:
    model = load_model(path)  # rebuilt from the checkpoint's own spec, whatever kind it holds
    saved = model.provenance["model"]["name"]
    if saved != kind:
        held = f"the {KINDS[saved]} {saved!r}" if saved in KINDS else f"the model {saved!r}"
        raise DataFileError(
            f"checkpoint {path} holds {held}, not the {KINDS[kind]} {kind!r}; give weights of that kind"
        )
    return model


def load_regulariser(weights: str | Path, kind: str) -> nn.Module:
    """The learned regulariser of ``kind`` (a key of :data:`KINDS`) in ``weights``: a shipped model's name or a
    checkpoint path; a checkpoint of another kind raises :class:`DataFileError` naming both."""
    return _load(checkpoint_location(str(weights)).resolve(), kind)


def reconstruct_with(method: str, y: torch.Tensor, op: LinearOperator, weights: str | None = None, **overrides):
    """Reconstruct ``y`` with the learned ``method`` (a key of :data:`LEARNED_METHODS`), its parameters overridden
    by ``overrides`` (e.g. ``lam``, ``n_iter``, ``sigma``). The plug-and-play schemes are differentiable in ``y``
    (run them under ``torch.no_grad()`` when that is not needed); the variational solves of ``ar`` and ``acr`` are
    not (each iterate is detached)."""
    kind, shipped, scheme = LEARNED_METHODS[method]
    model = load_regulariser(weights or shipped, kind).to(y.device)
    return model(y, op, scheme=scheme, **overrides) if scheme else model(y, op, **overrides)
