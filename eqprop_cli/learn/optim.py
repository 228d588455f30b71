"""Optimizer and learning-rate schedule, as pure functions of explicit state (optax-style).

Parameters are normalised (conductance / g_max, current / its scale) so one
learning rate means the same step on every device; the trainer converts.
"""

from __future__ import annotations

import math

import numpy as np


class SGD:
    """Stochastic gradient descent with optional (heavy-ball) momentum."""

    def __init__(self, momentum: float = 0.0):
        self.momentum = momentum

    def init(self, params: list[np.ndarray]) -> list[np.ndarray]:
        """Optimizer state: one velocity per parameter array (empty without momentum)."""
        return [np.zeros_like(p) for p in params] if self.momentum else []

    def update(
        self, grads: list[np.ndarray], state: list[np.ndarray], rates: list[float]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(steps to add to the parameters, new state); ``rates`` per parameter array."""
        if not self.momentum:
            return [-r * g for g, r in zip(grads, rates, strict=True)], state
        velocity = [np.multiply(v, self.momentum) for v in state]
        for v, g in zip(velocity, grads, strict=True):
            v += g
        return [np.multiply(v, -r) for v, r in zip(velocity, rates, strict=True)], velocity


def schedule_factor(kind: str, epoch: int, epochs: int, decay: float, every: int) -> float:
    """Multiplier of the base learning rate during ``epoch`` (0-based) of ``epochs``."""
    if kind == "constant":
        return 1.0
    if kind == "step":
        return decay ** (epoch // every)
    if kind == "exponential":
        return decay**epoch
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    raise ValueError(f"unknown schedule {kind!r}")
