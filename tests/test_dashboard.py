"""The Streamlit dashboard, driven in-process by Streamlit's AppTest (one test per user flow), then its
pure pieces (tables, report, imaging) called directly.

Models are tiny random-weight stand-ins written in the artifact layout (``build_models`` in
tests/dashboard_support.py), not the shipped ones; the app finds them through RADTRIAGE_MODEL_DIR.
Expected probabilities are computed independently with the Predictor (``load_input`` +
``predict_batch``), never hard-coded; what the page says about a model (thresholds, provenance,
validation AUROCs and their split) is checked against the stand-in's metadata.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard_support import build_models  # noqa: E402
from dicom_fixtures import PHI, dicom_bytes, make_dataset, png_bytes, smooth_texture  # noqa: E402
from radtriage import radiograph  # noqa: E402
from radtriage.dashboard import imaging, report, tables  # noqa: E402
from radtriage.labels import CHEST_CLASSES, PROVENANCE_SYNTHETIC  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 90  # first run imports TensorFlow and loads the model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("radtriage.inference", reason="radtriage.inference (the Predictor) is not available")
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def app(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("RADTRIAGE_MODEL_DIR", str(model_dir))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def predictor(model_dir: Path, name: str):
    """The predictor the dashboard serves (the LiteRT export when there is one; test_serving checks it
    against Keras)."""
    from radtriage.serving import load_predictor

    return load_predictor(model_dir / name, explain=True)


def texts(at: AppTest) -> str:
    """Every text the page shows (markdown, alerts, captions, tables), for content checks."""
    parts = [e.value for kind in ("markdown", "error", "warning", "info", "success", "caption", "title",
                                  "subheader") for e in getattr(at, kind)]
    parts += [df.value.to_csv() for df in at.dataframe]
    parts += [str(x.value) for x in at.get("json")]
    return "\n".join(str(p) for p in parts)


def image_captions(at: AppTest) -> list[str]:
    return [c for image in at.get("image") for c in image.captions]


def result_table(at: AppTest) -> pd.DataFrame:
    return next(df.value for df in at.dataframe if "Probability" in df.value.columns)


def limb_dicom(seed: int, body_part: str = "WRIST", phi: bool = False) -> bytes:
    pixels = smooth_texture(160, 128, 4095, seed=seed)
    return dicom_bytes(make_dataset(pixels, bits_stored=12, phi=phi, BodyPartExamined=body_part))


def chest_dicom(phi: bool = True) -> bytes:
    return dicom_bytes(make_dataset(smooth_texture(192, 160, 4095, seed=7), bits_stored=12, phi=phi))


def probs_of(model_dir: Path, name: str, data: bytes) -> np.ndarray:
    """The model's probabilities for a file, computed without the dashboard."""
    p = predictor(model_dir, name)
    return np.asarray(p.predict_batch(p.load_input(data)[1][None]))[0]


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="uploads").set_value([(n, d, "application/octet-stream") for n, d in files])
    at.run()
    assert not at.exception, at.exception
    return at


# --- flows ----------------------------------------------------------------------------------
def test_landing_page_shows_notice_and_phantom_gallery(app: AppTest) -> None:
    assert any("not a medical device" in w.value for w in app.warning)
    buttons = [b for b in app.button if b.label == "Analyse"]
    manifest = json.loads((APP.parent / "app_images" / "manifest.json").read_text())
    assert len(buttons) == len(manifest["examples"])
    assert "synthetic phantom" in texts(app)


def test_pick_chest_example_shows_probabilities_truth_and_provenance(app: AppTest, model_dir: Path) -> None:
    app.selectbox(key="example").set_value("chest_02_cardiomegaly")
    app.run()
    assert not app.exception
    table = result_table(app)
    data = (APP.parent / "app_images" / "chest_02_cardiomegaly.dcm").read_bytes()
    expected = dict(zip(CHEST_CLASSES, probs_of(model_dir, "chest", data)))
    assert sorted(table["Finding"]) == sorted(CHEST_CLASSES)
    assert table["Probability"].is_monotonic_decreasing
    for row in table.itertuples():
        assert row.Probability == pytest.approx(expected[row.Finding], abs=1e-5)
    meta = json.loads((model_dir / "chest" / "metadata.json").read_text())
    assert dict(zip(table["Finding"], table["Provenance"])) == meta["provenance"]
    assert dict(zip(table["Finding"], table["Threshold"])) == pytest.approx(meta["thresholds"])
    aurocs = {r["class"]: f"{r['auroc']:.2f} ({r['auroc_lo']:.2f}–{r['auroc_hi']:.2f})"
              for r in meta["metrics"]["validation"]["per_class"]}
    shown = dict(zip(table["Finding"], table["Validation AUROC (95% CI)"]))
    assert all(shown[c] == (aurocs[c] if c in aurocs else "not measured") for c in CHEST_CLASSES)
    flagged = table.loc[table["Probability"] >= table["Threshold"], "Finding"].tolist()
    assert table.loc[table["Flagged"], "Finding"].tolist() == flagged
    assert (table["Ground truth (phantom)"] == "present").sum() == 1
    assert table.loc[table["Ground truth (phantom)"] == "present", "Finding"].item() == "Cardiomegaly"
    page = texts(app)
    assert "Ground truth of this synthetic phantom" in page and "Cardiomegaly" in page
    assert ("No finding above threshold." in page) == (not flagged)
    assert meta["metrics"]["validation"]["split"] in page  # the split the AUROCs were measured on
    assert [b.label for b in app.get("download_button")].count("One-page report (PNG)") == 1


def test_upload_dicom_picks_chest_model_and_never_shows_identity(app: AppTest, model_dir: Path) -> None:
    data = chest_dicom(phi=True)
    upload(app, ("scan.dcm", data))
    assert "Chosen from DICOM BodyPartExamined." in texts(app)
    table = result_table(app)
    expected = dict(zip(CHEST_CLASSES, probs_of(model_dir, "chest", data)))
    assert all(row.Probability == pytest.approx(expected[row.Finding], abs=1e-5) for row in table.itertuples())
    page = texts(app)
    assert "CHEST" in page and "Synthetic Imaging Co" in page  # safe tags are shown
    for value in PHI.values():
        assert value not in page and value.split("^")[0] not in page


def test_upload_without_a_gate_is_previewed_then_asks_for_the_model(app: AppTest, model_dir: Path) -> None:
    data = png_bytes((smooth_texture(150, 170, 255, seed=3)).astype(np.uint8))
    upload(app, ("film.png", data))
    assert not app.dataframe or "Probability" not in app.dataframe[0].value.columns
    assert "film.png" in image_captions(app)  # the preview, before any model
    assert "Choose one to see its output" in texts(app) and "no anatomy check is installed" in texts(app)
    radio = next(r for r in app.radio if r.label == "Model")
    radio.set_value("chest")
    app.run()
    assert not app.exception
    table = result_table(app)
    expected = dict(zip(CHEST_CLASSES, probs_of(model_dir, "chest", data)))
    assert all(row.Probability == pytest.approx(expected[row.Finding], abs=1e-5) for row in table.itertuples())
    assert "No anatomy gate is installed" in texts(app)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"%PDF-1.4 definitely not a radiograph", radiograph.NotAnImageError),
        (png_bytes(np.zeros((20, 20), np.uint8)), radiograph.ImageTooSmallError),
        (dicom_bytes(make_dataset(np.zeros((2, 80, 80), np.uint16), frames=2)), radiograph.MultiFrameError),
    ],
)
def test_bad_upload_shows_the_loaders_sentence(app: AppTest, data: bytes, error: type) -> None:
    with pytest.raises(error) as raised:
        radiograph.load(data)
    upload(app, ("bad.bin", data))
    messages = [e.value for e in app.error]
    assert any(str(raised.value) in m and "bad.bin" in m for m in messages), messages
    assert not app.exception


def test_mura_study_of_three_views(app: AppTest, model_dir: Path) -> None:
    files = [(f"view{i}.dcm", limb_dicom(seed=i)) for i in range(3)]
    upload(app, *files)
    page = texts(app)
    assert "Study type: XR_WRIST (from DICOM BodyPartExamined)." in page
    table = next(df.value for df in app.dataframe if "Probability of abnormal" in df.value.columns)
    expected = [probs_of(model_dir, "mura", d)[0] for _, d in files]
    assert table["Image"].tolist() == [n for n, _ in files]
    assert table["Probability of abnormal"].to_numpy() == pytest.approx(expected, abs=1e-5)
    meta = json.loads((model_dir / "mura" / "metadata.json").read_text())
    mean, threshold = float(np.mean(expected)), meta["thresholds"]["Abnormal"]
    verdict = "Abnormal" if mean >= threshold else "Normal"
    assert f"{verdict} — mean probability of abnormal {mean:.2f}" in page
    # a model marked synthetic only (as the shipped MURA model is) says so, with every result
    assert meta["provenance"]["Abnormal"] == PROVENANCE_SYNTHETIC
    assert any("Not validated on real radiographs" in w.value for w in app.warning)
    captions = image_captions(app)
    for (name, _), p in zip(files, expected):
        assert f"{name}: p(abnormal) = {p:.2f}" in captions


@pytest.fixture()
def gated_app(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app with the stand-in models and the shipped anatomy gate."""
    import shutil

    root = tmp_path / "models"
    shutil.copytree(model_dir, root)
    shutil.copytree(Path(__file__).resolve().parents[1] / "model" / "anatomy", root / "anatomy")
    monkeypatch.setenv("RADTRIAGE_MODEL_DIR", str(root))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def limb_phantom_dicom(body_part: str) -> bytes:
    from radtriage.phantoms import render_limb

    pixels = np.round(render_limb("XR_HAND", 11, size=320).image * 4095).astype(np.uint16)
    return dicom_bytes(make_dataset(pixels, bits_stored=12, BodyPartExamined=body_part))


def test_the_gate_picks_the_model_from_the_pixels_and_refuses_the_wrong_one(gated_app: AppTest) -> None:
    app = gated_app
    upload(app, ("hand.dcm", limb_phantom_dicom("CHEST")))  # a tag that lies about the anatomy
    radio = next(r for r in app.radio if r.label == "Model")
    assert radio.value == "mura"  # from the pixels, no click
    assert "Chosen from the pixels" in texts(app)
    assert any("Body Part Examined says CHEST" in w.value and "the pixels decide" in w.value for w in app.warning)
    radio.set_value("chest")
    app.run()
    assert not app.exception
    assert any("This looks like an upper-limb radiograph" in e.value and "the chest model does not read those"
               in e.value for e in app.error)
    assert not any("Probability" in df.value.columns for df in app.dataframe)  # no probabilities
    app.toggle(key="force_upload").set_value(True)
    app.run()
    assert any(w.value.startswith("Shown because the check was overridden") for w in app.warning)
    assert len(result_table(app)) > 0


def test_switch_gradcam_class_offers_flagged_classes_only_and_redraws(app: AppTest) -> None:
    app.selectbox(key="example").set_value("chest_03_pleural_effusion")
    app.run()
    table = result_table(app)
    flagged = table.loc[table["Flagged"], "Finding"].tolist()
    if not flagged:
        pytest.skip("the stand-in model flags nothing on this example")
    selector = next(s for s in app.selectbox if s.label == "Explain class")
    assert selector.options == flagged and selector.value == flagged[0]  # the top flagged class by default
    selector.set_value(flagged[-1])
    app.run()
    assert not app.exception
    assert any(c.startswith(f"Grad-CAM: {flagged[-1]} (p = ") for c in image_captions(app))
    for name in table.loc[~table["Flagged"], "Finding"]:  # never a heatmap for an unflagged class
        assert not any(c.startswith(f"Grad-CAM: {name} (") for c in image_captions(app))


def page_errors_on_an_example(model_root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The error messages the page shows when a chest example is opened with the models in ``model_root``."""
    monkeypatch.setenv("RADTRIAGE_MODEL_DIR", str(model_root))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.selectbox(key="example").set_value("chest_01_normal")
    at.run()
    assert not at.exception
    return [e.value for e in at.error]


def test_missing_model_is_a_message_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert any("model is not installed" in e for e in page_errors_on_an_example(tmp_path, monkeypatch))


def test_a_modified_gradcam_export_is_a_sentence_on_the_page(model_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    root = tmp_path / "tampered"
    shutil.copytree(model_dir, root)
    explain = root / "chest" / "explain.tflite"
    data = bytearray(explain.read_bytes())
    data[len(data) // 2] ^= 0xFF
    explain.write_bytes(bytes(data))
    errors = page_errors_on_an_example(root, monkeypatch)
    assert any("does not match the SHA-256 recorded in its metadata" in e for e in errors)


def test_report_download_button_and_report_content(app: AppTest) -> None:
    app.selectbox(key="example").set_value("chest_05_nodule_mass")
    app.run()
    button = next(b for b in app.get("download_button") if b.label == "One-page report (PNG)")
    button.click()
    app.run()
    assert not app.exception
    labels = [b.label for b in app.get("download_button")]
    assert {"Results (CSV)", "Results (JSON)", "One-page report (PNG)"} <= set(labels)


# --- pure pieces ----------------------------------------------------------------------------
def metadata(task: str, classes, fields: dict):
    """Verified metadata of a stand-in model (the dashboard reads nothing else about a model)."""
    from radtriage.artifact import ModelMetadata
    from radtriage.preprocess import PreprocessConfig

    return ModelMetadata(name=task, task=task, classes=list(classes), preprocess=PreprocessConfig(size=32), **fields)


def prediction(facts, probs):
    """A Prediction as the predictor makes it: flagged by the contract's rule."""
    from radtriage.predictor import Prediction

    return Prediction.of(list(facts.classes), np.asarray(probs), facts.thresholds, dict(zip(facts.classes, facts.provenance)))


def test_report_png_csv_json_hold_the_results() -> None:
    from dashboard_support import chest_fields

    facts = tables.model_facts(metadata("chest", CHEST_CLASSES, chest_fields()))
    probs = np.linspace(0.05, 0.9, len(CHEST_CLASSES))
    table = tables.probability_table(prediction(facts, probs), facts)
    image = np.tile(np.arange(200, dtype=np.uint8), (150, 1))
    panel = report.ImagePanel("x.dcm", image, np.stack([image] * 3, -1), "Grad-CAM: Nodule/Mass")
    png = report.report_png(report.Report("title", [panel], table, tables.summary_sentence(table),
                                          tables.model_statement(facts)))
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size[1] > im.size[0] > 600
    csv = pd.read_csv(io.BytesIO(report.results_csv(table, {"model": "chest"})))
    assert len(csv) == 14 and (csv["model"] == "chest").all()
    assert csv["Probability"].to_numpy() == pytest.approx(np.sort(probs)[::-1], abs=1e-4)
    payload = json.loads(report.results_json({"results": table, "p": np.float32(0.5)}))
    assert "not a medical device" in payload["notice"] and len(payload["results"]) == 14


def test_tables_flags_and_statement() -> None:
    from dashboard_support import chest_fields, mura_fields

    facts = tables.model_facts(metadata("chest", CHEST_CLASSES, chest_fields()))
    probs = np.array(facts.thresholds) - 0.01
    table = tables.probability_table(prediction(facts, probs), facts)
    assert not table["Flagged"].any() and tables.summary_sentence(table) == "No finding above threshold."
    probs[3] = facts.thresholds[3]  # exactly at threshold counts as flagged
    table = tables.probability_table(prediction(facts, probs), facts)
    assert tables.flagged_findings(table) == [CHEST_CLASSES[3]]
    assert re.search(r"7 of 14 classes learned from real", tables.model_statement(facts))
    mura = tables.model_facts(metadata("mura", ["Abnormal"], mura_fields()))
    study = tables.study_table(["a.png", "b.png"], [prediction(mura, [0.2]), prediction(mura, [0.7])])
    assert study["Flagged"].tolist() == [False, True]
    assert mura.auroc == (0.55,) and mura.split.endswith("(study level)")
    assert tables.only_synthetic(mura) and "synthetic phantoms only" in tables.model_statement(mura)


def test_degenerate_heatmaps_and_blend() -> None:
    from radtriage.contract import heatmap_is_degenerate

    assert heatmap_is_degenerate(np.full((8, 8), 0.3)) and heatmap_is_degenerate(np.full((8, 8), np.nan))
    heat = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    assert not heatmap_is_degenerate(heat)
    gray = np.full((8, 8), 100, np.uint8)
    rgb = imaging.colorize(heat, "jet")
    assert np.array_equal(imaging.blend(gray, rgb, heat, 0.0), np.stack([gray] * 3, -1))
    full = imaging.blend(gray, rgb, heat, 1.0)
    assert np.array_equal(full[-1, -1], rgb[-1, -1]) and np.array_equal(full[0, 0], [100, 100, 100])


def test_downloads_are_named_after_the_input_and_the_time_and_a_study_csv_carries_its_verdict() -> None:
    import datetime

    when = datetime.datetime(2026, 12, 3, 10, 15, 0, tzinfo=datetime.timezone.utc)
    assert report.download_name(["chest 02 (copy).dcm"], "results", "csv", when) == \
        "radtriage_chest_02_copy_20261203-101500_results.csv"
    assert report.download_name(["image1.png", "image2.png", "image3.png"], "report", "png", when) == \
        "radtriage_image1+2_20261203-101500_report.png"
    table = pd.DataFrame({"Image": ["image1.png", "image2.png"], "Probability of abnormal": [0.2, 0.7]})
    csv = pd.read_csv(io.BytesIO(report.results_csv(table, {"model": "m", "study_verdict": "Abnormal",
                                                            "study_probability": 0.45, "threshold": 0.38})))
    assert list(csv.columns[:4]) == ["model", "study_verdict", "study_probability", "threshold"]
    assert (csv["study_verdict"] == "Abnormal").all() and csv["Image"].tolist() == ["image1.png", "image2.png"]


# --- heatmap policy, plain statements, MURA uploads and the report (issue 17) ---------------
@pytest.fixture(scope="module")
def strict_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in models with every threshold at 1.0: nothing is flagged, so nothing has a heatmap."""
    pytest.importorskip("radtriage.inference", reason="radtriage.inference (the Predictor) is not available")
    from dashboard_support import INPUT_SIZE, chest_fields, mura_fields, write_model

    root = tmp_path_factory.mktemp("strict")
    write_model(root / "chest", "chest", {**chest_fields(), "thresholds": {c: 1.0 for c in CHEST_CLASSES}},
                INPUT_SIZE, seed=1)
    write_model(root / "mura", "mura", {**mura_fields(), "thresholds": {"Abnormal": 1.0}}, INPUT_SIZE, seed=2)
    return root


def open_app(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("RADTRIAGE_MODEL_DIR", str(model_dir))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    return at


def use_model(at: AppTest, task: str) -> AppTest:
    """Pick the model in the sidebar where the page asks (it may already have chosen it)."""
    radio = next((r for r in at.radio if r.label == "Model"), None)
    if radio is not None and radio.value != task:
        radio.set_value(task)
        at.run()
    assert not at.exception, at.exception
    return at


def test_the_examination_computes_only_the_heatmaps_that_are_drawn(strict_dir: Path, model_dir: Path,
                                                                   monkeypatch) -> None:
    """A new file costs one graph call (probabilities, OOD ratio, a heatmap) when nothing is flagged;
    the default class's heatmap, computed or asked for later, is the graph's own map."""
    from radtriage import tasks
    from radtriage.dashboard import engine

    for i, (folder, flagged) in enumerate(((strict_dir, False), (model_dir, True))):
        monkeypatch.setenv("RADTRIAGE_MODEL_DIR", str(folder))
        model = engine.get_model(tasks.get("chest"))
        calls = []
        real = model.predictor.predict_and_explain
        monkeypatch.setattr(model.predictor, "predict_and_explain", lambda *a, **k: calls.append(a) or real(*a, **k))
        data = png_bytes(np.asarray(smooth_texture(96, 80, 255, seed=10 + i), np.uint8))
        decoded = engine.decode("t.png", data)
        exam = engine.examine(model, decoded)
        assert len(calls) == 1 if not flagged else 1 <= len(calls) <= 2
        assert flagged == bool(exam.prediction.flagged) and (exam.heatmap is not None or not flagged)
        assert exam.ood_ratio is None and engine.ood_ratio(model, decoded, exam) is None  # stand-ins: no OOD file
        own = real(exam.x, exam.default_class)
        heat, _ = engine.heatmap(model, decoded, exam, exam.default_class)
        np.testing.assert_array_equal(heat, own.heatmap)
        assert exam.probs == pytest.approx(own.prediction.vector(), abs=1e-6)


def test_the_dashboard_draws_the_litert_heatmap_and_falls_back_to_keras_without_an_export(
        model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Served from the LiteRT export when the model has one; a model without one is served by Keras,
    and both give the same probabilities and heatmap for the same file."""
    import shutil

    from radtriage import tasks
    from radtriage.dashboard import engine

    keras_only = tmp_path / "keras-only"
    shutil.copytree(model_dir, keras_only)
    meta = json.loads((keras_only / "chest" / "metadata.json").read_text())
    meta["serving"] = {}
    (keras_only / "chest" / "metadata.json").write_text(json.dumps(meta))
    data = png_bytes(np.asarray(smooth_texture(96, 80, 255, seed=21), np.uint8))
    exams = {}
    for folder, backend in ((model_dir, "litert"), (keras_only, "keras")):
        monkeypatch.setenv("RADTRIAGE_MODEL_DIR", str(folder))
        model = engine.get_model(tasks.get("chest"))
        assert model.predictor.backend == backend
        decoded = engine.decode("t.png", data)
        exam = engine.examine(model, decoded)
        index = exam.prediction.vector().argmax()
        exams[backend] = exam, engine.heatmap(model, decoded, exam, int(index))[0]
    (a, heat_a), (b, heat_b) = exams["litert"], exams["keras"]
    assert a.probs == pytest.approx(b.probs, abs=1e-4)
    assert np.abs(heat_a - heat_b).max() <= 1e-3


def test_the_model_card_is_sent_only_when_asked_for(app: AppTest, model_dir: Path) -> None:
    app.selectbox(key="example").set_value("chest_03_pleural_effusion")
    app.run()
    card = (model_dir / "chest" / "MODEL_CARD.md").read_text()
    heading = next(line for line in card.splitlines() if line.startswith("## "))
    assert heading not in texts(app)  # not on the page (nor hidden in it) until asked for
    next(b for b in app.button if b.label == "Model card").click()
    app.run()
    assert not app.exception
    assert heading in texts(app) and any('"classes"' in c.value for c in app.code)


def test_the_dashboard_never_imports_tensorflow_when_the_models_are_exported(model_dir: Path) -> None:
    """TensorFlow's import alone takes seconds: with the LiteRT exports the server never loads it."""
    import subprocess
    import sys

    code = f"""
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(APP)!r}, default_timeout={TIMEOUT})
at.run()
at.selectbox(key="example").set_value("chest_03_pleural_effusion")
at.run()
assert not at.exception, at.exception
captions = [c for image in at.get("image") for c in image.captions]
assert any(c.startswith("Grad-CAM: ") for c in captions) or any("heatmap" in i.value for i in at.info), captions
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""
    env = {**os.environ, "RADTRIAGE_MODEL_DIR": str(model_dir)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["False", "False"]


def test_nothing_flagged_means_no_heatmap_and_one_sentence_why(strict_dir: Path, monkeypatch) -> None:
    at = open_app(strict_dir, monkeypatch)
    at.selectbox(key="example").set_value("chest_02_cardiomegaly")
    at.run()
    assert not at.exception
    assert not any(s.label == "Explain class" for s in at.selectbox)  # nothing to choose from
    assert not any(c.startswith("Grad-CAM:") for c in image_captions(at))
    assert "No heatmap: no finding is flagged, so there is nothing to explain." in [i.value for i in at.info]


def test_model_figures_start_with_one_plain_sentence_and_keep_the_detail_one_click_away(app: AppTest,
                                                                                         model_dir: Path) -> None:
    from radtriage.artifact import read_metadata

    app.selectbox(key="example").set_value("chest_02_cardiomegaly")
    app.run()
    facts = tables.model_facts(read_metadata(model_dir / "chest"))
    statement = next(i.value for i in app.info if i.value == facts.headline)
    assert statement.startswith("Learnt from") and statement.count(". ") == 0  # one sentence
    meta = json.loads((model_dir / "chest" / "metadata.json").read_text())
    aurocs = [r["auroc"] for r in meta["metrics"]["validation"]["per_class"]]  # the stand-in has no "Any finding"
    assert f"mean AUROC of {np.mean(aurocs):.2f} over {len(aurocs)} findings" in statement  # from the metadata
    for jargon in ("ECE", "Youden", "radtriage.", "frontend", "patient hash"):
        assert jargon not in statement
    detail = next(e for e in app.expander if e.label.startswith("Technical detail"))
    inside = " ".join(m.value for m in detail.markdown)
    assert meta["metrics"]["validation"]["split"] in inside and "Model 'chest'" in inside


def test_mura_pngs_without_body_part_keep_the_study_type_unknown_and_rows_apart(app: AppTest,
                                                                                model_dir: Path) -> None:
    data = [png_bytes(smooth_texture(150, 120, 255, seed=s).astype(np.uint8)) for s in (11, 12)]
    upload(app, *[("image1.png", d) for d in data])  # MURA names every file image1.png
    use_model(app, "mura")
    study_type = next(s for s in app.selectbox if s.label.startswith("Study type"))
    assert study_type.value is None and study_type.format_func(None) == "not given"
    page = texts(app)
    assert "study type not given" in page and "XR_ELBOW" not in page
    table = next(df.value for df in app.dataframe if "Probability of abnormal" in df.value.columns)
    assert table["Image"].tolist() == ["image1.png (1)", "image1.png (2)"]
    expected = [probs_of(model_dir, "mura", d)[0] for d in data]
    for name, p in zip(table["Image"], expected):
        assert f"{name}: p(abnormal) = {p:.2f}" in image_captions(app)
    study_type.set_value("XR_HAND")
    app.run()
    assert "Study verdict (XR_HAND, 2 images)" in texts(app)


def test_an_image_flagged_inside_a_normal_study_is_explained(tmp_path: Path, model_dir: Path, monkeypatch) -> None:
    from dashboard_support import INPUT_SIZE, mura_fields, write_model

    files = [(f"view{i}.dcm", limb_dicom(seed=i)) for i in range(3)]
    p = np.array([probs_of(model_dir, "mura", d)[0] for _, d in files])
    if p.max() - p.mean() < 1e-6:
        pytest.skip("the stand-in model gives these views the same probability")
    threshold = float((p.max() + p.mean()) / 2)  # the top image is flagged, the study mean is not
    write_model(tmp_path / "mura", "mura", {**mura_fields(), "thresholds": {"Abnormal": threshold}}, INPUT_SIZE, seed=2)
    at = upload(open_app(tmp_path, monkeypatch), *files)
    page = texts(at)
    assert "Normal — mean probability of abnormal" in page
    top = files[int(p.argmax())][0]
    note = next(i.value for i in at.info if "is above the threshold" in i.value)
    assert note.startswith(f"{top} ({p.max():.2f}) is above the threshold ({threshold:.2f}) on its own")
    assert f"mean of its 3 images' probabilities ({p.mean():.2f})" in note
    below = [n for (n, _), q in zip(files, p) if q < threshold]
    assert sum("No heatmap: the probability of Abnormal" in c.value for c in at.caption) == len(below)


def test_report_explains_the_top_flagged_class_whatever_is_selected(app: AppTest, model_dir: Path,
                                                                   strict_dir: Path, monkeypatch) -> None:
    from radtriage import contract, tasks
    from radtriage.dashboard import engine, views

    data = (APP.parent / "app_images" / "chest_05_nodule_mass.dcm").read_bytes()
    for folder in (model_dir, strict_dir):
        monkeypatch.setenv("RADTRIAGE_MODEL_DIR", str(folder))
        model = engine.get_model(tasks.get("chest"))
        decoded = engine.decode("scan.dcm", data)
        exam = engine.examine(model, decoded)
        table = tables.probability_table(exam.prediction, model.facts)
        made = views.chest_report(model, decoded, exam, table, tables.summary_sentence(table), None)
        panel = made.panels[0]
        index = contract.heatmap_class(model.facts.classes, exam.probs, model.facts.thresholds, model.facts.flaggable)
        if index is None:
            assert panel.overlay is None and panel.note.startswith("No heatmap")
            assert made.facts["Heatmap"].startswith("none — ")
        else:
            name = model.facts.classes[index]
            assert panel.caption.startswith(f"Heatmap: {name} (p = {exam.probs[index]:.2f}")
            assert made.facts["Heatmap"].startswith(f"explains {name} (p = ")
            # the opacity chosen on screen is the report's: none shows the radiograph itself
            clear = views.chest_report(model, decoded, exam, table, "", None, opacity=0.0).panels[0].overlay
            assert np.array_equal(clear[..., 0], decoded.display) and not np.array_equal(clear, panel.overlay)
        assert made.statement == model.facts.headline and made.table["Reliable"].all()


def test_report_layout_keeps_titles_clear_of_the_notice_and_the_threshold_key_outside_the_plot() -> None:
    from dashboard_support import mura_fields

    facts = tables.model_facts(metadata("mura", ["Abnormal"], mura_fields()))
    names = tables.unique_names(["image1.png"] * 3)
    table = tables.study_table(names, [prediction(facts, [p]) for p in (0.2, 0.7, 0.4)])
    image = np.tile(np.arange(200, dtype=np.uint8), (150, 1))
    panels = [report.ImagePanel(n, image, np.stack([image] * 3, -1) if i else None, "Heatmap: Abnormal",
                                None if i else "No heatmap: below the threshold.") for i, n in enumerate(names)]
    made = report.Report("Upper-limb study — research triage report", panels, table, "summary", "statement",
                         {"Study type": "not given"}, threshold=0.5)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = report.report_figure(made)
    renderer = FigureCanvasAgg(fig).get_renderer()
    notice = next(t for t in fig.texts if t.get_text() == report.NOTICE).get_window_extent(renderer)
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2 * len(panels)
    assert not any(t.overlaps(notice) for t in titles)
    assert not any(a.overlaps(b) for i, a in enumerate(titles) for b in titles[i + 1:])
    bars = fig.axes[-1]
    key = bars.get_legend().get_window_extent(renderer)
    assert key.y0 >= bars.get_window_extent(renderer).y1 - 1  # above the plot, not among its bars
    assert [t.get_text() for t in bars.get_yticklabels()] == names[::-1]  # every image told apart
    with Image.open(io.BytesIO(report.report_png(made))) as im:
        assert im.format == "PNG"


def test_unique_names_and_the_study_note() -> None:
    assert tables.unique_names(["image1.png", "a.png", "image1.png"]) == ["image1.png (1)", "a.png", "image1.png (2)"]
    table = pd.DataFrame({"Image": ["x (1)", "x (2)"], "Probability of abnormal": [0.6, 0.1], "Flagged": [True, False]})
    assert tables.study_note(table, 0.35, 0.5).startswith("x (1) (0.60) is above the threshold (0.50) on its own")
    assert tables.study_note(table, 0.55, 0.5) is None  # an Abnormal study needs no explaining
