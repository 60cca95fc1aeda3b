"""Dashboard entry point (placeholder until the dashboard lands): load an image and show its safe metadata."""

import streamlit as st

from radtriage import radiograph

st.set_page_config(page_title="radtriage", layout="wide")
st.title("radtriage — radiograph triage (research use, not a medical device)")
upload = st.file_uploader("Radiograph (DICOM, PNG or JPG)")
if upload is not None:
    try:
        rg = radiograph.load(upload.getvalue(), name=upload.name)
    except radiograph.RadiographError as err:
        st.error(str(err))
    else:
        st.image(rg.pixels, clamp=True, caption=rg.name)
        st.json(rg.metadata.as_dict())
