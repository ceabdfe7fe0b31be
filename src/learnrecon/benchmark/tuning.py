"""Tuning the classical baselines on validation data: a log-grid search, TV's variant and weight, FBP's cut-off."""

from __future__ import annotations

import math
from collections.abc import Callable

from tqdm.auto import tqdm

from learnrecon.benchmark.presets import Preset
from learnrecon.benchmark.tasks import EvalSet
from learnrecon.evaluation import predict, score
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.fbp import fbp
from learnrecon.solvers import tv_pdhg

__all__ = ["mean_psnr", "tune_fbp", "tune_log_grid", "tune_tv"]


def mean_psnr(method: Callable, data: EvalSet, op: LinearOperator) -> float:
    """The mean PSNR of ``method(y, op)`` on ``data`` (the library's metric convention)."""
    return float(score(predict(method, data.y, op), data.x).psnr.mean())


def tune_log_grid(
    score_of: Callable[[float], float],
    grid: tuple[float, ...],
    desc: str,
    progress: bool = True,
    max_extend: int = 4,
    bounds: tuple[float, float] = (0.0, math.inf),
    integer: bool = False,
) -> tuple[float, list[dict]]:
    """Maximise ``score_of`` over a log grid: extend past an edge that wins (up to ``max_extend`` times),
    then try 4 points around the best, never leaving ``bounds`` (and rounding when ``integer``).
    Returns the best value and every value tried with its score."""
    tried: dict[float, float] = {}
    values = sorted(grid)
    ratio = values[1] / values[0] if len(values) > 1 else 10.0
    bar = tqdm(desc=desc, total=len(values) + 4, disable=not progress)

    def evaluate(value: float) -> None:
        value = min(max(value, bounds[0]), bounds[1])
        value = float(round(value)) if integer else value
        if value not in tried:
            tried[value] = score_of(value)
            bar.total = max(bar.total, bar.n + 1)  # extending past an edge adds evaluations
            bar.update()

    for value in values:
        evaluate(value)
    for _ in range(max_extend):
        best = max(tried, key=tried.get)
        if best == min(tried):
            evaluate(best / ratio)
        elif best == max(tried):
            evaluate(best * ratio)
        else:
            break
    best = max(tried, key=tried.get)
    for factor in (ratio**-0.5, ratio**-0.25, ratio**0.25, ratio**0.5):
        evaluate(best * factor)
    bar.close()
    best = max(tried, key=tried.get)
    return best, [{"lambda": v, "mean PSNR": p} for v, p in sorted(tried.items())]


def tune_tv(
    preset: Preset, op: LinearOperator, validation: EvalSet, progress: bool = True
) -> tuple[dict, dict[str, list[dict]]]:
    """The TV variant (isotropic or anisotropic) and weight maximising mean PSNR on ``validation``, with
    non-negativity imposed when the validation images are non-negative (raw ellipses take either sign).

    Returns the chosen keyword arguments of :func:`tv_pdhg` and, per variant, every λ tried with its score.
    """
    grids, best = {}, None
    nonneg = bool((validation.x >= 0).all())
    for isotropic in (True, False):
        variant = "isotropic" if isotropic else "anisotropic"

        def score_of(lam: float, isotropic=isotropic) -> float:
            options = {"lam": lam, "n_iter": preset.tv_iterations, "isotropic": isotropic, "nonneg": nonneg}
            return mean_psnr(lambda y, op: tv_pdhg(y, op, **options), validation, op)

        lam, grid = tune_log_grid(score_of, preset.tv_lambdas, f"tuning {variant} TV λ on {validation.name}", progress)
        grids[variant] = grid
        psnr = max(row["mean PSNR"] for row in grid)
        if best is None or psnr > best[0]:
            best = (psnr, {"lam": lam, "isotropic": isotropic, "nonneg": nonneg})
    return best[1], grids


def tune_fbp(preset: Preset, op: LinearOperator, validation: EvalSet) -> tuple[float, list[dict]]:
    """The FBP cut-off of ``preset.fbp_frequency_scalings`` maximising mean PSNR on ``validation``.

    Returns it and every cut-off tried with its score.
    """
    grid = [
        {
            "frequency_scaling": f,
            "mean PSNR": mean_psnr(lambda y, op, f=f: fbp(y, op, preset.fbp_filter, f), validation, op),
        }
        for f in preset.fbp_frequency_scalings
    ]
    return max(grid, key=lambda row: row["mean PSNR"])["frequency_scaling"], grid
