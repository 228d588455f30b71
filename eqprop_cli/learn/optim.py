"""Update rules as a chain of small pieces (as optax chains transforms), and learning-rate
schedules; pure functions of explicit state.

A piece maps the proposed change of every parameter array to a new one and may keep
state (momentum's velocities); a constraint piece maps the updated parameters (a clip
to the device range). The trainer's rule is

    chain(scale(group scales), momentum(m), learning_rate(), scale(group scales), clip(low, high))

on gradients in physical units: normalise them (conductance / g_max, current / its
scale) so one learning rate means the same step on every device, add momentum, step
by -rate x schedule, return to physical units, clip. The state is a dict by piece
name, saved so in checkpoints. Device non-idealities (quantised or noisy steps) are
further pieces, not flags inside the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Arrays = list[np.ndarray]


@dataclass(frozen=True)
class Piece:
    """One step of an update rule.

    ``update(changes, state, rates)`` returns the new changes and state (``rates``: the
    learning rate of each array for this step); ``project(params)`` (constraints) maps
    updated parameters. ``init(params)`` is the state (None: it keeps none).
    """

    name: str
    update: Callable[[Arrays, Arrays | None, Sequence[float]], tuple[Arrays, Arrays | None]] = (
        lambda changes, state, rates: (changes, state)
    )
    init: Callable[[Arrays], Arrays | None] = lambda params: None
    project: Callable[[Arrays], Arrays] | None = None


def scale(factors: Sequence[float], name: str = "scale") -> Piece:
    """Multiply each array's change by its factor."""
    return Piece(name, lambda u, s, r: ([f * a for f, a in zip(factors, u, strict=True)], s))


def momentum(beta: float) -> Piece:
    """Heavy-ball momentum: v = beta v + change, the change becomes v (none at beta = 0)."""
    if not beta:
        return Piece("momentum")

    def update(u: Arrays, velocity: Arrays | None, rates) -> tuple[Arrays, Arrays]:
        velocity = [beta * v + a for v, a in zip(velocity, u, strict=True)]
        return velocity, velocity

    return Piece("momentum", update, lambda params: [np.zeros_like(p) for p in params])


def learning_rate() -> Piece:
    """Descend: each change times minus its array's rate for this step."""
    return Piece(
        "learning_rate", lambda u, s, rates: ([-r * a for a, r in zip(u, rates, strict=True)], s)
    )


def clip(low: Sequence[float], high: Sequence[float]) -> Piece:
    """Constraint: each updated array clipped into [low, high] (a device's range)."""
    return Piece(
        "clip",
        project=lambda params: [
            np.clip(p, lo, hi) for p, lo, hi in zip(params, low, high, strict=True)
        ],
    )


@dataclass(frozen=True)
class Chain:
    """Pieces applied in order: changes through the update pieces, then the parameters plus
    the changes through the constraints."""

    pieces: tuple[Piece, ...] = field(default_factory=tuple)

    def init(self, params: Arrays) -> dict[str, Arrays]:
        """The state of every piece that keeps one, by name."""
        states = ((p.name, p.init(params)) for p in self.pieces)
        return {name: s for name, s in states if s is not None}

    def step(
        self, params: Arrays, grads: Arrays, state: dict[str, Arrays], rates: Sequence[float]
    ) -> tuple[Arrays, dict[str, Arrays]]:
        """(new parameters, new state) after one step on ``grads``; state of pieces not in
        the chain is kept as it was."""
        new_state, changes = dict(state), list(grads)
        for piece in self.pieces:
            if piece.project is not None:
                continue
            own = state.get(piece.name)
            if own is None:
                own = piece.init(params)
            changes, own = piece.update(changes, own, rates)
            if own is not None:
                new_state[piece.name] = own
        params = [p + c for p, c in zip(params, changes, strict=True)]
        for piece in self.pieces:
            if piece.project is not None:
                params = piece.project(params)
        return params, new_state


def chain(*pieces: Piece) -> Chain:
    return Chain(tuple(pieces))


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
