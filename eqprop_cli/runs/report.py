"""Training report figures: learning curves, conductance histograms, confusion matrix.

Every figure is a `matplotlib.figure.Figure` drawn by the Agg canvas (no pyplot,
so nothing is left behind between calls), styled with matplotlib's default
style whatever the user's matplotlibrc says, rendered at a fixed pixel size
(``FIGURE_SIZE[name]`` inches times ``DPI``) and written atomically as PNG
without a "Software" tag, so the same data give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.style
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import EqpropError
from ..io import write_atomic

DPI = 100
"""Dots per inch of every figure."""
FIGURE_SIZE: dict[str, tuple[float, float]] = {
    "learning_curves": (10.0, 4.0),
    "conductances": (12.0, 4.5),
    "confusion": (7.0, 6.5),
    "comparison": (10.0, 4.0),
}
"""Width and height in inches of each figure, by file stem; pixels = inches * DPI."""

_SPLITS = ("train", "validation", "test")
_PREFIXES = {0: "", -3: "m", -6: "µ", -9: "n", -12: "p", -15: "f"}


def _new_figure(name: str) -> Figure:
    figure = Figure(figsize=FIGURE_SIZE[name], dpi=DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    """Render to PNG in memory, then write the bytes atomically."""
    buffer = io.BytesIO()
    figure.canvas.print_png(buffer, metadata={"Software": None})
    write_atomic(path, buffer.getvalue())
    return Path(path)


def _column(metrics: Sequence[Mapping[str, float | None]], key: str) -> np.ndarray:
    """One metric per epoch; missing or None (JSON null) becomes NaN."""
    return np.array([math.nan if m.get(key) is None else m[key] for m in metrics], dtype=float)


def plot_learning_curves(
    metrics: Sequence[Mapping[str, float]], path: Path, *, loss_label: str = "loss"
) -> Path:
    """Loss and error (%) per epoch for train, validation and test (splits absent or NaN are left out).

    ``loss_label`` names the loss with its unit on the y axis, e.g. "squared error (V²)".
    """
    if not metrics:
        raise EqpropError("no epoch has finished yet, so there are no learning curves to plot")
    with matplotlib.style.context("default"):
        return _save(_learning_curves_figure(metrics, loss_label), path)


def _learning_curves_figure(metrics: Sequence[Mapping[str, float]], loss_label: str) -> Figure:
    epochs = _column(metrics, "epoch")
    if not np.all(np.isfinite(epochs)):
        raise EqpropError("every epoch's metrics must have a finite `epoch` number")
    figure = _new_figure("learning_curves")
    for axes, quantity, scale, ylabel in zip(
        figure.subplots(1, 2),
        ("loss", "error"),
        (1.0, 100.0),
        (loss_label, "error (%)"),
        strict=True,
    ):
        for split in _SPLITS:
            values = _column(metrics, f"{split}_{quantity}") * scale
            if np.any(np.isfinite(values)):
                axes.plot(epochs, values, marker="o", markersize=4, label=split)
        axes.set_xlabel("epoch")
        axes.set_ylabel(ylabel)
        axes.set_title(quantity)
        axes.grid(True, alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
        if axes.has_data():
            axes.legend()
    return figure


def si_scale(magnitude: float) -> tuple[float, str]:
    """Factor and SI prefix (f to none) that bring ``magnitude`` into [1, 1000) where possible."""
    if not math.isfinite(magnitude) or magnitude <= 0:
        return 1e6, "µ"
    exponent = 3 * math.floor(math.log10(magnitude) / 3)
    exponent = min(max(exponent, min(_PREFIXES)), max(_PREFIXES))
    return 10.0**-exponent, _PREFIXES[exponent]


def plot_conductance_histograms(
    initial: Mapping[str, np.ndarray],
    final: Mapping[str, np.ndarray],
    path: Path,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """One panel per connection: histograms of its conductances (siemens) at the start and the end.

    The x axis takes the SI prefix that suits each panel; ``ranges[name] = (g_min, g_max)``
    adds dashed lines at the device's range.
    """
    if not initial and not final:
        raise EqpropError("no conductances to plot: the network has no trainable connection")
    with matplotlib.style.context("default"):
        return _save(_conductance_figure(initial, final, ranges or {}), path)


def _conductance_figure(
    initial: Mapping[str, np.ndarray],
    final: Mapping[str, np.ndarray],
    ranges: Mapping[str, tuple[float, float]],
) -> Figure:
    names = list(dict.fromkeys([*initial, *final]))
    columns = min(len(names), 3)
    figure = _new_figure("conductances")
    panels = figure.subplots(math.ceil(len(names) / columns), columns, squeeze=False).ravel()
    for axes, name in zip(panels, names, strict=False):
        _histogram_panel(axes, name, initial.get(name), final.get(name), ranges.get(name))
    for axes in panels[len(names) :]:
        axes.set_visible(False)
    return figure


def _histogram_panel(
    axes: Axes,
    name: str,
    initial: np.ndarray | None,
    final: np.ndarray | None,
    device_range: tuple[float, float] | None,
) -> None:
    series = {}
    for label, values in (("start", initial), ("end", final)):
        if values is not None:
            values = np.asarray(values, dtype=float).ravel()
            series[label] = values[np.isfinite(values)]
    points = np.concatenate([*series.values(), np.asarray(device_range or (), dtype=float)])
    axes.set_title(f"{name} ({max(map(len, series.values())):,} conductances)")
    if points.size == 0:
        axes.text(0.5, 0.5, "no finite conductances", ha="center", va="center")
        return
    factor, prefix = si_scale(float(np.max(np.abs(points))))
    low, high = float(points.min()) * factor, float(points.max()) * factor
    if low == high:
        pad = 0.05 * abs(low) or 1.0
        low, high = low - pad, high + pad
    edges = np.linspace(low, high, 51)
    for label, values in series.items():
        counts, _ = np.histogram(values * factor, bins=edges)
        axes.stairs(counts, edges, fill=True, alpha=0.5, label=label)
    if device_range is not None:
        for k, g in enumerate(device_range):
            axes.axvline(
                g * factor, color="0.3", linestyle="--", label="device range" if k == 0 else None
            )
    axes.set_xlabel(f"conductance ({prefix}S)")
    axes.set_ylabel("count")
    axes.legend()


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    """Confusion matrix (rows: true class, columns: predicted) with counts and accuracy."""
    confusion = np.asarray(confusion)
    n = len(classes)
    if n == 0 or confusion.shape != (n, n):
        raise EqpropError(
            f"confusion matrix must be {n} x {n} for {n} classes (at least one); got shape {confusion.shape}"
        )
    with matplotlib.style.context("default"):
        return _save(_confusion_figure(confusion, classes), path)


def _confusion_figure(confusion: np.ndarray, classes: Sequence[str]) -> Figure:
    n = len(classes)
    total = int(confusion.sum())
    accuracy = f"accuracy {np.trace(confusion) / total:.2%}" if total else "no samples"
    figure = _new_figure("confusion")
    axes = figure.subplots()
    image = axes.imshow(confusion, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, label="samples")
    threshold = confusion.max() / 2
    size = max(4.0, min(10.0, 120.0 / n))
    for (row, column), count in np.ndenumerate(confusion):
        colour = "white" if count > threshold else "black"
        axes.text(column, row, f"{count:g}", ha="center", va="center", color=colour, fontsize=size)
    ticks = np.arange(n)
    tilted = max(map(len, classes)) > 3  # long names (Fashion-MNIST) would overlap
    axes.set_xticks(
        ticks,
        labels=list(classes),
        rotation=45 if tilted else 0,
        ha="right" if tilted else "center",
    )
    axes.set_yticks(ticks, labels=list(classes))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(f"confusion ({total:,} samples, {accuracy})")
    return figure


def plot_comparison(
    runs: Mapping[str, Sequence[Mapping[str, float]]], path: Path, *, loss_label: str = "loss"
) -> Path:
    """Test loss and test error (%) per epoch of several runs, one line per run, overlaid."""
    for name, metrics in runs.items():
        if not metrics:
            raise EqpropError(f"{name}: no epoch has finished yet, so there is nothing to compare")
    with matplotlib.style.context("default"):
        figure = _new_figure("comparison")
        for axes, quantity, scale, ylabel in zip(
            figure.subplots(1, 2),
            ("loss", "error"),
            (1.0, 100.0),
            (f"test {loss_label}", "test error (%)"),
            strict=True,
        ):
            for name, metrics in runs.items():
                values = _column(metrics, f"test_{quantity}") * scale
                axes.plot(_column(metrics, "epoch"), values, marker="o", markersize=4, label=name)
            axes.set_xlabel("epoch")
            axes.set_ylabel(ylabel)
            axes.set_title(f"test {quantity}")
            axes.grid(True, alpha=0.3)
            axes.xaxis.get_major_locator().set_params(integer=True)
            axes.legend()
        return _save(figure, path)


def write_report(
    out_dir: Path,
    metrics: Sequence[Mapping[str, float]],
    initial: Mapping[str, np.ndarray],
    final: Mapping[str, np.ndarray],
    confusion: np.ndarray,
    classes: Sequence[str],
    ranges: Mapping[str, tuple[float, float]] | None = None,
    *,
    loss_label: str = "loss",
) -> list[Path]:
    """Write learning_curves.png, conductances.png and confusion.png into ``out_dir``."""
    out_dir = Path(out_dir)
    if not metrics:  # checked before the folder is made: nothing is left behind on error
        raise EqpropError("no epoch has finished yet, so there are no learning curves to plot")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EqpropError(f"{out_dir}: cannot create the report folder ({exc.strerror})") from None
    return [
        plot_learning_curves(metrics, out_dir / "learning_curves.png", loss_label=loss_label),
        plot_conductance_histograms(initial, final, out_dir / "conductances.png", ranges),
        plot_confusion(confusion, classes, out_dir / "confusion.png"),
    ]
