"""Time and peak memory of `eqprop check` at the largest sizes eqprop-circuit(5) states.

Writes each circuit into a temporary folder and runs `eqprop check` on it as a
separate process under /usr/bin/time, so the figures are whole-process wall
time and peak resident memory. Usage:

    python benchmarks/hostile_bounds.py [--out benchmarks/results/hostile_bounds.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

LAYERED = """\
[circuit]
name = "big"
{description}
[devices.w]
type = "resistor"
g = "1u"
[input]
size = {inputs}
[[hidden]]
name = "h"
size = {hidden}
[output]
size = 1
readout = "single"
[[connections]]
from = "input"
to = "h"
device = "w"
[[connections]]
from = "h"
to = "output"
device = "w"
"""

CASES = {
    "10**6 inputs (2,000,000 input sources and conductances)": {
        "inputs": 1_000_000,
        "hidden": 1,
        "description": "",
    },
    "a 50 MB description": {
        "inputs": 2,
        "hidden": 1,
        "description": 'description = "' + "a" * 50_000_000 + '"',
    },
    "a 2,000,000,000-conductance connection (refused)": {
        "inputs": 1_000_000,
        "hidden": 1000,
        "description": "",
    },
}


def measure(path: Path) -> dict:
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", "eqprop", "check", str(path)],
        capture_output=True,
        text=True,
    )
    seconds, kib = re.findall(r"([\d.]+) (\d+)\s*$", proc.stderr)[-1]
    return {"exit": proc.returncode, "seconds": float(seconds), "peak_MiB": int(kib) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hostile_bounds.json"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            path = Path(tmp) / "circuit.toml"
            path.write_text(LAYERED.format(**case))
            results[name] = measure(path)
            print(f"{name}: {results[name]}", flush=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=2))


if __name__ == "__main__":
    main()
