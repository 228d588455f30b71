"""Training as the chip would learn: device update models inside EP training (mnist-mini subsets)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from randomcircuits import ROOT
from typer.testing import CliRunner

from eqprop_cli import Network, compile_circuit
from eqprop_cli.circuit.spec import load_circuit
from eqprop_cli.cli import app
from eqprop_cli.learn.samples import training_data
from eqprop_cli.learn.train import Trainer
from eqprop_cli.runs.rundir import (
    CHECKPOINT,
    load_checkpoint,
)

runner = CliRunner()
MINI = ROOT / "circuits" / "mnist-mini.toml"
SMALL = ("training.train_subset=256", "training.test_subset=50", "training.batch_size=32")


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _trainer(*overrides: str) -> Trainer:
    spec = load_circuit(MINI, [*SMALL, *overrides])
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    return Trainer(network, spec, splits, dataset.n_classes)


def _trained(*overrides: str) -> list[np.ndarray]:
    trainer = _trainer(*overrides)
    trainer.run(trainer.new_state(), 1)
    return [g.copy() for g in trainer.network.g] + [c.copy() for c in trainer.network.currents]


def test_ideal_model_is_todays_trainer_bit_for_bit():
    """model = "ideal" (and a table with nothing else) changes nothing: the same arrays."""
    plain = _trained()
    for a, b in zip(plain, _trained('devices.mem.update.model="ideal"'), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("levels", [16, 64])
def test_levels_keep_every_trained_conductance_on_its_grid(levels):
    trainer = _trainer(
        'devices.mem.update.model="linear"',
        f"devices.mem.update.levels={levels}",
        'devices.mem.update.rounding="stochastic"',
    )
    g_min, g_max = 1e-9, 20e-6  # mnist-mini's device
    step = (g_max - g_min) / (levels - 1)
    seen = []

    def check(_) -> None:
        for g in trainer.network.g:
            k = (g - g_min) / step
            assert np.all(np.abs(k - np.rint(k)) < 1e-6)
            assert g.min() >= g_min and g.max() <= g_max
        seen.append(trainer.network.g[0].copy())

    state, _ = trainer.run(trainer.new_state(), 1, on_batch=check)
    assert len(seen) == trainer.steps and not np.array_equal(seen[0], seen[-1])
    assert state.metrics[-1]["pulses"] > 0
    assert state.metrics[-1]["g_p05"] <= state.metrics[-1]["g_median"] <= state.metrics[-1]["g_p95"]


def test_device_draws_are_saved_and_metrics_record_programming(tmp_path):
    """(Resume with noise everywhere is bit-exact: test_training's resume test.)"""
    noisy = ('devices.mem.update.preset="ecram"', 'devices.mem.update.rounding="stochastic"')
    args = [a for o in (*SMALL, *noisy) for a in ("--set", o)]
    assert run("train", MINI, "--out", tmp_path / "a", "--epochs", 1, *args).exit_code == 0
    a = load_checkpoint(tmp_path / "a" / CHECKPOINT)
    names = ("c_up", "r_up", "c_down", "r_down", "g_min", "g_max")  # both connections
    assert set(a.state.devices) == {f"{k}/{n}" for k in (0, 1) for n in names}
    header = (tmp_path / "a" / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith("not_converged,pulses,g_p05,g_median,g_p95")
    other = _trained(*noisy, "training.seed=1")  # the draws and the noise are the seed's
    assert not np.array_equal(other[0], a.conductances[0])


@pytest.mark.parametrize(
    "table, key, phrase",
    [
        ('preset = "taox"', "devices.mem.update.preset", 'one of "agsi", "taox-hfox"'),
        ('model = "linear"\nlevels = 1', "devices.mem.update.levels", ">= 2"),
        ("write_noise = -0.1", "devices.mem.update.write_noise", ">= 0"),
        ('rounding = "up"', "devices.mem.update.rounding", '"stochastic"'),
        ("leveles = 8", "devices.mem.update.leveles", 'did you mean "levels"'),
        ("nl_up = 12", "devices.mem.update.nl_up", "<= 9"),
        # no model nor preset: the default, ideal, would train without them, silently
        ("levels = 16", "devices.mem.update.levels", "has no effect"),
    ],
)
def test_bad_update_keys_are_located_errors(tmp_path, table, key, phrase):
    text = MINI.read_text().replace(
        "seed = 1\n", "seed = 1\n\n[devices.mem.update]\n" + table + "  # <-\n", 1
    )
    path = tmp_path / "bad.toml"
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "# <-" in t)
    result = run("check", path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{path}:{line}" in result.stderr and key in result.stderr and phrase in result.stderr


def test_update_table_only_on_resistors(tmp_path):
    text = MINI.read_text().replace(
        'g_on = "inf"\n', 'g_on = "inf"\n\n[devices.clamp.update]\nmodel = "linear"\n', 1
    )
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(text))
    result = run("check", path)
    assert result.exit_code == 2 and "only programmable resistors" in result.stderr, result.output


def test_report_and_eval_show_the_device_model(tmp_path):
    sets = [a for o in (*SMALL, 'devices.mem.update.preset="pcmo"') for a in ("--set", o)]
    assert run("train", MINI, "--out", tmp_path / "r", "--epochs", 1, *sets).exit_code == 0
    report = run("report", tmp_path / "r")
    assert report.exit_code == 0 and (tmp_path / "r" / "report" / "programming.png").is_file()
    result = run("eval", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    models = json.loads(result.stdout)["device_models"]
    assert models == {
        "mem": "pcmo: exponential, 50 levels, deterministic rounding, write noise 0.01"
    }
    plain = run("train", MINI, "--out", tmp_path / "p", "--epochs", 1, *sets[:6])
    assert plain.exit_code == 0 and run("report", tmp_path / "p").exit_code == 0
    assert not (tmp_path / "p" / "report" / "programming.png").exists()
    assert json.loads(run("eval", tmp_path / "p", "--json").stdout)["device_models"] == {}
