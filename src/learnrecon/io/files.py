"""Safe file writing: refuse to clobber, write to a temporary file, rename when complete.

An interrupted run therefore leaves either the previous file or nothing, never a half-written file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from learnrecon.errors import DataFileError

__all__ = ["atomic_path", "check_output_path"]


def check_output_path(path: str | Path, overwrite: bool = False, create_parents: bool = True) -> Path:
    """Return ``path`` as a Path after checking it may be written.

    Raises :class:`DataFileError` if it exists and ``overwrite`` is False, or if it names a folder.
    Missing parent folders are created (unless ``create_parents`` is False: a check before the work).
    """
    path = Path(path)
    if path.is_dir():
        raise DataFileError(f"output path {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise DataFileError(f"output file {path} already exists; choose another path or pass --overwrite")
    if create_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    """
    path = check_output_path(path, overwrite)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
