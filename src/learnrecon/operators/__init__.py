"""Forward operators with exact adjoints: ray transforms, MRI, blur, identity, and their algebra."""

from learnrecon.operators.base import Adjoint, Composition, LinearOperator, Scaled, Sum
from learnrecon.operators.basic import Identity, MatrixOperator
from learnrecon.operators.gradient import FiniteDifference2D
from learnrecon.operators.symmetry import Symmetry, dihedral_symmetries
from learnrecon.operators.tomography import FanBeam2D, ParallelBeam2D, RayTransform2D, subset

__all__ = [
    "Adjoint",
    "Composition",
    "FanBeam2D",
    "FiniteDifference2D",
    "Identity",
    "LinearOperator",
    "MatrixOperator",
    "ParallelBeam2D",
    "RayTransform2D",
    "Scaled",
    "Sum",
    "Symmetry",
    "dihedral_symmetries",
    "subset",
]
