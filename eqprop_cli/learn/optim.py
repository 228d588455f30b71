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
A gradient may also come unwritten (``Deferred``: an input crossbar's EP estimate,
learn/crossbar.py), which runs the same ``_step`` on each row as it makes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

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
    high); ``land(values, changes, where)`` (a programmer), which puts ``changes`` (by
    array number) into its arrays of ``values`` in place instead of the plain addition,
    whole arrays at a time, and returns a count to report (pulses sent); ``where`` is
    (epoch, batch).
    """

    name: str
    factor: Callable[[int, float], float] | None = None
    decay: float | None = None
    bounds: Callable[[int], tuple[float, float]] | None = None
    land: Callable[[Arrays, dict[int, np.ndarray], tuple[int, int]], int] | None = None
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
def _step(p, g, v, factors, decay, bounds, land):
    """Entry by entry (1-D arrays of one dtype): the change g times factors[0] and [1],
    momentum when ``decay`` holds its factor (v = decay v + change, the change becomes
    v), times factors[2] to [4]; then either kept in g (``land``) or added to p and p
    clipped into ``bounds``. Each operation rounds to the arrays' dtype, as numpy's."""
    rule = _scalars(factors, decay, bounds)
    for i in range(p.size):
        c, t = _change(g[i], v[i], rule, rule[5])
        if rule[5]:
            v[i] = t
        if land:
            g[i] = c
        else:
            p[i] = _clipped(p[i] + c, rule)


@njit(cache=True, inline="always")
def _scalars(factors, decay, bounds):
    """``_step``'s rule as scalars, read once before a loop (loads from the arrays inside
    it would be repeated at every entry): factors[0] to [4], the decay, whether there is
    momentum, and the bounds."""
    heavy = decay.size > 0
    d = decay[0] if heavy else factors[0]
    f0, f1, f2, f3, f4 = factors[0], factors[1], factors[2], factors[3], factors[4]
    return (f0, f1, f2, f3, f4, heavy, d, bounds[0], bounds[1])


@njit(cache=True, inline="always")
def _change(g, v, rule, heavy):
    """``_step``'s change of one entry from its gradient g, and its velocity v after it
    (v = decay v + the scaled g where ``heavy``: with momentum; else v as it was)."""
    c = g * rule[0]
    c = c * rule[1]
    if heavy:
        v = v * rule[6]
        v = v + c
        c = v
    c = c * rule[2]
    c = c * rule[3]
    return c * rule[4], v


@njit(cache=True, inline="always")
def _clipped(x, rule):
    """x clipped into the rule's bounds (max, then min, as ``_step`` clips)."""
    x = max(x, rule[7])
    return min(x, rule[8])


@dataclass(frozen=True)
class _Rule:
    """What the pieces do to one array: its scalings (padded with 1, which changes no
    bit), momentum (the state's name and decay), clip and landing piece."""

    factors: list[float]
    decay: tuple[str, float] | None
    bounds: tuple[float, float]
    lander: Piece | None

    def arrays(self, kind: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``_step``'s factors, decay (empty: no momentum) and bounds at dtype ``kind``."""
        return (
            np.array(self.factors, dtype=kind),
            np.array([self.decay[1]] if self.decay else [], dtype=kind),
            np.array(self.bounds, dtype=kind),
        )


class Deferred(Protocol):
    """A gradient not written out as an array (learn/crossbar.py): it runs the compiled
    step itself on each entry as it makes it, ``apply(p, v, factors, decay, bounds)``
    (``_step``'s arguments, on C-contiguous parameters p and velocity v of its dtype; v
    None without momentum), or gives its array, ``materialise()`` (for a landing piece)."""

    dtype: np.dtype

    def apply(self, p: np.ndarray, v: np.ndarray | None, factors, decay, bounds) -> None: ...

    def materialise(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Chain:
    """Pieces applied in order: changes through the scalings and the momentum, then the
    parameters plus the changes (or a landing piece's programming) through the clip."""

    pieces: tuple[Piece, ...] = field(default_factory=tuple)
    # array -> (rate, dtype, its rule, _step's arrays) of its last step: rates repeat
    _rules: dict = field(default_factory=dict, init=False, repr=False, compare=False)

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
        grads: Sequence[np.ndarray | Deferred],
        state: dict[str, Arrays],
        rates: Sequence[float],
        where: tuple[int, int] = (0, 0),
    ) -> tuple[dict[str, Arrays], int]:
        """One step on ``grads``: updates ``values`` (the parameter arrays) and the state's
        arrays in place and returns (the state, what the landing pieces counted). ``grads``
        are used up: the changes are worked out in their arrays where their dtype is the
        parameters'; a Deferred gradient applies the rule itself where no landing piece
        takes the array. State of pieces not in the chain is kept as it was; a piece's
        missing state starts from its ``init``."""
        state = dict(state)
        for piece in self.pieces:
            own = None if piece.name in state else piece.init(values)
            if own is not None:
                state[piece.name] = own
        landed: dict[Piece, dict[int, np.ndarray]] = {}
        bounds: dict[int, tuple[float, float]] = {}
        for k, (p, g) in enumerate(zip(values, grads, strict=True)):
            rule, arrays = self._compiled(k, rates[k], p.dtype)
            v = state[rule.decay[0]][k] if rule.decay else None
            if not isinstance(g, np.ndarray):  # Deferred (the Protocol's check is slow)
                contiguous = p.flags.c_contiguous and (v is None or v.flags.c_contiguous)
                if rule.lander is None and contiguous and g.dtype == p.dtype:
                    g.apply(p, v, *arrays)
                    continue
                g = g.materialise()
            change = _apply(rule, arrays, p, g, v)
            if rule.lander is not None:
                landed.setdefault(rule.lander, {})[k] = change
                bounds[k] = rule.bounds
        count = 0
        for piece, changes in landed.items():
            count += piece.land(values, changes, where)
            for k in changes:  # the clip after programming
                np.clip(values[k], *bounds[k], out=values[k])
        return state, count

    def _compiled(self, k: int, rate: float, kind: np.dtype) -> tuple[_Rule, tuple]:
        """Array k's rule at this rate and ``_step``'s arrays of it at dtype ``kind``, kept
        while they stay the same (the step only reads them)."""
        kept = self._rules.get(k)
        if kept is None or kept[0] != rate or kept[1] != kind:
            rule = self.rule(k, rate)
            kept = self._rules[k] = (rate, kind, rule, rule.arrays(kind))
        return kept[2], kept[3]


def _apply(
    rule: _Rule, compiled: tuple, p: np.ndarray, g: np.ndarray, v: np.ndarray | None
) -> np.ndarray:
    """One array's step by the compiled pass (``compiled``: the rule's ``_Rule.arrays``; on
    contiguous copies of arrays that are not C-contiguous, copied back); returns the changes
    (in ``g`` where it is contiguous and at p's dtype)."""
    kind = p.dtype
    land = rule.lander is not None
    if (
        type(g) is np.ndarray
        and g.dtype == kind
        and p.flags.c_contiguous
        and g.flags.c_contiguous
        and (v is None or v.flags.c_contiguous)
    ):  # views of the arrays themselves: no list of them, nothing to copy back
        gf = g.reshape(-1)
        _step(p.reshape(-1), gf, gf if v is None else v.reshape(-1), *compiled, land)
        return g
    g = np.asarray(g, dtype=kind)
    arrays = [p, g] if v is None else [p, g, v]
    flat = [
        a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
        for a in arrays
    ]
    pf, gf = flat[0], flat[1]
    vf = flat[2] if v is not None else gf
    _step(pf, gf, vf, *compiled, land)
    for a, f in zip(arrays, flat, strict=True):
        if not a.flags.c_contiguous:  # f is a copy (else a view of a)
            a[...] = f.reshape(a.shape)
    return gf.reshape(g.shape)


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
