"""SI values: parse numbers or strings with SI prefixes ("100k", "2.5u"), format for SPICE."""

from __future__ import annotations

import math
import re

PREFIXES = {
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "µ": 1e-6,  # micro sign
    "μ": 1e-6,  # Greek mu
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
}

_VALUE = re.compile(
    r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([fpnuµμmkMGT]?)\s*([A-Za-zΩ]*)\s*$"
)


def parse_si(value: object, unit: str = "") -> float:
    """Return ``value`` as a float; strings may carry an SI prefix and the unit.

    Case matters for prefixes, as in SI: "m" is milli and "M" is mega.
    "inf" is accepted for quantities that may be infinite; minus infinity only as the
    TOML float -inf (the string "-inf" is refused, as eqprop-circuit(5) says). Raises ValueError
    with a short reason otherwise.
    """
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f'expected a number or a string like "2.5u", not {type(value).__name__}')
    text = value.strip()
    if text.lower() in ("inf", "+inf", "infinity", "+infinity"):
        return math.inf
    if text.lower() in ("-inf", "-infinity"):
        raise ValueError(f'"{value}": minus infinity is the TOML float -inf, without quotes')
    match = _VALUE.match(text)
    if not match:
        raise ValueError(
            f'"{value}" is not a number with an optional SI prefix (e.g. "100k", "2.5u")'
        )
    number, prefix, suffix = match.groups()
    if suffix and suffix not in _unit_spellings(unit):
        raise ValueError(f'"{value}": unit "{suffix}" does not fit; expected {unit or "no unit"}')
    if prefix and "e" not in number.lower():
        # "20u" -> float("20e-6"): correctly rounded (20 * 1e-6 is 1.9999999999999998e-05)
        return float(f"{number}e{round(math.log10(PREFIXES[prefix]))}")
    return float(number) * PREFIXES.get(prefix, 1.0)


def _unit_spellings(unit: str) -> tuple[str, ...]:
    return {"S": ("S",), "V": ("V",), "A": ("A",), "Ω": ("Ω", "Ohm", "ohm"), "K": ("K",)}.get(
        unit, ()
    )


def spice_number(value: float) -> str:
    """Format for a SPICE netlist: exponent notation, never a suffix (no m/Meg trap)."""
    return f"{value:.17e}"
