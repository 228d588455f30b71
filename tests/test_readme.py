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
  runs to the end and the next one finds nothing left to do;
- `output varies`: what the block prints depends on the machine (paths, installed
  data sets), so only its exit status is checked.

Every transcript must also be what the command prints (`transcript_mismatch`): each
line, in order, among the lines printed (stderr, then stdout), with the same words
(table rules and column padding aside; `...` stands for lines left out) and the same
figures within the noise between machines: 1 point for a percentage, 5% for any other
number; times and speeds, checksums and the `[k/n]` progress counter of parallel
sweeps are not compared, nor the figures of a block run with `set` or `replace`.
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


KNOWN = ("set ", "replace ", "needs mnist", "needs fashion-mnist", "no ctrl-c", "output varies")


# A figure: integer part with or without thousands separators, fraction, exponent.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")
# A checksum (hex with letters and digits): it changes with every last bit.
DIGEST = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12,64}\b")
RULES = re.compile(r"[\u2500-\u257f]")  # box drawing: table borders and column rules
UNTIMED = re.compile(r"\s*(?:s\b|samples/s)")  # a figure followed by this is a time or speed
PROGRESS = re.compile(r"^\[\d+/\d+\] ")  # sweep points, in the order they finish


def shape(line: str) -> tuple[str, list[tuple[float, str]]]:
    """A line's words with every figure as #, and its figures with what follows each."""
    line = RULES.sub(" ", DIGEST.sub("#", line))
    figures = []
    for m in NUMBER.finditer(line):
        after = line[m.end() :]
        if not UNTIMED.match(after):
            figures.append((float(m.group().replace(",", "")), after[:7]))
    return " ".join(NUMBER.sub("#", line).split()), figures


def close(shown: list[tuple[float, str]], printed: list[tuple[float, str]]) -> bool:
    """The same figures within the noise between machines (see the module docstring)."""
    if len(shown) != len(printed):
        return False
    for (a, after), (b, _) in zip(shown, printed, strict=True):
        if after.startswith(("%", " points")):
            ok = abs(a - b) <= 1.0
        else:
            ok = abs(a - b) <= 0.05 * max(abs(a), abs(b)) or max(abs(a), abs(b)) < 1e-9
        if not ok:
            return False
    return True


def transcript_mismatch(cmd: Command, printed: str) -> str | None:
    """The first transcript line of cmd not among the printed lines, in order; None if all are."""
    figures = not any(m.startswith(("set ", "replace ")) for m in cmd.block.markers)
    lines = [shape(line) for line in printed.splitlines()]
    at = 0
    for line in cmd.output:
        words, shown = shape(line)
        if not words or line.strip() == "...":
            continue
        same = [i for i in range(at, len(lines)) if lines[i][0] == words]
        if not same:
            return f"the line {line!r} is not printed (after line {at} of the output)"
        if figures and not PROGRESS.match(line):
            fit = [i for i in same if close(shown, lines[i][1])]
            if not fit:
                got = printed.splitlines()[same[0]]
                return f"the line {line!r} is printed with other figures (first such line: {got!r})"
            same = fit
        at = same[0] + 1
    return None


def compared(block: Block) -> list[bool]:
    """Whether each command's transcript is compared: not in a block whose output varies,
    nor, in a `no ctrl-c` block, from the command that shows the Ctrl-C on."""
    out, typed = [], False
    for cmd in commands(block):
        typed = typed or ("no ctrl-c" in block.markers and "^C" in cmd.output)
        out.append("output varies" not in block.markers and not typed)
    return out


def test_transcript_comparison_finds_what_differs():
    block = Block("console", 1, [])
    cmd = Command(
        "eqprop x", ["│ accuracy │ 92.50% │", "...", "done: 5 epochs, 7.50%  1.4 s"], block
    )
    printed = "\n".join(
        ["header", "│ accuracy │  92.30% │", "other", "done: 5 epochs, 7.70%  9.9 s"]
    )
    assert transcript_mismatch(cmd, printed) is None  # 0.2 points, and a time
    assert "other figures" in transcript_mismatch(cmd, printed.replace("92.30", "90.00"))
    assert "not printed" in transcript_mismatch(cmd, printed.replace("epochs", "epoch"))
    swapped = "\n".join(printed.splitlines()[::-1])
    assert "not printed" in transcript_mismatch(cmd, swapped)  # the order counts
    digest = Command("x", ["sha256 003d024d52e9, 11 iterations"], block)
    assert transcript_mismatch(digest, "sha256 e2ffe076de61, 11 iterations") is None
    assert "other figures" in transcript_mismatch(digest, "sha256 e2ffe076de61, 5 iterations")
    ctrl_c = Block("console", 1, ["$ eqprop a", "error: x", "$ eqprop b", "^C", "$ eqprop c"])
    assert compared(ctrl_c) == [True, True, True]
    ctrl_c.markers.append("no ctrl-c")  # compared only up to the command that shows the ^C
    assert compared(ctrl_c) == [True, False, False]


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
        for cmd, compare in zip(commands(block), compared(block), strict=True):
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
            mismatch = compare and transcript_mismatch(cmd, result.stderr + result.stdout)
            assert not mismatch, (
                f"{where}: README's transcript is not what the command prints: {mismatch}\n"
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
