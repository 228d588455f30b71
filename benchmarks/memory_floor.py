"""The memory floor of the input crossbar's pass at 784-HIDDEN-10: a plain loop with its traffic.

One compiled loop that reads a (784 x HIDDEN) product row per feature, reads and writes
the feature's two conductance rows and their velocity rows, and writes a row of S K:
the bytes of learn/crossbar.py's fused pass with the least arithmetic, against which
`benchmarks/crossbar_pass.py`'s figure is read. Thread CPU milliseconds, least and
median of 15 calls, with the caches flushed before each (summing a 64 MB array) and
warm; and a plain copy of the conductances for scale.

    python benchmarks/memory_floor.py --hidden 1024
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit


@njit(cache=True)
def _traffic(G, V, P, SK):
    """For each feature f: v = 0.9 v + P[f] and g -= 0.01 v on rows 2f and 2f + 1, then
    SK[f] = g[2f] - g[2f + 1]."""
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


def timed(call, flush: np.ndarray | None) -> tuple[float, float]:
    """(least, median) thread CPU ms of 15 calls, ``flush`` summed before each."""
    spent = []
    for _ in range(15):
        if flush is not None:
            flush.sum()
        start = time.thread_time()
        call()
        spent.append(time.thread_time() - start)
    return 1e3 * min(spent), 1e3 * float(np.median(spent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=1024)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    G, V = rng.random((1568, args.hidden)), rng.random((1568, args.hidden))
    P, SK = rng.random((784, args.hidden)), np.empty((784, args.hidden))
    flush = np.ones(8_000_000)
    _traffic(G, V, P, SK)
    for name, call in (
        ("the pass's traffic", lambda: _traffic(G, V, P, SK)),
        ("a copy of the conductances", lambda: np.copyto(V, G)),
    ):
        cold, warm = timed(call, flush), timed(call, None)
        print(
            f"{name}, 1568 x {args.hidden} float64: {cold[0]:.2f} ms least "
            f"({cold[1]:.2f} median) caches flushed, {warm[0]:.2f} ({warm[1]:.2f}) warm"
        )


if __name__ == "__main__":
    main()
