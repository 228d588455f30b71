"""The documentation stays true: man pages render cleanly and cover every key and option.

Keys come from the parameter tables (eqprop_cli.params, eqprop_cli.spec) and
options from the click command behind the typer app, so adding a key or an
option without documenting it fails here.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

import eqprop_cli.cli
from eqprop_cli.circuit import params, spec
from eqprop_cli.circuit.units import PREFIXES, parse_si
from eqprop_cli.devices import DEVICE_KINDS
from eqprop_cli.hardware import spice

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"
# Every command, sub-commands of a group as "group command", and the page that documents it.
COMMAND_PAGES = {
    "check": "eqprop-check.1",
    "solve": "eqprop-solve.1",
    "export": "eqprop-export.1",
    "train": "eqprop-train.1",
    "eval": "eqprop-eval.1",
    "gradcheck": "eqprop-gradcheck.1",
    "report": "eqprop-report.1",
    "sweep": "eqprop-sweep.1",
    "data list": "eqprop-data.1",
    "data fetch": "eqprop-data.1",
}
PAGES = ["eqprop.1", *dict.fromkeys(COMMAND_PAGES.values()), "eqprop-circuit.5"]
# The files of a run directory, described by the pages of the commands that read them.
RUN_FILES = ("config.toml", "checkpoint.npz", "metrics.csv", "report/")

# Each key table of the circuit format and the manual section (.SS heading) that documents it.
KEY_SECTIONS = {
    "CIRCUIT_KEYS": "[circuit]",
    "INPUT_KEYS": "[input]",
    "HIDDEN_KEYS": "[[hidden]]",
    "OUTPUT_KEYS": "[output]",
    "DIODE_ATTACH_KEYS": "[[hidden]]",
    "CONNECTION_KEYS": "[[connections]]",
    "NETLIST_KEYS": "[netlist]",
    "ELEMENT_KEYS": "[[elements]]",
    "TRAINING_KEYS": "[training]",
}
KIND_WORDS = {"int": "integer", "bool": "boolean"}
UNIT_WORDS = {"Ω": "ohms"}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(tool: str) -> str:
    """Path of an external tool; a failure in CI, a skip elsewhere."""
    path = shutil.which(tool)
    if path is None:
        if in_ci():
            pytest.fail(f"{tool} is required in CI (apt-get install -y {tool})")
        pytest.skip(f"{tool} not installed")
    return path


def plain(roff: str) -> str:
    """Roff source with the escapes these pages use turned into plain text."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    for escape, char in (("\\-", "-"), ("\\(dq", '"'), ("\\(aq", "'"), ("\\&", ""), ("\\c", "")):
        text = text.replace(escape, char)
    return text


def page(name: str) -> str:
    return plain((MAN / name).read_text(encoding="utf-8"))


def sections(text: str, level: str) -> dict[str, str]:
    """Body of every .SH or .SS section, by heading (quotes removed)."""
    out: dict[str, str] = {}
    parts = re.split(rf"^\.{level} +(.*)$", text, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        heading = heading.strip()
        if len(heading) > 1 and heading[0] == heading[-1] == '"':
            heading = heading[1:-1]
        out[heading] = body
    return out


def entries(body: str) -> dict[str, str]:
    """Tag line of every .TP entry, by the first word of the tag."""
    out: dict[str, str] = {}
    for tag in re.findall(r"^\.TP\n(.*)$", body, flags=re.M):
        words = re.sub(r"^\.[A-Z]+ ", "", tag).replace('"', " ").replace(",", " ").split()
        for word in words[:1] + [w for w in words[1:2] if tag.startswith(".B ")]:
            out.setdefault(word, tag)
    return out


def circuit_sections() -> dict[str, str]:
    return sections(page("eqprop-circuit.5"), "SS")


def check_entry(param: params.Param, tag: str) -> None:
    """The tag line states the key's kind, unit, default and lower bound as the table does."""
    kind = KIND_WORDS.get(param.kind, param.kind)
    assert kind in tag, f"{param.name}: kind {kind!r} not in {tag!r}"
    if param.unit:
        unit = UNIT_WORDS.get(param.unit, param.unit)
        assert re.search(rf"[ ,]{re.escape(unit)}[;)]", tag), f"{param.name}: unit not in {tag!r}"
    if param.minimum is not None:
        bound = f"{'>' if param.exclusive_min else '>='} {param.minimum:g}"
        assert bound in tag, f"{param.name}: bound {bound!r} not in {tag!r}"
    if param.default is None:
        allowed = ("no default", "default from", "default hidden1")
        assert "default" not in tag or any(a in tag for a in allowed), tag
        return
    found = re.search(r"default ([^;)]*)", tag)
    assert found, f"{param.name}: no default in {tag!r}"
    shown = found.group(1).strip()
    if isinstance(param.default, bool):
        assert shown == str(param.default).lower(), tag
    elif isinstance(param.default, str):
        assert shown.strip('"') == param.default, tag
    else:
        # minus infinity is the TOML float -inf (parse_si reads "inf" and "+inf" only)
        value = -math.inf if shown == "-inf" else parse_si(shown.strip('"'))
        assert value == param.default, tag


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("device", ["ps", "utf8"])  # print, and a terminal (man -l)
@pytest.mark.parametrize("name", PAGES)
def test_man_page_renders_without_warnings(name, device):
    groff = require("groff")
    proc = subprocess.run(
        [groff, "-man", f"-T{device}", "-ww", "-z", "-t", str(MAN / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("name", PAGES)
def test_man_page_header_names_the_page(name):
    stem, section = name.rsplit(".", 1)
    title = stem.upper().replace("-", "\\-")
    first = (MAN / name).read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f".TH {title} {section} "), first


# --------------------------------------------------------------------------- circuit format


@pytest.mark.parametrize("kind", sorted(DEVICE_KINDS))
def test_every_device_parameter_is_documented(kind):
    body = circuit_sections()[f'type = "{kind}"']
    documented = entries(body)
    for param in DEVICE_KINDS[kind].params:
        assert param.name in documented, f"{kind}.{param.name} has no entry in eqprop-circuit(5)"
        check_entry(param, documented[param.name])


def test_every_solver_key_is_documented():
    documented = entries(circuit_sections()["[solver]"])
    for param in params.SOLVER:
        assert param.name in documented, f"solver.{param.name} has no entry in eqprop-circuit(5)"
        check_entry(param, documented[param.name])


@pytest.mark.parametrize("table", sorted(KEY_SECTIONS))
def test_every_section_key_is_documented(table):
    documented = entries(circuit_sections()[KEY_SECTIONS[table]])
    for param in getattr(spec, table):
        assert param.name in documented, f"{table}: {param.name} has no entry in eqprop-circuit(5)"
        check_entry(param, documented[param.name])


@pytest.mark.parametrize("table", sorted(KEY_SECTIONS))
def test_every_section_choice_is_documented(table):
    body = circuit_sections()[KEY_SECTIONS[table]]
    for param in getattr(spec, table):
        for choice in param.choices:
            assert f'"{choice}"' in body, f"{table}: {param.name} = {choice!r}"


def test_every_key_name_appears_in_the_circuit_page():
    text = page("eqprop-circuit.5")
    names = {p.name for kind in DEVICE_KINDS.values() for p in kind.params}
    names |= {p.name for p in params.SOLVER}
    for table in KEY_SECTIONS:
        names |= {p.name for p in getattr(spec, table)}
    missing = [n for n in sorted(names) if not re.search(rf"(?<![\w-]){n}(?![\w-])", text)]
    assert not missing


def test_every_device_kind_and_choice_is_documented():
    text = page("eqprop-circuit.5")
    for kind in DEVICE_KINDS.values():
        assert f'type = "{kind.name}"' in text
        for param in kind.params:
            for choice in param.choices:
                assert f'"{choice}"' in text, f"{kind.name}.{param.name} = {choice!r}"


def test_si_prefixes_are_documented():
    text = page("eqprop-circuit.5")
    body = sections(text, "SH")["VALUES AND UNITS"]
    for prefix in (p for p in PREFIXES if p not in "µμ"):
        assert re.search(rf"^\.B {prefix}$", body, flags=re.M), prefix
    assert "\\(mc" in body  # the micro sign
    assert "\\[*m]" in body  # Greek mu
    assert '"inf"' in body


# --------------------------------------------------------------------------- commands


def cli_commands():
    """The click group behind the app, and every command by name ("data list" for a sub-app's)."""
    group = typer.main.get_command(eqprop_cli.cli.app)
    commands = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer may vendor its own click)
            commands.update({f"{name} {sub}": c for sub, c in command.commands.items()})
        else:
            commands[name] = command
    return group, commands


def options_section(name: str) -> str:
    """The OPTIONS of a command's page; on a page of several commands, its own .SS there."""
    body = sections(page(COMMAND_PAGES[name]), "SH")["OPTIONS"]
    if list(COMMAND_PAGES.values()).count(COMMAND_PAGES[name]) > 1:
        subsections = sections(body, "SS")
        assert f"eqprop {name}" in subsections, f"{COMMAND_PAGES[name]} has no .SS eqprop {name}"
        body = subsections[f"eqprop {name}"]
    return body


def options(command) -> list[str]:
    return sorted(
        opt
        for param in command.params
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("-")
    )


def test_every_command_has_a_page():
    _, commands = cli_commands()
    assert set(commands) == set(COMMAND_PAGES)
    for name in commands:
        stem = COMMAND_PAGES[name].rsplit(".", 1)[0]
        assert f".BR {stem} (1)" in page("eqprop.1"), f"eqprop(1) does not point to {name}"
        assert f"eqprop {name}" in sections(page("eqprop.1"), "SH")["COMMANDS"], name


@pytest.mark.parametrize("name", sorted(COMMAND_PAGES))
def test_every_option_is_documented_in_the_command_page(name):
    _, commands = cli_commands()
    command = commands[name]
    body = options_section(name)
    documented = re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", body)
    long_options = [o for o in options(command) if o.startswith("--")]
    assert long_options, f"{name}: no options found on the click command"
    for option in [*options(command), "--help", "-h"]:
        assert option in documented, f"eqprop {name} {option} is not in {COMMAND_PAGES[name]}"
    synopsis = sections(page(COMMAND_PAGES[name]), "SH")["SYNOPSIS"]
    for option in long_options:
        assert option in synopsis or option.startswith("--no-"), f"{option} not in the synopsis"


def option_entry(body: str, option: str) -> str:
    """The text of the .TP entry of an OPTIONS section whose tag names the option."""
    for entry in re.split(r"^\.TP\n", body, flags=re.M)[1:]:
        tag = entry.splitlines()[0]
        if re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", tag):
            return " ".join(re.sub(r"^\.[A-Z]+ ", "", entry, flags=re.M).split())
    raise AssertionError(f"no entry for {option}")


@pytest.mark.parametrize("name", sorted(COMMAND_PAGES))
def test_option_defaults_agree_with_the_command_page(name):
    """An option's default in --help (a value, not "none") is the one its man entry states."""
    _, commands = cli_commands()
    body = options_section(name)
    for param in commands[name].params:
        default = getattr(param.default, "value", param.default)
        if not param.opts[0].startswith("--") or default in (None, False) or param.multiple:
            continue
        entry = option_entry(body, param.opts[0]).replace('"', "")
        shown = re.escape(str(default))
        assert re.search("default", entry, re.I), f"eqprop {name} {param.opts[0]}: no default"
        assert re.search(rf"(?<![\w.]){shown}(?![\w])", entry), (name, param.opts[0], default)


def test_every_global_option_is_documented():
    group, _ = cli_commands()
    body = sections(page("eqprop.1"), "SH")["OPTIONS"]
    for option in options(group):
        assert option in body, f"eqprop {option} is not in eqprop.1"


def test_export_page_matches_the_exporter():
    text = page("eqprop-export.1")
    assert spice.OPTIONS in text
    found = re.search(r"on-conductance: (\S+) times the larger", text)
    assert found and float(found.group(1)) == spice.CLAMP_FACTOR


def test_exit_codes_are_documented():
    from eqprop_cli.cli.circuit import NOT_CONVERGED
    from eqprop_cli.errors import NotConvergedError

    body = sections(page("eqprop.1"), "SH")["EXIT STATUS"]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    summary = readme.split("Exit status: ", 1)[1].split(".", 1)[0]
    assert NOT_CONVERGED == NotConvergedError.exit_code == 3
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^\.B {code}$", body, flags=re.M), code
        assert re.search(rf"(?<!\d){code} ", summary), f"README's exit statuses lack {code}"


@pytest.mark.parametrize("name", sorted(set(COMMAND_PAGES.values())))
def test_every_command_page_has_the_usual_sections(name):
    headings = sections(page(name), "SH")
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"):
        assert heading in headings, f"{name} has no {heading}"
    assert "SEE ALSO" in headings and ".BR eqprop (1)" in headings["SEE ALSO"], name
    codes = ("0", "1", "2", "130") if name == "eqprop-gradcheck.1" else ("0", "2", "130")
    for code in codes:
        assert re.search(rf"^\.B {code}$", headings["EXIT STATUS"], flags=re.M), (name, code)


@pytest.mark.parametrize("name", ["eqprop-train.1", "eqprop-eval.1", "eqprop-gradcheck.1"])
def test_run_directory_files_are_documented(name):
    files = sections(page(name), "SH")["FILES"]
    for file in RUN_FILES:
        assert file in files, f"{file} not in the FILES of {name}"


def test_metrics_columns_are_documented():
    """The columns of metrics.csv, in the order the trainer writes them (one epoch of xor)."""
    from eqprop_cli.learn.samples import training_data
    from eqprop_cli.learn.train import Trainer
    from eqprop_cli.runs.rundir import load_target

    loaded = load_target(ROOT / "circuits" / "xor.toml", ["training.epochs=1"])
    dataset, splits = training_data(loaded.spec, loaded.network)
    trainer = Trainer(loaded.network, loaded.spec, splits, dataset.n_classes)
    state, _ = trainer.run(trainer.new_state(), 1)
    columns = list(state.metrics[-1])
    files = sections(page("eqprop-train.1"), "SH")["FILES"]
    tags = re.findall(r"^\.TP\n\.BR? (.*)$", files, flags=re.M)
    shown = [w for tag in tags for w in re.findall(r"\w+", tag) if w in columns]
    assert shown == columns


def test_eval_json_keys_are_documented():
    body = options_section("eval")
    keys = ("target", "dataset", "split", "n_samples", "accuracy", "error_rate", "loss")
    keys += ("not_converged", "classes", "confusion", "per_class_accuracy")
    keys += ("per_class_recall", "per_class_precision")
    for key in keys:
        assert re.search(rf"^\.B {key}$", body, flags=re.M), key


def test_gradcheck_json_keys_and_verdict_are_documented():
    from eqprop_cli.cli import train as cli_train
    from eqprop_cli.learn import gradcheck

    body = options_section("gradcheck")
    for key in ("target", "data", "samples", "beta", "tol", "passed", "variants"):
        assert re.search(rf"^\.B {key}$", body, flags=re.M), key
    for key in ("cosine", "relative_error", "overall", "connections", *gradcheck.VARIANTS):
        assert re.search(rf"(?<![\w-]){key}(?![\w-])", body), key
    text = page("eqprop-gradcheck.1")
    assert f"cosine is >= {cli_train.GRADCHECK_COSINE:g}" in text
    assert f"relative error <= {cli_train.GRADCHECK_ERROR:g}" in text


# --------------------------------------------------------------------------- --help

EXAMPLE = re.compile(r"example", re.I)


def help_text(*args: str) -> str:
    """`eqprop ARGS --help` in-process (CliRunner): its exit status must be 0."""
    result = CliRunner().invoke(
        eqprop_cli.cli.app,
        [*args, "--help"],
        env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_main_help_exits_0_and_mentions_an_example():
    text = help_text()
    for name in COMMAND_PAGES:
        assert name.split()[0] in text
    assert EXAMPLE.search(text), text


def test_help_shows_every_bracketed_word():
    """Help is rendered as rich markup, where "[training]" is a style tag and vanishes:
    every [word] of a command's help text must reach the rendered --help."""
    _, commands = cli_commands()
    for name, command in commands.items():
        texts = [command.help or "", *(getattr(p, "help", "") or "" for p in command.params)]
        shown = " ".join(help_text(*name.split()).split())
        for word in re.findall(r"\[[a-z_.]+\]", " ".join(texts)):
            assert word in shown, f"eqprop {name} --help lost {word} (rich markup: write \\{word})"


def test_help_runs_as_the_console_script():
    """One --help through the installed entry point (the others run in-process)."""
    proc = subprocess.run(
        [sys.executable, "-m", "eqprop_cli", "check", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        check=False,
    )
    assert proc.returncode == 0 and "Example: eqprop check" in proc.stdout, proc.stderr


@pytest.mark.parametrize("name", sorted(COMMAND_PAGES))
def test_command_help_exits_0_and_mentions_an_example(name):
    _, commands = cli_commands()
    text = help_text(*name.split())
    assert EXAMPLE.search(text), text
    takes_argument = any(
        p.param_type_name == "argument" and p.required for p in commands[name].params
    )
    runs = rf"eqprop {name} \S" if takes_argument else rf"eqprop {name}(?![\w-])"
    assert re.search(runs, text), "the example runs the command"


def help_examples() -> dict[str, list[list[str]]]:
    """Every command's help examples, as argument lists after `eqprop COMMAND`."""
    out = {}
    for name in COMMAND_PAGES:
        lines = re.findall(r"Example: eqprop (.*?)\s*$", help_text(*name.split()), flags=re.M)
        out[name] = [
            shlex.split(line.split("&&")[0])[len(name.split()) :]
            for line in lines
            if line.startswith(name)
        ]
    return out


@pytest.mark.parametrize("name", sorted(COMMAND_PAGES))
def test_help_examples_name_what_exists(name):
    """Every path in a help example is a file of the repository, a run directory that a
    train example makes (--out), or the example's own output (-o); a data set name is
    one that `data fetch` takes. Every command has an example with something to check."""
    examples = help_examples()
    assert examples[name], f"eqprop {name} --help has no example"
    made, outputs = set(), set()
    for args in (a for runs in examples.values() for a in runs):
        for option, value in itertools.pairwise(args):
            if option == "--out":
                made.add(value)
            elif option in ("-o", "--output"):
                outputs.add(value)
    checked = 0
    for args in examples[name]:
        for token in args:
            if token.startswith("-") or ("/" not in token and not token.endswith(".toml")):
                continue
            assert (ROOT / token).exists() or token in made | outputs, (
                f"eqprop {name} --help: {token} is neither a file, a run a train example makes, "
                "nor an output"
            )
            checked += 1
        if name == "data fetch":
            assert args[0] in ("mnist", "fashion-mnist"), args
            checked += 1
    assert checked or name == "data list", f"eqprop {name} --help: the example names nothing"


def test_every_map_column_is_documented_in_the_export_page():
    from eqprop_cli.hardware.devicemap import COLUMNS

    text = page("eqprop-export.1")
    for column in COLUMNS:
        assert re.search(rf"^\.BR? {column}\b", text, flags=re.M), column


def test_monte_carlo_and_ngspice_json_keys_are_documented():
    """The keys that `eqprop eval --variation` and `--backend ngspice` print."""
    from eqprop_cli.hardware.ngspice import SpiceCheck
    from eqprop_cli.hardware.variation import MonteCarlo
    from eqprop_cli.learn.evaluate import Evaluation

    nominal = Evaluation(2, 0.5, 0.1, np.eye(2, dtype=int), 0)
    keys = list(MonteCarlo(nominal, np.array([1, 2])).as_dict())
    keys += list(SpiceCheck(np.zeros(2), np.zeros(2), np.zeros(2), 0.0, 1.0, 0).as_dict())
    text = page("eqprop-eval.1")
    for key in keys:
        assert re.search(rf"^\.BR? .*\b{key}\b", text, flags=re.M), key


def test_the_circuit_page_quotes_xor_training_section_as_it_is():
    import tomllib

    page = (MAN / "eqprop-circuit.5").read_text(encoding="utf-8")
    quoted = re.search(r"\.IR circuits/xor\.toml :\n\.PP\n\.EX\n(.*?)\n\.EE", page, flags=re.S)
    assert quoted, "the training example of circuits/xor.toml is gone from eqprop-circuit(5)"
    shown = tomllib.loads(quoted.group(1).replace("\\-", "-"))["training"]
    actual = tomllib.loads((ROOT / "circuits" / "xor.toml").read_text(encoding="utf-8"))
    assert shown == actual["training"]


def test_every_update_key_and_preset_is_documented():
    from eqprop_cli.devices.update import PRESETS, UPDATE_KEYS

    body = circuit_sections()["[devices.NAME.update]: how a resistor learns"]
    documented = entries(body)
    for param in UPDATE_KEYS:
        assert param.name in documented, f"update.{param.name} has no entry in eqprop-circuit(5)"
        check_entry(param, documented[param.name])
        for choice in param.choices:
            assert f'"{choice}"' in body, (param.name, choice)
    for name, preset in PRESETS.items():
        assert f".B {name}\n" in body, f"preset {name} has no entry"
        entry = body.split(f".B {name}\n", 1)[1].split(".TP")[0]
        for key, value in preset.values.items():  # every value stated with its preset
            if not isinstance(value, str):
                assert f"{value:g}" in entry, (name, key, value)


# --------------------------------------------------------------------------- shipped circuits


def header(path: Path) -> str:
    """A circuit file's leading comment, as one line of text."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return " ".join(lines).replace("±", "+-").replace("µ", "u")


def si(value: float, unit: str) -> str:
    """A value as the headers write it: 20 uS, 1 nS, 2 mS, 40 V."""
    for factor, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
        if abs(value) >= factor * 0.9999:
            return f"{value / factor:g} {prefix}{unit}"
    return f"{value:g} {unit}"


def stated(value: str, text: str) -> bool:
    """Whether the text gives this value ("20 V" is not in "320 V")."""
    return re.search(rf"(?<![\d.]){re.escape(value)}(?!\w)", text) is not None


def sources(spec_: spec.CircuitSpec) -> set[float]:
    """Every source voltage of a circuit at features in [0, 1]: inputs, rails, vsources, targets."""
    volts = set(spec_.rails.values())
    gain = spec_.input.gain if spec_.input is not None else spec_.netlist.input_gain
    volts.add(gain)
    for element in spec_.netlist.elements if spec_.netlist is not None else ():
        device = spec_.devices[element.device]
        if device.type == "vsource":
            params_ = {**device.params, **element.overrides}
            volts.add(params_["value"] + (params_["gain"] if element.feature is not None else 0))
    if spec_.training is not None:
        volts |= {spec_.training.target_high, spec_.training.target_low}
    return {abs(v) for v in volts}


@pytest.mark.parametrize("path", sorted((ROOT / "circuits").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_circuit_header_states_what_a_chip_would_not_apply(path):
    """DESIGN.md's physical plausibility: a source beyond about +-1 V, or a resistor range
    beyond memristors' 0.1 uS to 100 uS, is stated in the file's header comment."""
    spec_ = spec.load_circuit(path)
    text = header(path)
    for volts in sorted(sources(spec_)):
        if volts > 1.1:
            assert stated(si(volts, "V"), text), f"{path.name}: a {volts:g} V source, not stated"
    for device in spec_.devices.values():
        if device.type == "resistor":
            low, high = device.params["g_min"], device.params["g_max"]
            if low < 0.099e-6 or high > 101e-6:
                for g in (low, high):
                    assert stated(si(g, "S"), text), f"{path.name}: {device.name}'s {si(g, 'S')}"


# Keys a table takes besides its parameter table: nested tables and lists, element nodes.
EXTRA_KEYS = {
    "[[hidden]]": {"diodes"},
    "[output]": {"diodes"},
    "[netlist]": {"inputs", "outputs"},
    "[[elements]]": {"nodes"},
}


def accepted_keys() -> dict[str, set[str]]:
    """Every key (and every choice) the loader takes, by the manual section documenting it."""
    from eqprop_cli.devices.update import UPDATE_KEYS

    tables = {section: [] for section in KEY_SECTIONS.values()}
    for table, section in KEY_SECTIONS.items():
        tables[section] += getattr(spec, table)
    for kind in DEVICE_KINDS.values():
        tables[f'type = "{kind.name}"'] = list(kind.params)
    tables["[solver]"] = list(params.SOLVER)
    tables["[devices.NAME.update]: how a resistor learns"] = list(UPDATE_KEYS)
    out = {}
    for section, table in tables.items():
        names = {p.name for p in table} | {str(c) for p in table for c in p.choices}
        out[section] = names | EXTRA_KEYS.get(section, set())
    out["[[elements]]"] |= set(DEVICE_KINDS)  # what the nodes of each kind mean
    out["[[elements]]"] |= {k for kind in DEVICE_KINDS.values() for k in kind.element_keys}
    return out


def test_every_documented_key_is_one_the_loader_takes():
    """The reverse of the tests above: no entry in eqprop-circuit(5) for a key that the
    loader would refuse as unknown (a key renamed or removed, its entry left behind)."""
    documented = circuit_sections()
    for section, names in accepted_keys().items():
        stale = set(entries(documented[section])) - names
        assert not stale, f"eqprop-circuit(5), {section}: {sorted(stale)} are not accepted"


def test_gradcheck_examples_say_where_their_inputs_come_from():
    """gradcheck takes its samples from the data set of the file's [training] section, and
    random inputs only without one: each example of a shipped circuit says which, in its
    paragraph or its output (the page said kendall2020-mnist has no [training], so random
    inputs, after its file had gained a [training] section on MNIST)."""
    import tomllib

    body = sections(page("eqprop-gradcheck.1"), "SH")["EXAMPLES"]
    chunks = re.split(r"^\.EE$", body, flags=re.M)
    checked = 0
    for chunk in chunks:
        found = re.search(r"^\$ eqprop gradcheck circuits/(\S+\.toml)", chunk, re.M)
        if not found:
            continue
        circuit = tomllib.loads((ROOT / "circuits" / found.group(1)).read_text())
        dataset = circuit.get("training", {}).get("dataset")
        said_random = "random" in chunk
        assert said_random == (dataset is None), (found.group(1), dataset, chunk)
        if dataset:
            assert dataset.lower() in chunk.lower(), (found.group(1), dataset)
        checked += 1
    assert checked >= 2
