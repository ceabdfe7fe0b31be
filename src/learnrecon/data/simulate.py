"""Simulate a data set: phantoms (or users' images) -> forward operator -> noise -> HDF5 file.

Each sample ``i`` gets its noise from a generator seeded by ``(seed, i)``, and the phantoms are
reproducible per image too, so the same arguments give the same file on every machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

import learnrecon
from learnrecon import noise as noise_models
from learnrecon import phantoms
from learnrecon.data.fastmri import TARGETS, rss
from learnrecon.data.hdf5 import FORMAT, FORMAT_VERSION
from learnrecon.data.readers import read_images
from learnrecon.errors import DTypeError, ParameterError, ShapeError
from learnrecon.io.files import atomic_path
from learnrecon.io.lock import output_lock
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.mri import MRI
from learnrecon.operators.registry import operator_config
from learnrecon.operators.sensitivity import acs_width
from learnrecon.runtime import check_memory

__all__ = [
    "NoiseSpec",
    "Phantoms",
    "UPSAMPLINGS",
    "as_images",
    "chunk_bytes",
    "finer_operator",
    "make_phantoms",
    "measure",
    "parse_noise",
    "prelog_operator",
    "sample_generator",
    "simulate",
    "simulate_fastmri",
    "simulate_pairs",
    "upsample_bilinear",
]

#: LoDoPaB-CT's maximal attenuation (1/m), used when a Poisson spec names no μ_max.
LODOPAB_MU_MAX = 81.35858


@dataclass(frozen=True)
class NoiseSpec:
    """A noise model: ``kind`` in {"none", "relative", "gaussian", "poisson", "counts"} and its parameters.

    ``poisson`` gives post-log data (LoDoPaB's convention), ``counts`` the photon counts themselves (pre-log data
    of :class:`~learnrecon.operators.nonlinear.BeerLambert`, with ``readout`` σ_e photons of electronic noise);
    both draw the same Poisson counts from the same generator.
    """

    kind: str
    value: float = 0.0
    mu_max: float = LODOPAB_MU_MAX
    readout: float = 0.0

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind == "poisson":
            return f"poisson:{self.value!r}:{self.mu_max!r}"
        if self.kind == "counts":
            return f"counts:{self.value!r}:{self.mu_max!r}:{self.readout!r}"
        return f"{self.kind}:{self.value!r}"

    def apply(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Return noisy data for clean data ``y`` (one sample or a batch; line integrals for poisson and counts)."""
        if self.kind == "none":
            return y
        if self.kind == "relative":
            return noise_models.gaussian(y, relative=self.value, generator=generator)
        if self.kind == "gaussian":
            return noise_models.gaussian(y, sigma=self.value, generator=generator)
        if self.kind == "counts":
            return noise_models.poisson_counts(y, self.value, self.mu_max, generator, readout=self.readout)
        return noise_models.poisson_prelog(y, photons=self.value, mu_max=self.mu_max, generator=generator)


def parse_noise(spec: str) -> NoiseSpec:
    """Parse ``none``, ``relative:0.05`` (σ = 0.05·mean|y|), ``gaussian:0.1`` (absolute σ),
    ``poisson:4096[:81.35858]`` (photons per detector pixel, optional μ_max; post-log data as in LoDoPaB) or
    ``counts:4096[:81.35858[:5]]`` (the photon counts themselves, pre-log data, optional read-out noise σ_e)."""
    usage = (
        "use none, relative:<fraction>, gaussian:<sigma>, poisson:<photons>[:<mu_max>] or "
        "counts:<photons>[:<mu_max>[:<readout>]]"
    )
    parts = spec.strip().lower().split(":")
    kind = parts[0]
    if kind == "none" and len(parts) == 1:
        return NoiseSpec("none")
    most = {"relative": 2, "gaussian": 2, "poisson": 3, "counts": 4}
    if kind not in most or not 2 <= len(parts) <= most[kind]:
        raise ParameterError(f"cannot parse noise spec {spec!r}; {usage}")
    try:
        values = [float(p) for p in parts[1:]]
    except ValueError as err:
        raise ParameterError(f"noise spec {spec!r} has a non-numeric value; {usage}") from err
    if any(not v >= 0 for v in values) or any(v == float("inf") for v in values):
        raise ParameterError(f"noise spec {spec!r} needs finite non-negative values; {usage}")
    if kind in ("poisson", "counts") and (values[0] == 0 or (len(values) > 1 and values[1] == 0)):
        raise ParameterError(f"{kind} noise needs a positive photon count and a positive mu_max, got {spec!r}")
    return NoiseSpec(kind, *values)


def prelog_operator(op, noise: NoiseSpec):
    """The operator whose data ``noise`` makes: for ``counts`` noise the pre-log model
    :class:`~learnrecon.operators.nonlinear.BeerLambert` of the ray transform ``op`` (or ``op`` itself if it is
    that model, with the same photons and μ_max), else ``op`` (which must then not be a BeerLambert model)."""
    from learnrecon.operators.nonlinear import BeerLambert

    if noise.kind != "counts":
        if isinstance(op, BeerLambert):
            raise ParameterError(
                f"{op!r} measures photon counts; simulate its data with noise counts:{op.photons:g}:{op.mu_max:g}"
            )
        return op
    if not isinstance(op, BeerLambert):
        return BeerLambert(op, noise.value, noise.mu_max)
    if (op.photons, op.mu_max) != (noise.value, noise.mu_max):
        raise ParameterError(
            f"noise {noise} contradicts {op!r}: photons and mu_max must be the operator's "
            f"(counts:{op.photons:g}:{op.mu_max:g})"
        )
    return op


def sample_generator(seed: int, index: int, stream: int = 0) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, index, stream)``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + index) * 7 + stream)


class Phantoms:
    """``n`` ground-truth images made chunk by chunk: ``chunk(start, stop)`` gives images ``start … stop − 1``
    ``(k, 1, H, W)`` float32 (complex64 for MRI phantoms) and their labels ``(k, H, W)`` (or None), so that a
    data set larger than memory is simulated in memory bounded by the chunk. ``info`` describes them for the
    file's attributes."""

    def __init__(
        self,
        n: int,
        shape: tuple[int, int],
        chunk: Callable[[int, int], tuple[torch.Tensor, torch.Tensor | None]],
        info: dict,
        has_labels: bool,
    ) -> None:
        self.n, self.shape, self.chunk, self.info, self.has_labels = n, tuple(shape), chunk, info, has_labels

    def __len__(self) -> int:
        return self.n

    @classmethod
    def of(cls, x: torch.Tensor, labels: torch.Tensor | None = None, info: dict | None = None) -> Phantoms:
        """The images of a tensor ``x`` ``(n, 1, H, W)`` (and ``labels`` ``(n, H, W)``)."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ShapeError(f"truth has shape {tuple(x.shape)}; it must be (n, 1, H, W) images")
        if labels is not None and tuple(labels.shape) != (x.shape[0], *x.shape[-2:]):
            raise ShapeError(f"labels have shape {tuple(labels.shape)}; the images need ({x.shape[0]}, H, W) labels")
        return cls(
            x.shape[0],
            tuple(x.shape[-2:]),
            lambda start, stop: (x[start:stop].float(), None if labels is None else labels[start:stop]),
            info or {},
            labels is not None,
        )

    @classmethod
    def drawn(cls, source, n: int, shape: tuple[int, int], *, seed: int, info: dict | None = None) -> Phantoms:
        """Phantoms ``0 … n − 1`` of ``seed`` from ``source`` (a :class:`~learnrecon.data.sources.PhantomSource`:
        ``source.draw(k, shape, seed=, start=)``), without labels: the images a training run with that phantom
        section and seed simulates on the fly."""

        def chunk(start: int, stop: int) -> tuple[torch.Tensor, None]:
            return source.draw(stop - start, shape, seed=seed, start=start), None

        return cls(n, tuple(shape), chunk, info or {}, False)


def make_phantoms(
    kind: str,
    *,
    n: int,
    size: int,
    seed: int = 0,
    supersample: int = 1,
    scaling: str = phantoms.DEFAULT_SCALING,
    truth: str | Path | None = None,
    truth_key: str | None = None,
) -> Phantoms:
    """``n`` ground-truth images of ``size × size`` (:class:`Phantoms`, made chunk by chunk) and their labels.

    ``kind`` is "ellipses" (random ellipses as in Adler & Öktem, intensities scaled by ``scaling``, see
    :func:`learnrecon.phantoms.random_ellipses`), "dival-ellipses" (DIVal's ellipses), "shepp-logan" (n
    copies of the modified phantom) or "file" (images read from ``truth``; ``n`` and ``size`` then only
    select and check; ``truth_key`` names the array of an ``.npz`` file that holds several).
    """
    shape = (size, size)
    if kind in phantoms.ELLIPSE_PHANTOMS:

        def ellipses(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            options = {"supersample": supersample, "scaling": scaling, "return_labels": True}
            x, labels = phantoms.draw_ellipses(kind, n=stop - start, size=size, seed=seed, start=start, **options)
            return x.float(), labels

        info = {"kind": kind, "n": n, "size": size, "seed": seed, "supersample": supersample}
        return Phantoms(n, shape, ellipses, {**info, "scaling": scaling} if kind == "ellipses" else info, True)
    if kind == "shepp-logan":
        image, labels = phantoms.shepp_logan(size).float(), phantoms.shepp_logan_labels(size)
        copies = lambda start, stop: (image.expand(stop - start, 1, *shape), labels.expand(stop - start, *shape))  # noqa: E731
        return Phantoms(n, shape, copies, {"kind": kind, "n": n, "size": size}, True)
    if kind == "file":
        if truth is None:
            raise ParameterError("--phantom file needs --truth PATH (a .npy, .npz, .dcm file or a DICOM folder)")
        x = read_images(truth, truth_key)[:n]
        if x.shape[-2:] != shape:
            raise ShapeError(
                f"images in {truth} are {tuple(x.shape[-2:])} but --size is {size}; pass --size {x.shape[-1]}"
                if x.shape[-1] == x.shape[-2]
                else f"images in {truth} are {tuple(x.shape[-2:])}; only square images are supported"
            )
        return Phantoms.of(x, info={"kind": kind, "path": str(truth), "n": int(x.shape[0])})
    raise ParameterError(f"unknown phantom {kind!r}; choose ellipses, dival-ellipses, shepp-logan or file")


def simulate(
    out: str | Path,
    op: LinearOperator,
    x: Phantoms | torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    noise: NoiseSpec | str = "none",
    seed: int = 0,
    phantom_info: dict | None = None,
    overwrite: bool = False,
    chunk_size: int = 64,
    progress: bool = True,
) -> Path:
    """Compute ``y_i = noise(op(x_i))`` for every image and write truth, data and labels to ``out`` (HDF5),
    ``chunk_size`` images at a time (memory bounded by the chunk, not by the data set).

    Args:
        out: output file; refused if it exists unless ``overwrite``, or while another process writes it;
            written atomically.
        op: the forward operator, storable with :func:`operator_config`; its domain must be the images' ``(H, W)``.
        x: ground truth: :class:`Phantoms` (see :func:`make_phantoms`) or a tensor ``(n, 1, H, W)``.
        labels: with a tensor ``x``, optional ``(n, H, W)`` integer labels.
        noise: a :class:`NoiseSpec` or its string form (see :func:`parse_noise`); ``counts`` noise writes photon
            counts and stores the pre-log model :class:`~learnrecon.operators.nonlinear.BeerLambert` of ``op``
            (:func:`prelog_operator`) as the file's operator.
        seed: seeds the noise of sample ``i`` through :func:`sample_generator`.

    An MRI operator (complex data) writes fastMRI's layout instead, with the complex truth and the coil maps
    (:func:`simulate_fastmri`; that layout holds no labels, so ``labels`` are refused).
    """
    if op.range_complex:
        if labels is not None:
            raise ParameterError("MRI data are written in fastMRI's layout, which holds no labels; leave out labels")
        return simulate_fastmri(out, op, x, noise=noise, seed=seed, phantom_info=phantom_info, overwrite=overwrite,
                                chunk_size=chunk_size, progress=progress)  # fmt: skip
    noise = parse_noise(noise) if isinstance(noise, str) else noise
    op = prelog_operator(op, noise)
    images = x if isinstance(x, Phantoms) else Phantoms.of(x, labels, phantom_info)
    if images.shape != tuple(op.domain_shape):
        raise ShapeError(
            f"truth has images of {images.shape} but the operator needs (n, 1, {', '.join(map(str, op.domain_shape))})"
        )
    chunk_size = max(1, min(chunk_size, images.n))
    check_memory(chunk_bytes(op, images.shape, chunk_size), f"simulating {chunk_size} images of {images.shape}")
    attrs = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "operator": json.dumps(operator_config(op)),
        "phantom": json.dumps(images.info if isinstance(x, Phantoms) else phantom_info or {}),
        "noise": str(noise),
        "seed": seed,
        "learnrecon_version": learnrecon.__version__,
    }
    n = images.n
    with output_lock(out, "learnrecon simulate"), atomic_path(out, overwrite) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(attrs)
        x_set = f.create_dataset("x", shape=(n, 1, *images.shape), dtype="float32", chunks=(1, 1, *images.shape))
        label_set = (
            f.create_dataset("labels", shape=(n, *images.shape), dtype="int16", chunks=(1, *images.shape))
            if images.has_labels
            else None
        )
        y_set = f.create_dataset("y", shape=(n, 1, *op.range_shape), dtype="float32", chunks=(1, 1, *op.range_shape))
        for start in tqdm(range(0, n, chunk_size), desc="simulating", unit="chunk", disable=not progress):
            stop = min(n, start + chunk_size)
            truth, chunk_labels = images.chunk(start, stop)
            x_set[start:stop] = truth.numpy()
            if label_set is not None:
                label_set[start:stop] = chunk_labels.numpy().astype("int16")
            y_set[start:stop] = measure(op, truth, noise, seed=seed, start=start).numpy()
    return Path(out)


def chunk_bytes(op: LinearOperator, shape: tuple[int, int], chunk: int) -> int:
    """Bytes that simulating ``chunk`` images of ``shape`` with ``op`` holds at once: the images (and their
    labels), their data, and the operator's own memory (its system matrices, for a ray transform)."""
    pixels, data = shape[0] * shape[1], math.prod(op.range_shape)
    linear = getattr(op, "ray", op)  # a pre-log model holds its ray transform
    return chunk * (pixels * (4 + 8 + 2 * 8) + 3 * data * 4) + linear.memory_estimate(torch.float32)


def measure(op: LinearOperator, x: torch.Tensor, noise: NoiseSpec | str, *, seed: int, start: int = 0) -> torch.Tensor:
    """Noisy measurements ``noise(op(x_i))`` of a batch ``x`` ``(n, 1, H, W)`` whose first item is sample ``start``.

    Sample ``start + i`` draws its noise from :func:`sample_generator` ``(seed, start + i)``, so the result
    does not depend on how a data set is split into batches.
    """
    noise = parse_noise(noise) if isinstance(noise, str) else noise
    with torch.no_grad():
        clean = prelog_operator(op, noise).ray(x) if noise.kind == "counts" else op(x)  # counts: of line integrals
    return torch.stack([noise.apply(clean[i], sample_generator(seed, start + i)) for i in range(x.shape[0])])


def finer_operator(op: LinearOperator, size: int) -> LinearOperator:
    """The same ray transform on a ``size × size`` grid over the same physical image (same angles, detector
    and extent), for simulating measurements without the inverse crime (data made by the operator that
    reconstructs them)."""
    from learnrecon.operators.registry import build_operator

    cfg = operator_config(op)
    if "image_extent" not in cfg or cfg["image_size"][0] != cfg["image_size"][1]:
        raise ParameterError(f"simulating on a finer grid needs a ray transform of a square image, got {op.name}")
    if size < cfg["image_size"][0]:
        raise ParameterError(f"simulation size {size} is smaller than the image size {cfg['image_size'][0]}")
    return build_operator({**cfg, "image_size": [size, size]})


#: How the phantom on a finer simulation grid is made: drawn again on that grid, or the image bilinearly upsampled.
UPSAMPLINGS = ("render", "bilinear")


def simulate_pairs(
    render: Callable[[tuple[int, int]], torch.Tensor],
    op: LinearOperator,
    noise: NoiseSpec | str,
    *,
    seed: int,
    start: int = 0,
    simulation_op: LinearOperator | None = None,
    upsampling: str = "render",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Phantoms ``x = render((H, W))`` (n, 1, H, W) on ``op``'s image grid, as ``op``'s images
    (:func:`as_images`: shape ``(n, 1, *op.domain_shape)``, complex for complex images), and their noisy
    measurements (see :func:`measure`), simulated by ``simulation_op`` (a :func:`finer_operator` of ``op``,
    grid H' × W') when given, from

    - ``upsampling="render"``: ``render((H', W'))``, the phantoms drawn again on the finer grid (``render``
      must then draw the same phantoms at every size: analytic phantoms, ellipses and Shepp–Logan);
    - ``upsampling="bilinear"``: ``x`` bilinearly interpolated to H' × W' by :func:`upsample_bilinear`, the
      DIVal ellipse data set's protocol (Baguer et al. 2020).
    """
    if upsampling not in UPSAMPLINGS:
        raise ParameterError(f"unknown upsampling {upsampling!r}; choose one of {', '.join(UPSAMPLINGS)}")
    x = as_images(render(tuple(op.domain_shape[-2:])), op)
    if simulation_op is None:
        return x, measure(op, x, noise, seed=seed, start=start)
    fine_shape = tuple(simulation_op.domain_shape[-2:])
    fine = render(fine_shape) if upsampling == "render" else upsample_bilinear(x, fine_shape)
    return x, measure(simulation_op, as_images(fine, simulation_op), noise, seed=seed, start=start)


def as_images(x: torch.Tensor, op: LinearOperator) -> torch.Tensor:
    """Images ``x`` (n, 1, H, W) as ``op``'s images: shape ``(n, 1, *op.domain_shape)`` (e.g. ``(n, 1, 1, H, W)``
    for multi-coil MRI), complex (with zero phase) when ``op``'s images are complex."""
    if tuple(x.shape[-2:]) != tuple(op.domain_shape[-2:]):
        raise ShapeError(f"phantoms of shape {tuple(x.shape[-2:])} do not fit {op.name}'s images {op.domain_shape}")
    if x.is_complex() and not op.domain_complex:
        raise DTypeError(
            f"the phantoms are complex (MRI phantoms) but {op.name}'s images are real; use a real phantom type "
            "(ellipses, dival-ellipses) or a complex operator (MRI)"
        )
    x = x.reshape(x.shape[0], 1, *op.domain_shape)
    if op.domain_complex and not x.is_complex():
        x = torch.complex(x, torch.zeros_like(x))
    return x


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Images ``x`` (..., H, W) bilinearly interpolated to ``size`` (H', W') as scikit-image's
    ``resize(x, size, order=1)`` does it, which DIVal uses to simulate its ellipse data.

    Output pixel ``j`` samples the input at ``c = (j + ½)·H/H' − ½`` (pixel centres aligned); past the
    outermost centres the image is mirrored about them (``x[−1] = x[1]``, scikit-image's "reflect").
    """
    for dim, n_out in ((-2, size[0]), (-1, size[1])):
        n = x.shape[dim]
        shape = [1] * x.ndim
        shape[dim] = n_out
        c = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (n / n_out) - 0.5
        low = torch.floor(c)
        weight = (c - low).to(device=x.device, dtype=x.dtype).reshape(shape)
        below, above = (_mirror(low.long() + k, n).to(x.device) for k in (0, 1))
        x = (1 - weight) * x.index_select(dim, below) + weight * x.index_select(dim, above)
    return x


def _mirror(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices ``i`` into ``n`` samples mirrored about the outermost ones (…, 2, 1, 0, 1, 2, …, n−1, n−2, …)."""
    period = max(2 * (n - 1), 1)
    i = i.remainder(period)
    return torch.where(i > n - 1, period - i, i)


def simulate_fastmri(
    out: str | Path,
    op: MRI,
    x: Phantoms | torch.Tensor,
    *,
    noise: NoiseSpec | str = "none",
    seed: int = 0,
    phantom_info: dict | None = None,
    overwrite: bool = False,
    chunk_size: int = 64,
    progress: bool = True,
) -> Path:
    """Write ``y_i = M ⊙ noise(op(x_i))`` for every image, with the mask, the targets, the complex truth and the
    coil maps, to ``out`` in fastMRI's layout (:mod:`learnrecon.data.fastmri`), ``chunk_size`` images at a time.

    Args:
        out: output file; refused if it exists unless ``overwrite``, or while another process writes it;
            written atomically (nothing is left at ``out`` when writing fails).
        op: an :class:`~learnrecon.operators.MRI` operator with a line mask (fastMRI stores the mask as its
            ``(W,)`` sampled columns), storable with :func:`~learnrecon.operators.registry.operator_config`.
        x: ground truth: :class:`Phantoms` (real or complex images) or a tensor
            ``(n, 1, H, W)``; real images get zero phase.
        noise: a :class:`NoiseSpec` or its string form (complex Gaussian on k-space).
        seed: seeds the noise of sample ``i`` through :func:`sample_generator`.
    """
    if not isinstance(op, MRI):
        raise ParameterError(f"fastMRI files hold MRI data; got a {type(op).__name__} operator")
    mask = op.mask
    if not bool((mask == mask[:1]).all()):
        raise ParameterError(
            "fastMRI files store the mask as sampled columns (W,), but this operator's mask samples points; "
            "use a Cartesian line mask (cartesian_mask, or mask_columns in the config)"
        )
    noise = parse_noise(noise) if isinstance(noise, str) else noise
    images = x if isinstance(x, Phantoms) else Phantoms.of(x, None, phantom_info)
    shape = tuple(op.domain_shape[-2:])
    if images.shape != shape:
        raise ShapeError(f"truth has images of {images.shape} but the operator's are {shape}")
    multicoil = op.coil_maps is not None
    n, chunk_size = images.n, max(1, min(chunk_size, images.n))
    check_memory(chunk_bytes(op, shape, chunk_size), f"simulating {chunk_size} MRI images of {shape}")
    try:
        acs = acs_width(mask)
    except ParameterError:
        acs = 0  # no fully sampled centre
    attrs = {
        "format": "fastmri",
        "acquisition": "simulated",
        "patient_id": "",
        "acceleration": float(op.acceleration),
        "num_low_frequency": acs,
        "operator": json.dumps(operator_config(op)),
        "phantom": json.dumps(images.info if isinstance(x, Phantoms) else phantom_info or {}),
        "noise": str(noise),
        "seed": seed,
        "learnrecon_version": learnrecon.__version__,
    }
    data_shape = tuple(op.range_shape)  # (n_coils, H, W) or (H, W)
    target_name = TARGETS[0] if multicoil else TARGETS[1]
    peak, energy = 0.0, 0.0
    with output_lock(out, "learnrecon simulate"), atomic_path(out, overwrite) as tmp, h5py.File(tmp, "w") as f:
        kspace = f.create_dataset("kspace", shape=(n, *data_shape), dtype="complex64", chunks=(1, *data_shape))
        target = f.create_dataset(target_name, shape=(n, *shape), dtype="float32", chunks=(1, *shape))
        truth = f.create_dataset("truth", shape=(n, *shape), dtype="complex64", chunks=(1, *shape))
        f.create_dataset("mask", data=mask[0].numpy().astype(np.uint8))
        if multicoil:
            f.create_dataset("coil_maps", data=op.coil_maps.numpy().astype(np.complex64))
        for start in tqdm(range(0, n, chunk_size), desc="simulating", unit="chunk", disable=not progress):
            stop = min(n, start + chunk_size)
            chunk = as_images(images.chunk(start, stop)[0], op)  # (k, 1, *domain) complex
            y = measure(op, chunk, noise, seed=seed, start=start)[:, 0]  # (k, *range)
            kspace[start:stop] = (y * mask.to(y.device)).numpy()
            image = chunk.reshape(stop - start, *shape)
            coil_images = image[:, None] * op.coil_maps.to(image.dtype) if multicoil else image[:, None]
            magnitude = rss(coil_images)  # |x| for Σ_c |S_c|² = 1
            target[start:stop] = magnitude.float().numpy()
            truth[start:stop] = image.to(torch.complex64).numpy()
            peak, energy = max(peak, float(magnitude.max())), energy + float(magnitude.double().pow(2).sum())
        f.attrs.update({**attrs, "max": peak, "norm": math.sqrt(energy)})
    return Path(out)
