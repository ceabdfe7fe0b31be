"""Typed configs: YAML round trip, safe loading, bad keys named, legacy layouts, the shipped configs."""

import json
from pathlib import Path

import pytest
import yaml

from learnrecon.config import from_dict, load_config, save_config
from learnrecon.errors import DataFileError, ParameterError
from learnrecon.training import Trainer
from training_support import SMALL, small_config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"training": {"lr": "fast"}}, "'training.lr' must be float"),
        ({"training": {"learning_rate": 1e-3}}, "unknown config key training.learning_rate"),
        ({"optimiser": {}}, "unknown config section 'optimiser'"),
        ({"training": {"betas": [0.9]}}, "training.betas"),
        ({"data": {"operator": {"type": "ParallelBeam2D", "image_size": 12.5}}}, "image_size must be a positive int"),
        ({"data": {"operator": {"type": "Radon"}}}, "unknown operator type 'Radon'.*known types: .*Blur, FanBeam2D"),
        ({"data": {"operator": {"type": "ParallelBeam2D", "n_angle": 3}}}, "ParallelBeam2D has no argument 'n_angle'"),
        ({"data": {"operator": "ParallelBeam2D"}}, "'data.operator' must be a mapping"),
        ({"training": {"steps": 0}}, "training.steps must be >= 1"),
        ({"training": {"loss": "huber"}}, "unknown loss 'huber'"),
        ({"training": {"num_workers": -1}}, "training.threads and training.num_workers must be >= 0"),
        (
            {"data": {"phantom": {"type": "ellipses", "scaling": "unit"}}},
            "data.phantom.scaling must be one of minmax, none",
        ),
        ({"data": {"phantom": {"type": "shepp-logan"}}}, "data.phantom.type must be one of ellipses, dival-ellipses"),
        (
            {"data": {"phantom": {"type": "dival-ellipses", "scaling": "none"}}},
            "dival-ellipses takes supersample, not 'scaling'",
        ),
        ({"data": {"simulation": {"upsampling": "bilinear"}}}, "data.simulation takes size \\(required\\)"),
        ({"model": {"name": "lpd", "params": {"depth": "3"}}}, "'depth' must be int"),
        ({"training": {"device": "gpu0"}}, "training.device 'gpu0' is not a device"),
        ({"data": {"n_validation": 0}}, "data.n_validation must be >= 1"),
        (
            {"model": {"name": "fbpconvnet", "params": {}}, "training": {"checkpoint_activations": True}},
            "checkpoint_activations applies to unrolled models; fbpconvnet is not one",
        ),
    ],
)
def test_bad_configs_name_the_key(tmp_path, change, message):
    values = json.loads(json.dumps(SMALL))
    for section, entries in change.items():
        values.setdefault(section, {}).update(entries)
    with pytest.raises(ParameterError, match=message):
        Trainer.from_config(from_dict(values), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing written


def test_config_files_that_are_empty_not_text_or_write_1e_3_are_read_as_meant(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(DataFileError, match="is empty"):
        load_config(tmp_path / "empty.yaml")
    (tmp_path / "latin1.yaml").write_bytes("model: {name: lpd}  # réglé\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not UTF-8"):
        load_config(tmp_path / "latin1.yaml")
    (tmp_path / "lr.yaml").write_text("training: {lr: 1e-3, steps: 10}\n")
    assert yaml.safe_load((tmp_path / "lr.yaml").read_text())["training"]["lr"] == "1e-3"  # YAML 1.1
    assert load_config(tmp_path / "lr.yaml").training.lr == 1e-3


def test_a_file_as_the_output_folder_is_refused(tmp_path):
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(DataFileError, match="is a file"):
        Trainer.from_config(small_config(), tmp_path / "afile", progress=False)
    assert (tmp_path / "afile").read_text() == "mine"


def test_config_yaml_round_trip_and_safe_loading(tmp_path):
    config = small_config()
    assert load_config(save_config(config, tmp_path / "c.yaml")) == config
    (tmp_path / "evil.yaml").write_text("model: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(DataFileError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")


def test_shipped_configs_load():
    """Every config loads at 128² (the MRI benchmark's, *_mri.yaml, at 64², LoDoPaB-CT's at its own size); the
    paper-length ones keep the published schedule (batch 5, 100k steps, lr 1e-3), where the rounds that continue
    shipped weights may change the batch."""
    root = Path(__file__).resolve().parents[1]
    paths = sorted([*root.joinpath("configs").glob("*.yaml"), *root.joinpath("src/learnrecon/configs").glob("*.yaml")])
    configs = {path: load_config(path) for path in paths}
    for path, config in configs.items():
        if config.data.lodopab is not None:  # LoDoPaB-CT's own files and geometry (tests/test_lodopab.py)
            continue
        assert config.data.operator_section()["image_size"] == (64 if path.stem.endswith("_mri") else 128), path
    paper = [p for p in paths if p.stem.endswith("_paper") or p.stem == "lpd_dival"]
    assert len(paper) == 4
    for path in paper:
        t = configs[path].training
        assert (t.batch_size, t.steps, t.lr, t.init_from) == (5, 100_000, 1e-3, None), path


def test_a_config_with_a_key_twice_is_refused(tmp_path):
    (tmp_path / "twice.yaml").write_text("model: {name: lpd}\ntraining:\n  lr: 1.0e-3\n  steps: 10\n  lr: 5.0e-4\n")
    with pytest.raises(DataFileError, match="key 'lr' appears twice in one section"):
        load_config(tmp_path / "twice.yaml")


def test_the_flat_data_keys_of_earlier_versions_are_read_with_a_warning_that_says_what_to_write():
    legacy = {"geometry": "parallel", "image_size": 24, "n_angles": 6, "n_detectors": 35, "phantom": "ellipses",
              "ellipse_scaling": "none", "simulation_size": 48, "simulation_upsampling": "bilinear"}  # fmt: skip
    with pytest.warns(FutureWarning, match=r"deprecated; write the data section as data:\n  operator: \{type: Par"):
        old = from_dict({"data": legacy}).data
    new = from_dict(
        {
            "data": {
                "operator": {"type": "ParallelBeam2D", "image_size": 24, "n_angles": 6, "n_detectors": 35},
                "phantom": {"type": "ellipses", "scaling": "none", "supersample": 1},
                "simulation": {"size": 48, "upsampling": "bilinear"},
            }
        }
    ).data
    assert old == new
    with pytest.warns(FutureWarning):  # those versions' default scaling was min-max
        assert from_dict({"data": {"image_size": 24}}).data.phantom["scaling"] == "minmax"
    with pytest.warns(FutureWarning):
        fan = from_dict({"data": {"geometry": "fan", "image_size": 24, "n_angles": 6}}).data.operator
    assert fan == {"type": "FanBeam2D", "image_size": 24, "n_angles": 6, "n_detectors": 183,  # those versions' default
                   "source_distance": 48.0, "detector_distance": 24.0}  # fmt: skip
    with pytest.raises(ParameterError, match="either an operator section or the old geometry keys"):
        from_dict({"data": {"image_size": 24, "operator": {"type": "Identity", "shape": [24, 24]}}})


def test_config_defaults_are_the_lpd_paper_setup_and_bools_are_not_ints():
    from learnrecon.config import DataConfig, TrainingConfig

    data, training = DataConfig(), TrainingConfig()
    assert data.operator_section() == {"type": "ParallelBeam2D", "image_size": 128, "n_angles": 30, "n_detectors": 183}
    assert data.phantom == {"type": "ellipses", "scaling": "none", "supersample": 1}  # the shipped models'
    assert data.noise == "relative:0.05"
    assert (training.batch_size, training.lr, tuple(training.betas)) == (5, 1e-3, (0.9, 0.99))
    with pytest.raises(ParameterError, match="training.steps"):
        from_dict({"training": {"steps": True}})


def test_the_configs_shipped_in_the_package_load_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout, as from an installed package
    assert load_config("lpd_paper") == load_config("lpd_paper.yaml")
    assert load_config("lpd_paper").model.name == "lpd"
    with pytest.raises(DataFileError, match="does not exist \\(the package ships the configs .*lpd_paper.yaml"):
        load_config("lpd_nowhere")
    with pytest.raises(DataFileError, match="config file elsewhere/lpd_paper.yaml does not exist"):
        load_config("elsewhere/lpd_paper.yaml")  # a path is a path: never read as a shipped name
