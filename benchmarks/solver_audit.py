"""Adversarial audit of the equilibrium solver's claims on random valid circuits.

Random circuits beyond the suite's (tests/randomcircuits.py): layered networks of
1 to 3 hidden layers of 1 to 24 nodes with conductances log-uniform over 1 nS to
1 mS, Shockley diodes of varied IS (1e-16 to 1e-6 A), n (0.5 to 4), temperature
and RS (1 ohm to 1 Mohm), named parts, piecewise-linear diodes and hard clamps, on
rails and inputs within 1 V or up to 40 V, amplifiers (on the node and behind it)
and bias currents, at float64 and float32; the suite's random netlists (with and
without clamps), meshes with diode-only islands and stiff meshes (1 nS to 1 mS);
batches of 1 to 40; methods auto, layered and newton; vtol 1e-11 to 1e-6 V, tol
1e-12 or 1e-10 A; free solves, nudged ones (conductance nudges of 1e-9 to 1e-3 S,
a tenth of them negative, current nudges of 1e-10 to 1e-4 A) warm-started from the
free state and given it as ``like``, and warm starts 0.1 V off. ``--training``
instead makes training's solves: clamp-only layered circuits (the accelerated
sweeps), a free solve, then nudged ones at +beta and -beta (conductance or current,
the second started on the line through the first), and betas near the negative
limit the solver states.

Each is compared with an independent float64 Newton on Kirchhoff's current law
(its own diode laws, series resistance through the Wright omega function, hard
clamps by an active-set loop on their KKT conditions, nudges as the elements they
stand for), polished from eqprop's answer or from zero; at float32 with the input
currents rounded as the network rounds them (the stated claim). A case is flagged
when the solve raises (other than a documented refusal), a voltage is not finite,
or a sample reported converged is further than ``vtol`` from the reference at any
node or has a KCL residual above ``tol``.

    python benchmarks/solver_audit.py --count 2000 --seed 0 --json audit.json
    python benchmarks/solver_audit.py --training --count 300 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from scipy.special import wrightomega

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import randomcircuits as rc  # noqa: E402

from eqprop_cli import Network, compile_circuit, parse_circuit  # noqa: E402
from eqprop_cli.devices.diode import IdealDiode  # noqa: E402
from eqprop_cli.errors import InputError  # noqa: E402
from eqprop_cli.solver.equilibrium import Nudge, solve  # noqa: E402


class Reference:
    """KCL of a network (with optional nudge elements) solved by a float64 Newton."""

    def __init__(self, net: Network):
        self.net = net
        n = net.n_nodes
        drive = {amp.target: amp for amp in net.amplifiers}
        self.unknown = [i for i in range(n) if net.fixed_index[i] < 0 and i not in drive]

        def depth(node: int) -> int:
            k = 0
            while node in drive:
                node, k = drive[node].source, k + 1
            return k

        self.order = [
            (t, drive[t].source, float(drive[t].device.model.gain))
            for t in sorted(drive, key=depth)
        ]
        m = len(self.unknown)
        self.M = np.zeros((n, m))  # dV/dx
        self.P = np.zeros((n, m))  # current at node i counted at unknown j
        for j, i in enumerate(self.unknown):
            self.M[i, j] = self.P[i, j] = 1.0
        for t, s, gain in self.order:
            self.M[t] = gain * self.M[s]
            self.P[t] = self.P[s] / gain
        a, b, g = net.resistor_edges()
        self.ra, self.rb, self.rg = a.astype(int), b.astype(int), g.astype(float)
        self.diodes = []
        clamps = []  # hard clamps: V(anode) - V(cathode) <= threshold, current anode to cathode
        for d in net.diodes:
            ends = (np.asarray(d.anode, int), np.asarray(d.cathode, int))
            if d.model.hard:
                clamps += [(p, q, d.model.threshold) for p, q in zip(*ends, strict=True)]
            else:
                self.diodes.append((*ends, d.model))
        self.clamps = clamps
        # incidence of each clamp's branch voltage in the unknowns (and its fixed part)
        self.C = np.array([self.M[p] - self.M[q] for p, q, _ in clamps]).reshape(len(clamps), m)
        self.CP = np.array([self.P[p] - self.P[q] for p, q, _ in clamps]).reshape(len(clamps), m)
        self.sp, self.sm, self.sc = net.isource_arrays()
        self.extra = None  # (batch, unknowns): currents into the unknowns on top of the circuit's

    def round_inputs_like(self, inputs: np.ndarray, twin: Network) -> None:
        """Add the change of the input currents that a float32 network's rounding makes (its
        claim holds for the circuit with those currents rounded); ``twin``: the same circuit
        at float64, with the same conductances."""
        delta = self.net.linear().rhs(inputs) - twin.linear().rhs(inputs)  # per eqprop unknown
        column = {int(node): j for j, node in enumerate(self.unknown)}
        self.extra = np.zeros((len(inputs), len(self.unknown)))
        for k, node in enumerate(self.net.var_node):  # (eqprop's gradient carries stage weights)
            self.extra[:, column[int(node)]] += delta[:, k] / self.net.var_weight[k]

    def fixed(self, inputs: np.ndarray) -> np.ndarray:
        V0 = np.zeros((len(inputs), self.net.n_nodes))
        fp = self.net.fixed_potentials(np.atleast_2d(inputs).astype(float))
        for i in range(self.net.n_nodes):
            if self.net.fixed_index[i] >= 0:
                V0[:, i] = fp[:, self.net.fixed_index[i]]
        for t, s, gain in self.order:
            V0[:, t] = gain * V0[:, s]
        return V0

    @staticmethod
    def diode(model, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(model, IdealDiode):
            on = v > model.threshold
            return model.g_on * np.maximum(v - model.threshold, 0.0), np.where(on, model.g_on, 0.0)
        Is, nvt, rs = (
            model.saturation_current,
            model.ideality * model.thermal_voltage,
            model.series_resistance,
        )
        if rs == 0:
            e = np.exp(np.minimum(v / nvt, 700.0))
            return Is * (e - 1.0), Is / nvt * e
        z = np.log(Is * rs / nvt) + (v + Is * rs) / nvt
        w = np.real(wrightomega(z))
        i = nvt / rs * w - Is
        gj = (i + Is) / nvt
        return i, gj / (1.0 + gj * rs)

    def kcl(self, V: np.ndarray, nudge: Nudge | None, b: int):
        """(residual at the unknowns, Jacobian in x) of one sample's node potentials V."""
        n = self.net.n_nodes
        out = np.zeros(n)
        G = np.zeros((n, n))

        def branch(p, q, i, g):
            np.add.at(out, p, i)
            np.add.at(out, q, -i)
            np.add.at(G, (p, p), g)
            np.add.at(G, (q, q), g)
            np.add.at(G, (p, q), -g)
            np.add.at(G, (q, p), -g)

        branch(self.ra, self.rb, self.rg * (V[self.ra] - V[self.rb]), self.rg)
        for p, q, model in self.diodes:
            i, g = self.diode(model, V[p] - V[q])
            branch(p, q, i, g)
        np.add.at(out, self.sp, -self.sc)
        np.add.at(out, self.sm, self.sc)
        if nudge is not None:
            nodes = self.net.outputs
            for k in range(nodes.shape[0]):
                p = nodes[k, 0]
                o = V[p] - (V[nodes[k, 1]] if nodes.shape[1] == 2 else 0.0)
                ends = [p] + ([nodes[k, 1]] if nodes.shape[1] == 2 else [])
                if nudge.target is not None and nudge.beta:
                    t = np.atleast_2d(nudge.target)
                    t = t[b if t.shape[0] > 1 else 0, k]
                    cur = nudge.beta * (o - t)
                    self._nudge_branch(
                        out, G, p, ends[1] if len(ends) > 1 else None, cur, nudge.beta
                    )
                if nudge.current is not None:
                    c = np.atleast_2d(nudge.current)
                    c = c[b if c.shape[0] > 1 else 0, k]
                    out[p] -= c
                    if len(ends) > 1:
                        out[ends[1]] += c
        r = self.P.T @ out
        if self.extra is not None:
            r = r - self.extra[b]
        J = self.P.T @ G @ self.M
        return r, J

    @staticmethod
    def _nudge_branch(out, G, p, m, cur, beta):
        """A conductance beta from p to m (ground: None) carrying ``cur``, in out and G."""
        out[p] += cur
        G[p, p] += beta
        if m is not None:
            out[m] -= cur
            G[m, m] += beta
            G[p, m] -= beta
            G[m, p] -= beta

    def solve(self, inputs: np.ndarray, start: np.ndarray, nudge: Nudge | None, b: int):
        """Node potentials of sample b from node potentials ``start``; (V, converged).

        With hard clamps: the KKT conditions, by an active-set loop from the clamps that
        ``start`` holds at their thresholds (Newton with those clamps' branch voltages as
        equality constraints, then the set corrected until every held clamp carries current
        in its conducting direction and every other one is below its threshold); by
        convexity that point is the equilibrium."""
        if not self.clamps:
            return self._newton(inputs, start, nudge, b, [])
        th = np.array([c[2] for c in self.clamps])
        active = list(
            np.where(np.array([start[p] - start[q] for p, q, _ in self.clamps]) >= th - 1e-6)[0]
        )
        for _ in range(50):
            V, ok, lam = self._newton(inputs, start, nudge, b, active, with_multipliers=True)
            if not ok:
                return V, False
            slack = th - np.array([V[p] - V[q] for p, q, _ in self.clamps])
            bad_lam = [k for k, held in zip(active, lam, strict=True) if held < -1e-15]
            bad_v = [k for k in range(len(th)) if k not in active and slack[k] < -1e-13]
            if not bad_lam and not bad_v:
                return V, True
            if bad_v:
                active = sorted(set(active) | set(bad_v))
            else:
                worst = min(zip(lam, active, strict=True))[1]
                active = [k for k in active if k != worst]
            start = V
        return V, False

    def _newton(self, inputs, start, nudge, b, active, with_multipliers=False):
        V0 = self.fixed(inputs[b : b + 1])[0]
        x = start[self.unknown].copy()
        if active:
            th = np.array([self.clamps[k][2] for k in active])
            d0 = np.array([V0[self.clamps[k][0]] - V0[self.clamps[k][1]] for k in active])
            C, CP = self.C[active], self.CP[active]
            # start on the constraints: least-norm correction
            x += np.linalg.lstsq(C, th - d0 - C @ x, rcond=None)[0]
            lam = np.zeros(len(active))
            V = V0 + self.M @ x
            for _ in range(100):
                r, J = self.kcl(V, nudge, b)
                F = np.concatenate([r + CP.T @ lam, C @ x + d0 - th])
                K = np.block([[J, CP.T], [C, np.zeros((len(active), len(active)))]])
                try:
                    step = np.linalg.solve(K, F)
                except np.linalg.LinAlgError:
                    step = np.linalg.lstsq(K, F, rcond=None)[0]
                t = 1.0
                while True:
                    xn, ln = x - t * step[: len(x)], lam - t * step[len(x) :]
                    Vn = V0 + self.M @ xn
                    rn = self.kcl(Vn, nudge, b)[0]
                    Fn = np.concatenate([rn + CP.T @ ln, C @ xn + d0 - th])
                    if np.linalg.norm(Fn) <= (1 - 1e-4 * t) * np.linalg.norm(F) or t < 1e-10:
                        break
                    t *= 0.5
                x, lam, V = xn, ln, Vn
                if np.max(np.abs(t * step[: len(x)]), initial=0.0) <= 1e-15 * (
                    1 + np.max(np.abs(x), initial=0)
                ):
                    return V, True, lam
            return V, False, lam
        V, ok = self._plain(V0, x, nudge, b)
        return (V, ok, np.zeros(0)) if with_multipliers else (V, ok)

    def _plain(self, V0, x, nudge, b):

        def V_of(x):
            return V0 + self.M @ x

        r, J = self.kcl(V_of(x), nudge, b)
        for _ in range(200):
            try:
                step = np.linalg.solve(J, r)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(J, r, rcond=None)[0]
            t = 1.0
            norm = np.linalg.norm(r)
            while True:
                xn = x - t * step
                rn, Jn = self.kcl(V_of(xn), nudge, b)
                if np.linalg.norm(rn) <= (1 - 1e-4 * t) * norm or t < 1e-10:
                    break
                t *= 0.5
            x, r, J = xn, rn, Jn
            if np.max(np.abs(t * step), initial=0.0) <= 1e-15 * (1 + np.max(np.abs(x), initial=0)):
                return V_of(x), True
        return V_of(x), np.max(np.abs(t * step), initial=0.0) < 1e-12

    def residual(self, inputs, V, nudge, b) -> float:
        """The largest KCL residual at V, each held clamp carrying what balances it best."""
        r = self.kcl(V, nudge, b)[0]
        held = [k for k, (p, q, th) in enumerate(self.clamps) if V[p] - V[q] >= th - 1e-9]
        if held:  # the clamps' currents (>= 0) that minimise the residual
            from scipy.optimize import nnls

            lam = nnls(self.CP[held].T, -r)[0]
            r = r + self.CP[held].T @ lam
        return float(np.max(np.abs(r), initial=0.0))


# ------------------------------------------------------------------ circuits


def _log(rng, lo, hi):
    return float(10 ** rng.uniform(np.log10(lo), np.log10(hi)))


def _diode_text(rng: np.random.Generator, chip: bool, clamps: bool) -> str:
    kind = rng.choice(["shockley", "series", "ideal", "part"], p=[0.45, 0.25, 0.2, 0.1])
    if clamps:
        return f'type = "diode"\nmodel = "ideal"\nthreshold = {rng.uniform(-0.2, 0.4):.4f}\n'
    if kind == "ideal":
        return (
            f'type = "diode"\nmodel = "ideal"\nthreshold = {rng.uniform(-0.3, 0.6):.4f}\n'
            f'g_on = "{_log(rng, 1e-7, 1e-2):.4g}"\n'
        )
    if kind == "part":
        return f'type = "diode"\nmodel = "{rng.choice(rc.PARTS)}"\n'
    text = (
        f'type = "diode"\nmodel = "shockley"\nis = "{_log(rng, 1e-16, 1e-6 if chip else 1e-9):.3g}"\n'
        f"n = {rng.uniform(0.5, 4.0):.3f}\ntemperature = {rng.uniform(250, 400):.2f}\n"
    )
    if kind == "series":
        text += f'rs = "{_log(rng, 1.0, 1e6):.4g}"\n'
    return text


def layered_text(rng: np.random.Generator, dtype: str) -> tuple[str, int]:
    """A random layered circuit file; returns (text, features)."""
    chip = rng.random() < 0.7
    volts = 1.0 if chip else 40.0
    n_in = int(rng.integers(1, 9))
    hidden = [int(rng.integers(1, 25)) for _ in range(int(rng.integers(1, 4)))]
    n_out = int(rng.integers(1, 5))
    text = f'[circuit]\nname = "audit"\n\n[solver]\ndtype = "{dtype}"\n\n'
    text += '[devices.w]\ntype = "resistor"\ng = "1u"\ng_min = "1n"\ng_max = "1m"\n\n'
    n_dev = int(rng.integers(1, 4))
    clamps = rng.random() < 0.4  # hard clamps only: the accelerated sweeps
    for k in range(n_dev):
        text += f"[devices.d{k}]\n{_diode_text(rng, chip, clamps)}\n"
    text += f'[devices.amp]\ntype = "amplifier"\ngain = {rng.uniform(0.3, 8):.3f}\n\n'
    text += f'[devices.ib]\ntype = "isource"\ncurrent = "{rng.uniform(-1, 1) * _log(rng, 1e-9, 1e-4):.4g}"\n\n'
    text += f"[rails]\nvpos = {rng.uniform(0, volts):.4f}\nvneg = {-rng.uniform(0, volts):.4f}\n\n"
    text += (
        f'[input]\nsize = {n_in}\nencoding = "{rng.choice(["single", "differential"])}"\n'
        f"gain = {volts * rng.uniform(0.2, 1.0):.4f}\n\n"
    )
    text += f'[output]\nsize = {n_out}\nreadout = "{rng.choice(["single", "differential"])}"\n'
    if rng.random() < 0.3:
        text += 'bias = "ib"\n'
    names = []
    for k, size in enumerate(hidden):
        names.append(f"h{k}")
        text += f'\n[[hidden]]\nname = "h{k}"\nsize = {size}\n'
        amp = rng.random() < 0.4
        if amp:
            text += 'amplifier = "amp"\n'
        entries = []
        for _ in range(int(rng.integers(0, 3))):
            d = f"d{int(rng.integers(n_dev))}"
            node = "node_a" if amp and rng.random() < 0.3 else "node"
            rail = str(rng.choice(["vpos", "vneg", "gnd"]))
            a, c = (node, rail) if rng.random() < 0.5 else (rail, node)
            entries.append(f'  {{ device = "{d}", anode = "{a}", cathode = "{c}" }},')
        if entries:
            text += "diodes = [\n" + "\n".join(entries) + "\n]\n"
        if rng.random() < 0.4:
            text += 'bias = "ib"\n'
    chain = ["input", *names, "output"]
    for a, b in itertools.pairwise(chain):
        text += f'\n[[connections]]\nfrom = "{a}"\nto = "{b}"\ndevice = "w"\n'
    if len(names) > 1 and rng.random() < 0.3:
        text += f'\n[[connections]]\nfrom = "input"\nto = "{names[1]}"\ndevice = "w"\n'
    return text, n_in


def build(text: str) -> Network:
    return Network(compile_circuit(parse_circuit(text)))


def spread_conductances(net: Network, rng: np.random.Generator, lo: float, hi: float) -> None:
    g = [10 ** rng.uniform(np.log10(lo), np.log10(hi), np.shape(a)) for a in net.g]
    net.set_conductances(g)


# ------------------------------------------------------------------ one case


def _crashed(row: dict, exc: Exception) -> dict:
    """The row of a solve that raised something other than a documented refusal."""
    row["crash"] = "".join(traceback.format_exception_only(exc)).strip()[:300]
    return row


def case(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    form = rng.choice(
        ["layered", "anything", "anything-stiff", "netlist", "rc-layered"],
        p=[0.5, 0.2, 0.1, 0.1, 0.1],
    )
    dtype = "float32" if form == "layered" and rng.random() < 0.2 else "float64"
    if form == "layered":
        text, n_in = layered_text(rng, dtype)
    elif form == "anything":
        text, n_in = rc.anything(int(rng.integers(1 << 30)), islands=bool(rng.random() < 0.5))
    elif form == "anything-stiff":
        text, n_in = rc.anything(
            int(rng.integers(1 << 30)), islands=False, conductances=(1e-9, 1e-3)
        )
    elif form == "netlist":
        text, n_in = rc.netlist(int(rng.integers(1 << 30)), clamps=bool(rng.random() < 0.5))
    else:
        text, n_in = rc.layered(
            int(rng.integers(1 << 30)), diode=str(rng.choice(["shockley", "series", "ideal"]))
        )
    row = {"seed": seed, "form": str(form), "dtype": dtype}
    try:
        net = build(text)
    except InputError as exc:
        row["refused"] = str(exc)[:200]
        return row
    if form == "layered":
        spread_conductances(net, rng, 1e-9, 1e-3)
    batch = int(rng.choice([1, 1, 2, 5, 17, 40]))
    x = rng.uniform(-1, 1, (batch, n_in))
    method = str(rng.choice(["auto", "auto", "layered", "newton"]))
    vtol = float(rng.choice([1e-9, 1e-9, 1e-6, 1e-11]))
    tol = float(rng.choice([1e-10, 1e-10, 1e-12]))
    mode = str(rng.choice(["free", "nudge-g", "nudge-i", "warm"]))
    row.update(batch=batch, method=method, vtol=vtol, tol=tol, mode=mode, nodes=int(net.n_nodes))
    kw = {"method": method, "vtol": vtol, "tol": tol}
    nudge = None
    t0 = time.perf_counter()
    try:
        free = solve(net, x, **{**kw, "method": "auto" if method == "layered" else method})
        eq = free
        if mode in ("nudge-g", "nudge-i"):
            n_out = net.outputs.shape[0]
            if mode == "nudge-g":
                beta = _log(rng, 1e-9, 1e-3) * (1 if rng.random() < 0.9 else -0.01)
                nudge = Nudge(beta, target=rng.uniform(-0.5, 0.5, (batch, n_out)))
                row["beta"] = beta
            else:
                nudge = Nudge(current=rng.uniform(-1, 1, (batch, n_out)) * _log(rng, 1e-10, 1e-4))
            eq = solve(net, x, x0=free.unknowns, nudge=nudge, like=free, **kw)
        elif mode == "warm":
            start = free.unknowns + rng.normal(0, 0.1, free.unknowns.shape)
            eq = solve(net, x, x0=start, **kw)
        elif method != "auto":
            eq = solve(net, x, **kw)
    except InputError as exc:
        row["refused"] = str(exc)[:200]
        return row
    except Exception as exc:
        return _crashed(row, exc)
    row["seconds"] = time.perf_counter() - t0
    row["method_used"] = eq.method
    row["message"] = eq.message[:200]
    row["free_converged"] = int(free.converged.sum())
    V = eq.voltages
    if not np.all(np.isfinite(V)):
        row["nan"] = True
        return row
    row["converged"] = int(eq.converged.sum())
    ref = Reference(net)
    if dtype == "float32":
        twin = build(text.replace('dtype = "float32"', 'dtype = "float64"'))
        twin.set_conductances([g.astype(float) for g in net.g])
        ref.round_inputs_like(x, twin)
    worst, worst_res, worst_est = 0.0, 0.0, 0.0
    bad = []
    for b in range(batch):
        Vr, ok = ref.solve(x, V[b], nudge, b)
        if not ok:
            Vr2, ok = ref.solve(x, np.zeros_like(V[b]), nudge, b)
            if not ok:
                row.setdefault("ref_failed", []).append(b)
                continue
            Vr = Vr2
        diff = float(np.max(np.abs(Vr - V[b])))
        res = ref.residual(x, V[b], nudge, b)
        if eq.converged[b]:
            worst = max(worst, diff)
            worst_res = max(worst_res, res)
            worst_est = max(worst_est, float(eq.error[b]))
            if diff > vtol or res > tol * 1.001:
                bad.append({"b": b, "diff": diff, "res": res, "est": float(eq.error[b])})
    row.update(worst=worst, worst_res=worst_res, worst_est=worst_est)
    if bad:
        row["false_converged"] = bad[:3]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--training", action="store_true", help="Training-like solves only.")
    args = parser.parse_args()
    rows = []
    for s in range(args.seed, args.seed + args.count):
        try:
            row = training_case(s) if args.training else case(s)
        except Exception as exc:
            row = {"seed": s, "harness_error": repr(exc)[:300]}
        rows.append(row)
        flagged = any(
            k in row for k in ("crash", "nan", "false_converged", "harness_error", "ref_failed")
        )
        if flagged or args.verbose:
            print(json.dumps(row), flush=True)
    summary = {
        "cases": len(rows),
        "refused": sum("refused" in r for r in rows),
        "crash": sum("crash" in r for r in rows),
        "nan": sum("nan" in r for r in rows),
        "false_converged": sum("false_converged" in r for r in rows),
        "ref_failed": sum("ref_failed" in r for r in rows),
        "samples": sum(r.get("batch", 0) for r in rows if "worst" in r),
        "converged_samples": sum(r.get("converged", 0) for r in rows),
    }
    print("summary", json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")


def training_case(seed: int) -> dict:
    """As training solves: a clamp-only layered circuit (the accelerated sweeps), its free
    solve, then nudged solves at +beta and -beta (conductance or current), warm-started
    from the free state and the first nudged one, lending the free solve's set-up."""
    from eqprop_cli.learn.train import nudged_start

    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 12))
    hidden = [int(rng.integers(2, 30)) for _ in range(int(rng.integers(1, 4)))]
    n_out = int(rng.integers(1, 5))
    top = float(rng.choice([1.0, 1.0, 20.0, 40.0]))
    text = '[circuit]\nname = "audit-train"\n\n[devices.w]\ntype = "resistor"\ng = "1u"\n\n'
    text += f'[devices.clamp]\ntype = "diode"\nmodel = "ideal"\nthreshold = {rng.choice([0.0, 0.0, 0.1]):g}\n\n'
    text += f"[rails]\nvtop = {top}\n\n[input]\nsize = {n_in}\n"
    text += f'encoding = "{rng.choice(["single", "differential"])}"\ngain = {top * rng.uniform(0.3, 1):.4f}\n\n'
    text += f'[output]\nsize = {n_out}\nreadout = "{rng.choice(["single", "differential"])}"\n'
    names = []
    for k, size in enumerate(hidden):
        names.append(f"h{k}")
        text += (
            f'\n[[hidden]]\nname = "h{k}"\nsize = {size}\ndiodes = [\n'
            '  { device = "clamp", anode = "gnd", cathode = "node" },\n'
            '  { device = "clamp", anode = "node", cathode = "vtop" },\n]\n'
        )
    chain = ["input", *names, "output"]
    for a, b in itertools.pairwise(chain):
        text += f'\n[[connections]]\nfrom = "{a}"\nto = "{b}"\ndevice = "w"\n'
    net = build(text)
    lo, hi = sorted(10 ** rng.uniform(-9, -3, 2))
    spread_conductances(net, rng, lo, max(hi, lo * 10))
    batch = int(rng.choice([1, 3, 16, 32]))
    x = (
        rng.uniform(-1, 1, (batch, n_in))
        if rng.random() < 0.5
        else rng.uniform(0, 1, (batch, n_in))
    )
    vtol = float(rng.choice([1e-9, 1e-9, 1e-11]))
    kw = {"vtol": vtol, "tol": 1e-10}
    row = {
        "seed": seed,
        "form": "training",
        "hidden": hidden,
        "batch": batch,
        "vtol": vtol,
        "top": top,
    }
    kind = str(rng.choice(["g", "g-limit", "i"]))
    row["kind"] = kind
    ref = Reference(net)
    try:
        free = solve(net, x, **kw)
        n_o = net.outputs.shape[0]
        targets = rng.uniform(0, top * 0.3, (batch, n_o))
        beta = _log(rng, 1e-9, 1e-3)
        states = []
        for sign in (1.0, -1.0):
            b_ = sign * beta
            if kind == "i":
                nudge = Nudge(current=-b_ * (free.outputs().reshape(batch, -1) - targets))
            else:
                nudge = Nudge(b_, target=targets)
            first = states[0][0] if states else None
            start = nudged_start(free, first, beta, b_)
            try:
                eq = solve(net, x, x0=start, nudge=nudge, like=free, **kw)
            except InputError as exc:  # beta too negative: a documented refusal
                if kind == "g-limit":
                    row["refused"] = str(exc)[:160]
                    break
                raise
            states.append((eq, nudge))
        if kind == "g-limit":  # a negative beta close to the limit the solver states
            limit = (
                float(str(row.pop("refused")).split("< ")[1].split(" S")[0])
                if "refused" in row
                else None
            )
            if limit is not None:
                b_ = -limit * float(rng.uniform(0.5, 0.999))
                nudge = Nudge(b_, target=targets)
                eq = solve(net, x, x0=free.unknowns, nudge=nudge, like=free, **kw)
                states.append((eq, nudge))
                row["beta_limit"] = [b_, limit]
    except InputError as exc:
        row["refused"] = str(exc)[:200]
        return row
    except Exception as exc:
        return _crashed(row, exc)
    bad = []
    worst = 0.0
    for eq, nudge in [(free, None), *states]:
        V = eq.voltages
        if not np.all(np.isfinite(V)):
            row["nan"] = True
            return row
        for b in range(batch):
            if not eq.converged[b]:
                row["not_converged"] = row.get("not_converged", 0) + 1
                continue
            Vr, ok = ref.solve(x, V[b], nudge, b)
            if not ok:
                row.setdefault("ref_failed", []).append(b)
                continue
            diff = float(np.max(np.abs(Vr - V[b])))
            res = ref.residual(x, V[b], nudge, b)
            worst = max(worst, diff)
            if diff > vtol or res > 1e-10 * 1.001:
                bad.append(
                    {
                        "b": b,
                        "diff": diff,
                        "res": res,
                        "est": float(eq.error[b]),
                        "method": eq.method,
                        "nudged": nudge is not None,
                    }
                )
    row["worst"] = worst
    row["methods"] = [free.method, *(e.method for e, _ in states)]
    if bad:
        row["false_converged"] = bad[:4]
    return row


if __name__ == "__main__":
    main()
