"""The Streamlit dashboard's pieces; ``app.py`` at the repository root only wires them together.

Modules:
    settings   display parameters and notices (where models and examples live: radtriage.locations)
    engine     models loaded once per server process and per-file results cached (Streamlit caches)
    inputs     the examples gallery, the uploader and :func:`inputs.ingest` (name, bytes) -> Item
    tables     pure functions: probability and study tables from a Prediction, summary sentences, model statements
    imaging    display-sized images and heatmap blending (numpy/Pillow/matplotlib only)
    report     CSV / JSON / one-page PNG report (matplotlib)
    views      the Streamlit rendering of results, Grad-CAM, DICOM tags and downloads

Nothing here imports TensorFlow: models are reached through :func:`radtriage.serving.load_predictor`
(the LiteRT export with its Grad-CAM graph; TensorFlow only for a model without one, imported lazily
so the page renders before the model has loaded).
"""
