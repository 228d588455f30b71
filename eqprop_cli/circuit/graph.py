"""Compile a validated spec into one graph form (nodes and element sets).

Layered files and netlists compile to the same Graph. Whole-circuit checks
live here: undeclared nodes and devices, loops of voltage sources, nodes with
no DC path to a fixed potential, outputs that are inputs, amplifiers that
would leave the circuit without an energy function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components

from ..circuit.spec import (
    GROUND_NAMES,
    SELF,
    SELF_A,
    CircuitSpec,
    DeviceSpec,
    KeyPath,
    element_model,
)

GROUND = "gnd"
MAX_CONDUCTANCES = 1_000_000_000  # per dense connection: 8 GB of float64 each copy


@dataclass
class ResistorSet:
    """Programmable resistors of one device model: a dense crossbar or a list of pairs."""

    name: str
    device: DeviceSpec
    rows: np.ndarray
    cols: np.ndarray
    dense: bool
    g: np.ndarray  # (len(rows), len(cols)) if dense else (len(rows),)
    labels: list[str] = field(default_factory=list)  # element names (list form)

    @property
    def count(self) -> int:
        return int(self.g.size)

    def ends(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """First nodes, second nodes, and whether every first is joined to every second."""
        return self.rows, self.cols, self.dense

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The two nodes of every resistor, in the order of ``g.ravel()``."""
        if self.dense:
            return np.repeat(self.rows, len(self.cols)), np.tile(self.cols, len(self.rows))
        return self.rows, self.cols


@dataclass
class DiodeSet:
    device: DeviceSpec
    anode: np.ndarray
    cathode: np.ndarray
    labels: list[str]


@dataclass
class CurrentSourceSet:
    device: DeviceSpec
    plus: np.ndarray  # current flows into this node
    minus: np.ndarray
    current: np.ndarray
    labels: list[str]

    def ends(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """First nodes, second nodes, and False: one element per pair."""
        return self.plus, self.minus, False


@dataclass
class Amplifier:
    device: DeviceSpec
    source: int  # controlling node h
    target: int  # driven node a: V_a = gain * V_h
    label: str


@dataclass(slots=True)
class VoltageSource:
    plus: int
    minus: int
    value: float
    gain: float
    feature: int  # -1 for a fixed rail
    label: str


class VoltageSources(Sequence):
    """All voltage sources of a circuit as numbers (a layered input layer holds millions:
    three arrays, not objects); indexing and iteration give VoltageSource objects."""

    def __init__(self) -> None:
        # in order: lists of (plus, minus, value, gain, feature) rows, or input blocks
        self._parts: list[list[tuple] | tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._labels: dict[int, str] = {}  # else "input FEATURE (+)" or "(-)"
        self._count = 0

    def append(self, v: VoltageSource) -> None:
        self._labels[self._count] = v.label
        if not self._parts or not isinstance(self._parts[-1], list):
            self._parts.append([])
        self._parts[-1].append((v.plus, v.minus, v.value, v.gain, v.feature))
        self._count += 1

    def add_inputs(self, nodes: np.ndarray, gains: np.ndarray, features: np.ndarray) -> None:
        """Input sources from ground to ``nodes``, labelled "input FEATURE (+)" or "(-)"."""
        self._parts.append((nodes, gains, features))
        self._count += len(nodes)

    def table(self) -> np.ndarray:
        """(sources, 5): plus, minus, value, gain, feature (built on each call)."""
        blocks = [np.zeros((0, 5))]
        for part in self._parts:
            if isinstance(part, list):
                blocks.append(np.array(part, dtype=float).reshape(-1, 5))
            else:
                nodes, gains, features = part
                zeros = np.zeros(len(nodes))
                blocks.append(np.column_stack([nodes, zeros, zeros, gains, features]))
        return np.concatenate(blocks)

    def __len__(self) -> int:
        return self._count

    def _source(self, k: int, row: list[float]) -> VoltageSource:
        plus, minus, value, gain, feature = row
        label = self._labels.get(k) or f"input {int(feature)} ({'+' if gain >= 0 else '-'})"
        return VoltageSource(int(plus), int(minus), value, gain, int(feature), label)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = range(len(self))[k]
        return self._source(k, self.table()[k].tolist())

    def __iter__(self):
        return (self._source(k, row) for k, row in enumerate(self.table().tolist()))


@dataclass
class Graph:
    """Nodes and element sets; node 0 is ground."""

    spec: CircuitSpec
    nodes: list[str]
    layer_of: list[str]
    resistors: list[ResistorSet]
    diodes: list[DiodeSet]
    isources: list[CurrentSourceSet]
    amplifiers: list[Amplifier]
    vsources: VoltageSources
    n_features: int
    outputs: np.ndarray  # (n_outputs, 1 or 2) node indices; output = V[:,0] - V[:,1]
    layers: list[tuple[str, int]]  # (name, size) for display
    fixed: FixedNodes | None = field(default=None, repr=False)  # computed once, on demand
    stage_weights: np.ndarray | None = field(default=None, repr=False)  # likewise

    @property
    def readout(self) -> str:
        return "differential" if self.outputs.shape[1] == 2 else "single"


class _Builder:
    def __init__(self, spec: CircuitSpec):
        self.spec = spec
        self.nodes: list[str] = [GROUND]
        self.layer_of: list[str] = ["ground"]
        self.index: dict[str, int] = {GROUND: 0}
        self.diodes: dict[str, tuple[list[int], list[int], list[str]]] = {}
        self.isources: dict[str, tuple[list[int], list[int], list[float], list[str]]] = {}
        self.amplifiers: list[Amplifier] = []
        self.vsources = VoltageSources()
        self.resistors: list[ResistorSet] = []

    def node(self, name: str, layer: str) -> int:
        if name in GROUND_NAMES or name == GROUND:
            return 0
        if layer not in ("rails", "netlist") and name in self.spec.rails:
            raise self.spec.error(
                ("rails", name),
                f'rail "{name}" has the name of a node of layer {layer}: rename the rail',
            )
        if name not in self.index:
            self.index[name] = len(self.nodes)
            self.nodes.append(name)
            self.layer_of.append(layer)
        return self.index[name]

    def new_nodes(self, names: list[str], layer: str) -> np.ndarray:
        """Indices of a layer's own nodes, by the million (as ``node`` one by one)."""
        clash = next((name for name in names if name in self.spec.rails), None)
        if clash is not None:
            self.node(clash, layer)  # the rail's error
        start, index = len(self.nodes), self.index
        fresh = [name for name in names if name not in index]
        self.index.update(
            zip(fresh, range(len(self.nodes), len(self.nodes) + len(fresh)), strict=True)
        )
        self.nodes.extend(fresh)
        self.layer_of.extend([layer] * len(fresh))
        if len(fresh) == len(names):  # the usual case: all new
            return np.arange(start, start + len(names))
        return np.fromiter((index[name] for name in names), np.int64, len(names))

    def device(self, name: str | None, kind: str, key: KeyPath) -> DeviceSpec:
        """The device called ``name``, which must be of element group ``kind``."""
        devices = self.spec.devices
        if name not in devices:
            known = ", ".join(f'"{n}"' for n, d in devices.items() if d.group == kind) or "none"
            raise self.spec.error(
                key, f'refers to undeclared device "{name}"; {kind} devices declared: {known}'
            )
        if devices[name].group != kind:
            raise self.spec.error(
                key, f'device "{name}" is a {devices[name].type}; expected a {kind}'
            )
        return devices[name]

    def add_diode(self, device: DeviceSpec, anode: int, cathode: int, label: str) -> None:
        a, c, names = self.diodes.setdefault(device.name, ([], [], []))
        a.append(anode)
        c.append(cathode)
        names.append(label)

    def add_isource(
        self, device: DeviceSpec, plus: int, minus: int, label: str, current=None
    ) -> None:
        p, m, cur, names = self.isources.setdefault(device.name, ([], [], [], []))
        p.append(plus)
        m.append(minus)
        cur.append(float(device.model.current if current is None else current))
        names.append(label)

    def graph(self, n_features: int, outputs: np.ndarray, layers) -> Graph:
        devs = self.spec.devices
        diodes = [
            DiodeSet(devs[n], np.array(a), np.array(c), lab)
            for n, (a, c, lab) in self.diodes.items()
        ]
        isources = [
            CurrentSourceSet(devs[n], np.array(p), np.array(m), np.array(cur), lab)
            for n, (p, m, cur, lab) in self.isources.items()
        ]
        return Graph(
            self.spec,
            self.nodes,
            self.layer_of,
            self.resistors,
            diodes,
            isources,
            self.amplifiers,
            self.vsources,
            n_features,
            outputs,
            layers,
        )


def compile_circuit(spec: CircuitSpec) -> Graph:
    """Spec -> Graph, with the whole-circuit checks."""
    builder = _Builder(spec)
    graph = _layered(spec, builder) if spec.form == "layered" else _netlist(spec, builder)
    _check_sources(graph)
    _check_outputs(graph)
    _check_dc_paths(graph)
    check_amplifier_stages(graph)
    return graph


# --------------------------------------------------------------------------- layered form


def _check_sizes(spec: CircuitSpec) -> None:
    """Refuse a dense connection too large for memory before any node is made."""
    sides = {"input": spec.input.size * (1 if spec.input.encoding == "single" else 2)}
    sides.update((layer.name, layer.size) for layer in spec.hidden)
    sides["output"] = spec.output.size * (1 if spec.output.readout == "single" else 2)
    for conn in spec.connections:
        count = sides.get(conn.source, 0) * sides.get(conn.target, 0)
        if count > MAX_CONDUCTANCES:
            raise spec.error(
                conn.key,
                f"connection {conn.source} -> {conn.target} would hold {count:,} conductances; "
                f"at most {MAX_CONDUCTANCES:,} per connection fit in memory",
            )


def _layered(spec: CircuitSpec, b: _Builder) -> Graph:
    _check_sizes(spec)
    inp = spec.input
    for name, value in spec.rails.items():
        node = b.node(name, "rails")
        b.vsources.append(VoltageSource(node, 0, value, 0.0, -1, f"rail {name}"))
    ends = [("", inp.gain)] if inp.encoding == "single" else [("_p", inp.gain), ("_n", -inp.gain)]
    names = [f"in{i}{suffix}" for i in range(inp.size) for suffix, _ in ends]
    in_nodes = b.new_nodes(names, "input")
    del names
    b.vsources.add_inputs(
        in_nodes,
        np.tile([gain for _, gain in ends], inp.size),
        np.repeat(np.arange(inp.size), len(ends)),
    )
    sending = {"input": in_nodes}
    receiving: dict[str, np.ndarray] = {}
    layers = [("input", len(in_nodes))]
    names = {"input"}
    for layer in spec.hidden:
        if layer.name in names or layer.name == "output":
            raise spec.error((*layer.key, "name"), f'layer name "{layer.name}" is used twice')
        names.add(layer.name)
        nodes = b.new_nodes([f"{layer.name}_{j}" for j in range(layer.size)], layer.name)
        receiving[layer.name] = nodes
        sending[layer.name] = nodes
        outs = None
        if layer.amplifier is not None:
            amp = b.device(layer.amplifier, "amplifier", (*layer.key, "amplifier"))
            outs = b.new_nodes([f"{layer.name}_{j}_a" for j in range(layer.size)], layer.name)
            for j, (h, a) in enumerate(zip(nodes, outs, strict=False)):
                b.amplifiers.append(Amplifier(amp, int(h), int(a), f"{layer.name}[{j}] amplifier"))
            sending[layer.name] = outs
        _attach(spec, b, layer.name, (nodes, outs), layer.diodes, layer.bias, (*layer.key, "bias"))
        layers.append((layer.name, layer.size))
    out = spec.output
    if out.readout == "single":
        out_nodes = np.array([[b.node(f"out{k}", "output")] for k in range(out.size)])
    else:
        out_nodes = np.array(
            [
                [b.node(f"out{k}_p", "output"), b.node(f"out{k}_n", "output")]
                for k in range(out.size)
            ]
        )
    flat = out_nodes.ravel()
    receiving["output"] = sending["output"] = flat
    _attach(spec, b, "output", (flat, None), out.diodes, out.bias, ("output", "bias"))
    layers.append(("output", out.size))
    seen = set()
    for n, conn in enumerate(spec.connections):
        if conn.source not in sending:
            raise spec.error(
                (*conn.key, "from"), f'unknown layer "{conn.source}"; layers: {", ".join(sending)}'
            )
        if conn.target not in receiving:
            choices = ", ".join(receiving)
            raise spec.error(
                (*conn.key, "to"),
                f'unknown or input layer "{conn.target}"; a connection goes to one of: {choices}',
            )
        if conn.source == conn.target:
            raise spec.error((*conn.key, "to"), "a layer cannot connect to itself")
        if (conn.source, conn.target) in seen:
            raise spec.error(
                conn.key, f"connection {conn.source} -> {conn.target} is declared twice"
            )
        seen.add((conn.source, conn.target))
        device = b.device(conn.device, "resistor", (*conn.key, "device"))
        rows, cols = sending[conn.source], receiving[conn.target]
        g = device.model.initial((len(rows), len(cols)), n)
        b.resistors.append(
            ResistorSet(f"{conn.source}->{conn.target}", device, rows, cols, True, g)
        )
    return b.graph(inp.size, out_nodes, layers)


def _attach(spec, b: _Builder, layer: str, nodes, diodes, bias, bias_key) -> None:
    """A layer's diodes (to rails or ground) and bias current sources.

    ``nodes``: the layer's nodes and their amplifier outputs (None without an
    amplifier); a diode's "node" end is the first, its "node_a" end the second.
    """
    own, amplified = nodes
    fixed = set(spec.rails) | set(GROUND_NAMES)
    for d in diodes:
        device = b.device(d.device, "diode", (*d.key, "device"))
        ends = (d.anode, d.cathode)
        mine = [e for e in ends if e in (SELF, SELF_A)]
        if len(mine) != 1:
            raise spec.error(
                d.key,
                f'exactly one of anode/cathode must be "{SELF}" (the layer node) or "{SELF_A}" '
                f"(its amplifier output); got {ends}",
            )
        at_anode = d.anode == mine[0]
        if mine[0] == SELF_A and amplified is None:
            raise spec.error(
                (*d.key, "anode" if at_anode else "cathode"),
                f'"{SELF_A}" is the output of the layer\'s amplifier, and layer "{layer}" has no '
                f'amplifier; use "{SELF}" or give the layer an amplifier',
            )
        other = d.cathode if at_anode else d.anode
        if other not in fixed:
            rails = ", ".join(f'"{r}"' for r in spec.rails) or "none declared"
            raise spec.error(
                (*d.key, "cathode" if at_anode else "anode"),
                f'refers to undeclared node "{other}"; expected "{SELF}", "{SELF_A}", "gnd" or a '
                f"rail ({rails})",
            )
        rail = b.node(other, "rails")
        for j, node in enumerate(own if mine[0] == SELF else amplified):
            pair = (int(node), rail) if at_anode else (rail, int(node))
            b.add_diode(device, *pair, f"{layer}[{j}] diode {d.device}")
    if bias is not None:
        device = b.device(bias, "isource", bias_key)
        for j, node in enumerate(own):
            b.add_isource(device, int(node), 0, f"{layer}[{j}] bias")


# --------------------------------------------------------------------------- netlist form


def _netlist(spec: CircuitSpec, b: _Builder) -> Graph:
    net = spec.netlist
    ground = net.ground
    b.index[ground] = 0
    names = set()
    groups: dict[str, tuple[list[int], list[int], list[float], list[str]]] = {}
    element_nodes = set()
    for e in net.elements:
        if e.name in names:
            raise spec.error((*e.key, "name"), f'element name "{e.name}" is used twice')
        names.add(e.name)
        if e.device not in spec.devices:
            known = ", ".join(f'"{n}"' for n in spec.devices) or "none"
            raise spec.error(
                (*e.key, "device"), f'refers to undeclared device "{e.device}"; declared: {known}'
            )
        device = spec.devices[e.device]
        model = element_model(spec, device, e)
        a, c = (b.node(n, "netlist") for n in e.nodes)
        element_nodes.update((a, c))
        if a == c:
            raise spec.error((*e.key, "nodes"), f"both ends are the same node ({e.nodes[0]})")
        if e.feature is not None and device.group != "vsource":
            raise spec.error(
                (*e.key, "feature"), "only a vsource element can take an input feature"
            )
        if device.group == "resistor":
            rows, cols, gs, labels = groups.setdefault(device.name, ([], [], [], []))
            rows.append(a)
            cols.append(c)
            gs.append(np.nan if model.g is None else model.g)
            labels.append(e.name)
        elif device.group == "diode":
            b.add_diode(device, a, c, e.name)
        elif device.group == "isource":
            b.add_isource(device, a, c, e.name, model.current)
        elif device.group == "amplifier":
            if c == 0:
                raise spec.error(
                    (*e.key, "nodes"), "an amplifier drives its second node; it cannot be ground"
                )
            b.amplifiers.append(Amplifier(device, a, c, e.name))
        else:
            gain = model.gain if e.feature is not None else 0.0
            b.vsources.append(
                VoltageSource(
                    a, c, model.value, gain, -1 if e.feature is None else e.feature, e.name
                )
            )
    for stream, (name, (rows, cols, gs, labels)) in enumerate(groups.items()):
        device = spec.devices[name]
        g = np.array(gs)
        drawn = device.model.initial(g.shape, stream) if np.isnan(g).any() else g
        g = np.where(np.isnan(g), drawn, g)
        b.resistors.append(
            ResistorSet(name, device, np.array(rows), np.array(cols), False, g, labels)
        )
    n_features = len(net.inputs)
    for i, group in enumerate(net.inputs):
        for n, name in enumerate(group):
            key = ("netlist", "inputs")
            if name in GROUND_NAMES or b.index.get(name) == 0:
                raise spec.error(key, f'"{name}" is ground (0 V); an input drives another node')
            if name not in b.index:
                raise spec.error(key, f'refers to undeclared node "{name}" (no element touches it)')
            gain = net.input_gain * (1 if n == 0 else -1)
            b.vsources.append(
                VoltageSource(b.index[name], 0, 0.0, gain, i, f"input {i} ({'+-'[n]})")
            )
    features = sorted({int(f) for f in b.vsources.table()[:, 4] if f >= 0})
    if features and features != list(range(len(features))):
        raise spec.error(
            ("elements",), f"input features must be numbered 0..n-1 without gaps; got {features}"
        )
    n_features = max(n_features, len(features))
    outputs = []
    for group in net.outputs:
        for name in group:
            if name in GROUND_NAMES or b.index.get(name) == 0:
                raise spec.error(
                    ("netlist", "outputs"),
                    f'"{name}" is ground (0 V); an output must be another node',
                )
            if name not in b.index:
                raise spec.error(
                    ("netlist", "outputs"),
                    f'refers to undeclared node "{name}" (no element touches it)',
                )
        outputs.append([b.index[n] for n in group])
    if not outputs:
        raise spec.error(("netlist", "outputs"), "needs at least one output node")
    layers = [("nodes", len(b.nodes) - 1)]
    return b.graph(n_features, np.array(outputs), layers)


# --------------------------------------------------------------------------- checks


@dataclass
class FixedNodes:
    """Nodes held by voltage sources: V[node] = V[parent] + value + gain * x[feature].

    Arrays over the held nodes (ground is not among them), parents before their
    children; ``node in held`` and iteration work as over a set of node indices.
    """

    node: np.ndarray
    parent: np.ndarray
    value: np.ndarray
    gain: np.ndarray
    feature: np.ndarray  # -1: a fixed rail
    mask: np.ndarray  # over all nodes: held or not

    def __contains__(self, node: object) -> bool:
        return bool(self.mask[int(node)])

    def __iter__(self):
        return iter(self.node.tolist())

    def __len__(self) -> int:
        return len(self.node)


def fixed_nodes(graph: Graph) -> FixedNodes:
    """Nodes held by voltage sources, computed once per graph (array operations only:
    a million input sources take about a second).

    Sources form a forest hanging from ground; a cycle is a loop of voltage sources.
    """
    if graph.fixed is None:
        graph.fixed = _fixed_nodes(graph)
    return graph.fixed


def _fixed_nodes(graph: Graph) -> FixedNodes:
    n, sources = len(graph.nodes), graph.vsources
    m = len(sources)
    table = sources.table()
    plus, minus = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    adj = sp.coo_matrix((np.ones(m), (plus, minus)), shape=(n, n)).tocsr()
    _, labels = connected_components(adj, directed=False)
    touched = np.zeros(n, dtype=bool)
    touched[plus] = touched[minus] = True
    trees = np.zeros(n, dtype=bool)
    trees[labels[touched]] = True
    if m != touched.sum() - trees.sum():  # not a forest: find the loop
        parent = list(range(n))

        def root(k: int) -> int:
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        for v in sources:
            ra, rb = root(v.plus), root(v.minus)
            if ra == rb:
                raise graph.spec.error(
                    _source_key(graph, v),
                    f'voltage source "{v.label}" closes a loop of voltage sources (or fixes a node twice)',
                )
            parent[ra] = rb
    floating = np.flatnonzero(labels[plus] != labels[0])
    if len(floating):
        v = sources[int(floating[0])]
        raise graph.spec.error(
            _source_key(graph, v),
            f'voltage source "{v.label}" floats: neither node is tied to ground through sources',
        )
    order, pred = breadth_first_order(adj, 0, directed=False, return_predecessors=True)
    node = order[1:]
    parent_of = pred[node].astype(np.int64)
    # the source between each held node and its parent, and which way round it is
    keys = np.concatenate([plus * n + minus, minus * n + plus])
    sort = np.argsort(keys)
    found = sort[np.searchsorted(keys, node * n + parent_of, sorter=sort)]
    source, sign = found % max(m, 1), np.where(found < m, 1.0, -1.0)  # +1: node is the plus end
    values, gains, features = table[:, 2], table[:, 3], table[:, 4].astype(np.int64)
    mask = np.zeros(n, dtype=bool)
    mask[node] = True
    return FixedNodes(
        node,
        parent_of,
        sign * values[source],
        sign * gains[source],
        features[source],
        mask,
    )


def element_key(graph: Graph, label: str, default: KeyPath) -> KeyPath:
    """Key path of the netlist element called ``label``, else ``default``."""
    if graph.spec.form != "netlist":
        return default
    return next((e.key for e in graph.spec.netlist.elements if e.name == label), default)


def _source_key(graph: Graph, v: VoltageSource) -> KeyPath:
    if graph.spec.form == "netlist":
        return element_key(graph, v.label, ("netlist", "inputs"))
    return ("rails",) if v.feature < 0 else ("input",)


def _check_sources(graph: Graph) -> None:
    held = fixed_nodes(graph)
    for amp in graph.amplifiers:
        if amp.target in held:
            raise graph.spec.error(
                _amp_key(graph, amp),
                f'amplifier "{amp.label}" drives a node that a voltage source already fixes',
            )
        if amp.source in held or amp.source == 0:
            raise graph.spec.error(
                _amp_key(graph, amp),
                f'amplifier "{amp.label}" senses a fixed node; its input must be a free node',
            )
    driven: dict[int, Amplifier] = {}
    for amp in graph.amplifiers:
        if amp.target in driven:
            raise graph.spec.error(
                _amp_key(graph, amp),
                f'amplifier "{amp.label}" drives node "{graph.nodes[amp.target]}", which amplifier "{driven[amp.target].label}" already drives',
            )
        driven[amp.target] = amp


def _amp_key(graph: Graph, amp: Amplifier) -> KeyPath:
    if graph.spec.form == "netlist":
        return element_key(graph, amp.label, ("elements",))
    return next(layer.key for layer in graph.spec.hidden if amp.label.startswith(layer.name + "["))


def _check_outputs(graph: Graph) -> None:
    held = fixed_nodes(graph).mask
    key = ("netlist", "outputs") if graph.spec.form == "netlist" else ("output",)
    for node in graph.outputs.ravel():
        if held[node]:
            raise graph.spec.error(
                key,
                f'output node "{graph.nodes[node]}" is also an input or a rail (a voltage source fixes it)',
            )


def _check_dc_paths(graph: Graph) -> None:
    """Every free node must reach a fixed potential through resistors, Shockley diodes or amplifiers."""

    n = len(graph.nodes)
    links = [r.pairs() for r in graph.resistors]
    links += [(d.anode, d.cathode) for d in graph.diodes if d.device.model.conducts_dc]
    links.append(
        ([amp.source for amp in graph.amplifiers], [amp.target for amp in graph.amplifiers])
    )
    anchors = np.concatenate([[0], fixed_nodes(graph).node])
    links.append((np.zeros(len(anchors), dtype=int), anchors))
    labels = _components(n, links)
    floating = [graph.nodes[i] for i in range(n) if labels[i] != labels[0]]
    if floating:
        shown = ", ".join(f'"{f}"' for f in floating[:5]) + (" ..." if len(floating) > 5 else "")
        raise graph.spec.error(
            _node_key(graph, floating[0]),
            f"{len(floating)} node(s) have no DC path to a fixed potential through resistors, "
            f"Shockley diodes or amplifiers (ideal diodes and current sources do not count): {shown}",
        )


def _components(n: int, links: list[tuple], keep: np.ndarray | None = None) -> np.ndarray:
    """Connected-component label of each of n nodes, linked by (a, b) node arrays.

    With ``keep`` (a mask over nodes), only links between kept nodes count.
    """
    a = np.concatenate([np.asarray(x, dtype=int) for x, _ in links]) if links else np.zeros(0, int)
    b = np.concatenate([np.asarray(y, dtype=int) for _, y in links]) if links else np.zeros(0, int)
    if keep is not None:
        mask = keep[a] & keep[b]
        a, b = a[mask], b[mask]
    adj = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(adj, directed=False)[1]


def _node_key(graph: Graph, name: str) -> KeyPath:
    """Where a node comes from: the first element touching it, or its layer."""
    spec = graph.spec
    if spec.form == "netlist":
        return next((e.key for e in spec.netlist.elements if name in e.nodes), ("elements",))
    layer = graph.layer_of[graph.nodes.index(name)]
    if layer == "output":
        return ("output",)
    return next((h.key for h in spec.hidden if h.name == layer), ("connections",))


def check_amplifier_stages(graph: Graph) -> np.ndarray:
    """Stage weight of every node (computed once per graph): 1 before any amplifier (and at
    fixed nodes), divided by A^2 after each.

    The circuit then has the energy sum_e weight_e * E_e. This needs each
    amplifier to drive a part of the circuit that connects back to its input
    only through that amplifier (or ones of consistent gain); else there is no
    energy function and equilibrium propagation does not apply.
    """

    if graph.stage_weights is None:
        graph.stage_weights = _stage_weights(graph)
    return graph.stage_weights


def _stage_weights(graph: Graph) -> np.ndarray:
    n = len(graph.nodes)
    free = ~fixed_nodes(graph).mask
    free[0] = False
    links = [r.pairs() for r in graph.resistors]
    links += [(d.anode, d.cathode) for d in graph.diodes]
    links += [(s.plus, s.minus) for s in graph.isources]
    comp = _components(n, links, keep=free)
    weight: dict[int, float] = {}
    incoming: dict[int, list[tuple[int, float, Amplifier]]] = {}
    for amp in graph.amplifiers:
        if comp[amp.source] == comp[amp.target]:
            raise graph.spec.error(
                _amp_key(graph, amp),
                f'amplifier "{amp.label}" output connects back to its input without passing through an amplifier: no energy function exists',
            )
        incoming.setdefault(comp[amp.target], []).append(
            (comp[amp.source], amp.device.model.gain, amp)
        )
    state: dict[int, int] = {}

    def finish(c: int) -> None:
        values = [weight[src] / gain / gain for src, gain, _ in incoming.get(c, [])] or [1.0]
        for value, (_, gain, amp) in zip(values, incoming.get(c, []), strict=False):
            if not 0.0 < value < np.inf:
                raise graph.spec.error(
                    _amp_key(graph, amp),
                    f"amplifier gain {gain:g} (through the amplifiers before it) makes the stage weight 1/A^2 {value:g}, outside floating-point range: use gains of moderate size",
                )
        if max(values) > min(values) * (1 + 1e-12):
            raise graph.spec.error(
                _amp_key(graph, incoming[c][0][2]),
                "amplifiers into one part of the circuit have inconsistent gains: no energy function exists",
            )
        weight[c] = values[0]

    def resolve(c: int) -> float:
        # depth-first over the amplifiers feeding c, iteratively: chains may be long
        stack = [c]
        while stack:
            top = stack[-1]
            if top in weight:
                stack.pop()
            elif state.get(top) == 1:
                finish(top)
                stack.pop()
            else:
                state[top] = 1
                for src, _, amp in incoming.get(top, []):
                    if src in weight:
                        continue
                    if state.get(src) == 1:
                        raise graph.spec.error(
                            _amp_key(graph, amp),
                            "amplifiers form a loop: no energy function exists",
                        )
                    stack.append(src)
        return weight[c]

    weights = np.ones(n)
    by_part = np.ones(comp.max() + 1 if n else 0)
    parts = np.zeros(len(by_part), dtype=bool)
    parts[comp[free]] = True
    for c in np.flatnonzero(parts):
        by_part[c] = resolve(int(c))
    weights[free] = by_part[comp[free]]
    return weights
