"""Training runs (radtriage.runs) end to end on tiny phantom datasets in the real layouts, and their pure parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radtriage import labels
from radtriage.preprocess import PreprocessConfig
from radtriage.runs import (
    ChestRunConfig,
    DataSource,
    MuraRunConfig,
    SplitConfig,
    check_reference_predictions,
    run_config_from_dict,
    train_chest,
    train_mura,
)
from radtriage.runs.mura import study_frame
from radtriage.runs.sources import class_provenance
from radtriage.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "app_images"
TINY_MODEL = {"architecture": "small_cnn", "architecture_kwargs": {"width": 8, "depth": 3}, "batch_size": 32,
              "epochs": 2, "verbose": 0}


def tiny_train(task: str, out: Path) -> TrainConfig:
    return TrainConfig(task=task, preprocess=PreprocessConfig(size=48), output_dir=str(out), **TINY_MODEL)


# ------------------------------------------------------------------------------------ configs


def test_run_configs_round_trip_through_json() -> None:
    chest = ChestRunConfig(sources=[DataSource("vinbigdata", "/v", policy="any"), DataSource("nih", "/n")],
                           split=SplitConfig((0.7, 0.3), seed=5), n_boot=7, train=tiny_train("chest", Path("w")))
    mura = MuraRunConfig(source=DataSource("mura", "/m", synthetic=True), study_types=("XR_WRIST",),
                         train=tiny_train("mura", Path("w")))
    for run in (chest, mura):
        back = run_config_from_dict(json.loads(run.to_json()))
        assert back == run and type(back) is type(run)
    assert ChestRunConfig.from_json(chest.to_json()).split.fractions == (0.7, 0.3)


def test_run_configs_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown ChestRunConfig parameters"):
        ChestRunConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="kind"):
        DataSource("dicomdir", "/x")
    with pytest.raises(ValueError, match="chest run needs sources of kinds"):
        ChestRunConfig(sources=[DataSource("mura", "/m")])
    with pytest.raises(ValueError, match="unique name"):
        ChestRunConfig(sources=[DataSource("nih", "/a"), DataSource("nih", "/b")])
    with pytest.raises(ValueError, match="recipe"):
        run_config_from_dict({"model_dir": "x"})
    with pytest.raises(ValueError, match="recipe 'chest'"):
        ChestRunConfig(recipe="mura")


# ------------------------------------------------------------------------------------ pure parts


def test_class_provenance_counts_only_positive_training_labels() -> None:
    classes = ["A", "B", "C", "D"]
    table = pd.DataFrame({
        "A": [1.0, 0.0, 0.0],        # positive on a real image
        "B": [0.0, 1.0, np.nan],     # positive on a phantom only
        "C": [0.0, 0.0, np.nan],     # never positive
        "D": [np.nan, 1.0, 2 / 3],   # soft positive on a real image
        "synthetic": [False, True, False],
    })
    assert class_provenance(table, classes) == {
        "A": labels.PROVENANCE_REAL, "B": labels.PROVENANCE_SYNTHETIC,
        "C": labels.PROVENANCE_NONE, "D": labels.PROVENANCE_REAL,
    }


def test_study_frame_is_the_mean_of_image_probabilities() -> None:
    table = pd.DataFrame({"study_id": ["s1", "s1", "s2", "s1"], "study_type": ["XR_HAND"] * 3 + ["XR_HAND"],
                          "Abnormal": [1.0, 1.0, 0.0, 1.0]})
    studies = study_frame(table, np.array([0.2, 0.5, 0.9, 0.8]), threshold=0.4).set_index("study_id")
    assert studies.loc["s1", "probability"] == pytest.approx(0.5)
    assert studies.loc["s2", "probability"] == pytest.approx(0.9)
    assert studies.loc["s1", "n_images"] == 3 and studies.loc["s1", "label"] == 1


# ------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def chest_run(tmp_path_factory: pytest.TempPathFactory):
    from radtriage.phantoms import write_vinbigdata

    root = tmp_path_factory.mktemp("chest")
    write_vinbigdata(root / "vin", 140, seed=11, size=80, findings_prob=0.5, jpeg2000_prob=0.1, workers=2)
    # declared real on purpose: the recipe must recognise the phantom DICOMs itself
    run = ChestRunConfig(sources=[DataSource("vinbigdata", str(root / "vin"))], model_dir=str(root / "model"),
                         cache_dir=str(root / "cache"), train=tiny_train("chest", root / "work"), n_boot=50,
                         workers=2, progress=False, examples_dir=str(EXAMPLES))
    with pytest.warns(UserWarning, match="phantom"):
        result = train_chest(run)
    return run, result


@pytest.mark.slow
def test_train_chest_writes_a_loadable_self_describing_artifact(chest_run) -> None:
    from radtriage.artifact import load_artifact

    run, result = chest_run
    art = load_artifact(run.model_dir)
    meta = art.metadata
    assert art.model.output_shape == (None, labels.N_CHEST)
    assert meta.classes == list(labels.CHEST_CLASSES)
    assert all(0 <= t <= 1 for t in meta.thresholds.values())
    assert all(0.05 <= t <= 20 for t in meta.temperatures())
    assert set(meta.metrics) == {"test", "validation"}
    sizes = result.sizes
    assert sum(sizes.values()) == 140 and sizes["train"] > sizes["test"] > 0
    for role in ("test", "validation"):
        m = meta.metrics[role]
        assert m["split"].startswith(f"{role}:") and f"{sizes[role]} images" in m["split"]
        assert m["n_images"] == sizes[role]
        assert (Path(run.model_dir) / "plots" / role / "roc.png").is_file()
    assert "optimistic" in meta.metrics["validation"]["split"]
    # the run also leaves the verified LiteRT export the CLI serves by default
    assert meta.serving["litert"]["from_model_sha256"] == meta.model_sha256
    assert (Path(run.model_dir) / meta.serving["litert"]["file"]).is_file()
    # phantoms only: no class may claim real labels; "none" exactly where training had no positive
    training = meta.training_data
    assert training["phantom_only"] is True
    for c in labels.CHEST_CLASSES:
        positives = training["train_positives"][c]
        assert positives["real"] == 0
        expected = labels.PROVENANCE_SYNTHETIC if positives["synthetic"] else labels.PROVENANCE_NONE
        assert meta.provenance[c] == expected
    assert meta.train_config["preprocess"]["size"] == 48
    card = (Path(run.model_dir) / "MODEL_CARD.md").read_text()
    assert "Trained on synthetic phantom radiographs only" in card and "synthetic phantoms" in card


@pytest.mark.slow
def test_reference_predictions_catch_drift(chest_run, tmp_path: Path) -> None:
    import shutil

    run, _ = chest_run
    check = check_reference_predictions(run.model_dir, examples_dir=EXAMPLES)
    manifest = json.loads((EXAMPLES / "manifest.json").read_text())
    assert check.ok and check.n_files == sum(len(e["files"]) for e in manifest["examples"])
    # a model folder whose stored outputs are off by 0.01 for one file must fail the check
    copy = tmp_path / "model"
    shutil.copytree(run.model_dir, copy)
    ref = json.loads((copy / "reference_predictions.json").read_text())
    probs = ref["examples"][0]["files"][0]["probabilities"]
    probs[0] = min(1.0, probs[0] + 0.01) if probs[0] < 0.99 else probs[0] - 0.01
    (copy / "reference_predictions.json").write_text(json.dumps(ref))
    drifted = check_reference_predictions(copy, examples_dir=EXAMPLES)
    assert not drifted.ok and len(drifted.mismatches) == 1
    assert ref["examples"][0]["files"][0]["file"] in drifted.mismatches[0]


@pytest.mark.slow
def test_train_mura_evaluates_at_study_level(tmp_path: Path) -> None:
    from radtriage.datasets import MuraDataset
    from radtriage.phantoms import write_mura

    write_mura(tmp_path, 70, seed=5, size=192, valid_fraction=0.35, workers=2)
    run = MuraRunConfig(source=DataSource("mura", str(tmp_path), synthetic=True), val_fraction=0.25,
                        model_dir=str(tmp_path / "model"), cache_dir=str(tmp_path / "cache"),
                        train=tiny_train("mura", tmp_path / "work"), n_boot=50, workers=2, progress=False,
                        examples_dir=str(EXAMPLES))
    result = train_mura(run)
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    valid = MuraDataset(tmp_path, "valid")
    test = meta["metrics"]["test"]
    assert test["n_studies"] == len(valid.studies) == result.sizes["test_studies"]
    assert test["n_image_files"] == len(valid)
    assert "MURA valid split" in test["split"]
    overall = test["study_level"][0]
    assert overall["group"] == "overall" and overall["n"] == len(valid.studies)
    assert overall["n_pos"] == int(valid.studies["Abnormal"].sum())
    groups = {r["group"] for r in test["study_level"][1:]}
    assert groups == set(valid.studies["study_type"])
    assert meta["provenance"] == {"Abnormal": labels.PROVENANCE_SYNTHETIC}
    assert "study-level" in meta["metrics"]["validation"]["thresholds"]["rule"]
    refs = json.loads((tmp_path / "model" / "reference_predictions.json").read_text())
    limb = [e for e in refs["examples"] if e["matches_task"]]
    assert limb and all(np.isclose(e["study_probabilities"][0],
                                   np.mean([f["probabilities"][0] for f in e["files"]])) for e in limb)
