"""Bad and hostile input beyond issue 10's list (session 10's audit): each defect found a
test that failed before its fix.

Every case ends in exit code 2 with one message naming the file (or the option) and
what was expected, no traceback, nothing written, and no allocation of the size asked.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_hostile import ROOT, XOR, invoke, refused

from eqprop_cli.circuit.graph import compile_circuit
from eqprop_cli.circuit.network import Network
from eqprop_cli.circuit.spec import load_circuit
from eqprop_cli.errors import EqpropError
from eqprop_cli.hardware import variation as hw_variation
from eqprop_cli.hardware.devicemap import Levels, conductance_map, read_map
from eqprop_cli.runs.rundir import CHECKPOINT, _digest, load_target
from eqprop_cli.sweep.spec import load_sweep, point_names

BEYOND_INT64 = str(2**63)


def traced(call):
    """What ``call()`` returns, and the peak of the memory Python allocated meanwhile."""
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------ integers and sizes


@pytest.mark.parametrize("key", ["solver.max_iter", "training.free_max_iter", "training.seed"])
def test_integer_keys_beyond_64_bits_are_refused(key):
    # was: numba's TypingError traceback ("Int value is too large") from the solve
    refused(invoke("check", XOR, "--set", f"{key}={BEYOND_INT64}"), f"`{key}`", "fits in 64 bits")


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_solve_and_gradcheck_check_tol_alike_and_as_the_file_key(value):
    """One validator: the same message from both commands, with the file key's expectation."""
    solve = refused(invoke("solve", XOR, "--input", "1,0", "--tol", value))
    grad = refused(invoke("gradcheck", XOR, "--tol", value))
    assert solve == grad
    assert solve.startswith("error: --tol must be a current > 0 A (finite); got "), solve
    key = refused(invoke("check", XOR, "--set", f"solver.tol={value}"))
    assert "`solver.tol` must be a current > 0 A" in key


@pytest.mark.parametrize("how", ["new", "fine-tune", "resume"])
def test_seed_beyond_64_bits_names_the_seed_option(xor_run, tmp_path, how):
    # was: "... (from --set training.seed=N)", an option the user never gave
    out = tmp_path / "run"
    if how == "new":
        args = [XOR, "--out", out]
    elif how == "fine-tune":
        args = [xor_run, "--out", out]
    else:
        shutil.copytree(xor_run, out)
        args = [out, "--resume", "--epochs", 2]
    before = sorted(out.rglob("*")) if out.exists() else None
    message = refused(invoke("train", *args, "--seed", BEYOND_INT64), "`training.seed`")
    assert message.endswith(f"(from --seed {BEYOND_INT64})") and "--set" not in message
    assert (sorted(out.rglob("*")) if out.exists() else None) == before  # nothing written


def test_a_set_override_is_still_named_as_set(tmp_path):
    message = refused(
        invoke("train", XOR, "--out", tmp_path / "r", "--set", f"training.seed={BEYOND_INT64}")
    )
    assert message.endswith(f"(from --set training.seed={BEYOND_INT64})")


def test_max_iter_option_beyond_64_bits_is_refused():
    result = invoke("solve", XOR, "--input", "1,0", "--max-iter", BEYOND_INT64)
    refused(result, "--max-iter", "fits in 64 bits")


@pytest.mark.parametrize(
    "args,option",
    [
        (("solve", XOR, "--input", "1,0", "--vtol", "inf"), "--vtol"),
        (("solve", XOR, "--input", "1,0", "--tol", "inf"), "--tol"),
        (("gradcheck", XOR, "--beta", "inf"), "--beta"),
        (("gradcheck", XOR, "--tol", "inf"), "--tol"),
    ],
)
def test_infinite_tolerances_and_nudges_are_refused(args, option):
    # the file's keys refuse inf; the options took it (gradcheck --beta inf: a singular solve)
    refused(invoke(*args), option, "finite")


def test_epochs_beyond_the_limit_are_refused(tmp_path):
    result = invoke("train", XOR, "--out", tmp_path / "run", "--set", f"training.epochs={10**12}")
    refused(result, "`training.epochs`", "<= 1000000")
    assert not (tmp_path / "run").exists()


def test_max_pulses_beyond_the_limit_is_refused():
    # the response table has 2 max_pulses + 1 rows: 10**9 asked for tens of GB at train time
    result = invoke("check", XOR, "--set", "devices.w.update.max_pulses=1000000000")
    refused(result, "`devices.w.update.max_pulses`", "<= 1000000")


@pytest.mark.parametrize("levels", [10**23, 2**32 + 1])
def test_export_levels_beyond_the_limit_are_refused(xor_run, tmp_path, levels):
    # 10**23 was a ValueError traceback from np.linspace
    out = tmp_path / "map.csv"
    result = invoke("export", xor_run, "--format", "csv", "--levels", levels, "-o", out)
    refused(result, "--levels", "at most 4,294,967,296")
    assert not out.exists()


def test_many_levels_are_not_all_made(xor_run, tmp_path):
    # np.linspace over 2**32 levels made 32 GiB to pick 64 of them
    out = tmp_path / "map.csv"
    result, peak = traced(
        lambda: invoke("export", xor_run, "--format", "csv", "--levels", 2**32, "-o", out)
    )
    assert result.exit_code == 0, result.output
    assert peak < 200e6
    assert "4294967296" in out.read_text().splitlines()[1]


def test_level_values_are_linspace_bit_for_bit():
    rng = np.random.default_rng(7)
    for count in (2, 3, 16, 97, 1001):
        low = float(10 ** rng.uniform(-9, -4))
        high = low * float(10 ** rng.uniform(0.1, 3))
        levels = Levels(count, [(low, high)])
        np.testing.assert_array_equal(
            levels.values(0, np.arange(count)), np.linspace(low, high, count)
        )


def test_monte_carlo_allocates_nothing_for_trials_not_run(monkeypatch):
    # was: np.empty(trials) first: "Maximum allowed dimension exceeded" traceback
    network = Network(compile_circuit(load_circuit(XOR)))
    calls = []

    class Stop(Exception):
        pass

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:  # the nominal evaluation, then two trials
            raise Stop
        return SimpleNamespace(confusion=np.eye(2, dtype=np.int64))

    monkeypatch.setattr(hw_variation, "evaluate", evaluate)
    x, y = np.zeros((1, 2)), np.zeros(1, dtype=np.int64)
    with pytest.raises(Stop):
        hw_variation.monte_carlo(network, x, y, None, hw_variation.Variation(0.01), 10**23)
    assert len(calls) == 4


# ------------------------------------------------------------------ crafted checkpoints


def _resign(path: Path, meta_edit=None, array_edit=None) -> None:
    """Rewrite a checkpoint with its metadata or arrays edited and a valid checksum (which
    anyone can compute: it proves no origin)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    arrays.pop("checksum")
    if meta_edit:
        meta = meta_edit(meta)
    if array_edit:
        array_edit(arrays)
    text = json.dumps(meta, sort_keys=True)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(text), checksum=np.array(_digest(text, arrays)), **arrays)
    path.write_bytes(buffer.getvalue())


def _set(key, value):
    def edit(meta):
        meta[key] = value
        return meta

    return edit


def _drop(key):
    def edit(meta):
        del meta[key]
        return meta

    return edit


def _fill(name, value, dtype=None):
    def edit(arrays):
        a = arrays[name]
        arrays[name] = np.full(a.shape, value, dtype=dtype or a.dtype)

    return edit


@pytest.mark.parametrize(
    "meta_edit,array_edit,fragment",
    [
        (_set("format_version", "x"), None, "format version"),
        (_drop("format_version"), None, "format version"),
        (lambda m: [m], None, "not an eqprop checkpoint"),
        (_set("counts", [9, 9]), None, "no array g/1"),
        (_set("counts", "ab"), None, "`counts`"),
        (_drop("counts"), None, "`counts`"),
        (_set("config", 5), None, "`config`"),
        (_set("optimizer", {"momentum": "x"}), None, "`optimizer`"),
        (_set("metrics", [1, 2]), None, "`metrics`"),
        (_set("epoch", -5), None, "`epoch`"),
        (None, _fill("g/0", np.nan), "g/0 must hold float64 values, finite and > 0"),
        (None, _fill("g/0", 0.0), "g/0 must hold float64 values, finite and > 0"),
        (None, _fill("i/0", np.inf), "i/0 must hold float64 values, finite"),
        (None, _fill("g/0", "1e-4", "<U8"), "g/0 must hold float64"),
    ],
)
def test_a_crafted_checkpoint_is_refused(xor_run, tmp_path, meta_edit, array_edit, fragment):
    # each was a traceback (KeyError, TypeError, AttributeError, ValueError) or, for
    # strings, silently converted
    ckpt = tmp_path / "crafted.npz"
    shutil.copy(xor_run / CHECKPOINT, ckpt)
    _resign(ckpt, meta_edit, array_edit)
    refused(invoke("eval", ckpt), str(ckpt), fragment)


def test_an_optimizer_state_of_the_wrong_shape_is_refused_on_resume(xor_run, tmp_path):
    # was: the compiled update wrote past the arrays: a segmentation fault (exit -11)
    target = tmp_path / "run"
    shutil.copytree(xor_run, target)

    def short(arrays):
        for name in [n for n in arrays if n.startswith("opt/")]:
            arrays[name] = np.zeros(3)

    _resign(target / CHECKPOINT, array_edit=short)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    result = invoke("train", target, "--resume", "--epochs", 2)
    refused(result, str(target / CHECKPOINT), "has shape (3,); this run's is (64,)")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


# ------------------------------------------------------------------ conductance maps


def _map(xor_run: Path, tmp_path: Path, fmt: str) -> Path:
    out = tmp_path / f"map.{fmt}"
    result = invoke("export", xor_run, "--format", fmt, "-o", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_map_that_is_not_utf8_is_refused(xor_run, tmp_path, fmt):
    # was: UnicodeDecodeError traceback
    path = tmp_path / f"bad.{fmt}"
    path.write_bytes(b'{"format": "\xff\xfe"}')
    refused(invoke("eval", xor_run, "--conductances", path), str(path), "UTF-8")


def test_a_deeply_nested_json_map_is_refused(xor_run, tmp_path):
    # was: "numerical failure (RecursionError ...) ... floating-point arithmetic"
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    refused(invoke("eval", xor_run, "--conductances", path), str(path), "nested too deeply")


def test_a_csv_map_with_a_byte_order_mark_loads(xor_run, tmp_path):
    # a spreadsheet's "CSV UTF-8" starts with a BOM: was "the header lacks column(s) connection"
    plain = _map(xor_run, tmp_path, "csv")
    marked = tmp_path / "marked.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    a = invoke("eval", xor_run, "--conductances", plain, "--json")
    b = invoke("eval", xor_run, "--conductances", marked, "--json")
    assert a.exit_code == b.exit_code == 0, b.output
    assert json.loads(a.stdout)["accuracy"] == json.loads(b.stdout)["accuracy"]


def test_an_npz_map_declaring_a_huge_shape_is_refused_before_allocating(xor_run, tmp_path):
    raw = _map(xor_run, tmp_path, "npz").read_bytes()
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "w/conductance_S.npy":
                end = data.index(b"\n") + 1
                header = data[:end].decode("latin1").replace("(64,)", "(100000000000,)")
                data = header[: end - 1].ljust(end - 1).encode("latin1") + b"\n" + data[end:]
            dst.writestr(info.filename, data)
    refused(invoke("eval", xor_run, "--conductances", path), str(path), "declares shape")


def _edited_csv(source: Path, target: Path, edit) -> list[dict]:
    """``source``'s rows, changed by ``edit(rows)``, written to ``target`` (lines from 2)."""
    with source.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    edit(rows)
    with target.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _element_refused(xor_run: Path, path: Path, *fragments: str) -> None:
    """Refused by eval, and by export with nothing written."""
    refused(invoke("eval", xor_run, "--conductances", path), str(path), *fragments)
    out = path.parent / "out.cir"
    result = invoke("export", xor_run, "--conductances", path, "--input", "1,0", "-o", out)
    refused(result, str(path), *fragments)
    assert not out.exists()


def test_a_map_element_that_names_another_device_is_refused(xor_run, tmp_path):
    # was: ignored: rows whose element names were swapped programmed each value by position
    bad = tmp_path / "swapped.csv"

    def swap(rows):
        rows[1]["element"], rows[2]["element"] = rows[2]["element"], rows[1]["element"]

    rows = _edited_csv(_map(xor_run, tmp_path, "csv"), bad, swap)
    expected = rows[2]["element"]  # what line 3 must name: the device swapped out of it
    _element_refused(
        xor_run,
        bad,
        "line 3:",
        f'element "{rows[1]["element"]}" does not match the circuit',
        f'at connection {rows[1]["connection"]} row {rows[1]["row"]} is "{expected}"',
    )


def test_a_map_element_unknown_to_the_circuit_is_refused(xor_run, tmp_path):
    bad = tmp_path / "unknown.csv"
    rows = _edited_csv(
        _map(xor_run, tmp_path, "csv"), bad, lambda rows: rows[4].update(element="R_nowhere")
    )
    _element_refused(xor_run, bad, "line 6:", '"R_nowhere" does not match the circuit')
    assert rows[4]["element"] == "R_nowhere"


def test_a_map_element_given_twice_is_refused(xor_run, tmp_path):
    bad = tmp_path / "twice.csv"
    _edited_csv(
        _map(xor_run, tmp_path, "csv"), bad, lambda rows: rows[3].update(element=rows[0]["element"])
    )
    _element_refused(xor_run, bad, "line 5:", "appears twice (first at line 2)")


def test_a_json_map_element_is_checked_too(xor_run, tmp_path):
    doc = json.loads(_map(xor_run, tmp_path, "json").read_text())
    doc["devices"][-1]["element"] = "I_h9"  # a current source's row
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    _element_refused(xor_run, bad, f"devices[{len(doc['devices']) - 1}]", '"I_h9"')


def test_a_map_with_rows_reordered_or_elements_left_out_still_loads(xor_run, tmp_path):
    """The element column is a check, not required: rows in any order, empty cells load."""
    plain = _map(xor_run, tmp_path, "csv")
    shuffled, blank = tmp_path / "shuffled.csv", tmp_path / "blank.csv"
    _edited_csv(plain, shuffled, lambda rows: rows.reverse())
    _edited_csv(plain, blank, lambda rows: [r.update(element="") for r in rows])
    scores = [
        json.loads(invoke("eval", xor_run, "--conductances", p, "--json").stdout)["loss"]
        for p in (plain, shuffled, blank)
    ]
    assert scores[0] == scores[1] == scores[2]


def test_a_crossbar_map_element_is_checked(tmp_path):
    """A layered circuit's devices are named R<set>_<row>_<column>."""
    network = load_target(ROOT / "circuits" / "mnist-mini.toml", ["hidden.0.size=4"]).network
    path = tmp_path / "map.csv"
    path.write_text(conductance_map(network).to_csv())
    read_map(path, network)  # as written: loads
    bad = tmp_path / "bad.csv"
    _edited_csv(path, bad, lambda rows: rows[0].update(element="R0_0_1"))
    with pytest.raises(
        EqpropError, match=r'line 2: element "R0_0_1" .* row 0 column 0 is "R0_0_0"'
    ):
        read_map(bad, network)


# ------------------------------------------------------------------ options


def test_a_deeply_nested_set_value_is_refused():
    # was: "numerical failure (RecursionError ...)", naming neither the option nor nesting
    value = "[" * 5000 + "]" * 5000
    refused(invoke("check", XOR, "--set", f"training.x={value}"), "--set", "too deeply")


@pytest.mark.parametrize("mirror", ["not a url", "ftp://example.org/mnist"])
def test_a_mirror_that_is_not_a_url_is_refused(tmp_path, mirror):
    # "not a url" was a ValueError traceback from urllib
    dest = tmp_path / "mnist"
    result = invoke("data", "fetch", "mnist", "--dest", dest, "--mirror", mirror)
    refused(result, "--mirror", "expected an http://, https:// or file:// URL")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ relative spreads


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--variation", "5", "--variation 5: expected a relative spread in [0, 1]"),
        ("--variation", "500%", "--variation 5: expected a relative spread in [0, 1]"),
        ("--stuck-off", "5", "--stuck-off 5: expected a probability in [0, 1]"),
        ("--stuck-on", "5", "--stuck-on 5: expected a probability in [0, 1]"),
    ],
)
def test_eval_refuses_a_spread_above_one_and_asks_about_percent(xor_run, option, value, says):
    # was: --variation 5 ran a Monte Carlo at 500% without a word
    refused(invoke("eval", xor_run, option, value), says, "(5 is 500%: did you mean 0.05?)")


def test_eval_takes_a_spread_of_exactly_one(xor_run):
    result = invoke("eval", xor_run, "--variation", "100%", "--trials", 1, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["variation"]["sigma"] == 1.0


@pytest.mark.parametrize(
    "circuit, key",
    [
        (XOR, "training.nudge_error"),
        (ROOT / "circuits" / "mnist-ecram.toml", "devices.mem.update.write_noise"),
        (ROOT / "circuits" / "mnist-ecram.toml", "devices.mem.update.d2d_step"),
        (ROOT / "circuits" / "mnist-ecram.toml", "devices.mem.update.d2d_bounds"),
    ],
)
def test_relative_circuit_keys_above_one_ask_about_percent(circuit, key):
    result = invoke("check", circuit, "--set", f"{key}=5")
    refused(result, f"`{key}` must be a number >= 0 and <= ", "(5 is 500%: did you mean 0.05?)")


def test_a_sweep_eval_variation_above_one_is_refused(tmp_path):
    # was: accepted (>= 0 only), and every point's Monte Carlo ran at 500%
    path = _sweep(tmp_path, "training.seed = [0]")
    path.write_text(path.read_text() + "\n[eval]\nvariation = 5\n")
    out = tmp_path / "out"
    result = invoke("sweep", path, "-o", out)
    refused(result, f"{path}:", "`eval.variation` must be a number >= 0 and <= 1", "500%")
    assert not out.exists()


# ------------------------------------------------------------------ sweeps


def _sweep(tmp_path: Path, grid: str) -> Path:
    shutil.copy(XOR, tmp_path / "xor.toml")
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'[sweep]\ncircuit = "xor.toml"\nset = ["training.epochs=1"]\n\n[grid]\n{grid}\n'
    )
    return path


def test_a_sweep_of_too_many_points_is_refused_before_making_them(tmp_path):
    # 40 keys of 2 values: was every one of 2**40 points made, until memory ran out
    grid = "\n".join(f"training.k{i} = [1, 2]" for i in range(40))
    out = tmp_path / "out"
    result = invoke("sweep", _sweep(tmp_path, grid), "--out", out)
    refused(result, "`grid`", "1,099,511,627,776 points", "at most 100,000")
    assert not out.exists()


def test_a_large_sweep_loads_in_linear_time(tmp_path):
    # duplicate points and names were found by scanning every earlier point: 10,000 points
    # took about 35 s to load, 100,000 many hours
    grid = f"training.learning_rate = {[round(0.001 * k, 3) for k in range(1, 10_001)]}"
    start = time.perf_counter()
    sweep = load_sweep(_sweep(tmp_path, grid))
    assert len(sweep.tasks) == 10_000
    assert time.perf_counter() - start < 10


def test_point_names_that_clash_are_made_unique_as_before():
    # the first of two points with the same name gets a hash; the last keeps the name
    names = point_names([[("training.k", "a b")], [("training.k", "a_b")]])
    assert names[1] == "k-a_b" and names[0].startswith("k-a_b-") and len(set(names)) == 2


def test_a_sweep_name_cannot_leave_runs(tmp_path, monkeypatch):
    # name = "../../evil" wrote results.csv, summary.csv and points/ two folders up
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    path = _sweep(tmp_path / "a" / "b", "training.learning_rate = [0.1]")
    path.write_text(path.read_text().replace("[sweep]\n", '[sweep]\nname = "../../evil"\n'))
    refused(invoke("sweep", path), f"{path}:2:", "`sweep.name`")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "sweep.toml", "xor.toml"]


# ------------------------------------------------------------------ links planted in folders


def test_a_report_folder_that_is_a_link_is_refused(xor_run, tmp_path):
    # a run directory from elsewhere with report -> somewhere: the figures went there
    target = tmp_path / "run"
    shutil.copytree(xor_run, target)
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "report").symlink_to(outside)
    refused(invoke("report", target), str(target / "report"), "symbolic link")
    assert list(outside.iterdir()) == []


def test_a_sweep_points_folder_that_is_a_link_is_refused(tmp_path):
    path = _sweep(tmp_path, "training.learning_rate = [0.1]")
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "points").symlink_to(outside)
    refused(invoke("sweep", path, "--out", out), str(out / "points"), "symbolic link")
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------ IDX data sets


def _idx_folder(folder: Path, train_images: bytes, name: str) -> Path:
    """An IDX folder of 4 samples of 2 pixels, its training images replaced."""
    images = struct.pack(">BBBBIII", 0, 0, 8, 3, 4, 2, 1) + bytes(8)
    labels = struct.pack(">BBBBI", 0, 0, 8, 1, 4) + bytes([0, 1, 0, 1])
    folder.mkdir()
    for kind, data in (("images-idx3", images), ("labels-idx1", labels)):
        (folder / f"t10k-{kind}-ubyte").write_bytes(data)
        (folder / f"train-{kind}-ubyte").write_bytes(data)
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / name).write_bytes(train_images)
    return folder


def test_idx_dimensions_whose_product_wraps_are_refused(tmp_path):
    # 65536**4 bytes wrapped to 0 in int64: "need 0 bytes", then a reshape traceback
    header = struct.pack(">BBBB", 0, 0, 8, 4) + struct.pack(">IIII", *[65536] * 4)
    folder = _idx_folder(tmp_path / "idx", header, "train-images-idx3-ubyte")
    result = invoke("train", XOR, "--out", tmp_path / "run", "--set", f"training.dataset={folder}")
    refused(result, "`training.dataset`", "18,446,744,073,709,551,616 bytes", "memory")
    assert not (tmp_path / "run").exists()


def test_a_gzip_bomb_is_not_decompressed_whole(tmp_path):
    # 256 MiB of zeros after 4 declared samples: the whole of it was decompressed first
    data = io.BytesIO()
    with gzip.GzipFile(fileobj=data, mode="wb") as fh:
        fh.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 4, 2, 1) + bytes(8))
        for _ in range(256):
            fh.write(bytes(1 << 20))
    folder = _idx_folder(tmp_path / "idx", data.getvalue(), "train-images-idx3-ubyte.gz")
    dataset = f"training.dataset={folder}"
    result, peak = traced(lambda: invoke("train", XOR, "--out", tmp_path / "run", "--set", dataset))
    refused(result, "train-images-idx3-ubyte.gz", "extra bytes at the end")
    assert peak < 64e6


def test_a_wide_csv_is_read_in_linear_time_and_memory(tmp_path):
    # numpy's loadtxt(dtype=str): 2 rows of 10,000 columns (40 kB) took 30 s and 4 GB
    path = tmp_path / "wide.csv"
    columns = 10_000
    path.write_text(
        ",".join(f"f{i}" for i in range(columns))
        + ",label\n"
        + "".join(",".join(v * columns) + f",{k}\n" for k, v in enumerate("01"))
    )
    dataset = f"training.dataset={path}"
    start = time.perf_counter()
    result, peak = traced(lambda: invoke("train", XOR, "--out", tmp_path / "run", "--set", dataset))
    refused(result, "`training.dataset`", "has 10000 features per sample")
    assert peak < 200e6 and time.perf_counter() - start < 15
