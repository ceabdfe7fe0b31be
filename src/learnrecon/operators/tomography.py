"""2-D ray transforms (parallel and fan beam, flat detector) with exact adjoints, and angle subsets.

Geometry (units are the caller's: pixel size ``h = image_extent / W``): the image is centred at the
origin, row 0 at the top (see :mod:`learnrecon.operators._joseph`). At angle θ the detector axis is
``u = (cos θ, sin θ)`` and the rays travel along ``r = (sin θ, −cos θ)``; detector cell ``k`` of ``D``
is at ``s_k = (k − (D − 1)/2)·Δs`` along ``u``.

* Parallel beam: ray ``k`` is the line ``s_k u + t r``.
* Fan beam: the source sits at ``R_s r`` and the detector centre at ``−R_d r`` (``R_s`` = source_distance,
  ``R_d`` = detector_distance, both from the rotation centre); ray ``k`` joins the source to ``−R_d r + s_k u``.

Both match ASTRA's 'parallel' and 'fanflat' geometries with lengths in pixels (checked in the tests when
ASTRA is installed: parallel projections agree with ASTRA's 'linear' projector to ~1e-5).

The operator is the matrix of Joseph's line integrals (ASTRA's 'linear' projector), built once per
dtype and device, vectorised in chunks of rays, and stored as CSR together with its transpose, so
forward and adjoint are each one sparse-dense product and the adjoint is exact.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from learnrecon.errors import ParameterError
from learnrecon.operators._astra import astra_product
from learnrecon.operators._joseph import csr_transpose, joseph_csr
from learnrecon.operators._matrix_free import RayLines, matrix_free_product
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.fbp import fbp
from learnrecon.operators.symmetry import Symmetry, parallel_beam_symmetries
from learnrecon.runtime import check_memory

__all__ = ["FanBeam2D", "ParallelBeam2D", "RayTransform2D", "subset"]

#: Dtypes the sparse product runs in; other float dtypes (float16, bfloat16) are computed in float32.
_NATIVE = (torch.float32, torch.float64)

#: ``backend="auto"`` chooses the matrix-free backend when the CSR pair would take more than this in float32
#: (LoDoPaB's 362², 1000 angles, 513 detectors: 3.6 GB).
AUTO_MATRIX_FREE_BYTES = 2**30


def _image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    sizes = (image_size, image_size) if not isinstance(image_size, Sequence) else tuple(image_size)
    if len(sizes) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ParameterError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return sizes


def _angles(n_angles: int | None, angles, full_turn: float) -> torch.Tensor:
    if angles is None:
        if n_angles is None or int(n_angles) < 1:
            raise ParameterError(f"n_angles must be a positive integer, got {n_angles}")
        return torch.arange(int(n_angles), dtype=torch.float64) * (full_turn / int(n_angles))
    angles = torch.as_tensor(angles, dtype=torch.float64).reshape(-1)
    if angles.numel() == 0 or not bool(torch.isfinite(angles).all()):
        raise ParameterError("angles must be a non-empty sequence of finite numbers (radians)")
    if n_angles is not None and int(n_angles) != angles.numel():
        raise ParameterError(f"n_angles={n_angles} but {angles.numel()} angles were given; pass one of them")
    return angles


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ParameterError(f"{name} must be a positive finite number, got {value}")
    return value


class RayTransform2D(LinearOperator):
    """Common machinery of 2-D ray transforms: geometry, cached sparse matrices, subsets.

    Subclasses define :meth:`rays` (a point and a unit direction per detector cell) and the pixel to
    detector map used by filtered backprojection.
    """

    #: The angular range one full data set covers (π for parallel beam, 2π for fan beam).
    full_turn = math.pi

    #: Backends: "native" (learnrecon's cached CSR matrices, any device), "matrix_free" (the same Joseph weights
    #: computed on the fly at every product, any device: memory O(image + sinogram), more time; see
    #: :mod:`~learnrecon.operators._matrix_free`), "astra" (ASTRA's CPU projectors), or "auto": matrix-free when
    #: the CSR pair would take more than :data:`AUTO_MATRIX_FREE_BYTES` in float32, else native.
    BACKENDS = ("native", "matrix_free", "astra", "auto")

    def __init__(
        self, image_size, angles: torch.Tensor, n_detectors: int, image_extent, detector_spacing, backend: str
    ) -> None:
        if backend not in self.BACKENDS:
            raise ParameterError(f"unknown backend {backend!r}; choose one of {', '.join(self.BACKENDS)}")
        self.backend = "native" if backend == "auto" else backend
        self.image_shape = _image_shape(image_size)
        H, W = self.image_shape
        if int(n_detectors) < 1:
            raise ParameterError(f"n_detectors must be a positive integer, got {n_detectors}")
        self.angles = angles
        self.n_detectors = int(n_detectors)
        self.image_extent = _positive("image_extent", W if image_extent is None else image_extent)
        self.pixel_size = self.image_extent / W
        self.detector_spacing = _positive(
            "detector_spacing", self._default_spacing() if detector_spacing is None else detector_spacing
        )
        super().__init__(self.image_shape, (angles.numel(), self.n_detectors))
        if backend == "auto" and self.memory_estimate(torch.float32) > AUTO_MATRIX_FREE_BYTES:
            self.backend = "matrix_free"

    @staticmethod
    def default_detectors(image_shape: tuple[int, int]) -> int:
        """The odd number of pixel-sized cells that covers the image diagonal (183 for 128²)."""
        n = math.ceil(math.hypot(*image_shape) - 1e-9)
        return n + 1 - n % 2

    @property
    def image_radius(self) -> float:
        """Half the image diagonal: every ray that meets the image passes this close to the origin."""
        H, W = self.image_shape
        return 0.5 * self.pixel_size * math.hypot(H, W)

    def detector_positions(self) -> torch.Tensor:
        """Centres s_k of the detector cells along the detector axis, (D,) float64."""
        k = torch.arange(self.n_detectors, dtype=torch.float64)
        return (k - (self.n_detectors - 1) / 2) * self.detector_spacing

    def _default_spacing(self) -> float:
        return self.pixel_size

    def rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A point on and the unit direction of every ray, each (n_angles·D, 2) float64, angle-major."""
        raise NotImplementedError

    #: The keyword options of :meth:`pseudo_inverse` (those of :func:`~learnrecon.operators.fbp.fbp`).
    pseudo_inverse_options = ("filter", "frequency_scaling")

    def pseudo_inverse(self, y: torch.Tensor, filter: str = "hann", frequency_scaling: float = 1.0) -> torch.Tensor:  # noqa: A002
        """Filtered backprojection of ``y`` (:func:`~learnrecon.operators.fbp.fbp`; a Hann filter by default, the
        initial image of the learned models)."""
        return fbp(y, self, filter, frequency_scaling)

    def fbp_weighting(self) -> tuple[float, torch.Tensor | None, float]:
        """What filtered backprojection does to the data before the ramp filter: the detector spacing it filters
        on, weights per detector cell (or None) and the filter's scale. Parallel beam: ``(Δs, None, 1)``."""
        return self.detector_spacing, None, 1.0

    @property
    def backprojection_is_adjoint(self) -> bool:
        """Whether FBP may backproject with the cached adjoint (parallel beam, detector cells no wider than a
        pixel; see :mod:`~learnrecon.operators.fbp`) instead of pixel-driven interpolation."""
        return self.detector_spacing <= self.pixel_size

    def angle_weights(self) -> torch.Tensor:
        """Quadrature weights Δθ of the angles over :attr:`full_turn` (π/n for n uniform parallel angles)."""
        n = self.angles.numel()
        if n == 1:
            return torch.full((1,), self.full_turn, dtype=torch.float64)
        theta = torch.remainder(self.angles, self.full_turn)
        order = torch.argsort(theta)
        sorted_theta = theta[order]
        gaps = torch.diff(sorted_theta, append=sorted_theta[:1] + self.full_turn)
        weights = torch.empty(n, dtype=torch.float64)
        weights[order] = 0.5 * (gaps + torch.roll(gaps, 1))
        return weights

    # ------------------------------------------------------------------ sparse matrices
    def memory_estimate(self, dtype: torch.dtype = torch.float32) -> int:
        """Bytes of the two CSR system matrices in ``dtype``, built on first use: ``max(H, W)`` weights a ray
        (Joseph's method weighs two pixels in each row or column a ray crosses; rays through the image's edges
        cross fewer: at 362², 1000 angles and 513 detectors the matrices hold 0.8·362 a ray)."""
        rays = self.angles.numel() * self.n_detectors
        if self.backend == "astra":
            return 0
        if self.backend == "matrix_free":
            return 24 * rays + 16 * max(self.image_shape)  # the per-ray lines (3 numbers of 8 bytes), the steps
        nonzeros = rays * max(self.image_shape)
        value = torch.empty((), dtype=dtype).element_size()
        return 2 * (nonzeros * (value + 8) + (rays + 1) * 8) + (math.prod(self.image_shape) + 1) * 8

    def _matrices(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        def build():
            check_memory(self.memory_estimate(dtype), f"the system matrices of {self!r}")
            p0, r = self.rays()
            crow, col, val = joseph_csr(p0, r, self.image_shape, self.pixel_size, dtype)
            size = (self.range_shape[0] * self.range_shape[1], self.image_shape[0] * self.image_shape[1])
            with warnings.catch_warnings():  # the builder's output is valid CSR (tested entry by entry)
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
                forward = torch.sparse_csr_tensor(crow, col, val, size=size, check_invariants=False).to(device)
                t_crow, t_col, t_val = csr_transpose(crow, col, val, size[1])
                adjoint = torch.sparse_csr_tensor(
                    t_crow, t_col, t_val, size=(size[1], size[0]), check_invariants=False
                ).to(device)
            return forward, adjoint

        return self._cached(("matrix", dtype, device), build)

    def _lines(self, device: torch.device) -> RayLines:
        """The matrix-free backend's per-ray lines on ``device`` (cached)."""

        def build():
            p0, r = self.rays()
            return RayLines(p0, r, self.image_shape, self.pixel_size, device)

        return self._cached(("lines", device), build)

    def memory_bytes(self) -> int:
        """Bytes held by the cached system matrices (all dtypes and devices built so far), or by the matrix-free
        backend's per-ray lines."""
        total = 0
        for key, value in self._cache.items():
            if key[0] == "lines":
                total += value.nbytes()
            if key[0] == "matrix":
                for m in value:
                    total += sum(t.numel() * t.element_size() for t in (m.crow_indices(), m.col_indices(), m.values()))
        return total

    def _product(self, matrix_index: int, x: torch.Tensor, in_shape, out_shape) -> torch.Tensor:
        work = x.dtype if x.dtype in _NATIVE else torch.float32
        matrix = self._matrices(work, x.device)[matrix_index]
        batch = x.shape[: x.ndim - 2]
        flat = x.reshape(-1, in_shape[0] * in_shape[1]).to(work)
        out = torch.sparse.mm(matrix, flat.transpose(0, 1).contiguous())
        return out.transpose(0, 1).reshape(*batch, *out_shape).to(x.dtype)

    def _matrix_free(self, x: torch.Tensor, in_shape, out_shape, adjoint: bool) -> torch.Tensor:
        work = x.dtype if x.dtype in _NATIVE else torch.float32
        batch = x.shape[: x.ndim - 2]
        flat = x.reshape(-1, in_shape[0] * in_shape[1]).to(work)
        out = matrix_free_product(self._lines(x.device), flat, self.image_shape[0] * self.image_shape[1], adjoint)
        return out.reshape(*batch, *out_shape).to(x.dtype)

    def _forward(self, x):
        if self.backend == "astra":
            return astra_product(self, x, adjoint=False)
        if self.backend == "matrix_free":
            return self._matrix_free(x, self.image_shape, self.range_shape, adjoint=False)
        return self._product(0, x, self.image_shape, self.range_shape)

    def _adjoint(self, y):
        if self.backend == "astra":
            return astra_product(self, y, adjoint=True)
        if self.backend == "matrix_free":
            return self._matrix_free(y, self.range_shape, self.image_shape, adjoint=True)
        return self._product(1, y, self.range_shape, self.image_shape)

    # ------------------------------------------------------------------ subsets
    def _with_angles(self, angles: torch.Tensor) -> RayTransform2D:
        raise NotImplementedError

    def __getitem__(self, index) -> RayTransform2D:
        """The operator restricted to the angles ``index`` (int, slice, sequence, int or bool tensor)."""
        picked = torch.arange(self.angles.numel())[index].reshape(-1)
        if picked.numel() == 0:
            raise ParameterError(f"angle index {index!r} selects no angles")
        key = ("subset", tuple(picked.tolist()))
        return self._cached(key, lambda: self._with_angles(self.angles[picked]))

    def __repr__(self) -> str:
        return (
            f"{self.name}(image {self.image_shape}, {self.angles.numel()} angles, {self.n_detectors} detectors, "
            f"pixel {self.pixel_size:g}, detector spacing {self.detector_spacing:g})"
        )


class ParallelBeam2D(RayTransform2D):
    """Parallel-beam line-integral transform of (*batch, H, W) images to (*batch, n_angles, n_detectors).

    Args:
        image_size: int or (H, W).
        n_angles: number of angles uniform in [0, π) (or None when ``angles`` is given).
        n_detectors: detector cells (default: odd count covering the image diagonal, 183 for 128²).
        angles: explicit angles in radians (overrides the uniform default).
        image_extent: physical width of the image (default W: pixel size 1).
        detector_spacing: detector cell width (default: the pixel size).
        backend: "native" (cached CSR matrices), "matrix_free" (the same weights computed on the fly), "auto"
            (matrix-free above 1 GiB of CSR) or "astra" (ASTRA's 'linear' CPU projector, image by image).
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        n_angles: int | None = None,
        n_detectors: int | None = None,
        angles=None,
        image_extent: float | None = None,
        detector_spacing: float | None = None,
        backend: str = "native",
    ) -> None:
        shape = _image_shape(image_size)
        super().__init__(
            shape,
            _angles(n_angles, angles, math.pi),
            self.default_detectors(shape) if n_detectors is None else n_detectors,
            image_extent,
            detector_spacing,
            backend,
        )

    def rays(self):
        cos, sin = torch.cos(self.angles)[:, None], torch.sin(self.angles)[:, None]
        s = self.detector_positions()[None]
        p0 = torch.stack([s * cos, s * sin], dim=-1).reshape(-1, 2)
        shape = (self.angles.numel(), self.n_detectors)
        r = torch.stack([sin.expand(shape), -cos.expand(shape)], dim=-1).reshape(-1, 2)
        return p0, r

    def pixel_detector_map(self, angles: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
        """Fractional detector index of each pixel centre (x, y) at each angle, (A, P), and unit weights."""
        s = x[None] * torch.cos(angles)[:, None] + y[None] * torch.sin(angles)[:, None]
        return s / self.detector_spacing + (self.n_detectors - 1) / 2, None

    def symmetries(self, tol: float = 1e-9) -> list[Symmetry]:
        """The quarter turns and reflections of the grid this geometry carries to permutations of the data
        (:func:`~learnrecon.operators.symmetry.parallel_beam_symmetries`), the identity first."""
        return parallel_beam_symmetries(self.angles, self.image_shape, tol)

    def _with_angles(self, angles):
        return ParallelBeam2D(
            self.image_shape, None, self.n_detectors, angles, self.image_extent, self.detector_spacing, self.backend
        )

    def config(self) -> dict:
        """Constructor arguments, for :func:`learnrecon.operators.registry.build_operator`."""
        return {
            "type": "ParallelBeam2D",
            "image_size": list(self.image_shape),
            "n_detectors": self.n_detectors,
            "angles": self.angles.tolist(),
            "image_extent": self.image_extent,
            "detector_spacing": self.detector_spacing,
            **({"backend": self.backend} if self.backend != "native" else {}),
        }


class FanBeam2D(RayTransform2D):
    """Fan-beam line-integral transform with a flat detector, (*batch, H, W) → (*batch, n_angles, n_detectors).

    Args:
        image_size: int or (H, W).
        n_angles: number of source angles uniform in [0, 2π) (or None when ``angles`` is given).
        n_detectors: detector cells.
        source_distance: R_s, source to rotation centre; the source must lie outside the image.
        detector_distance: R_d ≥ 0, rotation centre to detector.
        angles: explicit angles in radians.
        image_extent: physical width of the image (default W: pixel size 1).
        detector_spacing: detector cell width (default: the detector just covers the image's fan).
        backend: "native" (cached CSR matrices), "matrix_free" (the same weights computed on the fly), "auto"
            (matrix-free above 1 GiB of CSR) or "astra" (ASTRA's 'line_fanflat' CPU projector).
    """

    full_turn = 2 * math.pi

    def __init__(
        self,
        image_size: int | Sequence[int],
        n_angles: int | None,
        n_detectors: int,
        source_distance: float,
        detector_distance: float,
        angles=None,
        image_extent: float | None = None,
        detector_spacing: float | None = None,
        backend: str = "native",
    ) -> None:
        self.source_distance = _positive("source_distance", source_distance)
        self.detector_distance = float(detector_distance)
        if not (self.detector_distance >= 0 and math.isfinite(self.detector_distance)):
            raise ParameterError(f"detector_distance must be a finite number >= 0, got {detector_distance}")
        shape = _image_shape(image_size)
        extent = _positive("image_extent", shape[1] if image_extent is None else image_extent)
        radius = 0.5 * extent / shape[1] * math.hypot(*shape)
        if self.source_distance <= radius:
            raise ParameterError(
                f"source_distance {self.source_distance:g} puts the source inside the image (radius "
                f"{radius:g}); use a source_distance larger than the image half-diagonal"
            )
        super().__init__(shape, _angles(n_angles, angles, 2 * math.pi), n_detectors, extent, detector_spacing, backend)

    def _default_spacing(self) -> float:
        # The fan of the image's circumscribed circle, magnified onto the detector, split into the cells.
        half_angle = math.asin(self.image_radius / self.source_distance)
        half_width = (self.source_distance + self.detector_distance) * math.tan(half_angle)
        return 2 * half_width / self.n_detectors

    @property
    def magnification(self) -> float:
        """(R_s + R_d) / R_s: detector coordinates over coordinates at the rotation centre."""
        return (self.source_distance + self.detector_distance) / self.source_distance

    def fbp_weighting(self) -> tuple[float, torch.Tensor | None, float]:
        """FBP on a virtual detector through the rotation centre (spacing Δs·R_s/(R_s + R_d)), the data weighted
        by R_s/√(R_s² + s²) and the filter halved (each ray is measured twice over [0, 2π))."""
        s = self.detector_positions() / self.magnification
        return (
            self.detector_spacing / self.magnification,
            self.source_distance / torch.sqrt(self.source_distance**2 + s**2),
            0.5,
        )

    @property
    def backprojection_is_adjoint(self) -> bool:
        """Never: fan-beam FBP weights each pixel by 1/U², so it backprojects pixel by pixel."""
        return False

    def rays(self):
        cos, sin = torch.cos(self.angles)[:, None], torch.sin(self.angles)[:, None]
        s = self.detector_positions()[None]
        source = torch.stack([self.source_distance * sin, -self.source_distance * cos], dim=-1)  # (A, 1, 2)
        cell = torch.stack(
            [-self.detector_distance * sin + s * cos, self.detector_distance * cos + s * sin], dim=-1
        )  # (A, D, 2)
        direction = cell - source
        direction = direction / direction.norm(dim=-1, keepdim=True)
        return source.expand_as(cell).reshape(-1, 2), direction.reshape(-1, 2)

    def pixel_detector_map(self, angles: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
        """Fractional detector index of each pixel centre at each angle (A, P), and the FBP weight 1/U².

        U = L / R_s with L = R_s − x sin θ + y cos θ the pixel's distance from the source along the
        central ray; the pixel projects to s = (R_s + R_d)(x cos θ + y sin θ) / L on the detector.
        """
        cos, sin = torch.cos(angles)[:, None], torch.sin(angles)[:, None]
        depth = self.source_distance - x[None] * sin + y[None] * cos
        s = (self.source_distance + self.detector_distance) * (x[None] * cos + y[None] * sin) / depth
        return s / self.detector_spacing + (self.n_detectors - 1) / 2, (self.source_distance / depth) ** 2

    def _with_angles(self, angles):
        return FanBeam2D(
            self.image_shape,
            None,
            self.n_detectors,
            self.source_distance,
            self.detector_distance,
            angles,
            self.image_extent,
            self.detector_spacing,
            self.backend,
        )

    def config(self) -> dict:
        """Constructor arguments, for :func:`learnrecon.operators.registry.build_operator`."""
        return {
            "type": "FanBeam2D",
            "image_size": list(self.image_shape),
            "n_angles": None,
            "n_detectors": self.n_detectors,
            "source_distance": self.source_distance,
            "detector_distance": self.detector_distance,
            "angles": self.angles.tolist(),
            "image_extent": self.image_extent,
            "detector_spacing": self.detector_spacing,
            **({"backend": self.backend} if self.backend != "native" else {}),
        }


def subset(op: RayTransform2D, angle_indices, *, cached: bool = True) -> RayTransform2D:
    """``op`` restricted to the angles ``angle_indices``; the same as ``op[angle_indices]``. With ``cached=False``
    the subset is built afresh and not kept in ``op``'s cache (for random subsets drawn anew at every training
    step, which would otherwise pile up there with their matrices)."""
    if not isinstance(op, RayTransform2D):
        raise ParameterError(f"only ray transforms can be restricted to angle subsets, got {op.name}")
    if cached:
        return op[angle_indices]
    picked = torch.arange(op.angles.numel())[angle_indices].reshape(-1)
    if picked.numel() == 0:
        raise ParameterError(f"angle index {angle_indices!r} selects no angles")
    return op._with_angles(op.angles[picked])
