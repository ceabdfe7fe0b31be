"""Process-wide settings and resources: glibc malloc's policy for large tensors, and the memory a job may use.

glibc's ``malloc`` serves a request over its mmap threshold (dynamic, at most 32 MB on 64-bit Linux) with
fresh pages from the kernel, returns them on ``free``, and trims the top of its heap when enough is free.
A 32-channel activation of a batch of 128² images is that large, so the learned models take page faults on
every forward pass, and whether smaller allocations do too depends on what the process freed before. On this
project's 2-core CPU that made the shipped LPD's inference 2–3× slower, most of the time spent in the kernel
(``benchmarks/allocator.py``).

:func:`tune_malloc` turns glibc's use of mmap for allocations off and raises its trim threshold to the largest
it takes (2 GiB): freed memory is kept for reuse, and the process holds on to its peak memory until it ends.
The ``learnrecon`` command calls it; so may any script that wants the same.

:func:`check_memory` refuses, before any allocation, a request that cannot fit in the memory the machine has
available, naming the size it needs (rather than a raw allocator traceback half-way through).
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

from learnrecon.errors import ResourceError

__all__ = ["SavedTensors", "available_memory", "check_memory", "tune_malloc"]

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

#: Environment variables that mean the user has chosen an allocator or its settings.
USER_CHOICES = ("LD_PRELOAD", "GLIBC_TUNABLES")


def _user_chose() -> bool:
    return any(name in os.environ for name in USER_CHOICES) or any(name.startswith("MALLOC_") for name in os.environ)


def tune_malloc() -> bool:
    """Keep large allocations on glibc's heap and freed memory for reuse (see the module docstring).

    Returns True when the policy was set; False, doing nothing, off glibc Linux or when the environment
    already chooses the allocator or its settings (``LD_PRELOAD``, ``GLIBC_TUNABLES``, ``MALLOC_*``).
    """
    if not sys.platform.startswith("linux") or _user_chose():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def available_memory() -> int | None:
    """Bytes of memory available for new work (Linux's ``MemAvailable``), or None where it is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed: int, what: str) -> None:
    """Raise :class:`ResourceError` naming ``what`` and the size it needs when ``needed`` bytes exceed the
    memory available (nothing is checked where that is not known)."""
    available = available_memory()
    if available is not None and needed > available:
        raise ResourceError(
            f"{what} needs {_size(needed)} of memory but {_size(available)} is available; make the problem smaller "
            "(image size, angles, detectors, batch or chunk size)"
        )


def _size(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class SavedTensors:
    """Count what autograd keeps for the backward pass inside a ``with`` block: ``bytes``, the size of the distinct
    storages of the tensors saved for backward (activations, and the weights the layers save), and ``count``.

    A deterministic measure of a model's training memory beyond its inputs and weights, on any device (the CPU has
    no allocator statistics); a memory-saving scheme that recomputes activations saves little here.
    """

    def __init__(self) -> None:
        self.bytes, self.count = 0, 0
        self._seen: set[int] = set()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.count += 1
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += storage.nbytes()
        return t

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
