"""Learned reconstruction: every model is an ``nn.Module`` called as ``model(y, op) -> x``.

Unrolled schemes (:class:`LearnedGradientDescent`, :class:`GeneralisedLGD`, :class:`LearnedProximal`,
:class:`LearnedPrimalDual`, :class:`InvertibleLearnedPrimalDual`, :class:`VariationalNetwork`, :class:`LISTA`)
share the step interface of
:class:`~learnrecon.models.base.Unrolled`; :class:`FBPConvNet` post-processes an initial reconstruction;
:class:`DeepEquilibrium` (``deq-grad``, ``deq-prox``, ``deq-pd``) runs one step to its fixed point.
:class:`AUTOMAP` learns the whole map from the data to the image (the fully learned baseline).
:class:`TaskAdapted` follows any of them with a segmentation network (joint reconstruction and segmentation).
Every convolving model also runs on complex (MRI) images, as two real channels (:mod:`learnrecon.models.complex`);
:class:`E2EVarNet` works in MRI's k-space only (:data:`MRI_ONLY`).
"""

from learnrecon.models.automap import AUTOMAP
from learnrecon.models.base import INITS, Unrolled, initial_reconstruction, normalised
from learnrecon.models.deq import BACKWARDS, Certificate, DeepEquilibrium, DEGrad, DEPrimalDual, DEProx
from learnrecon.models.ensemble import SymmetryAverage
from learnrecon.models.fbpconvnet import FBPConvNet
from learnrecon.models.gradient import GeneralisedLGD, LearnedGradientDescent, tv_gradient
from learnrecon.models.hub import build_model, load_model, model_parameters, pretrained, pretrained_names
from learnrecon.models.invertible import InvertibleLearnedPrimalDual
from learnrecon.models.lista import LISTA, soft_threshold
from learnrecon.models.nets import ConvBlock, UNet
from learnrecon.models.primal_dual import LearnedPrimalDual
from learnrecon.models.proximal import LearnedProximal
from learnrecon.models.registry import MODELS, MRI_ONLY, SMALL_PARAMS, register_model
from learnrecon.models.segmentation import SegmentationUNet, TaskAdapted, TaskOutput, image_of
from learnrecon.models.variational import VariationalNetwork
from learnrecon.models.varnet import E2EVarNet, MRIVariationalNetwork

__all__ = [
    "AUTOMAP",
    "BACKWARDS",
    "Certificate",
    "DEGrad",
    "DEPrimalDual",
    "DEProx",
    "DeepEquilibrium",
    "INITS",
    "LISTA",
    "MODELS",
    "MRI_ONLY",
    "E2EVarNet",
    "MRIVariationalNetwork",
    "SMALL_PARAMS",
    "ConvBlock",
    "FBPConvNet",
    "GeneralisedLGD",
    "InvertibleLearnedPrimalDual",
    "LearnedGradientDescent",
    "LearnedPrimalDual",
    "LearnedProximal",
    "SegmentationUNet",
    "SymmetryAverage",
    "TaskAdapted",
    "TaskOutput",
    "UNet",
    "Unrolled",
    "VariationalNetwork",
    "build_model",
    "image_of",
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

# Last: the learned regularisers build on the models above and add themselves to MODELS (ar, acr, pnp).
import learnrecon.regularisers  # noqa: E402, F401
