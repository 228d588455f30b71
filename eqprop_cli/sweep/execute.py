"""Running a sweep's points: the worker (train, then evaluate, in-process) and two executors,
local processes (the default) and Ray tasks (``--address``).

A worker trains through the same function as ``eqprop train`` (resuming a
run directory that already has a checkpoint), evaluates with the library's
evaluation functions, and writes its record (status, error, metrics)
atomically into the run directory as sweep-point.json. A record that says
"done" for the same overrides and evaluation settings is what lets a rerun
skip the point. A point that fails records its error and the others go on.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import active_children, get_context
from pathlib import Path

from threadpoolctl import threadpool_limits

from ..errors import EqpropError
from ..hardware.devicemap import conductance_map, level_ranges, quantise
from ..hardware.ngspice import check_with_ngspice
from ..hardware.variation import Variation, monte_carlo
from ..io import folder_lock, write_atomic
from ..learn.evaluate import evaluate
from ..learn.run import TrainingLog, run_training
from ..learn.samples import scoring, split_samples
from ..learn.settings import solver_settings
from ..runs.rundir import CHECKPOINT, RunError, load_target
from ..sweep.spec import (
    MONTE_CARLO_KEYS,
    MONTE_CARLO_METRICS,
    NGSPICE_LIMIT,
    POINT_LOG,
    POINT_RECORD,
    TRAIN_METRICS,
    Task,
)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class SweepError(EqpropError):
    """A sweep that cannot run: busy folder, Ray missing or unreachable."""


# --------------------------------------------------------------------------- one point


def read_record(task: Task, finished: bool = True) -> dict | None:
    """The point's record for exactly these overrides and evaluations (with ``finished``,
    only if it says "done")."""
    path = Path(task.run_dir) / POINT_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        isinstance(record, dict)
        and (record.get("status") == "done" or not finished)
        and record.get("overrides") == list(task.overrides)
        and record.get("eval_settings") == _eval_settings(task)
    ):
        return record
    return None


def _eval_settings(task: Task) -> list[dict]:
    return [dict(case) for case in task.evals]


def run_point(task: Task) -> dict:
    """Train and evaluate one point; write and return its record. Never raises for a point's
    own fault (bad override, diverged solve): that becomes status "failed" with the message."""
    start = time.perf_counter()
    run_dir = Path(task.run_dir)
    record: dict = {
        "point": task.name,
        "overrides": list(task.overrides),
        "eval_settings": _eval_settings(task),
        "host": socket.gethostname(),
    }
    resuming = (run_dir / CHECKPOINT).is_file()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with (
            open(run_dir / POINT_LOG, "a", encoding="utf-8") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
            threadpool_limits(limits=1),
        ):
            train = _train(task)
            record["train"] = train
            record["evals"] = [_evaluate(run_dir, dict(case)) for case in task.evals]
        record["status"] = "done"
        record["error"] = None
    except EqpropError as exc:
        hint = _RESUME_HINT.format(run_dir) if resuming and isinstance(exc, RunError) else ""
        record.update(status="failed", error=str(exc) + hint)
    except KeyboardInterrupt:  # Ctrl-C: the training saved and stopped
        record.update(status="interrupted", error="interrupted")
    except Exception as exc:  # a bug, not the point's fault: keep the traceback in the log
        with contextlib.suppress(OSError), open(run_dir / POINT_LOG, "a", encoding="utf-8") as log:
            log.write(traceback.format_exc())
        record.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
    record["seconds"] = time.perf_counter() - start
    with contextlib.suppress(OSError, EqpropError):
        write_atomic(run_dir / POINT_RECORD, json.dumps(record, indent=2) + "\n")
    return record


# a point whose run directory cannot be resumed (trained by an earlier version of the sweep
# file with other settings, or a damaged checkpoint): what to do, as a sweep has no --overwrite
_RESUME_HINT = (
    "; this point's run directory was made by an earlier sweep run and cannot be continued: "
    "sweep into another folder (-o), or delete {} to train the point again"
)


def _train(task: Task) -> dict:
    """Train (or resume) the run as ``eqprop train CIRCUIT --out RUN --set ...`` does: by
    the same library function. Ctrl-C saves and stops after the batch (KeyboardInterrupt)."""
    run_dir = Path(task.run_dir)
    result = run_training(
        Path(task.circuit),
        run_dir,
        task.overrides,
        resume=(run_dir / CHECKPOINT).is_file(),
        observer=TrainingLog(),
        stop_on_interrupt=True,
    )
    if result.stopped:
        raise KeyboardInterrupt
    state = result.state
    final = state.metrics[-1]
    totals = {"epochs": state.epoch, "train_seconds": sum(m["seconds"] for m in state.metrics)}
    values = {k: final[k] if k in final else totals[k] for k in TRAIN_METRICS}
    return {k: None if math.isnan(v) else v for k, v in values.items()}  # NaN: not evaluated


def _evaluate(run_dir: Path, case: dict) -> dict:
    """The trained run scored under one evaluation setting (levels, Monte Carlo, ngspice)."""
    loaded = load_target(run_dir)
    spec, network = loaded.spec, loaded.network
    if case["levels"] or level_ranges(network, None, None) is not None:
        quantise(conductance_map(network), level_ranges(network, case["levels"] or None, None))
    ngspice = case["backend"] == "ngspice"
    limit = case["limit"] or (NGSPICE_LIMIT if ngspice else None)
    dataset, x, y, _ = split_samples(spec, network, case["split"], limit)
    loss, batch, solver = scoring(spec, network, dataset.n_classes)
    out: dict[str, float] = {}
    if any(case[k] is not None for k in MONTE_CARLO_KEYS):
        spread = Variation(
            case["variation"] or 0.0,
            case["distribution"],
            case["stuck_off"] or 0.0,
            case["stuck_on"] or 0.0,
        )
        mc = monte_carlo(network, x, y, loss, spread, case["trials"], case["seed"], batch, **solver)
        result = mc.nominal
        doc = mc.as_dict()
        out.update({k: doc[k] for k in MONTE_CARLO_METRICS})
    else:
        result = evaluate(network, x, y, loss, batch, **solver)
    if ngspice:
        check = check_with_ngspice(network, x, y, 1, **solver_settings(spec)).as_dict()
        out.update(
            ngspice_accuracy=check["accuracy"],
            agreement=check["agreement"],
            max_voltage_difference=check["max_voltage_difference"],
        )
    out.update(
        accuracy=result.accuracy,
        error_rate=result.error_rate,
        loss=result.loss,
        n_samples=result.n_samples,
        not_converged=result.not_converged,
    )
    return out


# --------------------------------------------------------------------------- executors


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Processes started meanwhile get one BLAS/OpenMP thread each (read at their start)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _worker_start() -> None:
    """A local worker leaves Ctrl-C to the training in progress, which saves and stops after
    its batch (an evaluation finishes); the sweep process then stops handing out points."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_local(tasks: list[Task], workers: int) -> Iterator[dict]:
    """Records as points finish, ``workers`` processes at a time. A point is handed out only
    when a worker is free, so after Ctrl-C no queued point starts.

    A worker process that dies (killed, out of memory) breaks the pool, which stops every
    point in flight: those points run again, once each, in a new pool (resuming their
    checkpoints); a point whose worker dies a second time is recorded as failed."""
    waiting = list(reversed(tasks))
    retried: set[str] = set()
    while waiting:
        lost: list[Task] = []
        yield from _pool_round(waiting, workers, lost)
        for task in lost:
            if task.name in retried:
                yield _worker_died(task)
            else:
                retried.add(task.name)
                waiting.append(task)


def _pool_round(waiting: list[Task], workers: int, lost: list[Task]) -> Iterator[dict]:
    """Run points from the end of ``waiting`` in one process pool until none is left or
    the pool breaks; the points it lost then are added to ``lost``."""
    context = get_context("spawn")  # a clean interpreter: no inherited threads or locks
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start) as pool:
        pending = {}

        def submit() -> None:
            task = waiting.pop()
            try:
                pending[pool.submit(run_point, task)] = task
            except BrokenProcessPool:
                waiting.append(task)

        with _single_threaded_children():  # the workers start with the first submissions
            for _ in range(min(workers, len(waiting))):
                submit()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                if isinstance(future.exception(), BrokenProcessPool):
                    lost.append(task)
                    continue
                if waiting and not lost:
                    submit()
                yield _outcome(task, future.result)


def _worker_died(task: Task) -> dict:
    """The record of a point whose worker process died twice, also written to its folder."""
    record = {
        "point": task.name,
        "overrides": list(task.overrides),
        "eval_settings": _eval_settings(task),
        "status": "failed",
        "error": "its worker process died twice (killed by a signal, or out of memory?); "
        "the sweep run again retries it from its last checkpoint",
    }
    with contextlib.suppress(OSError, EqpropError):
        write_atomic(Path(task.run_dir) / POINT_RECORD, json.dumps(record, indent=2) + "\n")
    return record


def _outcome(task: Task, get: Callable[[], dict]) -> dict:
    """A worker's record, or a failed record when the worker itself died."""
    try:
        return get()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        return {
            "point": task.name,
            "overrides": list(task.overrides),
            "status": "failed",
            "error": f"worker lost: {type(exc).__name__}: {exc}",
        }


def ray_module(fail: Callable[[str], EqpropError]):
    """Ray, imported; ``fail(message)`` is the error that names where the address came from
    (the --address option or the sweep file's key)."""
    try:
        import ray
    except ImportError:
        raise fail("Ray is not installed; pip install 'eqprop[ray]'") from None
    return ray


def run_ray(
    tasks: list[Task], workers: int | None, address: str, fail: Callable[[str], EqpropError]
) -> Iterator[dict]:
    """Records as points finish, as Ray tasks of one CPU each on the cluster at ``address``
    ("local": a Ray instance started here with ``workers`` CPUs), at most ``workers`` at a
    time when given. ``fail`` makes the errors, as for ray_module."""
    ray = ray_module(fail)
    variables = dict.fromkeys(THREAD_VARIABLES, "1")
    if os.environ.get("EQPROP_DATA_DIR"):  # where the data sets are, on every node too
        variables["EQPROP_DATA_DIR"] = str(Path(os.environ["EQPROP_DATA_DIR"]).resolve())
    env = {"env_vars": variables}
    try:
        if address == "local":
            ray.init(
                num_cpus=workers, runtime_env=env, include_dashboard=False, log_to_driver=False
            )
        else:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise fail(f"cannot reach the Ray cluster ({exc})") from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_point)
        waiting = list(reversed(tasks))
        in_flight = workers or len(tasks)  # on a cluster without --workers: all, Ray schedules
        pending = {}
        try:
            while waiting or pending:
                while waiting and len(pending) < in_flight:
                    task = waiting.pop()
                    pending[remote.remote(task)] = task
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    yield _outcome(task, lambda ref=ref: ray.get(ref))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
    finally:
        ray.shutdown()


class TerminateAsInterrupt:
    """While in effect, SIGTERM stops the sweep as Ctrl-C does: it is passed on to the local
    workers (a training saves after its batch and records "interrupted"; an evaluation in
    progress is redone by the next run) and raised here as KeyboardInterrupt, once and not
    while ``stopping``. ``received`` says whether it came."""

    def __init__(self) -> None:
        self.received = False
        self.stopping = False
        self._previous = None

    def __enter__(self) -> TerminateAsInterrupt:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        first = not (self.received or self.stopping)
        self.received = True
        for child in active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        if first:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous)


@contextlib.contextmanager
def sweep_lock(out_dir: Path) -> Iterator[None]:
    """Hold the sweep folder: a second sweep into it is refused while this one runs."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"{out_dir}: cannot create the sweep folder ({exc.strerror})") from None
    with folder_lock(out_dir, SweepError(f"{out_dir}: another sweep is running into this folder")):
        yield


def default_workers() -> int:
    return len(os.sched_getaffinity(0))
