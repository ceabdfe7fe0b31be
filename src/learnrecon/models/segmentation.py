"""Task-adapted reconstruction (Adler, Lunz, Verdier, Schönlieb & Öktem 2018/2022): a reconstructor A†_θ and a
task network T_φ applied to its output, trained together.

``TaskAdapted(reconstructor, task)(y, op)`` returns :class:`TaskOutput` ``(image, logits)``: the reconstruction
``x̂ = A†_θ(y)`` ``(B, 1, H, W)`` and the task's class logits ``T_φ(x̂)`` ``(B, K, H, W)``. Training minimises
``ℓ = (1 − C)·ℓ_X(x̂, x) + C·ℓ_D(T_φ(x̂), d)`` (:class:`learnrecon.training.losses.JointLoss`): ``C = 0`` trains
the reconstructor alone, ``C = 1`` only for the task (end to end), ``0 < C < 1`` both together; the sequential
pipeline freezes a ``C = 0`` reconstructor and trains the task network on its outputs
(:meth:`TaskAdapted.freeze_reconstructor`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from learnrecon.errors import ParameterError, ShapeError
from learnrecon.models.nets import UNet
from learnrecon.models.primal_dual import LearnedPrimalDual
from learnrecon.operators.base import LinearOperator

__all__ = ["SegmentationUNet", "TaskAdapted", "TaskOutput", "image_of"]


class TaskOutput(NamedTuple):
    """A task-adapted model's output: the reconstruction ``(B, 1, H, W)`` and the class logits ``(B, K, H, W)``."""

    image: torch.Tensor
    logits: torch.Tensor


def image_of(output: torch.Tensor | TaskOutput) -> torch.Tensor:
    """The reconstructed image of a model's output (a tensor, or a :class:`TaskOutput`'s ``image``)."""
    return output.image if isinstance(output, TaskOutput) else output


class SegmentationUNet(nn.Module):
    """A U-Net from an image ``(B, 1, H, W)`` to class logits ``(B, n_classes, H, W)``.

    Args:
        n_classes: the classes (the random ellipses' labels have 3: background, denser and lighter ellipse).
        depth, width, batch_norm: the :class:`~learnrecon.models.nets.UNet`.
    """

    def __init__(self, n_classes: int = 3, depth: int = 3, width: int = 16, batch_norm: bool = True) -> None:
        super().__init__()
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ParameterError(f"a segmentation needs n_classes >= 2, got {n_classes!r}")
        self.n_classes = n_classes
        self.unet = UNet(1, n_classes, depth=depth, width=width, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes, H, W)`` of images ``(B, 1, H, W)``, or of an MRI operator's ``(B, 1, 1, H, W)``;
        a complex image is segmented on its magnitude ``|x|``."""
        if x.is_complex():
            x = x.abs()
        if x.ndim > 4:  # an operator's image space with leading dimensions, e.g. multi-coil MRI's (1, H, W)
            x = x.reshape(x.shape[0], -1, *x.shape[-2:])
        if x.ndim != 4 or x.shape[1] != 1:
            raise ShapeError(f"the segmentation network takes images (B, 1, H, W), got shape {tuple(x.shape)}")
        return self.unet(x)


class TaskAdapted(nn.Module):
    """A reconstructor followed by a segmentation network, trained jointly (module docstring).

    Args:
        reconstructor: any model ``model(y, op) -> x`` (a module, or in a config a section ``{name, params}``
            that :func:`learnrecon.models.build_model` builds); default the learned primal-dual.
        task: the task network (a module, or the parameters of :class:`SegmentationUNet` as a dict); default
            a :class:`SegmentationUNet` of 3 classes.
    """

    #: Parameters that :func:`learnrecon.models.build_model` builds into models from their ``{name, params}``.
    submodel_params = ("reconstructor",)

    def __init__(self, reconstructor: nn.Module | None = None, task: nn.Module | dict | None = None) -> None:
        super().__init__()
        if reconstructor is not None and not isinstance(reconstructor, nn.Module):
            raise ParameterError(f"the reconstructor must be a model, got {type(reconstructor).__name__}")
        self.reconstructor = reconstructor if reconstructor is not None else LearnedPrimalDual()
        self.task = task if isinstance(task, nn.Module) else SegmentationUNet(**(task or {}))
        self.frozen = False

    @property
    def n_classes(self) -> int:
        """The task network's number of classes."""
        return int(self.task.n_classes)

    def freeze_reconstructor(self) -> None:
        """Keep the reconstructor as it is (no gradients, its batch norms in eval mode): the sequential pipeline's
        second stage, which trains only the task network on the reconstructions."""
        self.frozen = True
        self.reconstructor.requires_grad_(False)
        self.reconstructor.eval()

    def train(self, mode: bool = True) -> TaskAdapted:
        super().train(mode)
        if self.frozen:
            self.reconstructor.eval()
        return self

    def forward(self, y: torch.Tensor, op: LinearOperator) -> TaskOutput:
        """``y`` ``(B, 1, *op.range_shape)`` → ``TaskOutput(image (B, 1, H, W), logits (B, K, H, W))``."""
        image = self.reconstructor(y, op)
        return TaskOutput(image, self.task(image))

    def diagnostics(self) -> dict[str, float]:
        """The reconstructor's report of its last forward pass, if it gives one."""
        report = getattr(self.reconstructor, "diagnostics", None)
        return dict(report()) if callable(report) else {}
