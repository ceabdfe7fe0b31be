"""The task-adapted benchmark (Adler, Lunz, Verdier, Schönlieb & Öktem 2022): joint reconstruction and segmentation
for task weights C ∈ :data:`TASK_WEIGHTS`, ``ℓ = (1 − C)·ℓ_X + C·ℓ_D``, on each problem of :data:`PROBLEMS`: CT
(learned primal-dual on 15-angle parallel-beam data) and undersampled MRI (FBPConvNet-style post-processing of
the zero-filled image, segmenting its magnitude).

Protocol (each problem and seed): a reconstructor is trained alone (``task_weight: 0``, the problem's
``reconstruction_steps``); every C then starts from it with a fresh segmentation network for its ``task_steps``:
C = 0 is the sequential pipeline (the reconstructor frozen, the task network trained on its outputs), 0 < C < 1
trains both on the joint loss, C = 1 both on the task loss alone (end to end). All runs of a problem see the same
data stream; each is evaluated at its last checkpoint on :data:`N_TEST` held-out phantoms: PSNR/SSIM of the
image (of its magnitude for MRI), mean Dice, cross-entropy and pixel accuracy of the segmentation.

``quick`` evaluates the shipped weights of seed 0 (``learnrecon/pretrained/task-adapted/<problem>-c<C>``);
``full`` trains every run in ``runs_dir`` (resuming what is there) for the seeds asked, then evaluates them.

Output folder::

    report.md, results.json   per problem, C and seed: PSNR, SSIM, Dice (mean, per class), cross-entropy, accuracy
    figures/tradeoff.png      CT: the task and reconstruction losses on the test set against C
    figures/segmentations.png CT: reconstructions and segmentations of one test phantom across C
    figures/tradeoff-mri.png, figures/segmentations-mri.png   the same for MRI
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from learnrecon.config import Config, from_dict
from learnrecon.data.sources import make_validation_data
from learnrecon.errors import ParameterError
from learnrecon.evaluation import predict_task, score, segmentation_scores
from learnrecon.io.checkpoint import checkpoint_paths
from learnrecon.io.lock import output_lock
from learnrecon.models.hub import PRETRAINED_DIR, load_model
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.registry import build_operator
from learnrecon.report import machine_info, markdown_table, write_json
from learnrecon.training import train_to_completion
from learnrecon.training.losses import JointLoss

__all__ = [
    "PROBLEMS",
    "SHIPPED_DIR",
    "TaskProblem",
    "TASK_PRESETS",
    "TASK_WEIGHTS",
    "run_task_benchmark",
    "sweep_config",
    "task_dry_run",
    "train_sweep",
]

#: The task weights of the sweep (Adler et al.'s, with both ends).
TASK_WEIGHTS = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0)
N_TEST = 100
TEST_SEED = 99_999
#: The task-adapted presets of ``learnrecon benchmark``: name -> whether it trains (the full version, both seeds).
TASK_PRESETS = {"task-adapted": False, "task-adapted-full": True}
#: The seeds of the full version.
FULL_SEEDS = (0, 1)
#: Where the quick version's weights live (one per problem and C, seed 0).
SHIPPED_DIR = PRETRAINED_DIR / "task-adapted"

#: The CT setup: 64² images (a CPU budget: the published one is 128²), 15 angles (fewer than the quick
#: preset's 30, which makes the images noisier and the segmentation harder), 5 % relative Gaussian noise,
#: Adler & Öktem's raw ellipses with their labels (background, denser, lighter ellipse).
CT_BASE = {
    "model": {
        "name": "task-adapted",
        "params": {
            "reconstructor": {"name": "lpd", "params": {"n_iter": 5, "width": 16, "init": "fbp"}},
            "task": {"n_classes": 3, "depth": 2, "width": 8},
        },
    },
    "data": {
        "operator": {"type": "ParallelBeam2D", "image_size": 64, "n_angles": 15, "n_detectors": 91},
        "phantom": {"type": "ellipses", "scaling": "none"},
        "noise": "relative:0.05",
        "n_validation": 16,
    },
    "training": {"batch_size": 4, "lr": 1e-3, "validate_every": 200, "checkpoint_every": 200, "figure_every": 1000},
}

#: The MRI setup: the MRI benchmark's problem (docs/mri.md: 64² complex ellipses with DIVal's magnitudes and a
#: smooth random phase up to 1.5 rad, 4 Gaussian coils, complex Gaussian k-space noise σ = 0.01) at 8× (a fastMRI
#: random mask, centre 0.04: at 4× the zero-filled image is already close, the task has less to gain), labels
#: those of the magnitudes. The reconstructor is FBPConvNet-style post-processing (a residual U-Net on the two
#: real channels of the zero-filled image); the segmentation U-Net sees the magnitude. Sized to ship each C in
#: under 0.2 MB as float16. Each C trains at a learning rate of 3·10⁻³ (the reconstructor alone at 10⁻³): at 10⁻³
#: the fresh U-Net never predicted the third class (negative topmost ellipse, whose sign the magnitude does not
#: show) within 400 steps at any C, and mean Dice stayed at 0.39–0.40.
MRI_BASE = {
    "model": {
        "name": "task-adapted",
        "params": {
            "reconstructor": {"name": "fbpconvnet", "params": {"depth": 3, "width": 6, "init": "auto"}},
            "task": {"n_classes": 3, "depth": 2, "width": 6},
        },
    },
    "data": {
        "operator": {"type": "MRI", "image_size": 64, "acceleration": 8, "mask_seed": 0, "n_coils": 4},
        "phantom": {"type": "mri-ellipses", "max_phase": 1.5},
        "noise": "gaussian:0.01",
        "n_validation": 16,
    },
    "training": {"batch_size": 4, "lr": 1e-3, "validate_every": 200, "checkpoint_every": 200, "figure_every": 1000,
                 "clip_grad_norm": 1.0},
}  # fmt: skip


@dataclass(frozen=True)
class TaskProblem:
    """One problem of the sweep.

    Attributes:
        name: its key; the shipped weights are ``<name>-c<C>``, the figures ``tradeoff<suffix>.png``.
        title: the report's section heading.
        description: the setup, in a sentence for the report.
        base: the config every run starts from (:func:`sweep_config` adds the stage, seed and C).
        reconstruction_steps, task_steps: the first stage's steps and each C's.
        task_lr: each C's learning rate, if not the base config's (which the first stage uses).
        runs_subdir: the folder of its runs inside ``runs_dir`` (CT's runs sit in ``runs_dir`` itself, as they
            were first trained).
        figure_suffix: appended to the figures' names.
    """

    name: str
    title: str
    description: str
    base: dict = field(repr=False)
    reconstruction_steps: int = 600
    task_steps: int = 200
    task_lr: float | None = None
    runs_subdir: str = ""
    figure_suffix: str = ""


#: The problems of the sweep, in the report's order.
PROBLEMS: dict[str, TaskProblem] = {
    "ct": TaskProblem(
        "ct",
        "CT",
        "CT, 64², 15 angles, 5 % noise, {n} held-out ellipse phantoms with labels (3 classes); LPD reconstructor",
        CT_BASE,
    ),
    "mri": TaskProblem(
        "mri",
        "MRI",
        "MRI, 64² complex ellipses (DIVal's magnitudes, smooth phase up to 1.5 rad), 4 coils, 8× random Cartesian "
        "mask (centre 0.04), complex noise σ = 0.01 on k-space, {n} held-out phantoms with their magnitudes' labels "
        "(3 classes); FBPConvNet-style reconstructor on the zero-filled image, the magnitude segmented",
        MRI_BASE,
        reconstruction_steps=1500,
        task_steps=500,
        task_lr=3e-3,
        runs_subdir="mri",
        figure_suffix="-mri",
    ),
}


def get_problem(problem: str | TaskProblem) -> TaskProblem:
    """The :class:`TaskProblem` called ``problem`` (one of :data:`PROBLEMS`), or ``problem`` itself."""
    if isinstance(problem, TaskProblem):
        return problem
    if problem not in PROBLEMS:
        raise ParameterError(f"unknown task-adapted problem {problem!r}; choose one of {', '.join(PROBLEMS)}")
    return PROBLEMS[problem]


def run_name(c: float | None) -> str:
    """The run folder's name: ``reconstructor`` for the first stage, ``c<C>`` for a task weight."""
    return "reconstructor" if c is None else f"c{c:g}"


def sweep_config(c: float | None, seed: int, start: str | None = None, problem: str | TaskProblem = "ct") -> Config:
    """The config of one run of ``problem``: the reconstructor stage (``c`` None) or task weight ``c`` started
    from ``start``."""
    problem = get_problem(problem)
    values: dict[str, Any] = copy.deepcopy(problem.base)
    values["data"]["seed"] = 1000 * seed
    training = values["training"]
    training["seed"] = seed
    if c is None:
        training.update(steps=problem.reconstruction_steps, task_weight=0.0)
    else:
        mode = "sequential" if c == 0 else "end-to-end" if c == 1 else "joint"
        training.update(steps=problem.task_steps, task_mode=mode, init_from=start)
        if problem.task_lr is not None:
            training["lr"] = problem.task_lr
        if mode == "joint":
            training["task_weight"] = c
    return from_dict(values)


def runs_folder(runs_dir: str | Path, seed: int, problem: str | TaskProblem = "ct") -> Path:
    """The folder of one seed's runs of ``problem``: ``runs_dir[/<runs_subdir>]/seed<s>``."""
    return Path(runs_dir) / get_problem(problem).runs_subdir / f"seed{seed}"


def train_sweep(
    runs_dir: str | Path, seeds: tuple[int, ...] = (0,), progress: bool = True, problem: str | TaskProblem = "ct"
) -> dict[int, dict]:
    """Train (or finish) every run of ``problem``'s sweep for each seed in :func:`runs_folder`; returns
    ``{seed: {C: run folder}}``."""
    runs: dict[int, dict] = {}
    for seed in seeds:
        folder = runs_folder(runs_dir, seed, problem)
        stages = [(None, None), *((c, str(folder / run_name(None) / "last")) for c in TASK_WEIGHTS)]
        runs[seed] = {}
        for c, start in stages:
            run = folder / run_name(c)
            train_to_completion(sweep_config(c, seed, start, problem), run, progress)
            if c is not None:
                runs[seed][c] = run / "last"
    return runs


def task_dry_run(full: bool, problems: tuple[str, ...] = tuple(PROBLEMS)) -> list[str]:
    """What the preset would do, each run's config built and checked (nothing trained or written)."""
    lines = []
    for problem in map(get_problem, problems):
        for seed in FULL_SEEDS if full else (0,):
            for c in (None, *TASK_WEIGHTS) if full else TASK_WEIGHTS:
                config = sweep_config(c, seed, "start" if c is not None else None, problem)
                t, what = config.training, "train" if full else "evaluate the shipped"
                lines.append(
                    f"{problem.title}: {what} seed {seed} {run_name(c)}: {t.task_mode}, C = {t.task_c:g}, "
                    f"{t.steps} steps"
                )
        if not full:
            shipped_runs(problem)
        x, _, labels, _ = test_set(problem)
        lines.append(
            f"{problem.title} test set: {x.shape[0]} phantoms {tuple(x.shape[-2:])} with labels of "
            f"{int(labels.max()) + 1} classes"
        )
    return lines


def shipped_runs(problem: str | TaskProblem = "ct") -> dict[int, dict]:
    """The shipped weights of the quick version of ``problem``: ``{0: {C: path}}`` (seed 0)."""
    problem = get_problem(problem)
    paths = {c: SHIPPED_DIR / f"{problem.name}-{run_name(c)}" for c in TASK_WEIGHTS}
    missing = [str(p) for p in paths.values() if not checkpoint_paths(p)[1].exists()]
    if missing:
        raise ParameterError(f"the shipped task-adapted weights are missing: {', '.join(missing)}")
    return {0: paths}


def test_set(problem: str | TaskProblem = "ct") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, LinearOperator]:
    """The held-out test phantoms of ``problem`` (truth, data, labels) and their operator: :data:`N_TEST`
    phantoms of a seed that no training or validation data use."""
    data = replace(sweep_config(None, 0, problem=problem).data, n_validation=N_TEST, validation_seed=TEST_SEED)
    op = build_operator(data.operator_section())
    test = make_validation_data(data, op, labels=True)
    return test[0], test[1], test[2]["labels"], op


def evaluate_run(path: Path, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, op) -> dict:
    """The image and segmentation scores of one run's model on the test set (and its two losses)."""
    model = load_model(path)
    output = predict_task(model, y, op, batch_size=16)
    scores = score(output.image, x)
    terms = JointLoss(0.5).terms(output, x, labels)
    return {
        "psnr": float(scores.psnr.mean()),
        "ssim": float(scores.ssim.mean()),
        **segmentation_scores(output.logits, labels),
        "image_loss": float(terms["image"]),
        "task_loss": float(terms["task"]),
        "output": output,
    }


def run_task_benchmark(
    out: str | Path, *, full: bool = False, seeds: tuple[int, ...] = (0,), runs_dir: str | Path = "runs/task-adapted",
    overwrite: bool = False, progress: bool = True, problems: tuple[str, ...] = tuple(PROBLEMS),
) -> dict:  # fmt: skip
    """Evaluate the sweep of each of ``problems`` (the shipped weights, or with ``full`` the runs trained in
    ``runs_dir``) and write the report into ``out`` (written to a temporary folder first). Returns
    ``{"problems": {name: {"rows", "summary"}}, "machine", "full", "minutes"}``."""
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise ParameterError(f"{out} exists; pass --overwrite to replace it")
    problems = tuple(get_problem(p).name for p in problems)
    started, load = time.perf_counter(), _load_average()
    runs = {name: train_sweep(runs_dir, seeds, progress, name) if full else shipped_runs(name) for name in problems}
    results, shown = {}, {}
    for name in problems:
        x, y, labels, op = test_set(name)
        rows, outputs = [], {}
        for seed, by_c in runs[name].items():
            for c, path in by_c.items():
                result = evaluate_run(path, x, y, labels, op)
                outputs[(seed, c)] = result.pop("output")
                rows.append({"seed": seed, "C": c, **result})
        results[name] = {"rows": rows, "summary": summarise(rows)}
        shown[name] = (rows, outputs, x, labels)
    with output_lock(out, "learnrecon benchmark --preset task-adapted"):
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "figures").mkdir(parents=True)
        summary = {"problems": results, "machine": {**machine_info(), "load_average_at_start": load}, "full": full}
        for name in problems:
            _figures(tmp / "figures", *shown[name], suffix=PROBLEMS[name].figure_suffix)
        summary["seconds"] = round(time.perf_counter() - started, 1)
        write_json(tmp / "results.json", summary)
        (tmp / "report.md").write_text(_report(summary), encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return summary


def summarise(rows: list[dict]) -> dict:
    """Per C, the mean over seeds (and the spread, max − min, with two or more) of PSNR, mean Dice and the task
    loss; the C with the best mean Dice, and whether the task loss is smallest strictly inside (0, 1)."""
    by_c: dict[float, list[dict]] = {}
    for row in rows:
        by_c.setdefault(row["C"], []).append(row)
    table = {}
    for c, group in sorted(by_c.items()):
        table[c] = {
            key: sum(r[key] for r in group) / len(group) for key in ("psnr", "ssim", "dice", "task_loss", "image_loss")
        }
        table[c]["dice_spread"] = max(r["dice"] for r in group) - min(r["dice"] for r in group)
        table[c]["psnr_spread"] = max(r["psnr"] for r in group) - min(r["psnr"] for r in group)
    best = max(table, key=lambda c: table[c]["dice"])
    lowest = min(table, key=lambda c: table[c]["task_loss"])
    close = [c for c in table if 0 < c < 1 and 0.0 in table and table[c]["psnr"] >= table[0.0]["psnr"] - 1]
    best_close = max(close, key=lambda c: table[c]["dice"]) if close else None
    return {
        "best_dice_C_within_1dB": best_close,
        "dice_gain_within_1dB": table[best_close]["dice"] - table[0.0]["dice"] if best_close is not None else None,
        "psnr_change_within_1dB": table[best_close]["psnr"] - table[0.0]["psnr"] if best_close is not None else None,
        "by_C": {f"{c:g}": v for c, v in table.items()},
        "best_dice_C": best,
        "task_loss_minimum_C": lowest,
        "task_loss_minimum_inside": 0 < lowest < 1,
        "dice_gain_over_sequential": table[best]["dice"] - table[0.0]["dice"] if 0.0 in table else None,
        "psnr_change_at_best": table[best]["psnr"] - table[0.0]["psnr"] if 0.0 in table else None,
    }


def _verdict(s: dict, several_seeds: bool) -> str:
    verdict = (
        f"The best mean Dice is at C = {s['best_dice_C']:g}, {s['dice_gain_over_sequential']:+.4f} over the "
        f"sequential pipeline (C = 0), with PSNR {s['psnr_change_at_best']:+.2f} dB against it. The test task loss "
        f"is smallest at C = {s['task_loss_minimum_C']:g}"
        + (", strictly inside (0, 1)." if s["task_loss_minimum_inside"] else ", at an end of [0, 1].")
    )
    if s["best_dice_C_within_1dB"] is not None:
        gain = s["dice_gain_within_1dB"]
        verdict += (
            f" Among the C in (0, 1) whose PSNR is within 1 dB of the sequential pipeline's, the best mean Dice is at "
            f"C = {s['best_dice_C_within_1dB']:g}: {gain:+.4f}, PSNR {s['psnr_change_within_1dB']:+.2f} dB"
            + (
                " (a Dice above the sequential pipeline's)."
                if gain > 0
                else " (a Dice not above the sequential pipeline's)."
            )
        )
    else:
        verdict += " No C in (0, 1) keeps the PSNR within 1 dB of the sequential pipeline's."
    if several_seeds:
        spreads = ", ".join(f"C = {c}: {v['dice_spread']:.4f}" for c, v in s["by_C"].items())
        verdict += f"\n\nSpread of the mean Dice over the seeds (max − min): {spreads}."
    return verdict


def _report(summary: dict) -> str:
    columns = ["seed", "C", "psnr", "ssim", "dice", "cross_entropy", "accuracy", "image_loss", "task_loss"]
    digits = {"dice": 4, "cross_entropy": 4, "accuracy": 4, "image_loss": 5, "task_loss": 4, "ssim": 3}
    source = "runs trained in this benchmark" if summary["full"] else "the shipped weights (seed 0)"
    command = "task-adapted-full" if summary["full"] else "task-adapted"
    sections = []
    for name, result in summary["problems"].items():
        problem = PROBLEMS[name]
        rows = [{**row, "C": f"{row['C']:g}"} for row in result["rows"]]
        suffix = problem.figure_suffix
        lr = f" at learning rate {problem.task_lr:g}" if problem.task_lr is not None else ""
        sections.append(
            f"## {problem.title}\n\n{problem.description.format(n=N_TEST)}; {source}. Each C fine-tunes one "
            f"reconstructor ({problem.reconstruction_steps} steps alone) for {problem.task_steps} steps{lr} with a "
            "fresh segmentation U-Net: C = 0 the sequential pipeline, C = 1 end to end.\n\n"
            f"{markdown_table(rows, columns, digits=digits)}\n"
            f"{_verdict(result['summary'], len({r['seed'] for r in rows}) > 1)}\n\n"
            f"![trade-off {name}](figures/tradeoff{suffix}.png)\n\n"
            f"![segmentations {name}](figures/segmentations{suffix}.png)\n"
        )
    m = summary["machine"]
    load = m.get("load_average_at_start")
    machine = (
        f"{m['cpu_count']}-core CPU ({m['processor']}), {m['torch_threads']} torch thread(s), torch {m['torch']}"
        + (f", load average {load:.1f} at the start" if load is not None else "")
    )
    what = "training what was not trained yet, then evaluating" if summary["full"] else "evaluation only"
    return (
        "# Task-adapted reconstruction: joint reconstruction and segmentation\n\n"
        f"`learnrecon benchmark --preset {command}` ({', '.join(summary['problems']).upper()}); {machine}; "
        f"{summary.get('seconds')} s wall time ({what}).\n\n" + "\n".join(sections)
    )


def _load_average() -> float | None:
    """The 1-minute load average (how busy the machine was), where the platform gives one."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def _plane(images: torch.Tensor, i: int) -> torch.Tensor:
    """Image ``i`` of ``images`` ``(n, 1, [1,] H, W)`` as an ``(H, W)`` plane (the magnitude of a complex one)."""
    image = images[i].abs() if images.is_complex() else images[i]
    return image.reshape(-1, *image.shape[-2:])[0]


def _figures(
    folder: Path, rows: list[dict], outputs: dict, x: torch.Tensor, labels: torch.Tensor, suffix: str = ""
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({r["seed"] for r in rows})
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    twin = ax.twinx()
    for seed in seeds:
        mine = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["C"])
        positions = range(len(mine))
        ax.plot(positions, [r["task_loss"] for r in mine], "o-", color="C0", label=f"task loss (seed {seed})")
        twin.plot(positions, [r["image_loss"] for r in mine], "s--", color="C1", label=f"image MSE (seed {seed})")
        ax.set_xticks(list(positions), [f"{r['C']:g}" for r in mine])
    ax.set_xlabel("task weight C")
    ax.set_ylabel("cross-entropy (test)", color="C0")
    twin.set_ylabel("image MSE (test)", color="C1")
    fig.legend(loc="upper center", fontsize=7, ncol=2)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    fig.savefig(folder / f"tradeoff{suffix}.png", dpi=110)
    plt.close(fig)
    cs = sorted({r["C"] for r in rows if r["seed"] == seeds[0]})
    n_classes = max(int(labels.max()), 1)
    truth = _plane(x, 0)
    fig, axes = plt.subplots(2, len(cs) + 1, figsize=(1.7 * (len(cs) + 1), 3.6))
    axes[0, 0].imshow(truth.numpy(), cmap="gray")
    axes[1, 0].imshow(labels[0].numpy(), cmap="viridis", vmin=0, vmax=n_classes)
    axes[0, 0].set_title("truth", fontsize=8)
    for j, c in enumerate(cs, start=1):
        output = outputs[(seeds[0], c)]
        axes[0, j].imshow(_plane(output.image, 0).numpy(), cmap="gray", vmin=float(truth.min()),
                          vmax=float(truth.max()))  # fmt: skip
        axes[1, j].imshow(output.logits[0].argmax(0).numpy(), cmap="viridis", vmin=0, vmax=n_classes)
        axes[0, j].set_title(f"C = {c:g}", fontsize=8)
    for a in axes.flat:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(folder / f"segmentations{suffix}.png", dpi=110)
    plt.close(fig)
