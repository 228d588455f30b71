"""Milliseconds per training step, nothing else: `Trainer.train_step` on consecutive MNIST batches.

Trains N batches of circuits/mnist-ideal.toml at 784-HIDDEN-10 (batch 64 at 100 hidden
nodes, else 32) after one untimed batch, BLAS single-threaded, and prints the thread
CPU milliseconds per step: the figure to compare two checkouts by (run it with
PYTHONPATH at each, alternately), without the interleaving of train_speed.py.

    EQPROP_DATA_DIR=../shared/data python benchmarks/train_steps.py 100 3000
    EQPROP_DATA_DIR=../shared/data python benchmarks/train_steps.py 1024 300
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from eqprop_cli import Network, compile_circuit, load_circuit
from eqprop_cli.learn.samples import training_data
from eqprop_cli.learn.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hidden", type=int)
    parser.add_argument("batches", type=int)
    args = parser.parse_args()
    size = 64 if args.hidden == 100 else 32
    sets = ["training.dataset=mnist", f"hidden.0.size={args.hidden}", f"training.batch_size={size}"]
    spec = load_circuit(ROOT / "circuits" / "mnist-ideal.toml", sets)
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    trainer = Trainer(network, spec, splits, dataset.n_classes)
    x, y = splits["train"]
    steps = len(y) // size
    with threadpool_limits(limits=1, user_api="blas"):
        state = trainer.train_step(trainer.new_state(), x[:size], y[:size])
        start = time.thread_time()
        for k in range(1, args.batches + 1):
            rows = slice((k % steps) * size, (k % steps + 1) * size)
            state = trainer.train_step(state, x[rows], y[rows])
        spent = time.thread_time() - start
    print(f"784-{args.hidden}-10 batch {size}: {1e3 * spent / args.batches:.3f} ms per step")


if __name__ == "__main__":
    main()
