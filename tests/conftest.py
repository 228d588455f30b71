"""Shared fixtures: the ngspice oracle must fail, not skip, in CI."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture
def ngspice() -> str:
    path = shutil.which("ngspice")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ngspice is required in CI (apt-get install -y ngspice)")
        pytest.skip("ngspice not installed")
    return path
