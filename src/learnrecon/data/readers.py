"""Readers for users' own ground-truth images: NumPy ``.npy``/``.npz`` and DICOM (extra ``dicom``).

Each reader returns a float tensor of shape ``(n, 1, H, W)``; the caller decides on resizing and scaling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from learnrecon.errors import DataFileError, ShapeError

__all__ = ["read_images"]


def read_images(path: str | Path, key: str | None = None) -> torch.Tensor:
    """Read ground-truth images from ``.npy``, ``.npz``, a DICOM file or a folder of DICOM files.

    Args:
        path: the file or folder.
        key: the array name inside an ``.npz`` file (default: its only array).

    Returns:
        float32 tensor ``(n, 1, H, W)``; a single 2-D image gives ``n = 1``; ``(n, H, W)`` arrays are
        stacks; ``(n, 1, H, W)`` is taken as is.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"ground-truth file {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".dcm", ".dicom"):
        array = _read_dicom(path)
    elif suffix == ".npy":
        array = _load_numpy(path)
    elif suffix == ".npz":
        array = _read_npz(path, key)
    else:
        raise DataFileError(f"cannot read images from {path}: use a .npy, .npz or .dcm file, or a folder of .dcm files")
    return _as_image_stack(array, path)


def _load_numpy(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataFileError(f"{path} is not a readable NumPy file ({err}); object arrays are refused") from err


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    archive = _load_numpy(path)
    with archive:
        names = list(archive.files)
        if key is None:
            if len(names) != 1:
                raise DataFileError(
                    f"{path} holds arrays {names}; name the one to use (key=..., or --truth-key in learnrecon simulate)"
                )
            key = names[0]
        if key not in names:
            raise DataFileError(f"{path} has no array {key!r}; it holds {names}")
        return archive[key]


def _dicom_files(path: Path, is_dicom) -> list[Path]:
    """The DICOM files of a folder: ``.dcm``/``.dicom`` in any case, and files without a suffix that hold
    DICOM (``is_dicom``: pydicom's check of the file's preamble), in name order."""
    files = [
        f
        for f in sorted(path.iterdir())
        if f.is_file() and (f.suffix.lower() in (".dcm", ".dicom") or (not f.suffix and is_dicom(f)))
    ]
    if not files:
        raise DataFileError(f"folder {path} contains no DICOM files (.dcm, .dicom, or DICOM files without a suffix)")
    return files


def _read_dicom(path: Path) -> np.ndarray:
    """The slices of a DICOM file or folder in Hounsfield (rescaled) units, ordered by InstanceNumber when
    every slice has one, else by file name."""
    try:
        import pydicom
        from pydicom.misc import is_dicom
    except ImportError as err:
        raise ImportError("reading DICOM needs the 'dicom' extra: pip install 'learnrecon[dicom]'") from err
    files = _dicom_files(path, is_dicom) if path.is_dir() else [path]
    slices, numbers = [], []
    for file in files:
        try:
            ds = pydicom.dcmread(file)
            image = ds.pixel_array.astype(np.float64)
        except Exception as err:  # pydicom raises many types for corrupt files
            raise DataFileError(f"{file} is not a readable DICOM image ({err})") from err
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        slices.append(image * slope + intercept)
        numbers.append(getattr(ds, "InstanceNumber", None))
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise ShapeError(f"DICOM files in {path} have different image sizes {sorted(shapes)}")
    if None not in numbers:
        slices = [slices[i] for i in sorted(range(len(slices)), key=lambda i: int(numbers[i]))]
    return np.stack(slices)


def _as_image_stack(array: np.ndarray, path: Path) -> torch.Tensor:
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DataFileError(f"{path} holds {array.dtype} data; ground truth must be real numbers")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3:
        array = array[:, None]
    elif array.ndim != 4 or array.shape[1] != 1:
        raise ShapeError(
            f"{path} holds an array of shape {array.shape}; expected (H, W), (n, H, W) or (n, 1, H, W) images"
        )
    if array.shape[0] == 0:
        raise DataFileError(f"{path} holds no images (an array of shape {array.shape})")
    if not np.isfinite(array).all():
        raise DataFileError(f"{path} contains NaN or Inf values; clean the images first")
    return torch.from_numpy(np.ascontiguousarray(array))
