"""Deep ensembles and Monte-Carlo dropout, measured: trained members on a reduced version of the quick preset.

Usage: python benchmarks/uncertainty_members.py [--steps 400] [--members 4] [--dropout 0.1] [--samples 16]

Problem: 64² ellipses as Adler & Öktem draw them (raw, not rescaled), parallel beam with 30 angles, 5 % relative
Gaussian noise (the quick preset's setup at half the size, so that several members train in minutes on a CPU).
Members: ``--members`` LPDs (5 iterations, width 16, FBP start) trained ``--steps`` steps from different seeds (a
deep ensemble, Lakshminarayanan et al. 2017), and one LPD of the same size with channel dropout ``--dropout`` in
every block, trained the same steps, sampled ``--samples`` times with dropout on (Gal & Ghahramani 2016). Each
gives a mean and a per-pixel std; the calibration is that of ``benchmarks/robustness_uncertainty.py``: coverage of
the 90 % interval μ ± 1.645 s raw and with s scaled by the factor that gives 90 % on the validation ellipses, and
the correlation of s with |error|. Writes benchmarks/results/uncertainty-members.{json,md}.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from results_file import provenance, publish

from learnrecon import metrics, phantoms
from learnrecon.config import from_dict
from learnrecon.data.simulate import measure
from learnrecon.models import load_model
from learnrecon.operators.registry import build_operator
from learnrecon.report import machine_info, markdown_table
from learnrecon.robustness import Ensemble, mc_dropout
from learnrecon.robustness.calibration import calibration_report, recalibration_factor
from learnrecon.training import Trainer

LEVEL = 0.9
OPERATOR = {"type": "ParallelBeam2D", "image_size": 64, "n_angles": 30, "n_detectors": 91}
LPD = {"n_iter": 5, "width": 16, "init": "fbp"}


def config(seed: int, steps: int, dropout: float):
    return from_dict(
        {
            "model": {"name": "lpd", "params": {**LPD, "dropout": dropout}},
            "data": {
                "operator": OPERATOR,
                "phantom": {"type": "ellipses", "scaling": "none"},
                "noise": "relative:0.05",
                "seed": 1000 * (seed + 1),
                "n_validation": 4,
            },
            "training": {
                "steps": steps,
                "batch_size": 4,
                "lr": 1e-3,
                "schedule": "cosine",
                "threads": 1,
                "seed": seed,
                "log_every": 50,
                "validate_every": steps,
                "checkpoint_every": steps,
                "figure_every": 10**9,
            },
        }
    )


def train(seed: int, steps: int, dropout: float, folder: str):
    run = f"{folder}/member{seed}-dropout{dropout:g}"
    trainer = Trainer.from_config(config(seed, steps, dropout), run, progress=False)
    trainer.train()
    trainer.close()
    return load_model(f"{run}/last")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--validation", type=int, default=4)
    parser.add_argument("--test", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    op = build_operator(OPERATOR)
    sets = {}
    for name, x, seed in [
        (
            "validation ellipses",
            phantoms.draw_ellipses("ellipses", n=args.validation, size=(64, 64), seed=301, scaling="none"),
            11,
        ),
        (
            "held-out ellipses",
            phantoms.draw_ellipses("ellipses", n=args.test, size=(64, 64), seed=302, scaling="none"),
            12,
        ),
        ("Shepp–Logan", phantoms.shepp_logan((64, 64))[None, None], 13),
    ]:
        sets[name] = (x.float(), measure(op, x.float(), "relative:0.05", seed=seed))
    seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        members = [train(seed, args.steps, 0.0, folder) for seed in range(args.members)]
        seconds["training the ensemble"] = time.perf_counter() - start
        start = time.perf_counter()
        dropped = train(0, args.steps, args.dropout, folder)
        seconds["training the dropout LPD"] = time.perf_counter() - start
    ensemble = Ensemble(members)
    methods = {
        f"deep ensemble ({args.members} LPDs)": lambda y: ensemble.sample(y, op),
        f"MC dropout (LPD, p = {args.dropout:g}, {args.samples} samples)": lambda y: mc_dropout(
            dropped, y, op, n_samples=args.samples
        ),
    }
    rows = []
    for label, method in methods.items():
        with torch.no_grad():
            outputs = {name: method(y) for name, (_, y) in sets.items()}
        v = outputs["validation ellipses"]
        factor = recalibration_factor(v.mean, v.std, sets["validation ellipses"][0], LEVEL)
        for name, out in outputs.items():
            x = sets[name][0]
            raw = calibration_report(out.mean, out.std, x, LEVEL)
            fixed = calibration_report(out.mean, out.std, x, LEVEL, factor=factor)
            rows.append(
                {
                    "method": label,
                    "images": name,
                    "PSNR of mean": float(metrics.psnr(out.mean, x).mean()),
                    "mean std": raw["mean std"],
                    "coverage 90%": raw["coverage"],
                    "factor (from validation)": factor,
                    "coverage 90% recalibrated": fixed["coverage"],
                    "pearson(std, |error|)": raw["pearson(std, |error|)"],
                }
            )
            print(rows[-1])
    for i, member in enumerate(members):
        x, y = sets["held-out ellipses"]
        with torch.no_grad():
            rows.append(
                {
                    "method": f"member {i} alone",
                    "images": "held-out ellipses",
                    "PSNR of mean": float(metrics.psnr(member(y, op), x).mean()),
                }
            )
    info = machine_info()
    columns = list(rows[0])
    digits = {c: 3 for c in columns if "coverage" in c or "pearson" in c or c == "mean std"}
    text = (
        "# Deep ensembles and Monte-Carlo dropout (the quick preset's setup at 64²)\n\n"
        f"64² raw ellipses, 30 angles, 5 % relative noise; {args.validation} validation ellipses (to recalibrate), "
        f"{args.test} held-out ellipses, Shepp–Logan. {args.members} LPDs {LPD} trained {args.steps} steps from "
        f"different seeds, and one with channel dropout p = {args.dropout:g} trained the same steps. Coverage of "
        "μ ± 1.645 s; recalibrated: s times the factor that gives 90 % on the validation ellipses. Seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
        + f".\n{provenance(info)}\n\n{markdown_table(rows, columns, digits)}\n"
    )
    publish("uncertainty-members", {"machine": info, "settings": vars(args), "rows": rows, "seconds": seconds}, text)


if __name__ == "__main__":
    main()
