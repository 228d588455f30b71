"""README's examples run as a reader would run them: every console command, in order.

The commands of every ```console block (lines starting with `$ `) run one after the
other with bash in a fresh folder that holds a copy of circuits/ (so the reader's
`runs/...` and `bad.toml` are made there), with `../shared` linked to the build
machines' shared folder, as in a checkout. A command must exit 0, or 2 where its
transcript shows an `error:` line; `echo $?` must print the previous status. The
Python blocks run afterwards, in one interpreter, from the same folder.

An HTML comment right before a block, `<!-- readme-test: ... -->`, says how the
test treats it; each marker is visible in the README's source:

- `needs mnist` / `needs fashion-mnist`: the block reads that data set; it runs when
  the data set is on the machine and is otherwise reported as not run, in a
  warning (in CI, a failure, like the other data-set tests);
- `set KEY=VALUE`: every `eqprop train` of the block runs with this --set added (a
  smaller subset of a long run); the README's figures come from the full command;
- `replace "A" "B"`: the block's commands run with text A replaced by B (a shorter
  `--limit` for ngspice);
- `no ctrl-c`: the transcript shows a Ctrl-C that a test cannot type; the command
  runs to the end and the next one finds nothing left to do.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from randomcircuits import ROOT

from eqprop_cli.data.datasets import find_dataset

README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Block:
    """A fenced block of the README, with the markers of the comments just before it."""

    kind: str  # console, python, sh, ...
    line: int  # of the opening fence
    lines: list[str]
    markers: list[str] = field(default_factory=list)


def blocks(text: str) -> list[Block]:
    found, markers, current = [], [], None
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if current is not None:
            if line.startswith("```"):
                found.append(current)
                current = None
            else:
                current.lines.append(line)
        elif fence:
            current, markers = Block(fence.group(1), number, [], markers), []
        elif MARKER.search(line):
            markers.extend(m.strip() for m in MARKER.findall(line))
        elif line.strip():
            markers = []  # a marker applies to the block right after it
    return found


@dataclass
class Command:
    text: str
    output: list[str]  # the transcript's lines up to the next command
    block: Block


def commands(block: Block) -> list[Command]:
    out: list[Command] = []
    for line in block.lines:
        if line.startswith("$ "):
            out.append(Command(line[2:], [], block))
        elif out:
            out[-1].output.append(line)
    return out


def apply_markers(cmd: Command) -> str:
    text = cmd.text
    for marker in cmd.block.markers:
        if marker.startswith("set "):
            if text.startswith("eqprop train ") or " eqprop train " in text:
                text += f" --set {shlex.quote(marker[4:])}"
        elif marker.startswith("replace "):
            old, new = shlex.split(marker)[1:]
            assert old in text or not text.startswith("eqprop"), (marker, text)
            text = text.replace(old, new)
    return text


KNOWN = ("set ", "replace ", "needs mnist", "needs fashion-mnist", "no ctrl-c")


def missing_data(block: Block, shared: Path) -> str | None:
    """The data set a block needs that is not on this machine, if any."""
    for marker in block.markers:
        if marker == "needs mnist" and not (shared / "data" / "mnist").is_dir():
            return "mnist"
        if marker == "needs fashion-mnist" and find_dataset("fashion-mnist", None) is None:
            return "fashion-mnist"
    return None


def test_markers_are_known_and_blocks_are_found():
    found = blocks(README.read_text(encoding="utf-8"))
    consoles = [b for b in found if b.kind == "console"]
    assert len(consoles) >= 10 and sum(len(commands(b)) for b in consoles) >= 20
    for b in found:
        for marker in b.markers:
            assert marker.startswith(KNOWN), f"README.md:{b.line}: unknown marker {marker!r}"
            assert b.kind == "console", f"README.md:{b.line}: a marker on a {b.kind} block"


def test_readme_console_examples_run_in_order(tmp_path):
    work = tmp_path / "eqprop"
    work.mkdir()
    shutil.copytree(ROOT / "circuits", work / "circuits")
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EQPROP_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "80"
    ci = os.environ.get("CI", "").lower() == "true"
    not_run, status, ran = [], 0, 0
    for block in blocks(README.read_text(encoding="utf-8")):
        if block.kind != "console":
            continue
        lacking = missing_data(block, tmp_path / "shared")
        for cmd in commands(block):
            where = f"README.md:{block.line}: $ {cmd.text}"
            if lacking or (cmd.text.startswith("ngspice") and shutil.which("ngspice") is None):
                not_run.append(f"{where} (needs {lacking or 'ngspice'})")
                continue
            if cmd.text == "echo $?":
                assert cmd.output[:1] == [str(status)], f"{where}: the status was {status}"
                continue
            result = subprocess.run(
                ["bash", "-c", apply_markers(cmd)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            ran += 1
            status = result.returncode
            expected = 2 if any(line.startswith("error:") for line in cmd.output) else 0
            assert status == expected, (
                f"{where}: exit status {status}, expected {expected}\n"
                f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
            )
    assert ran >= 20
    if not_run:
        message = "README commands not run for lack of data:\n" + "\n".join(not_run)
        if ci:
            pytest.fail(message)
        warnings.warn(message, stacklevel=1)


def test_readme_python_examples_run(tmp_path):
    shutil.copytree(ROOT / "circuits", tmp_path / "circuits")
    code = "\n".join(
        "\n".join(b.lines) for b in blocks(README.read_text(encoding="utf-8")) if b.kind == "python"
    )
    assert "load_network" in code and "Trainer" in code
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
