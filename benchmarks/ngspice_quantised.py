"""Quantised exports in ngspice: does every netlist converge from scratch, and how fast?

    eqprop train circuits/mnist-mini.toml --out runs/mini
    python benchmarks/ngspice_quantised.py runs/mini --samples 20 --levels 16 64

For each level count, quantises the run's conductances, exports test samples
0..N-1 as netlists (no .nodeset) and runs each with `ngspice -b` one at a time,
recording ngspice's total Newton iterations (`rusage totiter`: gmin or source
stepping shows as hundreds), the wall and CPU time, and the largest node-voltage
difference from our solver on the quantised circuit. Writes
benchmarks/results/ngspice_quantised_<run name>_<levels>.json with the command and
machine, rewritten after every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

from eqprop_cli.hardware.devicemap import conductance_map, level_ranges, quantise
from eqprop_cli.hardware.spice import CONTROL_START, export_spice, ngspice_op, spice_node_names
from eqprop_cli.learn.samples import split_samples
from eqprop_cli.learn.settings import solver_settings
from eqprop_cli.runs.rundir import load_target
from eqprop_cli.solver.equilibrium import solve

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--levels", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    doc = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "levels": {},
    }
    levels = "_".join(map(str, args.levels))
    out = ROOT / "benchmarks" / "results" / f"ngspice_quantised_{args.run.name}_{levels}.json"
    for count in args.levels:
        loaded = load_target(args.run)
        network = loaded.network
        quantise(conductance_map(network), level_ranges(network, count, None))
        _, x, _, _ = split_samples(loaded.spec, network, "test", args.samples)
        ours = solve(network, x, **solver_settings(loaded.spec)).voltages
        names = spice_node_names(network)
        rows = []
        for b in range(len(x)):
            netlist = export_spice(network, x[b]).replace(
                CONTROL_START, f"{CONTROL_START}rusage totiter\n", 1
            )
            start, cpu = time.perf_counter(), _children_cpu()
            op, stdout = ngspice_op(netlist, timeout=3600)
            seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
            theirs = np.array([op[n] if i else 0.0 for i, n in enumerate(names)])
            row = {
                "sample": b,
                "iterations": int(re.search(r"Total iterations = (\d+)", stdout).group(1)),
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "max_voltage_difference": float(np.max(np.abs(theirs - ours[b]))),
            }
            rows.append(row)
            print(count, row, flush=True)
            doc["levels"][str(count)] = {
                "samples": rows,
                "max_iterations": max(r["iterations"] for r in rows),
                "max_seconds": max(r["seconds"] for r in rows),
                "max_cpu_seconds": max(r["cpu_seconds"] for r in rows),
                "max_voltage_difference": max(r["max_voltage_difference"] for r in rows),
            }
            out.write_text(json.dumps(doc, indent=2) + "\n")  # after every sample


def _children_cpu() -> float:
    """CPU seconds of finished child processes (ngspice): wall time on a shared machine
    says more about the other jobs than about ngspice."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
