"""Hand-off to hardware: conductance maps, levels, Monte Carlo, netlists checked by ngspice."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from randomcircuits import ROOT
from typer.testing import CliRunner

from eqprop_cli.cli import app
from eqprop_cli.errors import EqpropError
from eqprop_cli.hardware.devicemap import conductance_map, level_ranges, quantise, read_map
from eqprop_cli.hardware.spice import export_spice, ngspice_op, printed_class, run_ngspice
from eqprop_cli.hardware.variation import Variation
from eqprop_cli.learn.evaluate import evaluate
from eqprop_cli.learn.samples import scoring, split_samples, training_data
from eqprop_cli.runs.rundir import load_target
from eqprop_cli.solver.equilibrium import solve

runner = CliRunner()
MINI = ROOT / "circuits" / "mnist-mini.toml"
SMALL = [  # a small trained run: 784-16-10 on part of mnist-mini, a few seconds
    "--set",
    "hidden.0.size=16",
    "--set",
    "training.train_subset=2000",
    "--set",
    "training.test_subset=300",
    "--set",
    "training.learning_rate=0.5",
]


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args: object) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hw") / "run"
    result = run("train", MINI, "--out", out, "--epochs", 3, *SMALL)
    assert result.exit_code == 0, result.output
    return out


def _arrays(network) -> list[np.ndarray]:
    return [*network.g, *network.currents]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------ maps round trip


@pytest.mark.parametrize("fmt", ["csv", "json", "npz"])
def test_maps_load_back_to_identical_conductances_and_accuracy(trained, tmp_path, fmt):
    path = tmp_path / f"map.{fmt}"
    result = run("export", trained, "--format", fmt, "-o", path)
    assert result.exit_code == 0, result.output
    original = load_target(trained).network
    fresh = load_target(MINI, SMALL[1::2]).network  # the untrained circuit, same shapes
    assert not _same(_arrays(original), _arrays(fresh))
    read_map(path, fresh)
    assert _same(_arrays(original), _arrays(fresh))  # bit for bit
    nominal = run_json("eval", trained)
    mapped = run_json("eval", trained, "--conductances", path)
    for key in ("accuracy", "loss", "confusion"):
        assert mapped[key] == nominal[key]


def test_csv_has_one_row_per_programmable_device_with_units(trained, tmp_path):
    path = tmp_path / "map.csv"
    assert run("export", trained, "-f", "csv", "-o", path).exit_code == 0
    rows = list(csv.DictReader(path.open()))
    network = load_target(trained).network
    resistors = [r for r in rows if r["kind"] == "resistor"]
    sources = [r for r in rows if r["kind"] == "current_source"]
    assert len(resistors) == sum(g.size for g in network.g)
    assert len(sources) == sum(c.size for c in network.currents)
    first = resistors[0]
    assert first["connection"] == "input->hidden" and first["element"] == "R0_0_0"
    assert (first["node_a"], first["node_b"], first["row_polarity"]) == ("in0_p", "hidden_0", "+")
    assert resistors[1568 * 16 + 1]["column_polarity"] == "-"  # hidden_0 -> out0_n
    for row in resistors[:50]:
        g, r = float(row["conductance_S"]), float(row["resistance_ohm"])
        assert abs(g * r - 1) < 1e-15
        assert repr(g) == row["conductance_S"]  # shortest exact text
    assert "conductance_S" in rows[0] and "resistance_ohm" in rows[0] and "current_A" in rows[0]


def _cell_type(text: str) -> type:
    for kind in (int, float):
        try:
            kind(text)
            return kind
        except ValueError:
            pass
    return str


@pytest.mark.parametrize("levels", [[], ["--levels", 16]])
def test_csv_columns_hold_one_type_and_no_empty_cell(trained, tmp_path, levels):
    """A data-frame library reads the map with row, column and level as integers."""
    path = tmp_path / "map.csv"
    assert run("export", trained, "-f", "csv", *levels, "-o", path).exit_code == 0
    rows = list(csv.DictReader(path.open()))
    kinds = {r["kind"] for r in rows}
    assert kinds == {"resistor", "current_source"}  # both kinds share the table
    header = list(rows[0])
    assert ("level" in header) == bool(levels)
    types = {c: {_cell_type(r[c]) for r in rows} for c in header}
    assert all(r[c].strip() for r in rows for c in header), "an empty cell"
    assert all(len(t) == 1 for t in types.values()), types
    for column in ("row", "column", *(["level", "n_levels"] if levels else [])):
        assert types[column] == {int}, column
    for column in ("conductance_S", "resistance_ohm", "current_A"):
        assert types[column] == {float}, column
    source = next(r for r in rows if r["kind"] == "current_source")
    assert float(source["conductance_S"]) == 0 and float(source["resistance_ohm"]) == np.inf
    if levels:
        assert source["level"] == "-1" and source["n_levels"] == "0"
    try:
        import pandas as pd
    except ImportError:
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = pd.read_csv(path)
    assert not frame.isna().any().any()
    for column in ("row", "column", *(["level", "n_levels"] if levels else [])):
        assert pd.api.types.is_integer_dtype(frame[column]), column


def test_older_maps_with_empty_cells_still_load(trained, csv_map, tmp_path):
    """Maps written before every cell was filled (empty where a column does not apply)."""
    rows = list(csv.DictReader(csv_map.open()))
    for row in rows:
        if row["kind"] == "current_source":
            row["column"] = row["conductance_S"] = row["resistance_ohm"] = ""
        else:
            row["current_A"] = ""
    old = tmp_path / "old.csv"
    with old.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    fresh = load_target(MINI, SMALL[1::2]).network
    read_map(old, fresh)
    assert _same(_arrays(load_target(trained).network), _arrays(fresh))


@pytest.mark.parametrize("column, value", [("conductance_S", "1e-6"), ("resistance_ohm", "5")])
def test_a_conductance_on_a_current_source_line_is_a_clean_error(
    trained, csv_map, tmp_path, column, value
):
    line = len(csv_map.read_text().splitlines())  # the last line: a current source
    bad = tmp_path / "bad.csv"
    _edit_csv(csv_map, bad, line, column, value)
    result = run("eval", trained, "--conductances", bad)
    assert result.exit_code == 2, result.output
    assert "does not apply to a current_source" in result.output and f"line {line}" in result.output


def test_a_map_names_its_origin_and_exported_netlist_its_hashes(trained, tmp_path):
    doc_path = tmp_path / "map.json"
    assert run("export", trained, "-f", "json", "-o", doc_path).exit_code == 0
    meta = json.loads(doc_path.read_text())["metadata"]
    netlist = run("export", trained, "--sample", 3).stdout
    assert meta["circuit_sha256"] in netlist and meta["parameters_sha256"] in netlist
    assert "eqprop" in netlist and "units: ohms, volts, amperes" in netlist
    _, splits = training_data(load_target(trained).spec, load_target(trained).network)
    x, y = splits["test"]
    assert f"sample 3 of the test split, label {y[3]}" in netlist
    body = export_spice(load_target(trained).network, x[3])
    strip = [ln for ln in netlist.splitlines() if not ln.startswith("*")]
    assert strip == [ln for ln in body.splitlines() if not ln.startswith("*")]


# ------------------------------------------------------------ levels


@pytest.mark.parametrize("levels, g_range", [(16, None), (5, "1u,12u")])
def test_levels_take_at_most_n_values_and_report_the_accuracy_eval_gives(
    trained, tmp_path, levels, g_range
):
    path = tmp_path / "q.json"
    extra = ["--g-range", g_range] if g_range else []
    result = run("export", trained, "-f", "json", "--levels", levels, *extra, "-o", path)
    assert result.exit_code == 0, result.output
    doc = json.loads(path.read_text())
    low, high = (1e-6, 12e-6) if g_range else (1e-9, 20e-6)
    values = np.array([d["conductance_S"] for d in doc["devices"] if d["kind"] == "resistor"])
    index = np.array([d["level"] for d in doc["devices"] if d["kind"] == "resistor"])
    assert len(np.unique(values)) <= levels
    assert values.min() >= low * (1 - 1e-12) and values.max() <= high * (1 + 1e-12)
    np.testing.assert_allclose(values, low + index * (high - low) / (levels - 1), rtol=1e-12)
    reported = doc["metadata"]["accuracy"]
    assert f"{levels} levels" in result.output
    evaluated = run_json("eval", trained, "--conductances", path)
    assert evaluated["accuracy"] == reported["quantised"]
    assert run_json("eval", trained)["accuracy"] == reported["unquantised"]


def test_quantise_rounds_to_the_nearest_level():
    network = load_target(MINI, SMALL[1::2]).network
    before = [g.copy() for g in network.g]
    levels = level_ranges(network, 9, (1e-7, 3e-6))
    cmap = quantise(conductance_map(network), levels)
    step = (3e-6 - 1e-7) / 8
    for g0, g1, index in zip(before, network.g, cmap.level_index, strict=True):
        inside = (g0 >= 1e-7) & (g0 <= 3e-6)
        assert np.all(np.abs(g0 - g1)[inside] <= step / 2 * (1 + 1e-9))
        assert np.all(g1[g0 < 1e-7] == 1e-7) and np.all(g1[g0 > 3e-6] == 3e-6)
        assert index.min() >= 0 and index.max() <= 8


def test_device_levels_are_the_default(tmp_path):
    network = load_target(MINI, [*SMALL[1::2], "devices.mem.levels=4"]).network
    levels = level_ranges(network, None, None)
    assert levels.count == 4 and levels.ranges[0] == (
        1e-9,
        network.resistors[0].device.params["g_max"],
    )
    assert level_ranges(load_target(MINI).network, None, None) is None


# ------------------------------------------------------------ Monte Carlo


def test_monte_carlo_sigma_zero_is_exactly_nominal(trained):
    doc = run_json("eval", trained, "--variation", "0", "--trials", 3)
    nominal = run_json("eval", trained)["accuracy"]
    assert doc["nominal_accuracy"] == nominal
    assert doc["accuracies"] == [nominal] * 3
    assert doc["mean_accuracy"] == nominal and doc["std_accuracy"] == 0.0


def test_monte_carlo_is_seeded_and_reproducible(trained):
    args = ("eval", trained, "--variation", "30%", "--trials", 4, "--stuck-off", "0.01")
    first, again = run_json(*args, "--seed", 5), run_json(*args, "--seed", 5)
    other = run_json(*args, "--seed", 6)
    assert first == again
    assert first["accuracies"] != other["accuracies"]
    assert min(first["accuracies"]) == first["worst_accuracy"]
    assert first["variation"] == {
        "sigma": 0.3,
        "distribution": "lognormal",
        "stuck_off": 0.01,
        "stuck_on": 0.0,
        "seed": 5,
    }


@pytest.mark.parametrize("distribution", ["lognormal", "gaussian"])
def test_programming_error_has_the_asked_spread_and_stays_in_range(distribution):
    network = load_target(MINI).network
    g = [np.full_like(a, 5e-6) for a in network.g]
    drawn = Variation(0.05, distribution).draw(network, g, seed=1, trial=0)
    ratio = np.concatenate([(d / a).ravel() for d, a in zip(drawn, g, strict=True)])
    spread = np.log(ratio).std() if distribution == "lognormal" else ratio.std()
    assert abs(spread - 0.05) < 0.002
    wide = Variation(3.0, distribution).draw(network, g, seed=1, trial=0)
    g_min, g_max = 1e-9, network.resistors[0].device.params["g_max"]
    assert all(a.min() >= g_min and a.max() <= g_max for a in wide)
    off = Variation(0.0, stuck_off=1.0).draw(network, g, seed=1, trial=0)
    on = Variation(0.0, stuck_on=1.0).draw(network, g, seed=1, trial=0)
    assert all(np.all(a == g_min) for a in off) and all(np.all(a == g_max) for a in on)
    half = Variation(0.0, stuck_off=0.25, stuck_on=0.25).draw(network, g, seed=1, trial=0)
    flat = np.concatenate([a.ravel() for a in half])
    assert abs(np.mean(flat == g_min) - 0.25) < 0.01 and abs(np.mean(flat == g_max) - 0.25) < 0.01
    assert g[0][0, 0] == 5e-6  # the nominal arrays are untouched
    # a device-aware run's devices keep their own bounds (d2d_bounds): trained conductances
    # outside [g_min, g_max] stay where they are at sigma 0 (they were clipped into it), and
    # the range is widened to them, not beyond
    outside = [a.copy() for a in g]
    outside[0][0, :3] = (0.5 * g_min, 1.2 * g_max, 5e-6)
    same = Variation(0.0, distribution).draw(network, outside, seed=1, trial=0)
    assert all(np.array_equal(a, b) for a, b in zip(same, outside, strict=True))
    moved = Variation(0.05, distribution).draw(network, outside, seed=1, trial=0)
    assert moved[0][0, 2] != 5e-6
    assert moved[0][0, 0] >= 0.5 * g_min and moved[0][0, 1] <= 1.2 * g_max


# ------------------------------------------------------------ ngspice


def test_ngspice_agrees_with_the_solver_on_20_test_samples(trained, ngspice):
    doc = run_json("eval", trained, "--backend", "ngspice", "--limit", 20)
    assert doc["n_samples"] == 20
    assert doc["max_voltage_difference"] <= 1e-6
    assert doc["agreement"] == 1.0  # the class printed by every netlist's .control block
    assert doc["accuracy"] == doc["solver_accuracy"]
    solver = run_json("eval", trained, "--limit", 20)
    assert solver["accuracy"] == doc["solver_accuracy"] and solver["n_samples"] == 20


def test_subcircuit_in_a_larger_design_matches_the_solver(trained, ngspice):
    loaded = load_target(trained)
    network = loaded.network
    result = run("export", trained, "--subckt")
    assert result.exit_code == 0, result.output
    sub = result.stdout
    assert ".subckt mnist_mini" in sub and ".control" not in sub and ".ends" in sub
    header = next(ln for ln in sub.splitlines() if ln.startswith("* usage: X1"))
    ports = [
        tok
        for ln in sub.split(".subckt mnist_mini")[1].splitlines()[1:]
        if ln.startswith("+")
        for tok in ln[1:].split()
    ]
    outputs = [network.node_names[i] for i in network.outputs.ravel()]
    assert ports == [f"feature{i}" for i in range(784)] + outputs
    assert f"<{len(ports)} nodes>" in header
    x = training_data(loaded.spec, network)[1]["test"][0][7]
    # a larger design: the features come from sources of its own, under its own node names
    drive = [f"VF{i} top_f{i} 0 DC {float(x[i])!r}" for i in range(784)]
    pins = [f"top_f{i}" for i in range(784)] + [f"top_o{i}" for i in range(len(outputs))]
    top = "\n".join(
        ["* top level", sub, *drive, "X1 " + " ".join(pins) + " mnist_mini", ".op", ".end"]
    )
    theirs = run_ngspice(top + "\n")
    eq = solve(network, x[None, :], method="layered", tol=1e-12)
    ours = eq.voltages[0][network.outputs.ravel()]
    assert max(abs(theirs[f"top_o{i}"] - v) for i, v in enumerate(ours)) <= 1e-6


OFFSET_INPUTS = """\
[circuit]
name = "offset"

[devices.w]
type = "resistor"
g = "1m"

[devices.src]
type = "vsource"
value = 0.3
gain = 2.0

[devices.d]
type = "diode"
model = "shockley"

[netlist]
outputs = ["o"]

[[elements]]
name = "V1"
device = "src"
nodes = ["a", "gnd"]
feature = 0

[[elements]]
name = "V2"
device = "src"
nodes = ["c", "a"]
feature = 1

[[elements]]
name = "R1"
device = "w"
nodes = ["a", "o"]

[[elements]]
name = "R2"
device = "w"
nodes = ["c", "o"]

[[elements]]
name = "R3"
device = "w"
nodes = ["o", "gnd"]

[[elements]]
name = "D1"
device = "d"
nodes = ["o", "gnd"]
"""


def test_subcircuit_keeps_offsets_and_stacked_input_sources(tmp_path, ngspice):
    path = tmp_path / "offset.toml"
    path.write_text(OFFSET_INPUTS)
    result = run("export", path, "--subckt")
    assert result.exit_code == 0, result.output
    network = load_target(path).network
    x = np.array([[0.4, -0.7]])
    top = "\n".join(
        [result.stdout, "VF0 f0 0 DC 0.4", "VF1 f1 0 DC -0.7", "X1 f0 f1 out offset", ".op", ".end"]
    )
    ours = solve(network, x, method="newton", tol=1e-14).outputs()[0, 0]
    assert abs(run_ngspice(top + "\n")["out"] - ours) <= 1e-9


def test_a_netlist_prints_the_predicted_class(trained, ngspice):
    network = load_target(trained).network
    x = np.random.default_rng(3).random((1, 784))
    voltages, stdout = ngspice_op(export_spice(network, x[0]))
    ours = solve(network, x, method="layered", tol=1e-12)
    assert printed_class(stdout) == int(np.argmax(ours.outputs()[0]))
    assert "output voltages:" in stdout and "readout" in stdout
    out0 = network.node_names[network.outputs[0, 0]]
    assert abs(voltages[out0] - ours.voltages[0][network.outputs[0, 0]]) < 1e-6


# ------------------------------------------------------------ bad requests


def _edit_csv(source: Path, target: Path, line: int, column: str, value: str) -> None:
    rows = list(csv.DictReader(source.open()))
    rows[line - 2][column] = value
    with target.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def csv_map(trained) -> Path:
    path = trained.parent / "good.csv"
    assert run("export", trained, "-f", "csv", "-o", path).exit_code == 0
    return path


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--format", "verilog"], "is not one of 'spice', 'csv', 'json', 'npz'"),
        (["--sample", 300], "out of range"),
        (["--sample", -1], "out of range"),
        (["--levels", 1], "at least 2 levels"),
        (["--levels", 8, "--g-range", "2e-5,1e-9"], "MIN < MAX"),
        (["--levels", 8, "--g-range", "1u"], "MIN,MAX"),
        (["--g-range", "1n,20u"], "needs --levels"),
        (["--format", "npz"], "give -o FILE"),
        (["--format", "csv", "--sample", 1], "only for --format spice"),
        (["--sample", 1, "--subckt"], "one of --sample, --input and --subckt"),
        (["--split", "holdout"], "is not one of 'train', 'validation', 'test'"),
    ],
)
def test_bad_export_requests_are_clean_errors(trained, tmp_path, args, phrase):
    result = run("export", trained, *args)
    assert result.exit_code == 2, result.output
    assert phrase in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "line, column, value, phrase",
    [
        (2, "node_a", "in1_p", "do not match"),
        (3, "row", "99999", "out of range"),
        (4, "connection", "input->output", "not a programmable resistor set"),
        (5, "conductance_S", "-1e-6", "must be > 0"),
        (6, "conductance_S", "2e-6", "disagree"),
        (7, "kind", "capacitor", 'expected "resistor"'),
        (8, "current_A", "1e-6", "does not apply to a resistor"),
    ],
)
def test_maps_that_do_not_fit_are_clean_errors(
    trained, csv_map, tmp_path, line, column, value, phrase
):
    bad = tmp_path / "bad.csv"
    _edit_csv(csv_map, bad, line, column, value)
    result = run("eval", trained, "--conductances", bad)
    assert result.exit_code == 2, result.output
    assert phrase in result.output and f"line {line}" in result.output
    assert "Traceback" not in result.output


def test_a_device_given_twice_is_a_clean_error(trained, csv_map, tmp_path):
    lines = csv_map.read_text().splitlines(keepends=True)
    lines[7] = lines[1]  # line 8 repeats line 2 (and line 8's device goes missing)
    bad = tmp_path / "twice.csv"
    bad.write_text("".join(lines))
    result = run("eval", trained, "--conductances", bad)
    assert result.exit_code == 2 and "line 8" in result.output and "twice" in result.output


def test_maps_of_another_circuit_are_clean_errors(trained, tmp_path):
    other = tmp_path / "other"
    small = ["--set", "hidden.0.size=8", "--set", "training.train_subset=100", "--epochs", 1]
    assert run("train", MINI, "--out", other, *small).exit_code == 0
    for fmt in ("csv", "json", "npz"):
        path = tmp_path / f"other.{fmt}"
        assert run("export", other, "-f", fmt, "-o", path).exit_code == 0
        result = run("eval", trained, "--conductances", path)
        assert result.exit_code == 2, (fmt, result.output)
        assert "Traceback" not in result.output
        assert any(p in result.output for p in ("shape", "out of range", "do not match")), (
            result.output
        )
    written = tmp_path / "never.cir"
    result = run("export", trained, "--conductances", tmp_path / "other.npz", "-o", written)
    assert result.exit_code == 2 and not written.exists()  # nothing half-written


def test_missing_rows_and_missing_files_are_clean_errors(trained, csv_map, tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("".join(csv_map.open().readlines()[:-200]))
    result = run("eval", trained, "--conductances", short)
    assert result.exit_code == 2 and "missing" in result.output
    assert run("eval", trained, "--conductances", tmp_path / "nope.csv").exit_code == 2
    assert run("eval", trained, "--conductances", tmp_path / "map.txt").exit_code == 2
    text = tmp_path / "text.json"
    text.write_text("{not json")
    result = run("eval", trained, "--conductances", text)
    assert result.exit_code == 2 and "line 1" in result.output


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--variation", "-0.1"], ">= 0"),
        (["--variation", "lots"], "like 0.05 or 5%"),
        (["--stuck-off", "1.5"], "[0, 1]"),
        (["--stuck-off", "0.6", "--stuck-on", "0.6"], "more than 1"),
        (["--variation", "0.1", "--distribution", "uniform"], "'lognormal', 'gaussian'"),
        (["--backend", "ngspice", "--variation", "0.1"], "drop --variation"),
        (["--backend", "hspice"], "'solver', 'ngspice'"),
    ],
)
def test_bad_eval_requests_are_clean_errors(trained, args, phrase):
    result = run("eval", trained, *args)
    assert result.exit_code == 2, result.output
    assert phrase in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output


def test_map_errors_in_the_library_are_eqprop_errors(trained):
    network = load_target(trained).network
    with pytest.raises(EqpropError, match="at least 2"):
        level_ranges(network, 1, None)


def test_a_clipping_range_warns_with_its_accuracy_cost(trained, tmp_path):
    path = tmp_path / "clip.json"
    result = run("export", trained, "-f", "json", "--levels", 16, "--g-range", "1u,5u", "-o", path)
    assert result.exit_code == 0, result.output
    network = load_target(trained).network
    moved = sum(int(((g < 1e-6) | (g > 5e-6)).sum()) for g in network.g)
    message = " ".join(result.stderr.split())
    assert moved > 0 and f"clips {moved:,} of {sum(g.size for g in network.g):,}" in message
    doc = json.loads(path.read_text())["metadata"]
    clipped_only = load_target(trained).network
    clipped_only.set_conductances([np.clip(g, 1e-6, 5e-6) for g in network.g])
    loaded = load_target(trained)
    _, x, y, _ = split_samples(loaded.spec, loaded.network, "test")
    loss, batch, solver = scoring(loaded.spec, loaded.network, 10)
    accuracy = evaluate(clipped_only, x, y, loss, batch, **solver).accuracy
    change = accuracy - doc["accuracy"]["unquantised"]
    assert doc["clipped"] == {"conductances": moved, "accuracy_change": change}
    assert f"by {100 * change:+.2f} points" in message
    quiet = run("export", trained, "-f", "csv", "--levels", 16, "-o", tmp_path / "d.csv")
    assert "clips" not in quiet.stderr  # the device range holds every trained value


def test_auto_range_spans_the_trained_percentiles(trained):
    network = load_target(trained).network
    levels = level_ranges(network, 16, None, 0.5)
    for (low, high), g, r in zip(levels.ranges, network.g, network.resistors, strict=True):
        p = r.device.params
        expected = np.percentile(g, [0.5, 99.5])
        assert low == max(p["g_min"], expected[0]) and high == min(p["g_max"], expected[1])
    full = level_ranges(network, 16, None, 0.0)
    assert full.ranges == [(float(g.min()), float(g.max())) for g in network.g]
    result = run("export", trained, "-f", "csv", "--levels", 16, "--g-range", "auto", "-o", "-")
    assert result.exit_code == 0, result.output
    for bad in ("auto:60", "auto:x"):
        result = run("export", trained, "--levels", 16, "--g-range", bad)
        assert result.exit_code == 2 and "auto or auto:P" in result.stderr
