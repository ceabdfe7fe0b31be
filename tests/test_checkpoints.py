"""Checkpoint files: integrity, refusals, half precision, shipped weights and their budget."""

import csv
import json
import os

import pytest
import torch

from learnrecon import phantoms
from learnrecon.config import upgrade_data_section
from learnrecon.errors import DataFileError, ParameterError
from learnrecon.io.checkpoint import checkpoint_paths, load_checkpoint
from learnrecon.models import load_model
from learnrecon.training import Trainer
from training_support import (
    small_config,
)


def test_weights_of_another_shape_or_another_save_are_refused(tmp_path):
    from learnrecon.io import save_checkpoint
    from learnrecon.models import build_model

    params = {"n_iter": 1, "n_primal": 2, "n_dual": 2, "width": 4}
    meta = {"model": {"name": "lpd", "params": params}}
    save_checkpoint(tmp_path / "a", build_model("lpd", params), meta, rng=False)
    other = build_model("lpd", params)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    save_checkpoint(tmp_path / "b", other, meta, rng=False)
    wider = json.loads((tmp_path / "b.json").read_text())
    wider["model"]["params"]["width"] = 6  # the hash covers the weights, not the JSON
    (tmp_path / "b.json").write_text(json.dumps(wider))
    with pytest.raises(DataFileError, match="weight shapes do not match"):
        load_model(tmp_path / "b")
    (tmp_path / "a.safetensors").write_bytes((tmp_path / "b.safetensors").read_bytes())
    with pytest.raises(DataFileError, match=r"do not match a.json \(truncated, corrupt, or from another save\)"):
        load_model(tmp_path / "a")


def test_weights_only_checkpoints_are_a_start_not_a_run_to_resume(tmp_path):
    from learnrecon.io.checkpoint import save_checkpoint

    trainer = Trainer.from_config(small_config(), tmp_path / "run", progress=False)
    trainer.train(until=1)
    save_checkpoint(tmp_path / "run" / "last", trainer.model, trainer.metadata(), optimizer=None, rng=False)
    with pytest.raises(DataFileError, match="holds weights only .*training.init_from"):
        Trainer.from_config(small_config(), tmp_path / "run", resume=True, progress=False)


def test_corrupt_and_mismatched_checkpoints_are_refused(tmp_path):
    Trainer.from_config(small_config(steps=1), tmp_path, progress=False).train()
    weights, info = checkpoint_paths(tmp_path / "last")
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFileError, match="do not match"):
        load_model(weights)
    weights.write_bytes(good)
    meta = json.loads(info.read_text())
    info.write_text(json.dumps({**meta, "model": {"name": "lgd", "params": {}}}))
    with pytest.raises(DataFileError, match="do not match model 'lgd'|do not fit"):
        load_model(weights)
    info.write_text("{not json")
    with pytest.raises(DataFileError, match="corrupt"):
        load_model(weights)
    info.unlink()
    with pytest.raises(DataFileError, match="does not exist"):
        load_model(weights)


def test_an_interrupt_while_a_checkpoint_replaces_the_last_waits_for_the_pair(tmp_path, monkeypatch):
    import signal

    from learnrecon.io import checkpoint as checkpoint_module

    trainer = Trainer.from_config(small_config(steps=2), tmp_path, progress=False)
    trainer.train(until=1)
    real_replace, calls = os.replace, []

    def interrupted_replace(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C between the weights and their JSON
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", interrupted_replace)
    trainer.step = 2
    # Python's own SIGINT handler, whatever the runner left (a background job starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.save("last")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(calls) == 2
    _, meta = load_checkpoint(tmp_path / "last")  # the weights match their JSON
    assert meta["step"] == 2


def test_a_pickle_is_not_a_checkpoint(tmp_path):
    torch.save({"x": torch.zeros(2)}, tmp_path / "model.safetensors")
    (tmp_path / "model.json").write_text(json.dumps({"format": "learnrecon-checkpoint", "sha256": "0"}))
    with pytest.raises(DataFileError):
        load_model(tmp_path / "model.safetensors")


def test_half_precision_weights_take_half_the_space_and_load_as_float32(tmp_path):
    from learnrecon.io.checkpoint import save_checkpoint
    from learnrecon.operators.registry import build_operator

    Trainer.from_config(small_config(steps=1), tmp_path, progress=False).train()
    model = load_model(tmp_path / "last")
    meta = {k: model.provenance[k] for k in ("model", "operator")}
    full = save_checkpoint(tmp_path / "full", model, meta, rng=False)
    half = save_checkpoint(tmp_path / "half", model, meta, rng=False, weights_dtype=torch.float16)
    assert load_checkpoint(half)[0]["model/steps.0.dual.0.weight"].dtype == torch.float16

    def payload(path):  # bytes of tensor data; the JSON header of so small a model is a third of the file
        return sum(t.numel() * t.element_size() for t in load_checkpoint(path)[0].values())

    assert payload(half) == payload(full) // 2
    rounded = load_model(half)
    assert rounded.provenance["weights_dtype"] == "float16"
    for (name, value), (_, loaded) in zip(model.state_dict().items(), rounded.state_dict().items(), strict=True):
        assert loaded.dtype == value.dtype, name
        assert torch.allclose(loaded, value, rtol=1e-3, atol=1e-4), name
    op = build_operator(meta["operator"])
    y = op(phantoms.random_ellipses(1, 24, seed=5))
    with torch.no_grad():
        assert torch.allclose(rounded(y, op), model(y, op), atol=1e-2)


def test_shipped_models_load_with_provenance_and_beat_fbp():
    from learnrecon import phantoms
    from learnrecon.data.simulate import measure
    from learnrecon.metrics import psnr
    from learnrecon.models import pretrained, pretrained_names
    from learnrecon.operators import ParallelBeam2D
    from learnrecon.solvers import fbp

    # the MRI ones: tests/test_mri_models.py; the fully learned AUTOMAP is below FBP (docs/automap.md), its own test
    # is in tests/test_automap.py; the learned regularisers (ar, acr, pnp) in tests/test_paradigms.py
    elsewhere = ("automap-ellipses", "ar-ellipses", "acr-ellipses", "pnp-ellipses")
    names = [n for n in pretrained_names() if not n.endswith("-mri") and n not in elsewhere]
    assert names == [
        "deq-grad-ellipses",
        "fbpconvnet-dival",
        "fbpconvnet-ellipses",
        "lgd-ellipses",
        "lpd-dival",
        "lpd-ellipses",
    ]
    op = ParallelBeam2D(128, 30)
    for name in names:
        model = pretrained(name)
        for key in ("config", "step", "seconds", "device", "best_psnr", "commit"):
            assert key in model.provenance, (name, key)
        data = upgrade_data_section(model.provenance["config"]["data"], warn=False)  # its ellipses and noise
        phantom = data["phantom"]
        x = phantoms.draw_ellipses(phantom["type"], n=3, size=128, seed=12345, scaling=phantom.get("scaling", "none"))
        y = measure(op, x, data["noise"], seed=12345)
        baseline = float(psnr(fbp(y, op, filter="hann"), x).mean())
        # the DE-Grad shipped after 14 min of CPU training (50 steps) is 0.8 dB above FBP here, far from its
        # issue's target (within 1 dB of LGD); docs/deq.md reports the gap
        margin = 0.5 if name == "deq-grad-ellipses" else 3
        with torch.no_grad():
            assert float(psnr(model(y, op), x).mean()) > baseline + margin, name
    with pytest.raises(ParameterError, match="no pretrained model 'lpd-lodopab'"):
        pretrained("lpd-lodopab")


def test_shipped_weights_fit_the_package_budget():
    """Each shipped weight file stays under 5 MB (the project's limit for a committed file), and all of them
    together, in pretrained/ and its subfolders, under 15 MB, so that the package installs in seconds."""
    from learnrecon.models.hub import PRETRAINED_DIR

    sizes = {str(p.relative_to(PRETRAINED_DIR)): p.stat().st_size for p in PRETRAINED_DIR.rglob("*.safetensors")}
    assert sizes and all(size < 5_000_000 for size in sizes.values()), sizes
    assert sum(sizes.values()) < 15_000_000, sizes


def test_half_precision_save_keeps_optimiser_and_integer_tensors_and_restores_the_saved_groups(tmp_path):
    from learnrecon.io import save_checkpoint
    from learnrecon.io.checkpoint import restore_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    model(torch.randn(4, 3))  # num_batches_tracked = 1
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    meta = {"model": {"name": "x"}}
    save_checkpoint(tmp_path / "c", model, meta, optimizer=optimizer, rng=False, weights_dtype=torch.float16)
    tensors, meta = load_checkpoint(tmp_path / "c")
    assert tensors["model/0.weight"].dtype == torch.float16
    assert tensors["model/1.num_batches_tracked"].dtype == torch.int64
    exp_avg = [v for k, v in tensors.items() if k.startswith("optimizer/") and k.endswith("exp_avg")]
    assert exp_avg and all(v.dtype == torch.float32 for v in exp_avg)
    fresh = torch.optim.Adam(model.parameters(), lr=0.5, betas=(0.5, 0.6))
    restore_optimizer(fresh, tensors, meta["optimizer"])
    assert fresh.param_groups[0]["lr"] == 0.1 and tuple(fresh.param_groups[0]["betas"]) == (0.9, 0.999)


def test_checkpoints_record_the_best_psnr_including_this_steps_validation(tmp_path):
    Trainer.from_config(small_config(steps=3), tmp_path, progress=False).train()
    rows = list(csv.DictReader((tmp_path / "validation.csv").open()))
    psnr = float(rows[-1]["psnr"])  # the only validation, at step 3, when last is saved too
    _, best = load_checkpoint(tmp_path / "best")
    _, last = load_checkpoint(tmp_path / "last")
    assert best["best_psnr"] == pytest.approx(psnr) and best["validation"]["psnr"] == pytest.approx(psnr)
    assert last["best_psnr"] == pytest.approx(psnr)
