"""Training: nudged equilibria, EP gradient = exact gradient, learning, determinism, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from randomcircuits import ROOT, layered, netlist
from typer.testing import CliRunner

from eqprop_cli import Network, compile_circuit, parse_circuit, solve
from eqprop_cli.circuit.spec import load_circuit
from eqprop_cli.cli import app
from eqprop_cli.errors import EqpropError
from eqprop_cli.learn.gradcheck import compare, exact_gradients
from eqprop_cli.learn.loss import ReadoutLoss
from eqprop_cli.learn.samples import training_data
from eqprop_cli.learn.settings import training_settings
from eqprop_cli.learn.state import TrainState
from eqprop_cli.learn.train import Trainer, parameter_groups
from eqprop_cli.runs.rundir import (
    CHECKPOINT,
    Checkpoint,
    load_checkpoint,
    load_target,
    save_checkpoint,
)
from eqprop_cli.solver.equilibrium import Nudge

runner = CliRunner()
XOR = ROOT / "circuits" / "xor.toml"


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _setup(text, seed: int = 0, batch: int = 5):
    """A circuit (text, or a function of a seed: the first seed from ``seed`` that compiles)."""
    for attempt in range(seed, seed + 50):
        try:
            spec = parse_circuit(
                text(attempt) if callable(text) else text, "<test>", ["training.dataset=xor"]
            )
            network = Network(compile_circuit(spec))
            break
        except EqpropError:
            if not callable(text):
                raise
    seed = attempt
    rng = np.random.default_rng(seed)
    x = rng.random((batch, network.n_features))
    n_out = len(network.outputs)
    y = rng.integers(0, n_out, batch)
    loss = ReadoutLoss(training_settings(spec), n_out, n_out)
    return spec, network, x, y, loss


CIRCUITS = {
    "layered-ideal": lambda s: layered(s, diode="ideal", amplifier=False)[0],
    "layered-clamp": lambda s: layered(s, diode="clamp", amplifier=False)[0],
    "layered-shockley-amplifiers": lambda s: layered(s, diode="shockley", amplifier=True)[0],
    "netlist": lambda s: netlist(s, amplifier=True, clamps=False)[0],
    "netlist-clamps": lambda s: netlist(s)[0],
    "xor": lambda s: XOR.read_text(),
}


# ----------------------------------------------------------------------------- nudged phase


@pytest.mark.parametrize("kind", sorted(CIRCUITS))
@pytest.mark.parametrize("seed", [1, 2])
def test_nudged_equilibrium_obeys_kcl_with_the_nudge_current(kind, seed):
    _, network, x, y, loss = _setup(CIRCUITS[kind], seed)
    free = solve(network, x, tol=1e-13)
    beta = 1e-4
    for nudge in (loss.nudge(beta, free.outputs(), y), Nudge(current=1e-5 * free.outputs())):
        eq = solve(network, x, tol=1e-13, nudge=nudge, max_iter=5000)
        assert eq.success, eq.message
        newton = solve(network, x, tol=1e-13, nudge=nudge, method="newton", max_iter=5000)
        assert np.abs(eq.voltages - newton.voltages).max() < 1e-7
        # a cold solve given ``like`` shares the free solve's set-up only (warm-started ones
        # also its contraction): bit for bit the solve without it
        shared = solve(network, x, tol=1e-13, nudge=nudge, max_iter=5000, like=free)
        np.testing.assert_array_equal(shared.voltages, eq.voltages)
        # the nudge, at node level: current into each output's + node (out of its - node)
        o = eq.outputs()
        injected = -beta * (o - nudge.target) if nudge.target is not None else nudge.current
        residual = network.kcl_residual(eq.voltages)
        nodes = network.outputs
        expected = np.zeros_like(residual)
        np.add.at(expected, (slice(None), nodes[:, 0]), injected)
        if nodes.shape[1] == 2:
            np.add.at(expected, (slice(None), nodes[:, 1]), -injected)
        amp_out = [a.target for a in network.amplifiers]
        expected[:, amp_out] = 0.0  # an amplifier supplies whatever its output node needs
        # branch currents leave a node; at equilibrium they balance what the nudge injects
        assert np.abs(residual - expected).max() < 1e-9, kind


def test_too_negative_beta_is_refused():
    _, network, x, y, loss = _setup(XOR.read_text())
    with pytest.raises(EqpropError, match="too negative"):
        solve(network, x, nudge=loss.nudge(-1.0, np.zeros((len(y), 2)), y))


# ----------------------------------------------------------------------------- EP = gradient


@pytest.mark.parametrize("kind", sorted(CIRCUITS))
def test_ep_estimate_is_the_gradient_and_improves_as_beta_shrinks(kind):
    spec, network, x, y, loss = _setup(CIRCUITS[kind], 3)
    groups = parameter_groups(network, training_settings(spec), spec)
    out_g = sum(g.sum() for g in network.g) / max(1, network.n_vars)  # scale of the circuit
    errors = []
    for beta in (1e-2 * out_g, 1e-3 * out_g):
        result = compare(network, groups, x, y, loss, beta, tol=1e-15, max_iter=20_000)
        centred = result["centred"]["overall"]
        assert centred.cosine >= 0.999, (kind, beta, centred)
        assert centred.relative_error <= 1e-2, (kind, beta, centred)
        errors.append(centred.relative_error)
        one_sided = result["positive"]["overall"]
        assert one_sided.relative_error >= centred.relative_error  # centring cancels O(beta)
    assert errors[1] < errors[0] / 3, errors  # first-order in beta^2: 100x in theory


def test_exact_gradient_agrees_with_finite_differences():
    spec, network, x, y, loss = _setup(lambda s: layered(s, diode="shockley")[0], 5)
    groups = parameter_groups(network, training_settings(spec), spec)
    exact = exact_gradients(network, groups, x, y, loss, tol=1e-15, max_iter=20_000)

    def mean_loss() -> float:
        eq = solve(network, x, tol=1e-15, max_iter=20_000)
        return float(loss.value(eq.outputs(), y).mean())

    g0 = [g.copy() for g in network.g]
    rng = np.random.default_rng(0)
    for k, g in enumerate(g0):
        for flat in rng.choice(g.size, size=min(4, g.size), replace=False):
            values = []
            for sign in (1, -1):
                trial = [a.copy() for a in g0]
                h = 1e-4 * trial[k].flat[flat]
                trial[k].flat[flat] += sign * h
                network.set_conductances(trial)
                values.append(mean_loss())
            fd = (values[0] - values[1]) / (2 * h)
            assert fd == pytest.approx(
                exact[k].flat[flat], rel=1e-4, abs=1e-9 * np.abs(exact[k]).max()
            )
    network.set_conductances(g0)


def test_trained_current_sources_get_exact_gradients_too():
    spec, network, x, y, loss = _setup(lambda s: layered(s, diode="ideal", bias=True)[0], 7)
    groups = parameter_groups(network, training_settings(spec), spec)
    assert any(g.kind == "current" for g in groups)  # seed 7 gives its hidden layer biases
    result = compare(network, groups, x, y, loss, 1e-7, tol=1e-14, max_iter=20_000)
    for name, agreement in result["centred"].items():
        assert agreement.cosine >= 0.999, name


# ----------------------------------------------------------------------------- learning


def _trainer(path, *overrides):
    spec = load_circuit(path, list(overrides))
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    return Trainer(network, spec, splits, dataset.n_classes)


def test_xor_is_learned():
    trainer = _trainer(XOR)
    state, stopped = trainer.run(trainer.new_state(), 400)
    assert not stopped
    losses = [m["train_loss"] for m in state.metrics]
    assert losses[-1] < 0.2 * losses[0]
    assert state.metrics[-1]["test_error"] == 0.0


def test_mnist_subset_loss_falls_in_seconds():
    trainer = _trainer(
        ROOT / "circuits" / "mnist-mini.toml",
        "training.train_subset=1000",
        "training.test_subset=200",
        "training.epochs=2",
    )
    before = trainer.evaluate("test")
    trainer.run(trainer.new_state(), 2)
    after = trainer.evaluate("test")
    assert after.loss < 0.8 * before.loss
    assert after.error_rate < 0.5 * before.error_rate


def test_run_trains_with_one_blas_thread_and_restores_the_pools_after():
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    mini = ROOT / "circuits" / "mnist-mini.toml"
    trainer = _trainer(mini, "training.train_subset=16", "training.test_subset=8")
    seen = []
    with threadpool_limits(limits=2, user_api="blas"):  # more than one before the run
        before = blas()
        trainer.run(trainer.new_state(), 1, on_batch=lambda _: seen.append(blas()))
        assert blas() == before == [2] * len(before)
    assert seen and all(threads == [1] * len(before) for threads in seen)
    order = trainer.order(0)  # kept for the epoch, read-only, and the seeded permutation
    assert trainer.order(0) is order and not order.flags.writeable
    np.testing.assert_array_equal(
        order, np.random.default_rng([trainer.training.seed, 0]).permutation(16)
    )
    assert not np.array_equal(trainer.order(1), order)


def test_same_seed_same_conductances_bit_for_bit():
    results = []
    for _ in range(2):
        trainer = _trainer(XOR, "training.phases=random", "training.momentum=0.5")
        trainer.run(trainer.new_state(), 5)
        results.append(
            [g.copy() for g in trainer.network.g] + [c.copy() for c in trainer.network.currents]
        )
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _trainer(XOR, "training.phases=random", "training.momentum=0.5", "training.seed=1")
    other.run(other.new_state(), 5)
    assert not np.array_equal(other.network.g[0], results[0][0])


# devices that learn with noise everywhere: rounding, write noise, device-to-device
# variation, read noise, ADC and nudge precision (eqprop-circuit(5))
NOISY_DEVICES = (
    'devices.mem.update.preset="ecram"',
    'devices.mem.update.rounding="stochastic"',
    "devices.mem.update.write_noise=0.01",
    'training.read_noise="1m"',
    "training.nudge_error=0.05",
    "training.adc_bits=10",
    "training.adc_range=2",
)


@pytest.mark.parametrize("shift, devices", [(0, ()), (1, ()), (0, NOISY_DEVICES)])
def test_resume_after_an_interruption_is_bit_exact(tmp_path, shift, devices):
    args = (
        "--set",
        "training.train_subset=96",
        "--set",
        "training.test_subset=50",
        "--set",
        "training.batch_size=8",
        "--set",
        f"training.shift={shift}",
    )
    args += ("--set", "training.momentum=0.9", "--set", "training.phases=random")
    args += tuple(a for setting in devices for a in ("--set", setting))
    mini = ROOT / "circuits" / "mnist-mini.toml"
    straight = run("train", mini, "--out", tmp_path / "a", "--epochs", 2, *args)
    assert straight.exit_code == 0, straight.output
    first = run("train", mini, "--out", tmp_path / "b", "--epochs", 1, *args)
    assert first.exit_code == 0, first.output
    # mid-epoch stop through the library: the state after 5 batches of epoch 2
    loaded = load_target(tmp_path / "b", ["training.epochs=2"])  # as the resumed run sees it
    trainer = Trainer(
        loaded.network, loaded.spec, training_data(loaded.spec, loaded.network)[1], 10
    )
    calls = iter(range(100))
    state, stopped = trainer.run(loaded.checkpoint.state, 2, should_stop=lambda: next(calls) >= 5)
    assert stopped and state.step == 5
    ckpt = loaded.checkpoint
    save_checkpoint(
        tmp_path / "b" / CHECKPOINT,
        Checkpoint(
            loaded.network.g,
            loaded.network.currents,
            ckpt.initial_conductances,
            ckpt.initial_currents,
            state,
            ckpt.config,
        ),
    )
    # the cosine over 2 epochs, as the straight run had it
    resumed = run("train", tmp_path / "b", "--resume", "--epochs", 2, "--reschedule")
    assert resumed.exit_code == 0, resumed.output
    a, b = (
        load_checkpoint(tmp_path / "a" / CHECKPOINT),
        load_checkpoint(tmp_path / "b" / CHECKPOINT),
    )
    assert set(a.state.optimizer) == set(b.state.optimizer) == {"momentum"}
    for x, y in zip(
        a.conductances + a.state.optimizer["momentum"],
        b.conductances + b.state.optimizer["momentum"],
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    assert bool(a.state.devices) == bool(devices)  # the device-to-device draws, saved
    for key, value in a.state.devices.items():
        np.testing.assert_array_equal(value, b.state.devices[key])
    assert a.state.metrics[-1]["train_loss"] == b.state.metrics[-1]["train_loss"]
    assert (
        (tmp_path / "a" / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    )


def test_shift_trains_on_freshly_shifted_images_every_epoch():
    mini = ROOT / "circuits" / "mnist-mini.toml"
    sets = ["training.train_subset=40", "training.test_subset=10", "training.batch_size=8"]
    trainer = _trainer(mini, *sets, "training.shift=2")
    state = trainer.new_state()
    x = trainer.splits["train"][0][:8]
    batch = trainer.augment(x, state)
    assert batch.shape == x.shape and not np.array_equal(batch, x)
    np.testing.assert_array_equal(batch, trainer.augment(x, state))  # counter-based: resumable
    later = TrainState(epoch=1, step=0, optimizer=state.optimizer, running=state.running)
    assert not np.array_equal(trainer.augment(x, later), batch)
    # every image is one of its 25 shifts (zero-padded, then cropped back to 28 x 28)
    for image, moved in zip(x, batch, strict=True):
        padded = np.pad(image.reshape(28, 28), 2)
        shifts = [
            padded[2 - dy : 30 - dy, 2 - dx : 30 - dx].ravel()
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        ]
        assert any(np.array_equal(s, moved) for s in shifts)
    plain = _trainer(mini, *sets)
    np.testing.assert_array_equal(plain.augment(x, state), x)
    trainer.run(state, 1)
    plain.run(plain.new_state(), 1)
    assert not np.array_equal(trainer.network.g[0], plain.network.g[0])


def test_conductances_stay_inside_the_device_range():
    trainer = _trainer(XOR, "training.learning_rate=1000", "training.momentum=0.9")
    trainer.run(trainer.new_state(), 3)
    for group, values in zip(trainer.groups, trainer.params(), strict=True):
        assert values.min() >= group.low and values.max() <= group.high
        assert np.isclose(values, group.low).any() or np.isclose(values, group.high).any()


def test_run_directory_files(tmp_path):
    result = run(
        "train", XOR, "--out", tmp_path / "r", "--epochs", 3, "--set", "training.momentum=0.5"
    )
    assert result.exit_code == 0, result.output
    config = (tmp_path / "r" / "config.toml").read_text()
    assert "--set training.momentum=0.5" in config and "momentum = 0.5" in config
    assert "epoch 3/3" in result.output and "test error" in result.output
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "checkpoint.npz",
        "config.toml",
        "metrics.csv",
    ]
    assert run("check", tmp_path / "r" / "config.toml").exit_code == 0  # a valid circuit file
    lines = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 4
    ckpt = load_checkpoint(tmp_path / "r" / CHECKPOINT)
    assert ckpt.state.epoch == 3 and len(ckpt.state.metrics) == 3
    assert not np.array_equal(ckpt.conductances[0], ckpt.initial_conductances[0])
    # eval, export and gradcheck take the run directory
    doc = json.loads(run("eval", tmp_path / "r", "--json").stdout)
    assert {"accuracy", "error_rate", "loss", "n_samples", "confusion"} <= set(doc)
    assert doc["accuracy"] == pytest.approx(1 - ckpt.state.metrics[-1]["test_error"])
    assert np.sum(doc["confusion"]) == doc["n_samples"] == 4
    netlist_text = run("export", tmp_path / "r", "--format", "spice", "-i", "1,0").stdout
    trained_ohms = 1.0 / ckpt.conductances[0][0]
    assert f"{trained_ohms:.6e}"[:7] in netlist_text.replace("E", "e")
    grad = run("gradcheck", tmp_path / "r", "--beta", "1e-7", "--json")
    assert grad.exit_code == 0, grad.output
    report = json.loads(grad.stdout)
    assert report["passed"] and report["cosine"] >= 0.999
    assert set(report["variants"]) == {"centred", "positive", "negative"}
    assert "w" in report["variants"]["centred"]["connections"]


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    assert run("train", XOR, "--out", tmp_path / "r", "--epochs", 1).exit_code == 0
    again = run("train", XOR, "--out", tmp_path / "r", "--epochs", 1)
    assert again.exit_code == 2 and "--resume" in again.output
    changed = run(
        "train",
        XOR,
        "--out",
        tmp_path / "r",
        "--resume",
        "--epochs",
        2,
        "--set",
        "training.beta=1e-3",
    )
    assert changed.exit_code == 2 and "different settings" in changed.output
    assert run("train", XOR, "--out", tmp_path / "r", "--overwrite", "--epochs", 1).exit_code == 0


def test_corrupt_and_foreign_checkpoints_are_clean_errors(tmp_path):
    assert run("train", XOR, "--out", tmp_path / "r", "--epochs", 1).exit_code == 0
    path = tmp_path / "r" / CHECKPOINT
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = run("eval", tmp_path / "r")
    assert result.exit_code == 2 and CHECKPOINT in result.output
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    result = run("eval", tmp_path / "foreign.npz")
    assert result.exit_code == 2 and "not an eqprop checkpoint" in result.output


@pytest.mark.parametrize(
    ("setting", "phrase"),
    [
        ("training.learning_rate=-1", "learning_rate"),
        ("training.dataset=no-such-data", "no-such-data"),
        ("training.batch_size=0", "batch_size"),
        ("training.loss=hinge", "loss"),
        ("training.nudge=conductance", "cross_entropy has no conductance nudge"),
        ("training.learning_rates.nowhere=1", "nowhere"),
        ("training.epochs", "KEY=VALUE"),
        ("training.shift=1", "shifting needs square images"),
        ("training.shift=9", "training.shift` must be an integer >= 0 and <= 8"),
    ],
)
def test_bad_training_settings_are_clean_errors(tmp_path, setting, phrase):
    extra = ["--set", "training.loss=cross_entropy"] if "nudge" in setting else []
    result = run("train", XOR, "--out", tmp_path / "r", "--set", setting, *extra)
    assert result.exit_code == 2, result.output
    assert phrase in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_set_errors_name_the_option():
    result = run("check", XOR, "--set", "training.batch_size=0")
    assert result.exit_code == 2
    assert "--set training.batch_size=0" in result.output and "training.batch_size" in result.output


def test_set_takes_quoted_key_segments():
    spec = load_circuit(
        ROOT / "circuits" / "mnist-mini.toml",
        ['training.learning_rates."hidden->output"=0.5', "training.learning_rates.'bias'=0.25"],
    )
    assert spec.training.learning_rates == {"hidden->output": 0.5, "bias": 0.25}
    for bad in ('training."open=1', "training..epochs=1", "training.epochs"):
        result = run("check", XOR, "--set", bad)
        assert result.exit_code == 2 and "KEY=VALUE" in result.output, bad


def test_readout_must_match_the_classes(tmp_path):
    result = run(
        "train",
        ROOT / "circuits" / "mnist-mini.toml",
        "--out",
        tmp_path / "r",
        "--set",
        "output.size=3",
    )
    assert result.exit_code == 2 and "10 classes" in result.output


def test_eval_tables_and_errors(tmp_path):
    result = run("eval", XOR)
    assert result.exit_code == 0 and "confusion matrix" in result.output
    assert run("eval", XOR, "--split", "nope").exit_code == 2
    empty = run("eval", XOR, "--split", "validation")
    assert empty.exit_code == 2 and "empty" in empty.output


def test_gradcheck_fails_loudly_when_beta_is_far_too_large():
    result = run("gradcheck", XOR, "--beta", "1e-3", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["passed"] is False


def test_report_writes_three_pngs(tmp_path):
    assert run("train", XOR, "--out", tmp_path / "r", "--epochs", 2).exit_code == 0
    result = run("report", tmp_path / "r")
    assert result.exit_code == 0, result.output
    paths = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert [p.split("/")[-1] for p in paths] == [
        "learning_curves.png",
        "conductances.png",
        "confusion.png",
    ]
    for p in paths:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_saves_the_last_complete_batch_and_resume_continues(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r"
    command = [sys.executable, "-m", "eqprop_cli", "train", str(XOR), "--out", str(out)]
    proc = subprocess.Popen(
        [*command, "--epochs", "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 60
    while not (out / "metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout, stderr)
    assert "interrupted: saved epoch" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    ckpt = load_checkpoint(out / CHECKPOINT)
    done = ckpt.state.epoch
    assert done >= 1 and len(ckpt.state.metrics) == done
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind
    resumed = run("train", out, "--resume", "--epochs", done + 2)
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(out / CHECKPOINT).state.epoch == done + 2


def test_paper_circuit_at_physical_values_learns():
    """The shipped Kendall circuit (1N4148 diodes, amplifiers, sources within 1 V) with its
    own recipe, on a slice of mnist-mini: one short epoch takes it far below chance."""
    spec = load_circuit(
        ROOT / "circuits" / "kendall2020-mnist.toml",
        [
            "training.dataset=mnist-mini",
            "training.train_subset=1500",
            "training.test_subset=300",
            "training.epochs=1",
        ],
    )
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    trainer = Trainer(network, spec, splits, dataset.n_classes)
    before = trainer.evaluate("test").error_rate
    state, _ = trainer.run(trainer.new_state(), 1)
    after = state.metrics[-1]["test_error"]
    assert before > 0.6 and after < before - 0.3, (before, after)
    assert state.metrics[-1]["not_converged"] == 0


@pytest.mark.parametrize("path", sorted((ROOT / "circuits").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_circuit_has_a_recipe_or_is_refused(path, tmp_path):
    """A circuit either carries a [training] recipe, documented with its result, or
    `eqprop train` refuses it (exit 2, nothing written): no silent default recipe."""
    spec = load_circuit(path)
    if spec.training is not None:
        assert "dataset" in spec.document["training"]
        docs = (ROOT / "README.md").read_text() + (ROOT / "BENCHMARKS.md").read_text()
        assert f"circuits/{path.name}" in docs
        return
    result = run("train", path, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "has no [training] section" in result.output
    assert not (tmp_path / "run").exists()
