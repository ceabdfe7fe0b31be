"""Compare classical and learned methods on one CT problem, with parameters chosen on validation data.

    python examples/compare_methods.py            # 16 test ellipses + Shepp–Logan, TV 1000 iterations (minutes)
    python examples/compare_methods.py --smoke    # 2 test ellipses, short TV, seconds

The problem is the shipped models' (Adler & Öktem's LGD/LPD setup): 128², parallel beam, 30 angles, 5 % noise.
Tikhonov's α and TV's λ are chosen by grid search on separate validation ellipses, CGLS stops by the discrepancy
principle; the learned models are the shipped ones. Prints a Markdown table.
"""

import argparse
import time

import torch

from learnrecon.evaluation import predict, score
from learnrecon.models import pretrained
from learnrecon.noise import gaussian
from learnrecon.operators import ParallelBeam2D
from learnrecon.phantoms import random_ellipses, shepp_logan
from learnrecon.solvers import cgls, fbp, grid_search, tikhonov, tv_pdhg


def noisy(op, x, seed):
    return gaussian(op(x), relative=0.05, generator=torch.Generator().manual_seed(seed))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run that finishes in seconds")
    args = parser.parse_args(argv)
    n_test, n_val, tv_iter = (2, 2, 30) if args.smoke else (16, 8, 1000)

    op = ParallelBeam2D(128, n_angles=30)
    x_val = random_ellipses(n_val, 128, seed=1)  # validation images: other draws than the test images
    y_val = noisy(op, x_val, seed=1)
    x_test = random_ellipses(n_test, 128, seed=2)
    y_test = noisy(op, x_test, seed=2)
    x_sl = shepp_logan(128).float()[None, None]
    y_sl = noisy(op, x_sl, seed=3)

    # Parameter choice on validation data: the grid value of best mean PSNR.
    alpha = grid_search(tikhonov, y_val, op, x_val, "alpha", [1e-1, 1.0, 10.0, 100.0], n_iter=30).value
    lam = grid_search(tv_pdhg, y_val, op, x_val, "lam", [0.1, 0.3, 1.0], n_iter=tv_iter, nonneg=False).value
    # The discrepancy principle needs the noise level δ = ‖e‖: known here, as it is in a simulation.
    delta = float((y_test - op(x_test)).flatten(1).norm(dim=1).mean())

    methods = {
        "FBP (Hann)": lambda y, op: fbp(y, op, filter="hann"),
        f"Tikhonov (α = {alpha:g}, CG)": lambda y, op: tikhonov(y, op, alpha=alpha, n_iter=30),
        "CGLS (discrepancy principle)": lambda y, op: cgls(y, op, n_iter=100, delta=delta),
        f"TV (PDHG, {tv_iter} it., λ = {lam:g})": lambda y, op: tv_pdhg(y, op, lam=lam, n_iter=tv_iter, nonneg=False),
        "LGD (shipped)": pretrained("lgd-ellipses"),
        "LPD (shipped)": pretrained("lpd-ellipses"),
    }
    print("| method | Shepp–Logan PSNR / SSIM | ellipses PSNR / SSIM | ms / image |")
    print("| --- | --- | --- | --- |")
    for name, method in methods.items():
        sl = score(predict(method, y_sl, op), x_sl)
        started = time.perf_counter()
        x_hat = predict(method, y_test, op)
        ms = 1000 * (time.perf_counter() - started) / n_test
        el = score(x_hat, x_test)
        print(
            f"| {name} | {sl.psnr.mean():.2f} / {sl.ssim.mean():.3f} | {el.psnr.mean():.2f} / {el.ssim.mean():.3f} "
            f"| {ms:.1f} |"
        )


if __name__ == "__main__":
    main()
