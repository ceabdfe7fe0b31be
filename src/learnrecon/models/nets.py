"""Building blocks of the learned models: small residual CNN blocks and the U-Net of FBPConvNet.

Every block maps ``(B, C_in, H, W) -> (B, C_out, H, W)`` and works on images and on sinograms alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from learnrecon.errors import ParameterError

__all__ = ["ConvBlock", "UNet", "widen_unet"]


class ConvBlock(nn.Sequential):
    """``depth`` 3×3 convolutions with PReLU between them: ``in_channels → width → … → out_channels``.

    This is the update block of learned gradient descent and learned primal-dual (Adler & Öktem: 3 layers,
    32 channels, PReLU). The last layer starts at zero, so an untrained block returns zeros and an
    unrolled scheme built from residual updates starts at its initial reconstruction. ``dropout`` p > 0 puts a
    channel dropout (``nn.Dropout2d(p)``) after each hidden activation, for Monte-Carlo dropout
    (:func:`learnrecon.robustness.mc_dropout`); p = 0 adds no layer (the shipped weights' layout).
    """

    def __init__(
        self, in_channels: int, out_channels: int, width: int = 32, depth: int = 3, dropout: float = 0.0
    ) -> None:
        if depth < 1 or width < 1 or in_channels < 1 or out_channels < 1:
            raise ParameterError(
                f"a conv block needs positive channels, width and depth, got in={in_channels}, "
                f"out={out_channels}, width={width}, depth={depth}"
            )
        if not 0 <= dropout < 1:
            raise ParameterError(f"the dropout rate must be in [0, 1), got {dropout}")
        channels = [in_channels] + [width] * (depth - 1) + [out_channels]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            if i < depth - 1:
                layers.append(nn.PReLU(c_out, init=0.0))
                if dropout > 0:
                    layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)


class _DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for a, b in ((c_in, c_out), (c_out, c_out)):
            layers += [nn.Conv2d(a, b, 3, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(b)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015; FBPConvNet's backbone): ``depth`` downsampling levels, ``width``
    channels at the top, doubled at each level, skip connections by concatenation.

    Inputs whose sides are not multiples of ``2**depth`` are zero-padded and the output cropped back.
    Jin et al. use ``depth=4, width=64`` (31 M parameters); the defaults here are CPU-sized.
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, depth: int = 3, width: int = 16, batch_norm: bool = True
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ParameterError(f"U-Net needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        self.depth = depth
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_DoubleConv(in_channels, widths[0], batch_norm)])
        self.down.extend(_DoubleConv(widths[i], widths[i + 1], batch_norm) for i in range(depth))
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth))
        self.up = nn.ModuleList(_DoubleConv(2 * widths[i], widths[i], batch_norm) for i in range(depth))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        x = F.pad(x, (0, -w % m, 0, -h % m))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.depth)):
            x = self.up[i](torch.cat([skips.pop(), self.upsample[i](x)], dim=1))
        return self.head(x)[..., :h, :w]


def widen_unet(unet: UNet, width: int) -> UNet:
    """A copy of ``unet`` with ``width`` channels at the top level (doubled at each level), same function.

    Widening with zero outgoing weights, after Net2Net (Chen, Goodfellow & Shlens 2016): every layer's old
    weights go into its leading channels (both halves of a skip concatenation keep their order); the new
    channels' incoming weights keep the fresh random initialisation, and the weights from new channels
    into old ones are zero. So the wider U-Net computes exactly what ``unet`` does, in eval and in train
    mode, while the new channels' outgoing weights receive gradients and training can use them.
    ``width`` must be at least ``unet``'s; batch normalisation, if any, is carried over channel by channel.
    """
    old_width = unet.down[0][0].out_channels
    if width < old_width:
        raise ParameterError(f"widen_unet: width {width} is narrower than the U-Net's {old_width}")
    batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in unet.modules())
    in_channels, out_channels = unet.down[0][0].in_channels, unet.head.out_channels
    wide = UNet(in_channels, out_channels, depth=unet.depth, width=width, batch_norm=batch_norm)
    wide = wide.to(device=unet.head.weight.device, dtype=unet.head.weight.dtype)
    old_modules = dict(unet.named_modules())
    with torch.no_grad():
        for name, new in wide.named_modules():
            old = old_modules[name]
            if isinstance(new, nn.BatchNorm2d):
                _copy_batch_norm(old, new)
            elif isinstance(new, nn.Conv2d | nn.ConvTranspose2d):
                skip_concat = name.startswith("up.") and name.endswith(".0")
                _copy_conv(old, new, skip_concat)
    return wide


def _old_channels(old: int, new: int, skip_concat: bool) -> torch.Tensor:
    """Where the ``old`` channels of a layer sit among its ``new`` ones (two halves for a skip concatenation)."""
    if not skip_concat:
        return torch.arange(old)
    return torch.cat([torch.arange(old // 2), new // 2 + torch.arange(old // 2)])


def _copy_conv(old: nn.Conv2d | nn.ConvTranspose2d, new: nn.Conv2d | nn.ConvTranspose2d, skip_concat: bool) -> None:
    transposed = isinstance(new, nn.ConvTranspose2d)
    old_w = old.weight.transpose(0, 1) if transposed else old.weight  # (out, in, k, k)
    new_w = new.weight.transpose(0, 1) if transposed else new.weight
    rows = torch.arange(old_w.shape[0])
    cols = _old_channels(old_w.shape[1], new_w.shape[1], skip_concat)
    added_cols = torch.ones(new_w.shape[1], dtype=torch.bool)
    added_cols[cols] = False
    new_w[rows[:, None], added_cols.nonzero()[:, 0][None, :]] = 0.0
    new_w[rows[:, None], cols[None, :]] = old_w
    if new.bias is not None:
        new.bias[rows] = old.bias


def _copy_batch_norm(old: nn.BatchNorm2d, new: nn.BatchNorm2d) -> None:
    n = old.num_features
    for key in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, key)[:n] = getattr(old, key)
    new.num_batches_tracked.copy_(old.num_batches_tracked)
