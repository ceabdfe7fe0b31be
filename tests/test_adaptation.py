"""Adaptation of a trained model to a new operator without ground truth (``learnrecon adapt``)."""

import json

import pytest
import torch

from learnrecon import phantoms
from learnrecon.cli import main
from learnrecon.data.simulate import measure, simulate
from learnrecon.errors import ParameterError, ShapeError
from learnrecon.io.checkpoint import save_checkpoint
from learnrecon.models import build_model, load_model
from learnrecon.operators import Blur, ParallelBeam2D, gaussian_kernel
from learnrecon.operators.calibrated import ShiftedDetector
from learnrecon.training.adaptation import adapt, adapt_checkpoint

OLD, NEW = ParallelBeam2D(32, 10), ParallelBeam2D(32, 20)
PARAMS = {"n_iter": 2, "width": 8, "depth": 2, "init": "fbp"}


def _model():
    torch.manual_seed(0)
    return build_model("lpd", PARAMS)


def _y(op, n=4):
    x = phantoms.draw_ellipses("ellipses", n=n, size=32, seed=0)
    return measure(op, x, "relative:0.02", seed=0)


def test_adapt_lowers_the_data_misfit_and_mu_holds_the_weights():
    y = _y(NEW)
    result = adapt(_model(), NEW, y, mu=0.0, steps=15, lr=1e-3, batch_size=4)
    assert result.history[-1]["data"] < 0.9 * result.history[0]["data"]
    tight = adapt(_model(), NEW, y, mu=1e2, steps=15, lr=1e-3, batch_size=4)
    assert 0 < tight.history[-1]["penalty"] < 0.5 * result.history[-1]["penalty"]
    free = adapt(_model(), NEW, y, mu=0.0, steps=15, lr=1e-3, batch_size=4)
    assert free.history == result.history  # deterministic given the seed


def test_adapt_optimises_operator_parameters_too():
    shift = torch.tensor(0.0, requires_grad=True)
    op = ShiftedDetector(NEW, shift)
    result = adapt(_model(), op, _y(ShiftedDetector(NEW, 1.0)), steps=5, lr=1e-4, parameters={"shift": shift})
    assert result.parameters["shift"] != 0.0 and "shift" in result.history[0]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mu": -1.0}, ParameterError, "mu"),
        ({"steps": 0}, ParameterError, "steps"),
        ({"lr": 0.0}, ParameterError, "lr"),
    ],
)
def test_adapt_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        adapt(_model(), NEW, _y(NEW), **kwargs)


def test_adapt_refuses_data_of_another_operator():
    with pytest.raises(ShapeError, match="adaptation data"):
        adapt(_model(), NEW, _y(OLD), steps=1)


def _checkpoint(tmp_path):
    model = _model()
    return save_checkpoint(
        tmp_path / "ckpt" / "model", model, {"model": model.spec, "operator": OLD.config(), "best_psnr": 20.0}
    )


def _data(tmp_path, op, name="new.h5", size=32):
    x = phantoms.draw_ellipses("ellipses", n=4, size=size, seed=1)
    return simulate(tmp_path / name, op, x, noise="relative:0.02", progress=False)


def test_adapt_checkpoint_writes_the_provenance_of_both(tmp_path):
    ckpt, data = _checkpoint(tmp_path), _data(tmp_path, NEW)
    path = adapt_checkpoint(ckpt, data, tmp_path / "out", steps=2, lr=1e-4, batch_size=2)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["operator"]["angles"] == NEW.config()["angles"]
    assert meta["adapted_from"]["operator"]["angles"] == OLD.config()["angles"]
    assert meta["adapted_from"]["sha256"] and meta["adaptation"]["steps"] == 2 and meta["adaptation"]["mu"] == 1e-3
    model = load_model(path)
    assert model(_y(NEW)[:1], NEW).shape == (1, 1, 32, 32)
    # the command line does the same
    code = main(
        ["adapt", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "cli"), "--steps", "1"]
    )
    assert code == 0 and (tmp_path / "cli" / "adapted.json").exists()


@pytest.mark.parametrize("case", ["size", "modality", "mu"])
def test_adapt_checkpoint_bad_input_writes_nothing(tmp_path, case, capsys):
    ckpt = _checkpoint(tmp_path)
    if case == "size":
        data, error, match = _data(tmp_path, ParallelBeam2D(16, 20), size=16), ShapeError, "image"
    elif case == "modality":
        data, error, match = _data(tmp_path, Blur(gaussian_kernel(1.0), 32)), ParameterError, "deblurring"
    else:
        data, error, match = _data(tmp_path, NEW), ParameterError, "mu"
    options = {"mu": -1.0} if case == "mu" else {}
    with pytest.raises(error, match=match):
        adapt_checkpoint(ckpt, data, tmp_path / "out", steps=1, **options)
    assert not (tmp_path / "out").exists()
    code = main(
        ["adapt", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "out")]
        + (["--mu", "-1"] if case == "mu" else [])
    )
    assert code == 1 and "error" in capsys.readouterr().err and not (tmp_path / "out").exists()
