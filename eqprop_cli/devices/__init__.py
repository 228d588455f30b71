"""Device kinds, one module each: parameter table, typed model, physics, netlist lines.

The contract is written in protocol.py. DEVICE_KINDS is the registry: parsing
looks a file's ``type = ...`` up here, so a new kind is a module and a line below.
"""

from __future__ import annotations

from ..circuit.params import DeviceKind
from .amplifier import AMPLIFIER, AmplifierModel
from .diode import DIODE, DIODE_PARTS, IdealDiode, ShockleyDiode
from .memristor import MEMRISTOR
from .protocol import ConductanceModel, CurrentModel, IVModel, TrainableModel
from .resistor import RESISTOR, Resistor
from .source import ISOURCE, VSOURCE, CurrentSourceModel, VoltageSourceModel

DEVICE_KINDS: dict[str, DeviceKind] = {
    k.name: k for k in (RESISTOR, DIODE, VSOURCE, ISOURCE, AMPLIFIER, MEMRISTOR)
}

__all__ = [
    "DEVICE_KINDS",
    "DIODE_PARTS",
    "AmplifierModel",
    "ConductanceModel",
    "CurrentModel",
    "CurrentSourceModel",
    "IVModel",
    "IdealDiode",
    "Resistor",
    "ShockleyDiode",
    "TrainableModel",
    "VoltageSourceModel",
]
