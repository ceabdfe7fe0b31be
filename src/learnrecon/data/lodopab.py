"""LoDoPaB-CT's file layout (Leuschner, Schmidt, Otero Baguer & Maass 2021; zenodo.org/record/3384092), read lazily.

The data set ships as HDF5 files per part (``train``, ``validation``, ``test``) of 128 samples each (the last file of
a part holds the rest), each file with one dataset ``data``::

    ground_truth_<part>_<NNN>.hdf5   data  float32 (n, 362, 362)    images, values in [0, 1] (μ / μ_max)
    observation_<part>_<NNN>.hdf5    data  float32 (n, 1000, 513)   post-log sinograms, −log(N/N₀) / μ_max

(35,820 / 3,522 / 3,553 samples.) The observations are line integrals of the ground truth in metres, with Poisson
noise of 4,096 photons a detector cell: the geometry is ODL's ``parallel_beam_geometry`` of the image domain
``[−0.13, 0.13]²`` m, 1,000 angles at the midpoints ``(k + ½)·π/1000`` of [0, π) and 513 detector cells over the
domain's diagonal ``[−0.13√2, 0.13√2]``: :func:`lodopab_operator` builds that ray transform
(``ParallelBeam2D(362, angles, 513, image_extent=0.26, detector_spacing=0.26·√2/513)``; the sizes are read from
the files, so smaller files in the same layout get the same geometry at their size).

Orientation: ODL stores an image with its first array axis along x; learnrecon's first axis is the row, top to
bottom (y decreasing). The reader turns each ground truth into learnrecon's orientation (``rot90``: row ``r``,
column ``c`` of the result is ``gt[c, H − 1 − r]``); ODL's and learnrecon's detector axis at angle θ are both
``(cos θ, sin θ)``, so the sinograms are read as stored. This follows from the two libraries' documented
conventions; :meth:`LoDoPaBFiles.data_residual` checks it on real files (``‖A x − y‖ / ‖y‖`` is at the noise level,
a few per cent, when geometry and orientation agree, and of order one when not).

Files are opened lazily in each process (DataLoader workers and DDP ranks each open their own handles) and only the
samples asked for are read; the trainer gives each rank and worker only its own step positions, so reading is
sharded with the training itself.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from learnrecon.errors import DataFileError, ParameterError, ShapeError
from learnrecon.operators.tomography import ParallelBeam2D

__all__ = [
    "LODOPAB_LENGTHS",
    "LoDoPaBFiles",
    "lodopab_operator",
    "write_lodopab_layout",
]

#: Samples per part in the published data set.
LODOPAB_LENGTHS = {"train": 35820, "validation": 3522, "test": 3553}
#: Samples per file in the published data set.
SAMPLES_PER_FILE = 128
#: The image domain's side in metres.
EXTENT = 0.26
PARTS = ("train", "validation", "test")


def lodopab_operator(
    image_size: int = 362, n_angles: int = 1000, n_detectors: int = 513, backend: str = "auto"
) -> ParallelBeam2D:
    """LoDoPaB-CT's ray transform (at its sizes by default): parallel beam over a 0.26 m square, ``n_angles`` at the
    midpoints of [0, π), ``n_detectors`` cells over the image diagonal. ``backend`` "auto" is matrix-free at
    LoDoPaB's size (the CSR pair would take 3.6 GB in float32)."""
    angles = (torch.arange(n_angles, dtype=torch.float64) + 0.5) * (math.pi / n_angles)
    return ParallelBeam2D(
        image_size,
        n_detectors=n_detectors,
        angles=angles,
        image_extent=EXTENT,
        detector_spacing=EXTENT * math.sqrt(2) / n_detectors,
        backend=backend,
    )


def _numbered(root: Path, kind: str, part: str) -> dict[int, Path]:
    pattern = re.compile(rf"{kind}_{part}_(\d{{3}})\.hdf5$")
    found = {}
    for path in root.glob(f"{kind}_{part}_*.hdf5"):
        match = pattern.search(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


class LoDoPaBFiles:
    """One part of a LoDoPaB-CT folder: ``len()`` samples, ``[i]`` → ``(x (1, H, W), y (1, A, D))`` float32
    tensors (``x`` in learnrecon's orientation), read lazily; ``op`` is the matching ray transform.

    Args:
        root: the folder holding the ``ground_truth_*`` and ``observation_*`` files.
        part: "train", "validation" or "test".
        backend: the ray transform's backend (see :func:`lodopab_operator`).
        limit: use only the first ``limit`` samples.
    """

    def __init__(self, root: str | Path, part: str = "train", backend: str = "auto", limit: int | None = None) -> None:
        if part not in PARTS:
            raise ParameterError(f"LoDoPaB part must be one of {', '.join(PARTS)}, got {part!r}")
        self.root, self.part = Path(root), part
        if not self.root.is_dir():
            raise DataFileError(f"LoDoPaB folder {self.root} does not exist (download zenodo.org/record/3384092)")
        truth, observed = _numbered(self.root, "ground_truth", part), _numbered(self.root, "observation", part)
        if not observed:
            raise DataFileError(f"{self.root} holds no observation_{part}_NNN.hdf5 files (LoDoPaB-CT's layout)")
        numbers = sorted(observed)
        if numbers != list(range(len(numbers))):
            missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
            raise DataFileError(f"{self.root}: observation_{part} files {missing[:5]} are missing")
        lacking = [n for n in numbers if n not in truth]
        if lacking:
            raise DataFileError(f"{self.root}: ground_truth_{part}_{lacking[0]:03d}.hdf5 is missing")
        self.files = [(truth[n], observed[n]) for n in numbers]
        lengths, shapes = [], set()
        for gt_path, obs_path in self.files:
            with _open(gt_path) as g, _open(obs_path) as o:
                gt, obs = _data(g, gt_path), _data(o, obs_path)
                if gt.shape[0] != obs.shape[0]:
                    raise DataFileError(
                        f"{gt_path.name} holds {gt.shape[0]} images but {obs_path.name} {obs.shape[0]} sinograms"
                    )
                if gt.ndim != 3 or obs.ndim != 3:
                    raise ShapeError(f"{gt_path.name} / {obs_path.name}: 'data' must be (n, H, W) / (n, angles, cells)")
                lengths.append(gt.shape[0])
                shapes.add((tuple(gt.shape[1:]), tuple(obs.shape[1:])))
        if len(shapes) != 1:
            raise ShapeError(f"{self.root}: the {part} files hold samples of different shapes {sorted(shapes)}")
        ((self.image_shape, self.data_shape),) = shapes
        if self.image_shape[0] != self.image_shape[1]:
            raise ShapeError(f"LoDoPaB images are square; {self.root} holds {self.image_shape}")
        self.starts = np.concatenate([[0], np.cumsum(lengths)])
        total = int(self.starts[-1])
        self._len = total if limit is None else min(int(limit), total)
        if self._len < 1:
            raise DataFileError(f"{self.root}: the {part} part holds no samples")
        self.op = lodopab_operator(self.image_shape[0], *self.data_shape, backend=backend)
        self._handles: dict[int, tuple[h5py.File, h5py.File]] = {}

    def __len__(self) -> int:
        return self._len

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self._len:
            raise IndexError(f"sample {index} out of range for LoDoPaB {self.part} with {self._len} samples")
        f = int(np.searchsorted(self.starts, index, side="right")) - 1
        return f, index - int(self.starts[f])

    def _file(self, f: int) -> tuple[h5py.File, h5py.File]:
        if f not in self._handles:
            gt_path, obs_path = self.files[f]
            self._handles[f] = (_open(gt_path), _open(obs_path))
        return self._handles[f]

    def read(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``indices`` stacked: ``x`` (n, 1, H, W) in learnrecon's orientation and ``y`` (n, 1, A, D)."""
        xs, ys = [], []
        for index in indices:
            f, i = self._locate(int(index))
            gt, obs = self._file(f)
            try:
                xs.append(np.rot90(np.asarray(gt["data"][i], dtype=np.float32)).copy())
                ys.append(np.asarray(obs["data"][i], dtype=np.float32))
            except OSError as err:
                raise DataFileError(
                    f"cannot read sample {i} of {self.files[f][0].name} (corrupt file?): {err}"
                ) from err
        return torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys))[:, None]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.read([index])
        return x[0], y[0]

    def data_residual(self, indices=(0,)) -> float:
        """``‖A x − y‖ / ‖y‖`` over the samples ``indices``: the noise level when the geometry and orientation
        agree with the files (a check of this reader on real LoDoPaB files)."""
        x, y = self.read(indices)
        return float((self.op(x.double()) - y.double()).norm() / y.double().norm())

    def close(self) -> None:
        """Close this process's file handles (reopened on the next read)."""
        for gt, obs in self._handles.values():
            gt.close()
            obs.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # h5py handles cannot cross process boundaries
        return state

    def __repr__(self) -> str:
        return f"LoDoPaBFiles({str(self.root)!r}, part={self.part!r}, n={len(self)}, op={self.op!r})"


def write_lodopab_layout(
    root: str | Path, part: str, images: torch.Tensor, sinograms: torch.Tensor, per_file: int = SAMPLES_PER_FILE
) -> list[Path]:
    """Write ``images`` (n, H, W) or (n, 1, H, W), in learnrecon's orientation, and ``sinograms`` (n, A, D) as
    LoDoPaB-CT's files of ``per_file`` samples (the images stored in ODL's orientation, as LoDoPaB's are): for tests,
    and for data of one's own in that layout."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    images = images.reshape(images.shape[0], *images.shape[-2:]).detach().cpu().numpy().astype(np.float32)
    sinograms = sinograms.reshape(sinograms.shape[0], *sinograms.shape[-2:]).detach().cpu().numpy().astype(np.float32)
    if images.shape[0] != sinograms.shape[0]:
        raise ShapeError(f"{images.shape[0]} images but {sinograms.shape[0]} sinograms")
    written = []
    for f, start in enumerate(range(0, images.shape[0], per_file)):
        stop = min(start + per_file, images.shape[0])
        odl_images = np.stack([np.rot90(im, -1) for im in images[start:stop]])  # the inverse of the reader's turn
        for kind, array in (("ground_truth", odl_images), ("observation", sinograms[start:stop])):
            path = root / f"{kind}_{part}_{f:03d}.hdf5"
            with h5py.File(path, "w") as h5:
                h5.create_dataset("data", data=array, chunks=(1, *array.shape[1:]))
            written.append(path)
    return written


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataFileError(f"{path} is not a readable HDF5 file (corrupt or truncated?): {err}") from err


def _data(f: h5py.File, path: Path):
    if "data" not in f:
        raise DataFileError(f"{path} has no dataset 'data'; it is not a LoDoPaB-CT file")
    return f["data"]
