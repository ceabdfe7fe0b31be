"""AUTOMAP (Zhu, Liu, Cauley, Rosen & Rosen, Nature 2018): the fully learned baseline, a network that learns the
whole map from the data to the image, with no operator inside it.

The paper's map: the data ``y ∈ ℝ^m`` (``m`` = angles × detectors) go through two dense layers with tanh,
``h₁ = tanh(W₁ y + b₁) ∈ ℝ^{n²}``, ``h₂ = tanh(W₂ h₁ + b₂) ∈ ℝ^{n²}``, reshaped to an ``n × n`` image, then two 5×5
convolutions (64 channels, ReLU) and a 7×7 deconvolution to one channel. For 128² images from 30 angles × 183
detectors the first dense layer alone is ``m·n² = 5490 · 16384 ≈ 90 M`` weights (180 MB in float16), far over the
5 MB this package allows a shipped weight file.

Here the dense part has a bottleneck and ends on a coarser grid (the reduction, a factorisation of the dense map
through ``hidden`` units and ``coarse``-fold subsampling of the image):

``h = tanh(W₁ y/‖A‖ + b₁) ∈ ℝ^k`` (``W₁``: ``k × m``, ``k`` = ``hidden``),
``z = tanh(W₂ h + b₂) ∈ ℝ^{(H/s)(W/s)}``, reshaped to ``(1, H/s, W/s)`` (``s`` = ``coarse``),
``x = U(z) + T(C(z))``: ``U`` the bilinear ``s``-fold upsampling of the coarse image and ``C`` two 5×5 convolutions
(``width`` channels, ReLU) on the coarse grid, ``T`` a transposed convolution (kernel ``2s``, stride ``s``) to one
channel on the full ``H × W`` grid (the paper's last deconvolution, here also the upsampling).

So ``W₁ y`` is a rank-``k`` map instead of a full ``n² × m`` one, and the image it can represent is smooth at the
scale of ``s`` pixels up to the learned detail the convolutions add. With the defaults (``k = 192``, ``s = 2``,
``width = 32``) on 128², 30 × 183: ``5490·192 + 192 + 192·4096 + 4096 ≈ 1.84 M`` dense weights and ≈ 27 k
convolution weights, 1.87 M parameters, 3.7 MB in float16. The data are divided by ‖A‖ (the operator's norm, from
the operator the model is called with) so that their scale is that of the images, whatever the geometry's pixel size.

Other differences from the paper: no multiplicative noise during training and no L1 penalty on the last
convolution's activations; the tanh/ReLU layers, the 5×5 kernels and the deconvolution are the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from learnrecon.errors import ParameterError, ShapeError
from learnrecon.models.base import as_weights_dtype, network_input
from learnrecon.operators.base import LinearOperator

__all__ = ["AUTOMAP"]


def _pair(value: int | Sequence[int], name: str, length: int | None = 2) -> tuple[int, ...]:
    shape = (value, value) if isinstance(value, int) and length == 2 else tuple(value)  # type: ignore[arg-type]
    if (length is not None and len(shape) != length) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ParameterError(f"AUTOMAP: {name} must be {length} positive integers, got {value!r}")
    return shape


class AUTOMAP(nn.Module):
    """Dense layers from the data to a coarse image, then convolutions up to the image (module docstring).

    Args:
        image_size: the image's ``H × W`` (an int for a square); ``None``: the operator's images.
        data_shape: the shape of one channel of the data (``op.range_shape``, e.g. ``[30, 183]``); ``None``: the
            operator's.
        hidden: the width ``k`` of the first dense layer (the rank of the learned linear part).
        coarse: the subsampling ``s`` of the image the dense part ends on (``H`` and ``W`` must be multiples of it).
        width: the channels of the two convolutions on the coarse grid.
        operator: the operator the model is built for (injected by :func:`~learnrecon.models.build_model` with
            ``op=``); it fixes the sizes that are not given.
    """

    def __init__(
        self,
        image_size: int | list[int] | None = None,
        data_shape: list[int] | None = None,
        hidden: int = 192,
        coarse: int = 2,
        width: int = 32,
        operator: LinearOperator | None = None,
    ) -> None:
        super().__init__()
        if operator is not None:
            if operator.domain_complex or operator.range_complex or len(operator.domain_shape) != 2:
                raise ParameterError(
                    f"AUTOMAP learns a real map to 2-D real images; {operator.name} has images of shape "
                    f"{tuple(operator.domain_shape)}{' (complex)' if operator.domain_complex else ''}"
                )
            for given, own, name in (
                (image_size, tuple(operator.domain_shape), "image_size"),
                (data_shape, tuple(operator.range_shape), "data_shape"),
            ):
                if given is not None and _pair(given, name, None if name == "data_shape" else 2) != own:
                    raise ParameterError(f"AUTOMAP: {name}={given!r} does not fit {operator.name}, whose is {own}")
            image_size = image_size if image_size is not None else list(operator.domain_shape)
            data_shape = data_shape if data_shape is not None else list(operator.range_shape)
        if image_size is None or data_shape is None:
            missing = " and ".join(n for n, v in (("image_size", image_size), ("data_shape", data_shape)) if v is None)
            raise ParameterError(
                f"AUTOMAP's dense layers need the sizes of the data and the image: give {missing} (e.g. "
                "image_size=128, data_shape=[30, 183]) or build it with the operator, build_model('automap', params, "
                "op=op)"
            )
        self.image_size = _pair(image_size, "image_size")
        self.data_shape = _pair(data_shape, "data_shape", None)
        for name, value in (("hidden", hidden), ("coarse", coarse), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ParameterError(f"AUTOMAP: {name} must be a positive integer, got {value!r}")
        h, w = self.image_size
        if h % coarse or w % coarse:
            raise ParameterError(f"AUTOMAP: the image's sides {h} × {w} must be multiples of coarse={coarse}")
        self.coarse = coarse
        self.coarse_shape = (h // coarse, w // coarse)
        m = 1
        for s in self.data_shape:
            m *= s
        self.dense1 = nn.Linear(m, hidden)
        self.dense2 = nn.Linear(hidden, self.coarse_shape[0] * self.coarse_shape[1])
        self.conv1 = nn.Conv2d(1, width, 5, padding=2)
        self.conv2 = nn.Conv2d(width, width, 5, padding=2)
        # kernel 2s, stride s, padding s/2 (rounded down) then a crop: an s-fold upsampling to exactly H × W
        self.deconv = nn.ConvTranspose2d(width, 1, 2 * coarse, stride=coarse, padding=coarse // 2)
        #: ``(image, data)`` channels as networks see them (real 2-D images and data only)
        self.channels = (1, 1)

    def _check_sizes(self, op: LinearOperator) -> None:
        if tuple(op.range_shape) != self.data_shape:
            raise ShapeError(
                f"AUTOMAP was built for data of shape {self.data_shape}, got {op.name} with data of shape "
                f"{tuple(op.range_shape)}; build it for this operator (build_model('automap', params, op=op))"
            )
        if tuple(op.domain_shape) != self.image_size:
            raise ShapeError(
                f"AUTOMAP was built for images of shape {self.image_size}, got {op.name} with images of shape "
                f"{tuple(op.domain_shape)}; build it for this operator (build_model('automap', params, op=op))"
            )

    def forward(self, y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        """``(B, C, *op.range_shape) -> (B, C, *op.domain_shape)``; the ``C`` channels are independent problems."""
        self._check_sizes(op)
        flat = network_input(self, y, op)  # (N, 1, *range), on the weights' device
        batch = y.shape[: -len(op.range_shape)]
        scale = 1.0 / op.norm(torch.float64, flat.device)
        data = as_weights_dtype(self, flat.reshape(flat.shape[0], -1) * scale)
        z = torch.tanh(self.dense2(torch.tanh(self.dense1(data))))
        z = z.reshape(-1, 1, *self.coarse_shape)
        features = F.relu(self.conv2(F.relu(self.conv1(z))))
        h, w = self.image_size
        detail = self.deconv(features)[..., :h, :w]
        smooth = F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
        return (smooth + detail).reshape(*batch, *op.domain_shape)
