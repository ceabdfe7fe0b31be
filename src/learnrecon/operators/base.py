"""The ``LinearOperator`` contract, its algebra and autograd through the exact adjoint.

An operator ``A`` maps tensors of shape ``(*batch, *domain_shape)`` to ``(*batch, *range_shape)``:
it acts on the trailing dimensions and treats every leading dimension as batch. Images are
``(B, C, H, W)`` with ``domain_shape == (H, W)``, sinograms ``(B, C, n_angles, n_detectors)``.

Subclasses implement :meth:`LinearOperator._forward` and :meth:`LinearOperator._adjoint` on inputs
already validated; :meth:`LinearOperator.apply` validates, then routes through a
``torch.autograd.Function`` whose backward is the adjoint, so ``backward`` costs one adjoint and
keeps no intermediate grids alive.

The algebra follows ODL: ``A @ B`` (composition), ``a * A`` (scaling), ``A + B``, ``A - B``, ``-A``,
``A.H`` (adjoint, itself an operator), ``A.gram()`` = A*A, each checked for shapes when it is built.
Operators are immutable, so the cached norm never goes stale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from numbers import Number

import torch

from learnrecon._checks import check_complexity, check_tensor, check_trailing_shape
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.operators.symmetry import IDENTITY, Symmetry

__all__ = ["LinearOperator", "Adjoint", "Composition", "Sum", "Scaled", "adjoint_mismatch", "canonical_device"]

#: Largest number of matrix entries :meth:`LinearOperator.to_dense` builds without ``max_entries=``.
DEFAULT_MAX_DENSE_ENTRIES = 2**26


def canonical_device(device: torch.device | str) -> torch.device:
    """``device`` with its index filled in: ``cuda`` becomes ``cuda:<current device>`` (what tensors report)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def adjoint_mismatch(op: LinearOperator, x: torch.Tensor, y: torch.Tensor) -> float:
    """The dot-product test ``|<A x, y> − <x, A* y>| / (‖A x‖ ‖y‖)`` for ``x`` in the domain and ``y`` in the
    range of ``op`` (any batch shape, real or complex, any device), accumulated in complex128: rounding
    level (~1e-7 in float32, ~1e-16 in float64) for an exact adjoint."""
    ax, aty = op(x), op.H(y)
    lhs = torch.vdot(ax.flatten().to(torch.complex128), y.flatten().to(torch.complex128))
    rhs = torch.vdot(x.flatten().to(torch.complex128), aty.flatten().to(torch.complex128))
    return float((lhs - rhs).abs() / (ax.norm() * y.norm()).to(torch.float64))


class _ApplyLinear(torch.autograd.Function):
    """y = A x with backward x̄ = A* ȳ (or the reverse when ``adjoint`` is True)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: LinearOperator, adjoint: bool) -> torch.Tensor:
        ctx.op = op
        ctx.adjoint = adjoint
        return op._adjoint(x) if adjoint else op._forward(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # Apply through the Function again so that higher-order derivatives also use exact adjoints.
        return _ApplyLinear.apply(grad.contiguous(), ctx.op, not ctx.adjoint), None, None


def _run(op: LinearOperator, x: torch.Tensor, adjoint: bool) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _ApplyLinear.apply(x, op, adjoint)
    return op._adjoint(x) if adjoint else op._forward(x)


class LinearOperator:
    """A linear map between tensor spaces with an exact adjoint.

    Args:
        domain_shape: trailing shape of inputs, e.g. ``(H, W)``.
        range_shape: trailing shape of outputs, e.g. ``(n_angles, n_detectors)``.
        domain_complex: whether inputs are complex (MRI images) or real (default).
        range_complex: whether outputs are complex (k-space) or real (default).
    """

    def __init__(
        self,
        domain_shape: Sequence[int],
        range_shape: Sequence[int],
        *,
        domain_complex: bool = False,
        range_complex: bool = False,
    ) -> None:
        self.domain_shape = tuple(int(s) for s in domain_shape)
        self.range_shape = tuple(int(s) for s in range_shape)
        self.domain_complex = bool(domain_complex)
        self.range_complex = bool(range_complex)
        self._cache: dict[Hashable, object] = {}

    # ----------------------------------------------------------------- subclass interface
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x for a validated ``x`` of shape ``(*batch, *domain_shape)``."""
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A* y for a validated ``y`` of shape ``(*batch, *range_shape)``."""
        raise NotImplementedError

    def _exact_norm(self) -> float | None:
        """The operator norm when it is known in closed form, else ``None``."""
        return None

    # ----------------------------------------------------------------- application
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``A x``; ``x`` has shape ``(*batch, *domain_shape)``."""
        self._check(x, self.domain_shape, self.domain_complex, "input")
        return _run(self, x, adjoint=False)

    __call__ = apply

    def apply_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Return ``A* y``; ``y`` has shape ``(*batch, *range_shape)``."""
        self._check(y, self.range_shape, self.range_complex, "adjoint input")
        return _run(self, y, adjoint=True)

    def _check(self, x: object, shape: tuple[int, ...], is_complex: bool, name: str) -> None:
        x = check_tensor(x, name)
        check_complexity(x, is_complex, name)
        check_trailing_shape(x, shape, name, what=f"{self.name}")

    @property
    def name(self) -> str:
        """Short description used in error messages."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}(domain_shape={self.domain_shape}, range_shape={self.range_shape})"

    # ----------------------------------------------------------------- capabilities
    #: Whether the operator is linear (:class:`~learnrecon.operators.nonlinear.NonlinearOperator` says False).
    is_linear = True

    def derivative(self, x: torch.Tensor | None = None) -> LinearOperator:
        """The derivative at ``x``: a linear operator is its own, so schemes written for nonlinear operators
        (``op(x)``, ``op.derivative(x).H(h)``) run unchanged on linear ones."""
        return self

    #: The keyword options :meth:`pseudo_inverse` takes (none by default; ray transforms take FBP's).
    pseudo_inverse_options: tuple[str, ...] = ()

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """An approximate inverse for initial images: here ``A* y / ‖A‖²`` (one Landweber step from zero, on the
        images' scale); operators that know better override it (filtered backprojection for ray transforms,
        the zero-filled inverse for MRI). Layers above ask for this instead of testing the operator's class."""
        return self.apply_adjoint(y) / self.norm(torch.float64, y.device) ** 2

    def memory_estimate(self, dtype: torch.dtype = torch.float32) -> int:
        """Bytes the operator holds to apply itself in ``dtype`` (cached matrices and the like); 0 here."""
        return 0

    def symmetries(self) -> list[Symmetry]:
        """The image symmetries ``g`` the operator carries to permutations of its data, ``A g = T_g A``
        (:class:`~learnrecon.operators.symmetry.Symmetry`, identity first); here only the identity."""
        return [IDENTITY]

    # ----------------------------------------------------------------- derived operators
    @property
    def adjoint(self) -> LinearOperator:
        """The adjoint A* as an operator (``A.adjoint.adjoint is A``)."""
        return Adjoint(self)

    @property
    def H(self) -> LinearOperator:  # noqa: N802 - conventional name for the Hermitian adjoint
        """Alias of :attr:`adjoint`."""
        return self.adjoint

    def gram(self) -> LinearOperator:
        """The normal operator A*A (domain to domain)."""
        return Composition(self.adjoint, self)

    def __matmul__(self, other):
        if isinstance(other, LinearOperator):
            return Composition(self, other)
        if isinstance(other, torch.Tensor):
            return self.apply(other)
        return NotImplemented

    def __mul__(self, scalar):
        if isinstance(scalar, Number) or (isinstance(scalar, torch.Tensor) and scalar.ndim == 0):
            return Scaled(self, scalar)
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, scalar):
        if isinstance(scalar, Number) or (isinstance(scalar, torch.Tensor) and scalar.ndim == 0):
            return Scaled(self, 1.0 / scalar)
        return NotImplemented

    def __neg__(self):
        return Scaled(self, -1.0)

    def __add__(self, other):
        if isinstance(other, LinearOperator):
            return Sum(self, other)
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, LinearOperator):
            return Sum(self, Scaled(other, -1.0))
        return NotImplemented

    def __getitem__(self, index):
        raise TypeError(f"{self.name} cannot be restricted by indexing; only ray transforms support op[angles]")

    # ----------------------------------------------------------------- norm and dense form
    def norm(
        self,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        *,
        n_iter: int = 500,
        tol: float = 1e-9,
        seed: int = 0,
    ) -> float:
        """Operator 2-norm ‖A‖ = sqrt(λ_max(A*A)), by power iteration, cached per dtype and device.

        The iteration stops when the estimate changes by less than ``tol`` (relative) or after
        ``n_iter`` steps. The start vector is drawn from a generator seeded with ``seed``.
        """
        exact = self._exact_norm()
        if exact is not None:
            return float(exact)
        device = torch.device(device)
        key = ("norm", dtype, device)
        if key not in self._cache:
            self._cache[key] = self._power_iteration(dtype, device, n_iter, tol, seed)
        return self._cache[key]

    def _power_iteration(self, dtype, device, n_iter, tol, seed) -> float:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = torch.randn(self.domain_shape, generator=gen, dtype=dtype)
        if self.domain_complex:
            x = torch.complex(x, torch.randn(self.domain_shape, generator=gen, dtype=dtype))
        x = x.to(device)
        x = x / torch.linalg.vector_norm(x)
        estimate = 0.0
        with torch.no_grad():
            for _ in range(n_iter):
                z = self._adjoint(self._forward(x))
                new = float(torch.linalg.vector_norm(z))
                if new == 0.0:
                    return 0.0
                x = z / new
                if abs(new - estimate) <= tol * new:
                    estimate = new
                    break
                estimate = new
        return math.sqrt(estimate)

    def to_dense(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu", max_entries: int | None = None
    ) -> torch.Tensor:
        """The explicit matrix of shape ``(prod(range_shape), prod(domain_shape))``.

        Raises :class:`ParameterError` if the matrix would have more than ``max_entries`` entries
        (default 2**26, 512 MiB in float64).
        """
        n = math.prod(self.domain_shape)
        m = math.prod(self.range_shape)
        limit = DEFAULT_MAX_DENSE_ENTRIES if max_entries is None else max_entries
        if n * m > limit:
            raise ParameterError(
                f"{self.name}.to_dense() would build a {m} x {n} matrix ({n * m} entries > {limit}); "
                "use a smaller problem or pass max_entries= if you have the memory"
            )
        cdtype = (torch.complex128 if dtype == torch.float64 else torch.complex64) if self.domain_complex else dtype
        columns = []
        chunk = max(1, min(n, 2**22 // max(m, 1)))
        with torch.no_grad():
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                basis = torch.zeros(stop - start, n, dtype=cdtype, device=device)
                basis[torch.arange(stop - start), torch.arange(start, stop)] = 1
                out = self._forward(basis.reshape(stop - start, *self.domain_shape))
                columns.append(out.reshape(stop - start, m))
        return torch.cat(columns).transpose(0, 1).contiguous()

    # ----------------------------------------------------------------- caching helper
    def _cached(self, key: Hashable, build: Callable[[], object]):
        """Return ``self._cache[key]``, building it once with ``build()``; devices in a tuple key count by
        what they name (``cuda`` is ``cuda:<current>``), so one device never holds two copies."""
        if isinstance(key, tuple):
            key = tuple(canonical_device(k) if isinstance(k, torch.device) else k for k in key)
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


class Adjoint(LinearOperator):
    """The adjoint A* of an operator; its adjoint is the original operator."""

    def __init__(self, op: LinearOperator) -> None:
        super().__init__(
            op.range_shape, op.domain_shape, domain_complex=op.range_complex, range_complex=op.domain_complex
        )
        self.op = op

    @property
    def name(self) -> str:
        return f"{self.op.name}.H"

    @property
    def adjoint(self) -> LinearOperator:
        return self.op

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)

    def norm(self, *args, **kwargs) -> float:
        return self.op.norm(*args, **kwargs)


class Composition(LinearOperator):
    """(A ∘ B) x = A(B x); its adjoint is B* A*."""

    def __init__(self, left: LinearOperator, right: LinearOperator) -> None:
        if left.domain_shape != right.range_shape:
            raise ShapeError(
                f"cannot compose {left.name} @ {right.name}: {right.name} maps to shape {right.range_shape} "
                f"but {left.name} expects {left.domain_shape}"
            )
        if left.domain_complex != right.range_complex:
            kinds = ("real", "complex")
            raise ShapeError(
                f"cannot compose {left.name} @ {right.name}: {right.name} returns "
                f"{kinds[right.range_complex]} data but {left.name} expects {kinds[left.domain_complex]} data"
            )
        super().__init__(
            right.domain_shape, left.range_shape, domain_complex=right.domain_complex, range_complex=left.range_complex
        )
        self.left = left
        self.right = right

    @property
    def name(self) -> str:
        return f"({self.left.name} @ {self.right.name})"

    def _forward(self, x):
        return self.left._forward(self.right._forward(x))

    def _adjoint(self, y):
        return self.right._adjoint(self.left._adjoint(y))


class Sum(LinearOperator):
    """(A + B) x = A x + B x; its adjoint is A* + B*."""

    def __init__(self, a: LinearOperator, b: LinearOperator) -> None:
        if (a.domain_shape, a.range_shape) != (b.domain_shape, b.range_shape):
            raise ShapeError(
                f"cannot add {a.name} ({a.domain_shape} -> {a.range_shape}) and "
                f"{b.name} ({b.domain_shape} -> {b.range_shape}): shapes differ"
            )
        if (a.domain_complex, a.range_complex) != (b.domain_complex, b.range_complex):
            raise ShapeError(f"cannot add {a.name} and {b.name}: one is complex where the other is real")
        super().__init__(a.domain_shape, a.range_shape, domain_complex=a.domain_complex, range_complex=a.range_complex)
        self.a = a
        self.b = b

    @property
    def name(self) -> str:
        return f"({self.a.name} + {self.b.name})"

    def _forward(self, x):
        return self.a._forward(x) + self.b._forward(x)

    def _adjoint(self, y):
        return self.a._adjoint(y) + self.b._adjoint(y)


class Scaled(LinearOperator):
    """(a A) x = a (A x); its adjoint is conj(a) A*."""

    def __init__(self, op: LinearOperator, scalar) -> None:
        scalar = scalar.item() if isinstance(scalar, torch.Tensor) else scalar
        if isinstance(scalar, complex) and not (op.domain_complex or op.range_complex):
            raise ParameterError(f"cannot scale the real operator {op.name} by the complex number {scalar}")
        if not math.isfinite(abs(scalar)):
            raise ParameterError(f"cannot scale {op.name} by the non-finite number {scalar}")
        super().__init__(
            op.domain_shape, op.range_shape, domain_complex=op.domain_complex, range_complex=op.range_complex
        )
        self.op = op
        self.scalar = scalar

    @property
    def name(self) -> str:
        return f"{self.scalar} * {self.op.name}"

    def _forward(self, x):
        return self.op._forward(x) * self.scalar

    def _adjoint(self, y):
        conj = self.scalar.conjugate() if isinstance(self.scalar, complex) else self.scalar
        return self.op._adjoint(y) * conj

    def norm(self, *args, **kwargs) -> float:
        return abs(self.scalar) * self.op.norm(*args, **kwargs)
