"""Learning the regulariser: adversarial and convex regularisers, plug-and-play and RED with a learned denoiser.

These reconstructors solve a variational problem (or run a splitting scheme) whose prior is a network trained by its
own loss, not end to end through the reconstruction: the adversarial regulariser's critic (:mod:`.adversarial`), the
input-convex critic (:mod:`.convex`), the σ-conditioned denoiser (:mod:`.denoiser`, :mod:`.pnp`). They live in a
package of their own, beside :mod:`learnrecon.solvers` (which holds no networks) and :mod:`learnrecon.models`
(whose models are fitted end to end): each is an ``nn.Module`` called ``model(y, op)``, registered in
:data:`learnrecon.models.MODELS` (``ar``, ``acr``, ``pnp``), trained by :class:`learnrecon.training.Trainer`
through its ``training_loss(x, y, op)``, checkpointed and shipped as every model is.
"""

from learnrecon.models.registry import MODELS
from learnrecon.regularisers.adversarial import (
    AdversarialRegulariser,
    Critic,
    VariationalReconstructor,
    critic_loss,
    gradient_penalty,
    lunz_lambda,
)
from learnrecon.regularisers.convex import ICNN, ConvexRegulariser
from learnrecon.regularisers.denoiser import DRUNet
from learnrecon.regularisers.pnp import SCHEMES, PlugAndPlay, run_scheme
from learnrecon.regularisers.variational import Descent, descend

MODELS.update({"ar": AdversarialRegulariser, "acr": ConvexRegulariser, "pnp": PlugAndPlay})

__all__ = [
    "ICNN",
    "SCHEMES",
    "AdversarialRegulariser",
    "ConvexRegulariser",
    "Critic",
    "DRUNet",
    "Descent",
    "PlugAndPlay",
    "VariationalReconstructor",
    "critic_loss",
    "descend",
    "gradient_penalty",
    "lunz_lambda",
    "run_scheme",
]
