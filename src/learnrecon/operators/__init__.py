"""Forward operators with exact adjoints: ray transforms, MRI, blur, identity, and their algebra."""

from learnrecon.operators.base import Adjoint, Composition, LinearOperator, Scaled, Sum
from learnrecon.operators.basic import Identity, MatrixOperator

__all__ = [
    "Adjoint",
    "Composition",
    "Identity",
    "LinearOperator",
    "MatrixOperator",
    "Scaled",
    "Sum",
]
