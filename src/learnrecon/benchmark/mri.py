"""The MRI benchmark (``learnrecon benchmark --preset mri``): multi-coil Cartesian MRI at 4× and 8×.

For each acceleration: complex test images (held-out ``mri-ellipses`` and Shepp–Logan heads with smooth random
phases, :func:`learnrecon.phantoms.mri_phantoms`), their k-space through the preset's operator (Gaussian coil
maps, a fastMRI random mask with centre 0.08 at 4× and 0.04 at 8×) with complex Gaussian noise; the methods

- zero-filled: ``A* y`` (the inverse FFT of the acquired k-space, coil-combined with the sensitivities);
- CG-SENSE: Tikhonov ``argmin ‖A x − y‖² + α‖x‖²`` by conjugate gradients, ``α`` tuned on validation images;
- TV: isotropic complex TV by PDHG (:func:`~learnrecon.solvers.tv_pdhg` on complex images), ``λ`` tuned so;
- FISTA-wavelet: ``argmin ½‖A x − y‖² + λ‖W x‖₁`` by :func:`~learnrecon.solvers.fista` with an orthogonal wavelet
  ``W`` on the real and imaginary parts and complex soft thresholding (the approximation band not thresholded),
  ``λ`` tuned so;
- the shipped learned models (trained at 4× only; at 8× they run on the 8× operator they were not trained for);

scored as fastMRI reports them, on magnitudes: PSNR and SSIM with each reference's range (the library's
convention, :mod:`learnrecon.evaluation`) and NMSE ``‖|x̂| − |x|‖² / ‖|x|‖²``. Output: report.md, results.json
and figures/reconstructions-<R>x.png (with error maps) in the output folder.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from learnrecon import phantoms
from learnrecon.benchmark.tuning import tune_log_grid
from learnrecon.data.simulate import simulate_pairs
from learnrecon.errors import DataFileError, ParameterError
from learnrecon.evaluation import evaluate, predict, score
from learnrecon.io.lock import output_lock
from learnrecon.models.hub import load_model, pretrained
from learnrecon.operators.mri import MRI
from learnrecon.operators.registry import build_operator, operator_config
from learnrecon.report import machine_info, markdown_table, reconstruction_grid, write_json
from learnrecon.solvers import fista, tikhonov, tv_pdhg

__all__ = ["MRI_PRESETS", "MRIPreset", "get_mri_preset", "mri_dry_run", "nmse", "results_markdown", "run_mri_benchmark"]


@dataclass(frozen=True)
class MRIPreset:
    """One MRI benchmark setup (module docstring).

    Attributes:
        name, description: as the tomography presets'.
        image_size, n_coils, accelerations, mask_type, mask_seed: the operators (:meth:`MRI.from_config`; the
            centre fraction is fastMRI's for each acceleration).
        noise: k-space noise (see :func:`learnrecon.data.parse_noise`; complex Gaussian for complex data).
        max_phase: the test images' smooth phase, in radians.
        n_validation, n_test, n_heads: validation ellipses, test ellipses, Shepp–Logan heads (random phases).
        tikhonov_alphas, tv_lambdas, fista_lambdas: the log grids searched for CG-SENSE's α, TV's λ and
            FISTA-wavelet's λ.
        cg_iterations, tv_iterations, fista_iterations: iterations of CG-SENSE, of TV's PDHG and of FISTA.
        wavelet: FISTA's orthogonal wavelet (a PyWavelets name; its levels those of
            :func:`~learnrecon.operators.wavelet.default_levels`).
        pretrained: the shipped models evaluated.
        checkpoints: checkpoints of the user's (paths) evaluated beside them (``--checkpoint PATH``).
        seed: base seed (validation ``seed + 1``, test ellipses ``seed + 2``, heads ``seed + 3``, their
            validation ``seed + 4``).
    """

    name: str
    description: str
    image_size: int = 64
    n_coils: int = 4
    accelerations: tuple[int, ...] = (4, 8)
    mask_type: str = "random"
    mask_seed: int = 0
    noise: str = "gaussian:0.01"
    max_phase: float = 1.5
    n_validation: int = 4
    n_test: int = 32
    n_heads: int = 4
    tikhonov_alphas: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    tv_lambdas: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    fista_lambdas: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    cg_iterations: int = 50
    tv_iterations: int = 300
    fista_iterations: int = 200
    wavelet: str = "db4"
    pretrained: tuple[str, ...] = ("vn-mri", "e2e-varnet-mri")
    checkpoints: tuple[str, ...] = ()
    seed: int = 0

    def operator(self, acceleration: int) -> MRI:
        return MRI.from_config(
            self.image_size,
            acceleration=acceleration,
            mask_seed=self.mask_seed,
            mask_type=self.mask_type,
            n_coils=self.n_coils,
        )


MRI_PRESETS: dict[str, MRIPreset] = {
    "mri": MRIPreset(
        "mri",
        "multi-coil Cartesian MRI: 64² complex ellipses (DIVal's magnitudes, smooth random phase up to 1.5 rad) and "
        "Shepp–Logan heads with random phases, 4 Gaussian coils, fastMRI random masks at 4× (centre 0.08) and 8× "
        "(centre 0.04), complex Gaussian k-space noise σ = 0.01; the learned models are trained at 4×",
    ),
    "mri-smoke": MRIPreset(
        "mri-smoke",
        "a seconds-long check of the MRI pipeline: 32², 2 coils, 4×, 2 test images, no shipped models",
        image_size=32,
        n_coils=2,
        accelerations=(4,),
        n_validation=2,
        n_test=2,
        n_heads=1,
        tikhonov_alphas=(1e-2, 1e-1),
        tv_lambdas=(3e-3, 1e-2),
        fista_lambdas=(3e-3, 1e-2),
        cg_iterations=10,
        tv_iterations=30,
        fista_iterations=30,
        pretrained=(),
    ),
}

#: Report labels of the shipped MRI models.
LABELS = {"vn-mri": "VN (shipped)", "e2e-varnet-mri": "E2E-VarNet (shipped)"}


def nmse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """fastMRI's normalised mean squared error per image, on magnitudes: ``‖|x̂| − |x|‖² / ‖|x|‖²``."""
    a = (x_hat.abs() if x_hat.is_complex() else x_hat).reshape(x_hat.shape[0], -1).double()
    b = (x.abs() if x.is_complex() else x).reshape(x.shape[0], -1).double()
    return ((a - b) ** 2).sum(dim=1) / (b**2).sum(dim=1)


def _eval_sets(preset: MRIPreset, op: MRI) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    size = (preset.image_size, preset.image_size)

    def ellipses(n: int, seed: int):
        return lambda shape: phantoms.mri_phantoms("mri-ellipses", n=n, size=shape, seed=seed,
                                                   max_phase=preset.max_phase)  # fmt: skip

    def heads(n: int, seed: int):
        return lambda shape: phantoms.mri_phantoms("mri-shepp-logan", n=n, size=shape, seed=seed,
                                                   max_phase=preset.max_phase)  # fmt: skip

    def pairs(render, seed):
        x, y = simulate_pairs(render, op, preset.noise, seed=seed)
        assert tuple(x.shape[-2:]) == size
        return x, y

    s = preset.seed
    return {
        "validation ellipses": pairs(ellipses(preset.n_validation, s + 1), s + 1),
        "ellipses": pairs(ellipses(preset.n_test, s + 2), s + 2),
        "validation heads": pairs(heads(preset.n_heads, s + 4), s + 4),
        "Shepp–Logan": pairs(heads(preset.n_heads, s + 3), s + 3),
    }


def _mean_psnr(method, x, y, op) -> float:
    return float(score(predict(method, y, op), x).psnr.mean())


def _classical(preset: MRIPreset, op: MRI, validation, progress: bool) -> tuple[dict, dict]:
    x, y = validation

    def sense(alpha: float):
        return lambda y, op: tikhonov(y, op, alpha, n_iter=preset.cg_iterations)

    def tv(lam: float):
        return lambda y, op: tv_pdhg(y, op, lam, n_iter=preset.tv_iterations, nonneg=False)

    def wavelet(lam: float):
        return lambda y, op: fista(y, op, lam, n_iter=preset.fista_iterations, wavelet=preset.wavelet)

    alpha, alpha_grid = tune_log_grid(lambda a: _mean_psnr(sense(a), x, y, op), preset.tikhonov_alphas,
                                      "tuning CG-SENSE α", progress)  # fmt: skip
    lam, lam_grid = tune_log_grid(lambda v: _mean_psnr(tv(v), x, y, op), preset.tv_lambdas, "tuning TV λ", progress)
    w_lam, w_grid = tune_log_grid(lambda v: _mean_psnr(wavelet(v), x, y, op), preset.fista_lambdas,
                                  "tuning FISTA-wavelet λ", progress)  # fmt: skip
    methods = {
        "zero-filled": lambda y, op: op.pseudo_inverse(y),
        "CG-SENSE (Tikhonov)": sense(alpha),
        "TV (complex PDHG)": tv(lam),
        "FISTA-wavelet": wavelet(w_lam),
    }
    return methods, {"CG-SENSE alpha": alpha, "CG-SENSE grid": alpha_grid, "TV lambda": lam, "TV grid": lam_grid,
                     "FISTA-wavelet lambda": w_lam, "FISTA-wavelet grid": w_grid}  # fmt: skip


def run_mri_benchmark(preset: MRIPreset, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Run ``preset`` and write report.md, results.json and figures into ``out``; returns the summary."""
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise DataFileError(f"benchmark folder {out} already exists; choose another --out or pass --overwrite")
    if out.exists() and not (out / "results.json").exists() and any(out.iterdir()):
        raise DataFileError(f"{out} holds files that are not a benchmark's (no results.json); choose another --out")
    models = {LABELS.get(name, name): pretrained(name) for name in preset.pretrained}
    for path in preset.checkpoints:
        model = load_model(path)
        models[f"{model.provenance['model']['name']} ({Path(path).parent.name}, {model.provenance['step']} steps)"] = (
            model
        )
    started = time.perf_counter()
    with output_lock(out, f"learnrecon benchmark --preset {preset.name}"):
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "figures").mkdir(parents=True)
        try:
            summary = _run(preset, models, tmp, progress)
            summary["minutes"] = round((time.perf_counter() - started) / 60, 2)
            write_json(tmp / "results.json", summary)
            (tmp / "report.md").write_text(report_markdown(summary), encoding="utf-8")
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _run(preset: MRIPreset, models: dict, folder: Path, progress: bool) -> dict:
    results: dict = {}
    tuned: dict = {}
    for acceleration in preset.accelerations:
        op = preset.operator(acceleration)
        sets = _eval_sets(preset, op)
        key = f"{acceleration}x"
        shown_truth, shown, captions = [], {}, {}
        for test, validation in (("ellipses", "validation ellipses"), ("Shepp–Logan", "validation heads")):
            classical, tuned[f"{key} {test}"] = _classical(preset, op, sets[validation], progress)
            x, y = sets[test]
            for name, method in {**classical, **models}.items():
                label = name if not _trained_elsewhere(method, op) else f"{name[:-1]}, {_trained_at(method)})"
                r = evaluate(method, y, x, op, progress=progress, desc=f"{label} on {test} at {key}")
                errors = nmse(r["reconstruction"], x)
                results.setdefault(key, {}).setdefault(label, {})[test] = {
                    "psnr": r["psnr"],
                    "psnr_std": r["psnr_std"],
                    "ssim": r["ssim"],
                    "nmse": float(errors.mean()),
                    "ms_per_image": r["ms_per_image"],
                    "psnr_per_image": r["psnr_per_image"],
                }
                shown.setdefault(label, []).append(r["reconstruction"][0])
                captions.setdefault(label, []).append(f"{r['psnr_per_image'][0]:.2f} dB / {r['ssim_per_image'][0]:.3f}")
            shown_truth.append(x[0])
        reconstruction_grid(folder / "figures" / f"reconstructions-{key}.png", shown_truth, shown,
                            [f"{t} ({key})" for t in ("ellipses", "Shepp–Logan")], captions)  # fmt: skip
    return {
        "preset": asdict(preset),
        "machine": machine_info(),
        "operators": {f"{a}x": operator_config(preset.operator(a)) for a in preset.accelerations},
        "tuned": tuned,
        "pretrained": {label: _provenance(m) for label, m in models.items()},
        "results": results,
    }


def _trained_elsewhere(method, op: MRI) -> bool:
    meta = getattr(method, "provenance", None)
    return bool(meta and meta.get("operator") and meta["operator"] != operator_config(op))


def _trained_at(model) -> str:
    """ "trained at R×" for a model trained on another MRI operator (its acceleration from its stored mask)."""
    return f"trained at {build_operator(model.provenance['operator']).acceleration:g}×"


def _provenance(model) -> dict:
    meta = getattr(model, "provenance", {})
    return {
        "model": meta.get("model"),
        "steps": meta.get("step"),
        "validation_psnr": meta.get("best_psnr"),
        "seconds": meta.get("seconds") or meta.get("wall_seconds"),
        "device": meta.get("device"),
        "operator": meta.get("operator"),
    }


def results_markdown(summary: dict) -> str:
    """The table of mean PSNR / SSIM / NMSE per acceleration and test set."""
    out = []
    for key, per_method in summary["results"].items():
        rows = []
        for method, per_set in per_method.items():
            row = {"method": method}
            for test, r in per_set.items():
                row[f"{test} PSNR"] = r["psnr"]
                row[f"{test} SSIM"] = r["ssim"]
                row[f"{test} NMSE"] = r["nmse"]
            row["ms / image"] = per_set["ellipses"]["ms_per_image"]
            rows.append(row)
        columns = list(rows[0])
        digits = {c: 3 for c in columns if c.endswith("SSIM")} | {c: 4 for c in columns if c.endswith("NMSE")}
        out.append(f"### {key}\n\n" + markdown_table(rows, columns, digits | {"ms / image": 1}))
    return "\n".join(out)


def report_markdown(summary: dict) -> str:
    preset = summary["preset"]
    machine = summary["machine"]
    tuned = "\n".join(
        f"- {k}: CG-SENSE α = {v['CG-SENSE alpha']:.3g}, TV λ = {v['TV lambda']:.3g}, "
        f"FISTA-wavelet λ = {v['FISTA-wavelet lambda']:.3g}"
        for k, v in summary["tuned"].items()
    )
    models = "\n".join(
        f"- {label}: `{p['model']['name']}` {p['model']['params']}, {p['steps']} steps (best validation checkpoint), "
        f"validation PSNR {p['validation_psnr']:.2f} dB"
        for label, p in summary["pretrained"].items()
    )
    figures = "\n".join(f"![{k}](figures/reconstructions-{k}.png)" for k in summary["results"])
    return (
        f"# MRI benchmark: preset {preset['name']}\n\n{preset['description']}.\n\n"
        f"Held-out test sets: {preset['n_test']} ellipse images and {preset['n_heads']} Shepp–Logan heads per "
        "acceleration; PSNR and SSIM on magnitudes with each reference's range, NMSE on magnitudes (fastMRI's "
        "metrics).\n\n"
        f"## Results\n\n{results_markdown(summary)}\n## Tuned parameters (on validation images)\n\n{tuned}\n\n"
        f"## Learned models (shipped, and checkpoints given with --checkpoint)\n\n{models or '- none'}\n\n"
        f"## Machine\n\n{machine}; {summary.get('minutes')} minutes in all.\n\n## Figures\n\n{figures}\n"
    )


def mri_dry_run(preset: MRIPreset) -> list[str]:
    """Build the preset's operators, test sets and shipped models without reconstructing; a line per part."""
    lines = []
    for acceleration in preset.accelerations:
        op = preset.operator(acceleration)
        lines.append(f"operator {acceleration}x: {op!r}, acceleration {op.acceleration:.2f}")
        lines += [f"  set: {name} ({len(x)} images)" for name, (x, _) in _eval_sets(preset, op).items()]
    lines += [f"model: {LABELS.get(name, name)}" for name in preset.pretrained if pretrained(name) is not None]
    return lines


def get_mri_preset(name: str) -> MRIPreset:
    if name not in MRI_PRESETS:
        raise ParameterError(f"unknown MRI preset {name!r}; choose one of {', '.join(MRI_PRESETS)}")
    return MRI_PRESETS[name]
