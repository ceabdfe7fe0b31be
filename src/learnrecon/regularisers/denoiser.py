"""A denoiser conditioned on the noise level, for plug-and-play and RED: a small DRUNet-like U-Net.

DRUNet (Zhang et al., "Plug-and-play image restoration with deep denoiser prior", TPAMI 2021) maps a noisy image
``z = x + σ n`` and a constant map of ``σ`` to ``x̂ = D_σ(z)``: bias-free convolutions, residual blocks on each
scale, strided-convolution downsampling and transposed-convolution upsampling with additive skips. Here it is
smaller (``levels`` scales of ``width·2^l`` channels, ``blocks`` residual blocks per scale; the paper: 4 scales of
64–512 channels, 4 blocks) so that it trains in minutes on a CPU and ships in well under a megabyte.

The network predicts the noise and subtracts it, ``D_σ(z) = z − N_θ(z, σ)``, so that an untrained denoiser starts
near the identity. With ``lipschitz`` every convolution of ``N_θ`` has operator norm at most 1
(:class:`~learnrecon.models.lipschitz.LipschitzConv` for the 3×3 kernels, spectral normalisation for the
strided ones), and a final gain ``sigmoid(s) < 1`` makes the
residual ``N_θ`` a contraction in ``z`` (LeakyReLU, 1-Lipschitz, between the convolutions, the skips averaged):
then ``D_σ = Id − N_θ`` is averaged-like, the property under which PnP-PGD is known to converge (Ryu et al. 2019
bound ``‖(D − Id)‖_Lip``). Without it, PnP is a heuristic that works well in practice.

Shapes: ``z`` is ``(N, 1, H, W)`` with H and W divisible by ``2^(levels-1)`` (other sizes are padded by
reflection and cropped back); ``sigma`` a float or a tensor ``(N,)``. ``sigma_range`` is the range of noise levels
it was trained on: a level outside it warns (the denoiser's output there is extrapolation).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from learnrecon.errors import ParameterError, ShapeError
from learnrecon.models.lipschitz import LipschitzConv

__all__ = ["DRUNet"]


def _conv(in_channels: int, out_channels: int, lipschitz: bool) -> nn.Module:
    if lipschitz:
        return LipschitzConv(in_channels, out_channels)
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


class _ResBlock(nn.Module):
    """``h + conv(act(conv(h)))`` (averaged, ``(h + r)/2``, under the Lipschitz constraint)."""

    def __init__(self, width: int, lipschitz: bool) -> None:
        super().__init__()
        self.conv1, self.conv2 = _conv(width, width, lipschitz), _conv(width, width, lipschitz)
        self.average = lipschitz

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        r = self.conv2(F.leaky_relu(self.conv1(h), 0.1))
        return (h + r) / 2 if self.average else h + r


class DRUNet(nn.Module):
    """``D_σ(z) = z − N_θ(z, σ)`` with ``N_θ`` a U-Net on ``[z, σ·1]`` (see the module docstring).

    Args:
        width: channels on the finest scale (doubled on each coarser one).
        levels: number of scales.
        blocks: residual blocks per scale.
        sigma_range: ``(σ_min, σ_max)`` the denoiser is trained on (and warns outside).
        lipschitz: constrain the residual network to be a contraction (see the module docstring).
    """

    def __init__(
        self,
        width: int = 16,
        levels: int = 3,
        blocks: int = 1,
        sigma_range: tuple[float, float] = (0.0, 0.25),
        lipschitz: bool = False,
    ) -> None:
        super().__init__()
        if width < 1 or levels < 1 or blocks < 0:
            raise ParameterError(f"DRUNet needs width, levels ≥ 1 and blocks ≥ 0, got {width}, {levels}, {blocks}")
        low, high = (float(s) for s in sigma_range)
        if not 0 <= low < high:
            raise ParameterError(f"sigma_range must be (σ_min, σ_max) with 0 ≤ σ_min < σ_max, got {sigma_range}")
        self.sigma_range, self.levels, self.lipschitz = (low, high), levels, lipschitz
        widths = [width * 2**level for level in range(levels)]
        self.head = _conv(2, widths[0], lipschitz)
        self.down_blocks = nn.ModuleList(self._blocks(w, blocks) for w in widths[:-1])
        self.downs = nn.ModuleList(self._rescaled(nn.Conv2d(w, 2 * w, 2, stride=2, bias=False)) for w in widths[:-1])
        self.body = self._blocks(widths[-1], blocks)
        self.ups = nn.ModuleList(
            self._rescaled(nn.ConvTranspose2d(2 * w, w, 2, stride=2, bias=False)) for w in widths[:-1]
        )
        self.up_blocks = nn.ModuleList(self._blocks(w, blocks) for w in widths[:-1])
        self.tail = _conv(widths[0], 1, lipschitz)
        self.gain = nn.Parameter(torch.zeros(())) if lipschitz else None

    def _blocks(self, width: int, n: int) -> nn.Sequential:
        return nn.Sequential(*(_ResBlock(width, self.lipschitz) for _ in range(n)))

    def _rescaled(self, conv: nn.Conv2d | nn.ConvTranspose2d) -> nn.Module:
        """A 2×2 stride-2 (transposed) convolution, spectrally normalised under ``lipschitz``: its patches do not
        overlap, so its operator norm is exactly that of its kernel as a matrix (``dim=0``: ``C_out × 4C_in``,
        transposed ``C_in × 4C_out``), which :func:`torch.nn.utils.parametrizations.spectral_norm` estimates by
        power iteration."""
        return nn.utils.parametrizations.spectral_norm(conv, dim=0) if self.lipschitz else conv

    def _sigma_map(self, z: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=z.dtype, device=z.device).reshape(-1)
        if sigma.numel() not in (1, z.shape[0]):
            raise ShapeError(f"sigma has {sigma.numel()} values for {z.shape[0]} images; give one or one per image")
        if not torch.isfinite(sigma).all() or (sigma < 0).any():
            raise ParameterError(f"noise levels σ must be finite and ≥ 0, got {sigma.tolist()}")
        low, high = self.sigma_range
        if (sigma < low - 1e-9).any() or (sigma > high + 1e-9).any():
            warnings.warn(
                f"noise level σ = {sigma.min().item():.4g}…{sigma.max().item():.4g} lies outside the range "
                f"[{low:g}, {high:g}] this denoiser was trained on; its output there is extrapolation",
                stacklevel=3,
            )
        return sigma.reshape(-1, 1, 1, 1).expand(z.shape[0], 1, *z.shape[-2:])

    def forward(self, z: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``D_σ(z)`` for ``z`` ``(N, 1, H, W)`` and ``sigma`` a float or ``(N,)``."""
        if z.ndim != 4 or z.shape[1] != 1:
            raise ShapeError(f"the denoiser takes images (N, 1, H, W), got shape {tuple(z.shape)}")
        h, w = z.shape[-2:]
        multiple = 2 ** (self.levels - 1)
        pad = (0, (-w) % multiple, 0, (-h) % multiple)
        padded = F.pad(z, pad, mode="reflect") if any(pad) else z
        noise = self._residual(padded, self._sigma_map(padded, sigma))
        return z - noise[..., :h, :w]

    def _residual(self, z: torch.Tensor, sigma_map: torch.Tensor) -> torch.Tensor:
        h = self.head(torch.cat([z, sigma_map], dim=1))
        skips = []
        for blocks, down in zip(self.down_blocks, self.downs, strict=True):
            h = blocks(h)
            skips.append(h)
            h = down(h)
        h = self.body(h)
        for up, blocks, skip in zip(reversed(self.ups), reversed(self.up_blocks), reversed(skips), strict=True):
            h = up(h)
            h = blocks((h + skip) / 2 if self.lipschitz else h + skip)
        out = self.tail(h)
        return torch.sigmoid(self.gain) * out if self.gain is not None else out
