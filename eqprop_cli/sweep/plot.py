"""A sweep's figures: its first metric against each swept key, one PNG per key.

Each figure plots the mean over seeds (error bars: the sample standard
deviation) against the key's values, one line per combination of the other
swept keys. Drawn like the run figures of `report` (Agg canvas, default
style, fixed size, written atomically without a software tag).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import EqpropError
from ..runs.report import DPI, _save
from ..sweep.spec import show_value, slug

SIZE = (7.0, 4.5)  # inches
MAX_LINES = 12  # lines per figure; beyond it the other keys are averaged over


def _numeric(values: list[object]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_sweep(doc: dict, out_dir: Path) -> list[Path]:
    """One figure per swept key but the seed: ``doc`` is a sweep's results.json."""
    metric = doc["metrics"][0]
    if not any(s["mean"][metric] is not None for s in doc["summary"]):
        raise EqpropError(
            f"{doc['name']}: no finished point has a value of {metric} (the first metric), "
            "so there is nothing to plot"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EqpropError(f"{out_dir}: cannot create the report folder ({exc.strerror})") from None
    settings = [a for a in doc["axes"] if a != doc["seed_key"]]
    paths = []
    for axis in settings or [None]:
        paths.append(_figure(doc, metric, axis, settings, out_dir))
    return paths


def _figure(doc: dict, metric: str, axis: str | None, settings: list[str], out_dir: Path) -> Path:
    others = [a for a in settings if a != axis]
    lines: dict[str, list[tuple[object, float, float]]] = {}
    for s in doc["summary"]:
        mean, std = s["mean"][metric], s["std"][metric]
        if mean is None:
            continue
        label = ", ".join(f"{a} = {show_value(s['values'][a])}" for a in others)
        x = s["values"][axis] if axis else doc["name"]
        lines.setdefault(label, []).append((x, mean, std))
    if len(lines) > MAX_LINES:  # too many to tell apart: pool the other keys
        pooled: dict[str, list[float]] = {}
        for points in lines.values():
            for x, mean, _ in points:
                pooled.setdefault(show_value(x), []).append(mean)
        lines = {
            f"mean over {', '.join(others)}": [
                (x, float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
                for x, v in pooled.items()
            ]
        }
    xs = list(dict.fromkeys(x for points in lines.values() for x, _, _ in points))
    numeric = axis is not None and _numeric(xs)
    with matplotlib.style.context("default"):
        figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained", facecolor="white")
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        for label, points in lines.items():
            points = sorted(points, key=lambda p: p[0]) if numeric else points
            position = [p[0] if numeric else xs.index(p[0]) for p in points]
            ax.errorbar(
                position,
                [p[1] for p in points],
                yerr=[p[2] for p in points],
                marker="o",
                capsize=3,
                label=label or None,
            )
        if numeric:
            positive = [float(x) for x in xs if x > 0]
            if len(positive) == len(xs) and max(positive) / min(positive) >= 100:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(xs)), [show_value(x) or "(file)" for x in xs])
        ax.set_xlabel(axis or "sweep")
        ax.set_ylabel(f"{metric} (mean over {doc['seed_key']})")
        ax.set_title(f"{doc['name']}: {metric} against {axis or 'point'}")
        ax.grid(True, alpha=0.3)
        if any(lines):
            ax.legend(fontsize="small")
    stem = slug(axis or "points")
    return _save(figure, out_dir / f"{metric}-vs-{stem}.png")
