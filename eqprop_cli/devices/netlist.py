"""What every device's lines of an ngspice netlist share: number and text formatting,
and ngspice's GMIN (which the diodes' lines take back out)."""

from __future__ import annotations

import re

from ..circuit.params import BOLTZMANN, CHARGE, ZERO_CELSIUS
from ..circuit.units import spice_number as num

# ngspice puts GMIN across every diode; each diode's BD source takes it back out (GMIN=0
# instead makes ngspice's gmin stepping, which clamp-heavy circuits need, never finish)
GMIN = 1e-12
_UNSAFE = re.compile(r"[^\x20-\x7e]")


def text(value: str) -> str:
    """Free text for a comment or a title line: printable ASCII only, so that nothing in
    a name can end the line and start a netlist line of its own (names are validated when
    a circuit is read; this is the second line of defence)."""
    return _UNSAFE.sub("?", value)


def celsius(thermal_voltage: float) -> float:
    """Temperature of a thermal voltage, rounded to 1 nK (27, not 26.99999999999946)."""
    return round(thermal_voltage * CHARGE / BOLTZMANN - ZERO_CELSIUS, 9)


__all__ = ["GMIN", "celsius", "num", "text"]
