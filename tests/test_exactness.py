"""The solver is right at its default settings: within 1e-9 V of exact answers computed
independently (closed forms, brentq on reduced equations, a 50-digit reference), never
"converged" when it is not, and exit status 3 when it is not."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import randomcircuits as rc
from randomcircuits import ROOT
from reference import exact_voltages
from scipy.optimize import brentq
from test_solver import chain, network, voltage
from typer.testing import CliRunner

from eqprop_cli import Network, compile_circuit, parse_circuit, solve
from eqprop_cli.circuit.params import thermal_voltage
from eqprop_cli.cli import app
from eqprop_cli.hardware.spice import export_spice, run_ngspice

VTOL = 1e-9  # the default voltage tolerance: what "converged" promises
NVT = thermal_voltage(300.15)  # default Shockley diode: Is = 1e-14 A, n = 1, 300.15 K
IS = 1e-14
runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def resistors(**conductances: str) -> str:
    return "".join(
        f'[devices.{k}]\ntype = "resistor"\ng = "{v}"\n' for k, v in conductances.items()
    )


def sources(**volts: float) -> str:
    return "".join(f'[devices.{k}]\ntype = "vsource"\nvalue = {v}\n' for k, v in volts.items())


SHOCKLEY = '[devices.d]\ntype = "diode"\nmodel = "shockley"\n'


def divider(middle: str, amplifier: bool = False) -> str:
    """1 V -- 0.1 uS -- a -- middle -- b -- 0.1 uS -- gnd (b also drives an amplifier stage)."""
    devices = resistors(g1="0.1u", g2=middle, g3="0.1u", gc="0.2u") + sources(one=1.0)
    devices += '[devices.amp]\ntype = "amplifier"\ngain = 3.0\n'
    elements = [
        ("V", "one", "s", "gnd"),
        ("R1", "g1", "s", "a"),
        ("R2", "g2", "a", "b"),
        ("R3", "g3", "b", "gnd"),
    ]
    if amplifier:  # c = 3 b, loaded by gc: b loses gc * c / 3 = gc * b through the amplifier
        elements += [("A", "amp", "b", "c"), ("R4", "gc", "c", "gnd")]
    return chain(elements, devices, inputs="[]", outputs='["a"]')


@pytest.mark.parametrize(
    ("middle", "amplifier", "method"),
    [("1u", False, "layered"), ("1m", False, "layered+newton"), ("1m", True, "layered+newton")],
)
def test_stiff_dividers_are_exact(middle, amplifier, method):
    """Issue cases 1 and 2: a residual in amperes hid volts of error; the sweeps crawled."""
    net = network(divider(middle, amplifier))
    eq = solve(net, np.zeros((1, 0)))
    g1 = g3 = Fraction(1, 10**7)
    g2 = Fraction(middle.replace("u", "e-6").replace("m", "e-3"))
    g3 += Fraction(2, 10**7) if amplifier else 0
    # a: g1 (1 - a) = g2 (a - b); b: g2 (a - b) = g3 b
    a = g1 / (g1 + g2 - g2 * g2 / (g2 + g3))
    b = g2 * a / (g2 + g3)
    assert eq.success and eq.method == method, eq.message
    assert abs(voltage(net, eq, "a")[0] - float(a)) <= VTOL
    assert abs(voltage(net, eq, "b")[0] - float(b)) <= VTOL
    assert np.all(eq.error <= VTOL)
    if amplifier:
        assert abs(voltage(net, eq, "c")[0] - 3 * float(b)) <= 3 * VTOL


def test_layered_only_still_reports_the_crawl():
    """Asked for the layered solver alone, the stiff divider is "not converged", honestly."""
    net = network(divider("1m"))
    eq = solve(net, np.zeros((1, 0)), method="layered")
    assert not eq.success and "estimated voltage error" in eq.message


STALL = chain(
    [
        ("Va", "va", "a", "gnd"),
        ("Vh", "vh", "h", "gnd"),
        ("Vb", "vb", "b", "gnd"),
        ("R1", "small", "y", "a"),
        ("R2", "big", "m", "y"),
        ("D1", "d", "m", "h"),
        ("R3", "small", "a", "p"),
        ("D2", "d", "q", "p"),
        ("R4", "small", "q", "r"),
        ("R5", "big", "r", "s"),
        ("R6", "big", "s", "b"),
    ],
    '[devices.small]\ntype = "resistor"\nr = 123355.93\n'
    '[devices.big]\ntype = "resistor"\nr = 2049213.6\n'
    + SHOCKLEY
    + sources(va=0.0574, vh=-1.66, vb=-0.9163),
    inputs="[]",
    outputs='["y"]',
)


def test_newton_stall_case_is_exact():
    """Issue case 3: 1000 Newton steps ended at 910 V; two diode chains, each solved by brentq."""
    net = network(STALL)
    eq = solve(net, np.zeros((1, 0)))
    assert eq.success, eq.message
    Va, Vh, Vb, small, big = 0.0574, -1.66, -0.9163, 123355.93, 2049213.6

    def diode(v: float) -> float:
        return IS * math.expm1(v / NVT)

    # chain a -R1- y -R2- m -D1-> h carries I: I = diode(Va - I (R1 + R2) - Vh)
    current = brentq(lambda i: diode(Va - i * (small + big) - Vh) - i, -IS, 1.0, xtol=1e-30)
    # chain a -R3- p <-D2- q -R4- r -R5- s -R6- b carries K from a to b: K = -diode(Vq - Vp)
    R = small + 2 * big

    def k_balance(k: float) -> float:
        return k + diode(Vb + k * R - (Va - k * small))

    k = brentq(k_balance, -1.0, IS, xtol=1e-30)
    exact = {
        "y": Va - current * small,
        "m": Va - current * (small + big),
        "p": Va - k * small,
        "q": Vb + k * R,
        "r": Vb + k * 2 * big,
        "s": Vb + k * big,
    }
    for name, value in exact.items():
        assert abs(voltage(net, eq, name)[0] - value) <= VTOL, name
    assert abs(exact["y"] - -0.0138654633) <= 1e-10  # ngspice's figure in the issue


ISLANDS = chain(
    [
        ("Va", "v", "a", "gnd"),
        ("R1", "w", "a", "p"),
        ("D1", "d", "gnd", "z"),
        ("D2", "d", "a", "q1"),
        ("R2", "w", "q1", "q2"),
    ],
    resistors(w="5e-5") + SHOCKLEY + sources(v=-0.59),
    inputs="[]",
    outputs='["p"]',
)


def test_diode_only_islands_are_solved_not_a_crash(tmp_path):
    """Issue case 4: nodes held by diodes only sit where their diodes carry no current."""
    path = tmp_path / "islands.toml"
    path.write_text(ISLANDS)
    assert run("check", path).exit_code == 0
    result = run("solve", path, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["converged"] and doc["error"] <= VTOL
    # z: D1 carries no current at V(z) = 0; q1, q2: D2 none at V(q1) = V(a), and R2 none
    exact = {"a": -0.59, "p": -0.59, "z": 0.0, "q1": -0.59, "q2": -0.59}
    for name, value in exact.items():
        assert abs(doc["nodes"][name] - value) <= VTOL, name


def test_island_held_by_reverse_current_matches_brentq_and_ngspice(ngspice):
    """A node held through 1 pS against a reverse-biased diode: its reverse current sets it.

    ngspice's own diode differs from Shockley's law below -3 n Vt, and its GMIN (1e-12 S)
    would carry more than the reverse current: the export takes both back out.
    """
    text = chain(
        [("V1", "v", "a", "gnd"), ("R1", "r", "a", "b"), ("D1", "d", "gnd", "b")],
        '[devices.r]\ntype = "resistor"\ng = "1e-12"\ng_min = "1e-13"\n'
        + SHOCKLEY
        + sources(v=0.5),
        inputs="[]",
        outputs='["b"]',
    )
    net = network(text)
    eq = solve(net, np.zeros((1, 0)))
    exact = brentq(lambda b: (0.5 - b) * 1e-12 + IS * math.expm1(-b / NVT), 0.0, 0.5, xtol=1e-16)
    assert 0.489 < exact < 0.491  # about 10 mV below the source: 10 fA through 1 pS
    assert eq.success and abs(voltage(net, eq, "b")[0] - exact) <= VTOL
    netlist = export_spice(net, np.zeros(0))
    theirs = run_ngspice(netlist)
    assert abs(theirs["b"] - exact) <= 1e-12


def test_kilosiemens_next_to_picosiemens():
    """Issue 10, finding 14: 1 kS next to 1 pS with a diode once gave 0.238 V, "converged".

    s (1 V) -- 1 pS -- a -- 1 kS -- b, b -- 1 pS -- gnd, diode b -> gnd: a and b are
    tied, and the node sits where the diode carries what 1 pS brings in, about 0.11 V.
    """
    text = chain(
        [
            ("V", "one", "s", "gnd"),
            ("R1", "pico", "s", "a"),
            ("R2", "kilo", "a", "b"),
            ("R3", "pico", "b", "gnd"),
            ("D", "d", "b", "gnd"),
        ],
        '[devices.pico]\ntype = "resistor"\ng = "1e-12"\ng_min = "1e-13"\n'
        '[devices.kilo]\ntype = "resistor"\ng = "1e3"\ng_max = "1e4"\n'
        + SHOCKLEY
        + sources(one=1.0),
        inputs="[]",
        outputs='["b"]',
    )
    net = network(text)
    g, G = 1e-12, 1e3

    def balance(b: float) -> float:
        # KCL at b, with a from KCL at a, g (1 - a) = G (a - b): G (a - b) = G g (1 - b) / (g + G)
        return G * g * (1 - b) / (g + G) - g * b - IS * math.expm1(b / NVT)

    exact_b = brentq(balance, 0.0, 1.0, xtol=1e-16)
    exact_a = (g + G * exact_b) / (g + G)
    for method in ("auto", "newton", "layered"):
        eq = solve(net, np.zeros((1, 0)), method=method)
        right = abs(voltage(net, eq, "b")[0] - exact_b) <= VTOL
        right &= abs(voltage(net, eq, "a")[0] - exact_a) <= VTOL
        assert right if method != "layered" else (right or not eq.success), (method, eq.message)
        assert eq.success or method == "layered"
    assert abs(exact_b - 0.1128) < 1e-4  # the finding's exact value


def test_solve_exits_3_when_a_sample_does_not_converge(tmp_path):
    """Issue case 5: a solve that ends "not converged" exited 0."""
    path = tmp_path / "stiff.toml"
    path.write_text(divider("1m"))
    result = run("solve", path, "--method", "layered", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["converged"] is False
    assert "not converged" in result.stderr
    assert run("solve", path, "--json").exit_code == 0  # auto hands over to Newton
    bad = run("solve", path, "--vtol", "0")
    assert bad.exit_code == 2 and "--vtol" in bad.stderr


def test_train_stops_on_an_equilibrium_that_fails(tmp_path):
    """Training stops with exit 3 and one message, and saves its last complete batch."""
    out = tmp_path / "run"
    xor = ROOT / "circuits" / "xor.toml"
    result = run("train", xor, "--out", out, "--set", "solver.max_iter=1")
    assert result.exit_code == 3, result.output
    assert "did not converge" in result.stderr and "Traceback" not in result.output
    assert "epoch 1, batch 1" in result.stderr and "--resume" in result.stderr
    assert (out / "checkpoint.npz").is_file()
    again = run("train", out, "--resume", "--set", "solver.max_iter=1")
    assert again.exit_code != 0 and "Traceback" not in again.output


@pytest.mark.parametrize("seed", range(8))
def test_random_circuits_agree_with_ngspice_at_default_settings(ngspice, seed):
    """Every device and topology (no diode-only islands: ngspice fails or stops off on
    those), resistors of 1e-7 to 1e-3 S, default settings: within 1e-8 V."""
    text, n = rc.anything(seed, islands=False)
    net = Network(compile_circuit(parse_circuit(text)))
    inputs = np.random.default_rng(seed).uniform(-1, 1, (2, n))
    eq = solve(net, inputs)
    assert eq.success, eq.message
    rc.assert_agrees_with_ngspice(net, inputs, eq, 1e-8)


@pytest.mark.parametrize(
    ("seed", "conductances"),
    [(s, (1e-7, 1e-3)) for s in range(6)] + [(s, (1e-12, 1e3)) for s in (0, 1, 2, 3)],
)
def test_converged_means_within_vtol_of_the_exact_answer(seed, conductances):
    """Random circuits with diode-only islands, also with 1 pS next to 1 kS: against the
    50-digit reference, every sample reported converged is within vtol, and they converge."""
    text, n = rc.anything(seed, islands=True, conductances=conductances)
    net = Network(compile_circuit(parse_circuit(text)))
    inputs = np.random.default_rng(seed).uniform(-1, 1, (2, n))
    eq = solve(net, inputs)
    assert eq.success, eq.message
    for b in range(len(inputs)):
        exact = exact_voltages(net, inputs[b], eq.voltages[b])
        assert np.abs(eq.voltages[b] - exact).max() <= VTOL
        assert eq.error[b] <= VTOL
