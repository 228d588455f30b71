"""The Python API: the public names of eqprop_cli, and what importing it loads."""

from __future__ import annotations

import subprocess
import sys

from test_readme import README, blocks

import eqprop_cli


def test_every_public_name_resolves():
    for name in eqprop_cli.__all__:
        assert getattr(eqprop_cli, name) is not None, name


def loaded_modules(code: str) -> str:
    """The eqprop_cli modules that a fresh interpreter has loaded after running ``code``."""
    code += "\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith('eqprop_cli')))\n"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def test_importing_the_package_loads_neither_trainer_nor_exporter():
    loaded = loaded_modules(
        "import eqprop_cli\n"
        "net = eqprop_cli.load_network('circuits/xor.toml')\n"
        "eqprop_cli.solve(net, [[0.0, 1.0]])"
    )
    assert "eqprop_cli.solver.equilibrium" in loaded
    for heavy in ("learn.train", "hardware.spice", "data.datasets", "cli"):
        assert f"eqprop_cli.{heavy}'" not in loaded, heavy


def test_readme_python_examples_use_the_public_names_only():
    """README's examples (run by test_readme) import from eqprop_cli itself."""
    code = [line for b in blocks(README.read_text()) if b.kind == "python" for line in b.lines]
    imports = [line for line in code if "import" in line and "eqprop_cli" in line]
    assert imports and all(line.startswith("from eqprop_cli import ") for line in imports)
    names = {n.strip() for line in imports for n in line.split("import", 1)[1].split(",")}
    assert {"load_network", "solve", "Trainer", "export_spice"} <= names <= set(eqprop_cli.__all__)


def test_unknown_names_are_attribute_errors():
    try:
        eqprop_cli.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_library_messages_name_parameters_and_the_cli_names_its_options():
    from typer.testing import CliRunner

    from eqprop_cli.cli import app
    from eqprop_cli.hardware.variation import Variation

    try:
        Variation(0.1, stuck_off=0.7, stuck_on=0.6)
    except eqprop_cli.EqpropError as exc:
        assert str(exc) == "stuck_off and stuck_on add up to more than 1"
    else:
        raise AssertionError("no error")
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "circuits/xor.toml",
            "--variation",
            "0.1",
            "--stuck-off",
            "0.7",
            "--stuck-on",
            "0.6",
        ],
    )
    assert result.exit_code == 2
    assert "--stuck-off and --stuck-on add up to more than 1" in result.stderr


def test_override_errors_name_the_override_and_the_cli_names_set():
    """A bad override: the library's message says "override", the CLI's "--set"."""
    from typer.testing import CliRunner

    from eqprop_cli.cli import app

    try:
        eqprop_cli.load_circuit("circuits/xor.toml", ["training.beta=-1"])
    except eqprop_cli.EqpropError as exc:
        assert str(exc).endswith("(from override training.beta=-1)")
        assert "--" not in str(exc)
    else:
        raise AssertionError("no error")
    try:
        eqprop_cli.load_circuit("circuits/xor.toml", ["training"])
    except eqprop_cli.EqpropError as exc:
        assert "override training: expected KEY=VALUE" in str(exc)
    else:
        raise AssertionError("no error")
    result = CliRunner().invoke(app, ["check", "circuits/xor.toml", "--set", "training.beta=-1"])
    assert result.exit_code == 2
    assert result.stderr.rstrip().endswith("(from --set training.beta=-1)")
    result = CliRunner().invoke(app, ["check", "circuits/xor.toml", "--set", "training"])
    assert result.exit_code == 2
    assert "--set training: expected KEY=VALUE" in result.stderr
