"""How sure is a reconstruction? Four ways to a mean and a per-pixel standard deviation.

- :class:`Ensemble`: several trained models of the same kind for the same geometry (a deep ensemble of seeds, or
  snapshots of one run); the spread of their reconstructions.
- :func:`mc_dropout`: a model trained with dropout, sampled with its dropout layers left on (Gal & Ghahramani
  2016). A model without dropout layers is refused: switching dropout on in a network that never trained with it
  samples nothing meaningful.
- :func:`resample_data`: any method, learned or classical, run on ``y + σ ξ`` for fresh noise draws ``ξ`` (a
  parametric bootstrap of the data): the part of the error that the noise makes, not the bias.
- :func:`langevin_sample`: the unadjusted Langevin algorithm on the posterior
  ``p(x | y) ∝ exp(−‖Ax − y‖²/(2σ²) − R(x))`` with a prior ``R`` given by its gradient: smoothed TV
  (:func:`tv_prior`), Gaussian (:func:`gaussian_prior`, whose posterior is known, for tests), or a denoiser through
  Tweedie's formula ``∇R(x) ≈ (x − D(x))/s²`` (:func:`denoiser_prior`, PnP-ULA, Laumont et al. 2022).

Each returns ``(mean, std)`` with the shape of the images; :mod:`.calibration` checks the std against the
actual error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.gradient import FiniteDifference2D

__all__ = [
    "Ensemble",
    "Prior",
    "UncertainReconstruction",
    "denoiser_prior",
    "dropout_layers",
    "gaussian_prior",
    "langevin_sample",
    "mc_dropout",
    "resample_data",
    "tv_prior",
]

Reconstructor = Callable[[torch.Tensor, LinearOperator], torch.Tensor]


class UncertainReconstruction(NamedTuple):
    """A mean image, its per-pixel standard deviation (both ``(n, C, *op.domain_shape)``), and the samples
    they came from ``(k, n, C, ...)`` where they were kept."""

    mean: torch.Tensor
    std: torch.Tensor
    samples: torch.Tensor | None = None


def _check_count(n: int, what: str, least: int = 2) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < least:
        raise ParameterError(f"{what} must be an integer ≥ {least}, got {n!r}")
    return n


def _spread(samples: torch.Tensor) -> UncertainReconstruction:
    """Mean and standard deviation (sample std, ``k − 1`` in the denominator) over the first axis."""
    return UncertainReconstruction(samples.mean(dim=0), samples.std(dim=0, correction=1), samples)


def _describe(member: nn.Module) -> tuple[str | None, dict | None]:
    """A member's model name and the operator it was trained for (from its checkpoint, where known)."""
    meta = getattr(member, "provenance", None) or {}
    spec = getattr(member, "spec", None) or meta.get("model") or {}
    return spec.get("name"), meta.get("operator")


class Ensemble(nn.Module):
    """The mean and spread of several reconstructors of one kind: ``forward`` gives the mean.

    Members loaded from checkpoints must hold the same model (name) trained for the same operator; a mixture
    would measure the disagreement of different methods, not the uncertainty of one.

    Args:
        members: at least two reconstructors ``member(y, op)``.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        _check_count(len(members), "an ensemble's number of members")
        names = {_describe(m)[0] for m in members}
        if len(names) > 1:
            raise ParameterError(
                f"the ensemble's members hold different models ({', '.join(sorted(map(str, names)))}); "
                "an ensemble averages one model trained several times"
            )
        operators = [_describe(m)[1] for m in members]
        if any(o != operators[0] for o in operators[1:]):
            raise ParameterError(
                "the ensemble's members were trained for different operators (geometries); load members trained "
                "for one operator"
            )
        self.members = nn.ModuleList(members)

    def sample(self, y: torch.Tensor, op: LinearOperator) -> UncertainReconstruction:
        """Each member's reconstruction of ``y``, their mean and their standard deviation."""
        return _spread(torch.stack([member(y, op) for member in self.members]))

    def forward(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """The mean of the members' reconstructions."""
        return self.sample(y, op).mean


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``model`` (``nn.Dropout``, ``nn.Dropout2d``, ... with a rate > 0)."""
    kinds = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
    return [m for m in model.modules() if isinstance(m, kinds) and m.p > 0]


def mc_dropout(
    model: nn.Module, y: torch.Tensor, op: LinearOperator, n_samples: int = 16, seed: int = 0
) -> UncertainReconstruction:
    """``n_samples`` reconstructions of ``y`` with ``model``'s dropout layers on (the rest in eval mode)."""
    _check_count(n_samples, "n_samples")
    layers = dropout_layers(model)
    if not layers:
        raise ParameterError(
            f"{type(model).__name__} has no dropout layers, so Monte-Carlo dropout has nothing to sample; train a "
            "model with dropout, or use an ensemble or data resampling"
        )
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.train()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            samples = torch.stack([model(y, op) for _ in range(n_samples)])
    finally:
        torch.random.set_rng_state(state)
        model.train(was_training)
    return _spread(samples)


def resample_data(
    method: Reconstructor,
    y: torch.Tensor,
    op: LinearOperator,
    sigma: float | torch.Tensor,
    n_samples: int = 16,
    seed: int = 0,
) -> UncertainReconstruction:
    """``method(y + σ ξ_k, op)`` for ``n_samples`` Gaussian draws ``ξ_k``: ``σ`` a number or one per image
    ``(n,)`` (the noise level of the data, e.g. ``0.05·mean|y_i|`` for 5 % relative noise)."""
    _check_count(n_samples, "n_samples")
    sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
    if bool((sigma < 0).any()) or not bool(torch.isfinite(sigma).all()):
        raise ParameterError(f"the resampling noise level σ must be finite and ≥ 0, got {sigma.tolist()}")
    if sigma.ndim == 1:
        sigma = sigma.reshape(-1, *([1] * (y.ndim - 1)))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    samples = []
    with torch.no_grad():
        for _ in range(n_samples):
            xi = torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)
            samples.append(method(y + sigma * xi, op))
    return _spread(torch.stack(samples))


class Prior(NamedTuple):
    """A prior for Langevin sampling: the gradient of its negative log density ``∇R(x)`` and a Lipschitz
    bound of that gradient (for the step size)."""

    gradient: Callable[[torch.Tensor], torch.Tensor]
    lipschitz: float


def tv_prior(lam: float, smoothing: float, shape: tuple[int, int]) -> Prior:
    """``R(x) = λ Σ_pixels √(|∇x|² + s²)`` (TV smoothed by ``s`` > 0, forward differences, pixel units)."""
    if not lam >= 0 or not smoothing > 0:
        raise ParameterError(f"the TV prior needs λ ≥ 0 and smoothing > 0, got λ={lam}, smoothing={smoothing}")
    grad = FiniteDifference2D(shape)

    def gradient(x: torch.Tensor) -> torch.Tensor:
        g = grad(x)
        magnitude = torch.sqrt(g[..., 0, :, :] ** 2 + g[..., 1, :, :] ** 2 + smoothing**2).unsqueeze(-3)
        return lam * grad.H(g / magnitude)

    return Prior(gradient, lam * grad.norm_bound() ** 2 / smoothing)


def gaussian_prior(std: float) -> Prior:
    """``R(x) = ‖x‖²/(2 τ²)``: with a linear forward model the posterior is Gaussian and known."""
    if not std > 0:
        raise ParameterError(f"the Gaussian prior's standard deviation must be > 0, got {std}")
    return Prior(lambda x: x / std**2, 1.0 / std**2)


def denoiser_prior(denoiser: Callable[[torch.Tensor], torch.Tensor], noise_std: float, lipschitz: float = 1.0) -> Prior:
    """The prior of a Gaussian denoiser ``D`` of noise level ``s`` by Tweedie's formula, ``∇R(x) = (x − D(x))/s²``
    (the score of the prior smoothed by that noise; PnP-ULA). ``lipschitz``: a bound of ``I − D``'s Lipschitz
    constant (1 for a denoiser that is a contraction)."""
    if not noise_std > 0:
        raise ParameterError(f"the denoiser's noise level must be > 0, got {noise_std}")
    return Prior(lambda x: (x - denoiser(x)) / noise_std**2, lipschitz / noise_std**2)


def langevin_sample(
    y: torch.Tensor,
    op: LinearOperator,
    sigma: float | torch.Tensor,
    prior: Prior,
    *,
    n_samples: int = 64,
    thin: int = 20,
    burn_in: int = 2000,
    step_fraction: float = 0.9,
    x0: torch.Tensor | None = None,
    seed: int = 0,
    keep_samples: bool = False,
) -> UncertainReconstruction:
    """Sample ``p(x | y) ∝ exp(−‖Ax − y‖²/(2σ²) − R(x))`` by the unadjusted Langevin algorithm

        x ← x − δ (Aᵀ(Ax − y)/σ² + ∇R(x)) + √(2δ) ξ,    δ = step_fraction / L,

    ``L = ‖A‖²/σ² + L_R`` the Lipschitz constant of the potential's gradient. After ``burn_in`` steps, every
    ``thin``-th state is a sample; returns their running mean and standard deviation (and the samples with
    ``keep_samples``). ``σ`` a number or one per image ``(n,)``; ``x0`` the start (default the pseudo-inverse).
    ULA's samples are biased by O(δ) and the slowest directions (those the data do not see) mix slowest.
    """
    _check_count(n_samples, "n_samples")
    if thin < 1 or burn_in < 0 or not 0 < step_fraction < 2:
        raise ParameterError(
            f"need thin ≥ 1, burn_in ≥ 0 and 0 < step_fraction < 2, got {thin}, {burn_in}, {step_fraction}"
        )
    sigma = torch.as_tensor(sigma, dtype=y.real.dtype, device=y.device)
    if not bool((sigma > 0).all()) or not bool(torch.isfinite(sigma).all()):
        raise ParameterError(f"the noise level σ must be finite and > 0, got {sigma.tolist()}")
    noise_var = sigma.reshape(-1, *([1] * (y.ndim - 1))) ** 2 if sigma.ndim == 1 else sigma**2
    norm2 = op.norm(torch.float64, y.device) ** 2
    lipschitz = norm2 / noise_var.min() + prior.lipschitz
    delta = step_fraction / float(lipschitz)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = (op.pseudo_inverse(y) if x0 is None else x0).detach().clone()
    total, total_sq, kept = torch.zeros_like(x), torch.zeros_like(x), []
    with torch.no_grad():
        for k in range(burn_in + n_samples * thin):
            drift = op.H((op(x) - y) / noise_var) + prior.gradient(x)
            xi = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
            x = x - delta * drift + math.sqrt(2 * delta) * xi
            if k >= burn_in and (k - burn_in + 1) % thin == 0:
                total += x
                total_sq += x * x
                if keep_samples:
                    kept.append(x.clone())
    mean = total / n_samples
    var = (total_sq - n_samples * mean * mean).clamp_min(0) / (n_samples - 1)
    return UncertainReconstruction(mean, var.sqrt(), torch.stack(kept) if keep_samples else None)
