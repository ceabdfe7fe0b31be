"""Exception types that name what is wrong with an input and how to fix it.

Every error learnrecon raises on bad input derives from :class:`LearnreconError`, so the CLI can
print the message and exit non-zero without a traceback, while library users can still catch the
usual built-in types (each class also derives from ``ValueError``, ``TypeError`` or ``OSError``).
"""

from __future__ import annotations


class LearnreconError(Exception):
    """Base class of all input errors raised by learnrecon."""


class ShapeError(LearnreconError, ValueError):
    """A tensor has the wrong rank or shape for the operator, solver or metric."""


class DTypeError(LearnreconError, TypeError):
    """A tensor has the wrong dtype: integer where float is needed, or real/complex mismatch."""


class DeviceError(LearnreconError, ValueError):
    """Tensors that must share a device live on different devices."""


class NonFiniteError(LearnreconError, ValueError):
    """A tensor contains NaN or Inf values."""


class ParameterError(LearnreconError, ValueError):
    """A parameter is out of range, unknown or inconsistent (negative step, unknown filter, ...)."""


class DataFileError(LearnreconError, OSError):
    """A data or checkpoint file is missing, corrupt, of the wrong kind, or would be overwritten."""


class ResourceError(LearnreconError, MemoryError):
    """A request needs more memory than the machine has available."""
