"""Every operator: dot-product adjoint test, norm against the SVD, and autograd through the adjoint."""

import pytest
import torch

from learnrecon.operators.base import adjoint_mismatch

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def random_like_space(shape, is_complex, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    if is_complex:
        x = torch.complex(x, torch.randn(2, *shape, generator=g, dtype=torch.float64))
        return x.to(torch.complex128 if dtype == torch.float64 else torch.complex64)
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_dot_product_adjoint(any_operator, dtype):
    op = any_operator
    x = random_like_space(op.domain_shape, op.domain_complex, dtype, seed=1)
    y = random_like_space(op.range_shape, op.range_complex, dtype, seed=2)
    ax, aty = op(x), op.H(y)
    assert ax.shape == y.shape and aty.shape == x.shape and ax.dtype == y.dtype and aty.dtype == x.dtype
    assert adjoint_mismatch(op, x, y) <= TOLERANCE[dtype]


def test_norm_matches_largest_singular_value(any_operator):
    op = any_operator
    expected = torch.linalg.matrix_norm(op.to_dense(), 2).item()
    # Power iteration converges slowly when the top singular values cluster (multi-coil MRI): rel 1e-3.
    assert op.norm() == pytest.approx(expected, rel=1e-3)


def test_autograd_gradient_of_data_fit(any_operator):
    op = any_operator
    x = random_like_space(op.domain_shape, op.domain_complex, torch.float64, seed=3).requires_grad_(True)
    y = random_like_space(op.range_shape, op.range_complex, torch.float64, seed=4)
    (op(x) - y).abs().pow(2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * op.H(op(x.detach()) - y))
