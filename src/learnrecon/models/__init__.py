"""Learned reconstruction: every model is an ``nn.Module`` called as ``model(y, op) -> x``.

Unrolled schemes (:class:`LearnedGradientDescent`, :class:`GeneralisedLGD`, :class:`LearnedProximal`,
:class:`LearnedPrimalDual`, :class:`InvertibleLearnedPrimalDual`, :class:`VariationalNetwork`,
:class:`LISTA`) share the step interface of
:class:`~learnrecon.models.base.Unrolled`; :class:`FBPConvNet` post-processes an initial reconstruction.
"""

from learnrecon.models.base import INITS, Unrolled, initial_reconstruction, normalised
from learnrecon.models.ensemble import SymmetryAverage
from learnrecon.models.fbpconvnet import FBPConvNet
from learnrecon.models.gradient import GeneralisedLGD, LearnedGradientDescent, tv_gradient
from learnrecon.models.hub import build_model, load_model, model_parameters, pretrained, pretrained_names
from learnrecon.models.invertible import InvertibleLearnedPrimalDual
from learnrecon.models.lista import LISTA, soft_threshold
from learnrecon.models.nets import ConvBlock, UNet
from learnrecon.models.primal_dual import LearnedPrimalDual
from learnrecon.models.proximal import LearnedProximal
from learnrecon.models.registry import MODELS, SMALL_PARAMS, register_model
from learnrecon.models.variational import VariationalNetwork

__all__ = [
    "INITS",
    "LISTA",
    "MODELS",
    "SMALL_PARAMS",
    "ConvBlock",
    "FBPConvNet",
    "GeneralisedLGD",
    "InvertibleLearnedPrimalDual",
    "LearnedGradientDescent",
    "LearnedPrimalDual",
    "LearnedProximal",
    "SymmetryAverage",
    "UNet",
    "Unrolled",
    "VariationalNetwork",
    "build_model",
    "initial_reconstruction",
    "load_model",
    "model_parameters",
    "normalised",
    "pretrained",
    "pretrained_names",
    "register_model",
    "soft_threshold",
    "tv_gradient",
]
