"""Milliseconds per training step, nothing else: `Trainer.train_step` on consecutive batches.

Trains N batches of a circuit's [training] recipe (plus --set overrides) after one
untimed batch, BLAS single-threaded, and prints the thread CPU milliseconds per step:
the figure to compare two checkouts by (run it with PYTHONPATH at each, alternately),
without train_speed.py's interleaving or train_parts.py's timers around the parts.

    EQPROP_DATA_DIR=../shared/data python benchmarks/train_steps.py circuits/mnist-ideal.toml 3000
    EQPROP_DATA_DIR=../shared/data python benchmarks/train_steps.py circuits/mnist-ideal.toml 300 --set hidden.0.size=1024 --set training.batch_size=32
"""

from __future__ import annotations

import time

from recipe import arguments, recipe_trainer
from threadpoolctl import threadpool_limits


def main() -> None:
    args = arguments(__doc__)
    trainer = recipe_trainer(args)
    x, y = trainer.splits["train"]
    size = int(trainer.training.batch_size)
    steps = len(y) // size
    with threadpool_limits(limits=1, user_api="blas"):
        state = trainer.train_step(trainer.new_state(), x[:size], y[:size])
        start = time.thread_time()
        for k in range(1, args.batches + 1):
            rows = slice((k % steps) * size, (k % steps + 1) * size)
            state = trainer.train_step(state, x[rows], y[rows])
        spent = time.thread_time() - start
    print(f"{args.circuit}, batch {size}: {1e3 * spent / args.batches:.3f} ms per step")


if __name__ == "__main__":
    main()
