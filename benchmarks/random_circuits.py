"""Random circuits at default solver settings against ngspice and a 50-digit reference.

Three sweeps of ``tests/randomcircuits.py``'s ``anything`` generator (5 to 60
nodes; resistors log-uniform in a range, Shockley and piecewise-linear diodes,
grounded, stacked and input sources, current sources, chained amplifiers,
random meshes and layers), one random input vector each, solved by
``eqprop_cli.solve`` with its defaults:

- ``ngspice``: resistors 1e-7 to 1e-3 S, no diode-only islands, against
  ngspice on the exported netlist (GMIN taken back out, exact Shockley
  reverse region);
- ``islands``: the same with nodes held by diodes only, against the 50-digit
  reference of ``tests/reference.py`` (ngspice fails or stops off on those nodes);
- ``stiff``: with islands and resistors of 1e-12 to 1e3 S, against the reference.

For each: how many converged, the largest |V - exact| among converged samples,
how many were reported converged while further than vtol (1e-9 V) from the
exact answer ("false converged", which must be 0), and the solve times.

    python benchmarks/random_circuits.py --count 200 --json benchmarks/results/random_circuits.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import randomcircuits as rc  # noqa: E402
from reference import exact_voltages  # noqa: E402

from eqprop_cli import Network, compile_circuit, parse_circuit, solve  # noqa: E402
from eqprop_cli.errors import EqpropError  # noqa: E402
from eqprop_cli.hardware.spice import export_spice, run_ngspice, spice_node_names  # noqa: E402

SWEEPS = {
    "ngspice": {"islands": False, "conductances": (1e-7, 1e-3)},
    "islands": {"islands": True, "conductances": (1e-7, 1e-3)},
    "stiff": {"islands": True, "conductances": (1e-12, 1e3)},
}
VTOL = 1e-9


def one(seed: int, kind: str) -> dict:
    text, n = rc.anything(seed, **SWEEPS[kind])
    net = Network(compile_circuit(parse_circuit(text)))
    x = np.random.default_rng(seed).uniform(-1, 1, (1, n))
    start = time.perf_counter()
    eq = solve(net, x)
    seconds = time.perf_counter() - start
    row = {
        "seed": seed,
        "nodes": net.n_nodes,
        "method": eq.method,
        "iterations": eq.iterations,
        "converged": bool(eq.success),
        "estimate": float(eq.error[0]),
        "seconds": seconds,
    }
    if kind == "ngspice":
        try:
            theirs = run_ngspice(export_spice(net, x[0]))
        except EqpropError as exc:
            row["oracle_failed"] = str(exc).splitlines()[0]
            return row
        names = spice_node_names(net)
        diff = [abs(theirs[m] - eq.voltages[0, i]) for i, m in enumerate(names) if m != "0"]
    else:
        exact = exact_voltages(net, x[0], eq.voltages[0])
        diff = np.abs(exact - eq.voltages[0])
    row["max_abs_diff"] = float(max(diff))
    return row


def summary(rows: list[dict]) -> dict:
    judged = [r for r in rows if "max_abs_diff" in r]
    converged = [r for r in judged if r["converged"]]
    return {
        "circuits": len(rows),
        "oracle_failed": len(rows) - len(judged),
        "converged": sum(r["converged"] for r in rows),
        "not_converged_seeds": [r["seed"] for r in rows if not r["converged"]],
        "largest_diff_converged": max((r["max_abs_diff"] for r in converged), default=0.0),
        "within_1e-6_V": sum(r["max_abs_diff"] <= 1e-6 for r in judged),
        "false_converged": sum(r["max_abs_diff"] > VTOL for r in converged),
        "median_seconds": float(np.median([r["seconds"] for r in rows])),
        "max_seconds": max(r["seconds"] for r in rows),
        "nodes": [min(r["nodes"] for r in rows), max(r["nodes"] for r in rows)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="Circuits per sweep.")
    parser.add_argument("--json", type=Path, help="Write every row and the summaries here.")
    args = parser.parse_args()
    record = {
        "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "sweeps": {},
    }
    for kind in SWEEPS:
        rows = [one(seed, kind) for seed in range(args.count)]
        record["sweeps"][kind] = {"summary": summary(rows), "rows": rows}
        print(kind, json.dumps(record["sweeps"][kind]["summary"]))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
