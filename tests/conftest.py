"""Shared fixtures: the ngspice oracle must fail, not skip, in CI.

Commands that the tests run in subprocesses (`eqprop`, `python -c`, README
examples from a temporary folder) import this checkout's package: its folder
goes first on PYTHONPATH. Without it a copy of eqprop installed elsewhere on
the machine (another checkout's `pip install .`) would answer instead, from
any working directory but this one, and those tests would check that copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eqprop_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)


@pytest.fixture
def ngspice() -> str:
    path = shutil.which("ngspice")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ngspice is required in CI (apt-get install -y ngspice)")
        pytest.skip("ngspice not installed")
    return path


@pytest.fixture
def mnist_dir():
    """The full MNIST of the build machines (a Path): ../shared/data/mnist from the repo root."""
    from pathlib import Path

    path = Path(__file__).absolute().parents[1].parent / "shared" / "data" / "mnist"
    names = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
    if not all((path / f"{name}-ubyte.gz").is_file() for name in names):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"MNIST is required in CI at {path} (see its README.md)")
        pytest.skip(f"MNIST not found at {path}")
    return path


@pytest.fixture(scope="session")
def xor_run(tmp_path_factory) -> Path:
    """A one-epoch run of circuits/xor.toml (read only: tests copy what they change)."""
    out = tmp_path_factory.mktemp("runs") / "xor"
    xor = ROOT / "circuits" / "xor.toml"
    result = CliRunner().invoke(app, ["train", str(xor), "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    return out
