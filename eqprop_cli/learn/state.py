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


RUNNING_KEYS = ("loss", "errors", "samples", "seconds", "not_converged")
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
