"""SPICE netlists of a network, and running ngspice on them (the external oracle).

Resistors are R elements in ohms, written in exponent notation (no m/Meg
traps); Shockley diodes use a D .model at the matching temperature, each with a
behavioural source across its junction that makes ngspice's reverse region (below
-3 n Vt) exactly Shockley's law and takes back the GMIN that ngspice puts across each
diode (a series resistance is an R element to the junction node), so ngspice solves
eqprop's circuit exactly; ideal
piecewise-linear diodes are behavioural current sources; a hard clamp is a
behavioural source of very high on-conductance (1e8 times the conductance at
its node) whose corner is rounded over 10 nV (a softplus), so that ngspice's
Newton iteration converges: its node then sits within about 1e-8 of the
clamp's voltage swing, plus about 10 nV, of the exact clamp;
amplifiers are an E source (forward VCVS) with a 0 V sense source and an F
source (backward CCCS of 1/A).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..circuit.network import Network
from ..devices.amplifier import AMP_NODE
from ..devices.diode import junction_node
from ..devices.netlist import GMIN, celsius, num
from ..devices.netlist import text as _text
from ..devices.source import VoltageSourceModel
from ..errors import EqpropError

CLAMP_FACTOR = 1e8
MAX_PORTS = 1000  # ngspice refuses a subcircuit with more (N_GLOBAL_NODES)
CONTROL_START = ".control\nop\n"  # how an exported .control block starts
VNTOL = 1e-13  # volts
ABSTOL = 1e-18  # amperes; with hard clamps at least VNTOL times their largest on-conductance
OPTIONS = f"RELTOL=1e-12 VNTOL={VNTOL:g} GMIN={GMIN:g} ITL1=1000"
# Node names that ngspice reads as something else: ground; the vectors of our .control
# block; words of its control language that v(...) takes as keywords or operators (a
# node "all" printed 13 V, "gt" swapped the classes); and functions of its netlist
# preprocessor ("temper" made ngspice-39 crash, "limit" and the random functions
# stopped it). Such nodes get a suffix like any other collision.
CONTROL_VECTORS = ("readout", "best", "top", "k")
CONTROL_WORDS = (
    "all",
    "allv",
    "alli",
    "ally",
    "not",
    "and",
    "or",
    "gt",
    "lt",
    "ge",
    "le",
    "ne",
    "eq",
)
NETLIST_FUNCTIONS = ("temper", "limit", "gauss", "agauss", "unif", "aunif")
TAKEN = frozenset(("0", "gnd", *CONTROL_VECTORS, *CONTROL_WORDS, *NETLIST_FUNCTIONS))


def spice_node_names(network: Network) -> list[str]:
    """Unique, SPICE-safe, case-insensitive names; ground is 0."""
    # ngspice takes "gnd" for ground (eqprop's node "GND" is not); the amplifiers' and
    # the diodes' internal nodes are reserved, and so are ngspice's words (TAKEN)
    names, seen = [], {*TAKEN, *(f"{AMP_NODE}{k}" for k in range(len(network.amplifiers)))}
    for k, d in enumerate(network.diodes):  # (a diode with a series resistance uses its own)
        seen.update(junction_node(k, i) for i in range(len(d.anode)))
    for i, name in enumerate(network.node_names):
        if i == 0:
            names.append("0")
            continue
        safe = re.sub(r"[^A-Za-z0-9_]", "_", name).lower()
        if not safe or safe[0].isdigit():
            safe = "n" + safe
        base, k = safe, 1
        while safe in seen:
            safe, k = f"{base}_{k}", k + 1
        seen.add(safe)
        names.append(safe)
    return names


def _node_conductance(network: Network) -> np.ndarray:
    a, b, g = network.resistor_edges()
    total = np.bincount(a, g, network.n_nodes) + np.bincount(b, g, network.n_nodes)
    for d in network.diodes:
        if d.model.on_conductance:
            g_on = np.full(len(d.anode), d.model.on_conductance)
            total += np.bincount(d.anode, g_on, network.n_nodes)
            total += np.bincount(d.cathode, g_on, network.n_nodes)
    # Amplifiers join their nodes: a load at the output reaches the input through F
    # (I_out / A, I_out = G A V_in: G at the input), a load at the input reaches the
    # output through E (a current I at the output moves V_in by I / (A g), V_out by I / g).
    # So every node of amplifiers joined input to output sees the conductance of all.
    group = list(range(network.n_nodes))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = i = group[group[i]]
        return i

    for amp in network.amplifiers:
        group[root(amp.target)] = root(amp.source)
    roots = np.array([root(i) for i in range(network.n_nodes)])
    return np.bincount(roots, total, network.n_nodes)[roots]


def _clamp_g_on(d, conductance: np.ndarray) -> np.ndarray:
    """On-conductance of each exported hard clamp of a diode group: CLAMP_FACTOR times the
    larger node conductance at its ends."""
    ends = np.maximum(conductance[d.anode], conductance[d.cathode])
    return CLAMP_FACTOR * np.maximum(ends, 1e-12)


def _abstol(network: Network, conductance: np.ndarray) -> float:
    """ngspice's ABSTOL: 1e-18 A, or VNTOL times the largest hard-clamp on-conductance.

    ngspice accepts an iterate when every B source's current changed by at most
    RELTOL |I| + ABSTOL. A clamp's current is that of its node (g_node times the
    overdrive) while its on-conductance is 1e8 g_node, so with ABSTOL = 1e-18 A its
    voltage would have to repeat to 1e-20 of the overdrive, finer than a double
    holds: ngspice converged only when Newton happened to repeat bit for bit, and
    otherwise went to gmin and source stepping for minutes (or failed). With this
    ABSTOL the clamp's current test asks what VNTOL asks of the voltage at its node.
    """
    g_on = [_clamp_g_on(d, conductance).max() for d in network.diodes if d.model.hard]
    return max([ABSTOL, *(VNTOL * g for g in g_on)])


def export_spice(
    network: Network,
    inputs: np.ndarray | None,
    title: str = "",
    header: list[str] | None = None,
    nodeset: np.ndarray | None = None,
    subckt: str | None = None,
) -> str:
    """The netlist of ``network`` with its input sources set to one input vector.

    It ends with a .control block that runs the operating point and prints
    the output voltages, the readouts and the predicted class (the largest
    readout). With ``subckt`` (a name) it is instead a .subckt whose ports
    are one per input feature (its value in volts; the input sources become
    VCVSs of their gain) then the output nodes, for inclusion in a larger
    design (``inputs`` is then unused). ``nodeset`` (node voltages, e.g. our
    solution) adds .nodeset lines: an initial guess that ngspice releases
    before iterating to its own solution.
    """
    node = spice_node_names(network)
    graph = network.graph
    conductance = _node_conductance(network)
    if subckt is None:
        x = np.asarray(inputs, dtype=float).reshape(-1)
        if x.size != network.n_features:
            raise EqpropError(
                f"the circuit takes {network.n_features} input feature(s); got {x.size}"
            )
    out = [f"* {_text(title or graph.spec.name or 'eqprop circuit')}"]
    out += [f"* {_text(line)}" for line in (header or [])]
    out += ["* units: ohms, volts, amperes; node names are eqprop's, lower-cased", ""]
    if subckt is None:
        temps = {
            d.model.thermal_voltage for d in network.diodes if d.model.thermal_voltage is not None
        }
        temp_c = celsius(next(iter(temps))) if len(temps) == 1 else 27.0
        abstol = _abstol(network, conductance)
        out.append(f".options {OPTIONS} ABSTOL={abstol:.3g} TEMP={num(temp_c)} TNOM={num(temp_c)}")
        out.append("")
        out.append("* voltage sources: inputs and rails")
    else:
        ports = _feature_ports(network, node)
        out += _subckt_header(network, node, subckt, ports)
        out.append("* voltage sources: rails, and inputs driven by the feature ports")
    for k, v in enumerate(graph.vsources):
        if v.feature >= 0 and subckt is not None:
            out += _input_source(k, v, node, ports[v.feature])
            continue
        value = v.value + (v.gain * x[v.feature] if v.feature >= 0 else 0.0)
        out.append(VoltageSourceModel.spice_line(k, node[v.plus], node[v.minus], value, v.label))
    for k, (r, g) in enumerate(zip(network.resistors, network.g, strict=True)):
        out.append("")
        # float64 reciprocals also of float32 conductances ([solver] dtype)
        out += r.device.model.spice_lines(k, r, g.astype(float), node)
    models = []
    for k, d in enumerate(network.diodes):
        out.append("")
        ends = [(node[a], node[c]) for a, c in zip(d.anode, d.cathode, strict=True)]
        clamp_g_on = _clamp_g_on(d, conductance) if d.model.hard else None
        lines, cards = d.model.spice(k, ends, d.labels, clamp_g_on)
        out += lines
        models += cards
    for k, (s, currents) in enumerate(zip(network.isources, network.currents, strict=True)):
        out.append("")
        out += s.device.model.spice_lines(k, s, currents, node)
    if network.amplifiers:
        out.append("")
        out.append(
            "* bidirectional amplifiers: E (forward V_out = A V_in), sense V, F (draws I_out / A from the input)"
        )
    for k, amp in enumerate(network.amplifiers):
        out += amp.device.model.spice_lines(k, node[amp.source], node[amp.target], amp.label)
    if nodeset is not None:
        guess = [
            f"V({node[i]})={num(v)}"
            for i, v in enumerate(np.ravel(nodeset))
            if network.fixed_index[i] < 0
        ]
        out += ["", "* initial guess (released before ngspice iterates to its own solution)"]
        out += [".nodeset " + " ".join(guess[i : i + 8]) for i in range(0, len(guess), 8)]
    if subckt is not None:
        out += ["", *models, f".ends {subckt}", ""]
    else:
        out += ["", *models, "", *_control_block(network, node), ".end", ""]
    return "\n".join(out)


def _feature_ports(network: Network, node: list[str]) -> list[str]:
    """One port name per input feature, distinct from every node name."""
    taken = set(node)
    prefix = "feature"
    while any(f"{prefix}{i}" in taken for i in range(network.n_features)):
        prefix = "x" + prefix
    return [f"{prefix}{i}" for i in range(network.n_features)]


def _subckt_header(network: Network, node: list[str], name: str, inputs: list[str]) -> list[str]:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise EqpropError(
            f'{{subckt}} "{name}": expected a SPICE name (a letter, then letters, digits, _)',
            params=("subckt",),
        )
    outputs = [node[i] for i in network.outputs.ravel()]
    ports = inputs + outputs
    if len(ports) > MAX_PORTS:
        raise EqpropError(
            f"a subcircuit of {len(ports)} ports is more than ngspice takes ({MAX_PORTS})"
        )
    lines = [
        f"* ports: {len(inputs)} input features ({inputs[0]} ... {inputs[-1]}: volts equal to "
        f"the feature value; the input sources' gains are inside), then {len(outputs)} output "
        f"nodes ({outputs[0]} ... {outputs[-1]})",
        f"* usage: X1 <{len(ports)} nodes> {name}",
        f".subckt {name}",
    ]
    lines += ["+ " + " ".join(ports[i : i + 10]) for i in range(0, len(ports), 10)]
    return [*lines, ""]


def _input_source(k: int, v, node: list[str], port: str) -> list[str]:
    """A subcircuit's input: a VCVS of the source's gain from the feature port (plus its
    fixed part in series)."""
    if v.value == 0:
        return [f"EIN{k} {node[v.plus]} {node[v.minus]} {port} 0 {num(v.gain)} ; {_text(v.label)}"]
    mid = f"{node[v.plus]}_in"
    while mid in node:
        mid = "x" + mid
    return [
        f"EIN{k} {mid} {node[v.minus]} {port} 0 {num(v.gain)} ; {_text(v.label)}",
        f"V{k} {node[v.plus]} {mid} DC {num(v.value)}",
    ]


def _readouts(network: Network, node: list[str]) -> list[str]:
    """ngspice expressions of the readouts: v(plus) - v(minus), or v(out)."""
    if network.outputs.shape[1] == 2:
        return [f"v({node[p]}) - v({node[m]})" for p, m in network.outputs]
    return [f"v({node[o]})" for o in network.outputs[:, 0]]


def _control_block(network: Network, node: list[str]) -> list[str]:
    """Run the operating point; print outputs, readouts and the predicted class."""
    readouts = _readouts(network, node)
    voltages = [f"v({node[i]})" for i in network.outputs.ravel()]
    lines = [*CONTROL_START.splitlines(), "set numdgt=12", "echo output voltages:"]
    lines += ["print " + " ".join(voltages[i : i + 8]) for i in range(0, len(voltages), 8)]
    lines.append(f"let readout = vector({len(readouts)})")
    lines += [f"let readout[{k}] = {expr}" for k, expr in enumerate(readouts)]
    lines += ["print readout", "* the predicted class: the index of the largest readout"]
    lines.append("let best = 0")
    if len(readouts) > 1:  # (ngspice cannot index a vector of length 1, even in a dead loop)
        lines += [
            "let k = 1",
            f"dowhile k < {len(readouts)}",
            "  if readout[k] > readout[best]",
            "    let best = k",
            "  end",
            "  let k = k + 1",
            "end",
        ]
    top = "readout[best]" if len(readouts) > 1 else "readout"  # one readout: a scalar
    lines += [f"let top = {top}", 'echo "predicted class: $&best, readout $&top V"']
    # exit status 0 in batch mode (ngspice -b); an interactive session stays open
    return [*lines, "if $?batchmode", "  quit 0", "end", ".endc"]


def ngspice_path() -> str:
    path = shutil.which("ngspice")
    if path is None:
        raise EqpropError("ngspice is not installed (Debian/Ubuntu: apt-get install ngspice)")
    return path


def run_ngspice(netlist: str, timeout: float = 600.0) -> dict[str, float]:
    """Operating point from ``ngspice -b``: lower-case node name -> volts."""
    return ngspice_op(netlist, timeout)[0]


def ngspice_op(netlist: str, timeout: float = 600.0) -> tuple[dict[str, float], str]:
    """Run a netlist with ``ngspice -b``: its node voltages and what it printed.

    An exported netlist (with its .control block) runs as it is, with one line
    added after its ``op`` that saves every node voltage (``write``); one
    without a .control block runs its .op with ``-r``.
    """
    with tempfile.TemporaryDirectory(prefix="eqprop-ngspice-") as tmp:
        cir, raw = Path(tmp) / "circuit.cir", Path(tmp) / "op.raw"
        if CONTROL_START in netlist:
            netlist = netlist.replace(CONTROL_START, f"{CONTROL_START}write {raw.name} all\n", 1)
            command = [ngspice_path(), "-b", str(cir)]
        else:
            command = [ngspice_path(), "-b", "-r", str(raw), str(cir)]
        cir.write_text(netlist)
        env = dict(os.environ, SPICE_ASCIIRAWFILE="1")
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp
            )
        except subprocess.TimeoutExpired:
            raise EqpropError(f"ngspice did not finish within {timeout:g} s") from None
        if proc.returncode != 0 or not raw.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise EqpropError(f"ngspice failed (exit {proc.returncode}):\n{tail}")
        return parse_raw(raw.read_text()), proc.stdout


def ngspice_ops(
    netlists: list[str], jobs: int, timeout: float = 600.0, on_done=None
) -> list[tuple[dict[str, float], str] | EqpropError]:
    """``ngspice_op`` of every netlist, ``jobs`` ngspice processes at a time; the error
    in place of the result where ngspice failed (e.g. found no operating point).
    ``on_done()`` is called as each netlist finishes (for progress displays)."""

    def one(text: str) -> tuple[dict[str, float], str] | EqpropError:
        try:
            return ngspice_op(text, timeout)
        except EqpropError as exc:
            return exc
        finally:
            if on_done is not None:
                on_done()

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, netlists))


def printed_class(stdout: str) -> int:
    """The class that an exported netlist's .control block printed."""
    found = re.findall(r"predicted class: (\d+)", stdout)
    if not found:
        raise EqpropError("ngspice printed no predicted class (was the .control block removed?)")
    return int(found[-1])


def parse_raw(text: str) -> dict[str, float]:
    """Node voltages of an ASCII rawfile holding one operating point."""
    lines = text.splitlines()
    start = lines.index("Variables:")
    count = int(next(ln for ln in lines if ln.startswith("No. Variables:")).split(":")[1])
    names = [lines[start + 1 + i].split()[1] for i in range(count)]
    values_at = lines.index("Values:")
    values = []
    for line in lines[values_at + 1 :]:
        parts = line.split()
        if parts:
            values.append(float(parts[-1]))
    out = {}
    for name, value in zip(names, values[:count], strict=True):
        m = re.fullmatch(r"v\((.+)\)", name)
        if m:
            out[m.group(1)] = value
    return out
