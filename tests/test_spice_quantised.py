"""Quantised exports converge in ngspice from scratch: plain Newton, no .nodeset, no stepping.

A hard clamp is exported with an on-conductance of 1e8 times its node's, while its
current is only the node's; with ABSTOL = 1e-18 A, ngspice's current test on the clamp
asked for voltages repeating to 1e-20 of the overdrive, finer than a double, and some
netlists (more often quantised ones) went to gmin and source stepping for minutes.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from randomcircuits import ROOT

from eqprop_cli.errors import EqpropError
from eqprop_cli.hardware.devicemap import conductance_map, level_ranges, quantise
from eqprop_cli.hardware.spice import (
    CONTROL_START,
    VNTOL,
    export_spice,
    ngspice_op,
    spice_node_names,
)
from eqprop_cli.learn.samples import split_samples
from eqprop_cli.learn.settings import solver_settings
from eqprop_cli.runs.rundir import load_target
from eqprop_cli.solver.equilibrium import solve

SAMPLES = 8
NEWTON = 60  # iterations: plain Newton from scratch takes about 10 here
OLD_ABSTOL_SECONDS = 30  # ngspice's time for a netlist with the old ABSTOL (see its test)


def iterations(netlist: str, timeout: float = 300) -> tuple[dict[str, float], int]:
    """ngspice's operating point of an exported netlist and its total Newton iterations."""
    counted = netlist.replace(CONTROL_START, f"{CONTROL_START}rusage totiter\n", 1)
    op, stdout = ngspice_op(counted, timeout=timeout)
    return op, int(re.search(r"Total iterations = (\d+)", stdout).group(1))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """mnist-mini with 20 hidden nodes, two epochs on 2,000 images (a few seconds)."""
    from typer.testing import CliRunner

    from eqprop_cli.cli import app

    out = tmp_path_factory.mktemp("q") / "h20"
    args = ["train", str(ROOT / "circuits" / "mnist-mini.toml"), "--out", str(out)]
    args += ["--epochs", "2", "--set", "hidden.0.size=20"]
    args += ["--set", "training.train_subset=2000", "--set", "training.test_subset=200"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("levels", [16, 64])
def test_quantised_netlists_converge_from_scratch_and_agree(ngspice, small_run, levels):
    loaded = load_target(small_run)
    network = loaded.network
    quantise(conductance_map(network), level_ranges(network, levels, None))
    _, x, _, _ = split_samples(loaded.spec, network, "test", SAMPLES)
    ours = solve(network, x, **solver_settings(loaded.spec)).voltages
    names = spice_node_names(network)
    for b in range(SAMPLES):
        netlist = export_spice(network, x[b])
        assert ".nodeset" not in netlist
        abstol = float(re.search(r"ABSTOL=(\S+)", netlist).group(1))
        g_on = [float(v) for v in re.findall(r"^B\S+ \S+ \S+ I = (\S+) \*", netlist, re.M)]
        assert abstol == pytest.approx(VNTOL * max(g_on), rel=1e-2)
        op, count = iterations(netlist)
        assert count <= NEWTON, f"sample {b}: {count} iterations (gmin or source stepping?)"
        theirs = np.array([op[n] if i else 0.0 for i, n in enumerate(names)])
        assert np.max(np.abs(theirs - ours[b])) <= 1e-6, f"sample {b}"


def test_the_old_abstol_is_what_made_ngspice_step(ngspice, small_run):
    """The cause, kept as a check: with ABSTOL = 1e-18 A some of the same netlists need
    far more iterations than plain Newton (ngspice falls back to gmin/source stepping).
    One that plain Newton cannot solve ends in ngspice's transient operating point, which
    takes minutes to give up: OLD_ABSTOL_SECONDS, some 30 times plain Newton's time here
    (about 1 s), counts as far more iterations."""
    loaded = load_target(small_run)
    network = loaded.network
    quantise(conductance_map(network), level_ranges(network, 16, None))
    _, x, _, _ = split_samples(loaded.spec, network, "test", SAMPLES)
    counts = []
    for b in range(SAMPLES):
        netlist = re.sub(r"ABSTOL=\S+", "ABSTOL=1e-18", export_spice(network, x[b]))
        netlist = netlist.replace("ITL1=1000", "ITL1=1000 GMINSTEPS=0 SRCSTEPS=0")  # faster
        try:
            counts.append(iterations(netlist, OLD_ABSTOL_SECONDS)[1])
        except EqpropError:  # ngspice gave up, or ran out of time
            counts.append(10**9)
        if counts[-1] > NEWTON:
            return
    pytest.fail(f"every netlist converged by plain Newton with ABSTOL=1e-18: {counts}")
