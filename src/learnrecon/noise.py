"""Noise models: additive Gaussian (absolute or relative), Poisson photon noise on pre-log CT data, and the
detector's electronic read-out noise on the counts.

Randomness comes from an explicit ``torch.Generator`` (CPU); the noise is drawn on the CPU and moved to
the data's device, so the same generator gives the same noise on every device.
"""

from __future__ import annotations

import math

import torch

from learnrecon._checks import check_finite, check_tensor
from learnrecon.errors import ParameterError

__all__ = ["gaussian", "poisson_counts", "poisson_prelog"]


def _check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0 or math.isinf(value):
        raise ParameterError(f"{name} must be a finite number >= 0, got {value}")
    return value


def gaussian(
    y: torch.Tensor,
    sigma: float | None = None,
    relative: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``y + σ·n`` with ``n`` standard normal (complex: real and imaginary parts each of variance 1/2).

    Exactly one of:
        sigma: the absolute standard deviation σ.
        relative: σ = relative · mean|y|, computed per sample over every dimension but the first
            (a 1-D or 0-D ``y`` counts as one sample). This is the LGD/LPD convention (5 % noise).

    Shapes: ``y`` is ``(B, ...)``; the result has its shape, dtype and device.
    """
    y = check_finite(check_tensor(y, "data"), "data")
    if (sigma is None) == (relative is None):
        raise ParameterError("give exactly one of sigma= (absolute) or relative= (fraction of mean |y|)")
    if sigma is not None:
        scale = torch.tensor(_check_nonnegative("sigma", sigma), dtype=y.real.dtype, device=y.device)
    else:
        fraction = _check_nonnegative("relative", relative)
        if y.ndim <= 1:
            scale = fraction * y.abs().mean()
        else:
            scale = fraction * y.abs().flatten(1).mean(dim=1).reshape(-1, *([1] * (y.ndim - 1)))
    noise = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
    return y + scale * noise


def poisson_prelog(
    y_linear: torch.Tensor,
    photons: float,
    mu_max: float = 81.35858,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Post-log data with Poisson photon noise, as in LoDoPaB-CT (Leuschner et al. 2021).

    ``y_linear`` holds line integrals of an image normalised to [0, 1] by μ_max (in the operator's length
    unit, metres for LoDoPaB). Photon counts are ``N ~ Poisson(N0 · exp(−μ_max · y))``; zero counts are
    clamped to 0.1 photons; the returned post-log data ``−log(N / N0) / μ_max`` are in the units of ``y``.

    Args:
        photons: N0, the mean photon count per detector pixel without attenuation (4096 for LoDoPaB).
        mu_max: the attenuation that maps the image's 1 to physical units.
    """
    counts = _counts(y_linear, photons, mu_max, generator).clamp_min(0.1)
    return (-torch.log(counts / float(photons)) / float(mu_max)).to(dtype=y_linear.dtype, device=y_linear.device)


def poisson_counts(
    y_linear: torch.Tensor,
    photons: float,
    mu_max: float = 81.35858,
    generator: torch.Generator | None = None,
    readout: float = 0.0,
) -> torch.Tensor:
    """Pre-log data: photon counts ``N ~ Poisson(N0 · exp(−μ_max · y))`` (the data of
    :class:`~learnrecon.operators.nonlinear.BeerLambert`), in ``y_linear``'s dtype and device; the same
    generator gives the counts behind :func:`poisson_prelog`'s post-log data.

    ``readout`` σ_e > 0 adds the detector's electronic (read-out) noise, ``N + σ_e·n`` with ``n`` standard
    normal, rounded to the integer read-out and clipped at 0 as an integrating detector's converter reports it.
    Such data follow the shifted-Poisson model ``N + σ_e² ≈ Poisson(F + σ_e²)`` (Yavuz & Fessler 1998) that
    :func:`~learnrecon.solvers.poisson.poisson_tv` takes with ``readout=σ_e``. The Gaussian noise is drawn from
    the same generator after the Poisson counts, so ``readout=0`` gives exactly the counts without it.
    """
    counts = _counts(y_linear, photons, mu_max, generator)
    sigma = _check_nonnegative("readout", readout)
    if sigma > 0:
        noise = torch.randn(counts.shape, generator=generator, dtype=counts.dtype)
        counts = torch.round(counts + sigma * noise).clamp_min(0)
    return counts.to(dtype=y_linear.dtype, device=y_linear.device)


def _counts(y_linear, photons, mu_max, generator) -> torch.Tensor:
    """The counts in float64 on the CPU."""
    y_linear = check_finite(check_tensor(y_linear, "data"), "data")
    if y_linear.is_complex():
        raise ParameterError("Poisson noise needs real line integrals, got complex data")
    n0 = _check_nonnegative("photons", photons)
    mu = _check_nonnegative("mu_max", mu_max)
    if n0 == 0 or mu == 0:
        raise ParameterError("photons and mu_max must be positive")
    expected = (n0 * torch.exp(-mu * y_linear.double())).cpu()
    return torch.poisson(expected, generator=generator)
