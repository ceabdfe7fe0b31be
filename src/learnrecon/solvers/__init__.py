"""Classical reconstruction methods, each a plain function ``solver(y, op, **params) -> x``."""

from learnrecon.solvers.fbp import FILTERS, fbp
from learnrecon.solvers.tv import tv_pdhg

__all__ = ["FILTERS", "fbp", "tv_pdhg"]
