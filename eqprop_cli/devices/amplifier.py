"""Bidirectional amplifier from node h to node a: a forward VCVS (V_a = A V_h) and a
backward CCCS that draws 1/A of the current the amplifier delivers at a out of h.

The equilibrium then minimises E_before + E_after / A^2 (the stage weights of
circuit/graph.py), so EP still holds. An amplifier drives its node: that node is
not an unknown of its own (circuit/network.py chains it to h).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..circuit.params import DeviceKind, Param
from .netlist import num, text

AMP_NODE = "xamp"  # internal node between an amplifier's E source and its sense source


@dataclass(frozen=True)
class AmplifierModel:
    """An amplifier device: its forward voltage gain A."""

    gain: float

    conducts_dc = True  # its output follows its input

    def spice_lines(self, k: int, source: str, target: str, label: str) -> list[str]:
        """E (forward V_out = A V_in), a 0 V sense source, F (draws I_out / A from the input)."""
        return [
            f"EA{k} {AMP_NODE}{k} 0 {source} 0 {num(self.gain)} ; {text(label)}",
            f"VA{k} {AMP_NODE}{k} {target} DC 0",
            f"FA{k} {source} 0 VA{k} {num(1.0 / self.gain)}",
        ]


AMPLIFIER = DeviceKind(
    "amplifier",
    "Bidirectional amplifier: forward VCVS of gain A, backward CCCS of 1/A.",
    (Param("gain", "number", "Forward voltage gain A.", 4.0, 0, True),),
    build=lambda values: AmplifierModel(**values),
)
