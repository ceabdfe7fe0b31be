"""Tables of results as Markdown and JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["format_value", "markdown_table", "write_json"]


def format_value(value: Any, digits: int = 2) -> str:
    """A table cell: floats to ``digits`` decimals, NaN as an em dash, everything else as ``str``."""
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: Mapping[str, int] | None = None
) -> str:
    """A GitHub Markdown table with one row per mapping, columns in the given order.

    ``digits`` gives the decimals per column (default 2); missing cells are left empty.
    """
    digits = digits or {}
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        cells = [format_value(row[c], digits.get(c, 2)) if c in row else "" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented, strict JSON: NaN and ±∞ (the PSNR of an exact reconstruction) as null."""
    path = Path(path)
    path.write_text(json.dumps(_non_finite_to_none(data), indent=2, allow_nan=False) + "\n")
    return path


def _non_finite_to_none(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, Mapping):
        return {k: _non_finite_to_none(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_non_finite_to_none(v) for v in data]
    return data
