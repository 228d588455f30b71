"""The [training] settings as the trainer and the run directory read them: the solver's
tolerances per phase, the data set's location, the portable document of a run.

Nothing here imports the trainer, the data sets or the solver: loading a run for
`check` or `solve` reads these and no more.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..circuit.spec import CircuitSpec, TrainingSpec
from ..data.datasets import DATASETS

SPLITS = ("train", "validation", "test")


def training_settings(spec: CircuitSpec) -> TrainingSpec:
    """The file's [training] section, or every default when it has none."""
    return spec.training or TrainingSpec.defaults()


def solver_settings(spec: CircuitSpec, phase: str = "free") -> dict:
    """Solver keyword arguments of the free or nudged phase (training overrides [solver])."""
    t, solver = training_settings(spec), spec.solver
    free_tol = t.free_tol or solver.tol
    free_iter = t.free_max_iter or solver.max_iter
    if phase == "free":
        return {
            "method": solver.method,
            "tol": free_tol,
            "vtol": solver.vtol,
            "max_iter": free_iter,
        }
    return {
        "method": solver.method,
        "tol": t.nudged_tol or free_tol,
        "vtol": solver.vtol,
        "max_iter": t.nudged_max_iter or solver.max_iter,
    }


def data_source(spec: CircuitSpec) -> tuple[str, str | None]:
    """The [training] dataset and data_path with relative paths resolved (absolute): against
    the circuit file's folder, or against the working directory for a value given by --set."""
    t = training_settings(spec)
    overridden = spec.locator.overridden if spec.locator is not None else {}

    def resolve(key: str, value: object) -> str | None:
        if value is None or (key == "dataset" and value in DATASETS):
            return value
        path = Path(str(value)).expanduser()
        from_file = spec.training is not None and ("training", key) not in overridden
        base = Path(spec.path).parent if from_file else Path()
        if from_file and not (base / path).exists() and path.exists():
            base = Path()  # a run made before paths were relative to the file recorded it so
        return os.path.abspath(base / path)

    return resolve("dataset", t.dataset), resolve("data_path", t.data_path)


def portable_document(spec: CircuitSpec) -> dict:
    """The resolved document with the data set's paths made absolute: a run's config.toml,
    which must find its data from any working directory and wherever the run is moved."""
    data = spec.resolved_document()
    if "training" in data:
        dataset, data_path = data_source(spec)
        data["training"] = {**data["training"], "dataset": dataset}
        if data_path is not None:
            data["training"]["data_path"] = data_path
    return data
