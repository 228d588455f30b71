"""An input crossbar's EP update in one compiled pass over its conductances.

The passes over an input crossbar's conductances (1.6 million at 784-1024-10) are
bound by memory traffic. Unfused, a batch writes the EP estimate as an array (the
feature product expanded to the fixed rows, ``Network.fixed_outer``), the update rule
reads it with the conductances and the velocity and writes both (``optim._step``), and
the next linear part reads the new conductances again for its column sums and S K
(``add_crossbar_terms``, devices/resistor.py). Here those are one pass, feature after
feature: the estimator hands the chain a deferred gradient (``CrossbarGradient``, an
``optim.Deferred``: the feature product, a RowExpansion, not expanded); the chain's rule
runs on each entry as it is expanded, and the new entry, still in a register, is added to
the crossbar's share of the next linear part (a CrossbarShare, which the trainer hands to
``Network.set_conductances`` with the new conductances). A feature's two rows
(differential inputs) run in one loop that writes its row of S K directly; other
features run row by row into a row buffer, then into S K.

Each step of the pass is the formula of an entry that the unfused path's kernels run
(``_expanded`` in ``_expand_rows``, ``_change`` and ``_clipped`` in ``_step``,
``_add_input_entry`` in ``_add_input_row``, then ``_add_feature_row``), on the same entries
in the same order, so the conductances, the velocity and the linear part are the same
bits (tests/test_compiled.py). Each loop over the entries is one the compiler
vectorises: the rule's factors are read once as scalars, the cases (momentum or not, a
share or not) are literals at their call sites, every entry's reads are made whatever
its flags (a read or a write under a condition would keep the loop scalar: about 15
times slower), and an entry's stores to p and v are made in each loop's body (``_entry``
returns the values: with the stores inside it, the two-row loop stayed scalar). Any other
array, an array that a landing piece (a device's programmer) takes, and a crossbar
without the one-feature form keep the unfused path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..circuit.network import CrossbarShare, Network, RowExpansion, _expanded, _plus_row
from ..devices.resistor import (
    LinearConductance,
    _add_feature_row,
    _add_input_entry,
    input_pass,
)
from .optim import _change, _clipped, _scalars


@dataclass
class CrossbarGradient:
    """The EP estimate of an input crossbar, kept as its feature product (``rows``) until
    a rule applies it (learn/optim.py's Deferred); ``share``: accumulators of the
    crossbar's share of the next linear part that the pass fills (None where the network
    cannot take one, ``Network.crossbar_share``, or its model adds its terms otherwise)."""

    rows: RowExpansion
    share: CrossbarShare | None

    @classmethod
    def of(cls, network: Network, index: int, rows: RowExpansion) -> CrossbarGradient:
        model = network.resistors[index].device.model
        own_terms = (
            getattr(model, "add_crossbar_terms", None) is LinearConductance.add_crossbar_terms
        )
        return cls(rows, network.crossbar_share(index) if own_terms else None)

    @property
    def dtype(self) -> np.dtype:
        return self.rows.dtype

    def materialise(self) -> np.ndarray:
        return self.rows.materialise()

    def apply(self, p: np.ndarray, v: np.ndarray | None, factors, decay, bounds) -> None:
        """The rule (``_step``'s arguments) on every row of p, in place, with the share."""
        r, share = self.rows, self.share
        if share is None:
            indptr = indices = np.zeros(1, np.int32)
            data, cols, wk = np.zeros(0, p.dtype), np.zeros(0, np.int64), np.zeros(0, p.dtype)
            start, sums, SK = -1, np.zeros(0), np.zeros((0, 0), p.dtype)
        else:
            indptr, indices, data, cols, start, wk = input_pass(share.bar, p.dtype)
            sums, SK = share.sums, share.SK
        _update(
            r.P, r.feature, r.gain, r.const, r.sums, r.plus, r.with_const,
            p, p if v is None else v, factors, decay, bounds,
            indptr, indices, data, cols, start, wk, sums, SK, share is not None,
        )  # fmt: skip
        if share is not None:
            share.written = p


@njit(cache=True, inline="always")
def _entry(j, P, f, s, c, dsums, plus, with_const, with_plus, p_i, v_i, rule, heavy):
    """Entry j of row p_i (velocity v_i): its new value and velocity, not stored (the
    caller's loop stores them: stores inside an inline helper kept the two-row loop
    scalar): the gradient entry (``_expanded``) and ``_step``'s ``_change`` and
    ``_clipped`` on it (``rule``: its ``_scalars``, ``heavy``: with momentum)."""
    g = _expanded(P, f, j, s, c, dsums, plus, with_const, with_plus, p_i)
    step, t = _change(g, v_i[j], rule, heavy)
    return _clipped(p_i[j] + step, rule), t


@njit(cache=True, inline="always")
def _update_row(i, args, share, heavy):
    """Row i in one loop over its entries: each entry's new value and velocity (``_entry``)
    and, where ``share`` = (s, row, sums, True), the new entry added to the
    row of S G and the column sums (``_add_input_entry``). ``heavy`` and share[3] are
    literals at each call: a store under a condition inside the loop would keep it from
    vectorising."""
    P, feature, gain, const, dsums, plus, with_const, with_plus, p, v, rule = args
    p_i, v_i = p[i], v[i]
    f, s, c = feature[i], gain[i], const[i]
    weight, row, sums, adds = share  # unpacked once: arrays taken from a tuple in the loop
    # would be counted references at every entry
    for j in range(p_i.size):
        x, t = _entry(j, P, f, s, c, dsums, plus, with_const, with_plus, p_i, v_i, rule, heavy)
        if heavy:
            v_i[j] = t
        p_i[j] = x
        if adds:
            _add_input_entry(x, weight, j, row, sums, True)


@njit(cache=True, inline="always")
def _update_pair(i, k, args, share, heavy):
    """Rows i and k, a feature's two rows (gains share[0] and share[1]), in one loop over
    their entries: entry j of row i, then of row k, as ``_update_row`` makes them, added
    to the column sums (share[2]) and to the feature's row of S G (0 + s_i x_i + s_k x_k,
    the sum into the zeroed row), which goes straight to its row of S K (share[3], its
    columns; share[4]: the weights wk), as ``_add_feature_row`` writes it: no row buffer
    is zeroed, written and read back, and the rows' P entries (one row of P, where both
    rows follow the feature) are loaded in the same loop."""
    P, feature, gain, const, dsums, plus, with_const, with_plus, p, v, rule = args
    p_i, v_i, p_k, v_k = p[i], v[i], p[k], v[k]
    f_i, s_i, c_i = feature[i], gain[i], const[i]
    f_k, s_k, c_k = feature[k], gain[k], const[k]
    w_i, w_k, sums, out, wk = share
    zero, none = p.dtype.type(0), out.dtype.type(0)  # not np.zeros: an allocation a feature
    for j in range(p_i.size):
        x_i, t = _entry(
            j, P, f_i, s_i, c_i, dsums, plus, with_const, with_plus, p_i, v_i, rule, heavy
        )
        if heavy:
            v_i[j] = t
        p_i[j] = x_i
        x_k, t = _entry(
            j, P, f_k, s_k, c_k, dsums, plus, with_const, with_plus, p_k, v_k, rule, heavy
        )
        if heavy:
            v_k[j] = t
        p_k[j] = x_k
        sums[j] = (sums[j] + x_i) + x_k
        out[j] = none + ((zero + w_i * x_i) + w_k * x_k) * wk[j]


@njit(cache=True, inline="always")
def _update_rows(args, heavy, shared):
    """``_update``'s walk over the rows (``heavy`` and shared[0]: literals): a feature with
    two rows and a range of columns by ``_update_pair``, others row by row into a row
    buffer."""
    P, feature, gain, const, dsums, plus, with_const, p, v, rule = args
    with_plus, plus = _plus_row(plus, p.shape[1])
    rows = (P, feature, gain, const, dsums, plus, with_const, with_plus, p, v, rule)
    n = p.shape[1]
    row = np.empty(n, p.dtype)
    weight, sums, indptr, indices, data, SK, cols, start, wk = shared[1:]
    if not shared[0]:
        no_share = (weight, row, sums, False)
        for i in range(p.shape[0]):
            _update_row(i, rows, no_share, heavy)
        return
    for f in range(len(indptr) - 1):
        a, b = indptr[f], indptr[f + 1]
        if b - a == 2 and start >= 0:
            pair = (data[a], data[a + 1], sums, SK[f, start : start + n], wk)
            _update_pair(indices[a], indices[a + 1], rows, pair, heavy)
            continue
        row[:] = 0
        for q in range(a, b):
            _update_row(indices[q], rows, (data[q], row, sums, True), heavy)
        _add_feature_row(row, f, SK, cols, start, wk, True)  # SK's columns not zeroed first


@njit(cache=True)
def _update(
    P, feature, gain, const, dsums, plus, with_const,
    p, v, factors, decay, bounds,
    indptr, indices, data, cols, start, wk, sums, SK, with_share,
):  # fmt: skip
    """Every row of the crossbar p (and its velocity v) updated from its gradient row
    (P ... with_const: a RowExpansion), in one pass; ``with_share``: in the order of the
    gain's rows by feature (which walks the rows in order), each new row added to the
    column sums and to its feature's row of S K (``_input_terms``' operations), whose
    columns of the crossbar are written whole (a feature without rows: zeros): a
    feature's two rows and a range of columns by ``_update_pair``."""
    rule = _scalars(factors, decay, bounds)
    args = (P, feature, gain, const, dsums, plus, with_const, p, v, rule)
    zero = p.dtype.type(0)
    rest = (zero, sums, indptr, indices, data, SK, cols, start, wk)
    if decay.size > 0:
        if with_share:
            _update_rows(args, True, (True, *rest))
        else:
            _update_rows(args, True, (False, *rest))
    elif with_share:
        _update_rows(args, False, (True, *rest))
    else:
        _update_rows(args, False, (False, *rest))
