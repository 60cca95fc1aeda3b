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
        overlay: uint8 (H, W, 3) heatmap blend, or None (no heatmap: see ``note``).
        caption: what the overlay explains, e.g. "Heatmap: Cardiomegaly (p = 0.71 ≥ 0.56)".
        note: why there is no overlay, one sentence (:func:`radtriage.contract.heatmap_note`), or None.
    """

    name: str
    image: np.ndarray = field(repr=False)
    overlay: np.ndarray | None = field(repr=False)
    caption: str
    note: str | None = None


@dataclass(frozen=True)
class Report:
    """Everything a report shows.

    Attributes:
        title: e.g. "Chest radiograph - research triage report".
        panels: one per image (a chest report has one, a MURA study several).
        table: the probability table (:func:`tables.probability_table` or :func:`tables.study_table`).
        summary: the plain-language result ("No finding above threshold." / the study verdict).
        statement: the model's plain statement of what it knows (``ModelFacts.headline``).
        facts: extra "key: value" lines (model name, split, study type, ground truth...).
        threshold: one operating threshold for every bar (a study's), drawn as a line; None when
            the table has a Threshold column per row (a chest image's classes).
    """

    title: str
    panels: Sequence[ImagePanel]
    table: pd.DataFrame
    summary: str
    statement: str
    facts: Mapping[str, str] = field(default_factory=dict)
    threshold: float | None = None


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


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (file names have no spaces to shorten at)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _bars(ax: Any, table: pd.DataFrame, threshold: float | None = None) -> None:
    """Horizontal probability bars (most probable on top), each labelled with its value.

    Thresholds: a tick on each bar from a Threshold column, or one dashed line for ``threshold``. The
    key explaining them sits above the plot, outside it, so it is never read as one more bar's tick.
    """
    label_col = table.columns[0]
    prob_col = next(c for c in table.columns if c.startswith("Probability"))
    rows = table.iloc[::-1]
    y = np.arange(len(rows))
    probs = rows[prob_col].to_numpy(float)
    flagged = rows["Flagged"].to_numpy(bool) if "Flagged" in rows else np.zeros(len(rows), bool)
    ax.barh(y, probs, color=np.where(flagged, FLAG_COLOUR, BAR_COLOUR), height=0.7)
    for yi, p in zip(y, probs):  # values in a column right of the plot, clear of the threshold marks
        ax.text(1.02, yi, f"{p:.2f}", va="center", fontsize=7, color="#333333", transform=ax.get_yaxis_transform())
    if "Threshold" in rows:
        ax.scatter(rows["Threshold"], y, marker="|", s=200, color="black", linewidths=2,
                   label="black tick: the class's operating threshold")
    elif threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2,
                   label=f"dashed line: the operating threshold ({threshold:.2f})")
    if "Threshold" in rows or threshold is not None:
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False, handlelength=1.2)
    ax.set_yticks(y, [_clip(str(v), 30) for v in rows[label_col]], fontsize=7)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability (red: flagged)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _picture(ax: Any, picture: np.ndarray | None, title: str, note: str | None, wrap: int) -> None:
    """One image of the strip, or in its place the sentence saying why there is none."""
    ax.set_axis_off()
    if picture is None:
        ax.text(0.5, 0.5, textwrap.fill(note or "No heatmap.", wrap), ha="center", va="center", fontsize=7,
                wrap=True, transform=ax.transAxes)
    else:
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_title(_clip(title, 8 * wrap // 5), fontsize=7.5, pad=3)


def _image_strip(fig: Any, panels: Sequence[ImagePanel], top: float) -> float:
    """Originals and their heatmaps below the page header; returns the strip's bottom (figure fraction).

    One image: side by side. Several: originals on the first row, their heatmaps under them, each
    row with its own band for titles so no title runs into the notice or the row above.
    """
    title_band = 0.024
    if len(panels) == 1:
        height = 0.31
        bottom = top - title_band - height
        panel = panels[0]
        _picture(fig.add_axes((0.05, bottom, 0.43, height)), panel.image, panel.name, None, 60)
        _picture(fig.add_axes((0.52, bottom, 0.43, height)), panel.overlay, panel.caption, panel.note, 60)
        return bottom
    n, height = len(panels), 0.15
    width = 0.9 / n
    rows = [top - title_band - height, top - 2 * (title_band + height)]
    for i, panel in enumerate(panels):
        left = 0.05 + i * width
        wrap = int(150 * width)
        _picture(fig.add_axes((left, rows[0], width - 0.015, height)), panel.image, panel.name, None, wrap)
        _picture(fig.add_axes((left, rows[1], width - 0.015, height)), panel.overlay, panel.caption, panel.note,
                 wrap)
    return rows[1]


def report_png(report: Report) -> bytes:
    """Render a one-page A4 PNG: images with their heatmaps, probability bars, summary and provenance.

    Returns:
        PNG bytes (~900 x 1,290 px).
    """
    buffer = io.BytesIO()
    report_figure(report).savefig(buffer, format="png")
    return buffer.getvalue()


def report_figure(report: Report) -> Any:
    """The report's matplotlib ``Figure`` (laid out, not yet rendered): :func:`report_png` saves it."""
    from matplotlib.figure import Figure  # object API: no global pyplot state, thread-safe

    fig = Figure(figsize=PAGE_INCHES, dpi=DPI)
    fig.text(0.05, 0.975, report.title, fontsize=14, weight="bold", va="top")
    fig.text(0.05, 0.948, NOTICE, fontsize=8.5, color=FLAG_COLOUR, va="top")
    panels = list(report.panels)
    bottom = _image_strip(fig, panels[:4], top=0.93) if panels else 0.93
    if len(panels) > 4:
        fig.text(0.05, bottom - 0.012, f"First 4 of {len(panels)} images shown; every image is in the chart.",
                 fontsize=7, va="top")
    bars_top = bottom - 0.06  # room for the threshold key above the chart
    bars = fig.add_axes((0.30, 0.25, 0.62, bars_top - 0.25))
    _bars(bars, report.table, report.threshold)
    lines = [f"Result: {report.summary}", f"What the model knows: {report.statement}"]
    lines += [f"{k}: {v}" for k, v in report.facts.items()]
    wrapped = "\n".join(textwrap.fill(line, 110) for line in lines)
    fig.text(0.05, 0.205, wrapped, fontsize=7.5, va="top", family="DejaVu Sans")
    return fig
