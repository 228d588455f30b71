"""Software baseline: the same layer sizes as our analog circuits, trained by backprop in numpy.

A 784-H-10 multilayer perceptron (H = --hidden, 100 or 1024 as in the
circuits) with standard settings:

- ReLU hidden layer, softmax output, cross-entropy loss (mean over the batch);
- Glorot-uniform weights, zero biases;
- SGD with momentum 0.9, constant learning rate 0.05, minibatch 64,
  training set reshuffled every epoch; no weight decay; no augmentation
  unless --shift N, which moves each training image by up to N pixels
  (eqprop's own `training.shift`: `eqprop_cli.data.datasets.shift_images`);
- float32 arithmetic; pixels in [0, 1], not standardised;
- trained on all 60,000 training images, tested on the 10,000 test images
  after every epoch.

It prints the test error and the training time (not counting the error
evaluations) of every epoch and writes the run to
benchmarks/results/mlp_baseline_<dataset>_<hidden>[_<E>epochs][_shift<N>].json
(the latest run replaces the previous one; the epoch count is named when
it is not 10). The data come from eqprop's own loader
(`eqprop_cli.data.datasets.load_dataset`): --data FOLDER, else $EQPROP_DATA_DIR/<dataset>,
the user cache, or for fashion-mnist the Debian package's folder.

    EQPROP_DATA_DIR=../shared/data python benchmarks/mlp_baseline.py --hidden 100
    EQPROP_DATA_DIR=../shared/data python benchmarks/mlp_baseline.py --hidden 1024
    EQPROP_DATA_DIR=../shared/data python benchmarks/mlp_baseline.py --hidden 1024 \
        --epochs 50 --shift 1
    python benchmarks/mlp_baseline.py --hidden 1024 --dataset fashion-mnist

With --update KEY=VALUE (the keys of a circuit's [devices.NAME.update],
eqprop-circuit(5)) the two weight matrices train as the chip would learn:
each weight is one device spanning -W .. W (--weight-range), the SGD step
(the velocity) is sent as programming pulses through the same device model
as eqprop's trainer (eqprop_cli.learn.programming), biases stay exact:

    EQPROP_DATA_DIR=../shared/data python benchmarks/mlp_baseline.py --hidden 100 \
        --update 'preset="taox-hfox"' --update 'rounding="stochastic"' --tag taox
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import tomllib

from eqprop_cli.data.datasets import load_dataset, shift_images
from eqprop_cli.devices.update import UPDATE_KEYS, UpdateModel, describe, with_preset
from eqprop_cli.io import write_atomic
from eqprop_cli.learn.programming import Programmer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MOMENTUM = 0.9


def glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot-uniform weights of shape (fan_in, fan_out)."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)


class MLP:
    """Inputs-hidden-outputs: ReLU hidden layer, softmax cross-entropy, SGD with momentum."""

    def __init__(self, sizes: tuple[int, int, int], rng: np.random.Generator):
        n_in, n_hidden, n_out = sizes
        self.params = [
            glorot(rng, n_in, n_hidden),
            np.zeros(n_hidden, np.float32),
            glorot(rng, n_hidden, n_out),
            np.zeros(n_out, np.float32),
        ]
        self.velocity = [np.zeros_like(p) for p in self.params]

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hidden activations and output logits."""
        w1, b1, w2, b2 = self.params
        hidden = np.maximum(x @ w1 + b1, 0.0)
        return hidden, hidden @ w2 + b2

    def step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        lr: float,
        chip: tuple[Programmer, list, int, int] | None = None,
    ) -> float:
        """One SGD-with-momentum step on a minibatch; returns its mean cross-entropy.

        ``chip``: (programmer, groups, epoch, batch) to apply the step as programming pulses.
        """
        hidden, logits = self.forward(x)
        logits -= logits.max(axis=1, keepdims=True)
        log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        rows = np.arange(len(y))
        loss = -float(log_prob[rows, y].mean())
        d_logits = np.exp(log_prob)
        d_logits[rows, y] -= 1.0
        d_logits /= len(y)
        d_hidden = (d_logits @ self.params[2].T) * (hidden > 0)
        grads = [x.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_logits, d_logits.sum(0)]
        device = chip[0].arrays if chip is not None else []
        for k, (param, velocity, grad) in enumerate(
            zip(self.params, self.velocity, grads, strict=True)
        ):
            velocity *= MOMENTUM
            velocity -= lr * grad
            if k not in device:
                param += velocity
        if chip is not None:
            programmer, groups, epoch, batch = chip
            steps = {k: self.velocity[k] for k in device}
            programmer.apply(self.params, steps, groups, epoch, batch)  # in place
        return loss

    def error(self, x: np.ndarray, y: np.ndarray, batch: int = 2000) -> float:
        """Fraction of samples misclassified."""
        wrong = sum(
            int((self.forward(x[i : i + batch])[1].argmax(1) != y[i : i + batch]).sum())
            for i in range(0, len(x), batch)
        )
        return wrong / len(x)


def update_model(pairs: list[str], parser: argparse.ArgumentParser) -> UpdateModel:
    """The device update model of --update KEY=VALUE pairs, validated as a circuit file's."""
    params = {p.name: p for p in UPDATE_KEYS}
    table = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            table[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError as exc:
            parser.error(f"--update {pair}: not a TOML value ({exc})")
    if "preset" in table:
        try:
            table = with_preset(params["preset"].coerce(table["preset"]), table)
        except ValueError as exc:
            parser.error(f"--update preset: must be {exc}")
    values = {p.name: p.default for p in UPDATE_KEYS}
    for key, value in table.items():
        if key not in params:
            parser.error(f"--update {key}: unknown key; allowed: {', '.join(params)}")
        try:
            values[key] = params[key].coerce(value)
        except ValueError as exc:
            parser.error(f"--update {key}: must be {exc}")
    return UpdateModel(**{**values, "preset": values["preset"] or ""})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    parser.add_argument("--data", type=Path, help="folder of the IDX files (default: the loader's)")
    parser.add_argument("--hidden", type=int, default=100, help="hidden units (100 or 1024)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", type=int, default=0, help="augmentation: pixels (0: none)")
    parser.add_argument(
        "--update",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="device update model of the weights: a key of [devices.NAME.update] and its TOML "
        "value (repeatable)",
    )
    parser.add_argument(
        "--weight-range", type=float, default=1.0, help="with --update: weights span -W .. W"
    )
    parser.add_argument("--tag", default="", help="with --update: result file suffix")
    args = parser.parse_args()
    if args.update and not args.tag:
        parser.error("--update needs --tag (the result file's suffix)")
    model = update_model(args.update, parser) if args.update else None

    data = load_dataset(args.dataset, args.data)
    x_train, x_test = data.x_train.astype(np.float32), data.x_test.astype(np.float32)
    y_train, y_test = data.y_train, data.y_test
    rng = np.random.default_rng(args.seed)
    mlp = MLP((x_train.shape[1], args.hidden, len(data.classes)), rng)
    chip = None
    if model is not None:
        w, inf = args.weight_range, np.inf
        groups = [
            SimpleNamespace(scale=1.0, low=lo, high=hi) for lo, hi in [(-w, w), (-inf, inf)] * 2
        ]
        sizes = [p.size for p in mlp.params]
        programmer = Programmer([model, None, model, None], groups, sizes, args.seed)
        mlp.params = [np.asarray(p, np.float32) for p in programmer.prepare(mlp.params)]
        chip = (programmer, groups)
    settings = (
        f"{x_train.shape[1]}-{args.hidden}-{len(data.classes)} MLP, ReLU, softmax cross-entropy, "
        f"Glorot-uniform init, SGD lr {args.lr:g} momentum {MOMENTUM}, batch {args.batch_size}, "
        f"float32, seed {args.seed}"
        + (f", images shifted by up to {args.shift} px" if args.shift else "")
        + (
            f", weights as devices in -{args.weight_range:g}..{args.weight_range:g} ({describe(model)})"
            if model
            else ""
        )
    )
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(
        f"{args.dataset}: {len(x_train):,} train / {len(x_test):,} test; {settings}\n"
        f"machine: {machine}, numpy {np.__version__}",
        flush=True,
    )

    def augment(x: np.ndarray) -> np.ndarray:
        return shift_images(x, args.shift, rng).astype(np.float32) if args.shift else x

    epochs = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(x_train))
        losses = [
            mlp.step(
                augment(x_train[batch]),
                y_train[batch],
                args.lr,
                chip and (*chip, epoch - 1, k),
            )
            for k, batch in enumerate(
                np.array_split(order, range(args.batch_size, len(order), args.batch_size))
            )
        ]
        seconds = time.perf_counter() - start
        row = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "train_error": mlp.error(x_train, y_train),
            "test_error": mlp.error(x_test, y_test),
            "seconds": seconds,
        }
        epochs.append(row)
        print(
            f"epoch {epoch:2d}: train loss {row['train_loss']:.4f}, train error "
            f"{row['train_error']:.2%}, test error {row['test_error']:.2%}, {seconds:.1f} s",
            flush=True,
        )
    result = {
        "command": shlex.join(["python", "benchmarks/mlp_baseline.py", *sys.argv[1:]]),
        "dataset": args.dataset,
        "data": data.source,
        "settings": settings,
        "machine": machine,
        "numpy": np.__version__,
        "final_test_error": epochs[-1]["test_error"],
        "median_seconds_per_epoch": float(np.median([row["seconds"] for row in epochs])),
        "epochs": epochs,
    }
    epochs_part = f"_{args.epochs}epochs" if args.epochs != 10 else ""
    shift_part = f"_shift{args.shift}" if args.shift else ""
    tag = f"_{args.tag}" if args.tag else ""
    path = RESULTS / f"mlp_baseline_{args.dataset}_{args.hidden}{epochs_part}{shift_part}{tag}.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    print(
        f"final test error {result['final_test_error']:.2%}, "
        f"median {result['median_seconds_per_epoch']:.1f} s per epoch (training only, the median "
        f"because the machine may be shared); wrote {path.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
