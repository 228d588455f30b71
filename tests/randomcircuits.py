"""Random circuit files (TOML text) of every supported device, for solver and ngspice tests."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

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
