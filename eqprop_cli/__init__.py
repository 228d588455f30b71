"""eqprop: analog neural networks of resistors, diodes, sources and amplifiers.

Library use::

    from eqprop_cli import load_network, solve
    network = load_network("circuits/fast-mnist-ideal.toml")
    eq = solve(network, inputs)          # inputs: (batch, features)
    eq.voltages                          # (batch, nodes), volts
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"  # before the imports: modules below read it

from .circuit.graph import Graph, compile_circuit
from .circuit.network import Network
from .circuit.spec import CircuitSpec, load_circuit, parse_circuit
from .errors import CircuitError, EqpropError, InputError
from .solver.equilibrium import Equilibrium, solve


def load_network(path: str | Path) -> Network:
    """Parse, validate, compile and lower a circuit file in one call."""
    return Network(compile_circuit(load_circuit(path)))


__all__ = [
    "CircuitError",
    "CircuitSpec",
    "EqpropError",
    "Equilibrium",
    "Graph",
    "InputError",
    "Network",
    "__version__",
    "compile_circuit",
    "load_circuit",
    "load_network",
    "parse_circuit",
    "solve",
]
