"""A researcher's day: fine-tuning a run, extending a cosine schedule, moving runs around."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest
from randomcircuits import ROOT
from typer.testing import CliRunner

from eqprop_cli.circuit.spec import parse_circuit
from eqprop_cli.cli import app
from eqprop_cli.learn.optim import schedule_factor
from eqprop_cli.runs.rundir import load_checkpoint, save_checkpoint

runner = CliRunner()
MINI = ROOT / "circuits" / "mnist-mini.toml"
SMALL = ("--set", "training.train_subset=600", "--set", "training.test_subset=300")


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def metrics(run_dir) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """Three epochs of mnist-mini on 600 images (cosine schedule, as the file says)."""
    out = tmp_path_factory.mktemp("parent") / "p"
    result = run("train", MINI, "--out", out, "--epochs", 3, *SMALL)
    assert result.exit_code == 0, result.output
    return out


def test_fine_tune_starts_from_the_trained_conductances(parent, tmp_path):
    out = tmp_path / "ft"
    result = run(
        "train", parent, "--out", out, "--epochs", 1, "--set", "training.learning_rate=0.2"
    )
    assert result.exit_code == 0, result.output
    assert "fine-tuning from" in result.stdout
    before, after = (
        load_checkpoint(parent / "checkpoint.npz"),
        load_checkpoint(out / "checkpoint.npz"),
    )
    for a, b in zip(before.conductances, after.initial_conductances, strict=True):
        np.testing.assert_array_equal(a, b)  # the new run's start is the parent's end, exactly
    for a, b in zip(before.currents, after.initial_currents, strict=True):
        np.testing.assert_array_equal(a, b)
    sha = hashlib.sha256((parent / "checkpoint.npz").read_bytes()).hexdigest()
    assert after.parent["sha256"] == sha and after.parent["epoch"] == 3
    assert after.parent["run"] == str(parent)
    config = (out / "config.toml").read_text()
    assert sha in config and "fine-tuned" in config
    spec = parse_circuit(config, "config.toml")
    assert spec.training.learning_rate == 0.2 and spec.training.epochs == 1
    # epoch 1 of the fine-tune is at the parent's level, far below a fresh start's epoch 1
    first, parent_rows = metrics(out)[0], metrics(parent)
    assert abs(first["test_error"] - parent_rows[-1]["test_error"]) <= 0.03
    assert first["test_error"] < parent_rows[0]["test_error"] - 0.05
    assert first["train_error"] < parent_rows[0]["train_error"] - 0.2


def test_fine_tune_from_a_checkpoint_clips_into_a_new_device_range(parent, tmp_path):
    out = tmp_path / "ft"
    result = run(
        "train", parent / "checkpoint.npz", "--out", out, "--epochs", 1,
        "--set", "devices.mem.g_max=10u",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    trained = load_checkpoint(parent / "checkpoint.npz").conductances
    over = sum(int((g > 10e-6).sum()) for g in trained)
    assert over > 0 and f"{over:,} trained value(s) clipped" in result.stdout
    start = load_checkpoint(out / "checkpoint.npz").initial_conductances
    for a, b in zip(trained, start, strict=True):
        np.testing.assert_array_equal(np.minimum(a, 10e-6), b)


@pytest.mark.parametrize(
    ("setting", "part"),
    [
        ("hidden.0.size=50", "nodes"),
        ("output.readout=single", "outputs"),
        ("input.encoding=single", "nodes"),
    ],
)
def test_fine_tune_refuses_a_changed_structure(parent, tmp_path, setting, part):
    result = run("train", parent, "--out", tmp_path / "ft", "--set", setting)
    assert result.exit_code == 2
    assert "change the circuit's structure" in result.stderr and part in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "ft").exists()


def test_extending_a_cosine_run_asks_for_a_choice(parent, tmp_path):
    run_dir = tmp_path / "r"
    shutil.copytree(parent, run_dir)
    result = run("train", run_dir, "--resume", "--epochs", 5)
    assert result.exit_code == 2
    rate = 2.0 * schedule_factor("cosine", 2, 3, 0.0, 1)  # epoch 3 of 3 at lr 2
    assert "--reschedule" in result.stderr and f"learning_rate={rate:.4g}" in result.stderr
    assert len(metrics(run_dir)) == 3  # nothing changed
    result = run("train", run_dir, "--resume", "--epochs", 5, "--reschedule")
    assert result.exit_code == 0, result.output
    rates = [row["learning_rate"] for row in metrics(run_dir)]
    expected = [2.0 * schedule_factor("cosine", e, 5, 0.0, 1) for e in (3, 4)]
    np.testing.assert_allclose(rates[3:], expected, rtol=1e-12)


def test_constant_schedule_extends_without_asking(tmp_path):
    out = tmp_path / "r"
    args = ("--set", "training.schedule=constant", *SMALL)
    assert run("train", MINI, "--out", out, "--epochs", 1, *args).exit_code == 0
    result = run("train", out, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert len(metrics(out)) == 2


def blob_circuit(folder) -> None:
    """xor.toml trained on blobs.csv (named relative to the circuit file), two epochs."""
    rng = np.random.default_rng(0)
    x = rng.random((40, 2))
    y = ((x[:, 0] > 0.5) ^ (x[:, 1] > 0.5)).astype(int)
    rows = ["a,b,label"] + [f"{a:.17g},{b:.17g},{c}" for (a, b), c in zip(x, y, strict=True)]
    (folder / "blobs.csv").write_text("\n".join(rows) + "\n")
    text = (ROOT / "circuits" / "xor.toml").read_text()
    text = text.replace('dataset = "xor"', 'dataset = "blobs.csv"').replace(
        "epochs = 400", "epochs = 2"
    )
    (folder / "blobs.toml").write_text(text)


def test_runs_find_their_data_from_anywhere_and_after_a_move(tmp_path, monkeypatch):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    blob_circuit(project)
    monkeypatch.chdir(elsewhere)  # the data set is named relative to the circuit, not here
    result = run("train", "../project/blobs.toml", "--out", "runs/b")
    assert result.exit_code == 0, result.output
    reference = run("eval", "runs/b", "--json").stdout
    moved = tmp_path / "moved" / "b"
    shutil.move(elsewhere / "runs" / "b", moved)
    monkeypatch.chdir(tmp_path / "moved")
    result = run("eval", "b", "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.replace('"b"', '"runs/b"') == reference
    result = run("export", "b", "--sample", 0, "-o", "s.cir")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "moved" / "s.cir").read_text().count("\n") > 20
    # a path given with --set is relative to the working directory, as a shell user expects
    shutil.copy(project / "blobs.csv", tmp_path / "moved" / "other.csv")
    result = run("eval", "b", "--set", "training.dataset=other.csv", "--json")
    assert result.exit_code == 0, result.output
    result = run("eval", "b", "--set", "training.dataset=blobs.csv")
    assert result.exit_code == 2 and "blobs.csv" in result.stderr


def test_train_json_and_quiet(tmp_path):
    xor = ROOT / "circuits" / "xor.toml"
    result = run("train", xor, "--out", tmp_path / "x", "--epochs", 3, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # nothing but the JSON on stdout
    rows = metrics(tmp_path / "x")
    assert doc["run"] == str(tmp_path / "x") and doc["epochs"] == 3 and doc["parent"] is None
    assert doc["final"]["test_loss"] == rows[-1]["test_loss"]
    assert doc["final"]["validation_loss"] is None
    quiet = run("train", xor, "--out", tmp_path / "q", "--epochs", 3, "--quiet")
    error = 100 * metrics(tmp_path / "q")[-1]["test_error"]
    assert quiet.exit_code == 0 and quiet.stdout.splitlines() == [
        f"done: 3 epochs, test error {error:.2f}%; run directory {tmp_path / 'q'}"
    ]
    again = run("train", tmp_path / "x", "--out", tmp_path / "ft", "--epochs", 1, "--json")
    assert json.loads(again.stdout)["parent"]["run"] == str(tmp_path / "x")


def test_csv_class_names_in_a_named_column_reach_eval(tmp_path, monkeypatch):
    blob_circuit(tmp_path)
    rows = (tmp_path / "blobs.csv").read_text().splitlines()
    names = {"0": "odd-one-out", "1": "alike"}
    text = ["a,b,kind"] + [",".join([*r.split(",")[:2], names[r.split(",")[2]]]) for r in rows[1:]]
    (tmp_path / "blobs.csv").write_text("\n".join(text) + "\n")
    monkeypatch.chdir(tmp_path)
    sets = ("--set", "training.label_column=kind")
    assert run("train", "blobs.toml", "--out", "r", *sets).exit_code == 0
    doc = json.loads(run("eval", "r", "--json").stdout)
    assert doc["classes"] == ["alike", "odd-one-out"]  # sorted
    assert 'label_column = "kind"' in (tmp_path / "r" / "config.toml").read_text()


def test_report_compares_runs(parent, tmp_path, monkeypatch):
    out = tmp_path / "ft"
    assert run("train", parent, "--out", out, "--epochs", 1).exit_code == 0
    monkeypatch.chdir(tmp_path)
    result = run("report", parent, out)
    assert result.exit_code == 0, result.output
    figure = tmp_path / "comparison" / "comparison.png"
    assert figure.read_bytes().startswith(b"\x89PNG") and result.stdout.endswith(
        "comparison/comparison.png\n"
    )
    for run_dir, rows in ((parent, metrics(parent)), (out, metrics(out))):
        best = min(range(len(rows)), key=lambda k: rows[k]["test_error"])
        line = next(row for row in result.stdout.splitlines() if f" {run_dir} " in row)
        assert f" {len(rows)} " in line and f"{100 * rows[-1]['test_error']:.2f}%" in line
        assert f"{100 * rows[best]['test_error']:.2f}% (epoch {best + 1})" in line
    bad = run("report", parent, parent / "checkpoint.npz")
    assert bad.exit_code == 2 and "not a run directory" in bad.stderr


def test_a_run_that_recorded_a_relative_path_still_evaluates_from_its_folder(tmp_path, monkeypatch):
    """Runs made before paths were relative to the file recorded the path as given."""
    blob_circuit(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run("train", "blobs.toml", "--out", "runs/b").exit_code == 0
    config = tmp_path / "runs" / "b" / "config.toml"
    text = config.read_text().replace(f'"{tmp_path / "blobs.csv"}"', '"blobs.csv"')
    config.write_text(text)
    # as such a run was saved: its checkpoint records that config.toml (and its checksum)
    ckpt = load_checkpoint(config.parent / "checkpoint.npz")
    save_checkpoint(config.parent / "checkpoint.npz", dataclasses.replace(ckpt, config=text))
    assert 'dataset = "blobs.csv"' in config.read_text()
    assert run("eval", "runs/b", "--json").exit_code == 0  # found in the working directory
    monkeypatch.chdir(tmp_path / "runs")
    result = run("eval", "b")
    assert result.exit_code == 2 and "blobs.csv" in result.stderr


def _as_format_1(path, out) -> None:
    """Rewrite a checkpoint as eqprop wrote it before the optimiser state had names: the
    momentum velocities as opt/K, counts [g, i, opt], format_version 1, a fresh checksum."""
    from eqprop_cli.runs.rundir import _digest

    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k not in ("meta", "checksum")}
        meta = json.loads(str(data["meta"]))
    velocities = {k: arrays.pop(k) for k in [k for k in arrays if k.startswith("opt/")]}
    for name, a in velocities.items():
        arrays["opt/" + name.rsplit("/", 1)[1]] = a
    meta["counts"] = [*meta["counts"], len(velocities)]
    meta["format_version"] = 1
    del meta["optimizer"]
    text = json.dumps(meta, sort_keys=True)
    np.savez(out, meta=np.array(text), checksum=np.array(_digest(text, arrays)), **arrays)


def test_a_checkpoint_of_format_1_resumes_as_its_own_format_would(parent, tmp_path):
    """Old checkpoints (optimiser state by position) load, the momentum by name, and a
    resume from one continues bit for bit as from the same checkpoint in today's format."""
    new, old = tmp_path / "new", tmp_path / "old"
    shutil.copytree(parent, new)
    shutil.copytree(parent, old)
    _as_format_1(parent / "checkpoint.npz", old / "checkpoint.npz")
    loaded = load_checkpoint(old / "checkpoint.npz")
    assert set(loaded.state.optimizer) == {"momentum"}
    for a, b in zip(
        loaded.state.optimizer["momentum"],
        load_checkpoint(new / "checkpoint.npz").state.optimizer["momentum"],
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    for run_dir in (new, old):
        result = run("train", run_dir, "--resume", "--epochs", 4, "--reschedule")
        assert result.exit_code == 0, result.output
    a, b = (load_checkpoint(d / "checkpoint.npz") for d in (new, old))
    for x, y in zip(a.conductances + a.currents, b.conductances + b.currents, strict=True):
        np.testing.assert_array_equal(x, y)
