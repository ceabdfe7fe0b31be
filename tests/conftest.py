"""Shared fixtures: a factory of every operator learnrecon provides, small enough for exact checks."""

import pytest
import torch

from learnrecon.operators import FanBeam2D, FiniteDifference2D, Identity, MatrixOperator, ParallelBeam2D
from learnrecon.operators.blur import Blur, gaussian_kernel, motion_kernel
from learnrecon.operators.mri import MRI, cartesian_mask, gaussian_coil_maps
from learnrecon.operators.wavelet import Wavelet2D


def _operators():
    parallel = ParallelBeam2D(12, 9)
    blur = Blur(gaussian_kernel(1.0), 12)
    mask = cartesian_mask((12, 12), 3, 0.25, seed=0)
    return {
        "parallel": parallel,
        "parallel-rectangular-physical": ParallelBeam2D((10, 14), 7, image_extent=0.3, detector_spacing=0.02),
        "parallel-subset": parallel[[0, 4, 5]],
        "fan": FanBeam2D(12, 10, 19, source_distance=30.0, detector_distance=12.0),
        "fan-subset": FanBeam2D(12, 10, 19, source_distance=30.0, detector_distance=12.0)[1::2],
        "mri-single-coil": MRI(mask),
        "mri-multi-coil": MRI(mask, coil_maps=gaussian_coil_maps(3, (12, 12))),
        "blur-zero": blur,
        "blur-periodic-motion": Blur(motion_kernel(4, 0.5), 12, boundary="periodic"),
        "identity": Identity((12, 12)),
        "gradient": FiniteDifference2D(12),
        "wavelet-db2": Wavelet2D(16, "db2", levels=2),
        "wavelet-haar-rectangular": Wavelet2D((8, 16), "haar", levels=3),
        "matrix": MatrixOperator(torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)),
        "composition": parallel @ blur,
        "sum": blur + 0.5 * Identity((12, 12)),
        "gram": parallel.gram(),
        "adjoint": parallel.H,
    }


OPERATORS = _operators()


@pytest.fixture(params=sorted(OPERATORS), ids=sorted(OPERATORS))
def any_operator(request):
    """Each operator of the factory in turn."""
    return OPERATORS[request.param]
