"""One training run into a run directory: what ``eqprop train`` and a sweep's points do.

``run_training`` reads the circuit (or the run it continues or fine-tunes), checks
the request against the run directory, trains, and keeps config.toml,
metrics.csv and checkpoint.npz up to date after every epoch. It prints nothing:
a TrainingObserver hears where it starts, each batch and each epoch. Messages
name the parameters of this function ({resume}, {out}, ...), which the CLI
spells as its options.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..circuit.spec import CircuitSpec, parse_circuit
from ..devices.update import device_models
from ..errors import CircuitError, EqpropError, NotConvergedError
from ..io import write_atomic
from ..runs.rundir import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    Checkpoint,
    RunError,
    config_text,
    load_checkpoint,
    load_target,
    run_lock,
    save_checkpoint,
    write_metrics,
)
from ..sweep.spec import slug
from .finetune import FineTune, fine_tune
from .optim import schedule_factor
from .samples import training_data
from .settings import portable_document, training_settings
from .state import TrainState
from .train import BatchInfo, Trainer


@dataclass(frozen=True)
class TrainingStart:
    """What a training is about to do (after its checks, before its first batch)."""

    circuit: Path  # what was given: a circuit file, or the run it continues or fine-tunes
    name: str  # the circuit's name
    dataset: str
    n_train: int
    batch_size: int
    phases: str
    beta: float
    out_dir: Path
    epoch: int  # epochs already complete
    epochs: int  # train until this many are
    devices: dict[str, str]  # device name -> the update model it learns as
    fine_tune: FineTune | None


class TrainingObserver:
    """Hears a training's progress; every method does nothing unless overridden."""

    def start(self, info: TrainingStart) -> None:
        """Before the first batch."""

    def batch(self, info: BatchInfo) -> None:
        """After every batch."""

    def epoch(self, state: TrainState) -> None:
        """After every epoch, once the run directory holds it."""

    def stop_requested(self) -> bool:
        """Whether to stop after the current batch (the run is saved and can continue)."""
        return False


class TrainingLog(TrainingObserver):
    """Plain lines on stdout (a sweep point's log): where training starts, each epoch's
    metrics."""

    def __init__(self) -> None:
        self.epochs = 0

    def start(self, info: TrainingStart) -> None:
        self.epochs = info.epochs
        print(
            f"training {info.name} on {info.dataset}: {info.n_train:,} samples, batch "
            f"{info.batch_size}, {info.phases} phases, beta {info.beta:g} S -> {info.out_dir}",
            flush=True,
        )

    def epoch(self, state: TrainState) -> None:
        print(epoch_line(state.metrics[-1], self.epochs), flush=True)


def epoch_line(row: dict[str, float], epochs: int, warn=str) -> str:
    """One epoch's metrics on a line; ``warn`` marks up the count of missed solves."""
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    for split in ("train", "validation", "test"):
        loss, error = row.get(f"{split}_loss", np.nan), row.get(f"{split}_error", np.nan)
        if not np.isnan(loss):
            parts.append(f"{split} loss {_number(loss)} error {_percent(error)}")
    parts.append(f"{row['seconds']:.1f} s ({row['samples_per_second']:,.0f} samples/s)")
    if row.get("not_converged"):
        parts.append(warn(f"{int(row['not_converged'])} solves missed tol"))
    return "  ".join(parts)


def _number(x: float) -> str:
    return "-" if np.isnan(x) else f"{x:.4g}"


def _percent(x: float) -> str:
    return "-" if np.isnan(x) else f"{100 * x:.2f}%"


@dataclass
class TrainingResult:
    """Where a training ended: its run directory and state, and how it got there."""

    out_dir: Path
    state: TrainState
    parent: dict | None  # the run it was fine-tuned from (sha256, epoch, path)
    epochs: int  # what was asked: train until this many epochs are complete
    trained: bool  # False: the run had its epochs already, nothing was done
    stopped: bool  # stopped on request after a batch (saved; continue with resume)
    stop_signal: int | None = None  # the signal that asked it to stop (SIGINT, SIGTERM)

    def summary(self) -> dict:
        """The run directory, the epochs done, the last epoch's metrics, the parent."""
        final = {k: (None if np.isnan(v) else v) for k, v in self.state.metrics[-1].items()}
        return {
            "run": str(self.out_dir),
            "epochs": self.state.epoch,
            "final": final,
            "parent": self.parent,
        }


def run_training(
    circuit: Path,
    out_dir: Path | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    reschedule: bool = False,
    observer: TrainingObserver | None = None,
    stop_on_interrupt: bool = False,
) -> TrainingResult:
    """Train ``circuit`` into ``out_dir`` (default: runs/<circuit name>).

    ``circuit``: a circuit file; or a run directory or checkpoint, which with
    ``resume`` continues that run (``out_dir`` defaults to it) and with a new
    ``out_dir`` is fine-tuned from (a new run starting from its trained values).
    ``overrides``: "dotted.key=VALUE" settings over the file's. ``overwrite``
    replaces a run in ``out_dir``; ``reschedule`` accepts, on resume, a cosine
    schedule recomputed over a changed number of epochs. ``stop_on_interrupt``: while
    batches run, the first Ctrl-C (SIGINT) or any SIGTERM stops after the batch, saved
    (``stopped``, ``stop_signal``), a second Ctrl-C raises KeyboardInterrupt (main thread
    only). Raises an EqpropError
    for a request that does not fit (nothing written); NotConvergedError, after
    saving the last complete batch, when an equilibrium misses its tolerances.
    """
    observer = observer or TrainingObserver()
    circuit = Path(circuit)
    overrides = list(overrides)
    is_run = circuit.suffix == ".npz" or (circuit.is_dir() and (circuit / CONFIG).is_file())
    parent_dir = circuit if circuit.is_dir() else circuit.parent
    tuned = None
    if is_run and not resume and out_dir is not None and not _same_dir(out_dir, parent_dir):
        tuned = fine_tune(circuit, overrides)
        spec, network = tuned.spec, tuned.network
        source = (
            f"{circuit}, fine-tuned from its trained conductances (epoch {tuned.record['epoch']}, "
            f"checkpoint sha256 {tuned.record['sha256']})"
        )
    else:
        if circuit.is_dir() and (circuit / CONFIG).is_file():  # continue the run in it
            out_dir = out_dir or circuit
            circuit = circuit / CONFIG
        loaded = load_target(circuit, overrides)
        if loaded.checkpoint is not None:
            raise EqpropError(
                f"{circuit}: give the run directory to continue a run (with {{resume}}), "
                "or fine-tune from this checkpoint into a new run with {out} NEW",
                params=("resume", "out"),
            )
        spec, network, source = loaded.spec, loaded.network, str(circuit)
        _require_recipe(spec, circuit)
    out_dir = Path(out_dir or Path("runs") / run_name(spec.name or circuit.stem))
    dataset, splits = training_data(spec, network)
    trainer = Trainer(network, spec, splits, dataset.n_classes)
    if resume and not (out_dir / CHECKPOINT).is_file():
        raise RunError(f"{out_dir / CHECKPOINT}: no checkpoint there; nothing to resume")
    if not resume:
        _make_run_dir(out_dir)
    with run_lock(out_dir):
        settings = training_settings(spec)
        text = config_text(spec, source, overrides)
        initial = [g.copy() for g in network.g], [c.copy() for c in network.currents]
        parent = tuned.record if tuned else None
        if resume:
            ckpt = _resume(out_dir, spec, network)
            state = ckpt.state
            _check_layout(out_dir / CHECKPOINT, state, trainer)
            _check_schedule(out_dir, ckpt, spec, settings.epochs, reschedule)
            initial = ckpt.initial_conductances, ckpt.initial_currents
            parent = ckpt.parent
            text = config_text(spec, source, overrides, previous=ckpt.config)
        else:
            _clear_run_dir(out_dir, overwrite)
            state = trainer.new_state()
        total = settings.epochs
        if state.epoch >= total:
            return TrainingResult(out_dir, state, parent, total, trained=False, stopped=False)

        def save(s: TrainState) -> None:
            """metrics.csv, then the checkpoint that records its checksum and config.toml's."""
            ckpt = Checkpoint(
                [g.copy() for g in network.g],
                [c.copy() for c in network.currents],
                *initial,
                s,
                text,
                parent=parent,
            )
            write_metrics(out_dir / METRICS, s.metrics)
            save_checkpoint(out_dir / CHECKPOINT, ckpt)

        write_atomic(out_dir / CONFIG, text)  # on resume: the new number of epochs
        if resume:
            save(state)  # the checkpoint records the new config.toml: the directory stays whole
        observer.start(
            TrainingStart(
                circuit,
                spec.name or str(circuit),
                dataset.name,
                len(trainer.splits["train"][1]),
                settings.batch_size,
                settings.phases,
                settings.beta,
                out_dir,
                state.epoch,
                total,
                device_models(spec.devices),
                tuned,
            )
        )

        def on_epoch(s: TrainState) -> None:
            save(s)
            observer.epoch(s)

        try:
            with StopOnInterrupt() if stop_on_interrupt else contextlib.nullcontext() as flag:

                def should_stop() -> bool:
                    return bool(flag and flag.requested) or observer.stop_requested()

                state, stopped = trainer.run(state, total, observer.batch, on_epoch, should_stop)
            signum = flag.signum if flag else None
        except NotConvergedError as exc:
            save(exc.state)
            raise NotConvergedError(
                f"{exc}; saved epoch {exc.state.epoch + 1}, batch {exc.state.step} to "
                f"{out_dir / CHECKPOINT}",
                exc.state,
                run_dir=out_dir,
            ) from None
        if stopped:
            save(state)
        return TrainingResult(out_dir, state, parent, total, True, stopped, signum)


class StopOnInterrupt:
    """While in effect, the first Ctrl-C (SIGINT) or a SIGTERM asks the training to stop
    after its batch (``requested``; ``signum`` says which came first); a second Ctrl-C
    raises KeyboardInterrupt. SIGTERM repeated asks the same again: a kill that is sent to
    a whole process group and forwarded by its parent (a sweep) still saves the batch."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnInterrupt:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = self.signum or signum

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def run_name(name: str) -> str:
    """A circuit name as one folder name under runs/: never absolute, never "..", no "/"."""
    return slug(name).lstrip(".") or "run"


def _same_dir(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _make_run_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(
            f"{out_dir}: exists and is not a folder; choose another {{out}}", params=("out",)
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{out_dir}: cannot create the run directory ({exc.strerror})") from None


def _require_recipe(spec: CircuitSpec, circuit: Path) -> None:
    """Refuse to train a circuit that names no recipe: defaults suit no circuit in general."""
    table = spec.document.get("training")
    if isinstance(table, dict) and "dataset" in table:
        return
    given = set(spec.locator.overridden) if spec.locator else set()
    from_file = [k for k in table or {} if ("training", k) not in given]
    what = (
        "has a [training] section without `dataset`" if from_file else "has no [training] section"
    )
    raise CircuitError(
        f"{what}, so there is no recipe to train it with (the defaults suit no circuit in "
        "particular). Add a [training] section naming at least the dataset, epochs, "
        "batch_size, learning_rate, beta and the targets (eqprop-circuit(5); "
        "circuits/mnist-ideal.toml is an example), or give them with {override}, e.g. "
        "{override} training.dataset=mnist {override} training.epochs=10 {override} training.batch_size=32 "
        "{override} training.learning_rate=1 {override} training.beta=1e-6",
        path=str(circuit),
        params=("override",),
    )


def _clear_run_dir(out_dir: Path, overwrite: bool) -> None:
    """Make way for a new run (under the lock, so two trainings cannot both pass)."""
    if (out_dir / CHECKPOINT).exists() and not overwrite:
        raise RunError(
            f"{out_dir}: already holds a run; continue it with {{resume}}, replace it with "
            "{overwrite}, or fine-tune from it into a new run with {out} NEW",
            params=("resume", "overwrite", "out"),
        )
    for name in (CHECKPOINT, METRICS):
        (out_dir / name).unlink(missing_ok=True)


def _resume(out_dir: Path, spec: CircuitSpec, network) -> Checkpoint:
    """Load a run's checkpoint into the network after checking the settings still match."""
    ckpt = load_checkpoint(out_dir / CHECKPOINT)
    before = portable_document(parse_circuit(ckpt.config, str(out_dir / CONFIG)))
    now = portable_document(spec)
    for doc in (before, now):
        doc.get("training", {}).pop("epochs", None)
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise RunError(
            f"{out_dir}: the run was made with different settings (sections: "
            f"{', '.join(changed)}); only the number of epochs may change on {{resume}}",
            params=("resume",),
        )
    ckpt.apply(network)
    return ckpt


def _check_layout(path: Path, state: TrainState, trainer: Trainer) -> None:
    """RunError unless a checkpoint's optimizer state and device draws have the shapes this
    run's parameters give them (the compiled update writes them in place, unchecked)."""
    expected = _layout(trainer.optimizer.init(trainer.params()), trainer.programmer.state())
    saved = _layout(state.optimizer, state.devices)
    counts = {name: len(arrays) for name, arrays in state.optimizer.items()}
    for key, shape in saved.items():
        if expected.get(key) != shape:
            raise RunError(
                f"{path}: {key} has shape {shape}; this run's is "
                f"{expected.get(key, 'none (no such state)')}"
            )
    for key in expected:
        name = key.split("/")[1]
        if key.startswith("opt/") and name in counts and key not in saved:
            raise RunError(f"{path}: no array {key} (its optimizer state is incomplete)")


def _layout(optimizer: dict, devices: dict) -> dict[str, tuple]:
    """The shape of each optimizer-state and device-draw array, by its checkpoint name."""
    return {
        **{
            f"opt/{name}/{k}": np.shape(a)
            for name, arrays in optimizer.items()
            for k, a in enumerate(arrays)
        },
        **{f"dev/{key}": np.shape(a) for key, a in devices.items()},
    }


def _check_schedule(
    out_dir: Path, ckpt: Checkpoint, spec: CircuitSpec, epochs: int, reschedule: bool
) -> None:
    """A cosine schedule depends on the number of epochs: changing it on resume changes the
    rate of the epochs to come (it jumps up when a finished run is extended), so that needs
    ``reschedule``; the smooth alternative is a fine-tune with a fresh schedule."""
    t = training_settings(spec)
    before = int(training_settings(parse_circuit(ckpt.config, str(out_dir / CONFIG))).epochs)
    done = ckpt.state.epoch
    if t.schedule != "cosine" or before == epochs or reschedule or done == 0:
        return
    rate = t.learning_rate
    last = rate * schedule_factor("cosine", done - 1, before, 0.0, 1)
    planned = rate * schedule_factor("cosine", done, before, 0.0, 1)
    new = rate * schedule_factor("cosine", done, epochs, 0.0, 1)
    if done >= before:
        what = f"finished a cosine learning-rate schedule over {before} epochs"
    else:
        what = f"follows a cosine learning-rate schedule over {before} epochs (next: {planned:.4g})"
    raise RunError(
        f"{out_dir}: the run {what}; epoch {done} ran at {last:.4g}, and recomputed over "
        f"{epochs} epochs the rate of epoch {done + 1} would be {new:.4g}. Choose: add "
        f"{{reschedule}} to continue with the cosine over {epochs} epochs, or fine-tune from "
        f"{out_dir} into a new run with a fresh cosine from the last rate: {{out}} NEW "
        f"{{epochs}} {max(epochs - done, 1)} {{override}} training.learning_rate={last:.4g}",
        params=("reschedule", "out", "epochs", "override"),
    )
