"""Full float32 arithmetic for operators built on cuDNN convolutions.

On NVIDIA GPUs since Ampere torch lets cuDNN run float32 convolutions in TF32 (10-bit mantissa) by
default, a relative error near 1e-3: enough to break an operator's dot-product adjoint test and to make
it disagree with its CPU result. Operators wrap their convolutions in :func:`full_float32`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["full_float32"]


@contextmanager
def full_float32() -> Iterator[None]:
    """Inside: cuDNN convolutions in IEEE float32 (no TF32); the previous setting is restored after."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous
