"""Plug-and-play and RED: a learned denoiser ``D_σ`` in place of a proximal map or a regulariser's gradient.

On the normalised problem (``A/‖A‖``, ``y/‖A‖``, so that ``‖A‖ = 1``), from ``x₀`` (the FBP), for
``f(x) = ½‖Ax − y‖²``:

- **PnP-PGD** (Venkatakrishnan et al. 2013; proximal gradient with ``prox`` replaced by ``D``):
  ``x ← D_σ(x − η∇f(x))``, step ``η`` (≤ 1 here).
- **PnP-ADMM**: ``x ← argmin f(x) + ρ/2‖x − (z − u)‖²`` (CG), ``z ← D_σ(x + u)``, ``u ← u + x − z``.
- **HQS** (half-quadratic splitting, as DPIR: Zhang et al. 2021): ``x ← argmin f(x) + μ_k/2‖x − z‖²`` (CG),
  ``z ← D_{σ_k}(x)``, with ``σ_k`` from ``sigma_start`` down to ``sigma`` (log-spaced) and ``μ_k = λ/σ_k²``.
- **RED** (Romano, Elad & Milanfar 2017): gradient descent on ``f(x) + λ/2 xᵀ(x − D_σ(x))``, whose gradient
  (for a denoiser with a symmetric Jacobian) is ``∇f(x) + λ(x − D_σ(x))``: ``x ← x − η(∇f(x) + λ(x − D_σ(x)))``,
  ``η = 1/(1 + λ)``. A fixed point satisfies ``A*(Ax − y) + λ(x − D_σ(x)) = 0`` (the RED condition).

:func:`run_scheme` runs any of them with any denoiser ``denoise(z, sigma)`` (the identity denoiser turns PnP-PGD
into gradient descent, a test of the wiring); :class:`PlugAndPlay` is the reconstructor ``model(y, op)`` that holds
a :class:`~.denoiser.DRUNet` and a scheme with its parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from learnrecon.errors import ParameterError
from learnrecon.models.base import as_weights_dtype, initial_reconstruction, network_input, normalised
from learnrecon.operators.base import LinearOperator
from learnrecon.regularisers.denoiser import DRUNet
from learnrecon.regularisers.variational import check_weight
from learnrecon.solvers.linear import tikhonov

__all__ = ["SCHEMES", "SCHEME_SETTINGS", "PlugAndPlay", "run_scheme"]

#: A denoiser: images ``(N, 1, H, W)`` and a noise level -> images.
Denoise = Callable[[torch.Tensor, float], torch.Tensor]

SCHEMES = ("pgd", "admm", "hqs", "red")
#: The settings each scheme reads (the others it ignores).
SCHEME_SETTINGS = {
    "pgd": ("sigma", "n_iter", "step"),
    "admm": ("sigma", "n_iter", "rho", "cg_iter"),
    "hqs": ("sigma", "sigma_start", "lam", "n_iter", "cg_iter"),
    "red": ("sigma", "lam", "n_iter", "step"),
}


def _gradient(x: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
    return op.H(op(x) - y)


def _proximal_data(z: torch.Tensor, y: torch.Tensor, op: LinearOperator, weight: float, cg_iter: int) -> torch.Tensor:
    """``argmin_x ½‖Ax − y‖² + weight/2‖x − z‖²`` = ``z + w`` with ``(A*A + weight·I) w = A*(y − Az)`` (CG)."""
    return z + tikhonov(y - op(z), op, alpha=weight, n_iter=cg_iter, tol=1e-8)


def run_scheme(
    scheme: str,
    y: torch.Tensor,
    op: LinearOperator,
    denoise: Denoise,
    x0: torch.Tensor,
    *,
    sigma: float,
    n_iter: int,
    step: float = 1.0,
    lam: float = 1.0,
    rho: float = 1.0,
    sigma_start: float | None = None,
    cg_iter: int = 10,
) -> torch.Tensor:
    """Run ``scheme`` (one of :data:`SCHEMES`) on ``y`` ``(N, 1, *range)`` with ``op`` as given (normalise it
    first for the default steps) from ``x0`` ``(N, 1, H, W)``; parameters as in the module docstring."""
    if scheme not in SCHEMES:
        raise ParameterError(f"unknown plug-and-play scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    lam, rho = check_weight(lam), check_weight(rho, "rho")
    if n_iter < 0 or not step > 0:
        raise ParameterError(f"{scheme} needs n_iter ≥ 0 and step > 0, got {n_iter} and {step}")
    x = x0
    if scheme == "pgd":
        for _ in range(n_iter):
            x = denoise(x - step * _gradient(x, y, op), sigma)
    elif scheme == "red":
        eta = step / (1 + lam)
        for _ in range(n_iter):
            x = x - eta * (_gradient(x, y, op) + lam * (x - denoise(x, sigma)))
    elif scheme == "admm":
        z, u = x, torch.zeros_like(x)
        for _ in range(n_iter):
            x = _proximal_data(z - u, y, op, rho, cg_iter)
            z = denoise(x + u, sigma)
            u = u + x - z
        x = z
    else:  # hqs
        for s in _schedule(sigma_start if sigma_start is not None else sigma, sigma, n_iter):
            x = denoise(_proximal_data(x, y, op, lam / s**2, cg_iter), s)
    return x


def _schedule(start: float, end: float, n: int) -> list[float]:
    """``n`` noise levels log-spaced from ``start`` to ``end`` (HQS's decreasing σ_k)."""
    if not 0 < end <= start:
        raise ParameterError(f"HQS needs 0 < sigma ≤ sigma_start, got sigma={end}, sigma_start={start}")
    if n == 1:
        return [end]
    return [math.exp(math.log(start) + (math.log(end) - math.log(start)) * k / (n - 1)) for k in range(n)]


class PlugAndPlay(nn.Module):
    """A reconstructor ``model(y, op)``: ``scheme`` with a learned :class:`~.denoiser.DRUNet` (module docstring).

    The channels of ``y`` ``(B, C, *range)`` are independent problems. Only the denoiser has weights; it is
    trained by :meth:`training_loss` (denoising ellipse images at noise levels drawn from its ``sigma_range``).

    Args:
        scheme: "pgd", "admm", "hqs" or "red".
        sigma: the denoiser's noise level (HQS: the last one).
        n_iter: iterations.
        step: PGD's step (RED's is ``step/(1 + λ)``).
        lam: HQS's and RED's weight λ.
        rho: ADMM's penalty ρ.
        sigma_start: HQS's first noise level (default: ``sigma``).
        cg_iter: CG iterations of the data-proximal steps (ADMM, HQS).
        width, levels, blocks, sigma_range, lipschitz: the denoiser (:class:`~.denoiser.DRUNet`).
        init, fbp_filter: the starting point (see :data:`learnrecon.models.base.INITS`).
        tuned: for other schemes than ``scheme``, their settings by scheme name (e.g. ``{"red": {"lam": 0.3}}``),
            used when :meth:`forward` is given that scheme.
    """

    trained_end_to_end = False

    def __init__(
        self,
        scheme: str = "hqs",
        sigma: float = 0.02,
        n_iter: int = 8,
        step: float = 1.0,
        lam: float = 0.1,
        rho: float = 1.0,
        sigma_start: float | None = None,
        cg_iter: int = 10,
        width: int = 16,
        levels: int = 3,
        blocks: int = 1,
        sigma_range: tuple[float, float] = (0.0, 0.25),
        lipschitz: bool = False,
        init: str = "fbp",
        fbp_filter: str = "hann",
        tuned: dict[str, dict] | None = None,
    ) -> None:
        super().__init__()
        if scheme not in SCHEMES:
            raise ParameterError(f"unknown plug-and-play scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
        self.scheme, self.sigma, self.n_iter, self.step = scheme, float(sigma), n_iter, step
        self.lam, self.rho = check_weight(lam), check_weight(rho, "rho")
        self.sigma_start, self.cg_iter = sigma_start, cg_iter
        self.init, self.fbp_filter = init, fbp_filter
        unknown = sorted(set(tuned or {}) - set(SCHEMES))
        if unknown:
            raise ParameterError(f"tuned settings for unknown schemes {unknown}; schemes: {', '.join(SCHEMES)}")
        self.tuned = {k: dict(v) for k, v in (tuned or {}).items()}
        self.denoiser = DRUNet(width, levels, blocks, tuple(sigma_range), lipschitz)

    def settings(self, scheme: str | None = None) -> dict:
        """The parameters :func:`run_scheme` takes besides the data for ``scheme`` (default: the model's): the
        model's own, updated for another scheme by its ``tuned`` settings."""
        own = {
            "sigma": self.sigma, "n_iter": self.n_iter, "step": self.step, "lam": self.lam, "rho": self.rho,
            "sigma_start": self.sigma_start, "cg_iter": self.cg_iter,
        }  # fmt: skip
        return own if scheme in (None, self.scheme) else own | self.tuned.get(scheme, {})

    def forward(self, y: torch.Tensor, op: LinearOperator, scheme: str | None = None, **settings) -> torch.Tensor:
        """Reconstruct ``y`` ``(B, C, *range)`` with the model's scheme, or ``scheme`` with its tuned settings;
        ``settings`` (e.g. ``sigma=0.03``) override them."""
        unknown = sorted(set(settings) - set(self.settings()))
        if unknown:
            raise ParameterError(f"unknown plug-and-play settings {unknown}; valid: {', '.join(self.settings())}")
        batch = y.shape[:2]
        flat = as_weights_dtype(self, network_input(self, y, op))
        x0 = initial_reconstruction(flat, op, self.init, self.fbp_filter)
        y_n, op_n = normalised(flat, op)
        x = run_scheme(scheme or self.scheme, y_n, op_n, self.denoiser, x0, **(self.settings(scheme) | settings))
        return x.reshape(*batch, *op.domain_shape)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """The denoising loss ``‖D_σ(x + σn) − x‖²`` (mean over pixels) on truth ``x`` ``(B, 1, H, W)``,
        ``σ ~ U(sigma_range)`` per image, ``n`` standard Gaussian noise (``y`` and ``op`` are not used)."""
        x = as_weights_dtype(self, x)
        low, high = self.denoiser.sigma_range
        sigma = low + (high - low) * torch.rand(x.shape[0], dtype=x.dtype, device=x.device)
        noisy = x + sigma.reshape(-1, 1, 1, 1) * torch.randn_like(x)
        return (self.denoiser(noisy, sigma) - x).pow(2).mean()
