"""Report figures: valid PNGs of the promised pixel size, not blank, deterministic, honest data."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from eqprop_cli.errors import EqpropError
from eqprop_cli.runs.report import (
    DPI,
    FIGURE_SIZE,
    _conductance_figure,
    _confusion_figure,
    _learning_curves_figure,
    plot_confusion,
    plot_learning_curves,
    si_scale,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = [str(k) for k in range(10)]


def metrics(epochs: int = 3) -> list[dict[str, float]]:
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_error": 0.3 / e,
            "validation_loss": math.nan,
            "validation_error": math.nan,
            "test_loss": 1.2 / e,
            "test_error": 0.35 / e,
        }
        for e in range(1, epochs + 1)
    ]


def conductances(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input-hidden": rng.uniform(1e-7, 1e-6, 5000),
        "hidden-output": rng.uniform(1e-7, 1e-6, 200),
    }


def confusion() -> np.ndarray:
    return np.full((10, 10), 3) + np.diag(np.full(10, 90))


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature and every chunk's CRC."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    assert not any(b"Software" in body for _, body in chunks)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    return width, height


def expected_pixels(name: str) -> tuple[int, int]:
    width, height = FIGURE_SIZE[name]
    return round(width * DPI), round(height * DPI)


def test_write_report_writes_three_valid_nonblank_pngs_of_fixed_size(tmp_path):
    out = tmp_path / "report" / "nested"
    ranges = {"input-hidden": (1e-7, 1e-6)}
    paths = write_report(
        out, metrics(), conductances(0), conductances(1), confusion(), CLASSES, ranges
    )
    assert [p.name for p in paths] == ["learning_curves.png", "conductances.png", "confusion.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files
    for path in paths:
        assert png_size(path) == expected_pixels(path.stem)
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[:2] == expected_pixels(path.stem)[::-1]
        assert np.ptp(pixels[..., :3]) > 0.5, f"{path.name} is blank"


def test_same_data_same_bytes_whatever_the_rc_settings(tmp_path):
    first = plot_confusion(confusion(), CLASSES, tmp_path / "a.png")
    rc = {"savefig.bbox": "tight", "figure.dpi": 33, "savefig.dpi": 50, "lines.linewidth": 7}
    with matplotlib.rc_context(rc):
        second = plot_confusion(confusion(), CLASSES, tmp_path / "b.png")
        assert matplotlib.rcParams["lines.linewidth"] == 7  # the caller's settings are kept
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize(
    ("magnitude", "factor", "prefix"),
    [(1.0, 1.0, ""), (2e-3, 1e3, "m"), (999e-6, 1e6, "µ"), (5e-7, 1e9, "n"), (3e-10, 1e12, "p")],
)
def test_si_scale_brings_values_into_one_to_a_thousand(magnitude, factor, prefix):
    assert si_scale(magnitude) == (pytest.approx(factor), prefix)
    assert 1 <= magnitude * si_scale(magnitude)[0] < 1000


def test_si_scale_limits():
    assert si_scale(5.0) == (1.0, "")  # no kilosiemens
    assert si_scale(1e-20)[1] == "f"
    assert si_scale(0.0) == (1e6, "µ")


def test_histograms_count_every_finite_conductance_in_the_right_bins():
    initial = {"w": np.r_[np.full(100, 0.2e-6), np.full(300, 0.8e-6), math.nan], "nan": [math.nan]}
    final = {"w": np.full(50, 0.5e-6), "only-final": np.full(7, 2e-3), "tiny": np.full(3, 4e-9)}
    figure = _conductance_figure(initial, final, {"w": (0.1e-6, 1e-6)})
    w, nan, only_final, tiny, *spare = figure.axes
    assert [a.get_xlabel() for a in (w, only_final, tiny)] == [
        f"conductance ({prefix}S)" for prefix in ("µ", "m", "n")
    ]
    assert [t.get_text() for t in nan.texts] == ["no finite conductances"]
    assert len(spare) == 2 and not any(axes.get_visible() for axes in spare)
    (start, edges, _), (end, _, _) = (patch.get_data() for patch in w.patches)
    assert start.sum() == 400 and end.sum() == 50
    centres = (edges[:-1] + edges[1:]) / 2
    assert sorted(centres[start > 0].round(1)) == [0.2, 0.8]
    assert start[start > 0].tolist() == [100, 300]
    assert centres[end > 0].round(1).tolist() == [0.5]
    assert [line.get_xdata()[0] for line in w.lines] == pytest.approx([0.1, 1.0])
    assert [t.get_text() for t in w.get_legend().get_texts()] == ["start", "end", "device range"]
    assert "400 conductances" in w.get_title()
    (only,) = (patch.get_data() for patch in only_final.patches)
    assert only.values.sum() == 7  # all values equal: the bins still have a width


def test_nan_and_missing_splits_are_left_out_of_the_learning_curves(tmp_path):
    rows = metrics(4)
    for row in rows:
        del row["test_loss"]
    rows[2]["validation_error"] = 0.1  # partly known: drawn
    rows[3]["test_error"] = None  # JSON null
    loss, error = _learning_curves_figure(rows, "squared error (V²)").axes
    assert [line.get_label() for line in loss.lines] == ["train"]
    assert [line.get_label() for line in error.lines] == ["train", "validation", "test"]
    assert error.lines[0].get_ydata().tolist() == pytest.approx([30, 15, 10, 7.5])
    assert loss.get_ylabel() == "squared error (V²)" and error.get_ylabel() == "error (%)"
    path = plot_learning_curves(rows, tmp_path / "curves.png")
    assert png_size(path) == expected_pixels("learning_curves")


def test_no_finished_epoch_is_a_clear_error(tmp_path):
    with pytest.raises(EqpropError, match="no epoch has finished"):
        write_report(tmp_path, [], conductances(), conductances(), confusion(), CLASSES)
    assert list(tmp_path.iterdir()) == []


def test_confusion_rows_are_true_classes_with_counts_and_accuracy():
    matrix = confusion()
    matrix[0, 1] = 40  # 40 zeros taken for ones
    axes = _confusion_figure(matrix, CLASSES).axes[0]
    assert axes.get_ylabel() == "true class" and axes.get_xlabel() == "predicted class"
    counts = {(t.get_position(), t.get_text()) for t in axes.texts}
    assert ((1, 0), "40") in counts and ((0, 1), "3") in counts and len(counts) == 100
    assert "1,237 samples, accuracy 75.18%" in axes.get_title()


def test_confusion_shape_must_fit_the_classes(tmp_path):
    with pytest.raises(EqpropError, match="must be 3 x 3"):
        plot_confusion(confusion(), ["a", "b", "c"], tmp_path / "c.png")
