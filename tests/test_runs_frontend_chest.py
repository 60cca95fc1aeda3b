"""The shipped chest model's recipe: exact head merging and a tiny end-to-end run on fake NIH data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radtriage.runs import frontend_chest as fr
from radtriage import frontends, labels
from radtriage.inference import Predictor
from radtriage.phantoms import render_chest
from radtriage.splits import nih_validation_mask

NIH_NAME = {v: k for k, v in labels.NIH_TO_CHEST.items() if k != "Mass"}  # chest class -> an NIH name


def _head(rng: np.random.Generator, f: int, k: int) -> frontends.LinearHead:
    return frontends.LinearHead(rng.normal(size=f), rng.uniform(0.5, 2.0, size=f), rng.normal(size=(f, k)),
                                rng.normal(size=k))


def test_merged_head_reproduces_both_heads_exactly() -> None:
    rng = np.random.default_rng(0)
    base, other = _head(rng, 12, 5), _head(rng, 12, 5)
    merged = fr.merge_heads(base, other, [1, 3])
    feats = rng.normal(size=(20, 12)) * 3
    got, want_base, want_other = merged.logits(feats), base.logits(feats), other.logits(feats)
    np.testing.assert_allclose(got[:, [0, 2, 4]], want_base[:, [0, 2, 4]], atol=1e-9)
    np.testing.assert_allclose(got[:, [1, 3]], want_other[:, [1, 3]], atol=1e-9)


def _fake_nih(root, n: int) -> None:
    """An NIH-sample layout whose images are phantoms with their findings as NIH labels."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        findings = [c for j, c in enumerate(fr.REAL_CLASSES) if (i + j) % 3 == 0][:2]
        ph = render_chest(seed=100 + i, size=128, findings=findings)
        name = f"fake_nih_{i:03d}.png"
        Image.fromarray((ph.image * 255).astype(np.uint8)).save(root / "images" / name)
        text = "|".join(NIH_NAME[c] for c in findings) or labels.NIH_NO_FINDING
        rows.append({"Image Index": name, "Finding Labels": text, "Patient ID": 1000 + i, "Patient Age": 50,
                     "Patient Gender": "F", "View Position": "PA"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)


@pytest.mark.slow
def test_tiny_run_makes_a_self_describing_chest_model(tmp_path) -> None:
    _fake_nih(tmp_path / "nih", 36)
    tiny = frontends.FrontEndConfig(size=64, scales=2, orientations=4, map_size=8, grids=(1, 2), hist_bins=4)
    run = fr.FrontEndChestRunConfig(
        nih=str(tmp_path / "nih"), phantom_dir=str(tmp_path / "ph"), n_phantoms=30, phantom_size=96,
        phantom_prevalence=0.4, frontend=tiny.to_dict(), model_dir=str(tmp_path / "model"),
        cache_dir=str(tmp_path / "cache"), n_boot=20, workers=0, progress=False, examples_dir="")
    assert fr.FrontEndChestRunConfig.from_json(run.to_json()) == run

    result = fr.train_frontend_chest(run)

    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert meta["provenance"] == {c: labels.PROVENANCE_REAL if c in labels.NIH_LABELLED
                                  else labels.PROVENANCE_SYNTHETIC for c in labels.CHEST_CLASSES}
    patients = pd.read_csv(tmp_path / "nih" / "labels.csv")
    val_files = sorted(patients["Image Index"][nih_validation_mask(patients["Patient ID"].astype(str))])
    assert meta["training_data"]["validation_files"] == val_files
    assert "never trained on" in meta["metrics"]["validation"]["split"]
    assert result.sizes["nih_validation"] == len(val_files)
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert all(f in card.split("## Validation split")[1] for f in val_files)

    # The synthetic-only heads were fitted on phantoms: their outputs vary with the image.
    predictor = Predictor.from_dir(tmp_path / "model")
    x = np.stack([predictor.load_input(p)[1] for p in sorted((tmp_path / "nih" / "images").iterdir())[:8]])
    probs = predictor.predict_batch(x)
    syn = [labels.class_index(c) for c in fr.SYNTHETIC_CLASSES]
    assert probs.shape == (8, labels.N_CHEST) and np.all(probs[:, syn].std(axis=0) > 0)
