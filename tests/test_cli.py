"""The command line: exit codes, JSON output, files in and out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from randomcircuits import ROOT
from typer.testing import CliRunner

from eqprop_cli import __version__, load_network, solve
from eqprop_cli.cli import app

runner = CliRunner()
XOR = str(ROOT / "circuits" / "xor.toml")


def run(*args: str):
    return runner.invoke(app, list(args))


def test_version_and_help():
    assert run("--version").stdout.strip() == f"eqprop {__version__}"
    result = run("--help")
    assert result.exit_code == 0
    for command in ("check", "solve", "export"):
        assert command in result.stdout


def test_check_every_shipped_circuit():
    for path in sorted((ROOT / "circuits").glob("*.toml")):
        result = run("check", str(path), "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["solver"] in ("layered", "newton")
        assert summary["trainable_conductances"] > 0
        assert summary["elements"]["resistor"] > 0


def test_check_summary_table():
    result = run("check", str(ROOT / "circuits" / "kendall2020-mnist.toml"))
    assert result.exit_code == 0
    for text in ("158,800", "amplifier", "layered", "valid"):
        assert text in result.stdout


def test_solve_json_matches_library():
    result = run("solve", XOR, "--input", "1,0", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    network = load_network(XOR)
    eq = solve(network, np.array([[1.0, 0.0]]), tol=1e-10)
    for i, name in enumerate(network.node_names):
        assert abs(doc["nodes"][name] - eq.voltages[0, i]) < 1e-12
    assert doc["converged"] is True and doc["residual"] <= 1e-10
    assert {"iterations", "energy", "method", "outputs"} <= set(doc)


def test_solve_batch_from_npy_and_csv(tmp_path):
    x = np.array([[1, 0], [0, 1], [1, 1.0]])
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    docs = []
    for name in ("x.npy", "x.csv"):
        result = run("solve", XOR, "-i", str(tmp_path / name), "--json", "--nodes", "y*")
        assert result.exit_code == 0, result.output
        docs.append(json.loads(result.stdout))
    assert docs[0] == docs[1]
    assert len(docs[0]["samples"]) == 3
    assert set(docs[0]["samples"][0]["nodes"]) == {"y0p", "y0n", "y1p", "y1n"}


def test_solve_takes_a_comma_list_longer_than_a_file_name(tmp_path):
    """784 numbers typed as --input: longer than any file name, still a comma list."""
    mini = str(ROOT / "circuits" / "mnist-mini.toml")
    x = np.linspace(0.0, 1.0, 784)
    np.savetxt(tmp_path / "x.csv", x[None, :], delimiter=",", fmt="%.17g")
    typed = run("solve", mini, "--input", ",".join(f"{v:.17g}" for v in x), "--json")
    assert typed.exit_code == 0, typed.output
    from_file = run("solve", mini, "--input", str(tmp_path / "x.csv"), "--json")
    assert json.loads(typed.stdout)["outputs"] == json.loads(from_file.stdout)["outputs"]


def test_solve_table_output():
    result = run("solve", XOR, "-i", "1,0", "--nodes", "y*")
    assert result.exit_code == 0
    assert "y0p" in result.stdout and "converged" in result.stdout


def test_non_convergence_is_a_warning_a_flag_and_exit_3():
    result = run("solve", XOR, "-i", "1,0", "--json", "--max-iter", "1", "--tol", "1e-30")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["converged"] is False
    assert "warning" in result.stderr and "not converged" in result.stderr


def test_bad_inputs_are_clean_errors(tmp_path):
    """Each bad input: exit 2, no traceback, and the message that says what was wrong."""
    missing, unwritable = tmp_path / "missing.npy", tmp_path / "no" / "such" / "dir.cir"
    for args, message in (
        (("solve", XOR), f"{XOR}: the circuit has 2 inputs; give them with --input or --sample"),
        (
            ("solve", XOR, "-i", "1,2,3"),
            f"--input 1,2,3: {XOR} takes 2 input feature(s) per vector; got shape (1, 3)",
        ),
        (
            ("solve", XOR, "-i", "a,b"),
            '--input "a,b": expected a .npy/.csv file or comma-separated',
        ),
        (("solve", XOR, "-i", ""), "--input is empty; expected a .npy/.csv file"),
        (("solve", XOR, "-i", str(missing)), f"{missing}: input file not found"),
        (("solve", XOR, "-i", "1,0", "--method", "simplex"), "'simplex' is not one of"),
        (("export", XOR, "--format", "verilog"), "'verilog' is not one of 'spice', 'csv', 'json'"),
        (("export", XOR, "-o", str(unwritable)), f"{unwritable}: cannot write it"),
    ):
        result = runner.invoke(app, list(args), env={"COLUMNS": "400"})
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert message in result.stderr, (args, result.stderr)
    assert not unwritable.parent.exists()


def test_export_writes_atomically(tmp_path):
    out = tmp_path / "xor.cir"
    result = run("export", XOR, "-i", "1,0", "-o", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.rstrip().endswith(".end") and ".op" in text
    assert "V" in text and "DC 1.00000000000000000e+00" in text
    assert [p.name for p in tmp_path.iterdir()] == ["xor.cir"]  # no temporary left behind
    stdout = run("export", XOR, "-i", "1,0").stdout
    assert stdout.splitlines()[3:] == text.splitlines()[3:]


def test_export_nodeset_is_our_operating_point(tmp_path, ngspice):
    from eqprop_cli.hardware.spice import run_ngspice

    result = run("export", XOR, "-i", "0.3,0.9", "--nodeset")
    assert result.exit_code == 0
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(".nodeset")]
    network = load_network(XOR)
    eq = solve(network, np.array([[0.3, 0.9]]), tol=1e-12)
    guess = dict(item.split("=") for ln in lines for item in ln.split()[1:])
    assert abs(float(guess["V(y0p)"]) - eq.voltages[0, network.node_names.index("y0p")]) < 1e-8
    theirs = run_ngspice(result.stdout)
    assert abs(theirs["y0p"] - eq.voltages[0, network.node_names.index("y0p")]) < 1e-6


def test_error_text_keeps_brackets(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = run("check", str(empty))
    assert result.exit_code == 2
    assert "[input], [[hidden]], [output] and [[connections]]" in result.stderr


def test_solver_overrides_are_validated():
    for args in (("--tol", "-1"), ("--tol", "0"), ("--max-iter", "0")):
        result = run("solve", XOR, "-i", "1,0", *args)
        assert result.exit_code == 2, args
        assert "must be" in result.stderr


def test_exported_file_follows_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        assert run("export", XOR, "-o", str(tmp_path / "x.cir")).exit_code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "x.cir").stat().st_mode & 0o777 == 0o644


def test_solve_writes_voltages_to_npy_and_csv(tmp_path):
    x = np.random.default_rng(3).random((6, 2))
    np.save(tmp_path / "x.npy", x)
    network = load_network(XOR)
    expected = solve(network, x, tol=1e-10).voltages
    result = run("solve", XOR, "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "v.npy"))
    assert result.exit_code == 0 and result.stdout == ""
    assert f"6 sample(s) x {network.n_nodes} node(s)" in result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), expected)
    result = run(
        "solve", XOR, "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "v.csv"), "--nodes", "y*"
    )
    assert result.exit_code == 0
    lines = (tmp_path / "v.csv").read_text().splitlines()
    assert lines[0] == "y0p,y0n,y1p,y1n"
    ys = [network.node_names.index(n) for n in ("y0p", "y0n", "y1p", "y1n")]
    np.testing.assert_array_equal(
        np.loadtxt(lines[1:], delimiter=","), expected[:, ys]
    )  # every bit
    result = run("solve", XOR, "-i", "1,0", "-o", str(tmp_path / "v.txt"))
    assert result.exit_code == 2 and ".npy or .csv" in result.stderr


def test_solve_table_shows_at_most_four_inputs(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((6, 2)))
    result = run("solve", XOR, "-i", str(tmp_path / "x.npy"), "--nodes", "y*")
    assert result.exit_code == 0
    assert "input 3" in result.stdout and "input 4" not in result.stdout
    assert "the first 4 of 6 inputs" in result.stdout


def piped(*args: str) -> subprocess.CompletedProcess:
    """`eqprop ARGS | cat` with COLUMNS=80: a non-terminal standard output."""
    env = {**os.environ, "COLUMNS": "80"}
    command = [sys.executable, "-m", "eqprop_cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_piped_tables_hold_every_value_in_full(tmp_path):
    """On an 80-column console that is not a terminal, nothing is cut or wrapped."""
    from eqprop_cli.data.datasets import list_datasets

    result = piped("data", "list")
    assert result.returncode == 0, result.stderr
    for row in list_datasets():
        assert str(row["location"] or "-") in result.stdout
    name = "a-circuit-with-a-long-name-that-does-not-fit-in-eighty-columns-of-a-terminal"
    result = piped("check", XOR, "--set", f"circuit.name={name}")
    assert result.returncode == 0 and name in result.stdout
    out = tmp_path / "r"
    sets = ["--set", "training.train_subset=300", "--set", "training.test_subset=100"]
    mini = str(ROOT / "circuits" / "mnist-mini.toml")
    assert run("train", mini, "--out", str(out), "--epochs", "1", *sets).exit_code == 0
    target = out.rename(tmp_path / ("a-long-run-directory-name-" * 3 + "end"))
    result = piped("eval", str(target))
    doc = json.loads(run("eval", str(target), "--json").stdout)
    assert result.returncode == 0 and f"{target}: mnist-mini test" in result.stdout
    assert "…" not in result.stdout and f"{doc['loss']:.6g}" in result.stdout
    lines = result.stdout.splitlines()
    for c, row in zip(doc["classes"], doc["confusion"], strict=True):
        cells = [f"│ {c} ", *(f" {v} │" for v in row)]
        assert any(all(cell in line for cell in cells) for line in lines), c
        recall, precision = doc["per_class_recall"][c], doc["per_class_precision"][c]
        cells = [f"│ {c} ", f" {sum(row):,} ", f" {100 * recall:.2f}% "]
        cells.append("-" if precision is None else f" {100 * precision:.2f}% │")
        assert any(all(cell in line for cell in cells) for line in lines), c


def test_dash_output_is_stdout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = run("export", XOR, "-i", "1,0")
    dashed = run("export", XOR, "-i", "1,0", "-o", "-")
    assert dashed.exit_code == 0 and dashed.stdout == plain.stdout and ".end" in plain.stdout
    npz = run("export", XOR, "--format", "npz", "-o", "-")
    assert npz.exit_code == 0 and npz.stdout_bytes.startswith(b"PK")  # a zip archive
    csv_text = run("solve", XOR, "-i", "1,0", "--nodes", "y*", "-o", "-")
    assert csv_text.exit_code == 0
    header, row = csv_text.stdout.splitlines()
    doc = json.loads(run("solve", XOR, "-i", "1,0", "--nodes", "y*", "--json").stdout)
    assert header.split(",") == list(doc["nodes"])
    assert [float(v) for v in row.split(",")] == list(doc["nodes"].values())
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_solve_a_dataset_sample_with_a_conductance_map(tmp_path):
    from eqprop_cli.learn.samples import split_samples
    from eqprop_cli.runs.rundir import load_target

    run_dir = tmp_path / "x"
    assert run("train", XOR, "--out", str(run_dir), "--epochs", "20").exit_code == 0
    loaded = load_target(run_dir)
    _, x, _, _ = split_samples(loaded.spec, loaded.network, "test")
    by_sample = run("solve", str(run_dir), "--sample", "2", "--json")
    assert by_sample.exit_code == 0, by_sample.output
    assert "sample 2 of the test split" in by_sample.stderr
    by_input = run(
        "solve", str(run_dir), "--input", ",".join(str(float(v)) for v in x[2]), "--json"
    )
    assert json.loads(by_sample.stdout) == json.loads(by_input.stdout)
    # the circuit file with the run's map loaded over it is the trained circuit
    chip = tmp_path / "chip.csv"
    assert run("export", str(run_dir), "--format", "csv", "-o", str(chip)).exit_code == 0
    mapped = run("solve", XOR, "--conductances", str(chip), "--sample", "2", "--json")
    assert json.loads(mapped.stdout) == json.loads(by_sample.stdout)
    untrained = run("solve", XOR, "--sample", "2", "--json")
    assert json.loads(untrained.stdout)["outputs"] != json.loads(mapped.stdout)["outputs"]
    for args, says in (
        (["--sample", "9"], "out of range"),
        (["--sample", "1", "--input", "1,0"], "one of --input and --sample"),
    ):
        result = run("solve", str(run_dir), *args)
        assert result.exit_code == 2 and says in result.stderr
