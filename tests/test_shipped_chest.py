"""The shipped chest model reproduces its recorded outputs and states what it knows, class by class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radtriage import labels
from radtriage.runs import DEFAULT_ATOL, check_reference_predictions
from radtriage.splits import nih_validation_mask

ROOT = Path(__file__).resolve().parents[1]
CHEST_DIR = ROOT / "model" / "chest"


@pytest.mark.parametrize("backend", ["keras", "litert"])
def test_chest_model_reproduces_its_reference_predictions(backend):
    check = check_reference_predictions(CHEST_DIR, atol=DEFAULT_ATOL, examples_dir=ROOT / "app_images", backend=backend)
    assert check.mismatches == []
    assert check.n_files >= 9 and check.max_abs_diff <= DEFAULT_ATOL


def test_chest_provenance_marks_the_five_unlabelled_classes_synthetic_only():
    meta = json.loads((CHEST_DIR / "metadata.json").read_text())
    assert meta["classes"] == list(labels.CHEST_CLASSES)
    real = {c for c, p in meta["provenance"].items() if p == labels.PROVENANCE_REAL}
    synthetic = {c for c, p in meta["provenance"].items() if p == labels.PROVENANCE_SYNTHETIC}
    assert real == set(labels.NIH_LABELLED)
    assert synthetic == {"Aortic enlargement", "Calcification", "ILD", "Lung Opacity", "Other lesion"}
    card = (CHEST_DIR / "MODEL_CARD.md").read_text()
    assert all(c in card.split("## Limitations")[1] for c in synthetic)


def test_chest_validation_metrics_come_from_the_fixed_nih_split():
    meta = json.loads((CHEST_DIR / "metadata.json").read_text())
    val = meta["metrics"]["validation"]
    files = meta["training_data"]["validation_files"]
    assert val["n_images"] == len(files) and "never trained on" in val["split"]
    scored = {r["class"] for r in val["per_class"] if r["auroc"] is not None}
    assert scored == set(labels.NIH_LABELLED)  # the 5 classes NIH never labels are not scored on it
    for r in val["per_class"]:
        if r["auroc"] is not None:
            assert r["auroc_lo"] <= r["auroc"] <= r["auroc_hi"]


def test_chest_validation_files_are_the_split_rule_applied_to_the_nih_sample(shared_data):
    import pandas as pd

    table = pd.read_csv(shared_data / "nih-cxr-sample" / "labels.csv")
    expected = sorted(table["Image Index"][nih_validation_mask(table["Patient ID"].astype(str))])
    meta = json.loads((CHEST_DIR / "metadata.json").read_text())
    assert meta["training_data"]["validation_files"] == expected
