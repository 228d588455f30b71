"""What changes while a network trains, besides its conductances: the state a checkpoint
saves and the columns of metrics.csv."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrainState:
    """Everything that changes during training besides the network's conductances."""

    epoch: int = 0  # completed epochs
    step: int = 0  # batches done in the current epoch
    optimizer: dict[str, list[np.ndarray]] = field(default_factory=dict)  # by update piece
    running: dict[str, float] = field(default_factory=dict)  # sums over the current epoch
    metrics: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    devices: dict[str, np.ndarray] = field(default_factory=dict)  # device-to-device draws


RUNNING_KEYS = ("loss", "errors", "samples", "seconds", "not_converged", "pulses")
METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_error",
    "validation_loss",
    "validation_error",
    "test_loss",
    "test_error",
    "seconds",
    "samples_per_second",
    "learning_rate",
    "not_converged",
)
DEVICE_COLUMNS = ("pulses", "g_p05", "g_median", "g_p95")
"""Columns of the runs that record programming: pulses sent in the epoch, and percentiles of
the trained conductances (siemens) at its end."""
