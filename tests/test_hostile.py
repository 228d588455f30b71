"""Circuit files, data and run directories from strangers (issue 10): each finding a test.

Every hostile input must end in exit code 2 (or 0 where it is valid) with one
message naming the file and the key, no traceback, nothing written, and a
bounded cost. The corpus of hostile files is in hostile_corpus.py.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import hostile_corpus
import numpy as np
import pytest
import tomli_w
from hostile_corpus import toml_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from eqprop_cli import io as eqio
from eqprop_cli.circuit import graph
from eqprop_cli.circuit.graph import compile_circuit
from eqprop_cli.circuit.network import Network
from eqprop_cli.circuit.spec import load_circuit, parse_circuit
from eqprop_cli.cli import app
from eqprop_cli.cli import train as cli_train
from eqprop_cli.errors import CircuitError
from eqprop_cli.hardware.spice import export_spice
from eqprop_cli.learn import run as learn_run
from eqprop_cli.runs.rundir import CHECKPOINT, CONFIG, METRICS, load_checkpoint

runner = CliRunner()
ROOT = Path(__file__).absolute().parents[1]
XOR = ROOT / "circuits" / "xor.toml"
INJECTION = "R3\n.control\nshell touch {marker}\n.endc"

TINY = """\
[circuit]
name = "tiny"

[devices.w]
type = "resistor"
g = "1m"

[devices.d]
type = "diode"
model = "shockley"

[netlist]
inputs = ["x"]
outputs = ["y"]

[[elements]]
name = "R1"
device = "w"
nodes = ["x", "y"]

[[elements]]
name = "R2"
device = "w"
nodes = ["y", "gnd"]

[[elements]]
name = "D1"
device = "d"
nodes = ["y", "gnd"]
"""


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def refused(result, *fragments: str) -> str:
    """Exit code 2, one line on stderr starting with "error:", no traceback; the message."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    assert "\n" not in message and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def write(folder: Path, text: str, name: str = "circuit.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def run_copy(xor_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(xor_run, target)
    return target


# --------------------------------------------------------------------------- 1. injection


@pytest.mark.parametrize(
    "old,key",
    [
        ('name = "R2"', "elements[1].name"),
        ("[devices.w]", "devices"),
        ('name = "tiny"', "circuit.name"),
        ('nodes = ["y", "gnd"]\n\n[[elements]]\nname = "D1"', "elements[1].nodes"),
    ],
)
def test_a_name_with_a_newline_is_refused_where_it_is_written(tmp_path, old, key):
    marker = tmp_path / "pwned"
    hostile = toml_string(INJECTION.format(marker=marker))
    new = {
        'name = "R2"': f"name = {hostile}",
        "[devices.w]": f"[devices.{hostile}]",
        'name = "tiny"': f"name = {hostile}",
    }.get(old, f'nodes = ["y", {hostile}]\n\n[[elements]]\nname = "D1"')
    text = TINY.replace(old, new, 1)
    if old == "[devices.w]":
        text = text.replace('device = "w"', f"device = {hostile}")
    path = write(tmp_path, text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if hostile in ln)
    message = refused(invoke("check", path), f"{path}:{line}:", "ASCII letters")
    assert key.split(".")[0] in message
    out = tmp_path / "x.cir"
    refused(invoke("export", path, "--input", "1", "-o", out))
    assert not out.exists() and not marker.exists()


def test_eval_with_ngspice_refuses_hostile_names(ngspice, run_copy, tmp_path):
    """The eval --backend ngspice route, from a circuit file and from a run directory
    whose config was edited after training: neither reaches ngspice."""
    marker = tmp_path / "pwned"
    hostile = toml_string(INJECTION.format(marker=marker))
    text = XOR.read_text().replace('name = "R_x0p_h0"', f"name = {hostile}")
    path = write(tmp_path, text)
    refused(invoke("eval", path, "--backend", "ngspice", "--limit", 1), "`elements[1].name`")
    config = run_copy / CONFIG
    config.write_text(config.read_text().replace('name = "R_x0p_h0"', f"name = {hostile}"))
    refused(invoke("eval", run_copy, "--backend", "ngspice", "--limit", 1))
    # the checkpoint's own config (the way out the message offers) runs clean
    result = invoke("eval", run_copy / CHECKPOINT, "--backend", "ngspice", "--limit", 1)
    assert result.exit_code == 0, result.output
    assert not marker.exists()


def hostile_labels(network: Network, text: str) -> None:
    """Put ``text`` in every name the exporter writes, bypassing validation."""
    network.graph.spec.name = text
    for group in (*network.resistors, *network.isources):
        group.device = dataclasses.replace(group.device, name=text, key=())
        group.labels = [text] * len(group.labels)
    for d in network.diodes:
        d.labels = [text] * len(d.labels)
    for amp in network.amplifiers:
        amp.label = text


def control_blocks(netlist: str) -> int:
    lines = [line.strip().lower() for line in netlist.splitlines()]
    return sum(line.startswith(".control") for line in lines)


def test_export_escapes_names_that_bypassed_validation(ngspice, tmp_path):
    marker = tmp_path / "pwned"
    network = Network(compile_circuit(load_circuit(XOR)))
    hostile_labels(network, INJECTION.format(marker=marker) + "\r\n.endc\u2028x")
    netlist = export_spice(network, np.array([1.0, 0.0]), header=["from\n.control"])
    assert control_blocks(netlist) == 1
    assert all(line.isascii() and line.isprintable() for line in netlist.splitlines())
    cir = tmp_path / "x.cir"
    cir.write_text(netlist)
    subprocess.run([ngspice, "-b", str(cir)], capture_output=True, timeout=120, cwd=tmp_path)
    assert not marker.exists()


# --------------------------------------------------------------------------- 2, 3. paths


@pytest.mark.parametrize("name", ["../../../escape", "/abs/path", "..", "a/b", " x"])
def test_circuit_names_cannot_leave_runs(tmp_path, name):
    path = write(tmp_path, TINY.replace('name = "tiny"', f"name = {toml_string(name)}"))
    refused(invoke("check", path), "`circuit.name`", "ASCII letters")


@pytest.mark.parametrize(
    "stem,expected", [("..", "run"), ("../x", "_x"), ("/abs/p", "_abs_p"), (".hidden", "hidden")]
)
def test_run_names_are_one_folder_under_runs(stem, expected):
    assert learn_run.run_name(stem) == expected


def test_output_refuses_symlinks_and_special_files(tmp_path):
    target = tmp_path / "target.cir"
    target.write_text("keep me")
    link = tmp_path / "link.cir"
    link.symlink_to(target)
    fifo = tmp_path / "fifo.cir"
    os.mkfifo(fifo)
    refused(invoke("export", XOR, "--input", "1,0", "-o", link), "symbolic link")
    assert link.is_symlink() and target.read_text() == "keep me"
    refused(invoke("export", XOR, "--input", "1,0", "-o", fifo), "not a regular file")
    assert fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.cir", "link.cir", "target.cir"]


# --------------------------------------------------------------------------- 4, 5, 6. runs


def test_a_second_writer_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a training in progress holds it
        refused(invoke("train", XOR, "--out", run, "--epochs", 1), "another eqprop train")
    finally:
        os.close(fd)
    assert list(run.iterdir()) == []


def test_a_second_writer_in_another_process_is_refused(tmp_path):
    """Two trainings into one --out: the second is refused while the first runs."""
    run = tmp_path / "run"
    command = ["eqprop", "train", str(XOR), "--out", str(run)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run / CONFIG).exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first training did not start"
            time.sleep(0.05)
        second = subprocess.run(
            [*command, "--overwrite", "--epochs", "2"], capture_output=True, text=True, timeout=120
        )
    finally:
        first.terminate()
        first.wait(timeout=60)
    assert second.returncode == 2, second.stderr
    assert "another eqprop train" in second.stderr and "Traceback" not in second.stderr


@pytest.mark.parametrize("command", ["eval", "export", "check", "report", "solve"])
def test_an_edited_config_is_refused_by_every_command(run_copy, command):
    config = run_copy / CONFIG
    config.write_text(config.read_text().replace("seed = 3", "seed = 4", 1))
    extra = {"solve": ["--input", "1,0"], "export": ["--input", "1,0"]}.get(command, [])
    refused(invoke(command, run_copy, *extra), str(config), "does not match the checkpoint")
    assert not (run_copy / "report").exists()


def test_a_mixed_run_directory_is_refused(run_copy, tmp_path):
    other = tmp_path / "other"
    assert invoke("train", XOR, "--out", other, "--epochs", 1, "--seed", 9).exit_code == 0
    shutil.copy(other / CHECKPOINT, run_copy / CHECKPOINT)
    refused(invoke("eval", run_copy), "does not match the checkpoint")
    shutil.copy(other / CONFIG, run_copy / CONFIG)  # config and checkpoint agree, metrics not
    refused(invoke("eval", run_copy), str(run_copy / METRICS))


def test_edited_metrics_are_refused_and_resume_repairs_them(run_copy):
    metrics = run_copy / METRICS
    metrics.write_text(metrics.read_text().replace("1,", "7,", 1))
    refused(invoke("report", run_copy), str(metrics))
    assert invoke("train", run_copy, "--resume", "--epochs", 2).exit_code == 0
    assert invoke("eval", run_copy).exit_code == 0


def test_a_checkpoint_after_every_epoch(tmp_path, monkeypatch):
    saved = []
    real = learn_run.save_checkpoint

    def spy(path, ckpt):
        saved.append(ckpt.state.epoch)
        real(path, ckpt)

    monkeypatch.setattr(learn_run, "save_checkpoint", spy)
    assert invoke("train", XOR, "--out", tmp_path / "run", "--epochs", 5).exit_code == 0
    assert saved == [1, 2, 3, 4, 5]


def test_disk_full_is_a_clean_error_and_keeps_the_checkpoint(run_copy, monkeypatch):
    before = (run_copy / CHECKPOINT).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(eqio.os, "fsync", full)
    message = refused(
        invoke("train", run_copy, "--resume", "--epochs", 3), "no space left", "bytes are free"
    )
    assert str(run_copy) in message and "intact" in message
    assert (run_copy / CHECKPOINT).read_bytes() == before
    assert load_checkpoint(run_copy / CHECKPOINT).state.epoch == 1
    assert not [p for p in run_copy.iterdir() if p.name.endswith(".tmp")]
    out = run_copy.parent / "x.cir"
    refused(invoke("export", XOR, "--input", "1,0", "-o", out), str(out), "no space left")
    assert not out.exists()


# --------------------------------------------------------------------------- 7-13. crashes


def test_deep_nesting(tmp_path):
    path = write(tmp_path, "[input]\nsize = " + "[" * 5000 + "]" * 5000 + "\n")
    refused(invoke("check", path), str(path), "nested too deeply")


def test_shockley_parameters_outside_physics_are_refused(tmp_path):
    path = write(tmp_path, TINY.replace('model = "shockley"', 'model = "shockley"\nis = 1e300'))
    refused(invoke("solve", path, "--input", "1"), f"{path}:11:", "`devices.d.is`", "<= 0.001")
    for key, value in (("n", "0.01"), ("n", "1e6"), ("temperature", "1e-300"), ("vt", "1e-9")):
        edited = TINY.replace('model = "shockley"', f'model = "shockley"\n{key} = {value}')
        refused(invoke("check", write(tmp_path, edited)), f"`devices.d.{key}`")


def test_numerical_failures_escaping_a_solve_are_one_message(monkeypatch):
    import eqprop_cli.cli.circuit as cli

    def singular(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(cli, "solve", singular)
    refused(invoke("solve", XOR, "--input", "1,0"), "numerical failure", "Singular matrix")


def test_a_data_set_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    data = tmp_path / "huge.npz"
    data.write_bytes(hostile_corpus.declared_npz("(100000000000, 4)"))
    tracemalloc.start()
    try:
        result = invoke(
            "train", XOR, "--out", tmp_path / "run", "--set", f"training.dataset={data}"
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    refused(result, "`training.dataset`", "declares shape (100000000000, 4)")
    assert peak < 200e6
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_a_checkpoint_declaring_a_huge_shape_is_refused(run_copy):
    ckpt = run_copy / CHECKPOINT
    with zipfile.ZipFile(ckpt) as src:
        members = {i.filename: src.read(i) for i in src.infolist()}
    name = next(n for n in members if n.startswith("g/"))
    data = members[name]
    end = data.index(b"\n") + 1
    header = data[:end].decode("latin1")
    start = header.index("'shape': (") + len("'shape': ")
    stop = header.index(")", start) + 1
    header = header[:start] + "(10000000000000,)" + header[stop:]
    members[name] = header.encode("latin1")[: end - 1].ljust(end - 1) + b"\n" + data[end:]
    with zipfile.ZipFile(ckpt, "w") as dst:
        for member, content in members.items():
            dst.writestr(member, content)
    refused(invoke("eval", run_copy), str(ckpt), "declares shape")


def test_minus_inf_as_a_string_is_refused(tmp_path):
    text = TINY.replace("[netlist]", '[devices.ib]\ntype = "isource"\ni_min = "-inf"\n\n[netlist]')
    refused(invoke("check", write(tmp_path, text)), "`devices.ib.i_min`", "without quotes")


@pytest.mark.parametrize(
    "setting,key",
    [
        ("training.dataset=mnsit", "training.dataset"),
        ("training.train_subset=1000", "training.train_subset"),
    ],
)
def test_train_time_errors_name_the_file_and_the_key(tmp_path, setting, key):
    result = invoke("train", XOR, "--out", tmp_path / "run", "--set", setting)
    refused(result, f"{XOR}: `{key}`")
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_a_circuit_file_too_large_is_refused_unread(tmp_path):
    path = tmp_path / "big.toml"
    with open(path, "wb") as fh:
        fh.truncate(65 * 2**20)  # sparse: costs no disk
    refused(invoke("check", path), str(path), "larger than a circuit file may be")


def test_a_long_string_is_located_in_linear_time(tmp_path):
    """The key locator's string pattern is possessive: a 5 MB description is one pass
    (the old pattern backtracked through a stack of megabytes)."""
    from eqprop_cli.circuit import spec

    line = 'description = "' + 'a\\"b' * 1_250_000 + '"'
    tracemalloc.start()
    try:
        stripped = spec._strip_strings(line)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stripped == 'description = ""' and peak < 30e6


def test_a_huge_connection_is_refused_before_allocating(tmp_path):
    text = """\
[devices.w]
type = "resistor"
g = "1u"
[input]
size = 1000000
[[hidden]]
name = "h"
size = 1001
[output]
size = 1
[[connections]]
from = "input"
to = "h"
device = "w"
"""
    path = write(tmp_path, text)
    tracemalloc.start()
    try:
        result = invoke("check", path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    refused(result, f"{path}:11:", "2,002,000,000 conductances")
    assert peak < 50e6


def test_fixed_nodes_are_computed_once(monkeypatch):
    calls = []
    real = graph._fixed_nodes

    def counted(g):
        calls.append(1)
        return real(g)

    monkeypatch.setattr(graph, "_fixed_nodes", counted)
    assert invoke("check", ROOT / "circuits" / "mnist-mini.toml").exit_code == 0
    assert len(calls) == 1


def test_fixed_potentials_follow_chains_of_sources(tmp_path):
    """Sources in series (a rail on a rail on an input): the doubling along the chain
    gives each node the sum of the sources below it."""
    text = """\
[devices.w]
type = "resistor"
g = "1m"
[devices.v]
type = "vsource"
value = 0.25
[netlist]
inputs = ["a"]
outputs = ["y"]
"""
    for k, (p, m) in enumerate([("b", "a"), ("c", "b"), ("d", "c"), ("e", "d"), ("f", "e")]):
        text += f'[[elements]]\nname = "V{k}"\ndevice = "v"\nnodes = ["{p}", "{m}"]\n'
    text += '[[elements]]\nname = "R1"\ndevice = "w"\nnodes = ["f", "y"]\n'
    text += '[[elements]]\nname = "R2"\ndevice = "w"\nnodes = ["y", "gnd"]\n'
    network = Network(compile_circuit(load_circuit(write(tmp_path, text))))
    volts = network.fixed_potentials(np.array([[0.5]]))[0]
    by_node = dict(zip(network.fixed.tolist(), volts.tolist(), strict=True))
    names = network.node_names
    assert [by_node[names.index(n)] for n in "abcdef"] == pytest.approx(
        [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    )


def test_progress_lines_when_not_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_train, "PROGRESS_EVERY_S", 0.0)
    result = invoke("train", XOR, "--out", tmp_path / "run", "--epochs", 1)
    assert result.exit_code == 0, result.output
    assert "epoch 1/1: batch 1/1, 4/4 samples" in result.stdout


# --------------------------------------------------------------------------- the corpus

CORPUS = hostile_corpus.circuits()
DATA = sorted(hostile_corpus.datasets(Path(tempfile.mkdtemp())))


def handled(result, path: Path) -> None:
    """Exit 0, or exit 2 with one message that starts with the file's name."""
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        message = result.stderr.strip()
        assert message.startswith(f"error: {path}") and "\n" not in message, message


def solved(result, path: Path) -> None:
    """A valid circuit's solve: handled, or exit 3 (eqprop-solve(1)) when values beyond
    floating-point range leave no equilibrium to reach, said in a warning, no traceback."""
    if result.exit_code == 3:
        assert "not converged" in result.stderr and "Traceback" not in result.output
    else:
        handled(result, path)


def test_the_corpus_is_large():
    assert len(CORPUS) + len(DATA) >= 80


def test_the_corpus_bases_are_valid(tmp_path):
    """Each hostile file is one edit away from a valid circuit."""
    for text in (hostile_corpus.BASE, hostile_corpus.LAYERED):
        assert invoke("check", write(tmp_path, text)).exit_code == 0


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_circuit(tmp_path, name):
    path = write(tmp_path, CORPUS[name], "hostile.toml")
    result = invoke("check", path, "--json")
    handled(result, path)
    if result.exit_code == 0:  # valid, if extreme: solving it must be clean too
        features = json.loads(result.stdout)["inputs"]
        solved(invoke("solve", path, "--input", ",".join(["1"] * features)), path)
    assert [p.name for p in tmp_path.iterdir()] == ["hostile.toml"]


@pytest.mark.parametrize("name", DATA)
def test_hostile_data_set(tmp_path, name):
    folder = tmp_path / "data"
    folder.mkdir()
    data = hostile_corpus.datasets(folder)[name]
    path = write(tmp_path, hostile_corpus.LAYERED)
    result = invoke("train", path, "--out", tmp_path / "run", "--set", f"training.dataset={data}")
    refused(result, f"{path}: `training.dataset`")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- fuzz


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(
        st.one_of(
            st.text(max_size=30), st.from_regex(r"[A-Za-z_][A-Za-z0-9_.+-]{0,12}", fullmatch=True)
        ),
        min_size=4,
        max_size=4,
    ),
    value=st.one_of(
        st.floats(1e-9, 1.0),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.integers(),
    ),
)
def test_fuzz_every_netlist_has_exactly_our_control_block(names, value):
    """Arbitrary names (circuit, device, element, node) and values: a file is refused with
    one located message, or its exported netlist has exactly one .control block (ours)."""
    circuit, device, element, node = names
    document = {
        "circuit": {"name": circuit},
        "devices": {device: {"type": "resistor", "g": value}, "s": {"type": "isource"}},
        "netlist": {"inputs": ["x"], "outputs": [node]},
        "elements": [
            {"name": element, "device": device, "nodes": ["x", node]},
            {"name": "R0", "device": device, "nodes": [node, "gnd"]},
            {"name": "I0", "device": "s", "nodes": [node, "gnd"]},
        ],
    }
    try:
        text = tomli_w.dumps(document)
    except (TypeError, ValueError):  # not representable in TOML (e.g. a NaN-free writer)
        return
    try:
        network = Network(compile_circuit(parse_circuit(text, "fuzz.toml")))
    except CircuitError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.toml")
        return
    netlist = export_spice(network, np.array([0.5]))
    assert control_blocks(netlist) == 1
    assert all(line.isascii() and line.isprintable() for line in netlist.splitlines())
    assert netlist.count("\n.endc\n") == 1


@settings(max_examples=40, deadline=None)
@given(text=st.text(min_size=1, max_size=60))
def test_fuzz_labels_that_bypass_validation_stay_in_their_comments(text):
    network = Network(compile_circuit(load_circuit(XOR)))
    hostile_labels(network, text)
    netlist = export_spice(network, np.array([1.0, 0.0]), header=[text])
    assert control_blocks(netlist) == 1
    assert all(line.isascii() and line.isprintable() for line in netlist.splitlines())
