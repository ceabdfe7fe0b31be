"""Simulate parallel-beam CT data from random ellipses and reconstruct them with FBP, CGLS and TV.

    python examples/simulate_and_reconstruct.py            # 128² images, 30 angles, 5 % noise
    python examples/simulate_and_reconstruct.py --smoke    # 32² images, a few seconds

Prints the mean PSNR and SSIM of each method over the test images.
"""

import argparse

import torch

from learnrecon.evaluation import score
from learnrecon.noise import gaussian
from learnrecon.operators import ParallelBeam2D
from learnrecon.phantoms import random_ellipses
from learnrecon.solvers import cgls, fbp, tv_pdhg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny problem that runs in seconds")
    args = parser.parse_args(argv)
    size, n_images, tv_iter = (32, 2, 100) if args.smoke else (128, 8, 1000)

    # The geometry of Adler & Öktem's LGD/LPD setup: 30 angles in [0, π), detector covering the diagonal.
    op = ParallelBeam2D(size, n_angles=30)
    x = random_ellipses(n_images, size, seed=1)  # (n, 1, H, W), raw ellipses as in the LPD paper's code
    y = gaussian(op(x), relative=0.05, generator=torch.Generator().manual_seed(0))  # σ = 0.05 · mean|Ax|
    print(f"images {tuple(x.shape)} -> sinograms {tuple(y.shape)}  ({op.name})")

    methods = {
        "FBP (Hann filter)": lambda y: fbp(y, op, filter="hann"),
        "CGLS (10 iterations, stopped early)": lambda y: cgls(y, op, n_iter=10),
        f"TV (PDHG, {tv_iter} iterations, λ = 0.3)": lambda y: tv_pdhg(y, op, lam=0.3, n_iter=tv_iter, nonneg=False),
    }
    for name, method in methods.items():
        psnr, ssim = score(method(y), x)
        print(f"{name:40s} PSNR {psnr.mean():6.2f} dB   SSIM {ssim.mean():.3f}")


if __name__ == "__main__":
    main()
