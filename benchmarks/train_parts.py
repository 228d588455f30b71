"""Where a training step's time goes: CPU milliseconds per batch by part, without a profiler.

Trains N batches of a circuit's [training] recipe exactly as `eqprop train`
does (BLAS single-threaded), with a thread-CPU timer around each part (the
free and nudged equilibria, their set-up, the layered solver's block updates
in Python and, where the checkout has them, its compiled sweep loops, the EP
estimate, the optimizer), and prints milliseconds per batch and
seconds per epoch of each. Parts nest: the set-up and the sweeps are inside
the equilibria. Run it with PYTHONPATH at another checkout to compare
versions.

    EQPROP_DATA_DIR=../shared/data python benchmarks/train_parts.py circuits/kendall2020-mnist.toml 100
"""

from __future__ import annotations

import collections
import importlib
import time

from recipe import arguments, recipe_trainer

import eqprop_cli

train = importlib.import_module("eqprop_cli.learn.train")
solver = importlib.import_module("eqprop_cli.solver.equilibrium")
network_module = importlib.import_module("eqprop_cli.circuit.network")
optim = importlib.import_module("eqprop_cli.learn.optim")

spent: collections.Counter = collections.Counter()


def timed(owner, name: str, label, nested: bool = False) -> None:
    """Replace owner.name by a wrapper that adds its thread CPU time to spent[label(args)]."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.thread_time()
        result = inner(*args, **kwargs)
        spent[("  " if nested else "") + label(args, kwargs)] += time.thread_time() - start
        return result

    setattr(owner, name, wrapper)


def main() -> None:
    args = arguments(__doc__)
    timed(
        train,
        "solve",
        lambda a, k: "nudged equilibria" if k.get("nudge") is not None else "free equilibrium",
    )
    timed(solver.Problem, "__init__", lambda a, k: "set-up of a batch (Problem)", True)
    timed(network_module.Network, "linear", lambda a, k: "  linear part rebuilt", True)
    timed(
        solver._Block,
        "update",
        lambda a, k: "hidden-node diode updates" if a[0].terms else "output updates",
        True,
    )
    if hasattr(solver, "_SweepLoop"):  # the plain sweeps as one compiled loop, where present
        timed(solver._SweepLoop, "run", lambda a, k: "compiled sweep loops", True)
    timed(train.EPEstimator, "__call__", lambda a, k: "EP estimate")
    trainer = recipe_trainer(args)
    splits = trainer.splits
    timed(optim.Chain, "step", lambda a, k: "optimizer")
    timed(trainer, "set_params", lambda a, k: "new conductances into the network")
    x, y = splits["train"]
    size = int(trainer.training.batch_size)
    state = trainer.train_step(trainer.new_state(), x[:size], y[:size])  # warm-up
    steps = len(y) // size  # whole batches in the split: N beyond them wraps around
    spent.clear()
    start = time.thread_time()
    for k in range(1, args.batches + 1):
        rows = slice((k % steps) * size, (k % steps + 1) * size)
        state = trainer.train_step(state, x[rows], y[rows])
    total = time.thread_time() - start
    per_epoch = trainer.steps / args.batches
    print(f"{eqprop_cli.__file__}: batch {size}, {args.batches} batches")
    print(
        f"whole training step: {1e3 * total / args.batches:.2f} ms, {total * per_epoch:.1f} s per epoch"
    )
    for part, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(
            f"  {part}: {1e3 * seconds / args.batches:.2f} ms, {seconds * per_epoch:.1f} s per epoch"
        )


if __name__ == "__main__":
    main()
