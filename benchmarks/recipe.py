"""What the per-batch benchmarks share: a circuit, a number of batches and --set
overrides from the command line, and the trainer of the circuit's [training] recipe."""

from __future__ import annotations

import argparse

from eqprop_cli import Network, compile_circuit
from eqprop_cli.circuit.spec import load_circuit
from eqprop_cli.learn.samples import training_data
from eqprop_cli.learn.train import Trainer


def arguments(doc: str) -> argparse.Namespace:
    """CIRCUIT BATCHES [--set KEY=VALUE ...], described by the script's docstring."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("circuit")
    parser.add_argument("batches", type=int)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args()


def recipe_trainer(args: argparse.Namespace) -> Trainer:
    """The trainer of the circuit's [training] recipe (its network and data splits
    with it), as `eqprop train` builds it."""
    spec = load_circuit(args.circuit, args.sets)
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    return Trainer(network, spec, splits, dataset.n_classes)
