"""A corpus of hostile circuit files and data sets, generated (issue 10).

``circuits()`` gives {name: circuit text}: wrong types and extreme values for
every device parameter and section key, hostile names in every place a name
goes, huge sizes, deep nesting and malformed TOML. ``datasets(folder)`` writes
bad data files and gives {name: path}. Each must be refused with one located
message (or accepted, where it is valid), with nothing written.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from eqprop_cli.circuit.params import SOLVER
from eqprop_cli.devices import DEVICE_KINDS

BASE = """\
[circuit]
name = "base"

[devices.w]
type = "resistor"
g = "1m"

[devices.d]
type = "diode"
model = "shockley"

[devices.clamp]
type = "diode"

[devices.v]
type = "vsource"
value = 0.5

[devices.ib]
type = "isource"
current = "1u"

[devices.amp]
type = "amplifier"
gain = 2.0

[netlist]
inputs = ["x"]
outputs = ["y"]

[[elements]]
name = "R1"
device = "w"
nodes = ["x", "h"]

[[elements]]
name = "A1"
device = "amp"
nodes = ["h", "z"]

[[elements]]
name = "R2"
device = "w"
nodes = ["z", "y"]

[[elements]]
name = "R3"
device = "w"
nodes = ["y", "gnd"]

[[elements]]
name = "R4"
device = "w"
nodes = ["h", "gnd"]

[[elements]]
name = "D1"
device = "d"
nodes = ["y", "gnd"]

[[elements]]
name = "I1"
device = "ib"
nodes = ["y", "gnd"]

[[elements]]
name = "V1"
device = "v"
nodes = ["rail", "gnd"]

[[elements]]
name = "R5"
device = "w"
nodes = ["rail", "y"]
"""

LAYERED = """\
[circuit]
name = "layers"

[devices.w]
type = "resistor"
g = "1m"

[devices.clamp]
type = "diode"

[rails]
vtop = 1.0

[input]
size = 2

[[hidden]]
name = "h"
size = 3
diodes = [{ device = "clamp", anode = "gnd", cathode = "node" }]

[output]
size = 2

[[connections]]
from = "input"
to = "h"
device = "w"

[[connections]]
from = "h"
to = "output"
device = "w"

[training]
dataset = "xor"
epochs = 1
"""

# TOML values of the wrong kind or out of any range
BAD_VALUES = ("[1, 2]", "true", '"nan"', "1e400", "-1e308", '"12 parsecs"')
HOSTILE_NAMES = (
    "R\n.control\nshell touch pwned\n.endc",
    "a\rb",
    "tab\there",
    "nul\u0000",
    "esc\u001b[31m",
    "line\u2028sep",
    "semi;colon",
    "$dollar",
    "..",
    "/abs/path",
    "x" * 10_000,
    "",
    "caf\u00e9",
    "*star",
    ".control",
    "sp ace",
)


def toml_string(text: str) -> str:
    """A TOML basic string holding ``text`` (control characters escaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


def _set(text: str, table: str, line: str) -> str:
    """``text`` with ``line`` added right under the header ``table``."""
    assert table in text, table
    return text.replace(table + "\n", f"{table}\n{line}\n", 1)


def circuits() -> dict[str, str]:
    out: dict[str, str] = {}
    tables = {
        "resistor": "[devices.w]",
        "diode": "[devices.d]",
        "vsource": "[devices.v]",
        "isource": "[devices.ib]",
        "amplifier": "[devices.amp]",
    }
    for kind, table in tables.items():
        for param in DEVICE_KINDS[kind].params:
            for k, value in enumerate(BAD_VALUES[:3] if param.kind == "choice" else BAD_VALUES):
                if param.kind == "bool" and value == "true":
                    continue
                text = BASE
                body = text.split(table + "\n", 1)[1].split("\n\n", 1)[0]
                if f"{param.name} =" in body:  # replace the key the base file sets
                    text = text.replace(
                        f"{table}\n{body}",
                        f"{table}\n"
                        + "\n".join(
                            ln for ln in body.splitlines() if not ln.startswith(param.name + " ")
                        ),
                        1,
                    )
                out[f"{kind}-{param.name}-{k}"] = _set(text, table, f"{param.name} = {value}")
    for param in SOLVER:
        for k, value in enumerate(("-1", "1e400", '"x"')):
            out[f"solver-{param.name}-{k}"] = BASE + f"\n[solver]\n{param.name} = {value}\n"
    for k, name in enumerate(HOSTILE_NAMES):
        quoted = toml_string(name)
        out[f"name-element-{k}"] = BASE.replace('name = "R3"', f"name = {quoted}", 1)
        out[f"name-circuit-{k}"] = BASE.replace('name = "base"', f"name = {quoted}", 1)
        out[f"name-device-{k}"] = BASE.replace("[devices.w]", f"[devices.{quoted}]").replace(
            'device = "w"', f"device = {quoted}"
        )
        out[f"name-node-{k}"] = BASE.replace('nodes = ["y", "gnd"]', f'nodes = ["y", {quoted}]', 1)
        out[f"name-layer-{k}"] = LAYERED.replace('name = "h"', f"name = {quoted}").replace(
            'to = "h"', f"to = {quoted}"
        )
        out[f"name-rail-{k}"] = LAYERED.replace("vtop = 1.0", f"{quoted} = 1.0")
    for k, size in enumerate(("10000000000000", "9223372036854775807", "-1", "0", "1.5", '"4"')):
        out[f"size-input-{k}"] = LAYERED.replace("[input]\nsize = 2", f"[input]\nsize = {size}")
        out[f"size-hidden-{k}"] = LAYERED.replace("size = 3", f"size = {size}")
    for k, (key, value) in enumerate(
        [
            ("epochs", "1000000000000000000000"),
            ("batch_size", "0"),
            ("validation", "1e300"),
            ("train_subset", "-5"),
            ("shift", "1000"),
            ("seed", "-1"),
            ("learning_rate", '"-inf"'),
            ("beta", "0"),
            ("momentum", "1"),
            ("learning_rates", "[1]"),
        ]
    ):
        out[f"training-{key}-{k}"] = LAYERED.replace("epochs = 1", f"epochs = 1\n{key} = {value}")
    for depth in (10, 100, 1000, 100_000):
        out[f"nested-array-{depth}"] = BASE.replace(
            'outputs = ["y"]', "outputs = " + "[" * depth + "]" * depth
        )
        out[f"nested-table-{depth}"] = "x = " + "{a = " * depth + "1" + "}" * depth + "\n"
    out.update(
        {
            "empty": "",
            "not-toml": "this is not toml\n",
            "binary": "\u0000\u0001\u0002garbage\u00ff",
            "bom": "\ufeff" + BASE,
            "crlf": BASE.replace("\n", "\r\n"),
            "duplicate-key": BASE.replace('g = "1m"', 'g = "1m"\ng = "2m"'),
            "both-forms": BASE + LAYERED.split("[rails]", 1)[1],
            "unknown-section": BASE + "\n[spice]\nshell = 'touch pwned'\n",
            "header-injection": BASE.replace('name = "base"', 'name = "base"\n"]\\n[x" = 1'),
            "long-string": BASE.replace(
                'name = "base"', 'name = "base"\ndescription = "' + "a" * 2_000_000 + '"'
            ),
        }
    )
    return out


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def declared_npz(shape: str) -> bytes:
    """An .npz whose x_train header declares ``shape`` while holding 2 x 2 values."""
    raw = _npz({"x_train": np.zeros((2, 2)), "y_train": np.zeros(2, dtype=np.int64)})
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "x_train.npy":
                header = data[:128].decode("latin1").replace("(2, 2)", shape)
                data = header[:127].ljust(127).encode("latin1") + b"\n" + data[128:]
            dst.writestr(info.filename, data)
    return out.getvalue()


def datasets(folder: Path) -> dict[str, Path]:
    """Bad data sets for a 2-input, 2-class circuit, written into ``folder``."""
    files: dict[str, bytes | str] = {
        "huge-header.npz": declared_npz("(100000000000, 4)"),
        "negative-shape.npz": declared_npz("(-1, 2)"),
        "overflow-shape.npz": declared_npz("(9223372036854775807, 9223372036854775807)"),
        "truncated.npz": _npz({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4)})[:100],
        "not-a-zip.npz": b"PK\x03\x04" + b"\x00" * 40,
        "no-labels.npz": _npz({"x_train": np.zeros((4, 2))}),
        "nan.npz": _npz({"x_train": np.full((4, 2), np.nan), "y_train": np.zeros(4, int)}),
        "wrong-width.npz": _npz({"x_train": np.zeros((4, 3)), "y_train": np.zeros(4, int)}),
        "bad-labels.npz": _npz({"x_train": np.zeros((4, 2)), "y_train": np.full(4, -3)}),
        "float-labels.npz": _npz({"x_train": np.zeros((4, 2)), "y_train": np.full(4, 0.5)}),
        "bad-row.csv": "a,b,label\n1,2,0\n1,x,1\n",
        "no-label.csv": "a,b\n1,2\n",
        "empty.csv": "",
        "inf.csv": "a,b,label\n1,inf,0\n0,1,1\n",
        "ragged.csv": "a,b,label\n1,2,0\n1\n",
        "unknown.bin": b"\x00" * 16,
    }
    out = {}
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        out[name] = path
    idx = folder / "idx-folder"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\xff" * 12)
    out["idx-folder"] = idx
    out["missing"] = folder / "nowhere.npz"
    return out
