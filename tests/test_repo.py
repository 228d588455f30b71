"""Promises about the repository itself: README's commands are the ones CI runs."""

from __future__ import annotations

import subprocess
import sys
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


def test_same_bits_trains_each_checkout_with_its_own_package(tmp_path, monkeypatch):
    """benchmarks/same_bits.py ran both trainings with the package of the directory it was
    started from (``python -m`` puts that first, ahead of PYTHONPATH), so run from inside
    a checkout it compared that checkout with itself."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import same_bits
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    other = tmp_path / "other"
    (other / "eqprop_cli").mkdir(parents=True)
    (other / "eqprop_cli" / "__init__.py").write_text("")
    monkeypatch.chdir(ROOT)  # inside this checkout, as the benchmark is run
    env, cwd = same_bits.runner(other)
    where = subprocess.run(
        [sys.executable, "-c", "import eqprop_cli; print(eqprop_cli.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where) == other / "eqprop_cli" / "__init__.py"
