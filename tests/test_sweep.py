"""`eqprop sweep`: points equal to runs made by hand, resume after a kill, failures kept to
their point, Ray giving the local executor's results, located errors in sweep files."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from randomcircuits import ROOT
from test_docs import check_entry, entries, page, sections
from typer.testing import CliRunner

from eqprop_cli.cli import app
from eqprop_cli.runs.rundir import CHECKPOINT, METRICS, load_checkpoint
from eqprop_cli.sweep.execute import sweep_lock
from eqprop_cli.sweep.spec import (
    EVAL_KEYS,
    POINT_RECORD,
    SWEEP_KEYS,
    load_sweep,
    point_names,
)
from eqprop_cli.sweep.spec import (
    METRICS as SWEEP_METRICS,
)

XOR = ROOT / "circuits" / "xor.toml"
EPOCHS = 30
GRID = f"""
[sweep]
circuit = "{XOR}"
set = ["training.epochs={EPOCHS}"]

[grid]
training.learning_rate = [0.1, 0.3]
devices.w.seed = [3, 4]
training.seed = [0, 1]

[eval]
split = "test"
"""

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def write(folder: Path, text: str, name: str = "sweep.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def same_parameters(a: Path, b: Path) -> bool:
    """Bit-identical conductances and currents (trained and initial) of two runs."""
    x, y = load_checkpoint(a / CHECKPOINT), load_checkpoint(b / CHECKPOINT)
    pairs = zip(
        [*x.conductances, *x.currents, *x.initial_conductances],
        [*y.conductances, *y.currents, *y.initial_conductances],
        strict=True,
    )
    return all(np.array_equal(p, q) and p.dtype == q.dtype for p, q in pairs)


def metrics_without_timing(run_dir: Path) -> list[dict]:
    with open(run_dir / METRICS, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        del row["seconds"], row["samples_per_second"]
    return rows


def train_by_hand(values: dict, epochs: int, out: Path) -> None:
    """`eqprop train` of xor with a point's overrides."""
    args = ["train", XOR, "--out", out, "--set", f"training.epochs={epochs}"]
    for k, v in values.items():
        args += ["--set", f"{k}={v}"]
    assert run(*args).exit_code == 0


def signal_sweep(
    sweep_file: Path, out: Path, workers: int, wait_for: str, sig: int
) -> subprocess.CompletedProcess:
    """Run `eqprop sweep` in its own process group (SIGINT as in a terminal); once two files
    match ``wait_for`` under ``out``, send ``sig`` to the whole group, as a kill or Ctrl-C."""
    command = [sys.executable, "-m", "eqprop_cli", "sweep", str(sweep_file), "-o", str(out)]
    proc = subprocess.Popen(
        [*command, "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob(wait_for))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> tuple[Path, dict]:
    """The 2 x 2 x 2-seed xor sweep with two local workers: its folder and results.json."""
    folder = tmp_path_factory.mktemp("sweep")
    result = run("sweep", write(folder, GRID), "--out", folder / "out", "--workers", 2)
    assert result.exit_code == 0, result.output
    return folder / "out", json.loads((folder / "out" / "results.json").read_text())


def test_every_point_equals_the_run_made_by_hand(local_sweep, tmp_path):
    out, doc = local_sweep
    assert len(doc["rows"]) == 8 and {r["status"] for r in doc["rows"]} == {"done"}
    names = {r["point"] for r in doc["rows"]}
    assert len(names) == 8
    for row in doc["rows"]:
        hand = tmp_path / row["point"]
        train_by_hand(row["values"], EPOCHS, hand)
        point = out / "points" / row["point"]
        assert same_parameters(point, hand), row["point"]
        assert metrics_without_timing(point) == metrics_without_timing(hand)
        scored = json.loads(run("eval", hand, "--json").stdout)
        assert row["metrics"]["accuracy"] == scored["accuracy"]
        assert row["metrics"]["test_error"] == float(metrics_without_timing(hand)[-1]["test_error"])
        # the point is an ordinary run directory: every command reads it
        assert run("eval", point, "--json").exit_code == 0


def test_summary_is_mean_and_spread_over_seeds(local_sweep):
    out, doc = local_sweep
    assert len(doc["summary"]) == 4
    for s in doc["summary"]:
        rows = [r for r in doc["rows"] if all(r["values"][k] == v for k, v in s["values"].items())]
        assert s["n"] == len(rows) == 2 and "training.seed" not in s["values"]
        accuracy = np.array([r["metrics"]["accuracy"] for r in rows])
        assert s["mean"]["accuracy"] == pytest.approx(accuracy.mean())
        assert s["std"]["accuracy"] == pytest.approx(accuracy.std(ddof=1))
    with open(out / "summary.csv", encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh))
    assert [float(x["accuracy_mean"]) for x in lines] == [
        s["mean"]["accuracy"] for s in doc["summary"]
    ]
    with open(out / "results.csv", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 8


def test_rerun_of_a_finished_sweep_runs_nothing_and_report_draws_each_key(local_sweep, tmp_path):
    out, _ = local_sweep
    records = {p: p.stat().st_mtime_ns for p in out.glob(f"points/*/{POINT_RECORD}")}
    result = run("sweep", write(tmp_path, GRID), "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert "8 already done, 0 to run" in result.stderr
    assert json.loads(result.stdout)["rows"][0]["status"] == "done"
    assert {p: p.stat().st_mtime_ns for p in records} == records
    report = run("report", out, "--out", tmp_path / "figures")
    assert report.exit_code == 0, report.output
    paths = [Path(p) for p in report.stdout.split()]
    assert {p.name for p in paths} == {
        "accuracy-vs-training.learning_rate.png",
        "accuracy-vs-devices.w.seed.png",
    }
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_a_killed_sweep_reruns_only_the_unfinished_points(local_sweep, tmp_path):
    reference, _ = local_sweep
    epochs = 120
    text = GRID.replace(f"training.epochs={EPOCHS}", f"training.epochs={epochs}")
    sweep_file = write(tmp_path, text)
    out = tmp_path / "out"
    killed = signal_sweep(sweep_file, out, 1, f"points/*/{POINT_RECORD}", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL  # the worker went with it (same group)
    done = {
        p: p.stat().st_mtime_ns
        for p in out.glob(f"points/*/{POINT_RECORD}")
        if json.loads(p.read_text())["status"] == "done"
    }
    assert 2 <= len(done) < 8
    partial = [p.parent for p in out.glob(f"points/*/{CHECKPOINT}")]  # trained, maybe not all
    result = run("sweep", sweep_file, "-o", out, "--workers", 2)
    assert result.exit_code == 0, result.output
    assert f"{len(done)} already done, {8 - len(done)} to run" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in done} == done  # not run again
    doc = json.loads((out / "results.json").read_text())
    assert {r["status"] for r in doc["rows"]} == {"done"}
    # the point the kill interrupted and a finished one, as if never interrupted: by hand
    interrupted = [p for p in partial if p / POINT_RECORD not in done]
    for point in [*interrupted, next(iter(done)).parent]:
        row = next(r for r in doc["rows"] if r["point"] == point.name)
        hand = tmp_path / "hand" / row["point"]
        train_by_hand(row["values"], epochs, hand)
        assert same_parameters(out / "points" / row["point"], hand)
    assert sorted(p.name for p in (out / "points").iterdir()) == sorted(
        p.name for p in (reference / "points").iterdir()
    )


def test_ctrl_c_stops_the_sweep_and_its_trainings_save(tmp_path):
    sweep_file = write(
        tmp_path, GRID.replace(f"training.epochs={EPOCHS}", "training.epochs=100000")
    )
    out = tmp_path / "out"
    proc = signal_sweep(sweep_file, out, 2, f"points/*/{CHECKPOINT}", signal.SIGINT)
    assert proc.returncode == 130, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "run the same command again" in proc.stderr
    doc = json.loads((out / "results.json").read_text())
    stopped = [r for r in doc["rows"] if r["status"] == "interrupted"]
    assert len(stopped) == 2 and all(r["status"] == "pending" for r in doc["rows"][2:])
    for row in stopped:  # each training saved its last batch, so a rerun continues from it
        state = load_checkpoint(Path(row["run_dir"]) / CHECKPOINT).state
        assert state.epoch + state.step > 0


def test_a_second_sweep_into_a_busy_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    with sweep_lock(out):
        result = run("sweep", write(tmp_path, GRID), "-o", out)
    assert result.exit_code == 2
    assert f"error: {out}: another sweep is running into this folder" in result.stderr
    assert not (out / "points").exists()


def test_a_bad_override_fails_its_point_alone(tmp_path):
    text = f"""
[sweep]
circuit = "{XOR}"
set = ["training.epochs=5"]

[grid]
training.learning_rate = [0.3, -1]
"""
    out = tmp_path / "out"
    result = run("sweep", write(tmp_path, text), "-o", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    doc = json.loads((out / "results.json").read_text())
    good, bad = doc["rows"]
    assert good["status"] == "done" and good["metrics"]["test_error"] is not None
    assert bad["status"] == "failed"
    assert "`training.learning_rate` must be" in bad["error"]
    assert "(from override training.learning_rate=-1)" in bad["error"]
    assert "must be" in result.stdout  # the message is in the table
    with open(out / "results.csv", encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh))
    assert lines[1]["status"] == "failed" and "must be" in lines[1]["error"]
    again = run("sweep", tmp_path / "sweep.toml", "-o", out)
    assert again.exit_code == 1 and "1 already done, 1 to run" in again.stderr


def test_ray_in_local_mode_gives_the_local_executors_results(local_sweep, tmp_path):
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ray is required in CI (pip install '.[ray]')")
        pytest.skip("ray not installed")
    reference, expected = local_sweep
    out = tmp_path / "ray"
    result = run("sweep", write(tmp_path, GRID), "-o", out, "--address", "local", "-j", 2)
    assert result.exit_code == 0, result.output
    assert "on Ray at local" in result.stderr
    doc = json.loads((out / "results.json").read_text())
    strip = [{k: v for k, v in r.items() if k != "run_dir"} for r in doc["rows"]]
    assert strip == [{k: v for k, v in r.items() if k != "run_dir"} for r in expected["rows"]]
    for row in doc["rows"]:
        assert same_parameters(out / "points" / row["point"], reference / "points" / row["point"])


def test_evaluation_settings_vary_on_one_training_each(tmp_path):
    """eval.levels x eval.variation: one run per training point; each case as `eqprop eval`
    / `eqprop export --levels` give it by hand."""
    text = f"""
[sweep]
circuit = "{XOR}"
set = ["training.epochs=20"]

[grid]
eval.levels = [0, 4]
eval.variation = [0.0, 0.2]

[eval]
trials = 3
seed = 7
"""
    out = tmp_path / "out"
    result = run("sweep", write(tmp_path, text), "-o", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["rows"]) == 4 and len({r["point"] for r in doc["rows"]}) == 1
    assert doc["metrics"][0] == "mean_accuracy"
    point = out / "points" / doc["rows"][0]["point"]
    rows = {
        (r["values"]["eval.levels"], r["values"]["eval.variation"]): r["metrics"]
        for r in doc["rows"]
    }
    for levels in (0, 4):
        assert rows[levels, 0.0]["mean_accuracy"] == rows[levels, 0.0]["accuracy"]
    by_hand = json.loads(
        run("eval", point, "--variation", "0.2", "--trials", 3, "--seed", 7, "--json").stdout
    )
    assert rows[0, 0.2]["mean_accuracy"] == by_hand["mean_accuracy"]
    assert rows[0, 0.0]["accuracy"] == by_hand["nominal_accuracy"]
    cmap = tmp_path / "levels.json"
    assert run("export", point, "-f", "json", "--levels", 4, "-o", cmap).exit_code == 0
    quantised = json.loads(run("eval", point, "--conductances", cmap, "--json").stdout)
    assert rows[4, 0.0]["accuracy"] == quantised["accuracy"]


def test_ngspice_backend_in_a_sweep(tmp_path, ngspice):
    text = f"""
[sweep]
circuit = "{XOR}"
set = ["training.epochs=20"]

[eval]
backend = "ngspice"
limit = 2
"""
    out = tmp_path / "out"
    result = run("sweep", write(tmp_path, text), "-o", out, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["point"] == "base"
    assert row["metrics"]["agreement"] == 1.0
    assert row["metrics"]["ngspice_accuracy"] == row["metrics"]["accuracy"]


# --------------------------------------------------------------------------- the file


BAD_FILES = [
    (
        "[sweep]\ncircuit = 'X'\nworkrs = 2\n",
        r":3: `sweep.workrs` unknown key; did you mean \"workers\"",
    ),
    ("[sweep]\nname = 'a'\n", r":1: `sweep` missing key `circuit`"),
    ("[sweep]\ncircuit = 'nope.toml'\n", r":2: `sweep.circuit` no circuit file at"),
    (
        "[sweep]\ncircuit = 'X'\n[grid]\ntraining.seed = 3\n",
        r":4: `grid.training.seed` must be a non-empty array",
    ),
    (
        "[sweep]\ncircuit = 'X'\n[grid]\ntraining.seed = [1, 1]\n",
        r":4: `grid.training.seed\[1\]` holds the same value twice \(1 and 1\)",
    ),
    (
        "[sweep]\ncircuit = 'X'\n[grid]\neval.levels = [0, 4]\n",
        r":4: `grid.eval.levels` varies an evaluation setting, but there is no \[eval\] table",
    ),
    (
        "[sweep]\ncircuit = 'X'\n[grid]\neval.levls = [0, 4]\n[eval]\n",
        r":4: `grid.eval.levls` unknown key; did you mean \"levels\"",
    ),
    (
        "[sweep]\ncircuit = 'X'\n[grid]\neval.variation = [0.1,\n  -1]\n[eval]\n",
        r":5: `grid.eval.variation\[1\]` must be a number >= 0 and <= 1; got -1",
    ),
    (
        "[sweep]\ncircuit = 'X'\nmetrics = ['acuracy']\n",
        r":3: `sweep.metrics.acuracy` unknown key; did you mean \"accuracy\"",
    ),
    (
        "[sweep]\ncircuit = 'X'\nmetrics = ['accuracy']\n",
        r":3: `sweep.metrics\[0\]` \"accuracy\" needs an \[eval\] table",
    ),
    ("[sweep]\ncircuit = 'X'\n[eval]\nbackend = 'spice'\n", r":4: `eval.backend` must be one of"),
    (
        "[sweep]\ncircuit = 'X'\n[eval]\nlevels = 1\n",
        r":4: `eval.levels` must be 0 \(the devices' own levels\) or at least 2",
    ),
    ("[sweep]\ncircuit = 'X'\n[grid]\n'a b' = [1]\n", r":4: `grid.a b` must be a dotted key"),
    (
        "[sweep]\ncircuit = 'X'\n[grid]\ntraining.seed = [1]\n[[points]]\ntraining.seed = 2\n",
        r":6: `points\[0\].training.seed` is swept in \[grid\] too",
    ),
    (
        "[sweep]\ncircuit = 'X'\n[[points]]\na.b = 1\n[[points]]\na.b = 1\n",
        r"`points` two points are the same: a.b = 1",
    ),
    (
        "[sweep]\ncircuit = 'X'\nset = ['training.beta=-1']\n",
        r":3: `sweep.set` the base circuit does not load: .*xor.toml: `training.beta` must be .* \(from override training.beta=-1\)",
    ),
    ("[sweep\n", r":1: not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_sweep_file_gets_one_located_message_and_exit_2(tmp_path, text, message):
    path = write(tmp_path, text.replace("'X'", f"'{XOR}'"), "bad.toml")
    result = run("sweep", path, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert re.search(message, result.stderr), result.stderr
    assert result.stderr.startswith(f"error: {path}")
    assert not (tmp_path / "out").exists()  # nothing written


def test_point_names_are_slugs_unique_and_say_their_overrides():
    points = [
        [("training.learning_rate", 0.3), ("training.seed", 0)],
        [("training.learning_rate", 0.3), ("training.seed", 1)],
        [("devices.w.seed", 3), ("training.seed", 0)],
        [("circuit.name", "../../etc"), ("training.seed", 0)],
        [("circuit.name", ".._.._etc"), ("training.seed", 0)],
        [("circuit.name", "x" * 300)],
        [],
    ]
    names = point_names(points)
    assert names[0] == "learning_rate-0.3__training.seed-0"
    assert names[2] == "devices.w.seed-3__training.seed-0"
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._+-]*", name) and ".." not in name.split("/")
        assert len(name) <= 120
    assert names[-1] == "base"


def test_grid_and_points_combine(tmp_path):
    text = f"""
[sweep]
circuit = "{XOR}"

[[points]]
training.learning_rate = 0.1
training.batch_size = 2

[[points]]
training.learning_rate = 0.3

[grid]
training.seed = [0, 1, 2]
"""
    sweep = load_sweep(write(tmp_path, text))
    assert sweep.axes == ["training.seed", "training.learning_rate", "training.batch_size"]
    assert len(sweep.tasks) == 6
    assert sweep.tasks[0].overrides == (
        "training.learning_rate=0.1",
        "training.batch_size=2",
        "training.seed=0",
    )


def test_every_sweep_key_and_metric_is_documented():
    """Each key of [sweep] and [eval] with its kind, default and bound; each metric."""
    documented = sections(page("eqprop-sweep.1"), "SS")
    for table, keys in (("[sweep]", SWEEP_KEYS), ("[eval]", EVAL_KEYS)):
        tags = entries(documented[table])
        for param in keys:
            assert param.name in tags, f"{table} {param.name} is not in eqprop-sweep(1)"
            check_entry(param, tags[param.name])
            for choice in param.choices:
                assert f'"{choice}"' in documented[table], (param.name, choice)
    assert {"set", "metrics"} <= set(entries(documented["[sweep]"]))
    for name in SWEEP_METRICS:
        assert re.search(rf"(?<![\w-]){name}(?![\w-])", documented["[sweep]"]), name
