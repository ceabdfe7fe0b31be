"""Checkpoint files: ``<name>.safetensors`` (weights, optimiser state, RNG state) plus ``<name>.json``
(format, model name and parameters, operator, step, metrics, optimiser hyper-parameters, versions,
and the SHA-256 of the weights file). Nothing is ever unpickled.

Both files are written to temporary names and renamed, weights first; the JSON's hash ties the pair
together, so a truncated file or a pair from two different saves is detected on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from learnrecon.errors import DataFileError

__all__ = [
    "FORMAT",
    "checkpoint_paths",
    "load_checkpoint",
    "restore_optimizer",
    "reusable_meta",
    "save_checkpoint",
    "training_history",
]

FORMAT = "learnrecon-checkpoint"
FORMAT_VERSION = 1


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths for ``path`` given with or without the ``.safetensors``/``.json`` suffix."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, plain = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{pid}/{key}"] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "state": plain}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], saved: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entries in saved["state"].items():
        state.setdefault(int(pid), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A CPU copy of ``tensor`` to save, its floating-point values rounded to ``dtype`` if given."""
    tensor = tensor.detach().to("cpu").clone().contiguous()
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    rng: bool = True,
    weights_dtype: torch.dtype | None = None,
) -> Path:
    """Save ``model``'s weights (and the optimiser and RNG states) with JSON ``meta``; returns the weights path.

    ``meta`` should hold ``model: {name, params}`` so that :func:`load_model` can rebuild the model.
    ``weights_dtype`` (e.g. ``torch.float16``) stores the model's floating-point tensors rounded to that type,
    to ship weights in half the space; loading casts them back to the model's dtype.
    """
    weights, info = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model/{k}": _stored(v, weights_dtype) for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    if weights_dtype is not None:
        meta["weights_dtype"] = str(weights_dtype).removeprefix("torch.")
    if optimizer is not None:
        optim_tensors, meta["optimizer"] = _optimizer_parts(optimizer)
        tensors.update({k: _stored(v, None) for k, v in optim_tensors.items()})
    if rng:
        tensors["rng/torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            tensors.update({f"rng/cuda/{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    tmp_weights = weights.with_name(weights.name + ".tmp")
    tmp_info = info.with_name(info.name + ".tmp")
    try:
        save_file(tensors, tmp_weights, metadata={"format": FORMAT})
        tmp_weights.chmod(0o644)  # safetensors writes 0600; a checkpoint is as readable as its JSON
        meta["sha256"] = _sha256(tmp_weights)
        tmp_info.write_text(json.dumps(meta, indent=1, default=str))
        for tmp in (tmp_weights, tmp_info):  # on disk before they replace the last pair
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
        with _interrupts_deferred():  # Ctrl-C or SIGTERM between the two would pair new weights with old JSON
            os.replace(tmp_weights, weights)
            os.replace(tmp_info, info)
    finally:
        tmp_weights.unlink(missing_ok=True)
        tmp_info.unlink(missing_ok=True)
    return weights


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back inside the block and raise them after it (in the main thread, where
    Python handles signals; elsewhere the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum in caught:
            signal.raise_signal(signum)


def reusable_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A copy of a checkpoint's ``meta`` without what :func:`save_checkpoint` writes for each file itself
    (format, version, sha256) or what belongs to a training run (the optimiser state), to save the weights again."""
    return {k: v for k, v in meta.items() if k not in ("format", "format_version", "sha256", "optimizer")}


def training_history(meta: dict[str, Any]) -> dict[str, float | int]:
    """Totals over a checkpoint's training rounds: the run that saved it and each run it continued, followed
    through ``meta["started_from"]`` (each record gives the steps and seconds of the checkpoint that run
    started from, so the sums count every step that led to these weights once).

    Returns ``{"rounds": n, "steps": Σ step, "seconds": Σ seconds}``.
    """
    rounds, steps, seconds = 0, 0, 0.0
    record: Any = meta
    while isinstance(record, dict):
        rounds += 1
        steps += int(record.get("step") or 0)
        seconds += float(record.get("seconds") or 0.0)
        record = record.get("started_from")
    return {"rounds": rounds, "steps": steps, "seconds": seconds}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, meta)`` of a checkpoint, checked for format and integrity (clear errors, no pickle)."""
    weights, info = checkpoint_paths(path)
    for p in (weights, info):
        if not p.is_file():
            raise DataFileError(f"checkpoint file {p} does not exist (a checkpoint is a .safetensors + .json pair)")
    try:
        meta = json.loads(info.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFileError(f"checkpoint metadata {info} is corrupt: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataFileError(f"{info} is not a learnrecon checkpoint (format {FORMAT!r} expected)")
    if meta.get("sha256") != _sha256(weights):
        raise DataFileError(
            f"checkpoint weights {weights} do not match {info.name} (truncated, corrupt, or from another save)"
        )
    try:
        tensors = load_file(weights, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise DataFileError(f"checkpoint weights {weights} cannot be read: {err}") from err
    return tensors, meta
