"""The paradigms preset: the learned regularisers, with their shipped weights and tuned settings, beside the other
paradigms in one report."""

from dataclasses import replace

import torch

from learnrecon import phantoms
from learnrecon.benchmark import get_preset, run_benchmark
from learnrecon.benchmark.methods import REGULARISER_LABELS
from learnrecon.benchmark.runner import dry_run
from learnrecon.data.simulate import measure
from learnrecon.evaluation import score
from learnrecon.models import pretrained
from learnrecon.operators.fbp import fbp
from learnrecon.solvers import reconstruct_batch


def _tiny():
    return replace(
        get_preset("paradigms"),
        name="tiny-paradigms",
        image_size=64,
        n_angles=20,
        n_detectors=91,
        n_validation=2,
        n_test=2,
        tv_lambdas=(0.3, 3.0),
        tv_iterations=30,
        pretrained=(),
    )


def test_paradigms_report_has_every_learned_regulariser_with_its_settings(tmp_path):
    summary = run_benchmark(_tiny(), tmp_path / "out", progress=False)
    labels = [
        next(label for label in summary["results"] if label.startswith(REGULARISER_LABELS[name][:-1]))
        for name in _tiny().learned_regularisers
    ]  # labelled "..., trained for 128×128, 30 angles, 183 detectors)" on this smaller geometry
    assert all("trained for 128×128" in label for label in labels)
    for label in labels:
        for test in ("Shepp–Logan", "ellipses"):
            assert torch.isfinite(torch.tensor(summary["results"][label][test]["psnr"]))
        assert summary["pretrained"][label]["settings"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "The learned regularisers run with the parameters chosen on validation ellipses" in report
    assert "pnp-admm" in report and "lam" in report


def test_paradigms_dry_run_builds_every_shipped_model_at_full_size():
    lines = dry_run(get_preset("paradigms"))
    models = [line for line in lines if line.startswith("model: ")]
    assert len(models) == 4 + 6
    assert any("AUTOMAP" in line for line in models) and any("ACR" in line for line in models)


def test_shipped_regularisers_beat_fbp_on_held_out_ellipses():
    op = get_preset("quick").operator()
    x = phantoms.random_ellipses(2, 128, seed=123)
    y = measure(op, x, "relative:0.05", seed=123)
    floor = score(fbp(y, op, "hann"), x).psnr.mean()
    # on the 100 test ellipses of the paradigms preset they gain 1.6 (AR), 0.8 (ACR), 7.3 (ADMM), 3.5 dB (RED)
    for method, margin in (("ar", 0.5), ("acr", 0.4), ("pnp-admm", 3.0), ("red", 1.5)):
        x_hat = reconstruct_batch(method, y, op, {})
        assert score(x_hat, x).psnr.mean() > floor + margin, method
    assert pretrained("pnp-ellipses").provenance["tuning"]["chosen_scheme"] in ("pgd", "admm", "hqs", "red")
