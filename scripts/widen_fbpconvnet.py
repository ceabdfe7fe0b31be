"""Widen a trained FBPConvNet's U-Net without changing what it computes, to go on training a larger model.

    python scripts/widen_fbpconvnet.py fbpconvnet-ellipses 24 runs/fbpconvnet_w24_start

writes a checkpoint (``.safetensors`` + ``.json``) of an FBPConvNet with U-Net width 24 whose output equals the
source's (:func:`learnrecon.models.nets.widen_unet`); a config's ``training.init_from`` can then start from
it. Its JSON keeps the source's provenance (steps, wall time, validation PSNR, the chain of runs) and records
the widening under ``widened_from``. The source is a shipped name or a checkpoint path without suffix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from learnrecon.io.checkpoint import reusable_meta, save_checkpoint
from learnrecon.models.hub import checkpoint_location, load_model
from learnrecon.models.nets import widen_unet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="shipped name (e.g. fbpconvnet-ellipses) or checkpoint path")
    parser.add_argument("width", type=int, help="new U-Net width (channels at the top level)")
    parser.add_argument("out", type=Path, help="checkpoint path to write, without suffix")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new channels' random weights")
    args = parser.parse_args()
    model = load_model(checkpoint_location(args.source))
    if model.provenance["model"]["name"] != "fbpconvnet":
        raise SystemExit(f"{args.source} holds {model.provenance['model']['name']!r}, not an FBPConvNet")
    torch.manual_seed(args.seed)
    unet = model.unet
    old_width = unet.down[0][0].out_channels
    model.unet = widen_unet(unet, args.width).eval()
    probe = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        change = (model.unet(probe) - unet(probe)).abs().max().item()
    if change > 1e-4:
        raise SystemExit(f"the widened U-Net differs from the source by {change:.3g}: not saved")
    meta = reusable_meta(model.provenance)
    meta["model"] = {"name": "fbpconvnet", "params": {**meta["model"]["params"], "width": args.width}}
    for key in ("weights_dtype", "shipped_as", "source_checkpoint", "shipped_at_commit"):
        meta.pop(key, None)
    meta["widened_from"] = {
        "checkpoint": args.source,
        "sha256": model.provenance["sha256"],
        "width": old_width,
        "seed": args.seed,
    }
    written = save_checkpoint(args.out, model, meta, optimizer=None, rng=False)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {written}: width {old_width} -> {args.width}, {n_params} parameters, max change {change:.2g}")


if __name__ == "__main__":
    main()
