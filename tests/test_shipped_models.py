"""The shipped models (model/chest, model/mura): they reproduce their recorded outputs, were made by the
run config beside them, and say what they know, class by class.

``reference_predictions.json`` holds the Keras model's calibrated outputs on every file of every
bundled example of ``app_images/`` through the shared load and preprocess path (``load_input`` ->
``predict_batch``). ``check_reference_predictions`` re-computes them with the Keras model and with its
LiteRT export, which catches drift in loading, preprocessing, the model file or the export; an example
file changed on disk is reported as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radtriage import labels
from radtriage.runs import DEFAULT_ATOL, PretrainedRunConfig, check_reference_predictions, load_run_config
from radtriage.splits import nih_validation_mask

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"chest": ROOT / "model" / "chest", "mura": ROOT / "model" / "mura"}


def metadata(task: str) -> dict:
    return json.loads((MODELS[task] / "metadata.json").read_text())


@pytest.mark.parametrize("backend", ["keras", "litert"])
@pytest.mark.parametrize("task", ["chest", "mura"])
def test_model_reproduces_its_reference_predictions(task, backend):
    check = check_reference_predictions(MODELS[task], atol=DEFAULT_ATOL, examples_dir=ROOT / "app_images",
                                        backend=backend)
    assert check.mismatches == []
    assert check.n_files >= 27 and check.max_abs_diff <= DEFAULT_ATOL  # every bundled file


@pytest.mark.parametrize("task", ["chest", "mura"])
def test_model_was_made_by_its_run_config(task):
    run = load_run_config(MODELS[task] / "run_config.json")
    meta = metadata(task)
    assert isinstance(run, PretrainedRunConfig) and run.task == task == meta["task"]
    assert meta["train_config"]["backbone"] == run.backbone_config().to_dict()
    assert meta["training_data"]["backbone"]["weights"]["license"] == "Apache-2.0"
    assert meta["training_data"]["phantom_only"] is False


def test_chest_model_knows_nine_classes_and_any_finding_and_never_flags_the_other_five():
    meta = metadata("chest")
    assert meta["classes"] == list(labels.CHEST_OUTPUTS)
    real = {c for c, p in meta["provenance"].items() if p == labels.PROVENANCE_REAL}
    assert real == {*labels.NIH_LABELLED, labels.ANY_FINDING}
    unlabelled = set(labels.CHEST_CLASSES) - set(labels.NIH_LABELLED)
    assert all(meta["provenance"][c] == labels.PROVENANCE_NONE and not meta["flaggable"][c] for c in unlabelled)
    rows = {r["class"]: r for r in meta["metrics"]["validation"]["per_class"]}
    for c, may in meta["flaggable"].items():  # the flag rule: real labels and an interval above chance
        assert may == (c in real and rows[c]["auroc_lo"] is not None and rows[c]["auroc_lo"] > 0.5)
    card = (MODELS["chest"] / "MODEL_CARD.md").read_text()
    assert all(c in card.split("## Limitations")[1] for c in unlabelled)


def test_chest_validation_is_the_fixed_nih_split(shared_data):
    import pandas as pd

    table = pd.read_csv(shared_data / "nih-cxr-sample" / "labels.csv")
    expected = sorted(table["Image Index"][nih_validation_mask(table["Patient ID"].astype(str))])
    meta = metadata("chest")
    assert meta["training_data"]["validation_files"] == expected
    assert meta["metrics"]["validation"]["n_images"] == len(expected)
    assert "never trained on" in meta["metrics"]["validation"]["split"]


def test_limb_model_was_tested_on_held_out_fracatlas_images_per_part(shared_data):
    from radtriage.runs.pretrained import fracatlas_table

    meta = metadata("mura")
    table = fracatlas_table(shared_data / "fracatlas")
    from radtriage import radiograph

    recorded = set(meta["training_data"]["test_files"])
    split = table[table["split"] == "test"]
    assert recorded <= set(split["image_id"])
    for path in split.loc[~split["image_id"].isin(recorded), "path"]:  # left out: only files the loader refuses
        with pytest.raises(radiograph.CorruptFileError):
            radiograph.load(path)
    test = meta["metrics"]["test"]
    assert "never trained on" in test["split"]
    groups = {r["group"] for r in test["study_level"]}
    assert {"overall", *labels.FRACATLAS_UPPER_LIMB_PARTS} <= groups
    statement = meta["training_data"]["data_statement"]
    assert "fractures only" in statement and "hardware" in statement


def _real_or_example_files(task: str, shared: Path) -> list[Path]:
    """Real held-out radiographs of the task when ../shared/data is present, else its bundled phantoms."""
    if shared.is_dir():
        if task == "chest":
            return sorted((shared / "nih-cxr-sample" / "images").glob("*.png"))[:8]
        return sorted((shared / "fracatlas").rglob("*.jpg"))[:8]
    return sorted(p for p in (ROOT / "app_images").rglob("*") if p.suffix in {".dcm", ".png"}
                  and ("chest" in p.name) == (task == "chest"))[:8]


@pytest.mark.parametrize("task", ["chest", "mura"])
def test_the_dashboard_heatmaps_are_the_keras_heatmaps(task):
    """The dashboard and PACS draw Grad-CAM from the LiteRT export: on real radiographs it explains
    the same class as Keras, with the same map, for the top class and for a flagged one."""
    from radtriage.inference import Predictor
    from radtriage.serving import load_predictor

    from conftest import SHARED_DATA

    reference, served = Predictor.from_dir(MODELS[task]), load_predictor(MODELS[task], explain=True)
    assert served.backend == "litert" and served.explains
    files = _real_or_example_files(task, SHARED_DATA)
    assert len(files) >= 4
    drawn = 0
    for path in files:
        _, x = served.load_input(path)
        for asked in (None, len(served.classes) - 1):
            a, b = reference.predict_and_explain(x, asked), served.predict_and_explain(x, asked)
            assert (a.class_index, a.degenerate) == (b.class_index, b.degenerate), path.name
            assert float(abs(a.heatmap - b.heatmap).max()) <= 1e-3, path.name
            assert b.ood_ratio == pytest.approx(a.ood_ratio, rel=1e-3)
            drawn += not b.degenerate
    assert drawn >= len(files) // 2  # maps with something in them, not only flat ones
