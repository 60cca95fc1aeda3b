"""The LiteRT serving backend: export checked against Keras (probabilities and Grad-CAM), integrity
checks, backend choice, no TensorFlow; and the parallel file loader the batch CLI uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dicom_fixtures import dicom_bytes, make_dataset, png_bytes, smooth_texture, write

from radtriage.artifact import ArtifactError, read_metadata, save_artifact
from radtriage.labels import CHEST_CLASSES
from radtriage.preprocess import LoadFailure, PreprocessConfig, load_and_preprocess, load_and_preprocess_many
from radtriage.contract import calibrate
from radtriage.export import check_inputs, export_litert
from radtriage.litert import EXPLAIN_FILE, TFLITE_FILE, LiteRtPredictor
from radtriage.serving import load_predictor, resolve_backend

SIZE = 32


def tiny_chest_model(folder: Path, seed: int = 3) -> Path:
    """A random-weight small_cnn artifact with per-class temperatures != 1 and a model card."""
    import keras

    from radtriage.architectures import build_model
    from radtriage.artifact import ModelMetadata

    keras.utils.set_random_seed(seed)
    model = build_model("small_cnn", SIZE, len(CHEST_CLASSES), width=4, depth=2)
    meta = ModelMetadata.for_task("tiny-chest", "chest", PreprocessConfig(size=SIZE),
                                  temperature={c: 0.5 + 0.1 * i for i, c in enumerate(CHEST_CLASSES)})
    save_artifact(model, folder, meta)
    (folder / "MODEL_CARD.md").write_text("# Model card\n\n## Performance\n\ntext\n\n## Limitations\n\n- none\n")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tiny_chest_model(tmp_path_factory.mktemp("served") / "chest")
    export_litert(folder)
    return folder


def test_calibrate_is_the_sigmoid_of_logits_over_temperature_without_overflow() -> None:
    z = np.array([[-1000.0, -2.0, 0.0, 3.0, 1000.0]])
    t = np.array([1.0, 2.0, 1.0, 0.5, 1.0])
    expected = 1.0 / (1.0 + np.exp(-np.clip(z / t, -500, 500)))
    assert np.allclose(calibrate(z, t), expected, atol=1e-7)
    assert calibrate(z, t)[0, 0] == 0.0 and calibrate(z, t)[0, -1] == 1.0


def test_export_records_a_file_that_matches_keras(exported: Path) -> None:
    meta = read_metadata(exported)
    entry = meta.serving["litert"]
    assert (exported / TFLITE_FILE).is_file()
    assert entry["from_model_sha256"] == meta.model_sha256
    assert 0.0 <= entry["max_abs_diff_vs_keras"] <= 1e-4
    from radtriage.inference import Predictor

    keras_p, lite_p = Predictor.from_dir(exported), load_predictor(exported, "litert")
    assert isinstance(lite_p, LiteRtPredictor) and lite_p.backend == "litert"
    x = np.random.default_rng(0).random((70, SIZE, SIZE, 1), dtype=np.float32)  # > one chunk of 64
    lite = lite_p.predict_batch(x)
    assert lite.shape == (70, len(CHEST_CLASSES))
    assert np.abs(lite - keras_p.predict_batch(x)).max() <= 1e-4
    assert np.allclose(lite_p.predict_batch(x[:5]), lite[:5], atol=1e-6)  # batch size changes re-plan the graph
    assert lite_p.predict(x[0]).probabilities == pytest.approx(keras_p.predict(x[0]).probabilities, abs=1e-4)
    card = (exported / "MODEL_CARD.md").read_text()
    assert "LiteRT (`model.tflite`" in card and card.index("## Serving") < card.index("## Limitations")
    assert "LiteRT Grad-CAM (`explain.tflite`" in card


def test_the_gradcam_export_draws_the_heatmaps_keras_draws(exported: Path) -> None:
    from radtriage.inference import Predictor

    entry = read_metadata(exported).serving["litert"]["explain"]
    assert (exported / EXPLAIN_FILE).is_file() and entry["file"] == EXPLAIN_FILE
    assert 0.0 <= entry["max_abs_heatmap_diff_vs_keras"] <= 1e-3
    keras_p, lite_p = Predictor.from_dir(exported), load_predictor(exported, explain=True)
    assert lite_p.backend == "litert" and lite_p.explains and keras_p.explains
    assert not load_predictor(exported).explains  # only asked-for graphs are loaded
    rng = np.random.default_rng(7)
    # smooth images with structure (a random-weight model explains noise as flat maps)
    x = np.stack([smooth_texture(SIZE, SIZE, 1000, seed=seed)[..., None] / 1000 for seed in range(6)]).astype(np.float32)
    x[3] *= rng.random((SIZE, SIZE, 1), dtype=np.float32)
    shown = 0
    for image in x:
        for asked in (None, 2, "Pneumothorax"):
            a, b = keras_p.predict_and_explain(image, asked), lite_p.predict_and_explain(image, asked)
            assert (a.class_index, a.class_name, a.degenerate) == (b.class_index, b.class_name, b.degenerate)
            assert np.abs(a.heatmap - b.heatmap).max() <= 1e-3
            assert b.prediction.probabilities == pytest.approx(a.prediction.probabilities, abs=1e-4)
            shown += not b.degenerate
    assert shown > 0  # some maps were not flat: the comparison compared something
    # the top class is ranked by the calibrated probabilities (temperatures differ per class here)
    top = lite_p.predict_and_explain(x[0])
    assert top.class_name == top.prediction.top_class
    with pytest.raises(ValueError, match="unknown class"):
        lite_p.predict_and_explain(x[0], "Fracture")


def test_recalibrating_never_invalidates_the_gradcam_export(exported: Path, tmp_path: Path) -> None:
    """The temperatures rank "the most probable class" inside the Grad-CAM graph: they are an input of
    the exported graph, so new temperatures in the metadata change the ranking without a new export."""
    import shutil

    copy = tmp_path / "recalibrated"
    shutil.copytree(exported, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    x = (smooth_texture(SIZE, SIZE, 1000, seed=1)[..., None] / 1000).astype(np.float32)
    before = load_predictor(copy, explain=True).predict_and_explain(x)
    # make the least probable class the most probable one after calibration
    last = min(before.prediction.probabilities, key=before.prediction.probabilities.get)
    meta["temperature"] = {c: (0.01 if c == last else 100.0) for c in meta["temperature"]}
    (copy / "metadata.json").write_text(json.dumps(meta))
    from radtriage.inference import Predictor

    after, reference = load_predictor(copy, explain=True).predict_and_explain(x), Predictor.from_dir(copy).predict_and_explain(x)
    assert after.prediction.top_class == reference.prediction.top_class
    assert after.class_name == reference.class_name == after.prediction.top_class
    assert np.abs(after.heatmap - reference.heatmap).max() <= 1e-3


def test_explain_falls_back_to_keras_without_a_gradcam_export(exported: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "no-explain"
    shutil.copytree(exported, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    del meta["serving"]["litert"]["explain"]
    (copy / "metadata.json").write_text(json.dumps(meta))
    assert resolve_backend(copy, "auto") == "litert" and resolve_backend(copy, "auto", explain=True) == "keras"
    assert load_predictor(copy, explain=True).backend == "keras"
    with pytest.raises(ArtifactError, match="no LiteRT Grad-CAM export"):
        load_predictor(copy, "litert", explain=True)
    with pytest.raises(NotImplementedError, match="draws no Grad-CAM"):
        load_predictor(copy, "litert").predict_and_explain(np.zeros((SIZE, SIZE, 1), np.float32))


def tampered_copy(exported: Path, copy: Path, file: str) -> Path:
    """A copy of the exported model folder with one byte of ``file`` flipped."""
    import shutil

    shutil.copytree(exported, copy)
    data = bytearray((copy / file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / file).write_bytes(bytes(data))
    return copy


def test_a_modified_gradcam_export_is_refused(exported: Path, tmp_path: Path) -> None:
    copy = tampered_copy(exported, tmp_path / "tampered", EXPLAIN_FILE)
    assert load_predictor(copy).backend == "litert"  # the probabilities' export is still sound
    with pytest.raises(ArtifactError, match="does not match the SHA-256"):
        load_predictor(copy, "litert", explain=True)


def test_the_card_serving_section_is_replaced_not_repeated(exported: Path, tmp_path: Path) -> None:
    from radtriage.model_card import set_serving_section

    card = tmp_path / "MODEL_CARD.md"
    card.write_text((exported / "MODEL_CARD.md").read_text())
    before = card.read_text()
    set_serving_section(card, read_metadata(exported).to_dict())
    assert card.read_text() == before
    set_serving_section(card, {"serving": {}})
    text = card.read_text()
    assert text.count("## Serving") == 1 and "No LiteRT export" in text and "\n\n## Limitations" in text


def test_auto_backend_prefers_a_verified_export(exported: Path, tmp_path: Path) -> None:
    assert resolve_backend(exported, "auto") == "litert"
    plain = tiny_chest_model(tmp_path / "plain")
    assert resolve_backend(plain, "auto") == "keras"
    assert load_predictor(plain).backend == "keras"
    with pytest.raises(ArtifactError, match="no LiteRT export"):
        load_predictor(plain, "litert")
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend(plain, "onnx")


def test_a_modified_export_or_a_retrained_model_is_refused(exported: Path, tmp_path: Path) -> None:
    copy = tampered_copy(exported, tmp_path / "copy", TFLITE_FILE)
    with pytest.raises(ArtifactError, match="does not match the SHA-256"):
        load_predictor(copy, "litert")
    # an export recorded for another model.h5
    meta = json.loads((copy / "metadata.json").read_text())
    meta["serving"]["litert"]["from_model_sha256"] = "0" * 64
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="exported from another model.h5"):
        load_predictor(copy, "litert")


def test_saving_a_new_model_forgets_the_old_export(exported: Path, tmp_path: Path) -> None:
    import shutil

    from radtriage.artifact import load_artifact

    copy = tmp_path / "resaved"
    shutil.copytree(exported, copy)
    artifact = load_artifact(copy)
    save_artifact(artifact.model, copy, artifact.metadata)
    assert read_metadata(copy).serving == {}
    assert resolve_backend(copy, "auto") == "keras"


def test_an_export_outside_tolerance_is_not_kept(tmp_path: Path) -> None:
    folder = tiny_chest_model(tmp_path / "strict")
    with pytest.raises(ArtifactError, match="differs from Keras"):
        export_litert(folder, tolerance=-1.0)
    assert not (folder / TFLITE_FILE).exists() and not (folder / EXPLAIN_FILE).exists()
    assert read_metadata(folder).serving == {}


def test_check_inputs_are_preprocessed_phantoms_and_constants() -> None:
    x = check_inputs("mura", PreprocessConfig(size=SIZE), n=4)
    assert x.shape == (6, SIZE, SIZE, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x[:4].std(axis=(1, 2, 3)).min() > 0.05  # real images, not blanks
    assert np.all(x[4] == 0) and np.all(x[5] == 1)


def test_one_interpreter_serves_concurrent_callers(exported: Path) -> None:
    """The dashboard's sessions share one interpreter (the anatomy gate): calls from several threads
    at once give each caller its own, correct output instead of LiteRT's RuntimeError."""
    from concurrent.futures import ThreadPoolExecutor

    predictor = LiteRtPredictor.from_dir(exported)
    x = np.random.default_rng(4).random((8, SIZE, SIZE, 1)).astype(np.float32)
    alone = [predictor.predict_batch(x[i : i + 1 + i % 3]) for i in range(len(x))]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda i: predictor.predict_batch(x[i : i + 1 + i % 3]), [*range(len(x))] * 8))
    for i, out in enumerate(together):
        np.testing.assert_allclose(out, alone[i % len(x)], atol=1e-6)


def test_litert_serving_never_imports_tensorflow(exported: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from radtriage.serving import load_predictor\n"
        f"p = load_predictor({str(exported)!r}, explain=True)\n"
        f"probs = p.predict_batch(np.zeros((2, {SIZE}, {SIZE}, 1), np.float32))\n"
        "assert p.backend == 'litert' and probs.shape == (2, 14)\n"
        f"assert p.predict_and_explain(np.ones(({SIZE}, {SIZE}, 1), np.float32)).heatmap.shape == ({SIZE}, {SIZE})\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------------ parallel loading


def test_parallel_loading_keeps_order_and_reports_bad_files(tmp_path: Path) -> None:
    files = []
    for i in range(7):
        path = tmp_path / f"img{i}.png"
        write(path, png_bytes((smooth_texture(90 + 7 * i, 80, 255, seed=i)).astype(np.uint8)))
        files.append(path)
    write(tmp_path / "bad.png", b"not an image")
    write(tmp_path / "scan.dcm", dicom_bytes(make_dataset(smooth_texture(128, 112, 4095), bits_stored=12)))
    files[3:3] = [tmp_path / "bad.png", tmp_path / "missing.png", tmp_path / "scan.dcm"]
    config = PreprocessConfig(size=SIZE)
    sequential = list(load_and_preprocess_many(files, config, workers=1))
    parallel = list(load_and_preprocess_many(files, config, workers=2, in_flight=1))
    assert len(parallel) == len(files)
    for path, a, b in zip(files, sequential, parallel):
        if path.name in ("bad.png", "missing.png"):
            assert isinstance(a, LoadFailure) and a == b and a.message.endswith(".")
        else:
            assert np.array_equal(b, load_and_preprocess(path, config)[1]) and np.array_equal(a, b)
    assert [f.code for f in parallel if isinstance(f, LoadFailure)] == ["not_an_image", "unreadable"]


def crash_on_marked_files(source, config):
    """Stands in for a decoder that kills its worker process on one file (a native crash)."""
    import os

    from radtriage import preprocess

    if Path(source).name.startswith("crash"):
        os._exit(1)
    return preprocess.ORIGINAL_TRY(source, config)


def test_a_decoder_crash_fails_one_file_and_the_batch_goes_on(tmp_path: Path, monkeypatch) -> None:
    from radtriage import preprocess

    files = []
    for i in range(6):
        path = tmp_path / (f"crash{i}.png" if i == 2 else f"img{i}.png")
        write(path, png_bytes(smooth_texture(90, 80, 255, seed=i).astype(np.uint8)))
        files.append(path)
    monkeypatch.setattr(preprocess, "ORIGINAL_TRY", preprocess.try_load_and_preprocess, raising=False)
    monkeypatch.setattr(preprocess, "try_load_and_preprocess", crash_on_marked_files)
    out = list(load_and_preprocess_many(files, PreprocessConfig(size=SIZE), workers=2, in_flight=1))
    assert len(out) == 6
    failed = [f.name for f, r in zip(files, out) if isinstance(r, LoadFailure)]
    assert "crash2.png" in failed and len(failed) <= 2  # the culprit, at most one innocent file in flight beside it
    assert all(r.code == "decoder_crash" for r in out if isinstance(r, LoadFailure))
    assert sum(isinstance(r, np.ndarray) for r in out) >= 4
