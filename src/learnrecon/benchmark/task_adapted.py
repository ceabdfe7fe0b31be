"""The task-adapted benchmark (Adler, Lunz, Verdier, Schönlieb & Öktem 2022): joint reconstruction and segmentation
of CT data for task weights C ∈ :data:`TASK_WEIGHTS`, ``ℓ = (1 − C)·ℓ_X + C·ℓ_D``.

Protocol (each seed): a reconstructor is trained alone (``task_weight: 0``, :data:`RECONSTRUCTION_STEPS` steps);
every C then starts from it with a fresh segmentation network for :data:`TASK_STEPS` steps: C = 0 is the
sequential pipeline (the reconstructor frozen, the task network trained on its outputs), 0 < C < 1 trains both
on the joint loss, C = 1 both on the task loss alone (end to end). All runs see the same data stream; each is
evaluated at its last checkpoint on :data:`N_TEST` held-out phantoms: PSNR/SSIM of the image, mean Dice,
cross-entropy and pixel accuracy of the segmentation.

``quick`` evaluates the shipped weights of seed 0 (``learnrecon/pretrained/task-adapted/``); ``full`` trains every
run in ``runs_dir`` (resuming what is there) for the seeds asked, then evaluates them.

Output folder::

    report.md, results.json   per C and seed: PSNR, SSIM, Dice (mean, per class), cross-entropy, accuracy
    figures/tradeoff.png      the task and reconstruction losses on the test set against C
    figures/segmentations.png reconstructions and segmentations of one test phantom across C
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from learnrecon.config import Config, from_dict
from learnrecon.data.sources import make_validation_data
from learnrecon.errors import ParameterError
from learnrecon.evaluation import predict_task, score, segmentation_scores
from learnrecon.io.checkpoint import checkpoint_paths, load_checkpoint
from learnrecon.io.lock import output_lock
from learnrecon.models.hub import PRETRAINED_DIR, load_model
from learnrecon.operators.base import LinearOperator
from learnrecon.operators.registry import build_operator
from learnrecon.report import machine_info, markdown_table, write_json
from learnrecon.training import Trainer
from learnrecon.training.losses import JointLoss

__all__ = [
    "SHIPPED_DIR",
    "TASK_PRESETS",
    "TASK_WEIGHTS",
    "run_task_benchmark",
    "sweep_config",
    "task_dry_run",
    "train_sweep",
]

#: The task weights of the sweep (Adler et al.'s, with both ends).
TASK_WEIGHTS = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0)
RECONSTRUCTION_STEPS = 600
TASK_STEPS = 200
N_TEST = 100
TEST_SEED = 99_999
#: The task-adapted presets of ``learnrecon benchmark``: name -> whether it trains (the full version, both seeds).
TASK_PRESETS = {"task-adapted": False, "task-adapted-full": True}
#: The seeds of the full version.
FULL_SEEDS = (0, 1)
#: Where the quick version's weights live (one per C, seed 0).
SHIPPED_DIR = PRETRAINED_DIR / "task-adapted"

#: The CT setup: 64² images (a CPU budget: the published one is 128²), 15 angles (fewer than the quick
#: preset's 30, which makes the images noisier and the segmentation harder), 5 % relative Gaussian noise,
#: Adler & Öktem's raw ellipses with their labels (background, denser, lighter ellipse).
BASE = {
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


def run_name(c: float | None) -> str:
    """The run folder's name: ``reconstructor`` for the first stage, ``c<C>`` for a task weight."""
    return "reconstructor" if c is None else f"c{c:g}"


def sweep_config(c: float | None, seed: int, start: str | None = None) -> Config:
    """The config of one run: the reconstructor stage (``c`` None) or task weight ``c`` started from ``start``."""
    values: dict[str, Any] = copy.deepcopy(BASE)
    values["data"]["seed"] = 1000 * seed
    training = values["training"]
    training["seed"] = seed
    if c is None:
        training.update(steps=RECONSTRUCTION_STEPS, task_weight=0.0)
    else:
        mode = "sequential" if c == 0 else "end-to-end" if c == 1 else "joint"
        training.update(steps=TASK_STEPS, task_mode=mode, init_from=start)
        if mode == "joint":
            training["task_weight"] = c
    return from_dict(values)


def _finished(run: Path, steps: int) -> bool:
    last = checkpoint_paths(run / "last")[1]
    return last.exists() and load_checkpoint(run / "last")[1].get("step") == steps


def train_sweep(runs_dir: str | Path, seeds: tuple[int, ...] = (0,), progress: bool = True) -> dict[int, dict]:
    """Train (or finish) every run of the sweep for each seed in ``runs_dir/seed<s>/``; returns
    ``{seed: {C: run folder}}``."""
    runs: dict[int, dict] = {}
    for seed in seeds:
        folder = Path(runs_dir) / f"seed{seed}"
        stages = [(None, None), *((c, str(folder / run_name(None) / "last")) for c in TASK_WEIGHTS)]
        runs[seed] = {}
        for c, start in stages:
            config, run = sweep_config(c, seed, start), folder / run_name(c)
            if not _finished(run, config.training.steps):
                resume = checkpoint_paths(run / "last")[1].exists()
                trainer = Trainer.from_config(config, run, resume=resume, overwrite=not resume, progress=progress)
                try:
                    trainer.train()
                finally:
                    trainer.close()
            if c is not None:
                runs[seed][c] = run / "last"
    return runs


def task_dry_run(full: bool) -> list[str]:
    """What the preset would do, each run's config built and checked (nothing trained or written)."""
    lines = []
    for seed in FULL_SEEDS if full else (0,):
        for c in (None, *TASK_WEIGHTS) if full else TASK_WEIGHTS:
            config = sweep_config(c, seed, "start" if c is not None else None)
            t, what = config.training, "train" if full else "evaluate the shipped"
            lines.append(f"{what} seed {seed} {run_name(c)}: {t.task_mode}, C = {t.task_c:g}, {t.steps} steps")
    if not full:
        shipped_runs()
    x, _, labels, _ = test_set()
    lines.append(
        f"test set: {x.shape[0]} phantoms {tuple(x.shape[-2:])} with labels of {int(labels.max()) + 1} classes"
    )
    return lines


def shipped_runs() -> dict[int, dict]:
    """The shipped weights of the quick version: ``{0: {C: path}}`` (seed 0)."""
    paths = {c: SHIPPED_DIR / f"ct-{run_name(c)}" for c in TASK_WEIGHTS}
    missing = [str(p) for p in paths.values() if not checkpoint_paths(p)[1].exists()]
    if missing:
        raise ParameterError(f"the shipped task-adapted weights are missing: {', '.join(missing)}")
    return {0: paths}


def test_set() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, LinearOperator]:
    """The held-out test phantoms (truth, data, labels) and their operator: :data:`N_TEST` phantoms of a seed
    that no training or validation data use."""
    data = replace(sweep_config(None, 0).data, n_validation=N_TEST, validation_seed=TEST_SEED)
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
    overwrite: bool = False, progress: bool = True,
) -> dict:  # fmt: skip
    """Evaluate the sweep (the shipped weights, or with ``full`` the runs trained in ``runs_dir``) and write the
    report into ``out`` (written to a temporary folder first)."""
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise ParameterError(f"{out} exists; pass --overwrite to replace it")
    runs = train_sweep(runs_dir, seeds, progress) if full else shipped_runs()
    x, y, labels, op = test_set()
    rows, outputs = [], {}
    for seed, by_c in runs.items():
        for c, path in by_c.items():
            result = evaluate_run(path, x, y, labels, op)
            outputs[(seed, c)] = result.pop("output")
            rows.append({"seed": seed, "C": c, **result})
    with output_lock(out, "learnrecon benchmark --preset task-adapted"):
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "figures").mkdir(parents=True)
        summary = {"rows": rows, "summary": summarise(rows), "machine": machine_info(), "full": full}
        write_json(tmp / "results.json", summary)
        _figures(tmp / "figures", rows, outputs, x, labels)
        (tmp / "report.md").write_text(_report(summary))
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


def _report(summary: dict) -> str:
    rows = [{**row, "C": f"{row['C']:g}"} for row in summary["rows"]]
    columns = ["seed", "C", "psnr", "ssim", "dice", "cross_entropy", "accuracy", "image_loss", "task_loss"]
    s = summary["summary"]
    verdict = (
        f"The best mean Dice is at C = {s['best_dice_C']:g}, {s['dice_gain_over_sequential']:+.4f} over the "
        f"sequential pipeline (C = 0), with PSNR {s['psnr_change_at_best']:+.2f} dB against it. The test task loss "
        f"is smallest at C = {s['task_loss_minimum_C']:g}"
        + (", strictly inside (0, 1)." if s["task_loss_minimum_inside"] else ", at an end of [0, 1].")
    )
    if s["best_dice_C_within_1dB"] is not None:
        verdict += (
            f" Among the C in (0, 1) whose PSNR is within 1 dB of the sequential pipeline's, the best mean Dice is at "
            f"C = {s['best_dice_C_within_1dB']:g}: {s['dice_gain_within_1dB']:+.4f}, PSNR "
            f"{s['psnr_change_within_1dB']:+.2f} dB."
        )
    spreads = ", ".join(f"C = {c}: {v['dice_spread']:.4f}" for c, v in s["by_C"].items())
    if len({r["seed"] for r in rows}) > 1:
        verdict += f"\n\nSpread of the mean Dice over the seeds (max − min): {spreads}."
    source = "runs trained in this benchmark" if summary["full"] else "the shipped weights (seed 0)"
    return (
        "# Task-adapted reconstruction: joint reconstruction and segmentation\n\n"
        f"CT, 64², 15 angles, 5 % noise, {N_TEST} held-out ellipse phantoms with labels (3 classes); {source}. "
        f"Each C fine-tunes one reconstructor ({RECONSTRUCTION_STEPS} steps alone) for {TASK_STEPS} steps with a "
        "fresh segmentation U-Net: C = 0 the sequential pipeline, C = 1 end to end.\n\n"
        f"{markdown_table(rows, columns, digits={'dice': 4, 'cross_entropy': 4, 'accuracy': 4, 'image_loss': 5, 'task_loss': 4, 'ssim': 3})}\n"  # noqa: E501
        f"{verdict}\n\n![trade-off](figures/tradeoff.png)\n\n![segmentations](figures/segmentations.png)\n"
    )


def _figures(folder: Path, rows: list[dict], outputs: dict, x: torch.Tensor, labels: torch.Tensor) -> None:
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
    fig.savefig(folder / "tradeoff.png", dpi=110)
    plt.close(fig)
    cs = sorted({r["C"] for r in rows if r["seed"] == seeds[0]})
    fig, axes = plt.subplots(2, len(cs) + 1, figsize=(1.7 * (len(cs) + 1), 3.6))
    axes[0, 0].imshow(x[0, 0].numpy(), cmap="gray")
    axes[1, 0].imshow(labels[0].numpy(), cmap="viridis", vmin=0, vmax=2)
    axes[0, 0].set_title("truth", fontsize=8)
    for j, c in enumerate(cs, start=1):
        output = outputs[(seeds[0], c)]
        axes[0, j].imshow(output.image[0, 0].numpy(), cmap="gray", vmin=float(x[0].min()), vmax=float(x[0].max()))
        axes[1, j].imshow(output.logits[0].argmax(0).numpy(), cmap="viridis", vmin=0, vmax=2)
        axes[0, j].set_title(f"C = {c:g}", fontsize=8)
    for a in axes.flat:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(folder / "segmentations.png", dpi=110)
    plt.close(fig)
