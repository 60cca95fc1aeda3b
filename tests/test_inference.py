"""Predictor: calibrated probabilities, flags, Grad-CAM in one call, study aggregation, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from radtriage import labels
from radtriage.architectures import build_model
from radtriage.artifact import ArtifactError, ModelMetadata, save_artifact, update_metadata
from radtriage.inference import Predictor, predict_study
from radtriage.preprocess import PreprocessConfig, preprocess

SIZE = 32
CLASSES = labels.CHEST_CLASSES


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(1)
    return build_model("small_cnn", SIZE, labels.N_CHEST, width=4, depth=2)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).random((5, SIZE, SIZE, 1)).astype(np.float32)


def logits_of(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.Model(model.input, model.get_layer("logits").output)(x).numpy()


def make_predictor(model: keras.Model, directory: Path, **meta) -> Predictor:
    save_artifact(model, directory, ModelMetadata.for_task("t", "chest", PreprocessConfig(size=SIZE), **meta))
    return Predictor.from_dir(directory)


def test_uncalibrated_probabilities_equal_the_model_output(model, x, tmp_path) -> None:
    p = make_predictor(model, tmp_path)
    assert p.classes == list(CLASSES) and p.preprocess_config.size == SIZE
    np.testing.assert_allclose(p.predict_batch(x), model(x).numpy(), atol=1e-6)


def test_temperature_divides_the_logits(model, x, tmp_path) -> None:
    temps = {c: 0.5 + 0.25 * i for i, c in enumerate(CLASSES)}
    p = make_predictor(model, tmp_path, temperature=temps)
    t = np.array(list(temps.values()), np.float32)
    expected = 1 / (1 + np.exp(-logits_of(model, x) / t))
    np.testing.assert_allclose(p.predict_batch(x), expected, atol=1e-6)
    assert not np.allclose(p.predict_batch(x), model(x).numpy(), atol=1e-3)
    scalar = make_predictor(model, tmp_path / "scalar", temperature=3.0)
    np.testing.assert_allclose(scalar.predict_batch(x), 1 / (1 + np.exp(-logits_of(model, x) / 3.0)), atol=1e-6)


def test_thresholds_produce_flags(model, x, tmp_path) -> None:
    probs = model(x[:1]).numpy()[0]
    # flag the even classes only: threshold just below their probability, just above for the odd ones
    thresholds = {c: float(probs[i] - 1e-4 if i % 2 == 0 else probs[i] + 1e-4) for i, c in enumerate(CLASSES)}
    prediction = make_predictor(model, tmp_path, thresholds=thresholds).predict(x[0])
    assert prediction.flags == {c: i % 2 == 0 for i, c in enumerate(CLASSES)}
    assert prediction.thresholds == pytest.approx(thresholds)
    assert prediction.top_class == CLASSES[int(np.argmax(probs))]
    assert prediction.top_probability == pytest.approx(float(probs.max()), abs=1e-6)
    assert set(prediction.flagged) == {c for i, c in enumerate(CLASSES) if i % 2 == 0}
    assert prediction.provenance == {c: labels.PROVENANCE_NONE for c in CLASSES}
    as_json = json.loads(json.dumps(prediction.to_dict()))
    assert as_json["flagged"] == prediction.flagged and as_json["probabilities"] == pytest.approx(prediction.probabilities)


def test_raw_pixels_are_preprocessed_with_the_metadata_config(model, tmp_path) -> None:
    p = make_predictor(model, tmp_path)
    raw = np.random.default_rng(3).random((50, 80)).astype(np.float32)
    prepared = preprocess(raw, PreprocessConfig(size=SIZE))
    np.testing.assert_array_equal(p.prepare_input(raw), prepared)
    assert p.predict(raw).probabilities == pytest.approx(p.predict(prepared).probabilities)


def test_predict_and_explain_in_one_call(model, x, tmp_path) -> None:
    p = make_predictor(model, tmp_path, temperature=2.0)
    probs = p.predict_batch(x[:1])[0]
    top = p.predict_and_explain(x[0])
    assert top.class_index == int(np.argmax(probs)) and top.class_name == CLASSES[top.class_index]
    assert list(top.prediction.probabilities.values()) == pytest.approx(probs.tolist(), abs=1e-6)
    assert top.heatmap.shape == (SIZE, SIZE) and top.heatmap.dtype == np.float32
    assert 0.0 <= top.heatmap.min() and top.heatmap.max() <= 1.0
    assert top.degenerate or top.heatmap.max() == pytest.approx(1.0)
    other = (top.class_index + 1) % len(CLASSES)
    chosen = p.predict_and_explain(x[0], CLASSES[other])
    assert chosen.class_index == other
    np.testing.assert_array_equal(p.explain(x[0], other), chosen.heatmap)
    assert p._gradcam.tracing_count == 1  # new classes do not retrace


def test_the_ood_ratio_comes_from_the_grad_cam_call_and_equals_the_separate_pass() -> None:
    """The shipped chest model (features layer + OOD statistics): one graph call gives the same
    probabilities and OOD ratio as ``score_batch``'s separate forward pass."""
    from radtriage import radiograph

    shipped = Path(__file__).resolve().parents[1] / "model" / "chest"
    if not (shipped / "model.h5").is_file():
        pytest.skip("model/chest is not installed")
    p = Predictor.from_dir(shipped)
    if p.ood is None:
        pytest.skip("the shipped chest model carries no OOD statistics")
    phantom = radiograph.load(Path(__file__).resolve().parents[1] / "app_images" / "chest_03_pleural_effusion.png")
    inputs = [p.prepare_input(phantom), np.random.default_rng(5).random(p.input_shape).astype(np.float32)]
    for x in inputs:
        probs, ratios = p.score_batch(x[None])
        for class_index in (None, 3):
            out = p.predict_and_explain(x, class_index)
            assert out.ood_ratio == pytest.approx(float(ratios[0]), rel=1e-4)
            assert out.prediction.vector() == pytest.approx(probs[0].astype(np.float64), abs=1e-6)
    assert p._gradcam.tracing_count == 1


def test_without_ood_statistics_there_is_no_ratio(model, x, tmp_path) -> None:
    assert make_predictor(model, tmp_path).predict_and_explain(x[0]).ood_ratio is None


def test_heatmap_follows_the_evidence(tmp_path) -> None:
    """A hand-set model: class 0 = brightness. Its heatmap must peak where the image is bright."""
    model = build_model("small_cnn", SIZE, 2, width=4, depth=1, dropout=0.0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k = np.zeros(layer.kernel.shape, np.float32)
            k[1, 1, 0, :] = 1.0  # centre tap of the first input channel: identity-ish
            layer.kernel.assign(k)
    model.get_layer("logits").set_weights([np.array([[1.0, -1.0]] + [[0.0, 0.0]] * 3, np.float32), np.zeros(2, np.float32)])
    save_artifact(model, tmp_path, ModelMetadata(name="t", task="chest", classes=list(CLASSES[:2]),
                                                 preprocess=PreprocessConfig(size=SIZE)))
    image = np.zeros((SIZE, SIZE, 1), np.float32)
    image[4:12, 20:28] = 1.0
    heat = Predictor.from_dir(tmp_path).explain(image, 0)
    assert heat[4:12, 20:28].mean() > 0.5 > heat[20:, :12].mean()


def test_study_probability_is_the_mean_of_its_images(model, x, tmp_path) -> None:
    p = make_predictor(model, tmp_path)
    study = predict_study(p, x)
    assert list(study.probabilities.values()) == pytest.approx(p.predict_batch(x).mean(0).tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        predict_study(p, x[:0])


def test_mura_single_output(tmp_path) -> None:
    model = build_model("small_cnn", SIZE, 1, width=4, depth=2)
    save_artifact(model, tmp_path, ModelMetadata.for_task("m", "mura", PreprocessConfig(size=SIZE)))
    p = Predictor.from_dir(tmp_path)
    x = np.random.default_rng(5).random((3, SIZE, SIZE, 1)).astype(np.float32)
    study = predict_study(p, x)
    assert list(study.probabilities) == ["Abnormal"]
    assert study.probabilities["Abnormal"] == pytest.approx(float(model(x).numpy().mean()), abs=1e-6)


def test_bad_inputs_raise_clear_errors(model, tmp_path) -> None:
    p = make_predictor(model, tmp_path)
    with pytest.raises(ValueError, match="shape"):
        p.predict_batch(np.zeros((2, SIZE + 1, SIZE, 1), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        p.predict_batch(np.full((1, SIZE, SIZE, 1), np.nan, np.float32))
    with pytest.raises(ValueError, match="unknown class"):
        p.predict_and_explain(np.zeros((SIZE, SIZE, 1), np.float32), "Fracture")
    with pytest.raises(ValueError, match="outside"):
        p.explain(np.zeros((SIZE, SIZE, 1), np.float32), 14)


def test_tampered_artifact_is_refused(model, tmp_path) -> None:
    make_predictor(model, tmp_path)
    update_metadata(tmp_path, temperature=2.0)  # allowed: the model file is untouched
    Predictor.from_dir(tmp_path)
    with open(tmp_path / "model.h5", "r+b") as f:
        f.seek(-16, 2)
        f.write(b"\xff" * 16)
    with pytest.raises(ArtifactError):
        Predictor.from_dir(tmp_path)
