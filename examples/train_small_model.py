"""Train a small learned gradient descent (LGD) model from objects: an operator, a data source, a model.

    python examples/train_small_model.py --run-dir runs/example           # 64² images, 300 steps, minutes
    python examples/train_small_model.py --run-dir /tmp/example --smoke   # 32² images, 4 steps, seconds

The run folder gets ``best``/``last`` checkpoints (safetensors + JSON), ``metrics.csv`` and ``validation.csv``;
``learnrecon.models.load_model(run_dir / "best.safetensors")`` loads the result (see docs/training.md).
"""

import argparse
from pathlib import Path

import torch

from learnrecon.config import TrainingConfig
from learnrecon.data.sources import PhantomSource, SimulatedPairs, parse_noise
from learnrecon.evaluation import score
from learnrecon.models import build_model, load_model
from learnrecon.operators import ParallelBeam2D
from learnrecon.training import Trainer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="output folder of the run")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that finishes in seconds")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in --run-dir")
    args = parser.parse_args(argv)
    size, steps, width = (32, 4, 8) if args.smoke else (64, 300, 32)

    op = ParallelBeam2D(size, n_angles=30)
    # Pairs simulated on the fly: sample p's ellipses and noise come from (seed, p), so every run sees the same data.
    data = SimulatedPairs(op, parse_noise("relative:0.05"), PhantomSource("ellipses"), seed=0)
    validation = data.batch(torch.arange(10_000, 10_008))  # 8 held-out pairs (positions never trained on)
    model = build_model("lgd", {"n_iter": 5, "width": width, "init": "fbp"})
    settings = TrainingConfig(
        steps=steps, batch_size=4, lr=1e-3, device="cpu", validate_every=max(steps // 2, 1), checkpoint_every=steps
    )
    trainer = Trainer(
        model, op, data, validation=validation, run_dir=args.run_dir, settings=settings, overwrite=args.overwrite
    )
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    steps, seconds, best = summary["steps"], summary["seconds"], summary["best_psnr"]
    print(f"trained {steps} steps in {seconds:.1f} s; best validation PSNR {best:.2f} dB")

    trained = load_model(args.run_dir / "best.safetensors")  # rebuilt from the checkpoint's JSON record
    with torch.no_grad():
        psnr, _ = score(trained(validation.y, op), validation.x)
    print(f"reloaded from {args.run_dir / 'best.safetensors'}: validation PSNR {psnr.mean():.2f} dB")


if __name__ == "__main__":
    main()
