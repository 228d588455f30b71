"""SIGTERM (kill, timeout, a batch system's end of job) stops a training as the first Ctrl-C
does: the last complete batch is saved, one message says how to continue, exit 143, and
--resume continues exactly. For a sweep: its trainings save, finished points are kept."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from test_hostile import XOR, invoke
from test_sweep import EPOCHS, GRID, same_parameters
from test_sweep import write as write_sweep

from eqprop_cli.runs.rundir import CHECKPOINT, METRICS, load_checkpoint, run_lock


@contextlib.contextmanager
def started(
    command: list[str], folder: Path, pattern: str, count: int = 1
) -> Iterator[subprocess.Popen]:
    """``command`` running in its own session, once ``count`` files under ``folder`` match
    ``pattern``; whatever is left of the session is killed afterwards (a failing test must
    not leave orphaned trainings running)."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(folder.glob(pattern))) < count:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_sigterm_saves_the_last_batch_and_resume_is_exact(tmp_path):
    # was: killed at once by the signal (status -15), the batches since the epoch lost
    out = tmp_path / "run"
    train = [sys.executable, "-m", "eqprop_cli", "train", str(XOR), "--out", str(out)]
    batch_of_one = ["--set", "training.batch_size=1"]  # four batches an epoch
    with started([*train, *batch_of_one, "--epochs", "100000"], out, METRICS) as proc:
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, (stdout, stderr)
    assert "terminated (SIGTERM): saved epoch" in stderr and f"eqprop train {out} --resume" in (
        stderr.replace("\n", "")
    )
    assert "Traceback" not in stderr
    assert not list(out.glob(".*.tmp"))
    state = load_checkpoint(out / CHECKPOINT).state
    assert state.epoch >= 1 and len(state.metrics) == state.epoch
    # exact: resumed to the next epoch's end, it equals one uninterrupted run
    epochs = state.epoch + 1
    resumed = invoke("train", out, "--resume", "--epochs", epochs)
    assert resumed.exit_code == 0, resumed.output
    straight = tmp_path / "straight"
    whole = invoke("train", XOR, "--out", straight, *batch_of_one, "--epochs", epochs)
    assert whole.exit_code == 0, whole.output
    assert same_parameters(out, straight)


def test_sigterm_stops_a_sweep_and_its_trainings_save(tmp_path):
    # was: the sweep process died at once; its workers went on training, orphaned
    sweep_file = write_sweep(
        tmp_path, GRID.replace(f"training.epochs={EPOCHS}", "training.epochs=100000")
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "eqprop_cli", "sweep", str(sweep_file), "-o", str(out)]
    with started([*command, "--workers", "2"], out, f"points/*/{CHECKPOINT}", 2) as proc:
        proc.send_signal(signal.SIGTERM)  # to the sweep process alone, as `kill PID` does
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, (stdout, stderr)
    assert "terminated (SIGTERM): finished points are kept" in stderr
    assert "Traceback" not in stderr
    doc = json.loads((out / "results.json").read_text())
    stopped = [r for r in doc["rows"] if r["status"] == "interrupted"]
    assert len(stopped) == 2, doc["rows"]
    for row in stopped:  # each training saved its last batch and no process is left writing
        state = load_checkpoint(Path(row["run_dir"]) / CHECKPOINT).state
        assert state.epoch + state.step > 0
        with run_lock(Path(row["run_dir"])):  # refused while a worker still trains there
            pass
