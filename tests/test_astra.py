"""Cross-checks of the ray transforms' geometry and scaling against ASTRA (skipped without ASTRA).

ASTRA works in pixel units; learnrecon's projections are line integrals in the caller's units, so they
are divided by the pixel size before comparing.
"""

import numpy as np
import pytest
import torch

from learnrecon.metrics import psnr
from learnrecon.operators import FanBeam2D, ParallelBeam2D
from learnrecon.phantoms import shepp_logan
from learnrecon.solvers import fbp

astra = pytest.importorskip("astra")


def _astra_projector(op, kind):
    vol = astra.create_vol_geom(*op.domain_shape)
    scale = op.pixel_size
    if isinstance(op, FanBeam2D):
        geometry = astra.create_proj_geom(
            "fanflat",
            op.detector_spacing / scale,
            op.n_detectors,
            op.angles.numpy(),
            op.source_distance / scale,
            op.detector_distance / scale,
        )
    else:
        geometry = astra.create_proj_geom("parallel", op.detector_spacing / scale, op.n_detectors, op.angles.numpy())
    return astra.OpTomo(astra.create_projector(kind, geometry, vol))


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _project(op, image):
    return op(torch.from_numpy(image)).numpy() / op.pixel_size


@pytest.mark.parametrize(
    "op",
    [ParallelBeam2D(64, 30), ParallelBeam2D(48, 17, image_extent=0.25), ParallelBeam2D(40, 12, n_detectors=31)],
)
def test_parallel_beam_matches_astra_linear(op):
    """Same geometry and the same (Joseph / 'linear') discretisation: agreement to float32 level."""
    x = shepp_logan(op.domain_shape[-1]).numpy()
    w = _astra_projector(op, "linear")
    assert _relative(_project(op, x), (w * x.ravel()).reshape(op.range_shape)) < 1e-4
    y = np.random.default_rng(0).standard_normal(op.range_shape)
    adjoint = op.H(torch.from_numpy(y)).numpy() / op.pixel_size
    assert _relative(adjoint, (w.T * y.ravel()).reshape(op.domain_shape)) < 1e-4


def test_fan_beam_matches_astra_fanflat():
    """ASTRA's CPU fan-beam projector uses line lengths (not Joseph's interpolation): on a smooth image
    the two agree to 0.5 %, which a wrong source side, angle or detector direction would break."""
    n = 96
    op = FanBeam2D(n, 60, 2 * n + 1, source_distance=2.0 * n, detector_distance=1.0 * n)
    rows, cols = np.mgrid[:n, :n]
    blob = np.exp(-((cols - 55.0) ** 2 + (rows - 35.0) ** 2) / (2 * 10.0**2))
    w = _astra_projector(op, "line_fanflat")
    assert _relative(_project(op, blob), (w * blob.ravel()).reshape(op.range_shape)) < 5e-3


def test_fbp_matches_astra_fbp():
    """Noiseless Shepp–Logan, Ram-Lak filter: PSNR within 0.2 dB of ASTRA's FBP (the issue's target)."""
    op = ParallelBeam2D(128, 30)
    x = shepp_logan(128).numpy()
    w = _astra_projector(op, "linear")
    ours = float(psnr(fbp(op(torch.from_numpy(x)), op, filter="ram-lak"), torch.from_numpy(x)))
    theirs = float(
        psnr(torch.from_numpy(w.reconstruct("FBP", (w * x.ravel()).reshape(op.range_shape))), torch.from_numpy(x))
    )
    assert abs(ours - theirs) < 0.2


def test_astra_backend_matches_native_and_is_adjoint():
    native = ParallelBeam2D((40, 40), 12, image_extent=2.0)
    backend = ParallelBeam2D((40, 40), 12, image_extent=2.0, backend="astra")
    x = torch.rand(2, 3, 40, 40, dtype=torch.float64)
    y = torch.rand(2, 3, *native.range_shape, dtype=torch.float64)
    out = backend(x)
    assert out.shape == (2, 3, 12, native.n_detectors) and out.dtype == torch.float64
    assert _relative(out.numpy(), native(x).numpy()) < 1e-5
    assert _relative(backend.H(y).numpy(), native.H(y).numpy()) < 1e-5
    lhs, rhs = float((backend(x) * y).sum()), float((x * backend.H(y)).sum())
    assert abs(lhs - rhs) / abs(lhs) < 1e-6  # ASTRA computes in float32
    sub = backend[::3]
    assert sub.backend == "astra" and sub.config()["backend"] == "astra"
    x.requires_grad_(True)
    (backend(x) * y).sum().backward()
    assert _relative(x.grad.numpy(), backend.H(y).numpy()) < 1e-12


def test_astra_backend_fan_beam():
    n = 64
    kwargs = {"source_distance": 2.0 * n, "detector_distance": 1.0 * n}
    rows, cols = np.mgrid[:n, :n]
    blob = torch.from_numpy(np.exp(-((cols - 35.0) ** 2 + (rows - 25.0) ** 2) / (2 * 8.0**2)))
    native = FanBeam2D(n, 40, 2 * n + 1, **kwargs)
    backend = FanBeam2D(n, 40, 2 * n + 1, **kwargs, backend="astra")
    assert _relative(backend(blob).numpy(), native(blob).numpy()) < 5e-3


def test_astra_backend_keeps_the_dihedral_symmetries():
    """A g = T_g A holds for ASTRA's projector too, to its float32 rounding (the native one: tests/test_symmetry.py)."""
    op = ParallelBeam2D(24, 12, backend="astra")
    x = torch.rand(2, 1, 24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    data = op(x)
    group = op.symmetries()
    assert len(group) == 8
    for g in group:
        torch.testing.assert_close(op(g.image(x)), g.data(data), rtol=0, atol=1e-4 * float(data.abs().max()))
