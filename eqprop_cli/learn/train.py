"""Equilibrium Propagation: free and nudged equilibria, local updates, the training loop.

For every trainable conductance g between nodes i and j the energy's
derivative is dE/dg = w (V_i - V_j)^2 / 2 (w: the stage weight of amplifier
chains, 1 without amplifiers), and for a current source dE/dI = -w (V+ - V-).
EP estimates the loss gradient from two equilibria at nudge strengths
beta_a > beta_b:

    dL/dtheta ~ [dE/dtheta(V^a) - dE/dtheta(V^b)] / ((beta_a - beta_b) w_out)

where w_out is the outputs' stage weight (the nudge carries it). Centred
phases (+beta, -beta) cancel the first-order bias of one-sided ones. The
update needs only the voltage drop across each device in the two phases.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit
from threadpoolctl import ThreadpoolController

from ..circuit.graph import CurrentSourceSet, ResistorSet
from ..circuit.network import CrossbarShare, Network, content_key
from ..circuit.spec import CircuitSpec, TrainingSpec
from ..data.datasets import shift_images
from ..devices.protocol import TrainableModel
from ..devices.resistor import Resistor, drops
from ..errors import CircuitError, EqpropError, NotConvergedError
from ..learn.evaluate import Evaluation, evaluate
from ..learn.loss import ReadoutLoss
from ..solver.equilibrium import Equilibrium, solve
from . import optim
from .crossbar import CrossbarGradient
from .optim import schedule_factor
from .programming import BatchMeasurement, Measurement, Programmer
from .samples import Splits, readout_loss
from .settings import solver_settings, training_settings
from .state import RUNNING_KEYS, TrainState


@dataclass
class ParamGroup:
    """One trained array: a connection's conductances or a source device's currents."""

    name: str
    kind: str  # what it trains (the model's quantity): "conductance" or "current"
    index: int  # into network.g or network.currents
    scale: float  # normalisation of the optimizer's parameters (g_max, or a current scale)
    low: float
    high: float
    rate: float  # base learning rate of this group
    model: TrainableModel = field(repr=False)  # its device's: dE/dtheta and EP's estimate of it
    elements: ResistorSet | CurrentSourceSet = field(repr=False)  # where they are


def parameter_groups(
    network: Network, training: TrainingSpec, spec: CircuitSpec
) -> list[ParamGroup]:
    """The trainable arrays of a network, with bounds, scales and learning rates."""
    groups = []
    g_ref = 1.0
    for k, r in enumerate(network.resistors):
        m = r.device.model
        if m.trainable:
            g_ref = max(g_ref if groups else 0.0, m.high)
            groups.append(ParamGroup(r.name, m.quantity, k, m.high, m.low, m.high, 0.0, m, r))
    for k, s in enumerate(network.isources):
        m = s.device.model
        if m.trainable:
            bounds = [abs(b) for b in (m.low, m.high) if np.isfinite(b)]
            scale = max(bounds) if bounds else g_ref * 1.0  # a fully-on device at 1 V
            groups.append(ParamGroup(s.device.name, m.quantity, k, scale, m.low, m.high, 0.0, m, s))
    names = {g.name for g in groups}
    for name in training.learning_rates:
        if name not in names:
            raise spec.error(
                ("training", "learning_rates", name),
                f"names no trainable connection or current source; expected one of {', '.join(sorted(names)) or '(none)'}",
            )
    for g in groups:
        g.rate = training.learning_rates.get(g.name, training.learning_rate)
    if not groups:
        raise spec.error(
            ("training",), "the circuit has nothing trainable (every device has trainable = false)"
        )
    return groups


RESISTOR_ESTIMATE = Resistor.ep_estimate  # dE/dg = w (V_p - V_q)^2 / 2: a fast path below


class EPEstimator:
    """EP gradient estimates of every group from two equilibria, vectorised over the batch."""

    def __init__(self, network: Network, groups: list[ParamGroup]):
        self.network = network
        self.groups = groups
        _, _, out_weight = network.readout_map()
        if not np.allclose(out_weight, out_weight[0]):
            raise EqpropError(
                "the outputs sit at different amplifier stages; EP needs one stage weight at the readout"
            )
        self.out_weight = float(out_weight[0])
        # groups that share a node set (a layer's nodes, the ground) share its number and
        # reader: the estimate reads each set once per equilibrium
        sets: dict[tuple, int] = {}  # by its contents, each node set's number
        self.readers = []  # how each set is read (a view of the unknowns, a rails row)
        self.plans = []
        self.sets = []  # the numbers of each group's two node sets
        for g in groups:
            plan = self._plan(network, g)
            numbers = []
            for n in plan[:2]:
                key = content_key(n)
                if key not in sets:
                    sets[key] = len(self.readers)
                    self.readers.append(network.reader(n))
                numbers.append(sets[key])
            self.plans.append(plan)
            self.sets.append(tuple(numbers))
        self._products: dict[int, np.ndarray] = {}  # deferred estimates' inputs^T D, by group

    @staticmethod
    def _plan(network: Network, group: ParamGroup) -> tuple:
        """(first nodes, second nodes, dense, stage weights, first nodes all fixed, the first
        nodes' fixed indices where the group is a crossbar of resistors from fixed nodes at
        one stage weight, else None) of a group."""
        p, q, dense = group.elements.ends()
        w = (
            network._branch_weight(p[:, None], q[None, :])
            if dense
            else network._branch_weight(p, q)
        )
        if w.size and np.all(w == w.flat[0]):
            w = float(w.flat[0])  # one stage weight: a scalar, no pass over the group
        p_fixed = bool(np.all(network.fixed_index[p] >= 0))
        crossbar = dense and p_fixed and np.isscalar(w)
        crossbar = crossbar and group.model.ep_estimate is RESISTOR_ESTIMATE
        return p, q, dense, w, p_fixed, network.fixed_index[p] if crossbar else None

    def __call__(
        self,
        a: Equilibrium,
        b: Equilibrium,
        beta_a: float,
        beta_b: float,
        scale: float,
        deferred: bool = False,
    ) -> list[np.ndarray | CrossbarGradient]:
        """dL/dtheta per group (physical units), averaged over the batch; ``deferred``: an
        input crossbar's as a CrossbarGradient where it has the one-feature form (for an
        update rule to apply in one pass, learn/crossbar.py), whose product (inputs^T D)
        is kept and written again by the next deferred call: apply it before that."""
        factor = 1.0 / ((beta_a - beta_b) * self.out_weight * scale * a.unknowns.shape[0])
        # the potentials of each node set in each equilibrium, read once, for reading only
        read_a: list[np.ndarray | None] = [None] * len(self.readers)
        read_b = read_a.copy()

        def at(eq: Equilibrium, read: list, n: int) -> np.ndarray:
            if read[n] is None:
                read[n] = self.readers[n](eq.unknowns, eq.inputs)
            return read[n]

        grads = []
        for k, (g, plan, (p, q)) in enumerate(zip(self.groups, self.plans, self.sets, strict=True)):
            _, _, dense, w, p_fixed, fixed = plan
            Qa, Qb = at(a, read_a, q), at(b, read_b, q)
            if fixed is not None:
                # a crossbar of conductances from the inputs: F (inputs) the same in both
                # sum of dVa^2 - dVb^2 = sum (Qa - Qb)(Qa + Qb) - 2 F^T (Qa - Qb)
                # the batch's small array takes the factors; the product at the network's
                # precision
                D, common, sums = input_drops(Qa, Qb, -w * factor, self.network.dtype)
                plus = (0.5 * w * factor) * common
                kept = self._products.get(k) if deferred else None
                grad = self.network.fixed_outer(fixed, a.inputs, D, plus, deferred, kept, sums)
                if not isinstance(grad, np.ndarray):
                    self._products[k] = grad.store  # no new array of its size each batch
                    grad = CrossbarGradient.of(self.network, g.index, grad)
                grads.append(grad)
                continue
            Pa = at(a, read_a, p)
            Pb = Pa if p_fixed else at(b, read_b, p)  # fixed potentials (inputs): the same
            grads.append(g.model.ep_estimate(w, Pa, Pb, Qa, Qb, dense, p_fixed, factor))
        return grads


def input_drops(
    Qa: np.ndarray, Qb: np.ndarray, s: float, kind: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """An input crossbar's arrays of the potentials of its columns in two equilibria:
    ((Qa - Qb) * s at dtype ``kind``, the sums over the rows of (Qa - Qb)(Qa + Qb), and
    the first's sums over the rows (None where numpy's order of them is not the compiled
    pass's)), each with numpy's roundings; in one pass where Qa and Qb are (batch, n > 1)
    arrays of one dtype and s a Python float (which numpy takes at their precision)."""
    if type(s) is not float or Qa.dtype != Qb.dtype or Qa.ndim != 2 or Qa.shape[1] < 2:
        D, S, _ = drops(Qa, Qb, with_sums=False)
        common = np.einsum("bj,bj->j", D, S)
        D *= s
        return D.astype(kind, copy=False), common, None
    n = Qa.shape[1]
    D, common, sums = np.empty(Qa.shape, kind), np.zeros(n, Qa.dtype), np.zeros(n, kind)
    _input_drops_pass(Qa, Qb, np.array([s], Qa.dtype), D, common, sums)
    return D, common, sums


@njit(cache=True)
def _input_drops_pass(Qa, Qb, s, D, common, sums):
    """d = Qa - Qb, common += d (Qa + Qb), D = d * s[0] (at D's dtype) and sums += D,
    entry by entry, the sums row after row: numpy's drops, its einsum "bj,bj->j" of d and
    Qa + Qb, in-place product, astype and sum(axis=0) of a (batch, n > 1) array."""
    k = s[0]
    for i in range(Qa.shape[0]):
        for j in range(Qa.shape[1]):
            d = Qa[i, j] - Qb[i, j]
            common[j] += d * (Qa[i, j] + Qb[i, j])
            D[i, j] = d * k
            sums[j] += D[i, j]


def ep_gradients(
    network: Network,
    estimator: EPEstimator,
    loss: ReadoutLoss,
    x: np.ndarray,
    y: np.ndarray,
    betas: tuple[float, float],
    free_solver: dict,
    nudged_solver: dict,
    warm_start: bool = True,
    measure: BatchMeasurement | None = None,
    deferred: bool = False,
) -> tuple[list[np.ndarray | CrossbarGradient], Equilibrium, list[Equilibrium]]:
    """EP estimates of dL/dtheta from a free and two (or one) nudged equilibria.

    Returns the estimates per group, the free equilibrium, and the equilibria
    (free or nudged) of which some sample missed its tolerances. With
    ``measure``, the nudges are applied and the phases read as the learning
    circuit would (nudge precision, read noise, ADC). ``deferred``: see EPEstimator.
    """
    free = solve(network, x, **free_solver)
    # the free readout: a current nudge's (a conductance's needs the targets only)
    outputs = free.outputs() if loss.nudge_kind == "current" else None
    targets = loss.targets(y) if loss.nudge_kind == "conductance" else None  # (only read)
    states: list[Equilibrium] = []
    for beta in betas:
        if beta == 0.0:
            states.append(free)
            continue
        nudge = loss.nudge(beta, outputs, y, targets)
        if measure is not None:
            nudge = measure.nudge(nudge)
        first = states[0] if states else None
        start = nudged_start(free, first, betas[0], beta) if warm_start else None
        states.append(solve(network, x, x0=start, nudge=nudge, like=free, **nudged_solver))
    failed = [s for s in [free, *(e for e in states if e is not free)] if not s.success]
    a, b = states if measure is None else [measure.read(s) for s in states]
    return estimator(a, b, betas[0], betas[1], loss.scale, deferred), free, failed


def nudged_start(free: Equilibrium, first: Equilibrium | None, beta_first: float, beta: float):
    """Warm start of a nudged phase: the free state, or, when another nudged phase is solved
    already, the line through the two extrapolated to this beta (first order in beta, so the
    second of the centred phases starts within O(beta^2) of its equilibrium). Only a start:
    the solve still runs to its tolerances."""
    if first is None or first is free or beta_first == 0.0:
        return free.unknowns
    return line_through(free.unknowns, first.unknowns, beta / beta_first)


def line_through(x0: np.ndarray, x1: np.ndarray, c: float) -> np.ndarray:
    """x0 + c (x1 - x0), as numpy works it out; in one compiled pass where x0 and x1 are
    (batch, n) arrays of one dtype and c a Python float (which numpy takes at their
    precision)."""
    if type(c) is not float or x0.dtype != x1.dtype or x0.shape != x1.shape or x0.ndim != 2:
        return x0 + c * (x1 - x0)
    return _line_pass(x0, x1, np.array([c], x0.dtype), np.empty(x0.shape, x0.dtype))


@njit(cache=True)
def _line_pass(x0, x1, c, out):
    """out = x0 + c[0] * (x1 - x0), entry by entry, each operation rounded as numpy's."""
    k = c[0]
    for i in range(x0.shape[0]):
        for j in range(x0.shape[1]):
            out[i, j] = x0[i, j] + k * (x1[i, j] - x0[i, j])
    return out


def phase_betas(phases: str, beta: float, seed: int, epoch: int, step: int) -> tuple[float, float]:
    """(beta_a, beta_b), beta_a > beta_b; 0 means the free equilibrium."""
    if phases == "centred":
        return beta, -beta
    if phases == "positive":
        return beta, 0.0
    if phases == "negative":
        return 0.0, -beta
    sign = np.random.default_rng([seed, epoch, step]).integers(2)  # counter-based: resumable
    return (beta, 0.0) if sign else (0.0, -beta)


@dataclass
class BatchInfo:
    """What the progress display shows after every batch."""

    epoch: int
    step: int
    steps: int
    samples: int
    loss: float  # running mean over the epoch
    error: float  # running error rate over the epoch
    seconds: float


@functools.cache
def _blas_pools() -> ThreadpoolController:
    """The BLAS (and other) thread pools of the libraries loaded at training's first run, found
    once: threadpool_limits searches them again on every entry (about 0.5 ms)."""
    return ThreadpoolController()


class Trainer:
    """Trains a network's conductances (and bias currents) with EP on a dataset split."""

    def __init__(self, network: Network, spec: CircuitSpec, splits: Splits, n_classes: int):
        self.network = network
        self.spec = spec
        self.training = t = training_settings(spec)
        self.splits = splits
        self.loss = readout_loss(spec, network, n_classes)
        self.groups = parameter_groups(network, t, spec)
        self.estimator = EPEstimator(network, self.groups)
        self.free = solver_settings(spec, "free")
        self.nudged = solver_settings(spec, "nudged")
        models = [
            network.resistors[g.index].device.update if g.kind == "conductance" else None
            for g in self.groups
        ]
        sizes = [p.size for p in self.params()]
        self.programmer = Programmer(models, self.groups, sizes, t.seed)
        scales = [g.scale for g in self.groups]
        exact = [k for k in range(len(self.groups)) if k not in self.programmer.arrays]
        self.optimizer = optim.chain(  # the update rule, piece by piece
            optim.scale(scales, "normalise"),
            optim.momentum(t.momentum),
            optim.learning_rate(),
            # device-aware arrays: the programmer takes the normalised steps
            optim.scale(scales, "denormalise", exact),
            optim.clip([g.low for g in self.groups], [g.high for g in self.groups], exact),
            self.programmer.piece(self.groups),
        )
        self.measurement = Measurement.of(t)
        x, _ = splits["train"]
        if len(x) == 0:
            raise CircuitError("the training split is empty", path=spec.path, key="training")
        self.steps = -(-len(x) // t.batch_size)
        self._order: tuple[int, np.ndarray] | None = None  # the last epoch's order, kept
        self._rates: tuple[int, list[float]] | None = None  # the last epoch's rates, kept

    # ------------------------------------------------------------------ parameters

    def params(self) -> list[np.ndarray]:
        """The trained arrays, physical units (views of the network's arrays)."""
        return [
            self.network.g[g.index] if g.kind == "conductance" else self.network.currents[g.index]
            for g in self.groups
        ]

    def set_params(self, values: list[np.ndarray], shares: Sequence[CrossbarShare] = ()) -> None:
        """New parameters into the network, taken as they are: the trainer's own arrays, within
        their bounds (no copy, no check; ``shares``: see Network.set_conductances)."""
        g, currents = list(self.network.g), list(self.network.currents)
        for group, v in zip(self.groups, values, strict=True):
            (g if group.kind == "conductance" else currents)[group.index] = v
        self.network.set_conductances(g, owned=True, shares=shares)
        if currents:
            self.network.set_currents(currents, owned=True)

    def rates(self, epoch: int) -> list[float]:
        """Each group's learning rate during ``epoch``: the scheduled one (kept for the
        epoch's later batches, read only)."""
        if self._rates is None or self._rates[0] != epoch:
            factor = self.rate_factor(epoch)
            self._rates = (epoch, [g.rate * factor for g in self.groups])
        return self._rates[1]

    def rate_factor(self, epoch: int) -> float:
        """The learning-rate schedule's multiplier during ``epoch`` (0-based)."""
        t = self.training
        return schedule_factor(t.schedule, epoch, t.epochs, t.decay, t.decay_every)

    def new_state(self) -> TrainState:
        """The state of a new run; device-aware conductances start as programmed (on their
        levels, within each device's bounds)."""
        if self.programmer.active:
            self.set_params(self.programmer.prepare(self.params()))
        return TrainState(
            optimizer=self.optimizer.init(self.params()),
            running=self._zero_running(),
            devices=self.programmer.state(),
        )

    @staticmethod
    def _zero_running() -> dict[str, float]:
        return dict.fromkeys(RUNNING_KEYS, 0.0)

    # ------------------------------------------------------------------ one batch

    def batch_gradients(
        self,
        x: np.ndarray,
        y: np.ndarray,
        betas: tuple[float, float],
        measure: BatchMeasurement | None = None,
    ) -> tuple[list[np.ndarray | CrossbarGradient], Equilibrium, int]:
        """EP gradient estimates (an input crossbar's deferred, for the update rule), the
        free equilibrium, and the equilibria that missed tol."""
        return ep_gradients(
            self.network,
            self.estimator,
            self.loss,
            x,
            y,
            betas,
            self.free,
            self.nudged,
            self.training.warm_start,
            measure,
            deferred=True,
        )

    def train_step(self, state: TrainState, x: np.ndarray, y: np.ndarray) -> TrainState:
        """One EP update on a batch; returns the new state (the network is updated in place)."""
        t = self.training
        start = time.perf_counter()
        betas = phase_betas(t.phases, t.beta, t.seed, state.epoch, state.step)
        measure = None
        if self.measurement.active:
            measure = BatchMeasurement(self.measurement, t.seed, state.epoch, state.step)
        grads, free, failed = self.batch_gradients(x, y, betas, measure)
        if failed:
            phase = "free" if failed[0] is free else "nudged"
            raise NotConvergedError(
                f"epoch {state.epoch + 1}, batch {state.step + 1}: the {phase} equilibrium did "
                f"not converge ({failed[0].method} solver, {failed[0].message}); training "
                "stopped before this batch's update"
            )
        rates = self.rates(state.epoch)
        params = self.params()
        # each estimate at its parameters' precision ([solver] dtype): so is the optimizer state
        grads = [
            e.astype(p.dtype, copy=False) if isinstance(e, np.ndarray) else e  # or Deferred
            for e, p in zip(grads, params, strict=True)
        ]
        running = dict(state.running)
        loss, errors = self.loss.batch_totals(free.outputs(), y)
        running["loss"] += loss
        running["errors"] += errors
        # in place: the network's arrays and the optimizer state's
        opt, pulses = self.optimizer.step(
            params, grads, state.optimizer, rates, (state.epoch, state.step)
        )
        if self.programmer.active:
            running["pulses"] = running.get("pulses", 0.0) + pulses
        running["samples"] += len(y)
        running["seconds"] += time.perf_counter() - start
        shares = [e.share for e in grads if isinstance(e, CrossbarGradient) and e.share]
        self.set_params(params, shares)
        return TrainState(state.epoch, state.step + 1, opt, running, state.metrics, state.devices)

    # ------------------------------------------------------------------ epochs

    def order(self, epoch: int) -> np.ndarray:
        """The seeded order of the training samples in an epoch (read-only: kept for the
        epoch's later calls, as ``run`` makes one per chunk of batches)."""
        if self._order is None or self._order[0] != epoch:
            n = len(self.splits["train"][1])
            order = np.random.default_rng([self.training.seed, epoch]).permutation(n)
            order.flags.writeable = False
            self._order = (epoch, order)
        return self._order[1]

    def augment(self, x: np.ndarray, state: TrainState) -> np.ndarray:
        """The batch as trained on: shifted images when training.shift asks for them."""
        max_shift = self.training.shift
        if not max_shift:
            return x
        rng = np.random.default_rng([self.training.seed, state.epoch, state.step, 1])
        return shift_images(x, max_shift, rng)  # counter-based like the order: resumable

    def evaluate(self, split: str) -> Evaluation | None:
        x, y = self.splits[split]
        if len(y) == 0:
            return None
        return evaluate(self.network, x, y, self.loss, self.training.eval_batch_size, **self.free)

    def finish_epoch(self, state: TrainState) -> TrainState:
        """Close an epoch: evaluate, append its metrics row, reset the running sums."""
        r = state.running
        row: dict[str, float] = {
            "epoch": state.epoch + 1,
            "train_loss": r["loss"] / max(r["samples"], 1),
            "train_error": r["errors"] / max(r["samples"], 1),
        }
        missed = 0  # evaluation solves that missed their tolerances (training ones stop it)
        for name in ("validation", "test"):
            result = self.evaluate(name)
            row[f"{name}_loss"] = result.loss if result else float("nan")
            row[f"{name}_error"] = result.error_rate if result else float("nan")
            missed += result.not_converged if result else 0
        row["seconds"] = r["seconds"]
        row["samples_per_second"] = r["samples"] / r["seconds"] if r["seconds"] else float("nan")
        row["learning_rate"] = self.training.learning_rate * self.rate_factor(state.epoch)
        row["not_converged"] = missed
        if self.programmer.active:
            row.update(self._programming(r))
        return TrainState(
            state.epoch + 1,
            0,
            state.optimizer,
            self._zero_running(),
            [*state.metrics, row],
            state.devices,
        )

    def _programming(self, running: dict[str, float]) -> dict[str, float]:
        """The DEVICE_COLUMNS of an epoch's row."""
        g = np.concatenate(
            [
                p.ravel()
                for p, g in zip(self.params(), self.groups, strict=True)
                if g.kind == "conductance"
            ]
        )
        p05, median, p95 = np.percentile(g, [5, 50, 95])
        return {
            "pulses": running.get("pulses", 0.0),
            "g_p05": p05,
            "g_median": median,
            "g_p95": p95,
        }

    def run(
        self,
        state: TrainState,
        epochs: int,
        on_batch: Callable[[BatchInfo], None] | None = None,
        on_epoch: Callable[[TrainState], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[TrainState, bool]:
        """Train until ``epochs`` epochs are complete; (state, stopped early).

        BLAS runs single-threaded meanwhile: at training's small batches a
        second thread costs far more in synchronisation than it computes.
        """
        if state.devices:
            self.programmer.load(state.devices)  # a resumed run's own devices
        with _blas_pools().limit(limits=1, user_api="blas"):  # restored on leaving
            return self._run(state, epochs, on_batch, on_epoch, should_stop)

    def _run(self, state, epochs, on_batch, on_epoch, should_stop) -> tuple[TrainState, bool]:
        x, y = self.splits["train"]
        size = self.training.batch_size
        while state.epoch < epochs:
            order = self.order(state.epoch)
            while state.step < self.steps:
                if should_stop and should_stop():
                    return state, True
                pick = order[state.step * size : (state.step + 1) * size]
                try:
                    state = self.train_step(state, self.augment(x[pick], state), y[pick])
                except NotConvergedError as exc:
                    exc.state = state  # the last complete batch, for the caller to save
                    raise
                if on_batch:
                    r = state.running
                    on_batch(
                        BatchInfo(
                            state.epoch,
                            state.step,
                            self.steps,
                            int(r["samples"]),
                            r["loss"] / r["samples"],
                            r["errors"] / r["samples"],
                            r["seconds"],
                        )
                    )
            state = self.finish_epoch(state)
            if on_epoch:
                on_epoch(state)
        return state, False
