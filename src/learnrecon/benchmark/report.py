"""A benchmark's outputs, written from its results: results.json, the figures, and report.md through the
templates of ``benchmark/templates/`` (the prose lives there, not in code), then report.html."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from string import Template

from learnrecon.benchmark.presets import Preset
from learnrecon.benchmark.tasks import EvalSet
from learnrecon.report import (
    markdown_table,
    metric_bars,
    reconstruction_grid,
    training_curve,
    write_html_report,
    write_json,
)

__all__ = ["HISTORY_COLUMNS", "report_markdown", "results_table", "write_outputs"]

#: The columns of the report's tables of trained checkpoints (keys of :func:`~.methods.training_record`).
HISTORY_COLUMNS = ["steps", "rounds", "training_hours", "last_round_steps", "last_round_device", "validation_psnr"]


def _template(name: str) -> Template:
    return Template((resources.files("learnrecon.benchmark") / "templates" / f"{name}.md").read_text(encoding="utf-8"))


def results_table(summary: dict) -> str:
    """The Markdown table of mean PSNR/SSIM per test set and time per image."""
    rows = []
    for method, per_set in summary["results"].items():
        row = {"method": method}
        for test, r in per_set.items():
            row[f"{test} PSNR"] = r["psnr"]
            row[f"{test} SSIM"] = r["ssim"]
        largest = max(summary["results"][method], key=lambda t: len(per_set[t]["psnr_per_image"]))
        row["ms / image"] = per_set[largest]["ms_per_image"]
        rows.append(row)
    columns = list(rows[0])
    return markdown_table(rows, columns, digits={c: 3 for c in columns if c.endswith("SSIM")} | {"ms / image": 1})


def write_outputs(folder: Path, preset: Preset, tests: list[EvalSet], results: dict, summary: dict) -> None:
    """results.json, the figures (two samples of each test set, PSNR and SSIM bars, the training curve),
    report.md and report.html in ``folder``."""
    figures = folder / "figures"
    figures.mkdir(parents=True)
    write_json(folder / "results.json", summary)
    shown = [(t, i) for t in tests for i in range(min(2, t.x.shape[0]))]
    recon = {m: [results[m][t.name]["reconstruction"][i] for t, i in shown] for m in results}
    captions = {
        m: [
            f"{results[m][t.name]['psnr_per_image'][i]:.2f} dB / {results[m][t.name]['ssim_per_image'][i]:.3f}"
            for t, i in shown
        ]
        for m in results
    }
    reconstruction_grid(
        figures / "reconstructions.png",
        [t.x[i] for t, i in shown],
        recon,
        [f"{t.name} {i}" if t.x.shape[0] > 1 else t.name for t, i in shown],
        captions,
    )
    for metric in ("psnr", "ssim"):
        values = {t.name: {m: results[m][t.name][metric] for m in results} for t in tests}
        metric_bars(figures / f"{metric}.png", values, metric.upper())
    if (folder / "training" / "metrics.csv").exists():
        training_curve(
            figures / "training.png", folder / "training", f"{preset.train_model.upper()} trained from scratch"
        )
    (folder / "report.md").write_text(report_markdown(preset, summary))
    write_html_report(folder)


def _learned_markdown(preset: Preset, summary: dict) -> str:
    """The provenance of the shipped models, the checkpoints given, and the runs trained during the benchmark."""
    text = ""
    if summary["pretrained"]:
        rows = [{"model": label, **info} for label, info in summary["pretrained"].items()]
        text += _template("shipped").substitute(table=markdown_table(rows, ["model", "name", *HISTORY_COLUMNS])) + "\n"
    settings = [
        {
            "method": label,
            "runs": info["method"],
            "settings": ", ".join(f"{k} {v}" for k, v in info["settings"].items()),
        }
        for label, info in summary["pretrained"].items()
        if "settings" in info
    ]
    if settings:
        text += (
            "The learned regularisers run with the parameters chosen on validation ellipses when they were shipped "
            "(`learnrecon reconstruct --method NAME`; the grids are in each checkpoint's JSON, `tuning`):\n\n"
            + markdown_table(settings, ["method", "runs", "settings"])
            + "\n"
        )
    if summary["checkpoints"]:
        rows = [{"method": label, **info} for label, info in summary["checkpoints"].items()]
        table = markdown_table(rows, ["method", "model", *HISTORY_COLUMNS])
        text += _template("checkpoints").substitute(table=table) + "\n"
    if summary["reproduced"]:
        rows = [{"model": label, **info} for label, info in summary["reproduced"].items()]
        table = markdown_table(rows, ["model", "config", "run", "steps", "best_step"])
        text += _template("reproduced").substitute(runs_dir=preset.runs_dir, table=table) + "\n"
    trained = summary["trained_here"]
    if trained:
        text += _template("trained_here").substitute(
            model=preset.train_model.upper(), steps=trained["steps"], minutes=trained["minutes"]
        )
    return text


def _fbp_tuning(fbp_tuned: dict) -> str:
    """A sentence naming the chosen FBP cut-off and the others tried (empty when there was one)."""
    if len(fbp_tuned["grid"]) < 2:
        return ""
    tried = ", ".join(f"{row['frequency_scaling']:g}: {row['mean PSNR']:.2f} dB" for row in fbp_tuned["grid"])
    return f" FBP cut-off {fbp_tuned['frequency_scaling']:g} of Nyquist, chosen the same way ({tried})."


def _nonneg_sets(summary: dict) -> str:
    """Which test sets' TV had non-negativity imposed, in words."""
    imposed = [test for test, t in summary["tuned"].items() if t["TV"]["nonneg"]]
    return ", ".join(imposed) if imposed else "none here"


def _tuning_markdown(summary: dict) -> str:
    """Per test set: the TV variant and λ chosen, FBP's cut-off, and every λ tried."""
    return "".join(
        _template("tuned").substitute(
            test=test,
            variant="isotropic" if t["TV"]["isotropic"] else "anisotropic",
            lam=f"{t['TV']['lam']:.4g}",
            with_nonneg="with" if t["TV"]["nonneg"] else "without",
            validation=t["TV"]["validation"],
            fbp_tuning=_fbp_tuning(t["FBP"]),
            grid=markdown_table(
                [{"variant": v, **row} for v, grid in t["TV"]["grids"].items() for row in grid],
                ["variant", "lambda", "mean PSNR"],
                digits={"lambda": 4},
            ),
        )
        for test, t in summary["tuned"].items()
    )


def report_markdown(preset: Preset, summary: dict) -> str:
    """report.md of a benchmark's summary, through the template ``templates/report.md``."""
    machine = summary["machine"]
    return _template("report").substitute(
        name=preset.name,
        description=preset.description,
        results_table=results_table(summary),
        tv_iterations=preset.tv_iterations,
        nonneg_sets=_nonneg_sets(summary),
        tuning=_tuning_markdown(summary),
        learned=_learned_markdown(preset, summary),
        **{key: machine[key] for key in ("platform", "cpu_count", "torch", "torch_threads", "learnrecon", "device")},
    )
