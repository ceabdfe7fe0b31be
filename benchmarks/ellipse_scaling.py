"""Does rescaling the training ellipses to [0, 1] cost Shepp–Logan generalisation?

Usage: python benchmarks/ellipse_scaling.py [--steps 1500] [--seeds 0,1] [--threads 2]

For each seed, trains the shipped FBPConvNet architecture from scratch twice, with the same initial
weights (``torch.manual_seed(seed)``), training phantoms (data seed 1000 + seed), steps and optimiser (Adam
lr 1e-3, β₂ = 0.99, cosine decay, clipping at 1, batch 5, 5 % relative noise): once on ellipses min–max
scaled to [0, 1] (``scaling="minmax"``, what the shipped models' first rounds were trained on) and once on
the raw sum of ellipses of Adler & Öktem's code (``scaling="none"``). Both are then tested on the quick preset's
Shepp–Logan data, with the PSNR split between the skull rim and the rest of the image
(see benchmarks/shepp_logan_regions.py). Writes benchmarks/results/ellipse-scaling.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from results_file import provenance, publish
from shepp_logan_regions import region_row, rim_mask
from tqdm.auto import tqdm

from learnrecon import metrics, phantoms
from learnrecon.benchmark import make_tasks
from learnrecon.benchmark.presets import get_preset
from learnrecon.data.simulate import measure
from learnrecon.models import build_model
from learnrecon.report import machine_info, markdown_table

MODEL = {"depth": 3, "width": 16, "init": "fbp", "fbp_filter": "hann"}  # the shipped FBPConvNet
TRAIN_SEED, HELD_OUT_SEED, BATCH = 1000, 2, 5


def ellipse_pairs(op, scaling: str, seed: int, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ellipses ``start … start + n − 1`` of ``seed`` with ``scaling``, and their noisy data."""
    x = phantoms.random_ellipses(n, op.domain_shape[-1], seed=seed, start=start, scaling=scaling)
    return x, measure(op, x, "relative:0.05", seed=seed, start=start)


def train(op, scaling: str, steps: int, seed: int) -> tuple[torch.nn.Module, float]:
    """FBPConvNet trained for ``steps`` on ellipses of ``scaling``, and the seconds it took."""
    torch.manual_seed(seed)
    model = build_model("fbpconvnet", MODEL, op)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    start = time.perf_counter()
    for step in tqdm(range(steps), desc=f"seed {seed}: FBPConvNet on {scaling} ellipses"):
        x, y = ellipse_pairs(op, scaling, TRAIN_SEED + seed, BATCH * step, BATCH)
        loss = F.mse_loss(model(y, op), x)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    return model.eval(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds, one pair of runs each")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = get_preset("quick")
    op = preset.operator()
    shepp_logan = make_tasks(preset, op)[0].test
    rim = rim_mask(preset.image_size, 2)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for scaling in ("minmax", "none"):
            model, seconds = train(op, scaling, args.steps, seed)
            with torch.no_grad():
                name = f"seed {seed}, trained on {scaling} ellipses"
                row = region_row(name, model(shepp_logan.y, op), shepp_logan.x, rim)
                x, y = ellipse_pairs(op, scaling, HELD_OUT_SEED, 0, 32)
                row["held-out ellipses of its own kind PSNR"] = float(metrics.psnr(model(y, op), x).mean())
            rows.append({**row, "training s": seconds})
    info = machine_info()
    summary = {"machine": info, "steps": args.steps, "seeds": args.seeds, "rows": rows}
    table = markdown_table(rows, list(rows[0]), digits={"rim share of squared error": 3, "training s": 0})
    text = (
        f"# FBPConvNet trained from scratch for {args.steps} steps on min–max scaled or raw ellipses, "
        "tested on Shepp–Logan (quick preset data)\n\n"
        "Shepp–Logan columns: PSNR over the image, within 2 pixels of the skull, elsewhere (range 1). "
        "Held-out ellipses: 32 of seed 2 drawn with the training scaling, PSNR with each image's own range "
        "(the two columns are not comparable with each other).\n"
        f"{provenance(info)}\n\n{table}"
    )
    publish("ellipse-scaling", summary, text)


if __name__ == "__main__":
    main()
