"""Fine-tuning: a new run that starts from a trained run's conductances and bias currents.

The new settings (--set) may change anything that keeps the circuit's structure:
training keys, the solver, device parameters (ranges, diode models, amplifier
gains, rail voltages). They may not change which devices connect which nodes,
since the trained arrays would no longer fit: that is refused with a message
naming what differs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..circuit.graph import Graph, compile_circuit
from ..circuit.network import Network
from ..circuit.spec import CircuitSpec, parse_circuit
from ..runs.rundir import CHECKPOINT, Loaded, RunError, load_target


def _layout(graph: Graph) -> dict[str, object]:
    """The structure of a circuit, part by part: what must match for trained arrays to fit."""

    def nodes(*arrays: np.ndarray) -> tuple:
        return tuple(tuple(np.asarray(a).ravel().tolist()) for a in arrays)

    return {
        "nodes": tuple(graph.nodes),
        "inputs": graph.n_features,
        "outputs": nodes(graph.outputs),
        "resistor sets": tuple((r.name, r.dense, *nodes(r.rows, r.cols)) for r in graph.resistors),
        "current sources": tuple(nodes(s.plus, s.minus) for s in graph.isources),
        "diodes": tuple(nodes(d.anode, d.cathode) for d in graph.diodes),
        "amplifiers": tuple((a.source, a.target) for a in graph.amplifiers),
        "voltage sources": tuple((v.plus, v.minus, v.feature) for v in graph.vsources),
    }


def structure_changes(before: Graph, after: Graph) -> list[str]:
    """The parts of the circuit's structure that differ (empty when the arrays fit)."""
    a, b = _layout(before), _layout(after)
    return [part for part in a if a[part] != b[part]]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (what `sha256sum` prints)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _carry(
    old_sets: list, new_sets: list, trained: list[np.ndarray], fresh: list[np.ndarray]
) -> tuple[list[np.ndarray], int]:
    """The new arrays: the trained ones where the parent trained the set, clipped into the
    new device's range (g_min..g_max, i_min..i_max), else the fresh ones; and how many
    trained values the clipping moved."""
    out, moved = [a.copy() for a in fresh], 0
    for k, (old, new) in enumerate(zip(old_sets, new_sets, strict=True)):
        if old.device.model.trainable:
            out[k] = np.clip(trained[k], new.device.model.low, new.device.model.high)
            moved += int(np.count_nonzero(out[k] != trained[k]))
    return out, moved


@dataclass
class FineTune:
    """The parent run and the new circuit, loaded with the parent's trained parameters."""

    parent: Loaded
    spec: CircuitSpec
    network: Network
    clipped: int  # trained values moved into the new device ranges
    record: dict  # what the new run's metadata says about its parent


def fine_tune(target: Path, overrides: list[str]) -> FineTune:
    """Load run or checkpoint ``target`` and its circuit with ``overrides`` applied, and start
    the new circuit from the parent's trained conductances and currents.

    Arrays of devices that the parent trained are copied (clipped into the new
    device ranges); those it held fixed keep the new circuit's values, so a
    --set on a fixed device takes effect.
    """
    parent = load_target(target)
    if parent.checkpoint is None:  # pragma: no cover - callers pass runs and checkpoints
        raise RunError(f"{target}: not a run directory or checkpoint")
    spec = parse_circuit(parent.checkpoint.config, parent.spec.path, overrides)
    network = Network(compile_circuit(spec))
    changes = structure_changes(parent.network.graph, network.graph)
    if changes:
        raise RunError(
            f"{target}: the new settings change the circuit's structure ({', '.join(changes)}), "
            "so the trained conductances do not fit it; fine-tuning may change training and "
            "solver keys and device parameters, not layers, connections or elements. Train the "
            "changed circuit from its file instead"
        )
    before, after = parent.network, network
    g, moved_g = _carry(before.resistors, after.resistors, before.g, after.g)
    currents, moved_i = _carry(before.isources, after.isources, before.currents, after.currents)
    network.set_conductances(g)
    network.set_currents(currents)
    clipped = moved_g + moved_i
    checkpoint = target if target.suffix == ".npz" else target / CHECKPOINT
    record = {
        "run": str(parent.run_dir),
        "checkpoint": str(checkpoint),
        "sha256": file_sha256(checkpoint),
        "epoch": parent.checkpoint.state.epoch,
        "step": parent.checkpoint.state.step,
    }
    return FineTune(parent, spec, network, clipped, record)
