"""Orthonormal 2-D discrete wavelet transform with periodic boundary, in torch (batched, any device).

One level filters the rows and then the columns with the analysis pair (h, g) of an orthogonal wavelet,
keeping every second sample with circular wrap-around:
    a[n] = Σ_k h[k] x[(2n + k) mod N],   d[n] = Σ_k g[k] x[(2n + k) mod N].
For an orthogonal filter bank this matrix is orthogonal, so the adjoint is the inverse (Wᵀ W = I).
The coefficients of ``levels`` levels are stored in one (H, W) array in the usual pyramid layout:
the approximation in the top-left (H/2^L, W/2^L) corner, details around it.

The filter coefficients come from PyWavelets (``pywt.Wavelet(name).dec_lo``/``dec_hi``); the transform
itself is torch, so it runs on the GPU and inside autograd, which PyWavelets (NumPy) cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from learnrecon.errors import ParameterError
from learnrecon.operators._precision import full_float32
from learnrecon.operators.base import LinearOperator

__all__ = ["Wavelet2D", "default_levels"]


class Wavelet2D(LinearOperator):
    """Orthonormal periodic DWT of (*batch, H, W) images into (*batch, H, W) coefficients.

    Args:
        image_size: int or (H, W); both divisible by 2**levels.
        wavelet: an orthogonal PyWavelets name ("haar", "db2", "db4", "sym4", ...).
        levels: decomposition levels (≥ 1); each level's input must be at least the filter length.
    """

    def __init__(self, image_size: int | Sequence[int], wavelet: str = "db2", levels: int = 3) -> None:
        import pywt

        shape = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        try:
            bank = pywt.Wavelet(wavelet)
        except ValueError as err:
            raise ParameterError(f"unknown wavelet {wavelet!r}; use an orthogonal one such as haar, db2, sym4") from err
        if not bank.orthogonal:
            raise ParameterError(f"wavelet {wavelet!r} is not orthogonal; use haar, dbN, symN or coifN")
        if int(levels) != levels or levels < 1:
            raise ParameterError(f"levels must be a positive integer, got {levels}")
        if not _allows(shape, levels, bank.dec_len):
            raise ParameterError(
                f"image {shape} does not allow {levels} levels of {wavelet}: both sides must be divisible by "
                f"{2**levels} and the coarsest level at least {bank.dec_len} pixels"
            )
        super().__init__(shape, shape)
        self.wavelet = wavelet
        self.levels = int(levels)
        # conv1d computes correlations Σ_k w[k] x[n + k]: the analysis filters reversed.
        self._filters = torch.tensor([bank.dec_lo[::-1], bank.dec_hi[::-1]], dtype=torch.float64)

    def config(self) -> dict:
        """Constructor arguments, for :func:`learnrecon.operators.registry.build_operator`."""
        return {
            "type": "Wavelet2D",
            "image_size": list(self.domain_shape),
            "wavelet": self.wavelet,
            "levels": self.levels,
        }

    def _bank(self, x: torch.Tensor) -> torch.Tensor:
        return self._cached(("filters", x.dtype, x.device), lambda: self._filters.to(x.dtype).to(x.device)[:, None])

    def _analyse(self, x: torch.Tensor) -> torch.Tensor:
        """One level along the last dimension: (M, N) → (M, N) as [a | d]."""
        m, n = x.shape
        bank = self._bank(x)
        padded = F.pad(x[:, None], (0, bank.shape[-1] - 1), mode="circular")
        with full_float32():
            out = F.conv1d(padded, bank, stride=2)  # (M, 2, N/2)
        return out.reshape(m, n)

    def _synthesise(self, c: torch.Tensor) -> torch.Tensor:
        """The adjoint (= inverse) of :meth:`_analyse`."""
        m, n = c.shape
        bank = self._bank(c)
        with full_float32():
            full = F.conv_transpose1d(c.reshape(m, 2, n // 2), bank, stride=2)[:, 0]  # (M, N + L - 2)
        out = full[:, :n].clone()
        extra = full[:, n:]
        out[:, : extra.shape[1]] += extra
        return out

    def _level(self, x: torch.Tensor, h: int, w: int, inverse: bool) -> torch.Tensor:
        block = x[:, :h, :w]
        step = self._synthesise if inverse else self._analyse
        if inverse:
            block = step(block.transpose(1, 2).reshape(-1, h)).reshape(-1, w, h).transpose(1, 2)
            block = step(block.reshape(-1, w)).reshape(-1, h, w)
        else:
            block = step(block.reshape(-1, w)).reshape(-1, h, w)
            block = step(block.transpose(1, 2).reshape(-1, h)).reshape(-1, w, h).transpose(1, 2)
        out = x.clone()
        out[:, :h, :w] = block
        return out

    def _forward(self, x):
        batch = x.shape[:-2]
        H, W = self.domain_shape
        c = x.reshape(-1, H, W)
        for level in range(self.levels):
            c = self._level(c, H >> level, W >> level, inverse=False)
        return c.reshape(*batch, H, W)

    def _adjoint(self, c):
        batch = c.shape[:-2]
        H, W = self.domain_shape
        x = c.reshape(-1, H, W)
        for level in reversed(range(self.levels)):
            x = self._level(x, H >> level, W >> level, inverse=True)
        return x.reshape(*batch, H, W)

    def _exact_norm(self) -> float:
        return 1.0

    def approximation_mask(self) -> torch.Tensor:
        """(H, W) bool, True on the coarse approximation coefficients (usually not thresholded)."""
        H, W = self.domain_shape
        mask = torch.zeros(H, W, dtype=torch.bool)
        mask[: H >> self.levels, : W >> self.levels] = True
        return mask


def _allows(shape: tuple[int, int], levels: int, filter_length: int) -> bool:
    """Whether ``levels`` levels fit ``shape``: both sides divisible by 2**levels, each level's input at least
    ``filter_length`` pixels."""
    return all(side % 2**levels == 0 for side in shape) and min(shape) // 2 ** (levels - 1) >= filter_length


def default_levels(shape: Sequence[int], wavelet: str, most: int = 4, coarsest: int = 8) -> int:
    """The most levels (at most ``most``, and at least 1) that ``shape`` allows for ``wavelet`` while the
    coarsest band keeps at least ``coarsest`` pixels a side; 1 when none fits (:class:`Wavelet2D` then says why)."""
    import pywt

    shape = tuple(int(s) for s in shape)
    try:
        filter_length = pywt.Wavelet(wavelet).dec_len
    except ValueError:  # an unknown name: Wavelet2D names the problem
        return 1
    levels = 1
    while levels < most and _allows(shape, levels + 1, filter_length) and min(shape) >> (levels + 1) >= coarsest:
        levels += 1
    return levels
