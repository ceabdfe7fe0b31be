"""The classical methods by name, with their parameters, for the command line and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from learnrecon.errors import ParameterError
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.fbp import fbp
from learnrecon.solvers.linear import cgls, landweber, projected_gradient, tikhonov
from learnrecon.solvers.poisson import gauss_newton_tv, poisson_tv, prelog_fbp
from learnrecon.solvers.row_action import kaczmarz, sart, sgd
from learnrecon.solvers.sparsity import fista, ista
from learnrecon.solvers.spectral import tikhonov_svd, tsvd
from learnrecon.solvers.tv import tv_pdhg

__all__ = ["METHODS", "MethodSpec", "parse_params", "reconstruct_batch"]


@dataclass(frozen=True)
class MethodSpec:
    """A named method: its function, a one-line summary and its parameters as name -> (type, help)."""

    function: Callable[..., torch.Tensor]
    summary: str
    params: Mapping[str, tuple[type, str]] = field(default_factory=dict)
    defaults: Mapping[str, object] = field(default_factory=dict)


_STOP = {
    "n_iter": (int, "iterations"),
    "delta": (float, "noise level ‖e‖ per sample: stop by the discrepancy principle"),
    "tau": (float, "discrepancy safety factor (default 1.02)"),
    "rtol": (float, "stop when the relative change falls below this"),
}
_SUBSETS = {
    "n_subsets": (int, "number of angle subsets"),
    "relaxation": (float, "relaxation in (0, 2)"),
    "order": (str, "ordered | random"),
    "seed": (int, "seed of the random order"),
}

METHODS: dict[str, MethodSpec] = {
    "fbp": MethodSpec(
        fbp,
        "filtered backprojection",
        {"filter": (str, "ram-lak | shepp-logan | cosine | hann | hamming"), "frequency_scaling": (float, "cut-off")},
    ),
    "tikhonov": MethodSpec(
        tikhonov, "Tikhonov by CG on (A*A + αI)x = A*y", {"alpha": (float, "weight α"), "n_iter": _STOP["n_iter"]}
    ),
    "tikhonov-svd": MethodSpec(tikhonov_svd, "Tikhonov from an explicit SVD (small problems)", {"alpha": (float, "α")}),
    "tsvd": MethodSpec(tsvd, "truncated SVD (small problems)", {"rank": (int, "singular values kept")}),
    "landweber": MethodSpec(landweber, "Landweber iteration", {"step": (float, "step ω < 2/‖A‖²"), **_STOP}),
    "cgls": MethodSpec(cgls, "conjugate gradients on the normal equations", dict(_STOP)),
    "pgd": MethodSpec(
        projected_gradient,
        "projected gradient on a box (default x ≥ 0)",
        {"step": (float, "step ω"), "lower": (float, "lower bound"), "upper": (float, "upper bound"), **_STOP},
    ),
    "kaczmarz": MethodSpec(kaczmarz, "block Kaczmarz over angle subsets", {**_SUBSETS, **_STOP}),
    "sart": MethodSpec(sart, "SART / OS-SART over angle subsets", {**_SUBSETS, **_STOP}),
    "sgd": MethodSpec(
        sgd,
        "stochastic gradient over random angle subsets",
        {
            "n_subsets": _SUBSETS["n_subsets"],
            "step": (float, "initial step"),
            "decay": (float, "step decay"),
            "seed": (int, "seed"),
            **_STOP,
        },
    ),
    "ista": MethodSpec(ista, "ISTA, ℓ1 in the pixel basis", {"lam": (float, "weight λ"), **_STOP}),
    "fista": MethodSpec(fista, "FISTA, ℓ1 in the pixel basis", {"lam": (float, "weight λ"), **_STOP}),
    "fista-wavelet": MethodSpec(
        fista,
        "FISTA, ℓ1 on orthonormal wavelet coefficients",
        {"lam": (float, "weight λ"), "wavelet": (str, "haar | db2 | db4 | sym4 ..."), **_STOP},
        {"wavelet": "db2"},
    ),
    "tv": MethodSpec(
        tv_pdhg,
        "TV by PDHG (Chambolle–Pock), isotropic or anisotropic",
        {
            "lam": (float, "weight λ"),
            "nonneg": (bool, "x ≥ 0"),
            "isotropic": (bool, "isotropic (default) or anisotropic TV"),
            "differentiable": (bool, "record the iterations for autograd (worst-case perturbation search)"),
            **_STOP,
        },
    ),
}

_PRELOG = {
    "lam": (float, "TV weight λ (per unit of I₀)"),
    "eps": (float, "TV smoothing ε"),
    "readout": (float, "electronic read-out noise σ_e in photons (shifted-Poisson model)"),
    "nonneg": (bool, "x ≥ 0 (default true)"),
}
METHODS.update(
    {
        "prelog-fbp": MethodSpec(
            prelog_fbp, "pre-log data: FBP of the log data −log(N/I₀)/μ", {"filter": (str, "the FBP filter")}
        ),
        "poisson-tv": MethodSpec(
            poisson_tv,
            "pre-log data: Poisson likelihood + TV by FISTA",
            {**_PRELOG, "n_iter": (int, "iterations (default 300)")},
        ),
        "gauss-newton-tv": MethodSpec(
            gauss_newton_tv,
            "pre-log data: Poisson likelihood + TV by projected Gauss–Newton (lagged diffusivity, CG)",
            {**_PRELOG, "n_iter": (int, "outer iterations (default 20)"), "cg_iter": (int, "CG steps each")},
        ),
    }
)


def _learned(method: str) -> Callable[..., torch.Tensor]:
    """The learned regulariser ``method`` of :mod:`learnrecon.regularisers.methods` as a plain function (imported
    when called: the regularisers' networks build on the solvers)."""

    def run(y: torch.Tensor, op: LinearOperator, **params) -> torch.Tensor:
        from learnrecon.regularisers.methods import reconstruct_with

        return reconstruct_with(method, y, op, **params)

    run.__name__ = method.replace("-", "_")
    return run


_WEIGHTS = {"weights": (str, "a shipped model's name or a checkpoint path (default: the shipped one)")}
_PNP = {
    **_WEIGHTS,
    "sigma": (float, "the denoiser's noise level σ (HQS: the last)"),
    "n_iter": (int, "iterations"),
}
METHODS.update(
    {
        "ar": MethodSpec(
            _learned("ar"),
            "adversarial regulariser: argmin ½‖Ax−y‖² + λR(x), R a learned critic (shipped ar-ellipses)",
            {**_WEIGHTS, "lam": (float, "weight λ (normalised problem)"), "n_iter": (int, "descent iterations")},
        ),
        "acr": MethodSpec(
            _learned("acr"),
            "adversarial convex regulariser: the convex problem with an input-convex critic (shipped acr-ellipses)",
            {
                **_WEIGHTS,
                "lam": (float, "weight λ (normalised problem)"),
                "n_iter": (int, "at most this many descent iterations"),
                "gap_tol": (float, "stop when the certified optimality gap is below this"),
            },
        ),
        "pnp-pgd": MethodSpec(
            _learned("pnp-pgd"),
            "plug-and-play proximal gradient with the learned denoiser (shipped pnp-ellipses)",
            {**_PNP, "step": (float, "step η ≤ 1 (normalised problem)")},
        ),
        "pnp-admm": MethodSpec(
            _learned("pnp-admm"),
            "plug-and-play ADMM with the learned denoiser (shipped pnp-ellipses)",
            {**_PNP, "rho": (float, "penalty ρ")},
        ),
        "hqs": MethodSpec(
            _learned("hqs"),
            "half-quadratic splitting with the learned denoiser, σ decreasing as in DPIR (shipped pnp-ellipses)",
            {**_PNP, "lam": (float, "weight λ"), "sigma_start": (float, "the first noise level")},
        ),
        "red": MethodSpec(
            _learned("red"),
            "regularisation by denoising, gradient descent with the learned denoiser (shipped pnp-ellipses)",
            {**_PNP, "lam": (float, "weight λ")},
        ),
    }
)


def _convert(name: str, kind: type, text: object):
    if not isinstance(text, str):
        return text
    if kind is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ParameterError(f"parameter {name} must be true or false, got {text!r}")
    try:
        return kind(text)
    except ValueError as err:
        raise ParameterError(f"parameter {name} must be of type {kind.__name__}, got {text!r}") from err


def parse_params(method: str, params: Mapping[str, object]) -> dict:
    """Check parameter names and convert string values to the documented types."""
    if method not in METHODS:
        raise ParameterError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    spec = METHODS[method]
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        valid = ", ".join(spec.params) or "none"
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)} for {method}; valid: {valid}")
    converted = dict(spec.defaults)
    converted.update({k: _convert(k, spec.params[k][0], v) for k, v in params.items()})
    return converted


def reconstruct_batch(method: str, y: torch.Tensor, op: LinearOperator, params: Mapping[str, object]) -> torch.Tensor:
    """Run the named method with parameters given by name (strings are converted) on ``y``."""
    kwargs = parse_params(method, params)
    try:
        return METHODS[method].function(y, op, **kwargs)
    except TypeError as err:  # a required parameter is missing
        raise ParameterError(f"{method}: {err}; parameters: {', '.join(METHODS[method].params)}") from err
