"""A description of the machine a result was measured on, for every results file."""

from __future__ import annotations

import os
import platform

import torch

import learnrecon

__all__ = ["machine_info"]


def machine_info(device: torch.device | str = "cpu") -> dict[str, object]:
    """Platform, CPU count, torch threads and version, learnrecon version, and the GPU name if used."""
    device = torch.device(device)
    info: dict[str, object] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "learnrecon": learnrecon.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
