"""What the commands share: the app, the consoles, the common arguments and options, and
the one place where library errors become a message and an exit status."""

from __future__ import annotations

import functools
import signal
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import numpy as np
import typer
from rich.cells import cell_len
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperOption

from .. import __version__
from ..circuit.params import Param
from ..errors import EqpropError
from ..hardware.devicemap import read_map
from ..runs.rundir import Loaded, load_target

T = TypeVar("T", int, float)

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


# ---------------------------------------------------------------------- closed choices
# str Enums: typer lists their values as the option's choices and refuses any other;
# commands hand the library ``.value``, a plain string.


class Split(str, Enum):
    """A split of a run's data set."""

    train = "train"
    validation = "validation"
    test = "test"


class SolverMethod(str, Enum):
    """The equilibrium solver (``solve --method``; auto: the file's choice)."""

    auto = "auto"
    layered = "layered"
    newton = "newton"


class ExportFormat(str, Enum):
    """What ``export`` writes: a netlist, or a conductance map in one of three forms."""

    spice = "spice"
    csv = "csv"
    json = "json"
    npz = "npz"


class Backend(str, Enum):
    """Who evaluates: our solver, or ngspice on exported netlists."""

    solver = "solver"
    ngspice = "ngspice"


class Distribution(str, Enum):
    """The Monte Carlo programming error: multiplicative lognormal, or gaussian."""

    lognormal = "lognormal"
    gaussian = "gaussian"


class DatasetName(str, Enum):
    """The data sets ``data fetch`` downloads."""

    mnist = "mnist"
    fashion_mnist = "fashion-mnist"


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


EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: stopped by Ctrl-C
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143: stopped by SIGTERM (kill, timeout, a batch system)


def _user_errors(command):
    """Turn library errors into a message on stderr and exit code 2 (3 for an equilibrium
    that did not converge); Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EqpropError as exc:
            _fail(
                exc.spelled(option_flag) if exc.params else str(exc), getattr(exc, "exit_code", 2)
            )
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
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def checked_option(value: T | None, option: str, key: Param) -> T | None:
    """An option that stands for a file key (--tol for [solver] tol, --beta for
    training.beta), checked as the key is: same kind, bounds and finiteness, one message."""
    if value is None:
        return None
    try:
        return key.coerce(value)
    except ValueError as exc:
        finite = "" if key.kind in ("int", "choice", "bool", "string") else " (finite)"
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise EqpropError(f"{option} must be {exc}{finite}; got {shown}") from None


# library parameters whose option is not their name spelled as a flag
OPTION_OF = {"override": "--set"}


def option_flag(parameter: str) -> str:
    """The option that sets a library parameter: g_range -> --g-range, override -> --set."""
    return OPTION_OF.get(parameter) or "--" + parameter.replace("_", "-")


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
