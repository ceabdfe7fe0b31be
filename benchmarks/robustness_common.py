"""Shared parts of the robustness scripts: the quick preset's data and methods, with TV's weight tuned on
validation ellipses (a small log grid, isotropic TV, no sign constraint: the raw ellipses take either sign)."""

from __future__ import annotations

from dataclasses import replace

import torch

from learnrecon import phantoms
from learnrecon.benchmark import PRETRAINED_LABELS
from learnrecon.benchmark.presets import get_preset
from learnrecon.data.simulate import measure
from learnrecon.evaluation import predict, score
from learnrecon.models import pretrained
from learnrecon.operators.fbp import fbp
from learnrecon.solvers import tv_pdhg

SHIPPED = ("fbpconvnet-ellipses", "lgd-ellipses", "lpd-ellipses")


def ellipses(n: int, seed: int, size: int = 128) -> torch.Tensor:
    return phantoms.draw_ellipses("ellipses", n=n, size=(size, size), seed=seed, scaling="none").float()


def shepp_logan(size: int = 128) -> torch.Tensor:
    return phantoms.shepp_logan((size, size)).float()[None, None]


def tune_tv_lambda(op, noise: str, grid=(0.1, 0.3, 1.0, 3.0, 10.0), n_iter: int = 300, seed: int = 101) -> float:
    """The TV weight of ``grid`` with the best mean PSNR on 2 validation ellipses (``n_iter`` PDHG iterations)."""
    x = ellipses(2, seed)
    y = measure(op, x, noise, seed=seed)
    scores = {}
    for lam in grid:
        x_hat = predict(lambda y, op, lam=lam: tv_pdhg(y, op, lam=lam, n_iter=n_iter, nonneg=False), y, op)
        scores[lam] = float(score(x_hat, x).psnr.mean())
    return max(scores, key=scores.get)


def methods(op, tv_lam: float, tv_iterations: int = 1000) -> dict:
    """FBP (Hann), TV (PDHG, ``tv_iterations``) and the shipped models by their report labels."""
    out = {
        "FBP (hann)": lambda y, op: fbp(y, op, "hann"),
        "TV": lambda y, op: tv_pdhg(y, op, lam=tv_lam, n_iter=tv_iterations, nonneg=False),
    }
    for name in SHIPPED:
        out[PRETRAINED_LABELS[name]] = pretrained(name)
    return out


def quick_operator(n_angles: int = 30):
    return replace(get_preset("quick"), n_angles=n_angles).operator()
