"""The input crossbar's update alone: the fused pass against the three passes it replaces.

On an input crossbar of 2 x 784 fixed rows and HIDDEN columns (784-HIDDEN-10,
differential inputs), with arrays of the training's size and a momentum
rule, it times (thread CPU milliseconds per call, the least and the median
of --repeat calls, the caches flushed before each by summing a 64 MB array): learn/crossbar.py's one pass (gradient rows,
rule, column sums and S K), and the unfused path's three kernels one after
another (the gradient expanded to an array, the rule's step on it, the
linear part's pass over the new conductances into a zeroed S K), and for
scale the pass's memory floor, a plain loop with its traffic and the least
arithmetic (``_traffic``: a product row read per feature, its two
conductance rows and their velocity rows read and written, a row of S K
written), and a plain copy of the conductances.

    PYTHONPATH=. python benchmarks/crossbar_pass.py --hidden 1024
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from eqprop_cli.circuit.network import _expand_rows
from eqprop_cli.devices.resistor import _input_terms
from eqprop_cli.learn.crossbar import _update
from eqprop_cli.learn.optim import _step


@njit(cache=True)
def _traffic(G, V, P, SK):
    """For each feature f: v = 0.9 v + P[f] and g -= 0.01 v on rows 2f and 2f + 1, then
    SK[f] = g[2f] - g[2f + 1]: the fused pass's reads and writes, the least arithmetic."""
    for f in range(P.shape[0]):
        p = P[f]
        for k in range(2):
            g, v = G[2 * f + k], V[2 * f + k]
            for j in range(g.size):
                t = 0.9 * v[j] + p[j]
                v[j] = t
                g[j] = g[j] - 0.01 * t
        s = SK[f]
        for j in range(s.size):
            s[j] = G[2 * f, j] - G[2 * f + 1, j]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    dt, n_in, n = np.dtype(args.dtype), 784, args.hidden
    rows, n_vars = 2 * n_in, n + 20
    rng = np.random.default_rng(0)
    P = rng.normal(size=(n_in, n)).astype(dt)
    feature, gain = np.repeat(np.arange(n_in), 2), np.tile([40.0, -40.0], n_in)
    const, dsums, plus = np.zeros(rows), rng.normal(size=n).astype(dt), rng.normal(size=n)
    p = rng.uniform(1e-7, 2e-6, (rows, n)).astype(dt)
    v = np.zeros_like(p)
    factors = np.array([1 / 2e-5, 1, -1e-3, 2e-5, 1], dt)
    decay, bounds = np.array([0.9], dt), np.array([1e-9, 2e-5], dt)
    indptr, indices = np.arange(0, rows + 1, 2), np.arange(rows)
    data, cols, wk = gain.astype(dt), np.arange(n), np.ones(n, dt)
    junk = np.ones(8_000_000)

    def timed(f) -> str:
        f()
        times = []
        for _ in range(args.repeat):
            junk.sum()  # the arrays out of cache, as in training
            start = time.thread_time()
            f()
            times.append(time.thread_time() - start)
        return f"{1e3 * min(times):.2f} (median {1e3 * np.median(times):.2f})"

    def fused() -> None:
        SK = np.empty((n_in, n_vars), dt)
        _update(
            P, feature, gain, const, dsums, plus, False, p, v, factors, decay, bounds,
            indptr, indices, data, cols, 0, wk, np.zeros(n), SK, True,
        )  # fmt: skip

    def unfused() -> None:
        grad = np.empty_like(p)
        _expand_rows(P, feature, gain, const, dsums, plus, False, grad)
        _step(p.reshape(-1), grad.reshape(-1), v.reshape(-1), factors, decay, bounds, False)
        SK = np.zeros((n_in, n_vars), dt)
        _input_terms(p, indptr, indices, data, cols, 0, wk, True, np.zeros(n), SK)

    print(f"input crossbar {rows} x {n} {dt}, least ms per call (thread CPU, caches flushed):")
    print(f"  fused pass (learn/crossbar.py): {timed(fused)}")
    print(f"  expansion, step, linear part's pass: {timed(unfused)}")
    SK = np.empty((n_in, n), dt)
    print(f"  a plain loop with its traffic (the floor): {timed(lambda: _traffic(p, v, P, SK))}")
    print(f"  a copy of the conductances: {timed(p.copy)}")


if __name__ == "__main__":
    main()
