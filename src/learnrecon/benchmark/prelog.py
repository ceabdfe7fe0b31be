"""The pre-log CT benchmark: low-dose photon counts ``N ~ Poisson(I₀ exp(−μ A x))``, reconstructed by the post-log
linear LPD, the physics-constrained (nonlinear) LPD and the classical baselines.

Setup: DIVal-style ellipses (values in [0, 1]) on a 64² grid, parallel beam with 30 angles, μ = 0.06 per pixel (the
densest rays keep about 7 % of the photons), at :data:`DOSES` photons per detector cell; the test sets are
:data:`N_TEST` held-out ellipse phantoms and the modified Shepp–Logan head, the classical methods' weights tuned
on :data:`N_VALIDATION` validation phantoms. Methods:

- FBP of the log data ``−log(N/I₀)/μ`` (Hann filter);
- TV of the log data by PDHG (the post-log classical baseline);
- the penalised Poisson likelihood with TV (:mod:`learnrecon.solvers.poisson`) by FISTA and by projected
  Gauss–Newton (the same minimiser; GN in 20 outer iterations);
- LPD, post-log: the learned primal-dual with the linear ray transform, trained on the log data;
- LPD, pre-log: the same network with the Beer–Lambert operator, its dual block seeing ``F(f)`` and its primal
  block ``F'(f)*h`` (the lectures' physics-constrained LPD), trained on the counts.

Both LPDs are trained the same number of steps on the same phantoms and the same counts (the post-log data are
their logarithm). ``prelog`` evaluates the shipped weights (``learnrecon/pretrained/prelog/``); ``prelog-full``
trains them in ``runs_dir`` (resuming what is there); ``prelog-smoke`` trains for a few steps, for tests.

Output folder: ``report.md``, ``results.json`` and ``figures/prelog.png`` (the reconstructions of one test
phantom at the lowest dose).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from learnrecon.config import Config, from_dict
from learnrecon.data.simulate import measure
from learnrecon.errors import ParameterError
from learnrecon.evaluation import predict, score
from learnrecon.io.checkpoint import checkpoint_paths
from learnrecon.io.lock import output_lock
from learnrecon.models.hub import PRETRAINED_DIR, load_model
from learnrecon.operators.nonlinear import BeerLambert
from learnrecon.operators.registry import build_operator
from learnrecon.phantoms import draw_ellipses, shepp_logan
from learnrecon.report import machine_info, markdown_table, write_json
from learnrecon.solvers import gauss_newton_tv, poisson_tv, prelog_fbp, tv_pdhg
from learnrecon.training import train_to_completion

__all__ = ["PRELOG_PRESETS", "PrelogPreset", "prelog_dry_run", "run_prelog_benchmark", "training_config"]

DOSES = (1e4, 1e3)
MU_MAX = 0.06
RAY = {"type": "ParallelBeam2D", "image_size": 64, "n_angles": 30, "n_detectors": 91}
LPD = {"n_iter": 5, "width": 16, "depth": 3, "init": "fbp"}
N_TEST = 32
N_VALIDATION = 4
TEST_SEED, VALIDATION_SEED = 99_999, 99_998
#: The two ways of feeding the counts to the LPD.
PHYSICS = ("post-log", "pre-log")
#: Where the shipped weights live: ``lpd-<physics>-<I₀>``.
SHIPPED_DIR = PRETRAINED_DIR / "prelog"


@dataclass(frozen=True)
class PrelogPreset:
    """One version of the benchmark: whether it trains the LPDs (and for how many steps), the test-set size and
    the classical methods' iterations and weight grids (λ per unit of I₀ for the likelihood, scaled by the dose)."""

    name: str
    train: bool
    train_steps: int = 1000
    n_test: int = N_TEST
    tv_iterations: int = 300
    tv_lambdas: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)
    likelihood_lambdas: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    fista_iterations: int = 300
    gauss_newton_iterations: int = 20


PRELOG_PRESETS = {
    "prelog": PrelogPreset("prelog", train=False),
    "prelog-full": PrelogPreset("prelog-full", train=True),
    "prelog-smoke": PrelogPreset(
        "prelog-smoke",
        train=True,
        train_steps=3,
        n_test=2,
        tv_iterations=30,
        tv_lambdas=(1.0,),
        likelihood_lambdas=(10.0,),
        fista_iterations=30,
        gauss_newton_iterations=3,
    ),
}


def prelog_operator(photons: float) -> BeerLambert:
    """The benchmark's pre-log model at ``photons`` per detector cell."""
    return BeerLambert(build_operator(RAY), photons, MU_MAX)


def run_name(photons: float, physics: str) -> str:
    """``lpd-post-log-1000`` and so on: the run folder and the shipped weights' name."""
    return f"lpd-{physics}-{photons:g}"


def training_config(photons: float, physics: str, steps: int) -> Config:
    """The training config of one LPD: ``pre-log`` on the counts with the Beer–Lambert operator, ``post-log`` on
    their logarithm with the ray transform (``noise poisson:I₀:μ`` gives the log of the counts that ``counts:I₀:μ``
    gives, from the same seeds)."""
    if physics not in PHYSICS:
        raise ParameterError(f"physics must be one of {', '.join(PHYSICS)}, got {physics!r}")
    pre = physics == "pre-log"
    operator = {"type": "BeerLambert", "ray": RAY, "photons": photons, "mu_max": MU_MAX} if pre else RAY
    every = max(1, min(250, steps))
    return from_dict(
        {
            "model": {"name": "lpd", "params": LPD},
            "data": {
                "operator": operator,
                "phantom": {"type": "dival-ellipses"},
                "noise": f"{'counts' if pre else 'poisson'}:{photons:g}:{MU_MAX:g}",
                "seed": 0,
                "n_validation": 8,
                "validation_seed": 999,
            },
            "training": {
                "steps": steps,
                "batch_size": 4,
                "lr": 1e-3,
                "schedule": "cosine",
                "clip_grad_norm": 1.0,
                "threads": 1,
                "log_every": 25,
                "validate_every": every,
                "checkpoint_every": every,
                "figure_every": 10**9,
                "seed": 0,
            },
        }
    )


def train_models(preset: PrelogPreset, runs_dir: str | Path, progress: bool = True) -> dict[tuple[float, str], Path]:
    """Train (or finish) the four LPDs in ``runs_dir/<run name>``; returns ``{(I₀, physics): best checkpoint}``."""
    paths = {}
    for photons in DOSES:
        for physics in PHYSICS:
            run = Path(runs_dir) / run_name(photons, physics)
            train_to_completion(training_config(photons, physics, preset.train_steps), run, progress)
            paths[(photons, physics)] = run / "best"
    return paths


def shipped_models() -> dict[tuple[float, str], Path]:
    """The shipped weights: ``{(I₀, physics): path}``."""
    paths = {(p, physics): SHIPPED_DIR / run_name(p, physics) for p in DOSES for physics in PHYSICS}
    missing = [str(p) for p in paths.values() if not checkpoint_paths(p)[1].exists()]
    if missing:
        raise ParameterError(f"the shipped pre-log weights are missing: {', '.join(missing)}")
    return paths


def eval_sets(op: BeerLambert, n_test: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{name: (truth, counts)}``: validation and test ellipses and Shepp–Logan, counts of seeds no training uses."""
    noise = f"counts:{op.photons:g}:{op.mu_max:g}"
    shape = op.domain_shape
    images = {
        "validation": draw_ellipses("dival-ellipses", n=N_VALIDATION, size=shape, seed=VALIDATION_SEED),
        "ellipses": draw_ellipses("dival-ellipses", n=n_test, size=shape, seed=TEST_SEED),
        "shepp-logan": shepp_logan(shape).float()[None, None],
    }
    return {name: (x.float(), measure(op, x.float(), noise, seed=TEST_SEED)) for name, x in images.items()}


def _psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return float(score(x_hat.float(), x).psnr.mean())


def classical_methods(preset: PrelogPreset, op: BeerLambert, validation) -> dict[str, tuple[object, float | None]]:
    """``{label: (function of the counts, tuned λ)}``, λ chosen by the validation PSNR."""
    x_val, y_val = validation

    def tuned(method, grid):
        lam = max(grid, key=lambda v: _psnr(method(y_val, v), x_val))
        return (lambda y: method(y, lam)), lam

    scale = op.photons / 1e4
    likelihood_grid = [v * scale for v in preset.likelihood_lambdas]
    tv = tuned(lambda y, lam: tv_pdhg(op.log_data(y), op.ray, lam, n_iter=preset.tv_iterations), preset.tv_lambdas)
    fista = tuned(lambda y, lam: poisson_tv(y, op, lam=lam, n_iter=preset.fista_iterations), likelihood_grid)
    gn_lam = fista[1]
    return {
        "FBP (post-log, Hann)": ((lambda y: prelog_fbp(y, op)), None),
        "TV (post-log, PDHG)": tv,
        "Poisson likelihood + TV (FISTA)": fista,
        "Poisson likelihood + TV (Gauss–Newton)": (
            (lambda y: gauss_newton_tv(y, op, lam=gn_lam, n_iter=preset.gauss_newton_iterations)),
            gn_lam,
        ),
    }


def learned_methods(models: dict, photons: float, op: BeerLambert) -> dict[str, tuple[object, None]]:
    """The two LPDs at this dose as functions of the counts."""
    post, pre = load_model(models[(photons, "post-log")]), load_model(models[(photons, "pre-log")])
    return {
        "LPD, post-log (linear A)": ((lambda y: predict(post, op.log_data(y), op.ray)), None),
        "LPD, pre-log (Beer–Lambert F(f), F'(f)*)": ((lambda y: predict(pre, y, op)), None),
    }


def run_prelog_benchmark(
    preset: PrelogPreset, out: str | Path, *, runs_dir: str | Path = "runs/prelog", overwrite: bool = False,
    progress: bool = True,
) -> dict:  # fmt: skip
    """Evaluate every method at every dose and write the report into ``out`` (via a temporary folder)."""
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise ParameterError(f"{out} exists; pass --overwrite to replace it")
    start_time = time.perf_counter()
    models = train_models(preset, runs_dir, progress) if preset.train else shipped_models()
    rows, examples = [], {}
    for photons in DOSES:
        op = prelog_operator(photons)
        sets = eval_sets(op, preset.n_test)
        methods = {**classical_methods(preset, op, sets["validation"]), **learned_methods(models, photons, op)}
        for label, (method, lam) in tqdm(methods.items(), desc=f"I₀ = {photons:g}", disable=not progress):
            row = {"photons": photons, "method": label, "lambda": lam}
            for name in ("ellipses", "shepp-logan"):
                x, y = sets[name]
                start = time.perf_counter()
                x_hat = method(y)
                row[f"{name}_seconds"] = time.perf_counter() - start
                scores = score(x_hat.float(), x)
                row[f"{name}_psnr"], row[f"{name}_ssim"] = float(scores.psnr.mean()), float(scores.ssim.mean())
                if name == "ellipses" and photons == min(DOSES):
                    examples[label] = x_hat[0, 0].float()
            rows.append(row)
        if photons == min(DOSES):
            examples["truth"] = sets["ellipses"][0][0, 0]
    summary = {"preset": preset.name, "rows": rows, "verdict": verdict(rows), "machine": machine_info()}
    summary["setup"] = {"ray": RAY, "mu_max": MU_MAX, "doses": DOSES, "lpd": LPD, "n_test": preset.n_test}
    summary["models"] = {run_name(*key): str(path) for key, path in models.items()}
    summary["seconds"] = time.perf_counter() - start_time
    with output_lock(out, f"learnrecon benchmark --preset {preset.name}"):
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "figures").mkdir(parents=True)
        write_json(tmp / "results.json", summary)
        _figure(tmp / "figures" / "prelog.png", examples)
        (tmp / "report.md").write_text(report_markdown(summary, preset))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return summary


def verdict(rows: list[dict]) -> dict:
    """Per dose: the pre-log LPD's PSNR minus the post-log LPD's, and minus the best classical method's."""
    result = {}
    for photons in sorted({r["photons"] for r in rows}):
        mine = {r["method"]: r for r in rows if r["photons"] == photons}
        pre = next(r for k, r in mine.items() if k.startswith("LPD, pre-log"))
        post = next(r for k, r in mine.items() if k.startswith("LPD, post-log"))
        classical = max((r for k, r in mine.items() if not k.startswith("LPD")), key=lambda r: r["ellipses_psnr"])
        result[f"{photons:g}"] = {
            name: {
                "pre_minus_post": pre[f"{name}_psnr"] - post[f"{name}_psnr"],
                "pre_minus_best_classical": pre[f"{name}_psnr"] - classical[f"{name}_psnr"],
                "best_classical": classical["method"],
            }
            for name in ("ellipses", "shepp-logan")
        }
    return result


def report_markdown(summary: dict, preset: PrelogPreset) -> str:
    """The report: setup, the table per dose, and where the pre-log model wins and by how much."""
    rows = [
        {
            "I₀": f"{r['photons']:g}",
            "method": r["method"],
            "λ": "" if r["lambda"] is None else f"{r['lambda']:g}",
            "ellipses PSNR": f"{r['ellipses_psnr']:.2f}",
            "ellipses SSIM": f"{r['ellipses_ssim']:.3f}",
            "Shepp–Logan PSNR": f"{r['shepp-logan_psnr']:.2f}",
            "Shepp–Logan SSIM": f"{r['shepp-logan_ssim']:.3f}",
            "ms / image": f"{1000 * r['ellipses_seconds'] / preset.n_test:.1f}",
        }
        for r in summary["rows"]
    ]
    lines = []
    for photons, by_set in summary["verdict"].items():
        e, s = by_set["ellipses"], by_set["shepp-logan"]
        lines.append(
            f"- I₀ = {photons}: pre-log LPD − post-log LPD {e['pre_minus_post']:+.2f} dB on the ellipses, "
            f"{s['pre_minus_post']:+.2f} dB on Shepp–Logan; pre-log LPD − best classical ({e['best_classical']}) "
            f"{e['pre_minus_best_classical']:+.2f} dB on the ellipses."
        )
    source = (
        f"LPDs trained here ({preset.train_steps} steps each)"
        if preset.train
        else "the shipped LPDs (pretrained/prelog)"
    )
    return (
        f"# Pre-log CT at low dose: preset {preset.name}\n\n"
        f"64² DIVal-style ellipses, parallel beam 30 angles, μ = {MU_MAX}/pixel, Poisson counts at I₀ ∈ "
        f"{{{', '.join(f'{d:g}' for d in DOSES)}}} photons per cell; {preset.n_test} held-out ellipses and the "
        f"Shepp–Logan head; {source}, LPD {LPD}; classical weights tuned on {N_VALIDATION} validation phantoms.\n\n"
        + markdown_table(rows, list(rows[0]))
        + "\n\n## Pre-log against post-log\n\n"
        + "\n".join(lines)
        + "\n\n![reconstructions at the lowest dose](figures/prelog.png)\n\n"
        + f"Command: `learnrecon benchmark --preset {preset.name}`. Machine: {summary['machine']}; "
        + f"{summary['seconds'] / 60:.1f} minutes in all (training included).\n"
    )


def _figure(path: Path, examples: dict[str, torch.Tensor]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["truth", *(k for k in examples if k != "truth")]
    fig, axes = plt.subplots(1, len(names), figsize=(2.1 * len(names), 2.5))
    for ax, name in zip(axes, names, strict=True):
        ax.imshow(examples[name].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name.replace(" (", "\n("), fontsize=7)
        ax.axis("off")
    fig.suptitle(f"I₀ = {min(DOSES):g} photons per cell", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prelog_dry_run(preset: PrelogPreset) -> list[str]:
    """What the preset would do, each training config built (nothing trained or written)."""
    lines = []
    for photons in DOSES:
        for physics in PHYSICS:
            config = training_config(photons, physics, preset.train_steps)
            what = f"train {config.training.steps} steps" if preset.train else "evaluate the shipped"
            lines.append(f"{what} {run_name(photons, physics)}: noise {config.data.noise}")
    if not preset.train:
        shipped_models()
    return lines
