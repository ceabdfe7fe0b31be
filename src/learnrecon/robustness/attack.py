"""Worst-case perturbations of the data (Antun, Renna, Poon, Adcock & Hansen, PNAS 2020), and the two other
instabilities of that paper: a small detail added to the image, and more measurements.

For a reconstructor ``f`` (learned or classical, called ``f(y, op)``) and data ``y``, the search maximises

    J(e) = ‖f(y + e) − f(y)‖²   subject to   ‖e‖ ≤ ε‖y‖          (per image, Euclidean norms)

by projected gradient ascent through ``f``: from a random point on the sphere ‖e‖ = ε‖y‖,

    e ← P(e + α ε‖y‖ ∇J(e)/‖∇J(e)‖),     P the projection onto the ball,

keeping the best ``e`` seen (:func:`worst_case_perturbation`), or Antun et al.'s penalised form

    J_λ(e) = ‖f(y + e) − f(y)‖² − λ‖e‖²                           (per image, no bound)

by gradient ascent with an adaptive step (:func:`penalised_perturbation`): λ prices the perturbation's size, and
the search reports the norm it ends at. For a linear ``f = M``, J_λ is unbounded above when λ < σ_max(M)² (the
perturbation grows along the top singular vector; the search stops at ``max_norm``) and has its maximum at
``e = 0`` when λ > σ_max(M)² (tested). For a linear ``f(y) = M y`` the bounded search is a damped power iteration
on ``MᵀM`` and ends at ε‖y‖ times the top right singular vector of ``M`` (tested). The result is compared with
Gaussian noise of the same norm, and the error is measured against the truth when it is known; the *amplification*
``‖f(y + e) − f(y)‖ / ‖A⁺e‖`` divides the change of the reconstruction by the change of the operator's own
pseudo-inverse (filtered backprojection for a ray transform), so 1 means "as unstable as FBP".

A gradient needs a differentiable ``f``: a model, FBP, or TV by PDHG with ``differentiable=True`` (gradients
through its iterations; the search may run fewer iterations than the method it attacks, see ``search_method``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from learnrecon import metrics
from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator

__all__ = [
    "AttackResult",
    "add_detail",
    "attack_summary",
    "detail_recovery",
    "penalised_perturbation",
    "sample_norm",
    "worst_case_perturbation",
]

Reconstructor = Callable[[torch.Tensor, LinearOperator], torch.Tensor]


def sample_norm(t: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm of each sample of ``t`` (over every dimension but the first): ``(n,)``."""
    return t.reshape(t.shape[0], -1).norm(dim=1)


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def _project(e: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """``e`` projected onto the balls ``‖e_i‖ ≤ radius_i``."""
    norms = sample_norm(e)
    factor = torch.where(norms > radius, radius / norms.clamp_min(torch.finfo(e.dtype).tiny), torch.ones_like(norms))
    return e * _per_sample(factor, e)


def check_eps(eps: float) -> float:
    """``eps`` as a float, with a clear error unless it is a finite number ≥ 0."""
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not math.isfinite(eps) or eps < 0:
        raise ParameterError(f"the perturbation bound ε must be a finite number ≥ 0 (a fraction of ‖y‖), got {eps!r}")
    return float(eps)


@dataclass
class AttackResult:
    """What :func:`worst_case_perturbation` found, per image ``i`` of the batch.

    Attributes:
        perturbation: ``e`` ``(n, C, *op.range_shape)``, ``‖e_i‖ ≤ ε‖y_i‖``.
        reconstruction: ``f(y + e)`` (the attacked method's, not the search's).
        reference: ``f(y)``.
        objective: ``‖f(y + e) − f(y)‖²`` ``(n,)`` of the attacked method.
        history: the search's objective after each step ``(n_steps + 1, n)`` (row 0: the random start).
        eps: the bound, a fraction of ``‖y‖`` (the penalised form: the mean ``‖e_i‖/‖y_i‖`` it ended at).
        penalty: the penalised form's λ (None for the bounded form).
    """

    perturbation: torch.Tensor
    reconstruction: torch.Tensor
    reference: torch.Tensor
    objective: torch.Tensor
    history: torch.Tensor
    eps: float
    penalty: float | None = None


@contextlib.contextmanager
def _frozen(*methods: Reconstructor):
    """The models among ``methods`` in eval mode with their weights' gradients off (gradients are wanted for the
    data only), restored on exit."""
    saved = []
    for method in methods:
        if isinstance(method, torch.nn.Module):
            saved.append((method, method.training, [(p, p.requires_grad) for p in method.parameters()]))
            method.eval()
            for p in method.parameters():
                p.requires_grad_(False)
    try:
        yield
    finally:
        for method, training, flags in reversed(saved):
            method.train(training)
            for p, flag in flags:
                p.requires_grad_(flag)


def worst_case_perturbation(
    method: Reconstructor,
    y: torch.Tensor,
    op: LinearOperator,
    eps: float,
    *,
    n_steps: int = 20,
    step: float = 1.0,
    seed: int = 0,
    search_method: Reconstructor | None = None,
) -> AttackResult:
    """The perturbation ``e`` with ``‖e_i‖ ≤ ε‖y_i‖`` that most changes ``method``'s reconstruction of ``y``.

    Args:
        method: the reconstructor attacked, ``method(y, op)``.
        y: data ``(n, C, *op.range_shape)``; each image gets its own perturbation.
        op: the forward operator.
        eps: the bound as a fraction of ``‖y_i‖`` (≥ 0; 0 gives ``e = 0``).
        n_steps: gradient-ascent steps.
        step: the step length as a fraction of the radius ``ε‖y_i‖`` (halved for an image whose objective fell).
        seed: seeds the random start.
        search_method: the reconstructor whose gradients drive the search (default ``method``): a cheaper or
            differentiable stand-in, e.g. TV with fewer PDHG iterations and ``differentiable=True``; the result is
            scored with ``method``.
    """
    eps = check_eps(eps)
    if n_steps < 0 or not step > 0:
        raise ParameterError(f"need n_steps ≥ 0 and step > 0, got n_steps={n_steps}, step={step}")
    _check_batch(y, op)
    search = search_method if search_method is not None else method
    with _frozen(method, search):
        return _search(method, search, y, op, eps, n_steps, step, seed)


def _check_batch(y: torch.Tensor, op: LinearOperator) -> None:
    if y.ndim < len(op.range_shape) + 1:
        raise ParameterError(f"y has shape {tuple(y.shape)}; the attack needs a batch (n, ..., *op.range_shape)")


def _references_and_start(method, search, y, op, radius: torch.Tensor, seed: int):
    """``f(y)`` of the attacked method and of the search's, and the random start: a point on each sphere
    ``‖e_i‖ = radius_i``, drawn from ``seed``."""
    with torch.no_grad():
        reference = method(y, op)
        search_reference = reference if search is method else search(y, op)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    e = torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)
    return reference, search_reference, e * _per_sample(radius / sample_norm(e), e)


def _search(method, search, y, op, eps, n_steps, step, seed) -> AttackResult:
    y = y.detach()
    radius = eps * sample_norm(y)
    reference, search_reference, e = _references_and_start(method, search, y, op, radius, seed)

    def objective(e: torch.Tensor) -> torch.Tensor:
        return sample_norm(search(y + e, op) - search_reference) ** 2

    best, best_value = e.clone(), torch.full_like(radius, -math.inf)
    lengths = torch.full_like(radius, step)
    history = []
    for k in range(n_steps + 1):
        e = e.detach().requires_grad_(k < n_steps)
        with torch.set_grad_enabled(k < n_steps):
            value = objective(e)
        improved = value.detach() > best_value
        best = torch.where(_per_sample(improved, e), e.detach(), best)
        best_value = torch.where(improved, value.detach(), best_value)
        lengths = torch.where(improved, lengths, lengths / 2)
        history.append(best_value.clone())
        if k == n_steps or eps == 0:
            break
        grad = torch.autograd.grad(value.sum(), e, allow_unused=True)[0] if value.requires_grad else None
        if grad is None:
            raise ParameterError(
                "the reconstruction gives no gradient with respect to its data: the method is not differentiable "
                "(for TV by PDHG pass differentiable=True; a solver run without autograd cannot be attacked)"
            )
        direction = grad / _per_sample(sample_norm(grad).clamp_min(torch.finfo(grad.dtype).tiny), grad)
        e = _project(best + _per_sample(lengths * radius, e) * direction, radius)
    with torch.no_grad():
        attacked = method(y + best, op)
    return AttackResult(
        perturbation=best,
        reconstruction=attacked.detach(),
        reference=reference.detach(),
        objective=sample_norm(attacked - reference) ** 2,
        history=torch.stack(history),
        eps=eps,
    )


def penalised_perturbation(
    method: Reconstructor,
    y: torch.Tensor,
    op: LinearOperator,
    penalty: float,
    *,
    n_steps: int = 20,
    step: float = 0.005,
    max_norm: float = 0.2,
    seed: int = 0,
    search_method: Reconstructor | None = None,
) -> AttackResult:
    """The perturbation maximising ``‖f(y + e) − f(y)‖² − λ‖e‖²`` per image (Antun et al.'s penalised form).

    Gradient ascent from a random ``e`` of norm ``step·‖y‖``: each step moves ``e`` by ``t_i`` along the normalised
    gradient, ``t_i`` starting at ``step·‖y_i‖``, growing by 1.5 after a step that raised the objective and halving
    after one that did not (which is then undone); ``‖e_i‖`` is capped at ``max_norm·‖y_i‖``. The objective of the
    returned ``e`` never falls below the start's. Args as :func:`worst_case_perturbation`, and ``penalty`` λ ≥ 0
    (in units of the image's squared norm per the data's).
    """
    if isinstance(penalty, bool) or not isinstance(penalty, int | float) or not math.isfinite(penalty) or penalty < 0:
        raise ParameterError(f"the penalty λ must be a finite number ≥ 0, got {penalty!r}")
    if n_steps < 0 or not step > 0 or not max_norm > 0:
        raise ParameterError(f"need n_steps ≥ 0, step > 0 and max_norm > 0, got {n_steps}, {step}, {max_norm}")
    _check_batch(y, op)
    search = search_method if search_method is not None else method
    with _frozen(method, search):
        y = y.detach()
        size = sample_norm(y)
        reference, search_reference, e = _references_and_start(method, search, y, op, step * size, seed)

        def objective(e: torch.Tensor) -> torch.Tensor:
            return sample_norm(search(y + e, op) - search_reference) ** 2 - penalty * sample_norm(e) ** 2

        lengths, best = step * size, e.detach()
        with torch.no_grad():
            history = [objective(best)]
        for _ in range(n_steps):
            point = best.clone().requires_grad_()
            value = objective(point)
            grad = torch.autograd.grad(value.sum(), point)[0]
            direction = grad / _per_sample(sample_norm(grad).clamp_min(torch.finfo(grad.dtype).tiny), grad)
            with torch.no_grad():
                trial = _project(best + _per_sample(lengths, grad) * direction, max_norm * size)
                trial_value = objective(trial)
            improved = trial_value > value.detach()
            lengths = torch.where(improved, 1.5 * lengths, lengths / 2)
            best = torch.where(_per_sample(improved, grad), trial, best)
            history.append(torch.where(improved, trial_value, value.detach()))
        best = best.detach()
    with torch.no_grad():
        attacked = method(y + best, op)
    return AttackResult(
        perturbation=best,
        reconstruction=attacked.detach(),
        reference=reference.detach(),
        objective=sample_norm(attacked - reference) ** 2 - penalty * sample_norm(best) ** 2,
        history=torch.stack(history),
        eps=float((sample_norm(best) / size).mean()),
        penalty=float(penalty),
    )


def same_norm_noise(e: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Gaussian noise with each sample scaled to the norm of the same sample of ``e``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    g = torch.randn(e.shape, generator=gen, dtype=e.dtype).to(e.device)
    return g * _per_sample(sample_norm(e) / sample_norm(g), g)


def attack_summary(
    method: Reconstructor,
    result: AttackResult,
    y: torch.Tensor,
    op: LinearOperator,
    x: torch.Tensor | None = None,
    seed: int = 1,
) -> dict[str, float]:
    """Mean numbers of an attack: the change ``‖f(y+e) − f(y)‖/‖f(y)‖``, the amplification
    ``‖f(y+e) − f(y)‖/‖A⁺e‖`` and the same two for Gaussian noise of the same norm; with the truth ``x``, the
    PSNR of ``f(y)``, ``f(y + e)`` and ``f(y + noise)`` (dB, the library's metric convention)."""
    e = result.perturbation
    noise = same_norm_noise(e, seed)
    with torch.no_grad():
        noisy = method(y + noise, op)
        pinv_e, pinv_noise = op.pseudo_inverse(e), op.pseudo_inverse(noise)
    change = sample_norm(result.reconstruction - result.reference)
    noise_change = sample_norm(noisy - result.reference)
    size = sample_norm(result.reference).clamp_min(torch.finfo(e.dtype).tiny)
    out = {
        **({} if result.penalty is None else {"penalty": result.penalty}),
        "eps": result.eps,
        "relative change (attack)": float((change / size).mean()),
        "relative change (noise)": float((noise_change / size).mean()),
        "amplification (attack)": float((change / sample_norm(pinv_e)).mean()) if result.eps > 0 else 0.0,
        "amplification (noise)": float((noise_change / sample_norm(pinv_noise)).mean()) if result.eps > 0 else 0.0,
    }
    if x is not None:
        out["PSNR clean"] = float(metrics.psnr(result.reference, x).mean())
        out["PSNR attack"] = float(metrics.psnr(result.reconstruction, x).mean())
        out["PSNR noise"] = float(metrics.psnr(noisy, x).mean())
    return out


def add_detail(
    x: torch.Tensor, center: tuple[int, int], size: int = 3, contrast: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` with a small detail added (Antun et al.'s second instability) and the detail itself: a ``size``×
    ``size`` pixel square at ``center`` (row, column) and, beside it with a gap of one square, a second one, of
    ``contrast`` (default 20 % of each image's range). ``x`` ``(n, C, H, W)``."""
    if size < 1:
        raise ParameterError(f"the detail needs size ≥ 1 pixel, got {size}")
    h, w = x.shape[-2:]
    r, c = center
    if not (0 <= r and r + size <= h and 0 <= c and c + 3 * size <= w):
        raise ParameterError(f"a detail of size {size} at {center} does not fit an image of {h}×{w}")
    if contrast is None:
        span = (x.amax(dim=(-2, -1), keepdim=True) - x.amin(dim=(-2, -1), keepdim=True)).clamp_min(1e-12)
        contrast = 0.2 * span
    detail = torch.zeros_like(x)
    detail[..., r : r + size, c : c + size] = 1
    detail[..., r : r + size, c + 2 * size : c + 3 * size] = 1
    detail = detail * contrast
    return x + detail, detail


def detail_recovery(
    method: Reconstructor, x: torch.Tensor, detail: torch.Tensor, op: LinearOperator, noise: torch.Tensor
) -> dict[str, float]:
    """How much of a small ``detail`` added to ``x`` a method recovers, with the same ``noise`` on both data:
    ``⟨f(A(x+d)+n) − f(Ax+n), d⟩ / ‖d‖²`` (1: recovered at full contrast, 0: lost), and the PSNR of both
    reconstructions against their truths."""
    with torch.no_grad():
        base = method(op(x) + noise, op)
        with_detail = method(op(x + detail) + noise, op)
    flat = (with_detail - base).reshape(x.shape[0], -1)
    d = detail.reshape(x.shape[0], -1)
    recovered = (flat * d).sum(dim=1) / (d * d).sum(dim=1)
    return {
        "detail recovered": float(recovered.mean()),
        "PSNR without detail": float(metrics.psnr(base, x).mean()),
        "PSNR with detail": float(metrics.psnr(with_detail, x + detail).mean()),
    }
