"""Solver speed against ngspice on the MNIST circuits (issue acceptance 4).

For each circuit: our batched solve time per sample (median of repeats) at a
given batch size of MNIST test images, with and without building every node
voltage, and peak memory; for the chosen circuits, one `ngspice -b` .op of
the exported netlist of one image, timed as a whole process, its largest
node-voltage difference from ours, and the speed ratio.

    python benchmarks/solve_speed.py                  # all circuits, batch 1000
    (also the time of one call at batch 1, 4 and 32: the sizes training uses)
    python benchmarks/solve_speed.py --batch 100 --circuits circuits/xor.toml --no-ngspice
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from eqprop_cli import Network, compile_circuit, load_network, parse_circuit, solve
from eqprop_cli.hardware.spice import export_spice, parse_raw, spice_node_names

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT.parent / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
CIRCUITS = [
    "circuits/kendall2020-mnist.toml",
    "circuits/fast-mnist-ideal.toml",
    "circuits/fast-mnist-1024.toml",
]


def random_network(nodes: int, seed: int = 0) -> str:
    """A random resistor network (3 resistors per node) with a Shockley diode per 20 nodes."""
    rng = np.random.default_rng(seed)
    edges = {(int(rng.integers(0, i)), i) for i in range(1, nodes)}
    while len(edges) < 3 * nodes:
        a, b = sorted(rng.choice(nodes, 2, replace=False).tolist())
        edges.add((a, b))
    parts = [
        '[circuit]\nname = "random-network"\n',
        '[devices.w]\ntype = "resistor"\ninit = "uniform"\ninit_low = "0.1m"\ninit_high = "1m"\n',
        '[devices.d]\ntype = "diode"\nmodel = "shockley"\nn = 1.8\n',
        '[netlist]\ninputs = ["n0", "n1", "n2", "n3"]\noutputs = ["n10", "n11"]\n',
    ]
    element = '[[elements]]\nname = "{}"\ndevice = "{}"\nnodes = ["{}", "{}"]\n'
    parts += [
        element.format(f"R{k}", "w", f"n{a}", f"n{b}") for k, (a, b) in enumerate(sorted(edges))
    ]
    for k in range(nodes // 20):
        a, b = rng.choice(np.arange(4, nodes), 2, replace=False)
        parts.append(element.format(f"D{k}", "d", f"n{a}", f"n{b}"))
    parts.append(element.format("Rg", "w", f"n{nodes - 1}", "gnd"))
    return "\n".join(parts)


def mnist_images(n: int) -> np.ndarray:
    """First n MNIST test images as (n, 784) floats in [0, 1]; random pixels if MNIST is absent."""
    if not MNIST.exists():
        print(f"note: {MNIST} not found; using uniform random pixels")
        return np.random.default_rng(0).random((n, 784))
    with gzip.open(MNIST, "rb") as fh:
        data = fh.read()
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(-1, 784)
    return images[:n].astype(float) / 255.0


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_solve(network, x, tol, repeats: int, materialise: bool) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        eq = solve(network, x, tol=tol)
        if materialise:
            _ = eq.voltages
        times.append(time.perf_counter() - start)
        assert eq.success, eq.message
    return statistics.median(times)


def peak_memory(network, x, tol) -> float:
    tracemalloc.start()
    eq = solve(network, x, tol=tol)
    _ = eq.voltages
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def ngspice_op(network, x, ours: np.ndarray) -> tuple[float, float]:
    """Seconds for one `ngspice -b` run (whole process) and the largest |dV| from ours."""
    with tempfile.TemporaryDirectory() as tmp:
        cir = Path(tmp) / "c.cir"
        cir.write_text(export_spice(network, x))
        start = time.perf_counter()
        subprocess.run(
            ["ngspice", "-b", "-r", str(Path(tmp) / "op.raw"), str(cir)],
            check=True,
            capture_output=True,
            env=dict(os.environ, SPICE_ASCIIRAWFILE="1"),
        )
        seconds = time.perf_counter() - start
        theirs = parse_raw((Path(tmp) / "op.raw").read_text())
    names = spice_node_names(network)
    diff = max(abs(theirs[n] - ours[i]) for i, n in enumerate(names) if n != "0")
    return seconds, diff


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tol", type=float, default=1e-12, help="KCL tolerance in amperes")
    parser.add_argument("--circuits", nargs="*", default=CIRCUITS)
    parser.add_argument("--ngspice-circuits", nargs="*", default=CIRCUITS[:2])
    parser.add_argument("--no-ngspice", action="store_true")
    parser.add_argument(
        "--random-network",
        type=int,
        default=1000,
        metavar="NODES",
        help="also a random resistor network of this many nodes (netlist form, Newton); 0: none",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    x = mnist_images(args.batch)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}; batch {args.batch}, tol {args.tol:g} A, median of {args.repeats}"
    )
    rows = []
    cases = [(path, x, lambda path=path: load_network(ROOT / path)) for path in args.circuits]
    if args.random_network:
        text = random_network(args.random_network)
        name = f"random network, {args.random_network} nodes"
        inputs = np.random.default_rng(1).uniform(-1, 1, (args.batch, 4))
        cases.append((name, inputs, lambda t=text: Network(compile_circuit(parse_circuit(t)))))
        args.ngspice_circuits.append(name)
    for path, x, build in cases:
        network = build()
        solve(network, x[:8], tol=args.tol)  # warm caches (linear terms)
        lazy = time_solve(network, x, args.tol, args.repeats, materialise=False)
        full = time_solve(network, x, args.tol, args.repeats, materialise=True)
        eq = solve(network, x, tol=args.tol)
        SK = network.linear().SK
        matmul = statistics.median(_timed(lambda x=x, SK=SK: x @ SK) for _ in range(args.repeats))
        row = {
            "circuit": path,
            "batch": args.batch,
            "iterations": eq.iterations,
            "method": eq.method,
            "us_per_sample": lazy / args.batch * 1e6,
            "us_per_sample_all_voltages": full / args.batch * 1e6,
            "us_per_sample_input_matmul": matmul / args.batch * 1e6,
            "peak_mib": peak_memory(network, x, args.tol),
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        for small in (1, 4, 32):  # latency of one call at training-size batches
            calls = [x[i : i + small] for i in range(0, min(len(x), 64 * small), small)]
            start = time.perf_counter()
            for chunk in calls:
                solve(network, chunk, tol=args.tol)
            row[f"ms_per_call_batch_{small}"] = (time.perf_counter() - start) / len(calls) * 1e3
        if not args.no_ngspice and path in args.ngspice_circuits and shutil.which("ngspice"):
            seconds, diff = ngspice_op(network, x[0], eq.voltages[0])
            row.update(
                ngspice_s=seconds, ngspice_max_dv=diff, speedup=seconds / (lazy / args.batch)
            )
        rows.append(row)
        text = (
            f"{path}: {row['method']} ({row['iterations']} {'sweeps' if row['method'] == 'layered' else 'Newton steps'}), {row['us_per_sample']:.1f} us/sample "
            f"({row['us_per_sample_all_voltages']:.1f} with all node voltages; the input matrix "
            f"product alone {row['us_per_sample_input_matmul']:.1f}), peak {row['peak_mib']:.0f} MiB"
        )
        text += (
            "; per call at batch 1/4/32: "
            + "/".join(f"{row[f'ms_per_call_batch_{k}']:.2f}" for k in (1, 4, 32))
            + " ms"
        )
        if "ngspice_s" in row:
            text += (
                f"; ngspice .op {row['ngspice_s']:.2f} s, max |dV| {row['ngspice_max_dv']:.1e} V, "
                f"ratio {row['speedup']:,.0f}x"
            )
        print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
