"""A plain numpy reference of the algorithm `eqprop train circuits/mnist-ideal.toml` runs.

Deep resistive network with ideal diodes (Scellier 2024's family): inputs as
pixel pairs at +-gain * x volts, hidden nodes clamped to [0 V, vtop] by hard
diodes, trainable bias currents, 20 output nodes read differentially, a
conductance nudge beta to the targets, centred EP, SGD with momentum on
conductances normalised by g_max, cosine schedule. Equilibria by block
coordinate descent with a FIXED number of sweeps (no stopping rule, no
convergence check), everything in float32 (``--dtype`` to change). It shares
no code with eqprop (its own MNIST reader) so that its time per epoch is what
the algorithm costs written naively, and eqprop can be compared against it.

    OPENBLAS_NUM_THREADS=1 python benchmarks/reference_drn.py --epochs 1
    OPENBLAS_NUM_THREADS=1 python benchmarks/reference_drn.py --hidden 100 100 --epochs 1
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import math
import os
import time
from pathlib import Path

import numpy as np

MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip) as an array."""
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = np.frombuffer(raw[4 : 4 + 4 * dims], ">u4").astype(int)
    return np.frombuffer(raw[4 + 4 * dims :], np.uint8).reshape(shape)


def load_mnist(folder: Path, dtype) -> tuple[np.ndarray, ...]:
    """(train images, train labels, test images, test labels), images scaled to [0, 1]."""
    out = []
    for split in ("train", "t10k"):
        x = read_idx(folder / f"{split}-images-idx3-ubyte.gz").reshape(-1, 784)
        out += [(x / 255.0).astype(dtype), read_idx(folder / f"{split}-labels-idx1-ubyte.gz")]
    return tuple(out)


class DRN:
    """Layers of conductances W[l] (sending nodes x receiving nodes) and bias currents."""

    def __init__(self, sizes: list[int], args, dtype):
        rng = np.random.default_rng(args.seed)
        self.args, self.dtype = args, dtype
        fan = [2 * sizes[0], *sizes[1:-1], 2 * sizes[-1]]  # input pairs, output pairs
        self.W = [
            rng.uniform(args.init_low, args.init_high, (a, b)).astype(dtype)
            for a, b in itertools.pairwise(fan)
        ]
        self.I = [np.zeros(n, dtype) for n in fan[1:]]
        self.vel = [np.zeros_like(p) for p in self.W + self.I]

    def relax(self, x, V, sweeps, beta=0.0, target=None):
        """Block coordinate descent: even layers, then odd layers, ``sweeps`` times.

        V: node potentials of every non-input layer, (batch, size) each, updated in place.
        """
        g = self.args.gain
        W, n = self.W, len(self.W)
        a = [W[k].sum(0) + (W[k + 1].sum(1) if k + 1 < n else 0) for k in range(n)]
        W0 = W[0][0::2] - W[0][1::2]  # input pair i at +g x_i and -g x_i
        drive0 = g * (x @ W0) + self.I[0]
        for _ in range(sweeps):
            for parity in (0, 1):
                for k in range(parity, n, 2):
                    s = drive0 if k == 0 else V[k - 1] @ W[k] + self.I[k]
                    if k + 1 < n:
                        s = s + V[k + 1] @ W[k + 1].T
                    z = s / a[k]
                    if k + 1 < n:
                        V[k] = np.clip(z, 0.0, self.args.vtop)
                    elif beta == 0.0:
                        V[k] = z
                    else:  # output pairs, coupled by the nudge conductance beta
                        ap, am = a[k][0::2], a[k][1::2]
                        zp, zm = z[:, 0::2], z[:, 1::2]
                        spread = 1 / ap + 1 / am
                        o = (zp - zm + spread * beta * target) / (1 + beta * spread)
                        excess = beta * (o - target)
                        V[k][:, 0::2] = zp - excess / ap
                        V[k][:, 1::2] = zm + excess / am
        return V

    def step(self, x, labels, lr):
        """One centred-EP update on a batch; returns the free readout."""
        args, B = self.args, len(x)
        target = np.zeros((B, 10), self.dtype)
        target[np.arange(B), labels] = 1.0
        zeros = [np.zeros((B, w.shape[1]), self.dtype) for w in self.W]
        free = self.relax(x, zeros, args.free_sweeps)
        out = free[-1][:, 0::2] - free[-1][:, 1::2]
        plus = self.relax(x, [v.copy() for v in free], args.nudged_sweeps, args.beta, target)
        minus = self.relax(x, [v.copy() for v in free], args.nudged_sweeps, -args.beta, target)
        factor = 1.0 / (2 * args.beta * B)
        grads = []
        for k in range(len(self.W)):  # dE/dW = (V_i - V_j)^2 / 2
            d, s = plus[k] - minus[k], plus[k] + minus[k]
            common = (s * d).sum(0)
            if k == 0:  # sending nodes at +-g x: same in both phases
                cross = args.gain * (x.T @ d)
                gk = np.empty_like(self.W[0])
                gk[0::2] = common - 2 * cross
                gk[1::2] = common + 2 * cross
            else:
                dp, sp = plus[k - 1] - minus[k - 1], plus[k - 1] + minus[k - 1]
                gk = (sp * dp).sum(0)[:, None] + common[None, :] - sp.T @ d - dp.T @ s
            grads.append(0.5 * gk * factor)
        grads += [-(plus[k] - minus[k]).sum(0) * factor for k in range(len(self.I))]  # dE/dI = -V
        scales = [args.g_max] * len(self.W) + [args.i_max] * len(self.I)
        params = self.W + self.I
        for j, (p, grad, scale) in enumerate(zip(params, grads, scales, strict=True)):
            self.vel[j] = args.momentum * self.vel[j] + scale * grad
            low, high = (args.g_min, args.g_max) if j < len(self.W) else (-scale, scale)
            np.clip(p - lr * self.vel[j] * scale, low, high, out=p)
        return out

    def predict(self, x):
        zeros = [np.zeros((len(x), w.shape[1]), self.dtype) for w in self.W]
        V = self.relax(x, zeros, self.args.free_sweeps)
        return np.argmax(V[-1][:, 0::2] - V[-1][:, 1::2], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[100])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--schedule-epochs", type=int, default=10, help="Cosine period.")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3.0)
    parser.add_argument("--free-sweeps", type=int, default=6)
    parser.add_argument("--nudged-sweeps", type=int, default=4)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--max-batches", type=int, default=0, help="Time this many only.")
    parser.add_argument("--data", type=Path, default=MNIST)
    args = parser.parse_args()
    args.__dict__.update(
        gain=40.0, vtop=20.0, beta=1e-6, momentum=0.9, seed=1, init_low=1e-7, init_high=2e-6
    )
    args.__dict__.update(g_min=1e-9, g_max=2e-5, i_max=2e-5)
    dtype = np.dtype(args.dtype)
    x_train, y_train, x_test, y_test = load_mnist(args.data, dtype)
    net = DRN([784, *args.hidden, 10], args, dtype)
    print(
        f"reference DRN 784-{'-'.join(map(str, args.hidden))}-10, {args.dtype}, batch "
        f"{args.batch}, sweeps {args.free_sweeps} free / {args.nudged_sweeps} nudged; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for epoch in range(args.epochs):
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * epoch / args.schedule_epochs))
        order = np.random.default_rng([args.seed, epoch]).permutation(len(y_train))
        steps = -(-len(order) // args.batch)
        if args.max_batches:
            steps = min(steps, args.max_batches)
        start, cpu, errors = time.perf_counter(), time.process_time(), 0
        for s in range(steps):
            pick = order[s * args.batch : (s + 1) * args.batch]
            out = net.step(x_train[pick], y_train[pick], lr)
            errors += int((np.argmax(out, 1) != y_train[pick]).sum())
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        per_epoch = seconds / steps * -(-len(order) // args.batch)
        cpu_per_epoch = cpu / steps * -(-len(order) // args.batch)
        wrong = sum(
            int((net.predict(x_test[i : i + 1000]) != y_test[i : i + 1000]).sum())
            for i in range(0, len(y_test), 1000)
        )
        print(
            f"epoch {epoch + 1}: {per_epoch:.2f} s per epoch ({cpu_per_epoch:.2f} s of CPU time; "
            f"{steps} batches timed), train "
            f"error {100 * errors / (steps * args.batch):.2f}%, test error "
            f"{100 * wrong / len(y_test):.2f}%; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
