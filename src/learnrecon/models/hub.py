"""Models from names, parameters and checkpoints: :func:`build_model`, :func:`load_model`, :func:`pretrained`.

A model built here carries ``model.spec = {"name", "params"}`` (what a checkpoint records to rebuild it); a model
loaded from a checkpoint carries the checkpoint's metadata as ``model.provenance``. The checkpoint files themselves
(format, integrity, atomic writes) are :mod:`learnrecon.io.checkpoint`'s, which knows no models.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learnrecon.errors import DataFileError, ParameterError
from learnrecon.io.checkpoint import load_checkpoint
from learnrecon.models.registry import MODELS
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.registry import build_operator

__all__ = [
    "PRETRAINED_DIR",
    "build_model",
    "checkpoint_location",
    "load_model",
    "load_weights",
    "model_parameters",
    "model_state",
    "pretrained",
    "pretrained_names",
]

#: Parameters filled in by the library, not by configs.
_INJECTED = ("operator",)

#: Where the shipped checkpoints live (``<name>.safetensors`` + ``<name>.json``).
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def _model_class(name: str) -> type[nn.Module]:
    if name not in MODELS:
        raise ParameterError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def model_parameters(name: str) -> dict[str, Any]:
    """The configurable parameters of model ``name`` and their defaults."""
    cls = _model_class(name)
    return {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self", *_INJECTED)
    }


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

    ``op`` is passed to models whose size depends on the operator (LISTA with explicit matrices). The model
    records ``spec = {"name": name, "params": params}``.
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
    spec = {"name": name, "params": dict(params)}
    for key in getattr(cls, "submodel_params", ()):  # a composite model's parts, from their own sections
        if isinstance(params.get(key), dict):
            params[key] = _submodel(name, key, params[key], op)
    if "operator" in inspect.signature(cls.__init__).parameters:
        params["operator"] = op
    model = cls(**params)
    model.spec = spec
    return model


def _submodel(name: str, key: str, section: dict[str, Any], op: LinearOperator | None) -> nn.Module:
    """The part ``key`` of composite model ``name`` from its section ``{name, params}``."""
    if "name" not in section or set(section) - {"name", "params"}:
        raise ParameterError(f"model {name!r}: {key} must be a section {{name, params}}, got keys {sorted(section)}")
    return build_model(section["name"], section.get("params"), op=op)


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's ``state_dict`` entries of a checkpoint's tensors."""
    return {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], meta: dict, path: str | Path) -> None:
    """Load a checkpoint's weights into ``model``, naming the mismatch when it holds another model."""
    saved = meta.get("model", {}).get("name", "unknown")
    state, expected = model_state(tensors), model.state_dict()
    if any(k in expected and expected[k].shape != v.shape for k, v in state.items()):
        raise DataFileError(
            f"checkpoint {path}: weight shapes do not match model {saved!r} {meta.get('model', {}).get('params')}"
        )
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise DataFileError(
            f"checkpoint {path} holds weights of model {saved!r} that do not fit this "
            f"{type(model).__name__}: missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}"
        )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model a checkpoint was saved from, load its weights, and return it in eval mode.

    The checkpoint's metadata is attached as ``model.provenance``.
    """
    tensors, meta = load_checkpoint(path, device)
    spec = meta.get("model")
    if not isinstance(spec, dict) or "name" not in spec:
        raise DataFileError(f"checkpoint {path} does not say which model it holds (no model.name in its JSON)")
    op = build_operator(meta["operator"]) if meta.get("operator") else None
    model = build_model(spec["name"], spec.get("params", {}), op=op).to(device)
    load_weights(model, tensors, meta, path)
    model.provenance = meta
    return model.eval()


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
    path = PRETRAINED_DIR / f"{name}.safetensors"
    if not path.exists():
        available = ", ".join(pretrained_names()) or "none"
        raise ParameterError(f"no pretrained model {name!r}; available: {available}")
    return load_model(path, device=device)
