"""The training loop: supervised training of any model ``model(y, op)`` on any operator and data source.

:class:`Trainer` takes objects: a model, an operator (or an :class:`OperatorSource` that gives each step its own
operator), a data source with ``batch(positions)`` (see :mod:`learnrecon.data.sources`), validation pairs, a loss
and an optimiser; :meth:`Trainer.from_config` builds them from a YAML config. Adam with a cosine learning-rate
decay computed from the step (no scheduler state), gradient clipping, bfloat16 autocast on CUDA, checkpoints every
``checkpoint_every`` steps (``last``) and on the best validation PSNR (``best``), CSV and TensorBoard scalars, a
validation figure every ``figure_every`` steps, distributed data-parallel training when launched by ``torchrun``,
and a lock on the run folder (one writer at a time).

Output folder::

    config.yaml             the resolved config
    last.safetensors/.json  the latest checkpoint (resume from it with ``resume=True``)
    best.safetensors/.json  the checkpoint with the best validation PSNR
    metrics.csv             step, loss, lr, grad_norm, seconds
    validation.csv          step, loss, psnr, ssim (PSNR and SSIM under the library's one convention,
                            :data:`learnrecon.evaluation.DATA_RANGE`: each reference image's own range)
    diagnostics.csv         step and what the model reports of its forward passes (``model.diagnostics()``,
                            e.g. an equilibrium model's non-converged fraction), for models that report
    tensorboard/            the same scalars for TensorBoard (when the tensorboard package is installed)
    figures/                validation reconstructions
"""

from __future__ import annotations

import csv
import math
import os
import platform
import shutil
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

import learnrecon
from learnrecon._checks import parse_device
from learnrecon.config import TASK_MODES, Config, TrainingConfig, save_config, upgrade_data_section
from learnrecon.data.sources import Batch, Pairs, make_training_data, make_validation_data
from learnrecon.errors import DataFileError, LearnreconError, NonFiniteError, ParameterError, ShapeError
from learnrecon.evaluation import check_labels, diagnostics_of, predict, predict_task, score, segmentation_scores
from learnrecon.io.checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
from learnrecon.io.lock import output_lock
from learnrecon.models.base import Unrolled
from learnrecon.models.hub import build_model, checkpoint_location, load_weights
from learnrecon.models.segmentation import image_of
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.registry import operator_config
from learnrecon.training.losses import JointLoss, get_loss
from learnrecon.training.subsampling import AngleSubsets

__all__ = ["OperatorSource", "Trainer", "TrainingError", "learning_rate", "step_positions", "synchronise_batch_norm"]

#: An image loss ``loss(x̂, x) -> scalar`` (see :data:`learnrecon.training.losses.LOSSES`).
ImageLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_METRIC_FIELDS = ("step", "loss", "lr", "grad_norm", "seconds")
_VALIDATION_FIELDS = ("step", "loss", "psnr", "ssim")
#: A task run's validation adds the segmentation's scores (see :func:`learnrecon.evaluation.segmentation_scores`).
_TASK_VALIDATION_FIELDS = (*_VALIDATION_FIELDS, "image_loss", "task_loss", "dice", "cross_entropy", "accuracy")


class TrainingError(LearnreconError, RuntimeError):
    """Training cannot go on (a non-finite loss or gradient, out of memory)."""


def learning_rate(step: int, base: float, total: int, schedule: str) -> float:
    """Learning rate at ``step``: ``base·½(1 + cos(π·step/total))`` (cosine) or ``base`` (constant)."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    raise ParameterError(f"unknown learning-rate schedule {schedule!r}; choose cosine or constant")


@runtime_checkable
class OperatorSource(Protocol):
    """Gives each training step its own operator and data: ``for_step(step, y) -> (op_s, y_s)`` (e.g. a random
    subset of the angles and the rows of ``y`` that belong to it); ``operator`` is the full operator, which
    validation and checkpoints use."""

    operator: LinearOperator

    def for_step(self, step: int, y: torch.Tensor) -> tuple[LinearOperator, torch.Tensor]: ...


def step_positions(step: int, batch_size: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """The sample positions rank ``rank`` of ``world`` trains on at ``step``: block ``rank`` of the step's
    ``batch_size`` consecutive positions ``step·B, …, step·B + B − 1`` cut into ``world`` blocks
    (``batch_size`` a multiple of ``world``)."""
    per_rank = batch_size // world
    start = step * batch_size + rank * per_rank
    return torch.arange(start, start + per_rank)


class Trainer:
    """Train ``model(y, op)`` on the pairs of ``data``, writing into ``run_dir``.

    Args:
        model: any ``nn.Module`` called as ``model(y, op)``; one built by :func:`learnrecon.models.build_model`
            records its name and parameters (``model.spec``), so its checkpoints rebuild it by name.
        op: the forward operator, or an :class:`OperatorSource` giving each step its own (validation and
            checkpoints then use ``op.operator``).
        data: a data source: ``batch(positions) -> Pairs | Batch`` and ``indices(positions)`` (see
            :mod:`learnrecon.data.sources`); a batch's ``extra["op"]``, if any, is the operator of that batch.
        run_dir: the output folder. An existing run there is continued only with ``resume=True``, replaced
            only with ``overwrite=True``; it is locked while this trainer exists (until :meth:`close`).
        settings: the training section (steps, batch size, learning rate and schedule, logging, device, ...).
        validation: pairs scored every ``settings.validate_every`` steps (None: no validation and no ``best``).
        loss: an image loss ``loss(x̂, x)`` or its name (default ``settings.loss``).
        optimizer: default Adam(``settings.lr``, ``settings.betas``, ``settings.weight_decay``); the schedule
            scales each parameter group's initial learning rate.
        config: the whole experiment, recorded in ``config.yaml`` and in the checkpoints (``from_config`` gives it).
        resume: continue from ``run_dir/last`` (same batches, learning rates and RNG state as without the break);
            the config must be the run's, but for the training keys of :data:`_FREE_ON_RESUME`.
        progress: show a tqdm bar.
    """

    def __init__(
        self,
        model: nn.Module,
        op: LinearOperator | OperatorSource,
        data,
        *,
        run_dir: str | Path,
        settings: TrainingConfig | None = None,
        validation: Pairs | Batch | None = None,
        loss: str | ImageLoss | JointLoss | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        config: Config | None = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
    ) -> None:
        self.settings = t = settings or TrainingConfig()
        self.config, self.out, self.progress = config, Path(run_dir), progress
        self.op_source = op if isinstance(op, OperatorSource) else None
        self.op = op.operator if self.op_source is not None else op
        self.data, self.validation = data, validation
        _check_training(t)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = parse_device(t.device, "training.device", int(os.environ.get("LOCAL_RANK", "0")))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if t.batch_size % self.world:
            raise ParameterError(f"training.batch_size {t.batch_size} must be a multiple of the {self.world} processes")
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self._check_folder(resume, overwrite)
        self._resources = ExitStack()
        if self.is_main:
            self._resources.enter_context(output_lock(self.out, f"learnrecon train ({_model_name(model)})"))
        try:
            self._build(model, loss, optimizer, resume, overwrite)
        except BaseException:
            self.close()  # a refused run releases the folder at once
            raise

    def _build(self, model: nn.Module, loss, optimizer, resume: bool, overwrite: bool) -> None:
        t = self.settings
        self.model = model.to(self.device)
        self.loss_fn = self._loss_function(loss)
        if getattr(self.loss_fn, "uses_labels", False) and not hasattr(self.model, "n_classes"):
            raise ParameterError(f"a task run (training.task_weight, training.task_mode) needs a task-adapted model; "
                                 f"{self.name} has no task network")  # fmt: skip
        if t.task_mode == "sequential":
            self.model.freeze_reconstructor()
        self._check_spaces()
        if hasattr(self.model, "training_loss") and (self.world > 1 or t.is_task_run or t.greedy_steps):
            raise ParameterError(
                f"{self.name} is a learned regulariser trained by its own loss (training_loss): it trains on one "
                "device, without a task or greedy stages"
            )
        if t.greedy_steps:
            self._check_greedy()
        if t.checkpoint_activations:
            if not isinstance(self.model, Unrolled):
                raise ParameterError(
                    f"training.checkpoint_activations applies to unrolled models; {self.name} is not one"
                )
            self.model.checkpoint_activations = True
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = optimizer or torch.optim.Adam(trainable, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.started_from = self._start_from(t.init_from) if t.init_from and not resume else None
        self.step, self.best_psnr, self.seconds = 0, -math.inf, 0.0
        self.saved_step: int | None = None  # the step of out/last, once there is one
        self._warned_nonconverged = False
        if resume:
            self._restore()
        self._prepare_folder(resume, overwrite)  # only once everything is built and checked: bad input writes nothing
        self.net = self.model
        if self.world > 1:
            self.model = synchronise_batch_norm(self.model, self.device)
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        self._writer = self._tensorboard() if self.is_main else None
        if self._writer is not None:
            self._resources.callback(self._writer.close)

    def _loss_function(self, loss):
        """The loss given (a name or a function), else the settings': a :class:`JointLoss` for a task run."""
        t = self.settings
        if loss is not None and not isinstance(loss, str):
            return loss
        if t.is_task_run:
            return JointLoss(t.task_c, t.loss if loss is None else loss, t.dice_weight)
        return get_loss(t.loss if loss is None else loss)

    def _loss(self, output, x: torch.Tensor, extra: dict) -> torch.Tensor:
        """The loss of a model's output against the truth (and, for a task loss, the batch's labels)."""
        if getattr(self.loss_fn, "uses_labels", False):
            return self.loss_fn(output, x, extra["labels"].to(x.device))
        image = image_of(output)  # in float32 (complex64 for MRI), whatever precision autocast ran in
        return self.loss_fn(image.to(torch.complex64) if image.is_complex() else image.float(), x)

    def _check_greedy(self) -> None:
        t = self.settings
        if not isinstance(self.model, Unrolled):
            raise ParameterError(f"training.greedy_steps applies to unrolled models; {self.name} is not one")
        if len(self.model.steps) != self.model.n_iter:
            raise ParameterError("training.greedy_steps needs one step module per iteration (share_weights: false)")
        if self.world > 1:
            raise ParameterError("training.greedy_steps runs in one process (its frozen weights change by stage)")
        if t.steps < self.model.n_iter * t.greedy_steps:
            raise ParameterError(
                f"training.steps {t.steps} is fewer than the greedy stages need: {self.model.n_iter} iterations × "
                f"greedy_steps {t.greedy_steps} = {self.model.n_iter * t.greedy_steps}"
            )

    def stage(self, step: int) -> tuple[int | None, int, int]:
        """The greedy stage of ``step`` (the iteration that trains; None: end-to-end) and the first step and the
        length of that stage (the whole run without greedy training)."""
        t = self.settings
        if not t.greedy_steps:
            return None, 0, t.steps
        greedy_total = self.model.n_iter * t.greedy_steps
        if step < greedy_total:
            k = step // t.greedy_steps
            return k, k * t.greedy_steps, t.greedy_steps
        return None, greedy_total, max(t.steps - greedy_total, 1)

    @classmethod
    def from_config(
        cls,
        config: Config,
        run_dir: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
    ) -> Trainer:
        """The trainer of a config: its model (``config.model``), the operator and data of ``config.data``
        (simulated on the fly or read from files) and its training section; every section is checked before
        anything is written."""
        _check_training(config.training)
        labels = config.training.is_task_run
        data, op = make_training_data(config.data, labels=labels)
        validation = make_validation_data(config.data, op, labels=labels)
        torch.manual_seed(config.training.seed)
        model = build_model(config.model.name, config.model.params, op=op)
        fraction = config.training.angle_fraction
        source = AngleSubsets(op, fraction, seed=config.training.seed) if fraction < 1 else op
        return cls(
            model,
            source,
            data,
            run_dir=run_dir,
            settings=config.training,
            validation=validation,
            config=config,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
        )

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.rank == 0

    @property
    def name(self) -> str:
        """The model's registry name (or its class name)."""
        return _model_name(self.model)

    def close(self) -> None:
        """Release the run folder's lock and close the TensorBoard writer (also when the trainer is deleted)."""
        self._resources.close()

    def __del__(self) -> None:
        resources = getattr(self, "_resources", None)
        if resources is not None:
            resources.close()

    # -- set-up -------------------------------------------------------------------------------------

    def _check_folder(self, resume: bool, overwrite: bool) -> None:
        last = self.out / "last.safetensors"
        if self.out.exists() and not self.out.is_dir():
            raise DataFileError(f"{self.out} is a file; the output of a run is a folder")
        if resume and not last.exists():
            raise DataFileError(f"cannot resume: {last} does not exist")
        if not resume and self.out.exists() and any(self.out.iterdir()) and not overwrite:
            if (self.out / "config.yaml").exists() and not last.exists():
                raise DataFileError(
                    f"{self.out} holds a run that stopped before its first checkpoint; pass --overwrite to start again"
                )
            raise DataFileError(f"{self.out} already holds a run; pass --resume to continue it or --overwrite")

    def _check_spaces(self) -> None:
        """Refuse, before any step, a data source whose pairs do not fit the operator and a model that does not
        accept the operator's spaces (one forward pass of one validation or training sample)."""
        first = self.data.batch(step_positions(0, self.settings.batch_size // self.world))
        x, y = first[0], first[1]
        op = (first[2] or {}).get("op", self.op) if len(first) > 2 else self.op
        for name, tensor, shape, space in (
            ("truth", x, op.domain_shape, "images"),
            ("data", y, op.range_shape, "data"),
        ):
            if tuple(tensor.shape[2:]) != tuple(shape) or tensor.ndim != len(shape) + 2:
                raise ShapeError(
                    f"the training data's {name} have shape {tuple(tensor.shape)} but {op.name}'s {space} need "
                    f"(batch, 1, {', '.join(map(str, shape))}); give data simulated with this operator"
                )
        if getattr(self.loss_fn, "uses_labels", False):
            self._check_labels(first, "training data")
            if self.validation is not None:
                self._check_labels(self.validation, "validation data")
        sample = (self.validation[1] if self.validation is not None else y)[:1]
        was_training = self.model.training
        try:
            with torch.no_grad():
                self.model.eval()(sample.to(self.device), self.op)
        except LearnreconError as err:
            raise type(err)(f"model {self.name} cannot reconstruct {self.op.name}'s data: {err}") from err
        finally:
            self.model.train(was_training)

    def _check_labels(self, batch, what: str) -> None:
        """Refuse a task run's data without label maps, or with maps of another shape or more classes."""
        extra = batch[2] if len(batch) > 2 else {}
        if "labels" not in (extra or {}):
            raise DataFileError(f"the {what} hold no labels, which a task run (training.task_weight) trains on")
        try:
            check_labels(extra["labels"], self.model.n_classes, tuple(self.op.domain_shape[-2:]))
        except LearnreconError as err:
            raise type(err)(f"the {what}: {err}") from err

    def _prepare_folder(self, resume: bool, overwrite: bool) -> None:
        if self.world > 1:
            dist.barrier()  # every rank has checked the folder before rank 0 writes into it
        if self.is_main:
            if overwrite and not resume:
                for name in ("last", "best"):
                    for suffix in (".safetensors", ".json"):
                        (self.out / f"{name}{suffix}").unlink(missing_ok=True)
                for name in _LOG_FILES:
                    (self.out / name).unlink(missing_ok=True)
                for figure in (self.out / "figures").glob("validation-*.png"):
                    figure.unlink()
                shutil.rmtree(self.out / "tensorboard", ignore_errors=True)
            if resume:
                for name in _LOG_FILES:
                    _truncate_log(self.out / name, self.step)
            (self.out / "figures").mkdir(parents=True, exist_ok=True)
            if self.config is not None:
                save_config(self.config, self.out / "config.yaml")

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("tensorboard is not installed: writing CSV logs only", stacklevel=3)
            return None
        return SummaryWriter(self.out / "tensorboard", purge_step=self.step + 1 if self.step else None)

    def _start_from(self, name: str) -> dict:
        """Load the weights of checkpoint (or shipped model) ``name``; return what provenance records of it."""
        path = checkpoint_location(name)
        tensors, meta = load_checkpoint(path, self.device)
        saved = meta.get("model", {})
        wanted = self._model_record()
        free = getattr(type(self.model), "weight_free_params", ())
        saved_params = saved.get("params", {})
        if "name" in wanted and (
            saved.get("name") != wanted["name"] or _without(saved_params, free) != _without(wanted["params"], free)
        ):
            raise DataFileError(
                f"training.init_from {name!r} holds model {saved.get('name')!r} {saved.get('params')}, "
                f"the config asks for {wanted['name']!r} {wanted['params']}"
            )
        load_weights(self.model, tensors, meta, path)
        return {
            "checkpoint": str(name),
            "sha256": meta["sha256"],
            "step": meta.get("step"),
            "seconds": meta.get("seconds"),
            "best_psnr": meta.get("best_psnr"),
            "started_from": meta.get("started_from"),
            **({"widened_from": meta["widened_from"]} if "widened_from" in meta else {}),
            **({"model_params": saved_params} if saved_params != wanted.get("params", saved_params) else {}),
        }

    def _restore(self) -> None:
        path = self.out / "last"
        tensors, meta = load_checkpoint(path, self.device)
        saved_name, name = meta.get("model", {}).get("name", meta.get("model", {}).get("class")), self.name
        if saved_name != name and saved_name != _class_name(self.model):
            raise DataFileError(f"{path}.json holds model {saved_name!r}, the config asks for {name!r}")
        if "optimizer" not in meta or "rng/torch" not in tensors:
            raise DataFileError(
                f"{path} holds weights only (no optimiser or RNG state), so there is no run to resume; "
                "start a new run from it with training.init_from"
            )
        changed = _config_changes(_upgraded(meta.get("config", {})), self.record())
        if changed:
            raise DataFileError(
                f"cannot resume {path}: the config differs from the run's in {', '.join(changed)}; resume with the "
                f"run's {self.out / 'config.yaml'}, or start a new run (--overwrite, or training.init_from)"
            )
        load_weights(self.model, tensors, meta, path)
        restore_optimizer(self.optimizer, tensors, meta["optimizer"])
        torch.set_rng_state(tensors["rng/torch"].cpu())
        cuda_keys = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
        cuda_states = [tensors[k].cpu() for k in cuda_keys]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
        self.step, self.best_psnr = int(meta["step"]), float(meta.get("best_psnr", -math.inf))
        self.seconds = float(meta.get("seconds", 0.0))
        self.started_from = meta.get("started_from")
        self.saved_step = self.step

    # -- the loop ------------------------------------------------------------------------------------

    def train(self, until: int | None = None, max_seconds: float | None = None) -> dict:
        """Train up to step ``until`` (default: ``training.steps``) or for ``max_seconds``; returns a summary."""
        t = self.settings
        until = t.steps if until is None else min(until, t.steps)
        base_seconds, started = self.seconds, time.perf_counter()
        bar = tqdm(  # a time-limited run shows its rate, not an ETA for steps it will not reach
            total=None if max_seconds is not None else max(until - self.step, 0),
            desc=f"training {self.name}" + (f" for {max_seconds / 60:.3g} min" if max_seconds is not None else ""),
            unit="step",
            disable=not (self.progress and self.is_main),
        )
        losses = []
        for positions, batch in self._batches(until):
            loss, grad_norm = self._train_step(positions, *batch)
            losses.append(loss)
            self.seconds = base_seconds + time.perf_counter() - started
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.2e}")
            self._after_step(loss, grad_norm)
            if max_seconds is not None and self._time_is_up(time.perf_counter() - started >= max_seconds):
                break
        bar.close()
        if t.greedy_steps:
            self.model.set_greedy_stage(None)  # every iteration again (the same output: later steps start at zero)
        if self.step % t.checkpoint_every:
            self._checkpoint()
        if self._writer is not None:
            self._writer.flush()
        return {"steps": self.step, "losses": losses, "best_psnr": self.best_psnr, "seconds": self.seconds}

    def _time_is_up(self, here: bool) -> bool:
        """Whether any process's time is up (all stop at the same step: a process that left the loop alone
        would wait at the checkpoint for the others, which wait for it in the next gradient exchange)."""
        if self.world == 1:
            return here
        flag = torch.tensor([float(here)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _autocast(self):
        if self.settings.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _batches(self, until: int):
        """``(positions, (x, y, extra))`` of steps ``self.step, …, until − 1``, drawn ahead in
        ``training.num_workers`` processes when set (each batch a function of its step alone)."""
        t = self.settings
        steps = _StepBatches(self.data, range(self.step, until), t.batch_size, self.rank, self.world)
        if t.num_workers == 0:
            return iter(steps[i] for i in range(len(steps)))
        loader = torch.utils.data.DataLoader(
            steps, batch_size=None, num_workers=t.num_workers, pin_memory=self.device.type == "cuda", prefetch_factor=4
        )
        return iter(loader)

    def _step_operator(self, y: torch.Tensor, extra: dict) -> tuple[LinearOperator, torch.Tensor]:
        """The operator and data of this step: the batch's own operator, the operator source's, or the run's."""
        if "op" in extra:
            return extra["op"], y
        if self.op_source is not None:
            return self.op_source.for_step(self.step, y)
        return self.op, y

    def _train_step(
        self, positions: torch.Tensor, x: torch.Tensor, y: torch.Tensor, extra: dict
    ) -> tuple[float, float]:
        t = self.settings
        stage, stage_start, stage_steps = self.stage(self.step)
        if t.greedy_steps:
            self.model.set_greedy_stage(stage)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step - stage_start, group["initial_lr"], stage_steps, t.schedule)
        self.model.train()
        with self._out_of_memory_named(f"training step {self.step + 1}"):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            op, y = self._step_operator(y, extra)
            own_loss = getattr(self.model, "training_loss", None)  # a learned regulariser's own loss
            try:
                with self._autocast():
                    output = own_loss(x, y, op) if own_loss else self.net(y, op)
            except NonFiniteError as err:
                raise self._stopped(f"non-finite data ({err})", positions, "check the training data") from err
            loss = output if own_loss else self._loss(output, x, extra)
            self._check_finite(loss, "loss", positions)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for p in self.model.parameters() if p.grad is not None]
            max_norm = t.clip_grad_norm if t.clip_grad_norm > 0 else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            self._check_finite(grad_norm, "gradient norm", positions)
            self.optimizer.step()
            if callable(after_step := getattr(self.model, "after_step", None)):
                after_step()  # e.g. the projection that keeps an input-convex network convex
        self.step += 1
        loss_value = loss.detach()
        if self.world > 1:
            dist.all_reduce(loss_value)
            loss_value /= self.world
        return float(loss_value), float(grad_norm)

    def _check_finite(self, value: torch.Tensor, what: str, positions: torch.Tensor) -> None:
        if not torch.isfinite(value):
            raise self._stopped(f"{what} is {float(value.detach())}", positions, "lower training.lr or check the data")

    def _stopped(self, problem: str, positions: torch.Tensor, advice: str) -> TrainingError:
        """The error that stops training at this step: ``problem``, the batch's samples, the checkpoint kept."""
        kept = (
            f"the last good checkpoint is {self.out / 'last'} (step {self.saved_step})"
            if self.saved_step is not None
            else "no checkpoint had been saved yet"
        )
        return TrainingError(
            f"{problem} at step {self.step + 1} (batch of samples {self.data.indices(positions)}); "
            f"stopped without saving: {kept}. {advice[0].upper()}{advice[1:]}"
        )

    @contextmanager
    def _out_of_memory_named(self, where: str):
        """Turn running out of GPU memory inside the block into a TrainingError that says what to change."""
        try:
            yield
        except torch.cuda.OutOfMemoryError as err:
            raise TrainingError(
                f"out of GPU memory in {where} with batch size {self.settings.batch_size}: lower "
                "training.batch_size, set training.checkpoint_activations (unrolled models), use a smaller "
                "validation set or model, or train on a device with more memory"
            ) from err

    def _after_step(self, loss: float, grad_norm: float) -> None:
        t = self.settings
        if self.is_main and (self.step % t.log_every == 0 or self.step == t.steps):
            lr = self.optimizer.param_groups[0]["lr"]
            row = {"step": self.step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "seconds": self.seconds}
            self._log("metrics.csv", _METRIC_FIELDS, row, "train")
            self._log_diagnostics()
        if self.validation is not None and (
            self.step % t.validate_every == 0 or self.step % t.figure_every == 0 or self.step == t.steps
        ):
            self._validate()
        if self.step % t.checkpoint_every == 0:
            self._checkpoint()

    def _log_diagnostics(self) -> None:
        """Log what the model reports of its last forward pass, and warn once when a solve did not converge."""
        report = diagnostics_of(self.model)
        if not report:
            return
        self._log("diagnostics.csv", ("step", *sorted(report)), {"step": self.step, **report}, "diagnostics")
        if report.get("nonconverged_fraction", 0.0) > 0 and not self._warned_nonconverged:
            self._warned_nonconverged = True
            warnings.warn(
                f"{self.name}: {100 * report['nonconverged_fraction']:.0f} % of the samples of step {self.step} did "
                f"not converge (the rate of every step is in {self.out / 'diagnostics.csv'})",
                stacklevel=2,
            )

    # -- validation, logs, checkpoints ------------------------------------------------------------------

    def _validate(self) -> None:
        if self.is_main:
            x, y = self.validation[0], self.validation[1]
            task = getattr(self.loss_fn, "uses_labels", False)
            with self._out_of_memory_named(f"validation at step {self.step}"):
                run = predict_task if task else predict
                output = run(self.model, y, self.op, batch_size=self.settings.batch_size, device=self.device)
            x_hat = image_of(output)
            scores = score(x_hat, x)
            psnr = float(scores.psnr.mean())
            row = {"step": self.step, "psnr": psnr, "ssim": float(scores.ssim.mean())}
            if task:
                labels = self.validation[2]["labels"]
                terms = self.loss_fn.terms(output, x, labels)
                row.update(
                    loss=float(self.loss_fn(output, x, labels)),
                    image_loss=float(terms["image"]) if "image" in terms else math.nan,
                    task_loss=float(terms["task"]) if "task" in terms else math.nan,
                    **{k: v for k, v in segmentation_scores(output.logits, labels).items() if k != "dice_per_class"},
                )
            else:
                row["loss"] = float(self.loss_fn(x_hat, x))
            self._log("validation.csv", _TASK_VALIDATION_FIELDS if task else _VALIDATION_FIELDS, row, "validation")
            if psnr > self.best_psnr:
                self.best_psnr = psnr
                self.save("best", {"validation": row})
            if self.step % self.settings.figure_every == 0 or self.step == self.settings.steps:
                self._figure(x, x_hat, scores.psnr)
        if self.world > 1:
            dist.barrier()

    def _figure(self, x: torch.Tensor, x_hat: torch.Tensor, psnr: torch.Tensor) -> None:
        from learnrecon.report import reconstruction_grid

        n = min(2, len(x))
        reconstruction_grid(
            self.out / "figures" / f"validation-{self.step:07d}.png",
            list(x[:n]),
            {self.name: list(x_hat[:n])},
            [f"validation {i}" for i in range(n)],
            {self.name: [f"{float(psnr[i]):.2f} dB" for i in range(n)]},
        )

    def _log(self, name: str, fields: tuple[str, ...], row: dict, group: str) -> None:
        path = self.out / name
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._writer is not None:
            for key, value in row.items():
                if key != "step":
                    self._writer.add_scalar(f"{group}/{key}", value, self.step)

    def _checkpoint(self) -> None:
        if self.is_main:
            self.save("last")
        self.saved_step = self.step
        if self.world > 1:
            dist.barrier()

    def _model_record(self) -> dict[str, Any]:
        """What a checkpoint records of the model: its registry ``name`` and ``params``, else its class."""
        spec = getattr(self.model, "spec", None)
        return dict(spec) if spec else {"class": _class_name(self.model)}

    def record(self) -> dict[str, Any]:
        """The experiment as plain values: the config given, or the model, the operator and the training
        section of a trainer built from objects."""
        if self.config is not None:
            return self.config.to_dict()
        spec = self._model_record()
        operator = _storable_config(self.op)
        return {
            "model": {"name": spec.get("name"), "params": spec.get("params", {})} if "name" in spec else {},
            "data": {"operator": operator} if operator is not None else {},
            "training": _plain(asdict(self.settings)),
        }

    def metadata(self) -> dict:
        """What a checkpoint records besides the tensors."""
        return {
            "model": self._model_record(),
            "operator": _storable_config(self.op),
            "config": self.record(),
            "step": self.step,
            "seconds": self.seconds,
            "best_psnr": self.best_psnr,
            "device": torch.cuda.get_device_name(self.device)
            if self.device.type == "cuda"
            else platform.processor() or platform.machine(),
            "world_size": self.world,
            "learnrecon_version": learnrecon.__version__,
            "torch_version": torch.__version__,
            "started_from": self.started_from,
        }

    def save(self, name: str, extra: dict | None = None) -> Path:
        """Write checkpoint ``out/<name>`` (weights, optimiser, RNG state, metadata)."""
        meta = {**self.metadata(), **(extra or {})}
        return save_checkpoint(self.out / name, self.model, meta, self.optimizer)


def _model_name(model: nn.Module) -> str:
    spec = getattr(model, "spec", None)
    return spec["name"] if spec else type(model).__name__


def _class_name(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _storable_config(op: LinearOperator) -> dict | None:
    """``op``'s config when it can be stored (see :func:`operator_config`), else None."""
    try:
        return operator_config(op)
    except LearnreconError:
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _upgraded(config: dict) -> dict:
    """A config a checkpoint saved, its data section in today's layout (checkpoints of earlier versions)."""
    if isinstance(config.get("data"), dict):
        return {**config, "data": upgrade_data_section(config["data"], warn=False)}
    return config


_LOG_FILES = ("metrics.csv", "validation.csv")

#: Training keys a resumed run may change: where and how it runs (device, threads, workers, activation
#: checkpointing), what it logs, how long it goes on, and ``init_from``, which only a new run reads. Any other
#: change would continue another experiment.
_FREE_ON_RESUME = frozenset(
    {
        "steps",
        "device",
        "threads",
        "num_workers",
        "log_every",
        "validate_every",
        "checkpoint_every",
        "figure_every",
        "init_from",
        "checkpoint_activations",
    }
)


def _config_changes(saved: dict, now: dict) -> list[str]:
    """The keys ``section.key`` set in both the config a checkpoint saved and ``now`` whose values differ,
    except the training keys of :data:`_FREE_ON_RESUME`."""
    return [
        f"{section}.{key}"
        for section, values in now.items()
        for key, value in values.items()
        if key in saved.get(section, {})
        and saved[section][key] != value
        and not (section == "training" and key in _FREE_ON_RESUME)
    ]


def synchronise_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` for data-parallel training: on a GPU its batch norms become ``SyncBatchNorm`` (statistics over
    the whole batch, as in one process; same weights and buffers); elsewhere, where torch has no
    ``SyncBatchNorm``, each process normalises with its part of the batch, and a warning says so."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    warnings.warn(
        f"{type(model).__name__} has batch norm, which torch synchronises across processes only on a GPU: on "
        f"{device.type} each process normalises with its part of the batch, so a step differs from one process's "
        "on the whole batch",
        stacklevel=2,
    )
    return model


class _StepBatches(torch.utils.data.Dataset):
    """Item ``i``: the sample positions of step ``steps[i]`` and their pairs (a map-style data set, so that
    DataLoader workers can simulate batches ahead of the training step)."""

    def __init__(self, data, steps: range, batch_size: int, rank: int, world: int) -> None:
        self.data, self.steps, self.batch_size, self.rank, self.world = data, steps, batch_size, rank, world

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, dict]]:
        positions = step_positions(self.steps[i], self.batch_size, self.rank, self.world)
        batch = self.data.batch(positions)
        return positions, (batch[0], batch[1], dict(batch[2]) if len(batch) > 2 else {})


def _without(params: dict, keys: tuple[str, ...]) -> dict:
    """``params`` less ``keys``."""
    return {k: v for k, v in params.items() if k not in keys}


def _truncate_log(path: Path, step: int) -> None:
    """Drop the rows of a CSV log written after ``step`` (by a run that stopped before its next checkpoint)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
        fields = rows[0].keys() if rows else None
    if fields is None:
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) <= step)


def _check_training(t: TrainingConfig) -> None:
    """Refuse a training section with a value out of its range, naming the key."""
    positive = {
        "steps": t.steps,
        "batch_size": t.batch_size,
        "log_every": t.log_every,
        "validate_every": t.validate_every,
        "checkpoint_every": t.checkpoint_every,
        "figure_every": t.figure_every,
    }
    for key, value in positive.items():
        if value < 1:
            raise ParameterError(f"training.{key} must be >= 1, got {value}")
    if not (t.lr > 0 and math.isfinite(t.lr)):
        raise ParameterError(f"training.lr must be positive and finite, got {t.lr}")
    if not all(0 <= b < 1 for b in t.betas):
        raise ParameterError(f"training.betas must lie in [0, 1), got {t.betas}")
    if t.threads < 0 or t.num_workers < 0:
        raise ParameterError("training.threads and training.num_workers must be >= 0")
    if t.greedy_steps < 0:
        raise ParameterError(f"training.greedy_steps must be >= 0, got {t.greedy_steps}")
    if not (0 < t.angle_fraction <= 1):
        raise ParameterError(f"training.angle_fraction must lie in (0, 1], got {t.angle_fraction}")
    if t.clip_grad_norm < 0 or t.weight_decay < 0:
        raise ParameterError("training.clip_grad_norm and training.weight_decay must be >= 0")
    learning_rate(0, t.lr, t.steps, t.schedule)
    get_loss(t.loss)
    _check_task(t)


def _check_task(t: TrainingConfig) -> None:
    """Refuse task settings out of range: C outside [0, 1], an unknown mode, a mode that fixes C given another."""
    if t.task_mode not in TASK_MODES:
        raise ParameterError(f"training.task_mode must be one of {', '.join(TASK_MODES)}, got {t.task_mode!r}")
    if t.task_weight is not None and not 0 <= t.task_weight <= 1:
        raise ParameterError(f"training.task_weight (C) must lie in [0, 1], got {t.task_weight}")
    if t.task_mode != "joint" and t.task_c != 1:
        raise ParameterError(
            f"training.task_mode {t.task_mode} trains on the task loss alone (C = 1), got task_weight {t.task_weight}"
        )
    if t.dice_weight < 0:
        raise ParameterError(f"training.dice_weight must be >= 0, got {t.dice_weight}")
