"""Warm starts without ``like``, upset at the outputs: how far from the truth a solve reported
converged can be.

Random one-input resistor circuits (1 to 4 hidden nodes, 1 to 3 outputs, single or
differential readout, conductances uniform in [low, high] with low 1 nS to 100 uS and
high up to 1,000 times low): the free equilibrium, then a current nudge at the outputs
(1 pA to 1 nA) solved from it with no ``like`` (so no contraction known from the free
solve), at vtol 1e-9 V; each compared with one dense linear solve of Kirchhoff's law.

    python benchmarks/warm_start_audit.py --count 1000 --seed 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_solver import _resistors_exactly, _warm_nudge_circuit, network

from eqprop_cli.solver.equilibrium import Nudge, solve

VTOL = 1e-9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    worst, false, sweeps = 0.0, 0, []
    for _ in range(args.count):
        hidden, outputs = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        readout = str(rng.choice(["single", "differential"]))
        low = 10 ** rng.uniform(-9, -4)
        high = low * 10 ** rng.uniform(0, 3)
        current = rng.standard_normal(outputs) * 10 ** rng.uniform(-12, -9)
        net = network(_warm_nudge_circuit(hidden, outputs, readout, f"{low:.3g}", f"{high:.3g}"))
        x = np.array([[rng.uniform(-1, 1)]])
        free = solve(net, x)
        eq = solve(net, x, x0=free.unknowns, nudge=Nudge(current=current[None]), vtol=VTOL)
        error = np.abs(eq.voltages[0] - _resistors_exactly(net, x, current)).max()
        sweeps.append(eq.iterations)
        if eq.success:
            worst = max(worst, error / VTOL)
            false += error > VTOL
    print(
        f"{args.count} warm starts: {false} reported converged further than vtol from the "
        f"truth; worst converged error {worst:.2f} x vtol; {np.mean(sweeps):.2f} sweeps on average"
    )


if __name__ == "__main__":
    main()
