"""CPU time of a batch's three equilibria (free and two nudged), the solver alone.

Trains 5 batches of a circuit's [training] recipe as `eqprop train` does, then
solves the free and both centred nudged equilibria of batches at those fixed
conductances, N batches, three times, dropping the layered solver's blocks
derived from the conductances before each batch (as a new conductance state
would), and prints the CPU milliseconds per batch of each of the three runs.
Nothing of the EP estimate or optimizer is timed, nor the linear part's
rebuild. Run it with PYTHONPATH at another checkout to compare versions.

    EQPROP_DATA_DIR=../shared/data python benchmarks/batch_solves.py circuits/mnist-ideal.toml 300
"""

from __future__ import annotations

import importlib
import time

import numpy as np
from recipe import arguments, recipe_trainer

import eqprop_cli
from eqprop_cli.solver.equilibrium import solve

train = importlib.import_module("eqprop_cli.learn.train")


def main() -> None:
    args = arguments(__doc__)
    trainer = recipe_trainer(args)
    network, splits = trainer.network, trainer.splits
    x, y = splits["train"]
    size = int(trainer.training.batch_size)
    state = trainer.new_state()
    for k in range(5):
        state = trainer.train_step(
            state, x[k * size : (k + 1) * size], y[k * size : (k + 1) * size]
        )
    beta = trainer.training.beta
    runs = []
    for _ in range(3):
        start = time.thread_time()
        for k in range(args.batches):
            network.linear().plan.blocks.clear()  # as a new conductance state
            rows = slice((k % 50) * size, (k % 50 + 1) * size)
            free = solve(network, x[rows], **trainer.free)
            outputs, first = free.outputs(), None
            for b in (beta, -beta):
                nudge = trainer.loss.nudge(b, outputs, y[rows])
                begin = train.nudged_start(free, first, beta, b)
                first = solve(network, x[rows], x0=begin, nudge=nudge, like=free, **trainer.nudged)
        runs.append(1e3 * (time.thread_time() - start) / args.batches)
    print(f"{eqprop_cli.__file__}: batch {size}, {args.batches} batches at fixed conductances")
    print("three equilibria per batch, CPU ms:", " ".join(f"{r:.3f}" for r in runs))
    print(f"best {np.min(runs):.3f} ms")


if __name__ == "__main__":
    main()
