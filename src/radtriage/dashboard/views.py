"""Streamlit rendering of results: probabilities, Grad-CAM, the model's statement, DICOM tags, downloads.

Every function takes already-computed results (from :mod:`engine`) and draws; none loads a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from radtriage import contract, labels, locations, model_card
from radtriage.dashboard import engine, imaging, report, settings, tables
from radtriage.dashboard.inputs import Example

FLAG_COLOUR = "#e4572e"
BAR_COLOUR = "#4c9be8"


# --- page frame -----------------------------------------------------------------------------
def header() -> None:
    """Title and the research-use notice (shown on every page)."""
    st.title("radtriage — radiograph triage")
    st.warning(settings.NOTICE, icon=":material/warning:")


def welcome() -> None:
    st.markdown(
        "Upload one or more radiographs (DICOM, PNG or JPG) in the sidebar, or open a bundled example. "
        "A chest image gets 14 finding probabilities against each finding's operating threshold; "
        "several upper-limb images form one MURA study with a normal/abnormal verdict. "
        "Grad-CAM shows where the evidence for a finding lies."
    )


def failures(items: Sequence[engine.Failure]) -> None:
    """The loader's one-sentence message for each file that could not be read."""
    for f in items:
        st.error(f"**{f.name}** could not be analysed: {f.message}", icon=":material/block:")


def model_missing(message: str) -> None:
    st.error(message, icon=":material/inventory_2:")
    st.caption(f"Model folder: {locations.model_dir()} (set {locations.MODEL_DIR_ENV} to use another).")


# --- what the model knows -------------------------------------------------------------------
@st.dialog("Model card", width="large")
def model_card_dialog(model: engine.Model) -> None:
    """The model card and its metadata, written to the page only when asked for (a popover's content
    is sent with every result, ~30 kB for the browser to lay out)."""
    if model.card:
        st.markdown(model.card)
    else:
        st.caption("This model folder has no MODEL_CARD.md; its metadata follows.")
    st.code(engine.metadata_json(model), language="json")


def model_statement(model: engine.Model, key: str) -> None:
    """The model's plain one-sentence statement of what it knows, with the technical detail and the
    model card one click away (``key`` tells apart the buttons of several results)."""
    facts = model.facts
    col_text, col_card = st.columns([5, 1], vertical_alignment="center")
    with col_text:
        if tables.only_synthetic(facts):
            st.warning(f"**Not validated on real radiographs.** {facts.headline}", icon=":material/science:")
        else:
            st.info(facts.headline, icon=":material/info:")
        with st.expander("Technical detail: data, splits, thresholds, calibration"):
            st.markdown("\n".join(f"- {line}" for line in facts.details))
    if col_card.button("Model card", key=f"card_{key}", width="stretch"):
        model_card_dialog(model)


# --- chest ----------------------------------------------------------------------------------
def probability_chart(table: pd.DataFrame) -> dict:
    """Vega-Lite spec: sorted horizontal bars of the probabilities, each class's threshold a tick.

    A plain spec rather than Altair: Altair validates its schema on every rerun (~0.3 s here).
    """
    order = table["Finding"].tolist()
    y = {"field": "Finding", "type": "nominal", "sort": order, "title": None, "axis": {"labelLimit": 220}}
    tooltip = [{"field": "Finding"}, {"field": "Probability", "format": ".3f"},
               {"field": "Threshold", "format": ".3f"}, {"field": "Validation AUROC (95% CI)"}, {"field": "Provenance"}]
    colour = {"field": "Status", "type": "nominal", "title": None, "legend": {"orient": "bottom"},
              "scale": {"domain": ["above threshold", "below threshold"], "range": [FLAG_COLOUR, BAR_COLOUR]}}
    return {
        "height": {"step": 24},
        "transform": [{"calculate": "datum.Flagged ? 'above threshold' : 'below threshold'", "as": "Status"}],
        "layer": [
            {"mark": {"type": "bar", "cornerRadiusEnd": 2},
             "encoding": {"x": {"field": "Probability", "type": "quantitative", "scale": {"domain": [0, 1]},
                                "title": "probability"}, "y": y, "color": colour, "tooltip": tooltip}},
            {"mark": {"type": "tick", "color": "white", "thickness": 3, "size": 18},
             "encoding": {"x": {"field": "Threshold", "type": "quantitative"}, "y": y, "tooltip": tooltip}},
        ],
    }


def chest_table(table: pd.DataFrame, example: Example | None) -> pd.DataFrame:
    """The table shown under the chart; examples get their ground truth as a column."""
    shown = table.copy()
    if example is not None:
        shown.insert(4, "Ground truth (phantom)", np.where(shown["Finding"].isin(example.findings), "present", ""))
    return shown


def image_result(model: engine.Model, decoded: engine.Decoded, exam: engine.Examination, example: Example | None) -> None:
    """One chest image: summary, chart against thresholds, Grad-CAM, table, tags and downloads."""
    everything = tables.probability_table(exam.prediction, model.facts)
    overall = everything[everything["Finding"] == labels.ANY_FINDING]  # the summary score, not a finding
    findings = everything[everything["Finding"] != labels.ANY_FINDING]
    table = findings[findings["Reliable"]].reset_index(drop=True)  # ranked: validated classes only
    apart = findings[~findings["Reliable"]]
    summary = tables.summary_sentence(everything[everything["Reliable"]])
    left, right = st.columns([1, 1], gap="large")
    with left:  # first: the image is what the reader looks at, and the browser draws it before the chart
        gradcam_panel(model, decoded, exam, everything, summary, example)
    with right:
        st.subheader("Findings")
        for _, row in overall.iterrows():
            st.metric("Abnormal (any finding)", f"{row['Probability']:.2f}",
                      help=f"Probability that the image shows any finding; flagged at >= {row['Threshold']:.2f}. "
                           f"Validation AUROC {row['Validation AUROC (95% CI)']}.", border=True)
        if tables.flagged_findings(table):
            st.error(summary, icon=":material/flag:")
        else:
            st.success(summary, icon=":material/check_circle:")
        if example is not None:
            st.info(example.truth_text(), icon=":material/target:")
        st.vega_lite_chart(table, probability_chart(table), width="stretch")
        st.caption("Bars: probability; white tick: the class's operating threshold (from the model's metadata).")
        if not apart.empty:
            st.caption("Not reliable, never flagged (no real training labels, or no better than chance on the "
                       "validation images): " + "; ".join(f"{r.Finding} {r.Probability:.2f} ({r.Provenance})"
                                                        for r in apart.itertuples()) + ".")
    model_statement(model, decoded.digest)
    st.dataframe(
        chest_table(everything, example),
        hide_index=True,
        width="stretch",
        column_config={
            "Probability": st.column_config.ProgressColumn("Probability", min_value=0.0, max_value=1.0, format="%.3f"),
            "Threshold": st.column_config.NumberColumn("Threshold", format="%.3f"),
            "Validation AUROC (95% CI)": st.column_config.TextColumn(
                "Validation AUROC (95% CI)", help="How well the model separates images with and without "
                f"the finding (0.5 = chance, 1 = perfect), measured on {model_card.plain_split(model.facts.split)}."
                if model.facts.split else "Not measured."),
        },
    )
    dicom_panel(decoded)
    data_downloads(model, [decoded], table, summary, example, key=decoded.digest)


@st.fragment
def gradcam_panel(model: engine.Model, decoded: engine.Decoded, exam: engine.Examination, table: pd.DataFrame,
                  summary: str, example: Example | None) -> None:
    """Class selector + opacity slider + overlay; a fragment, so these widgets rerun only this panel.

    Only flagged classes can be explained (:func:`radtriage.contract.heatmap_class`): a heatmap shows
    where the evidence for a flag lies, and Grad-CAM would draw an equally vivid map for p = 0.00.
    """
    st.subheader("Grad-CAM")
    classes = list(model.facts.classes)
    flagged = table.loc[table["Flagged"], "Finding"].tolist()  # most probable first
    default = contract.heatmap_class(classes, exam.probs, model.facts.thresholds, model.facts.flaggable)
    requested = None
    if flagged:
        first = classes[default] if default is not None and classes[default] in flagged else flagged[0]
        name = st.selectbox("Explain class", flagged, index=flagged.index(first),
                            key=f"cam_class_{decoded.digest}",
                            help="Only flagged findings have a heatmap: it shows where the evidence for a flag "
                                 "lies. Default: the most probable flagged finding.")
        requested = classes.index(name)
        opacity = st.slider("Heatmap opacity", 0.0, 1.0, settings.DEFAULT_OPACITY, 0.05,
                            key=f"opacity_{decoded.digest}")
    else:
        opacity = settings.DEFAULT_OPACITY
    index, overlay, note = explained(model, decoded, exam, opacity, requested)
    if overlay is None:
        st.image(decoded.display, caption=decoded.name, width="stretch")
        st.info(note, icon=":material/blur_off:")
    else:
        st.image(overlay, caption=f"Grad-CAM: {classes[index]} (p = {exam.probs[index]:.2f}) — {decoded.name}",
                 width="stretch", output_format="JPEG")
    report_download(lambda: chest_report(model, decoded, exam, table, summary, example, opacity),
                    key=f"report_{decoded.digest}", names=[decoded.name])


def explained(model: engine.Model, decoded: engine.Decoded, exam: engine.Examination, opacity: float,
              requested: int | None = None) -> tuple[int | None, np.ndarray | None, str | None]:
    """The contract's heatmap decision for one image, drawn.

    Returns:
        (class explained or None, uint8 RGB overlay at display size or None, the sentence shown
        instead of the overlay or None).
    """
    facts = model.facts
    index = contract.heatmap_class(facts.classes, exam.probs, facts.thresholds, facts.flaggable, requested)
    heat = None
    if index is not None:
        heat, degenerate = engine.heatmap(model, decoded, exam, index)
        heat = None if degenerate else heat
    note = contract.heatmap_note(facts.classes, exam.probs, facts.thresholds, facts.flaggable, requested, heat)
    if note is not None:
        return index, None, note
    heat_display, heat_rgb = engine.display_heatmap(model, decoded, index, heat)
    return index, imaging.blend(decoded.display, heat_rgb, heat_display, opacity), None


def report_panel(model: engine.Model, decoded: engine.Decoded, exam: engine.Examination,
                 name: str | None = None, opacity: float = settings.DEFAULT_OPACITY) -> report.ImagePanel:
    """An image of a report with the heatmap of its default class (never the one selected on screen),
    at the opacity chosen on screen."""
    index, overlay, note = explained(model, decoded, exam, opacity)
    caption = "No heatmap" if index is None else (
        f"Heatmap: {model.facts.classes[index]} (p = {exam.probs[index]:.2f} ≥ {model.facts.thresholds[index]:.2f})")
    return report.ImagePanel(name or decoded.name, decoded.display, overlay, caption, note)


def chest_report(model: engine.Model, decoded: engine.Decoded, exam: engine.Examination, table: pd.DataFrame,
                 summary: str, example: Example | None, opacity: float = settings.DEFAULT_OPACITY) -> report.Report:
    """The one-page report of a chest image: its heatmap explains the most probable flagged finding."""
    panel = report_panel(model, decoded, exam, opacity=opacity)
    facts = {"Model": model.facts.name, "File": decoded.name, "Heatmap": heatmap_fact(panel)}
    apart = table[~table["Reliable"]]
    if not apart.empty:
        facts["Not reliable, never flagged (not charted)"] = "; ".join(
            f"{r.Finding} {r.Probability:.2f}" for r in apart.itertuples()) + "."
    if example is not None:
        facts["Ground truth"] = example.truth_text()
    return report.Report("Chest radiograph — research triage report", [panel],
                         table[table["Reliable"]].reset_index(drop=True), summary, model.facts.headline, facts)


def heatmap_fact(panel: report.ImagePanel) -> str:
    """The report's line saying which class its heatmap explains, or why there is none."""
    if panel.note is None:
        return f"explains {panel.caption.removeprefix('Heatmap: ')}, the most probable flagged finding."
    return "none — " + panel.note.removeprefix("No heatmap: ")


# --- MURA -----------------------------------------------------------------------------------
def study_result(model: engine.Model, decoded: Sequence[engine.Decoded], exams: Sequence[engine.Examination],
                 study_type: str | None, example: Example | None) -> None:
    """A study: verdict from the mean of its images, per-image probabilities and heatmaps.

    ``study_type`` None (no DICOM body part, none chosen) is shown as "not given", never guessed.
    """
    facts = model.facts
    threshold = facts.thresholds[0]
    study = engine.study_prediction(model, list(exams))
    probability, abnormal = study.top_probability, study.flags[study.top_class]
    verdict = "Abnormal" if abnormal else "Normal"
    shown_type = study_type or "study type not given"
    summary = (f"Study verdict ({shown_type}, {len(exams)} image{'s' if len(exams) > 1 else ''}): {verdict} — "
               f"mean probability of abnormal {probability:.2f} against the operating threshold {threshold:.2f}.")
    st.subheader("Study")
    (st.error if verdict == "Abnormal" else st.success)(
        summary, icon=":material/flag:" if verdict == "Abnormal" else ":material/check_circle:")
    if example is not None:
        st.info(example.truth_text(), icon=":material/target:")
    model_statement(model, "study")
    names = tables.unique_names([d.name for d in decoded])  # MURA names every file image1.png
    table = tables.study_table(names, [e.prediction for e in exams])
    if note := tables.study_note(table, probability, threshold):
        st.info(note, icon=":material/functions:")
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, settings.DEFAULT_OPACITY, 0.05, key="mura_opacity")
    for col, d, e, name in zip(st.columns(min(len(decoded), 4) or 1) * 3, decoded, exams, names):
        with col:
            _, overlay, why = explained(model, d, e, opacity)
            st.image(d.display if overlay is None else overlay, caption=f"{name}: p(abnormal) = {e.probs[0]:.2f}",
                     width="stretch", output_format="JPEG")
            if why:
                st.caption(why)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"Probability of abnormal": st.column_config.ProgressColumn(
            "Probability of abnormal", min_value=0.0, max_value=1.0, format="%.3f")},
    )
    for d, name in zip(decoded, names):
        dicom_panel(d, name)
    key = engine.digest_of("".join(d.digest for d in decoded).encode())[:16]
    extra = {"study_type": study_type or "not given", "study_probability": probability, "study_verdict": verdict,
             "threshold": threshold}
    data_downloads(model, list(decoded), table, summary, example, key=key, extra=extra)
    report_download(lambda: study_report(model, decoded, exams, names, table, summary, study_type, example, opacity),
                    key=f"report_{key}", names=[d.name for d in decoded])


def study_report(model: engine.Model, decoded: Sequence[engine.Decoded], exams: Sequence[engine.Examination],
                 names: Sequence[str], table: pd.DataFrame, summary: str, study_type: str | None,
                 example: Example | None, opacity: float = settings.DEFAULT_OPACITY) -> report.Report:
    """The one-page report of a study: each image's own heatmap, and the study mean against the threshold."""
    probability = float(np.mean([e.probs[0] for e in exams]))
    threshold = model.facts.thresholds[0]
    bars = pd.concat([table, pd.DataFrame({"Image": [f"Study (mean of {len(exams)})"],
                                           "Probability of abnormal": [probability],
                                           "Flagged": [probability >= threshold]})], ignore_index=True)
    facts = {"Model": model.facts.name, "Study type": study_type or "not given",
             "Heatmaps": "each image's own, drawn only where that image is above the threshold."}
    if note := tables.study_note(table, probability, threshold):
        facts["Why Normal"] = note
    if example is not None:
        facts["Ground truth"] = example.truth_text()
    panels = [report_panel(model, d, e, name, opacity) for d, e, name in zip(decoded, exams, names)]
    return report.Report("Upper-limb study — research triage report", panels, bars, summary,
                         model.facts.headline, facts, threshold=threshold)


# --- DICOM tags and downloads ---------------------------------------------------------------
def dicom_panel(decoded: engine.Decoded, label: str | None = None) -> None:
    """The safe metadata (no patient, institution or physician field is ever read); ``label`` names
    the image where file names repeat (:func:`tables.unique_names`)."""
    meta = {k: v for k, v in decoded.metadata.as_dict().items() if v is not None}
    with st.expander(f"Image information — {label or decoded.name} (safe tags only)"):
        st.dataframe(pd.DataFrame({"Tag": list(meta), "Value": [str(v) for v in meta.values()]}),
                     hide_index=True, width="stretch")
        for note in decoded.radiograph.warnings:
            st.caption(note)
        if decoded.radiograph.is_reduced:
            st.caption("Large JPEG 2000 image: decoded at a reduced resolution level for display and analysis.")


def data_downloads(model: engine.Model, decoded: Sequence[engine.Decoded], table: pd.DataFrame, summary: str,
                   example: Example | None, key: str, extra: dict | None = None) -> None:
    """CSV and JSON of the results (safe metadata only)."""
    names = [d.name for d in decoded]
    # a study's CSV carries its verdict, probability and threshold on every row; an image's, its file
    context = {"model": model.facts.name, **(extra or {})} if extra else {"model": model.facts.name, "file": names[0]}
    payload = {
        "model": {"name": model.facts.name, "task": model.facts.task, "metrics_split": model.facts.split,
                  "statement": model.facts.headline, "details": list(model.facts.details)},
        "summary": summary,
        "images": [{"file": d.name, "metadata": d.metadata.as_dict()} for d in decoded],
        "results": table,
        **(extra or {}),
    }
    if example is not None:
        payload["ground_truth"] = {"source": "synthetic phantom", "findings": list(example.findings),
                                   "label": example.label}
    c1, c2 = st.columns(2)  # the files are written when clicked, not on every run
    c1.download_button("Results (CSV)", lambda: report.results_csv(table, context),
                       file_name=report.download_name(names, "results", "csv"),
                       mime="text/csv", key=f"csv_{key}", on_click="ignore", width="stretch")
    c2.download_button("Results (JSON)", lambda: report.results_json(payload),
                       file_name=report.download_name(names, "results", "json"),
                       mime="application/json", key=f"json_{key}", on_click="ignore", width="stretch")


def report_download(make_report, key: str, names: Sequence[str]) -> None:
    """A button whose PNG report is drawn only when clicked (matplotlib costs ~0.3 s)."""
    st.download_button("One-page report (PNG)", lambda: report.report_png(make_report()),
                       file_name=report.download_name(names, "report", "png"), mime="image/png", key=key, on_click="ignore",
                       width="stretch", type="primary")
