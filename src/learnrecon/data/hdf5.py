"""HDF5 data sets of (truth, measurement, label) triples with the forward operator's geometry.

File layout (format ``learnrecon-dataset``, version 1)::

    /x       float32 (n, 1, H, W)            ground truth (optional: absent for measured data)
    /y       float32 (n, 1, *range_shape)    measurements
    /labels  int16   (n, H, W)               segmentation labels (optional)
    attrs    format, format_version, operator (JSON config), noise, phantom (JSON), seed, learnrecon_version

:func:`load` returns a :class:`ReconstructionDataset` whose ``op`` is rebuilt from the stored geometry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from learnrecon.errors import DataFileError, ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.registry import build_operator

__all__ = ["FORMAT", "FORMAT_VERSION", "ReconstructionDataset", "Sample", "load", "open_h5"]

FORMAT = "learnrecon-dataset"
FORMAT_VERSION = 1


class Sample(NamedTuple):
    """One item of a data set: truth ``(1, H, W)``, measurement ``(1, *range_shape)``, labels ``(H, W)``.

    ``x`` is an empty tensor when the file holds no truth; ``labels`` is an empty tensor when it holds no labels.
    """

    x: torch.Tensor
    y: torch.Tensor
    labels: torch.Tensor


def open_h5(path: str | Path) -> h5py.File:
    """Open an existing HDF5 file read-only, turning missing or corrupt files into :class:`DataFileError`."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"data file {path} does not exist; create it with `learnrecon simulate --out {path}`")
    if path.is_dir():
        raise DataFileError(f"data path {path} is a folder, not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataFileError(f"{path} is not a readable HDF5 file (corrupt or truncated?): {err}") from err


class ReconstructionDataset(Dataset):
    """A learnrecon HDF5 data set; items are :class:`Sample` triples, ``op`` is the forward operator.

    The file is opened lazily in each process (so it works with DataLoader workers) and read one
    item at a time, so data sets larger than memory are fine. ``tensors()`` reads everything at once.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open_h5(self.path) as f:
            self.attrs = _read_attrs(f, self.path)
            self._check_layout(f)
            self.has_truth = "x" in f
            self.has_labels = "labels" in f
            self._len = f["y"].shape[0]
            #: Each stored array's item shape and dtype (``"x"``, ``"y"``, ``"labels"``), read without the data.
            self.item_shapes = {name: tuple(f[name].shape[1:]) for name in ("x", "y", "labels") if name in f}
            self.dtypes = {name: f[name].dtype for name in ("x", "y", "labels") if name in f}
        self.op: LinearOperator = build_operator(self.attrs["operator"])
        self._file: h5py.File | None = None

    def _check_layout(self, f: h5py.File) -> None:
        if "y" not in f:
            raise DataFileError(f"{self.path} has no measurements (dataset 'y'); it is not a learnrecon data set")
        n = f["y"].shape[0]
        for name in ("x", "labels"):
            if name in f and f[name].shape[0] != n:
                raise DataFileError(
                    f"{self.path}: '{name}' has {f[name].shape[0]} items but 'y' has {n}; file is corrupt"
                )

    def __len__(self) -> int:
        return self._len

    def _h5(self) -> h5py.File:
        if self._file is None:
            self._file = open_h5(self.path)
        return self._file

    def _read(self, name: str, index) -> torch.Tensor:
        try:
            return torch.from_numpy(np.asarray(self._h5()[name][index]))
        except (OSError, KeyError) as err:
            raise DataFileError(f"cannot read '{name}'[{index}] from {self.path} (corrupt file?): {err}") from err

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a data set of {len(self)} items")
        index = index % len(self)
        empty = torch.empty(0)
        x = self._read("x", index) if self.has_truth else empty
        labels = self._read("labels", index).long() if self.has_labels else empty.long()
        return Sample(x, self._read("y", index), labels)

    def tensors(self, index=slice(None)) -> Sample:
        """Read the items ``index`` (a slice or index array) at once: ``Sample`` of batched tensors."""
        empty = torch.empty(0)
        x = self._read("x", index) if self.has_truth else empty
        labels = self._read("labels", index).long() if self.has_labels else empty.long()
        return Sample(x, self._read("y", index), labels)

    def batches(self, indices, batch_size: int) -> Iterator[tuple[torch.Tensor, Sample]]:
        """The items ``indices`` (increasing) in chunks of ``batch_size``: ``(chunk indices, Sample of batched
        tensors)``, read chunk by chunk, so that a data set larger than memory streams through."""
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if indices.numel() > 1 and not bool((indices[1:] > indices[:-1]).all()):
            raise ParameterError("items are read from a data file in increasing order")
        for start in range(0, indices.numel(), batch_size):
            chunk = indices[start : start + batch_size]
            yield chunk, self.tensors(chunk.numpy())

    def close(self) -> None:
        """Close the file handle of this process (reopened on next access)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles cannot cross process boundaries
        return state

    def __repr__(self) -> str:
        return f"ReconstructionDataset({str(self.path)!r}, n={len(self)}, op={self.op!r})"


def _read_attrs(f: h5py.File, path: Path) -> dict[str, Any]:
    attrs = dict(f.attrs)
    if attrs.get("format") != FORMAT:
        raise DataFileError(f"{path} is an HDF5 file but not a learnrecon data set (attribute format != {FORMAT!r})")
    if int(attrs.get("format_version", -1)) > FORMAT_VERSION:
        raise DataFileError(f"{path} has format version {attrs['format_version']}; upgrade learnrecon to read it")
    for key in ("operator", "phantom"):
        try:
            attrs[key] = json.loads(attrs[key]) if key in attrs else None
        except (TypeError, json.JSONDecodeError) as err:
            raise DataFileError(f"{path}: attribute '{key}' is not valid JSON (corrupt file?)") from err
    if attrs["operator"] is None:
        raise DataFileError(f"{path} stores no operator geometry (attribute 'operator'); it cannot be reconstructed")
    return attrs


def load(path: str | Path) -> ReconstructionDataset:
    """Open a data set written by ``learnrecon simulate``; ``dataset.op`` is its forward operator."""
    return ReconstructionDataset(path)
