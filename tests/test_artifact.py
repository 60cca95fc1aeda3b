"""Model artifact: round trip, checksum, and refusal of inconsistent or invalid metadata."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from radtriage import labels
from radtriage.architectures import build_model
from radtriage.artifact import (
    METADATA_FILE,
    MODEL_FILE,
    ArtifactError,
    ModelMetadata,
    label_summary,
    load_artifact,
    read_metadata,
    save_artifact,
    sha256_file,
    update_metadata,
)
from radtriage.preprocess import PreprocessConfig
from radtriage.training import MaskedBinaryCrossentropy

SIZE = 32


def chest_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", SIZE, labels.N_CHEST, width=4, depth=2)
    model.compile("adam", MaskedBinaryCrossentropy(np.full(labels.N_CHEST, 2.0)))  # custom loss in the .h5
    return model


def chest_metadata(**kwargs) -> ModelMetadata:
    return ModelMetadata.for_task("test-chest", "chest", PreprocessConfig(size=SIZE), **kwargs)


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, keras.Model, ModelMetadata]:
    model = chest_model()
    meta = save_artifact(model, tmp_path / "m", chest_metadata(temperature=1.5, training_data={"n_images": 3}))
    return tmp_path / "m", model, meta


def edit_metadata(directory: Path, change) -> None:
    path = directory / METADATA_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_round_trip_gives_the_same_predictions_and_metadata(saved) -> None:
    directory, model, meta = saved
    loaded = load_artifact(directory)
    x = np.random.default_rng(0).random((4, SIZE, SIZE, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.model(x).numpy(), model(x).numpy(), atol=1e-6)
    assert loaded.metadata == meta
    assert loaded.metadata.classes == list(labels.CHEST_CLASSES)
    assert loaded.metadata.model_sha256 == sha256_file(directory / MODEL_FILE)
    assert loaded.metadata.code_version["package"]
    assert loaded.metadata.created
    assert loaded.metadata.thresholds == {c: 0.5 for c in labels.CHEST_CLASSES}
    assert set(loaded.metadata.provenance.values()) == {labels.PROVENANCE_NONE}


def test_tampered_model_is_refused(saved) -> None:
    directory, _, _ = saved
    with open(directory / MODEL_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="SHA-256"):
        load_artifact(directory)


def test_metadata_that_disagrees_with_the_model_is_refused(saved) -> None:
    directory, _, _ = saved

    def to_mura(d: dict) -> None:
        d.update(task="mura", classes=list(labels.MURA_CLASSES), thresholds={}, provenance={}, flaggable={})

    edit_metadata(directory, to_mura)
    with pytest.raises(ArtifactError, match="14 outputs but the metadata lists 1"):
        load_artifact(directory)


def test_input_size_that_disagrees_with_preprocessing_is_refused(saved) -> None:
    directory, _, _ = saved
    edit_metadata(directory, lambda d: d["preprocess"].update(size=64))
    with pytest.raises(ArtifactError, match="inputs but preprocessing makes"):
        load_artifact(directory)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("classes"), "lacks"),
        (lambda d: d.update(extra=1), "unknown fields"),
        (lambda d: d["thresholds"].update({"ILD": 1.5}), r"\[0, 1\]"),
        (lambda d: d["thresholds"].pop("ILD"), "exactly the classes"),
        (lambda d: d.update(temperature=-1.0), "positive"),
        (lambda d: d.update(temperature={"ILD": 2.0}), "exactly the classes"),
        (lambda d: d["provenance"].update({"ILD": "rumour"}), "provenance values"),
        (lambda d: d.update(classes=list(reversed(labels.CHEST_CLASSES))), "labels.py order"),
        (lambda d: d.update(task="knee"), "task"),
        (lambda d: d.update(metrics={"validation": {"auroc": 0.9}}), "state the split"),
        (lambda d: d["preprocess"].update(resize="stretch"), "preprocess is invalid"),
    ],
)
def test_invalid_metadata_is_refused(saved, change, message) -> None:
    directory, _, _ = saved
    edit_metadata(directory, change)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(directory)


def test_missing_or_unreadable_files_are_refused(saved, tmp_path: Path) -> None:
    directory, _, _ = saved
    with pytest.raises(ArtifactError, match="not a directory"):
        load_artifact(tmp_path / "nowhere")
    (directory / METADATA_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(directory)
    (directory / METADATA_FILE).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_artifact(directory)


def test_save_refuses_a_model_that_does_not_fit_its_metadata(tmp_path: Path) -> None:
    mura = ModelMetadata.for_task("m", "mura", PreprocessConfig(size=SIZE))
    with pytest.raises(ArtifactError, match="outputs"):
        save_artifact(chest_model(), tmp_path, mura)
    assert not (tmp_path / MODEL_FILE).exists()


def test_update_metadata_keeps_the_model_and_validates(saved) -> None:
    directory, _, _ = saved
    thresholds = {c: 0.1 * (i % 10) for i, c in enumerate(labels.CHEST_CLASSES)}
    metrics = {"validation": {"split": "phantom validation, 50 images", "per_class": [{"class": "ILD", "auroc": 0.7}]}}
    update_metadata(directory, thresholds=thresholds, metrics=metrics)
    meta = load_artifact(directory).metadata
    assert meta.thresholds == thresholds and meta.metrics == metrics
    with pytest.raises(ArtifactError):
        update_metadata(directory, temperature=0.0)
    assert read_metadata(directory).thresholds == thresholds  # the refused update wrote nothing


def test_label_summary_counts_training_labels() -> None:
    classes = ["Aortic enlargement", "Atelectasis", "Calcification"]
    real = np.array([[1, 0, np.nan], [0, 0, np.nan]], np.float32)
    summary = label_summary(real, classes)
    assert summary["Aortic enlargement"] == {"positive": 1, "negative": 1, "missing": 0}
    assert summary["Calcification"] == {"positive": 0, "negative": 0, "missing": 2}
