"""Random circuit files (TOML text) of every supported device, for solver and ngspice tests."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from eqprop_cli.hardware.spice import export_spice, run_ngspice, spice_node_names

ROOT = Path(__file__).resolve().parent.parent

DIODES = {
    "ideal": 'type = "diode"\nmodel = "ideal"\nthreshold = {th}\ng_on = "{g}"\n',
    "clamp": 'type = "diode"\nmodel = "ideal"\nthreshold = {th}\ng_on = "inf"\n',
    "shockley": 'type = "diode"\nmodel = "shockley"\nis = "{is_}"\nn = {n}\ntemperature = {t}\n',
    "series": 'type = "diode"\nmodel = "shockley"\nis = "{is_}"\nn = {n}\nrs = "{rs}"\n'
    "temperature = {t}\n",
    "part": 'type = "diode"\nmodel = "{part}"\ntemperature = {t}\n',
}
PARTS = ("1N4148", "2N3904-diode", "sky130-pw2nd")


def assert_agrees_with_ngspice(net, inputs: np.ndarray, eq, limit: float) -> None:
    """Every node of every sample of ``eq`` within ``limit`` volts of ngspice's answer."""
    names = spice_node_names(net)
    for b in range(len(inputs)):
        theirs = run_ngspice(export_spice(net, inputs[b]))
        worst = max(abs(theirs[m] - eq.voltages[b, i]) for i, m in enumerate(names) if m != "0")
        assert worst <= limit, (b, worst)


def _resistor_device(seed: int) -> str:
    return f"""[devices.w]
type = "resistor"
init = "uniform"
init_low = "0.1m"
init_high = "1m"
g_min = "1u"
g_max = "10m"
seed = {seed}
"""


def _diode_device(rng: np.random.Generator, kind: str) -> str:
    values = {
        "th": round(float(rng.uniform(0.0, 0.3)), 3),
        "g": f"{rng.uniform(1e-3, 1e-2):.4g}",
        "is_": f"{10 ** rng.uniform(-15, -12):.3g}",
        "n": round(float(rng.uniform(1.2, 2.0)), 3),
        "t": round(float(rng.uniform(280.0, 350.0)), 2),
    }
    if kind in ("series", "part"):  # drawn only here: the other kinds' circuits stay as they were
        values["rs"] = f"{10 ** rng.uniform(1, 4):.4g}"
        values["part"] = PARTS[int(rng.integers(len(PARTS)))]
        # conducting at a few tenths of a volt, so that RS carries current; not more, for
        # ngspice approximates the reverse current below -3 n Vt (an error of up to ~5% of IS)
        values["is_"] = f"{10 ** rng.uniform(-10, -8.7):.3g}"
    return DIODES[kind].format(**values)


def layered(
    seed: int, diode: str = "shockley", amplifier: bool = True, bias: bool = True
) -> tuple[str, int]:
    """A random layered circuit; returns (toml text, number of input features)."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 6))
    hidden = [int(rng.integers(2, 6)) for _ in range(int(rng.integers(1, 3)))]
    n_out = int(rng.integers(1, 4))
    text = f'''[circuit]
name = "random-layered-{seed}"

{_resistor_device(seed)}
[devices.d]
{_diode_device(rng, diode)}
[devices.amp]
type = "amplifier"
gain = {round(float(rng.uniform(0.5, 5.0)), 3)}

[devices.ib]
type = "isource"
current = "{rng.uniform(-50e-6, 50e-6):.4g}"

[rails]
vpos = 0.3
vneg = -0.3

[input]
size = {n_in}
encoding = "{rng.choice(["single", "differential"])}"
gain = {round(float(rng.uniform(0.5, 2.0)), 3)}

[output]
size = {n_out}
readout = "{rng.choice(["single", "differential"])}"
'''
    names = []
    for k, size in enumerate(hidden):
        name = f"h{k + 1}"
        names.append(name)
        text += f'''
[[hidden]]
name = "{name}"
size = {size}
diodes = [
  {{ device = "d", anode = "node", cathode = "vpos" }},
  {{ device = "d", anode = "vneg", cathode = "node" }},
]
'''
        if amplifier and rng.random() < 0.8:
            text += 'amplifier = "amp"\n'
        if bias and rng.random() < 0.7:
            text += 'bias = "ib"\n'
    chain = ["input", *names, "output"]
    for a, b in itertools.pairwise(chain):
        text += f'\n[[connections]]\nfrom = "{a}"\nto = "{b}"\ndevice = "w"\n'
    if len(names) > 1 and rng.random() < 0.5:  # a skip connection keeps it bipartite only sometimes
        text += f'\n[[connections]]\nfrom = "input"\nto = "{names[1]}"\ndevice = "w"\n'
    return text, n_in


def netlist(seed: int, amplifier: bool = True, clamps: bool = True) -> tuple[str, int]:
    """A random non-layered netlist: resistor meshes, every diode kind, sources, an amplifier."""
    rng = np.random.default_rng(seed)
    kinds = ["ideal", "clamp", "shockley"]
    text = f'''[circuit]
name = "random-netlist-{seed}"

{_resistor_device(seed)}
[devices.amp]
type = "amplifier"
gain = {round(float(rng.uniform(0.5, 5.0)), 3)}

[devices.rail]
type = "vsource"
value = {round(float(rng.uniform(-1, 1)), 3)}

[devices.ib]
type = "isource"
current = "{rng.uniform(-100e-6, 100e-6):.4g}"
'''
    for k in kinds:
        text += f"\n[devices.{k}]\n{_diode_device(rng, k)}"
    elements = []

    def add(name, device, a, b):
        elements.append(
            f'[[elements]]\nname = "{name}"\ndevice = "{device}"\nnodes = ["{a}", "{b}"]\n'
        )

    parts = [("a", int(rng.integers(4, 8)))] + (
        [("b", int(rng.integers(3, 6)))] if amplifier else []
    )
    for part, n in parts:
        for i in range(1, n):  # spanning tree, then extra edges (odd cycles)
            add(f"R{part}t{i}", "w", f"{part}{int(rng.integers(0, i))}", f"{part}{i}")
        for k in range(n):
            i, j = rng.choice(n, 2, replace=False)
            add(f"R{part}x{k}", "w", f"{part}{i}", f"{part}{j}")
        add(f"R{part}g", "w", f"{part}{n - 1}", "gnd")
        i, j = rng.choice(np.arange(2 if part == "a" else 0, n), 2, replace=False)  # not at inputs
        add(f"D{part}1", "shockley", f"{part}{i}", f"{part}{j}")
        add(f"D{part}2", "ideal", f"{part}{j}", "gnd")
        clamped = f"{part}{int(rng.integers(2, n))}"
        if clamps:
            add(f"D{part}3", "clamp", "rail_node", clamped)
        add(f"I{part}", "ib", f"{part}{int(rng.integers(0, n))}", "gnd")
    add("Vrail", "rail", "rail_node", "gnd")
    add("Vstack", "rail", "stack_node", "rail_node")  # a source on top of another
    add("Rrail", "w", "rail_node", "a0")
    add("Rstack", "w", "stack_node", f"a{int(rng.integers(2, parts[0][1]))}")
    if amplifier:
        add("Amp", "amp", f"a{int(rng.integers(2, parts[0][1]))}", "b0")
    text += '\n[netlist]\ninputs = ["a0", "a1"]\n'
    text += f'outputs = ["{parts[-1][0]}1"]\n\n' + "\n".join(elements)
    return text, 2


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(10 ** rng.uniform(np.log10(low), np.log10(high)))


def anything(
    seed: int, islands: bool = True, conductances: tuple[float, float] = (1e-7, 1e-3)
) -> tuple[str, int]:
    """A random netlist of 5 to 60 nodes over every device the format allows but hard clamps.

    Resistors of 1e-7 to 1e-3 S (``conductances``; log-uniform, each its own value), Shockley and
    piecewise-linear diodes, grounded, stacked and input sources, current sources,
    amplifiers (chained sometimes), and either a random mesh or layers with rails.
    With ``islands``, some nodes are held by Shockley diodes only (their potentials
    set by reverse currents, on which ngspice fails or stops off). Current
    sources drive only nodes with a resistor path to a fixed potential: into a node
    held by reverse-biased diodes only, a current above their saturation currents
    leaves no equilibrium. Returns (toml text, number of input features = 2).
    """
    rng = np.random.default_rng(seed)
    low, high = conductances
    layered_form = bool(rng.random() < 0.5)
    devices = {
        "w": f'type = "resistor"\ng_min = "{low:g}"\ng_max = "{high:g}"\ninit = "constant"\n'
        f'g = "{low:g}"\n',
        "dsh": DIODES["shockley"].format(
            is_=f"{10 ** rng.uniform(-15, -9):.3g}",
            n=round(float(rng.uniform(1.0, 2.0)), 3),
            t=round(float(rng.uniform(250.0, 350.0)), 2),
        ),
        "dpl": DIODES["ideal"].format(
            th=round(float(rng.uniform(-0.2, 0.4)), 3), g=f"{_log_uniform(rng, 1e-6, 1e-3):.4g}"
        ),
        "amp": f'type = "amplifier"\ngain = {round(float(rng.uniform(0.5, 5.0)), 3)}\n',
        "amp2": f'type = "amplifier"\ngain = {round(float(rng.uniform(0.5, 5.0)), 3)}\n',
        "ib": 'type = "isource"\ncurrent = "1e-7"\n',
        "vs": 'type = "vsource"\nvalue = 0.5\n',
    }
    elements: list[str] = []

    def add(kind: str, device: str, a: str, b: str, extra: str = "") -> None:
        elements.append(
            f'[[elements]]\nname = "{kind}{len(elements)}"\ndevice = "{device}"\n'
            f'nodes = ["{a}", "{b}"]\n{extra}'
        )

    def resistor(a: str, b: str) -> None:
        add("R", "w", a, b, f'g = "{_log_uniform(rng, low, high):.6g}"\n')

    # fixed potentials: a grounded rail, one stacked on it, sometimes a third on that
    rails = ["r0", "r1"] + (["r2"] if rng.random() < 0.5 else [])
    for i, rail in enumerate(rails):
        below = "gnd" if i == 0 else rails[i - 1]
        add("V", "vs", rail, below, f"value = {round(float(rng.uniform(-0.6, 0.6)), 4)}\n")
    inputs = ["x0", "x1"]
    fixed = rails + inputs
    if layered_form:
        sizes = [int(rng.integers(2, 8)) for _ in range(int(rng.integers(1, 4)))]
        layers = [[f"l{k}n{i}" for i in range(size)] for k, size in enumerate(sizes)]
        free = [n for layer in layers for n in layer]
        anchored = list(free)
        previous = inputs
        for layer in layers:
            for a in previous:
                for b in layer:
                    if rng.random() < 0.8:
                        resistor(a, b)
            for b in layer:  # at least one resistor into the layer below
                resistor(previous[int(rng.integers(len(previous)))], b)
                if rng.random() < 0.7:
                    add("D", "dsh", b, rails[int(rng.integers(len(rails)))])
                if rng.random() < 0.7:
                    add("D", "dsh", rails[int(rng.integers(len(rails)))], b)
            previous = layer
    else:
        n = int(rng.integers(5, 50))
        free = [f"n{i}" for i in range(n)]
        everything = fixed + free
        anchored = []
        for i, node in enumerate(free):  # spanning tree down to the fixed nodes
            other = everything[int(rng.integers(len(fixed) + i))]
            if not islands or rng.random() < 0.85:
                resistor(other, node)
                if other in fixed or other in anchored:
                    anchored.append(node)
            else:
                add("D", "dsh", *((other, node) if rng.random() < 0.5 else (node, other)))
        for _ in range(int(rng.integers(0, 2 * n))):
            a, b = rng.choice(everything, 2, replace=False)
            resistor(str(a), str(b))
    for node in fixed:  # every source drives something
        resistor(node, str(rng.choice(free)))
    # extra devices on the free nodes
    for _ in range(int(rng.integers(0, 4))):
        a, b = rng.choice([*free, "gnd"], 2, replace=False)
        add("D", "dsh", str(a), str(b))
    for _ in range(int(rng.integers(0, 3))):
        a, b = rng.choice([*free, "gnd"], 2, replace=False)
        add("D", "dpl", str(a), str(b))
    for _ in range(int(rng.integers(0, 3)) if anchored else 0):
        a, b = rng.choice([*anchored, "gnd"], 2, replace=False)
        current = float(rng.uniform(-1, 1)) * _log_uniform(rng, 1e-9, 1e-6)
        add("I", "ib", str(a), str(b), f'current = "{current:.4g}"\n')
    # nodes held by Shockley diodes only (their reverse currents set them)
    for k in range(int(rng.integers(0, 3)) if islands else 0):
        island = f"isl{k}"
        anchor = str(rng.choice(free + fixed))
        add("D", "dsh", *((anchor, island) if rng.random() < 0.5 else (island, anchor)))
        if rng.random() < 0.5:
            resistor(island, f"isl{k}b")
            add("D", "dsh", f"isl{k}b", str(rng.choice(free + fixed)))
    # amplifiers: a free node drives a stage of new nodes, tied to the rest only through
    # fixed nodes (else no energy function exists); the second amplifier drives from it
    source = str(rng.choice(free))
    for k, device in enumerate(["amp", "amp2"][: int(rng.integers(0, 3))]):
        stage = [f"a{k}"] + [f"a{k}m{j}" for j in range(int(rng.integers(1, 4)))]
        add("A", device, source, stage[0])
        for j, node in enumerate(stage[1:], 1):
            resistor(stage[int(rng.integers(j))], node)
            if rng.random() < 0.5:
                resistor(node, str(rng.choice([*fixed, "gnd"])))
        resistor(stage[-1], str(rng.choice([*fixed, "gnd"])))
        if rng.random() < 0.5:
            add("D", "dsh", stage[int(rng.integers(len(stage)))], "gnd")
        if rng.random() < 0.5:
            add("D", "dpl", str(rng.choice(stage)), str(rng.choice([*fixed, "gnd"])))
        source = stage[-1]
    text = f'[circuit]\nname = "random-{seed}"\n\n'
    text += "".join(f"[devices.{k}]\n{v}\n" for k, v in devices.items())
    output = str(rng.choice(free))
    text += f'[netlist]\ninputs = {inputs!r}\noutputs = ["{output}"]\n\n'.replace("'", '"')
    return text + "\n".join(elements), 2
