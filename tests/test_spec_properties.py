"""Property tests of the circuit-file contract: every file compiles or fails cleanly.

Whatever a circuit file holds, ``load_network`` either succeeds or raises an
EqpropError (a located CircuitError for file faults) whose message starts with
the file's path; never any other exception. Through the CLI, ``eqprop check``
exits 0 or 2 and never shows a traceback.

Examples come from two sources: random TOML documents assembled from pieces of
the real schema (and misspellings, wrong types, odd SI strings, broken syntax),
and mutations of the circuits shipped in circuits/.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from eqprop_cli import load_network
from eqprop_cli.circuit.params import SOLVER
from eqprop_cli.circuit.spec import (
    CIRCUIT_KEYS,
    CONNECTION_KEYS,
    DIODE_ATTACH_KEYS,
    ELEMENT_KEYS,
    GROUND_NAMES,
    HIDDEN_KEYS,
    INPUT_KEYS,
    NETLIST_KEYS,
    OUTPUT_KEYS,
    TOP_KEYS,
)
from eqprop_cli.cli import app
from eqprop_cli.devices import DEVICE_KINDS
from eqprop_cli.errors import EqpropError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CIRCUITS = Path(__file__).resolve().parent.parent / "circuits"

# CI runs a fixed, derandomized sample; EQPROP_FUZZ=N runs N times as many random examples.
SCALE = int(os.environ.get("EQPROP_FUZZ", "0") or 0)
PROFILE = dict(deadline=None, derandomize=not SCALE, database=None, print_blob=True)


def examples(n: int) -> int:
    return n * max(SCALE, 1)


SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

# --------------------------------------------------------------------------- the oracle


def assert_clean(path: Path) -> None:
    """load_network succeeds, or fails with an EqpropError that starts with the path."""
    try:
        load_network(path)
    except EqpropError as exc:
        message = str(exc)
        assert message.startswith(str(path)), message
        assert "\n" not in message.strip(), message
        line = getattr(exc, "line", None)
        if line is not None:  # a located error points into the file
            lines = path.read_text(encoding="utf-8").count("\n") + 1
            assert 1 <= line <= lines, (line, lines, message)


runner = CliRunner()


def assert_clean_cli(path: Path) -> None:
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert str(path) in result.stderr, result.stderr
        assert result.stdout == "", result.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def write(workdir: Path, text: str) -> Path:
    path = workdir / "circuit.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- pieces

SI_STRINGS = [
    "2.5u",
    "1x",
    "-3k",
    "inf",
    "-inf",
    "nan",
    "NaN",
    "100k",
    "1e-3",
    "10m",
    "1M",
    "5 mS",
    "3V",
    "2Ohm",
    "1kΩ",
    "2.5uA",
    "",
    " ",
    "µ",
    "1..2",
    "0x10",
    "1_000",
    "infinity",
    "1e999",
    "-0",
    "0",
    "1e-400",
    "3 volts",
]
NODE_NAMES = ["gnd", "0", "node", "a", "b", "x0", "y0", "h0", "vb", "vtop", "vpos", "in0_p"]
DEVICE_NAMES = ["w", "d", "amp", "rail", "ib", "mem", "clamp", "nope"]
ALL_PARAM_NAMES = sorted(
    {p.name for kind in DEVICE_KINDS.values() for p in kind.params}
    | {
        p.name
        for group in (
            CIRCUIT_KEYS,
            INPUT_KEYS,
            HIDDEN_KEYS,
            OUTPUT_KEYS,
            DIODE_ATTACH_KEYS,
            CONNECTION_KEYS,
            NETLIST_KEYS,
            ELEMENT_KEYS,
            SOLVER,
        )
        for p in group
    }
    | {"type", "nodes", "diodes", "inputs", "outputs"}
)


@st.composite
def misspelled(draw, words: list[str]) -> str:
    word = draw(st.sampled_from(words))
    if not word:
        return "x"
    i = draw(st.integers(0, len(word) - 1))
    edit = draw(st.sampled_from(["drop", "swap", "double", "upper", "extra"]))
    if edit == "drop" and len(word) > 1:
        return word[:i] + word[i + 1 :]
    if edit == "swap" and i < len(word) - 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if edit == "double":
        return word[: i + 1] + word[i:]
    if edit == "upper":
        return word.upper()
    return word + draw(st.sampled_from(["s", "_", "2", "x"]))


def keys(words: list[str]) -> st.SearchStrategy[str]:
    """Mostly real keys, some misspellings, some noise."""
    return st.one_of(
        st.sampled_from(words),
        st.sampled_from(words),
        st.sampled_from(words),
        misspelled(words),
        st.text("abcdefghijklmnopqrstuvwxyz_0123456789-", min_size=1, max_size=6),
    )


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 6) -> st.SearchStrategy:
    """``good`` about ``odds`` times as often as ``bad``."""
    return st.one_of(*([good] * odds), bad)


small_ints = st.integers(-3, 6)
scalars = st.one_of(
    small_ints,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 1e-3, 1.0, 4.0, 1e300, -1e-9]),
    st.booleans(),
    st.sampled_from(SI_STRINGS),
    st.sampled_from(SI_STRINGS),
    st.sampled_from(NODE_NAMES + DEVICE_NAMES),
    st.sampled_from(["ideal", "shockley", "resistor", "diode", "vsource", "isource", "amplifier"]),
    st.sampled_from(["constant", "uniform", "normal", "single", "differential", "dense", "auto"]),
    st.text(max_size=6),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(keys(ALL_PARAM_NAMES), inner, max_size=3),
    ),
    max_leaves=6,
)


def plausible(param) -> st.SearchStrategy:
    """A value that often fits ``param`` (a Param) and sometimes does not."""
    if param.kind == "int":
        good = small_ints if param.name != "feature" else st.integers(-1, 3)
    elif param.kind == "choice":
        good = st.sampled_from(param.choices)
    elif param.kind == "string":
        good = st.sampled_from(NODE_NAMES + DEVICE_NAMES + ["input", "output", "hidden"])
    elif param.kind == "bool":
        good = st.booleans()
    else:
        good = st.one_of(
            st.sampled_from(["1m", "10u", "2k", "1", "0.5", "1n", "inf"]),
            st.floats(-2, 2, allow_nan=False),
        )
    return mostly(good, values)


@st.composite
def table_for(draw, params, extra: dict | None = None) -> dict:
    """A table with a random subset of ``params``' keys, plus noise keys."""
    out = {}
    for param in params:
        if draw(st.integers(0, 3)):
            out[param.name] = draw(plausible(param))
    for name, strategy in (extra or {}).items():
        if draw(st.booleans()):
            out[name] = draw(strategy)
    if draw(st.integers(0, 5)) == 0:
        out[draw(keys([p.name for p in params] or ["x"]))] = draw(values)
    return out


@st.composite
def device_table(draw) -> dict:
    kind = draw(st.sampled_from(sorted(DEVICE_KINDS)))
    body = draw(table_for(DEVICE_KINDS[kind].params))
    typ = draw(mostly(st.just(kind), misspelled(sorted(DEVICE_KINDS)) | values))
    if draw(st.integers(0, 6)):
        body["type"] = typ
    return body


node = st.one_of(st.sampled_from(NODE_NAMES), misspelled(NODE_NAMES))
diode_attach = table_for(
    DIODE_ATTACH_KEYS,
)
node_groups = st.one_of(
    st.lists(node, max_size=3),
    st.lists(st.lists(node, min_size=1, max_size=3), max_size=2),
    values,
)
element = table_for(
    ELEMENT_KEYS,
    {
        "nodes": mostly(st.lists(node, min_size=2, max_size=2), values),
        "g": plausible(DEVICE_KINDS["resistor"].param("g")),
        "r": plausible(DEVICE_KINDS["resistor"].param("r")),
        "current": plausible(DEVICE_KINDS["isource"].param("current")),
        "value": plausible(DEVICE_KINDS["vsource"].param("value")),
    },
)


@st.composite
def documents(draw) -> dict:
    """A circuit document: a random mix of real sections, misspelled ones and noise."""
    doc: dict = {}
    if draw(st.booleans()):
        doc["circuit"] = draw(table_for(CIRCUIT_KEYS))
    doc["devices"] = draw(
        mostly(st.dictionaries(st.sampled_from(DEVICE_NAMES), device_table(), max_size=4), values)
    )
    if draw(st.booleans()):
        doc["rails"] = draw(
            st.dictionaries(st.sampled_from(NODE_NAMES), plausible(SOLVER[1]) | values, max_size=3)
        )
    if draw(st.integers(0, 3)) == 0:
        doc["solver"] = draw(table_for(SOLVER))
    form = draw(st.sampled_from(["layered", "layered", "netlist", "netlist", "mixed", "none"]))
    if form in ("layered", "mixed"):
        diodes = {"diodes": mostly(st.lists(diode_attach, max_size=2), values)}
        doc["input"] = draw(table_for(INPUT_KEYS))
        doc["hidden"] = draw(st.lists(table_for(HIDDEN_KEYS, diodes), max_size=2))
        doc["output"] = draw(table_for(OUTPUT_KEYS, diodes))
        doc["connections"] = draw(st.lists(table_for(CONNECTION_KEYS), max_size=3))
    if form in ("netlist", "mixed"):
        doc["netlist"] = draw(
            table_for(NETLIST_KEYS, {"inputs": node_groups, "outputs": node_groups})
        )
        doc["elements"] = draw(st.lists(element, max_size=6))
    for _ in range(draw(st.integers(0, 1))):
        doc[draw(keys(TOP_KEYS))] = draw(values)
    for name in [k for k in doc if draw(st.integers(0, 9)) == 0]:
        del doc[name]
    return doc


@st.composite
def broken_text(draw, text: str) -> str:
    """The text with a few character-level edits: most of these break the TOML syntax."""
    for _ in range(draw(st.integers(1, 3))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        edit = draw(st.sampled_from(["drop", "insert", "truncate", "dupline"]))
        if edit == "drop":
            text = text[:i] + text[i + 1 :]
        elif edit == "insert":
            text = text[:i] + draw(st.sampled_from(list("[]{}=\"',.#\n\\ x1"))) + text[i:]
        elif edit == "truncate":
            text = text[:i]
        else:
            lines = text.splitlines(keepends=True)
            j = draw(st.integers(0, len(lines) - 1))
            lines.insert(j, lines[j])
            text = "".join(lines)
    return text


TOPOLOGY_DEVICES = {
    "w": {"type": "resistor", "g": "1m"},
    "wr": {"type": "resistor", "init": "uniform", "init_low": "1u", "init_high": "1m"},
    "d": {"type": "diode", "g_on": "10m"},
    "clamp": {"type": "diode", "g_on": "inf", "threshold": 0.5},
    "ds": {"type": "diode", "model": "shockley"},
    "vs": {"type": "vsource", "value": 1.0},
    "ib": {"type": "isource", "current": "1u"},
    "amp": {"type": "amplifier", "gain": 2.0},
    "amp4": {"type": "amplifier", "gain": 4.0},
}
TOPOLOGY_NODES = ["n0", "n1", "gnd", "n2", "n3", "n4", "n5", "0"]


@st.composite
def random_netlists(draw) -> dict:
    """Well-formed netlists of random topology: they reach the whole-circuit checks."""
    nodes = st.sampled_from(TOPOLOGY_NODES)

    def pair() -> list[str]:
        a = draw(nodes)
        if draw(st.integers(0, 40)) == 40:  # now and then, both ends on one node
            return [a, draw(nodes)]
        same = set(GROUND_NAMES) if a in GROUND_NAMES else {a}
        return [a, draw(st.sampled_from([n for n in TOPOLOGY_NODES if n not in same]))]

    elements = []
    for i in range(draw(st.integers(1, 10))):
        element = {
            "name": f"E{i}",
            "device": draw(st.sampled_from(sorted(TOPOLOGY_DEVICES))),
            "nodes": pair(),
        }
        if element["device"] == "vs" and draw(st.booleans()):
            element["feature"] = draw(st.integers(0, 2))
        elements.append(element)
    touched = sorted({n for e in elements for n in e["nodes"]} - set(GROUND_NAMES))
    free = mostly(st.sampled_from(touched or ["n0"]), st.sampled_from(TOPOLOGY_NODES), 8)
    net = {
        "inputs": draw(st.lists(free, max_size=2, unique=True)),
        "outputs": draw(
            st.one_of(
                st.lists(free, min_size=1, max_size=2, unique=True),
                st.lists(st.lists(free, min_size=2, max_size=2), min_size=1, max_size=2),
            )
        ),
    }
    return {"devices": TOPOLOGY_DEVICES, "netlist": net, "elements": elements}


# --------------------------------------------------------------------------- (a) random documents


@settings(max_examples=examples(250), suppress_health_check=SUPPRESS, **PROFILE)
@given(doc=documents())
def test_random_documents_compile_or_fail_cleanly(workdir, doc):
    assert_clean(write(workdir, tomli_w.dumps(doc)))


@settings(max_examples=examples(250), suppress_health_check=SUPPRESS, **PROFILE)
@given(doc=random_netlists())
def test_random_topologies_compile_or_fail_cleanly(workdir, doc):
    assert_clean(write(workdir, tomli_w.dumps(doc)))


@settings(max_examples=examples(150), suppress_health_check=SUPPRESS, **PROFILE)
@given(data=st.data(), doc=documents())
def test_broken_syntax_fails_cleanly(workdir, data, doc):
    text = data.draw(broken_text(tomli_w.dumps(doc)))
    assert_clean(write(workdir, text))


@settings(max_examples=examples(60), suppress_health_check=SUPPRESS, **PROFILE)
@given(data=st.data(), doc=documents())
def test_random_documents_through_the_cli(workdir, data, doc):
    text = tomli_w.dumps(doc)
    if data.draw(st.booleans()):
        text = data.draw(broken_text(text))
    assert_clean_cli(write(workdir, text))


# --------------------------------------------------------------------------- (b) mutations


def _shrunk(name: str) -> dict:
    """A shipped circuit, with layered sizes cut down so that compiling it is instant."""
    doc = tomllib.loads((CIRCUITS / name).read_text(encoding="utf-8"))
    if "input" in doc:
        doc["input"]["size"] = 3
        for layer in doc.get("hidden", []):
            layer["size"] = 4
        doc["output"]["size"] = 2
    return doc


SHIPPED = sorted(p.name for p in CIRCUITS.glob("*.toml"))
BASES = {name: _shrunk(name) for name in SHIPPED}


def test_shrunk_bases_compile(workdir):
    """The starting points of the mutations are valid circuits."""
    for doc in BASES.values():
        load_network(write(workdir, tomli_w.dumps(doc)))


def _paths(doc, prefix=()) -> list[tuple]:
    """Every key path in a document (tables, array items, leaves)."""
    out = []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _parent(doc, path):
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _tables(value) -> list[dict]:
    """The tables in ``value`` (a table or a list); mutations may have made it anything."""
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, dict)]


def _all_node_names(doc) -> list[str]:
    names = set(NODE_NAMES)
    for e in _tables(doc.get("elements")):
        if isinstance(e.get("nodes"), list):
            names.update(n for n in e["nodes"] if isinstance(n, str))
    if isinstance(doc.get("rails"), dict):
        names.update(doc["rails"])
    return sorted(names)


CONDUCTANCE_KEYS = ("g", "r", "g_min", "g_max", "init_low", "init_high", "init_mean", "init_std")


@st.composite
def mutation(draw, doc: dict) -> None:
    """Apply one random edit to ``doc`` in place."""
    paths = _paths(doc)
    if not paths:
        return
    op = draw(
        st.sampled_from(
            [
                "delete",
                "retype",
                "rename",
                "duplicate",
                "swap_nodes",
                "renode",
                "negative",
                "gain",
                "swap_values",
            ]
        )
    )
    path = draw(st.sampled_from(paths))
    parent, last = _parent(doc, path), path[-1]
    if op == "delete":
        del parent[last]
    elif op == "retype":
        parent[last] = draw(values)
    elif op == "rename" and isinstance(parent, dict):
        new = draw(keys(ALL_PARAM_NAMES + TOP_KEYS))
        parent[new] = parent.pop(last)
    elif op == "duplicate":
        arrays = [p for p in paths if isinstance(_parent(doc, p), list)]
        if arrays:
            p = draw(st.sampled_from(arrays))
            container = _parent(doc, p)
            container.insert(p[-1], copy.deepcopy(container[p[-1]]))
    elif op in ("swap_nodes", "renode"):
        elements = [e for e in _tables(doc.get("elements")) if isinstance(e.get("nodes"), list)]
        layers = _tables(doc.get("hidden")) + _tables(doc.get("output"))
        attaches = [d for layer in layers for d in _tables(layer.get("diodes"))]
        if op == "swap_nodes" and elements:
            e = draw(st.sampled_from(elements))
            e["nodes"] = list(reversed(e["nodes"]))
        elif elements or attaches:
            target = draw(st.sampled_from(elements + attaches))
            names = _all_node_names(doc)
            if isinstance(target.get("nodes"), list) and len(target["nodes"]) == 2:
                target["nodes"][draw(st.integers(0, 1))] = draw(st.sampled_from(names))
            else:
                target[draw(st.sampled_from(["anode", "cathode"]))] = draw(
                    st.sampled_from([*names, "node"])
                )
    elif op == "negative":
        spots = [p for p in paths if p[-1] in CONDUCTANCE_KEYS]
        if spots:
            p = draw(st.sampled_from(spots))
            _parent(doc, p)[p[-1]] = draw(st.sampled_from([-1.0, 0, "-3k", "-1u", 0.0, "0"]))
    elif op == "gain":
        spots = [p for p in paths if p[-1] in ("gain", "size", "input_gain", "feature")]
        if spots:
            p = draw(st.sampled_from(spots))
            _parent(doc, p)[p[-1]] = draw(st.sampled_from([0, -1, -4.0, 0.5, 1e-300, 2, "1k"]))
    elif op == "swap_values":
        a, b = draw(st.sampled_from(paths)), draw(st.sampled_from(paths))
        pa, pb = _parent(doc, a), _parent(doc, b)
        with contextlib.suppress(KeyError, IndexError):  # an edit may have removed one
            pa[a[-1]], pb[b[-1]] = copy.deepcopy(pb[b[-1]]), copy.deepcopy(pa[a[-1]])


@st.composite
def mutants(draw) -> str:
    name = draw(st.sampled_from(SHIPPED))
    doc = copy.deepcopy(BASES[name])
    for _ in range(draw(st.integers(1, 3))):
        draw(mutation(doc))
    return tomli_w.dumps(doc)


@st.composite
def text_mutants(draw) -> str:
    """Line-level edits of the shipped files' own text (comments and inline tables kept)."""
    name = draw(st.sampled_from(SHIPPED))
    text = tomli_w.dumps(BASES[name])
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "block"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:  # duplicate a whole table block, header included
            starts = [k for k, line in enumerate(lines) if line.startswith("[")]
            if starts:
                k = draw(st.sampled_from(starts))
                end = next((s for s in starts if s > k), len(lines))
                lines[end:end] = lines[k:end]
    return "\n".join(lines) + "\n"


@settings(max_examples=examples(300), suppress_health_check=SUPPRESS, **PROFILE)
@given(text=mutants())
def test_mutated_circuits_compile_or_fail_cleanly(workdir, text):
    assert_clean(write(workdir, text))


@settings(max_examples=examples(150), suppress_health_check=SUPPRESS, **PROFILE)
@given(text=text_mutants())
def test_text_mutations_compile_or_fail_cleanly(workdir, text):
    assert_clean(write(workdir, text))


@settings(max_examples=examples(60), suppress_health_check=SUPPRESS, **PROFILE)
@given(data=st.data())
def test_mutated_circuits_through_the_cli(workdir, data):
    text = data.draw(st.one_of(mutants(), text_mutants()))
    assert_clean_cli(write(workdir, text))


def test_shipped_circuits_through_the_cli():
    for name in ("xor.toml", "bridge-network.toml"):
        result = runner.invoke(app, ["check", str(CIRCUITS / name)])
        assert result.exit_code == 0, result.output
