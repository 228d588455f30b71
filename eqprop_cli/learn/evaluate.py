"""Evaluate a network on a labelled set: accuracy, loss, confusion matrix, per-class accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..circuit.network import Network
from ..learn.loss import ReadoutLoss, predictions
from ..solver.equilibrium import solve


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
