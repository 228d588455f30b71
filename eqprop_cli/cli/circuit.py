"""The commands on one circuit: check (what a file holds) and solve (its equilibrium)."""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from ..circuit.network import Network
from ..circuit.params import SOLVER_KEY
from ..errors import EqpropError
from ..io import read_inputs, voltages_csv, write_voltages
from ..learn.samples import dataset_sample
from ..solver.equilibrium import Problem, layered_classes, solve
from .options import (
    CircuitArg,
    ConductancesOpt,
    InputOpt,
    JsonOpt,
    SampleOpt,
    SetOpt,
    SolverMethod,
    Split,
    SplitOpt,
    _load,
    _user_errors,
    app,
    checked_option,
    err,
    out,
    titled_table,
)

TABLE_SAMPLES = 4  # input vectors shown as table columns (80-column terminals)


def _solver_choice(network: Network, method: str) -> str:
    if method != "auto":
        return method
    problem = Problem(network, np.zeros((1, network.n_features)))
    return "layered" if layered_classes(network, problem) is not None else "newton"


@app.command()
@_user_errors
def check(circuit: CircuitArg, as_json: JsonOpt = False, sets: SetOpt = None) -> None:
    """Parse, validate and compile a circuit file; print what it contains.

    Exit code 0 when the circuit is valid, 2 with a located message when not.

    Example: eqprop check circuits/kendall2020-mnist.toml
    """
    network = _load(circuit, sets).network
    graph = network.graph
    spec = graph.spec
    counts = Counter()
    counts["resistor"] = sum(r.count for r in graph.resistors)
    for d in network.diodes:
        counts[f"diode ({d.model.label})"] += len(d.anode)
    counts["voltage source"] = len(graph.vsources)
    counts["current source"] = sum(len(s.plus) for s in graph.isources)
    counts["amplifier"] = len(graph.amplifiers)
    trainable = sum(r.count for r in graph.resistors if r.device.model.trainable)
    # every conductance and every bias current: what a trained circuit is programmed with
    parameters = counts["resistor"] + counts["current source"]
    solver = _solver_choice(network, spec.solver.method)
    summary = {
        "file": str(circuit),
        "name": spec.name,
        "form": spec.form,
        "layers": [{"name": n, "size": s} for n, s in graph.layers],
        "nodes": network.n_nodes,
        "unknowns": network.n_vars,
        "inputs": network.n_features,
        "outputs": int(graph.outputs.shape[0]),
        "readout": graph.readout,
        "elements": {k: v for k, v in counts.items() if v},
        "trainable_conductances": trainable,
        "parameters": parameters,
        "solver": solver,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = titled_table(f"{spec.name or circuit.name} ({spec.form} form)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if spec.form == "layered":
        table.add_row("layers", " - ".join(f"{n} ({s})" for n, s in graph.layers))
    table.add_row("nodes", f"{network.n_nodes} ({network.n_vars} unknowns)")
    table.add_row(
        "inputs / outputs",
        f"{network.n_features} / {graph.outputs.shape[0]} ({graph.readout} readout)",
    )
    for kind, n in counts.items():
        if n:
            table.add_row(kind, f"{n:,}")
    table.add_row("trainable conductances", f"{trainable:,}")
    what = "conductances and bias currents" if counts["current source"] else "conductances"
    table.add_row("parameters", f"{parameters:,} ({what})")
    table.add_row(
        "solver",
        f"{solver} (method = {spec.solver.method}, tol = {spec.solver.tol:g} A, "
        f"vtol = {spec.solver.vtol:g} V)",
    )
    out.print(table)
    out.print("[green]valid[/]")


@app.command(name="solve")
@_user_errors
def solve_command(
    circuit: CircuitArg,
    input: InputOpt = None,
    sample: SampleOpt = None,
    split: SplitOpt = Split.test,
    conductances: ConductancesOpt = None,
    method: Annotated[
        SolverMethod | None,
        typer.Option(help="Solver (default: the file's).", show_default=False),
    ] = None,
    tol: Annotated[
        float | None, typer.Option(help="KCL residual tolerance in amperes (default: the file's).")
    ] = None,
    vtol: Annotated[
        float | None,
        typer.Option(
            help="Tolerance on every node voltage's estimated error, volts (default: the file's)."
        ),
    ] = None,
    max_iter: Annotated[
        int | None, typer.Option(help="Iteration limit (default: the file's).")
    ] = None,
    nodes: Annotated[
        str, typer.Option(help="Show only nodes whose names match this glob, e.g. 'out*'.")
    ] = "*",
    as_json: JsonOpt = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the voltages (samples x shown nodes) to a .npy or .csv file instead "
            "(- : CSV on stdout).",
        ),
    ] = None,
    sets: SetOpt = None,
) -> None:
    """DC operating point for one or more input vectors.

    Prints node voltages (volts) per input vector, with the solver used, its
    iterations, the largest KCL residual (amperes), the estimated largest
    node-voltage error (volts) and the energy (co-content, watts). Converged
    means residual <= tol and estimated error <= vtol. A solve that does not
    converge is reported as a warning and as "converged": false in JSON, and
    the command exits with status 3 (after printing the results).

    The inputs come from --input, or from --sample N of the --split of the
    data set that the file's training section names; --conductances loads a
    conductance map first.

    Example: eqprop solve circuits/xor.toml --input 1,0 --json
    """
    to_stdout = output is not None and str(output) == "-"
    if output is not None and not to_stdout and output.suffix.lower() not in (".npy", ".csv"):
        raise EqpropError(f"--output {output}: expected a .npy or .csv file name, or - for stdout")
    tol = checked_option(tol, "--tol", SOLVER_KEY["tol"])
    vtol = checked_option(vtol, "--vtol", SOLVER_KEY["vtol"])
    max_iter = checked_option(max_iter, "--max-iter", SOLVER_KEY["max_iter"])
    if input is not None and sample is not None:
        raise EqpropError("give one of --input and --sample")
    loaded = _load(circuit, sets, conductances)
    network = loaded.network
    settings = network.graph.spec.solver
    if network.n_features and input is None and sample is None:
        raise EqpropError(
            f"{circuit}: the circuit has {network.n_features} inputs; give them with --input "
            "or --sample"
        )
    if sample is not None:
        inputs, what = dataset_sample(loaded.spec, network, split.value, sample)
        err.print(f"inputs: {what}")
    elif input is not None:
        inputs = read_inputs(input, network.n_features, str(circuit))
    else:
        inputs = np.zeros((1, 0))
    eq = solve(
        network,
        inputs,
        method=method.value if method else settings.method,
        tol=settings.tol if tol is None else tol,
        vtol=settings.vtol if vtol is None else vtol,
        max_iter=settings.max_iter if max_iter is None else max_iter,
    )
    shown = [i for i, n in enumerate(network.node_names) if fnmatch.fnmatchcase(n, nodes)]
    outputs = eq.outputs()
    if not eq.success:
        err.print(f"[yellow]warning:[/] {escape(eq.message)}")
    if to_stdout:
        names = [network.node_names[i] for i in shown]
        sys.stdout.write(voltages_csv(eq.voltages[:, shown], names))
        return
    if output is not None:
        write_voltages(output, eq.voltages[:, shown], [network.node_names[i] for i in shown])
        err.print(
            f"wrote {output}: {len(inputs)} sample(s) x {len(shown)} node(s); {eq.method} solver, "
            f"{eq.iterations} iterations, {int(eq.converged.sum())} of {len(inputs)} converged"
        )
        _exit_unless_converged(eq)
        return
    if as_json:
        samples = [
            {
                "nodes": {network.node_names[i]: float(eq.voltages[b, i]) for i in shown},
                "outputs": outputs[b].tolist(),
                "residual": float(eq.residual[b]),
                "error": float(eq.error[b]),
                "energy": float(eq.energy[b]),
                "converged": bool(eq.converged[b]),
            }
            for b in range(len(inputs))
        ]
        doc = {"method": eq.method, "iterations": eq.iterations, "message": eq.message}
        doc.update(samples[0] if len(samples) == 1 else {"samples": samples})
        print(json.dumps(doc, indent=2))
        _exit_unless_converged(eq)
        return
    columns = min(len(inputs), TABLE_SAMPLES)
    table = Table()
    table.add_column("node")
    for b in range(columns):
        table.add_column(f"input {b} (V)" if len(inputs) > 1 else "voltage (V)", justify="right")
    for i in shown:
        table.add_row(network.node_names[i], *(f"{v:.9g}" for v in eq.voltages[:columns, i]))
    out.print(table)
    if columns < len(inputs):
        out.print(f"(the first {columns} of {len(inputs)} inputs; --output or --json give all)")
    out.print(f"{eq.method} solver, {eq.iterations} iterations")
    for b in range(columns):
        label = f"input {b}: " if len(inputs) > 1 else ""
        out.print(
            f"{label}outputs {np.array2string(outputs[b], precision=6)}\n"
            f"  KCL residual {eq.residual[b]:.3g} A, estimated voltage error {eq.error[b]:.3g} V, "
            f"energy {eq.energy[b]:.9g} W, "
            + ("converged" if eq.converged[b] else "[yellow]not converged[/]")
        )
    _exit_unless_converged(eq)


NOT_CONVERGED = 3  # exit status of `eqprop solve` when some sample did not converge


def _exit_unless_converged(eq) -> None:
    """Exit with NOT_CONVERGED (the results are printed) when a sample missed its tolerances."""
    if not eq.success:
        raise typer.Exit(NOT_CONVERGED)
