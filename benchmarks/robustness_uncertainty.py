"""Uncertainty of the quick preset's methods and its calibration: per-pixel std maps, coverage of the 90 % interval,
correlation of std and error, on validation ellipses, held-out ellipses and Shepp–Logan.

Usage: python benchmarks/robustness_uncertainty.py [--samples 16] [--langevin-steps 6000] [--threads 1]
       [--methods resample,langevin-tv,langevin-pnp] [--prior-sigma 0.05] [--name robustness-uncertainty]

Methods (``learnrecon.robustness.uncertainty``):
- data resampling: each method run on y + σξ, 16 draws, σ = 0.05·mean|y| (the data's own noise level, estimated
  from y) — for FBP and the three shipped models;
- Langevin: ULA on exp(−‖Ax − y‖²/(2σ²) − (λ/σ²)·TV_s(x)) with TV's λ tuned on 2 validation ellipses (the TV
  reconstruction is this posterior's mode for s → 0), smoothing s chosen so that the prior's gradient is no
  stiffer than the data term's; each chain starts at the TV reconstruction (1000 PDHG iterations), samples every
  20 steps after a burn-in of half the steps.
- PnP-ULA (a learned prior): ULA on exp(−‖Ax − y‖²/(2σ²) − R(x)) with ∇R(x) = (x − D(x, s))/s² from the shipped
  plug-and-play denoiser (pnp-ellipses) at s = --prior-sigma; each chain starts at PnP-ADMM's reconstruction,
  samples as above.
--methods picks some of resample, langevin-tv, langevin-pnp (default all); --name the results file.
Not measured: deep ensembles (one shipped checkpoint per model) and Monte-Carlo dropout (no shipped model has
dropout layers); see docs/robustness.md.
The 90 % interval is μ ± 1.645 s. "recalibrated": s scaled by the factor that gives 90 % coverage on the
validation ellipses, then applied unchanged to the held-out images.
Writes benchmarks/results/<name>.{json,md} and benchmarks/results/<name>/std-maps.png.
"""

from __future__ import annotations

import argparse
import time

import torch
from results_file import RESULTS, provenance, publish
from robustness_common import ellipses, methods, quick_operator, shepp_logan, tune_tv_lambda

from learnrecon import metrics
from learnrecon.data.simulate import measure
from learnrecon.models import pretrained
from learnrecon.report import machine_info, markdown_table
from learnrecon.report.figures import plt
from learnrecon.robustness.calibration import calibration_report, recalibration_factor
from learnrecon.robustness.files import pnp_ula
from learnrecon.robustness.uncertainty import langevin_sample, resample_data, tv_prior
from learnrecon.runtime import tune_malloc
from learnrecon.solvers import tv_pdhg

LEVEL = 0.9


def std_figure(path, sets: dict, outputs: dict) -> None:
    """Per test set (rows: first image of each), truth, then each method's mean, |error| and std."""
    names = list(outputs)
    fig, axes = plt.subplots(len(sets), 1 + 3 * len(names), figsize=(1.9 * (1 + 3 * len(names)), 2.2 * len(sets)))
    for r, (set_name, (x, _)) in enumerate(sets.items()):
        truth = x[0, 0].numpy()
        axes[r, 0].imshow(truth, cmap="gray")
        axes[r, 0].set_title(f"{set_name}: truth", fontsize=7)
        for j, name in enumerate(names):
            mean, std = (t[0, 0].numpy() for t in outputs[name][set_name])
            error = abs(mean - truth)
            top = max(float(error.max()), 1e-12)
            for k, (title, data, cmap, vmax) in enumerate(
                [("mean", mean, "gray", None), ("|error|", error, "magma", top), ("std", std, "magma", top / 1.645)]
            ):
                ax = axes[r, 1 + 3 * j + k]
                ax.imshow(data, cmap=cmap, vmin=0 if vmax else None, vmax=vmax)
                ax.set_title(f"{name}\n{title}", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=16, help="resampling draws per method")
    parser.add_argument("--langevin-steps", type=int, default=6000, help="ULA steps (half burn-in)")
    parser.add_argument("--validation", type=int, default=4, help="validation ellipses (recalibration)")
    parser.add_argument("--test", type=int, default=6, help="held-out ellipses")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--methods", default="resample,langevin-tv,langevin-pnp", help="which kinds to run")
    parser.add_argument("--prior-sigma", type=float, default=0.05, help="PnP-ULA: the denoiser's noise level")
    parser.add_argument("--name", default="robustness-uncertainty", help="results file name")
    args = parser.parse_args()
    kinds = set(args.methods.split(","))
    unknown = kinds - {"resample", "langevin-tv", "langevin-pnp"}
    if unknown:
        parser.error(f"unknown --methods {sorted(unknown)}")
    tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    op = quick_operator()
    noise = "relative:0.05"
    sets = {}
    for name, x, seed in [
        ("validation ellipses", ellipses(args.validation, seed=301), 11),
        ("held-out ellipses", ellipses(args.test, seed=302), 12),
        ("Shepp–Logan", shepp_logan(), 13),
    ]:
        sets[name] = (x, measure(op, x, noise, seed=seed))
    lam = tune_tv_lambda(op, noise)
    compared = methods(op, lam)
    compared.pop("TV")  # TV itself is sampled through its posterior (Langevin) below

    outputs: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for label, method in compared.items() if "resample" in kinds else ():
        name = f"{label}, data resampling"
        outputs[name], start = {}, time.perf_counter()
        for set_name, (_, y) in sets.items():
            sigma = 0.05 * y.abs().flatten(1).mean(dim=1)
            out = resample_data(method, y, op, sigma, n_samples=args.samples)
            outputs[name][set_name] = (out.mean, out.std)
        seconds[name] = time.perf_counter() - start
        print(name, f"{seconds[name]:.0f} s")

    if "langevin-tv" in kinds:
        langevin_tv(args, op, lam, sets, outputs, seconds)
    if "langevin-pnp" in kinds:
        name = f"PnP-ULA, learned denoiser prior (s = {args.prior_sigma:g})"
        outputs[name], start = {}, time.perf_counter()
        pnp = pretrained("pnp-ellipses")
        for set_name, (_, y) in sets.items():
            sigma = 0.05 * y.abs().flatten(1).mean(dim=1)
            with torch.no_grad():
                begin = pnp(y, op, scheme="admm")
            out = pnp_ula(y, op, sigma, pnp.denoiser, args.prior_sigma, args.langevin_steps, start=begin)
            outputs[name][set_name] = (out.mean, out.std)
        seconds[name] = time.perf_counter() - start
        print(name, f"{seconds[name]:.0f} s")
    report(args, sets, outputs, seconds, lam)


def langevin_tv(args, op, lam: float, sets: dict, outputs: dict, seconds: dict) -> None:
    """ULA on the TV posterior for every set (one chain per image, from TV's MAP)."""
    norm2 = float(op.norm(torch.float64) ** 2)
    name = f"Langevin, TV prior (λ = {lam:g})"
    outputs[name], start = {}, time.perf_counter()
    for set_name, (_, y) in sets.items():
        sigma = 0.05 * y.abs().flatten(1).mean(dim=1)
        start_images = tv_pdhg(y, op, lam=lam, n_iter=1000, nonneg=False)  # the chains start at TV's MAP
        results = []
        for i in range(len(y)):  # one σ (hence one prior weight λ/σ²) per image
            s2 = float(sigma[i]) ** 2
            smoothing = 8 * lam / norm2  # the prior's Lipschitz bound (λ/σ²)·8/s equals the data term's ‖A‖²/σ²
            prior = tv_prior(lam / s2, smoothing, op.domain_shape)
            n = args.langevin_steps
            results.append(
                langevin_sample(
                    y[i : i + 1],
                    op,
                    sigma[i],
                    prior,
                    n_samples=n // 40,
                    thin=20,
                    burn_in=n // 2,
                    x0=start_images[i : i + 1],
                    seed=i,
                )
            )
        outputs[name][set_name] = (torch.cat([r.mean for r in results]), torch.cat([r.std for r in results]))
    seconds[name] = time.perf_counter() - start
    print(name, f"{seconds[name]:.0f} s")


def report(args, sets: dict, outputs: dict, seconds: dict, lam: float) -> None:
    """The calibration table, the std maps and the results files."""
    rows = []
    for method_name, per_set in outputs.items():
        v_mean, v_std = per_set["validation ellipses"]
        factor = recalibration_factor(v_mean, v_std, sets["validation ellipses"][0], LEVEL)
        for set_name, (mean, std) in per_set.items():
            x = sets[set_name][0]
            raw = calibration_report(mean, std, x, LEVEL)
            fixed = calibration_report(mean, std, x, LEVEL, factor=factor)
            rows.append(
                {
                    "method": method_name,
                    "images": set_name,
                    "PSNR of mean": float(metrics.psnr(mean, x).mean()),
                    "rmse": raw["rmse"],
                    "mean std": raw["mean std"],
                    "coverage 90%": raw["coverage"],
                    "factor (from validation)": factor,
                    "coverage 90% recalibrated": fixed["coverage"],
                    "pearson(std, |error|)": raw["pearson(std, |error|)"],
                    "spearman(std, |error|)": raw["spearman(std, |error|)"],
                    "curve": raw["curve"],
                }
            )
            print({k: v for k, v in rows[-1].items() if k != "curve"})
    std_figure(
        RESULTS / args.name / "std-maps.png",
        {k: sets[k] for k in ("held-out ellipses", "Shepp–Logan")},
        outputs,
    )
    info = machine_info()
    columns = [c for c in rows[0] if c != "curve"]
    digits = {c: 3 for c in columns if "coverage" in c or "son" in c or "man" in c or c in ("rmse", "mean std")}
    text = (
        "# Uncertainty and its calibration (quick preset's geometry)\n\n"
        "Data: 128², 30 angles, 5 % relative Gaussian noise; "
        f"{args.validation} validation ellipses (to recalibrate), {args.test} held-out ellipses, Shepp–Logan. "
        f"Data resampling: {args.samples} draws of y + σξ, σ = 0.05·mean|y|. Langevin: ULA, {args.langevin_steps} "
        f"steps (half burn-in, every 20th kept), TV prior with the λ = {lam:g} tuned for TV on 2 validation "
        f"ellipses, smoothed; PnP-ULA: the shipped denoiser at s = {args.prior_sigma:g}, from PnP-ADMM. "
        "Coverage: fraction of pixels in μ ± 1.645 s; recalibrated: s times the factor that "
        "gives 90 % on the validation ellipses. Correlations over all pixels of a set. Seconds per method (all "
        "sets): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + ".\n"
        f"{provenance(info)}\n\n{markdown_table(rows, columns, digits)}\n"
        f"Std maps: {args.name}/std-maps.png (mean, |error| and std of the first held-out ellipse image "
        "and of Shepp–Logan; the std map on the scale |error|/1.645).\n"
    )
    publish(args.name, {"machine": info, "tv_lambda": lam, "rows": rows, "seconds": seconds}, text)


if __name__ == "__main__":
    main()
