"""Evaluate a shipped model on your own images: NumPy (.npy/.npz) or DICOM (a file or a folder of slices).

    python examples/evaluate_on_your_images.py --images my_slices.npy
    python examples/evaluate_on_your_images.py --images dicom_folder/ --model lgd-ellipses
    python examples/evaluate_on_your_images.py --smoke     # writes two demo images to a temporary .npy first

Each image is resized to the model's grid (128² for the shipped models) and min–max scaled to [0, 1]; its data
are simulated with the operator the model was trained with (taken from the model's provenance), with 5 %
Gaussian noise, and reconstructed by FBP and by the model. DICOM needs ``pip install -e ".[dicom]"``.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from learnrecon.data import read_images
from learnrecon.evaluation import predict, score
from learnrecon.models import pretrained, pretrained_names
from learnrecon.noise import gaussian
from learnrecon.operators.registry import build_operator
from learnrecon.phantoms import random_ellipses, shepp_logan
from learnrecon.solvers import fbp


def demo_images(folder: Path) -> Path:
    """Write a Shepp–Logan phantom and one random-ellipse image, 100² (not the model's grid), as a .npy stack."""
    stack = torch.cat([shepp_logan(100).float()[None], random_ellipses(1, 100, seed=7)[0]])  # (2, 100, 100)
    path = folder / "demo.npy"
    np.save(path, stack.numpy())
    return path


def prepare(images: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Images ``(n, 1, H, W)`` resized to ``shape`` and min–max scaled to [0, 1], each on its own."""
    x = F.interpolate(images, size=shape, mode="bilinear", antialias=True, align_corners=False)
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    return (x - low) / (high - low).clamp_min(1e-12)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help=".npy, .npz, .dcm or a folder of DICOM slices")
    parser.add_argument("--key", help="the array's name inside an .npz file of several arrays")
    parser.add_argument("--model", default="lpd-ellipses", choices=pretrained_names())
    parser.add_argument("--noise", type=float, default=0.05, help="relative Gaussian noise level (σ / mean|Ax|)")
    parser.add_argument("--smoke", action="store_true", help="run on two demo images (no --images needed)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.images if args.images is not None else demo_images(Path(tmp))
        images = read_images(path, key=args.key)  # float32 (n, 1, H, W), whatever the file's layout
    model = pretrained(args.model)
    op = build_operator(model.provenance["operator"])  # the geometry the model was trained for
    x = prepare(images, op.domain_shape)
    y = gaussian(op(x), relative=args.noise, generator=torch.Generator().manual_seed(0))
    print(f"{len(x)} image(s) from {path.name}, resized to {tuple(op.domain_shape)}; data {tuple(y.shape[1:])}")

    for name, method in {"FBP (Hann)": lambda y, op: fbp(y, op, filter="hann"), args.model: model}.items():
        x_hat = predict(method, y, op, batch_size=8)  # batched, no gradients
        psnr, ssim = score(x_hat, x)  # each image's own range as the peak
        print(f"{name:22s} PSNR {psnr.mean():6.2f} dB   SSIM {ssim.mean():.3f}   (per image: {psnr.numpy().round(2)})")


if __name__ == "__main__":
    main()
