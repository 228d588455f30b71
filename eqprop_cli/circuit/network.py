"""Lower a Graph into arrays: the form the solvers and (later) the trainer work on.

Unknowns are the potentials x of the free nodes that no amplifier drives. Every
other node is either fixed by voltage sources, V = const + inputs @ S, or driven
by an amplifier chain, V = coef * x[var]. The circuit's energy (co-content,
with amplifier stage weights, see DESIGN.md) is then

    E(x) = 1/2 x Q x - (F K + s) . x + const(F) + sum_d w_d e_d(v_d(x))

with Q, K linear in the conductances. The node-level functions ``energy`` and
``kcl_residual`` evaluate the same physics element by element, independently
of Q and K; tests use them to check the solvers.
"""

from __future__ import annotations

import functools
import operator
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numba import njit

from ..circuit.graph import FixedNodes, Graph, check_amplifier_stages, element_key, fixed_nodes
from ..circuit.stamp import Stamp
from ..devices.protocol import IVModel


@dataclass
class DiodeGroup:
    """All diodes of one device: their nodes, I-V model and stage weights."""

    model: IVModel
    anode: np.ndarray
    cathode: np.ndarray
    weight: np.ndarray  # stage weight of each diode
    labels: list[str]


def _block_index(a: np.ndarray, b: np.ndarray) -> tuple:
    """The index of the block (rows a, columns b): slices where they are ranges (no gather)."""
    ranges = [slice(int(v[0]), int(v[0]) + len(v)) for v in (a, b) if _is_range(v)]
    return tuple(ranges) if len(ranges) == 2 else np.ix_(a, b)


def _whole(index: tuple, shape: tuple[int, int]) -> bool:
    """Whether a block's index (``_block_index``) is the whole of an array of this shape."""
    return all(isinstance(i, slice) and i == slice(0, n) for i, n in zip(index, shape, strict=True))


def _is_range(v: np.ndarray) -> bool:
    return len(v) > 0 and v[-1] - v[0] == len(v) - 1 and bool(np.all(np.diff(v) == 1))


@dataclass
class Crossbar:
    """A dense resistor set of a layered circuit, whose share of the linear terms comes from
    array operations on its conductance matrix rather than from a stamp.

    Its columns are unknowns (each at most once); its rows are either all at fixed
    potentials (an input crossbar: it adds to Q's diagonal, S K, r0 and the fixed
    diagonal) or all unknowns (a coupling crossbar: it adds to Q's diagonal and
    off-diagonal). ``row_scale`` and ``col_scale`` are the stage weight times dV/dx of
    each end (the weight of a var-var pair is its row's; of an input one, its column's).
    """

    index: int  # into Network.g
    row_var: np.ndarray | None  # None: rows at fixed potentials
    row_fixed: np.ndarray | None  # fixed indices of the rows (input crossbars)
    col_var: np.ndarray
    row_weight: np.ndarray  # stage weight of each row (coupling) or ones (input)
    row_coef: np.ndarray  # dV/dx of each row (coupling) or ones (input)
    col_weight: np.ndarray  # stage weight of each column (input) or ones (coupling)
    col_coef: np.ndarray
    gain: sp.csr_matrix | None = None  # features x rows: the inputs that drive each row
    row_const: np.ndarray | None = None  # constant potentials of the fixed rows; None: all 0 V
    cols: slice | np.ndarray = field(init=False)  # col_var, as a slice where it is a range
    walks_rows: bool = field(init=False)  # the gain's entries take the rows once, in order
    unit_scales: bool = field(init=False)  # row weight times dV/dx, and column dV/dx, all 1
    # the ends' factors of its share of Q's diagonal (and an input one's of r0), topology:
    col_scale: np.ndarray = field(init=False)  # column weight times dV/dx
    col_diag: np.ndarray = field(init=False)  # input: col_scale dV/dx; coupling: dV/dx ** 2
    row_diag: np.ndarray = field(init=False)  # row weight times dV/dx, times dV/dx
    passes: dict = field(init=False, default_factory=dict, repr=False)  # input_pass by dtype

    def __post_init__(self) -> None:
        v = self.col_var
        self.cols = slice(int(v[0]), int(v[0]) + len(v)) if _is_range(v) else v
        rows = len(self.row_fixed) if self.row_fixed is not None else 0
        self.walks_rows = self.gain is not None and np.array_equal(
            self.gain.indices, np.arange(rows)
        )
        ends = (self.row_weight * self.row_coef, self.col_coef)
        self.unit_scales = all(bool(np.all(e == 1.0)) for e in ends)
        self.col_scale = self.col_weight * self.col_coef
        inputs = self.row_var is None
        self.col_diag = self.col_scale * self.col_coef if inputs else self.col_coef**2
        self.row_diag = ends[0] * self.row_coef


@dataclass(frozen=True)
class RowExpansion:
    """F^T D + plus over an input crossbar's fixed rows, not yet written out: row i is
    P[feature[i]] * gain[i] (+ const[i] * sums, where ``with_const``) (+ plus), with P =
    inputs^T D, the product over the features (``Network.fixed_outer``). ``_expand_rows``
    writes them; a pass over the rows can use each as it is made (learn/crossbar.py)."""

    P: np.ndarray  # (rows of features, columns), at the result's dtype
    feature: np.ndarray  # each row's row of P (its feature's)
    gain: np.ndarray  # its gain (float64)
    const: np.ndarray  # its constant potential (float64)
    sums: np.ndarray  # D summed over the batch
    plus: np.ndarray  # float64, empty: none
    with_const: bool  # some row has a constant potential
    store: np.ndarray | None = None  # the array whose first rows P is (to write it again)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.feature), self.P.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.P.dtype

    def materialise(self) -> np.ndarray:
        """The (rows x columns) array."""
        out = np.empty(self.shape, self.dtype)
        _expand_rows(
            self.P, self.feature, self.gain, self.const, self.sums, self.plus, self.with_const, out
        )
        return out


@dataclass
class CrossbarShare:
    """An input crossbar's share of the next linear part, worked out by the pass that writes
    its new conductances, from each row while it is in cache (learn/crossbar.py), so that
    the rebuild does not read them again: their column sums (float64) and their S K, which
    becomes the network's S K (no other set adds to it). ``written``: the array the pass
    wrote; ``Network.set_conductances`` takes the share with that array only."""

    bar: Crossbar
    sums: np.ndarray  # (columns,), zeros until the pass
    SK: np.ndarray  # (features, unknowns) at the network's dtype: the pass writes its columns
    written: np.ndarray | None = None


@dataclass
class TopologyPlan:
    """What the solvers derive from the topology alone, computed on first use and kept
    for the network's life (conductances change, the topology does not)."""

    stamps: list[tuple[list[int], dict[str, Stamp]]] | None = None  # sets, their Q, r0, ...
    sources: list[tuple] | None = None  # current-source groups: terms, sets, ends, weights
    readout: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # var, coef, weight
    diodes: list[tuple[sp.csr_matrix, np.ndarray, np.ndarray]] | None = None  # A, var, coef
    diodes_T: list[sp.csr_matrix] | None = None  # each A transposed
    var_scale: np.ndarray | None = None  # amplifier gain of each unknown's node
    scale_max: float | None = None  # the largest of them (0 without unknowns)
    branches: tuple | None = None  # incidence, its transpose, inner/outer edge maps, weights
    classes_known: bool = False  # whether ``classes`` was decided (None is an answer)
    classes: tuple[np.ndarray, np.ndarray] | None = None  # the layered solver's two classes
    nudge_fits: bool | None = None  # the layered solver nudges in closed form
    blocks: dict[int, list] = field(default_factory=dict)  # per class: its diodes, sorted
    block_local: dict[int, np.ndarray] = field(default_factory=dict)  # place in its class
    block_scale: dict[int, np.ndarray | None] = field(default_factory=dict)  # None: gains 1
    block_outputs: dict[int, bool] = field(default_factory=dict)  # outputs in the class
    block_slices: dict[int, tuple] = field(default_factory=dict)  # its, other's columns, weighted
    clamp_bounds: tuple[np.ndarray, np.ndarray] | None = None  # hard clamps' (lo, hi), rails
    block_bounds: dict[int, tuple] = field(default_factory=dict)  # per class: its part of them
    crossbars: list[Crossbar] | None = None  # dense sets whose linear terms need no stamp
    no_coupling: sp.csr_matrix | None = None  # Q's stamped part when every set is a crossbar
    readers: dict[tuple, tuple | None] = field(default_factory=dict)  # node sets' reads
    scatters: dict[tuple, tuple] = field(default_factory=dict)  # the same where some is fixed
    couplings: dict[tuple, list] = field(default_factory=dict)  # crossbars' blocks in Q parts
    last_coupling: tuple | None = None  # (rows, cols, blocks) of the last read-only look-up
    shared_known: bool = False  # whether ``shared`` was decided (None is an answer)
    shared: Crossbar | None = None  # the input crossbar a pass works out the share of
    outer: tuple | None = None  # fixed_outer's last node set: (which, feature, gain, const, any)
    used_columns: np.ndarray | None = None  # fixed_outer's used inputs, transposed: a buffer
    no_current: np.ndarray | None = None  # a nudge's current times the weights where it has none
    outputs_key: tuple | None = None  # content_key of the outputs' nodes (read every batch)
    share_buffers: list[np.ndarray] = field(default_factory=list)  # S K arrays of shares


@dataclass
class ConductancePlan:
    """What the solvers derive from the conductances, computed on first use; a new
    conductance state (a new Linear) starts an empty one."""

    Q: np.ndarray | sp.csr_matrix | None = None  # Q dense when small and not sparse
    branches: tuple[np.ndarray, np.ndarray] | None = None  # weighted g of inner edges, D
    inverse_bound: np.ndarray | None = None  # error bound of the layered sweeps
    nudge_limit: float | None = None  # the most negative nudge conductance allowed (-S)
    blocks: dict[int, tuple] = field(default_factory=dict)  # per class: a, a / w, coupling
    woodbury: dict[tuple | None, tuple] = field(default_factory=dict)  # per nudge strength


@dataclass
class Linear:
    """Q and the input-dependent linear and constant terms of the energy, in input space.

    Q itself (sparse) is assembled on first use: the layered solver needs only its
    diagonal and its coupling blocks (``coupling``), which crossbars give directly.
    The constant term (M, m, m0) matters only for energy values, so it too is
    computed on first use: a training step never needs it.
    """

    Q_diag: np.ndarray
    SK: np.ndarray  # (features, vars)
    r0: np.ndarray  # (vars,)
    Q_terms: Callable[[], sp.csr_matrix] = field(repr=False)
    constant_terms: Callable[[], tuple[sp.csr_matrix, np.ndarray, float]] = field(repr=False)
    coupling_terms: Callable[[np.ndarray, np.ndarray], np.ndarray | sp.csr_matrix] = field(
        repr=False
    )
    plan: ConductancePlan = field(default_factory=ConductancePlan)  # solver data, on demand

    @functools.cached_property
    def Q(self) -> sp.csr_matrix:
        return self.Q_terms()

    def coupling(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | sp.csr_matrix:
        """Q[rows][:, cols] for two disjoint sets of unknowns."""
        return self.coupling_terms(rows, cols)

    def rhs(self, inputs: np.ndarray) -> np.ndarray:
        """r(X), float64 (the product itself at the precision of S K)."""
        r = np.asarray(inputs, dtype=self.SK.dtype) @ self.SK
        if r.dtype == self.r0.dtype == np.float64 and r.shape[-1:] == self.r0.shape:
            return np.add(r, self.r0, out=r)  # into the product: no second array
        return r + self.r0

    @functools.cached_property
    def constant(self) -> tuple[sp.csr_matrix, np.ndarray, float]:
        """(M, m, m0): const(X) = 1/2 X M X + X m + m0."""
        return self.constant_terms()

    def const(self, inputs: np.ndarray) -> np.ndarray:
        M, m, m0 = self.constant
        if M.nnz == np.count_nonzero(M.diagonal()):  # diagonal: no sparse product
            quad = np.square(inputs) @ M.diagonal()
        else:
            quad = np.einsum("bi,bi->b", inputs, np.asarray((M @ inputs.T).T))
        return 0.5 * quad + inputs @ m + m0


class Network:
    """Arrays of a compiled circuit; conductances live in ``self.g`` (one array per resistor set)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.node_names = list(graph.nodes)
        n = len(graph.nodes)
        self.n_nodes = n
        self.n_features = graph.n_features
        self.outputs = graph.outputs
        held = fixed_nodes(graph)
        self.fixed = np.concatenate([[0], np.sort(held.node)]).astype(int)
        self.fixed_index = np.full(n, -1)
        self.fixed_index[self.fixed] = np.arange(len(self.fixed))
        self.fixed_const, self.fixed_gain = self._resolve_fixed(held)
        graph.fixed = None  # held in these arrays now; a million inputs make it 80 MB
        self.node_weight = check_amplifier_stages(graph)
        self._resolve_unknowns()
        self.resistors = graph.resistors
        # precision of the conductances ([solver] dtype): float32 halves the memory traffic
        # of training; node voltages and the solvers' arithmetic stay float64
        self.dtype = np.dtype(graph.spec.solver.dtype if graph.spec else "float64")
        self.g = [r.g.astype(self.dtype) for r in graph.resistors]
        self._linear: Linear | None = None
        self._shares: dict[int, CrossbarShare] = {}  # of the next linear part, by set
        self.plan = TopologyPlan()  # solver data that depends on the topology only
        self.diodes = [
            DiodeGroup(
                d.device.model,
                d.anode,
                d.cathode,
                self._branch_weight(d.anode, d.cathode),
                d.labels,
            )
            for d in graph.diodes
        ]
        self.isources = graph.isources
        self.currents = [s.current.astype(float).copy() for s in graph.isources]
        self.amplifiers = graph.amplifiers
        self._check_clamps()

    def _check_clamps(self) -> None:
        """A hard clamp bounds one unknown: one end must be at a fixed potential."""
        for d, spec in zip(self.diodes, self.graph.diodes, strict=True):
            if not d.model.hard:
                continue
            ends_free = (self.fixed_index[d.anode] < 0).astype(int) + (
                self.fixed_index[d.cathode] < 0
            )
            bad = np.where(ends_free != 1)[0]
            if len(bad):
                label = d.labels[bad[0]]
                raise self.graph.spec.error(
                    element_key(self.graph, label, spec.device.key),
                    f'hard-clamp diode "{label}" (g_on = inf) needs exactly one end at a fixed potential '
                    "(ground, a rail or an input); give it a finite g_on to connect two free nodes",
                )

    # ------------------------------------------------------------------ node maps

    def _resolve_fixed(self, held: FixedNodes) -> tuple[np.ndarray, sp.csr_matrix]:
        """Fixed potentials as const + inputs @ gain (gain: features x fixed nodes).

        Each held node adds its source to its parent's potential; summing along the
        chains to ground goes by doubling (2, 4, 8, ... ancestors at a time), so long
        chains of sources cost a few sparse products, not a loop over nodes.
        """
        k = len(self.fixed)
        own, up = self.fixed_index[held.node], self.fixed_index[held.parent]
        jump = sp.csr_matrix((np.ones(len(own)), (own, up)), shape=(k, k))
        const = np.zeros(k)
        const[own] = held.value
        driven = held.feature >= 0
        terms = sp.csr_matrix(
            (held.gain[driven], (own[driven], held.feature[driven])), shape=(k, self.n_features)
        )
        while jump.nnz:
            const = const + jump @ const
            terms = terms + jump @ terms
            jump = jump @ jump
        terms = terms.tocoo()
        cols, rows, vals = terms.row, terms.col, terms.data
        gain = sp.csr_matrix((vals, (rows, cols)), shape=(self.n_features, len(self.fixed)))
        # fast path: every fixed node follows at most one feature (true of layered inputs)
        self._one_feature = np.bincount(cols, minlength=1).max() <= 1
        self._feature_of = np.zeros(len(self.fixed), dtype=int)
        self._feature_gain = np.zeros(len(self.fixed))
        self._feature_of[cols] = rows
        self._feature_gain[cols] = vals
        self._input_driven = np.zeros(len(self.fixed), dtype=bool)
        self._input_driven[cols] = True
        return const, gain

    def _resolve_unknowns(self) -> None:
        """Variables, and each non-fixed node as coef * x[var] (amplifier chains)."""
        n = self.n_nodes
        drive = {a.target: a for a in self.graph.amplifiers}
        self.node_var = np.full(n, -1)
        self.node_coef = np.zeros(n)
        unknown = self.fixed_index < 0
        unknown[list(drive)] = False
        free = np.flatnonzero(unknown)
        self.node_var[free] = np.arange(len(free))
        self.node_coef[free] = 1.0
        self.var_node = np.array(free, dtype=int)

        for node in drive:  # walk up each chain to a resolved node, then back down
            chain = []
            while self.node_var[node] < 0:
                chain.append(node)
                node = drive[node].source
            for target in reversed(chain):
                source = drive[target].source
                self.node_var[target] = self.node_var[source]
                self.node_coef[target] = self.node_coef[source] * drive[target].device.model.gain
        self.n_vars = len(free)
        self.var_weight = self.node_weight[self.var_node] if self.n_vars else np.zeros(0)

    def _branch_weight(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Stage weight of two-terminal elements: that of their non-fixed end."""
        return np.where(self.fixed_index[a] < 0, self.node_weight[a], self.node_weight[b])

    def fixed_potentials(self, inputs: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        """(batch, n_fixed) potentials of the fixed nodes, or of the fixed indices ``which``.

        With ``which`` naming only nodes that no input drives (rails), the
        result is one row, (1, len(which)), that broadcasts over the batch.
        """
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        rails_only = (
            which is not None and not self._input_driven[np.asarray(which, dtype=int)].any()
        )
        which = np.arange(len(self.fixed)) if which is None else np.asarray(which, dtype=int)
        const = self.fixed_const[which]
        if rails_only:
            return const[None, :].copy()
        if self.n_features == 0:
            return np.broadcast_to(const, (inputs.shape[0], len(which))).copy()
        if self._one_feature:
            F = np.take(inputs, self._feature_of[which], axis=1)
            F *= self._feature_gain[which]
            F += const
            return F
        return np.asarray(self.fixed_gain[:, which].T @ inputs.T).T + const

    def fixed_outer(
        self,
        which: np.ndarray,
        inputs: np.ndarray,
        D: np.ndarray,
        plus: np.ndarray | None = None,
        deferred: bool = False,
        out: np.ndarray | None = None,
        sums: np.ndarray | None = None,
    ) -> np.ndarray | RowExpansion:
        """F^T D, (len(which), D.shape[1]), with F the fixed potentials ``which`` (batch,
        len(which)) of these inputs, plus the row ``plus`` (float64) on every row if given:
        from inputs^T D when every fixed node follows one input (a product over the
        features, not over the fixed nodes), expanded to the fixed nodes in one pass, or,
        ``deferred``, not expanded (a RowExpansion). The product is taken over the features
        that are not 0 in every sample only (``_used_features``: a third to a half of
        MNIST's pixels in a batch; ``_used_inputs`` gathers them, transposed, into a buffer
        kept for the batch size and dtype), the others' rows being exactly 0: each row of a
        matrix product is its own sum over the batch, so the used rows have the bits of the
        whole product's. ``out``: an array that the product may be written into (used where it
        has (features + 1, D.shape[1]) and D's dtype: a kept buffer); ``sums``: D summed
        over the batch (D.sum(axis=0)) where the caller has it."""
        which = np.asarray(which, dtype=int)
        if not self._one_feature or self.n_features == 0:
            out = self.fixed_potentials(inputs, which).T @ D
            if plus is not None:
                out += plus
            return out
        inputs = np.atleast_2d(np.asarray(inputs, dtype=D.dtype))
        kept = self.plan.outer  # the rows' features, gains and constants: topology
        if kept is None or kept[0] is not which:  # (the same node set each batch: kept)
            const = self.fixed_const[which]
            feature, gain = self._feature_of[which], self._feature_gain[which]
            kept = self.plan.outer = (which, feature, gain, const, bool(np.any(const)))
        _, feature, gain, const, with_const = kept
        store = (self.n_features + 1, D.shape[1])
        if out is None or out.shape != store or out.dtype != D.dtype:
            out = np.empty(store, D.dtype)
        slot = np.empty(self.n_features, np.intp)
        columns = self.plan.used_columns  # (features, batch) at the inputs' dtype: kept
        if columns is None or columns.shape != inputs.shape[::-1] or columns.dtype != D.dtype:
            columns = self.plan.used_columns = np.empty(inputs.shape[::-1], D.dtype)
        k = _used_inputs(inputs, slot, columns)
        P = out[: k + 1]  # the used features' rows, then one of zeros for the others
        np.matmul(columns[:k], D, out=P[:k])
        P[k] = 0.0
        rows = RowExpansion(
            P,
            slot[feature],
            gain,
            const,
            D.sum(axis=0) if sums is None else sums,
            np.zeros(0) if plus is None else plus,
            with_const,
            out,
        )
        return rows if deferred else rows.materialise()

    def voltages_at(self, x: np.ndarray, inputs: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Potentials (batch, *nodes.shape) of some nodes only: straight from the unknowns
        where every node is one (``_reader``)."""
        nodes = np.asarray(nodes, dtype=int)
        read = self._reader(nodes)
        if read is not None:
            columns, coef = read
            out = x[:, columns]
            if coef is not None:
                out = out * coef
            elif isinstance(columns, slice):
                out = out.copy()  # a view of the unknowns otherwise
            return out.reshape(x.shape[0], *nodes.shape)
        fixed, which, rails, var, coef = self._scatter(nodes)
        out = np.zeros((x.shape[0], nodes.size))
        if rails is not None:
            out[:, fixed] = rails
        elif which.size:
            out[:, fixed] = self.fixed_potentials(inputs, which)
        if var.size:  # (none where every node is fixed: a bias's ground)
            out[:, ~fixed] = x[:, var] * coef
        return out.reshape(x.shape[0], *nodes.shape)

    def reader(self, nodes: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """A function (unknowns x, inputs) -> the potentials (batch, len(nodes)) of the 1-D
        ``nodes``, those ``voltages_at`` gives, for reading only: a view of x where they are a
        range of unknowns at gain 1, a broadcast row where all are rails. Topology: the plan
        is resolved here, once, not on every read."""
        nodes = np.asarray(nodes, dtype=int)
        read = self._reader(nodes)
        if nodes.ndim == 1 and read is not None:
            columns, coef = read
            if coef is None and isinstance(columns, slice):
                return lambda x, inputs: x[:, columns]
        elif nodes.ndim == 1 and nodes.size:
            _, _, rails, var, _ = self._scatter(nodes)
            if rails is not None and not var.size:
                rows: dict[int, np.ndarray] = {}  # the read-only broadcast row by batch size

                def read_rails(x: np.ndarray, inputs: np.ndarray) -> np.ndarray:
                    if x.shape[0] not in rows:
                        rows[x.shape[0]] = np.broadcast_to(rails, (x.shape[0], nodes.size))
                    return rows[x.shape[0]]

                return read_rails
        return lambda x, inputs: self.voltages_at(x, inputs, nodes)

    def _scatter(self, nodes: np.ndarray) -> tuple:
        """How to read ``nodes`` where some are fixed: (which are fixed, their fixed indices,
        their potentials (1, n) where no input drives them (else None), the others' columns
        of the unknowns and gains). Topology: kept per node set."""
        key = content_key(nodes)
        if key not in self.plan.scatters:
            flat = nodes.ravel()
            fixed = self.fixed_index[flat] >= 0
            which = self.fixed_index[flat[fixed]]
            rails = None
            if which.size and not self._input_driven[which].any():
                rails = self.fixed_potentials(np.zeros((1, self.n_features)), which)
            var, coef = self.node_var[flat[~fixed]], self.node_coef[flat[~fixed]]
            self.plan.scatters[key] = (fixed, which, rails, var, coef)
        return self.plan.scatters[key]

    def _reader(self, nodes: np.ndarray) -> tuple | None:
        """How to read the potentials of ``nodes`` from the unknowns: (their columns, a slice
        where they are a range; their gains, None where all are 1); None when some node is
        not an unknown. Topology: kept per node set."""
        if nodes is self.outputs:  # the readout's own array (never written): its key kept
            if self.plan.outputs_key is None:
                self.plan.outputs_key = content_key(nodes)
            key = self.plan.outputs_key
        else:
            key = content_key(nodes)
        if key not in self.plan.readers:
            flat = nodes.ravel()
            var = self.node_var[flat]
            read = None
            if flat.size and not np.any(self.fixed_index[flat] >= 0) and not np.any(var < 0):
                coef = self.node_coef[flat]
                columns = slice(int(var[0]), int(var[0]) + len(var)) if _is_range(var) else var
                read = (columns, None if np.all(coef == 1.0) else coef)
            self.plan.readers[key] = read
        return self.plan.readers[key]

    def node_voltages(self, x: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """All node potentials (batch, n_nodes) from unknowns and input vectors."""
        V = np.empty((x.shape[0], self.n_nodes))
        nf = len(self.fixed)
        if np.array_equal(self.fixed, np.arange(nf)):  # fixed nodes first: slices, no scatter
            V[:, :nf] = self.fixed_potentials(inputs)
            V[:, nf:] = x[:, self.node_var[nf:]] * self.node_coef[nf:]
            return V
        V[:, self.fixed] = self.fixed_potentials(inputs)
        nonfixed = self.fixed_index < 0
        V[:, nonfixed] = x[:, self.node_var[nonfixed]] * self.node_coef[nonfixed]
        return V

    def set_conductances(
        self, g: list[np.ndarray], owned: bool = False, shares: Iterable[CrossbarShare] = ()
    ) -> None:
        """Replace the conductances (one array per resistor set, same shapes).

        ``owned``: the arrays are the caller's to give away, finite and > 0 (the
        trainer's clipped updates): taken as they are (at the network's dtype), without a
        copy or a check. ``shares``: input crossbars' shares of the linear part worked out
        by the pass that wrote their arrays (``crossbar_share``); each is used where its
        set's array is the one it was written into.
        """
        if len(g) != len(self.g) or any(
            (a.shape if owned else np.shape(a)) != b.shape for a, b in zip(g, self.g, strict=True)
        ):
            raise ValueError("conductances must match the resistor sets in number and shape")
        if owned:
            g = [a if a.dtype == self.dtype else a.astype(self.dtype) for a in g]
        else:
            g = [np.array(a, dtype=self.dtype) for a in g]
            # all finite and > 0: the smallest > 0 (False for NaN) and the largest finite
            if not all(a.size == 0 or (a.min() > 0 and np.isfinite(a.max())) for a in g):
                raise ValueError("conductances must be finite and > 0 S")
        self.g = g
        self._linear = None
        self._shares = {
            s.bar.index: s for s in shares if s.written is not None and s.written is g[s.bar.index]
        }

    def crossbar_share(self, k: int) -> CrossbarShare | None:
        """Empty accumulators for set k's share of the next linear part (CrossbarShare), where
        a pass over its rows in order can work it out: set k is the first input crossbar,
        its gain walks its rows, and no other set adds to S K before it (none is stamped);
        None otherwise."""
        bar = self._shared_crossbar()
        if bar is None or bar.index != k:
            return None
        return CrossbarShare(bar, np.zeros(len(bar.col_var)), self._share_buffer(bar))

    def _share_buffer(self, bar: Crossbar) -> np.ndarray:
        """An S K array for a share of ``bar``, zero outside its columns (the pass writes
        those whole): where no other input crossbar adds to S K, one of the two kept on the
        plan that nothing else refers to any more (the linear part of an earlier state, a
        share, a view of it: each holds a reference, so its count is above that of an array
        held by the list alone), else a new one."""
        kept = self.plan.share_buffers
        shape = (self.n_features, self.n_vars)
        alone = sys.getrefcount(_LONE[0])  # an array the list alone holds, counted likewise
        for i in range(len(kept)):
            if sys.getrefcount(kept[i]) == alone:
                return kept[i]  # (its zeros are as they were made: the pass writes the rest)
        SK = np.empty(shape, self.dtype)
        if isinstance(bar.cols, slice):
            SK[:, : bar.cols.start] = 0.0
            SK[:, bar.cols.stop :] = 0.0
        else:
            others = np.ones(self.n_vars, bool)
            others[bar.col_var] = False
            SK[:, others] = 0.0
        alone_writes = all(c is bar or c.row_var is not None for c in self._crossbars())
        if alone_writes and len(kept) < 2:  # the next state's and the current one's
            kept.append(SK)
        return SK

    def _shared_crossbar(self) -> Crossbar | None:
        """The input crossbar whose share of the linear part a pass can work out
        (``crossbar_share``), or None. Topology: decided once."""
        if not self.plan.shared_known:
            bar = None
            if not self._stamps():
                bar = next((c for c in self._crossbars() if c.row_var is None), None)
            self.plan.shared = bar if bar is not None and bar.walks_rows else None
            self.plan.shared_known = True
        return self.plan.shared

    def set_currents(self, currents: list[np.ndarray], owned: bool = False) -> None:
        """Replace the current-source currents (one array per source set, same shapes).

        ``owned``: the arrays are the caller's to give away, finite (the trainer's clipped
        updates): taken as they are (float64), without a copy or a check.
        """
        if len(currents) != len(self.currents) or any(
            np.shape(a) != b.shape for a, b in zip(currents, self.currents, strict=True)
        ):
            raise ValueError("currents must match the current-source sets in number and shape")
        if owned:
            currents = [a.astype(float, copy=False) for a in currents]
        else:
            currents = [np.array(a, dtype=float) for a in currents]
            if not all(np.all(np.isfinite(a)) for a in currents):
                raise ValueError("currents must be finite")
        self.currents = currents
        self._linear = None

    def readout_map(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The readout in terms of the unknowns: o_k = sum_j coef[k, j] x[var[k, j]].

        Also the stage weight of each output (that of its first node).
        """
        if self.plan.readout is None:
            nodes = self.outputs
            sign = np.array([1.0, -1.0])[: nodes.shape[1]]
            self.plan.readout = (
                self.node_var[nodes],
                self.node_coef[nodes] * sign,
                self.node_weight[nodes[:, 0]],
            )
        return self.plan.readout

    def linear(self) -> Linear:
        """The linear part in terms of input vectors X (cached until conductances change).

        r(X) = X @ SK + r0 and const(X) = 1/2 X M X + X m + m0, with F = X S + c.
        Crossbars add their share by array operations on their conductance matrices (an
        input crossbar's column sums and S K may come worked out by the pass that wrote
        its conductances: ``set_conductances``' shares), every other resistor set by its
        stamp.
        """
        if self._linear is None:
            shares, self._shares = self._shares, {}
            # each stamped group of sets with its conductances, in the order of its elements
            stamped = [
                (stamps, np.concatenate([self.g[k].ravel() for k in group]))
                for group, stamps in self._stamps()
            ]
            crossbars = self._crossbars()
            currents = self.currents  # (set_currents replaces the list)
            s = self._source_terms(currents)
            if stamped:
                Q_rest = _total(st["Q"].matrix(g) for st, g in stamped)
                Q_diag = Q_rest.diagonal()
                # dense: the product of each solve
                SK = _total(st["SK"].dense(g) for st, g in stamped).astype(self.dtype)
                # K^T c: only edges to non-zero rails
                r0 = _total(st["r0"].dense(g) for st, g in stamped).ravel() + s
            else:  # every resistor in a crossbar
                Q_rest = self._no_coupling()
                Q_diag = np.zeros(self.n_vars)
                # a share worked out with the conductances: its S K is the whole of S K
                shared = next(iter(shares.values()), None)
                SK = shared.SK if shared else np.zeros((self.n_features, self.n_vars), self.dtype)
                r0 = s  # (a new array: the source terms')
            for c in crossbars:
                model = self.resistors[c.index].device.model
                share = shares.get(c.index) if not stamped else None
                sums = None if share is None else share.sums
                model.add_crossbar_terms(c, self.g[c.index], Q_diag, SK, r0, sums)

            def Q_terms() -> sp.csr_matrix:
                parts = [Q_rest - sp.diags(Q_rest.diagonal()), sp.diags(Q_diag)]
                for c in crossbars:
                    if c.row_var is not None:
                        block = sp.coo_matrix(-self._crossbar_coupling(c))
                        rows, cols = c.row_var[block.row], c.col_var[block.col]
                        shape = (self.n_vars, self.n_vars)
                        parts.append(sp.csr_matrix((block.data, (rows, cols)), shape=shape))
                        parts.append(sp.csr_matrix((block.data, (cols, rows)), shape=shape))
                return sum(parts[1:], parts[0]).tocsr()

            def coupling_terms(rows: np.ndarray, cols: np.ndarray):
                shape = (len(rows), len(cols))
                small = shape[0] * shape[1] <= 4_000_000
                blocks = self._coupling_blocks(rows, cols)
                # every resistor in a crossbar (Q_rest then the empty one): no slicing
                if (not stamped or Q_rest.nnz == 0) and small:
                    if len(blocks) == 1 and _whole(blocks[0][2], shape):  # one crossbar's
                        c, transposed, _ = blocks[0]
                        block = self._crossbar_coupling(c)
                        # 0 - b is 0 + (-b) (IEEE), without the zeros and the sum's passes
                        return np.subtract(
                            0.0, block.T if transposed else block, out=np.empty(shape)
                        )
                    part = np.zeros(shape)
                else:
                    part = Q_rest[rows][:, cols]
                if sp.issparse(part):
                    part = part.toarray() if small else part.tolil()
                for c, transposed, index in blocks:
                    block = -self._crossbar_coupling(c)
                    part[index] += block.T if transposed else block
                return part.tocsr() if sp.issparse(part) else part

            def constant_terms() -> tuple[sp.csr_matrix, np.ndarray, float]:
                S, c = self.fixed_gain, self.fixed_const
                diag = _total(
                    (st["fixed_diag"].dense(g) for st, g in stamped), np.zeros((len(c), 1))
                ).ravel()
                for bar in crossbars:
                    if bar.row_var is None:
                        model = self.resistors[bar.index].device.model
                        model.add_crossbar_fixed_diag(bar, self.g[bar.index], diag)
                # conductance among fixed nodes: const(F) = 1/2 F A F - F fc, in terms of X
                A = sp.diags(diag)
                for st, g in stamped:
                    if st["lap"].A.nnz:
                        A = A + st["lap"].matrix(g)
                M = (S @ A @ S.T).tocsr()
                fixed_current = self._source_terms(currents, fixed=True)
                m = np.asarray(S @ (A @ c) - S @ fixed_current)
                return M, m, float(0.5 * c @ (A @ c) - c @ fixed_current)

            self._linear = Linear(Q_diag, SK, r0, Q_terms, constant_terms, coupling_terms)
        return self._linear

    def _no_coupling(self) -> sp.csr_matrix:
        """Q's stamped part when every resistor set is a crossbar: an empty (unknowns x
        unknowns) matrix, made once (a new one costs a quarter of a small network's rebuild
        of its linear part) and never changed in place."""
        if self.plan.no_coupling is None:
            self.plan.no_coupling = sp.csr_matrix((self.n_vars, self.n_vars))
        return self.plan.no_coupling

    def _coupling_blocks(self, rows: np.ndarray, cols: np.ndarray) -> list[tuple]:
        """Where the coupling crossbars' blocks sit in Q[rows][:, cols] (two disjoint sets
        of unknowns): (crossbar, whether its block goes in transposed, the index of its
        place) of each that lies in it whole. Topology: kept per pair of sets."""
        last = self.plan.last_coupling  # the same two arrays as the last call: no key
        read_only = not (rows.flags.writeable or cols.flags.writeable)  # so unchanged
        if read_only and last is not None and last[0] is rows and last[1] is cols:
            return last[2]
        key = content_key(rows, cols)
        if key not in self.plan.couplings:
            at_row, at_col = np.full(self.n_vars, -1), np.full(self.n_vars, -1)
            at_row[rows], at_col[cols] = np.arange(len(rows)), np.arange(len(cols))
            blocks = []
            for c in self._crossbars():
                if c.row_var is None:
                    continue
                a, b = at_row[c.row_var], at_col[c.col_var]
                transposed = bool(np.all(a < 0) or np.all(b < 0))  # the transposed block
                if transposed:
                    a, b = at_row[c.col_var], at_col[c.row_var]
                if np.all(a >= 0) and np.all(b >= 0):
                    blocks.append((c, transposed, _block_index(a, b)))
            self.plan.couplings[key] = blocks
        if read_only:
            self.plan.last_coupling = (rows, cols, self.plan.couplings[key])
        return self.plan.couplings[key]

    def _crossbar_coupling(self, c: Crossbar) -> np.ndarray:
        """The (rows x columns) coupling a var-var crossbar puts in Q, negated."""
        return self.resistors[c.index].device.model.crossbar_coupling(c, self.g[c.index])

    def _crossbars(self) -> list[Crossbar]:
        """The dense resistor sets whose linear terms need no stamp (topology, so once)."""
        if self.plan.crossbars is None:
            bars = []
            for k, r in enumerate(self.resistors):
                if not r.dense:
                    continue
                col_var, row_var = self.node_var[r.cols], self.node_var[r.rows]
                row_fixed = self.fixed_index[r.rows]
                if np.any(col_var < 0) or len(np.unique(col_var)) < len(col_var):
                    continue
                ones = np.ones(len(r.rows))
                if np.all(row_fixed >= 0):
                    const = self.fixed_const[row_fixed]
                    bar = Crossbar(
                        k,
                        None,
                        row_fixed,
                        col_var,
                        ones,
                        ones,
                        self.node_weight[r.cols],
                        self.node_coef[r.cols],
                        self.fixed_gain[:, row_fixed].tocsr(),
                        const if np.any(const) else None,
                    )
                elif (
                    np.all(row_var >= 0)
                    and len(np.unique(row_var)) == len(row_var)
                    and not np.isin(row_var, col_var).any()
                ):
                    bar = Crossbar(
                        k,
                        row_var,
                        None,
                        col_var,
                        self.node_weight[r.rows],
                        self.node_coef[r.rows],
                        np.ones(len(r.cols)),
                        self.node_coef[r.cols],
                    )
                else:
                    continue
                bars.append(bar)
            self.plan.crossbars = bars
        return self.plan.crossbars

    @property
    def _crossbar_sets(self) -> set[int]:
        return {c.index for c in self._crossbars()}

    # ------------------------------------------------------------------ edges

    def resistor_edges(
        self, sets: Iterable[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Resistors as (a, b, g) arrays: of every set, or of the sets numbered in ``sets``."""
        a, b, g = [], [], []
        for k in range(len(self.resistors)) if sets is None else sets:
            rows, cols = self.resistors[k].pairs()
            a.append(rows)
            b.append(cols)
            g.append(self.g[k].ravel())
        if not a:
            return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
        return np.concatenate(a), np.concatenate(b), np.concatenate(g)

    def isource_arrays(
        self, sets: Iterable[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Current sources as (plus, minus, current) arrays: of every set, or of ``sets``."""
        picked = range(len(self.isources)) if sets is None else list(sets)
        if not picked:
            return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
        return (
            np.concatenate([self.isources[k].plus for k in picked]).astype(int),
            np.concatenate([self.isources[k].minus for k in picked]).astype(int),
            np.concatenate([self.currents[k] for k in picked]).astype(float),
        )

    # ------------------------------------------------------------------ quadratic form

    # ------------------------------------------------------------------ linear part

    def _stamps(self) -> list[tuple[list[int], dict[str, Stamp]]]:
        """Every resistor set but the crossbars, stamped by its model (devices/protocol.py)
        into Q, K^T c, S K, the fixed diagonal and Laplacian as linear maps of their
        conductances: sets whose models share a stamp are stamped together, as one array of
        elements (every shipped circuit: one stamp). Topology only, so built once per
        network; each conductance update then costs one sparse product per matrix.
        """
        if self.plan.stamps is None:
            sets = [k for k in range(len(self.resistors)) if k not in self._crossbar_sets]
            stamps = []
            for stamp, group in _shared(self.resistors, sets, "stamp"):
                a, b, _ = self.resistor_edges(group)
                stamps.append((group, stamp(self, a, b, self._branch_weight(a, b))))
            self.plan.stamps = stamps
        return self.plan.stamps

    def _source_terms(self, currents: list[np.ndarray], fixed: bool = False) -> np.ndarray:
        """Current sources' linear energy terms: on the unknowns (s), or, ``fixed``, on the
        fixed nodes (needed for energy values only, so apart)."""
        s = np.zeros(self.n_vars)
        fixed_current = np.zeros(len(self.fixed)) if fixed else None
        for terms, group, plus, minus, weight in self._source_groups():
            cur = np.concatenate([currents[k] for k in group]).astype(float, copy=False)
            terms(self, plus, minus, weight, cur, s, fixed_current)
        return fixed_current if fixed else s

    def _source_groups(self) -> list[tuple]:
        """The current-source sets grouped by their model's ``add_linear_terms``: (it, the
        sets, their plus and minus nodes, stage weights). Topology, so made once."""
        if self.plan.sources is None:
            groups = []
            for terms, group in _shared(
                self.isources, range(len(self.isources)), "add_linear_terms"
            ):
                plus, minus, _ = self.isource_arrays(group)
                groups.append((terms, group, plus, minus, self._branch_weight(plus, minus)))
            self.plan.sources = groups
        return self.plan.sources

    # ------------------------------------------------------------------ node-level physics

    def _element_sets(self):
        """Every set of linear elements: its model, ends and parameters (resistors: g,
        current sources: their currents)."""
        for r, g in zip(self.resistors, self.g, strict=True):
            yield r.device.model, r.ends(), g
        for src, cur in zip(self.isources, self.currents, strict=True):
            yield src.device.model, src.ends(), cur

    def energy(self, V: np.ndarray) -> np.ndarray:
        """Co-content of the circuit (with stage weights) at node potentials V, per sample."""
        V = np.atleast_2d(V)
        total = np.zeros(V.shape[0])
        for model, (p, q, dense), theta in self._element_sets():
            weight = (
                self._branch_weight(p[:, None], q[None, :]) if dense else self._branch_weight(p, q)
            )
            total += model.set_energy(V, (p, q, dense), theta, weight)
        for d in self.diodes:
            v = V[:, d.anode] - V[:, d.cathode]
            if d.model.hard:
                continue  # zero inside its feasible set, which a solution respects
            total += d.model.energy(v) @ d.weight
        return total

    def branch_currents(self, V: np.ndarray) -> np.ndarray:
        """Current leaving each node into its elements (batch, n_nodes), amplifiers excluded.

        Hard-clamp diodes carry whatever current keeps their node at the clamp;
        they are left out here and accounted for in ``kcl_residual``.
        """
        V = np.atleast_2d(V)
        out = np.zeros_like(V)
        for model, ends, theta in self._element_sets():
            model.add_set_currents(out, V, ends, theta)
        for d in self.diodes:
            if d.model.hard:
                continue
            i = d.model.current(V[:, d.anode] - V[:, d.cathode])
            np.add.at(out, (slice(None), d.anode), i)
            np.add.at(out, (slice(None), d.cathode), -i)
        return out

    def _chain_depth(self) -> np.ndarray:
        """Per amplifier: how many amplifiers precede it in a direct chain (input driven by one)."""
        driver = {amp.target: k for k, amp in enumerate(self.amplifiers)}
        depth = np.full(len(self.amplifiers), -1)
        for k in range(len(self.amplifiers)):
            chain = [k]
            while depth[chain[-1]] < 0 and self.amplifiers[chain[-1]].source in driver:
                chain.append(driver[self.amplifiers[chain[-1]].source])
            base = depth[chain[-1]] if depth[chain[-1]] >= 0 else 0
            for step, link in enumerate(reversed(chain)):
                if depth[link] < 0:
                    depth[link] = base + step
        return depth

    def kcl_residual(self, V: np.ndarray, clamp_tol: float = 1e-9) -> np.ndarray:
        """Net current (A) at every node that the circuit's own devices must balance.

        A hard-clamp diode at its threshold (within ``clamp_tol`` volts) carries
        whatever current of its conducting direction balances its nodes. Zero
        at fixed nodes (their sources supply anything) and at amplifier outputs
        (the amplifier supplies it); at an amplifier's input it includes the
        backward current, 1/A of what the amplifier delivers.
        """
        V = np.atleast_2d(V)
        out = self.branch_currents(V)
        clamps = [d for d in self.diodes if d.model.hard]
        # the end of a direct chain first, so chains pass their currents back
        for k in np.argsort(-self._chain_depth(), kind="stable"):
            amp = self.amplifiers[k]
            _absorb_clamps(out, V, clamps, clamp_tol, amp.target)
            out[:, amp.source] += out[:, amp.target] / amp.device.model.gain
            out[:, amp.target] = 0.0
        _absorb_clamps(out, V, clamps, clamp_tol)
        out[:, self.fixed] = 0.0
        return out


_LONE = [np.empty(0)]  # an array held by its list alone: the reference count of one unused


def content_key(*arrays: np.ndarray) -> tuple:
    """A dictionary key that stands for the arrays' contents (dtype, shape and values): the
    plans kept per node set or per pair of sets are looked up by it."""
    return tuple((a.dtype.str, a.shape, a.tobytes()) for a in arrays)


@njit(cache=True, inline="always")
def _plus_row(plus, n):
    """(whether there is a plus row, a row of n entries to read in its place): zeros for
    an empty one, so that ``_expanded`` reads both its rows at every entry (a load under a
    condition keeps a loop over the entries from vectorising)."""
    with_plus = plus.size > 0
    return with_plus, plus if with_plus else np.zeros(n, plus.dtype)


@njit(cache=True, inline="always")
def _expanded(P, f, j, s, c, sums, plus, with_const, with_plus, out):
    """Entry j of a row of ``_expand_rows``, each operation rounded to out's dtype (out itself
    is not written); sums[j] and plus[j] are read whatever the flags (``_plus_row``)."""
    kind = out.dtype.type
    const_term, plus_term = c * sums[j], plus[j]
    x = kind(P[f, j] * s)
    if with_const:
        x = kind(x + const_term)
    if with_plus:
        x = kind(x + plus_term)
    return x


@njit(cache=True)
def _used_inputs(inputs, slot, columns):
    """The count k of the features (columns of inputs) not 0 in every sample
    (``_used_features``, which fills ``slot``), whose columns it writes, in order, into the
    first k rows of ``columns`` (features, batch): a C-contiguous inputs[:, used].T."""
    features = _used_features(inputs, slot)
    for n in range(features.size):
        f, out = features[n], columns[n]
        for i in range(inputs.shape[0]):
            out[i] = inputs[i, f]
    return features.size


@njit(cache=True)
def _used_features(inputs, slot):
    """The features (columns of inputs) not 0 in every sample, in order; slot[f] is f's
    place among them, or their count where f is 0 in every sample (a NaN counts as used)."""
    used = np.zeros(inputs.shape[1], np.bool_)
    for i in range(inputs.shape[0]):
        for j in range(inputs.shape[1]):
            used[j] |= inputs[i, j] != 0
    k = 0
    for j in range(used.size):
        k += used[j]
    features = np.empty(k, np.intp)
    n = 0
    for j in range(used.size):
        slot[j] = n if used[j] else k
        if used[j]:
            features[n] = j
            n += 1
    return features


@njit(cache=True)
def _expand_rows(P, feature, gain, const, sums, plus, with_const, out):
    """out[i] = P[feature[i]] * gain[i] (+ const[i] * sums, where ``with_const``) (+ plus,
    where it is not empty): the rows of F^T D from the features' product, each entry by
    ``_expanded``, each operation rounded to out's dtype as numpy's in-place operations
    round (the products and sums themselves in float64 where an operand is)."""
    with_plus, plus = _plus_row(plus, out.shape[1])
    for i in range(out.shape[0]):
        f, s, c, row = feature[i], gain[i], const[i], out[i]
        for j in range(row.size):
            row[j] = _expanded(P, f, j, s, c, sums, plus, with_const, with_plus, row)


def _total(parts: Iterable, empty=None):
    """The sum of the parts (the part itself when there is one; ``empty`` when none)."""
    parts = list(parts)
    return functools.reduce(operator.add, parts) if parts else empty


def _shared(sets: Sequence, which: Iterable[int], method: str) -> list[tuple[Callable, list[int]]]:
    """The sets numbered in ``which`` grouped by their model's function ``method`` (in order
    of first use): sets whose models share it are assembled together."""
    groups: dict[Callable, list[int]] = {}
    for k in which:
        groups.setdefault(getattr(sets[k].device.model, method), []).append(k)
    return list(groups.items())


def _absorb_clamps(
    out: np.ndarray, V: np.ndarray, clamps: list[DiodeGroup], tol: float, only=None
) -> None:
    """Let conducting hard clamps carry the current their nodes need, if of their direction.

    The clamp's current i >= 0 flows anode to cathode: it balances a surplus
    flowing into the anode (net outflow < 0) or out of the cathode (> 0).
    """
    for d in clamps:
        on = V[:, d.anode] - V[:, d.cathode] >= d.model.zero_current_voltage - tol
        for node, sign in ((d.anode, -1.0), (d.cathode, 1.0)):
            pick = np.arange(len(node)) if only is None else np.where(node == only)[0]
            cols = node[pick]
            part = out[:, cols]
            out[:, cols] = np.where(on[:, pick] & (sign * part >= 0), 0.0, part)
