"""Run locks: one process at a time writes an output (a run folder, a benchmark folder, a data file).

The lock is a file ``<output>.lock`` beside the output, created atomically (``O_CREAT | O_EXCL``) and holding the
holder's process id, host and command. A second process asking for the same output is refused at once with an
error naming the holder; a lock left by a process that is no longer running (on this host) is taken over with a
warning. The lock is removed when the holder's block ends, however it ends. Locks guard against other
processes: within one process a later holder takes the lock over (each holder removes only its own).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

from learnrecon.errors import DataFileError

__all__ = ["OutputLockedError", "lock_path", "output_lock"]


class OutputLockedError(DataFileError):
    """Another running process holds the output."""


def lock_path(output: str | Path) -> Path:
    """The lock file of ``output``: ``<output>.lock`` beside it."""
    output = Path(output).resolve()
    return output.with_name(output.name + ".lock")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _holder(path: Path) -> dict:
    """What a lock file says of its holder (``{}`` when it is unreadable, e.g. half-written)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _describe(record: dict) -> str:
    started = record.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else "?"
    return f"process {record.get('pid', '?')} on {record.get('host', '?')} ({record.get('command', '?')}, since {when})"


def _stale(record: dict) -> bool:
    """Whether a lock's holder is known to be gone: a process of this host that no longer runs."""
    pid = record.get("pid")
    return record.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def _acquire(path: Path, record: dict, output: Path) -> None:
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                path.unlink(missing_ok=True)  # this process's own earlier holder: taken over
                continue
            if not _stale(holder):
                raise OutputLockedError(
                    f"{output} is being written by {_describe(holder)}; wait for it to finish, or choose another "
                    f"output (if no such process runs, delete {path})"
                ) from None
            warnings.warn(
                f"taking over the stale lock {path} of {_describe(holder)}, which no longer runs", stacklevel=4
            )
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        return
    raise OutputLockedError(f"cannot take the lock {path} of {output}: another process took it first")


@contextlib.contextmanager
def output_lock(output: str | Path, command: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``output`` for the block (see the module docstring); yields the lock file's path.

    Raises :class:`OutputLockedError` naming the holder when a running process holds it. The folder the lock
    goes into is created if missing (and removed again afterwards if the block left it empty).
    """
    output = Path(output).resolve()
    path = lock_path(output)
    created = [folder for folder in path.parents if not folder.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command or " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]) or "python",
        "started": time.time(),
        "token": uuid.uuid4().hex,
    }
    try:
        _acquire(path, record, output)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield path
    finally:
        if _holder(path).get("token") == record["token"]:
            path.unlink(missing_ok=True)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()
