"""The same samples through our solver and through ngspice, node by node and class by class."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..circuit.network import Network
from ..errors import EqpropError
from ..learn.loss import predictions
from ..solver.equilibrium import solve
from .spice import export_spice, ngspice_ops, printed_class, spice_node_names


@dataclass
class SpiceCheck:
    """Our solver against ngspice on the same exported netlists, sample by sample."""

    labels: np.ndarray
    ours: np.ndarray  # predicted classes, our solver
    theirs: np.ndarray  # predicted classes printed by the netlists' .control blocks
    max_voltage_difference: float  # volts, over every node of every sample
    seconds: float  # wall time of the ngspice runs
    nodeset: int  # netlists that ngspice solved only from our operating point as a guess

    @property
    def agreement(self) -> float:
        return float(np.mean(self.ours == self.theirs))

    def as_dict(self) -> dict:
        return {
            "n_samples": len(self.labels),
            "accuracy": float(np.mean(self.theirs == self.labels)),
            "solver_accuracy": float(np.mean(self.ours == self.labels)),
            "agreement": self.agreement,
            "max_voltage_difference": self.max_voltage_difference,
            "needed_nodeset": self.nodeset,
            "seconds": self.seconds,
        }


def check_with_ngspice(
    network: Network, x: np.ndarray, y: np.ndarray, jobs: int, on_done=None, **solver: object
) -> SpiceCheck:
    """Export one netlist per sample, run them all with ngspice (``jobs`` at a time), and
    compare every node voltage and the printed class with our solver's; ``on_done()``
    is called as each first run finishes.

    A netlist on which ngspice finds no operating point from scratch (stiff
    hard clamps) runs again with our operating point as .nodeset lines: an
    initial guess that ngspice releases before converging on its own; those
    are counted. A netlist that fails even so is an error.
    """
    eq = solve(network, x, **solver)
    ours = predictions(eq.outputs())
    voltages = eq.voltages
    names = spice_node_names(network)

    def netlist(b: int, guess: bool = False) -> str:
        return export_spice(
            network, x[b], header=[f"sample {b}"], nodeset=voltages[b] if guess else None
        )

    start = time.perf_counter()
    results = ngspice_ops([netlist(b) for b in range(len(x))], jobs, on_done=on_done)
    failed = [b for b, r in enumerate(results) if isinstance(r, EqpropError)]
    retried = ngspice_ops([netlist(b, True) for b in failed], jobs)
    for b, r in zip(failed, retried, strict=True):
        if isinstance(r, EqpropError):
            raise EqpropError(f"sample {b}: {r}")
        results[b] = r
    seconds = time.perf_counter() - start
    worst = 0.0
    theirs = np.empty(len(x), dtype=np.int64)
    for b, (op, stdout) in enumerate(results):
        theirs[b] = printed_class(stdout)
        spice = np.array([op[n] if i else 0.0 for i, n in enumerate(names)])
        worst = max(worst, float(np.max(np.abs(spice - voltages[b]))))
    return SpiceCheck(np.asarray(y), ours, theirs, worst, seconds, len(failed))
