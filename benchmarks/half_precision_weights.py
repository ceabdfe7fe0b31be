"""What storing the shipped weights in 16 bits costs: PSNR with the weights as stored and rounded.

Usage: python benchmarks/half_precision_weights.py [--threads 2] [CHECKPOINT ...]

The shipped models may take 5 MB in all (issue 5), which caps a float32 FBPConvNet at about 0.85 M
parameters beside the LGD and LPD. Storing weights as float16 (``scripts/ship_pretrained.py``'s default)
halves that cost. For each checkpoint (default: the shipped models; give float32 training checkpoints to
measure what shipping them as float16 costs) this rounds its weights to float16 and to bfloat16 (and
computes in float32) and reconstructs the quick preset's Shepp–Logan and 100 held-out ellipses with each;
it reports the mean PSNR, the change from the weights as stored, and the largest pixel change.
Writes benchmarks/results/half-precision-weights.{json,md}.
"""

from __future__ import annotations

import argparse
import copy

import torch
from results_file import provenance, publish

from learnrecon import metrics
from learnrecon.benchmark import PRETRAINED_LABELS, make_tasks
from learnrecon.benchmark.presets import get_preset
from learnrecon.evaluation import predict
from learnrecon.models import load_model, pretrained
from learnrecon.report import machine_info, markdown_table

ROUNDED = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def rounded(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of ``model`` whose floating-point weights and buffers are rounded to ``dtype`` (kept float32)."""
    copy_ = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in copy_.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype))
    return copy_


def rows_for(label: str, model: torch.nn.Module, op, tasks) -> list[dict]:
    """One row for the weights as stored and one per rounding: PSNR on each test set, its change from the
    weights as stored and the largest pixel change."""
    stored = model.provenance.get("weights_dtype", "float32")
    n_params = sum(p.numel() for p in model.parameters())
    variants = {f"as stored ({stored})": (model, getattr(torch, stored))}
    variants.update({name: (rounded(model, dtype), dtype) for name, dtype in ROUNDED.items() if name != stored})
    rows, reference = [], None
    for weights, (variant, dtype) in variants.items():
        row = {"model": label, "weights": weights, "MB": n_params * dtype.itemsize / 1e6}
        x_hats = {task.test.name: predict(variant, task.test.y, op) for task in tasks}
        reference = reference or x_hats  # the first variant: the weights as stored
        for task in tasks:
            name, x = task.test.name, task.test.x
            psnr = float(metrics.psnr(x_hats[name], x).mean())
            row[f"PSNR {name}"] = psnr
            row[f"change {name}"] = psnr - float(metrics.psnr(reference[name], x).mean())
            row[f"max pixel change {name}"] = float((x_hats[name] - reference[name]).abs().max())
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("checkpoints", nargs="*", help="checkpoints to round (default: the shipped models)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset("quick")
    op = preset.operator()
    tasks = make_tasks(preset, op)
    models = {path: load_model(path) for path in args.checkpoints} or {
        PRETRAINED_LABELS.get(name, name): pretrained(name) for name in preset.pretrained
    }
    rows = [row for label, model in models.items() for row in rows_for(label, model, op, tasks)]
    info = machine_info()
    digits = {key: 4 for key in rows[0] if key.startswith("change")}
    digits.update({key: 5 for key in rows[0] if key.startswith("max pixel")})
    table = markdown_table(rows, list(rows[0]), digits=digits)
    text = (
        "# Weights stored in 16 bits (quick preset: 128², 30 angles, 5 % relative noise)\n\n"
        "Each model with its weights as stored and rounded to float16 and bfloat16 (computing in float32); "
        "PSNR in dB (mean over the test set: 1 Shepp–Logan, 100 held-out ellipses), its change from the "
        "weights as stored, and the largest change of a pixel (images span [0, 1]). MB: the weights at that "
        "type.\n"
        f"{provenance(info)}\n\n{table}"
    )
    publish("half-precision-weights", {"machine": info, "rows": rows}, text)


if __name__ == "__main__":
    main()
