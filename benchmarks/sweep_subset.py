"""Recipe sweep on a subset: train each configuration briefly, record its test error.

Each line of the configuration file is a name followed by --set overrides
(KEY=VALUE ...), applied to the circuit on top of the base overrides given
with --set. Results go to a JSON-lines file, one record per configuration:
the overrides, test/train error per epoch, seconds, and where the hidden
nodes sit (percentiles of their free-phase voltages on the test subset).

    EQPROP_DATA_DIR=../shared/data python benchmarks/sweep_subset.py \\
        circuits/kendall2020-mnist.toml configs.txt --out results.jsonl \\
        --set training.train_subset=10000 --set training.epochs=1
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import numpy as np

from eqprop_cli import Network, compile_circuit
from eqprop_cli.circuit.spec import load_circuit
from eqprop_cli.learn.samples import training_data
from eqprop_cli.learn.settings import solver_settings
from eqprop_cli.learn.train import Trainer
from eqprop_cli.solver.equilibrium import solve


def hidden_spread(network: Network, spec, x: np.ndarray) -> list[float]:
    """Percentiles (1, 10, 50, 90, 99) of the hidden nodes' free-phase voltages."""
    eq = solve(network, x, **solver_settings(spec, "free"))
    names = network.node_names
    hidden = [i for i, n in enumerate(names) if n.startswith(spec.hidden[0].name + "_")]
    return [float(v) for v in np.percentile(eq.voltages[:, hidden], [1, 10, 50, 90, 99])]


def run_one(circuit: Path, name: str, sets: list[str]) -> dict:
    spec = load_circuit(circuit, sets)
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    trainer = Trainer(network, spec, splits, dataset.n_classes)
    start = time.perf_counter()
    epochs = []

    def on_epoch(s) -> None:
        row = s.metrics[-1]
        epochs.append({k: row[k] for k in ("epoch", "train_error", "test_error", "seconds")})
        print(name, json.dumps(epochs[-1]), flush=True)

    trainer.run(trainer.new_state(), int(trainer.training.epochs), on_epoch=on_epoch)
    return {
        "name": name,
        "sets": sets,
        "epochs": epochs,
        "test_error": epochs[-1]["test_error"],
        "seconds": time.perf_counter() - start,
        "hidden_volts_p1_p10_p50_p90_p99": hidden_spread(network, spec, splits["test"][0][:500]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("circuit", type=Path)
    parser.add_argument("configs", type=Path, help="Lines: NAME KEY=VALUE ...")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines results file.")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    for line in args.configs.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        try:
            record = run_one(args.circuit, words[0], [*args.sets, *words[1:]])
        except Exception as exc:  # a failed configuration is a result too
            record = {"name": words[0], "sets": words[1:], "error": repr(exc)}
        with args.out.open("a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
