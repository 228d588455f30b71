"""Every error a user can hit: exit code 2, one located message on stderr, no traceback.

Each test writes a small circuit inline. The line the error must point at is
marked in the text with a ``# <-`` comment, so the expected line numbers stay
right when a circuit is edited.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eqprop_cli import compile_circuit, load_circuit, load_network
from eqprop_cli.cli import app
from eqprop_cli.errors import CircuitError

runner = CliRunner()
MARK = "# <-"

NETLIST = """\
[devices.w]
type = "resistor"
g = "1m"

[devices.vs]
type = "vsource"
value = 1.0

[devices.amp]
type = "amplifier"
gain = 2.0

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
"""

LAYERED = """\
[devices.w]
type = "resistor"
g = "1m"

[devices.clamp]
type = "diode"

[devices.amp]
type = "amplifier"
gain = 2.0

[rails]
vtop = 1.0

[input]
size = 2

[[hidden]]
name = "h"
size = 3
amplifier = "amp"
diodes = [
  { device = "clamp", anode = "gnd", cathode = "node" },
  { device = "clamp", anode = "node", cathode = "vtop" },
]

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
"""


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def write(tmp_path: Path, text: str, name: str = "circuit.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def marked_line(path: Path) -> int:
    lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if MARK in line]
    assert len(lines) == 1, "mark exactly one line with '# <-'"
    return lines[0]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *phrases: str) -> str:
    """Exit code 2, no traceback, one message on stderr holding every phrase; returns it."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    assert "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    return message


def assert_circuit_error(
    tmp_path: Path, text: str, key: str | None, *phrases: str, line: int | None = None
) -> str:
    """`eqprop check` on ``text`` fails at the marked line (or ``line``), naming file and key."""
    path = write(tmp_path, text)
    line = marked_line(path) if line is None else line
    result = invoke("check", path)
    message = assert_user_error(result, *phrases)
    assert message.startswith(f"error: {path}:{line}:"), (line, message)
    if key is not None:
        assert f"`{key}`" in message, message
    return message


def test_the_base_circuits_are_valid(tmp_path):
    for name, text in (("net.toml", NETLIST), ("lay.toml", LAYERED)):
        result = invoke("check", write(tmp_path, text, name))
        assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- keys and values


def test_unknown_key_suggests_the_spelling(tmp_path):
    text = edit(NETLIST, 'g = "1m"', f'g = "1m"\ng_mni = "1u"  {MARK}')
    assert_circuit_error(tmp_path, text, "devices.w.g_mni", "unknown key", 'did you mean "g_min"?')


def test_unknown_section_suggests_the_spelling(tmp_path):
    text = NETLIST + f"\n[solvr]  {MARK}\ntol = 1e-9\n"
    assert_circuit_error(tmp_path, text, "solvr", "unknown key", 'did you mean "solver"?')


def test_unknown_key_in_an_inline_table(tmp_path):
    text = edit(
        LAYERED,
        '{ device = "clamp", anode = "gnd", cathode = "node" },',
        f'{{ device = "clamp", anode = "gnd", cathod = "node" }},  {MARK}',
    )
    assert_circuit_error(tmp_path, text, "hidden[0].diodes[0].cathod", 'did you mean "cathode"?')


def test_unknown_device_type(tmp_path):
    text = edit(NETLIST, 'type = "resistor"', f'type = "resistr"  {MARK}')
    assert_circuit_error(
        tmp_path, text, "devices.w.type", "must be one of resistor", 'did you mean "resistor"?'
    )


def test_missing_device_type(tmp_path):
    text = edit(NETLIST, '[devices.w]\ntype = "resistor"\n', f"[devices.w]  {MARK}\n")
    assert_circuit_error(tmp_path, text, "devices.w", "missing key `type`")


def test_wrong_type_boolean_for_a_conductance(tmp_path):
    text = edit(NETLIST, 'g = "1m"', f"g = true  {MARK}")
    assert_circuit_error(
        tmp_path, text, "devices.w.g", "must be a conductance > 0 S", "not a boolean", "got True"
    )


def test_wrong_type_string_for_an_integer(tmp_path):
    text = edit(LAYERED, "[input]\nsize = 2", f'[input]\nsize = "2"  {MARK}')
    assert_circuit_error(tmp_path, text, "input.size", "must be an integer >= 1", 'got "2"')


def test_wrong_type_table_where_a_list_belongs(tmp_path):
    text = edit(NETLIST, 'outputs = ["y"]', f"outputs = {{ y = 1 }}  {MARK}")
    assert_circuit_error(tmp_path, text, "netlist.outputs", "must be a list of node names")


def test_bad_choice_lists_the_choices(tmp_path):
    text = edit(NETLIST, 'g = "1m"', f'g = "1m"\ninit = "gaussian"  {MARK}')
    assert_circuit_error(tmp_path, text, "devices.w.init", 'one of "constant", "uniform", "normal"')


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ('"1x"', 'unit "x" does not fit; expected S'),
        ('"2.5q"', 'unit "q" does not fit'),
        ('"abc"', 'is not a number with an optional SI prefix (e.g. "100k", "2.5u")'),
        ('"nan"', "is not a number with an optional SI prefix"),
        ('"1..2"', "is not a number with an optional SI prefix"),
    ],
)
def test_bad_si_string(tmp_path, value, phrase):
    text = edit(NETLIST, 'g = "1m"', f"g = {value}  {MARK}")
    assert_circuit_error(tmp_path, text, "devices.w.g", "must be a conductance", phrase)


def test_si_unit_of_the_wrong_quantity(tmp_path):
    text = edit(NETLIST, "value = 1.0", f'value = "1mA"  {MARK}')
    assert_circuit_error(tmp_path, text, "devices.vs.value", 'unit "A" does not fit; expected V')


def test_infinite_value_where_not_allowed(tmp_path):
    text = edit(NETLIST, 'g = "1m"', f'g = "inf"  {MARK}')
    assert_circuit_error(tmp_path, text, "devices.w.g", "must be a conductance > 0 S", 'got "inf"')


@pytest.mark.parametrize("value", ['"-3k"', "-1.0", "0", '"0"'])
def test_non_positive_conductance(tmp_path, value):
    text = edit(NETLIST, 'g = "1m"', f"g = {value}  {MARK}")
    assert_circuit_error(tmp_path, text, "devices.w.g", "must be a conductance > 0 S")


@pytest.mark.parametrize("key", ["g_max", "g_min"])
def test_non_positive_bound(tmp_path, key):
    text = edit(NETLIST, 'g = "1m"', f'g = "1m"\n{key} = 0  {MARK}')
    assert_circuit_error(tmp_path, text, f"devices.w.{key}", "must be a conductance > 0 S", "got 0")


def test_negative_resistance_override_on_an_element(tmp_path):
    text = edit(NETLIST, 'nodes = ["y", "gnd"]', f'nodes = ["y", "gnd"]\nr = "-2k"  {MARK}')
    assert_circuit_error(tmp_path, text, "elements[1].r", "must be a resistance > 0 Ω")


def test_g_min_above_g_max(tmp_path):
    text = edit(NETLIST, 'g = "1m"', f'g = "1m"\ng_min = "2m"  {MARK}\ng_max = "1m"')
    assert_circuit_error(
        tmp_path,
        text,
        "devices.w.g_min",
        "g_min must not exceed g_max",
        "0.002 S > g_max = 0.001 S",
    )


def test_element_conductance_outside_the_device_range(tmp_path):
    text = edit(NETLIST, 'g = "1m"', 'g = "1m"\ng_max = "2m"')
    text = edit(text, 'nodes = ["y", "gnd"]', f'nodes = ["y", "gnd"]\ng = "5m"  {MARK}')
    assert_circuit_error(tmp_path, text, "elements[1].g", "g = 0.005 S is outside [g_min, g_max]")


def test_device_conductance_outside_its_own_range(tmp_path):
    text = edit(NETLIST, 'g = "1m"', f'g = "1m"  {MARK}\ng_max = "0.5m"')
    assert_circuit_error(tmp_path, text, "devices.w.g", "is outside [g_min, g_max]")


def test_layered_device_conductance_outside_its_range_is_an_error_too(tmp_path):
    text = edit(LAYERED, 'g = "1m"', f'g = "1m"  {MARK}\ng_max = "0.5m"')
    assert_circuit_error(tmp_path, text, "devices.w.g", "is outside [g_min, g_max]")


def test_uniform_draw_outside_the_range(tmp_path):
    body = f'init = "uniform"\ninit_low = "0.1m"\ninit_high = "5m"  {MARK}\ng_max = "2m"'
    text = edit(LAYERED, 'g = "1m"', body)
    assert_circuit_error(tmp_path, text, "devices.w.init_high", "is outside [g_min, g_max]")


@pytest.mark.parametrize("gain", ["0", "-4", '"-1k"'])
def test_amplifier_gain_not_positive(tmp_path, gain):
    text = edit(LAYERED, "gain = 2.0", f"gain = {gain}  {MARK}")
    assert_circuit_error(tmp_path, text, "devices.amp.gain", "must be a number > 0")


def test_amplifier_gain_out_of_floating_point_range(tmp_path):
    text = edit(LAYERED, "gain = 2.0", "gain = 1e-300")
    text = edit(text, '[[hidden]]\nname = "h"', f'[[hidden]]  {MARK}\nname = "h"')
    assert_circuit_error(tmp_path, text, "hidden[0]", "outside floating-point range")


def test_layer_size_beyond_the_limit(tmp_path):
    text = edit(LAYERED, "[input]\nsize = 2", f"[input]\nsize = 4611686018427387904  {MARK}")
    assert_circuit_error(tmp_path, text, "input.size", "must be an integer >= 1 and <= 1000000")


def test_missing_required_key(tmp_path):
    text = edit(LAYERED, '[[hidden]]\nname = "h"\nsize = 3\n', f'[[hidden]]  {MARK}\nname = "h"\n')
    assert_circuit_error(tmp_path, text, "hidden[0]", "missing key `size`", "an integer >= 1")


# --------------------------------------------------------------------------- references


def test_undeclared_device_in_a_netlist(tmp_path):
    text = edit(NETLIST, 'name = "R2"\ndevice = "w"', f'name = "R2"\ndevice = "ww"  {MARK}')
    assert_circuit_error(
        tmp_path, text, "elements[1].device", 'undeclared device "ww"', 'declared: "w", "vs"'
    )


def test_undeclared_device_in_a_connection(tmp_path):
    text = edit(LAYERED, 'to = "output"\ndevice = "w"', f'to = "output"\ndevice = "mem"  {MARK}')
    assert_circuit_error(
        tmp_path, text, "connections[1].device", 'undeclared device "mem"', 'declared: "w"'
    )


def test_device_of_the_wrong_kind(tmp_path):
    text = edit(LAYERED, 'to = "output"\ndevice = "w"', f'to = "output"\ndevice = "clamp"  {MARK}')
    assert_circuit_error(
        tmp_path, text, "connections[1].device", 'device "clamp" is a diode; expected a resistor'
    )


def test_undeclared_output_node(tmp_path):
    text = edit(NETLIST, 'outputs = ["y"]', f'outputs = ["z"]  {MARK}')
    assert_circuit_error(
        tmp_path, text, "netlist.outputs", 'undeclared node "z"', "no element touches it"
    )


def test_undeclared_input_node(tmp_path):
    text = edit(NETLIST, 'inputs = ["x"]', f'inputs = ["x", "xx"]  {MARK}')
    assert_circuit_error(tmp_path, text, "netlist.inputs", 'undeclared node "xx"')


def test_layer_diode_names_an_unknown_rail(tmp_path):
    text = edit(
        LAYERED,
        '{ device = "clamp", anode = "node", cathode = "vtop" },',
        f'{{ device = "clamp", anode = "node", cathode = "vtpo" }},  {MARK}',
    )
    assert_circuit_error(
        tmp_path,
        text,
        "hidden[0].diodes[1].cathode",
        'undeclared node "vtpo"',
        'a rail ("vtop")',
    )


def test_connection_to_an_unknown_layer(tmp_path):
    text = edit(LAYERED, 'from = "h"\nto = "output"', f'from = "hh"  {MARK}\nto = "output"')
    assert_circuit_error(
        tmp_path, text, "connections[1].from", 'unknown layer "hh"', "layers: input, h"
    )


# --------------------------------------------------------------------------- topology


def test_node_without_dc_path_in_a_netlist(tmp_path):
    text = NETLIST + f'\n[[elements]]  {MARK}\nname = "R3"\ndevice = "w"\nnodes = ["p", "q"]\n'
    assert_circuit_error(
        tmp_path, text, "elements[2]", "no DC path to a fixed potential", '"p", "q"'
    )


def test_node_behind_a_current_source_only(tmp_path):
    text = NETLIST + (
        '\n[devices.ib]\ntype = "isource"\ncurrent = "1u"\n'
        f'\n[[elements]]  {MARK}\nname = "I1"\ndevice = "ib"\nnodes = ["p", "gnd"]\n'
    )
    assert_circuit_error(
        tmp_path, text, "elements[2]", "no DC path", "current sources do not count", '"p"'
    )


def test_layer_without_connections(tmp_path):
    text = LAYERED + f'\n[[hidden]]  {MARK}\nname = "lonely"\nsize = 2\n'
    assert_circuit_error(tmp_path, text, "hidden[1]", "no DC path", '"lonely_0", "lonely_1"')


def test_loop_of_voltage_sources(tmp_path):
    text = NETLIST + (
        '\n[[elements]]\nname = "V1"\ndevice = "vs"\nnodes = ["a", "gnd"]\n'
        f'\n[[elements]]  {MARK}\nname = "V2"\ndevice = "vs"\nnodes = ["a", "gnd"]\n'
    )
    assert_circuit_error(
        tmp_path, text, "elements[3]", 'voltage source "V2"', "loop of voltage sources"
    )


def test_floating_voltage_source(tmp_path):
    text = NETLIST + f'\n[[elements]]  {MARK}\nname = "V1"\ndevice = "vs"\nnodes = ["a", "b"]\n'
    assert_circuit_error(tmp_path, text, "elements[2]", 'voltage source "V1" floats')


def test_output_node_is_an_input(tmp_path):
    text = edit(NETLIST, 'outputs = ["y"]', f'outputs = ["x"]  {MARK}')
    assert_circuit_error(tmp_path, text, "netlist.outputs", 'output node "x" is also an input')


def test_output_node_is_a_rail(tmp_path):
    text = NETLIST + '\n[[elements]]\nname = "V1"\ndevice = "vs"\nnodes = ["y", "gnd"]\n'
    text = edit(text, 'outputs = ["y"]', f'outputs = ["y"]  {MARK}')
    assert_circuit_error(tmp_path, text, "netlist.outputs", 'output node "y" is also an input')


def test_output_node_is_ground(tmp_path):
    text = edit(NETLIST, 'outputs = ["y"]', f'outputs = ["gnd"]  {MARK}')
    assert_circuit_error(tmp_path, text, "netlist.outputs", '"gnd" is ground (0 V)')


def test_input_node_is_ground(tmp_path):
    text = edit(NETLIST, 'inputs = ["x"]', f'inputs = ["0"]  {MARK}')
    assert_circuit_error(tmp_path, text, "netlist.inputs", '"0" is ground (0 V)')


def test_layer_connected_to_itself(tmp_path):
    text = edit(LAYERED, 'from = "h"\nto = "output"', f'from = "h"\nto = "h"  {MARK}')
    assert_circuit_error(tmp_path, text, "connections[1].to", "a layer cannot connect to itself")


def test_connection_declared_twice(tmp_path):
    text = LAYERED + f'\n[[connections]]  {MARK}\nfrom = "h"\nto = "output"\ndevice = "w"\n'
    assert_circuit_error(tmp_path, text, "connections[2]", "h -> output is declared twice")


def test_connection_into_the_input_layer(tmp_path):
    text = edit(LAYERED, 'from = "h"\nto = "output"', f'from = "h"\nto = "input"  {MARK}')
    assert_circuit_error(tmp_path, text, "connections[1].to", 'unknown or input layer "input"')


def test_layer_name_used_twice(tmp_path):
    text = LAYERED + f'\n[[hidden]]\nname = "h"  {MARK}\nsize = 2\n'
    assert_circuit_error(tmp_path, text, "hidden[1].name", 'layer name "h" is used twice')


def test_duplicate_element_names(tmp_path):
    text = edit(NETLIST, 'name = "R2"', f'name = "R1"  {MARK}')
    assert_circuit_error(tmp_path, text, "elements[1].name", 'element name "R1" is used twice')


def test_element_with_both_ends_on_one_node(tmp_path):
    text = edit(NETLIST, 'nodes = ["y", "gnd"]', f'nodes = ["y", "y"]  {MARK}')
    assert_circuit_error(tmp_path, text, "elements[1].nodes", "both ends are the same node (y)")


def test_amplifier_output_connects_back_to_its_input(tmp_path):
    text = NETLIST + (
        f'\n[[elements]]  {MARK}\nname = "A1"\ndevice = "amp"\nnodes = ["y", "z"]\n'
        '\n[[elements]]\nname = "R3"\ndevice = "w"\nnodes = ["z", "y"]\n'
    )
    assert_circuit_error(
        tmp_path,
        text,
        "elements[2]",
        'amplifier "A1" output connects back to its input',
        "no energy function exists",
    )


def test_amplifier_driving_a_fixed_node(tmp_path):
    text = NETLIST + f'\n[[elements]]  {MARK}\nname = "A1"\ndevice = "amp"\nnodes = ["y", "x"]\n'
    assert_circuit_error(
        tmp_path, text, "elements[2]", "drives a node that a voltage source already fixes"
    )


def test_node_driven_by_two_amplifiers(tmp_path):
    text = NETLIST + (
        '\n[[elements]]\nname = "A1"\ndevice = "amp"\nnodes = ["y", "z"]\n'
        f'\n[[elements]]  {MARK}\nname = "A2"\ndevice = "amp"\nnodes = ["y", "z"]\n'
    )
    assert_circuit_error(
        tmp_path, text, "elements[3]", 'amplifier "A2" drives node "z"', 'amplifier "A1" already'
    )


def test_input_features_with_a_gap(tmp_path):
    text = edit(NETLIST, "[[elements]]", f"[[elements]]  {MARK}")
    text += (
        '\n[[elements]]\nname = "V2"\ndevice = "vs"\nfeature = 2\nnodes = ["f", "gnd"]\n'
        '\n[[elements]]\nname = "R3"\ndevice = "w"\nnodes = ["f", "y"]\n'
    )
    assert_circuit_error(tmp_path, text, "elements", "numbered 0..n-1 without gaps; got [0, 2]")


def test_mixing_layered_and_netlist_forms(tmp_path):
    text = LAYERED + f'\n[netlist]  {MARK}\noutputs = ["y"]\n'
    assert_circuit_error(
        tmp_path, text, "netlist", "a circuit is either layered ([input]) or a netlist, not both"
    )


def test_rails_in_a_netlist(tmp_path):
    text = NETLIST + f"\n[rails]  {MARK}\nvtop = 1.0\n"
    assert_circuit_error(tmp_path, text, "rails", "[rails] belong to the layered form")


def test_rail_named_like_a_layer_node(tmp_path):
    text = edit(LAYERED, "vtop = 1.0", f"vtop = 1.0\nh_0 = 0.5  {MARK}")
    assert_circuit_error(
        tmp_path, text, "rails.h_0", 'rail "h_0" has the name of a node of layer h'
    )


def test_rail_named_node(tmp_path):
    text = edit(LAYERED, "vtop = 1.0", f"vtop = 1.0\nnode = 0.5  {MARK}")
    assert_circuit_error(tmp_path, text, "rails.node", "cannot be a rail")


def test_rail_named_node_a(tmp_path):
    text = edit(LAYERED, "vtop = 1.0", f"vtop = 1.0\nnode_a = 0.5  {MARK}")
    assert_circuit_error(tmp_path, text, "rails.node_a", "cannot be a rail")


def test_amplifier_output_diode_without_an_amplifier(tmp_path):
    text = edit(LAYERED, 'amplifier = "amp"\n', "")
    text = edit(
        text,
        '{ device = "clamp", anode = "node", cathode = "vtop" },',
        f'{{ device = "clamp", anode = "node_a", cathode = "vtop" }},  {MARK}',
    )
    assert_circuit_error(tmp_path, text, "hidden[0].diodes[1].anode", 'layer "h" has no amplifier')


def test_layer_diode_with_both_ends_on_the_layer(tmp_path):
    text = edit(
        LAYERED,
        '{ device = "clamp", anode = "node", cathode = "vtop" },',
        f'{{ device = "clamp", anode = "node", cathode = "node_a" }},  {MARK}',
    )
    assert_circuit_error(tmp_path, text, "hidden[0].diodes[1]", "exactly one of anode/cathode")


def test_layered_circuit_without_connections(tmp_path):
    text = LAYERED.split("[[connections]]")[0]
    path = write(tmp_path, text)
    message = assert_user_error(invoke("check", path), "layered circuit needs [[connections]]")
    assert message.startswith(f"error: {path}: "), message


def test_file_that_describes_no_circuit(tmp_path):
    path = write(tmp_path, '[circuit]\nname = "empty"\n')
    assert_user_error(invoke("check", path), str(path), "describes no circuit")


# --------------------------------------------------------------------------- files and syntax


def test_invalid_toml_syntax_unquoted_si_value(tmp_path):
    text = edit(NETLIST, 'g = "1m"', f"g = 1m  {MARK}")
    assert_circuit_error(tmp_path, text, None, "not valid TOML")


def test_invalid_toml_syntax_duplicate_table(tmp_path):
    text = NETLIST + f'\n[devices.w]  {MARK}\ntype = "resistor"\n'
    assert_circuit_error(tmp_path, text, None, "not valid TOML")


def test_invalid_toml_syntax_unclosed_string(tmp_path):
    text = edit(NETLIST, 'name = "R2"', f'name = "R2  {MARK}')
    assert_circuit_error(tmp_path, text, None, "not valid TOML")


def test_file_not_found(tmp_path):
    path = tmp_path / "missing.toml"
    message = assert_user_error(invoke("check", path), "file not found")
    assert message.startswith(f"error: {path}:"), message


def test_path_is_a_directory(tmp_path):
    message = assert_user_error(invoke("check", tmp_path), "not a run directory (no config.toml)")
    assert message.startswith(f"error: {tmp_path}:"), message


def test_file_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[circuit]\nname = "caf\xe9"\n')
    message = assert_user_error(invoke("check", path), "cannot read the file")
    assert message.startswith(f"error: {path}:"), message


def test_library_raises_circuit_error_with_location(tmp_path):
    text = edit(NETLIST, 'g = "1m"', f'g = "1x"  {MARK}')
    path = write(tmp_path, text)
    with pytest.raises(CircuitError) as info:
        load_network(path)
    assert (info.value.file, info.value.line, info.value.key) == (
        str(path),
        marked_line(path),
        "devices.w.g",
    )
    assert str(info.value).startswith(f"{path}:{marked_line(path)}:")


# --------------------------------------------------------------------------- command-line options


def test_solve_with_the_wrong_number_of_inputs(tmp_path):
    path = write(tmp_path, NETLIST)
    assert_user_error(
        invoke("solve", path, "--input", "1,2"), "1,2", "takes 1 input feature(s)", "(1, 2)"
    )


def test_solve_with_an_input_file_of_the_wrong_width(tmp_path):
    path = write(tmp_path, NETLIST)
    data = tmp_path / "x.csv"
    data.write_text("1,2,3\n4,5,6\n")
    assert_user_error(
        invoke("solve", path, "--input", data), str(data), "takes 1 input feature(s)", "(2, 3)"
    )


def test_solve_without_inputs(tmp_path):
    path = write(tmp_path, NETLIST)
    assert_user_error(invoke("solve", path), str(path), "has 1 inputs", "--input")


def test_solve_with_inputs_that_are_not_numbers(tmp_path):
    path = write(tmp_path, NETLIST)
    assert_user_error(invoke("solve", path, "--input", "1,a"), "comma-separated numbers")


def assert_usage_error(result, *phrases: str) -> None:
    """A bad option value caught by the command line parser: exit 2, no traceback, the
    allowed values named (the message is typer's, in a box)."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output and result.stdout == ""
    message = " ".join(result.stderr.replace("│", " ").split())
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"


def test_solve_with_an_unknown_method(tmp_path):
    path = write(tmp_path, NETLIST)
    assert_usage_error(
        invoke("solve", path, "--input", "1", "--method", "jacobi"),
        "'jacobi' is not one of 'auto', 'layered', 'newton'",
    )


def test_solve_reports_circuit_errors_too(tmp_path):
    path = write(tmp_path, edit(NETLIST, 'g = "1m"', 'g = "1x"'))
    assert_user_error(invoke("solve", path, "--input", "1"), f"{path}:3:", "`devices.w.g`")


def test_export_with_an_unknown_format(tmp_path):
    path = write(tmp_path, NETLIST)
    assert_usage_error(
        invoke("export", path, "--format", "verilog"),
        "'verilog' is not one of 'spice', 'csv', 'json', 'npz'",
    )


def test_export_with_the_wrong_number_of_inputs(tmp_path):
    path = write(tmp_path, NETLIST)
    assert_user_error(invoke("export", path, "--input", "1,2,3"), "takes 1 input feature(s)")


def test_export_of_an_invalid_circuit_writes_nothing(tmp_path):
    path = write(tmp_path, edit(NETLIST, 'outputs = ["y"]', 'outputs = ["x"]'))
    target = tmp_path / "out.cir"
    assert_user_error(invoke("export", path, "-o", target), f"{path}:", "also an input")
    assert not target.exists()


# --------------------------------------------------------------------------- long amplifier chains


def _amplifier_chain(tmp_path: Path, n: int) -> Path:
    """n amplifiers in series, listed last-first so that resolving them nests n deep."""
    parts = [
        NETLIST.split("[netlist]")[0].replace("gain = 2.0", "gain = 1.0"),
        f'[netlist]\noutputs = ["n{n}"]\n',
    ]
    parts += [
        f'\n[[elements]]\nname = "A{i}"\ndevice = "amp"\nnodes = ["n{i}", "n{i + 1}"]\n'
        for i in reversed(range(n))
    ]
    parts.append('\n[[elements]]\nname = "R0"\ndevice = "w"\nnodes = ["n0", "gnd"]\n')
    return write(tmp_path, "".join(parts))


def test_long_amplifier_chain_compiles(tmp_path):
    graph = compile_circuit(load_circuit(_amplifier_chain(tmp_path, 1500)))
    assert len(graph.amplifiers) == 1500


def test_long_amplifier_chain_lowers(tmp_path):
    network = load_network(_amplifier_chain(tmp_path, 1500))
    assert len(network.amplifiers) == 1500
    assert np.all(network.node_coef[network.node_var >= 0] > 0)


# --------------------------------------------------------------------------- diode parts


def test_a_diode_part_fixes_its_spice_parameters(tmp_path):
    text = edit(LAYERED, 'type = "diode"', f'type = "diode"\nmodel = "1N4148"\nis = "1p"  {MARK}')
    assert_circuit_error(
        tmp_path,
        text,
        "devices.clamp.is",
        'model "1N4148" fixes is, n and rs',
        'model = "shockley"',
    )


def test_a_diode_part_loads_its_card(tmp_path):
    text = edit(LAYERED, 'type = "diode"', 'type = "diode"\nmodel = "sky130-pw2nd"')
    params = load_circuit(write(tmp_path, text)).devices["clamp"].params
    assert (params["is"], params["n"], params["rs"]) == (2.75e-15, 1.2928, 981.0)


# --------------------------------------------------------------------------- training recipes


def test_train_refuses_a_circuit_without_a_recipe(tmp_path, monkeypatch):
    """No [training] section: exit 2, one message naming the file and the way out, no run dir."""
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, LAYERED)
    result = invoke("train", path, "--epochs", "1", "--out", tmp_path / "run")
    assert_user_error(
        result, str(path), "has no [training] section", "--set training.dataset=", "[training]"
    )
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    # a [training] section without a dataset is no recipe either
    path = write(tmp_path, LAYERED + "\n[training]\nepochs = 2\n", "partial.toml")
    result = invoke("train", path, "--out", tmp_path / "run")
    assert_user_error(result, "without `dataset`")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["train", "eval", "gradcheck"])
def test_outputs_fewer_than_the_classes_name_the_file_and_its_dataset_key(tmp_path, command):
    # was: a message naming neither the file nor a key, whose advice ([output] size) a
    # netlist circuit cannot follow
    text = (Path(__file__).parent.parent / "circuits" / "mnist-mini.toml").read_text()
    text = edit(text, 'dataset = "mnist-mini"', f'dataset = "mnist-mini"  {MARK}')
    path = write(tmp_path, edit(text, "size = 10\n", "size = 5\n"))
    args = ["--out", tmp_path / "run", "--epochs", "1"] if command == "train" else []
    message = assert_user_error(invoke(command, path, *args), "10 classes", "5 output(s)")
    assert message.startswith(f"error: {path}:{marked_line(path)}: `training.dataset`"), message
    assert not (tmp_path / "run").exists()


def test_epochs_beyond_the_limit_name_the_epochs_option(tmp_path):
    # was: "... (from --set training.epochs=2000000)", an option the user never gave
    xor = Path(__file__).parent.parent / "circuits" / "xor.toml"
    result = invoke("train", xor, "--epochs", 2_000_000, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "'--epochs'" in result.output and "--set" not in result.output, result.output
    assert not (tmp_path / "run").exists()
