"""The loss at the circuit's readout, its gradient, and the nudge that EP applies for it.

Classes are read out as outputs: class k is output k, the prediction is the
largest readout. Two losses:

- squared error, L = 1/2 sum_k (o_k - t_k)^2 in V^2, with t = target_high for
  the true class and target_low for the others. Its nudge can be a
  conductance beta to a source at the target (exact co-content) or a current.
- softmax cross-entropy of the logits o / temperature, in nats. Its nudge is
  a current: beta times the loss gradient at the free equilibrium, injected
  at the outputs (EP needs only the first-order term of the nudge).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..circuit.spec import TrainingSpec
from ..errors import EqpropError
from ..numpy_sums import PAIRWISE_BLOCK, pairwise_row_sum
from ..solver.equilibrium import Nudge


class ReadoutLoss:
    """Targets, loss values, gradients and nudges for one training configuration."""

    def __init__(self, training: TrainingSpec, n_outputs: int, n_classes: int):
        if n_outputs != n_classes:
            raise EqpropError(
                f"the circuit reads out {n_outputs} output(s) but the dataset "
                f'"{training.dataset}" has {n_classes} classes; it needs one output per class'
            )
        self.kind = training.loss
        self.n_classes = n_classes
        self.high = training.target_high
        self.low = training.target_low
        self.temperature = training.temperature
        self.nudge_kind = training.nudge
        self._targets = np.full((n_classes, n_classes), self.low, dtype=float)
        np.fill_diagonal(self._targets, self.high)
        # EP estimates the gradient of scale * L (the nudge is in volts): divide it back out
        self.scale = self.temperature**2 if self.kind == "cross_entropy" else 1.0

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """Target readouts (batch, classes), volts (squared error): rows of the table of
        each class's targets."""
        return self._targets.take(labels, axis=0)

    def _softmax(self, outputs: np.ndarray) -> np.ndarray:
        z = outputs / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def value(self, outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Loss per sample: V^2 (squared error) or nats (cross-entropy)."""
        if self.kind == "squared_error":
            return 0.5 * np.square(outputs - self.targets(labels)).sum(axis=1)
        z = outputs / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -log_p[np.arange(len(labels)), labels]

    def batch_totals(self, outputs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """(the loss summed over the batch, the count of wrong predictions), the bits of
        ``value(...).sum()`` and ``(predictions(outputs) != labels).sum()``: squared error
        in one compiled pass where the batch and the classes fit numpy's one block of its
        pairwise sums (``pairwise_row_sum``) and the outputs are a C-contiguous float64 array."""
        fits = 0 < outputs.shape[0] <= PAIRWISE_BLOCK and 2 <= outputs.shape[1] <= PAIRWISE_BLOCK
        if (
            self.kind == "squared_error"
            and fits
            and outputs.dtype == np.float64
            and outputs.flags.c_contiguous
            and outputs.shape[1] == self.n_classes
        ):
            totals = _squared_error_totals(outputs, labels, self._targets, np.empty(2))
            if totals[1] >= 0:  # (else a label names no class: numpy's path says so)
                return float(totals[0]), float(totals[1])
        value = float(self.value(outputs, labels).sum())
        return value, float((predictions(outputs) != labels).sum())

    def gradient(self, outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """dL/do per sample (batch, classes)."""
        if self.kind == "squared_error":
            return outputs - self.targets(labels)
        p = self._softmax(outputs)
        p[np.arange(len(labels)), labels] -= 1.0
        return p / self.temperature

    def nudge(
        self,
        beta: float,
        outputs: np.ndarray | None,
        labels: np.ndarray,
        targets: np.ndarray | None = None,
    ) -> Nudge:
        """The nudge of strength beta (siemens) for a batch whose free readout is ``outputs``
        (which a conductance nudge does not use: None will do); ``targets``: the labels'
        ``targets``, where the caller has them (the nudges of a batch share them)."""
        if self.nudge_kind == "conductance":
            return Nudge(beta, target=self.targets(labels) if targets is None else targets)
        return Nudge(current=-beta * self.scale * self.gradient(outputs, labels))


def predictions(outputs: np.ndarray) -> np.ndarray:
    """The predicted class of each sample: the largest readout."""
    return np.argmax(outputs, axis=1)


@njit(cache=True)
def _squared_error_totals(outputs, labels, table, out):
    """out = (sum over the samples of 1/2 sum_k (o_k - t_k)^2, t the label's row of
    ``table``; the samples whose largest output (the first, or the first NaN, as np.argmax
    picks) is not their label), with numpy's roundings and its pairwise sums of rows of 2
    to PAIRWISE_BLOCK entries (``pairwise_row_sum``); out[1] = -1 where a label is not a row of
    ``table``."""
    n = outputs.shape[1]
    squares, values = np.empty(n), np.empty(outputs.shape[0])
    wrong = 0
    for i in range(outputs.shape[0]):
        if not 0 <= labels[i] < table.shape[0]:
            out[1] = -1
            return out
        o, t = outputs[i], table[labels[i]]
        best = 0
        for k in range(n):
            d = o[k] - t[k]
            squares[k] = d * d
        values[i] = 0.5 * pairwise_row_sum(squares)
        for k in range(n):
            if np.isnan(o[k]):
                best = k
                break
            if o[k] > o[best]:
                best = k
        wrong += best != labels[i]
    out[0] = pairwise_row_sum(values)
    out[1] = wrong
    return out
