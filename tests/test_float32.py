"""[solver] dtype = "float32": conductances and the products with them in float32, while node
voltages, sweeps and the stopping rule stay float64."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from randomcircuits import ROOT

from eqprop_cli import Network, compile_circuit, load_circuit, solve
from eqprop_cli.learn.gradcheck import compare
from eqprop_cli.learn.loss import ReadoutLoss
from eqprop_cli.learn.samples import training_data
from eqprop_cli.learn.train import (
    Trainer,
    parameter_groups,
    solver_settings,
    training_settings,
)


def mnist_like(n: int, features: int = 784, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, features)) * (rng.random((n, features)) < 0.25)


def test_float32_conductances_solve_as_float64_would():
    """The same (float32-representable) conductances: float32 rounds only the input
    products, so the equilibria agree far below the circuits' volt scale."""
    path = ROOT / "circuits" / "mnist-ideal.toml"
    n32 = Network(compile_circuit(load_circuit(path, ["solver.dtype=float32"])))
    n64 = Network(compile_circuit(load_circuit(path)))
    assert all(g.dtype == np.float32 for g in n32.g)
    assert all(g.dtype == np.float64 for g in n64.g)
    n64.set_conductances([g.astype(np.float64) for g in n32.g])
    x = mnist_like(16)
    a, b = solve(n32, x, tol=1e-13), solve(n64, x, tol=1e-13)
    assert a.success and b.success and a.voltages.dtype == np.float64
    assert np.abs(a.voltages - b.voltages).max() <= 1e-6  # inputs at +-40 V


@pytest.mark.parametrize(
    "name", ["xor", "mnist-mini", "mnist-ideal", "kendall2020-mnist", "mnist-ideal-2h"]
)
def test_gradcheck_cosine_at_float32_on_shipped_circuits(name):
    """EP's estimate at float32 is the gradient (overall cosine >= 0.999, as `eqprop
    gradcheck` asks) and agrees with float64's connection by connection."""
    smaller = ["hidden.0.size=100", "hidden.1.size=100"] if name.endswith("-2h") else []
    results = {}
    for dtype in ("float32", "float64"):
        spec = load_circuit(ROOT / "circuits" / f"{name}.toml", [f"solver.dtype={dtype}", *smaller])
        network = Network(compile_circuit(spec))
        settings = training_settings(spec)
        x = mnist_like(6, network.n_features)
        y = np.random.default_rng(2).integers(0, len(network.outputs), len(x))
        loss = ReadoutLoss(settings, len(network.outputs), len(network.outputs))
        groups = parameter_groups(network, settings, spec)
        solver = {**solver_settings(spec), "tol": 1e-3 * spec.solver.tol, "max_iter": 20_000}
        beta = float(settings.beta)
        results[dtype] = compare(network, groups, x, y, loss, beta, ("centred",), **solver)
    single, double = results["float32"]["centred"], results["float64"]["centred"]
    assert single["overall"].cosine >= 0.999
    for group, agreement in single.items():
        assert agreement.cosine == pytest.approx(double[group].cosine, abs=1e-5), group


def test_float32_training_follows_float64():
    """A few batches of mnist-mini: the same losses to float32's rounding, and the
    conductances and their optimizer state stay float32."""
    runs = {}
    for dtype in ("float64", "float32"):
        spec = load_circuit(
            ROOT / "circuits" / "mnist-mini.toml",
            [f"solver.dtype={dtype}", "training.train_subset=320", "training.test_subset=100"],
        )
        network = Network(compile_circuit(spec))
        dataset, splits = training_data(spec, network)
        trainer = Trainer(network, spec, splits, dataset.n_classes)
        calls = itertools.count()
        state, _ = trainer.run(trainer.new_state(), 1, should_stop=lambda c=calls: next(c) >= 8)
        runs[dtype] = (state, network)
    (s64, n64), (s32, n32) = runs["float64"], runs["float32"]
    assert all(g.dtype == np.float32 for g in n32.g)
    assert all(v.dtype == np.float32 for v in s32.optimizer["momentum"][: len(n32.g)])
    assert s32.running["loss"] == pytest.approx(s64.running["loss"], rel=1e-4)
    for g32, g64 in zip(n32.g, n64.g, strict=True):  # apart by rounding (and a kink or two)
        assert np.abs(g32 - g64).max() <= 1e-4 * np.abs(g64).max()


def test_float32_conductance_map_reads_back(tmp_path):
    """A map of float32 conductances lists resistances that agree with them to float64
    (the reader refuses a pair that disagrees by more than 1e-9), and reads back exactly."""
    from eqprop_cli.hardware.devicemap import conductance_map, read_map

    path = ROOT / "circuits" / "xor.toml"
    network = Network(compile_circuit(load_circuit(path, ["solver.dtype=float32"])))
    rng = np.random.default_rng(0)
    network.set_conductances([g * rng.uniform(0.5, 2.0, g.shape) for g in network.g])
    saved = [g.copy() for g in network.g]
    (tmp_path / "map.csv").write_text(conductance_map(network).to_csv())
    network.set_conductances([2 * g for g in saved])
    read_map(tmp_path / "map.csv", network)
    for g, want in zip(network.g, saved, strict=True):
        np.testing.assert_array_equal(g, want)
