"""Which samples a circuit's [training] section selects, and how they are scored: the
data set loaded and split as the settings say, one split or one sample of it, and the
loss, batch and solver settings that evaluate it. Shared by training, evaluation, the
solve and export commands and sweeps (none of which needs the trainer for this)."""

from __future__ import annotations

import numpy as np

from ..circuit.network import Network
from ..circuit.spec import CircuitSpec
from ..data.datasets import DataError, Dataset, image_side, load_dataset, split
from ..errors import EqpropError
from .evaluate import Evaluation, evaluate
from .loss import ReadoutLoss
from .settings import data_source, solver_settings, training_settings

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def training_data(spec: CircuitSpec, network: Network) -> tuple[Dataset, Splits]:
    """Load the [training] dataset and split it (subsets, validation) as the settings say."""
    t = training_settings(spec)
    try:
        dataset = load_dataset(*data_source(spec), t.label_column)
    except DataError as exc:
        key = "data_path" if t.data_path is not None else "dataset"
        raise spec.error(("training", key), str(exc)) from None
    if dataset.n_features != network.n_features:
        raise spec.error(
            ("training", "dataset"),
            f'dataset "{t.dataset}" has {dataset.n_features} features per sample but the '
            f"circuit takes {network.n_features} inputs",
        )
    if t.shift and image_side(dataset.n_features) is None:
        raise spec.error(
            ("training", "shift"),
            f'shifting needs square images, but dataset "{t.dataset}" has '
            f"{dataset.n_features} features per sample; set training.shift = 0",
        )
    validation = t.validation
    try:
        splits = split(
            dataset,
            validation=int(validation) if validation >= 1 else validation,
            train_subset=t.train_subset or None,
            test_subset=t.test_subset or None,
            seed=t.seed,
        )
    except DataError as exc:  # located at the key that asked for too many samples
        key = next((k for k in ("train_subset", "test_subset") if k in str(exc)), "validation")
        raise spec.error(("training", key), str(exc)) from None
    return dataset, splits


def split_samples(
    spec: CircuitSpec, network: Network, split: str, limit: int | None = None
) -> tuple[Dataset, np.ndarray, np.ndarray, list[str]]:
    """The samples of one split of the [training] dataset (the first ``limit`` of them)."""
    dataset, splits = training_data(spec, network)
    x, y = splits[split]
    if len(y) == 0:
        raise EqpropError(f"the {split} split is empty (see training.validation and subsets)")
    return dataset, x[:limit], y[:limit], dataset.classes


def dataset_sample(
    spec: CircuitSpec, network: Network, split: str, sample: int
) -> tuple[np.ndarray, str]:
    """Sample ``sample`` of a split of the [training] dataset: its inputs (1, features) and
    a description naming its label."""
    _, x, y, classes = split_samples(spec, network, split)
    if not 0 <= sample < len(y):
        raise EqpropError(
            f"{{sample}} {sample} is out of range: the {split} split has {len(y)} samples "
            f"(0..{len(y) - 1})",
            params=("sample",),
        )
    return x[
        sample : sample + 1
    ], f"sample {sample} of the {split} split, label {classes[y[sample]]}"


def readout_loss(spec: CircuitSpec, network: Network, n_classes: int) -> ReadoutLoss:
    """The circuit's [training] loss on a data set of ``n_classes`` classes: one output per
    class, or an error located at the file's data set key."""
    settings = training_settings(spec)
    n_outputs = len(network.outputs)
    if n_outputs != n_classes:
        key = "data_path" if settings.data_path is not None else "dataset"
        raise spec.error(
            ("training", key),
            f'data set "{settings.dataset}" has {n_classes} classes but the circuit reads out '
            f"{n_outputs} output(s); training and scoring need one output per class",
        )
    return ReadoutLoss(settings, n_outputs, n_classes)


def scoring(spec: CircuitSpec, network: Network, n_classes: int) -> tuple[ReadoutLoss, int, dict]:
    """What scores samples of the circuit: its loss, evaluation batch size and free-phase
    solver settings (the arguments of ``evaluate`` after the samples)."""
    settings = training_settings(spec)
    loss = readout_loss(spec, network, n_classes)
    return loss, settings.eval_batch_size, solver_settings(spec, "free")


def evaluate_split(
    spec: CircuitSpec, network: Network, split: str, limit: int | None = None
) -> tuple[Dataset, Evaluation]:
    """Score one split of the circuit's [training] dataset with its loss and free-phase solver."""
    dataset, x, y, _ = split_samples(spec, network, split, limit)
    loss, batch, solver = scoring(spec, network, dataset.n_classes)
    return dataset, evaluate(network, x, y, loss, batch, **solver)
