"""Input validation shared by operators, solvers, metrics and data readers.

Each check raises a :mod:`learnrecon.errors` exception whose message names the problem and the fix.
The checks are cheap (metadata only) except :func:`check_finite`, which reads the whole tensor and
is therefore called at entry points (solvers, FBP, data loading), never inside operator hot loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from learnrecon.errors import DeviceError, DTypeError, NonFiniteError, ParameterError, ShapeError


def check_tensor(x: object, name: str = "input") -> torch.Tensor:
    """Return ``x`` if it is a floating or complex tensor; raise a clear error otherwise."""
    if not isinstance(x, torch.Tensor):
        raise DTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; convert with torch.as_tensor(...)")
    if not (x.is_floating_point() or x.is_complex()):
        raise DTypeError(
            f"{name} has dtype {x.dtype} but learnrecon needs a floating dtype; "
            f"convert with {name}.float() or .double()"
        )
    return x


def check_complexity(x: torch.Tensor, complex_expected: bool, name: str = "input") -> None:
    """Raise if ``x`` is complex where real data is expected, or the reverse."""
    if x.is_complex() and not complex_expected:
        raise DTypeError(
            f"{name} is complex ({x.dtype}) but real data is expected; "
            f"pass {name}.real or {name}.abs() if that is what you mean"
        )
    if not x.is_complex() and complex_expected:
        raise DTypeError(
            f"{name} is real ({x.dtype}) but complex data is expected; "
            f"convert with {name}.to(torch.complex64) (or complex128)"
        )


def check_trailing_shape(x: torch.Tensor, shape: Sequence[int], name: str = "input", what: str = "") -> None:
    """Raise unless the last ``len(shape)`` dimensions of ``x`` equal ``shape``."""
    shape = tuple(shape)
    k = len(shape)
    if x.ndim < k or tuple(x.shape[x.ndim - k :]) != shape:
        expected = "(..., " + ", ".join(str(s) for s in shape) + ")"
        target = f" {what}" if what else ""
        raise ShapeError(
            f"{name} has shape {tuple(x.shape)} but{target} expects {expected}: "
            f"any leading batch dimensions followed by {shape}"
        )


def check_finite(x: torch.Tensor, name: str = "input") -> torch.Tensor:
    """Raise :class:`NonFiniteError` if ``x`` contains NaN or Inf."""
    if not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise NonFiniteError(
            f"{name} contains {n_nan} NaN and {n_inf} Inf values; clean or mask the data before reconstructing"
        )
    return x


def parse_device(name: str, what: str = "device", local_rank: int = 0) -> torch.device:
    """The device ``name`` ("auto": CUDA device ``local_rank`` when CUDA is available, else the CPU), or a
    :class:`ParameterError` naming the option ``what`` when it is not a device or CUDA is missing."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ParameterError(f"{what} {name!r} is not a device: use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"{what} is {name!r} but CUDA is not available; use cpu or auto")
    return device


def check_same_device(*named: tuple[str, torch.Tensor]) -> None:
    """Raise :class:`DeviceError` unless all named tensors live on one device."""
    devices = {t.device for _, t in named}
    if len(devices) > 1:
        where = ", ".join(f"{n} on {t.device}" for n, t in named)
        raise DeviceError(f"tensors are on different devices ({where}); move them with .to(device)")


def check_same_shape(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("x", "reference")) -> None:
    """Raise :class:`ShapeError` unless ``a`` and ``b`` have equal shapes."""
    if a.shape != b.shape:
        raise ShapeError(
            f"{names[0]} has shape {tuple(a.shape)} but {names[1]} has shape {tuple(b.shape)}; they must match"
        )
