"""Learned models by name, built from plain (JSON/YAML) parameters, and the shipped pretrained weights."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from torch import nn

from learnrecon.errors import ParameterError
from learnrecon.models.fbpconvnet import FBPConvNet
from learnrecon.models.gradient import GeneralisedLGD, LearnedGradientDescent
from learnrecon.models.lista import LISTA
from learnrecon.models.primal_dual import LearnedPrimalDual
from learnrecon.models.proximal import LearnedProximal
from learnrecon.models.variational import VariationalNetwork
from learnrecon.operators.base import LinearOperator

__all__ = [
    "MODELS",
    "PRETRAINED_DIR",
    "SMALL_PARAMS",
    "build_model",
    "checkpoint_location",
    "model_parameters",
    "pretrained",
    "pretrained_names",
]

MODELS: dict[str, type[nn.Module]] = {
    "fbpconvnet": FBPConvNet,
    "lista": LISTA,
    "lgd": LearnedGradientDescent,
    "glgd": GeneralisedLGD,
    "proximal": LearnedProximal,
    "lpd": LearnedPrimalDual,
    "vn": VariationalNetwork,
}

#: Small versions of every model (a few thousand parameters), for tests and device checks on 32²–64² problems.
SMALL_PARAMS: dict[str, dict[str, Any]] = {
    "fbpconvnet": {"depth": 2, "width": 8},
    "lista": {"n_iter": 4, "matrices": False, "lam": 0.001},
    "lgd": {"n_iter": 3, "n_memory": 2, "width": 8},
    "glgd": {"n_iter": 3, "n_memory": 2, "width": 8},
    "proximal": {"n_iter": 3, "width": 8},
    "lpd": {"n_iter": 3, "n_primal": 3, "n_dual": 3, "width": 8},
    "vn": {"n_stages": 3, "n_filters": 4, "filter_size": 5, "n_rbf": 9},
}

#: Parameters filled in by the library, not by configs.
_INJECTED = ("operator",)

#: Where the shipped checkpoints live (``<name>.safetensors`` + ``<name>.json``).
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def model_parameters(name: str) -> dict[str, Any]:
    """The configurable parameters of model ``name`` and their defaults."""
    cls = _model_class(name)
    return {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self", *_INJECTED)
    }


def _model_class(name: str) -> type[nn.Module]:
    if name not in MODELS:
        raise ParameterError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def _fits(default: Any, value: Any) -> bool:
    """Whether ``value`` has the type of the parameter whose default is ``default``: a bool for a bool, an int
    for an int, an int or float for a float, anything but a bool for another default (``None``, a string)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return True


def build_model(name: str, params: dict[str, Any] | None = None, op: LinearOperator | None = None) -> nn.Module:
    """Model ``name`` with ``params`` (unknown keys and wrong types are named in the error).

    ``op`` is passed to models whose size depends on the operator (LISTA with explicit matrices).
    """
    params = dict(params or {})
    known = model_parameters(name)
    for key, value in params.items():
        if key not in known:
            raise ParameterError(f"model {name!r} has no parameter {key!r}; its parameters: {', '.join(known)}")
        if not _fits(known[key], value):
            default = known[key]
            raise ParameterError(
                f"model parameter {key!r} must be {type(default).__name__}, got {value!r} ({type(value).__name__})"
            )
    cls = _model_class(name)
    if "operator" in inspect.signature(cls.__init__).parameters:
        params["operator"] = op
    return cls(**params)


def pretrained_names() -> list[str]:
    """Names of the shipped checkpoints, e.g. ``["fbpconvnet-ellipses", "lgd-ellipses", "lpd-ellipses"]``."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def checkpoint_location(name: str) -> Path:
    """Where checkpoint ``name`` is: the shipped model of that name, else ``name`` itself as a path (no suffix)."""
    return PRETRAINED_DIR / name if name in pretrained_names() else Path(name)


def pretrained(name: str, device: str = "cpu") -> nn.Module:
    """The shipped model ``name`` with its trained weights, in eval mode (see :func:`pretrained_names`).

    Its provenance (config, steps, wall time, device, validation PSNR, commit) is in ``model.provenance``.
    """
    from learnrecon.training.checkpoint import load_model

    path = PRETRAINED_DIR / f"{name}.safetensors"
    if not path.exists():
        available = ", ".join(pretrained_names()) or "none"
        raise ParameterError(f"no pretrained model {name!r}; available: {available}")
    return load_model(path, device=device)
