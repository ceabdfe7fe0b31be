"""Operators to and from JSON-serialisable configs, so a data set can rebuild its forward model.

A storable operator implements ``config() -> dict`` returning its constructor arguments plus a
``"type"`` key naming its class; :func:`build_operator` inverts it. The same dict is the tagged
``data.operator`` section of a training config (``{type: ParallelBeam2D, image_size: 128, n_angles: 30}``).
An operator whose constructor takes tensors (MRI's mask and coil maps) offers a classmethod
``from_config(cfg)`` that builds it from plain values instead.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator

__all__ = ["OPERATOR_TYPES", "build_operator", "differing_settings", "make_operator", "operator_config"]

#: Class name -> module that defines it (imported lazily so that reading a config is cheap).
OPERATOR_TYPES: dict[str, str] = {
    "Blur": "learnrecon.operators.blur",
    "Identity": "learnrecon.operators.basic",
    "FiniteDifference2D": "learnrecon.operators.gradient",
    "ParallelBeam2D": "learnrecon.operators.tomography",
    "Wavelet2D": "learnrecon.operators.wavelet",
    "FanBeam2D": "learnrecon.operators.tomography",
    "MRI": "learnrecon.operators.mri",
    "BeerLambert": "learnrecon.operators.nonlinear",
}


def operator_config(op: LinearOperator) -> dict[str, Any]:
    """The JSON-serialisable config of ``op`` (raises :class:`ParameterError` if it cannot be stored)."""
    config = getattr(op, "config", None)
    if config is None or type(op).__name__ not in OPERATOR_TYPES:
        storable = ", ".join(sorted(OPERATOR_TYPES))
        raise ParameterError(f"{op.name} cannot be stored in a data file; storable operators: {storable}")
    cfg = config()
    json.dumps(cfg)  # fail here, not half-way through writing a file
    return cfg


def differing_settings(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The keys in which two :func:`operator_config` records differ (one missing counts), sorted."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def build_operator(cfg: dict[str, Any]) -> LinearOperator:
    """Build an operator from a config (:func:`operator_config` output, or a ``data.operator`` section)."""
    if not isinstance(cfg, dict):
        raise ParameterError(f"an operator section must be a mapping with a 'type' key, got {cfg!r}")
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in OPERATOR_TYPES:
        raise ParameterError(
            f"unknown operator type {kind!r} in config; known types: {', '.join(sorted(OPERATOR_TYPES))}"
        )
    cls = getattr(importlib.import_module(OPERATOR_TYPES[kind]), kind)
    build = getattr(cls, "from_config", None) or cls
    accepted = [name for name in inspect.signature(build).parameters if name not in ("self", "cls")]
    unknown = sorted(set(cfg) - set(accepted))
    if unknown:
        raise ParameterError(
            f"operator {kind} has no argument {', '.join(map(repr, unknown))}; its arguments: {', '.join(accepted)}"
        )
    try:
        return build(**cfg)
    except TypeError as err:
        raise ParameterError(f"invalid config for {kind}: {err}; its arguments: {', '.join(accepted)}") from err


def make_operator(
    geometry: str,
    size: int,
    n_angles: int = 30,
    n_detectors: int | None = None,
    image_extent: float | None = None,
    source_distance: float | None = None,
    detector_distance: float | None = None,
) -> LinearOperator:
    """Build a forward operator by name for an image of ``size × size`` pixels.

    ``geometry``: "parallel" (:class:`ParallelBeam2D`), "fan" (:class:`FanBeam2D`; distances default
    to 2× and 1× the image extent from the rotation centre) or "denoise" (:class:`Identity`).
    """
    from learnrecon.operators.basic import Identity

    if geometry == "denoise":
        return Identity((size, size))
    from learnrecon.operators.tomography import FanBeam2D, ParallelBeam2D

    extent = float(size) if image_extent is None else float(image_extent)
    if geometry == "parallel":
        return ParallelBeam2D(size, n_angles, n_detectors=n_detectors, image_extent=extent)
    if geometry == "fan":
        return FanBeam2D(
            size,
            n_angles,
            n_detectors=n_detectors if n_detectors is not None else 2 * size + 1,
            source_distance=2.0 * extent if source_distance is None else source_distance,
            detector_distance=extent if detector_distance is None else detector_distance,
            image_extent=extent,
        )
    raise ParameterError(f"unknown geometry {geometry!r}; choose parallel, fan or denoise")
