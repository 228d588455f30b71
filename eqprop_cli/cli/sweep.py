"""`eqprop sweep`: train and evaluate a circuit at every point of a sweep file. Thin over
`sweep` (the file, the tables) and `sweep_exec` (workers, executors)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import EqpropError
from ..hardware.spice import ngspice_path
from ..learn.run import run_name
from ..sweep.execute import (
    SweepError,
    TerminateAsInterrupt,
    default_workers,
    ray_module,
    read_record,
    run_local,
    run_ray,
    sweep_lock,
)
from ..sweep.spec import (
    SEED_KEY,
    Sweep,
    key_error,
    load_sweep,
    place,
    results_document,
    short_names,
    show_value,
    write_results,
)
from .options import EXIT_INTERRUPTED, EXIT_SIGTERM, JsonOpt, _user_errors, app, err, out

PERCENT = ("error", "accuracy", "agreement")  # metrics shown in per cent


def _metric(name: str, value: object) -> str:
    if value is None:
        return "-"
    if name.endswith(PERCENT) or name.startswith(PERCENT):
        return f"{100 * float(value):.2f}%"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command()
@_user_errors
def sweep(
    sweep_file: Annotated[
        Path, typer.Argument(help="Sweep file (TOML, see eqprop-sweep(1)).", show_default=False)
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Sweep folder (default: runs/<sweep name>)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-j",
            min=1,
            help="Points at a time (default: the sweep file's workers, else the CPUs).",
            show_default=False,
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help='Run on the Ray cluster at this address ("auto", "ray://host:10001"), or '
            '"local" to start Ray here (default: the sweep file\'s address, else local '
            "processes).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train and evaluate a circuit at every point of a grid or list of overrides.

    Each training point is an ordinary run directory under SWEEP_FOLDER/points,
    named from its overrides; a rerun skips the points already done and resumes
    the others. Prints every point's metrics, then their mean and spread over
    seeds; writes results.csv, summary.csv and results.json. Exit code 1 when a
    point failed (its error is in the table); 130 on Ctrl-C and 143 on SIGTERM, each
    point in training saved. `eqprop report SWEEP_FOLDER` draws
    the first metric against each swept key.

    Example: eqprop sweep circuits/sweeps/xor-lr.toml --workers 2
    """
    spec = load_sweep(sweep_file)
    folder = out_dir or Path("runs") / run_name(spec.name)
    place(spec, folder)
    fail = _address_error(spec, address)
    address = address or spec.address
    if address:
        ray_module(fail)  # before anything is written
    else:
        _require_ngspice(spec)
    workers = workers or spec.workers or (None if address else default_workers())
    with sweep_lock(folder):
        records = {t.name: r for t in spec.tasks if (r := read_record(t)) is not None}
        todo = [t for t in spec.tasks if t.name not in records]
        where = f"Ray at {address}"
        if not address:
            workers = min(workers, max(len(todo), 1))
            where = f"{workers} local worker{'s' * (workers != 1)}"
        err.print(
            f"sweep {escape(spec.name)}: {len(spec.tasks)} training points, {len(spec.rows)} rows; "
            f"{len(records)} already done, {len(todo)} to run on {where} -> {folder}",
            highlight=False,
        )
        start = time.perf_counter()
        write_results(folder, results_document(spec, records, 0.0))
        if todo:
            runner = run_ray(todo, workers, address, fail) if address else run_local(todo, workers)
            terminate = TerminateAsInterrupt()
            try:
                with terminate:
                    for n, record in enumerate(runner, 1):
                        records[record["point"]] = record
                        _progress(n, len(todo), record, spec.metrics[0])
                        doc = results_document(spec, records, time.perf_counter() - start)
                        write_results(folder, doc)
            except KeyboardInterrupt:
                terminate.stopping = True
                with terminate:  # a SIGTERM while the workers stop: passed on, not raised
                    runner.close()  # wait for the workers: their records are then on disk
                records.update(
                    {t.name: r for t in todo if (r := read_record(t, finished=False)) is not None}
                )
                write_results(folder, results_document(spec, records, time.perf_counter() - start))
                err.print(
                    f"{'terminated (SIGTERM)' if terminate.received else 'interrupted'}: "
                    f"finished points are kept in {folder}; run the same command again to do "
                    "the rest"
                )
                raise typer.Exit(EXIT_SIGTERM if terminate.received else EXIT_INTERRUPTED) from None
    doc = results_document(spec, records, time.perf_counter() - start)
    write_results(folder, doc)
    if as_json:
        print(json.dumps({k: v for k, v in doc.items() if k != "sweep_file"}, indent=2))
    else:
        _tables(spec, doc)
        out.print(f"results: {folder / 'results.csv'}, {folder / 'summary.csv'}")
    if any(r["status"] != "done" for r in doc["rows"]):
        raise typer.Exit(1)


def _require_ngspice(spec: Sweep) -> None:
    """Refuse, before any point trains, a local sweep that evaluates with ngspice where there
    is none (each point would train, then fail); on Ray the nodes need it, not this one."""
    if not any(dict(c)["backend"] == "ngspice" for t in spec.tasks for c in t.evals):
        return
    try:
        ngspice_path()
    except EqpropError as exc:
        key = ("grid", "eval", "backend") if "eval.backend" in spec.axes else ("eval", "backend")
        raise key_error(spec, key, f"{exc}; needed to evaluate with ngspice") from None


def _address_error(spec: Sweep, option: str | None) -> Callable[[str], EqpropError]:
    """The error about the Ray address, naming where it came from: --address, or the sweep
    file's [sweep] address (file, line and key)."""
    if option:
        return lambda message: SweepError(f"--address {option}: {message}")
    return lambda message: key_error(spec, ("sweep", "address"), f"{spec.address}: {message}")


def _progress(n: int, total: int, record: dict, metric: str) -> None:
    seconds = record.get("seconds", 0.0)
    if record["status"] == "done":
        values = [record.get("train", {}), *record.get("evals", [])]
        shown = next((v[metric] for v in values if metric in v), None)
        what = f"{metric} {_metric(metric, shown)}"
    else:
        what = f"[red]{record['status']}[/]: {escape(str(record.get('error')))}"
    err.print(f"[{n}/{total}] {escape(record['point'])}  {what}  {seconds:.1f} s", highlight=False)


def _tables(spec: Sweep, doc: dict) -> None:
    table = Table(title=f"sweep {escape(spec.name)}: {len(doc['rows'])} rows")
    short = short_names(spec.axes)
    for axis in spec.axes:
        table.add_column(escape(short[axis]), justify="right")
    table.add_column("status")
    for metric in spec.metrics:
        table.add_column(metric, justify="right")
    failed = any(r["error"] for r in doc["rows"])
    if failed:
        table.add_column("error", overflow="fold")
    for r in doc["rows"]:
        cells = [escape(show_value(r["values"][a])) for a in spec.axes]
        cells.append(r["status"] if r["status"] == "done" else f"[red]{r['status']}[/]")
        cells += [_metric(m, r["metrics"][m]) for m in spec.metrics]
        if failed:
            cells.append(escape(r["error"] or ""))
        table.add_row(*cells)
    out.print(table)
    if SEED_KEY not in spec.axes:
        return
    settings = [a for a in spec.axes if a != SEED_KEY]
    table = Table(title=f"mean ± standard deviation over {SEED_KEY}")
    for axis in settings:
        table.add_column(escape(short[axis]), justify="right")
    table.add_column("seeds", justify="right")
    for metric in spec.metrics:
        table.add_column(metric, justify="right")
    for s in doc["summary"]:
        cells = [escape(show_value(s["values"][a])) for a in settings]
        cells.append(str(s["n"]) + (f" ({s['failed']} failed)" if s["failed"] else ""))
        for m in spec.metrics:
            mean, std = s["mean"][m], s["std"][m]
            cells.append(
                "-"
                if mean is None
                else f"{_metric(m, mean)} ± {_metric(m, std)}".replace("% ±", " ±")
            )
        table.add_row(*cells)
    out.print(table)
