"""The ``learnrecon`` command line: it parses arguments, builds objects and calls the library.

Errors in the input (a learnrecon error, a missing optional extra) are printed as one line on
stderr and give exit status 1, without a traceback; an interrupted run exits with 130. Under ``torchrun`` each
process prints its own error, labelled with its rank.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

import learnrecon
from learnrecon.errors import LearnreconError

__all__ = ["main", "build_parser"]


def _methods_text() -> str:
    from learnrecon.solvers.registry import METHODS

    lines = ["methods (--method NAME --param KEY=VALUE ...; ar ... red are learned regularisers):"]
    for name, spec in METHODS.items():
        params = ", ".join(spec.params) or "-"
        lines.append(f"  {name:14s} {spec.summary}; parameters: {params}")
    return "\n".join(lines)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a data set (phantoms -> forward operator -> noise) into an HDF5 file",
        description="Simulate truth/measurement pairs and write them, with labels and the geometry, to HDF5.",
    )
    p.add_argument("--phantom", choices=["ellipses", "dival-ellipses", "shepp-logan", "file"], default="ellipses")
    p.add_argument("--truth", help="images to simulate from with --phantom file (.npy, .npz, .dcm or a DICOM folder)")
    p.add_argument("--truth-key", default=None, help="the array to read from a --truth .npz file that holds several")
    p.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--supersample", type=int, default=1, help="render ellipses k times finer and average (default 1)")
    p.add_argument(
        "--ellipse-scaling",
        choices=["minmax", "none"],
        default="none",
        help="ellipses: none keeps the raw sum (Adler & Öktem's, as the shipped models were trained; default); "
        "minmax scales each image to [0, 1]",
    )
    p.add_argument("--geometry", choices=["parallel", "fan", "denoise"], default="parallel")
    p.add_argument("--angles", type=int, default=30, help="number of projection angles (default 30)")
    p.add_argument("--detectors", type=int, default=None, help="detector pixels (default: cover the image diagonal)")
    p.add_argument("--extent", type=float, default=None, help="physical image width (default: size, pixel size 1)")
    p.add_argument("--source-distance", type=float, default=None, help="fan beam: source to rotation centre")
    p.add_argument("--detector-distance", type=float, default=None, help="fan beam: rotation centre to detector")
    p.add_argument(
        "--noise",
        default="relative:0.05",
        help="none | relative:F | gaussian:S | poisson:N0[:MU_MAX] (post-log) | counts:N0[:MU_MAX[:READOUT]] "
        "(photon counts, pre-log: the file stores the Beer–Lambert model)",
    )
    p.add_argument(
        "--config",
        help="simulate the data section of a training config instead (its operator, phantom, noise and seed); an MRI "
        "operator writes fastMRI's HDF5 layout with the complex truth and the coil maps. Not combined with the "
        "options above but --n",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the phantoms and noise (default 0, or data.seed)")
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_simulate, config_excludes={name: p.get_default(name) for name in _SIMULATION_OPTIONS})


#: The simulate options that describe the set-up, which a --config gives instead.
_SIMULATION_OPTIONS = ("phantom", "truth", "truth_key", "size", "supersample", "ellipse_scaling", "geometry", "angles",
                       "detectors", "extent", "source_distance", "detector_distance", "noise")  # fmt: skip


def _run_simulate(args: argparse.Namespace) -> int:
    from learnrecon.data.simulate import make_phantoms, parse_noise, prelog_operator, simulate
    from learnrecon.errors import ParameterError
    from learnrecon.io.files import check_output_path
    from learnrecon.operators.registry import make_operator

    for name in ("n", "size", "angles", "supersample"):
        if getattr(args, name) < 1:
            raise ParameterError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.config is not None:
        return _simulate_config(args)
    check_output_path(args.out, args.overwrite)  # fail before any heavy work
    noise, seed = parse_noise(args.noise), 0 if args.seed is None else args.seed
    op = make_operator(
        args.geometry,
        args.size,
        n_angles=args.angles,
        n_detectors=args.detectors,
        image_extent=args.extent,
        source_distance=args.source_distance,
        detector_distance=args.detector_distance,
    )
    op = prelog_operator(op, noise)
    images = make_phantoms(
        args.phantom,
        n=args.n,
        size=args.size,
        seed=seed,
        supersample=args.supersample,
        scaling=args.ellipse_scaling,
        truth=args.truth,
        truth_key=args.truth_key,
    )
    path = simulate(args.out, op, images, noise=noise, seed=seed, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {len(images)} samples ({op.name} {op.domain_shape} -> {op.range_shape}, noise {noise}) to {path}")
    return 0


def _simulate_config(args: argparse.Namespace) -> int:
    """``simulate --config``: the phantoms, operator and noise of a config's data section, ``--n`` samples."""
    from learnrecon.config import find_config, load_config
    from learnrecon.data.simulate import Phantoms, parse_noise, simulate
    from learnrecon.data.sources import phantom_source
    from learnrecon.errors import ParameterError
    from learnrecon.io.files import check_output_path
    from learnrecon.operators.registry import build_operator

    given = [name for name, default in args.config_excludes.items() if getattr(args, name) != default]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ParameterError(f"--config gives the operator, phantoms and noise; leave out {options}")
    path = find_config(args.config)
    data = load_config(path).data
    files = ("simulation", "train_file", "validation_file", "lodopab", "fastmri")
    refused = [key for key in files if getattr(data, key)]
    if refused:
        raise ParameterError(f"simulate --config simulates a data section's operator, phantom and noise; {path} "
                             f"also sets data.{', data.'.join(refused)}, which it does not simulate")  # fmt: skip
    check_output_path(args.out, args.overwrite)  # fail before any heavy work
    op, source, noise = build_operator(data.operator_section()), phantom_source(data.phantom), parse_noise(data.noise)
    seed = data.seed if args.seed is None else args.seed
    shape = tuple(op.domain_shape[-2:])
    info = {"config": str(path), **dict(data.phantom), "n": args.n, "seed": seed}
    images = Phantoms.drawn(source, args.n, shape, seed=seed, info=info)
    out = simulate(args.out, op, images, noise=noise, seed=seed, overwrite=args.overwrite, progress=not args.quiet)
    layout = "fastMRI's layout" if op.range_complex else "learnrecon's layout"
    print(f"wrote {args.n} samples ({op.name} {op.domain_shape} -> {op.range_shape}, noise {noise}; {layout}) to {out}")
    return 0


def _add_reconstruct(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="reconstruct a data file with a classical method or a learned model (writes HDF5 + a PNG figure)",
        description="Reconstruct items of a learnrecon HDF5 data set with a classical method (--method) or a learned "
        "model (--pretrained or --checkpoint); writes the reconstructions, PSNR/SSIM when the file holds truth, and "
        "a comparison figure beside the output. --method list shows the classical methods and the learned regularisers "
        "(ar, acr, pnp-pgd, pnp-admm, hqs, red: shipped weights, or --param weights=CHECKPOINT).",
    )
    p.add_argument(
        "--method", default="list", help="a classical method or learned regulariser, or 'list' (default) to show them"
    )
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a method parameter (repeat)")
    learned = p.add_mutually_exclusive_group()
    learned.add_argument("--pretrained", help="a shipped learned model instead of --method, e.g. lpd-ellipses")
    learned.add_argument("--checkpoint", help="a trained checkpoint (.safetensors with its .json) instead of --method")
    p.add_argument("--device", default="cpu", help="for a learned model: cpu (default), cuda, cuda:N or auto")
    p.add_argument("--in", dest="source", help="input data set (HDF5 from learnrecon simulate)")
    p.add_argument("--out", help="output HDF5 file (the figure goes beside it as .png)")
    p.add_argument("--index", default=None, help="items to reconstruct: N, START:STOP or START:STOP:STEP")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--uncertainty",
        choices=("ensemble", "dropout", "resample", "langevin"),
        default=None,
        help="write a mean and a per-pixel std (HDF5 'mean', 'std') instead: an ensemble (the model and --member "
        "checkpoints), Monte-Carlo dropout, data resampling y + σξ (any method), or Langevin sampling: of the TV "
        "posterior with --method tv --param lam=..., of a learned prior with a plug-and-play method (--method "
        "pnp-admm, pnp-pgd, hqs or red: PnP-ULA with its denoiser); with truth in the file, the coverage of the "
        "90%% interval",
    )
    p.add_argument("--member", action="append", default=[], help="--uncertainty ensemble: a further checkpoint")
    p.add_argument("--samples", type=int, default=16, help="--uncertainty dropout/resample: samples (default 16)")
    p.add_argument("--noise-level", type=float, default=None, help="σ as a fraction of mean |y| (default: the file's)")
    p.add_argument("--langevin-steps", type=int, default=6000, help="--uncertainty langevin: ULA steps")
    p.add_argument(
        "--prior-sigma",
        type=float,
        default=None,
        help="PnP-ULA: the denoiser's noise level of the prior (default 0.05)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_reconstruct)


def _run_reconstruct(args: argparse.Namespace) -> int:
    from learnrecon.data import load
    from learnrecon.errors import ParameterError
    from learnrecon.reconstruction import reconstruct_file

    learned = args.pretrained or args.checkpoint
    if args.method == "list" and not learned:
        print(_methods_text())
        return 0
    if learned and args.method != "list":
        raise ParameterError("give --method NAME (a classical method) or --pretrained/--checkpoint (a learned model)")
    if not args.source or not args.out:
        raise ParameterError("reconstruct needs --in DATA.h5 and --out RECON.h5 (and --method NAME or a model)")
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param {item!r} must look like KEY=VALUE, e.g. --param lam=0.01")
        params[key.strip()] = value.strip()
    model, device = None, "cpu"
    if learned:
        model, device = _learned_model(args)
        _warn_if_another_operator(model.provenance.get("operator"), load(args.source).op, "reconstruct")
    if args.uncertainty:
        return _reconstruct_uncertainty(args, model, params)
    summary = reconstruct_file(
        args.source,
        args.out,
        learned or args.method,
        params,
        args.index,
        args.overwrite,
        args.batch_size,
        not args.quiet,
        model=model,
        device=device,
    )
    quality = f", mean PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.3f}" if "psnr" in summary else ""
    print(
        f"{summary['method']} on {summary['n']} items ({1000 * summary['seconds_per_item']:.1f} ms each){quality}; "
        f"wrote {summary['output']} and {summary['figure']}"
    )
    return 0


def _reconstruct_uncertainty(args: argparse.Namespace, model, params: dict) -> int:
    from learnrecon.data import load
    from learnrecon.errors import ParameterError
    from learnrecon.models import load_model
    from learnrecon.reconstruction import parse_index
    from learnrecon.robustness.files import PNP_PRIOR_SIGMA, uncertainty_file
    from learnrecon.solvers.registry import parse_params, reconstruct_batch

    lam, denoiser = None, None
    if model is not None:
        method = model.cpu()
    else:
        kwargs = parse_params(args.method, params)
        lam = kwargs.get("lam")

        def method(y, op):
            return reconstruct_batch(args.method, y, op, kwargs)

        if args.uncertainty == "langevin" and args.method in ("pnp-pgd", "pnp-admm", "hqs", "red"):
            from learnrecon.regularisers.methods import LEARNED_METHODS, load_regulariser

            kind, shipped, _ = LEARNED_METHODS[args.method]
            denoiser = load_regulariser(kwargs.get("weights") or shipped, kind).denoiser
    if args.prior_sigma is not None and denoiser is None:
        raise ParameterError("--prior-sigma belongs to --uncertainty langevin with a plug-and-play --method")

    members = [load_model(path) for path in args.member]
    picked = parse_index(args.index, len(load(args.source)))
    summary = uncertainty_file(
        args.source,
        args.out,
        args.uncertainty,
        method,
        members=members,
        index=picked,
        n_samples=args.samples,
        noise_level=args.noise_level,
        tv_lambda=lam,
        langevin_steps=args.langevin_steps,
        denoiser=denoiser,
        prior_sigma=args.prior_sigma if args.prior_sigma is not None else PNP_PRIOR_SIGMA,
        overwrite=args.overwrite,
    )
    shown = {k: v for k, v in summary.items() if isinstance(v, float)}
    print(
        f"{args.uncertainty} on {summary['n']} items: "
        + ", ".join(f"{k} {v:.3g}" for k, v in shown.items())
        + f"; wrote {summary['output']} (mean, std)"
    )
    return 0


def _run_prelog_preset(preset, args: argparse.Namespace) -> int:
    """``learnrecon benchmark --preset prelog[-full|-smoke]`` (:mod:`learnrecon.benchmark.prelog`)."""
    from learnrecon.benchmark.prelog import prelog_dry_run, run_prelog_benchmark
    from learnrecon.errors import ParameterError

    if args.checkpoint:
        raise ParameterError(f"preset {preset.name} evaluates its own LPDs; --checkpoint is not part of it")
    if args.dry_run:
        print("\n".join(prelog_dry_run(preset)))
        print(f"preset {preset.name}: every part builds (nothing trained or written)")
        return 0
    out = args.out or f"results/{preset.name}"
    summary = run_prelog_benchmark(preset, out, overwrite=args.overwrite, progress=not args.quiet)
    for photons, by_set in summary["verdict"].items():
        print(f"I0 = {photons}: pre-log LPD - post-log LPD {by_set['ellipses']['pre_minus_post']:+.2f} dB (ellipses)")
    print(f"report written to {out}/report.md")
    return 0


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="run a reference benchmark and write its report (tables, figures, JSON)",
        description="Simulate the preset's data, tune the classical baselines on validation data, evaluate every "
        "method on Shepp-Logan and held-out ellipses, and write report.md, results.json and figures.",
    )
    p.add_argument(
        "what", nargs="?", default="preset", choices=("preset", "operators"),
        help="preset (default): the reconstruction benchmark; operators: time the ray transforms",
    )  # fmt: skip
    p.add_argument(
        "--preset",
        default="quick",
        help="quick (default, minutes on a laptop CPU), dival (DIVal's ellipse setup, minutes), smoke (seconds), "
        "paper (the full reproduction: trains FBPConvNet, LGD and LPD for 100k steps each in runs/paper/, "
        "resumable; needs a GPU), mri (multi-coil MRI at 4x and 8x, docs/mri.md), mri-smoke, task-adapted (joint "
        "reconstruction and segmentation across task weights, with shipped weights) or task-adapted-full (trains "
        "that sweep for two seeds in runs/task-adapted/, resumable), prelog (low-dose pre-log CT: post-log and "
        "physics-constrained LPD against FBP, TV and the Poisson likelihood, shipped weights), prelog-full (trains "
        "those LPDs in runs/prelog/, resumable) or prelog-smoke",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="a checkpoint (.safetensors with its .json) evaluated beside the shipped models; repeatable",
    )
    p.add_argument("--cases", default="a,b", help="operators: cases among a, b, c, fan (default a,b)")
    p.add_argument("--repeats", type=int, default=5, help="operators: timed runs per measurement (median)")
    p.add_argument("--device", default="cpu", help="operators: cpu or cuda")
    p.add_argument("--no-astra", action="store_true", help="operators: do not time ASTRA even when installed")
    p.add_argument("--no-deepinv", action="store_true", help="operators: do not time DeepInverse even when installed")
    p.add_argument("--out", default=None, help="output folder (default results/<preset>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--dry-run", action="store_true", help="build the preset's tasks, models and training configs, then stop"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from learnrecon.benchmark import dry_run, get_preset, results_table, run_benchmark
    from learnrecon.errors import ParameterError

    if args.what == "operators":
        if args.checkpoint:
            raise ParameterError("--checkpoint belongs to the reconstruction benchmark, not to 'operators'")
        from learnrecon.benchmark.operators import run_operator_benchmark

        out = args.out or "results/operators"
        print(
            run_operator_benchmark(
                args.cases.split(","),
                out,
                args.repeats,
                args.device,
                not args.no_astra,
                not args.no_deepinv,
                args.overwrite,
            )
        )
        print(f"results written to {out}/")
        return 0

    from learnrecon.benchmark.mri import MRI_PRESETS, mri_dry_run, results_markdown, run_mri_benchmark

    if args.preset in MRI_PRESETS:
        mri_preset = replace(MRI_PRESETS[args.preset], checkpoints=tuple(args.checkpoint))
        if args.dry_run:
            print("\n".join(mri_dry_run(mri_preset)))
            print(f"preset {mri_preset.name}: every part builds (nothing reconstructed or written)")
            return 0
        out = args.out or f"results/{mri_preset.name}"
        summary = run_mri_benchmark(mri_preset, out, overwrite=args.overwrite, progress=not args.quiet)
        print(results_markdown(summary))
        print(f"report written to {out}/report.md")
        return 0

    from learnrecon.benchmark.prelog import PRELOG_PRESETS

    if args.preset in PRELOG_PRESETS:
        return _run_prelog_preset(PRELOG_PRESETS[args.preset], args)

    from learnrecon.benchmark.task_adapted import FULL_SEEDS, TASK_PRESETS, run_task_benchmark, task_dry_run

    if args.preset in TASK_PRESETS:
        full = TASK_PRESETS[args.preset]
        if args.dry_run:
            print("\n".join(task_dry_run(full)))
            print(f"preset {args.preset}: every part builds (nothing trained or written)")
            return 0
        out = args.out or f"results/{args.preset}"
        seeds = FULL_SEEDS if full else (0,)
        summary = run_task_benchmark(out, full=full, seeds=seeds, overwrite=args.overwrite, progress=not args.quiet)
        for name, result in summary["problems"].items():
            s = result["summary"]
            print(f"{name}: best mean Dice at C = {s['best_dice_C']:g} ({s['dice_gain_over_sequential']:+.4f} over "
                  "sequential)")  # fmt: skip
        print(f"report written to {out}/report.md")
        return 0
    preset = replace(get_preset(args.preset), checkpoints=tuple(args.checkpoint))
    if preset.is_sweep and args.checkpoint:
        raise ParameterError(f"preset {preset.name} sweeps the shipped models; --checkpoint is not part of it")
    if args.dry_run:
        print("\n".join(dry_run(preset)))
        print(f"preset {preset.name}: every part builds (nothing trained or written)")
        return 0
    out = args.out or f"results/{preset.name}"
    summary = run_benchmark(preset, out, overwrite=args.overwrite, progress=not args.quiet)
    if preset.is_sweep:
        print((Path(out) / "report.md").read_text())
    else:
        print(results_table(summary))
    print(f"report written to {out}/report.md")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a learned model from a YAML config",
        description="Train the config's model (configs/*.yaml) with checkpoints, CSV/TensorBoard logs and "
        "validation figures in the output folder. Launch with torchrun for distributed data-parallel training.",
    )
    p.add_argument(
        "--config",
        required=True,
        help="YAML config with model, data and training sections (a path, or the name of a config shipped in "
        "the package, e.g. lpd_paper.yaml)",
    )
    p.add_argument("--out", default=None, help="output folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start again, replacing the run in --out")
    p.add_argument("--until", type=int, default=None, help="stop at this step (resume later to go on)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes of training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from learnrecon.benchmark import preset_config
    from learnrecon.config import load_config
    from learnrecon.training import Trainer

    config = load_config(preset_config(args.config))
    out = args.out or f"runs/{Path(args.config).stem}"
    trainer = Trainer.from_config(config, out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    max_seconds = None if args.max_minutes is None else 60 * args.max_minutes
    try:
        summary = trainer.train(until=args.until, max_seconds=max_seconds)
    except KeyboardInterrupt:
        if trainer.is_main:
            kept = (
                f"continue from {out}/last (step {trainer.saved_step}) with --resume"
                if trainer.saved_step is not None
                else "no checkpoint had been saved"
            )
            print(f"learnrecon train: interrupted at step {trainer.step}; {kept}", file=sys.stderr)
        return 130
    if trainer.is_main:
        if math.isfinite(summary["best_psnr"]):
            best = f"best validation PSNR {summary['best_psnr']:.2f} dB; checkpoints in {out}/last and {out}/best"
        else:
            saved = f"checkpoint in {out}/last" if trainer.saved_step is not None else "no checkpoint saved"
            best = f"no validation yet (every {config.training.validate_every} steps); {saved}"
        print(
            f"trained {config.model.name} to step {summary['steps']} of {config.training.steps} "
            f"({summary['seconds'] / 60:.1f} min in all); {best}"
        )
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained model on a data file (PSNR, SSIM, time)",
        description="Reconstruct a data file written by 'learnrecon simulate' with a checkpoint or a shipped "
        "model, and print PSNR and SSIM against the stored truth.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint (.safetensors with its .json beside it)")
    source.add_argument("--pretrained", help="a shipped model, e.g. lpd-ellipses")
    p.add_argument("--data", required=True, help="HDF5 data file with truth")
    p.add_argument("--index", default=None, help="items to evaluate: i, start:stop or start:stop:step")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument(
        "--data-range",
        default="image",
        help="the peak of PSNR and SSIM: 'image' (default: each truth image's own max - min, the convention of "
        "training's validation and of the benchmark) or a number (a fixed peak, e.g. 1 for images in [0, 1])",
    )
    p.add_argument(
        "--symmetry-average",
        action="store_true",
        help="average the model over the quarter turns and reflections the parallel-beam geometry admits "
        "(up to 8x the time)",
    )
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from learnrecon.data import load
    from learnrecon.data.sources import check_pairs_file, file_batches
    from learnrecon.errors import ParameterError
    from learnrecon.evaluation import evaluate_batches
    from learnrecon.io.files import atomic_path, check_output_path
    from learnrecon.models import SymmetryAverage
    from learnrecon.reconstruction import parse_index
    from learnrecon.report import write_json

    if args.batch_size < 1:
        raise ParameterError(f"--batch-size must be a positive integer, got {args.batch_size}")
    data_range = _parse_data_range(args.data_range)
    if args.out:
        check_output_path(args.out, args.overwrite, create_parents=False)  # fail before any work, writing nothing
    model, device = _learned_model(args)
    dataset = load(args.data)
    check_pairs_file(dataset, dataset.op, "--data")
    _warn_if_another_operator(model.provenance.get("operator"), dataset.op, "evaluate")
    if args.symmetry_average:
        if len(dataset.op.symmetries()) < 2:
            raise ParameterError(
                f"--symmetry-average: {dataset.op.name} knows no symmetries of its data besides the identity; it "
                "needs an operator that does (a parallel-beam ray transform, ParallelBeam2D)"
            )
        model = SymmetryAverage(model)
    picked = parse_index(args.index, len(dataset))
    batches = file_batches(dataset, picked, args.batch_size, f"--data {args.data}")
    total = -(-len(picked) // args.batch_size)
    result = evaluate_batches(
        model, batches, dataset.op, device=device, progress=not args.quiet, total=total, data_range=data_range
    )
    name = args.pretrained or args.checkpoint
    averaged = " averaged over the geometry's symmetries" if args.symmetry_average else ""
    peak = "each image's own range" if data_range == "image" else f"data range {data_range:g}"
    print(
        f"{name}{averaged} on {len(picked)} items of {args.data}: PSNR {result['psnr']:.2f} dB, "
        f"SSIM {result['ssim']:.3f} ({peak}), {result['ms_per_image']:.1f} ms per image"
        + "".join(f", {key} {value:.3g}" for key, value in result.get("diagnostics", {}).items())
    )
    if args.out:
        record = {
            "model": name,
            "symmetry_average": args.symmetry_average,
            "data": args.data,
            "data_range": data_range,
            "index": picked.tolist(),
            "psnr": result["psnr"],
            "ssim": result["ssim"],
            "ms_per_image": result["ms_per_image"],
            "per_image": {"psnr": result["psnr_per_image"], "ssim": result["ssim_per_image"]},
            **({"diagnostics": result["diagnostics"]} if "diagnostics" in result else {}),
        }
        with atomic_path(args.out, args.overwrite) as tmp:
            write_json(tmp, record)
        print(f"wrote {args.out}")
    return 0


def _parse_data_range(text: str) -> float | str:
    """``--data-range``: "image" (each truth image's own range, the library's convention) or a positive number."""
    from learnrecon.errors import ParameterError

    if text == "image":
        return "image"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(f"--data-range must be a positive number or 'image', got {text!r}")
    return value


def _learned_model(args: argparse.Namespace):
    """The model of ``--pretrained`` or ``--checkpoint``, on ``--device``, and that device's name."""
    from learnrecon._checks import parse_device
    from learnrecon.models import load_model, pretrained

    device = str(parse_device(args.device, "--device"))
    model = pretrained(args.pretrained, device) if args.pretrained else load_model(args.checkpoint, device)
    return model, device


def _warn_if_another_operator(trained_with: dict | None, op, command: str) -> None:
    """Print a warning naming the settings in which ``op`` differs from the operator a model was trained
    with (evaluating on another geometry is allowed: it measures how the model transfers)."""
    from learnrecon.operators.registry import differing_settings, operator_config

    if trained_with is None:
        return
    try:
        now = operator_config(op)
    except LearnreconError:
        return
    differing = differing_settings(now, trained_with)
    if differing:
        print(
            f"learnrecon {command}: warning: the data's operator differs from the one the model was trained with in "
            f"{', '.join(differing)}",
            file=sys.stderr,
        )


def _add_attack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack",
        help="worst-case data perturbations of a method (Antun et al. 2020): error against the bound ε",
        description="Search, by projected gradient ascent through the method, for the perturbation e with "
        "‖e‖ ≤ ε‖y‖ that most changes the reconstruction of each item, for each ε; report the PSNR with e and with "
        "Gaussian noise of the same norm, the change and the amplification ‖f(y+e) − f(y)‖/‖A⁺e‖, and figures of the "
        "perturbation and the failed reconstruction. A classical method is attacked through autograd (TV through "
        "--search-iterations PDHG iterations, then scored with its own).",
    )
    method = p.add_mutually_exclusive_group(required=True)
    method.add_argument("--pretrained", help="a shipped model, e.g. lpd-ellipses")
    method.add_argument("--checkpoint", help="a trained checkpoint (.safetensors with its .json)")
    method.add_argument("--method", help="a classical method, e.g. fbp or tv (see 'learnrecon reconstruct')")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a --method parameter (repeat)")
    p.add_argument("--data", required=True, help="HDF5 data file with truth (learnrecon simulate)")
    p.add_argument("--index", default="0:4", help="items attacked: N, START:STOP or START:STOP:STEP (default 0:4)")
    p.add_argument("--eps", default="0.005,0.01,0.02", help="bounds, fractions of ‖y‖ (default 0.005,0.01,0.02)")
    p.add_argument(
        "--penalty",
        default=None,
        help="instead of --eps: penalties λ of Antun et al.'s penalised form max ‖f(y+e) − f(y)‖² − λ‖e‖² "
        "(comma-separated; the report gives the norm ‖e‖/‖y‖ each ends at)",
    )
    p.add_argument("--steps", type=int, default=12, help="gradient-ascent steps per bound (default 12)")
    p.add_argument("--search-iterations", type=int, default=100, help="tv: PDHG iterations the search differentiates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (attack.md, attack.json, attack-<method>.png)")
    p.add_argument("--overwrite", action="store_true", help="replace files in an existing --out")
    p.set_defaults(run=_run_attack)


def _parse_eps(text: str, option: str = "--eps") -> list[float]:
    """The comma-separated bounds (or, for ``--penalty``, penalties) of ``learnrecon attack``: finite and ≥ 0."""
    from learnrecon.errors import ParameterError
    from learnrecon.robustness.attack import check_eps

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"{option} must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise ParameterError(f"{option} needs at least one value")
    if option == "--penalty":
        if any(not (math.isfinite(v) and v >= 0) for v in values):
            raise ParameterError(f"--penalty values λ must be finite numbers ≥ 0, got {text!r}")
        return values
    return [check_eps(v) for v in values]


def _run_attack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from learnrecon.data import load
    from learnrecon.data.sources import check_pairs_file
    from learnrecon.errors import DataFileError, ParameterError
    from learnrecon.reconstruction import parse_index
    from learnrecon.report import markdown_table, write_json
    from learnrecon.robustness.study import attack_study
    from learnrecon.solvers.registry import parse_params, reconstruct_batch

    eps_values = _parse_eps(args.eps) if args.penalty is None else _parse_eps(args.penalty, "--penalty")
    if args.steps < 1 or args.search_iterations < 1:
        raise ParameterError("--steps and --search-iterations must be positive integers")
    out = Path(args.out)
    if out.exists() and not args.overwrite and (out / "attack.json").exists():
        raise DataFileError(f"{out} already holds an attack; choose another --out or pass --overwrite")
    dataset = load(args.data)
    check_pairs_file(dataset, dataset.op, "--data")
    picked = parse_index(args.index, len(dataset))
    sample = dataset.tensors(picked.numpy())
    x, y = sample.x.float(), sample.y.float()
    search = {}
    if args.method:
        params = dict(item.partition("=")[::2] for item in args.param)
        if any(not key for key in params):
            raise ParameterError("--param must look like KEY=VALUE")
        kwargs = parse_params(args.method, params)
        label = args.method

        def method(y, op):
            return reconstruct_batch(args.method, y, op, kwargs)

        if args.method == "tv":
            cheap = {**kwargs, "n_iter": args.search_iterations, "differentiable": True}
            search[label] = lambda y, op: reconstruct_batch("tv", y, op, cheap)
    else:
        args.device = "cpu"
        method, _ = _learned_model(args)
        label = args.pretrained or args.checkpoint
        _warn_if_another_operator(method.provenance.get("operator"), dataset.op, "attack")
    out.mkdir(parents=True, exist_ok=True)
    rows = attack_study(
        {label: method},
        y,
        dataset.op,
        eps_values,
        x,
        n_steps=args.steps,
        search_methods=search,
        figures=out,
        seed=args.seed,
        log=lambda line: print(line, file=sys.stderr),
        penalised=args.penalty is not None,
    )
    record = {"method": label, "data": args.data, "index": picked.tolist(), "steps": args.steps, "rows": rows}
    record["form"] = "bound" if args.penalty is None else "penalty"
    write_json(out / "attack.json", record)
    columns = ["eps", "PSNR clean", "PSNR noise", "PSNR attack", "relative change (attack)", "amplification (attack)"]
    search = f"{args.steps} steps of projected gradient ascent per bound ε (‖e‖ ≤ ε‖y‖)"
    if args.penalty is not None:
        columns.insert(0, "penalty")
        search = (
            f"{args.steps} steps of gradient ascent on ‖f(y+e) − f(y)‖² − λ‖e‖² per penalty λ; eps: ‖e‖/‖y‖ reached"
        )
    table = markdown_table(rows, columns, {"eps": 3, "relative change (attack)": 4})
    (out / "attack.md").write_text(
        f"# Worst-case perturbations of {label}\n\nData: {args.data}, items {args.index}; {search}.\n\n{table}"
    )
    print(table)
    print(f"wrote {out}/attack.md, attack.json and the figure")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render a benchmark folder's report.md as one self-contained HTML page",
        description="Render FOLDER/report.md (written by 'learnrecon benchmark') as an HTML page with its figures "
        "embedded, so that it opens or travels as one file.",
    )
    p.add_argument("folder", help="a benchmark output folder, e.g. results/quick")
    p.add_argument("--out", default=None, help="the HTML file (default FOLDER/report.html)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing HTML file")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from learnrecon.report.html import write_html_report

    print(f"wrote {write_html_report(args.folder, args.out, args.overwrite)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="learnrecon",
        description="Learned and classical reconstruction for inverse imaging problems (y = A x + e).",
    )
    parser.add_argument("--version", action="version", version=f"learnrecon {learnrecon.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_simulate(sub)
    _add_reconstruct(sub)
    _add_benchmark(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_attack(sub)
    _add_report(sub)
    _add_adapt(sub)
    return parser


def _add_adapt(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapt",
        help="adapt a trained model to the operator of a new data set, without ground truth",
        description="Minimise ||y - A_new f(y; theta, A_new)||^2/||y||^2 + mu ||theta - theta_0||^2 over the "
        "weights on the measurements of --data (Gilton, Ongie & Willett 2021); writes OUT/adapted.safetensors + .json.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint to adapt (path without or with .safetensors)")
    source.add_argument("--pretrained", help="shipped model to adapt, e.g. lpd-ellipses")
    p.add_argument("--data", required=True, help="HDF5 data set of the new operator (learnrecon simulate)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mu", type=float, default=1e-3, help="weight of ||theta - theta_0||^2 (>= 0)")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps")
    p.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--n-samples", type=int, default=None, help="use only the first N measurements of --data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace OUT/adapted")
    p.set_defaults(run=_run_adapt)


def _run_adapt(args: argparse.Namespace) -> int:
    from learnrecon.training.adaptation import adapt_checkpoint

    path = adapt_checkpoint(
        args.checkpoint or args.pretrained,
        args.data,
        args.out,
        mu=args.mu,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        n_samples=args.n_samples,
        overwrite=args.overwrite,
    )
    print(f"adapted model written to {path}")
    return 0


def _process_label() -> str:
    """``" [rank r of n]"`` in a process of a ``torchrun`` launch of ``n`` processes (which may each fail, and
    not always alike), ``""`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f" [rank {os.environ.get('RANK', '0')} of {world}]" if world > 1 else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``learnrecon`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (LearnreconError, ImportError) as err:
        print(f"learnrecon {args.command}{_process_label()}: error: {err}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        if "can't allocate memory" not in str(err) and "not enough memory" not in str(err):
            raise
        print(f"learnrecon {args.command}{_process_label()}: error: out of memory: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"learnrecon {args.command}: interrupted; no output was written", file=sys.stderr)
        return 130


def console() -> int:
    """The ``learnrecon`` console script: :func:`main` with glibc malloc tuned for large tensors
    (:func:`learnrecon.runtime.tune_malloc`; :func:`main` alone leaves the process's allocator as it is)."""
    from learnrecon.runtime import tune_malloc

    tune_malloc()
    return main()


if __name__ == "__main__":
    sys.exit(console())
