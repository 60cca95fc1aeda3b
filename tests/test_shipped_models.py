"""The shipped MURA model (model/mura) still gives its recorded outputs, and says it was trained on
synthetic phantoms only. The shipped chest model has its own checks in test_shipped_chest.py.

``reference_predictions.json`` holds the Keras model's calibrated outputs on every file of every
bundled example of ``app_images/`` (the chest examples included) through the shared load and
preprocess path (``load_input`` -> ``predict_batch``). ``check_reference_predictions`` re-computes
them with the Keras model and with its LiteRT export, which catches drift in loading, preprocessing,
the model file or the export; an example file changed on disk is reported as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radtriage import labels
from radtriage.runs import DEFAULT_ATOL, check_reference_predictions

ROOT = Path(__file__).resolve().parents[1]
MURA_DIR = ROOT / "model" / "mura"


@pytest.fixture(scope="module")
def mura_metadata() -> dict:
    return json.loads((MURA_DIR / "metadata.json").read_text())


@pytest.mark.parametrize("backend", ["keras", "litert"])
def test_mura_model_reproduces_its_reference_predictions(backend):
    # the references were made by Keras; the LiteRT export must give the same outputs through the same path
    check = check_reference_predictions(MURA_DIR, atol=DEFAULT_ATOL, examples_dir=ROOT / "app_images", backend=backend)
    assert check.mismatches == []
    assert check.n_files >= 7  # at least one limb example per MURA study type, plus the chest ones
    assert check.max_abs_diff <= DEFAULT_ATOL


def test_mura_reference_predictions_are_probabilities_that_vary():
    stored = json.loads((MURA_DIR / "reference_predictions.json").read_text())
    probs = [p for ex in stored["examples"] for f in ex["files"] for p in f["probabilities"]]
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert max(probs) - min(probs) > 0.05  # a constant output would mean a broken model


def test_mura_metadata_says_phantom_only(mura_metadata):
    assert mura_metadata["task"] == "mura"
    training = mura_metadata["training_data"]
    assert training["phantom_only"] is True
    assert mura_metadata["provenance"] == {c: labels.PROVENANCE_SYNTHETIC for c in labels.MURA_CLASSES}
    statement = training["data_statement"].lower()
    assert "no real normal/abnormal" in statement and "synthetic" in statement and "unknown" in statement
    assert all("synthetic phantoms" in d for d in training["data"])


def test_mura_model_card_says_phantom_only():
    card = (MURA_DIR / "MODEL_CARD.md").read_text()
    assert "Trained on synthetic phantom radiographs only" in card
    assert "performance on real radiographs is unknown" in card
    assert "MURA-v1.1 with notebooks/train_mura.ipynb" in card


def test_mura_run_config_is_the_documented_phantom_run(mura_metadata):
    from radtriage.runs import MuraRunConfig, load_run_config

    run = load_run_config(MURA_DIR / "run_config.json")
    assert isinstance(run, MuraRunConfig)
    assert run.source.synthetic and run.source.n > 0 and run.model_dir == "model/mura"
    assert run.train.to_dict()["preprocess"] == mura_metadata["preprocess"]
    assert run.train.architecture == mura_metadata["train_config"]["architecture"]
