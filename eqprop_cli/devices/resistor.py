"""Programmable resistor (memristor): the weights of the network.

A set of resistors between nodes p and q with conductances g carries
I = g (V_p - V_q) and has the energy E = g (V_p - V_q)^2 / 2, so
dE/dg = (V_p - V_q)^2 / 2: the local quantity EP's rule and the exact gradient
use. Resistors are linear: ``stamp`` writes them into the network's quadratic
form as maps of g, built once per topology (circuit/network.py adds them up),
and the set-level energy and currents below evaluate the same physics at node
potentials, a crossbar by matrix products.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..circuit.params import DeviceKind, ErrorAt, Param, outside
from ..circuit.stamp import NodeMap, Stamp
from ..numpy_sums import PAIRWISE_BLOCK, pairwise_row_sum
from .netlist import num, text

MAX_LEVELS = 2**32  # export levels: a level index stays exact in a float64 and an int64


def crossbar_element(k: int, row: int, column: int) -> str:
    """The SPICE name of a crossbar's device: resistor set ``k``, at ``row``, ``column`` (the
    netlist's R element, and the element column of conductance maps)."""
    return f"R{k}_{row}_{column}"


class LinearConductance:
    """The physics of a linear conductance g, which every model of the resistor group
    shares (a resistor, a memristor at DC): I = g v, E = g v^2 / 2, its stamp into the
    network, its set-level energy and currents, and its netlist lines."""

    quantity = "conductance"  # what training changes: network.g
    conducts_dc = True

    # ------------------------------------------------------------------ physics

    @staticmethod
    def branch_current(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The current from the first node to the second at branch voltages v."""
        return g * v

    @staticmethod
    def energy(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        return 0.5 * g * v * v

    @staticmethod
    def energy_derivative(v: np.ndarray) -> np.ndarray:
        """dE/dg at branch voltages v."""
        return 0.5 * v * v

    @staticmethod
    def ep_estimate(w, Pa, Pb, Qa, Qb, dense: bool, p_fixed: bool, factor: float) -> np.ndarray:
        """factor * w * sum over the batch of dE/dg(V^a) - dE/dg(V^b), from the end
        potentials P (first nodes) and Q (second) in the two equilibria a and b."""
        # (dVa^2 - dVb^2) = (dVa - dVb)(dVa + dVb), summed over the batch without cancellation
        if dense and not p_fixed and min(Pa.shape[1], Qa.shape[1]) > 1:
            return _dense_estimate(w, Pa, Pb, Qa, Qb, factor)
        Dp = None if p_fixed else Pa - Pb
        total = summed_drop_products(Dp, Qa - Qb, Pa + Pb, Qa + Qb, dense)
        return 0.5 * w * total * factor

    @staticmethod
    def adjoint_gradient(w, Lp, Lq, Vp, Vq, dense: bool) -> np.ndarray:
        """dL/dg by implicit differentiation: -w sum over the batch of d(dE/dg)/dv times
        the adjoint drop, d(dE/dg)/dv = v (L: adjoint potentials, None: zero at p)."""
        return -w * summed_drop_products(Lp, Lq, Vp, Vq, dense)

    # ------------------------------------------------------------------ in the network

    @staticmethod
    def stamp(nodes: NodeMap, a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> dict:
        """Q, K^T c, S K, the fixed diagonal and Laplacian as linear maps of the conductances.

        ``a``, ``b``: the two nodes of every resistor (in the order of their conductances),
        ``weight``: each one's stage weight. With E = w g (V_a - V_b)^2 / 2 an element
        between two unknowns adds to Q's diagonal and off-diagonal, one between an unknown
        and a fixed node to Q's diagonal and to K (the linear term, through the fixed
        node's potential), and one between fixed nodes to the fixed nodes' Laplacian.
        """
        n_edges = len(a)
        edge = np.arange(n_edges)
        nv, nf = nodes.n_vars, len(nodes.fixed)
        va, vb = nodes.node_var[a], nodes.node_var[b]
        ca, cb = nodes.node_coef[a], nodes.node_coef[b]
        fa, fb = nodes.fixed_index[a], nodes.fixed_index[b]
        free_a, free_b = va >= 0, vb >= 0
        both = free_a & free_b
        cross = -weight[both] * ca[both] * cb[both]
        Q = Stamp.build(
            [va[free_a], vb[free_b], va[both], vb[both]],
            [va[free_a], vb[free_b], vb[both], va[both]],
            [weight[free_a] * ca[free_a] ** 2, weight[free_b] * cb[free_b] ** 2, cross, cross],
            [edge[free_a], edge[free_b], edge[both], edge[both]],
            (nv, nv),
            n_edges,
        )
        m1, m2 = free_a & ~free_b, free_b & ~free_a  # fixed end -> unknown end
        k_rows, k_cols = np.concatenate([fb[m1], fa[m2]]), np.concatenate([va[m1], vb[m2]])
        k_coef = np.concatenate([weight[m1] * ca[m1], weight[m2] * cb[m2]])
        k_edge = np.concatenate([edge[m1], edge[m2]])
        del va, vb, ca, cb
        rail = nodes.fixed_const[k_rows] != 0  # K^T c: edges from fixed nodes off 0 V
        r0 = Stamp.build(
            [k_cols[rail]],
            [np.zeros(int(rail.sum()), int)],
            [(k_coef * nodes.fixed_const[k_rows])[rail]],
            [k_edge[rail]],
            (nv, 1),
            n_edges,
        )
        # S K: every K entry times the features that drive its fixed node
        S = nodes.fixed_gain.tocsc()
        count = np.diff(S.indptr)[k_rows]
        entry = np.repeat(np.arange(len(k_rows)), count)
        offset = np.arange(len(entry)) - np.repeat(np.cumsum(count) - count, count)
        at = S.indptr[k_rows][entry] + offset
        SK = Stamp.build(
            [S.indices[at]],
            [k_cols[entry]],
            [k_coef[entry] * S.data[at]],
            [k_edge[entry]],
            (nodes.n_features, nv),
            n_edges,
        )
        del S, count, entry, offset, at
        fd = Stamp.build(
            [k_rows], [np.zeros(len(k_rows), int)], [weight[k_edge]], [k_edge], (nf, 1), n_edges
        )
        ff = ~free_a & ~free_b
        lap = Stamp.build(
            [fa[ff], fb[ff], fa[ff], fb[ff]],
            [fa[ff], fb[ff], fb[ff], fa[ff]],
            [weight[ff], weight[ff], -weight[ff], -weight[ff]],
            [edge[ff]] * 4,
            (nf, nf),
            n_edges,
        )
        return {"Q": Q, "r0": r0, "SK": SK, "fixed_diag": fd, "lap": lap}

    @staticmethod
    def add_crossbar_terms(
        bar, G: np.ndarray, Q_diag, SK, r0, sums: np.ndarray | None = None
    ) -> None:
        """Add a dense set's share of Q's diagonal, S K and r0 in place, by array operations
        on its conductance matrix G (``bar``: a Crossbar of circuit/network.py). ``sums``
        (an input crossbar): G's column sums, worked out with its S K (already in SK) by
        the pass that wrote G (``input_pass``); then G is read only for rails off 0 V."""
        if bar.row_var is None:  # input crossbar: unknowns at its columns only
            if sums is None:
                sums = np.zeros(G.shape[1])
                _input_terms(G, *input_pass(bar, G.dtype), bar.walks_rows, sums, SK)
            Q_diag[bar.cols] += sums * bar.col_diag
            if bar.row_const is not None:  # rows at rails off 0 V
                r0[bar.cols] += (bar.row_const @ G) * bar.col_scale
        elif 2 <= G.shape[1] <= PAIRWISE_BLOCK and G.flags.c_contiguous:
            rows, cols = (bar.row_var, bar.row_diag, bar.row_weight), (bar.col_var, bar.col_diag)
            _coupling_terms(G, *rows, *cols, Q_diag)
        else:
            Q_diag[bar.row_var] += G.sum(axis=1, dtype=float) * bar.row_diag
            column = np.einsum("i,ij->j", bar.row_weight, G, dtype=float, casting="safe")
            Q_diag[bar.col_var] += column * bar.col_diag

    @staticmethod
    def crossbar_coupling(bar, G: np.ndarray) -> np.ndarray:
        """The (rows x columns) coupling a var-var crossbar puts in Q, negated, at float64:
        G itself where its ends' scales are all 1 (1 * g * 1 is g), not to be written."""
        if bar.unit_scales:
            return G.astype(float, copy=False)
        return (bar.row_weight * bar.row_coef)[:, None] * G * bar.col_coef

    @staticmethod
    def add_crossbar_fixed_diag(bar, G: np.ndarray, diag: np.ndarray) -> None:
        """Add an input crossbar's conductance at its fixed rows to their diagonal."""
        diag[bar.row_fixed] += G @ bar.col_weight

    @staticmethod
    def set_energy(V: np.ndarray, ends, g: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Energy per sample of one set at node potentials V (batch, nodes); ``ends`` its
        (first nodes, second nodes, dense), ``weight`` each element's stage weight."""
        rows, cols, dense = ends
        w = weight * g
        if dense:
            Va, Vb = V[:, rows], V[:, cols]
            return 0.5 * (
                (Va**2) @ w.sum(1) + (Vb**2) @ w.sum(0) - 2 * np.einsum("bi,ij,bj->b", Va, w, Vb)
            )
        return 0.5 * ((V[:, rows] - V[:, cols]) ** 2) @ w

    @staticmethod
    def add_set_currents(out: np.ndarray, V: np.ndarray, ends, g: np.ndarray) -> None:
        """Add each element's current leaving its nodes to ``out`` (batch, nodes)."""
        rows, cols, dense = ends
        if dense:
            Va, Vb = V[:, rows], V[:, cols]
            # current from row node i to col node j: g_ij (Va_i - Vb_j)
            from_rows = Va * g.sum(1) - Vb @ g.T
            into_cols = Va @ g - Vb * g.sum(0)
            np.add.at(out, (slice(None), rows), from_rows)
            np.add.at(out, (slice(None), cols), -into_cols)
        else:
            i = (V[:, rows] - V[:, cols]) * g
            np.add.at(out, (slice(None), rows), i)
            np.add.at(out, (slice(None), cols), -i)

    # ------------------------------------------------------------------ netlist

    @staticmethod
    def spice_lines(k: int, rset, g: np.ndarray, node: list[str]) -> list[str]:
        """R elements of resistor set number ``k`` (ohms, one per conductance)."""
        if rset.dense:
            out = [
                f"* connection {text(rset.name)} (device {text(rset.device.name)}): R{k}_<row>_<col>, "
                f"rows {node[rset.rows[0]]}..{node[rset.rows[-1]]}, cols {node[rset.cols[0]]}..{node[rset.cols[-1]]}"
            ]
            ohms = 1.0 / g
            for i, a in enumerate(rset.rows):
                na = node[a]
                out.extend(
                    f"{crossbar_element(k, i, j)} {na} {node[b]} {num(ohms[i, j])}"
                    for j, b in enumerate(rset.cols)
                )
            return out
        out = [f"* resistors of device {text(rset.device.name)}: R{k}_<index> ; element name"]
        for i, (a, b) in enumerate(zip(rset.rows, rset.cols, strict=True)):
            out.append(f"R{k}_{i} {node[a]} {node[b]} {num(1.0 / g[i])} ; {text(rset.labels[i])}")
        return out


@dataclass(frozen=True)
class Resistor(LinearConductance):
    """The validated parameters of a resistor device (see the table RESISTOR)."""

    g: float | None
    r: float | None
    init: str
    init_low: float | None
    init_high: float | None
    init_mean: float | None
    init_std: float | None
    seed: int
    g_min: float
    g_max: float
    levels: int
    trainable: bool

    @property
    def low(self) -> float:
        """The smallest conductance training or programming may set."""
        return self.g_min

    @property
    def high(self) -> float:
        return self.g_max

    def initial(self, shape: tuple[int, ...], stream: int) -> np.ndarray:
        """Draw initial conductances (seeded; ``stream`` separates connections)."""
        if self.init == "constant":
            g = np.full(shape, self.g, dtype=float)
        else:
            rng = np.random.default_rng([self.seed, stream])
            if self.init == "uniform":
                g = rng.uniform(self.init_low, self.init_high, size=shape)
            else:
                g = rng.normal(self.init_mean, self.init_std, size=shape)
        return np.clip(g, self.g_min, self.g_max)


def input_pass(bar, dtype) -> tuple:
    """What a pass over an input crossbar's conductances needs to add its share of the
    linear part (``_input_terms``, or the fused update of learn/crossbar.py): the gain of
    the features on its rows (CSR: indptr, indices, data), its columns' unknowns (and the
    first, where they are a range; else -1) and weights (stage weight times dV/dx), at the
    conductances' ``dtype``. Topology: kept on the crossbar per dtype (the passes only read
    them)."""
    kept = bar.passes.get(dtype)
    if kept is None:
        gain, start = bar.gain, bar.cols.start if isinstance(bar.cols, slice) else -1
        data, wk = gain.data.astype(dtype), bar.col_scale.astype(dtype)
        kept = bar.passes[dtype] = (gain.indptr, gain.indices, data, bar.col_var, start, wk)
    return kept


@njit(cache=True, inline="always")
def _add_input_row(G_i, s, row, sums, with_sums):
    """row += s * G_i, and the column sums += G_i (``with_sums``): one row of the input
    crossbar's S G and column sums (sums float64, row at G's dtype)."""
    for j in range(row.size):
        _add_input_entry(G_i[j], s, j, row, sums, with_sums)


@njit(cache=True, inline="always")
def _add_input_entry(g, s, j, row, sums, with_sums):
    """Entry j of ``_add_input_row`` for the conductance g: row[j] += s g (sums[j] += g)."""
    row[j] += s * g
    if with_sums:
        sums[j] += g


@njit(cache=True, inline="always")
def _add_feature_row(row, f, SK, cols, start, wk, fresh):
    """SK[f, cols] += row * wk: feature f's row of S G, summed, into S K (``start`` >= 0:
    cols is the range from it, written in order); ``fresh``: SK[f, cols] holds nothing yet
    (np.empty) and is taken as zero, as np.zeros would be (0 + x, which turns -0.0 into
    0.0, as the addition to a zero does)."""
    zero = SK.dtype.type(0)
    out = SK[f]
    for j in range(row.size):
        c = start + j if start >= 0 else cols[j]
        out[c] = (zero if fresh else out[c]) + row[j] * wk[j]


@njit(cache=True)
def _input_terms(G, indptr, indices, data, cols, start, wk, walks_rows, sums, SK):
    """An input crossbar's share of the linear part in one pass over its conductances G
    (fixed rows x unknown columns): the column sums of G added to ``sums`` (float64, row
    after row), and SK[f, cols] += (S G)[f] * wk for every feature f, with S the sparse
    gain of the features on the rows (CSR: ``indptr``, ``indices``, ``data``; ``cols`` a
    range from ``start`` where that is >= 0), each row of
    S G summed in its stored order from zero. ``walks_rows``: S's stored entries take
    the rows once each, in order, so the column sums ride along; else a pass of their own.
    The same IEEE operations in the same order as sum(axis=0), scipy's CSR product and
    numpy's in-place products, at G's dtype."""
    n = G.shape[1]
    if not walks_rows:
        for i in range(G.shape[0]):
            for j in range(n):
                sums[j] += G[i, j]
    row = np.empty(n, G.dtype)
    for f in range(len(indptr) - 1):
        if indptr[f] == indptr[f + 1]:
            continue
        row[:] = 0
        for q in range(indptr[f], indptr[f + 1]):
            _add_input_row(G[indices[q]], data[q], row, sums, walks_rows)
        _add_feature_row(row, f, SK, cols, start, wk, False)


@njit(cache=True)
def _coupling_terms(G, row_var, row_diag, row_weight, col_var, col_diag, Q_diag):
    """A coupling crossbar's share of Q's diagonal in one pass over G (C-contiguous, rows of
    2 to PAIRWISE_BLOCK entries), numpy's operations: Q_diag[row_var] += G.sum(axis=1,
    dtype=float) * row_diag (``pairwise_row_sum``), then Q_diag[col_var] += the rows weighted by
    row_weight and summed in order (einsum "i,ij->j" at float64) * col_diag (rows and
    columns: distinct unknowns)."""
    column = np.zeros(G.shape[1])
    for i in range(G.shape[0]):
        row, w = G[i], row_weight[i]
        Q_diag[row_var[i]] += pairwise_row_sum(row) * row_diag[i]
        for j in range(row.size):
            column[j] += w * np.float64(row[j])
    for j in range(column.size):
        Q_diag[col_var[j]] += column[j] * col_diag[j]


def summed_drop_products(
    xp: np.ndarray | None, xq: np.ndarray, yp: np.ndarray, yq: np.ndarray, dense: bool
) -> np.ndarray:
    """Sum over the batch of (xp - xq)(yp - yq) for every element between nodes p and q.

    Dense: for every (row p, column q) pair, by matrix products. ``xp`` None
    means zero at every p (nodes at fixed potentials), which skips a product.
    """
    if not dense:
        return (((0.0 if xp is None else xp) - xq) * (yp - yq)).sum(axis=0)
    total = (xq * yq).sum(axis=0)[None, :] - yp.T @ xq
    if xp is not None:
        total = total + (xp * yp).sum(axis=0)[:, None] - xp.T @ yq
    return total


def _dense_estimate(w, Pa, Pb, Qa, Qb, factor: float) -> np.ndarray:
    """``ep_estimate`` of a dense set between unknowns (at least two rows and columns): the
    differences and sums of each end's potentials and their summed products in one pass
    (``drops``), the two matrix products, and the rest in one pass (``_combine``); the
    same operations as summed_drop_products and the scaling, in the same order."""
    xp, yp, sp = drops(Pa, Pb)
    xq, yq, sq = drops(Qa, Qb)
    M1, M2 = yp.T @ xq, xp.T @ yq
    kind = np.result_type(sq, M1, sp, M2)
    # Python floats (one stage weight) scale at the result's precision, as numpy's do: in
    # the pass too; otherwise after it (times 1 is exact)
    one = type(w) is float and type(factor) is float
    scales = np.array([0.5 * w, factor] if one else [1.0, 1.0], kind)
    total = _combine(sq, M1, sp, M2, scales, np.empty(M1.shape, kind))
    return total if one else 0.5 * w * total * factor


def drops(
    A: np.ndarray, B: np.ndarray, with_sums: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A - B, A + B, ((A - B) * (A + B)).sum(axis=0)) of two (batch, n) arrays in one pass
    (the sums: zeros without ``with_sums``; with them, n > 1)."""
    kind = np.result_type(A, B)
    diff, total = np.empty(A.shape, kind), np.empty(A.shape, kind)
    sums = np.zeros(A.shape[1], kind)
    return diff, total, _drops_pass(A, B, diff, total, sums, with_sums)


@njit(cache=True)
def _drops_pass(A, B, diff, total, sums, with_sums):
    """diff = A - B, total = A + B and (``with_sums``) sums += diff * total summed over the
    rows, in one pass: numpy's operations, the sum row after row into zeros as numpy's
    sum(axis=0) of a (batch, n > 1) array adds them."""
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            d = A[i, j] - B[i, j]
            t = A[i, j] + B[i, j]
            diff[i, j] = d
            total[i, j] = t
            if with_sums:
                sums[j] += d * t
    return sums


@njit(cache=True)
def _combine(sq, M1, sp, M2, scales, out):
    """out = (((sq[None, :] - M1) + sp[:, None]) - M2) * scales[0] * scales[1], entry by
    entry with numpy's roundings (summed_drop_products' dense total, then the scaling)."""
    s0, s1 = scales[0], scales[1]
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            t = sq[j] - M1[i, j]
            t = t + sp[i]
            t = t - M2[i, j]
            t = t * s0
            out[i, j] = t * s1
    return out


RANGE = ("g_min", "g_max")  # the device range of conductances


def _check(p: dict, given, key: tuple, error: ErrorAt) -> None:
    """g and r exclusive, g_min <= g_max, what the init needs, initial values in range."""
    if p["g"] is not None and p["r"] is not None:
        raise error((*key, "r"), "give either `g` (siemens) or `r` (ohms), not both")
    if p["g_min"] > p["g_max"]:
        raise error(
            (*key, "g_min"),
            f"g_min must not exceed g_max; got g_min = {p['g_min']:g} S > g_max = {p['g_max']:g} S",
        )
    needs = {
        "constant": ("g",),
        "uniform": ("init_low", "init_high"),
        "normal": ("init_mean", "init_std"),
    }[p["init"]]
    if p["init"] == "constant" and p["g"] is None and p["r"] is not None:
        p["g"] = 1.0 / p["r"]
    for name in needs:
        if p[name] is None:
            raise error(key, f'init = "{p["init"]}" needs `{name}`')
    if p["init"] == "uniform" and p["init_low"] > p["init_high"]:
        raise error((*key, "init_low"), "init_low must not exceed init_high")
    lo, hi = p["g_min"], p["g_max"]
    inside = {"constant": ("g",), "uniform": ("init_low", "init_high")}.get(p["init"], ())
    for name in inside:
        if not lo <= p[name] <= hi:
            shown = "r" if name == "g" and p["r"] is not None else name
            raise error((*key, shown), outside(name, p[name], "S", RANGE, lo, hi))


def _element(
    model: Resistor, overrides: dict, key: tuple, device_key: tuple, error: ErrorAt
) -> Resistor:
    """One netlist resistor: its own g (or r), else None (drawn by the device's init)."""
    g = model.g if model.init == "constant" else None
    if "r" in overrides:
        if "g" in overrides:
            raise error((*key, "r"), "give either `g` (siemens) or `r` (ohms), not both")
        g = 1.0 / overrides["r"]
    elif "g" in overrides:
        g = overrides["g"]
    if g is not None and not model.g_min <= g <= model.g_max:
        given = [k for k in ("g", "r") if k in overrides]
        where = (*key, *given) if given else (*device_key, "r" if model.r else "g")
        raise error(where, outside("g", g, "S", RANGE, model.g_min, model.g_max))
    return dataclasses.replace(model, g=g)


RESISTOR = DeviceKind(
    "resistor",
    "Programmable resistor (memristor): the weights of the network.",
    (
        Param("g", "conductance", "Initial conductance when init is constant.", None, 0, True),
        Param("r", "resistance", "Initial resistance (alternative to g).", None, 0, True),
        Param(
            "init",
            "choice",
            "How initial conductances are drawn.",
            "constant",
            choices=("constant", "uniform", "normal"),
        ),
        Param("init_low", "conductance", "Lower end of the uniform draw.", None, 0, True),
        Param("init_high", "conductance", "Upper end of the uniform draw.", None, 0, True),
        Param("init_mean", "conductance", "Mean of the normal draw.", None, 0, True),
        Param("init_std", "conductance", "Standard deviation of the normal draw.", None, 0, True),
        Param("seed", "int", "Seed of the initial draw.", 0, 0),
        Param("g_min", "conductance", "Smallest programmable conductance.", 1e-9, 0, True),
        Param("g_max", "conductance", "Largest programmable conductance.", 1.0, 0, True),
        Param(
            "levels",
            "int",
            "Programmable levels, evenly spaced in [g_min, g_max], used by exports (0: continuous).",
            0,
            0,
            maximum=MAX_LEVELS,
        ),
        Param("trainable", "bool", "Whether training may change these conductances.", True),
    ),
    build=lambda values: Resistor(**values),
    check=_check,
    element_keys=("g", "r"),
    element=_element,
)
