"""Sparsity-promoting reconstruction: ISTA and FISTA for ½‖A x − y‖² + λ‖W x‖₁.

W is an orthonormal transform (a :class:`~learnrecon.operators.wavelet.Wavelet2D`, or the identity for
sparsity in the pixel basis). With c = W x the problem is min_c ½‖A Wᵀ c − y‖² + λ‖c‖₁ and
    c ← S_{tλ}(c − t W Aᵀ(A Wᵀ c − y)),   S_τ(v) = sign(v)·max(|v| − τ, 0),   t = 1/‖A‖²,
(ISTA, Daubechies–Defrise–De Mol 2004); FISTA (Beck & Teboulle 2009) adds the momentum
z ← c + ((t_k − 1)/t_{k+1})(c − c_prev), t_{k+1} = (1 + √(1 + 4t_k²))/2. The wavelet's coarse
approximation coefficients are not thresholded unless ``threshold_approximation=True``.

Complex images (MRI): W acts on the real and imaginary parts, W x = W(Re x) + i W(Im x) (still orthonormal, now
on ℂ^N), and ‖c‖₁ = Σ |c_j| sums the coefficients' moduli, whose proximal map shrinks each modulus and keeps
the phase: S_τ(z) = z·max(0, 1 − τ/|z|) (which is sign(z)·max(|z| − τ, 0) for real z).
"""

from __future__ import annotations

import math

import torch

from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.wavelet import Wavelet2D, default_levels
from learnrecon.solvers.linear import _finish, _start
from learnrecon.solvers.stopping import Callback, SolverResult, Stopping, check_data, check_parameter, sample_norms

__all__ = ["fista", "ista", "soft_threshold"]


def soft_threshold(v: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    """S_τ(v) = sign(v)·max(|v| − τ, 0), the proximal map of τ‖·‖₁; for complex ``v`` the modulus is shrunk and
    the phase kept, S_τ(z) = z·max(0, 1 − τ/|z|) (0 at z = 0). ``tau`` is real (a number or a tensor that
    broadcasts against ``v``)."""
    if not v.is_complex():
        return torch.sign(v) * (v.abs() - tau).clamp_min(0)
    modulus = v.abs()
    shrink = (1 - tau / modulus.clamp_min(torch.finfo(modulus.dtype).tiny)).clamp_min(0)
    return v * shrink


def _proximal_gradient(
    y, op, lam, n_iter, wavelet, threshold_approximation, x0, rtol, delta, tau, callback, return_info, accelerate
):
    y = check_data(y, op)
    lam = check_parameter("lam", lam)
    image_shape = tuple(op.domain_shape[-2:])  # the wavelet acts on the last two axes, e.g. MRI's (1, H, W)
    transform = None
    if wavelet is not None:
        if isinstance(wavelet, str):
            transform = Wavelet2D(image_shape, wavelet, levels=default_levels(image_shape, wavelet))
        elif isinstance(wavelet, Wavelet2D):
            transform = wavelet
        else:
            raise ParameterError(f"wavelet must be a name such as 'db2' or a Wavelet2D, got {type(wavelet).__name__}")
        if transform.domain_shape != image_shape or math.prod(op.domain_shape[:-2]) != 1:
            raise ParameterError(f"wavelet acts on {transform.domain_shape} but the images are {op.domain_shape}")
    step = 1.0 / op.norm(torch.float64, y.device) ** 2
    real_dtype = y.real.dtype if y.is_complex() else y.dtype
    threshold = torch.tensor(step * lam, dtype=real_dtype, device=y.device)
    if transform is not None and not threshold_approximation:
        threshold = torch.where(transform.approximation_mask().to(y.device), 0.0, threshold).to(real_dtype)

    def parts(t, f):  # a real-linear map f on a complex tensor's real and imaginary parts (in one batch)
        if not t.is_complex():
            return f(t)
        both = f(torch.stack((t.real, t.imag)))
        return torch.complex(both[0], both[1])

    def synth(c):
        return parts(c, transform.H) if transform is not None else c

    def analyse(x):
        return parts(x, transform) if transform is not None else x

    c = analyse(_start(y, op, x0))
    z, t_k = c, 1.0
    stop = Stopping(n_iter, rtol, delta, tau, callback, len(op.domain_shape))
    k = 0
    with torch.no_grad():
        while k < stop.n_iter:
            k += 1
            c_old = c
            gradient = analyse(op.H(op(synth(z)) - y))
            c = soft_threshold(z - step * gradient, threshold)
            if accelerate:
                t_next = (1 + math.sqrt(1 + 4 * t_k**2)) / 2
                z = c + ((t_k - 1) / t_next) * (c - c_old)
                t_k = t_next
            else:
                z = c
            x = synth(c)
            if stop.update(k, x, synth(c_old), sample_norms(op(x) - y, len(op.range_shape))):
                break
    return _finish(stop, synth(c), k, return_info)


def ista(
    y: torch.Tensor,
    op: LinearOperator,
    lam: float,
    n_iter: int = 200,
    wavelet: str | Wavelet2D | None = None,
    threshold_approximation: bool = False,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    delta: float | None = None,
    tau: float = 1.02,
    callback: Callback | None = None,
    return_info: bool = False,
) -> torch.Tensor | SolverResult:
    """ISTA for ½‖A x − y‖² + λ‖W x‖₁ (``wavelet=None``: W = I, sparsity in pixels). Step 1/‖A‖². Real or
    complex images (module docstring); the wavelet acts on the images' last two axes."""
    return _proximal_gradient(
        y,
        op,
        lam,
        n_iter,
        wavelet,
        threshold_approximation,
        x0,
        rtol,
        delta,
        tau,
        callback,
        return_info,
        accelerate=False,
    )


def fista(
    y: torch.Tensor,
    op: LinearOperator,
    lam: float,
    n_iter: int = 200,
    wavelet: str | Wavelet2D | None = None,
    threshold_approximation: bool = False,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    delta: float | None = None,
    tau: float = 1.02,
    callback: Callback | None = None,
    return_info: bool = False,
) -> torch.Tensor | SolverResult:
    """FISTA (accelerated ISTA) for ½‖A x − y‖² + λ‖W x‖₁; O(1/k²) in the objective."""
    return _proximal_gradient(
        y,
        op,
        lam,
        n_iter,
        wavelet,
        threshold_approximation,
        x0,
        rtol,
        delta,
        tau,
        callback,
        return_info,
        accelerate=True,
    )
