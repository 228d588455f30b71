"""Sums in numpy's order, for the compiled passes that give numpy's bits.

numpy sums a contiguous row by pairwise summation; a row of at most PAIRWISE_BLOCK
entries is one block of it: eight partial sums and their tree, then the rest in order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

PAIRWISE_BLOCK = 128  # the longest row numpy sums in one block of eight partial sums


@njit(cache=True, inline="always")
def pairwise_row_sum(row):
    """numpy's sum of a row of at most PAIRWISE_BLOCK entries at float64 (its reduction's
    pairwise sum: eight partial sums and their tree where there are eight or more, then the
    rest in order, into the reduction's zero)."""
    n = row.size
    if n < 8:
        total = 0.0
        for i in range(n):
            total += np.float64(row[i])
        return 0.0 + total
    r0, r1, r2, r3 = np.float64(row[0]), np.float64(row[1]), np.float64(row[2]), np.float64(row[3])
    r4, r5, r6, r7 = np.float64(row[4]), np.float64(row[5]), np.float64(row[6]), np.float64(row[7])
    i = 8
    while i < n - n % 8:
        r0, r1 = r0 + np.float64(row[i]), r1 + np.float64(row[i + 1])
        r2, r3 = r2 + np.float64(row[i + 2]), r3 + np.float64(row[i + 3])
        r4, r5 = r4 + np.float64(row[i + 4]), r5 + np.float64(row[i + 5])
        r6, r7 = r6 + np.float64(row[i + 6]), r7 + np.float64(row[i + 7])
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += np.float64(row[i])
        i += 1
    return 0.0 + total
