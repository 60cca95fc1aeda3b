"""radtriage dashboard (Streamlit). Thin on purpose: it only wires the pieces in radtriage.dashboard.

Run locally with ``bash scripts/dashboard.sh``; deploys as is on Streamlit Community Cloud
(app.py + requirements.txt at the root). Research use only, not a medical device.
"""

import sys
from pathlib import Path

# Community Cloud installs requirements.txt only: make the package importable from src/.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import streamlit as st  # noqa: E402

from radtriage import locations  # noqa: E402
from radtriage.dashboard import engine, inputs, settings, views  # noqa: E402

st.set_page_config(page_title="radtriage", page_icon="🩻", layout="wide")
views.header()

examples = inputs.load_examples(str(locations.examples_dir()))
items = inputs.sidebar(examples)
st.sidebar.caption(settings.NOTICE)
if not items:
    views.welcome()
    inputs.gallery(examples)
    st.stop()

example = inputs.example_of(items)
loaded = [engine.decode(i.name, i.data, i.digest) for i in items]
views.failures([x for x in loaded if isinstance(x, engine.Failure)])
decoded = [x for x in loaded if isinstance(x, engine.Decoded)]
if not decoded:
    st.stop()

task = inputs.choose_model(decoded, example)
if task is None:
    st.info("Choose the model for these images in the sidebar.")
    st.stop()
for warning in inputs.body_part_warnings(decoded, task):
    st.warning(warning, icon=":material/warning:")
try:
    model = engine.get_model(task)
except engine.ModelUnavailable as err:
    views.model_missing(str(err))
    st.stop()

with st.spinner("Analysing…"):
    exams = [engine.examine(model, d) for d in decoded]
if task.unit == "image":
    tabs = st.tabs([d.name for d in decoded]) if len(decoded) > 1 else [st.container()]
    for tab, d, e in zip(tabs, decoded, exams):
        with tab:
            views.image_result(model, d, e, example)
else:
    study_type = inputs.choose_study_type(decoded, example)
    views.study_result(model, decoded, exams, study_type, example)
