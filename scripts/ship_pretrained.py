"""Copy a training run's best checkpoint into the package as a shipped model, weights only.

    python scripts/ship_pretrained.py runs/lpd_ellipses lpd-ellipses

writes ``src/learnrecon/pretrained/lpd-ellipses.safetensors`` and ``.json``: the weights, and the
provenance (config, steps, wall time, device, validation PSNR, the commit of the code that trained it).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from learnrecon.models.registry import PRETRAINED_DIR
from learnrecon.training.checkpoint import load_model, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="training run folder (holds best.safetensors/.json)")
    parser.add_argument("name", help="shipped name, e.g. lpd-ellipses")
    parser.add_argument("--checkpoint", default="best", help="best (default) or last")
    parser.add_argument("--trained-at", default=None, help="commit of the code that trained it (default: HEAD)")
    args = parser.parse_args()
    model = load_model(Path(args.run) / args.checkpoint)
    meta = dict(model.provenance)
    for key in ("format", "format_version", "sha256", "optimizer"):
        meta.pop(key, None)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
    meta.update(
        {
            "shipped_as": args.name,
            "source_checkpoint": args.checkpoint,
            "commit": args.trained_at or head,
            "shipped_at_commit": head,
        }
    )
    path = save_checkpoint(PRETRAINED_DIR / args.name, model, meta, optimizer=None, rng=False)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): step {meta['step']}, "
        f"validation PSNR {meta.get('best_psnr', float('nan')):.2f} dB"
    )


if __name__ == "__main__":
    main()
