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
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import h5py
import torch
from tqdm.auto import tqdm

import learnrecon
from learnrecon import metrics
from learnrecon.data.hdf5 import load
from learnrecon.errors import ParameterError
from learnrecon.io.files import atomic_path, check_output_path
from learnrecon.operators.registry import operator_config
from learnrecon.report import reconstruction_grid
from learnrecon.solvers.registry import parse_params, reconstruct_batch

Reconstructor = Callable[[torch.Tensor], torch.Tensor]

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
    :func:`~learnrecon.models.pretrained` or :func:`~learnrecon.training.load_model`), it is that model's label,
    and the model runs on ``device``. Items go in batches of ``batch_size``.

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
    data = dataset.tensors(picked.numpy())
    run = _reconstructor(method, kwargs, dataset.op) if model is None else _learned(model, dataset.op, device)
    start = time.perf_counter()
    chunks = range(0, picked.numel(), batch_size)
    x_hat = torch.cat(
        [run(data.y[i : i + batch_size]) for i in tqdm(chunks, desc=method, unit="batch", disable=not progress)]
    ).float()
    seconds = (time.perf_counter() - start) / picked.numel()
    summary: dict = {
        "method": method,
        "params": kwargs,
        "n": picked.numel(),
        "seconds_per_item": seconds,
        "output": str(out),
        "figure": str(figure),
    }
    psnr = metrics.psnr(x_hat, data.x) if dataset.has_truth else None
    with atomic_path(out, overwrite) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(
            {
                "format": "learnrecon-reconstruction",
                "method": method,
                "params": json.dumps(kwargs),
                "source": str(source),
                "operator": json.dumps(operator_config(dataset.op)),
                "learnrecon_version": learnrecon.__version__,
                **_model_attrs(model),
            }
        )
        f["x_hat"] = x_hat.numpy()
        f["index"] = picked.numpy()
        if psnr is not None:
            ssim = metrics.ssim(x_hat, data.x)
            f["psnr"], f["ssim"] = psnr.double().numpy(), ssim.double().numpy()
            summary.update(psnr=float(psnr.mean()), ssim=float(ssim.mean()))
    _figure(figure, data.x if dataset.has_truth else None, x_hat, picked, method, psnr, overwrite)
    return summary


def _method_params(method: str, params: Mapping[str, object], model: torch.nn.Module | None) -> dict:
    """The classical ``method``'s parameters, converted; a learned model takes none."""
    if model is None:
        return parse_params(method, params)
    if params:
        raise ParameterError(f"{method} is a learned model and takes no method parameters (got {', '.join(params)})")
    return {}


def _reconstructor(method: str, kwargs: dict, op) -> Reconstructor:
    return lambda y: reconstruct_batch(method, y, op, kwargs)


def _learned(model: torch.nn.Module, op, device: str | torch.device) -> Reconstructor:
    """``y ↦ model(y, op)`` without gradients, in evaluation mode, on ``device``, returned on the CPU."""
    model.eval()

    @torch.no_grad()
    def run(y: torch.Tensor) -> torch.Tensor:
        return model(y.to(device), op).float().cpu()

    return run


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
