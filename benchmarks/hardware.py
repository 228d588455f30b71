"""Hardware benchmark: a trained run's test accuracy after quantisation to N levels, under
programming variation (Monte Carlo), and checked by ngspice on some test samples.

    EQPROP_DATA_DIR=../shared/data eqprop train circuits/mnist-ideal.toml --out runs/ideal
    EQPROP_DATA_DIR=../shared/data python benchmarks/hardware.py runs/ideal --name ideal-784-100-10

Writes benchmarks/results/hardware_<name>.json: the command, the machine, and
for each level count the accuracy with the device's own range [g_min, g_max]
and with the range of the trained conductances; for each sigma the nominal,
mean, std and worst accuracy over the trials; the ngspice comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from eqprop_cli.hardware.devicemap import conductance_map, level_ranges, quantise
from eqprop_cli.hardware.ngspice import check_with_ngspice
from eqprop_cli.hardware.variation import Variation, monte_carlo
from eqprop_cli.learn.evaluate import evaluate
from eqprop_cli.learn.samples import scoring, split_samples
from eqprop_cli.runs.rundir import load_target

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="A run directory of eqprop train.")
    parser.add_argument("--name", required=True, help="Result file: results/hardware_<name>.json")
    parser.add_argument("--levels", type=int, nargs="*", default=[16, 32, 64, 256])
    parser.add_argument("--sigmas", type=float, nargs="*", default=[0.02, 0.05, 0.10])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--ngspice", type=int, default=20, help="Test samples run in ngspice.")
    args = parser.parse_args()

    loaded = load_target(args.run)
    spec, network = loaded.spec, loaded.network
    dataset, x, y, _ = split_samples(spec, network, "test")
    loss, batch, solver = scoring(spec, network, dataset.n_classes)
    trained = [g.copy() for g in network.g]
    nominal = evaluate(network, x, y, loss, batch, **solver).accuracy
    print(f"nominal test accuracy {100 * nominal:.2f}%")
    record = {
        "command": "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "run": str(args.run),
        "circuit": spec.name,
        "dataset": dataset.name,
        "n_test": len(y),
        "nominal_accuracy": nominal,
        "levels": [],
        "variation": [],
    }
    fitted = (min(float(g.min()) for g in trained), max(float(g.max()) for g in trained))
    for count in args.levels:
        row = {"levels": count}
        for label, g_range in (("device_range", None), ("trained_range", fitted)):
            network.set_conductances(trained)
            levels = level_ranges(network, count, g_range)
            quantise(conductance_map(network), levels)
            accuracy = evaluate(network, x, y, loss, batch, **solver).accuracy
            row[label] = {"range_S": list(levels.ranges[0]), "accuracy": accuracy}
        record["levels"].append(row)
        print(
            f"{count:4d} levels: {100 * row['device_range']['accuracy']:.2f}% "
            f"(device range), {100 * row['trained_range']['accuracy']:.2f}% (trained range)"
        )
    network.set_conductances(trained)
    for sigma in args.sigmas:
        for distribution in ("lognormal",):
            start = time.perf_counter()
            result = monte_carlo(
                network, x, y, loss, Variation(sigma, distribution), args.trials, 0, batch, **solver
            )
            row = {"sigma": sigma, "distribution": distribution, **result.as_dict()}
            row["seconds"] = time.perf_counter() - start
            record["variation"].append(row)
            print(
                f"sigma {100 * sigma:g}%: mean {100 * row['mean_accuracy']:.2f}% "
                f"std {100 * row['std_accuracy']:.2f}% worst {100 * row['worst_accuracy']:.2f}%"
            )
    if args.ngspice:
        check = check_with_ngspice(
            network, x[: args.ngspice], y[: args.ngspice], len(os.sched_getaffinity(0)), **solver
        )
        record["ngspice"] = check.as_dict()
        print(f"ngspice: {json.dumps(record['ngspice'])}")
    out = ROOT / "benchmarks" / "results" / f"hardware_{args.name}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
