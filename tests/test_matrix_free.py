"""The matrix-free ray transform backend: the CSR backend's results (to the rounding of the sample positions)
without the stored matrices."""

import pytest
import torch

from learnrecon.errors import ParameterError
from learnrecon.operators import FanBeam2D, ParallelBeam2D, tomography
from learnrecon.operators import _matrix_free as matrix_free
from learnrecon.operators.base import adjoint_mismatch
from learnrecon.operators.registry import build_operator

GEOMETRIES = {
    "parallel": lambda backend: ParallelBeam2D(40, 24, backend=backend),
    "parallel-wide-cells": lambda backend: ParallelBeam2D(33, 7, n_detectors=20, detector_spacing=2.3, backend=backend),
    "parallel-rectangular": lambda backend: ParallelBeam2D((24, 40), 16, backend=backend),
    "fan": lambda backend: FanBeam2D((32, 40), 20, 81, 120.0, 50.0, backend=backend),
}


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_free_equals_the_csr_backend(geometry, dtype):
    csr, free = GEOMETRIES[geometry]("native"), GEOMETRIES[geometry]("matrix_free")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, *csr.domain_shape, generator=g, dtype=dtype)
    y = torch.rand(2, 3, *csr.range_shape, generator=g, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-13  # the sample positions round differently (grid_sample)
    for a, b in ((csr(x), free(x)), (csr.H(y), free.H(y))):
        assert b.shape == a.shape and b.dtype == dtype
        assert float((a - b).abs().max() / a.abs().max()) < tol


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_matrix_free_passes_the_adjoint_test(geometry):
    op = GEOMETRIES[geometry]("matrix_free")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(*op.domain_shape, generator=g)
    y = torch.rand(*op.range_shape, generator=g)
    assert adjoint_mismatch(op, x, y) <= 1e-5
    assert adjoint_mismatch(op, x.double(), y.double()) <= 1e-12


def test_matrix_free_chunks_do_not_change_the_result(monkeypatch):
    op = ParallelBeam2D(32, 18, backend="matrix_free")
    x = torch.rand(3, 32, 32)
    whole = op(x)
    back = op.H(whole)
    monkeypatch.setattr(matrix_free, "CHUNK_ENTRIES", 500)  # a few rays a chunk, and a batch that splits them
    small = ParallelBeam2D(32, 18, backend="matrix_free")
    assert len(small._lines(torch.device("cpu")).chunks(3)) > 50
    torch.testing.assert_close(small(x), whole)
    torch.testing.assert_close(small.H(whole), back)


def test_matrix_free_gradients_and_low_precision():
    op = ParallelBeam2D(12, 5, backend="matrix_free")
    x = torch.rand(1, 12, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: op(t), (x,))
    y = op(x.detach().half())
    assert y.dtype == torch.float16
    csr = ParallelBeam2D(12, 5)
    torch.testing.assert_close(y.double(), csr(x.detach().half()).double(), rtol=2e-3, atol=2e-3)


def test_matrix_free_keeps_little_memory_and_subsets_keep_the_backend():
    csr, free = ParallelBeam2D(64, 64), ParallelBeam2D(64, 64, backend="matrix_free")
    x = torch.rand(64, 64)
    csr(x), free(x)
    assert free.memory_bytes() == free.memory_estimate() < csr.memory_bytes() / 20
    assert csr.memory_bytes() <= csr.memory_estimate()
    part = free[::4]
    assert part.backend == "matrix_free"
    torch.testing.assert_close(part(x), csr[::4](x), rtol=1e-5, atol=1e-5)


def test_backend_config_round_trip_and_auto(monkeypatch):
    op = ParallelBeam2D(16, 6, backend="matrix_free")
    again = build_operator(op.config())
    assert again.backend == "matrix_free"
    assert ParallelBeam2D(16, 6, backend="auto").backend == "native"
    monkeypatch.setattr(tomography, "AUTO_MATRIX_FREE_BYTES", 1000)
    assert ParallelBeam2D(16, 6, backend="auto").backend == "matrix_free"
    assert FanBeam2D(16, 6, 25, 40.0, 10.0, backend="auto").backend == "matrix_free"
    with pytest.raises(ParameterError, match="unknown backend 'sparse'"):
        ParallelBeam2D(16, 6, backend="sparse")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run benchmarks/gpu_check.py on one)")
def test_matrix_free_on_a_gpu():
    csr = ParallelBeam2D(64, 48)
    free = ParallelBeam2D(64, 48, backend="matrix_free")
    x = torch.rand(2, 64, 64, device="cuda")
    y = torch.rand(2, *free.range_shape, device="cuda")
    assert adjoint_mismatch(free, x[0], y[0]) <= 1e-5
    torch.testing.assert_close(free(x), csr(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(free.H(y), csr.H(y), rtol=1e-5, atol=1e-5)


def test_fbp_and_the_learned_models_run_on_the_matrix_free_backend():
    from learnrecon import phantoms
    from learnrecon.models import build_model

    csr, free = ParallelBeam2D(32, 20), ParallelBeam2D(32, 20, backend="matrix_free")
    x = phantoms.random_ellipses(2, 32, seed=0, scaling="minmax")
    y = csr(x)
    torch.testing.assert_close(free.pseudo_inverse(y), csr.pseudo_inverse(y), rtol=1e-4, atol=1e-4)
    torch.manual_seed(0)
    model = build_model("lpd", {"n_iter": 2, "n_primal": 2, "n_dual": 2, "width": 4, "init": "fbp"})
    torch.testing.assert_close(model(y, free), model(y, csr), rtol=1e-4, atol=1e-4)
