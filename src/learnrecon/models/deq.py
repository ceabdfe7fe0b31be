"""Deep equilibrium reconstruction (Gilton, Ongie & Willett 2021; Bai, Kolter & Koltun 2019).

One learned step Γ_θ (a step module ``state' = step(state, y, op)`` as in :class:`~learnrecon.models.base.Unrolled`)
is run to its fixed point ``u* = Γ_θ(u*; y)`` by a fixed-point solver (:mod:`learnrecon.solvers.fixed_point`), and
the result is differentiated through the fixed point, not through the iterations. Backward modes:

- ``"implicit"``: the gradient ``∂ℓ/∂θ = gᵀ ∂Γ/∂θ`` at ``u*``, where ``g`` solves ``g = (∂Γ/∂u)ᵀ g + ∂ℓ/∂u*``,
  found by the same solver through vector–Jacobian products and warm-started at ``∂ℓ/∂u*`` (the solution when
  ``∂Γ/∂u = 0``). Training memory is that of two evaluations of Γ, whatever the number of iterations.
- ``"one-step"``: the Jacobian-free (phantom) gradient of one step ``Γ(u*)`` (Fung et al. 2022).
- ``"unrolled"``: backpropagation through the last ``unrolled_steps`` Picard steps (0: through all ``max_iter``
  iterations, with no solver: memory grows with the iterations, as an unrolled network's).

Steps with convergence by construction (``contractive=True``, on the normalised problem ‖A‖ = 1, so
``L = λ_max(A*A) = 1``; ``μ = λ_min(A*A)`` is taken as 0, which holds for every operator):

- DE-Grad (:class:`DEGrad`): ``Γ(u) = u − η A*(Au − y) − η R_θ(u)`` with ``R_θ − Id = −D_θ``, ``D_θ`` an
  ε-Lipschitz CNN (:class:`~learnrecon.models.lipschitz.LipschitzNet` scaled by ε). For ``0 < η < 1/(L + 1)`` Γ is a
  contraction with ``γ = 1 − η(1 + μ) + ηε < 1`` when ``ε < 1 + μ``. η is learned inside that interval.
- DE-Prox (:class:`DEProx`): ``Γ(u) = D_θ(u − η A*(Au − y))``, ``D_θ`` ε-Lipschitz, ``0 < η < 2/L``: ``γ = ε``.
- DE-PD (:class:`DEPrimalDual`): primal ``f`` and dual ``h`` with memory channels,
  ``h' = ε N_d(h + σ e₀(A f₁ − y))``, ``f' = ε N_p(f − τ e₀ A* h'₀)``, ``N`` 1-Lipschitz, σ = τ = 1/2:
  ``γ = ε sqrt(1 + σ² + (1 + τε sqrt(1 + σ²))²)`` (< 1 for ε < 0.53).

With ``contractive=False`` the steps are the unrolled models' own (:class:`~learnrecon.models.gradient.LGDStep`,
:class:`~learnrecon.models.proximal.ProximalStep`, :class:`~learnrecon.models.primal_dual.PrimalDualStep`), with
no guarantee; :meth:`DeepEquilibrium.certify` measures the Lipschitz constant of Γ at the data either way.

Non-convergence is never silent: :attr:`DeepEquilibrium.last_forward` holds the solver's per-sample result,
:meth:`DeepEquilibrium.diagnostics` the fraction of samples that hit ``max_iter`` (the trainer logs it and warns),
and an evaluation-mode forward pass warns with the samples and their residuals.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import torch
from torch import nn

from learnrecon.errors import ParameterError, ShapeError
from learnrecon.models.base import INITS, State, as_weights_dtype, initial_reconstruction, network_input, normalised
from learnrecon.models.gradient import LGDStep
from learnrecon.models.lipschitz import LipschitzNet, frozen_normalisation
from learnrecon.models.primal_dual import PrimalDualStep
from learnrecon.models.proximal import ProximalStep
from learnrecon.operators.base import LinearOperator
from learnrecon.solvers.fixed_point import (
    FIXED_POINT_SOLVERS,
    FixedPointResult,
    check_solver_settings,
    solve_fixed_point,
)

__all__ = [
    "BACKWARDS",
    "Certificate",
    "DEGrad",
    "DEPrimalDual",
    "DEProx",
    "DeepEquilibrium",
    "GradientEquilibriumStep",
    "PrimalDualEquilibriumStep",
    "ProximalEquilibriumStep",
]

#: The backward modes (see the module docstring).
BACKWARDS = ("implicit", "one-step", "unrolled")


class Certificate(NamedTuple):
    """The measured Lipschitz constant of Γ at the fixed points of a batch (power iteration on ``JᵀJ``,
    ``J = ∂Γ/∂u`` at ``u*``), per sample, and the bound the construction gives (None without one)."""

    lipschitz: torch.Tensor
    bound: float | None
    power_iterations: int

    @property
    def contraction(self) -> torch.Tensor:
        """Per sample, whether the measured constant is below 1."""
        return self.lipschitz < 1

    def as_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint's provenance or a report."""
        return {
            "lipschitz_max": float(self.lipschitz.max()),
            "lipschitz_mean": float(self.lipschitz.mean()),
            "contraction_fraction": float(self.contraction.float().mean()),
            "bound": self.bound,
            "n_samples": int(self.lipschitz.numel()),
            "power_iterations": self.power_iterations,
        }


class GradientEquilibriumStep(nn.Module):
    """DE-Grad's step ``u ↦ (1 − η) u + η D(u) − η A*(Au − y)`` on state ``(u,)``, ``D = ε·LipschitzNet``,
    ``η = η_max·sigmoid(s)`` with ``η_max = 1/(L + 1) = 1/2`` on the normalised operator."""

    eta_max = 0.5

    def __init__(self, width: int, depth: int, eta: float, lipschitz: float, skip_init: float = 0.9) -> None:
        super().__init__()
        if not 0 < eta < self.eta_max:
            raise ParameterError(
                f"eta = {eta} is outside (0, 1/(L + 1)) = (0, {self.eta_max}) that DE-Grad's contraction needs "
                "(L = λ_max(A*A) = 1 on the normalised operator)"
            )
        if not 0 <= lipschitz < 1:
            raise ParameterError(f"lipschitz ε = {lipschitz} must be in [0, 1 + μ) = [0, 1) for a contraction")
        self.lipschitz = lipschitz
        self.eta_logit = nn.Parameter(torch.tensor(math.log(eta / (self.eta_max - eta))))
        self.denoiser = LipschitzNet(1, 1, width, depth, skip_init=skip_init)

    @property
    def eta(self) -> torch.Tensor:
        return self.eta_max * torch.sigmoid(self.eta_logit)

    def bound(self) -> float:
        """``γ = 1 − η(1 + μ) + ηε`` with μ = 0."""
        eta = float(self.eta.detach())
        return 1 - eta + eta * self.lipschitz

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        (u,) = state
        eta = self.eta.to(u.dtype)
        gradient = op.H(op(u.to(y.dtype)) - y).to(u.dtype)
        return ((1 - eta) * u + eta * self.lipschitz * self.denoiser(u) - eta * gradient,)


class ProximalEquilibriumStep(nn.Module):
    """DE-Prox's step ``u ↦ D(u − η A*(Au − y))``, ``D = ε·LipschitzNet``, ``η = 2·sigmoid(s)`` ∈ (0, 2/L)."""

    eta_max = 2.0

    def __init__(self, width: int, depth: int, eta: float, lipschitz: float, skip_init: float = 0.95) -> None:
        super().__init__()
        if not 0 < eta < self.eta_max:
            raise ParameterError(f"eta = {eta} is outside (0, 2/L) = (0, 2) that DE-Prox's contraction needs")
        if not 0 <= lipschitz < 1:
            raise ParameterError(f"lipschitz ε = {lipschitz} must be in [0, 1) for a contraction")
        self.lipschitz = lipschitz
        self.eta_logit = nn.Parameter(torch.tensor(math.log(eta / (self.eta_max - eta))))
        self.denoiser = LipschitzNet(1, 1, width, depth, skip_init=skip_init)

    @property
    def eta(self) -> torch.Tensor:
        return self.eta_max * torch.sigmoid(self.eta_logit)

    def bound(self) -> float:
        """``γ = ε·max(|1 − ημ|, |1 − ηL|) ≤ ε``."""
        return self.lipschitz * max(1.0, abs(1 - float(self.eta.detach())))

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        (u,) = state
        z = u - self.eta.to(u.dtype) * op.H(op(u.to(y.dtype)) - y).to(u.dtype)
        return (self.lipschitz * self.denoiser(z),)


class PrimalDualEquilibriumStep(nn.Module):
    """DE-PD's step on ``(f (N, N_p, H, W), h (N, N_d, *range))``, a learned primal-dual (Chambolle–Pock-like)
    step: ``h' = ε N_d(h + σ e₀ (A f₁ − y))``, ``f' = ε N_p(f − τ e₀ A* h'₀)`` (``e₀``: channel 0 only) with
    1-Lipschitz nets (skips on ``h`` and ``f``) and σ = τ = 1/2. On ‖A‖ = 1,
    ``‖Δh'‖ ≤ ε sqrt(1 + σ²) ‖Δs‖`` and ``‖Δf'‖ ≤ ε (1 + τ ε sqrt(1 + σ²)) ‖Δs‖``, so
    ``γ = ε sqrt(1 + σ² + (1 + τ ε sqrt(1 + σ²))²)``, below 1 for ε < 0.53."""

    sigma = tau = 0.5

    def __init__(self, n_primal: int, n_dual: int, width: int, depth: int, lipschitz: float) -> None:
        super().__init__()
        self.lipschitz = lipschitz
        if not 0 <= lipschitz or self.bound() >= 1:
            raise ParameterError(
                f"lipschitz ε = {lipschitz} gives DE-PD the bound γ = {self.bound():.3f}; a contraction needs "
                "γ < 1 (ε < 0.53)"
            )
        self.dual = LipschitzNet(n_dual, n_dual, width, depth)
        self.primal = LipschitzNet(n_primal, n_primal, width, depth)

    def bound(self) -> float:
        eps, r = self.lipschitz, math.sqrt(1 + self.sigma**2)
        return eps * math.sqrt(r**2 + (1 + self.tau * eps * r) ** 2)

    def forward(self, state: State, y: torch.Tensor, op: LinearOperator) -> State:
        f, h = state
        f_dual = f[:, 1:2] if f.shape[1] > 1 else f[:, :1]
        residual = (op(f_dual.to(y.dtype)) - y).to(h.dtype)
        h = self.lipschitz * self.dual(torch.cat([h[:, :1] + self.sigma * residual, h[:, 1:]], dim=1))
        update = op.H(h[:, :1].to(y.dtype)).to(f.dtype)
        f = self.lipschitz * self.primal(torch.cat([f[:, :1] - self.tau * update, f[:, 1:]], dim=1))
        return f, h


class DeepEquilibrium(nn.Module):
    """Run ``step`` to its fixed point and differentiate through it (see the module docstring).

    Args:
        step: a step module ``state' = step(state, y, op)`` that returns a state of the input's shapes.
        solver: the forward solver (:data:`~learnrecon.solvers.fixed_point.FIXED_POINT_SOLVERS`).
        backward: ``"implicit"``, ``"one-step"`` or ``"unrolled"``.
        tol, max_iter: the forward solver's relative-residual tolerance and iteration limit.
        solver_options: keyword options of the solver (e.g. ``{"m": 5, "beta": 1.0}`` for Anderson).
        backward_solver, backward_tol, backward_max_iter: the implicit backward's solver (default: the forward's).
        unrolled_steps: steps backpropagated through by ``backward="unrolled"`` (0: all ``max_iter``).
        init: the initial reconstruction (:data:`~learnrecon.models.base.INITS`).
        normalise: work with ``A/‖A‖`` and ``y/‖A‖``.
    """

    convolved_spaces: tuple[str, ...] = ("images",)

    def __init__(
        self,
        step: nn.Module,
        *,
        solver: str = "anderson",
        backward: str = "implicit",
        tol: float = 1e-4,
        max_iter: int = 100,
        solver_options: dict | None = None,
        backward_solver: str | None = None,
        backward_tol: float | None = None,
        backward_max_iter: int | None = None,
        unrolled_steps: int = 0,
        init: str = "fbp",
        normalise: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("solver", solver), ("backward_solver", backward_solver or solver)):
            if value not in FIXED_POINT_SOLVERS:
                raise ParameterError(f"unknown {name} {value!r}; choose one of {', '.join(FIXED_POINT_SOLVERS)}")
        if backward not in BACKWARDS:
            raise ParameterError(f"unknown backward {backward!r}; choose one of {', '.join(BACKWARDS)}")
        check_solver_settings(tol, max_iter)
        backward_tol = tol if backward_tol is None else backward_tol
        backward_max_iter = max_iter if backward_max_iter is None else backward_max_iter
        check_solver_settings(backward_tol, backward_max_iter, "backward")
        if isinstance(unrolled_steps, bool) or not isinstance(unrolled_steps, int) or unrolled_steps < 0:
            raise ParameterError(f"unrolled_steps must be an integer >= 0, got {unrolled_steps!r}")
        if init not in INITS:
            raise ParameterError(f"unknown initial reconstruction {init!r}; choose one of {', '.join(INITS)}")
        if solver_options is not None and not isinstance(solver_options, dict):
            raise ParameterError(f"solver_options must be a mapping of solver options, got {solver_options!r}")
        self.step_module = step
        self.solver, self.backward, self.tol, self.max_iter = solver, backward, tol, max_iter
        self.solver_options = dict(solver_options or {})
        self.backward_solver = backward_solver or solver
        self.backward_tol = backward_tol
        self.backward_max_iter = backward_max_iter
        self.unrolled_steps = unrolled_steps
        self.init, self.normalise = init, normalise
        self.last_forward: FixedPointResult | None = None
        self.last_backward: FixedPointResult | None = None

    # -- the state ---------------------------------------------------------------------------------------

    def initial_state(self, x0: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> State:
        """The state the solver starts from, given the initial image ``x0`` ``(N, 1, H, W)``; default ``(x0,)``."""
        return (x0,)

    @staticmethod
    def readout(state: State) -> torch.Tensor:
        """The image ``(N, 1, H, W)`` of a state: channel 0 of its first tensor."""
        return state[0][:, :1]

    def bound(self) -> float | None:
        """The Lipschitz bound of Γ the construction gives (None for a step without one)."""
        bound = getattr(self.step_module, "bound", None)
        return float(bound()) if callable(bound) else None

    def _problem(self, y: torch.Tensor, op: LinearOperator):
        flat = network_input(self, y, op, self.convolved_spaces)
        x0 = as_weights_dtype(self, initial_reconstruction(flat, op, self.init))
        y_work, op_work = normalised(flat, op) if self.normalise else (flat, op)
        state = self.initial_state(x0, y_work, op_work)
        shapes = [t.shape[1:] for t in state]
        sizes = [math.prod(s) for s in shapes]
        n = flat.shape[0]

        def pack(s: State) -> torch.Tensor:
            return torch.cat([t.reshape(n, -1) for t in s], dim=1)

        def unpack(z: torch.Tensor) -> State:
            return tuple(p.reshape(n, *s) for p, s in zip(z.split(sizes, dim=1), shapes, strict=True))

        def gamma(z: torch.Tensor) -> torch.Tensor:
            out = self.step_module(unpack(z), y_work, op_work)
            if not isinstance(out, tuple) or [t.shape[1:] for t in out] != shapes:
                got = [tuple(t.shape) for t in out] if isinstance(out, tuple) else type(out).__name__
                raise ShapeError(
                    f"step module {type(self.step_module).__name__} returned {got} for a state of shapes "
                    f"{[(n, *s) for s in shapes]}: an equilibrium model's step must return a state of its "
                    "input's shapes"
                )
            return pack(out)

        return pack(state), gamma, unpack

    # -- forward and backward -------------------------------------------------------------------------------

    def _solve(self, gamma, z0: torch.Tensor, max_iter: int | None = None) -> FixedPointResult:
        with torch.no_grad():
            return solve_fixed_point(
                gamma, z0, self.solver, tol=self.tol, max_iter=max_iter or self.max_iter, **self.solver_options
            )

    def forward(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """Reconstruct ``(B, C, *op.domain_shape)`` from ``y`` ``(B, C, *op.range_shape)``."""
        batch = y.shape[: -len(op.range_shape)]
        with frozen_normalisation(self):
            z0, gamma, unpack = self._problem(y, op)
            z = self._equilibrium(gamma, z0)
        if not self.training and self.last_forward is not None and not bool(self.last_forward.converged.all()):
            warnings.warn(f"{type(self).__name__}: {self.last_forward.summary()}", stacklevel=2)
        return self.readout(unpack(z)).reshape(*batch, *op.domain_shape)

    def _equilibrium(self, gamma, z0: torch.Tensor) -> torch.Tensor:
        self.last_backward = None
        recording = torch.is_grad_enabled()
        if self.backward == "unrolled" and recording:
            k = self.unrolled_steps if 0 < self.unrolled_steps < self.max_iter else self.max_iter
            z = z0
            if k < self.max_iter:
                self.last_forward = self._solve(gamma, z0, self.max_iter - k)
                z = self.last_forward.z
            for _ in range(k):
                z = gamma(z)
            if k == self.max_iter:
                self.last_forward = None
            return z
        self.last_forward = result = self._solve(gamma, z0)
        z_star = result.z
        if not recording:
            return z_star
        z = gamma(z_star.detach())  # one step with gradients: ∂Γ/∂θ at u*
        if self.backward == "implicit" and z.requires_grad:
            z_leaf = z_star.detach().requires_grad_()
            f_leaf = gamma(z_leaf)  # a second copy for the vector–Jacobian products (∂Γ/∂u)ᵀ g

            def implicit(grad: torch.Tensor) -> torch.Tensor:
                def adjoint_map(g: torch.Tensor) -> torch.Tensor:
                    return torch.autograd.grad(f_leaf, z_leaf, g, retain_graph=True)[0] + grad

                options = self.solver_options if self.backward_solver == self.solver else {}
                back = solve_fixed_point(
                    adjoint_map,
                    grad,
                    self.backward_solver,
                    tol=self.backward_tol,
                    max_iter=self.backward_max_iter,
                    **options,
                )
                self.last_backward = back
                return back.z

            z.register_hook(implicit)
        return z

    def diagnostics(self) -> dict[str, float]:
        """The last forward (and backward) solve: mean and largest iterations, largest relative residual and the
        fraction of samples that hit ``max_iter`` (``nonconverged_fraction``)."""
        report: dict[str, float] = {}
        for prefix, result in (("", self.last_forward), ("backward_", self.last_backward)):
            if result is None:
                continue
            report[f"{prefix}iterations"] = float(result.iterations.float().mean())
            report[f"{prefix}iterations_max"] = float(result.iterations.max())
            report[f"{prefix}residual_max"] = float(result.residual.max())
            report[f"{prefix}nonconverged_fraction"] = float((~result.converged).float().mean())
        return report

    # -- the certificate ---------------------------------------------------------------------------------

    def certify(self, y: torch.Tensor, op: LinearOperator, *, power_iterations: int = 30, seed: int = 0) -> Certificate:
        """Measure the Lipschitz constant of Γ at the fixed points of ``y``: ``‖∂Γ/∂u(u*)‖₂`` per sample by power
        iteration on ``JᵀJ`` (``Jᵀ`` by a vector–Jacobian product, ``J`` by differentiating that product), with the
        bound the construction gives. A value below 1 says Γ contracts there."""
        if power_iterations < 1:
            raise ParameterError(f"power_iterations must be >= 1, got {power_iterations}")
        with frozen_normalisation(self), torch.enable_grad():
            z0, gamma, _ = self._problem(y, op)
            z_star = self._solve(gamma, z0).z
            z = z_star.detach().requires_grad_()
            fz = gamma(z)
            w = torch.zeros_like(fz, requires_grad=True)
            jt_w = torch.autograd.grad(fz, z, w, create_graph=True)[0]  # Jᵀ w, linear in w
            g = torch.Generator(device="cpu").manual_seed(seed)
            v = torch.randn(z.shape, generator=g, dtype=z.dtype).to(z.device)
            v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
            sigma = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
            for _ in range(power_iterations):
                jv = torch.autograd.grad(jt_w, w, v, retain_graph=True)[0]
                jtjv = torch.autograd.grad(fz, z, jv, retain_graph=True)[0]
                norm = torch.linalg.vector_norm(jtjv, dim=1, keepdim=True)
                sigma = norm[:, 0].sqrt()
                v = jtjv / norm.clamp_min(torch.finfo(norm.dtype).tiny)
        return Certificate(sigma.detach(), self.bound(), power_iterations)


class DEGrad(DeepEquilibrium):
    """DE-Grad: the gradient step at its fixed point (see the module docstring).

    Args:
        width, depth: the denoiser CNN.
        eta: the initial step η ∈ (0, 1/2) (learned inside that interval).
        lipschitz: ε ∈ [0, 1), the denoiser's Lipschitz constant.
        skip_init: the initial weight a of the denoiser's skip (it starts as ε·a·u: Tikhonov with 1 − εa).
        contractive: the certified step (True) or the unrolled LGD step with ``n_memory`` memory channels (False).
        Others: :class:`DeepEquilibrium`'s.
    """

    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        eta: float = 0.45,
        lipschitz: float = 0.9,
        skip_init: float = 0.9,
        contractive: bool = True,
        n_memory: int = 5,
        solver: str = "anderson",
        backward: str = "implicit",
        tol: float = 1e-4,
        max_iter: int = 100,
        solver_options: dict | None = None,
        backward_solver: str | None = None,
        backward_tol: float | None = None,
        backward_max_iter: int | None = None,
        unrolled_steps: int = 0,
        init: str = "fbp",
        normalise: bool = True,
    ) -> None:
        _contractive_needs_normalised(contractive, normalise)
        step = (
            GradientEquilibriumStep(width, depth, eta, lipschitz, skip_init)
            if contractive
            else LGDStep(n_memory, width, depth, regulariser=None)
        )
        super().__init__(
            step, solver=solver, backward=backward, tol=tol, max_iter=max_iter, solver_options=solver_options,
            backward_solver=backward_solver, backward_tol=backward_tol, backward_max_iter=backward_max_iter,
            unrolled_steps=unrolled_steps, init=init, normalise=normalise,
        )  # fmt: skip
        self.n_memory = 0 if contractive else n_memory

    def initial_state(self, x0: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> State:
        if self.n_memory:
            return x0, x0.new_zeros(x0.shape[0], self.n_memory, *x0.shape[-2:])
        return (x0,)


class DEProx(DeepEquilibrium):
    """DE-Prox: the proximal-gradient step at its fixed point (η ∈ (0, 2), ε ∈ [0, 1)); ``contractive=False``
    uses the unrolled :class:`~learnrecon.models.proximal.ProximalStep`."""

    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        eta: float = 1.0,
        lipschitz: float = 0.9,
        skip_init: float = 0.95,
        contractive: bool = True,
        solver: str = "anderson",
        backward: str = "implicit",
        tol: float = 1e-4,
        max_iter: int = 100,
        solver_options: dict | None = None,
        backward_solver: str | None = None,
        backward_tol: float | None = None,
        backward_max_iter: int | None = None,
        unrolled_steps: int = 0,
        init: str = "fbp",
        normalise: bool = True,
    ) -> None:
        _contractive_needs_normalised(contractive, normalise)
        step = (
            ProximalEquilibriumStep(width, depth, eta, lipschitz, skip_init)
            if contractive
            else ProximalStep(width, depth, eta)
        )
        super().__init__(
            step, solver=solver, backward=backward, tol=tol, max_iter=max_iter, solver_options=solver_options,
            backward_solver=backward_solver, backward_tol=backward_tol, backward_max_iter=backward_max_iter,
            unrolled_steps=unrolled_steps, init=init, normalise=normalise,
        )  # fmt: skip


class DEPrimalDual(DeepEquilibrium):
    """DE-PD: the learned primal-dual step at its fixed point (ε ∈ [0, 0.53)); ``contractive=False`` uses the
    unrolled :class:`~learnrecon.models.primal_dual.PrimalDualStep`."""

    convolved_spaces = ("images", "data")

    def __init__(
        self,
        n_primal: int = 5,
        n_dual: int = 5,
        width: int = 32,
        depth: int = 3,
        lipschitz: float = 0.5,
        contractive: bool = True,
        solver: str = "anderson",
        backward: str = "implicit",
        tol: float = 1e-4,
        max_iter: int = 100,
        solver_options: dict | None = None,
        backward_solver: str | None = None,
        backward_tol: float | None = None,
        backward_max_iter: int | None = None,
        unrolled_steps: int = 0,
        init: str = "fbp",
        normalise: bool = True,
    ) -> None:
        _contractive_needs_normalised(contractive, normalise)
        step = (
            PrimalDualEquilibriumStep(n_primal, n_dual, width, depth, lipschitz)
            if contractive
            else PrimalDualStep(n_primal, n_dual, width, depth)
        )
        super().__init__(
            step, solver=solver, backward=backward, tol=tol, max_iter=max_iter, solver_options=solver_options,
            backward_solver=backward_solver, backward_tol=backward_tol, backward_max_iter=backward_max_iter,
            unrolled_steps=unrolled_steps, init=init, normalise=normalise,
        )  # fmt: skip
        self.n_primal, self.n_dual = n_primal, n_dual

    def initial_state(self, x0: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> State:
        return x0.expand(-1, self.n_primal, -1, -1).clone(), x0.new_zeros(y.shape[0], self.n_dual, *y.shape[2:])


def _contractive_needs_normalised(contractive: bool, normalise: bool) -> None:
    if contractive and not normalise:
        raise ParameterError(
            "contractive=True needs normalise=True: the step-size range and the contraction bound assume ‖A‖ = 1"
        )
