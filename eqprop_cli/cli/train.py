"""Training commands of `eqprop`: train, gradcheck, report, data. Thin over the library."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..circuit.params import SOLVER_KEY
from ..circuit.spec import MAX_EPOCHS, TRAINING_KEY, OptionOverride, parse_circuit
from ..data.datasets import fetch_dataset, list_datasets
from ..errors import EqpropError, NotConvergedError
from ..io import own_folder
from ..learn.gradcheck import at_a_kink, compare
from ..learn.run import (
    TrainingObserver,
    TrainingStart,
    epoch_line,
    run_training,
)
from ..learn.samples import evaluate_split, readout_loss, training_data
from ..learn.settings import training_settings
from ..learn.state import TrainState
from ..learn.train import BatchInfo, parameter_groups
from ..runs.report import plot_comparison, write_report
from ..runs.rundir import (
    CHECKPOINT,
    CONFIG,
    RunError,
    load_checkpoint,
    load_target,
)
from ..sweep.plot import plot_sweep
from ..sweep.spec import read_results
from .options import (
    EXIT_INTERRUPTED,
    EXIT_SIGTERM,
    DatasetName,
    JsonOpt,
    SetOpt,
    TargetArg,
    _percent,
    _user_errors,
    app,
    checked_option,
    err,
    out,
    titled_table,
)

GRADCHECK_COSINE = 0.999  # what "EP computes the gradient" means for the verdict
GRADCHECK_ERROR = 1e-2
PROGRESS_EVERY_S = 10.0  # not on a terminal: a progress line at most this often


def _number(x: float) -> str:
    return "-" if np.isnan(x) else f"{x:.4g}"


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
        int | None,
        typer.Option(min=1, max=MAX_EPOCHS, help="Train until this many epochs are complete."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Seed, 0 to 2^63-1 (sets training.seed).")
    ] = None,
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
    Ctrl-C (exit 130) or SIGTERM (exit 143) saves the last complete batch;
    --resume continues exactly.
    Given a run or checkpoint and a new --out, it fine-tunes: a new run that
    starts from the trained conductances and bias currents, with the parent's
    settings and any --set applied (structural changes are refused).

    Example: eqprop train circuits/mnist-mini.toml --out runs/mini --epochs 5

    Example: eqprop train runs/mini --out runs/mini-ft --epochs 2 --set training.learning_rate=0.2
    """
    overrides = list(sets or [])
    if seed is not None:
        overrides.append(OptionOverride("--seed", "training.seed", seed))
    if epochs is not None:
        overrides.append(OptionOverride("--epochs", "training.epochs", epochs))
    report = _TrainingReport(quiet=quiet or as_json)
    try:
        result = run_training(
            circuit,
            out_dir,
            overrides,
            resume,
            overwrite,
            reschedule,
            observer=report,
            stop_on_interrupt=True,
        )
    except NotConvergedError as exc:
        if exc.run_dir is None:
            raise
        raise NotConvergedError(
            f"{exc}; continue with: eqprop train {exc.run_dir} --resume"
        ) from None
    finally:
        if report.task is not None:  # started: the bar goes
            report.progress.stop()
    state = result.state
    if result.stopped:
        terminated = result.stop_signal == signal.SIGTERM
        err.print(
            f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: saved epoch "
            f"{state.epoch + 1}, batch {state.step} to {result.out_dir / CHECKPOINT}; "
            f"continue with: eqprop train {result.out_dir} --resume"
        )
        raise typer.Exit(EXIT_SIGTERM if terminated else EXIT_INTERRUPTED)
    if as_json:
        print(json.dumps(result.summary(), indent=2))
    elif not result.trained:
        out.print(
            f"{result.out_dir}: already trained for {state.epoch} epochs (asked {result.epochs}); "
            "nothing to do"
        )
    else:
        out.print(
            f"[green]done[/]: {state.epoch} epoch{'s' if state.epoch != 1 else ''}, test error "
            f"{_percent(state.metrics[-1]['test_error'])}; run directory {result.out_dir}"
        )


class _TrainingReport(TrainingObserver):
    """What `eqprop train` shows: where it starts, a progress bar on a terminal (a line now
    and then on a pipe), one line per epoch."""

    def __init__(self, quiet: bool) -> None:
        self.say = _silent if quiet else out.print
        self.progress = Progress(
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
        self.last_line = time.monotonic()
        self.n_train, self.total, self.task = 0, 0, None

    def start(self, info: TrainingStart) -> None:
        self.n_train, self.total = info.n_train, info.epochs
        tuned = info.fine_tune
        if tuned is not None:
            moved = f"; {tuned.clipped:,} trained value(s) clipped into the new device ranges"
            self.say(
                f"fine-tuning from {escape(str(info.circuit))} (epoch {tuned.record['epoch']}, "
                f"checkpoint sha256 {tuned.record['sha256'][:12]}){moved if tuned.clipped else ''}",
                soft_wrap=True,
            )
        self.say(
            f"training {escape(info.name)} on {escape(info.dataset)}: {info.n_train:,} samples, "
            f"batch {info.batch_size}, {info.phases} phases, beta {info.beta:g} S -> {info.out_dir}",
            soft_wrap=True,
        )
        for name, model in info.devices.items():
            self.say(f"devices {escape(name)} learn as {escape(model)}", soft_wrap=True)
        self.progress.start()
        self.task = self.progress.add_task(
            "", total=info.n_train, rate=0.0, loss=float("nan"), accuracy="-"
        )

    def batch(self, info: BatchInfo) -> None:
        if not out.is_terminal and time.monotonic() - self.last_line >= PROGRESS_EVERY_S:
            self.last_line = time.monotonic()  # a log or a pipe: no bar, a line now and then
            self.say(
                f"epoch {info.epoch + 1}/{self.total}: batch {info.step}/{info.steps}, "
                f"{info.samples:,}/{self.n_train:,} samples, {info.seconds:.0f} s, "
                f"loss {info.loss:.4g}",
                soft_wrap=True,
            )
        self.progress.update(
            self.task,
            completed=info.samples,
            description=f"epoch {info.epoch + 1}/{self.total}",
            rate=info.samples / info.seconds if info.seconds else 0.0,
            loss=info.loss,
            accuracy=_percent(1.0 - info.error),
        )

    def epoch(self, state: TrainState) -> None:
        self.progress.reset(self.task, total=self.n_train, completed=0)
        self.say(
            epoch_line(state.metrics[-1], self.total, warn=lambda s: f"[yellow]{s}[/]"),
            soft_wrap=True,
        )


def _silent(*args: object, **options: object) -> None:
    """What --quiet prints."""


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
    tol = checked_option(tol, "--tol", SOLVER_KEY["tol"])
    beta = checked_option(beta, "--beta", TRAINING_KEY["beta"])
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
    loss = readout_loss(spec, network, n_classes)
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
        for path in plot_sweep(sweep, out_dir or own_folder(run_dir / "report")):
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
        out_dir or own_folder(loaded.run_dir / "report"),
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
