"""radtriage dashboard (Streamlit). Thin on purpose: it only wires the pieces in radtriage.dashboard.

Run locally with ``bash scripts/dashboard.sh``; deploys as is on Streamlit Community Cloud
(app.py + requirements.txt at the root). Research use only, not a medical device.
"""

import contextlib
import sys
from pathlib import Path

# Community Cloud installs requirements.txt only: make the package importable from src/.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import streamlit as st  # noqa: E402

from radtriage import locations  # noqa: E402
from radtriage.dashboard import checks, engine, inputs, pacs_source, settings, views  # noqa: E402

st.set_page_config(page_title="radtriage", page_icon="🩻", layout="wide")
engine.warm_up()  # the models load in the background while the page renders
views.header()

examples = inputs.load_examples(str(locations.examples_dir()))
from_pacs = inputs.source() == inputs.PACS
items = pacs_source.sidebar() if from_pacs else inputs.sidebar(examples)
st.sidebar.caption(settings.NOTICE)
if not items:
    if not from_pacs:  # the PACS source shows its study list (or why there is none) instead
        views.welcome()
        inputs.gallery(examples)
    st.stop()

example = inputs.example_of(items)
loaded = [engine.decode(i.name, i.data, i.digest) for i in items]
views.failures([x for x in loaded if isinstance(x, engine.Failure)])
decoded = [x for x in loaded if isinstance(x, engine.Decoded)]
if not decoded:
    st.stop()

gate = engine.get_gate()
verdicts = [engine.verdict(gate, d) for d in decoded]
task = inputs.choose_model(decoded, verdicts, example)
force = inputs.override_checks(example)
preview = st.empty()  # each image at once where its results cannot follow at once
if task is None or len(decoded) > 1 or not engine.model_loaded(task):
    with preview.container():
        checks.previews(decoded, verdicts)
if task is None:
    st.stop()
try:
    model = engine.get_model(task)
except engine.ModelUnavailable as err:
    views.model_missing(str(err))
    st.stop()

with st.spinner("Analysing…") if len(decoded) > 1 else contextlib.nullcontext():  # one image: ~0.05 s
    exams = [engine.examine(model, d) for d in decoded]
    found = [checks.check(task, d, v, engine.ood_ratio(model, d, e), force)
             for d, v, e in zip(decoded, verdicts, exams)]
preview.empty()
if task.unit == "image":
    tabs = st.tabs([d.name for d in decoded]) if len(decoded) > 1 else [st.container()]
    for tab, d, e, c in zip(tabs, decoded, exams, found):
        with tab:
            if not c.shown:
                checks.refused(d, c)
                continue
            checks.show(c)
            views.image_result(model, d, e, example)
else:
    study_type = inputs.choose_study_type(decoded, example)
    kept = [i for i, c in enumerate(found) if c.shown]
    for i, c in enumerate(found):
        if c.shown:
            checks.show(c, decoded[i].name)
    if kept:
        views.study_result(model, [decoded[i] for i in kept], [exams[i] for i in kept], study_type, example)
    for i, c in enumerate(found):
        if not c.shown:
            st.caption("Left out of the study verdict:")
            checks.refused(decoded[i], c)
