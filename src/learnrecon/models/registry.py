"""The table of learned models by name: :data:`MODELS` (name → class) and :data:`SMALL_PARAMS`.

Building models from these names, from configs and from checkpoints is :mod:`learnrecon.models.hub`'s.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from learnrecon.errors import ParameterError
from learnrecon.models.automap import AUTOMAP
from learnrecon.models.deq import DEGrad, DEPrimalDual, DEProx
from learnrecon.models.fbpconvnet import FBPConvNet
from learnrecon.models.gradient import GeneralisedLGD, LearnedGradientDescent
from learnrecon.models.invertible import InvertibleLearnedPrimalDual
from learnrecon.models.lista import LISTA
from learnrecon.models.primal_dual import LearnedPrimalDual
from learnrecon.models.proximal import LearnedProximal
from learnrecon.models.segmentation import TaskAdapted
from learnrecon.models.variational import VariationalNetwork
from learnrecon.models.varnet import E2EVarNet, MRIVariationalNetwork

__all__ = ["MODELS", "MRI_ONLY", "SMALL_PARAMS", "register_model"]

MODELS: dict[str, type[nn.Module]] = {
    "fbpconvnet": FBPConvNet,
    "lista": LISTA,
    "lgd": LearnedGradientDescent,
    "glgd": GeneralisedLGD,
    "proximal": LearnedProximal,
    "lpd": LearnedPrimalDual,
    "ilpd": InvertibleLearnedPrimalDual,
    "vn": VariationalNetwork,
    "deq-grad": DEGrad,
    "deq-prox": DEProx,
    "deq-pd": DEPrimalDual,
    "task-adapted": TaskAdapted,
    "vn-mri": MRIVariationalNetwork,
    "e2e-varnet": E2EVarNet,
    "automap": AUTOMAP,
}
# The learned regularisers (ar, acr, pnp) join this table when learnrecon.regularisers is imported, which
# learnrecon.models does last: they build on the models' layers, so the registry cannot import them.

#: Models that only reconstruct Cartesian MRI (they work in its k-space).
MRI_ONLY: tuple[str, ...] = ("e2e-varnet",)

#: Small versions of every model (a few thousand parameters), for tests and device checks on 32²–64² problems.
SMALL_PARAMS: dict[str, dict[str, Any]] = {
    "fbpconvnet": {"depth": 2, "width": 8},
    "lista": {"n_iter": 4, "matrices": False, "lam": 0.001},
    "lgd": {"n_iter": 3, "n_memory": 2, "width": 8},
    "glgd": {"n_iter": 3, "n_memory": 2, "width": 8},
    "proximal": {"n_iter": 3, "width": 8},
    "lpd": {"n_iter": 3, "n_primal": 3, "n_dual": 3, "width": 8},
    "ilpd": {"n_iter": 3, "n_primal": 4, "n_dual": 4, "width": 8},
    "vn": {"n_stages": 3, "n_filters": 4, "filter_size": 5, "n_rbf": 9},
    "deq-grad": {"width": 8, "depth": 2, "max_iter": 40},
    "deq-prox": {"width": 8, "depth": 2, "max_iter": 40},
    "deq-pd": {"n_primal": 2, "n_dual": 2, "width": 8, "depth": 2, "max_iter": 40},
    "task-adapted": {
        "reconstructor": {"name": "lpd", "params": {"n_iter": 2, "n_primal": 2, "n_dual": 2, "width": 4}},
        "task": {"depth": 2, "width": 4},
    },
    "vn-mri": {"n_stages": 3, "n_filters": 4, "filter_size": 5, "n_rbf": 9},
    "e2e-varnet": {"n_cascades": 2, "width": 4, "depth": 1},
    # sizes given: built without an operator in tests, for ParallelBeam2D(32, 10) (data (10, 47))
    "automap": {"image_size": 32, "data_shape": [10, 47], "hidden": 32, "coarse": 2, "width": 4},
    "ar": {"width": 4, "depth": 2, "n_iter": 5},
    "acr": {"width": 4, "depth": 2, "n_iter": 5},
    "pnp": {"scheme": "pgd", "n_iter": 3, "width": 4, "levels": 2},
}


def register_model(name: str, cls: type[nn.Module], small_params: dict[str, Any] | None = None) -> None:
    """Add a model class under ``name`` (a user's own model then trains, checkpoints and loads by name like the
    shipped ones); ``small_params`` are a small version of it for tests. A name already taken is refused."""
    if name in MODELS:
        raise ParameterError(f"a model called {name!r} is already registered ({MODELS[name].__name__})")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ParameterError(f"model {name!r} must be an nn.Module class, got {cls!r}")
    MODELS[name] = cls
    if small_params is not None:
        SMALL_PARAMS[name] = dict(small_params)
