"""ngspice is the oracle: exported netlists solve to our node voltages within 1e-6 V."""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
import pytest
import randomcircuits as rc
from randomcircuits import ROOT

from eqprop_cli import EqpropError, Network, compile_circuit, load_network, parse_circuit, solve
from eqprop_cli.hardware.spice import export_spice, ngspice_op, run_ngspice, spice_node_names


def _compare(net: Network, inputs: np.ndarray) -> float:
    """Largest |V_ngspice - V_eqprop| over every node and sample."""
    eq = solve(net, inputs, method="newton" if net.n_vars < 50 else "auto", tol=1e-14, max_iter=500)
    assert eq.success, eq.message
    names = spice_node_names(net)
    worst = 0.0
    for b, x in enumerate(inputs):
        ours = eq.voltages[b]
        try:
            theirs = run_ngspice(export_spice(net, x))
        except EqpropError:
            # rare stiff cases (a clamp at an amplifier's input): start ngspice from a guess;
            # it releases the guess and converges to its own solution, still an oracle
            theirs = run_ngspice(export_spice(net, x, nodeset=ours))
        for i, name in enumerate(names):
            if name == "0":
                continue
            assert name in theirs, f"ngspice did not report node {name}"
            worst = max(worst, abs(theirs[name] - ours[i]))
    return worst


@pytest.mark.parametrize("diode", ["shockley", "series", "part", "ideal", "clamp"])
@pytest.mark.parametrize("seed", range(4))
def test_random_layered_circuits_match_ngspice(ngspice, diode, seed):
    text, n = rc.layered(seed, diode)
    net = Network(compile_circuit(parse_circuit(text)))
    inputs = np.random.default_rng(seed).uniform(-1.5, 1.5, (2, n))
    assert _compare(net, inputs) <= 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_random_netlists_match_ngspice(ngspice, seed):
    text, n = rc.netlist(seed)
    net = Network(compile_circuit(parse_circuit(text)))
    inputs = np.random.default_rng(seed).uniform(-1.5, 1.5, (2, n))
    assert _compare(net, inputs) <= 1e-6


@pytest.mark.parametrize("name", ["xor", "bridge-network"])
def test_shipped_small_circuits_match_ngspice(ngspice, name):
    net = load_network(ROOT / "circuits" / f"{name}.toml")
    inputs = np.random.default_rng(0).uniform(-1, 1, (2, net.n_features))
    assert _compare(net, inputs) <= 1e-6


@pytest.mark.parametrize("name", ["xor", "bridge-network"])
def test_the_control_block_prints_the_predicted_class(ngspice, name):
    """The netlist's own .control block prints the class and its readout, also with a
    single readout (bridge-network), which ngspice holds as a scalar it cannot index."""
    net = load_network(ROOT / "circuits" / f"{name}.toml")
    x = np.full(net.n_features, 0.5)
    _, printed = ngspice_op(export_spice(net, x))
    found = re.search(r"predicted class: (\d+), readout (\S+) V", printed)
    assert found, printed[-2000:]
    readout = solve(net, x[None, :], tol=1e-14).outputs()[0]
    assert int(found.group(1)) == int(np.argmax(readout))
    assert float(found.group(2)) == pytest.approx(readout.max(), abs=1e-6)


def test_netlist_conventions():
    text, n = rc.layered(2, "shockley")
    net = Network(compile_circuit(parse_circuit(text)))
    netlist = export_spice(net, np.ones(n))
    resistors = [ln for ln in netlist.splitlines() if ln.startswith("R")]
    assert len(resistors) == sum(r.count for r in net.resistors)
    for line in resistors:  # ohms in exponent notation: no m / meg suffix traps
        assert re.fullmatch(r"R\d+_\d+(_\d+)? \S+ \S+ [0-9.]+e[+-]\d+( ; .*)?", line), line
    assert ".model" in netlist and ".op" in netlist and ".options" in netlist
    assert "* connection input->h1" in netlist
    if net.amplifiers:
        assert re.search(r"^EA0 .*\n^VA0 .* DC 0\n^FA0 ", netlist, re.M)
    g = net.g[0]
    first = next(ln for ln in resistors if ln.startswith("R0_0_0 "))
    assert float(first.split()[3]) == pytest.approx(1 / g[0, 0], rel=1e-15)


def test_node_names_cannot_collide_with_amplifier_internals(ngspice):
    text = """
[devices.r]
type = "resistor"
g = "1m"
[devices.amp]
type = "amplifier"
gain = 2.0
[netlist]
inputs = ["x"]
outputs = ["o"]
[[elements]]
name = "R1"
device = "r"
nodes = ["x", "xamp0"]
[[elements]]
name = "R2"
device = "r"
nodes = ["xamp0", "gnd"]
[[elements]]
name = "A"
device = "amp"
nodes = ["xamp0", "o"]
[[elements]]
name = "R3"
device = "r"
nodes = ["o", "gnd"]
"""
    net = Network(compile_circuit(parse_circuit(text)))
    assert _compare(net, np.array([[1.0]])) <= 1e-9
    assert len(set(spice_node_names(net))) == net.n_nodes


def test_paper_circuit_matches_ngspice(ngspice):
    """The 784-100-10 circuit of Kendall et al. (Shockley diodes, amplifiers): one full .op."""
    net = load_network(ROOT / "circuits" / "kendall2020-mnist.toml")
    image = np.random.default_rng(5).random((1, 784))
    assert _compare(net, image) <= 1e-6


SERIES_CIRCUIT = """
[devices.r1]
type = "resistor"
g = "{g1}"
[devices.r2]
type = "resistor"
g = "1m"
[devices.d]
type = "diode"
{model}
[netlist]
inputs = ["x"]
outputs = ["o"]
[[elements]]
name = "R1"
device = "r1"
nodes = ["x", "a"]
[[elements]]
name = "D1"
device = "d"
nodes = ["a", "gnd"]
[[elements]]
name = "R2"
device = "r2"
nodes = ["a", "o"]
[[elements]]
name = "D2"
device = "d"
nodes = ["o", "gnd"]
[[elements]]
name = "R3"
device = "r2"
nodes = ["o", "gnd"]
"""


@pytest.mark.parametrize(
    ("model", "g1"),
    [
        ('model = "shockley"\nis = "1n"\nn = 1.5\nrs = "2k"', "1m"),
        ('model = "1N4148"', "10m"),
        ('model = "sky130-pw2nd"', "1m"),
    ],
)
def test_series_resistance_and_parts_match_ngspice(ngspice, model, g1):
    """Diodes in forward conduction, their series resistance dropping millivolts or more:
    our exact elimination of the internal node agrees with ngspice's D model and its RS
    element."""
    net = Network(compile_circuit(parse_circuit(SERIES_CIRCUIT.format(model=model, g1=g1))))
    inputs = np.array([[3.0], [1.0], [-1.0]])
    assert ".model DM0 D(" in export_spice(net, inputs[0])
    assert _compare(net, inputs) <= 1e-6
    # the resistance matters here: without it the node voltages move by far more than 1e-6 V
    with_rs = solve(net, inputs, tol=1e-14).voltages
    for d in net.diodes:
        object.__setattr__(d, "model", dataclasses.replace(d.model, series_resistance=0.0))
    assert np.max(np.abs(solve(net, inputs, tol=1e-14).voltages - with_rs)) > 1e-4


def test_paper_circuit_exports_at_physical_values():
    """Every voltage source of the exported paper circuit within 1 V, a real diode model,
    the amplifiers as E and F sources."""
    net = load_network(ROOT / "circuits" / "kendall2020-mnist.toml")
    netlist = export_spice(net, np.random.default_rng(0).random(784))
    volts = [float(m) for m in re.findall(r"^V\S* \S+ \S+ DC (\S+)", netlist, flags=re.M)]
    assert len(volts) == 2 * 784 + 2 + 100  # inputs, rails, the amplifiers' 0 V sense sources
    assert max(abs(v) for v in volts) <= 1.0
    assert re.search(r"^\.model DM0 D\(IS=\S+ N=\S+ RS=\S+ ", netlist, flags=re.M)
    assert len(re.findall(r"^EA\d+ ", netlist, flags=re.M)) == 100
    assert len(re.findall(r"^FA\d+ ", netlist, flags=re.M)) == 100


def test_an_ngspice_timeout_is_a_user_error(ngspice):
    """A netlist ngspice cannot finish in time is an error with a message, not a traceback."""
    net = load_network(ROOT / "circuits" / "xor.toml")
    with pytest.raises(EqpropError, match="did not finish within"):
        run_ngspice(export_spice(net, np.zeros(net.n_features)), timeout=1e-3)


REVERSE_SERIES = """
[devices.r]
type = "resistor"
g = "1u"
[devices.d]
type = "diode"
model = "shockley"
is = "100n"
rs = "100k"
[netlist]
inputs = ["x"]
outputs = ["xjd0_0"]
[[elements]]
name = "R1"
device = "r"
nodes = ["x", "xjd0_0"]
[[elements]]
name = "R2"
device = "r"
nodes = ["xjd0_0", "gnd"]
[[elements]]
name = "D1"
device = "d"
nodes = ["gnd", "xjd0_0"]
"""


def test_series_resistance_in_reverse_matches_ngspice(ngspice):
    """A reverse diode whose RS Is (10 mV) is a fair part of n Vt: ngspice's reverse region
    and GMIN are the junction's, so the correction beside each D must see the junction's
    voltage, not the terminals' (it saw the terminals': 1.4e-5 to 5.6e-5 V off). The user's
    node named like the exported junction node keeps its own name."""
    net = Network(compile_circuit(parse_circuit(REVERSE_SERIES)))
    assert _compare(net, np.array([[0.3], [0.35], [0.5]])) <= 1e-8
    netlist = export_spice(net, np.array([0.3]))
    assert re.search(r"^RD0_0 0 xjd0_0 1\.0+e\+05$", netlist, re.M), netlist
    assert re.search(r"^D0_0 xjd0_0 xjd0_0_1 DM0 ", netlist, re.M)
    assert re.search(r"^BD0_0 xjd0_0 xjd0_0_1 I = ", netlist, re.M)


AMPLIFIED_CLAMP = """
[devices.small]
type = "resistor"
g = "1u"
[devices.big]
type = "resistor"
g = "1m"
[devices.clamp]
type = "diode"
model = "ideal"
threshold = 0.1
[devices.amp]
type = "amplifier"
gain = {gain}
[devices.rail]
type = "vsource"
value = 1.0
[netlist]
inputs = ["x"]
outputs = ["o"]
[[elements]]
name = "Rin"
device = "{rin}"
nodes = ["x", "h"]
[[elements]]
name = "A"
device = "amp"
nodes = ["h", "a"]
[[elements]]
name = "Rout"
device = "{rout}"
nodes = ["a", "r"]
[[elements]]
name = "Vr"
device = "rail"
nodes = ["r", "gnd"]
[[elements]]
name = "D"
device = "clamp"
nodes = ["{clamped}", "gnd"]
[[elements]]
name = "Ro"
device = "small"
nodes = ["a", "o"]
[[elements]]
name = "Ro2"
device = "small"
nodes = ["o", "gnd"]
"""


@pytest.mark.parametrize(
    ("clamped", "rin", "rout", "gain"),
    [("h", "small", "big", 2.0), ("a", "big", "small", 4.0)],
)
def test_a_hard_clamp_beside_an_amplifier_matches_ngspice(ngspice, clamped, rin, rout, gain):
    """A clamp at an amplifier's input whose load is at the output (1 mS behind the
    amplifier, 1 uS at the clamp's own node), or at its output driven from a 1 mS input:
    the exported clamp's on-conductance counts what the amplifier passes across (it
    counted the clamp's own node only, and ngspice's node sat 4e-6 and 4e-5 V off)."""
    text = AMPLIFIED_CLAMP.format(clamped=clamped, rin=rin, rout=rout, gain=gain)
    net = Network(compile_circuit(parse_circuit(text)))
    assert _compare(net, np.array([[1.0], [0.5]])) <= 1e-6


def test_a_node_named_GND_is_not_ngspice_ground(ngspice):
    """eqprop's node names are case-sensitive and only "gnd" and "0" are ground; ngspice
    lower-cases names and takes "gnd" for ground, so the input node "GND" (at 0.5 V) was
    written as ground and ngspice's outputs were 0 V and 1 V for our 0.32 and 0.16 V."""
    text = """
[devices.r]
type = "resistor"
g = "1m"
[devices.amp]
type = "amplifier"
gain = 2
[netlist]
inputs = ["GND", "Gnd.1"]
outputs = ["o", "a.b"]
[[elements]]
name = "R1"
device = "r"
nodes = ["GND", "a.b"]
[[elements]]
name = "R2"
device = "r"
nodes = ["a.b", "a_b"]
[[elements]]
name = "R3"
device = "r"
nodes = ["a_b", "gnd"]
[[elements]]
name = "R4"
device = "r"
nodes = ["Gnd.1", "A_B"]
[[elements]]
name = "R5"
device = "r"
nodes = ["A_B", "0"]
[[elements]]
name = "A1"
device = "amp"
nodes = ["a.b", "o"]
[[elements]]
name = "R6"
device = "r"
nodes = ["o", "gnd_1"]
[[elements]]
name = "R7"
device = "r"
nodes = ["gnd_1", "A_B"]
"""
    net = Network(compile_circuit(parse_circuit(text)))
    assert _compare(net, np.array([[0.5, -0.3], [-1.0, 1.0]])) <= 1e-9
    assert "gnd" not in spice_node_names(net)


def test_nodes_named_like_ngspice_words_keep_their_voltages_and_the_class(ngspice):
    """Nodes named as the .control block's vectors (readout), as ngspice's control words
    (all, gt) or as its netlist functions (temper, gauss) are renamed like collisions: with
    them ngspice printed readouts of 0 V or 13 V and the wrong class, or crashed."""
    names = ["readout", "all", "gt", "temper", "gauss"]
    chain = ["x", *names, "gnd"]
    text = '[devices.r]\ntype = "resistor"\ng = "1m"\n[netlist]\ninputs = ["x"]\n'
    text += "outputs = [" + ", ".join(f'"{n}"' for n in names[:3]) + "]\n"
    for k, (a, b) in enumerate(itertools.pairwise(chain)):
        text += f'[[elements]]\nname = "R{k}"\ndevice = "r"\nnodes = ["{a}", "{b}"]\n'
    net = Network(compile_circuit(parse_circuit(text)))
    x = np.array([[1.0]])
    assert _compare(net, x) <= 1e-9
    _, printed = ngspice_op(export_spice(net, x[0]))
    assert re.search(r"predicted class: 0, readout 0\.83333\d* V", printed), printed[-500:]
