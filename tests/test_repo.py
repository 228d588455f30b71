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


def test_readme_layout_names_every_module():
    """README's Layout section names every module of the package (its path, or its file
    name beside its folder's row)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    for path in sorted((ROOT / "eqprop_cli").rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        relative = path.relative_to(ROOT).as_posix()
        names = (f"`{relative}`", f"`{path.name}`", f"`{path.stem}`")  # devices: by kind
        assert any(name in layout for name in names), f"{relative} is not in README's Layout"


def test_readme_states_the_python_that_pyproject_requires():
    """README's Python version is pyproject's requires-python, which the code needs: the
    key locator's string pattern uses possessive quantifiers (Python 3.11's re)."""
    import re

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    minimum = re.search(r'requires-python = ">=(3\.\d+)"', pyproject).group(1)
    assert f"Python {minimum} or newer" in (ROOT / "README.md").read_text(encoding="utf-8")
    spec = (ROOT / "eqprop_cli" / "circuit" / "spec.py").read_text(encoding="utf-8")
    if "*+" in spec:  # possessive quantifiers: re.error on Python 3.10
        assert tuple(map(int, minimum.split("."))) >= (3, 11)


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
