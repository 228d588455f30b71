"""Update rules as a chain of small pieces (as optax chains transforms), and learning-rate
schedules.

A piece maps the proposed change of a parameter array to a new one and may keep state
(momentum's velocities); a constraint piece maps the updated parameters (a clip to the
device range); a landing piece (the programmer of device-aware arrays) puts the change
into its arrays itself, in place of the plain addition. The trainer's rule is

    chain(scale(group scales), momentum(m), learning_rate(), scale(group scales), clip(low, high))

on gradients in physical units: normalise them (conductance / g_max, current / its
scale) so one learning rate means the same step on every device, add momentum, step
by -rate x schedule, return to physical units, clip. The state is a dict by piece
name, one array per parameter array, saved so in checkpoints. Device non-idealities
(quantised or noisy steps) are further pieces, not flags inside the trainer.

The chain works in place and in one pass: every piece acts on a chunk of a few
thousand entries of an array (its change worked out in the gradient's array, its state
and the parameters as views) before the next chunk is read, so a step reads the
gradients and the state once and writes the state and the parameters once, however
many pieces, and allocates nothing.
Each piece does the same floating-point operations as it would on whole arrays: the
result does not depend on the chunking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

Arrays = list[np.ndarray]
CHUNK = 32768  # entries per chunk: the change, state and parameters of one fit in L2


@dataclass(frozen=True)
class Piece:
    """One step of an update rule, acting on the arrays numbered ``arrays`` (None: all).

    ``update(k, change, state, rate)`` changes array k's proposed ``change`` in place
    (``state``: its own state for those entries, or None; ``rate``: array k's learning
    rate for this step); ``project(k, values)`` maps updated parameters in place;
    ``init(values)`` is the state, one array per parameter array (None: it keeps none).
    ``land(values, changes, where)`` (a programmer) puts ``changes`` (by array number)
    into its arrays of ``values`` in place instead of the plain addition, whole arrays at a
    time, and returns a count to report (pulses sent); ``where`` is (epoch, batch).
    """

    name: str
    update: Callable[[int, np.ndarray, np.ndarray | None, float], None] | None = None
    init: Callable[[Arrays], Arrays | None] = lambda values: None
    project: Callable[[int, np.ndarray], None] | None = None
    land: Callable[[Arrays, dict[int, np.ndarray], tuple[int, int]], int] | None = None
    arrays: frozenset[int] | None = None

    def acts_on(self, k: int) -> bool:
        return self.arrays is None or k in self.arrays


def _arrays(arrays: Collection[int] | None) -> frozenset[int] | None:
    return None if arrays is None else frozenset(arrays)


def scale(
    factors: Sequence[float], name: str = "scale", arrays: Collection[int] | None = None
) -> Piece:
    """Multiply each array's change by its factor."""

    def update(k: int, change: np.ndarray, state, rate: float) -> None:
        np.multiply(change, factors[k], out=change)

    return Piece(name, update, arrays=_arrays(arrays))


def momentum(beta: float) -> Piece:
    """Heavy-ball momentum: v = beta v + change, the change becomes v (none at beta = 0)."""
    if not beta:
        return Piece("momentum")

    def update(k: int, change: np.ndarray, velocity: np.ndarray, rate: float) -> None:
        velocity *= beta
        velocity += change
        np.copyto(change, velocity)

    return Piece("momentum", update, lambda values: [np.zeros_like(p) for p in values])


def learning_rate() -> Piece:
    """Descend: each change times minus its array's rate for this step."""

    def update(k: int, change: np.ndarray, state, rate: float) -> None:
        np.multiply(change, -rate, out=change)

    return Piece("learning_rate", update)


def clip(
    low: Sequence[float], high: Sequence[float], arrays: Collection[int] | None = None
) -> Piece:
    """Constraint: each updated array clipped into [low, high] (a device's range)."""

    def project(k: int, values: np.ndarray) -> None:
        np.clip(values, low[k], high[k], out=values)

    return Piece("clip", project=project, arrays=_arrays(arrays))


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)] or [slice(0, 0)]


def _flat(a: np.ndarray) -> np.ndarray | None:
    """A 1-D view of a C-contiguous array (None when it has none)."""
    return a.reshape(-1) if a.flags.c_contiguous else None


@dataclass(frozen=True)
class Chain:
    """Pieces applied in order: changes through the update pieces, then the parameters plus
    the changes (or a landing piece's programming) through the constraints."""

    pieces: tuple[Piece, ...] = field(default_factory=tuple)

    def init(self, values: Arrays) -> dict[str, Arrays]:
        """The state of every piece that keeps one, by name."""
        states = ((p.name, p.init(values)) for p in self.pieces)
        return {name: s for name, s in states if s is not None}

    def step(
        self,
        values: Arrays,
        grads: Arrays,
        state: dict[str, Arrays],
        rates: Sequence[float],
        where: tuple[int, int] = (0, 0),
    ) -> tuple[dict[str, Arrays], int]:
        """One step on ``grads``: updates ``values`` (the parameter arrays) and the state's arrays in place and
        returns (the state, what the landing pieces counted). ``grads`` are used up: the
        changes are worked out in their arrays where their dtype is the parameters'. State
        of pieces not in the chain is kept as it was; a piece's missing state starts from
        its ``init``."""
        state = dict(state)
        for piece in self.pieces:
            if piece.update is not None and piece.name not in state:
                own = piece.init(values)
                if own is not None:
                    state[piece.name] = own
        landed: dict[Piece, dict[int, np.ndarray]] = {}
        for k, (p, g) in enumerate(zip(values, grads, strict=True)):
            updates = [
                (piece.update, state[piece.name][k] if piece.name in state else None)
                for piece in self.pieces
                if piece.update is not None and piece.acts_on(k)
            ]
            lander = next((pc for pc in self.pieces if pc.land and pc.acts_on(k)), None)
            if lander is None:
                self._fused(k, p, g, updates, self._projects(k), rates[k])
                continue
            # the changes only, chunk by chunk; the programmer lands them in whole arrays
            landed.setdefault(lander, {})[k] = self._fused(k, p, g, updates, None, rates[k])
        count = 0
        for piece, changes in landed.items():
            count += piece.land(values, changes, where)
            for k in changes:
                for project in self._projects(k):
                    project(k, values[k])
        return state, count

    def _projects(self, k: int) -> list[Callable[[int, np.ndarray], None]]:
        return [pc.project for pc in self.pieces if pc.project is not None and pc.acts_on(k)]

    def _fused(
        self, k: int, p: np.ndarray, g: np.ndarray, updates, projects, rate: float
    ) -> np.ndarray:
        """Array k's step, chunk by chunk: each chunk's change (in the gradient's array)
        through every piece, added to the parameters and projected before the next chunk is
        read; returns the changes. ``projects`` None: the changes only (a landing piece
        puts them into the parameters)."""
        own = [a for _, a in updates]
        g = np.asarray(g, dtype=np.result_type(g, p))
        flat = [_flat(a) if a is not None else None for a in (p, *own, g)]
        if any(f is None for f, a in zip(flat, (p, *own, g), strict=True) if a is not None):
            views, chunks = (p, *own, g), [...]  # not contiguous: the whole array at once
        else:
            views, chunks = flat, _chunks(p.size, CHUNK)
        for rows in chunks:
            change = views[-1][rows]
            for (update, _), a in zip(updates, views[1:-1], strict=True):
                update(k, change, None if a is None else a[rows], rate)
            if projects is None:
                continue
            values = views[0][rows]
            values += change
            for project in projects:
                project(k, values)
        return g


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
