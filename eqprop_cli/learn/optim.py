"""Update rules as a chain of small pieces (as optax chains transforms), and learning-rate
schedules.

A piece declares what it does to each entry of a parameter array's proposed change: a
scaling (the change times a factor), momentum (a velocity v = decay v + change, which
the change becomes; its state), or, as a constraint, a clip of the updated parameters to
a device range; a landing piece (the programmer of device-aware arrays) puts the change
into its arrays itself, in place of the plain addition. The trainer's rule is

    chain(scale(group scales), momentum(m), learning_rate(), scale(group scales), clip(low, high))

on gradients in physical units: normalise them (conductance / g_max, current / its
scale) so one learning rate means the same step on every device, add momentum, step
by -rate x schedule, return to physical units, clip. The state is a dict by piece
name, one array per parameter array, saved so in checkpoints. Device non-idealities
(quantised or noisy steps) are further pieces, not flags inside the trainer.

The chain runs as one compiled pass over each array (``_step``): every entry's change
goes through the pieces' operations in order, the velocity and the parameter are
updated, and nothing is allocated, so a step reads the gradients, the state and the
parameters once and writes the state and the parameters once. It does the same IEEE
floating-point operations, in the same order and at the arrays' precision, as the pieces
applied one after another to whole arrays with numpy (tests/test_device_training.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit

Arrays = list[np.ndarray]
BEFORE, AFTER = 2, 3  # scalings a compiled step applies before and after the momentum


@dataclass(frozen=True)
class Piece:
    """One step of an update rule, acting on the arrays numbered ``arrays`` (None: all).

    At most one of: ``factor(k, rate)``, the factor that array k's change is multiplied by
    (``rate``: array k's learning rate for this step); ``decay``, momentum (state: a
    velocity per parameter array, v = decay v + change, and the change becomes v);
    ``bounds(k)``, a constraint: the updated parameters of array k clipped into (low,
    high); ``land(values, steps, where)`` (a programmer), which works out the pending
    ``steps`` (a Step by array number) and puts them into its arrays of ``values`` in place
    instead of the plain addition, within the Steps' bounds (the clip), and returns a count
    to report (pulses sent); ``where`` is (epoch, batch).
    """

    name: str
    factor: Callable[[int, float], float] | None = None
    decay: float | None = None
    bounds: Callable[[int], tuple[float, float]] | None = None
    land: Callable[[Arrays, dict[int, Step], tuple[int, int]], int] | None = None
    arrays: frozenset[int] | None = None

    def acts_on(self, k: int) -> bool:
        return self.arrays is None or k in self.arrays

    def init(self, values: Arrays) -> Arrays | None:
        """The piece's state, one array per parameter array (None: it keeps none)."""
        return None if self.decay is None else [np.zeros_like(p) for p in values]


def _arrays(arrays: Collection[int] | None) -> frozenset[int] | None:
    return None if arrays is None else frozenset(arrays)


def scale(
    factors: Sequence[float], name: str = "scale", arrays: Collection[int] | None = None
) -> Piece:
    """Multiply each array's change by its factor."""
    return Piece(name, factor=lambda k, rate: factors[k], arrays=_arrays(arrays))


def momentum(beta: float) -> Piece:
    """Heavy-ball momentum: v = beta v + change, the change becomes v (none at beta = 0)."""
    return Piece("momentum", decay=beta or None)


def learning_rate() -> Piece:
    """Descend: each change times minus its array's rate for this step."""
    return Piece("learning_rate", factor=lambda k, rate: -rate)


def clip(
    low: Sequence[float], high: Sequence[float], arrays: Collection[int] | None = None
) -> Piece:
    """Constraint: each updated array clipped into [low, high] (a device's range)."""
    return Piece("clip", bounds=lambda k: (low[k], high[k]), arrays=_arrays(arrays))


@njit(cache=True, inline="always")
def change(gi, vi, f0, f1, f2, f3, f4, heavy, d):
    """One entry's change: the gradient gi times f0 and f1, momentum when ``heavy`` (the
    velocity vi becomes d vi + change, and the change becomes it), times f2 to f4; returns
    (the change, the velocity). Each operation rounds to the operands' dtype, as numpy's."""
    c = gi * f0
    c = c * f1
    t = vi
    if heavy:
        t = vi * d
        t = t + c
        c = t
    c = c * f2
    c = c * f3
    c = c * f4
    return c, t


@njit(cache=True)
def _step(p, g, v, factors, decay, bounds, land):
    """Entry by entry (1-D arrays of one dtype): each entry's ``change`` (momentum when
    ``decay`` holds its factor, the velocity in v); then either kept in g (``land``) or
    added to p and p clipped into ``bounds``."""
    f0, f1, f2, f3, f4 = factors[0], factors[1], factors[2], factors[3], factors[4]
    lo, hi = bounds[0], bounds[1]
    heavy = decay.size > 0
    d = decay[0] if heavy else factors[0]
    for i in range(p.size):
        c, t = change(g[i], v[i], f0, f1, f2, f3, f4, heavy, d)
        if heavy:
            v[i] = t
        if land:
            g[i] = c
        else:
            x = p[i] + c
            x = max(x, lo)
            p[i] = min(x, hi)


@dataclass(frozen=True)
class Step:
    """A landing array's pending step, for its landing piece to work out in its own pass
    (each entry's ``change``, in order): the gradients and the velocity (``grads`` itself
    without momentum), flat, contiguous and at the parameters' dtype; the factors f0 to f4
    and the decay (empty without momentum) at that dtype; the clip's bounds."""

    grads: np.ndarray
    velocity: np.ndarray
    factors: np.ndarray
    decay: np.ndarray
    bounds: tuple[float, float]
    shape: tuple[int, ...]

    def changes(self) -> np.ndarray:
        """The changes, worked out in ``grads`` (the velocity updated), in the array's shape."""
        g = self.grads
        _step(g, g, self.velocity, self.factors, self.decay, np.array(self.bounds, g.dtype), True)
        return g.reshape(self.shape)


@dataclass(frozen=True)
class _Rule:
    """What the pieces do to one array: its scalings (padded with 1, which changes no
    bit), momentum (the state's name and decay), clip and landing piece."""

    factors: list[float]
    decay: tuple[str, float] | None
    bounds: tuple[float, float]
    lander: Piece | None


@dataclass(frozen=True)
class Chain:
    """Pieces applied in order: changes through the scalings and the momentum, then the
    parameters plus the changes (or a landing piece's programming) through the clip."""

    pieces: tuple[Piece, ...] = field(default_factory=tuple)

    def init(self, values: Arrays) -> dict[str, Arrays]:
        """The state of every piece that keeps one, by name."""
        states = ((p.name, p.init(values)) for p in self.pieces)
        return {name: s for name, s in states if s is not None}

    def rule(self, k: int, rate: float) -> _Rule:
        """Array k's operations at this rate, in the compiled step's form."""
        before, after, decay, bounds, lander = [], [], None, None, None
        for piece in (pc for pc in self.pieces if pc.acts_on(k)):
            if piece.factor is not None:
                (before if decay is None else after).append(piece.factor(k, rate))
            elif piece.decay is not None:
                if decay is not None:
                    raise ValueError(f"array {k} has two momentum pieces; the step takes one")
                decay = (piece.name, piece.decay)
            elif piece.bounds is not None:
                if bounds is not None:
                    raise ValueError(f"array {k} has two clips; the step takes one")
                bounds = piece.bounds(k)
            elif piece.land is not None and lander is None:
                lander = piece
        if decay is None:  # no momentum: every scaling in a row
            before, after = (before + after)[:BEFORE], (before + after)[BEFORE:]
        if len(before) > BEFORE or len(after) > AFTER:
            raise ValueError(
                f"array {k} has {len(before) + len(after)} scalings; the step takes "
                f"{BEFORE} before the momentum and {AFTER} after"
            )
        factors = before + [1.0] * (BEFORE - len(before)) + after + [1.0] * (AFTER - len(after))
        return _Rule(factors, decay, bounds or (-np.inf, np.inf), lander)

    def step(
        self,
        values: Arrays,
        grads: Arrays,
        state: dict[str, Arrays],
        rates: Sequence[float],
        where: tuple[int, int] = (0, 0),
    ) -> tuple[dict[str, Arrays], int]:
        """One step on ``grads``: updates ``values`` (the parameter arrays) and the state's
        arrays in place and returns (the state, what the landing pieces counted). ``grads``
        are used up: the changes are worked out in their arrays where their dtype is the
        parameters'. State of pieces not in the chain is kept as it was; a piece's missing
        state starts from its ``init``."""
        state = dict(state)
        for piece in self.pieces:
            own = None if piece.name in state else piece.init(values)
            if own is not None:
                state[piece.name] = own
        landed: dict[Piece, dict[int, Step]] = {}
        copies: list[tuple[np.ndarray, np.ndarray]] = []
        for k, (p, g) in enumerate(zip(values, grads, strict=True)):
            rule = self.rule(k, rates[k])
            v = state[rule.decay[0]][k] if rule.decay else None
            kind = p.dtype
            gf = _flat(np.asarray(g, dtype=kind), copies)
            vf = gf if v is None else _flat(v, copies)
            factors = np.array(rule.factors, dtype=kind)
            decay = np.array([rule.decay[1]] if rule.decay else [], dtype=kind)
            if rule.lander is None:
                bounds = np.array(rule.bounds, dtype=kind)
                _step(_flat(p, copies), gf, vf, factors, decay, bounds, False)
            else:
                step = Step(gf, vf, factors, decay, rule.bounds, p.shape)
                landed.setdefault(rule.lander, {})[k] = step
        count = sum(piece.land(values, steps, where) for piece, steps in landed.items())
        for a, f in copies:  # arrays worked on as contiguous copies
            a[...] = f.reshape(a.shape)
        return state, count


def _flat(a: np.ndarray, copies: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``a`` flat for the compiled pass: a view, or a contiguous copy (added to ``copies``
    with its array, to be copied back)."""
    if a.flags.c_contiguous:
        return a.reshape(-1)
    flat = np.ascontiguousarray(a).reshape(-1)
    copies.append((a, flat))
    return flat


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
