"""Invertible learned primal-dual (after Rudzusika, Bajić, Öktem, Schönlieb & Etmann 2021).

The state is that of learned primal-dual (:mod:`learnrecon.models.primal_dual`): primal ``f`` (``N_p`` channels,
channel 0 the image) and dual ``h`` (``N_d`` channels). Each iteration is four additive couplings, each of which
updates one half of the channels of one variable from the other half, so each is inverted exactly by a
subtraction. With ``f = (f₁, f₂)``, ``h = (h₁, h₂)`` split by channels, ``a = A f⁽ᵖ⁾`` (channel ``p`` = 1, or 0
for a single primal channel) and ``b = A* h'⁽⁰⁾``, iteration ``k`` is

    h₂ ← h₂ + Γᵏ₁(h₁, a, y),   h₁ ← h₁ + Γᵏ₂(h₂, a, y)          (dual couplings; f is unchanged, so a is fixed)
    f₂ ← f₂ + Λᵏ₁(f₁, b),      f₁ ← f₁ + Λᵏ₂(f₂, b)             (primal couplings; h is unchanged, so b is fixed)

and its inverse runs the four in reverse order with the signs flipped (``a`` and ``b`` are recomputed from the
parts the couplings leave alone). One operator and one adjoint per iteration, as in learned primal-dual.

Memory. In training, the iterations run under ``torch.no_grad`` inside one autograd function that keeps only
the final state; its backward pass walks the iterations from the last to the first, recovers each iteration's
input from its output by the inverse, recomputes that one iteration with gradients and back-propagates through
it. The activations held are those of one iteration whatever ``n_iter`` is (the price: one more forward pass,
and the inverses). Gradients are those of the plain computation up to the rounding of the inverses (checked in
the tests against the same network run plainly, ``memory_saving=False``). Under bfloat16 autocast
(``training.amp``) the backward pass recomputes in the same autocast state, but the inverses are then only as
exact as bfloat16 (about 1e-3 of each update), so the gradients are approximate: train it in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.errors import ParameterError
from learnrecon.models.base import State, Unrolled
from learnrecon.models.nets import ConvBlock
from learnrecon.operators.base import LinearOperator

__all__ = ["InvertibleLearnedPrimalDual", "InvertiblePrimalDualStep"]


def _halves(n: int) -> tuple[int, int]:
    return n // 2, n - n // 2


class InvertiblePrimalDualStep(nn.Module):
    """One invertible iteration: ``forward(state, y, op)`` and its exact inverse ``inverse(state, y, op)``."""

    def __init__(self, n_primal: int, n_dual: int, width: int, depth: int) -> None:
        super().__init__()
        p1, p2 = _halves(n_primal)
        d1, d2 = _halves(n_dual)
        self.splits = (p1, d1)
        self.dual_1 = ConvBlock(d1 + 2, d2, width, depth)  # h₂ += Γ₁(h₁, A f, y)
        self.dual_2 = ConvBlock(d2 + 2, d1, width, depth)  # h₁ += Γ₂(h₂, A f, y)
        self.primal_1 = ConvBlock(p1 + 1, p2, width, depth)  # f₂ += Λ₁(f₁, A* h)
        self.primal_2 = ConvBlock(p2 + 1, p1, width, depth)  # f₁ += Λ₂(f₂, A* h)

    @staticmethod
    def _projection(f: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        f_dual = f[:, 1:2] if f.shape[1] > 1 else f[:, :1]
        return op(f_dual.to(y.dtype))

    @staticmethod
    def _backprojection(h: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        return op.H(h[:, :1].to(y.dtype))

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        f, h = state
        p1, d1 = self.splits
        a = self._projection(f, y, op).to(h.dtype)
        y_h = y.to(h.dtype)
        h1, h2 = h[:, :d1], h[:, d1:]
        h2 = h2 + self.dual_1(torch.cat([h1, a, y_h], dim=1))
        h1 = h1 + self.dual_2(torch.cat([h2, a, y_h], dim=1))
        h = torch.cat([h1, h2], dim=1)
        b = self._backprojection(h, y, op).to(f.dtype)
        f1, f2 = f[:, :p1], f[:, p1:]
        f2 = f2 + self.primal_1(torch.cat([f1, b], dim=1))
        f1 = f1 + self.primal_2(torch.cat([f2, b], dim=1))
        return torch.cat([f1, f2], dim=1), h

    def inverse(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        """The input state whose :meth:`forward` is ``state``."""
        f, h = state
        p1, d1 = self.splits
        b = self._backprojection(h, y, op).to(f.dtype)
        f1, f2 = f[:, :p1], f[:, p1:]
        f1 = f1 - self.primal_2(torch.cat([f2, b], dim=1))
        f2 = f2 - self.primal_1(torch.cat([f1, b], dim=1))
        f = torch.cat([f1, f2], dim=1)
        a = self._projection(f, y, op).to(h.dtype)
        y_h = y.to(h.dtype)
        h1, h2 = h[:, :d1], h[:, d1:]
        h1 = h1 - self.dual_2(torch.cat([h2, a, y_h], dim=1))
        h2 = h2 - self.dual_1(torch.cat([h1, a, y_h], dim=1))
        return f, torch.cat([h1, h2], dim=1)


class _InvertibleChain(torch.autograd.Function):
    """The iterations ``start … stop − 1`` of an invertible model, keeping only the final state for backward."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, model, start, stop, y, op, f, h, *params):
        state = (f, h)
        with torch.no_grad():
            for k in range(start, stop):
                state = model.step(k)(state, y, op)
        ctx.model, ctx.range, ctx.op = model, (start, stop), op
        ctx.save_for_backward(y, *state)
        return state

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")  # the recomputation in the forward pass's autocast state
    def backward(ctx, grad_f, grad_h):
        y, f, h = ctx.saved_tensors
        model, (start, stop), op = ctx.model, ctx.range, ctx.op
        params = [p for p in model.steps.parameters() if p.requires_grad]
        param_grads = [torch.zeros_like(p) for p in params]
        index = {id(p): i for i, p in enumerate(params)}
        grad_y = torch.zeros_like(y) if ctx.needs_input_grad[3] else None
        state = (f.detach(), h.detach())
        for k in reversed(range(start, stop)):
            step = model.step(k)
            with torch.no_grad():
                f_in, h_in = step.inverse(state, y, op)
            with torch.enable_grad():
                f_in = f_in.detach().requires_grad_(True)
                h_in = h_in.detach().requires_grad_(True)
                y_k = y.detach().requires_grad_(grad_y is not None)
                out = step((f_in, h_in), y_k, op)
                own = [p for p in step.parameters() if p.requires_grad]
                inputs = [f_in, h_in, *own, *([y_k] if grad_y is not None else [])]
                grads = torch.autograd.grad(out, inputs, (grad_f, grad_h), allow_unused=True)
            grad_f, grad_h = grads[0], grads[1]
            for p, g in zip(own, grads[2 : 2 + len(own)], strict=True):
                if g is not None:
                    param_grads[index[id(p)]] += g
            if grad_y is not None and grads[-1] is not None:
                grad_y += grads[-1]
            state = (f_in.detach(), h_in.detach())
        all_params = ctx.needs_input_grad[7:]
        it = iter(param_grads)
        out_params = [next(it) if needed else None for needed in all_params]
        return None, None, None, grad_y, None, grad_f, grad_h, *out_params


class InvertibleLearnedPrimalDual(Unrolled):
    """Invertible learned primal-dual: ``n_iter`` steps of :class:`InvertiblePrimalDualStep` whose training
    memory does not grow with ``n_iter`` (see the module docstring).

    Args:
        n_iter: iterations (10).
        n_primal, n_dual: memory channels (at least 2 each, so that each can be split in two halves; 6 and 6).
        width, depth: each coupling's CNN (32 channels, 3 layers; four couplings an iteration).
        share_weights: one step module for all iterations.
        init: the initial image in every primal channel ("zero" as in learned primal-dual).
        normalise: work with ``A/‖A‖`` and ``y/‖A‖``.
        memory_saving: recompute activations from the inverses in the backward pass (default). False runs
            the same network plainly (autograd keeps every iteration's activations): the reference the tests
            compare gradients with.
    """

    convolved_spaces = ("images", "data")

    def __init__(
        self,
        n_iter: int = 10,
        n_primal: int = 6,
        n_dual: int = 6,
        width: int = 32,
        depth: int = 3,
        share_weights: bool = False,
        init: str = "zero",
        normalise: bool = True,
        memory_saving: bool = True,
    ) -> None:
        if n_primal < 2 or n_dual < 2:
            raise ParameterError(
                f"invertible learned primal-dual splits its memory channels in two: need n_primal >= 2 and "
                f"n_dual >= 2, got {n_primal} and {n_dual}"
            )
        n_steps = 1 if share_weights else n_iter
        steps = [InvertiblePrimalDualStep(n_primal, n_dual, width, depth) for _ in range(n_steps)]
        super().__init__(steps, n_iter, init, normalise)
        self.n_primal, self.n_dual = n_primal, n_dual
        self.memory_saving = memory_saving

    def initial_state(self, x0: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> State:
        return x0.expand(-1, self.n_primal, -1, -1).clone(), x0.new_zeros(y.shape[0], self.n_dual, *y.shape[2:])

    def run_steps(self, state: State, y: torch.Tensor, op: LinearOperator, start: int, stop: int) -> State:
        if not (self.memory_saving and torch.is_grad_enabled()) or self.checkpoint_activations:
            return super().run_steps(state, y, op, start, stop)
        params = list(self.steps.parameters())
        return _InvertibleChain.apply(self, start, stop, y, op, *state, *params)

    def invert(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        """The initial state that ``n_iter`` iterations carry to ``state`` (on the normalised data and operator
        :meth:`prepare` gives)."""
        for k in reversed(range(self.n_iter)):
            state = self.step(k).inverse(state, y, op)
        return state
