"""Ray transforms: line integrals against analytic chords, norms, subsets, memory, geometry errors."""

import math

import pytest
import torch

from learnrecon.errors import DTypeError, ParameterError, ShapeError
from learnrecon.operators import FanBeam2D, ParallelBeam2D, subset
from learnrecon.operators.registry import build_operator, operator_config


def pixel_centres(n, extent):
    h = extent / n
    c = (torch.arange(n, dtype=torch.float64) + 0.5) * h - extent / 2
    return c[None, :], -c[:, None]  # x varies along columns, y decreases down the rows


def disk(n, extent, radius, centre=(0.0, 0.0)):
    x, y = pixel_centres(n, extent)
    return (((x - centre[0]) ** 2 + (y - centre[1]) ** 2) <= radius**2).double()


def chord(distance, radius):
    return 2 * torch.sqrt((radius**2 - distance**2).clamp_min(0))


@pytest.mark.parametrize("centre", [(0.0, 0.0), (0.2, -0.15)])
def test_parallel_line_integrals_of_a_disk(centre):
    n, extent, radius = 512, 2.0, 0.5
    op = ParallelBeam2D(n, 6, n_detectors=181, image_extent=extent, detector_spacing=0.01)
    sino = op(disk(n, extent, radius, centre))
    # Ray k at angle θ lies at signed distance s_k from the origin along u = (cos θ, sin θ).
    u = torch.stack([torch.cos(op.angles), torch.sin(op.angles)], dim=1)
    distance = op.detector_positions()[None] - (u @ torch.tensor(centre, dtype=torch.float64))[:, None]
    expected = chord(distance, radius)
    inner = distance.abs() < radius - 0.02  # away from the tangent rays, where pixelation dominates
    assert (sino - expected)[inner].abs().max() < 0.01  # pixel size 0.004: error of a few pixels' area
    assert sino[distance.abs() > radius + 0.01].abs().max() == 0


def test_fan_line_integrals_of_a_disk():
    n, extent, radius = 512, 2.0, 0.5
    op = FanBeam2D(n, 5, 101, source_distance=3.0, detector_distance=2.0, image_extent=extent, detector_spacing=0.03)
    sino = op(disk(n, extent, radius))
    # Distance of the ray source -> detector cell from the origin (the disk centre).
    s = op.detector_positions()
    distance = op.source_distance * s.abs() / torch.sqrt((op.source_distance + op.detector_distance) ** 2 + s**2)
    expected = chord(distance, radius)[None].expand_as(sino)
    inner = (distance < radius - 0.02)[None].expand_as(sino)
    assert (sino - expected)[inner].abs().max() < 0.01


def test_physical_units_scale_line_integrals():
    x = torch.rand(1, 32, 32, dtype=torch.float64)
    unit = ParallelBeam2D(32, 8)
    scaled = ParallelBeam2D(32, 8, image_extent=3.2, detector_spacing=0.1)
    torch.testing.assert_close(scaled(x), 0.1 * unit(x))


def test_default_detector_covers_the_diagonal():
    op = ParallelBeam2D(128, 30)
    assert op.range_shape == (30, 183)
    assert op.n_detectors * op.detector_spacing >= math.sqrt(2) * 128
    torch.testing.assert_close(op.angles, torch.arange(30, dtype=torch.float64) * math.pi / 30)
    fan = FanBeam2D(64, 10, 97, source_distance=200.0, detector_distance=100.0)
    torch.testing.assert_close(fan.angles, torch.arange(10, dtype=torch.float64) * 2 * math.pi / 10)


@pytest.mark.parametrize(
    "op",
    [ParallelBeam2D(12, 9), ParallelBeam2D((10, 14), 5, image_extent=7.0), FanBeam2D(12, 8, 21, 30.0, 15.0)],
    ids=["parallel", "parallel-rect", "fan"],
)
def test_norm_matches_svd(op):
    expected = torch.linalg.matrix_norm(op.to_dense(), 2).item()
    assert op.norm() == pytest.approx(expected, rel=1e-6)


def test_subset_rows_match_full_operator():
    op = ParallelBeam2D(16, 12)
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    full = op(x)
    for index in ([0, 5, 7], slice(1, None, 3), torch.tensor([11, 2])):
        part = op[index]
        assert isinstance(part, ParallelBeam2D)
        torch.testing.assert_close(part(x), full[..., index, :])
    assert subset(op, [3]) is op[[3]]  # cached: loops over subsets do not rebuild matrices
    fan = FanBeam2D(16, 8, 25, 40.0, 20.0)
    torch.testing.assert_close(fan[2:4](x), fan(x)[..., 2:4, :])


def test_empty_subset_refused():
    with pytest.raises(ParameterError, match="selects no angles"):
        ParallelBeam2D(8, 4)[[]]


def test_batch_and_dtype_preserved():
    op = ParallelBeam2D(16, 6)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = torch.rand(3, 2, 16, 16).to(dtype)
        y = op(x)
        assert y.shape == (3, 2, 6, op.n_detectors) and y.dtype == dtype
        assert op.H(y).shape == x.shape and op.H(y).dtype == dtype
    single = torch.rand(16, 16, dtype=torch.float64)
    torch.testing.assert_close(op(single), op(single[None, None])[0, 0])


def test_memory_is_reported():
    op = ParallelBeam2D(32, 10)
    assert op.memory_bytes() == 0
    op(torch.rand(1, 32, 32))
    nnz = op._matrices(torch.float32, torch.device("cpu"))[0].values().numel()
    # CSR values (4 B) + int32 column indices (4 B) for A and for Aᵀ, plus row pointers.
    assert 16 * nnz <= op.memory_bytes() <= 16 * nnz + 8 * (op.range_shape[0] * op.range_shape[1] + 32 * 32 + 2)


def test_config_round_trip():
    for op in (ParallelBeam2D(20, 7, image_extent=4.0), FanBeam2D(20, 9, 33, 50.0, 25.0)):
        rebuilt = build_operator(operator_config(op))
        x = torch.rand(1, 20, 20, dtype=torch.float64)
        assert type(rebuilt) is type(op)
        torch.testing.assert_close(rebuilt(x), op(x))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ParallelBeam2D(16, 0), "n_angles must be a positive integer"),
        (lambda: ParallelBeam2D(16, 4, n_detectors=0), "n_detectors"),
        (lambda: ParallelBeam2D(16, 4, image_extent=-1.0), "image_extent"),
        (lambda: ParallelBeam2D(16, 4, angles=[0.0, float("nan")]), "finite"),
        (lambda: ParallelBeam2D(16, 3, angles=[0.0, 1.0]), "n_angles=3 but 2 angles"),
        (lambda: FanBeam2D(16, 4, 20, source_distance=5.0, detector_distance=5.0), "source inside the image"),
        (lambda: FanBeam2D(16, 4, 20, source_distance=-40.0, detector_distance=5.0), "source_distance"),
        (lambda: FanBeam2D(16, 4, 20, source_distance=40.0, detector_distance=-1.0), "detector_distance"),
    ],
)
def test_invalid_geometry(build, message):
    with pytest.raises(ParameterError, match=message):
        build()


def test_bad_inputs_name_the_problem():
    op = ParallelBeam2D(16, 6)
    with pytest.raises(ShapeError, match=r"expects \(\.\.\., 16, 16\)"):
        op(torch.rand(1, 16, 15))
    with pytest.raises(ShapeError, match=r"expects \(\.\.\., 6, 23\)"):
        op.H(torch.rand(1, 6, 22))
    with pytest.raises(DTypeError, match="floating dtype"):
        op(torch.ones(16, 16, dtype=torch.int32))
    with pytest.raises(DTypeError, match="real data is expected"):
        op(torch.ones(16, 16, dtype=torch.complex64))


def test_unknown_backend_is_named():
    with pytest.raises(ParameterError, match="unknown backend 'cuda-magic'"):
        ParallelBeam2D(16, 4, backend="cuda-magic")


def _joseph_by_loops(p0, r, shape, h):
    """Joseph's weights from the definition, one ray and one column (or row) at a time."""
    H, W = shape
    A = torch.zeros(len(p0), H * W, dtype=torch.float64)
    for k, ((px, py), (rx, ry)) in enumerate(zip(p0.tolist(), r.tolist(), strict=True)):
        x_major = abs(rx) >= abs(ry)
        for m in range(W if x_major else H):
            if x_major:
                y = py + ((m + 0.5) * h - W * h / 2 - px) / rx * ry
                f, weight = (H * h / 2 - y) / h - 0.5, h / abs(rx)
            else:
                x = px + (H * h / 2 - (m + 0.5) * h - py) / ry * rx
                f, weight = (x + W * h / 2) / h - 0.5, h / abs(ry)
            lower = math.floor(f)
            for minor, share in ((lower, 1 - (f - lower)), (lower + 1, f - lower)):
                if 0 <= minor < (H if x_major else W) and share > 0:
                    A[k, minor * W + m if x_major else m * W + minor] += weight * share
    return A


@pytest.mark.parametrize("chunk", [None, 7])
def test_joseph_matrix_matches_the_definition(monkeypatch, chunk):
    from learnrecon.operators import _joseph

    if chunk:  # many small chunks: the chunk boundaries must not change the matrix
        monkeypatch.setattr(_joseph, "CHUNK_STEPS", chunk)
        monkeypatch.setattr(_joseph, "TRANSPOSE_CHUNK_ENTRIES", chunk)
    gen = torch.Generator().manual_seed(3)
    angles = torch.tensor([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, 1.1, 2.9, -0.3, 0.2, 0.2])
    r = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1).double()
    p0 = 6 * torch.randn(len(angles), 2, generator=gen, dtype=torch.float64)
    p0[-1] = torch.tensor([40.0, 40.0])  # a ray that misses the image
    shape, h = (9, 12), 0.7
    crow, col, val = _joseph.joseph_csr(p0, r, shape, h, torch.float64)
    rows = torch.repeat_interleave(torch.arange(len(p0)), crow.long().diff())
    A = torch.zeros(len(p0), 108, dtype=torch.float64).index_put_((rows, col.long()), val, accumulate=True)
    torch.testing.assert_close(A, _joseph_by_loops(p0, r, shape, h), rtol=0, atol=1e-12)
    assert (val != 0).all() and crow[-1] == crow[-2]  # no stored zeros; the missing ray has no entries
    t_crow, t_col, t_val = _joseph.csr_transpose(crow, col, val, 108)
    At = torch.sparse_csr_tensor(t_crow, t_col, t_val, size=(108, len(p0)), check_invariants=True).to_dense()
    assert torch.equal(At, A.T)


def test_csr_transpose_matches_the_dense_transpose():
    from learnrecon.operators._joseph import csr_transpose

    dense = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    dense[dense.abs() < 0.7] = 0
    csr = dense.to_sparse_csr()
    crow, col, val = csr_transpose(csr.crow_indices(), csr.col_indices(), csr.values(), 5)
    transposed = torch.sparse_csr_tensor(crow, col, val, size=(5, 7), check_invariants=True).to_dense()
    assert torch.equal(transposed, dense.T)


# Tests from a mutation audit of the operators, solvers and trainer (each fails on a plausible bug the
# tests before it let through).


def test_angle_weights_of_non_uniform_angles_are_midpoint_gaps():
    # Angles taken modulo pi: -0.5 is 2.6416; sorted 0.5, 1.5, pi - 0.5 with gaps 1.0, pi - 2.0, 1.0 (wrapping).
    op = ParallelBeam2D(8, angles=[-0.5, 0.5, 1.5])
    g1, g2, g3 = 1.0, math.pi - 2.0, 1.0  # gap after 0.5, after 1.5, after pi - 0.5 (to 0.5 + pi)
    expected = torch.tensor([0.5 * (g2 + g3), 0.5 * (g3 + g1), 0.5 * (g1 + g2)], dtype=torch.float64)
    torch.testing.assert_close(op.angle_weights(), expected)
    assert op.angle_weights().sum().item() == pytest.approx(math.pi)
    # Angles beyond pi fold back (a parallel ray at theta + pi is the ray at theta): 1 + pi acts as 1.0.
    wrapped = ParallelBeam2D(8, angles=[0.0, 0.5, 1.0 + math.pi]).angle_weights()
    torch.testing.assert_close(
        wrapped, torch.tensor([0.5 * (math.pi - 0.5), 0.5, 0.5 * (math.pi - 0.5)], dtype=torch.float64)
    )


def test_subsets_with_the_same_angles_in_another_order_keep_their_order():
    op = ParallelBeam2D(16, 12)
    x = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op[[0, 2]]  # cache the sorted subset first
    torch.testing.assert_close(op[[2, 0]](x), op(x)[..., [2, 0], :])


def test_subsets_of_the_same_size_are_distinct():
    op = ParallelBeam2D(16, 12)
    x = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for index in ([0, 1], [2, 3], [4, 5]):
        torch.testing.assert_close(op[index](x), op(x)[..., index, :])


def test_config_round_trip_keeps_a_custom_detector_spacing():
    op = ParallelBeam2D(20, 7, n_detectors=41, detector_spacing=0.6)
    rebuilt = build_operator(operator_config(op))
    assert rebuilt.detector_spacing == 0.6
    x = torch.rand(1, 20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(rebuilt(x), op(x))


def test_fan_default_detector_just_covers_the_fan_of_the_image_circle():
    op = FanBeam2D(32, 8, 51, source_distance=40.0, detector_distance=20.0)
    r = op.image_radius
    # The tangent ray from the source to the image circle meets the detector at ±(Rs + Rd)·r/√(Rs² − r²).
    half_width = (op.source_distance + op.detector_distance) * r / math.sqrt(op.source_distance**2 - r**2)
    assert op.n_detectors * op.detector_spacing == pytest.approx(2 * half_width, rel=1e-12)
