"""FISTA/ISTA with an orthogonal wavelet on complex (MRI) images: closed forms, optimality, the real path."""

import numpy as np
import pytest
import torch

from learnrecon.operators.mri import MRI, cartesian_mask, gaussian_coil_maps
from learnrecon.operators.wavelet import Wavelet2D
from learnrecon.solvers import fista, ista
from learnrecon.solvers.sparsity import soft_threshold


def _complex(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(*shape, generator=g, dtype=torch.float64),
                         torch.randn(*shape, generator=g, dtype=torch.float64))  # fmt: skip


def test_complex_soft_threshold_shrinks_the_modulus_and_keeps_the_phase():
    z = _complex(50)
    tau = 0.7
    expected = np.asarray(z) * np.maximum(0, 1 - tau / np.abs(np.asarray(z)))
    np.testing.assert_allclose(soft_threshold(z, tau).numpy(), expected, rtol=0, atol=1e-15)
    assert soft_threshold(torch.zeros(3, dtype=torch.complex128), tau).abs().max() == 0
    real = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(soft_threshold(torch.complex(real, 0 * real), tau).real, soft_threshold(real, tau))


@pytest.mark.parametrize("solver", [ista, fista])
def test_unitary_operator_solution_is_one_proximal_step(solver):
    # A = F (fully sampled single-coil MRI) is unitary, so argmin ½‖A x − y‖² + λ‖W x‖₁ is
    # x = Wᴴ S_λ(W A* y) with the approximation coefficients left as they are.
    op = MRI(torch.ones(16, 16))
    W = Wavelet2D(16, "db2", levels=2)
    y = _complex(3, 16, 16)
    b = np.asarray(op.H(y))
    coefficients = np.asarray(W(torch.from_numpy(b.real))) + 1j * np.asarray(W(torch.from_numpy(b.imag)))
    lam = 0.4
    shrunk = coefficients * np.maximum(0, 1 - lam / np.abs(coefficients))
    shrunk[..., :4, :4] = coefficients[..., :4, :4]  # 16 / 2² approximation block, not thresholded
    c = torch.from_numpy(shrunk)
    expected = torch.complex(W.H(c.real.contiguous()), W.H(c.imag.contiguous()))
    x = solver(y, op, lam, n_iter=5, wavelet=W)
    assert x.is_complex()
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-12)


def _objective(x, y, op, W, lam):
    c = torch.complex(W(x.real), W(x.imag))
    return 0.5 * (op(x) - y).abs().pow(2).sum() + lam * c.abs().sum()


def test_complex_wavelet_l1_on_multicoil_mri_decreases_the_objective_and_satisfies_kkt():
    shape = (16, 16)
    op = MRI(cartesian_mask(shape, 2, 0.25, seed=0), gaussian_coil_maps(2, shape))
    W = Wavelet2D(16, "haar", levels=2)
    x_true = _complex(1, 1, 16, 16, seed=3)
    y = op(x_true) + 0.05 * _complex(1, 2, 16, 16, seed=4)
    lam = 0.05
    options = {"wavelet": W, "threshold_approximation": True}
    objectives = [float(_objective(ista(y, op, lam, n_iter=n, **options), y, op, W, lam)) for n in (1, 3, 10)]
    assert objectives[0] > objectives[1] > objectives[2]  # ISTA's objective is monotone
    x = fista(y, op, lam, n_iter=800, **options)
    assert float(_objective(x, y, op, W, lam)) < objectives[2]
    c = torch.complex(W(x.real), W(x.imag))
    residual = op.H(op(x) - y)
    gradient = torch.complex(W(residual.real), W(residual.imag))  # ∇ of ½‖A Wᴴ c − y‖² in c (real inner product)
    nonzero = c.abs() > 1e-12
    subgradient = gradient + lam * c / c.abs().clamp_min(1e-300)  # 0 where c ≠ 0; |gradient| ≤ λ where c = 0
    violation = torch.where(nonzero, subgradient.abs(), (gradient.abs() - lam).clamp_min(0))
    assert violation.max() < 1e-4 * lam and nonzero.any() and (~nonzero).any()


def test_wavelet_by_name_on_multicoil_images_and_a_mismatched_wavelet_named():
    shape = (16, 16)
    op = MRI(cartesian_mask(shape, 4, 0.25), gaussian_coil_maps(2, shape))
    y = op(_complex(2, 1, 16, 16))
    x = fista(y, op, 0.01, n_iter=3, wavelet="db2")
    assert x.shape == (2, 1, 16, 16) and x.dtype == torch.complex128
    with pytest.raises(ValueError, match=r"wavelet acts on \(8, 8\)"):
        fista(y, op, 0.01, n_iter=3, wavelet=Wavelet2D(8, "haar", levels=1))
