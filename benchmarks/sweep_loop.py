"""The layered solver's compiled sweep loop against the work its sweeps need.

Trains N batches of a circuit's [training] recipe exactly as `eqprop train`
does (BLAS single-threaded), recording every call of the compiled sweep loop
(`_sweep_loop`, its arguments copied), then replays the recorded calls R times
from their recorded state (thread CPU of the compiled calls alone, the least of
the replays) and prints milliseconds per batch, microseconds per sweep and per
call, and beside them what a sweep cannot do without, timed alone on arrays of
the same shapes: the two coupling products with numpy (batch x one class by
one class x the other, both ways) and one pass over batch x class of the
divisions by the diagonal that each update of the larger class makes (numpy's, of
two contiguous arrays). Run it
with PYTHONPATH at another checkout to compare versions.

    EQPROP_DATA_DIR=../shared/data python benchmarks/sweep_loop.py circuits/mnist-ideal.toml 40
    EQPROP_DATA_DIR=../shared/data python benchmarks/sweep_loop.py circuits/mnist-ideal.toml 20 --set hidden.0.size=1024 --set training.batch_size=32
"""

from __future__ import annotations

import copy
import importlib
import time

import numpy as np
from recipe import arguments, recipe_trainer
from threadpoolctl import threadpool_limits

import eqprop_cli

solver = importlib.import_module("eqprop_cli.solver.equilibrium")
REPLAYS = 10
MUTABLE = (0, 3, 9, 10)  # the arguments the loop writes: x, history, out, contraction


def recorded_calls(args) -> list[tuple]:
    """The compiled loop's calls (copies of their arguments) in N training batches."""
    calls = []
    loop = solver._sweep_loop

    def recorder(*arguments):
        calls.append(copy.deepcopy(arguments))
        return loop(*arguments)

    trainer = recipe_trainer(args)
    x, y = trainer.splits["train"]
    size = int(trainer.training.batch_size)
    state = trainer.train_step(trainer.new_state(), x[:size], y[:size])  # warm-up
    solver._sweep_loop = recorder
    try:
        for k in range(1, args.batches + 1):
            rows = slice(k * size, (k + 1) * size)
            state = trainer.train_step(state, x[rows], y[rows])
    finally:
        solver._sweep_loop = loop
    return calls


def restore(work: tuple, recorded: tuple) -> None:
    """Put a call's written arguments back to their recorded values, in place."""
    for i in MUTABLE:
        np.copyto(work[i], recorded[i])
    for mine, theirs in zip(work[4], recorded[4], strict=True):  # the recording's arrays
        if isinstance(mine, np.ndarray):
            np.copyto(mine, theirs)


def per_call(f, repeats: int = 2000) -> float:
    """Seconds per call of f(), the least of five rounds."""
    best = np.inf
    for _ in range(5):
        start = time.thread_time()
        for _ in range(repeats):
            f()
        best = min(best, (time.thread_time() - start) / repeats)
    return best


def main() -> None:
    args = arguments(__doc__)
    with threadpool_limits(limits=1, user_api="blas"):
        calls = recorded_calls(args)
        work = copy.deepcopy(calls)
        sweeps = 0
        for mine, recorded in zip(work, calls, strict=True):
            sweeps += solver._sweep_loop(*mine)[1] - recorded[7]
        best = np.inf
        for _ in range(REPLAYS):
            for mine, recorded in zip(work, calls, strict=True):
                restore(mine, recorded)
            start = time.thread_time()
            for mine in work:
                solver._sweep_loop(*mine)
            best = min(best, time.thread_time() - start)
        x, one, two = calls[0][:3]
        batch = x.shape[0]
        rng = np.random.default_rng(0)
        operands = [(rng.random((batch, c[4].shape[0])), c[4]) for c in (one, two)]
        outs = [np.empty((batch, Q.shape[1])) for _, Q in operands]
        pairs = list(zip(operands, outs, strict=True))
        products = per_call(lambda: [np.dot(v, Q, o) for (v, Q), o in pairs])
        larger = max(len(one[1]), len(two[1]))
        b, a = rng.random((batch, larger)), rng.uniform(1.0, 2.0, (batch, larger))
        quotient = np.empty_like(b)
        divisions = per_call(lambda: np.divide(b, a, out=quotient))
    n = args.batches
    print(f"{eqprop_cli.__file__}: batch {batch}, {n} batches")
    print(
        f"compiled sweep loop: {1e3 * best / n:.3f} ms per batch ({sweeps / n:.2f} sweeps, "
        f"{len(calls) / n:.0f} calls), {1e6 * best / sweeps:.1f} us per sweep, "
        f"{1e6 * best / len(calls):.1f} us per call"
    )
    shapes = " and ".join(f"{v.shape} @ {Q.shape}" for v, Q in operands)
    print(f"  a sweep's coupling products alone ({shapes}): {1e6 * products:.1f} us")
    print(f"  a pass of divisions over batch x {larger}: {1e6 * divisions:.1f} us")
    print(f"  both, times the sweeps: {1e3 * (products + divisions) * sweeps / n:.3f} ms per batch")


if __name__ == "__main__":
    main()
