"""Hostile sweeps (issue 17's audit): a worker process that dies, Ray missing, sweep files
whose keys or values cannot make a point. Each test failed before its fix."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_hostile import refused
from test_sweep import XOR, run, same_parameters, train_by_hand, write

from eqprop_cli.runs.rundir import CHECKPOINT, load_checkpoint

ONE_POINT = f"""
[sweep]
circuit = "{XOR}"
set = ["training.epochs={{epochs}}"]

[grid]
training.seed = [0]
"""


def children(pid: int) -> set[int]:
    """The live worker processes of ``pid`` (its multiprocessing spawn children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in command and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.add(int(entry.name))
    return found


def wait_for(condition, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def sweep_process(sweep_file: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "eqprop_cli", "sweep", str(sweep_file), "-o", str(out)]
    return subprocess.Popen(
        [*command, "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    """Whatever is left of the sweep's session: killed (a failing test leaves no workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def kill_worker_once_training(proc: subprocess.Popen, run_dir: Path, spared: set[int]) -> int:
    """SIGKILL the sweep's worker (not one of ``spared``) once its point has a checkpoint."""

    def alive(found):
        assert proc.poll() is None, proc.communicate()  # the sweep itself must go on
        return found

    worker = wait_for(lambda: alive(children(proc.pid) - spared))
    wait_for(lambda: alive((run_dir / CHECKPOINT).is_file()))
    (pid,) = worker
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_worker_killed_mid_point_is_retried_and_resumes_exactly(tmp_path):
    # was: "error: numerical failure (BrokenProcessPool ...)", the sweep stopped, every
    # point left pending in results.json
    out = tmp_path / "out"
    epochs = 80
    sweep_file = write(tmp_path, ONE_POINT.format(epochs=epochs))
    proc = sweep_process(sweep_file, out)
    point = out / "points" / "seed-0"
    try:
        kill_worker_once_training(proc, point, set())
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        stop(proc)
    assert proc.returncode == 0, (stdout, stderr)
    assert "Traceback" not in stderr and "numerical failure" not in stderr
    doc = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in doc["rows"]] == ["done"]
    # killed while training: the point's log shows two starts, the second one resuming
    starts = (point / "sweep-point.log").read_text().count("training xor on xor")
    assert starts == 2, (point / "sweep-point.log").read_text()
    assert load_checkpoint(point / CHECKPOINT).state.epoch == epochs
    hand = tmp_path / "hand"
    train_by_hand({"training.seed": 0}, epochs, hand)
    assert same_parameters(point, hand)  # the retry resumed exactly


def test_a_point_whose_worker_dies_twice_fails_alone_with_a_message(tmp_path):
    out = tmp_path / "out"
    sweep_file = write(tmp_path, ONE_POINT.format(epochs=100000))
    proc = sweep_process(sweep_file, out)
    try:
        first = kill_worker_once_training(proc, out / "points" / "seed-0", set())
        kill_worker_once_training(proc, out / "points" / "seed-0", {first})
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 1, (stdout, stderr)
    assert "Traceback" not in stderr
    doc = json.loads((out / "results.json").read_text())
    (row,) = doc["rows"]
    assert row["status"] == "failed" and "worker process died twice" in row["error"]
    assert "died twice" in stderr


def test_ray_missing_is_named_where_the_address_came_from_and_writes_nothing(tmp_path, monkeypatch):
    # was: "--address local: ..." for an address from the sweep file, after results.json,
    # results.csv and summary.csv were written with every point pending
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    text = ONE_POINT.format(epochs=1).replace("[sweep]\n", '[sweep]\naddress = "local"\n')
    sweep_file = write(tmp_path, text)
    out = tmp_path / "out"
    refused(
        run("sweep", sweep_file, "-o", out),
        f"{sweep_file}:3: `sweep.address` local: Ray is not installed; pip install 'eqprop[ray]'",
    )
    refused(
        run("sweep", sweep_file, "-o", out, "--address", "auto"),
        "error: --address auto: Ray is not installed",
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "table, says",
    [
        (
            "[grid]\ntraining.learning_rat = [0.1, 0.2]\n",
            ":7: `grid.training.learning_rat` is not a key of the circuit: "
            f'{XOR}: `training.learning_rat` unknown key; did you mean "learning_rate"?',
        ),
        (
            "[[points]]\ntraining.seed = 1\n[[points]]\ndevices.w.g_mn = 1e-6\n",
            ":9: `points[1].devices.w.g_mn` is not a key of the circuit",
        ),
        ("[grid]\nhidden.0.size = [4]\n", "`hidden[0]` does not exist"),
        ("[grid]\ntraining.epochs.x = [1]\n", "`grid.training.epochs.x` is not a key"),
    ],
)
def test_a_swept_key_the_circuit_lacks_is_refused_before_any_point_runs(tmp_path, table, says):
    # was: every point trained and failed with the same message (exit 1), folders written
    text = ONE_POINT.format(epochs=1).split("[grid]")[0] + table
    out = tmp_path / "out"
    refused(run("sweep", write(tmp_path, text), "-o", out), says)
    assert not out.exists()


def test_a_bad_value_still_fails_its_point_alone(tmp_path):
    """The key check does not judge values: learning_rate = -1 is that point's failure."""
    text = ONE_POINT.format(epochs=1).replace(
        "training.seed = [0]", "training.learning_rate = [-1, 0.3]"
    )
    out = tmp_path / "out"
    result = run("sweep", write(tmp_path, text), "-o", out)
    assert result.exit_code == 1, result.output
    statuses = [r["status"] for r in json.loads((out / "results.json").read_text())["rows"]]
    assert statuses == ["failed", "done"]


def test_values_equal_as_numbers_are_the_same_grid_value(tmp_path):
    # was: "FILE: `points` two points are the same: ..." with no line, for a [grid] array
    text = ONE_POINT.format(epochs=1).replace("[0]", "[1, 2, 1.0]")
    message = refused(run("sweep", write(tmp_path, text), "-o", tmp_path / "out"))
    assert ":7: `grid.training.seed[2]` holds the same value twice (1 and 1.0)" in message


def test_a_point_trained_by_an_earlier_sweep_file_says_what_to_do(tmp_path):
    # was: only "... only the number of epochs may change on resume": a sweep has no
    # --overwrite, and the message did not say to delete the point or sweep elsewhere
    out = tmp_path / "out"
    text = ONE_POINT.format(epochs=1)
    assert run("sweep", write(tmp_path, text), "-o", out).exit_code == 0
    changed = text.replace('"training.epochs=1"', '"training.epochs=1", "training.momentum=0.5"')
    result = run("sweep", write(tmp_path, changed), "-o", out, "--json")
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert "only the number of epochs may change on resume" in row["error"]
    assert f"delete {out / 'points' / 'seed-0'} to train the point again" in row["error"]
    shutil.rmtree(out / "points" / "seed-0")  # as the message says
    assert run("sweep", write(tmp_path, changed), "-o", out).exit_code == 0


@pytest.mark.parametrize(
    "table, at",
    [
        ('[eval]\nbackend = "ngspice"\nlimit = 2\n', ":9: `eval.backend`"),
        ('eval.backend = ["solver", "ngspice"]\n[eval]\nlimit = 2\n', ":8: `grid.eval.backend`"),
    ],
)
def test_an_ngspice_sweep_without_ngspice_is_refused_before_training(
    tmp_path, monkeypatch, table, at
):
    # was: every point trained, then failed at its evaluation (exit 1)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no ngspice on it
    sweep_file = write(tmp_path, ONE_POINT.format(epochs=1) + table)
    out = tmp_path / "out"
    refused(run("sweep", sweep_file, "-o", out), f"{sweep_file}{at} ngspice is not installed")
    assert not out.exists()
