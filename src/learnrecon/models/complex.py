"""How the networks see an operator's spaces: real tensors ``(N, c, h, w)``, complex values as two real channels.

This module is the one place where learnrecon turns images and data into what a convolutional network takes. A
space of shape ``(*lead, h, w)`` (an operator's domain or range), real or complex, is seen as real tensors
``(N, c, h, w)`` with ``c = prod(lead) · (2 if complex else 1)``:

- a complex slice ``l`` of the leading dimensions becomes channels ``2l`` (real part) and ``2l + 1`` (imaginary
  part), in that order (real, imaginary); a real slice ``l`` becomes channel ``l``;
- single-coil MRI: images and k-space ``(H, W)`` complex → 2 channels each;
- multi-coil MRI: images ``(1, H, W)`` complex → 2 channels; k-space ``(n_coils, H, W)`` → ``2 · n_coils`` channels
  (coil ``c`` in channels ``2c``, ``2c + 1``);
- a real 2-D space ``(h, w)`` → 1 channel (the view is the identity: such operators are used as they are).

:class:`RealChannels` is the operator between those views, ``x ↦ to_channels(A from_channels(x))``. Splitting a
complex vector into its real and imaginary parts is an isometry from ``Cⁿ`` (with the real inner product
``Re⟨a, b⟩``) onto ``R²ⁿ``, so the adjoint of the view is the view of ``A*``: the dot-product test holds to
rounding (tested). A model that convolves (``Unrolled`` with ``convolved_spaces``, FBPConvNet) builds its networks
for :func:`network_channels` of the operator it is given at construction (``operator=``, which
:func:`~learnrecon.models.hub.build_model` passes) and runs its steps on ``RealChannels(op)``; nothing in a model
knows whether the images are complex.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from learnrecon.errors import DTypeError, ShapeError
from learnrecon.operators.base import LinearOperator

__all__ = [
    "RealChannels",
    "check_network_channels",
    "from_channels",
    "from_network",
    "network_channels",
    "network_operator",
    "space_channels",
    "to_channels",
    "to_network",
]


def space_channels(shape: Sequence[int], is_complex: bool) -> int:
    """The number of real channels a network sees for a space of ``shape`` (``(*lead, h, w)``)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ShapeError(f"a network convolves 2-D slices; a space of shape {shape} has none")
    return math.prod(shape[:-2]) * (2 if is_complex else 1)


def network_channels(op: LinearOperator | None) -> tuple[int, int]:
    """``(image channels, data channels)`` of ``op``'s spaces as networks see them; ``(1, 1)`` for ``None``
    (a model built without an operator is built for real 2-D images and data)."""
    if op is None:
        return 1, 1
    return _channels_or_none(op.domain_shape, op.domain_complex), _channels_or_none(op.range_shape, op.range_complex)


def _channels_or_none(shape: Sequence[int], is_complex: bool) -> int:
    # An operator may have a space no network can convolve (a vector); its count is 0 and using it is refused.
    return space_channels(shape, is_complex) if len(shape) >= 2 else 0


def to_channels(x: torch.Tensor, shape: Sequence[int], is_complex: bool) -> torch.Tensor:
    """``x`` ``(*batch, *shape)`` as real ``(*batch, c, h, w)`` (module docstring; the inverse of
    :func:`from_channels`)."""
    shape = tuple(shape)
    batch = x.shape[: x.ndim - len(shape)]
    c = space_channels(shape, is_complex)
    if is_complex:
        x = torch.view_as_real(x).movedim(-1, -3)  # (*batch, *lead, 2, h, w): (real, imaginary) of each slice
    return x.reshape(*batch, c, *shape[-2:])


def from_channels(t: torch.Tensor, shape: Sequence[int], is_complex: bool) -> torch.Tensor:
    """Real ``t`` ``(*batch, c, h, w)`` back to ``(*batch, *shape)``, complex when ``is_complex``."""
    shape = tuple(shape)
    c = space_channels(shape, is_complex)
    if t.ndim < 3 or t.shape[-3] != c or tuple(t.shape[-2:]) != shape[-2:]:
        raise ShapeError(f"network tensor has shape {tuple(t.shape)}; a space {shape} needs (..., {c}, *{shape[-2:]})")
    batch = t.shape[:-3]
    if not is_complex:
        return t.reshape(*batch, *shape)
    pairs = t.reshape(*batch, *shape[:-2], 2, *shape[-2:]).movedim(-3, -1).contiguous()
    return torch.view_as_complex(pairs)


class RealChannels(LinearOperator):
    """``op`` between the networks' views of its spaces: real ``(*batch, c_x, H, W)`` → real ``(*batch, c_y, h, w)``,
    ``x ↦ to_channels(A from_channels(x))``, adjoint ``y ↦ to_channels(A* from_channels(y))`` (module docstring).
    Its norm, pseudo-inverse and options are ``op``'s."""

    def __init__(self, op: LinearOperator) -> None:
        c_x = space_channels(op.domain_shape, op.domain_complex)
        c_y = space_channels(op.range_shape, op.range_complex)
        super().__init__((c_x, *op.domain_shape[-2:]), (c_y, *op.range_shape[-2:]))
        self.op = op
        self.pseudo_inverse_options = op.pseudo_inverse_options

    @property
    def name(self) -> str:
        return self.op.name

    def _forward(self, x):
        op = self.op
        return to_channels(op._forward(from_channels(x, op.domain_shape, op.domain_complex)), op.range_shape,
                           op.range_complex)  # fmt: skip

    def _adjoint(self, y):
        op = self.op
        return to_channels(op._adjoint(from_channels(y, op.range_shape, op.range_complex)), op.domain_shape,
                           op.domain_complex)  # fmt: skip

    def norm(self, *args, **kwargs) -> float:
        return self.op.norm(*args, **kwargs)

    def pseudo_inverse(self, y: torch.Tensor, **options) -> torch.Tensor:
        op = self.op
        x = op.pseudo_inverse(from_channels(y, op.range_shape, op.range_complex), **options)
        return to_channels(x, op.domain_shape, op.domain_complex)


def _is_network_shaped(op: LinearOperator) -> bool:
    return len(op.domain_shape) == 2 and len(op.range_shape) == 2 and not (op.domain_complex or op.range_complex)


def network_operator(op: LinearOperator) -> LinearOperator:
    """``op`` as the networks use it: ``op`` itself for a real operator between 2-D spaces (its view is the
    identity), else :class:`RealChannels` ``(op)``."""
    return op if _is_network_shaped(op) or isinstance(op, RealChannels) else RealChannels(op)


def _space(op: LinearOperator, space: str) -> tuple[tuple[int, ...], bool]:
    if space == "images":
        return op.domain_shape, op.domain_complex
    if space == "data":
        return op.range_shape, op.range_complex
    raise ValueError(f"space must be 'images' or 'data', got {space!r}")


def to_network(t: torch.Tensor, op: LinearOperator, space: str = "data") -> torch.Tensor:
    """``op``'s data (or ``space="images"``) ``(N, 1, *shape)`` as the network tensors ``(N, c, h, w)`` of
    :func:`network_operator`."""
    if _is_network_shaped(op):
        return t
    shape, is_complex = _space(op, space)
    return to_channels(t.reshape(-1, *shape), shape, is_complex)


def from_network(t: torch.Tensor, op: LinearOperator, space: str = "images") -> torch.Tensor:
    """Network tensors ``(N, c, h, w)`` as ``op``'s images (or ``space="data"``) ``(N, 1, *shape)``, complex when
    they are."""
    if _is_network_shaped(op):
        return t
    shape, is_complex = _space(op, space)
    return from_channels(t, shape, is_complex).reshape(-1, 1, *shape)


def check_network_channels(op: LinearOperator, model: str, spaces: Sequence[str], channels: tuple[int, int]) -> None:
    """Raise unless ``op``'s ``spaces`` (``"images"``, ``"data"``) can be convolved (at least 2-D) and have the
    numbers of channels ``channels`` = ``(image, data)`` that ``model``'s networks were built for."""
    described = {
        "images": (op.domain_shape, op.domain_complex, channels[0]),
        "data": (op.range_shape, op.range_complex, channels[1]),
    }
    for what in spaces:
        shape, is_complex, built = described[what]
        if len(shape) < 2:
            raise ShapeError(f"{model} convolves 2-D {what}; {op.name} has {what} of shape {tuple(shape)}")
        needed = space_channels(shape, is_complex)
        if needed != built:
            kind = "complex" if is_complex else "real"
            parts = " (real, imaginary)" if is_complex else ""
            error = DTypeError if is_complex else ShapeError
            raise error(
                f"{model} was built for {what} of {built} real channel(s); {op.name} has {kind} {what} of shape "
                f"{tuple(shape)}, {needed} channel(s){parts}: build the model for this operator, "
                f"build_model(name, params, op=op) or {model}(..., operator=op)"
            )
