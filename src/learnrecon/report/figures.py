"""Figures: reconstruction grids with error maps, and metric bar charts (matplotlib, Agg backend)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["metric_bars", "reconstruction_grid"]


#: Characters per line of a panel's title: longer method names wrap instead of running into the next panel.
TITLE_WIDTH = 30


def _image(t: torch.Tensor) -> np.ndarray:
    """A panel's image: complex images (MRI) shown by their magnitudes."""
    t = t.detach().abs() if t.is_complex() else t.detach()
    return t.to("cpu", torch.float32).reshape(t.shape[-2:]).numpy()


def _title(text: str) -> str:
    return textwrap.fill(text, TITLE_WIDTH, break_long_words=False, break_on_hyphens=False)


def reconstruction_grid(
    path: str | Path,
    truths: Sequence[torch.Tensor],
    reconstructions: Mapping[str, Sequence[torch.Tensor]],
    row_titles: Sequence[str],
    captions: Mapping[str, Sequence[str]] | None = None,
    error_maps: bool = True,
) -> Path:
    """Save a grid: one row per sample (truth, then each method), plus a row of |x̂ − x| per sample.

    Args:
        truths: per sample an image ``(..., H, W)``.
        reconstructions: method name -> per sample an image.
        row_titles: a title per sample.
        captions: method name -> per sample a caption (e.g. "31.2 dB / 0.91").
    """
    methods = list(reconstructions)
    n_cols = 1 + len(methods)
    rows_per_sample = 2 if error_maps else 1
    n_rows = rows_per_sample * len(truths)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.3 * n_rows), squeeze=False)
    for s, truth in enumerate(truths):
        ref = _image(truth)
        vmin, vmax = float(ref.min()), float(ref.max())
        row = rows_per_sample * s
        axes[row, 0].imshow(ref, cmap="gray", vmin=vmin, vmax=vmax)
        axes[row, 0].set_title(f"{row_titles[s]}: truth", fontsize=8)
        errors = [np.abs(_image(reconstructions[m][s]) - ref) for m in methods]
        emax = max(float(e.max()) for e in errors) if errors else 1.0
        for j, m in enumerate(methods, start=1):
            axes[row, j].imshow(_image(reconstructions[m][s]), cmap="gray", vmin=vmin, vmax=vmax)
            caption = f"\n{captions[m][s]}" if captions else ""
            axes[row, j].set_title(f"{_title(m)}{caption}", fontsize=8)
            if error_maps:
                axes[row + 1, j].imshow(errors[j - 1], cmap="magma", vmin=0, vmax=emax)
                axes[row + 1, j].set_title(_title(f"|{m} − truth|"), fontsize=8)
        if error_maps:
            axes[row + 1, 0].text(0.5, 0.5, f"error maps\n(0 … {emax:.2f})", ha="center", va="center", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)


def metric_bars(path: str | Path, values: Mapping[str, Mapping[str, float]], metric: str) -> Path:
    """Save grouped bars: ``values[group][method]`` (e.g. group = test set), titled by ``metric``."""
    groups = list(values)
    methods = list(dict.fromkeys(m for g in groups for m in values[g]))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(groups) * max(1, len(methods) / 3), 3.2))
    for j, m in enumerate(methods):
        xs = np.arange(len(groups)) + (j - (len(methods) - 1) / 2) * width
        heights = [values[g].get(m, np.nan) for g in groups]
        bars = ax.bar(xs, heights, width, label=m)
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(metric)
    # Below the axes, where it covers no bar or value.
    ax.legend(fontsize=7, ncol=min(len(methods), 3), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def training_curve(path: str | Path, run_folder: str | Path, title: str = "training") -> Path:
    """Save the loss (log scale) and validation PSNR against the step, read from a run's CSV logs."""
    import csv

    folder = Path(run_folder)
    with (folder / "metrics.csv").open(newline="") as f:
        train = list(csv.DictReader(f))
    validation = []
    if (folder / "validation.csv").exists():
        with (folder / "validation.csv").open(newline="") as f:
            validation = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.semilogy([int(r["step"]) for r in train], [float(r["loss"]) for r in train], lw=1, label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    if validation:
        ax2 = ax.twinx()
        steps = [int(r["step"]) for r in validation]
        ax2.plot(steps, [float(r["psnr"]) for r in validation], "o-", color="C1", label="validation PSNR")
        ax2.set_ylabel("validation PSNR (dB)")
        fig.legend(loc="upper center", fontsize=7, ncol=2)
        fig.tight_layout(rect=(0, 0, 1, 0.92))  # the legend above the title, not over it
    else:
        fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
