"""The shipped AUTOMAP (the fully learned baseline, docs/automap.md) against FBP on the quick preset's data.

Usage: python benchmarks/automap.py [--threads 1] [--n-ellipses 20] [--checkpoint PATH]

Reconstructs the quick preset's Shepp–Logan (128², 30 angles, 183 detectors, 5 % relative noise) and its first
``--n-ellipses`` held-out ellipses (seed 2, as ``learnrecon benchmark --preset quick`` draws them; the training
ellipses are drawn from seed 1000) with FBP (the preset's Hann filter, full cut-off), the shipped AUTOMAP
(``automap-ellipses``, or ``--checkpoint``), the shipped LPD for reference, and the all-zero image (what no
reconstruction scores), and scores them with :func:`learnrecon.evaluation.evaluate` (PSNR and SSIM on each
reference image's own range). Writes benchmarks/results/automap.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from results_file import provenance, publish

from learnrecon.benchmark import make_tasks
from learnrecon.benchmark.presets import get_preset
from learnrecon.evaluation import evaluate
from learnrecon.models import load_model, pretrained
from learnrecon.report import machine_info, markdown_table
from learnrecon.solvers import fbp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--n-ellipses", type=int, default=20, help="held-out ellipses evaluated")
    parser.add_argument("--checkpoint", default=None, help="an AUTOMAP checkpoint (default: the shipped one)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = dataclasses.replace(get_preset("quick"), n_test=args.n_ellipses)
    op = preset.operator()
    tasks = make_tasks(preset, op)
    automap = load_model(args.checkpoint) if args.checkpoint else pretrained("automap-ellipses")
    methods = {
        "zero image": lambda y, op: torch.zeros(*y.shape[:-2], *op.domain_shape, dtype=y.dtype),
        f"FBP ({preset.fbp_filter})": lambda y, op: fbp(y, op, preset.fbp_filter),
        "AUTOMAP (automap-ellipses)": automap,
        "LPD (lpd-ellipses)": pretrained("lpd-ellipses"),
    }
    rows, record = [], {}
    for name, method in methods.items():
        row: dict = {"method": name}
        for task in tasks:
            result = evaluate(method, task.test.y, task.test.x, op)
            result.pop("reconstruction")
            record.setdefault(name, {})[task.test.name] = result
            row[f"PSNR {task.test.name}"] = result["psnr"]
            row[f"SSIM {task.test.name}"] = result["ssim"]
        rows.append(row)
    meta = automap.provenance
    n_params = sum(p.numel() for p in automap.parameters())
    training = {
        "steps": meta.get("step"),
        "minutes": meta.get("seconds", float("nan")) / 60,
        "device": meta.get("device"),
        "best_validation_psnr": meta.get("best_psnr"),
        "parameters": n_params,
        "model": meta.get("model"),
        "commit": meta.get("commit"),
    }
    trained_with = meta.get("config", {}).get("training", {})
    info = machine_info()
    digits = {key: 3 for key in rows[0] if key.startswith("SSIM")}
    table = markdown_table(rows, list(rows[0]), digits=digits)
    text = (
        "# AUTOMAP, the fully learned baseline (quick preset: 128², 30 angles, 183 detectors, 5 % relative noise)\n\n"
        f"PSNR (dB) and SSIM, means over 1 Shepp–Logan and {args.n_ellipses} held-out ellipses, on each reference "
        f"image's own range. AUTOMAP: {n_params / 1e6:.2f} M parameters, trained for {training['steps']} steps "
        f"({training['minutes']:.1f} min on {training['device']}, {trained_with.get('threads')} torch thread(s), batch "
        f"{trained_with.get('batch_size')}; best validation PSNR "
        f"{training['best_validation_psnr']:.2f} dB), weights stored as {meta.get('weights_dtype', 'float32')}.\n"
        f"{provenance(info)}\n\n{table}\n"
    )
    publish("automap", {"machine": info, "training": training, "rows": rows, "results": record}, text)


if __name__ == "__main__":
    main()
