"""A reader for fastMRI's HDF5 files (Zbontar et al. 2018, https://fastmri.org), slice by slice.

A fastMRI volume file holds::

    /kspace               complex64 (n_slices, [n_coils,] H, W)   centred k-space (multi-coil files have coils)
    /reconstruction_rss   float32   (n_slices, h, w)              multi-coil target, root-sum-of-squares (train/val)
    /reconstruction_esc   float32   (n_slices, h, w)              single-coil target (train/val)
    /mask                 (W,)                                    sampled columns (test and challenge files only)
    /ismrmrd_header       bytes                                   the scan's XML header (not read here)
    attrs                 acquisition, max, norm, patient_id, [acceleration, num_low_frequency]

and the files of :func:`learnrecon.data.simulate.simulate_fastmri` (``learnrecon simulate`` with an MRI operator)
hold besides::

    /truth                complex64 (n_slices, H, W)              the complex ground truth
    /coil_maps            complex64 (n_coils, H, W)               the sensitivities (multi-coil; all slices)
    attrs                 format "fastmri", operator, phantom, noise, seed, learnrecon_version

The k-space is stored centred, so fastMRI's image is ``fftshift(ifft2(ifftshift(k), norm="ortho"))``, which is
:func:`~learnrecon.operators.mri.centred_ifft2`; the targets are cropped to ``h × w`` (320² for knee and brain).

:class:`FastMRISlices` indexes the slices of one or more files when it is built, reading only the files' layout
(shapes and attributes), and reads one slice's arrays per item, so a data set larger than memory is never loaded
whole (tested by recording the reads).

``simulate_fastmri`` writes simulated MRI data in this layout: the k-space of the complex phantoms through an
:class:`~learnrecon.operators.MRI` operator with noise, zero where not sampled (as fastMRI's test files), its mask,
the magnitude target (``reconstruction_rss`` multi-coil, ``reconstruction_esc`` single-coil: ``rss`` of the
noiseless coil images, which is ``|x|`` for sensitivities with ``Σ_c |S_c|² = 1``) and the two datasets above.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import torch

from learnrecon.data.hdf5 import open_h5
from learnrecon.errors import DataFileError, ParameterError, ShapeError
from learnrecon.operators.mri import MRI, centred_ifft2
from learnrecon.operators.sensitivity import estimate_coil_maps

__all__ = [
    "FastMRIPair",
    "FastMRIPairs",
    "FastMRISlice",
    "FastMRISlices",
    "center_crop",
    "fastmri_operator",
    "rss",
    "zero_filled",
]

#: The target datasets of fastMRI files, in the order they are looked for.
TARGETS = ("reconstruction_rss", "reconstruction_esc")


class FastMRISlice(NamedTuple):
    """One slice: ``kspace`` complex64 ``([n_coils,] H, W)``, ``target`` float32 ``(h, w)`` (None in test
    files), ``mask`` bool ``(W,)`` (None in train/val files), the file's ``attrs``, where it came from, and, in
    files of ``simulate_fastmri``, the complex ``truth`` ``(H, W)`` and the ``coil_maps`` ``(n_coils, H, W)``."""

    kspace: torch.Tensor
    target: torch.Tensor | None
    mask: torch.Tensor | None
    attrs: dict[str, Any]
    file: Path
    slice: int
    truth: torch.Tensor | None = None
    coil_maps: torch.Tensor | None = None

    @property
    def multicoil(self) -> bool:
        return self.kspace.ndim == 3

    def operator(self, mask: torch.Tensor | None = None, coil_maps: torch.Tensor | str | None = None) -> MRI:
        """The :class:`~learnrecon.operators.MRI` of this slice's mask (or ``mask`` (W,) or (H, W)).

        Multi-coil slices need sensitivities: ``coil_maps`` ``(n_coils, H, W)``, ``"estimated"`` (from this
        slice's fully sampled k-space centre, :func:`~learnrecon.operators.estimate_coil_maps`, with the mask's
        centre lines), or None: the file's own (files of ``simulate_fastmri`` hold them; fastMRI's do not)."""
        mask = self.mask if mask is None else mask
        if mask is None:
            raise ParameterError(
                f"{self.file} holds no mask (a fully sampled train/val file); pass one, e.g. from "
                "learnrecon.operators.cartesian_mask"
            )
        mask = _mask_2d(mask, tuple(self.kspace.shape[-2:]), f"{self.file}")
        if not self.multicoil:
            if coil_maps is not None:
                raise ParameterError(f"{self.file} slice {self.slice} is single-coil; it takes no coil_maps")
            return MRI(mask)
        if isinstance(coil_maps, str):
            if coil_maps != "estimated":
                raise ParameterError(f"coil_maps must be a tensor, 'estimated' or None, got {coil_maps!r}")
            coil_maps = estimate_coil_maps(self.kspace.to(torch.complex128), mask)
        coil_maps = self.coil_maps if coil_maps is None else coil_maps
        if coil_maps is None:
            raise ParameterError(
                f"{self.file} slice {self.slice} is multi-coil; its operator needs coil sensitivities, which the file "
                "does not hold: pass coil_maps='estimated' (from the k-space centre) or coil_maps=<(n_coils, H, W)>"
            )
        return MRI(mask, coil_maps)


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
    has_truth: bool = False
    has_maps: bool = False


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
            has_truth, has_maps = "truth" in f, "coil_maps" in f
            if has_truth and f["truth"].shape != (kspace.shape[0], *kspace.shape[-2:]):
                raise ShapeError(f"{path}: 'truth' has shape {f['truth'].shape}; the k-space needs "
                                 f"{(kspace.shape[0], *kspace.shape[-2:])}")  # fmt: skip
            if has_maps and (kspace.ndim != 4 or f["coil_maps"].shape != kspace.shape[1:]):
                raise ShapeError(f"{path}: 'coil_maps' has shape {f['coil_maps'].shape}; the k-space needs "
                                 f"{kspace.shape[1:]} (n_coils, H, W)")  # fmt: skip
            return _FileIndex(path, int(kspace.shape[0]), chosen, has_mask, attrs, has_truth, has_maps)

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
        truth = torch.from_numpy(np.asarray(f["truth"][s]).astype(np.complex64)) if info.has_truth else None
        maps = torch.from_numpy(np.asarray(f["coil_maps"][()]).astype(np.complex64)) if info.has_maps else None
        return FastMRISlice(kspace, target, mask, dict(info.attrs), info.path, s, truth, maps)

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


class FastMRIPair(NamedTuple):
    """One training pair: truth ``x`` ``(1, *op.domain_shape)`` and k-space ``y`` ``(1, *op.range_shape)``,
    complex64."""

    x: torch.Tensor
    y: torch.Tensor


def fastmri_operator(slices: FastMRISlices, operator: dict[str, Any] | None = None) -> MRI:
    """The one :class:`~learnrecon.operators.MRI` operator of the slices of fastMRI-layout files, for training.

    Files of ``simulate_fastmri`` carry theirs (attribute ``operator``; its mask and coil maps are checked
    against the file's datasets). Single-coil fastMRI files use their ``mask``, or, when fully sampled (train/val
    files, no mask), the mask of ``operator`` (an MRI config section: retrospective undersampling). Multi-coil
    fastMRI files hold no sensitivities, and per-slice maps (``FastMRISlice.operator(coil_maps="estimated")``) do
    not make one operator, so they are refused. Every file, and ``operator`` when given, must give the same
    operator. Reads the first slice of each file.
    """
    from learnrecon.operators.registry import build_operator

    section = None if operator is None else build_operator(operator)
    if section is not None and not isinstance(section, MRI):
        raise ParameterError(f"fastMRI files hold MRI data; data.operator builds a {type(section).__name__}")
    ops = [
        _file_operator(slices[int(start)], info, section)
        for start, info in zip(slices._starts[:-1], slices.files, strict=True)
    ]
    first = str(slices.files[0].path)
    for op, info in zip(ops[1:], slices.files[1:], strict=True):
        _same_operator(op, ops[0], str(info.path), first)
    if section is not None and ops[0] is not section:
        _same_operator(section, ops[0], "data.operator", first)
    return ops[0]


def _file_operator(item: FastMRISlice, info: _FileIndex, section: MRI | None) -> MRI:
    """The operator of one file (see :func:`fastmri_operator`), from its first slice ``item``."""
    from learnrecon.operators.registry import build_operator

    shape = tuple(item.kspace.shape[-2:])
    mask = None if item.mask is None else _mask_2d(item.mask, shape, str(info.path))
    if "operator" in info.attrs:
        op = build_operator(json.loads(info.attrs["operator"]))
        maps = None if op.coil_maps is None else op.coil_maps.to(torch.complex64)
        same_maps = (maps is None) == (item.coil_maps is None) and (
            maps is None or torch.allclose(maps, item.coil_maps, atol=1e-6)
        )
        if (mask is not None and not torch.equal(op.mask, mask)) or not same_maps:
            raise DataFileError(f"{info.path}: its 'operator' attribute does not match its mask or coil maps")
    elif item.multicoil:
        raise DataFileError(
            f"{info.path} is multi-coil and holds no coil sensitivities that one operator could use (fastMRI's "
            "files do not); train on files of learnrecon simulate (they hold the maps), or estimate maps per slice "
            "with FastMRISlice.operator(coil_maps='estimated') to reconstruct"
        )
    elif mask is not None:
        op = MRI(mask)
    elif section is None:
        raise ParameterError(
            f"{info.path} is fully sampled (no mask); give data.operator {{type: MRI, image_size: {list(shape)}, "
            "acceleration: ...}} for the mask that undersamples it"
        )
    else:
        op = section
    if tuple(op.range_shape) != tuple(item.kspace.shape):
        raise ShapeError(
            f"{info.path}: its k-space slices are {tuple(item.kspace.shape)} but the operator's data are "
            f"{tuple(op.range_shape)}"
        )
    return op


def _same_operator(a: MRI, b: MRI, what: str, other: str) -> None:
    """A ShapeError unless ``a`` (named ``what``) has the mask and coil maps of ``b`` (that of file ``other``)."""
    same_maps = (a.coil_maps is None) == (b.coil_maps is None) and (
        a.coil_maps is None or torch.allclose(a.coil_maps, b.coil_maps, atol=1e-6)
    )
    if a.range_shape != b.range_shape or not torch.equal(a.mask, b.mask) or not same_maps:
        raise ShapeError(f"{what} has another MRI operator (mask or coil maps) than {other}; train on one operator")


class FastMRIPairs(torch.utils.data.Dataset):
    """Training pairs from the slices of fastMRI-layout files for the operator ``op``
    (:func:`fastmri_operator`), one slice read per item (a data set larger than memory is never loaded).

    Item ``i`` is the :class:`FastMRIPair` of slice ``i``: ``y = M ⊙ k`` (the slice's k-space on ``op``'s mask;
    undersampled files are already) and ``x`` the file's complex ``truth``, or, for a fully sampled file without
    one, the fully sampled image ``Σ_c conj(S_c) F⁻¹ k_c`` (single coil: ``F⁻¹ k``).
    """

    def __init__(self, slices: FastMRISlices, op: MRI) -> None:
        self.slices, self.op = slices, op
        self.path = ", ".join(str(f.path) for f in slices.files)
        full = torch.ones_like(op.mask)
        self._full = MRI(full) if op.coil_maps is None else MRI(full, op.coil_maps)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> FastMRIPair:
        item = self.slices[index]
        kspace = item.kspace.to(torch.complex128)
        if item.truth is not None:
            truth = item.truth
        elif item.mask is None:
            truth = self._full.H(kspace).to(torch.complex64)
        else:
            raise DataFileError(
                f"{item.file} slice {item.slice}: undersampled k-space (it holds a mask) and no complex 'truth', so "
                "there is no image to train towards"
            )
        y = torch.where(self.op.mask, kspace, 0).to(torch.complex64)
        return FastMRIPair(truth.reshape(1, *self.op.domain_shape), y.reshape(1, *self.op.range_shape))

    def close(self) -> None:
        self.slices.close()
