"""How programmable resistors respond to programming pulses: training as the chip would learn.

A trained conductance g of a device with bounds [g_min, g_max] is written in
the normalised state u = (g - g_min) / (g_max - g_min), 0 <= u <= 1. One
programming pulse changes u by an amount that may depend on u itself, and
differently up (potentiation) and down (depression). Every model here is an
affine response per direction,

    up:    u <- u + c_up - r_up u                   (step c_up - r_up u)
    down:  u <- u - (c_down - r_down (1 - u))        (the mirror image)

so that n pulses in one direction compose in closed form:

    v_n = (1 - r)^n v_0 + c S_n,   S_n = sum_{j<n} (1 - r)^j   (v = u up, 1 - u down)

which is the exact result of the n single-pulse steps; cycle-to-cycle write
noise of standard deviation sigma per pulse (a fraction of the range) then
adds a Gaussian of variance sigma^2 sum_{j<n} (1 - r)^{2j}. The bounds are
applied after the batch's pulses. Models (eqprop-circuit(5) has the
equations with units and the presets' sources):

- linear: a constant step delta = 1 / (levels - 1), so ``levels`` equally
  spaced states (gamma_up, gamma_down tilt the step, aihwkit's LinearStep);
- soft_bounds: the step falls linearly to zero at the bound it approaches
  (delta at mid-range, 2 delta at the far bound);
- exponential: NeuroSim's nonlinear LTP/LTD curves, g(p) = B (1 - exp(-p/A))
  + g_min over p = 0 .. levels - 1 pulses, A from the published nonlinearity
  label of each direction.

A connection is programmed in one compiled pass over its devices (numba), each
device's pulse count and response at once, in place: devices alike look their
response to -cap .. cap pulses up in a table, g' = Q[n] g + B[n]; devices that
differ use the fixed-point form g' = g* + (g - g*) (1 - r)^n, and only the
devices that receive pulses are computed and draw noise. Random numbers come
from streams keyed by the counters (seed, epoch, batch, purpose), drawn in the
devices' order (the kernels call the streams' own Generator.random and
standard_normal, as numba compiles them: numpy's numbers from numpy's bit
generator), so a resumed run draws exactly what an uninterrupted one does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..circuit.params import Param

# Purposes of the random streams; 0 and 1 are taken by the data order and shifts.
PURPOSES = {"rounding": 2, "write_noise": 3, "read_noise": 4, "nudge": 5, "variation": 6}

MODELS = ("ideal", "linear", "soft_bounds", "exponential")
ROUNDINGS = ("deterministic", "stochastic")
# a connection's response table has a row per pulse count from -max_pulses to max_pulses
MAX_PULSES = 1_000_000
# the least factor device-to-device variation scales a bound by: a device keeps a conductance
# > 0 (a draw of 1 + d2d_bounds xi <= 0 would give g_min = 0, and a trained 0 S, which no
# checkpoint reader accepts)
BOUND_FLOOR = 1e-3


def stream(seed: int, epoch: int, batch: int, purpose: str) -> np.random.Generator:
    """The random stream of one purpose in one batch of one epoch: a generator seeded by the
    counters themselves (numpy's PCG64 through SeedSequence), like the data order's."""
    return np.random.default_rng([int(seed), int(epoch), int(batch), PURPOSES[purpose]])


# ---------------------------------------------------------------------- NeuroSim nonlinearity


def _max_deviation(a: float) -> float:
    """Largest gap between the normalised curve (1 - e^{-x/a}) / (1 - e^{-1/a}) and x."""
    e = -math.expm1(-1.0 / a)  # 1 - e^{-1/a}
    x = -a * math.log(a * e)  # where the curve's slope is 1
    return (1.0 - a * e) / e - x


def nonlinearity_to_a(label: float) -> float:
    """NeuroSim's normalised A (A / pulses) of a nonlinearity label NL (its magnitude).

    NeuroSim labels a curve by its largest deviation from the straight line:
    NL = max_x (w(x) - x) / 0.099; this reproduces its Nonlinearity-NormA
    table (e.g. NL 2.40 -> 0.4992, 0.04 -> 31.57) to its four digits.
    """
    target = 0.099 * abs(label)
    if not 0.0 < target < 0.99:
        raise ValueError(f"nonlinearity {label} is outside (0, 10)")
    lo, hi = math.log(1e-4), math.log(1e6)  # deviation falls as a grows
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _max_deviation(math.exp(mid)) > target:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


# ---------------------------------------------------------------------- the model


@dataclass(frozen=True)
class UpdateModel:
    """The validated keys of a [devices.NAME.update] table."""

    model: str = "ideal"
    levels: int = 64  # states from g_min to g_max (linear); pulses + 1 for a full sweep
    rounding: str = "deterministic"
    max_pulses: int = 16  # per device and batch
    manhattan: bool = False  # one pulse of the requested sign, whatever its size
    gamma_up: float = 0.0  # linear: relative tilt of the up step (step delta (1 + gamma (1 - 2u)))
    gamma_down: float = 0.0
    nl_up: float = 1.0  # exponential: NeuroSim nonlinearity label of potentiation
    nl_down: float = 1.0  # exponential: of depression (its magnitude)
    asymmetry: float = 0.0  # up steps scaled by 1 + asymmetry, down steps by 1 - asymmetry
    write_noise: float = 0.0  # cycle-to-cycle std per pulse, fraction of g_max - g_min
    d2d_step: float = 0.0  # device-to-device relative std of the step size
    d2d_asymmetry: float = 0.0  # device-to-device std of the asymmetry
    d2d_bounds: float = 0.0  # device-to-device relative std of g_min and g_max
    preset: str = ""

    @property
    def ideal(self) -> bool:
        return self.model == "ideal"

    @property
    def step(self) -> float:
        """The nominal step delta of one pulse, as a fraction of the range."""
        return 1.0 / (self.levels - 1)

    @property
    def on_grid(self) -> bool:
        """Whether the states are the evenly spaced levels (and stay so without noise): a
        constant step, the same up and down (an asymmetric device steps off any grid)."""
        constant = self.model == "linear" and self.gamma_up == 0.0 and self.gamma_down == 0.0
        return constant and self.asymmetry == 0.0 and self.d2d_asymmetry == 0.0

    def coefficients(self) -> tuple[float, float, float, float]:
        """(c_up, r_up, c_down, r_down) of the nominal device, per pulse, normalised units."""
        delta = self.step
        if self.model == "exponential":
            out = []
            for label in (self.nl_up, self.nl_down):
                a = nonlinearity_to_a(label)
                r = -math.expm1(-delta / a)  # 1 - e^{-1/A}, A = a (levels - 1)
                out += [r / -math.expm1(-1.0 / a), r]  # c = r B, B = 1 / (1 - e^{-1/a})
            c_up, r_up, c_down, r_down = out
        else:
            g_up, g_down = (
                (1.0, 1.0)
                if self.model == "soft_bounds"
                else (
                    self.gamma_up,
                    self.gamma_down,
                )
            )
            c_up, r_up = delta * (1.0 + g_up), 2.0 * delta * g_up
            c_down, r_down = delta * (1.0 + g_down), 2.0 * delta * g_down
        up, down = 1.0 + self.asymmetry, 1.0 - self.asymmetry
        return c_up * up, r_up * up, c_down * down, r_down * down


@dataclass(frozen=True)
class DevicePreset:
    """A published device's update response, each value with its source."""

    name: str
    what: str
    values: dict
    on_off: float  # g_max / g_min of the published device
    source: str


NEUROSIM = (
    "P.-Y. Chen, X. Peng, S. Yu, 'NeuroSim: a circuit-level macro model for benchmarking "
    "neuro-inspired architectures in online learning', IEEE TCAD 37(12), 2018, device table "
    "(also the MLP+NeuroSim V3.0 manual)"
)

PRESETS = {
    p.name: p
    for p in (
        DevicePreset(
            "agsi",
            "Ag:a-Si filamentary ReRAM (Jo et al., Nano Lett. 10, 2010)",
            {
                "model": "exponential",
                "levels": 97,
                "nl_up": 2.40,
                "nl_down": 4.88,
                "write_noise": 0.035,
            },
            12.5,
            NEUROSIM + ": 97 levels, nonlinearity 2.40 / -4.88, ON/OFF 12.5, "
            "cycle-to-cycle 3.5% of the range",
        ),
        DevicePreset(
            "taox-hfox",
            "TaOx/HfOx ReRAM (Wu et al., VLSI 2018)",
            {
                "model": "exponential",
                "levels": 128,
                "nl_up": 0.04,
                "nl_down": 0.63,
                "write_noise": 0.037,
            },
            10.0,
            NEUROSIM + ": 128 levels, nonlinearity 0.04 / -0.63, ON/OFF 10, "
            "cycle-to-cycle 3.7% of the range",
        ),
        DevicePreset(
            "pcmo",
            "Pr0.7Ca0.3MnO3 (PCMO) ReRAM (Park et al., IEDM 2013)",
            {
                "model": "exponential",
                "levels": 50,
                "nl_up": 3.68,
                "nl_down": 6.76,
                "write_noise": 0.01,
            },
            6.84,
            NEUROSIM + ": 50 levels, nonlinearity 3.68 / -6.76, ON/OFF 6.84, "
            "cycle-to-cycle below 1% of the range (1% taken)",
        ),
        DevicePreset(
            "alox-hfo2",
            "AlOx/HfO2 ReRAM (Woo et al., IEEE EDL 37, 2016)",
            {
                "model": "exponential",
                "levels": 40,
                "nl_up": 1.94,
                "nl_down": 0.61,
                "write_noise": 0.05,
            },
            4.43,
            NEUROSIM + ": 40 levels, nonlinearity 1.94 / -0.61, ON/OFF 4.43, "
            "cycle-to-cycle 5% of the range",
        ),
        DevicePreset(
            "epiram",
            "SiGe epitaxial RAM, EpiRAM (Choi et al., Nat. Mater. 17, 2018)",
            {
                "model": "exponential",
                "levels": 64,
                "nl_up": 0.5,
                "nl_down": 0.5,
                "write_noise": 0.02,
            },
            50.2,
            NEUROSIM + ": 64 levels, nonlinearity 0.5 / -0.5, ON/OFF 50.2, "
            "cycle-to-cycle 2% of the range",
        ),
        DevicePreset(
            "ecram",
            "Li-ion ECRAM, near-ideal (Tang et al., IEDM 2018)",
            {
                "model": "linear",
                "levels": 958,
                "gamma_up": 0.1000,
                "gamma_down": 0.5556,
                "asymmetry": -0.0588,
                "write_noise": 0.0003,
                "d2d_step": 0.1,
                "d2d_asymmetry": 0.01,
                "d2d_bounds": 0.05,
            },
            10.0,
            "IBM aihwkit EcRamPresetDevice (fit of LinearStepDevice to Tang et al., IEDM "
            "2018): dw_min 0.002 on the range [-0.8276, 1.1724], steps dw_min (1 - 0.1153 "
            "w / 1.1724) up and dw_min (1 + 0.5085 w / 0.8276) down (equal at w = 0, its "
            "symmetry point), re-expressed about mid-range: 0.983 and 1.106 dw_min there "
            "(958 levels, asymmetry -0.0588), gamma_up 0.1000, gamma_down 0.5556; "
            "dw_min_std 0.3 of a step, dw_min_dtod 0.1, up_down_dtod 0.01, w_max_dtod 0.05 "
            "(gamma_up_dtod and gamma_down_dtod 0.05 not modelled); ON/OFF not in the preset "
            "(10 assumed)",
        ),
    )
}


def with_preset(preset: str, given: dict) -> dict:
    """A preset's values with the keys given explicitly taking precedence."""
    return {**PRESETS[preset].values, **given, "preset": preset}


# ---------------------------------------------------------------------- per-device state


@dataclass
class DeviceArrays:
    """Bounds and response coefficients of each device of a connection.

    Each is a 0-d array (all devices alike) or one value per device (flattened),
    drawn once from the run's seed when device-to-device variation is on.
    """

    g_min: np.ndarray
    g_max: np.ndarray
    c_up: np.ndarray
    r_up: np.ndarray
    c_down: np.ndarray
    r_down: np.ndarray

    NAMES = ("g_min", "g_max", "c_up", "r_up", "c_down", "r_down")

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.NAMES}


def device_arrays(
    model: UpdateModel, g_min: float, g_max: float, size: int, rng: np.random.Generator
) -> DeviceArrays:
    """Each device's bounds and coefficients: the nominal ones, varied device to device."""
    c_up, r_up, c_down, r_down = model.coefficients()
    arrays = DeviceArrays(
        *(np.asarray(float(v)) for v in (g_min, g_max, c_up, r_up, c_down, r_down))
    )
    if model.d2d_bounds:
        lo = g_min * np.maximum(1.0 + model.d2d_bounds * rng.standard_normal(size), BOUND_FLOOR)
        hi = g_max * np.maximum(1.0 + model.d2d_bounds * rng.standard_normal(size), BOUND_FLOOR)
        arrays.g_min, arrays.g_max = lo, np.maximum(hi, lo + 1e-3 * (g_max - g_min))
    if model.d2d_step or model.d2d_asymmetry:
        scale = np.maximum(1.0 + model.d2d_step * rng.standard_normal(size), 0.0)
        tilt = model.d2d_asymmetry * rng.standard_normal(size)
        up = scale * np.maximum(1.0 + tilt / (1.0 + model.asymmetry), 0.0)
        down = scale * np.maximum(1.0 - tilt / (1.0 - model.asymmetry), 0.0)
        arrays.c_up, arrays.r_up = c_up * up, np.minimum(r_up * up, 1.0)
        arrays.c_down, arrays.r_down = c_down * down, np.minimum(r_down * down, 1.0)
    return arrays


def clip_to_bounds(g: np.ndarray, arrays: DeviceArrays) -> np.ndarray:
    """Conductances within each device's bounds."""
    flat = np.clip(g.reshape(-1), arrays.g_min, arrays.g_max)
    return flat.reshape(g.shape)


def snap_to_levels(g: np.ndarray, model: UpdateModel, arrays: DeviceArrays) -> np.ndarray:
    """The nearest of each device's evenly spaced states (linear models without tilt)."""
    if not model.on_grid:
        return clip_to_bounds(g, arrays)
    flat = g.reshape(-1)
    span = arrays.g_max - arrays.g_min
    step = arrays.c_up * span  # the up step in siemens (device-to-device varied)
    k = np.rint((flat - arrays.g_min) / step)
    return np.clip(arrays.g_min + k * step, arrays.g_min, arrays.g_max).reshape(g.shape)


# ---------------------------------------------------------------------- pulses

# Forms of a Response: a table over the pulse counts (devices alike); per device, constant
# steps (STEPS) or the fixed-point form (FIXED_POINT).
TABLE, STEPS, FIXED_POINT = 0, 1, 2


@dataclass(frozen=True)
class Response:
    """How the devices of a connection answer n = -cap .. cap pulses, as the programming
    kernel reads it.

    ``TABLE`` (devices all alike): ``values`` is (3, 2 cap + 1), indexed by n + cap: g' =
    Q[n] g + B[n] plus noise of std N[n] (siemens), within ``g_min``, ``g_max``.

    ``STEPS`` and ``FIXED_POINT`` (devices that differ: device-to-device variation):
    ``values`` has a row per device holding at 3 s + j, for the direction s (0 down, 1 up)
    and j = 0, 1, 2: g* in siemens, the direction's asymptote (the step itself for
    ``STEPS``); r, the fraction of g - g* that a pulse takes (0 for ``STEPS``); the write
    noise variance of n pulses over (1 - q^2) (over |n| for ``STEPS``); then the device's
    bounds g_min, g_max at 6 and 7. n pulses take g to g* + (g - g*) (1 - r)^n (``STEPS``:
    g plus n steps). Programming reads a row per device that receives pulses, so rows are
    small and aligned: ``STEPS`` rows are float64 (64 bytes, so that steps land on each
    device's grid exactly), ``FIXED_POINT`` rows float32 (32 bytes: half the memory read).
    In float32, g* enters a response as (g - g*)(1 - q), and r and the variance keep 7
    digits: a response moves by about 1e-6 of a step (ecram's 1000 steps); the bounds are
    rounded inwards (within 2^-24 g_max: 1e-4 of ecram's step), so that programmed
    conductances stay within the device's own.
    """

    form: int
    values: np.ndarray
    g_min: float = 0.0  # the bounds of devices alike (the rows hold each device's)
    g_max: float = 0.0


def _sums(r: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1 - r)^k, S_k = sum_{j<k} (1 - r)^j and sum_{j<k} (1 - r)^{2j}, elementwise."""
    keep = 1.0 - r
    q = keep**k
    has_r = r != 0  # (r < 0: a step that grows towards the bound, gamma < 0)
    safe = np.where(has_r, r, 1.0)
    total = np.where(has_r, (1.0 - q) / safe, k)
    squares = np.where(has_r, (1.0 - q * q) / np.where(has_r, 1.0 - keep * keep, 1.0), k)
    return q, total, squares


def device_response(model: UpdateModel, arrays: DeviceArrays) -> Response:
    """The Response of a connection: a table when its devices are all alike, else a row per
    device."""
    if any(a.ndim for a in arrays.as_dict().values()):
        return _per_device(model, arrays)
    cap = model.max_pulses
    n = np.arange(-cap, cap + 1, dtype=float)
    up = n > 0
    c = np.where(up, arrays.c_up, arrays.c_down)
    r = np.where(up, arrays.r_up, arrays.r_down)
    q, total, squares = _sums(r, np.abs(n))
    lo, span = float(arrays.g_min), float(arrays.g_max - arrays.g_min)
    # up: u' = q u + c S; down: u' = 1 - q (1 - u) - c S = q u + 1 - q - c S
    a = np.where(up, c * total, np.where(n < 0, 1.0 - q - c * total, 0.0))
    b = lo * (1.0 - q) + span * a
    table = np.stack([q, b, model.write_noise * span * np.sqrt(squares)])
    return Response(TABLE, table, lo, float(arrays.g_max))


def _per_device(model: UpdateModel, arrays: DeviceArrays) -> Response:
    """The Response of devices that differ: a row per device."""
    lo, span = arrays.g_min, arrays.g_max - arrays.g_min
    sigma2 = (model.write_noise * span) ** 2
    bounds = (arrays.g_min, arrays.g_max)
    if not (np.any(arrays.r_up) or np.any(arrays.r_down)):
        zero = np.zeros(())
        down, up = (arrays.c_down * span, zero, sigma2), (arrays.c_up * span, zero, sigma2)
        return Response(STEPS, _rows(np.float64, *down, *up, *bounds))
    out = []
    for c, r, up in ((arrays.c_down, arrays.r_down, False), (arrays.c_up, arrays.r_up, True)):
        r = np.minimum(r, 1.0 - 1e-12)
        # a constant step (r = 0 < c: the untilted direction of a device tilted the other
        # way) as a fixed point far off: n steps of c (1 - n CONSTANT_R / 2)
        r = np.where((r == 0) & (c > 0), CONSTANT_R, r)
        moving = r != 0  # a device whose steps vary to zero (c = r = 0) does not move
        fixed = np.where(moving, c / np.where(moving, r, 1.0), 0.0)  # u* up, 1 - u* down
        target = lo + span * (fixed if up else 1.0 - fixed)
        keep2 = (1.0 - r) ** 2
        spread = np.where(moving, sigma2 / np.where(moving, 1.0 - keep2, 1.0), 0.0)
        out += [target, r, spread]
    inwards = (_rounded(arrays.g_min, np.inf), _rounded(arrays.g_max, -np.inf))
    return Response(FIXED_POINT, _rows(np.float32, *out, *inwards))


# the fraction of g - g* a pulse takes that stands for 0 in the fixed-point form: within
# 1e-8 of a constant step at 16 pulses (5e-4 at the largest cap)
CONSTANT_R = 1e-9


def _rounded(a: np.ndarray, towards: float) -> np.ndarray:
    """float32 values of ``a``, each rounded towards ``towards`` where float32 does not hold
    it exactly."""
    near = np.asarray(a, dtype=np.float32)
    off = near.astype(float) < a if towards > 0 else near.astype(float) > a
    return np.where(off, np.nextafter(near, np.float32(towards)), near)


def _rows(dtype: type, *values: np.ndarray) -> np.ndarray:
    """Response.values of a row per device from its eight values (each per device or one for
    all), of ``dtype``, each row aligned on its size (a whole row in one cache line)."""
    devices = max(np.size(a) for a in values)
    size = np.dtype(dtype).itemsize
    whole = np.empty(8 * devices + 64 // size, dtype)
    skip = (-whole.ctypes.data % (8 * size)) // size
    rows = whole[skip : skip + 8 * devices].reshape(devices, 8)
    for j, a in enumerate(values):
        rows[:, j] = a
    return rows


# The compiled kernels: one pass over the devices, each device's pulses and response at
# once. No fastmath: the results are those of the operations as written, run after run.
#
# The streams' numbers are drawn in the kernels by the streams' own generators (numba
# compiles Generator.random and standard_normal on numpy's bit generator: numpy's numbers,
# and the generator moves on as numpy's would). A stream that a kernel does not draw from
# is given UNUSED (never drawn from).
UNUSED = np.random.default_rng(0)


@njit(cache=True, inline="always")
def _pulses(
    x: float, cap: float, manhattan: bool, stochastic: bool, u: float, single: bool
) -> float:
    """Signed whole pulses for a requested change of x nominal steps: nearest (or floor
    after adding the uniform draw u, stochastic), or the sign only (Manhattan), capped.
    ``single``: x is float32 (float32 requests), and so is x + u, as numpy's in-place sum."""
    if manhattan:
        n = 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)
    elif stochastic:
        total = x + u
        n = np.floor(np.float64(np.float32(total)) if single else total)
    else:
        n = np.rint(x)
    return min(max(n, -cap), cap)


@njit(cache=True, inline="always")
def _coefficients(values, device: int, n: float, form: int, lo: float, hi: float):
    """What the response of ``device`` to n pulses (not 0) needs, in the order of
    _respond's arguments a, b, c, lo, hi: Q[n], B[n], N[n] and the bounds from the table, or
    the device's row in the direction of n (g*, r, the noise variance
    factor) and its own bounds."""
    if form == TABLE:
        k = int(n) + (values.shape[1] - 1) // 2
        return values[0, k], values[1, k], values[2, k], lo, hi
    s = 3 if n > 0.0 else 0
    return (
        values[device, s],
        values[device, s + 1],
        values[device, s + 2],
        values[device, 6],
        values[device, 7],
    )


@njit(cache=True, inline="always")
def _power(x: float, k: int, bits: int) -> float:
    """x^k for a whole 0 <= k < 2^bits, by squaring: ``bits`` rounds whatever k (no branch
    on k)."""
    q = 1.0
    for _ in range(bits):
        q *= x if k & 1 else 1.0
        x *= x
        k >>= 1
    return q


@njit(cache=True, inline="always")
def _respond(
    g: float,
    n: float,
    a: float,
    b: float,
    c: float,
    lo: float,
    hi: float,
    form: int,
    noisy: bool,
    z: float,
    bits: int,
) -> float:
    """Conductance g after n pulses (not 0), plus write noise (z: the device's standard
    normal draw), within the bounds [lo, hi]; a, b, c: the _coefficients of the device and
    n; ``bits``: those of the largest |n|."""
    if form == TABLE:  # g' = Q[n] g + B[n], noise N[n]
        g = g * a + b
        if noisy:
            g += c * z
    else:
        if form == STEPS:  # n steps a
            g += a * n
            spread = abs(n) * c
        else:  # towards g* = a: g' = g* + (g - g*) q, q = (1 - b)^|n|
            q = _power(1.0 - b, int(abs(n)), bits)
            g = (g - a) * q + a
            spread = (1.0 - q * q) * c
        if noisy:
            g += math.sqrt(spread) * z
    if g < lo:
        g = lo
    if g > hi:
        g = hi
    return g


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask the caches for the line of ``array[index]`` (its first entry there, of a 2-d
    array): a hint, which loads nothing into a register and cannot fault."""

    def codegen(context, builder, signature, args):
        kind = signature.args[0]
        data = context.make_array(kind)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        where = cgutils.get_item_pointer(
            context, builder, kind, data, [args[1]] + [zero] * (kind.ndim - 1)
        )
        byte = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        hint = ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, hint, "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(where, byte), i32(0), i32(3), i32(1)])  # read, keep
        return context.get_dummy_value()

    return types.none(array, index), codegen


BLOCK = 1024  # devices whose pulses are worked out before the response of those that move


@functools.cache
def _kernel(manhattan: bool, stochastic: bool, form: int, noisy: bool, single: bool):
    """The programming kernel of one rounding rule, Response form, noise setting and
    precision of the requests (``single``: float32; compiled with these as constants, so
    that its loops hold only their own work; numba caches each on disk).

    ``kernel(g, asked, scale, cap, rounding, values, lo, hi, noise)`` works out each device's
    pulses for its requested change ``asked`` times ``scale`` and its response, in place in
    ``g``, drawing from the streams (Generators) ``rounding`` and ``noise``; it returns the
    pulses sent. A device without pulses keeps its conductance and draws no noise. A block
    of devices at a time: every device's pulses first, keeping the ones that move (without
    a branch), while the next block's rows are asked of the caches (a prefetch hint, so
    that they arrive during the draws); then the write noises of those that move; then
    their responses, from their rows (now in the caches).
    """

    @njit(cache=True)
    def kernel(g, asked, scale, cap, rounding, values, lo, hi, noise) -> int:
        moved = np.empty(BLOCK, np.intp)
        counts = np.empty(BLOCK)
        normals = np.zeros(BLOCK)
        bits = 0  # those of the cap
        while (1 << bits) <= cap:
            bits += 1
        sent = 0
        for start in range(0, g.size, BLOCK):
            stop = min(start + BLOCK, g.size)
            m = 0
            for i in range(start, stop):
                if form != TABLE and i + BLOCK < g.size:  # the next block's rows
                    _prefetch(values, i + BLOCK)
                u = rounding.random() if stochastic else 0.0
                n = _pulses(asked[i] * scale, cap, manhattan, stochastic, u, single)
                moved[m] = i
                counts[m] = n
                m += n > 0.0 or n < 0.0  # not 0 (nor NaN)
            if noisy:
                for j in range(m):
                    normals[j] = noise.standard_normal()
            for j in range(m):
                i, n = moved[j], counts[j]
                a, b, c, low, high = _coefficients(values, i, n, form, lo, hi)
                g[i] = _respond(g[i], n, a, b, c, low, high, form, noisy, normals[j], bits)
                sent += int(abs(n))
        return sent

    return kernel


@njit(cache=True)
def _pulse_counts(asked, scale, cap, manhattan, stochastic, single, rounding, out) -> None:
    for i in range(asked.size):
        u = rounding.random() if stochastic else 0.0
        out[i] = _pulses(asked[i] * scale, cap, manhattan, stochastic, u, single)


def _requests(requested: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """The requests as the kernels read them (float32 ones stay float32, as numpy works them
    out), flat, and the scale in their precision."""
    single = np.asarray(requested).dtype == np.float32
    dtype = np.float32 if single else np.float64
    return np.ascontiguousarray(requested, dtype=dtype).reshape(-1), dtype(scale)


def pulse_counts(
    requested: np.ndarray, model: UpdateModel, rng: np.random.Generator | None, unit: float = 1.0
) -> np.ndarray:
    """Signed pulses per device for requested changes (fractions of the range), as
    ``program`` sends them, drawing the same numbers from the rounding stream.

    The requested change over the nominal step, rounded to the nearest whole
    pulse (deterministic) or down after adding a uniform draw (stochastic,
    unbiased); Manhattan sends one pulse of the request's sign. Capped at
    ``max_pulses`` either way. ``unit``: what one unit of ``requested`` is, as a fraction
    of the range.
    """
    asked, scale = _requests(requested, unit * (model.levels - 1))
    out = np.empty(np.shape(requested))
    stochastic = model.rounding == "stochastic" and not model.manhattan
    rounding = rng if stochastic else UNUSED
    cap = float(model.max_pulses)
    single = asked.dtype == np.float32
    _pulse_counts(asked, scale, cap, model.manhattan, stochastic, single, rounding, out.reshape(-1))
    return out


def program(
    g: np.ndarray,
    requested: np.ndarray,
    model: UpdateModel,
    arrays: DeviceArrays,
    rngs: tuple[np.random.Generator | None, np.random.Generator | None],
    response: Response | None = None,
    unit: float = 1.0,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Conductances after programming the requested changes (in units of ``unit`` times the
    nominal range g_max - g_min) as pulses, and the number of pulses sent.

    ``rngs``: the batch's rounding and write-noise streams, each drawn in the devices'
    order (a uniform per device when rounding stochastically, a Gaussian per device that
    receives pulses when the writes are noisy); ``response``: the connection's Response
    (made here if None); ``out``: where to write the result (``g`` itself, float64 and
    C-contiguous, programs in place), a new array if None. Only the devices that receive
    pulses are computed and clipped to their bounds: a device without pulses keeps its
    conductance exactly, so ``g`` must be within the bounds (as programmed conductances
    are: Programmer.prepare puts them there and every update clips the devices it moves).
    """
    out = np.array(g, dtype=float) if out is None else out
    sent = _run(out, requested, unit * (model.levels - 1), model, arrays, rngs, response)
    return out, sent


def apply_pulses(
    g: np.ndarray,
    pulses: np.ndarray,
    model: UpdateModel,
    arrays: DeviceArrays,
    rng: np.random.Generator | None,
    response: Response | None = None,
) -> np.ndarray:
    """Conductances after each device received its signed number of pulses (whole numbers,
    at most ``max_pulses`` either way), with ``program``'s response and noise.

    n pulses in one direction are the exact composition of n single-pulse
    responses (module docstring), the write noise the exact sum of the
    per-pulse noises through that response.
    """
    out = np.array(g, dtype=float)
    exact = replace(model, rounding="deterministic", manhattan=False)
    _run(out, pulses, 1.0, exact, arrays, (None, rng), response)
    return out


def _run(
    out: np.ndarray,
    requested: np.ndarray,
    scale: float,
    model: UpdateModel,
    arrays: DeviceArrays,
    rngs: tuple[np.random.Generator | None, np.random.Generator | None],
    response: Response | None,
) -> int:
    """The programming kernel on ``out`` (in place) for ``requested`` times ``scale``
    nominal steps; returns the pulses sent."""
    response = device_response(model, arrays) if response is None else response
    stochastic = model.rounding == "stochastic" and not model.manhattan
    noisy = bool(model.write_noise)
    rounding, noise = rngs[0] if stochastic else UNUSED, rngs[1] if noisy else UNUSED
    g, (asked, scale) = out.reshape(-1), _requests(requested, scale)
    kernel = _kernel(model.manhattan, stochastic, response.form, noisy, asked.dtype == np.float32)
    cap, values, lo, hi = float(model.max_pulses), response.values, response.g_min, response.g_max
    return int(kernel(g, asked, scale, cap, rounding, values, lo, hi, noise))


# ---------------------------------------------------------------------- file keys

UPDATE_KEYS = (
    Param(
        "preset",
        "choice",
        "A published device whose values fill every key not given: "
        + ", ".join(f'"{p}"' for p in PRESETS)
        + ".",
        None,
        choices=tuple(PRESETS),
    ),
    Param(
        "model",
        "choice",
        "Response to a programming pulse: ideal (any real-valued step, exactly: no pulses), "
        "linear, soft_bounds or exponential.",
        "ideal",
        choices=MODELS,
    ),
    Param("levels", "int", "States from g_min to g_max: a full sweep is levels - 1 pulses.", 64, 2),
    Param(
        "rounding",
        "choice",
        "Requested change to whole pulses: nearest, or stochastic (unbiased).",
        "deterministic",
        choices=ROUNDINGS,
    ),
    Param(
        "max_pulses",
        "int",
        "Most pulses a device receives per batch.",
        16,
        1,
        maximum=MAX_PULSES,
    ),
    Param(
        "manhattan",
        "bool",
        "Send one pulse of the requested change's sign, whatever its size.",
        False,
    ),
    Param(
        "gamma_up",
        "number",
        "linear: tilt of the up step, delta (1 + gamma (1 - 2u)).",
        0.0,
        -1.0,
        maximum=1.0,
    ),
    Param(
        "gamma_down",
        "number",
        "linear: tilt of the down step, delta (1 + gamma (2u - 1)).",
        0.0,
        -1.0,
        maximum=1.0,
    ),
    Param(
        "nl_up",
        "number",
        "exponential: NeuroSim nonlinearity label of potentiation.",
        1.0,
        0.0,
        True,
        9.0,
    ),
    Param(
        "nl_down",
        "number",
        "exponential: nonlinearity label (magnitude) of depression.",
        1.0,
        0.0,
        True,
        9.0,
    ),
    Param(
        "asymmetry",
        "number",
        "Up steps scaled by 1 + a, down steps by 1 - a.",
        0.0,
        -0.9,
        maximum=0.9,
    ),
    Param(
        "write_noise",
        "number",
        "Cycle-to-cycle std of each pulse's change, fraction of g_max - g_min.",
        0.0,
        0.0,
        maximum=1.0,
    ),
    Param(
        "d2d_step",
        "number",
        "Device-to-device relative std of the step size.",
        0.0,
        0.0,
        maximum=1.0,
    ),
    Param(
        "d2d_asymmetry", "number", "Device-to-device std of the asymmetry.", 0.0, 0.0, maximum=0.5
    ),
    Param(
        "d2d_bounds",
        "number",
        "Device-to-device relative std of g_min and g_max.",
        0.0,
        0.0,
        maximum=0.5,
    ),
)


def parse_update(table: object, rd, key: tuple) -> UpdateModel:
    """A resistor's [devices.NAME.update] table, validated (``rd``: the spec's reader, whose
    errors name the file, line and key)."""
    table = dict(rd.expect_table(table, key))
    preset = table.get("preset", "")
    if preset:
        rd.values({"preset": preset}, UPDATE_KEYS[:1], key)  # a located error if unknown
        table = with_preset(str(preset), table)
    values = rd.values(table, UPDATE_KEYS, key)
    if table and "model" not in table and not preset:  # keys the default ("ideal") ignores
        raise rd.error(
            (*key, next(iter(table))),
            'has no effect: the table sets no `model` (nor `preset`), and the default, "ideal", '
            'sends no pulses; set model = "linear", "soft_bounds" or "exponential", or a preset '
            '(model = "ideal" to train without a device model)',
        )
    return UpdateModel(**{**values, "preset": values["preset"] or ""})


def describe(model: UpdateModel) -> str:
    """One line naming a device's update model (for eval, report and the train log)."""
    if model.ideal:
        return "ideal"
    parts = [model.model, f"{model.levels} levels", f"{model.rounding} rounding"]
    if model.manhattan:
        parts.append("Manhattan")
    if model.write_noise:
        parts.append(f"write noise {model.write_noise:g}")
    if model.d2d_step or model.d2d_asymmetry or model.d2d_bounds:
        parts.append("device-to-device variation")
    return (f"{model.preset}: " if model.preset else "") + ", ".join(parts)


def device_models(devices: dict) -> dict[str, str]:
    """Each resistor device of a circuit (spec.devices) that learns as a device (a model
    other than ideal), and its update model, named."""
    return {
        name: describe(d.update)
        for name, d in devices.items()
        if d.update is not None and not d.update.ideal
    }
