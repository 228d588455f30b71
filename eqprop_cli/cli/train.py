"""Training commands of `eqprop`: train, gradcheck, report, data. Thin over the library."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..circuit.network import Network
from ..circuit.spec import CircuitSpec, parse_circuit
from ..data.datasets import Dataset, fetch_dataset, list_datasets
from ..devices.update import device_models
from ..errors import CircuitError, EqpropError, NotConvergedError
from ..io import write_atomic
from ..learn.finetune import FineTune, fine_tune
from ..learn.gradcheck import at_a_kink, compare
from ..learn.loss import ReadoutLoss
from ..learn.optim import schedule_factor
from ..learn.samples import evaluate_split, training_data
from ..learn.settings import portable_document, training_settings
from ..learn.state import TrainState
from ..learn.train import BatchInfo, Trainer, parameter_groups
from ..runs.report import plot_comparison, write_report
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
from ..sweep.plot import plot_sweep
from ..sweep.spec import read_results, slug
from .options import (
    DatasetName,
    JsonOpt,
    SetOpt,
    TargetArg,
    _percent,
    _user_errors,
    app,
    err,
    out,
    titled_table,
)

GRADCHECK_COSINE = 0.999  # what "EP computes the gradient" means for the verdict
GRADCHECK_ERROR = 1e-2
PROGRESS_EVERY_S = 10.0  # not on a terminal: a progress line at most this often


def _number(x: float) -> str:
    return "-" if np.isnan(x) else f"{x:.4g}"


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    for split in ("train", "validation", "test"):
        loss, error = row.get(f"{split}_loss", np.nan), row.get(f"{split}_error", np.nan)
        if not np.isnan(loss):
            parts.append(f"{split} loss {_number(loss)} error {_percent(error)}")
    parts.append(f"{row['seconds']:.1f} s ({row['samples_per_second']:,.0f} samples/s)")
    if row.get("not_converged"):
        parts.append(f"[yellow]{int(row['not_converged'])} solves missed tol[/]")
    return "  ".join(parts)


class _StopFlag:
    """First Ctrl-C asks training to stop after the current batch; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopFlag:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def __call__(self) -> bool:
        return self.requested


@app.command()
@_user_errors
def train(
    circuit: Annotated[
        Path,
        typer.Argument(
            help="Circuit file (TOML); or a run directory or checkpoint: to continue it "
            "(--resume) or to fine-tune from its trained conductances (--out NEW).",
            show_default=False,
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run directory (default: runs/<circuit name>)."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Train until this many epochs are complete.")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed (sets training.seed).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run in --out.")
    ] = False,
    reschedule: Annotated[
        bool,
        typer.Option(
            "--reschedule",
            help="On --resume, accept a cosine schedule recomputed over a changed --epochs.",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print nothing but errors and the final line."),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print only the final metrics, as JSON on stdout (implies --quiet)."
        ),
    ] = False,
    sets: SetOpt = None,
) -> None:
    """Train a circuit's conductances with Equilibrium Propagation.

    Reads the training section of the file (dataset, nudging, learning rates),
    shows a progress bar and one line per epoch, and keeps a run directory
    (config.toml, checkpoint.npz, metrics.csv) up to date after every epoch.
    Ctrl-C saves the last complete batch; --resume continues exactly.
    Given a run or checkpoint and a new --out, it fine-tunes: a new run that
    starts from the trained conductances and bias currents, with the parent's
    settings and any --set applied (structural changes are refused).

    Example: eqprop train circuits/mnist-mini.toml --out runs/mini --epochs 5

    Example: eqprop train runs/mini --out runs/mini-ft --epochs 2 --set training.learning_rate=0.2
    """
    overrides = list(sets or [])
    if seed is not None:
        overrides.append(f"training.seed={seed}")
    if epochs is not None:
        overrides.append(f"training.epochs={epochs}")
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
        if circuit.is_dir() and (circuit / CONFIG).is_file():  # `eqprop train RUN --resume`
            out_dir = out_dir or circuit
            circuit = circuit / CONFIG
        loaded = load_target(circuit, overrides)
        if loaded.checkpoint is not None:
            raise EqpropError(
                f"{circuit}: give the run directory to continue a run (with --resume), "
                "or fine-tune from this checkpoint into a new run with --out NEW"
            )
        spec, network, source = loaded.spec, loaded.network, str(circuit)
        _require_recipe(spec, circuit)
    out_dir = out_dir or Path("runs") / run_name(spec.name or circuit.stem)
    dataset, splits = training_data(spec, network)
    trainer = Trainer(network, spec, splits, dataset.n_classes)
    if resume and not (out_dir / CHECKPOINT).is_file():
        raise RunError(f"{out_dir / CHECKPOINT}: no checkpoint there; nothing to resume")
    if not resume:
        _make_run_dir(out_dir)
    with run_lock(out_dir):
        _train(
            trainer,
            spec,
            network,
            _Request(circuit, source, overrides, out_dir, resume, overwrite, reschedule),
            dataset,
            tuned,
            quiet=quiet or as_json,
            as_json=as_json,
        )


@dataclass(frozen=True)
class _Request:
    """What the command line asked of a training: the source, --set, the run directory, flags."""

    circuit: Path
    source: str  # the circuit file, or the run it fine-tunes, as config.toml records it
    overrides: list[str]
    out_dir: Path
    resume: bool
    overwrite: bool
    reschedule: bool


def _train(
    trainer: Trainer,
    spec: CircuitSpec,
    network: Network,
    request: _Request,
    dataset: Dataset,
    tuned: FineTune | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Train into ``request.out_dir`` (locked by the caller)."""
    circuit, source, overrides, out_dir = (
        request.circuit,
        request.source,
        request.overrides,
        request.out_dir,
    )
    say = _silent if quiet else out.print
    settings = training_settings(spec)
    text = config_text(spec, source, overrides)
    initial = [g.copy() for g in network.g], [c.copy() for c in network.currents]
    parent = tuned.record if tuned else None
    if request.resume:
        ckpt = _resume(out_dir, spec, network)
        state = ckpt.state
        _check_schedule(out_dir, ckpt, spec, settings.epochs, request.reschedule)
        initial = ckpt.initial_conductances, ckpt.initial_currents
        parent = ckpt.parent
        text = config_text(spec, source, overrides, previous=ckpt.config)
    else:
        _clear_run_dir(out_dir, request.overwrite)
        state = trainer.new_state()
    total = settings.epochs
    if state.epoch >= total:
        if as_json:
            print(json.dumps(_summary(out_dir, state, parent), indent=2))
        else:
            out.print(
                f"{out_dir}: already trained for {state.epoch} epochs (asked {total}); nothing to do"
            )
        return

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

    write_atomic(out_dir / CONFIG, text)  # on --resume: the new number of epochs
    if request.resume:
        save(state)  # the checkpoint records the new config.toml: the directory stays whole

    n_train = len(trainer.splits["train"][1])
    if tuned is not None:
        moved = f"; {tuned.clipped:,} trained value(s) clipped into the new device ranges"
        say(
            f"fine-tuning from {escape(str(circuit))} (epoch {tuned.record['epoch']}, "
            f"checkpoint sha256 {tuned.record['sha256'][:12]}){moved if tuned.clipped else ''}",
            soft_wrap=True,
        )
    say(
        f"training {escape(spec.name or str(circuit))} on {escape(dataset.name)}: {n_train:,} samples, "
        f"batch {settings.batch_size}, {settings.phases} phases, beta {settings.beta:g} S -> {out_dir}",
        soft_wrap=True,
    )
    for name, model in device_models(spec.devices).items():
        say(f"devices {escape(name)} learn as {escape(model)}", soft_wrap=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TextColumn(
            "{task.fields[rate]:,.0f} samples/s  loss {task.fields[loss]:.4g}  accuracy {task.fields[accuracy]}"
        ),
        TimeRemainingColumn(),
        console=out,
        transient=True,
        disable=quiet,
    )

    last_line = [time.monotonic()]

    def on_batch(info: BatchInfo) -> None:
        if not out.is_terminal and time.monotonic() - last_line[0] >= PROGRESS_EVERY_S:
            last_line[0] = time.monotonic()  # a log or a pipe: no bar, a line now and then
            say(
                f"epoch {info.epoch + 1}/{total}: batch {info.step}/{info.steps}, "
                f"{info.samples:,}/{n_train:,} samples, {info.seconds:.0f} s, "
                f"loss {info.loss:.4g}",
                soft_wrap=True,
            )
        progress.update(
            task,
            completed=info.samples,
            description=f"epoch {info.epoch + 1}/{total}",
            rate=info.samples / info.seconds if info.seconds else 0.0,
            loss=info.loss,
            accuracy=_percent(1.0 - info.error),
        )

    def on_epoch(s: TrainState) -> None:
        save(s)
        progress.reset(task, total=n_train, completed=0)
        say(_epoch_line(s.metrics[-1], total), soft_wrap=True)

    with _StopFlag() as stop, progress:
        task = progress.add_task("", total=n_train, rate=0.0, loss=float("nan"), accuracy="-")
        try:
            state, stopped = trainer.run(state, total, on_batch, on_epoch, stop)
        except NotConvergedError as exc:
            save(exc.state)
            raise NotConvergedError(
                f"{exc}; saved epoch {exc.state.epoch + 1}, batch {exc.state.step} to "
                f"{out_dir / CHECKPOINT}; continue with: eqprop train {out_dir} --resume"
            ) from None
    if stopped:
        save(state)
        err.print(
            f"interrupted: saved epoch {state.epoch + 1}, batch {state.step} to {out_dir / CHECKPOINT}; "
            f"continue with: eqprop train {out_dir} --resume"
        )
        raise typer.Exit(130)
    final = state.metrics[-1]
    if as_json:
        print(json.dumps(_summary(out_dir, state, parent), indent=2))
        return
    out.print(
        f"[green]done[/]: {state.epoch} epoch{'s' if state.epoch != 1 else ''}, test error {_percent(final['test_error'])}; "
        f"run directory {out_dir}"
    )


def run_name(name: str) -> str:
    """A circuit name as one folder name under runs/: never absolute, never "..", no "/"."""
    return slug(name).lstrip(".") or "run"


def _make_run_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"{out_dir}: exists and is not a folder; choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{out_dir}: cannot create the run directory ({exc.strerror})") from None


def _require_recipe(spec, circuit: Path) -> None:
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
        "circuits/mnist-ideal.toml is an example), or give them with --set, e.g. "
        "--set training.dataset=mnist --set training.epochs=10 --set training.batch_size=32 "
        "--set training.learning_rate=1 --set training.beta=1e-6",
        path=str(circuit),
    )


def _silent(*args: object, **options: object) -> None:
    """What --quiet prints."""


def _summary(out_dir: Path, state: TrainState, parent: dict | None) -> dict:
    """train --json: the run directory, the epochs done, the last epoch's metrics, the parent."""
    final = {k: (None if np.isnan(v) else v) for k, v in state.metrics[-1].items()}
    return {"run": str(out_dir), "epochs": state.epoch, "final": final, "parent": parent}


def _same_dir(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _clear_run_dir(out_dir: Path, overwrite: bool) -> None:
    """Make way for a new run (under the lock, so two trainings cannot both pass)."""
    if (out_dir / CHECKPOINT).exists() and not overwrite:
        raise RunError(
            f"{out_dir}: already holds a run; continue it with --resume, replace it with "
            f"--overwrite, or fine-tune from it into a new run with --out NEW"
        )
    for name in (CHECKPOINT, METRICS):
        (out_dir / name).unlink(missing_ok=True)


def _resume(out_dir: Path, spec, network) -> Checkpoint:
    """Load a run's checkpoint into the network after checking the settings still match."""
    ckpt = load_checkpoint(out_dir / CHECKPOINT)
    before = portable_document(parse_circuit(ckpt.config, str(out_dir / CONFIG)))
    now = portable_document(spec)
    for doc in (before, now):
        doc.get("training", {}).pop("epochs", None)
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise RunError(
            f"{out_dir}: the run was made with different settings (sections: {', '.join(changed)}); "
            "only the number of epochs may change on --resume"
        )
    ckpt.apply(network)
    return ckpt


def _check_schedule(
    out_dir: Path, ckpt: Checkpoint, spec: CircuitSpec, epochs: int, reschedule: bool
) -> None:
    """A cosine schedule depends on the number of epochs: changing it on --resume changes the
    rate of the epochs to come (it jumps up when a finished run is extended), so that needs
    --reschedule; the smooth alternative is a fine-tune with a fresh schedule."""
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
        f"--reschedule to continue with the cosine over {epochs} epochs, or fine-tune into a new "
        f"run with a fresh cosine from the last rate: eqprop train {out_dir} --out NEW "
        f"--epochs {max(epochs - done, 1)} --set training.learning_rate={last:.4g}"
    )


@app.command()
@_user_errors
def gradcheck(
    target: TargetArg,
    beta: Annotated[
        float | None, typer.Option(help="Nudge strength in siemens (default: training.beta).")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Samples in the batch compared.")] = 8,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the sample choice.")] = 0,
    tol: Annotated[
        float | None,
        typer.Option(help="KCL tolerance of the solves, A (default: 1e-3 x the file's)."),
    ] = None,
    as_json: JsonOpt = False,
    sets: SetOpt = None,
) -> None:
    """Compare EP's gradient estimates with the exact gradient of the loss.

    The exact gradient comes from implicit differentiation at the free
    equilibrium (one linear solve per sample, no nudging). For each nudging
    variant (centred, positive, negative) and each connection it prints the
    cosine similarity and the relative error. Exit code 1 when the centred
    estimate misses cosine >= 0.999 or relative error <= 1e-2.

    Example: eqprop gradcheck circuits/kendall2020-mnist.toml --beta 1e-8
    """
    if tol is not None and not tol > 0:
        raise EqpropError(f"--tol must be a current > 0 A; got {tol:g}")
    if beta is not None and not beta > 0:
        raise EqpropError(f"--beta must be a conductance > 0 S; got {beta:g}")
    loaded = load_target(target, list(sets or []))
    spec, network = loaded.spec, loaded.network
    settings = training_settings(spec)
    rng = np.random.default_rng(seed)
    if spec.training is not None:
        dataset, splits = training_data(spec, network)
        x_all, y_all = splits["train"]
        pick = rng.choice(len(y_all), size=min(samples, len(y_all)), replace=False)
        x, y, n_classes, source = x_all[pick], y_all[pick], dataset.n_classes, dataset.name
    else:
        n_classes = len(network.outputs)
        x = rng.random((samples, network.n_features))
        y = rng.integers(0, n_classes, samples)
        source = "random inputs in [0, 1)"
    loss = ReadoutLoss(settings, len(network.outputs), n_classes)
    groups = parameter_groups(network, settings, spec)
    beta = settings.beta if beta is None else beta
    solver = {
        "method": spec.solver.method,
        "tol": tol if tol is not None else 1e-3 * spec.solver.tol,
        "max_iter": max(spec.solver.max_iter, 10_000),
    }
    kinked = at_a_kink(network, x, **solver)
    if kinked.all():
        raise EqpropError(
            "every sample sits at a kink (a hard clamp at its threshold carrying no current), "
            "where the loss has no gradient; try other --samples or --seed"
        )
    x, y = x[~kinked], y[~kinked]
    result = compare(network, groups, x, y, loss, beta, **solver)
    centred = result["centred"]["overall"]
    ok = centred.cosine >= GRADCHECK_COSINE and centred.relative_error <= GRADCHECK_ERROR
    if as_json:
        doc = {
            "target": str(target),
            "data": source,
            "samples": len(y),
            "excluded_at_kinks": int(kinked.sum()),
            "beta": beta,
            "tol": solver["tol"],
            "cosine": centred.cosine,
            "relative_error": centred.relative_error,
            "passed": ok,
            "variants": {
                v: {
                    "overall": vars(rows["overall"]),
                    "connections": {k: vars(a) for k, a in rows.items() if k != "overall"},
                }
                for v, rows in result.items()
            },
        }
        print(json.dumps(doc, indent=2))
    else:
        table = titled_table(f"EP vs exact gradient: {len(y)} samples of {source}, beta {beta:g} S")
        for col in ("variant", "connection", "cosine", "relative error"):
            table.add_column(col, justify="left" if col in ("variant", "connection") else "right")
        for variant, rows in result.items():
            for name, a in rows.items():
                table.add_row(variant, escape(name), f"{a.cosine:.6f}", f"{a.relative_error:.3g}")
        out.print(table)
        if kinked.any():
            out.print(
                f"{int(kinked.sum())} sample(s) left out: at a kink (a hard clamp at its "
                "threshold carrying no current), where the loss has no gradient"
            )
        verdict = (
            "[green]EP computes the gradient[/]" if ok else "[red]EP does not match the gradient[/]"
        )
        out.print(
            f"{verdict} (centred: cosine {centred.cosine:.6f}, relative error {centred.relative_error:.3g}; "
            f"needs >= {GRADCHECK_COSINE} and <= {GRADCHECK_ERROR:g}; a smaller --beta reduces the error)"
        )
    if not ok:
        raise typer.Exit(1)


@app.command()
@_user_errors
def report(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="Run directory written by eqprop train, or a sweep folder; several runs: "
            "compare them.",
            show_default=False,
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for the figures (default: RUN_DIR/report; comparing: ./comparison).",
        ),
    ] = None,
) -> None:
    """Figures of a run as PNG: learning curves, conductance histograms, confusion matrix.
    Of a sweep folder: its first metric against each swept key.

    Given several runs, compares them instead: their test loss and error per
    epoch overlaid in comparison.png, and a table of each run's last and best
    epoch.

    Example: eqprop report runs/mini

    Example: eqprop report runs/mini runs/mini-ft
    """
    if len(run_dirs) > 1:
        _compare(run_dirs, out_dir or Path("comparison"))
        return
    run_dir = run_dirs[0]
    sweep = read_results(run_dir) if run_dir.is_dir() else None
    if sweep is not None:
        for path in plot_sweep(sweep, out_dir or run_dir / "report"):
            print(path)
        return
    loaded = load_target(run_dir)
    if loaded.checkpoint is None:
        raise RunError(f"{run_dir}: not a run directory or checkpoint")
    spec, network, ckpt = loaded.spec, loaded.network, loaded.checkpoint
    settings = training_settings(spec)
    dataset, result = evaluate_split(spec, network, "test")
    names = [r.name for r in network.resistors]
    ranges = {r.name: (r.device.model.low, r.device.model.high) for r in network.resistors}
    unit = "squared error (V²)" if settings.loss == "squared_error" else "cross-entropy (nats)"
    paths = write_report(
        out_dir or (loaded.run_dir / "report"),
        ckpt.state.metrics,
        dict(zip(names, ckpt.initial_conductances, strict=True)),
        dict(zip(names, ckpt.conductances, strict=True)),
        result.confusion,
        dataset.classes,
        ranges,
        loss_label=unit,
    )
    for path in paths:
        print(path)


def _compare(run_dirs: list[Path], out_dir: Path) -> None:
    """eqprop report RUN RUN...: overlaid test curves and a table of last and best epochs."""
    runs, units = {}, set()
    for run_dir in run_dirs:
        if run_dir.suffix == ".npz" or not (run_dir / CONFIG).is_file():
            raise RunError(f"{run_dir}: not a run directory (no {CONFIG})")
        ckpt = load_checkpoint(run_dir / CHECKPOINT)
        spec = parse_circuit(ckpt.config, str(run_dir / CONFIG))
        units.add(training_settings(spec).loss)
        runs[str(run_dir)] = ckpt.state.metrics
    loss = units.pop() if len(units) == 1 else "loss"
    label = {"squared_error": "squared error (V²)", "cross_entropy": "cross-entropy (nats)"}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{out_dir}: cannot create the folder ({exc.strerror})") from None
    path = plot_comparison(runs, out_dir / "comparison.png", loss_label=label.get(loss, loss))
    table = Table()
    for col in ("run", "epochs", "test loss", "test error", "best test error"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, metrics in runs.items():
        errors = [m["test_error"] for m in metrics]
        best = int(np.nanargmin(errors)) if metrics else 0
        last = metrics[-1] if metrics else {}
        table.add_row(
            escape(name),
            str(len(metrics)),
            _number(last.get("test_loss", np.nan)),
            _percent(last.get("test_error", np.nan)),
            f"{_percent(errors[best])} (epoch {best + 1})" if metrics else "-",
        )
    out.print(table)
    print(path)


data_app = typer.Typer(
    help="Datasets: what is installed where, and downloads.", no_args_is_help=True
)
app.add_typer(data_app, name="data")


@data_app.command(name="list")
@_user_errors
def data_list(as_json: JsonOpt = False) -> None:
    """Show the known datasets, whether and where they are installed.

    Example: eqprop data list
    """
    rows = list_datasets()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table()
    for col in ("name", "status", "location", "train", "test"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            r["status"],
            escape(str(r["location"] or "-")),
            f"{r['n_train']:,}" if r["n_train"] else "-",
            f"{r['n_test']:,}" if r["n_test"] else "-",
        )
    out.print(table)


@data_app.command(name="fetch")
@_user_errors
def data_fetch(
    name: Annotated[DatasetName, typer.Argument(help="The data set to download.")],
    dest: Annotated[
        Path | None, typer.Option(help="Install into this folder (default: the user cache).")
    ] = None,
    mirror: Annotated[
        list[str] | None,
        typer.Option(help="Download from this base URL instead (repeatable).", metavar="URL"),
    ] = None,
) -> None:
    """Download a dataset from public mirrors and verify its checksums.

    Example: eqprop data fetch mnist
    """
    start = time.perf_counter()
    name = name.value
    path = fetch_dataset(
        name, dest, list(mirror) if mirror else None, progress=lambda m: err.print(escape(m))
    )
    out.print(
        f"{name}: installed in {path} ({time.perf_counter() - start:.1f} s), checksums verified"
    )
