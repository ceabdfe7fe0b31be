"""Model adaptation: the shipped LPD (128², 30 angles, 5 % noise) on shifted settings, without adaptation, adapted
without ground truth (Gilton, Ongie & Willett 2021) and retrained with ground truth, side by side.

Usage: python benchmarks/adaptation.py [--steps 10] [--batch-size 2] [--lr 1e-4] [--mu 1e-4] [--n-test 8]

Settings: 20 and 60 angles, fan beam (30 angles over 2π, 257 detectors), 10 % noise, and a centre of rotation
shifted by 1.5 detector cells (the shifted operator known), each with its own data. Adaptation uses 16
measurements of the new setting (no truth); "retrained" fine-tunes the same weights for the same steps with the
Trainer on pairs with truth (fresh simulated pairs every step, an upper reference). A last row starts from the
nominal (unshifted) operator and estimates the shift jointly with the weights, beside the classical moment
estimate (``learnrecon.calibration.estimate_detector_shift``). The gap recovered is (adapted − none) /
(retrained − none). Writes benchmarks/results/adaptation.{json,md} and adaptation.png.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch
from results_file import RESULTS, provenance, publish

from learnrecon import phantoms
from learnrecon.calibration import estimate_detector_shift
from learnrecon.config import TrainingConfig
from learnrecon.data.simulate import measure, parse_noise
from learnrecon.data.sources import PhantomSource, SimulatedPairs
from learnrecon.evaluation import predict, score
from learnrecon.models import pretrained
from learnrecon.operators import ParallelBeam2D
from learnrecon.operators.calibrated import ShiftedDetector
from learnrecon.operators.registry import make_operator
from learnrecon.report import machine_info, markdown_table
from learnrecon.training import Trainer
from learnrecon.training.adaptation import adapt

SHIFT = 1.5


def settings() -> dict:
    base = ParallelBeam2D(128, 30)
    return {
        "20 angles": (ParallelBeam2D(128, 20), "relative:0.05"),
        "60 angles": (ParallelBeam2D(128, 60), "relative:0.05"),
        "fan beam": (make_operator("fan", 128, 30), "relative:0.05"),
        "10 % noise": (base, "relative:0.10"),
        f"centre of rotation +{SHIFT} cells": (ShiftedDetector(base, SHIFT), "relative:0.05"),
    }


def psnr(model, y, op, x) -> float:
    return float(score(predict(model, y, op, batch_size=4), x).psnr.mean())


def retrain(model, op, noise, steps, batch_size, lr, run_dir) -> None:
    data = SimulatedPairs(op, parse_noise(noise), PhantomSource("ellipses"), seed=1234)
    config = TrainingConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        schedule="constant",
        device="cpu",
        threads=0,
        num_workers=0,
        log_every=steps,
        validate_every=10**9,
        checkpoint_every=steps,
        figure_every=10**9,
    )
    trainer = Trainer(model, op, data, run_dir=run_dir, settings=config, progress=False)
    trainer.train()
    trainer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--adapt-lr", type=float, default=None, help="adaptation's learning rate (default --lr)")
    parser.add_argument("--mu", type=float, default=1e-4)
    parser.add_argument(
        "--retrained-from",
        default=None,
        help="a previous results JSON of the same settings: reuse its 'retrained' PSNRs instead of retraining",
    )
    parser.add_argument("--n-adapt", type=int, default=16)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shipped = pretrained("lpd-ellipses")
    x_test = phantoms.draw_ellipses("ellipses", n=args.n_test, size=128, seed=999)
    x_adapt = phantoms.draw_ellipses("ellipses", n=args.n_adapt, size=128, seed=4321)
    rows, record = [], {"machine": machine_info(), "options": vars(args), "results": []}
    adapt_lr = args.lr if args.adapt_lr is None else args.adapt_lr
    options = {"mu": args.mu, "steps": args.steps, "lr": adapt_lr, "batch_size": args.batch_size}
    reused = {}
    if args.retrained_from:
        previous = json.loads(Path(args.retrained_from).read_text())
        for key in ("steps", "batch_size", "lr", "n_test"):
            if previous["options"][key] != vars(args)[key]:
                raise SystemExit(
                    f"{args.retrained_from} was run with {key}={previous['options'][key]}, not {vars(args)[key]}"
                )
        reused = {r["setting"]: r["retrained"] for r in previous["results"]}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (op, noise)) in enumerate(settings().items()):
            start = time.perf_counter()
            y_test = measure(op, x_test, noise, seed=999)
            y_adapt = measure(op, x_adapt, noise, seed=4321)
            none = psnr(shipped, y_test, op, x_test)
            adapted = adapt(copy.deepcopy(shipped), op, y_adapt, **options).model
            after = psnr(adapted, y_test, op, x_test)
            if name in reused:
                full = reused[name]
            else:
                fine = copy.deepcopy(shipped)
                retrain(fine, op, noise, args.steps, args.batch_size, args.lr, f"{tmp}/{i}")
                full = psnr(fine, y_test, op, x_test)
            gap = full - none
            recovered = (after - none) / gap if gap > 0.05 else float("nan")
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "setting": name,
                    "no adaptation": f"{none:.2f}",
                    "adapted (no truth)": f"{after:.2f}",
                    "retrained (truth)": f"{full:.2f}",
                    "gap recovered": f"{100 * recovered:.0f} %"
                    if recovered == recovered
                    else "no gap (retrained ≤ none + 0.05 dB)",
                }
            )
            record["results"].append(
                {
                    "setting": name,
                    "none": none,
                    "adapted": after,
                    "retrained": full,
                    "recovered": recovered,
                    "s": seconds,
                }
            )
            print(rows[-1], f"{seconds:.0f} s", flush=True)
        # the shift unknown: the nominal operator, the shift estimated jointly with the weights, and by moments
        base = ParallelBeam2D(128, 30)
        y_test = measure(ShiftedDetector(base, SHIFT), x_test, "relative:0.05", seed=999)
        y_adapt = measure(ShiftedDetector(base, SHIFT), x_adapt, "relative:0.05", seed=4321)
        nominal = psnr(shipped, y_test, base, x_test)
        shift = torch.tensor(0.0, requires_grad=True)
        joint = adapt(
            copy.deepcopy(shipped),
            ShiftedDetector(base, shift),
            y_adapt,
            parameters={"shift": shift},
            parameter_lr=0.25,
            **options,
        )
        estimated = joint.parameters["shift"]
        after = psnr(joint.model, y_test, ShiftedDetector(base, estimated), x_test)
        moments = estimate_detector_shift(y_adapt, base)
        calibrated = psnr(shipped, y_test, ShiftedDetector(base, moments), x_test)
        record["calibration"] = {
            "true_shift": SHIFT,
            "nominal_operator_psnr": nominal,
            "joint_estimate": estimated,
            "joint_psnr": after,
            "moment_estimate": moments,
            "moment_calibrated_psnr": calibrated,
            "joint_history": joint.history,
        }
    table = markdown_table(rows, list(rows[0]))
    c = record["calibration"]
    text = (
        "# Adapting the shipped LPD to a new operator\n\n"
        f"Shipped `lpd-ellipses` (128², 30 angles, 5 % noise). Each setting: {args.n_test} test images (seed 999); "
        f"adaptation on {args.n_adapt} measurements without truth, {args.steps} Adam steps of batch "
        f"{args.batch_size}, lr {adapt_lr}, μ = {args.mu}; retraining: the same steps and batch, lr {args.lr}, with "
        "the Trainer on simulated pairs with truth"
        + (f" (PSNRs reused from {args.retrained_from}, same seeds)" if reused else "")
        + ". PSNR in dB (data range of each image).\n\n"
        f"{table}\n\n"
        f"## Unknown centre of rotation (true shift {SHIFT} cells)\n\n"
        f"- the model with the nominal operator: {c['nominal_operator_psnr']:.2f} dB\n"
        f"- shift estimated jointly with the weights (start 0, lr 0.25, {args.steps} steps, weights lr {adapt_lr}): "
        f"{c['joint_estimate']:.3f} cells, {c['joint_psnr']:.2f} dB\n"
        f"- shift from the moment conditions on the {args.n_adapt} adaptation sinograms: "
        f"{c['moment_estimate']:.3f} cells; "
        f"the shipped model with that operator: {c['moment_calibrated_psnr']:.2f} dB\n\n"
        f"{provenance(record['machine'])}\n"
    )
    publish("adaptation", record, text)
    figure(record)


def figure(record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = record["results"]
    names = [r["setting"] for r in results]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for k, (key, label) in enumerate((("none", "no adaptation"), ("adapted", "adapted"), ("retrained", "retrained"))):
        ax.bar([i + 0.27 * (k - 1) for i in range(len(names))], [r[key] for r in results], 0.27, label=label)
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylabel("PSNR (dB)")
    lows = [min(r["none"], r["adapted"], r["retrained"]) for r in results]
    ax.set_ylim(min(lows) - 2, max(r["retrained"] for r in results) + 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "adaptation.png", dpi=120)


if __name__ == "__main__":
    main()
