"""Training speed against its bound: the bare dense products a batch needs vs the library's epoch.

For each size, in one process and interleaved (chunks of batches of the one,
then of the other, so that both see the same load on a shared machine):

- the bound: per batch, the three dense products of the algorithm (as issue
  15 counts them), timed alone with numpy at the training dtype, one
  multiply-add per conductance and sample each: the input term V @ G (batch x
  1,568 input nodes by 1,568 x hidden), the EP outer product of the input
  connection V^T @ dH (1,568 x batch by batch x hidden) and that of the
  readout H^T @ dO (hidden x batch by batch x 20);
- the library: `Trainer.run` on the same batches of MNIST, exactly as
  `eqprop train` runs it (wall time of the batches, evaluation excluded),
  after one untimed batch (the first call of each compiled kernel loads it
  from numba's cache, once per process; its time is printed apart);
- with --reference, `benchmarks/reference_drn.py`'s plain numpy DRN (fixed
  sweeps, no convergence check) training on the same images at the same
  dtype, in the same rounds.

It prints seconds per epoch (60,000 images) of both and their ratio, by wall
time and by the process's CPU time (which a machine shared with other jobs
inflates less), and the load average. BLAS single-threaded, as training runs.

    EQPROP_DATA_DIR=../shared/data python benchmarks/train_speed.py
    EQPROP_DATA_DIR=../shared/data python benchmarks/train_speed.py --max-batches 200 --dtype float32
    EQPROP_DATA_DIR=../shared/data python benchmarks/train_speed.py --size 784-100-10 --reference
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from pathlib import Path

import numpy as np
import reference_drn
from threadpoolctl import threadpool_limits

from eqprop_cli import Network, compile_circuit, load_circuit
from eqprop_cli.learn.samples import training_data
from eqprop_cli.learn.train import Trainer

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"784-100-10": (100, 64), "784-1024-10": (1024, 32)}


def bound_batch(x: np.ndarray, W: np.ndarray, dH: np.ndarray, H: np.ndarray, dO: np.ndarray):
    """The three dense products of one batch."""
    return x @ W, x.T @ dH, H.T @ dO


def reference_net(hidden: int, kind: np.dtype) -> reference_drn.DRN:
    """reference_drn.py's network with its default recipe (that of mnist-ideal.toml)."""
    recipe = argparse.Namespace(
        **dict(gain=40.0, vtop=20.0, beta=1e-6, momentum=0.9, seed=1, init_low=1e-7),
        **dict(init_high=2e-6, g_min=1e-9, g_max=2e-5, i_max=2e-5),
        **dict(free_sweeps=6, nudged_sweeps=4),
    )
    return reference_drn.DRN([784, hidden, 10], recipe, kind)


def measure(
    size: str, circuit: Path, dtype: str | None, max_batches: int, chunk: int, reference: bool
) -> dict:
    hidden, batch = SIZES[size]
    sets = [f"hidden.0.size={hidden}", f"training.batch_size={batch}", "training.dataset=mnist"]
    if dtype is not None:
        sets.append(f"solver.dtype={dtype}")
    spec = load_circuit(circuit, sets)
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    trainer = Trainer(network, spec, splits, dataset.n_classes)
    steps = trainer.steps - 1 if not max_batches else min(max_batches, trainer.steps - 1)
    x_all, y_all = splits["train"]
    kind = np.dtype(dtype or "float64")
    rng = np.random.default_rng(0)
    W = rng.uniform(1e-7, 2e-6, (2 * 784, hidden)).astype(kind)
    dH = rng.standard_normal((batch, hidden)).astype(kind)
    H = rng.standard_normal((batch, hidden)).astype(kind)
    dO = rng.standard_normal((batch, 20)).astype(kind)
    images = [  # the input nodes' potentials: each pixel x as a pair at +40 x and -40 x volts
        np.repeat(40.0 * x_all[k * batch : (k + 1) * batch], 2, axis=1).astype(kind)
        for k in range(min(steps, 200))
    ]
    images = [v * np.tile([1.0, -1.0], 784).astype(kind) for v in images]
    state = trainer.new_state()
    # one batch untimed: the first call of each compiled kernel loads it from numba's cache
    # (or compiles it), once per process, not per epoch
    start = time.process_time()
    once = itertools.count()
    state, _ = trainer.run(state, 1, should_stop=lambda: next(once) >= 1)
    first = time.process_time() - start
    drn = reference_net(hidden, kind) if reference else None
    wall, cpu = np.zeros(3), np.zeros(3)  # (bound, library, reference)
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        start = time.perf_counter(), time.process_time()
        for k in range(done, done + n):
            bound_batch(images[k % len(images)], W, dH, H, dO)
        middle = time.perf_counter(), time.process_time()
        calls = itertools.count()
        state, _ = trainer.run(state, 1, should_stop=lambda c=calls, n=n: next(c) >= n)
        end = time.perf_counter(), time.process_time()
        for k in range(done, done + n) if drn is not None else ():
            rows = slice(k * batch, (k + 1) * batch)
            drn.step(x_all[rows].astype(kind), y_all[rows], 3.0)
        last = time.perf_counter(), time.process_time()
        wall += (middle[0] - start[0], end[0] - middle[0], last[0] - end[0])
        cpu += (middle[1] - start[1], end[1] - middle[1], last[1] - end[1])
        done += n
    scale = trainer.steps / steps
    return {"wall": wall * scale, "cpu": cpu * scale, "batches": steps, "first": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--circuit", type=Path, default=ROOT / "circuits" / "mnist-ideal.toml")
    parser.add_argument("--size", choices=list(SIZES), action="append")
    parser.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        help="Training dtype ([solver] dtype); the bound is timed at the same dtype.",
    )
    parser.add_argument(
        "--max-batches", type=int, default=0, help="Time this many batches (default: an epoch)."
    )
    parser.add_argument("--chunk", type=int, default=20, help="Batches per interleaved chunk.")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="Also time reference_drn.py's plain numpy DRN on the same batches.",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}; "
        "BLAS 1 thread"
    )
    with threadpool_limits(limits=1, user_api="blas"):
        for size in args.size or list(SIZES):
            load = os.getloadavg()[0]
            r = measure(
                size, args.circuit, args.dtype, args.max_batches, args.chunk, args.reference
            )
            (bound, library, ref), (bound_cpu, library_cpu, ref_cpu) = r["wall"], r["cpu"]
            print(
                f"{size} batch {SIZES[size][1]} {args.dtype or 'float64'}: bound "
                f"{bound:.2f} s per epoch, library {library:.2f} s per epoch, ratio "
                f"{library / bound:.2f}; by CPU time {bound_cpu:.2f} s, {library_cpu:.2f} s, "
                f"ratio {library_cpu / bound_cpu:.2f} ({r['batches']} batches timed; load "
                f"average {load:.2f} before, {os.getloadavg()[0]:.2f} after; the first batch, "
                f"untimed: {r['first']:.2f} s of CPU)",
                flush=True,
            )
            if args.reference:
                print(
                    f"  reference_drn.py: {ref:.2f} s per epoch, by CPU time {ref_cpu:.2f} s; "
                    f"library / reference {library / ref:.2f}, by CPU time "
                    f"{library_cpu / ref_cpu:.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
