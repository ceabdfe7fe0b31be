"""``learnrecon reconstruct ... --uncertainty KIND``: a mean and a per-pixel standard deviation for items of a data
file, written to HDF5 (``mean``, ``std``, ``index``), with the calibration when the file holds the truth."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import torch
from torch import nn

from learnrecon.data import load
from learnrecon.data.simulate import parse_noise
from learnrecon.errors import ParameterError
from learnrecon.io.files import atomic_path, check_output_path
from learnrecon.robustness.calibration import calibration_report
from learnrecon.robustness.uncertainty import (
    Ensemble,
    UncertainReconstruction,
    denoiser_prior,
    langevin_sample,
    mc_dropout,
    resample_data,
    tv_prior,
)
from learnrecon.solvers import tv_pdhg

__all__ = ["PNP_PRIOR_SIGMA", "UNCERTAINTY_KINDS", "noise_sigma", "pnp_ula", "uncertainty_file"]

#: The kinds of ``--uncertainty``.
UNCERTAINTY_KINDS = ("ensemble", "dropout", "resample", "langevin")
#: The noise level of the learned denoiser whose score is the prior of PnP-ULA (``--prior-sigma``'s default): with the
#: shipped denoiser, chains at 0.02 and 0.03 diverged on the Shepp–Logan head, 0.05 stayed stable (docs/robustness.md).
PNP_PRIOR_SIGMA = 0.05


def noise_sigma(y: torch.Tensor, noise: str | None, level: float | None = None) -> torch.Tensor:
    """The noise level σ per item ``(n,)``: ``level`` (a fraction of each item's mean ``|y|``) when given, else from
    the file's noise spec (``relative:f``: ``f·mean|y|``; ``gaussian:s``: ``s``)."""
    means = y.abs().flatten(1).mean(dim=1)
    if level is not None:
        if not level > 0:
            raise ParameterError(f"--noise-level must be > 0 (a fraction of mean |y|), got {level}")
        return level * means
    spec = parse_noise(noise) if noise else None
    if spec is not None and spec.kind == "relative" and spec.value > 0:
        return spec.value * means
    if spec is not None and spec.kind == "gaussian" and spec.value > 0:
        return torch.full_like(means, spec.value)
    raise ParameterError(
        f"the data file's noise ({noise}) gives no Gaussian noise level; pass --noise-level (a fraction of mean |y|)"
    )


def uncertainty_file(
    source: str | Path,
    out: str | Path,
    kind: str,
    method,
    *,
    members: list[nn.Module] | None = None,
    index: torch.Tensor | None = None,
    n_samples: int = 16,
    noise_level: float | None = None,
    tv_lambda: float | None = None,
    langevin_steps: int = 6000,
    denoiser: nn.Module | None = None,
    prior_sigma: float = PNP_PRIOR_SIGMA,
    overwrite: bool = False,
) -> dict:
    """Mean and std of ``method`` (a reconstructor; for ``ensemble``, the first member with ``members`` the others)
    by ``kind`` (:data:`UNCERTAINTY_KINDS`) on the items ``index`` of ``source``; writes ``out`` (HDF5) and returns
    a summary (with the calibration against the truth where the file has it). ``langevin`` samples the TV posterior
    of weight ``tv_lambda``, or with ``denoiser`` (a σ-conditioned learned denoiser ``D(x, σ)``) PnP-ULA: the prior's
    score from Tweedie's formula at ``prior_sigma``, the chains started at ``method``'s reconstruction."""
    if kind not in UNCERTAINTY_KINDS:
        raise ParameterError(f"unknown uncertainty method {kind!r}; choose one of {', '.join(UNCERTAINTY_KINDS)}")
    out = check_output_path(out, overwrite)
    dataset = load(source)
    op = dataset.op
    index = torch.arange(len(dataset)) if index is None else index
    sample = dataset.tensors(index.numpy())
    y = sample.y.float()
    if kind == "ensemble":
        if not members:
            raise ParameterError("--uncertainty ensemble needs further members: --member CHECKPOINT (repeat)")
        ensemble = Ensemble([method, *members])
        with torch.no_grad():
            result = ensemble.sample(y, op)
    elif kind == "dropout":
        if not isinstance(method, nn.Module):
            raise ParameterError("--uncertainty dropout needs a learned model (--pretrained or --checkpoint)")
        result = mc_dropout(method, y, op, n_samples)
    elif kind == "resample":
        result = resample_data(method, y, op, noise_sigma(y, dataset.attrs.get("noise"), noise_level), n_samples)
    elif denoiser is not None:
        sigma = noise_sigma(y, dataset.attrs.get("noise"), noise_level)
        result = pnp_ula(y, op, sigma, denoiser, prior_sigma, langevin_steps, start=method(y, op).detach())
    else:
        result = _langevin(y, op, noise_sigma(y, dataset.attrs.get("noise"), noise_level), tv_lambda, langevin_steps)
    summary: dict = {"uncertainty": kind, "n": int(index.numel()), "output": str(out)}
    if dataset.has_truth:
        report = calibration_report(result.mean, result.std, sample.x.float())
        summary.update({k: v for k, v in report.items() if k != "curve"})
    with atomic_path(out, overwrite) as tmp, h5py.File(tmp, "w") as f:
        f["index"] = index.numpy()
        f["mean"] = result.mean.numpy()
        f["std"] = result.std.numpy()
        f.attrs["uncertainty"] = kind
        f.attrs["source"] = str(source)
        f.attrs["summary"] = json.dumps(summary)
    return summary


def _langevin(y: torch.Tensor, op, sigma: torch.Tensor, lam: float | None, steps: int) -> UncertainReconstruction:
    """ULA with the TV prior of weight ``lam`` (TV's own λ, in units of ½‖Ax − y‖²), from TV's reconstruction."""
    if lam is None or not lam > 0:
        raise ParameterError("--uncertainty langevin samples a TV posterior: give its weight with --param lam=VALUE")
    if steps < 80:
        raise ParameterError(f"--langevin-steps must be at least 80, got {steps}")
    start = tv_pdhg(y, op, lam=lam, n_iter=1000, nonneg=False)
    smoothing = 8 * lam / float(op.norm(torch.float64) ** 2)
    means, stds = [], []
    for i in range(y.shape[0]):
        prior = tv_prior(lam / float(sigma[i]) ** 2, smoothing, op.domain_shape)
        r = langevin_sample(
            y[i : i + 1], op, sigma[i], prior, n_samples=steps // 40, thin=20, burn_in=steps // 2, x0=start[i : i + 1]
        )
        means.append(r.mean)
        stds.append(r.std)
    return UncertainReconstruction(torch.cat(means), torch.cat(stds))


def pnp_ula(
    y: torch.Tensor,
    op,
    sigma: torch.Tensor,
    denoiser: nn.Module,
    prior_sigma: float,
    steps: int,
    start: torch.Tensor,
    seed: int = 0,
) -> UncertainReconstruction:
    """PnP-ULA (Laumont et al. 2022): ULA on ``exp(−‖Ax − y‖²/(2σ²) − R(x))`` with ``∇R(x) = (x − D(x, s))/s²``,
    ``s = prior_sigma``, for the images ``y`` ``(n, ...)`` (one chain each, σ ``(n,)``), from ``start``; half the
    ``steps`` burn-in, then every 20th state a sample."""
    if steps < 80:
        raise ParameterError(f"--langevin-steps must be at least 80, got {steps}")
    low, high = denoiser.sigma_range
    if not low < prior_sigma <= high:
        raise ParameterError(f"the prior's noise level {prior_sigma} is outside the denoiser's trained ({low}, {high}]")
    prior = denoiser_prior(lambda x: denoiser(x, torch.full((x.shape[0],), prior_sigma, dtype=x.dtype)), prior_sigma)
    with torch.no_grad():
        return langevin_sample(
            y, op, sigma, prior, n_samples=steps // 40, thin=20, burn_in=steps // 2, x0=start, seed=seed
        )
