"""How elements enter the network's quadratic form: the node map they are stamped through,
and Stamp, a sparse matrix whose entries are linear in an element set's parameters.

A device's ``stamp`` (devices/protocol.py) builds its Stamps from its elements' end nodes
and this map; the network adds them up. Nothing here knows any device's physics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp


class NodeMap(Protocol):
    """What a stamp needs of the network: how each node maps to the unknowns x.

    A node n is either the unknown ``node_var[n]`` scaled by ``node_coef[n]`` (an
    amplifier's gain; -1 where it is fixed), or fixed (``fixed_index[n] >= 0``) at the
    potential ``fixed_const + inputs @ fixed_gain`` of its fixed index.
    """

    n_vars: int
    n_features: int
    fixed: np.ndarray
    node_var: np.ndarray
    node_coef: np.ndarray
    fixed_index: np.ndarray
    fixed_const: np.ndarray
    fixed_gain: sp.csr_matrix


@dataclass
class Stamp:
    """A sparse matrix whose entries are linear in the parameters theta: data = A @ theta."""

    A: sp.csr_matrix  # (stored entries, parameters)
    keys: np.ndarray  # row-major position (row * columns + column) of each stored entry, sorted
    indices: np.ndarray  # the CSR structure of those entries, derived from keys once
    indptr: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def build(cls, rows, cols, coefs, edges, shape: tuple[int, int], n_edges: int) -> Stamp:
        """From COO pieces: entry (rows[k], cols[k]) gains coefs[k] * theta[edges[k]]."""
        flat = joined(rows).astype(np.int64) * shape[1] + joined(cols)
        keys, inverse = np.unique(flat, return_inverse=True)
        del flat  # peak memory: with a million inputs each array here is 16 MB
        A = sp.csr_matrix((joined(coefs), (inverse, joined(edges))), shape=(len(keys), n_edges))
        indptr = np.searchsorted(keys // shape[1], np.arange(shape[0] + 1)).astype(np.int32)
        return cls(A, keys, (keys % shape[1]).astype(np.int32), indptr, shape)

    def matrix(self, g: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((self.A @ g, self.indices, self.indptr), shape=self.shape)

    def dense(self, g: np.ndarray) -> np.ndarray:
        """The matrix as a dense array."""
        out = np.zeros(self.shape[0] * self.shape[1])
        out[self.keys] = self.A @ g
        return out.reshape(self.shape)


def joined(parts: list[np.ndarray]) -> np.ndarray:
    """The pieces as one array (the piece itself when there is one: no copy)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
