"""Iterations per equilibrium during training: sweeps (or Newton steps) per free and nudged solve.

Trains the first N batches of a circuit's [training] recipe exactly as `eqprop
train` does, counting every solve's iterations and method, and prints the mean
iterations per free and per nudged solve, the methods used, how many solves did
not converge, and the time per batch. Run it on two versions of the library
(e.g. PYTHONPATH=<other checkout>) to see what a change of stopping rule costs.

    EQPROP_DATA_DIR=../shared/data python benchmarks/solve_sweeps.py circuits/mnist-ideal.toml 300
"""

from __future__ import annotations

import collections
import importlib
import time

from recipe import arguments, recipe_trainer

import eqprop_cli

train = importlib.import_module("eqprop_cli.learn.train")


def main() -> None:
    args = arguments(__doc__)
    iterations, solves, methods = (
        collections.Counter(),
        collections.Counter(),
        collections.Counter(),
    )
    solve = train.solve

    def counted(*a, **k):
        eq = solve(*a, **k)
        phase = "nudged" if k.get("nudge") is not None else "free"
        iterations[phase] += eq.iterations
        solves[phase] += 1
        methods[eq.method] += 1
        methods["not converged"] += int(not eq.success)
        return eq

    train.solve = counted
    trainer = recipe_trainer(args)
    calls = iter(range(10**9))
    start = time.perf_counter()
    trainer.run(trainer.new_state(), 1, should_stop=lambda: next(calls) >= args.batches)
    seconds = time.perf_counter() - start
    means = {k: round(iterations[k] / solves[k], 2) for k in solves}
    print(
        f"{eqprop_cli.__file__}: {args.batches} batches, {seconds / args.batches * 1e3:.2f} ms "
        f"each; iterations per solve {means}; {dict(methods)}"
    )


if __name__ == "__main__":
    main()
