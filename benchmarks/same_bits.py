"""Whether two checkouts train to the same bits: every checkpoint array equal.

Trains one epoch of circuits/mnist-ideal.toml on the bundled mnist-mini with each
checkout (``eqprop train`` run with PYTHONPATH at it, one BLAS thread) at float64, at
float32 and at 784-1024-10 batch 32, and compares every array of the two checkpoints
with ``np.array_equal`` (``meta``, with its timings, and the checksum over it aside).
Exit status 0 when every array is equal, 1 otherwise.

    python benchmarks/same_bits.py /path/to/before /path/to/after
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "float64": [],
    "float32": ["solver.dtype=float32"],
    "784-1024-10 b32": ["hidden.0.size=1024", "training.batch_size=32"],
}


def runner(checkout: Path) -> tuple[dict, Path]:
    """(environment, working directory) of a Python that imports ``checkout``'s package.

    Both: ``python -m`` puts its working directory first on the path, ahead of
    PYTHONPATH, so run from inside another checkout it would import that one's."""
    env = dict(os.environ, PYTHONPATH=str(checkout), OMP_NUM_THREADS="1")
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env, checkout


def train(checkout: Path, sets: list[str], out: Path) -> np.lib.npyio.NpzFile:
    """One epoch of mnist-ideal on mnist-mini with the package of ``checkout``."""
    env, cwd = runner(checkout)
    command = [
        sys.executable,
        "-m",
        "eqprop_cli",
        "train",
        str(ROOT / "circuits" / "mnist-ideal.toml"),
    ]
    command += ["--epochs", "1", "--set", "training.dataset=mnist-mini", "--out", str(out)]
    for s in sets:
        command += ["--set", s]
    subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return np.load(out / "checkpoint.npz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, sets) in enumerate(CASES.items()):
            a = train(args.before.resolve(), sets, Path(tmp) / f"before-{k}")
            b = train(args.after.resolve(), sets, Path(tmp) / f"after-{k}")
            names = [n for n in a.files if n not in ("meta", "checksum")]
            differ = [n for n in names if n not in b.files or not np.array_equal(a[n], b[n])]
            same &= not differ
            print(
                f"{name}: "
                + (f"all {len(names)} arrays equal" if not differ else f"differ: {differ}")
            )
    print("same bits" if same else "NOT the same bits")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
