"""Forward operators with exact adjoints: ray transforms, MRI, blur, wavelets, identity, and their algebra."""

from learnrecon.operators.base import Adjoint, Composition, LinearOperator, Scaled, Sum
from learnrecon.operators.basic import Identity, MatrixOperator
from learnrecon.operators.blur import Blur, gaussian_kernel, motion_kernel
from learnrecon.operators.gradient import FiniteDifference2D
from learnrecon.operators.mri import MRI, cartesian_mask, gaussian_coil_maps
from learnrecon.operators.nonlinear import BeerLambert, NonlinearOperator, taylor_remainders
from learnrecon.operators.sensitivity import estimate_coil_maps
from learnrecon.operators.symmetry import IDENTITY, Symmetry, parallel_beam_symmetries
from learnrecon.operators.tomography import FanBeam2D, ParallelBeam2D, RayTransform2D, subset
from learnrecon.operators.wavelet import Wavelet2D

__all__ = [
    "IDENTITY",
    "MRI",
    "Adjoint",
    "BeerLambert",
    "Blur",
    "Composition",
    "FanBeam2D",
    "FiniteDifference2D",
    "Identity",
    "LinearOperator",
    "MatrixOperator",
    "NonlinearOperator",
    "ParallelBeam2D",
    "RayTransform2D",
    "Scaled",
    "Sum",
    "Symmetry",
    "Wavelet2D",
    "cartesian_mask",
    "estimate_coil_maps",
    "parallel_beam_symmetries",
    "gaussian_coil_maps",
    "gaussian_kernel",
    "motion_kernel",
    "subset",
    "taylor_remainders",
]
