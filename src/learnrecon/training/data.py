"""Training data as a deterministic function of the step: batch ``s`` is the same on every run,
so a resumed run sees exactly the batches an uninterrupted one would.

Sample positions ``p = s·B, …, s·B + B − 1`` of step ``s`` (batch size ``B``) map to samples: the
simulated stream uses sample ``p`` directly; a file is read in a fresh permutation per epoch seeded
by ``(seed, epoch)``. In distributed training rank ``r`` of ``w`` takes the ``r``-th of ``w`` consecutive
blocks of ``B/w`` positions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from learnrecon import phantoms
from learnrecon.config import DataConfig
from learnrecon.data.hdf5 import load
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
from learnrecon.operators.registry import differing_settings, make_operator, operator_config

__all__ = [
    "Pairs",
    "FilePairs",
    "SimulatedPairs",
    "check_finite_pairs",
    "check_pairs_file",
    "make_training_data",
    "make_validation_data",
    "read_pairs",
]


class Pairs(NamedTuple):
    """Truth ``x`` ``(n, 1, H, W)`` and measurements ``y`` ``(n, 1, *range)``."""

    x: torch.Tensor
    y: torch.Tensor


def read_pairs(dataset, indices) -> Pairs:
    """The samples ``indices`` of a data set (see :func:`learnrecon.data.load`) stacked into :class:`Pairs`."""
    samples = [dataset[int(i)] for i in indices]
    if not samples:
        raise DataFileError(f"{dataset.path} holds no samples to read")
    return Pairs(torch.stack([s.x for s in samples]), torch.stack([s.y for s in samples]))


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


class SimulatedPairs:
    """An endless stream: sample ``i`` is phantom ``i`` of ``seed`` of the random-ellipse ``phantom`` (see
    :func:`learnrecon.phantoms.draw_ellipses`; ``scaling`` applies to "ellipses") and ``noise(A x_i)`` with
    noise from ``(seed, i)``; with ``simulation_op`` (a finer grid of ``op``) the data are
    ``noise(A' x'_i)`` of the same ellipses drawn on that grid, or of ``x_i`` bilinearly upsampled to it
    (``upsampling``, see :func:`learnrecon.data.simulate.simulate_pairs`)."""

    def __init__(
        self,
        op: LinearOperator,
        noise: NoiseSpec,
        seed: int,
        supersample: int = 1,
        simulation_op: LinearOperator | None = None,
        scaling: str = "minmax",
        phantom: str = "ellipses",
        upsampling: str = "render",
    ) -> None:
        self.op, self.noise, self.seed, self.supersample = op, noise, seed, supersample
        self.simulation_op, self.upsampling = simulation_op, upsampling
        self.scaling, self.phantom = scaling, phantom

    def indices(self, positions: torch.Tensor) -> list[int]:
        """The stream's sample numbers at ``positions``: the positions themselves."""
        return positions.tolist()

    def batch(self, positions: torch.Tensor) -> Pairs:
        """The samples at ``positions`` (consecutive, as produced by :func:`step_positions`)."""
        start, n = int(positions[0]), positions.numel()
        if not torch.equal(positions, torch.arange(start, start + n)):
            raise ParameterError("simulated training data are drawn in consecutive positions")

        def render(size: int) -> torch.Tensor:
            return phantoms.draw_ellipses(
                self.phantom,
                n=n,
                size=size,
                seed=self.seed,
                start=start,
                supersample=self.supersample,
                scaling=self.scaling,
            )

        return Pairs(
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


class FilePairs:
    """Pairs read from a data set, in a permutation per epoch seeded by ``(seed, epoch)``."""

    def __init__(self, dataset, seed: int) -> None:
        if len(dataset) == 0:
            raise ParameterError("the training file holds no samples")
        self.dataset, self.seed = dataset, seed
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

    def batch(self, positions: torch.Tensor) -> Pairs:
        return read_pairs(self.dataset, self.indices(positions))


def step_positions(step: int, batch_size: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """The sample positions rank ``rank`` of ``world`` trains on at ``step``: block ``rank`` of the step's
    ``batch_size`` consecutive positions cut into ``world`` blocks (``batch_size`` a multiple of ``world``)."""
    per_rank = batch_size // world
    start = step * batch_size + rank * per_rank
    return torch.arange(start, start + per_rank)


def make_training_data(cfg: DataConfig) -> tuple[SimulatedPairs | FilePairs, LinearOperator]:
    """The training stream and its operator."""
    if cfg.train_file is not None:
        dataset = load(cfg.train_file)
        check_pairs_file(dataset, dataset.op, "data.train_file")
        return FilePairs(dataset, cfg.seed), dataset.op
    _check_simulation_keys(cfg)
    op = make_operator(cfg.geometry, cfg.image_size, cfg.n_angles, cfg.n_detectors)
    noise, simulation_op = parse_noise(cfg.noise), simulation_operator(cfg, op)
    stream = SimulatedPairs(
        op, noise, cfg.seed, cfg.supersample, simulation_op, cfg.ellipse_scaling, cfg.phantom, cfg.simulation_upsampling
    )
    return stream, op


def _check_same_operator(stored: LinearOperator, op: LinearOperator, what: str) -> None:
    """A ShapeError naming the settings in which the operator of a data file differs from the training one."""
    differing = differing_settings(operator_config(stored), operator_config(op))
    if differing:
        raise ShapeError(
            f"{what} was simulated with another operator than the training data: it differs in {', '.join(differing)}"
        )


def _check_simulation_keys(cfg: DataConfig) -> None:
    """A ParameterError naming ``data.phantom``, ``data.ellipse_scaling`` or ``data.simulation_upsampling``
    unless all three are known."""
    if cfg.phantom not in phantoms.ELLIPSE_PHANTOMS:
        raise ParameterError(
            f"config key data.phantom must be one of {', '.join(phantoms.ELLIPSE_PHANTOMS)} (simulated on the "
            f"fly), got {cfg.phantom!r}"
        )
    if cfg.ellipse_scaling not in phantoms.ELLIPSE_SCALINGS:
        raise ParameterError(
            f"config key data.ellipse_scaling must be one of {', '.join(phantoms.ELLIPSE_SCALINGS)}, "
            f"got {cfg.ellipse_scaling!r}"
        )
    if cfg.simulation_upsampling not in UPSAMPLINGS:
        raise ParameterError(
            f"config key data.simulation_upsampling must be one of {', '.join(UPSAMPLINGS)}, "
            f"got {cfg.simulation_upsampling!r}"
        )


def simulation_operator(cfg: DataConfig, op: LinearOperator) -> LinearOperator | None:
    """The finer-grid operator that simulates the data when ``cfg.simulation_size`` is set."""
    if cfg.simulation_size is None:
        return None
    if cfg.simulation_size < cfg.image_size:
        raise ParameterError(
            f"data.simulation_size must be at least data.image_size {cfg.image_size}, got {cfg.simulation_size}"
        )
    return finer_operator(op, cfg.simulation_size)


def make_validation_data(cfg: DataConfig, op: LinearOperator) -> Pairs:
    """``n_validation`` ellipses of ``validation_seed`` (or the whole ``validation_file``)."""
    if cfg.validation_file is not None:
        dataset = load(cfg.validation_file)
        _check_same_operator(dataset.op, op, f"data.validation_file {cfg.validation_file}")
        check_pairs_file(dataset, op, "data.validation_file")
        pairs = read_pairs(dataset, range(len(dataset)))
        check_finite_pairs(pairs, f"data.validation_file {cfg.validation_file}")
        return pairs

    _check_simulation_keys(cfg)

    def render(size: int) -> torch.Tensor:
        return phantoms.draw_ellipses(
            cfg.phantom, n=cfg.n_validation, size=size, seed=cfg.validation_seed, scaling=cfg.ellipse_scaling
        )

    simulation_op = simulation_operator(cfg, op)
    return Pairs(
        *simulate_pairs(
            render,
            op,
            cfg.noise,
            seed=cfg.validation_seed,
            simulation_op=simulation_op,
            upsampling=cfg.simulation_upsampling,
        )
    )
