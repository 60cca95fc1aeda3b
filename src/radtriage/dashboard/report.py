"""Downloads: results as CSV and JSON, and a one-page PNG report drawn with matplotlib.

Pure functions of already-computed results (no model, no Streamlit), so they are cheap to test and
can run lazily when the user clicks a download button. Only safe metadata ever reaches them.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radtriage.dashboard.settings import NOTICE

PAGE_INCHES = (8.27, 11.69)  # A4 portrait
DPI = 110
FLAG_COLOUR = "#d9534f"
BAR_COLOUR = "#4c78a8"


@dataclass(frozen=True)
class ImagePanel:
    """One image of a report: the radiograph and its Grad-CAM overlay.

    Attributes:
        name: the file's name.
        image: uint8 (H, W) grayscale display image.
        overlay: uint8 (H, W, 3) heatmap blend, or None (degenerate map: not shown).
        caption: what the overlay explains, e.g. "Grad-CAM: Cardiomegaly".
    """

    name: str
    image: np.ndarray = field(repr=False)
    overlay: np.ndarray | None = field(repr=False)
    caption: str


@dataclass(frozen=True)
class Report:
    """Everything a report shows.

    Attributes:
        title: e.g. "Chest radiograph - research triage report".
        panels: one per image (a chest report has one, a MURA study several).
        table: the probability table (:func:`tables.probability_table` or :func:`tables.study_table`).
        summary: the plain-language result ("No finding above threshold." / the study verdict).
        statement: the model's statement of what it knows (:func:`tables.model_statement`).
        facts: extra "key: value" lines (model name, split, study type, ground truth...).
    """

    title: str
    panels: Sequence[ImagePanel]
    table: pd.DataFrame
    summary: str
    statement: str
    facts: Mapping[str, str] = field(default_factory=dict)


def download_name(inputs: Sequence[str], kind: str, ext: str, when: datetime.datetime | None = None) -> str:
    """A download's file name after its input and the time, e.g.
    ``radtriage_chest_02_20261203-101500_results.csv`` or ``radtriage_image1+2_..._report.png``.

    Args:
        inputs: the analysed files' names (the first names the download; "+N" counts the others).
        kind: what the file holds ("results", "report").
        ext: the extension, without the dot.
        when: the time stamped (default: now, UTC).
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(inputs[0]).stem if inputs else "upload").strip("._") or "upload"
    more = f"+{len(inputs) - 1}" if len(inputs) > 1 else ""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    return f"radtriage_{stem[:48]}{more}_{when:%Y%m%d-%H%M%S}_{kind}.{ext}"


def results_csv(table: pd.DataFrame, context: Mapping[str, Any]) -> bytes:
    """The table as UTF-8 CSV, each row prefixed by the ``context`` columns (model, file...)."""
    frame = table.copy()
    for i, (key, value) in enumerate(context.items()):
        frame.insert(i, key, value)
    return frame.to_csv(index=False, float_format="%.4f").encode("utf-8")


def results_json(payload: Mapping[str, Any]) -> bytes:
    """A results payload as indented UTF-8 JSON (numpy scalars and arrays converted)."""

    def convert(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, pd.DataFrame):
            return value.to_dict(orient="records")
        raise TypeError(f"cannot serialise {type(value).__name__}")

    return json.dumps({"notice": NOTICE, **payload}, indent=2, default=convert).encode("utf-8")


def _bars(ax: Any, table: pd.DataFrame) -> None:
    """Horizontal probability bars (most probable on top) with threshold ticks if present."""
    label_col = table.columns[0]
    prob_col = next(c for c in table.columns if c.startswith("Probability"))
    rows = table.iloc[::-1]
    y = np.arange(len(rows))
    flagged = rows["Flagged"].to_numpy(bool) if "Flagged" in rows else np.zeros(len(rows), bool)
    ax.barh(y, rows[prob_col], color=np.where(flagged, FLAG_COLOUR, BAR_COLOUR), height=0.7)
    if "Threshold" in rows:
        ax.scatter(rows["Threshold"], y, marker="|", s=260, color="black", linewidths=2, label="operating threshold")
        ax.legend(loc="lower right", fontsize=7, frameon=False)
    ax.set_yticks(y, [textwrap.shorten(str(v), 28) for v in rows[label_col]], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def report_png(report: Report) -> bytes:
    """Render a one-page A4 PNG: images with Grad-CAM, probability bars, summary and provenance.

    Returns:
        PNG bytes (~900 x 1,290 px).
    """
    from matplotlib.figure import Figure  # object API: no global pyplot state, thread-safe

    fig = Figure(figsize=PAGE_INCHES, dpi=DPI)
    fig.text(0.05, 0.97, report.title, fontsize=14, weight="bold", va="top")
    fig.text(0.05, 0.945, NOTICE, fontsize=8.5, color=FLAG_COLOUR, va="top")
    panels = list(report.panels)[:4]
    n = max(1, len(panels))
    # image strip: originals on the first row, overlays on the second
    top, height = 0.60, 0.32 if n == 1 else 0.16
    for i, panel in enumerate(panels):
        pictures = [(panel.image, panel.name), (panel.overlay, panel.caption)]
        for j, (picture, caption) in enumerate(pictures):
            if n == 1:
                ax = fig.add_axes((0.05 + j * 0.47, top, 0.43, height))
            else:
                ax = fig.add_axes((0.05 + i * 0.9 / n, top + (1 - j) * (height + 0.01), 0.9 / n - 0.01, height))
            ax.set_axis_off()
            if picture is None:
                ax.text(0.5, 0.5, "no localisation\n(degenerate heatmap)", ha="center", va="center", fontsize=8)
            else:
                ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(textwrap.shorten(caption, 48), fontsize=7.5)
    bars = fig.add_axes((0.30, 0.25, 0.62, 0.30))
    _bars(bars, report.table)
    lines = [f"Result: {report.summary}", f"What the model knows: {report.statement}"]
    lines += [f"{k}: {v}" for k, v in report.facts.items()]
    wrapped = "\n".join(textwrap.fill(line, 110) for line in lines)
    fig.text(0.05, 0.21, wrapped, fontsize=7.5, va="top", family="DejaVu Sans")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
