"""Reconstruct a data file with a named classical method or a learned model and write the results (HDF5 +
PNG figure).

Output layout (format ``learnrecon-reconstruction``)::

    /x_hat   float32 (n, 1, H, W)   reconstructions
    /index   int64   (n,)           the items of the input file they belong to
    /psnr, /ssim  float64 (n,)      when the input holds ground truth
    attrs    method, params (JSON), source, operator (JSON), learnrecon_version;
             for a learned model also model (JSON: its name and parameters) and weights_sha256
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import h5py
import torch

import learnrecon
from learnrecon.data.hdf5 import load
from learnrecon.data.sources import file_batches
from learnrecon.errors import ParameterError
from learnrecon.evaluation import evaluate_batches
from learnrecon.io.files import atomic_path, check_output_path
from learnrecon.io.lock import output_lock
from learnrecon.operators.registry import operator_config
from learnrecon.report import reconstruction_grid
from learnrecon.solvers.registry import parse_params, reconstruct_batch

__all__ = ["parse_index", "reconstruct_file"]


def parse_index(text: str | None, n: int) -> torch.Tensor:
    """Item indices from ``"5"``, ``"0:10"`` or ``"0:100:10"`` (Python slice syntax); all items if None."""
    if text is None:
        return torch.arange(n)
    try:
        parts = [int(p) if p else None for p in text.split(":")]
    except ValueError as err:
        raise ParameterError(f"--index {text!r} is not an integer or a start:stop[:step] slice") from err
    if len(parts) == 1:
        if not -n <= parts[0] < n:
            raise ParameterError(f"--index {parts[0]} is out of range for a data set of {n} items")
        return torch.tensor([parts[0] % n])
    if len(parts) > 3 or parts[-1] == 0:
        raise ParameterError(f"--index {text!r} is not a valid start:stop[:step] slice")
    if len(parts) == 3 and parts[2] is not None and parts[2] < 0:
        raise ParameterError(f"--index {text!r}: the step of a start:stop:step slice must be positive")
    picked = torch.arange(n)[slice(*parts)]
    if picked.numel() == 0:
        raise ParameterError(f"--index {text!r} selects no items of a data set of {n} items")
    return picked


def reconstruct_file(
    source: str | Path,
    out: str | Path,
    method: str,
    params: Mapping[str, object] | None = None,
    index: str | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    progress: bool = True,
    *,
    model: torch.nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Reconstruct items of ``source`` and write ``out`` (HDF5) and ``out`` with ``.png``.

    ``method`` names a classical method of :mod:`learnrecon.solvers.registry`, with its ``params`` given by
    name; or, with ``model`` (a learned reconstructor ``model(y, op)``, e.g. from
    :func:`~learnrecon.models.pretrained` or :func:`~learnrecon.models.load_model`), it is that model's label,
    and the model runs on ``device``. Items are read, reconstructed and written in batches of ``batch_size``
    (:func:`learnrecon.evaluation.evaluate_batches`), so memory is bounded by the batch, not by the file.

    Returns a summary: the number of items, seconds per item, and mean PSNR/SSIM when truth is present.
    """
    out = Path(out)
    figure = out.with_suffix(".png")
    if out.suffix.lower() == ".png":
        raise ParameterError(
            f"output {out} ends in .png, the name of the figure written beside it; give an HDF5 name such as "
            f"{out.with_suffix('.h5')}"
        )
    out = check_output_path(out, overwrite)
    check_output_path(figure, overwrite)
    if batch_size < 1:
        raise ParameterError(f"batch size must be a positive integer, got {batch_size}")
    kwargs = _method_params(method, params or {}, model)  # fail on bad parameters before reading data
    dataset = load(source)
    picked = parse_index(index, len(dataset))
    run = model if model is not None else (lambda y, op: reconstruct_batch(method, y, op, kwargs))
    shown: list[torch.Tensor] = []
    with output_lock(out, f"learnrecon reconstruct ({method})"):
        with atomic_path(out, overwrite) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(_attrs(method, kwargs, source, dataset.op, model))
            f["index"] = picked.numpy()
            x_set = f.create_dataset(
                "x_hat",
                shape=(picked.numel(), 1, *dataset.op.domain_shape),
                dtype="complex64" if dataset.op.domain_complex else "float32",
                chunks=(1, 1, *dataset.op.domain_shape),
            )

            def write(offset: int, x_hat: torch.Tensor) -> None:
                x_set[offset : offset + x_hat.shape[0]] = x_hat.numpy()
                shown.extend(x_hat[: max(0, _SHOWN - len(shown))])

            result = evaluate_batches(
                run,
                file_batches(dataset, picked, batch_size, f"{source}"),
                dataset.op,
                device=device,
                progress=progress,
                total=-(-picked.numel() // batch_size),
                desc=method,
                sink=write,
            )
            if "psnr" in result:
                f["psnr"] = torch.tensor(result["psnr_per_image"], dtype=torch.float64).numpy()
                f["ssim"] = torch.tensor(result["ssim_per_image"], dtype=torch.float64).numpy()
        truth = dataset.tensors(picked[: len(shown)].numpy()).x if dataset.has_truth else None
        psnr = torch.tensor(result["psnr_per_image"][: len(shown)]) if "psnr" in result else None
        _figure(figure, truth, torch.stack(shown), picked, method, psnr, overwrite)
    summary: dict = {
        "method": method,
        "params": kwargs,
        "n": picked.numel(),
        "seconds_per_item": result["ms_per_image"] / 1000,
        "output": str(out),
        "figure": str(figure),
    }
    if "psnr" in result:
        summary.update(psnr=result["psnr"], ssim=result["ssim"])
    return summary


#: Items shown in the figure beside the output.
_SHOWN = 3


def _attrs(method: str, kwargs: dict, source, op, model: torch.nn.Module | None) -> dict:
    """The attributes of the output file: what made it, from what, with which operator."""
    return {
        "format": "learnrecon-reconstruction",
        "method": method,
        "params": json.dumps(kwargs),
        "source": str(source),
        "operator": json.dumps(operator_config(op)),
        "learnrecon_version": learnrecon.__version__,
        **_model_attrs(model),
    }


def _method_params(method: str, params: Mapping[str, object], model: torch.nn.Module | None) -> dict:
    """The classical ``method``'s parameters, converted; a learned model takes none."""
    if model is None:
        return parse_params(method, params)
    if params:
        raise ParameterError(f"{method} is a learned model and takes no method parameters (got {', '.join(params)})")
    return {}


def _model_attrs(model: torch.nn.Module | None) -> dict:
    """What the output file records of a learned model: its name and parameters and its weights' hash."""
    provenance = getattr(model, "provenance", None)
    if not provenance:
        return {}
    return {"model": json.dumps(provenance.get("model")), "weights_sha256": provenance.get("sha256", "")}


def _figure(path: Path, truth, x_hat: torch.Tensor, picked: torch.Tensor, method: str, psnr, overwrite: bool):
    """Truth (when known), reconstruction and error map of the first three items."""
    shown = range(min(3, x_hat.shape[0]))
    titles = [f"item {int(picked[i])}" for i in shown]
    references = [truth[i] if truth is not None else x_hat[i] for i in shown]
    captions = {method: [f"{float(psnr[i]):.2f} dB" for i in shown]} if psnr is not None else None
    with atomic_path(path, overwrite) as tmp:
        png = tmp.with_suffix(".png")
        reconstruction_grid(png, references, {method: [x_hat[i] for i in shown]}, titles, captions, truth is not None)
        png.rename(tmp)
