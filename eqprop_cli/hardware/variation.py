"""Monte Carlo over programming error: what accuracy a programmed chip will have.

Each trial draws, for every programmable conductance (the trainable
resistor sets), a multiplicative error, lognormal ``g * exp(sigma z)`` or
Gaussian ``g * (1 + sigma z)``, then marks devices stuck off (at g_min) or
stuck on (at g_max) with the given probabilities, clips everything to the
device range [g_min, g_max] (widened to each trained conductance outside it: the
devices of a device-aware run vary device to device, and keep their own bounds)
and evaluates the circuit. Trial t draws from a
generator seeded with (seed, t), so any trial is reproducible on its own,
and sigma = 0 without stuck devices is exactly the nominal circuit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..circuit.network import Network
from ..errors import EqpropError
from ..hardware.devicemap import programmable_sets
from ..learn.evaluate import Evaluation, evaluate
from ..learn.loss import ReadoutLoss

DISTRIBUTIONS = ("lognormal", "gaussian")


@dataclass(frozen=True)
class Variation:
    """Programming error of every device: relative spread and stuck-device rates."""

    sigma: float
    distribution: str = "lognormal"
    stuck_off: float = 0.0
    stuck_on: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise EqpropError(
                f"{{variation}} {self.sigma:g}: expected a relative spread >= 0",
                params=("variation",),
            )
        if self.distribution not in DISTRIBUTIONS:
            raise EqpropError(
                f'{{distribution}} "{self.distribution}": expected one of '
                f"{', '.join(DISTRIBUTIONS)}",
                params=("distribution",),
            )
        for name, p in (("stuck_off", self.stuck_off), ("stuck_on", self.stuck_on)):
            if not 0 <= p <= 1:
                raise EqpropError(
                    f"{{{name}}} {p:g}: expected a probability in [0, 1]", params=(name,)
                )
        if self.stuck_off + self.stuck_on > 1:
            raise EqpropError(
                "{stuck_off} and {stuck_on} add up to more than 1", params=("stuck_off", "stuck_on")
            )

    def draw(
        self, network: Network, g: list[np.ndarray], seed: int, trial: int
    ) -> list[np.ndarray]:
        """The conductances of one programmed chip (new arrays; ``g`` is not changed)."""
        rng = np.random.default_rng([seed, trial])
        resistors, _ = programmable_sets(network)
        out = list(g)
        for k in resistors:
            model = network.resistors[k].device.model
            z = rng.standard_normal(g[k].shape)
            if self.distribution == "lognormal":
                value = g[k] * np.exp(self.sigma * z)
            else:
                value = g[k] * (1.0 + self.sigma * z)
            if self.stuck_off or self.stuck_on:
                u = rng.random(g[k].shape)
                value = np.where(u < self.stuck_off, model.low, value)
                value = np.where(u >= 1.0 - self.stuck_on, model.high, value)
            low, high = np.minimum(model.low, g[k]), np.maximum(model.high, g[k])
            out[k] = np.clip(value, low, high)
        return out


@dataclass
class MonteCarlo:
    """Accuracies of the nominal circuit and of every trial."""

    nominal: Evaluation
    correct: np.ndarray  # correctly classified samples, one count per trial

    @property
    def accuracies(self) -> np.ndarray:
        return self.correct / self.nominal.n_samples

    def as_dict(self) -> dict:
        n, trials = self.nominal.n_samples, len(self.correct)
        # from integer counts: trials that equal the nominal circuit give exactly its accuracy
        mean = int(self.correct.sum()) / (trials * n)
        a = self.accuracies
        spread = float(np.sum((a - mean) ** 2)) / (trials - 1) if trials > 1 else 0.0
        return {
            "trials": trials,
            "nominal_accuracy": self.nominal.accuracy,
            "mean_accuracy": mean,
            "std_accuracy": math.sqrt(spread),
            "worst_accuracy": float(a.min()),
            "best_accuracy": float(a.max()),
            "accuracies": a.tolist(),
        }


def monte_carlo(
    network: Network,
    x: np.ndarray,
    y: np.ndarray,
    loss: ReadoutLoss,
    variation: Variation,
    trials: int,
    seed: int = 0,
    batch_size: int = 1000,
    **solver: object,
) -> MonteCarlo:
    """Evaluate ``trials`` programmed copies of the network; the network is left as it was."""
    if trials < 1:
        raise EqpropError(f"{{trials}} {trials}: expected at least 1", params=("trials",))
    g = [a.copy() for a in network.g]
    nominal = evaluate(network, x, y, loss, batch_size, **solver)
    correct = []  # grown trial by trial: nothing is allocated for trials not run
    try:
        for t in range(trials):
            network.set_conductances(variation.draw(network, g, seed, t))
            correct.append(np.trace(evaluate(network, x, y, loss, batch_size, **solver).confusion))
    finally:
        network.set_conductances(g)
    return MonteCarlo(nominal, np.array(correct, dtype=np.int64))
