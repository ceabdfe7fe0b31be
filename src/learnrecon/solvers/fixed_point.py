"""Batched fixed-point solvers for ``z = f(z)``: Picard (damped), Anderson acceleration and limited-memory Broyden.

Each solver takes a map ``f`` on batched tensors ``(B, ...)`` (the samples are independent problems), an initial
``z0`` and the stopping rule ``‖f(z) − z‖ ≤ tol·‖f(z)‖`` per sample (the *relative residual*), and returns a
:class:`FixedPointResult`: the fixed point, the iterations each sample took, the relative residual history and a
per-sample ``converged`` flag. A sample that meets the tolerance is frozen: its iterate no longer changes while the
others go on (``f`` still sees the whole batch, so a map whose samples are independent gives every sample the
iterates it would have alone). A sample that reaches ``max_iter`` returns its iterate of smallest residual and is
reported as not converged; nothing is dropped silently.

- :func:`picard`: ``z ← z + α (f(z) − z)``, ``α`` = ``damping`` ∈ (0, 1] (1: plain fixed-point iteration). For a
  γ-contraction the error falls like γᵏ (with α = 1).
- :func:`anderson`: Anderson acceleration (type II, Walker & Ni 2011) with memory ``m``: with ``G_i = f(z_i) − z_i``
  over the last ``n ≤ m`` iterates, α = argmin ‖Σ α_i G_i‖² + λ‖α‖² subject to Σ α_i = 1 (λ relative to the mean
  of ‖G_i‖², a regularised least-squares problem solved through its KKT system), and
  ``z ← β Σ α_i f(z_i) + (1 − β) Σ α_i z_i``.
- :func:`broyden`: Broyden's ("good") method on ``g(z) = f(z) − z = 0`` with a limited-memory inverse Jacobian
  ``H = −I + Σ u_i v_iᵀ`` (at most ``memory`` rank-one updates; when full it restarts from ``−I`` at the current
  iterate), ``z ← z − H g(z)``; its first step is Picard's.

The solvers are registered by name in :data:`FIXED_POINT_SOLVERS` (:func:`register_solver` adds one) and run by
name through :func:`solve_fixed_point`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from learnrecon.errors import ParameterError

__all__ = [
    "FIXED_POINT_SOLVERS",
    "FixedPointResult",
    "anderson",
    "broyden",
    "check_solver_settings",
    "picard",
    "register_solver",
    "solve_fixed_point",
]

Map = Callable[[torch.Tensor], torch.Tensor]


class FixedPointResult(NamedTuple):
    """What a fixed-point solver returns.

    Attributes:
        z: the fixed point, shape of ``z0``; per sample the iterate that met the tolerance, or for a sample
            that did not converge its iterate of smallest relative residual.
        iterations: per sample, the evaluations of ``f`` until it met the tolerance (``max_iter`` if it did
            not), shape ``(B,)``, int64.
        residual: per sample, the relative residual ``‖f(z) − z‖ / ‖f(z)‖`` of the returned ``z``, shape ``(B,)``.
        residuals: the relative residual history, one row per evaluation of ``f``, shape ``(n_iter, B)``
            (a frozen sample repeats its last value).
        converged: per sample, whether the residual reached ``tol``, shape ``(B,)``, bool.
        n_iter: evaluations of ``f`` performed (the batch's largest ``iterations``).
        solver: the solver's name.
    """

    z: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    residuals: torch.Tensor
    converged: torch.Tensor
    n_iter: int
    solver: str

    @property
    def nonconverged(self) -> list[int]:
        """The indices of the samples that did not reach the tolerance."""
        return [int(i) for i in torch.nonzero(~self.converged).flatten()]

    def summary(self) -> str:
        """One line: how many samples converged, in how many iterations, and which did not (with residuals)."""
        n = self.converged.numel()
        text = (
            f"{self.solver}: {int(self.converged.sum())}/{n} samples converged, "
            f"iterations mean {float(self.iterations.float().mean()):.1f} max {int(self.iterations.max())}, "
            f"relative residual max {float(self.residual.max()):.2e}"
        )
        bad = self.nonconverged
        if bad:
            shown = ", ".join(f"{i} ({float(self.residual[i]):.2e})" for i in bad[:8])
            text += f"; not converged (hit max_iter): samples {shown}{' …' if len(bad) > 8 else ''}"
        return text


def check_solver_settings(tol: float, max_iter: int, what: str = "") -> None:
    """Raise :class:`ParameterError` naming ``tol`` or ``max_iter`` unless ``tol > 0`` and ``max_iter >= 1``."""
    prefix = f"{what} " if what else ""
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not math.isfinite(tol) or tol <= 0:
        raise ParameterError(f"{prefix}tol must be a finite number > 0, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ParameterError(f"{prefix}max_iter must be an integer >= 1, got {max_iter!r}")


class _Tracker:
    """Per-sample bookkeeping shared by the solvers: residuals, freezing at convergence, the best iterate."""

    def __init__(self, z0: torch.Tensor, tol: float, max_iter: int, name: str) -> None:
        check_solver_settings(tol, max_iter)
        if z0.ndim < 1 or z0.shape[0] < 1:
            raise ParameterError(f"z0 must be a batch (B, ...) with B >= 1, got shape {tuple(z0.shape)}")
        self.shape, self.tol, self.max_iter, self.name = z0.shape, tol, max_iter, name
        b = z0.shape[0]
        self.best = z0.reshape(b, -1).clone()
        self.best_residual = torch.full((b,), math.inf, dtype=_real(z0.dtype), device=z0.device)
        self.done = torch.zeros(b, dtype=torch.bool, device=z0.device)
        self.iterations = torch.full((b,), max_iter, dtype=torch.int64, device=z0.device)
        self.history: list[torch.Tensor] = []

    def evaluate(self, f: Map, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``f(z)`` (flat ``(B, n)``) and the relative residual of ``z``; records ``z`` if it is the best yet."""
        fz = f(z.reshape(self.shape))
        if fz.shape != self.shape:
            raise ParameterError(f"the map returned shape {tuple(fz.shape)} for an input of shape {tuple(self.shape)}")
        fz = fz.reshape(z.shape)
        residual = relative_residual(fz, z)
        active = ~self.done
        better = active & (residual < self.best_residual)  # NaN is never better
        self.best = torch.where(better[:, None], z, self.best)
        self.best_residual = torch.where(better, residual, self.best_residual)
        k = len(self.history) + 1
        newly = active & (residual <= self.tol)
        self.iterations = torch.where(newly, torch.full_like(self.iterations, k), self.iterations)
        self.done = self.done | newly
        self.history.append(torch.where(active, residual, self.best_residual))
        return fz, residual

    @property
    def finished(self) -> bool:
        return bool(self.done.all()) or len(self.history) >= self.max_iter

    def freeze(self, z_new: torch.Tensor) -> torch.Tensor:
        """``z_new`` for the samples still running, the returned iterate for the converged ones."""
        return torch.where(self.done[:, None], self.best, z_new)

    def result(self) -> FixedPointResult:
        return FixedPointResult(
            z=self.best.reshape(self.shape),
            iterations=self.iterations,
            residual=self.best_residual,
            residuals=torch.stack(self.history),
            converged=self.done.clone(),
            n_iter=len(self.history),
            solver=self.name,
        )


def _real(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype


def relative_residual(fz: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``‖f(z) − z‖ / ‖f(z)‖`` per sample of flat ``(B, n)`` tensors (0 where both vanish)."""
    diff = torch.linalg.vector_norm(fz - z, dim=1)
    scale = torch.linalg.vector_norm(fz, dim=1)
    tiny = torch.finfo(scale.dtype).tiny
    return torch.where(diff == 0, torch.zeros_like(diff), diff / scale.clamp_min(tiny))


def picard(
    f: Map, z0: torch.Tensor, *, tol: float = 1e-4, max_iter: int = 100, damping: float = 1.0
) -> FixedPointResult:
    """Damped Picard iteration ``z ← z + α (f(z) − z)`` with ``α`` = ``damping`` ∈ (0, 1]."""
    if isinstance(damping, bool) or not isinstance(damping, int | float) or not 0 < damping <= 1:
        raise ParameterError(f"picard: damping must be in (0, 1], got {damping!r}")
    track = _Tracker(z0, tol, max_iter, "picard")
    z = z0.reshape(z0.shape[0], -1)
    while True:
        fz, _ = track.evaluate(f, z)
        if track.finished:
            return track.result()
        z = track.freeze(z + damping * (fz - z))


def anderson(
    f: Map,
    z0: torch.Tensor,
    *,
    tol: float = 1e-4,
    max_iter: int = 100,
    m: int = 5,
    beta: float = 1.0,
    lam: float = 1e-4,
) -> FixedPointResult:
    """Anderson acceleration with memory ``m``, mixing ``beta`` ∈ (0, 1] and regularisation ``lam`` ≥ 0 (see the
    module docstring)."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ParameterError(f"anderson: memory m must be an integer >= 1, got {m!r}")
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 < beta <= 1:
        raise ParameterError(f"anderson: mixing beta must be in (0, 1], got {beta!r}")
    if isinstance(lam, bool) or not isinstance(lam, int | float) or not lam >= 0:
        raise ParameterError(f"anderson: regularisation lam must be >= 0, got {lam!r}")
    track = _Tracker(z0, tol, max_iter, "anderson")
    b = z0.shape[0]
    z = z0.reshape(b, -1)
    xs: list[torch.Tensor] = []
    fs: list[torch.Tensor] = []
    while True:
        fz, _ = track.evaluate(f, z)
        if track.finished:
            return track.result()
        xs.append(z)
        fs.append(fz)
        if len(xs) > m:
            xs.pop(0)
            fs.pop(0)
        n = len(xs)
        if n == 1:
            z_new = z + beta * (fz - z)
        else:
            x_hist, f_hist = torch.stack(xs, dim=1), torch.stack(fs, dim=1)  # (B, n, N)
            g = f_hist - x_hist
            gram = torch.bmm(g, g.transpose(1, 2).conj()).real.to(torch.float64)  # (B, n, n)
            scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
            eye = torch.eye(n, dtype=torch.float64, device=z.device)
            kkt = torch.zeros(b, n + 1, n + 1, dtype=torch.float64, device=z.device)
            kkt[:, 0, 1:] = 1.0
            kkt[:, 1:, 0] = 1.0
            kkt[:, 1:, 1:] = gram / scale[:, None, None] + lam * eye
            rhs = torch.zeros(b, n + 1, 1, dtype=torch.float64, device=z.device)
            rhs[:, 0] = 1.0
            alpha = torch.linalg.solve(kkt, rhs)[:, 1:, 0]  # (B, n), Σ alpha = 1
            alpha = torch.where(torch.isfinite(alpha).all(dim=1, keepdim=True), alpha, _last_only(alpha))
            alpha = alpha.to(x_hist.dtype)[:, None, :]
            z_new = beta * torch.bmm(alpha, f_hist)[:, 0] + (1 - beta) * torch.bmm(alpha, x_hist)[:, 0]
        z = track.freeze(z_new)


def _last_only(alpha: torch.Tensor) -> torch.Tensor:
    """Weights that pick the newest iterate (a plain Picard step), where the least-squares problem failed."""
    out = torch.zeros_like(alpha)
    out[:, -1] = 1.0
    return out


def broyden(f: Map, z0: torch.Tensor, *, tol: float = 1e-4, max_iter: int = 100, memory: int = 20) -> FixedPointResult:
    """Limited-memory Broyden (good Broyden on ``g(z) = f(z) − z``, inverse Jacobian ``−I + Σ u_i v_iᵀ`` of at
    most ``memory`` updates, restarted when full, unit steps)."""
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
        raise ParameterError(f"broyden: memory must be an integer >= 1, got {memory!r}")
    track = _Tracker(z0, tol, max_iter, "broyden")
    b = z0.shape[0]
    z = z0.reshape(b, -1)
    us: list[torch.Tensor] = []
    vs: list[torch.Tensor] = []

    def apply_h(x: torch.Tensor) -> torch.Tensor:  # H x = −x + Σ u_i ⟨v_i, x⟩
        out = -x
        for u, v in zip(us, vs, strict=True):
            out = out + u * (v * x).sum(dim=1, keepdim=True)
        return out

    def apply_ht(x: torch.Tensor) -> torch.Tensor:  # Hᵀ x = −x + Σ v_i ⟨u_i, x⟩
        out = -x
        for u, v in zip(us, vs, strict=True):
            out = out + v * (u * x).sum(dim=1, keepdim=True)
        return out

    fz, _ = track.evaluate(f, z)
    gz = fz - z
    while not track.finished:
        dz = torch.where(track.done[:, None], torch.zeros_like(z), -apply_h(gz))
        z_new = track.freeze(z + dz)
        fz_new, _ = track.evaluate(f, z_new)
        g_new = fz_new - z_new
        dg = g_new - gz
        h_dg = apply_h(dg)
        vt = apply_ht(dz)  # Δzᵀ H
        denom = (vt * dg).sum(dim=1, keepdim=True)
        ok = (denom.abs() > torch.finfo(denom.dtype).tiny) & torch.isfinite(denom) & ~track.done[:, None]
        u = torch.where(ok, (dz - h_dg) / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(dz))
        if len(us) == memory:  # restart from H = −I at the current iterate (dropping only the oldest update
            us.clear()  # breaks the secant conditions the newer ones were built on, and stalls)
            vs.clear()
        us.append(u)
        vs.append(torch.where(ok, vt, torch.zeros_like(vt)))
        z, gz = z_new, g_new
    return track.result()


#: Fixed-point solvers by name: ``solver(f, z0, *, tol, max_iter, **options) -> FixedPointResult``.
FIXED_POINT_SOLVERS: dict[str, Callable[..., FixedPointResult]] = {
    "picard": picard,
    "anderson": anderson,
    "broyden": broyden,
}


def register_solver(name: str, solver: Callable[..., FixedPointResult]) -> None:
    """Add a fixed-point solver under ``name`` (called as ``solver(f, z0, *, tol, max_iter, **options)``)."""
    if name in FIXED_POINT_SOLVERS:
        raise ParameterError(f"a fixed-point solver called {name!r} is already registered")
    if not callable(solver):
        raise ParameterError(f"fixed-point solver {name!r} must be callable, got {solver!r}")
    FIXED_POINT_SOLVERS[name] = solver


def solve_fixed_point(
    f: Map, z0: torch.Tensor, solver: str = "anderson", *, tol: float = 1e-4, max_iter: int = 100, **options
) -> FixedPointResult:
    """Run the solver called ``solver`` (see :data:`FIXED_POINT_SOLVERS`) on ``z = f(z)`` from ``z0``."""
    if solver not in FIXED_POINT_SOLVERS:
        raise ParameterError(f"unknown fixed-point solver {solver!r}; choose one of {', '.join(FIXED_POINT_SOLVERS)}")
    try:
        return FIXED_POINT_SOLVERS[solver](f, z0, tol=tol, max_iter=max_iter, **options)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise ParameterError(f"fixed-point solver {solver!r}: {err}") from err
        raise
