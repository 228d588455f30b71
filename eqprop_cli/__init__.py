"""eqprop: analog neural networks of resistors, diodes, sources and amplifiers.

The Python API, in the order of the pipeline::

    from eqprop_cli import load_circuit, load_network, solve, Trainer, export_spice
    network = load_network("circuits/xor.toml")   # parse, validate, compile, lower
    eq = solve(network, inputs)                  # inputs: (batch, features)
    eq.voltages                                  # (batch, nodes), volts

Training (``Trainer``, ``training_data``; a whole run into a run directory, as
``eqprop train`` does: ``run_training``), evaluation (``evaluate``), runs
(``load_run``) and export (``export_spice``, ``conductance_map``) are imported on
first use, so that ``import eqprop_cli`` loads only the circuit and the solver.
README.md ("From Python") has a worked example that the tests run.
"""

from __future__ import annotations

import importlib
from pathlib import Path

__version__ = "0.1.0"  # before the imports: modules below read it

from .circuit.graph import Graph, compile_circuit
from .circuit.network import Network
from .circuit.spec import CircuitSpec, load_circuit, parse_circuit
from .errors import CircuitError, EqpropError, InputError
from .solver.equilibrium import Equilibrium, solve

# name -> module that defines it, imported on first use (PEP 562)
_LAZY = {
    "Trainer": "learn.train",
    "run_training": "learn.run",
    "training_data": "learn.samples",
    "evaluate": "learn.evaluate",
    "Evaluation": "learn.evaluate",
    "load_run": "runs.rundir",
    "export_spice": "hardware.spice",
    "run_ngspice": "hardware.spice",
    "conductance_map": "hardware.devicemap",
}
_RENAMED = {"load_run": "load_target"}


def load_network(path: str | Path) -> Network:
    """Parse, validate, compile and lower a circuit file in one call."""
    return Network(compile_circuit(load_circuit(path)))


def __getattr__(name: str) -> object:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CircuitError",
    "CircuitSpec",
    "EqpropError",
    "Equilibrium",
    "Evaluation",
    "Graph",
    "InputError",
    "Network",
    "Trainer",
    "__version__",
    "compile_circuit",
    "conductance_map",
    "evaluate",
    "export_spice",
    "load_circuit",
    "load_network",
    "load_run",
    "parse_circuit",
    "run_ngspice",
    "run_training",
    "solve",
    "training_data",
]
