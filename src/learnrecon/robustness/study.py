"""An attack study: several methods, several bounds ε, one table and figures (``learnrecon attack`` and
``benchmarks/robustness_attack.py`` call it)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import torch

from learnrecon.operators.base import LinearOperator
from learnrecon.report.figures import plt
from learnrecon.robustness.attack import (
    AttackResult,
    attack_summary,
    check_eps,
    penalised_perturbation,
    worst_case_perturbation,
)

__all__ = ["attack_figure", "attack_study"]


def attack_study(
    methods: Mapping[str, object],
    y: torch.Tensor,
    op: LinearOperator,
    eps_values: list[float],
    x: torch.Tensor | None = None,
    *,
    n_steps: int = 12,
    search_methods: Mapping[str, object] | None = None,
    figures: str | Path | None = None,
    seed: int = 0,
    log=print,
    penalised: bool = False,
) -> list[dict]:
    """Attack each method of ``methods`` (label -> reconstructor) at each ``ε`` of ``eps_values`` on the data
    ``y`` (truth ``x`` when known); one row of :func:`~learnrecon.robustness.attack_summary` per method and ε,
    with the seconds the search took. With ``penalised`` the values are penalties λ of the penalised form
    (:func:`~learnrecon.robustness.attack.penalised_perturbation`) instead of bounds. With ``figures`` a folder,
    writes ``attack-<method>.png`` there: the first image's perturbation and failed reconstruction at the last
    value."""
    eps_values = eps_values if penalised else [check_eps(e) for e in eps_values]
    search_methods = search_methods or {}
    rows = []
    for label, method in methods.items():
        worst: AttackResult | None = None
        for eps in eps_values:
            start = time.perf_counter()
            search = worst_case_perturbation if not penalised else penalised_perturbation
            result = search(method, y, op, eps, n_steps=n_steps, seed=seed, search_method=search_methods.get(label))
            seconds = time.perf_counter() - start
            row = {"method": label, **attack_summary(method, result, y, op, x, seed=seed + 1), "seconds": seconds}
            rows.append(row)
            log(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
            worst = result
        if figures is not None and worst is not None:
            attack_figure(Path(figures) / f"attack-{_slug(label)}.png", label, worst, y, op, x)
    return rows


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-").replace("--", "-")


def attack_figure(
    path: Path, label: str, result: AttackResult, y: torch.Tensor, op: LinearOperator, x: torch.Tensor | None
) -> Path:
    """The first image: truth, ``f(y)``, ``f(y + e)``, ``|f(y + e) − f(y)|``, the perturbation ``e`` (data space)
    and ``A⁺e``, the perturbation seen in the image."""

    def image(t: torch.Tensor):
        return t[0].detach().to("cpu", torch.float32).reshape(t.shape[-2:]).numpy()

    with torch.no_grad():
        pinv_e = op.pseudo_inverse(result.perturbation)
    reference = image(result.reference)
    lo, hi = (image(x).min(), image(x).max()) if x is not None else (reference.min(), reference.max())
    panels = ([("truth", image(x), "gray", (lo, hi))] if x is not None else []) + [
        ("f(y)", reference, "gray", (lo, hi)),
        (f"f(y + e), ‖e‖ ≤ {100 * result.eps:g}% ‖y‖", image(result.reconstruction), "gray", (lo, hi)),
        ("|f(y + e) − f(y)|", abs(image(result.reconstruction) - reference), "magma", None),
        ("e (data)", image(result.perturbation), "RdBu_r", None),
        ("A⁺e (e in the image)", image(pinv_e), "RdBu_r", None),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.8), squeeze=False)
    for ax, (title, data, cmap, limits) in zip(axes[0], panels, strict=True):
        if limits is None and cmap == "RdBu_r":
            bound = float(abs(data).max()) or 1.0
            limits = (-bound, bound)
        low, high = limits if limits is not None else (None, None)
        ax.imshow(data, cmap=cmap, vmin=low, vmax=high)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
