"""Evaluate a network on a labelled set: accuracy, loss, confusion matrix, per-class accuracy;
and the same samples through ngspice, node by node."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import EqpropError
from .loss import ReadoutLoss, predictions
from .network import Network
from .solve import solve
from .spice import export_spice, ngspice_ops, printed_class, spice_node_names


@dataclass
class Evaluation:
    """Classification results of one split."""

    n_samples: int
    accuracy: float
    loss: float  # mean per sample
    confusion: np.ndarray  # (classes, classes): rows true, columns predicted
    not_converged: int  # samples whose equilibrium missed the tolerance

    @property
    def error_rate(self) -> float:
        return 1.0 - self.accuracy

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """Per true class, the fraction predicted right (the recall); NaN for an absent class."""
        return self._ratio(self.confusion.sum(axis=1))

    @property
    def per_class_precision(self) -> np.ndarray:
        """Per predicted class, the fraction that is right; NaN for a class never predicted."""
        return self._ratio(self.confusion.sum(axis=0))

    def _ratio(self, totals: np.ndarray) -> np.ndarray:
        return np.divide(
            np.diag(self.confusion), totals, out=np.full(len(totals), np.nan), where=totals > 0
        )

    def as_dict(self, classes: list[str]) -> dict:
        """JSON-ready: accuracy, error_rate, loss, n_samples, confusion, per-class figures."""
        return {
            "n_samples": self.n_samples,
            "accuracy": self.accuracy,
            "error_rate": self.error_rate,
            "loss": self.loss,
            "not_converged": self.not_converged,
            "classes": classes,
            "confusion": self.confusion.tolist(),
            "per_class_accuracy": _by_class(classes, self.per_class_accuracy),
            "per_class_recall": _by_class(classes, self.per_class_accuracy),
            "per_class_precision": _by_class(classes, self.per_class_precision),
        }


def _by_class(classes: list[str], values: np.ndarray) -> dict[str, float | None]:
    return {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, values, strict=True)}


def evaluate(
    network: Network,
    x: np.ndarray,
    y: np.ndarray,
    loss: ReadoutLoss,
    batch_size: int = 1000,
    **solver: object,
) -> Evaluation:
    """Solve the free equilibrium of every sample (in batches) and score the readout."""
    k = loss.n_classes
    confusion = np.zeros((k, k), dtype=np.int64)
    total_loss = 0.0
    missed = 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        eq = solve(network, xb, **solver)
        outputs = eq.outputs()
        total_loss += float(loss.value(outputs, yb).sum())
        np.add.at(confusion, (yb, predictions(outputs)), 1)
        missed += int((~eq.converged).sum())
    n = len(y)
    return Evaluation(n, float(np.trace(confusion)) / n, total_loss / n, confusion, missed)


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
