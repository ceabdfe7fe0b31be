"""``learnrecon attack`` and ``learnrecon reconstruct --uncertainty``: outputs and clear errors."""

import json

import h5py
import pytest

from learnrecon.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "d.h5"
    simulate = ["simulate", "--n", "3", "--size", "32", "--angles", "12", "--noise", "relative:0.05"]
    assert main([*simulate, "--out", str(path), "--quiet"]) == 0
    return path


def test_attack_on_a_classical_and_a_learned_method_writes_its_report(data, tmp_path, capsys):
    out = tmp_path / "tv"
    args = ["attack", "--method", "tv", "--param", "lam=0.5", "--param", "n_iter=40", "--data", str(data)]
    assert (
        main(
            [
                *args,
                "--index",
                "0:2",
                "--eps",
                "0.01,0.02",
                "--steps",
                "3",
                "--search-iterations",
                "10",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads((out / "attack.json").read_text())
    assert [row["eps"] for row in record["rows"]] == [0.01, 0.02]
    assert all(row["relative change (attack)"] > 2 * row["relative change (noise)"] for row in record["rows"])
    assert (out / "attack-tv.png").stat().st_size > 0
    assert "amplification" in (out / "attack.md").read_text()
    out = tmp_path / "lgd"
    assert (
        main(
            [
                "attack",
                "--pretrained",
                "lgd-ellipses",
                "--data",
                str(data),
                "--index",
                "0",
                "--eps",
                "0.01",
                "--steps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "attack-lgd-ellipses.png").exists()
    # a second run into the same folder is refused without --overwrite
    assert main(["attack", "--pretrained", "lgd-ellipses", "--data", str(data), "--out", str(out)]) == 1
    assert "already holds an attack" in capsys.readouterr().err


def test_penalised_attack_reports_the_penalty_and_the_norm_reached(data, tmp_path):
    out = tmp_path / "pen"
    args = ["attack", "--pretrained", "lgd-ellipses", "--data", str(data), "--index", "0", "--steps", "4"]
    assert main([*args, "--penalty", "0,1e6", "--out", str(out)]) == 0
    record = json.loads((out / "attack.json").read_text())
    assert record["form"] == "penalty" and [row["penalty"] for row in record["rows"]] == [0.0, 1e6]
    free, priced = record["rows"]
    assert free["eps"] > priced["eps"]  # a large λ keeps the perturbation small
    assert free["relative change (attack)"] > free["relative change (noise)"]
    assert "λ" in (out / "attack.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eps", "-0.01"], "ε must be a finite number ≥ 0"),
        (["--eps", "a,b"], "--eps must be numbers"),
        (["--steps", "0"], "positive integers"),
        (["--penalty", "-1"], "--penalty values"),
        (["--penalty", ""], "--penalty needs"),
    ],
)
def test_attack_bad_arguments(data, tmp_path, capsys, args, message):
    assert main(["attack", "--method", "fbp", "--data", str(data), "--out", str(tmp_path / "o"), *args]) == 1
    assert message in capsys.readouterr().err


def test_reconstruct_with_uncertainty_writes_mean_std_and_calibration(data, tmp_path, capsys):
    out = tmp_path / "u.h5"
    assert (
        main(
            [
                "reconstruct",
                "--method",
                "fbp",
                "--in",
                str(data),
                "--out",
                str(out),
                "--uncertainty",
                "resample",
                "--samples",
                "4",
            ]
        )
        == 0
    )
    with h5py.File(out) as f:
        assert f["mean"].shape == f["std"].shape == (3, 1, 32, 32)
        assert (f["std"][()] > 0).mean() > 0.9
        assert 0 <= json.loads(f.attrs["summary"])["coverage"] <= 1
    assert "coverage" in capsys.readouterr().out
    out = tmp_path / "l.h5"
    assert (
        main(
            [
                "reconstruct",
                "--method",
                "tv",
                "--param",
                "lam=0.5",
                "--in",
                str(data),
                "--out",
                str(out),
                "--index",
                "0",
                "--uncertainty",
                "langevin",
                "--langevin-steps",
                "200",
            ]
        )
        == 0
    )
    with h5py.File(out) as f:
        assert f["std"].shape == (1, 1, 32, 32) and f["std"][()].max() > 0


def test_langevin_with_the_learned_denoiser_prior(data, tmp_path, capsys):
    out = tmp_path / "pnp-ula.h5"
    args = ["reconstruct", "--method", "pnp-admm", "--param", "n_iter=5", "--in", str(data), "--index", "0:2"]
    assert main([*args, "--out", str(out), "--uncertainty", "langevin", "--langevin-steps", "120"]) == 0
    with h5py.File(out) as f:
        assert f["mean"].shape == f["std"].shape == (2, 1, 32, 32) and f["std"][()].min() > 0
        assert 0 < json.loads(f.attrs["summary"])["coverage"] < 1
    assert "coverage" in capsys.readouterr().out
    bad = [*args, "--out", str(tmp_path / "bad.h5"), "--uncertainty", "langevin", "--prior-sigma", "0.5"]
    assert main(bad) == 1 and "outside the denoiser's trained" in capsys.readouterr().err
    assert not (tmp_path / "bad.h5").exists()
    tv = ["reconstruct", "--method", "tv", "--param", "lam=1", "--in", str(data), "--out", str(tmp_path / "tv.h5")]
    assert main([*tv, "--uncertainty", "langevin", "--prior-sigma", "0.02"]) == 1
    assert "plug-and-play" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pretrained", "lpd-ellipses", "--uncertainty", "dropout"], "has no dropout layers"),
        (["--pretrained", "lpd-ellipses", "--uncertainty", "ensemble"], "needs further members"),
        (["--method", "fbp", "--uncertainty", "dropout"], "needs a learned model"),
        (["--method", "fbp", "--uncertainty", "langevin"], "give its weight"),
    ],
)
def test_reconstruct_uncertainty_bad_requests(data, tmp_path, capsys, args, message):
    assert main(["reconstruct", "--in", str(data), "--out", str(tmp_path / "o.h5"), *args]) == 1
    assert message in capsys.readouterr().err


def test_ensemble_of_different_shipped_models_is_refused(data, tmp_path, capsys):
    from learnrecon.models.hub import PRETRAINED_DIR

    args = ["reconstruct", "--pretrained", "lpd-ellipses", "--member", str(PRETRAINED_DIR / "lgd-ellipses")]
    assert main([*args, "--in", str(data), "--out", str(tmp_path / "o.h5"), "--uncertainty", "ensemble"]) == 1
    assert "different models" in capsys.readouterr().err
