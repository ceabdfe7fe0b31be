"""Data sources: truth/measurement pairs as a deterministic function of their positions, for training and
validation, on any operator.

A data source has ``batch(positions) -> Pairs | Batch`` and ``indices(positions) -> list[int]`` (the sample
numbers behind the positions, for error messages): the trainer asks for the positions of each step (see
:func:`learnrecon.training.trainer.step_positions`), so batch ``s`` is the same on every run and a resumed
run sees exactly the batches an uninterrupted one would. The simulated stream (:class:`SimulatedPairs`) uses
sample ``p`` at position ``p``: phantom ``p`` of its seed on the operator's image grid and noise from
``(seed, p)``; a file (:class:`FilePairs`) is read in a fresh permutation per epoch seeded by ``(seed, epoch)``.
Nothing here knows a concrete operator class: the images are drawn on ``op.domain_shape``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import torch

from learnrecon import phantoms
from learnrecon.config import DataConfig
from learnrecon.data.fastmri import FastMRIPairs, FastMRISlices, fastmri_operator
from learnrecon.data.hdf5 import load
from learnrecon.data.lodopab import LoDoPaBFiles
from learnrecon.data.simulate import (
    UPSAMPLINGS,
    NoiseSpec,
    finer_operator,
    parse_noise,
    sample_generator,
    simulate_pairs,
)
from learnrecon.errors import DataFileError, DTypeError, NonFiniteError, ParameterError, ShapeError
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.registry import build_operator, differing_settings, operator_config

__all__ = [
    "PHANTOM_TYPES",
    "Batch",
    "FilePairs",
    "LoDoPaBPairs",
    "Pairs",
    "PhantomSource",
    "SimulatedPairs",
    "check_finite_pairs",
    "check_labels_file",
    "check_pairs_file",
    "file_batches",
    "make_training_data",
    "make_validation_data",
    "phantom_source",
    "read_pairs",
]


class Pairs(NamedTuple):
    """Truth ``x`` ``(n, 1, *domain)`` and measurements ``y`` ``(n, 1, *range)``."""

    x: torch.Tensor
    y: torch.Tensor


class Batch(NamedTuple):
    """Pairs with what else a batch carries, by name (e.g. ``labels`` for a task, ``op``: the operator of this
    batch, when it differs from the run's)."""

    x: torch.Tensor
    y: torch.Tensor
    extra: Mapping[str, Any]


class PhantomSource(NamedTuple):
    """Random phantoms from a ``data.phantom`` section: ``type`` in :data:`PHANTOM_TYPES`, the ellipses'
    ``scaling`` (``"ellipses"`` only), ``supersample`` factor and, for the complex MRI phantoms
    (:data:`learnrecon.phantoms.MRI_PHANTOMS`), the ``max_phase`` of their smooth random phase (radians)."""

    type: str
    scaling: str = phantoms.DEFAULT_SCALING
    supersample: int = 1
    max_phase: float = math.pi

    def draw(self, n: int, shape: tuple[int, int], *, seed: int, start: int = 0) -> torch.Tensor:
        """Phantoms ``start … start + n − 1`` of ``seed``, ``(n, 1, *shape)`` float32 (complex64 for the MRI
        phantoms)."""
        if self.type in phantoms.MRI_PHANTOMS:
            return phantoms.mri_phantoms(
                self.type, n=n, size=shape, seed=seed, start=start, supersample=self.supersample,
                max_phase=self.max_phase,
            )  # fmt: skip
        scaling = {"scaling": self.scaling} if self.type == "ellipses" else {}
        return phantoms.draw_ellipses(
            self.type, n=n, size=shape, seed=seed, start=start, supersample=self.supersample, **scaling
        )

    def draw_labels(self, n: int, shape: tuple[int, int], *, seed: int, start: int = 0) -> torch.Tensor:
        """The label maps ``(n, *shape)`` int64 of the phantoms :meth:`draw` gives (the topmost ellipse's class at
        each pixel centre, :data:`learnrecon.phantoms.ELLIPSE_CLASSES`; for the complex MRI phantoms, the labels of
        their magnitudes). ``shape`` may be an operator's image space with leading dimensions: its last two count."""
        shape = tuple(shape)[-2:]
        if self.type in phantoms.MRI_PHANTOMS:
            return phantoms.mri_phantoms(
                self.type, n=n, size=shape, seed=seed, start=start, supersample=self.supersample,
                max_phase=self.max_phase, return_labels=True,
            )[1]  # fmt: skip
        scaling = {"scaling": self.scaling} if self.type == "ellipses" else {}
        _, labels = phantoms.draw_ellipses(
            self.type, n=n, size=shape, seed=seed, start=start, return_labels=True, **scaling
        )
        return labels


#: Phantom types a ``data.phantom`` section may name, and the keys each takes besides ``type``.
PHANTOM_TYPES: dict[str, tuple[str, ...]] = {
    "ellipses": ("scaling", "supersample"),
    "dival-ellipses": ("supersample",),
    "mri-ellipses": ("supersample", "max_phase"),
    "mri-shepp-logan": ("supersample", "max_phase"),
}


def phantom_source(section: Mapping[str, Any]) -> PhantomSource:
    """The :class:`PhantomSource` of a ``data.phantom`` section, refusing unknown types, keys and values."""
    section = dict(section)
    kind = section.pop("type", None)
    if kind not in PHANTOM_TYPES:
        raise ParameterError(
            f"data.phantom.type must be one of {', '.join(PHANTOM_TYPES)} (simulated on the fly), got {kind!r}"
        )
    for key in section:
        if key not in PHANTOM_TYPES[kind]:
            raise ParameterError(f"data.phantom: {kind} takes {', '.join(PHANTOM_TYPES[kind])}, not {key!r}")
    scaling = section.get("scaling", phantoms.DEFAULT_SCALING)
    if scaling not in phantoms.ELLIPSE_SCALINGS:
        raise ParameterError(
            f"data.phantom.scaling must be one of {', '.join(phantoms.ELLIPSE_SCALINGS)}, got {scaling!r}"
        )
    supersample = section.get("supersample", 1)
    if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
        raise ParameterError(f"data.phantom.supersample must be a positive integer, got {supersample!r}")
    max_phase = section.get("max_phase", math.pi)
    if isinstance(max_phase, bool) or not isinstance(max_phase, int | float) or not 0 <= max_phase <= 4 * math.pi:
        raise ParameterError(f"data.phantom.max_phase must be a number of radians in [0, 4π], got {max_phase!r}")
    return PhantomSource(kind, scaling, supersample, float(max_phase))


def read_pairs(dataset, indices, *, labels: bool = False) -> Pairs | Batch:
    """The samples ``indices`` of a data set (see :func:`learnrecon.data.load`) stacked into :class:`Pairs`, or
    with ``labels`` into a :class:`Batch` whose ``extra["labels"]`` are their label maps ``(n, H, W)``."""
    samples = [dataset[int(i)] for i in indices]
    if not samples:
        raise DataFileError(f"{dataset.path} holds no samples to read")
    x, y = torch.stack([s.x for s in samples]), torch.stack([s.y for s in samples])
    if not labels:
        return Pairs(x, y)
    return Batch(x, y, {"labels": torch.stack([s.labels for s in samples])})


def check_labels_file(dataset, what: str) -> None:
    """Refuse a data set without label maps (dataset ``labels``) for a task run; ``what`` names the file."""
    if not dataset.has_labels:
        raise DataFileError(f"{what} {dataset.path} holds no labels (dataset 'labels'), which a task run trains on")


def check_pairs_file(dataset, op: LinearOperator, what: str) -> None:
    """Refuse a data set (see :func:`learnrecon.data.load`) that cannot give pairs for ``op``: no samples, no
    truth, items of another shape than ``(1, *op.domain_shape)`` / ``(1, *op.range_shape)``, a truth that is
    not real floating point, or data of another kind than ``op``'s. Reads only the file's layout, not its data.
    ``what`` names the file in errors."""
    path = f"{what} {dataset.path}"
    if len(dataset) == 0:
        raise DataFileError(f"{path} holds no samples")
    if not dataset.has_truth:
        raise DataFileError(f"{path} holds no truth (dataset 'x') to compare reconstructions with")
    for name, space, shape in (("x", "images", op.domain_shape), ("y", "data", op.range_shape)):
        wanted = (1, *shape)
        if dataset.item_shapes[name] != wanted:
            raise ShapeError(
                f"{path}: its '{name}' items have shape {dataset.item_shapes[name]}, but {op.name}'s {space} "
                f"need {wanted}"
            )
    if dataset.dtypes["x"].kind != "f":
        raise DTypeError(f"{path}: its truth 'x' is {dataset.dtypes['x']}; it must be real floating point")
    data_kinds = ("f", "c") if op.range_complex else ("f",)
    if dataset.dtypes["y"].kind not in data_kinds:
        kind = "complex or real floating point" if op.range_complex else "real floating point"
        raise DTypeError(f"{path}: its data 'y' are {dataset.dtypes['y']}; {op.name}'s data are {kind}")


def check_finite_pairs(pairs: Pairs, what: str, indices: list[int] | None = None) -> None:
    """Raise :class:`NonFiniteError` naming the first item of ``pairs`` with NaN or Inf in its truth or data
    (by its number in the file: ``indices[i]`` for the ``i``-th pair when the pairs are a selection)."""
    for name, values in (("truth", pairs.x), ("data", pairs.y)):
        bad = (~torch.isfinite(values)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        if bad:
            first = bad[0] if indices is None else indices[bad[0]]
            raise NonFiniteError(f"{what}: the {name} of {len(bad)} item(s) holds NaN or Inf, the first item {first}")


def file_batches(
    dataset, indices: torch.Tensor, batch_size: int, what: str
) -> Iterator[tuple[torch.Tensor | None, torch.Tensor]]:
    """The items ``indices`` of a data set as ``(x or None, y)`` chunks of ``batch_size``, read one chunk at a
    time; a chunk with NaN or Inf raises :class:`NonFiniteError` naming the item (``what`` names the file)."""
    for chunk, sample in dataset.batches(indices, batch_size):
        x = sample.x if dataset.has_truth else None
        check_finite_pairs(Pairs(x if x is not None else sample.y, sample.y), what, chunk.tolist())
        yield x, sample.y


class SimulatedPairs:
    """An endless stream: sample ``i`` is phantom ``i`` of ``seed`` drawn on ``op``'s image grid and
    ``noise(A x_i)`` with noise from ``(seed, i)``; with ``simulation_op`` (a finer grid of ``op``) the data are
    ``noise(A' x'_i)`` of the same phantoms drawn on that grid, or of ``x_i`` bilinearly upsampled to it
    (``upsampling``, see :func:`learnrecon.data.simulate.simulate_pairs`). With ``labels`` a batch is a
    :class:`Batch` whose ``extra["labels"]`` are the phantoms' label maps ``(n, H, W)``."""

    def __init__(
        self,
        op: LinearOperator,
        noise: NoiseSpec,
        phantom: PhantomSource,
        *,
        seed: int,
        simulation_op: LinearOperator | None = None,
        upsampling: str = "render",
        labels: bool = False,
    ) -> None:
        self.op, self.noise, self.phantom, self.seed = op, noise, phantom, seed
        self.simulation_op, self.upsampling, self.labels = simulation_op, upsampling, labels

    def indices(self, positions: torch.Tensor) -> list[int]:
        """The stream's sample numbers at ``positions``: the positions themselves."""
        return positions.tolist()

    def batch(self, positions: torch.Tensor) -> Pairs | Batch:
        """The samples at ``positions`` (consecutive, as the trainer's step positions are)."""
        start, n = int(positions[0]), positions.numel()
        if not torch.equal(positions, torch.arange(start, start + n)):
            raise ParameterError("simulated training data are drawn in consecutive positions")

        def render(shape: tuple[int, int]) -> torch.Tensor:
            return self.phantom.draw(n, shape, seed=self.seed, start=start)

        pairs = Pairs(
            *simulate_pairs(
                render,
                self.op,
                self.noise,
                seed=self.seed,
                start=start,
                simulation_op=self.simulation_op,
                upsampling=self.upsampling,
            )
        )
        if not self.labels:
            return pairs
        labels = self.phantom.draw_labels(n, tuple(self.op.domain_shape), seed=self.seed, start=start)
        return Batch(*pairs, {"labels": labels})


class FilePairs:
    """Pairs read from a data set, in a permutation per epoch seeded by ``(seed, epoch)``."""

    def __init__(self, dataset, seed: int, *, labels: bool = False) -> None:
        if len(dataset) == 0:
            raise ParameterError("the training file holds no samples")
        if labels:
            check_labels_file(dataset, "the training file")
        self.dataset, self.seed, self.labels = dataset, seed, labels
        self._perm: tuple[int, torch.Tensor] = (-1, torch.empty(0))

    def _index(self, position: int) -> int:
        n = len(self.dataset)
        epoch, offset = divmod(position, n)
        if self._perm[0] != epoch:
            self._perm = (epoch, torch.randperm(n, generator=sample_generator(self.seed, epoch, stream=1)))
        return int(self._perm[1][offset])

    def indices(self, positions: torch.Tensor) -> list[int]:
        """The file's sample numbers at ``positions`` (through the permutation of their epoch)."""
        return [self._index(int(p)) for p in positions]

    def batch(self, positions: torch.Tensor) -> Pairs | Batch:
        return read_pairs(self.dataset, self.indices(positions), labels=self.labels)


class LoDoPaBPairs:
    """A training data source over a LoDoPaB part (``batch(positions)``, ``indices(positions)``, as
    :class:`~learnrecon.data.sources.FilePairs`): a fresh permutation of the samples each epoch, from
    ``(seed, epoch)``."""

    def __init__(self, files: LoDoPaBFiles, seed: int) -> None:
        self.files, self.seed = files, seed
        self._perm: tuple[int, torch.Tensor] = (-1, torch.empty(0))

    def _index(self, position: int) -> int:
        n = len(self.files)
        epoch, offset = divmod(position, n)
        if self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(n, generator=g))
        return int(self._perm[1][offset])

    def indices(self, positions: torch.Tensor) -> list[int]:
        return [self._index(int(p)) for p in positions]

    def batch(self, positions: torch.Tensor) -> Pairs:
        return Pairs(*self.files.read(self.indices(positions)))


#: The keys of a ``data.lodopab`` section.
LODOPAB_KEYS = ("root", "backend", "train_limit")


def lodopab_section(cfg: DataConfig) -> dict[str, Any]:
    """``cfg.lodopab`` checked: ``root`` given, known keys only, no other source of data or operator beside it."""
    section = dict(cfg.lodopab or {})
    unknown = sorted(set(section) - set(LODOPAB_KEYS))
    if unknown or "root" not in section:
        raise ParameterError(f"data.lodopab takes root (required), backend and train_limit, got {sorted(section)}")
    clashing = [key for key in ("operator", "train_file", "validation_file") if getattr(cfg, key) is not None]
    if clashing:
        raise ParameterError(
            f"data.lodopab brings its own data and operator; leave out data.{', data.'.join(clashing)}"
        )
    return section


#: The keys of a ``data.fastmri`` section.
FASTMRI_KEYS = ("train", "validation")


def fastmri_section(cfg: DataConfig, labels: bool) -> dict[str, Any]:
    """``cfg.fastmri`` checked: ``train`` and ``validation`` given, no other source of data beside it, no task."""
    section = dict(cfg.fastmri or {})
    if set(section) != set(FASTMRI_KEYS):
        raise ParameterError(f"data.fastmri takes train and validation (both required), got {sorted(section)}")
    clashing = [key for key in ("train_file", "validation_file", "lodopab", "simulation") if getattr(cfg, key)]
    if clashing:
        raise ParameterError(f"data.fastmri brings its own data; leave out data.{', data.'.join(clashing)}")
    if labels:
        raise DataFileError("fastMRI files hold no label maps, which a task run trains on")
    return section


def _fastmri_pairs(cfg: DataConfig, part: str, labels: bool) -> FastMRIPairs:
    slices = FastMRISlices(fastmri_section(cfg, labels)[part])
    return FastMRIPairs(slices, fastmri_operator(slices, cfg.operator))


def make_training_data(
    cfg: DataConfig, *, labels: bool = False
) -> tuple[SimulatedPairs | FilePairs | LoDoPaBPairs, LinearOperator]:
    """The training stream of a data config and its operator (built from ``cfg.operator``, or the file's, or
    LoDoPaB's, or the fastMRI files'); with ``labels`` (a task run) its batches carry the label maps as
    ``extra["labels"]``."""
    if cfg.fastmri is not None:
        pairs = _fastmri_pairs(cfg, "train", labels)
        operator_config(pairs.op)  # an operator that checkpoints can store, or the error that says why not
        return FilePairs(pairs, cfg.seed), pairs.op
    if cfg.lodopab is not None:
        section = lodopab_section(cfg)
        if labels:
            raise DataFileError("LoDoPaB holds no label maps, which a task run trains on")
        files = LoDoPaBFiles(section["root"], "train", section.get("backend", "auto"), section.get("train_limit"))
        return LoDoPaBPairs(files, cfg.seed), files.op
    if cfg.train_file is not None:
        dataset = load(cfg.train_file)
        if cfg.operator is not None:
            _check_same_operator(dataset.op, build_operator(cfg.operator), f"data.train_file {cfg.train_file}")
        check_pairs_file(dataset, dataset.op, "data.train_file")
        if labels:
            check_labels_file(dataset, "data.train_file")
        return FilePairs(dataset, cfg.seed, labels=labels), dataset.op
    op = build_operator(cfg.operator_section())
    source = phantom_source(cfg.phantom)
    noise, simulation_op, upsampling = parse_noise(cfg.noise), *simulation_setting(cfg, op)
    stream = SimulatedPairs(
        op, noise, source, seed=cfg.seed, simulation_op=simulation_op, upsampling=upsampling, labels=labels
    )
    return stream, op


def _check_same_operator(stored: LinearOperator, op: LinearOperator, what: str) -> None:
    """A ShapeError naming the settings in which the operator of a data file differs from the training one."""
    differing = differing_settings(operator_config(stored), operator_config(op))
    if differing:
        raise ShapeError(
            f"{what} was simulated with another operator than the training data: it differs in {', '.join(differing)}"
        )


def simulation_setting(cfg: DataConfig, op: LinearOperator) -> tuple[LinearOperator | None, str]:
    """The finer-grid operator that simulates the data (None without a ``simulation`` section) and how the
    phantoms reach its grid, from ``cfg.simulation = {size: N, upsampling: render | bilinear}``."""
    if cfg.simulation is None:
        return None, "render"
    section = dict(cfg.simulation)
    unknown = sorted(set(section) - {"size", "upsampling"})
    if unknown or "size" not in section:
        raise ParameterError(f"data.simulation takes size (required) and upsampling, got {sorted(section)}")
    size, upsampling = section["size"], section.get("upsampling", "render")
    if upsampling not in UPSAMPLINGS:
        raise ParameterError(f"data.simulation.upsampling must be one of {', '.join(UPSAMPLINGS)}, got {upsampling!r}")
    grid = op.domain_shape[-1]
    if isinstance(size, bool) or not isinstance(size, int) or size < grid:
        raise ParameterError(f"data.simulation.size must be an integer of at least the image size {grid}, got {size!r}")
    return finer_operator(op, size), upsampling


def make_validation_data(cfg: DataConfig, op: LinearOperator, *, labels: bool = False) -> Pairs | Batch:
    """``n_validation`` phantoms of ``validation_seed`` on ``op`` (or the whole ``validation_file``); with
    ``labels`` a :class:`Batch` with their label maps as ``extra["labels"]``; for ``data.fastmri`` the first
    ``n_validation`` slices of its validation files."""
    if cfg.fastmri is not None:
        pairs = _fastmri_pairs(cfg, "validation", labels)
        _check_same_operator(pairs.op, op, f"data.fastmri.validation {pairs.path}")
        if cfg.n_validation < 1:
            raise ParameterError(f"data.n_validation must be >= 1, got {cfg.n_validation}")
        validation = read_pairs(pairs, range(min(cfg.n_validation, len(pairs))))
        pairs.close()
        check_finite_pairs(validation, f"data.fastmri.validation {pairs.path}")
        return validation
    if cfg.lodopab is not None:
        section = lodopab_section(cfg)
        if labels:
            raise DataFileError("LoDoPaB holds no label maps, which a task run trains on")
        if cfg.n_validation < 1:
            raise ParameterError(f"data.n_validation must be >= 1, got {cfg.n_validation}")
        files = LoDoPaBFiles(section["root"], "validation", section.get("backend", "auto"), cfg.n_validation)
        if files.op.range_shape != op.range_shape or files.op.domain_shape != op.domain_shape:
            raise ShapeError(f"LoDoPaB's validation files hold {files.op!r}, the training operator is {op!r}")
        pairs = Pairs(*files.read(range(len(files))))
        files.close()
        check_finite_pairs(pairs, f"LoDoPaB validation part in {section['root']}")
        return pairs
    if cfg.validation_file is not None:
        dataset = load(cfg.validation_file)
        _check_same_operator(dataset.op, op, f"data.validation_file {cfg.validation_file}")
        check_pairs_file(dataset, op, "data.validation_file")
        if labels:
            check_labels_file(dataset, "data.validation_file")
        pairs = read_pairs(dataset, range(len(dataset)), labels=labels)
        check_finite_pairs(Pairs(pairs[0], pairs[1]), f"data.validation_file {cfg.validation_file}")
        return pairs
    if cfg.n_validation < 1:
        raise ParameterError(f"data.n_validation must be >= 1, got {cfg.n_validation}")
    source = phantom_source(cfg.phantom)
    simulation_op, upsampling = simulation_setting(cfg, op)

    def render(shape: tuple[int, int]) -> torch.Tensor:
        return source.draw(cfg.n_validation, shape, seed=cfg.validation_seed)

    pairs = Pairs(
        *simulate_pairs(
            render, op, cfg.noise, seed=cfg.validation_seed, simulation_op=simulation_op, upsampling=upsampling
        )
    )
    if not labels:
        return pairs
    shape = tuple(op.domain_shape)
    return Batch(*pairs, {"labels": source.draw_labels(cfg.n_validation, shape, seed=cfg.validation_seed)})
