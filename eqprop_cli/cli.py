"""The `eqprop` command: thin typer commands over the library; rich for display.

Every library error (EqpropError) becomes one message on stderr and exit code 2,
here and nowhere else.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import numpy as np
import typer
from rich.cells import cell_len
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperOption

from . import __version__
from .devicemap import read_map
from .errors import EqpropError
from .io import read_inputs, voltages_csv, write_voltages
from .network import Network
from .runs import Loaded, load_target
from .solve import Problem, layered_classes, solve
from .train import dataset_sample

app = typer.Typer(
    name="eqprop",
    help="Simulate and train analog neural networks of resistors, diodes, sources and "
    "amplifiers: check circuit files, solve their DC equilibrium, train them with "
    "Equilibrium Propagation, evaluate them, export SPICE netlists.",
    epilog="Example: eqprop train circuits/mnist-mini.toml && eqprop eval runs/mnist-mini. "
    "See man eqprop(1).",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
TABLE_SAMPLES = 4  # input vectors shown as table columns (80-column terminals)
PIPE_WIDTH = 100_000  # "unlimited": tables are as wide as their content


class _Console(Console):
    """rich's console, except that output to a pipe or a file is never fitted to a width:
    tables keep every value in full there (on a terminal they fit the window)."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self._width = options.get("width")  # rich took $COLUMNS: `size` honours it on a terminal

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        if self.is_terminal or self._width is not None:
            return size
        return ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


out = _Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay one line, for logs and pipes

CircuitArg = Annotated[
    Path,
    typer.Argument(
        help="Circuit file (TOML, see eqprop-circuit(5)), or a run directory or checkpoint "
        "(the trained circuit).",
        show_default=False,
    ),
]
TargetArg = Annotated[
    Path,
    typer.Argument(
        help="A run directory or checkpoint (trained conductances), or a circuit file "
        "(initial ones).",
        show_default=False,
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a key of the circuit file for this run: KEY=VALUE, dotted key, TOML "
        "value (repeatable), e.g. --set training.epochs=1.",
        metavar="KEY=VALUE",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")]
ConductancesOpt = Annotated[
    Path | None,
    typer.Option(
        "--conductances",
        help="A conductance map (.csv, .json or .npz, as export writes) to load over the "
        "target's conductances: an edited or measured chip.",
        show_default=False,
    ),
]
Split = Literal["train", "validation", "test"]
SplitOpt = Annotated[Split, typer.Option(help="Which split of the run's data set.")]
SampleOpt = Annotated[
    int | None,
    typer.Option(
        "--sample",
        help="Set the inputs to sample N of the run's dataset split.",
        show_default=False,
    ),
]
InputOpt = Annotated[
    str | None,
    typer.Option(
        "--input",
        "-i",
        help="Input vectors: a .npy or .csv file (one vector per row) or a comma list like 0.1,0.5.",
        show_default=False,
    ),
]


def _flag_type(self: TyperOption, ctx: typer.Context) -> str | None:
    """A flag takes no value: its help row shows no type (typer would show <bool>)."""
    return None if self.is_flag else _option_type(self, ctx)


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type


def titled_table(title: str, **options: object) -> Table:
    """A table with a plain-text title that it is at least as wide as, so that the title is
    never wrapped where the width is free (a pipe); on a terminal it fits the window."""
    return Table(title=Text(title), min_width=cell_len(title), **options)


def _user_errors(command):
    """Turn library errors into a message on stderr and exit code 2 (3 for an equilibrium
    that did not converge); Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EqpropError as exc:
            _fail(str(exc), getattr(exc, "exit_code", 2))
        except (typer.Exit, typer.Abort):  # click's exits are RuntimeErrors too
            raise
        except (np.linalg.LinAlgError, ArithmeticError, RuntimeError) as exc:
            # a solve driven outside floating-point range by extreme values: no traceback
            _fail(
                f"numerical failure ({type(exc).__name__}: {exc}); the circuit's values or its "
                "inputs are too extreme for floating-point arithmetic: check the conductances, "
                "device parameters, gains and input scale"
            )
        except MemoryError:
            _fail("out of memory: the circuit or the data set is too large for this machine")
        except KeyboardInterrupt:
            err.print("interrupted; nothing was written")
            raise typer.Exit(130) from None

    return wrapper


def _fail(message: str, code: int = 2) -> NoReturn:
    """One message on stderr, then exit (code 2 unless the error says otherwise)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


def _percent(x: float) -> str:
    return "-" if np.isnan(x) else f"{100 * x:.2f}%"


def _version(value: bool) -> None:
    if value:
        out.print(f"eqprop {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """eqprop: analog neural networks trained by Equilibrium Propagation."""


def _load(target: Path, sets: list[str] | None, conductances: Path | None = None) -> Loaded:
    """The target with --set applied and, with --conductances, a map loaded over it."""
    loaded = load_target(target, list(sets or []))
    if conductances is not None:
        read_map(conductances, loaded.network)
    return loaded


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
        counts[
            f"diode ({'hard clamp' if d.model.hard else type(d.model).__name__.replace('Diode', '').lower()})"
        ] += len(d.anode)
    counts["voltage source"] = len(graph.vsources)
    counts["current source"] = sum(len(s.plus) for s in graph.isources)
    counts["amplifier"] = len(graph.amplifiers)
    trainable = sum(r.count for r in graph.resistors if r.device.params["trainable"])
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
    split: SplitOpt = "test",
    conductances: ConductancesOpt = None,
    method: Annotated[
        Literal["auto", "layered", "newton"] | None,
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

    The inputs come from --input, or from --sample N of the [training] data
    set's --split; --conductances loads a conductance map first.

    Example: eqprop solve circuits/xor.toml --input 1,0 --json
    """
    to_stdout = output is not None and str(output) == "-"
    if output is not None and not to_stdout and output.suffix.lower() not in (".npy", ".csv"):
        raise EqpropError(f"--output {output}: expected a .npy or .csv file name, or - for stdout")
    if tol is not None and not tol > 0:
        raise EqpropError(f"--tol must be a current > 0 A; got {tol:g}")
    if vtol is not None and not vtol > 0:
        raise EqpropError(f"--vtol must be a voltage > 0 V; got {vtol:g}")
    if max_iter is not None and max_iter < 1:
        raise EqpropError(f"--max-iter must be an integer >= 1; got {max_iter}")
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
        inputs, what = dataset_sample(loaded.spec, network, split, sample)
        err.print(f"inputs: {what}")
    elif input is not None:
        inputs = read_inputs(input, network.n_features, str(circuit))
    else:
        inputs = np.zeros((1, 0))
    eq = solve(
        network,
        inputs,
        method=method or settings.method,
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


from . import cli_hardware, cli_sweep, cli_train  # noqa: E402, F401  (they register their commands on `app`)


def main() -> None:
    # overflow in a solve of extreme values shows as NaN and "not converged", not as
    # floating-point warnings on stderr
    np.seterr(all="ignore")
    app()
