"""Exported netlists of random valid circuits against our solver, node by node, in ngspice.

The circuits are those of ``benchmarks/solver_audit.py`` (layered networks with
conductances log-uniform over 1 nS to 1 mS, Shockley diodes of IS 1e-16 to 1e-6 A,
n 0.5 to 4, 250 to 400 K and RS 1 ohm to 1 Mohm, named parts, piecewise-linear
diodes and hard clamps, amplifiers on the node and behind it, bias currents, sources
within 1 V or up to 40 V; random meshes with and without diode-only islands, stiff
meshes, the suite's netlists and layered circuits), one random input vector each,
solved at tol 1e-14 A and vtol 1e-12 V. Each is exported with ``export_spice`` and
run with ``ngspice -b``; a case is counted off when some node is further than 1e-6 V
from our solution, and ngspice's warnings (its gmin and source stepping, which it
prints on stderr) are counted too.

    python benchmarks/spice_audit.py --count 400 --seed 100
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import randomcircuits as rc  # noqa: E402
import solver_audit as sa  # noqa: E402

from eqprop_cli import Network, compile_circuit, parse_circuit, solve  # noqa: E402
from eqprop_cli.errors import InputError  # noqa: E402
from eqprop_cli.hardware.spice import (  # noqa: E402
    CONTROL_START,
    export_spice,
    ngspice_path,
    parse_raw,
    spice_node_names,
)

LIMIT = 1e-6  # volts


def circuit(seed: int) -> tuple[str, Network, np.ndarray]:
    """(form, network, one input vector) of case ``seed``."""
    rng = np.random.default_rng(seed)
    form = str(
        rng.choice(
            ["layered", "anything", "anything-stiff", "netlist", "rc-layered"],
            p=[0.5, 0.2, 0.1, 0.1, 0.1],
        )
    )
    if form == "layered":
        text, n = sa.layered_text(rng, "float64")
    elif form == "anything":
        text, n = rc.anything(int(rng.integers(1 << 30)), islands=bool(rng.random() < 0.5))
    elif form == "anything-stiff":
        text, n = rc.anything(int(rng.integers(1 << 30)), islands=False, conductances=(1e-9, 1e-3))
    elif form == "netlist":
        text, n = rc.netlist(int(rng.integers(1 << 30)), clamps=bool(rng.random() < 0.5))
    else:
        kind = str(rng.choice(["shockley", "series", "ideal", "clamp", "part"]))
        text, n = rc.layered(int(rng.integers(1 << 30)), diode=kind)
    net = Network(compile_circuit(parse_circuit(text)))
    if form == "layered":
        sa.spread_conductances(net, rng, 1e-9, 1e-3)
    return form, net, rng.uniform(-1, 1, (1, n))


def ngspice(netlist: str) -> tuple[dict[str, float] | None, str]:
    """ngspice's node voltages (None when it found no operating point) and its stderr."""
    with tempfile.TemporaryDirectory(prefix="eqprop-audit-") as tmp:
        text = netlist.replace(CONTROL_START, f"{CONTROL_START}write op.raw all\n", 1)
        Path(tmp, "c.cir").write_text(text)
        env = dict(os.environ, SPICE_ASCIIRAWFILE="1")
        proc = subprocess.run(
            [ngspice_path(), "-b", "c.cir"], cwd=tmp, env=env, capture_output=True, text=True
        )
        raw = Path(tmp, "op.raw")
        ok = proc.returncode == 0 and raw.exists()
        return (parse_raw(raw.read_text()) if ok else None), proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="first case")
    parser.add_argument("--jobs", type=int, default=2, help="ngspice processes at a time")
    args = parser.parse_args()
    cases, refused, unconverged = [], 0, 0
    for seed in range(args.seed, args.seed + args.count):
        try:
            form, net, x = circuit(seed)
            eq = solve(net, x, tol=1e-14, vtol=1e-12, max_iter=3000)
        except InputError:  # no operating point (clamps that contradict each other)
            refused += 1
            continue
        if not np.all(eq.success):
            unconverged += 1
            continue
        cases.append((seed, form, net, eq.voltages[0], export_spice(net, x[0])))
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(ngspice, [c[4] for c in cases]))
    failed, off, warned, worst = [], [], 0, []
    for (seed, form, net, ours, _), (theirs, stderr) in zip(cases, runs, strict=True):
        warned += "warning" in stderr.lower()
        if theirs is None:
            failed.append((seed, form))
            continue
        names = spice_node_names(net)
        d = max(abs(theirs[m] - ours[i]) for i, m in enumerate(names) if m != "0")
        worst.append(d)
        if d > LIMIT:
            off.append((seed, form, d))
    print(f"{args.count} cases from seed {args.seed}: {refused} refused, {unconverged} not ours")
    print(f"{len(cases)} run in ngspice: {len(failed)} found no operating point, {warned} warned")
    print(
        f"within {LIMIT:g} V: {len(worst) - len(off)} of {len(worst)}; median {np.median(worst):.1e} V"
    )
    for seed, form, d in off:
        print(f"  off: seed {seed} ({form}) {d:.2e} V")
    for seed, form in failed:
        print(f"  no operating point: seed {seed} ({form})")


if __name__ == "__main__":
    main()
