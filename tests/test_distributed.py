"""Distributed data parallel (gloo on the CPU) and batch sharding."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from learnrecon.config import from_dict
from learnrecon.data.sources import make_training_data
from learnrecon.training import Trainer
from learnrecon.training.trainer import step_positions
from training_support import (
    SMALL,
    model_weights,
    small_config,
)


def _torchrun(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    command = [*launcher, "-m", "learnrecon.cli", "train", "--config", str(config), "--out", str(out), "--quiet"]
    return subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=300)


def test_each_rank_takes_a_consecutive_block_of_the_batch():
    """Ranks split a step's positions into consecutive blocks (what the simulated stream draws) covering the
    batch once; the blocks hold the samples one process would draw for the whole batch."""
    blocks = [step_positions(2, 6, rank, 3) for rank in range(3)]
    assert [b.tolist() for b in blocks] == [[12, 13], [14, 15], [16, 17]]
    stream, _ = make_training_data(small_config().data)
    whole = stream.batch(step_positions(2, 6))
    torch.testing.assert_close(torch.cat([stream.batch(b).y for b in blocks]), whole.y)


def test_batch_norm_is_synchronised_across_processes_on_a_gpu_and_named_elsewhere():
    from learnrecon.models import build_model
    from learnrecon.training import synchronise_batch_norm

    model = build_model("fbpconvnet", {"depth": 2, "width": 4})
    with pytest.warns(UserWarning, match="each process normalises with its part of the batch"):
        assert synchronise_batch_norm(model, torch.device("cpu")) is model
    synced = synchronise_batch_norm(model, torch.device("cuda"))  # module surgery only: no GPU needed
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert synced.state_dict().keys() == build_model("fbpconvnet", {"depth": 2, "width": 4}).state_dict().keys()
    lpd = build_model("lpd", SMALL["model"]["params"])
    assert synchronise_batch_norm(lpd, torch.device("cpu")) is lpd  # no batch norm, no warning


def test_distributed_data_parallel_with_gloo_matches_one_process(tmp_path):
    """Two processes with half the batch each (two simulated samples) take the same steps as one process with
    the whole batch; a time limit stops both at the same step (one stopping alone would hang the other)."""
    values = json.loads(json.dumps(SMALL))
    values["training"]["batch_size"] = 4
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(values))
    done = _torchrun(config, tmp_path / "ddp")
    assert done.returncode == 0, done.stderr[-2000:]
    single = Trainer.from_config(from_dict(values), tmp_path / "single", progress=False)
    single.train()
    a, b = model_weights(tmp_path / "ddp" / "last"), model_weights(tmp_path / "single" / "last")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    assert json.loads((tmp_path / "ddp" / "last.json").read_text())["world_size"] == 2
    logged = [
        [float(r["loss"]) for r in csv.DictReader((tmp_path / run / "metrics.csv").open())] for run in ("ddp", "single")
    ]
    assert logged[0] == pytest.approx(logged[1], rel=1e-4)  # the processes' mean loss, logged once per step

    values["training"].update(steps=100_000, validate_every=100_000, figure_every=100_000, checkpoint_every=100_000)
    config.write_text(yaml.safe_dump(values))
    done = _torchrun(config, tmp_path / "timed", "--max-minutes", "0.02")
    assert done.returncode == 0, done.stderr[-2000:]
    assert 0 < json.loads((tmp_path / "timed" / "last.json").read_text())["step"] < 100_000


def test_distributed_errors_say_which_process_printed_them(tmp_path):
    """A batch that two processes cannot share: each process exits non-zero with the error, labelled with its
    rank, and no run folder is made."""
    values = json.loads(json.dumps(SMALL))
    values["training"]["batch_size"] = 3
    config = tmp_path / "odd.yaml"
    config.write_text(yaml.safe_dump(values))
    done = _torchrun(config, tmp_path / "odd")
    assert done.returncode != 0
    message = "error: training.batch_size 3 must be a multiple of the 2 processes"
    for rank in (0, 1):
        assert f"learnrecon train [rank {rank} of 2]: {message}" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "odd").exists()
