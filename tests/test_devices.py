"""The device contract (eqprop_cli/devices/protocol.py), one row per device kind and model.

Every row is a [devices] table as a circuit file writes it. For each row:
- a nonlinear two-terminal model (IVModel): current = dE/dv and conductance =
  dI/dv by central differences, a monotone curve, zero energy at 0 V;
- a trainable model (TrainableModel): branch current = dE/dv, dE/dtheta by
  differences of the energy in theta, EP's estimate from two sets of potentials
  equal to the difference of dE/dtheta summed, the adjoint gradient equal to
  -w sum d(dE/dtheta)/dv times the adjoint drop; a set's energy and currents (what
  the network sums) those of its elements, and the protocol of its role;
- a random circuit built around the device solves to ngspice's node voltages
  within 1e-6 V.
A new device kind or diode model adds a row: ``test_every_kind_and_model_has_a_row``
fails until it does.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import randomcircuits as rc

import eqprop_cli
from eqprop_cli import Network, compile_circuit, parse_circuit, solve
from eqprop_cli.circuit.spec import load_circuit
from eqprop_cli.devices import (
    DEVICE_KINDS,
    DIODE_PARTS,
    ConductanceModel,
    CurrentModel,
    IVModel,
    TrainableModel,
)
from eqprop_cli.devices.protocol import ROLES
from eqprop_cli.hardware.devicemap import conductance_map, level_ranges, quantise
from eqprop_cli.hardware.spice import export_spice, run_ngspice, spice_node_names
from eqprop_cli.learn.samples import training_data
from eqprop_cli.learn.train import Trainer

ROWS = {
    "resistor": 'type = "resistor"\ninit = "uniform"\ninit_low = "0.2m"\ninit_high = "2m"\n'
    'g_min = "1u"\ng_max = "10m"\nseed = 3\n',
    "diode/ideal": 'type = "diode"\nmodel = "ideal"\nthreshold = 0.15\ng_on = "3m"\n',
    "diode/hard clamp": 'type = "diode"\nmodel = "ideal"\nthreshold = 0.1\ng_on = "inf"\n',
    "diode/shockley": 'type = "diode"\nmodel = "shockley"\nis = "1e-12"\nn = 1.4\n'
    "temperature = 310\n",
    "diode/shockley rs": 'type = "diode"\nmodel = "shockley"\nis = "2e-9"\nn = 1.6\nrs = "500"\n',
    **{
        f"diode/{part}": f'type = "diode"\nmodel = "{part}"\ntemperature = 300.15\n'
        for part in DIODE_PARTS
    },
    "vsource": 'type = "vsource"\nvalue = 0.35\n',
    "isource": 'type = "isource"\ncurrent = "40u"\ni_min = "-100u"\ni_max = "100u"\n',
    "amplifier": 'type = "amplifier"\ngain = 2.5\n',
    "memristor": 'type = "memristor"\nr_on = "1k"\nr_off = "100k"\nstate = 0.4\n'
    "spread = 0.3\nseed = 2\n",
}


def row_kind(row: str) -> str:
    return row.split("/")[0]


def circuit(row: str, seed: int) -> str:
    """A random netlist around device "dut" of the row: resistor meshes between two
    inputs and ground, the device in the role its element group plays."""
    rng = np.random.default_rng(seed)
    group = DEVICE_KINDS[row_kind(row)].element_group
    resistor = "dut" if group == "resistor" else "w"
    text = f'[circuit]\nname = "contract"\n\n[devices.dut]\n{ROWS[row]}\n'
    text += '[devices.w]\ntype = "resistor"\ng = "0.1m"\ng_min = "1u"\ng_max = "10m"\n'
    n = 6
    elements = []

    def add(name: str, device: str, a: str, b: str, extra: str = "") -> None:
        elements.append(
            f'[[elements]]\nname = "{name}"\ndevice = "{device}"\nnodes = ["{a}", "{b}"]\n{extra}'
        )

    for i in range(1, n):
        add(f"Rt{i}", resistor, f"n{int(rng.integers(0, i))}", f"n{i}")
    for k in range(4):
        i, j = rng.choice(n, 2, replace=False)
        add(f"Rx{k}", resistor, f"n{i}", f"n{j}")
    add("Rg", resistor, f"n{n - 1}", "gnd")
    outputs = f"n{n - 2}"
    if group == "diode":  # forward one way, then the other: some conduct at either sign
        for k in range(4):
            node = f"n{int(rng.integers(2, n))}"
            add(f"D{k}", "dut", *((node, "gnd") if k % 2 else ("gnd", node)))
    elif group == "isource":
        for k in range(3):
            add(f"I{k}", "dut", f"n{int(rng.integers(2, n))}", "gnd")
    elif group == "vsource":
        add("V0", "dut", "rail", "gnd")
        add("Rr", resistor, "rail", f"n{int(rng.integers(2, n))}")
    elif group == "amplifier":  # drives a second mesh that returns to ground on its own
        add("A0", "dut", f"n{int(rng.integers(2, n))}", "m0")
        add("Rm0", resistor, "m0", "m1")
        add("Rm1", resistor, "m1", "gnd")
        outputs = "m1"
    text += f'[netlist]\ninputs = ["n0", "n1"]\noutputs = ["{outputs}"]\n\n' + "\n".join(elements)
    return text


def model_of(row: str):
    """The typed model that parsing builds from the row's table."""
    spec = parse_circuit(circuit(row, 0))
    return spec.devices["dut"].model


def test_every_kind_and_model_has_a_row():
    kinds = {row_kind(r) for r in ROWS}
    assert kinds == set(DEVICE_KINDS)
    models = DEVICE_KINDS["diode"].param("model").choices
    assert {r.split("/")[1] for r in ROWS if r.startswith("diode/")} >= {
        m for m in models if m not in ("ideal", "shockley")
    }


# --------------------------------------------------------------------------- I-V models

IV_ROWS = [r for r in ROWS if row_kind(r) == "diode"]
VOLTS = np.concatenate([np.linspace(-1.0, 0.9, 191), [-0.05, 0.0, 0.05]])


@pytest.mark.parametrize("row", IV_ROWS)
def test_iv_model_current_is_the_energy_derivative(row):
    model = model_of(row)
    assert isinstance(model, IVModel)
    if model.hard:  # a bound, not an energy term: no current below it, none defined above
        assert np.all(model.conductance(VOLTS[model.zero_current_voltage > VOLTS]) == 0)
        assert not model.conducts_dc and model.on_conductance == 0
        return
    v = VOLTS[np.abs(VOLTS - model.zero_current_voltage) > 1e-3]  # not at an ideal kink
    h = 1e-6
    i, g = model.current_and_conductance(v)
    np.testing.assert_array_equal(i, model.current(v))
    np.testing.assert_array_equal(g, model.conductance(v))
    dE = (model.energy(v + h) - model.energy(v - h)) / (2 * h)
    np.testing.assert_allclose(dE, i, rtol=1e-6, atol=1e-12 * max(1.0, np.abs(i).max()))
    dI = (model.current(v + h) - model.current(v - h)) / (2 * h)
    np.testing.assert_allclose(dI, g, rtol=1e-5, atol=1e-12 * max(1.0, g.max()))
    assert np.all(g >= 0) and np.all(np.diff(model.current(np.sort(v))) >= 0)
    assert model.current(np.array([model.zero_current_voltage]))[0] == pytest.approx(0, abs=1e-18)
    assert abs(model.energy(np.zeros(1))[0]) <= 1e-15


@pytest.mark.parametrize("row", IV_ROWS)
def test_iv_model_exponential_is_its_curve(row):
    """``exponential`` (what the layered solver stacks in closed form) is the I-V itself
    where it is given; a series resistance or a piecewise-linear curve gives none."""
    model = model_of(row)
    if model.exponential is None:
        # not a junction (piecewise linear), or one behind its series resistance
        assert model.thermal_voltage is None or model.series_resistance > 0
        return
    Is, nvt = model.exponential
    v = np.linspace(-0.5, 0.5, 101)
    np.testing.assert_allclose(model.current(v), Is * np.expm1(v / nvt), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- trainable models

TRAINABLE_ROWS = [r for r in ROWS if isinstance(model_of(r), TrainableModel)]


def test_trainable_rows_are_the_programmable_resistors_and_the_current_source():
    assert {row_kind(r) for r in TRAINABLE_ROWS} == {"resistor", "isource", "memristor"}


@pytest.mark.parametrize("row", TRAINABLE_ROWS)
def test_trainable_model_parameter_derivative(row):
    model = model_of(row)
    rng = np.random.default_rng(1)
    v = rng.uniform(-1, 1, 50)
    theta = rng.uniform(0.1, 2.0, 50) * 1e-3
    h = 1e-6
    dE_dv = (model.energy(v + h, theta) - model.energy(v - h, theta)) / (2 * h)
    np.testing.assert_allclose(dE_dv, model.branch_current(v, theta), rtol=1e-7, atol=1e-15)
    step = 1e-9
    dE_dtheta = (model.energy(v, theta + step) - model.energy(v, theta - step)) / (2 * step)
    np.testing.assert_allclose(dE_dtheta, model.energy_derivative(v), rtol=1e-6, atol=1e-12)
    assert model.low <= model.high


@pytest.mark.parametrize("row", TRAINABLE_ROWS)
@pytest.mark.parametrize("dense", [False, True])
def test_ep_estimate_and_adjoint_gradient_follow_the_parameter_derivative(row, dense):
    """ep_estimate sums dE/dtheta(V^a) - dE/dtheta(V^b); adjoint_gradient sums
    -d(dE/dtheta)/dv times the adjoint drop; both against a plain computation."""
    model = model_of(row)
    if dense and row_kind(row) != "resistor":
        return  # current sources are pairs, never a crossbar
    rng = np.random.default_rng(2)
    batch, n_p, n_q = 5, 3, 4
    P = [rng.uniform(-1, 1, (batch, n_p)) for _ in range(2)]
    Q = [rng.uniform(-1, 1, (batch, n_q if dense else n_p)) for _ in range(2)]
    w, factor = 0.5, 3.0

    def drops(Pk, Qk):
        return Pk[:, :, None] - Qk[:, None, :] if dense else Pk - Qk

    expected = (
        w
        * (
            model.energy_derivative(drops(P[0], Q[0])) - model.energy_derivative(drops(P[1], Q[1]))
        ).sum(axis=0)
        * factor
    )
    got = model.ep_estimate(w, P[0], P[1], Q[0], Q[1], dense, False, factor)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    L = [rng.uniform(-1, 1, (batch, n_p)), rng.uniform(-1, 1, Q[0].shape)]
    h = 1e-6  # d(dE/dtheta)/dv by central differences
    V = drops(P[0], Q[0])
    slope = (model.energy_derivative(V + h) - model.energy_derivative(V - h)) / (2 * h)
    expected = -w * (slope * drops(L[0], L[1])).sum(axis=0)
    got = model.adjoint_gradient(w, L[0], L[1], P[0], Q[0], dense)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("row", TRAINABLE_ROWS)
@pytest.mark.parametrize("dense", [False, True])
def test_set_energy_and_currents_sum_the_elements(row, dense):
    """A set's energy and currents, as the network sums them, are its elements' energy
    (times their stage weights) and branch currents, added up node by node; its model
    keeps the protocol of its role (stamped into Q, or linear terms)."""
    model = model_of(row)
    if dense and row_kind(row) == "isource":
        return  # current sources are pairs, never a crossbar
    role = CurrentModel if model.quantity == "current" else ConductanceModel
    assert isinstance(model, role)
    rng = np.random.default_rng(3)
    n, batch = 7, 4
    V = rng.uniform(-1, 1, (batch, n))
    if dense:
        p, q = np.array([0, 2, 5]), np.array([1, 3, 4, 6])
        theta = rng.uniform(0.1, 2.0, (3, 4)) * 1e-3
        weight = rng.uniform(0.5, 2.0, (3, 4))
        first, second = np.repeat(p, len(q)), np.tile(q, len(p))
    else:
        p, q = np.array([0, 2, 5, 2, 6]), np.array([1, 3, 4, 0, 2])
        theta = rng.uniform(0.1, 2.0, 5) * 1e-3
        weight = rng.uniform(0.5, 2.0, 5)
        first, second = p, q
    v = V[:, first] - V[:, second]
    expected = model.energy(v, theta.ravel()) @ weight.ravel()
    got = model.set_energy(V, (p, q, dense), theta, weight)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-18)
    i = model.branch_current(v, theta.ravel())
    expected = np.zeros((batch, n))
    for k in range(len(first)):
        expected[:, first[k]] += i[:, k]
        expected[:, second[k]] -= i[:, k]
    got = np.zeros((batch, n))
    model.add_set_currents(got, V, (p, q, dense), theta)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-18)


# --------------------------------------------------------------------------- the roles are the contract

PACKAGE = Path(eqprop_cli.__file__).parent
DEVICES = PACKAGE / "devices"


def declared(role: type) -> set[str]:
    """What a role (protocol) declares: its attributes, methods and properties, its bases'."""
    names: set[str] = set()
    for base in role.__mro__:
        if base is not object and base.__module__ != "typing":
            names |= set(getattr(base, "__annotations__", {}))
            names |= {k for k in vars(base) if not k.startswith("_")}
    return names


def only_declared(model: object, group: str, undeclared: list[str]) -> object:
    """``model`` (a copy, of a subclass) that records in ``undeclared`` every read of an
    attribute its group's role does not declare by code of eqprop_cli outside devices/."""
    names = declared(ROLES[group])

    def getattribute(self, name):
        if name not in names and not name.startswith("__"):
            caller = sys._getframe(1)
            where = caller.f_code.co_filename
            if where.startswith(str(PACKAGE)) and not where.startswith(str(DEVICES)):
                spot = f"{Path(where).relative_to(PACKAGE)}:{caller.f_lineno}"
                undeclared.append(f"{group}: {type(model).__name__}.{name} read at {spot}")
        return object.__getattribute__(self, name)

    cls = type(f"Only{type(model).__name__}", (type(model),), {"__getattribute__": getattribute})
    copy = object.__new__(cls)
    for key, value in vars(model).items():
        object.__setattr__(copy, key, value)
    return copy


def test_code_outside_the_devices_reads_only_what_each_role_declares():
    """Every row's circuit compiled, solved and exported, and the paper circuit (diodes,
    amplifiers, biases) trained a batch, exported and mapped to levels, with each device's
    model seen through its role (devices/protocol.py ROLES): no other attribute is read,
    so a new kind that keeps its role's protocol works everywhere."""
    undeclared: list[str] = []

    def restricted(spec):
        for name, d in list(spec.devices.items()):
            spec.devices[name] = replace(d, model=only_declared(d.model, d.group, undeclared))
        return spec

    for row in ROWS:
        spec = parse_circuit(circuit(row, 0))
        model = spec.devices["dut"].model
        assert isinstance(model, ROLES[spec.devices["dut"].group]), row
        net = Network(compile_circuit(restricted(spec)))
        x = np.random.default_rng(0).uniform(-1.0, 1.0, (2, net.n_features))
        assert solve(net, x).success
        export_spice(net, x[0])
    sets = ("dataset", "train_subset", "test_subset", "batch_size")
    values = ('"mnist-mini"', 32, 16, 32)
    paper = rc.ROOT / "circuits" / "kendall2020-mnist.toml"
    overrides = [f"training.{k}={v}" for k, v in zip(sets, values, strict=True)]
    spec = restricted(load_circuit(paper, [*overrides, "devices.mem.levels=16"]))
    net = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, net)
    trainer = Trainer(net, spec, splits, dataset.n_classes)
    trainer.run(trainer.new_state(), 1)
    export_spice(net, np.zeros(net.n_features))
    quantise(conductance_map(net), level_ranges(net, None, None)).to_csv()
    assert ROLES.keys() == {d.group for d in spec.devices.values()} | {"vsource"}
    assert not undeclared, "\n".join(sorted(set(undeclared)))


# --------------------------------------------------------------------------- against ngspice


@pytest.mark.parametrize("row", list(ROWS))
def test_random_circuit_of_each_device_matches_ngspice(ngspice, row):
    worst = 0.0
    for seed in range(2):
        net = Network(compile_circuit(parse_circuit(circuit(row, seed))))
        inputs = np.random.default_rng(seed).uniform(-1.0, 1.0, (2, net.n_features))
        eq = solve(net, inputs, method="newton", tol=1e-14, max_iter=500)
        assert eq.success, eq.message
        names = spice_node_names(net)
        for b, x in enumerate(inputs):
            theirs = run_ngspice(export_spice(net, x))
            for i, name in enumerate(names[1:], 1):
                worst = max(worst, abs(theirs[name] - eq.voltages[b, i]))
    assert worst <= 1e-6


def test_layered_amplifier_circuit_matches_ngspice(ngspice):
    """The amplifier's other setting: between layers, with diodes and biases."""
    text, n = rc.layered(5, "shockley", amplifier=True)
    net = Network(compile_circuit(parse_circuit(text)))
    assert net.amplifiers
    x = np.random.default_rng(5).uniform(-1, 1, n)
    eq = solve(net, x[None, :], method="newton", tol=1e-14, max_iter=500)
    theirs = run_ngspice(export_spice(net, x))
    names = spice_node_names(net)
    assert max(abs(theirs[m] - eq.voltages[0, i]) for i, m in enumerate(names) if i) <= 1e-6
