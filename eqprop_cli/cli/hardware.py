"""Hand-off commands of `eqprop`: export (netlists, conductance maps, levels) and eval
(with edited maps, Monte Carlo over programming error, or ngspice as the backend)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import tomli_w
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .. import __version__
from ..circuit.units import parse_si
from ..devices.update import device_models
from ..errors import EqpropError
from ..hardware.devicemap import (
    ConductanceMap,
    Levels,
    clipped,
    conductance_map,
    level_ranges,
    parameters_digest,
    quantise,
)
from ..hardware.ngspice import check_with_ngspice
from ..hardware.spice import export_spice
from ..hardware.variation import Variation, monte_carlo
from ..io import read_inputs, write_atomic
from ..learn.evaluate import evaluate
from ..learn.samples import dataset_sample, evaluate_split, scoring, split_samples
from ..learn.settings import solver_settings, training_settings
from ..runs.rundir import Loaded
from ..solver.equilibrium import solve
from .options import (
    Backend,
    ConductancesOpt,
    Distribution,
    ExportFormat,
    InputOpt,
    JsonOpt,
    SampleOpt,
    SetOpt,
    Split,
    SplitOpt,
    TargetArg,
    _load,
    _percent,
    _user_errors,
    app,
    err,
    out,
    titled_table,
)

NGSPICE_LIMIT = 20  # samples that --backend ngspice runs when --limit is not given


def _circuit_digest(loaded: Loaded) -> str:
    """SHA-256 of the resolved circuit document (the file with --set overrides applied)."""
    return hashlib.sha256(tomli_w.dumps(loaded.spec.document).encode()).hexdigest()


AUTO_PERCENTILE = 0.5  # --g-range auto: the 0.5th to the 99.5th percentile


def _g_range(text: str | None) -> tuple[tuple[float, float] | None, float | None]:
    """--g-range: (MIN, MAX) in siemens, or for "auto[:P]" the percentile P."""
    if text is None:
        return None, None
    if text == "auto" or text.startswith("auto:"):
        try:
            percentile = float(text[5:]) if text != "auto" else AUTO_PERCENTILE
            if not 0 <= percentile < 50:
                raise ValueError
        except ValueError:
            raise EqpropError(
                f'--g-range "{text}": expected auto or auto:P with a percentile 0 <= P < 50'
            ) from None
        return None, percentile
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = (parse_si(p, "S") for p in parts)
    except ValueError:
        raise EqpropError(
            f'--g-range "{text}": expected MIN,MAX in siemens, e.g. 1e-9,2e-5 or 1n,20u, '
            "or auto[:P]"
        ) from None
    return (low, high), None


def _fraction(text: str | None, option: str) -> float:
    """A number, or a percentage like "5%"."""
    if text is None:
        return 0.0
    try:
        t = text.strip()
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise EqpropError(f'{option} "{text}": expected a number like 0.05 or 5%') from None


def _subckt_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name or "eqprop")
    return safe if safe[0].isalpha() else "x" + safe


@app.command()
@_user_errors
def export(
    target: TargetArg,
    format: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", help="A netlist or a map (see eqprop-export(1))."),
    ] = ExportFormat.spice,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write here (atomically) instead of stdout (- : stdout); npz needs it.",
        ),
    ] = None,
    sample: SampleOpt = None,
    split: SplitOpt = Split.test,
    input: InputOpt = None,
    subckt: Annotated[
        bool,
        typer.Option(
            "--subckt",
            help="spice: a .subckt for a larger design; ports: one per input feature, then the "
            "output nodes.",
        ),
    ] = False,
    levels: Annotated[
        int | None,
        typer.Option(
            "--levels",
            help="Round every conductance to the nearest of N evenly spaced levels "
            "(default: the device's `levels`).",
            show_default=False,
        ),
    ] = None,
    g_range: Annotated[
        str | None,
        typer.Option(
            "--g-range",
            help="MIN,MAX in siemens of the levels, or auto[:P]: per connection the P-th to "
            "(100-P)-th percentile of the trained conductances (P 0.5) (default: each "
            "device's g_min,g_max).",
            metavar="MIN,MAX|auto[:P]",
            show_default=False,
        ),
    ] = None,
    conductances: ConductancesOpt = None,
    nodeset: Annotated[
        bool,
        typer.Option(
            "--nodeset",
            help="spice: add our operating point as .nodeset lines: an initial guess that "
            "ngspice releases before converging on its own (helps stiff circuits).",
        ),
    ] = False,
    sets: SetOpt = None,
) -> None:
    """Write a trained circuit for hardware: an ngspice netlist or a conductance map.

    spice: the circuit with its inputs set (--sample, --input, or 0 V) and a
    .control block that prints the outputs and the predicted class; --subckt
    for a subcircuit. csv/json/npz: one entry per programmable device, for a
    programming station. --levels quantises the conductances and reports the
    test accuracy against the unquantised circuit.

    Example: eqprop export runs/mini --format csv --levels 32 -o mini.csv
    """
    spice_only = {"--sample": sample is not None, "--input": input, "--subckt": subckt}
    spice_only["--nodeset"] = nodeset
    if format != ExportFormat.spice and any(spice_only.values()):
        used = ", ".join(k for k, v in spice_only.items() if v)
        raise EqpropError(f"{used}: only for --format spice")
    if sum(bool(spice_only[k]) for k in ("--sample", "--input", "--subckt")) > 1:
        raise EqpropError("give one of --sample, --input and --subckt")
    if subckt and nodeset:
        raise EqpropError("--nodeset needs a netlist with its inputs set, not --subckt")
    to_stdout = output is None or str(output) == "-"
    if format == ExportFormat.npz and output is None:
        raise EqpropError("--format npz is binary: give -o FILE (or -o - for stdout)")
    loaded = _load(target, sets, conductances)
    network = loaded.network
    requested = level_ranges(network, levels, *_g_range(g_range))
    metadata = {
        "eqprop_version": __version__,
        "source": str(target),
        "conductance_map": str(conductances) if conductances else None,
        "circuit": loaded.spec.name,
        "circuit_sha256": _circuit_digest(loaded),
        "units": {"conductance": "S", "resistance": "ohm", "current": "A", "voltage": "V"},
    }
    # a netlist needs no map unless levels are asked for (it may have nothing programmable)
    spice = format == ExportFormat.spice
    cmap = conductance_map(network) if not spice or requested is not None else None
    if requested is not None:
        auto = g_range is not None and g_range.startswith("auto")
        cmap = _quantise_and_compare(loaded, cmap, requested, split.value, metadata, not auto)
    metadata["parameters_sha256"] = parameters_digest(network)
    if spice:
        data = _netlist(loaded, metadata, sample, split.value, input, subckt, nodeset, target)
    else:
        cmap.metadata = metadata
        data = cmap.render(format.value)
    if to_stdout:
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
    else:
        write_atomic(output, data)
        err.print(f"wrote {output}")


def _quantise_and_compare(
    loaded: Loaded,
    cmap: ConductanceMap,
    levels: Levels,
    split: str,
    metadata: dict,
    hint: bool = True,
) -> ConductanceMap:
    """Quantise the network's conductances; record (and print) the split's accuracy before
    and after."""
    network = loaded.network
    try:
        dataset, x, y, _ = split_samples(loaded.spec, network, split)
    except EqpropError as exc:
        err.print(f"[yellow]warning:[/] accuracy not measured: {escape(str(exc))}")
        _, moved = clipped(cmap, levels)
        if moved:
            err.print(f"[yellow]warning:[/] the level range clips {moved:,} trained conductances")
        return quantise(cmap, levels)
    loss, batch, solver = scoring(loaded.spec, network, dataset.n_classes)
    before = evaluate(network, x, y, loss, batch, **solver).accuracy
    inside, moved = clipped(cmap, levels)
    if moved:
        trained = list(network.g)
        network.set_conductances(inside)
        cost = evaluate(network, x, y, loss, batch, **solver).accuracy - before
        network.set_conductances(trained)
        total = sum(network.g[k].size for k in cmap.resistor_sets)
        err.print(
            f"[yellow]warning:[/] the level range clips {moved:,} of {total:,} trained "
            f"conductances ({100 * moved / total:.1f}%); clipping alone changes the {split} "
            f"accuracy by {100 * cost:+.2f} points"
            + (" (--g-range auto picks a range from the trained conductances)" if hint else "")
        )
        metadata["clipped"] = {"conductances": moved, "accuracy_change": cost}
    cmap = quantise(cmap, levels)
    after = evaluate(network, x, y, loss, batch, **solver).accuracy
    names = [network.resistors[k].name for k in cmap.resistor_sets]
    metadata["levels"] = {
        "count": levels.count,
        "ranges_S": {name: list(r) for name, r in zip(names, levels.ranges, strict=True)},
    }
    metadata["accuracy"] = {"split": split, "unquantised": before, "quantised": after}
    err.print(
        f"{levels.count} levels: {split} accuracy {_percent(after)} "
        f"(unquantised {_percent(before)}, {100 * (after - before):+.2f} points)"
    )
    return cmap


def _netlist(
    loaded: Loaded,
    metadata: dict,
    sample: int | None,
    split: str,
    input: str | None,
    subckt: bool,
    nodeset: bool,
    target: Path,
) -> str:
    network = loaded.network
    header = [
        f"exported by eqprop {__version__} from {target}",
        f"circuit sha256 {metadata['circuit_sha256']}",
        f"conductances and currents sha256 {metadata['parameters_sha256']}",
    ]
    if metadata.get("conductance_map"):
        header.append(f"conductances from {metadata['conductance_map']}")
    if "levels" in metadata:
        header.append(f"quantised to {metadata['levels']['count']} levels")
    if subckt:
        return export_spice(network, None, header=header, subckt=_subckt_name(loaded.spec.name))
    if sample is not None:
        inputs, what = dataset_sample(loaded.spec, network, split, sample)
        header.append(f"inputs: {what}")
    elif input is not None:
        inputs = read_inputs(input, network.n_features, str(target))
        if len(inputs) != 1:
            raise EqpropError(f"--input holds {len(inputs)} vectors; a netlist takes exactly one")
        header.append(f"inputs: from {input}")
    else:
        inputs = np.zeros((1, network.n_features))
        header.append("inputs: all 0 V")
    guess = None
    if nodeset:
        guess = solve(network, inputs, **solver_settings(loaded.spec)).voltages[0]
    return export_spice(network, inputs[0], header=header, nodeset=guess)


@app.command(name="eval")
@_user_errors
def eval_command(
    target: TargetArg,
    split: SplitOpt = Split.test,
    as_json: JsonOpt = False,
    conductances: ConductancesOpt = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            help=f"Evaluate the first N samples of the split (ngspice: default {NGSPICE_LIMIT}).",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        Backend,
        typer.Option(help="solver (ours) or ngspice (one exported netlist per sample)."),
    ] = Backend.solver,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            min=1,
            help="ngspice processes at a time (default: the CPUs).",
            show_default=False,
        ),
    ] = None,
    variation: Annotated[
        str | None,
        typer.Option(
            "--variation",
            help="Monte Carlo: relative programming error of every conductance, 0 to 1 (e.g. 0.05 or 5%).",
            metavar="SIGMA",
            show_default=False,
        ),
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Monte Carlo: programmed chips drawn.")] = 10,
    distribution: Annotated[
        Distribution,
        typer.Option(help="Monte Carlo: lognormal g*exp(sigma z) or gaussian g*(1+sigma z)."),
    ] = Distribution.lognormal,
    stuck_off: Annotated[
        str | None,
        typer.Option(
            "--stuck-off",
            help="Monte Carlo: probability that a device is stuck at g_min.",
            metavar="P",
            show_default=False,
        ),
    ] = None,
    stuck_on: Annotated[
        str | None,
        typer.Option(
            "--stuck-on",
            help="Monte Carlo: probability that a device is stuck at g_max.",
            metavar="P",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Monte Carlo: seed of the draws.")] = 0,
    sets: SetOpt = None,
) -> None:
    """Accuracy, loss, confusion matrix and per-class accuracy of a trained run.

    TARGET is a run directory, a checkpoint, or a circuit file (then with its
    initial conductances). The dataset and loss come from its training
    section. --conductances evaluates a conductance map instead (an edited or
    measured chip); --variation/--stuck-off/--stuck-on run a Monte Carlo over
    programming error; --backend ngspice runs the exported netlists in ngspice
    and compares them with our solver.

    Example: eqprop eval runs/mini --variation 5% --trials 20
    """
    mc = variation is not None or stuck_off is not None or stuck_on is not None
    if backend == Backend.ngspice and mc:
        raise EqpropError("--backend ngspice runs the nominal circuit; drop --variation/--stuck-*")
    spread = Variation(
        _fraction(variation, "--variation"),
        distribution.value,
        _fraction(stuck_off, "--stuck-off"),
        _fraction(stuck_on, "--stuck-on"),
    )
    loaded = _load(target, sets, conductances)
    if backend == Backend.ngspice:
        _eval_ngspice(loaded, target, split.value, limit or NGSPICE_LIMIT, jobs, as_json)
    elif mc:
        _eval_monte_carlo(loaded, target, split.value, limit, spread, trials, seed, as_json)
    else:
        _eval_solver(loaded, target, split.value, limit, as_json)


def _eval_solver(loaded: Loaded, target: Path, split: str, limit: int | None, as_json: bool):
    settings = training_settings(loaded.spec)
    dataset, result = evaluate_split(loaded.spec, loaded.network, split, limit)
    models = device_models(loaded.spec.devices)
    if as_json:
        doc = {"target": str(target), "dataset": dataset.name, "split": split}
        doc.update(result.as_dict(dataset.classes))
        doc["device_models"] = models
        print(json.dumps(doc, indent=2))
        return
    summary = titled_table(f"{target}: {dataset.name} {split}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("samples", f"{result.n_samples:,}")
    for name, model in models.items():
        summary.add_row(f"device {escape(name)}", escape(model))
    summary.add_row("accuracy", _percent(result.accuracy))
    summary.add_row("error rate", _percent(result.error_rate))
    unit = "V²" if settings.loss == "squared_error" else "nats"
    summary.add_row(f"loss ({settings.loss}, {unit})", f"{result.loss:.6g}")
    if result.not_converged:
        summary.add_row("[yellow]solves that missed tol[/]", str(result.not_converged))
    out.print(summary)
    confusion = titled_table("confusion matrix (rows: true class, columns: predicted)")
    confusion.add_column("true")
    for c in dataset.classes:
        confusion.add_column(escape(c), justify="right")
    for c, row in zip(dataset.classes, result.confusion, strict=True):
        confusion.add_row(escape(c), *(str(v) for v in row))
    out.print(confusion)
    per_class = titled_table("per class (recall: the accuracy on the class's samples)")
    for col in ("class", "samples", "predicted", "recall", "precision"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    rows = zip(
        dataset.classes,
        result.confusion.sum(axis=1),
        result.confusion.sum(axis=0),
        result.per_class_accuracy,
        result.per_class_precision,
        strict=True,
    )
    for c, n, predicted, recall, precision in rows:
        per_class.add_row(
            escape(c), f"{n:,}", f"{predicted:,}", _percent(recall), _percent(precision)
        )
    out.print(per_class)


def _eval_monte_carlo(
    loaded: Loaded,
    target: Path,
    split: str,
    limit: int | None,
    spread: Variation,
    trials: int,
    seed: int,
    as_json: bool,
) -> None:
    dataset, x, y, _ = split_samples(loaded.spec, loaded.network, split, limit)
    loss, batch, solver = scoring(loaded.spec, loaded.network, dataset.n_classes)
    result = monte_carlo(loaded.network, x, y, loss, spread, trials, seed, batch, **solver)
    doc = {
        "target": str(target),
        "dataset": dataset.name,
        "split": split,
        "n_samples": len(y),
        "variation": {
            "sigma": spread.sigma,
            "distribution": spread.distribution,
            "stuck_off": spread.stuck_off,
            "stuck_on": spread.stuck_on,
            "seed": seed,
        },
        "device_models": device_models(loaded.spec.devices),
        **result.as_dict(),
    }
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    table = titled_table(
        f"{target}: {dataset.name} {split}, {len(y):,} samples, {trials} programmed chips",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row(
        "programming error",
        f"{spread.distribution}, sigma {100 * spread.sigma:g}%, stuck off "
        f"{100 * spread.stuck_off:g}%, stuck on {100 * spread.stuck_on:g}%, seed {seed}",
    )
    for name, model in doc["device_models"].items():
        table.add_row(f"device {escape(name)} (trained as)", escape(model))
    table.add_row("nominal accuracy", _percent(doc["nominal_accuracy"]))
    table.add_row("mean accuracy", _percent(doc["mean_accuracy"]))
    table.add_row("std", _percent(doc["std_accuracy"]))
    table.add_row("worst accuracy", _percent(doc["worst_accuracy"]))
    table.add_row("best accuracy", _percent(doc["best_accuracy"]))
    out.print(table)


def _eval_ngspice(
    loaded: Loaded, target: Path, split: str, limit: int, jobs: int | None, as_json: bool
) -> None:
    dataset, x, y, _ = split_samples(loaded.spec, loaded.network, split, limit)
    workers = jobs or len(os.sched_getaffinity(0))
    progress = Progress(
        TextColumn(f"ngspice, {workers} at a time"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} netlists"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=as_json,
    )
    with progress:
        task = progress.add_task("ngspice", total=len(y))
        check = check_with_ngspice(
            loaded.network,
            x,
            y,
            workers,
            on_done=lambda: progress.advance(task),
            **solver_settings(loaded.spec),
        )
    doc = {
        "target": str(target),
        "dataset": dataset.name,
        "split": split,
        "backend": "ngspice",
        **check.as_dict(),
    }
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    table = titled_table(
        f"{target}: {dataset.name} {split}, ngspice vs our solver", show_header=False
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("samples", f"{doc['n_samples']:,}")
    table.add_row("accuracy (ngspice)", _percent(doc["accuracy"]))
    table.add_row("accuracy (our solver)", _percent(doc["solver_accuracy"]))
    table.add_row("same predicted class", _percent(doc["agreement"]))
    table.add_row("largest node-voltage difference", f"{doc['max_voltage_difference']:.3g} V")
    table.add_row("solved only from our .nodeset guess", f"{doc['needed_nodeset']}")
    table.add_row("ngspice wall time", f"{doc['seconds']:.1f} s")
    out.print(table)
