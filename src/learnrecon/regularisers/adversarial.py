"""The adversarial regulariser (Lunz, Öktem & Schönlieb, NeurIPS 2018).

A critic ``R_θ`` (a CNN, images → one number) is trained as a Wasserstein critic between the distribution of
ground-truth images ``x ~ P_r`` and that of a simple reconstruction of the data, ``A†y ~ P_n`` (here the FBP):

    L(θ) = E[R_θ(x)] − E[R_θ(A†y)] + μ E[(‖∇R_θ(x̃)‖ − 1)²],   x̃ = εx + (1 − ε)A†y,  ε ~ U[0, 1],

the gradient penalty (Gulrajani et al. 2017) keeping ``R_θ`` about 1-Lipschitz; so ``R_θ`` is small on clean
images and large on reconstructions with artefacts. The reconstruction is then variational,
``x̂ = argmin ½‖Ax − y‖² + λ R_θ(x)`` (:func:`~.variational.descend`, from the FBP), on the normalised problem.
λ: Lunz et al.'s heuristic balances the two gradients at the start, ``λ = E‖A*(A A†y − y)‖`` (the critic's gradient
has norm about 1) — :func:`lunz_lambda`; the shipped model's λ was tuned on validation data around it.

Critic: as Lunz et al.'s (six 5×5 convolutions, LeakyReLU, strided), with a global mean instead of their dense
layer so that it takes any image size. Shapes: images ``(N, 1, H, W)`` → ``(N,)``.
"""

from __future__ import annotations

import torch
from torch import nn

from learnrecon.models.base import as_weights_dtype, initial_reconstruction, network_input, normalised
from learnrecon.operators.base import LinearOperator
from learnrecon.regularisers.variational import check_weight, descend

__all__ = [
    "AdversarialRegulariser",
    "Critic",
    "VariationalReconstructor",
    "critic_loss",
    "gradient_penalty",
    "lunz_lambda",
]


class Critic(nn.Module):
    """``R_θ``: 5×5 convolutions of ``width``, ``2·width``, … channels (every other one of stride 2), LeakyReLU
    (0.1), a 1×1 convolution to one channel and the mean over the image: images ``(N, 1, H, W)`` → ``(N,)``."""

    def __init__(self, width: int = 16, depth: int = 6) -> None:
        super().__init__()
        layers, channels = [], 1
        for i in range(depth):
            out = width * 2 ** (i // 2)
            layers += [nn.Conv2d(channels, out, 5, stride=1 + i % 2, padding=2), nn.LeakyReLU(0.1)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1).mean(dim=1)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``E[(‖∇R(x̃)‖ − 1)²]`` at random points ``x̃`` on the segments between ``real`` and ``fake`` images
    ``(N, 1, H, W)`` (differentiable in the critic's weights)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, dtype=real.dtype, device=real.device)
    between = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, mu: float = 10.0) -> torch.Tensor:
    """The Wasserstein critic loss with gradient penalty ``E R(real) − E R(fake) + μ·GP`` (module docstring)."""
    return critic(real).mean() - critic(fake).mean() + mu * gradient_penalty(critic, real, fake)


def lunz_lambda(y: torch.Tensor, op: LinearOperator, x0: torch.Tensor) -> float:
    """Lunz et al.'s weight ``λ = mean ‖A*(A x0 − y)‖`` for data ``y`` and initial reconstructions ``x0``
    (on the operator given: pass the normalised one)."""
    return float(op.H(op(x0) - y).flatten(1).norm(dim=1).mean())


class VariationalReconstructor(nn.Module):
    """``model(y, op)``: ``argmin ½‖Ax − y‖² + λ R(x)`` from the FBP for a learned ``R`` (:meth:`value`), on the
    normalised problem; the channels of ``y`` ``(B, C, *range)`` are independent problems.

    Subclasses define :attr:`regulariser` (the critic network); :meth:`training_loss` is its critic loss, which the
    trainer calls instead of fitting the reconstruction (these models are trained by their regulariser's loss).
    ``last_descent`` holds the record of the last solve (:class:`~.variational.Descent`).
    """

    #: Trained by :meth:`training_loss`, not end to end through the reconstruction.
    trained_end_to_end = False
    #: Added to the objective (μ/2‖x‖²): 0, or the strong convexity of a convex regulariser's problem.
    strong_convexity = 0.0

    def __init__(self, lam: float, n_iter: int, step: float, penalty: float, init: str, fbp_filter: str) -> None:
        super().__init__()
        self.lam, self.n_iter, self.step, self.penalty = check_weight(lam), n_iter, step, penalty
        self.init, self.fbp_filter = init, fbp_filter
        self.gap_tol = 0.0
        self.last_descent = None

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``R(x)`` for images ``(N, 1, H, W)`` → ``(N,)``."""
        return self.regulariser(x)

    def initial(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """The starting point (and the critic's "fake" images): the FBP of ``y`` ``(N, 1, *range)``."""
        return initial_reconstruction(y, op, self.init, self.fbp_filter)

    def forward(
        self,
        y: torch.Tensor,
        op: LinearOperator,
        *,
        lam: float | None = None,
        n_iter: int | None = None,
        step: float | None = None,
        gap_tol: float | None = None,
    ) -> torch.Tensor:
        """Reconstruct ``y`` ``(B, C, *range)``; ``lam``, ``n_iter``, ``step``, ``gap_tol`` override the model's."""
        lam = check_weight(self.lam if lam is None else lam)
        batch = y.shape[:2]
        flat = as_weights_dtype(self, network_input(self, y, op))
        x0 = self.initial(flat, op)
        y_n, op_n = normalised(flat, op)
        x, self.last_descent = descend(
            y_n, op_n, self.value, lam, x0,
            n_iter=self.n_iter if n_iter is None else n_iter,
            step=self.step if step is None else step,
            strong_convexity=self.strong_convexity * lam,
            gap_tol=self.gap_tol if gap_tol is None else gap_tol,
        )  # fmt: skip
        return x.reshape(*batch, *op.domain_shape)

    def diagnostics(self) -> dict[str, float]:
        """The last solve's iterations and, for a convex problem, its largest optimality-gap bound."""
        if self.last_descent is None:
            return {}
        report = {"iterations": float(self.last_descent.iterations)}
        if self.last_descent.gap_bound is not None:
            report["gap_bound_max"] = float(self.last_descent.gap_bound.max())
        return report

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """The critic loss between truth ``x`` ``(B, 1, H, W)`` and the initial reconstructions of ``y``."""
        flat = as_weights_dtype(self, network_input(self, y, op))
        with torch.no_grad():
            fake = self.initial(flat, op)
        real = as_weights_dtype(self, x).reshape(fake.shape)
        return critic_loss(self.regulariser, real, fake, self.penalty)


class AdversarialRegulariser(VariationalReconstructor):
    """Lunz et al.'s adversarial regulariser as a reconstructor (see the module docstring).

    Args:
        width, depth: the critic's channels and convolutions.
        lam: the weight λ ≥ 0 on the normalised problem.
        n_iter: gradient-descent iterations (with backtracking; the objective never increases).
        step: the initial step of the descent.
        penalty: μ of the gradient penalty in training.
        init, fbp_filter: the starting point (see :data:`learnrecon.models.base.INITS`).
    """

    def __init__(
        self,
        width: int = 16,
        depth: int = 6,
        lam: float = 0.1,
        n_iter: int = 100,
        step: float = 1.0,
        penalty: float = 10.0,
        init: str = "fbp",
        fbp_filter: str = "hann",
    ) -> None:
        super().__init__(lam, n_iter, step, penalty, init, fbp_filter)
        self.regulariser = Critic(width, depth)
