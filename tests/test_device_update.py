"""Device update responses: grids, bounds, nonlinear curves, noise and variation statistics.

Statistical tests use fixed seeds and state their tolerances: a mean within
five standard errors, a standard deviation within 2% (200,000 samples give
a relative standard error of 0.16% on a standard deviation).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from eqprop_cli.devices.update import (
    PRESETS,
    DeviceArrays,
    UpdateModel,
    apply_pulses,
    clip_to_bounds,
    device_arrays,
    device_response,
    nonlinearity_to_a,
    program,
    pulse_counts,
    snap_to_levels,
    stream,
    with_preset,
)

G_MIN, G_MAX = 1e-7, 2e-5


def explicit_pulses(
    g: np.ndarray, pulses: np.ndarray, model: UpdateModel, arrays: DeviceArrays
) -> np.ndarray:
    """The same response one pulse at a time, noise-free, from each device's coefficients
    (the module docstring's affine steps in the normalised state, bounds applied after the
    pulses): the reference of the tests, independent of the programming kernel."""
    lo, hi = (np.broadcast_to(a, np.size(g)) for a in (arrays.g_min, arrays.g_max))
    span = hi - lo
    u = (np.array(g, dtype=float).reshape(-1) - lo) / span
    n = pulses.reshape(-1).astype(int)
    c_up, r_up, c_down, r_down = (
        np.broadcast_to(a, u.shape)
        for a in (arrays.c_up, arrays.r_up, arrays.c_down, arrays.r_down)
    )
    for _ in range(int(np.abs(n).max(initial=0))):
        up, down = n > 0, n < 0
        u = np.where(up, u + c_up - r_up * u, u)
        u = np.where(down, u - (c_down - r_down * (1.0 - u)), u)
        n = n - np.sign(n)
    return np.clip(lo + u * span, lo, hi).reshape(np.shape(g))


N = 200_000


def arrays_of(model: UpdateModel, size: int = 1, seed: int = 0):
    return device_arrays(model, G_MIN, G_MAX, size, np.random.default_rng(seed))


@pytest.mark.parametrize("levels", [16, 64, 256])
def test_levels_keep_every_conductance_on_its_grid(levels):
    model = UpdateModel("linear", levels=levels, max_pulses=5)
    arrays = arrays_of(model)
    rng = np.random.default_rng(levels)
    g = snap_to_levels(rng.uniform(G_MIN, G_MAX, (40, 30)), model, arrays)
    step = (G_MAX - G_MIN) / (levels - 1)
    table = device_response(model, arrays)
    for _ in range(60):
        g, _ = program(g, rng.normal(0, 3.0 / levels, g.shape), model, arrays, (None, None), table)
        k = (g - G_MIN) / step
        assert np.all(np.abs(k - np.rint(k)) < 1e-9)
        assert g.min() >= G_MIN and g.max() <= G_MAX
    assert len(np.unique(np.rint(k))) > levels // 2  # it moved across the grid


@pytest.mark.parametrize("tilt", [{"asymmetry": 0.5}, {"d2d_asymmetry": 0.2}])
def test_unequal_up_and_down_steps_are_not_snapped_to_a_grid(tilt):
    """A linear device whose up and down steps differ keeps no grid (a pulse up and one
    down do not return), so its initial conductances are only clipped, not rounded to a
    grid of its up step (43 states of 64 levels at asymmetry 0.5)."""
    model = UpdateModel("linear", levels=64, **tilt)
    arrays = arrays_of(model, 1000)
    g = np.random.default_rng(1).uniform(0.0, 1.2 * G_MAX, 1000)
    np.testing.assert_array_equal(snap_to_levels(g, model, arrays), clip_to_bounds(g, arrays))


def test_soft_bounds_step_shrinks_to_zero_at_the_bound_and_never_crosses_it():
    model = UpdateModel("soft_bounds", levels=101, max_pulses=1000)
    arrays = arrays_of(model)
    u = np.linspace(0.0, 1.0, 11)
    g = G_MIN + u * (G_MAX - G_MIN)
    up = (apply_pulses(g, np.ones(11), model, arrays, None) - g) / (G_MAX - G_MIN)
    down = (g - apply_pulses(g, -np.ones(11), model, arrays, None)) / (G_MAX - G_MIN)
    delta = 1.0 / 100
    np.testing.assert_allclose(up, 2 * delta * (1 - u), atol=1e-15)  # delta at mid-range
    np.testing.assert_allclose(down, 2 * delta * u, atol=1e-15)
    assert up[-1] == 0.0 and down[0] == 0.0
    many = apply_pulses(g, np.full(11, 1000.0), model, arrays, None)
    assert np.all(many <= G_MAX) and np.all(many > g[:-1].max())  # approaches, never passes


def test_n_pulses_at_once_equal_n_single_pulses():
    """Every preset (ecram's devices differ: its fixed-point rows are float32, within 1e-4
    of a step of the float64 reference, and within each device's bounds), devices that
    differ with constant steps (float64 rows: exact), and each preset's devices alike."""
    rng = np.random.default_rng(3)
    g = rng.uniform(G_MIN, G_MAX, 500)
    pulses = rng.integers(-12, 13, 500).astype(float)
    models = [UpdateModel(**with_preset(name, {"max_pulses": 12})) for name in PRESETS]
    models.append(UpdateModel("linear", levels=65, max_pulses=12, d2d_step=0.2, d2d_bounds=0.1))
    for model in models:
        arrays = arrays_of(model, 500, seed=1)
        g0 = np.clip(g, arrays.g_min, arrays.g_max)
        quiet = replace(model, write_noise=0.0)
        reference = explicit_pulses(g0, pulses, quiet, arrays)
        tol = {"rtol": 1e-12, "atol": 1e-12 * G_MAX}
        if device_response(quiet, arrays).values.dtype == np.float32:
            tol = {"rtol": 0.0, "atol": 1e-4 * (G_MAX - G_MIN) / (model.levels - 1)}
        new = apply_pulses(g0, pulses, quiet, arrays, None)
        np.testing.assert_allclose(new, reference, **tol)
        assert np.all(new >= arrays.g_min) and np.all(new <= arrays.g_max)
        alike = arrays_of(replace(quiet, d2d_step=0, d2d_asymmetry=0, d2d_bounds=0))
        table = device_response(quiet, alike)  # the fast path of devices all alike
        np.testing.assert_allclose(
            apply_pulses(g, pulses, quiet, alike, None, table),
            explicit_pulses(g, pulses, quiet, alike),
            rtol=1e-12,
            atol=1e-12 * G_MAX,
        )


@pytest.mark.parametrize(
    "tilts",
    [
        {"gamma_up": 0.0, "gamma_down": 0.3, "d2d_step": 0.1},  # up: a constant step
        {"gamma_up": -0.5, "gamma_down": -0.5},  # steps that grow towards the bound
        {"gamma_up": -0.5, "gamma_down": 0.4, "d2d_step": 0.1},
        {"gamma_up": -0.9, "gamma_down": 0.3, "asymmetry": 0.2},
    ],
)
def test_linear_tilts_of_either_sign_are_n_single_pulses(tilts):
    """gamma in [-1, 1], each direction its own (0 too), devices alike or varied: n pulses
    at once are the n single pulses (within 1e-4 of a step: float32 rows)."""
    model = UpdateModel("linear", levels=17, max_pulses=8, **tilts)
    arrays = arrays_of(model, 400, seed=1)
    rng = np.random.default_rng(0)
    g = np.clip(rng.uniform(G_MIN, G_MAX, 400), arrays.g_min, arrays.g_max)
    pulses = rng.integers(-8, 9, 400).astype(float)
    step = (G_MAX - G_MIN) / 16
    np.testing.assert_allclose(
        apply_pulses(g, pulses, model, arrays, None),
        explicit_pulses(g, pulses, model, arrays),
        rtol=0.0,
        atol=1e-4 * step,
    )


def test_exponential_curve_is_neurosims():
    """From g_min, p up pulses follow G(p) = B (1 - exp(-p/A)) + g_min and reach g_max
    after levels - 1 pulses; depression mirrors it from g_max."""
    model = UpdateModel("exponential", levels=97, nl_up=2.4, nl_down=4.88, max_pulses=200)
    arrays = arrays_of(model)
    p = np.arange(97.0)
    up = apply_pulses(np.full(97, G_MIN), p, model, arrays, None)
    a = nonlinearity_to_a(2.4) * 96
    b = (G_MAX - G_MIN) / (1 - math.exp(-96 / a))
    np.testing.assert_allclose(up, b * (1 - np.exp(-p / a)) + G_MIN, rtol=1e-12)
    assert up[-1] == pytest.approx(G_MAX, rel=1e-12)
    down = apply_pulses(np.full(97, G_MAX), -p, model, arrays, None)
    a = nonlinearity_to_a(4.88) * 96
    b = (G_MAX - G_MIN) / (1 - math.exp(-96 / a))
    np.testing.assert_allclose(down, G_MAX - b * (1 - np.exp(-p / a)), rtol=1e-12)


def test_ecram_preset_steps_are_aihwkits_linear_step_device():
    """aihwkit's EcRamPresetDevice (LinearStepDevice, mean bound reference) steps a weight w
    in [-0.8276, 1.1724] by dw_min (1 - 0.1153 w / 1.1724) up and dw_min (1 + 0.5085 w /
    0.8276) down, dw_min 0.002: the preset's nominal device takes the same steps, as
    fractions of the range, within 0.2% at every state (and so the same symmetry point)."""
    w_min, w_max, dw_min = -0.8276, 1.1724, 0.002
    model = UpdateModel(**with_preset("ecram", {}))
    quiet = replace(model, write_noise=0.0, d2d_step=0.0, d2d_asymmetry=0.0, d2d_bounds=0.0)
    arrays = arrays_of(quiet)
    u = np.linspace(0.0, 1.0, 21)
    w = w_min + u * (w_max - w_min)
    g = G_MIN + u * (G_MAX - G_MIN)
    up = (apply_pulses(g, np.ones(u.size), quiet, arrays, None) - g) / (G_MAX - G_MIN)
    down = (g - apply_pulses(g, -np.ones(u.size), quiet, arrays, None)) / (G_MAX - G_MIN)
    aihwkit_up = dw_min * (1 - 0.1153 * w / w_max) / (w_max - w_min)
    aihwkit_down = dw_min * (1 + 0.5085 * w / -w_min) / (w_max - w_min)
    np.testing.assert_allclose(up[:-1], aihwkit_up[:-1], rtol=2e-3)  # (from a bound: cut)
    np.testing.assert_allclose(down[1:], aihwkit_down[1:], rtol=2e-3)
    c_up, r_up, c_down, r_down = model.coefficients()
    symmetry = (c_up - c_down + r_down) / (r_up + r_down)  # where up and down steps are equal
    assert symmetry == pytest.approx(-w_min / (w_max - w_min), abs=2e-3)  # aihwkit's w = 0


@pytest.mark.parametrize(
    "label, published", [(0.04, 31.5668), (0.5, 2.5199), (2.4, 0.4992), (4.88, 0.2003)]
)
def test_nonlinearity_labels_give_neurosims_a(label, published):
    """The Nonlinearity-NormA table of MLP+NeuroSim V3.0 (documents/), to 0.1%."""
    assert nonlinearity_to_a(label) == pytest.approx(published, rel=1e-3)


def test_stochastic_rounding_is_unbiased():
    model = UpdateModel("linear", levels=11, rounding="stochastic", max_pulses=10)
    x = np.repeat([0.013, 0.25, -0.37, 1.5, -2.71], N // 5) / 10  # in units of the range
    n = pulse_counts(x, model, stream(7, 0, 0, "rounding"))
    for value in np.unique(x):
        mine = n[x == value]
        want = value * 10
        assert set(np.unique(mine)) <= {math.floor(want), math.ceil(want)}
        se = math.sqrt((want - math.floor(want)) * (math.ceil(want) - want) / len(mine))
        assert abs(mine.mean() - want) < 5 * se + 1e-12


def test_deterministic_rounding_and_cap_and_manhattan():
    model = UpdateModel("linear", levels=11, max_pulses=3)
    x = np.array([0.04, 0.06, -0.26, 0.9, -0.9, 0.0])
    np.testing.assert_array_equal(pulse_counts(x, model, None), [0, 1, -3, 3, -3, 0])
    manhattan = replace(model, manhattan=True)
    np.testing.assert_array_equal(pulse_counts(x, manhattan, None), [1, 1, -1, 1, -1, 0])


@pytest.mark.parametrize("pulses", [1, 4])
def test_write_noise_mean_and_spread_on_a_linear_device(pulses):
    sigma = 0.02
    model = UpdateModel("linear", levels=101, write_noise=sigma, max_pulses=10)
    arrays = arrays_of(model)
    g = np.full(N, 0.5 * (G_MIN + G_MAX))
    new = apply_pulses(g, np.full(N, float(pulses)), model, arrays, stream(1, 0, 0, "write_noise"))
    change = (new - g) / (G_MAX - G_MIN)
    spread = sigma * math.sqrt(pulses)  # per-pulse noises add in quadrature
    assert abs(change.mean() - pulses / 100) < 5 * spread / math.sqrt(N)
    assert change.std() == pytest.approx(spread, rel=0.02)


def test_write_noise_through_a_soft_bounded_response_matches_pulse_by_pulse():
    """The closed-form noise of 6 pulses against 6 explicit noisy pulses (other draws)."""
    sigma = 0.01
    model = UpdateModel("soft_bounds", levels=21, write_noise=sigma, max_pulses=10)
    arrays = arrays_of(model)
    g = np.full(N, G_MIN + 0.3 * (G_MAX - G_MIN))
    closed = apply_pulses(g, np.full(N, 6.0), model, arrays, stream(2, 0, 0, "write_noise"))
    rng = np.random.default_rng(5)
    quiet = replace(model, write_noise=0.0)
    u = np.full(N, 0.3)
    for _ in range(6):  # one pulse: deterministic step, then its own noise, no bound reached
        u = (apply_pulses(G_MIN + u * (G_MAX - G_MIN), np.ones(N), quiet, arrays, None) - G_MIN) / (
            G_MAX - G_MIN
        )
        u = u + sigma * rng.standard_normal(N)
    closed = (closed - G_MIN) / (G_MAX - G_MIN)
    assert abs(closed.mean() - u.mean()) < 5 * u.std() * math.sqrt(2 / N)
    assert closed.std() == pytest.approx(u.std(), rel=0.02)


def test_noise_of_many_pulses_against_neurosims_as_eqprop_circuit_states():
    """eqprop-circuit(5): n pulses' noise (each through the later pulses' response) against
    NeuroSim's one draw of write_noise sqrt(n) after them, at 16 pulses, measured."""
    stated = {("pcmo", -1): 0.43, ("pcmo", 1): 0.66, ("agsi", -1): 0.72}
    for (name, sign), ratio in stated.items():
        model = replace(UpdateModel(**with_preset(name, {})), max_pulses=16)
        arrays = arrays_of(model, N)
        g = np.full(N, G_MAX if sign < 0 else G_MIN)  # from the far bound: none reach the other
        pulses = np.full(N, 16.0 * sign)
        noisy = apply_pulses(g, pulses, model, arrays, np.random.default_rng(8))
        quiet = apply_pulses(g, pulses, replace(model, write_noise=0.0), arrays, None)
        spread = np.std(noisy - quiet) / (G_MAX - G_MIN)
        assert spread / (model.write_noise * 4.0) == pytest.approx(ratio, abs=0.01)


def test_device_to_device_variation_has_the_stated_spread():
    model = UpdateModel(
        "linear", levels=65, d2d_step=0.2, d2d_asymmetry=0.05, d2d_bounds=0.1, asymmetry=0.1
    )
    arrays = arrays_of(model, N, seed=11)
    c_up, _, c_down, _ = model.coefficients()
    ratio_up, ratio_down = arrays.c_up / c_up, arrays.c_down / c_down
    scale = 0.5 * (ratio_up + ratio_down)  # the common step factor, 1 + 0.2 xi
    assert abs(scale.mean() - 1.0) < 5 * 0.2 / math.sqrt(N)
    assert scale.std() == pytest.approx(0.2, rel=0.02)
    tilt = (ratio_up - ratio_down) / (ratio_up + ratio_down)  # the asymmetry's spread
    assert tilt.std() == pytest.approx(0.05 * (1 / 1.1 + 1 / 0.9) / 2, rel=0.03)
    for bound, nominal in ((arrays.g_max, G_MAX), (arrays.g_min, G_MIN)):
        assert abs(bound.mean() / nominal - 1.0) < 5 * 0.1 / math.sqrt(N)
        assert (bound / nominal).std() == pytest.approx(0.1, rel=0.02)
    again = arrays_of(model, N, seed=11)  # drawn from the seed: the same devices again
    np.testing.assert_array_equal(again.c_up, arrays.c_up)


def test_varied_bounds_stay_above_zero_at_the_largest_spread():
    """d2d_bounds 0.5 (its largest) draws 1 + 0.5 xi <= 0 for 2% of the devices: their bounds
    are floored at a thousandth of the nominal ones, not 0 S, so that a device driven to
    its g_min keeps a conductance the checkpoint readers accept (> 0)."""
    model = UpdateModel("linear", levels=33, max_pulses=64, d2d_bounds=0.5)
    arrays = arrays_of(model, N, seed=4)
    assert np.all(arrays.g_min >= 1e-3 * G_MIN) and np.all(arrays.g_max >= 1e-3 * G_MAX)
    assert np.mean(arrays.g_min == 1e-3 * G_MIN) > 0.01  # the floor is what holds them
    g = np.clip(np.full(N, 0.5 * (G_MIN + G_MAX)), arrays.g_min, arrays.g_max)
    down = apply_pulses(g, np.full(N, -64.0), model, arrays, None)  # twice the range: down
    assert np.all(down > 0.0) and np.all(down == arrays.g_min)


def test_streams_are_keyed_by_their_counters():
    a = stream(1, 2, 3, "write_noise").standard_normal(4)
    np.testing.assert_array_equal(a, stream(1, 2, 3, "write_noise").standard_normal(4))
    for other in (
        stream(1, 2, 4, "write_noise"),
        stream(1, 3, 3, "write_noise"),
        stream(1, 2, 3, "rounding"),
        stream(2, 2, 3, "write_noise"),
    ):
        assert not np.array_equal(a, other.standard_normal(4))


def test_presets_are_valid_models():
    for name, preset in PRESETS.items():
        model = UpdateModel(**with_preset(name, {}))
        c_up, r_up, c_down, r_down = model.coefficients()
        assert 0 < c_up < 1 and 0 <= r_up <= 1 and 0 < c_down < 1 and 0 <= r_down <= 1
        assert preset.source and preset.on_off > 1


@pytest.mark.parametrize(
    "preset, rounding, manhattan",
    [
        ("ecram", "stochastic", False),  # devices that differ, fixed-point form
        ("taox-hfox", "stochastic", False),  # devices alike: the table
        ("taox-hfox", "deterministic", True),
        ("agsi", "deterministic", False),
    ],
)
def test_programming_is_the_pulse_counts_then_their_response(preset, rounding, manhattan):
    """The compiled pass (each device's pulses and response at once) gives, bit for bit, the
    pulses of pulse_counts and then the response of apply_pulses, drawing the same numbers
    from each stream in the devices' order; it programs in place when told to, and a device
    without pulses keeps its conductance."""
    model = UpdateModel(**{**with_preset(preset, {}), "rounding": rounding, "manhattan": manhattan})
    arrays = arrays_of(model, 5_000, seed=3)
    response = device_response(model, arrays)
    g = snap_to_levels(np.random.default_rng(4).uniform(G_MIN, G_MAX, (50, 100)), model, arrays)
    asked = np.random.default_rng(5).normal(0.0, 4.0 / model.levels, g.shape)
    asked[0, :10] = 0.0  # no request: no pulse, whatever the rounding
    rngs = (stream(7, 1, 2, "rounding"), stream(7, 1, 2, "write_noise"))
    out = g.copy()
    new, sent = program(out, asked, model, arrays, rngs, response, 1.0, out)
    assert np.shares_memory(new, out)
    pulses = pulse_counts(asked, model, stream(7, 1, 2, "rounding"))
    assert sent == np.abs(pulses).sum() > 1000
    expected = apply_pulses(g, pulses, model, arrays, stream(7, 1, 2, "write_noise"), response)
    np.testing.assert_array_equal(new, expected)
    np.testing.assert_array_equal(new[pulses == 0], g[pulses == 0])
    assert np.count_nonzero(new != g) > 1000  # the test moves devices
    fresh = (stream(7, 1, 2, "rounding"), stream(7, 1, 2, "write_noise"))
    copy, again = program(g, asked, model, arrays, fresh)  # a new array, the Response made here
    assert again == sent and not np.shares_memory(copy, g)
    np.testing.assert_array_equal(copy, new)


def test_streams_draw_numpys_own_numbers_in_the_devices_order():
    """The kernels draw from the streams themselves, numpy's own numbers: pulse counts are
    floor(x + Generator.random()) in the devices' order, write noises
    Generator.standard_normal() for the devices that move, in order (30,000 of them: the
    ziggurat's rare steps included); each stream is left where those methods leave it,
    a buffered 32-bit half kept."""
    size = 45_001
    model = UpdateModel("linear", levels=11, rounding="stochastic", max_pulses=10)
    x = np.random.default_rng(0).uniform(-0.2, 0.2, size)  # -2 .. 2 steps
    rng, reference = stream(3, 1, 4, "rounding"), stream(3, 1, 4, "rounding")
    for r in (rng, reference):
        r.integers(2**32, dtype=np.uint32)  # half of a 64-bit output left buffered
    n = pulse_counts(x, model, rng)
    np.testing.assert_array_equal(n, np.clip(np.floor(x * 10 + reference.random(size)), -10, 10))
    assert rng.integers(2**32, dtype=np.uint32) == reference.integers(2**32, dtype=np.uint32)
    assert rng.random() == reference.random()
    single = x.astype(np.float32)  # float32 requests: numpy's float32 x and in-place x + u
    expected = single * 10.0
    expected += reference.random(size)
    n = pulse_counts(single, model, rng)
    np.testing.assert_array_equal(n, np.clip(np.floor(expected), -10, 10))

    noisy = replace(model, write_noise=0.01)
    g = np.full(size, 0.5 * (G_MIN + G_MAX))
    pulses = np.where(np.arange(size) % 3 == 0, 0.0, 2.0)  # a third of the devices stay
    rng, reference = stream(3, 1, 4, "write_noise"), stream(3, 1, 4, "write_noise")
    new = apply_pulses(g, pulses, noisy, arrays_of(noisy), rng)
    moved = pulses != 0
    z = reference.standard_normal(np.count_nonzero(moved))
    span = G_MAX - G_MIN
    expected = g[moved] + 2 * span / 10 + 0.01 * span * math.sqrt(2) * z
    np.testing.assert_allclose(new[moved], expected, rtol=1e-12)
    np.testing.assert_array_equal(new[~moved], g[~moved])
    assert rng.random() == reference.random()
