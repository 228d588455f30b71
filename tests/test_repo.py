"""Promises about the repository itself: README's commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_COMMAND = "python -m pip install '.[test]' && python -m pytest"


def test_ci_runs_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in readme
    assert ci.rstrip().splitlines()[-1] == TEST_COMMAND


def test_ci_installs_ngspice_and_groff():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install" in ci and "ngspice" in ci and "groff" in ci
