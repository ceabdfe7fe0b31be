"""The LinearOperator contract: algebra, shapes, autograd through the adjoint, norm, dense form, errors."""

import pytest
import torch

from learnrecon.errors import DTypeError, ParameterError, ShapeError
from learnrecon.operators import Identity, MatrixOperator
from learnrecon.operators.registry import build_operator, operator_config


def matrices(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(7, 5, generator=g, dtype=torch.float64),
        torch.randn(5, 4, generator=g, dtype=torch.float64),
        torch.randn(7, 5, generator=g, dtype=torch.float64),
    )


def test_algebra_matches_matrix_algebra():
    M1, M2, M3 = matrices()
    A, B, C = MatrixOperator(M1), MatrixOperator(M2), MatrixOperator(M3)
    cases = {
        "compose": (A @ B, M1 @ M2),
        "scale": (2.5 * A, 2.5 * M1),
        "scale right": (A * -3.0, -3.0 * M1),
        "divide": (A / 4.0, M1 / 4.0),
        "sum": (A + C, M1 + M3),
        "difference": (A - C, M1 - M3),
        "negate": (-A, -M1),
        "adjoint": (A.H, M1.T),
        "adjoint of composition": ((A @ B).H, M2.T @ M1.T),
        "gram": (A.gram(), M1.T @ M1),
    }
    for name, (op, matrix) in cases.items():
        torch.testing.assert_close(op.to_dense(), matrix, msg=name)
        torch.testing.assert_close(op.H.to_dense(), matrix.T, msg=f"{name} adjoint")


def test_adjoint_of_adjoint_is_the_operator():
    A = MatrixOperator(matrices()[0])
    assert A.H.H is A


def test_matmul_with_tensor_applies():
    M1, _, _ = matrices()
    x = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(MatrixOperator(M1) @ x, x @ M1.T)


def test_complex_scaling_adjoint_conjugates():
    g = torch.Generator().manual_seed(1)
    M = torch.randn(4, 3, generator=g, dtype=torch.complex128)
    op = (2 - 1j) * MatrixOperator(M)
    torch.testing.assert_close(op.H.to_dense(), ((2 - 1j) * M).conj().T)


def test_composition_shape_mismatch_is_named():
    M1, M2, _ = matrices()
    with pytest.raises(ShapeError, match=r"maps to shape \(7,\) but .* expects \(5,\)"):
        MatrixOperator(M1) @ MatrixOperator(M1)
    with pytest.raises(ShapeError, match="shapes differ"):
        MatrixOperator(M1) + MatrixOperator(M2)


def test_composition_real_complex_mismatch():
    real = MatrixOperator(torch.randn(3, 3, dtype=torch.float64))
    cplx = MatrixOperator(torch.randn(3, 3, dtype=torch.complex128))
    with pytest.raises(ShapeError, match="complex"):
        real @ cplx


def test_complex_scalar_on_real_operator_refused():
    with pytest.raises(ParameterError, match="complex"):
        1j * MatrixOperator(torch.randn(3, 3, dtype=torch.float64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scalar_refused(bad):
    with pytest.raises(ParameterError, match="non-finite"):
        bad * Identity((2, 2))


def test_autograd_gradient_is_adjoint_of_residual():
    M1, M2, _ = matrices()
    op = MatrixOperator(M1) @ MatrixOperator(M2)
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 7, dtype=torch.float64)
    ((op(x) - y) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * op.H(op(x.detach()) - y))


def test_second_order_autograd_uses_gram():
    M1, _, _ = matrices()
    op = MatrixOperator(M1)
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(5, dtype=torch.float64)
    (grad,) = torch.autograd.grad(0.5 * (op(x) ** 2).sum(), x, create_graph=True)
    (hvp,) = torch.autograd.grad(grad @ v, x)
    torch.testing.assert_close(hvp, M1.T @ M1 @ v)


def test_gradcheck_through_operator():
    op = MatrixOperator(matrices()[0])
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))


def test_norm_matches_svd_and_is_cached():
    M1, _, _ = matrices()
    op = MatrixOperator(M1)
    expected = torch.linalg.matrix_norm(M1, 2).item()
    assert op.norm() == pytest.approx(expected, rel=1e-6)
    assert ("norm", torch.float64, torch.device("cpu")) in op._cache
    assert (3 * op).norm() == pytest.approx(3 * expected, rel=1e-6)
    assert op.H.norm() == pytest.approx(expected, rel=1e-6)


def test_identity_norm_and_action():
    op = Identity((4, 3))
    x = torch.randn(2, 1, 4, 3)
    torch.testing.assert_close(op(x), x)
    assert op.norm() == 1.0


def test_to_dense_refuses_large_operators():
    with pytest.raises(ParameterError, match="max_entries"):
        Identity((64, 64)).to_dense(max_entries=1000)


@pytest.mark.parametrize(
    ("x", "error", "pattern"),
    [
        (torch.ones(2, 4, dtype=torch.int64), DTypeError, "floating dtype"),
        (torch.ones(2, 4, dtype=torch.complex64), DTypeError, "real data is expected"),
        (torch.ones(2, 3), ShapeError, r"expects \(\.\.\., 4\)"),
        (torch.ones(()), ShapeError, "shape"),
        ([1.0, 2.0, 3.0, 4.0], DTypeError, "torch.Tensor"),
    ],
)
def test_bad_input_is_named(x, error, pattern):
    op = MatrixOperator(torch.randn(3, 4))
    with pytest.raises(error, match=pattern):
        op(x)


def test_real_input_to_complex_operator_refused():
    op = MatrixOperator(torch.randn(3, 4, dtype=torch.complex64))
    with pytest.raises(DTypeError, match="complex data is expected"):
        op(torch.ones(4))
    with pytest.raises(DTypeError, match="complex data is expected"):
        op.H(torch.ones(3))


def test_identity_config_round_trip():
    op = Identity((5, 6))
    rebuilt = build_operator(operator_config(op))
    assert isinstance(rebuilt, Identity) and rebuilt.domain_shape == (5, 6)


def test_unknown_operator_config_refused():
    with pytest.raises(ParameterError, match="unknown operator type"):
        build_operator({"type": "Nope"})
    with pytest.raises(ParameterError, match="cannot be stored"):
        operator_config(MatrixOperator(torch.ones(2, 2)))


def test_a_device_without_index_shares_the_cache_of_the_current_device(monkeypatch):
    from learnrecon.operators.base import canonical_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert canonical_device("cuda") == torch.device("cuda", 0) == canonical_device("cuda:0")
    assert canonical_device("cpu") == torch.device("cpu")
    op, builds = Identity((2, 2)), []
    for device in (torch.device("cuda"), torch.device("cuda", 0)):
        op._cached(("thing", device), lambda: builds.append(1))
    assert builds == [1]  # one build: the GPU holds one copy however the device is spelt


# Tests from a mutation audit of the operators, solvers and trainer (each fails on a plausible bug the
# tests before it let through).


def test_norm_of_a_negatively_scaled_operator_is_positive():
    M = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.linalg.matrix_norm(M, 2).item()
    assert (-MatrixOperator(M)).norm() == pytest.approx(expected, rel=1e-6)
    assert (-2.5 * MatrixOperator(M)).norm() == pytest.approx(2.5 * expected, rel=1e-6)


def test_power_iteration_tolerance_is_relative_for_tiny_operators():
    M = 1e-6 * torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert MatrixOperator(M).norm() == pytest.approx(torch.linalg.matrix_norm(M, 2).item(), rel=1e-6)


def test_the_operators_the_readme_lists_import_from_the_package():
    import learnrecon.operators as operators

    names = "ParallelBeam2D FanBeam2D MRI cartesian_mask gaussian_coil_maps Blur gaussian_kernel motion_kernel Identity"
    for name in (*names.split(), "FiniteDifference2D", "Wavelet2D", "MatrixOperator", "subset"):
        assert name in operators.__all__ and callable(getattr(operators, name)), name


def test_shape_errors_name_the_inputs_own_shape_and_the_expected_one():
    """A wrong-shape input's error states its actual shape and the trailing shape the operator needs; a metric's
    error names each argument with its own shape."""
    from learnrecon import metrics

    op = MatrixOperator(torch.randn(3, 4))
    with pytest.raises(ShapeError, match=r"input has shape \(2, 3\) but .*expects \(\.\.\., 4\)"):
        op(torch.ones(2, 3))
    with pytest.raises(ShapeError, match=r"x has shape \(1, 4, 4\) but reference has shape \(1, 4, 5\)"):
        metrics.psnr(torch.ones(1, 4, 4), torch.ones(1, 4, 5))


def test_non_finite_data_are_refused_with_their_nan_and_inf_counts():
    """Inf is refused as NaN is, and the error counts each kind separately."""
    from learnrecon._checks import check_finite
    from learnrecon.errors import NonFiniteError
    from learnrecon.noise import gaussian

    nan, inf = float("nan"), float("inf")
    with pytest.raises(NonFiniteError, match="data contains 3 NaN and 2 Inf values"):
        check_finite(torch.tensor([1.0, nan, inf, -inf, nan, nan]), "data")
    with pytest.raises(NonFiniteError, match="0 NaN and 1 Inf"):
        gaussian(torch.tensor([1.0, inf]), sigma=1.0)
    finite = torch.tensor([1.0, -2.0])
    assert check_finite(finite) is finite


def test_auto_device_is_the_local_ranks_gpu_and_cuda_without_cuda_is_refused(monkeypatch):
    """Device "auto" is CUDA device ``local_rank`` when CUDA is available, else the CPU; naming a CUDA device
    without CUDA is a ParameterError naming the option."""
    from learnrecon._checks import parse_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert parse_device("auto") == torch.device("cuda", 0)
    assert parse_device("auto", local_rank=1) == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parse_device("auto", local_rank=1) == torch.device("cpu")
    assert parse_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ParameterError, match=f"training.device is '{name}' but CUDA is not available"):
            parse_device(name, "training.device")
    with pytest.raises(ParameterError, match="--device 'gpu0' is not a device"):
        parse_device("gpu0", "--device")
