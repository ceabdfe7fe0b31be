"""Nonlinear forward operators ``F`` with a derivative ``F'(x)`` (a :class:`LinearOperator` with its exact
adjoint): the contract, scaling, the derivative tests, and the pre-log CT model of Beer and Lambert.

The contract (beside :class:`~learnrecon.operators.base.LinearOperator`):

- ``F(x)`` / ``F.apply(x)`` on ``(*batch, *domain_shape)``; autograd through it uses the derivative,
  ``x̄ = F'(x)* ȳ`` (one derivative adjoint per backward).
- ``F.derivative(x)``: the linearisation at ``x`` (the same batch shape as ``x``: one linear operator per
  sample, acting on ``(*batch, *domain_shape)``), with ``.H`` its exact adjoint. Its weights depend on ``x``
  differentiably, so a learned model that feeds ``F'(x)*(h)`` to a network trains through ``x`` as well.
- ``F.norm()``: a Lipschitz bound on the images of interest (for the Beer–Lambert model ``‖F'(0)‖``, which
  bounds ``‖F'(x)‖`` for every ``x`` with ``A x ≥ 0``); ``a * F`` scales the range, as the learned models'
  normalisation ``F/‖F‖`` needs; ``F.pseudo_inverse(y)`` an initial image.

A linear operator is its own derivative (:meth:`LinearOperator.derivative`), so the learned schemes call
``op(x)`` and ``op.derivative(x).H(h)`` and need no special case.

Beer–Lambert (pre-log CT): ``F(x) = I₀ · exp(−μ · A x)`` photons per detector cell, with ``A`` a ray
transform (lengths in its unit), ``x`` attenuation normalised to [0, 1] and ``μ`` (``mu_max``) the attenuation
of 1 in the inverse length unit. ``F'(x) h = −μ F(x) ⊙ A h`` and ``F'(x)* r = −μ A*(F(x) ⊙ r)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Number

import torch

from learnrecon._checks import check_complexity, check_finite, check_tensor, check_trailing_shape
from learnrecon.errors import ParameterError
from learnrecon.operators.base import Adjoint, LinearOperator

__all__ = [
    "BeerLambert",
    "Linearisation",
    "NonlinearOperator",
    "ScaledNonlinear",
    "poisson_nll",
    "taylor_remainders",
]


class Linearisation(LinearOperator):
    """A linear operator whose entries depend (differentiably) on tensors, e.g. a derivative ``F'(x)``.

    Subclasses implement ``_forward``/``_adjoint`` with differentiable torch operations and other operators'
    ``apply``; :meth:`apply` and :meth:`apply_adjoint` call them directly (not through the adjoint-based
    autograd function of :class:`LinearOperator`, which would not see the dependence on the entries).
    Inputs broadcast against the entries' batch shape.
    """

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, self.domain_shape, self.domain_complex, "input")
        return self._forward(x)

    __call__ = apply

    def apply_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y, self.range_shape, self.range_complex, "adjoint input")
        return self._adjoint(y)

    @property
    def adjoint(self) -> LinearOperator:
        return _LinearisationAdjoint(self)

    def __mul__(self, scalar):
        if isinstance(scalar, Number):
            return _ScaledLinearisation(self, float(scalar))
        return NotImplemented

    __rmul__ = __mul__


class _LinearisationAdjoint(Adjoint):
    def apply(self, x):
        return self.op.apply_adjoint(x)

    __call__ = apply

    def apply_adjoint(self, y):
        return self.op.apply(y)


class _ScaledLinearisation(Linearisation):
    def __init__(self, op: Linearisation, scalar: float) -> None:
        super().__init__(op.domain_shape, op.range_shape)
        self.op, self.scalar = op, scalar

    def _forward(self, x):
        return self.op._forward(x) * self.scalar

    def _adjoint(self, y):
        return self.op._adjoint(y) * self.scalar


class _ApplyNonlinear(torch.autograd.Function):
    """y = F(x) with backward x̄ = F'(x)* ȳ."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: NonlinearOperator) -> torch.Tensor:
        ctx.op = op
        ctx.save_for_backward(x)
        return op._evaluate(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return ctx.op.derivative(x.detach()).apply_adjoint(grad.contiguous()), None


class NonlinearOperator:
    """A differentiable map ``F`` between tensor spaces with a derivative ``F'(x)`` (see the module docstring).

    Subclasses implement :meth:`_evaluate` (``F(x)`` on a validated input) and :meth:`derivative`.
    """

    #: Whether the operator is linear (False here; :class:`LinearOperator` is its own derivative).
    is_linear = False
    #: The keyword options :meth:`pseudo_inverse` takes.
    pseudo_inverse_options: tuple[str, ...] = ()

    def __init__(self, domain_shape: Sequence[int], range_shape: Sequence[int]) -> None:
        self.domain_shape = tuple(int(s) for s in domain_shape)
        self.range_shape = tuple(int(s) for s in range_shape)
        self.domain_complex = False
        self.range_complex = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}(domain_shape={self.domain_shape}, range_shape={self.range_shape})"

    def _evaluate(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, x: torch.Tensor) -> Linearisation:
        """The linearisation ``F'(x)`` (a :class:`Linearisation` for the batch of points ``x``)."""
        raise NotImplementedError

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``F(x)`` for ``x`` of shape ``(*batch, *domain_shape)``; autograd uses ``F'(x)*``."""
        x = check_tensor(x, "input")
        check_complexity(x, False, "input")
        check_trailing_shape(x, self.domain_shape, "input", what=self.name)
        if torch.is_grad_enabled() and x.requires_grad:
            return _ApplyNonlinear.apply(x, self)
        return self._evaluate(x)

    __call__ = apply

    def norm(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu", **kwargs) -> float:
        """‖F'(0)‖ by power iteration (subclasses may know it in closed form)."""
        zero = torch.zeros(self.domain_shape, dtype=dtype, device=device)
        return self.derivative(zero).norm(dtype, device, **kwargs)

    def pseudo_inverse(self, y: torch.Tensor, **options) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no pseudo-inverse; start the model from init='zero'")

    def __mul__(self, scalar):
        if isinstance(scalar, Number) or (isinstance(scalar, torch.Tensor) and scalar.ndim == 0):
            return ScaledNonlinear(self, float(scalar))
        return NotImplemented

    __rmul__ = __mul__

    @property
    def H(self):  # noqa: N802
        raise TypeError(
            f"{self.name} is nonlinear and has no adjoint; use {self.name}.derivative(x).H, the adjoint of its "
            "linearisation at x"
        )

    adjoint = H


class ScaledNonlinear(NonlinearOperator):
    """``(a F)(x) = a F(x)``, ``(a F)'(x) = a F'(x)``; what normalising the learned schemes by ‖F‖ gives."""

    def __init__(self, op: NonlinearOperator, scalar: float) -> None:
        if not math.isfinite(scalar):
            raise ParameterError(f"cannot scale {op.name} by the non-finite number {scalar}")
        super().__init__(op.domain_shape, op.range_shape)
        self.op, self.scalar = op, scalar
        self.pseudo_inverse_options = op.pseudo_inverse_options

    @property
    def name(self) -> str:
        return f"{self.scalar:g} * {self.op.name}"

    def apply(self, x):
        return self.op.apply(x) * self.scalar

    __call__ = apply

    def derivative(self, x):
        return self.op.derivative(x) * self.scalar

    def norm(self, *args, **kwargs) -> float:
        return abs(self.scalar) * self.op.norm(*args, **kwargs)

    def pseudo_inverse(self, y, **options):
        return self.op.pseudo_inverse(y / self.scalar, **options)


def taylor_remainders(
    op, x: torch.Tensor, h: torch.Tensor, steps: Sequence[float] = (1e-1, 5e-2, 2.5e-2, 1.25e-2)
) -> list[float]:
    """``‖F(x + t h) − F(x) − t F'(x) h‖`` for each ``t`` in ``steps``: O(t²) for a correct derivative (halving
    ``t`` divides the remainder by ~4), O(t) for a wrong one. Any operator with ``derivative`` (linear ones give
    rounding-level remainders)."""
    with torch.no_grad():
        fx = op(x)
        dh = op.derivative(x)(h)
        return [float(torch.linalg.vector_norm(op(x + t * h) - fx - t * dh)) for t in steps]


class _BeerLambertDerivative(Linearisation):
    """``h ↦ w ⊙ A h`` with ``w = −μ F(x)`` (batch-shaped); adjoint ``r ↦ A*(w ⊙ r)``."""

    def __init__(self, ray: LinearOperator, weights: torch.Tensor) -> None:
        super().__init__(ray.domain_shape, ray.range_shape)
        self.ray, self.weights = ray, weights

    def _forward(self, x):
        return self.weights.to(x.dtype) * self.ray(x)

    def _adjoint(self, y):
        return self.ray.H(self.weights.to(y.dtype) * y)

    def norm(self, dtype=torch.float64, device="cpu", **kwargs) -> float:
        """‖diag(w) A‖ ≤ max|w| ‖A‖ (an upper bound; equal for constant weights, as at x = 0)."""
        return float(self.weights.abs().max()) * self.ray.norm(dtype, device)


class BeerLambert(NonlinearOperator):
    """Pre-log CT: expected photon counts ``F(x) = I₀ · exp(−μ_max · A x)`` (see the module docstring).

    Args:
        ray_transform: the linear ray transform ``A`` (lengths in its unit; ``ParallelBeam2D``, ``FanBeam2D``).
        photons: ``I₀ > 0``, the mean count per detector cell without attenuation (LoDoPaB: 4096).
        mu_max: ``μ > 0``, the attenuation of image value 1 per unit length of ``A`` (the same number as
            :func:`~learnrecon.noise.poisson_prelog`'s ``mu_max``).
    """

    def __init__(self, ray_transform: LinearOperator, photons: float, mu_max: float) -> None:
        if not isinstance(ray_transform, LinearOperator) or ray_transform.domain_complex or ray_transform.range_complex:
            raise ParameterError(f"BeerLambert needs a real linear ray transform, got {ray_transform!r}")
        for name, value in (("photons", photons), ("mu_max", mu_max)):
            if not (isinstance(value, Number) and math.isfinite(value) and value > 0):
                raise ParameterError(f"BeerLambert: {name} must be a positive finite number, got {value!r}")
        super().__init__(ray_transform.domain_shape, ray_transform.range_shape)
        self.ray, self.photons, self.mu_max = ray_transform, float(photons), float(mu_max)
        self.pseudo_inverse_options = ray_transform.pseudo_inverse_options

    def __repr__(self) -> str:
        return f"BeerLambert({self.ray!r}, photons={self.photons:g}, mu_max={self.mu_max:g})"

    def config(self) -> dict:
        """Constructor arguments (the ray transform's own config nested), for
        :func:`~learnrecon.operators.registry.build_operator`."""
        return {"type": "BeerLambert", "ray": self.ray.config(), "photons": self.photons, "mu_max": self.mu_max}

    @classmethod
    def from_config(cls, ray: dict, photons: float, mu_max: float) -> BeerLambert:
        """The operator of a config section ``{type: BeerLambert, ray: {type: ParallelBeam2D, ...}, photons: ..,
        mu_max: ..}``."""
        from learnrecon.operators.registry import build_operator

        return cls(build_operator(ray), photons, mu_max)

    def _evaluate(self, x):
        return self.photons * torch.exp(-self.mu_max * self.ray(x))

    def derivative(self, x: torch.Tensor) -> Linearisation:
        return _BeerLambertDerivative(self.ray, -self.mu_max * self.apply(x))

    def norm(self, dtype=torch.float64, device="cpu", **kwargs) -> float:
        """‖F'(0)‖ = μ I₀ ‖A‖, which bounds ‖F'(x)‖ wherever ``A x ≥ 0``."""
        return self.mu_max * self.photons * self.ray.norm(dtype, device)

    def check_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """``counts`` if they are finite, non-negative photon counts of this operator's range shape."""
        counts = check_finite(check_tensor(counts, "photon counts"), "photon counts")
        check_trailing_shape(counts, self.range_shape, "photon counts", what=self.name)
        if bool((counts < 0).any()):
            raise ParameterError(
                f"photon counts must be >= 0, found {int((counts < 0).sum())} negative values (min "
                f"{float(counts.min()):g}); pre-log data are counts, not log data or offset-corrected signals"
            )
        return counts

    def log_data(self, counts: torch.Tensor, floor: float = 0.1) -> torch.Tensor:
        """Post-log line integrals ``−log(max(N, floor)/I₀)/μ`` (what :func:`~learnrecon.noise.poisson_prelog`
        returns for the same counts; zero counts are clamped to ``floor`` photons)."""
        counts = self.check_counts(counts)
        return -torch.log(counts.clamp_min(floor) / self.photons) / self.mu_max

    def pseudo_inverse(self, y: torch.Tensor, **options) -> torch.Tensor:
        """The ray transform's pseudo-inverse (filtered backprojection) of the log data: post-log FBP."""
        return self.ray.pseudo_inverse(self.log_data(y), **options)


def poisson_nll(expected: torch.Tensor, counts: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The Poisson negative log-likelihood ``Σ λ − N log λ`` (constants dropped) of ``counts`` N given the
    ``expected`` counts λ, summed over every dimension but the first: shape ``(B,)``."""
    terms = expected - counts * torch.log(expected.clamp_min(eps))
    return terms.flatten(1).sum(dim=1)
