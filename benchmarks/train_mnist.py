"""Training benchmark: EP on full MNIST (or any dataset), accuracy per epoch, time, memory.

Runs the library's Trainer exactly as `eqprop train` does (BLAS single-
threaded), for a circuit file plus --set overrides, and writes one JSON
record to benchmarks/results/train_<name>.json: the command, the machine,
metrics of every epoch (train/test loss and error, seconds), and peak
resident memory of the process.

    EQPROP_DATA_DIR=../shared/data python benchmarks/train_mnist.py \\
        circuits/mnist-mini.toml --name ideal-784-100-10 \\
        --set training.dataset=mnist --set training.epochs=10
    # timing only: --max-batches 300 trains that many batches of epoch 1 and
    # extrapolates seconds per epoch (no accuracy); with --versus-ideal, the
    # same circuit with every device update model set to "ideal" is timed on
    # the same batches in the same process, in alternating rounds
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import resource
import sys
import time
from pathlib import Path

import numpy as np

from eqprop_cli import Network, compile_circuit
from eqprop_cli.circuit.spec import load_circuit
from eqprop_cli.learn.samples import training_data
from eqprop_cli.learn.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


def peak_memory_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Parts of a training step, by the function that does them (file suffix, function name).
PARTS = {
    "whole batch (profiled)": ("train.py", "train_step"),
    "equilibria (free and nudged)": ("solve.py", "solve"),
    "  diode I-V evaluations": ("devices.py", "*"),
    "  layered block updates": ("solve.py", "update"),
    "EP estimate": ("train.py", "__call__"),
    "new conductances into the linear part": ("network.py", "set_conductances"),
}


def time_split(profiler: cProfile.Profile, per_epoch: float) -> dict[str, float]:
    """Cumulative seconds per epoch of each part (diode evaluations: their own time)."""
    stats = pstats.Stats(profiler).stats
    out = {}
    for part, (suffix, name) in PARTS.items():
        total = 0.0
        for (path, _, func), (_, _, own, cumulative, _) in stats.items():
            if path.endswith(suffix) and (name == "*" or func == name):
                total += own if name == "*" else cumulative
        out[part] = total * per_epoch
    return out


def versus_ideal(args: argparse.Namespace, spec) -> None:
    """Seconds per batch of the device-aware circuit and of the same circuit with ideal
    devices, timed in alternating rounds (so both see the same machine load): wall-clock
    (the trainer's own timing of its batches) and this process's CPU time (each round's
    call, set-up included; steadier than wall-clock on a shared machine)."""
    ideal_sets = [
        *args.sets,
        *(
            f'devices.{n}.update.model="ideal"'
            for n, d in spec.devices.items()
            if d.type == "resistor"
        ),
    ]
    trainers, states, seconds, cpu = {}, {}, {}, {}
    for name, sets in (("device", args.sets), ("ideal", ideal_sets)):
        s = load_circuit(args.circuit, sets)
        network = Network(compile_circuit(s))
        dataset, splits = training_data(s, network)
        trainers[name] = Trainer(network, s, splits, dataset.n_classes)
        states[name] = trainers[name].new_state()
        seconds[name], cpu[name] = [], []
    rounds = 6
    per_round = max(args.max_batches // rounds, 1)
    for _ in range(rounds):
        for name, trainer in trainers.items():
            before, calls = states[name].running["seconds"], iter(range(10**9))
            start = time.process_time()
            states[name], _ = trainer.run(
                states[name], 1, should_stop=lambda c=calls: next(c) >= per_round
            )
            cpu[name].append((time.process_time() - start) / per_round)
            seconds[name].append((states[name].running["seconds"] - before) / per_round)
    device, ideal = (float(np.median(seconds[k])) for k in ("device", "ideal"))
    device_cpu, ideal_cpu = (float(np.median(cpu[k])) for k in ("device", "ideal"))
    record = {
        "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "numpy": np.__version__,
        "circuit": str(args.circuit),
        "batches_per_round": per_round,
        "seconds_per_batch_by_round": seconds,
        "median_seconds_per_batch": {"device": device, "ideal": ideal},
        "device_over_ideal": device / ideal,
        "cpu_seconds_per_batch_by_round": cpu,
        "median_cpu_seconds_per_batch": {"device": device_cpu, "ideal": ideal_cpu},
        "device_over_ideal_cpu": device_cpu / ideal_cpu,
        "pulses": states["device"].running.get("pulses", 0.0),
    }
    out = ROOT / "benchmarks" / "results" / f"train_{args.name}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"{rounds} rounds of {per_round} batches: device {device * 1e3:.2f} ms, ideal "
        f"{ideal * 1e3:.2f} ms per batch (median), ratio {device / ideal:.2f}; CPU device "
        f"{device_cpu * 1e3:.2f} ms, ideal {ideal_cpu * 1e3:.2f} ms, ratio "
        f"{device_cpu / ideal_cpu:.2f}; wrote {out}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("circuit", type=Path)
    parser.add_argument("--name", required=True, help="Result file: results/train_<name>.json")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-batches", type=int, default=0, help="Time this many batches only.")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="With --max-batches: where the time goes (seconds per epoch by part, cProfile).",
    )
    parser.add_argument(
        "--versus-ideal",
        action="store_true",
        help="With --max-batches: time the circuit against itself with ideal devices, "
        "alternating rounds of the same batches in this one process.",
    )
    args = parser.parse_args()

    spec = load_circuit(args.circuit, args.sets)
    network = Network(compile_circuit(spec))
    dataset, splits = training_data(spec, network)
    trainer = Trainer(network, spec, splits, dataset.n_classes)
    if args.versus_ideal:
        versus_ideal(args, spec)
        return
    t = trainer.training
    record = {
        "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "numpy": np.__version__,
        "circuit": str(args.circuit),
        "dataset": dataset.name,
        "n_train": len(splits["train"][1]),
        "batch_size": t.batch_size,
    }
    start = time.perf_counter()
    if args.max_batches:
        calls = iter(range(10**9))
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        cpu = time.process_time()
        state, _ = trainer.run(
            trainer.new_state(), 1, should_stop=lambda: next(calls) >= args.max_batches
        )
        cpu = time.process_time() - cpu
        if profiler:
            profiler.disable()
            record["profile_seconds_per_epoch"] = time_split(profiler, trainer.steps / state.step)
            for part, seconds in record["profile_seconds_per_epoch"].items():
                print(f"  {part}: {seconds:.1f} s per epoch")
        seconds = state.running["seconds"]
        per_batch = seconds / state.step
        record["timed_batches"] = state.step
        record["seconds_per_batch"] = per_batch
        record["seconds_per_epoch_extrapolated"] = per_batch * trainer.steps
        # CPU time of the process (training runs single-threaded): on shared cores the
        # wall time also counts other jobs' turns, the CPU time much less so
        record["cpu_seconds_per_epoch_extrapolated"] = cpu / state.step * trainer.steps
        print(
            f"{state.step} batches, {per_batch * 1e3:.2f} ms each: {per_batch * trainer.steps:.1f} s "
            f"per epoch ({record['cpu_seconds_per_epoch_extrapolated']:.1f} s of CPU)"
        )
    else:

        def report(s) -> None:
            row = s.metrics[-1]
            print(
                f"epoch {row['epoch']}: train error {100 * row['train_error']:.2f}%  "
                f"test error {100 * row['test_error']:.2f}%  {row['seconds']:.1f} s",
                flush=True,
            )

        state, _ = trainer.run(trainer.new_state(), int(t.epochs), on_epoch=report)
        record["epochs"] = state.metrics
        record["final_test_error"] = state.metrics[-1]["test_error"]
        record["median_seconds_per_epoch"] = float(np.median([m["seconds"] for m in state.metrics]))
    record["wall_seconds"] = time.perf_counter() - start
    record["peak_memory_mib"] = peak_memory_mib()
    out = ROOT / "benchmarks" / "results" / f"train_{args.name}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"peak memory {record['peak_memory_mib']:.0f} MiB; wrote {out}")


if __name__ == "__main__":
    main()
