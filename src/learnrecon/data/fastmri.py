"""A reader for fastMRI's HDF5 files (Zbontar et al. 2018, https://fastmri.org), slice by slice.

A fastMRI volume file holds::

    /kspace               complex64 (n_slices, [n_coils,] H, W)   centred k-space (multi-coil files have coils)
    /reconstruction_rss   float32   (n_slices, h, w)              multi-coil target, root-sum-of-squares (train/val)
    /reconstruction_esc   float32   (n_slices, h, w)              single-coil target (train/val)
    /mask                 (W,)                                    sampled columns (test and challenge files only)
    /ismrmrd_header       bytes                                   the scan's XML header (not read here)
    attrs                 acquisition, max, norm, patient_id, [acceleration, num_low_frequency]

The k-space is stored centred, so fastMRI's image is ``fftshift(ifft2(ifftshift(k), norm="ortho"))``, which is
:func:`~learnrecon.operators.mri.centred_ifft2`; the targets are cropped to ``h × w`` (320² for knee and brain).

:class:`FastMRISlices` indexes the slices of one or more files when it is built, reading only the files' layout
(shapes and attributes), and reads one slice's arrays per item, so a data set larger than memory is never loaded
whole (tested by recording the reads).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import torch

from learnrecon.data.hdf5 import open_h5
from learnrecon.errors import DataFileError, ParameterError, ShapeError
from learnrecon.operators.mri import MRI, centred_ifft2

__all__ = ["FastMRISlice", "FastMRISlices", "center_crop", "rss", "zero_filled"]

#: The target datasets of fastMRI files, in the order they are looked for.
TARGETS = ("reconstruction_rss", "reconstruction_esc")


class FastMRISlice(NamedTuple):
    """One slice: ``kspace`` complex64 ``([n_coils,] H, W)``, ``target`` float32 ``(h, w)`` (None in test
    files), ``mask`` bool ``(W,)`` (None in train/val files), the file's ``attrs``, and where it came from."""

    kspace: torch.Tensor
    target: torch.Tensor | None
    mask: torch.Tensor | None
    attrs: dict[str, Any]
    file: Path
    slice: int

    @property
    def multicoil(self) -> bool:
        return self.kspace.ndim == 3

    def operator(self, mask: torch.Tensor | None = None) -> MRI:
        """The single-coil :class:`~learnrecon.operators.MRI` of this slice's mask (or ``mask`` (W,) or (H, W));
        multi-coil data need coil sensitivities, which fastMRI files do not hold (estimating them is not
        implemented): build ``MRI(mask, coil_maps)`` with your own maps."""
        if self.multicoil:
            raise ParameterError(
                f"{self.file} slice {self.slice} is multi-coil; its operator needs coil sensitivities, which the file "
                "does not hold: build MRI(mask, coil_maps) with estimated maps"
            )
        mask = self.mask if mask is None else mask
        if mask is None:
            raise ParameterError(
                f"{self.file} holds no mask (a fully sampled train/val file); pass one, e.g. from "
                "learnrecon.operators.cartesian_mask"
            )
        return MRI(_mask_2d(mask, tuple(self.kspace.shape[-2:]), f"{self.file}"))


def _mask_2d(mask: torch.Tensor, shape: tuple[int, int], what: str) -> torch.Tensor:
    mask = torch.as_tensor(mask).to(torch.bool)
    if mask.ndim == 1:
        if mask.shape[0] != shape[1]:
            raise ShapeError(
                f"{what}: the mask has {mask.shape[0]} columns but the k-space has {shape[1]} (shape {shape}); "
                f"give a mask of length {shape[1]} or of shape {shape}"
            )
        return mask[None, :].expand(shape).clone()
    if tuple(mask.shape) != shape:
        raise ShapeError(f"{what}: the mask has shape {tuple(mask.shape)} but the k-space {shape}; they must match")
    return mask


def zero_filled(kspace: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """fastMRI's zero-filled image of ``kspace`` ``(..., [n_coils,] H, W)``: the centred inverse FFT of the masked
    k-space (``mask`` ``(W,)`` or ``(H, W)``; None: as given), complex, per coil."""
    if mask is not None:
        kspace = kspace * _mask_2d(mask, tuple(kspace.shape[-2:]), "zero_filled").to(kspace.device)
    return centred_ifft2(kspace)


def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares coil combination ``sqrt(Σ_c |x_c|²)`` (fastMRI's multi-coil target)."""
    return coil_images.abs().pow(2).sum(dim=dim).sqrt()


def center_crop(image: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The central ``shape`` ``(h, w)`` of ``image`` ``(..., H, W)`` (fastMRI's crop of its targets)."""
    h, w = (int(s) for s in shape)
    big_h, big_w = image.shape[-2:]
    if h > big_h or w > big_w:
        raise ShapeError(f"cannot crop {(big_h, big_w)} images to the larger {(h, w)}")
    top, left = (big_h - h) // 2, (big_w - w) // 2
    return image[..., top : top + h, left : left + w]


class _FileIndex(NamedTuple):
    path: Path
    n_slices: int
    target: str | None
    has_mask: bool
    attrs: dict[str, Any]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class FastMRISlices(torch.utils.data.Dataset):
    """The slices of fastMRI files (a file, a folder of ``*.h5`` files, or a list of files), read one at a time.

    Args:
        paths: a file, a folder (its ``*.h5`` files, sorted) or several files.
        target: the target dataset to read (``"auto"``: ``reconstruction_rss``, else ``reconstruction_esc``,
            else none).
    """

    def __init__(self, paths: str | Path | Iterable[str | Path], target: str = "auto") -> None:
        files = self._files(paths)
        if target != "auto" and target not in TARGETS:
            raise ParameterError(f"target must be 'auto' or one of {', '.join(TARGETS)}, got {target!r}")
        self.files = [self._index(path, target) for path in files]
        self._starts = np.cumsum([0] + [f.n_slices for f in self.files])
        self._open: tuple[Path, h5py.File] | None = None

    @staticmethod
    def _files(paths) -> list[Path]:
        if isinstance(paths, str | Path):
            path = Path(paths)
            if path.is_dir():
                files = sorted(path.glob("*.h5"))
                if not files:
                    raise DataFileError(f"folder {path} holds no fastMRI .h5 files")
                return files
            return [path]
        files = [Path(p) for p in paths]
        if not files:
            raise DataFileError("no fastMRI files given")
        return files

    @staticmethod
    def _index(path: Path, target: str) -> _FileIndex:
        with open_h5(path) as f:
            if "kspace" not in f:
                raise DataFileError(
                    f"{path} has no 'kspace' dataset, so it is not a fastMRI file (it holds {sorted(f.keys())}); "
                    "fastMRI files hold kspace (slices, [coils,] H, W) complex; for learnrecon's own files use "
                    "learnrecon.data.load"
                )
            kspace = f["kspace"]
            if kspace.ndim not in (3, 4) or kspace.dtype.kind != "c":
                raise DataFileError(
                    f"{path}: 'kspace' is {kspace.dtype} of shape {kspace.shape}; fastMRI's is complex "
                    "(slices, [coils,] H, W)"
                )
            chosen = next((t for t in TARGETS if t in f), None) if target == "auto" else target
            if chosen is not None and chosen not in f:
                raise DataFileError(f"{path} has no {chosen!r} dataset (it holds {sorted(f.keys())})")
            if chosen is not None and f[chosen].shape[0] != kspace.shape[0]:
                raise DataFileError(f"{path}: {chosen} has {f[chosen].shape[0]} slices but kspace {kspace.shape[0]}")
            has_mask = "mask" in f
            if has_mask and f["mask"].shape != (kspace.shape[-1],):
                raise ShapeError(
                    f"{path}: 'mask' has shape {f['mask'].shape} but the k-space has {kspace.shape[-1]} columns"
                )
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            return _FileIndex(path, int(kspace.shape[0]), chosen, has_mask, attrs)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _h5(self, path: Path) -> h5py.File:
        if self._open is None or self._open[0] != path:
            self.close()
            self._open = (path, open_h5(path))
        return self._open[1]

    def locate(self, index: int) -> tuple[int, int]:
        """``(file number, slice number)`` of item ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"slice {index} out of range for {len(self)} slices")
        index %= len(self)
        file = int(np.searchsorted(self._starts, index, side="right") - 1)
        return file, index - int(self._starts[file])

    def __getitem__(self, index: int) -> FastMRISlice:
        file, s = self.locate(int(index))
        info = self.files[file]
        f = self._h5(info.path)
        kspace = torch.from_numpy(np.asarray(f["kspace"][s]).astype(np.complex64))
        target = torch.from_numpy(np.asarray(f[info.target][s], dtype=np.float32)) if info.target else None
        mask = torch.from_numpy(np.asarray(f["mask"][()]).astype(bool)) if info.has_mask else None
        return FastMRISlice(kspace, target, mask, dict(info.attrs), info.path, s)

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = None  # an open HDF5 handle does not cross processes (DataLoader workers)
        return state

    def __repr__(self) -> str:
        return f"FastMRISlices({len(self.files)} files, {len(self)} slices)"
