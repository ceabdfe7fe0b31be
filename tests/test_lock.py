"""Run locks: a second writer of the same output is refused, naming the holder; stale locks are taken over."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from learnrecon.io.lock import OutputLockedError, lock_path, output_lock


def test_the_lock_holds_the_holders_record_and_goes_when_the_block_ends(tmp_path):
    out = tmp_path / "run"
    with output_lock(out, command="learnrecon train") as path:
        record = json.loads(path.read_text())
        assert path == lock_path(out) and record["pid"] == os.getpid() and record["command"] == "learnrecon train"
    assert not lock_path(out).exists()


def test_a_later_holder_in_the_same_process_takes_over_and_each_removes_only_its_own(tmp_path):
    out = tmp_path / "run"
    first = output_lock(out)
    first.__enter__()
    with output_lock(out) as path:
        token = json.loads(path.read_text())["token"]
        first.__exit__(None, None, None)  # the earlier holder ends inside the later one's block
        assert json.loads(path.read_text())["token"] == token
    assert not lock_path(out).exists()


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(RuntimeError), output_lock(tmp_path / "out.h5"):
        raise RuntimeError("failed run")
    with output_lock(tmp_path / "out.h5"):
        pass


def test_a_lock_of_another_running_process_is_refused(tmp_path):
    out = tmp_path / "data.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from learnrecon.io.lock import output_lock\n"
         f"with output_lock({str(out)!r}, command='holder'):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=rf"process {holder.pid} .*holder"):
            with output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    out = tmp_path / "run"
    record = {"pid": pid, "host": socket.gethostname(), "command": "learnrecon train", "started": time.time()}
    lock_path(out).write_text(json.dumps(record))
    with pytest.warns(UserWarning, match=rf"stale lock .* process {pid}"), output_lock(out):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    assert not lock_path(out).exists()


def test_a_lock_of_another_host_is_never_taken_as_stale(tmp_path):
    out = tmp_path / "run"
    lock_path(out).write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "x", "started": 0}))
    with pytest.raises(OutputLockedError, match="on elsewhere"), output_lock(out):
        pass


def test_folders_made_for_the_lock_are_removed_again(tmp_path):
    with output_lock(tmp_path / "new" / "sub" / "run"):
        assert (tmp_path / "new" / "sub").is_dir()
    assert not (tmp_path / "new").exists()
