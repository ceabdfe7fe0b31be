"""The shared interface of the learned reconstructors: ``model(y, op) -> x`` and unrolled schemes.

An unrolled scheme is an :class:`nn.ModuleList` of step modules. A step maps a state (a tuple of
tensors whose first entry holds the image in channel 0) to the next state, given the data and the
operator: ``state_{k+1} = step_k(state_k, y, op)``. :class:`Unrolled` runs ``n_iter`` steps from
:meth:`Unrolled.initial_state`; a deep equilibrium model runs the same step to its fixed point.

Shapes: ``y`` is ``(B, C, *op.range_shape)``; the ``C`` channels are independent problems, so the
networks see ``(B·C, 1, …)`` and the result is ``(B, C, *op.domain_shape)``. A scheme that convolves runs its steps
on the networks' view of the operator (:mod:`learnrecon.models.complex`): real ``(B·C, c, h, w)`` tensors, with
complex images and k-space (MRI) as two real channels (real, imaginary) per slice.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from learnrecon._checks import check_finite, check_tensor, check_trailing_shape
from learnrecon.errors import DeviceError, ParameterError, ShapeError
from learnrecon.models.complex import (
    check_network_channels,
    from_network,
    network_channels,
    network_operator,
    to_network,
)
from learnrecon.operators.base import LinearOperator

__all__ = ["INITS", "State", "Unrolled", "initial_reconstruction", "normalised"]

State = tuple[torch.Tensor, ...]

#: Initial reconstructions: zeros, the adjoint on the image's scale ``op.H y / ‖A‖²`` (one Landweber step from
#: zero; the adjoint of the normalised problem ``y/‖A‖``, ``A/‖A‖``), the operator's own pseudo-inverse
#: ``op.pseudo_inverse(y)`` ("auto": filtered backprojection for a ray transform, the zero-filled inverse for MRI,
#: the adjoint otherwise), or "fbp": that pseudo-inverse with the model's FBP filter, for operators whose
#: pseudo-inverse is a filtered backprojection.
INITS = ("zero", "fbp", "adjoint", "auto")


def initial_reconstruction(y: torch.Tensor, op: LinearOperator, kind: str, fbp_filter: str = "hann") -> torch.Tensor:
    """``x_0`` for data ``y`` ``(N, 1, *range)``: ``0``, ``op.H y / ‖A‖²`` or ``op.pseudo_inverse(y)`` (``kind``
    in :data:`INITS`)."""
    if kind == "zero":
        return y.new_zeros(*y.shape[: y.ndim - len(op.range_shape)], *op.domain_shape, dtype=_image_dtype(y, op))
    if kind == "adjoint":
        return op.H(y) / op.norm(torch.float64, y.device) ** 2
    if kind == "auto":
        return op.pseudo_inverse(y)
    if kind == "fbp":
        if "filter" not in op.pseudo_inverse_options:
            raise ParameterError(
                f"init='fbp' needs an operator whose pseudo-inverse is a filtered backprojection (a ray transform), "
                f"got {op.name}; use init='auto' (its own pseudo-inverse), 'adjoint' or 'zero'"
            )
        return op.pseudo_inverse(y, filter=fbp_filter)
    raise ParameterError(f"unknown initial reconstruction {kind!r}; choose one of {', '.join(INITS)}")


def _image_dtype(y: torch.Tensor, op: LinearOperator) -> torch.dtype:
    """The dtype of ``op``'s images for data ``y``: complex when the images are (MRI), else ``y``'s real dtype."""
    real = y.real.dtype if y.is_complex() else y.dtype
    if op.domain_complex:
        return torch.complex128 if real == torch.float64 else torch.complex64
    return real


def normalised(y: torch.Tensor, op: LinearOperator) -> tuple[torch.Tensor, LinearOperator]:
    """``(y/‖A‖, A/‖A‖)``: the same problem with an operator of norm 1 (the image scale is unchanged).

    ‖A‖ is computed once per operator on ``y``'s device (float64 power iteration, cached).
    """
    scale = 1.0 / op.norm(torch.float64, y.device)
    return y * scale, op * scale


def flatten_channels(y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
    check_tensor(y, "measurements")
    check_finite(y, "measurements")
    check_trailing_shape(y, op.range_shape, "measurements", what=op.name)
    if y.ndim != len(op.range_shape) + 2:
        raise ShapeError(
            f"measurements have shape {tuple(y.shape)}; a learned model needs (B, C, "
            f"{', '.join(map(str, op.range_shape))})"
        )
    return y.reshape(-1, 1, *op.range_shape)


def check_convolved_spaces(
    op: LinearOperator, model: str, spaces: tuple[str, ...] = ("images",), channels: tuple[int, int] = (1, 1)
) -> None:
    """Raise unless ``op``'s ``spaces`` (``"images"``: its domain, ``"data"``: its range) can be convolved and
    have, as networks see them (:mod:`learnrecon.models.complex`: complex values as two real channels), the
    ``channels`` = ``(image, data)`` that ``model``'s networks were built for."""
    check_network_channels(op, model, spaces, channels)


def network_input(
    model: nn.Module, y: torch.Tensor, op: LinearOperator, spaces: tuple[str, ...] = ("images",)
) -> torch.Tensor:
    """``y`` as ``(N, 1, *op.range_shape)`` (see :func:`flatten_channels`), after checking that ``op``'s
    ``spaces`` suit ``model``'s convolutions (:func:`check_convolved_spaces`) and that ``y`` is on the device
    of ``model``'s weights."""
    check_convolved_spaces(op, type(model).__name__, spaces, getattr(model, "channels", (1, 1)))
    y = flatten_channels(y, op)
    weight = next(model.parameters(), None)
    if weight is not None and weight.device != y.device:
        raise DeviceError(
            f"measurements are on {y.device} but the model's weights are on {weight.device}; "
            "move one of them with .to(device)"
        )
    return y


def as_weights_dtype(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the floating-point type of ``model``'s weights (data of another precision than the
    network's give an initial reconstruction of theirs)."""
    weight = next(model.parameters(), None)
    return x if weight is None or x.is_complex() else x.to(weight.dtype)


class Unrolled(nn.Module):
    """``n_iter`` learned steps from an initial state; subclasses define the steps and the state.

    ``convolved_spaces`` names the spaces the steps convolve (see :func:`check_convolved_spaces`):
    :meth:`forward` checks that the operator's can be convolved and have the channels the networks were built for
    (``operator=`` at construction; :func:`~learnrecon.models.complex.network_channels`). With
    ``checkpoint_activations`` set, a forward pass that records gradients keeps only the states between
    iterations and recomputes each iteration's activations in the backward pass (activation checkpointing:
    memory for one iteration's activations plus ``n_iter`` states, instead of ``n_iter`` iterations' activations).

    Args:
        steps: one step module per iteration, or a single one applied at every iteration (shared weights).
        n_iter: the number of iterations.
        init: the initial reconstruction (see :data:`INITS`).
        normalise: run the scheme on ``A/‖A‖`` and ``y/‖A‖`` as in the papers (the output scale is unchanged).
    """

    convolved_spaces: tuple[str, ...] = ("images",)
    checkpoint_activations: bool = False
    #: Greedy training (see :meth:`set_greedy_stage`): the iterations run (None: all) and how many of them are frozen.
    active_iterations: int | None = None
    frozen_iterations: int = 0

    def __init__(
        self, steps: list[nn.Module], n_iter: int, init: str, normalise: bool, operator: LinearOperator | None = None
    ) -> None:
        super().__init__()
        if n_iter < 1 or len(steps) not in (1, n_iter):
            raise ParameterError(f"need n_iter >= 1 and 1 or n_iter steps, got n_iter={n_iter}, {len(steps)} steps")
        if init not in INITS:
            raise ParameterError(f"unknown initial reconstruction {init!r}; choose one of {', '.join(INITS)}")
        self.steps = nn.ModuleList(steps)
        self.n_iter = n_iter
        self.init = init
        self.normalise = normalise
        #: ``(image, data)`` channels of the networks (:func:`~learnrecon.models.complex.network_channels` of
        #: the operator the model was built for; ``(1, 1)``: real 2-D images and data).
        self.channels = network_channels(operator)

    def step(self, k: int) -> nn.Module:
        """The step module of iteration ``k`` (the same module at every ``k`` when weights are shared)."""
        return self.steps[k % len(self.steps)]

    def initial_state(self, x0: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> State:
        """The state before the first step, from ``x0`` ``(N, 1, H, W)``; default ``(x0,)``."""
        return (x0,)

    def readout(self, state: State) -> torch.Tensor:
        """The image ``(N, c, H, W)`` held by a state: the first ``c`` (image) channels of its first tensor."""
        return state[0][:, : self.channels[0]]

    def prepare(self, y: torch.Tensor, op: LinearOperator) -> tuple[State, torch.Tensor, LinearOperator]:
        """The initial state and the (normalised) data and operator the steps work with."""
        x0 = as_weights_dtype(self, initial_reconstruction(y, op, self.init))
        if self.normalise:
            y, op = normalised(y, op)
        return self.initial_state(x0, y, op), y, op

    def forward(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """Reconstruct ``(B, C, *op.domain_shape)`` from ``y`` ``(B, C, *op.range_shape)``."""
        flat = network_input(self, y, op, self.convolved_spaces)
        batch = y.shape[: -len(op.range_shape)]
        # Networks see real (N, c, h, w) tensors (models/complex.py); a scheme that convolves nothing (LISTA)
        # works on the operator's own spaces.
        view = network_operator(op) if self.convolved_spaces else op
        flat = to_network(flat, op) if self.convolved_spaces else flat
        state, y_work, op_work = self.prepare(flat, view)
        active = self.n_iter if self.active_iterations is None else self.active_iterations
        frozen = min(self.frozen_iterations, active)
        if frozen:
            with torch.no_grad():
                state = self.run_steps(state, y_work, op_work, 0, frozen)
        state = self.run_steps(state, y_work, op_work, frozen, active)
        x = self.readout(state)
        x = from_network(x, op) if self.convolved_spaces else x
        return x.reshape(*batch, *op.domain_shape)

    def run_steps(self, state: State, y: torch.Tensor, op: LinearOperator, start: int, stop: int) -> State:
        """Iterations ``start … stop − 1`` from ``state`` (checkpointed when :attr:`checkpoint_activations`)."""
        recompute = self.checkpoint_activations and torch.is_grad_enabled()
        for k in range(start, stop):
            if recompute:
                state = checkpoint(self.step(k), state, y, op, use_reentrant=False)
            else:
                state = self.step(k)(state, y, op)
        return state

    def set_greedy_stage(self, stage: int | None) -> None:
        """Greedy (iteration-wise) training, stage ``stage``: run iterations ``0 … stage`` only, the first
        ``stage`` of them frozen (no gradients, run under ``torch.no_grad``), so only iteration ``stage`` trains
        and only its activations are kept. ``None``: every iteration, all trainable (end-to-end).

        A stage's output is the full model's when the later steps are still untrained: their last layers start
        at zero (:class:`~learnrecon.models.nets.ConvBlock`), so an untrained residual step is the identity.
        """
        if stage is None:
            self.active_iterations, self.frozen_iterations = None, 0
            frozen_steps: set[int] = set()
        else:
            if len(self.steps) != self.n_iter:
                raise ParameterError("greedy training needs one step module per iteration (share_weights=False)")
            if not 0 <= stage < self.n_iter:
                raise ParameterError(f"greedy stage {stage} is not an iteration of 0 … {self.n_iter - 1}")
            self.active_iterations, self.frozen_iterations = stage + 1, stage
            frozen_steps = set(range(stage))
        for k, step in enumerate(self.steps):
            step.requires_grad_(k not in frozen_steps)
