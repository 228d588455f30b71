"""The EP update applied as the chip would: programming pulses and measured voltages.

``Programmer`` turns the trainer's requested change of every device into
signed pulse counts and the device's response (devices.update), as the last
piece of the update chain (learn.optim) on those arrays; connections whose
device has no update model, or the ideal one, take the chain's exact,
clipped step. ``Measurement`` models what the learning circuit reads: the
free nodes' potentials in each phase through read noise and an ADC, and a
nudge of limited precision.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..devices.update import (
    DeviceArrays,
    Response,
    UpdateModel,
    device_arrays,
    device_response,
    program,
    snap_to_levels,
    stream,
)
from .optim import Piece


@dataclass(frozen=True)
class Measurement:
    """How the learning circuit measures the phases (the [training] keys of these names)."""

    read_noise: float = 0.0
    adc_bits: int = 0
    adc_range: float = 1.0
    nudge_error: float = 0.0

    @classmethod
    def of(cls, training) -> Measurement:
        return cls(*(getattr(training, name) for name in cls.__dataclass_fields__))

    @property
    def active(self) -> bool:
        return bool(self.read_noise or self.adc_bits or self.nudge_error)

    def read(self, potentials: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Node potentials as measured: plus read noise, then quantised by the ADC."""
        out = potentials
        if self.read_noise:
            out = out + self.read_noise * rng.standard_normal(out.shape)
        if self.adc_bits:
            lsb = 2.0 * self.adc_range / (2**self.adc_bits - 1)
            out = np.clip(out, -self.adc_range, self.adc_range)
            out = np.rint((out + self.adc_range) / lsb) * lsb - self.adc_range
        return out

    def measured(self, equilibrium, rng: np.random.Generator | None):
        """The equilibrium with its free-node potentials replaced by their measurements."""
        if not (self.read_noise or self.adc_bits):
            return equilibrium
        return replace(equilibrium, unknowns=self.read(equilibrium.unknowns, rng))

    def nudged(self, nudge, rng: np.random.Generator | None):
        """The nudge as applied: its strength (conductance or currents) off by a relative
        Gaussian error of std nudge_error, one draw per phase and batch."""
        if not self.nudge_error:
            return nudge
        factor = 1.0 + self.nudge_error * float(rng.standard_normal())
        current = None if nudge.current is None else nudge.current * factor
        return replace(nudge, beta=nudge.beta * factor, current=current)


class BatchMeasurement:
    """A Measurement bound to one batch's random streams (read noise, nudge)."""

    def __init__(self, measurement: Measurement, seed: int, epoch: int, batch: int):
        self.measurement = measurement
        self.noise = stream(seed, epoch, batch, "read_noise") if measurement.read_noise else None
        self.nudge_rng = stream(seed, epoch, batch, "nudge") if measurement.nudge_error else None

    def nudge(self, nudge):
        return self.measurement.nudged(nudge, self.nudge_rng)

    def read(self, equilibrium):
        return self.measurement.measured(equilibrium, self.noise)


class Programmer:
    """Applies the trainer's requested steps to every trained array, device-aware or not."""

    def __init__(self, models: list[UpdateModel | None], groups: list, sizes: list[int], seed: int):
        self.seed = int(seed)
        self.entries: list[tuple[UpdateModel, DeviceArrays, Response] | None] = []
        for k, (model, group, size) in enumerate(zip(models, groups, sizes, strict=True)):
            if model is None or model.ideal:
                self.entries.append(None)
                continue
            rng = stream(self.seed, 0, k, "variation")
            arrays = device_arrays(model, group.low, group.high, size, rng)
            self.entries.append((model, arrays, device_response(model, arrays)))

    @property
    def active(self) -> bool:
        return any(self.entries)

    def describe(self) -> list[str]:
        """One line per device-aware array, for metadata and eval."""
        return [
            f"{model.preset or model.model} ({model.model}, {model.levels} levels)"
            for model, _, _ in filter(None, self.entries)
        ]

    def prepare(self, params: list[np.ndarray]) -> list[np.ndarray]:
        """Initial conductances as programmed: within each device's bounds, on its levels."""
        return [
            p if e is None else snap_to_levels(p, e[0], e[1])
            for p, e in zip(params, self.entries, strict=True)
        ]

    @property
    def arrays(self) -> list[int]:
        """The numbers of the device-aware arrays."""
        return [k for k, e in enumerate(self.entries) if e is not None]

    def piece(self, groups: list) -> Piece:
        """The update chain's last piece on the device-aware arrays: their steps, normalised
        by each group's scale, programmed as pulses (it counts them)."""
        return Piece(
            "program",
            land=lambda values, steps, where: self.apply(values, steps, groups, *where),
            arrays=frozenset(self.arrays),
        )

    def apply(
        self,
        values: list[np.ndarray],
        steps: dict[int, np.ndarray],
        groups: list,
        epoch: int,
        batch: int,
    ) -> int:
        """Program arrays ``values[k]`` (device-aware) by ``steps[k]`` (normalised by group k's
        scale) in place; returns the pulses sent."""
        rngs = (
            stream(self.seed, epoch, batch, "rounding"),
            stream(self.seed, epoch, batch, "write_noise"),
        )
        pulses = 0
        for k, s in steps.items():
            model, arrays, table = self.entries[k]
            g = groups[k]
            unit = g.scale / (g.high - g.low)  # the steps are normalised by the scale
            v = values[k]
            in_place = v.dtype == np.float64 and v.flags.c_contiguous
            value, count = program(v, s, model, arrays, rngs, table, unit, v if in_place else None)
            if not in_place:
                v[...] = value
            pulses += count
        return pulses

    def state(self) -> dict[str, np.ndarray]:
        """The device-to-device draws (arrays that vary per device), for the checkpoint."""
        out = {}
        for k, e in enumerate(self.entries):
            if e is not None:
                for name, a in e[1].as_dict().items():
                    if a.ndim:
                        out[f"{k}/{name}"] = a
        return out

    def load(self, saved: dict[str, np.ndarray]) -> None:
        """Take the device-to-device draws of a checkpoint (a resumed run's devices); the
        arrays that are already this programmer's own (a run continued in the same process)
        are kept with their Response."""
        changed = set()
        for key, a in saved.items():
            k, name = key.split("/")
            entry = self.entries[int(k)]
            if entry is not None and getattr(entry[1], name) is not a:
                setattr(entry[1], name, a)
                changed.add(int(k))
        for k in changed:  # each array's table once, from all its draws
            model, arrays, _ = self.entries[k]
            self.entries[k] = (model, arrays, device_response(model, arrays))
