"""Experiment configs: frozen dataclasses read from and written to YAML (safe loading only).

A training config has three sections::

    model:    {name: lpd, params: {n_iter: 10}}           # see learnrecon.models.MODELS
    data:                                                 # simulated on the fly, or a file
      operator: {type: ParallelBeam2D, image_size: 128, n_angles: 30, n_detectors: 183}
      phantom: {type: ellipses, scaling: none}
      noise: relative:0.05
    training: {steps: 100000, batch_size: 5, lr: 1.0e-3, ...}

Unknown keys and values of the wrong type are rejected with the key's full name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from learnrecon.errors import DataFileError, ParameterError

__all__ = [
    "DEFAULT_OPERATOR",
    "DEFAULT_PHANTOM",
    "Config",
    "DataConfig",
    "ModelConfig",
    "TrainingConfig",
    "find_config",
    "from_dict",
    "load_config",
    "save_config",
    "upgrade_data_section",
]


@dataclass(frozen=True)
class ModelConfig:
    """``name`` in :data:`learnrecon.models.MODELS` and its keyword ``params``."""

    name: str = "lpd"
    params: dict[str, Any] = field(default_factory=dict)


#: The operator of the reference setup (Adler & Öktem's LGD/LPD ellipses; the shipped models'): 128² images,
#: parallel beam with 30 angles in [0, π) and 183 detector cells.
DEFAULT_OPERATOR: dict[str, Any] = {"type": "ParallelBeam2D", "image_size": 128, "n_angles": 30, "n_detectors": 183}

#: The phantoms of the reference setup: Adler & Öktem's random ellipses, not rescaled (the shipped models').
DEFAULT_PHANTOM: dict[str, Any] = {"type": "ellipses", "scaling": "none", "supersample": 1}


@dataclass(frozen=True)
class DataConfig:
    """Training and validation data.

    ``operator`` is a tagged section that goes straight into
    :func:`learnrecon.operators.registry.build_operator`: ``{type: ParallelBeam2D | FanBeam2D | MRI | Blur |
    Identity | ..., <its constructor arguments>}`` (default: :data:`DEFAULT_OPERATOR`). ``phantom`` is a tagged
    section for :func:`learnrecon.data.sources.phantom_source`: ``{type: ellipses | dival-ellipses,
    scaling: none | minmax, supersample: k}`` (default: :data:`DEFAULT_PHANTOM`), drawn on the operator's image
    grid.

    With ``train_file`` unset, training pairs are simulated on the fly: image ``i`` is phantom ``i`` of
    ``seed`` and its noise comes from ``(seed, i)``, so step ``s`` always sees the same batch. With
    ``train_file`` (an HDF5 file from ``learnrecon simulate``) the pairs and the operator come from the file
    (an ``operator`` section, if given, must agree with it), shuffled per epoch with ``seed``. Validation uses
    ``n_validation`` phantoms of ``validation_seed`` (or ``validation_file``). With ``simulation: {size: N,
    upsampling: render | bilinear}`` the simulated measurements are computed on a finer ``N``² grid of the same
    extent (no inverse crime: the data do not come from the operator that reconstructs them), from the
    phantoms drawn again on that grid (``render``) or from the images bilinearly upsampled to it (``bilinear``,
    the DIVal ellipse data set's protocol).

    With ``lodopab: {root: FOLDER, backend: auto, train_limit: N}`` the pairs are LoDoPaB-CT's files in ``FOLDER``
    (:mod:`learnrecon.data.lodopab`): training on the ``train`` part (its first ``train_limit`` samples, if given),
    validation on the first ``n_validation`` of the ``validation`` part, the operator LoDoPaB's ray transform with
    that ``backend``; ``operator``, ``train_file`` and ``validation_file`` are then left out.

    With ``fastmri: {train: PATH, validation: PATH}`` (each a file, a folder of ``*.h5`` files or a list of files in
    fastMRI's layout, e.g. from ``learnrecon simulate --config``) the MRI pairs are read slice by slice from those
    files (:class:`learnrecon.data.fastmri.FastMRIPairs`: never loaded whole), shuffled per epoch with ``seed``;
    validation on the first ``n_validation`` slices of ``validation``. The operator is the files'
    (:func:`learnrecon.data.fastmri.fastmri_operator`); ``operator``, if given, must agree with it, or gives the
    mask of fully sampled single-coil files.

    The flat keys of earlier versions (``geometry``, ``image_size``, ``n_angles``, ``n_detectors``,
    ``ellipse_scaling``, ``supersample``, ``simulation_size``, ``simulation_upsampling`` and ``phantom`` as a
    name) are still read, with a warning that says what to write instead (:func:`upgrade_data_section`).
    """

    operator: dict[str, Any] | None = None
    phantom: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PHANTOM))
    noise: str = "relative:0.05"
    simulation: dict[str, Any] | None = None
    seed: int = 1000
    train_file: str | None = None
    n_validation: int = 16
    validation_seed: int = 999
    validation_file: str | None = None
    lodopab: dict[str, Any] | None = None
    fastmri: dict[str, Any] | None = None

    def operator_section(self) -> dict[str, Any]:
        """The operator section to build: the given one, or :data:`DEFAULT_OPERATOR`."""
        return dict(DEFAULT_OPERATOR if self.operator is None else self.operator)


#: The flat data keys of earlier versions and the sections they now belong to.
LEGACY_DATA_KEYS = (
    "geometry",
    "image_size",
    "n_angles",
    "n_detectors",
    "ellipse_scaling",
    "supersample",
    "simulation_size",
    "simulation_upsampling",
)


def _legacy_operator(values: dict[str, Any]) -> dict[str, Any]:
    """The operator section the flat keys ``geometry``, ``image_size``, ``n_angles``, ``n_detectors`` meant."""
    geometry = values.pop("geometry", "parallel")
    size = values.pop("image_size", 128)
    n_angles = values.pop("n_angles", 30)
    n_detectors = values.pop("n_detectors", 183)
    if geometry == "parallel":
        return {"type": "ParallelBeam2D", "image_size": size, "n_angles": n_angles, "n_detectors": n_detectors}
    if geometry == "fan":
        return {
            "type": "FanBeam2D",
            "image_size": size,
            "n_angles": n_angles,
            "n_detectors": 2 * size + 1 if n_detectors is None else n_detectors,
            "source_distance": 2.0 * size,
            "detector_distance": float(size),
        }
    if geometry == "denoise":
        return {"type": "Identity", "shape": [size, size]}
    raise ParameterError(f"unknown data.geometry {geometry!r}; write a data.operator section instead")


def upgrade_data_section(values: dict[str, Any], warn: bool = True) -> dict[str, Any]:
    """A data section with the flat keys of earlier versions moved into ``operator``, ``phantom`` and
    ``simulation`` sections (a FutureWarning says so when ``warn``); a section without them is returned as it is."""
    values = dict(values)
    legacy = [key for key in LEGACY_DATA_KEYS if key in values] + (
        ["phantom"] if isinstance(values.get("phantom"), str) else []
    )
    if not legacy:
        return values
    if any(key in values for key in ("geometry", "image_size", "n_angles", "n_detectors")):
        if "operator" in values:
            raise ParameterError("data: give either an operator section or the old geometry keys, not both")
        values["operator"] = _legacy_operator(values)
    phantom = {"type": values.pop("phantom", "ellipses") if isinstance(values.get("phantom"), str) else "ellipses"}
    if phantom["type"] == "ellipses":
        phantom["scaling"] = values.pop("ellipse_scaling", "minmax")  # the default of those versions
    values.pop("ellipse_scaling", None)
    phantom["supersample"] = values.pop("supersample", 1)
    if "phantom" not in values:
        values["phantom"] = phantom
    if "simulation_size" in values or "simulation_upsampling" in values:
        size, upsampling = values.pop("simulation_size", None), values.pop("simulation_upsampling", "render")
        values["simulation"] = None if size is None else {"size": size, "upsampling": upsampling}
    if warn:
        warnings.warn(
            f"data keys {', '.join(legacy)} are deprecated; write the data section as "
            f"{yaml.safe_dump({'data': _without_defaults(values)}, default_flow_style=None, sort_keys=False).strip()}",
            FutureWarning,
            stacklevel=4,
        )
    return values


def _without_defaults(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in ("operator", "phantom", "simulation") and v is not None}


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation, logging and checkpoints.

    Adam(β = ``betas``) with learning rate ``lr`` decayed to 0 by a cosine over ``steps`` (``schedule:
    constant`` keeps it), gradients clipped to norm ``clip_grad_norm`` (0: off), ``loss`` in
    {mse, l1, ssim, psnr}; ``amp`` runs the networks in bfloat16 autocast on CUDA; ``checkpoint_activations``
    keeps only the state between an unrolled model's iterations and recomputes each iteration's activations
    in the backward pass (less memory, one more forward pass of time). ``device`` is "auto"
    (CUDA when available), "cpu" or "cuda[:i]". ``init_from`` starts from the weights of a checkpoint
    (a path without suffix, or a shipped name such as ``lpd-ellipses``) of the same model, with a fresh
    optimiser and schedule: continued training or fine-tuning, recorded in the checkpoints' provenance.
    ``threads`` sets torch's CPU threads (0: torch's default); ``num_workers`` > 0 simulates the batches
    ahead of the step in that many worker processes (the same batches as without them).

    Task-adapted training (a ``task-adapted`` model; the data then carry label maps): ``task_weight`` is ``C`` ∈
    [0, 1] in ``(1 − C)·ℓ_X + C·ℓ_D`` (``ℓ_X`` the ``loss`` above, ``ℓ_D`` the cross-entropy plus ``dice_weight``
    times the soft Dice loss); ``task_mode`` is ``joint`` (any C), ``end-to-end`` (C = 1: the task loss alone,
    through both networks) or ``sequential`` (C = 1 with the reconstructor frozen: the second stage of the
    sequential pipeline, started with ``init_from`` from a ``task_weight: 0`` run). ``task_weight`` None with
    ``task_mode: joint`` is not a task run.

    ``greedy_steps`` > 0 trains an unrolled model greedily, iteration by iteration: ``greedy_steps`` steps for
    iteration ``k`` with iterations ``0 … k−1`` frozen and the later ones not run (one iteration's activations in
    memory), each stage with its own learning-rate schedule; the steps left after ``n_iter · greedy_steps`` are an
    end-to-end fine-tune. ``angle_fraction`` < 1 trains each step on a random subset of that fraction of the
    angles of a ray transform, the data term rescaled to be unbiased (validation uses every angle).
    """

    steps: int = 1000
    batch_size: int = 5
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    schedule: str = "cosine"
    clip_grad_norm: float = 1.0
    loss: str = "mse"
    amp: bool = False
    checkpoint_activations: bool = False
    device: str = "auto"
    seed: int = 0
    threads: int = 0
    num_workers: int = 0
    log_every: int = 10
    validate_every: int = 200
    checkpoint_every: int = 200
    figure_every: int = 1000
    init_from: str | None = None
    greedy_steps: int = 0
    angle_fraction: float = 1.0
    task_weight: float | None = None
    task_mode: str = "joint"
    dice_weight: float = 0.0

    @property
    def is_task_run(self) -> bool:
        """Whether this trains a task-adapted model on labels (see the class docstring)."""
        return self.task_weight is not None or self.task_mode != "joint"

    @property
    def task_c(self) -> float:
        """The weight ``C`` of the task loss: ``task_weight``, 1 for the end-to-end and sequential modes."""
        return 1.0 if self.task_weight is None else self.task_weight


#: Task-adapted training modes (see :class:`TrainingConfig`).
TASK_MODES = ("joint", "end-to-end", "sequential")


@dataclass(frozen=True)
class Config:
    """A training experiment: model, data and training sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), as written to YAML and JSON."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """``value`` converted to ``annotation`` (int → float allowed), or a ParameterError naming ``key``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        return _check_type(value, next(a for a in options if a is not type(None)), key)
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ParameterError(f"config key {key!r} must be a list of {len(args)} numbers, got {value!r}")
        return tuple(_check_type(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParameterError(f"config key {key!r} must be a mapping, got {value!r}")
        return dict(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str) and _is_number(value):
        return float(value)  # YAML 1.1 reads 1e-3 (no dot in the mantissa) as a string
    if annotation is Any or (isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))):
        return value
    raise ParameterError(f"config key {key!r} must be {annotation.__name__}, got {value!r} ({type(value).__name__})")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _section(cls: type, values: Any, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ParameterError(f"config section {prefix!r} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ParameterError(f"unknown config key {prefix}.{key}; known keys: {', '.join(sorted(known))}")
    return cls(**{k: _check_type(v, hints[k], f"{prefix}.{k}") for k, v in values.items()})


def from_dict(values: dict[str, Any]) -> Config:
    """A :class:`Config` from nested plain values (missing keys take their defaults)."""
    if not isinstance(values, dict):
        raise ParameterError(f"a config must be a mapping with model/data/training sections, got {values!r}")
    sections = {"model": ModelConfig, "data": DataConfig, "training": TrainingConfig}
    for key in values:
        if key not in sections:
            raise ParameterError(f"unknown config section {key!r}; known sections: {', '.join(sections)}")
    if isinstance(values.get("data"), dict):
        values = {**values, "data": upgrade_data_section(values["data"])}
    return Config(**{k: _section(sections[k], v, k) for k, v in values.items()})


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with a key twice (YAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one section", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def find_config(path: str | Path) -> Path:
    """``path`` when it names a file, else the config of that name shipped in the package (``learnrecon/configs/``:
    the configs the benchmark presets train with, so that they run from an installed package), with or without
    its ``.yaml``: ``find_config("lpd_paper")``."""
    given = Path(path)
    if given.is_file():
        return given
    name = given.name if given.suffix in (".yaml", ".yml") else f"{given.name}.yaml"
    shipped = Path(str(resources.files("learnrecon") / "configs" / name))
    if given.name == str(path) and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.name for p in shipped.parent.glob("*.yaml")))
    raise DataFileError(f"config file {path} does not exist (the package ships the configs {names})")


def load_config(path: str | Path) -> Config:
    """Read a YAML config (a path, or the name of a config shipped in the package: :func:`find_config`) with safe
    loading (no Python objects), refusing duplicate keys. Paths in it (``data.train_file``,
    ``data.validation_file``, ``training.init_from``) are relative to the working directory, as on the command
    line."""
    path = find_config(path)
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
    except UnicodeDecodeError as err:
        raise DataFileError(f"config file {path} is not UTF-8 text: {err}") from err
    except yaml.YAMLError as err:
        raise DataFileError(f"config file {path} is not valid YAML: {err}") from err
    if values is None:
        raise DataFileError(f"config file {path} is empty; it needs model, data and training sections")
    return from_dict(values)


def save_config(config: Config, path: str | Path) -> Path:
    """Write ``config`` as YAML (readable by :func:`load_config`)."""
    path = Path(path)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path
