"""Copy a training run's best checkpoint into the package as a shipped model, weights only.

    python scripts/ship_pretrained.py runs/lpd_ellipses lpd-ellipses

writes ``src/learnrecon/pretrained/lpd-ellipses.safetensors`` and ``.json``: the weights, and the
provenance (config, steps, wall time, device, validation PSNR, the commit of the code that trained it).
``--out FOLDER`` writes them there instead (benchmarks/gpu_session.sh keeps a GPU run's best weights so,
small enough to come back from the device).
An equilibrium model (one with ``certify``) gets its contraction certificate on the run's validation data in its
provenance (``certificate``: the measured Lipschitz constant of its step at the fixed points, and the bound of its
construction).
The weights are stored as float16 by default, half the space of float32 for a change of PSNR under
0.002 dB on the quick preset (benchmarks/results/half-precision-weights.md); they load as float32.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
from pathlib import Path

import torch

from learnrecon.io.checkpoint import reusable_meta, save_checkpoint
from learnrecon.models.hub import PRETRAINED_DIR, load_model


def git_head() -> str | None:
    """The commit checked out here, or None outside a git checkout (a copy of the tree on the device)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def certificate(model, meta: dict, dtype: torch.dtype) -> dict:
    """The certificate of ``model`` with its weights rounded to ``dtype`` (as shipped) on the validation data of the
    run's config."""
    from learnrecon.config import from_dict
    from learnrecon.data.sources import make_validation_data
    from learnrecon.operators.registry import build_operator

    config = from_dict(meta["config"])
    op = build_operator(meta["operator"])
    _, y = make_validation_data(config.data, op)
    shipped = copy.deepcopy(model)
    with torch.no_grad():
        for p in shipped.parameters():
            p.copy_(p.to(dtype).float())
    return {**shipped.certify(y, op).as_dict(), "data": f"the run's {y.shape[0]} validation images"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="training run folder (holds best.safetensors/.json)")
    parser.add_argument("name", help="shipped name, e.g. lpd-ellipses")
    parser.add_argument("--checkpoint", default="best", help="best (default) or last")
    parser.add_argument("--trained-at", default=None, help="commit of the code that trained it (default: HEAD)")
    parser.add_argument("--out", type=Path, default=PRETRAINED_DIR, help="folder to write to (default: the package)")
    parser.add_argument(
        "--dtype", default="float16", choices=["float16", "float32", "bfloat16"], help="stored weight type"
    )
    args = parser.parse_args()
    model = load_model(Path(args.run) / args.checkpoint)
    meta = reusable_meta(model.provenance)
    head = git_head()
    meta.update(
        {
            "shipped_as": args.name,
            "source_checkpoint": args.checkpoint,
            "commit": args.trained_at or head,
            "shipped_at_commit": head,
        }
    )
    dtype = getattr(torch, args.dtype)
    if callable(getattr(model, "certify", None)):
        meta["certificate"] = certificate(model, meta, dtype)
    path = save_checkpoint(args.out / args.name, model, meta, optimizer=None, rng=False, weights_dtype=dtype)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): step {meta['step']}, "
        f"validation PSNR {meta.get('best_psnr', float('nan')):.2f} dB"
    )


if __name__ == "__main__":
    main()
