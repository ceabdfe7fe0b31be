"""Tune a trained learned regulariser's reconstruction parameters on validation data and ship it.

    python scripts/ship_regulariser.py runs/ar ar-ellipses [--checkpoint best]

The weights are the run's (``best`` by default: the best validation PSNR of the reconstruction with the config's
parameters). The parameters the reconstruction uses are then chosen on the quick preset's validation ellipses (the
images the benchmark tunes TV's λ on, never its test images), by a grid search: λ and the iterations for the
adversarial and the convex regulariser; for plug-and-play each scheme's σ and weight, the best scheme becoming the
model's own and the others its ``tuned`` settings. The grids and every PSNR tried go into the shipped JSON
(``tuning``). Weights are stored as float16 (see ship_pretrained.py), and the search runs with them so rounded.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ship_pretrained import git_head  # noqa: E402

from learnrecon.benchmark.presets import get_preset  # noqa: E402
from learnrecon.benchmark.tasks import make_tasks  # noqa: E402
from learnrecon.evaluation import evaluate  # noqa: E402
from learnrecon.io.checkpoint import reusable_meta, save_checkpoint  # noqa: E402
from learnrecon.models.hub import PRETRAINED_DIR, load_model  # noqa: E402

#: The grids searched, per model: settings -> values (every combination is tried).
VARIATIONAL_GRID = {"lam": [0.005, 0.01, 0.02, 0.03, 0.05, 0.1], "n_iter": [100, 200]}
PNP_GRIDS = {
    "pgd": {"sigma": [0.03, 0.04, 0.05], "n_iter": [30]},
    "admm": {"sigma": [0.03, 0.04, 0.06], "rho": [0.01, 0.02, 0.03], "n_iter": [30]},
    "hqs": {"sigma": [0.01, 0.02], "sigma_start": [0.03, 0.05], "lam": [0.0003, 0.001], "n_iter": [12]},
    "red": {"sigma": [0.05, 0.1, 0.15], "lam": [0.01, 0.03, 0.1], "n_iter": [50]},
}


def _score(model, validation, op, **settings) -> float:
    def run(y, op):
        return model(y, op, **settings)

    return evaluate(run, validation.y, validation.x, op, batch_size=4)["psnr"]


def _search(model, validation, op, grid: dict, fixed: dict) -> tuple[dict, list[dict]]:
    tried = []
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values, strict=True))
        psnr = _score(model, validation, op, **fixed, **settings)
        tried.append({**settings, "psnr": round(psnr, 3)})
        print(f"  {fixed} {settings}: {psnr:.2f} dB", flush=True)
    best = max(tried, key=lambda row: row["psnr"])
    return {k: v for k, v in best.items() if k != "psnr"}, tried


def tune(model, meta: dict, validation, op) -> dict:
    """Set ``model``'s reconstruction parameters (and its ``meta["model"]["params"]``) to the best on
    ``validation``; returns the record of the search."""
    params = meta["model"]["params"]
    if meta["model"]["name"] in ("ar", "acr"):
        best, tried = _search(model, validation, op, VARIATIONAL_GRID, {})
        params.update(best)
        model.lam, model.n_iter = best["lam"], best["n_iter"]
        return {"grid": VARIATIONAL_GRID, "tried": tried, "chosen": best}
    record, chosen = {}, {}
    for scheme, grid in PNP_GRIDS.items():
        best, tried = _search(model, validation, op, grid, {"scheme": scheme})
        chosen[scheme] = (best, max(row["psnr"] for row in tried))
        record[scheme] = {"grid": grid, "tried": tried, "chosen": best}
    own = max(chosen, key=lambda s: chosen[s][1])
    params.update({"scheme": own, **chosen[own][0]})
    params["tuned"] = {s: best for s, (best, _) in chosen.items() if s != own}
    model.scheme, model.tuned = own, params["tuned"]
    for key, value in chosen[own][0].items():
        setattr(model, key, value)
    return {"schemes": record, "chosen_scheme": own}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="training run folder")
    parser.add_argument("name", help="shipped name, e.g. ar-ellipses")
    parser.add_argument("--checkpoint", default="best", help="best (default) or last")
    parser.add_argument("--out", type=Path, default=PRETRAINED_DIR, help="folder to write to (default: the package)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(Path(args.run) / args.checkpoint)
    meta = reusable_meta(model.provenance)
    meta["model"] = copy.deepcopy(meta["model"])
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).float())
    preset = get_preset("quick")
    op = preset.operator()
    validation = make_tasks(preset, op)[1].validation
    searched = tune(model, meta, validation, op)
    meta["tuning"] = {"data": f"the quick preset's {validation.x.shape[0]} {validation.name}", **searched}
    head = git_head()
    meta.update(shipped_as=args.name, source_checkpoint=args.checkpoint, commit=head, shipped_at_commit=head)
    path = save_checkpoint(args.out / args.name, model, meta, optimizer=None, rng=False, weights_dtype=torch.float16)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {meta['model']['params']}")


if __name__ == "__main__":
    main()
