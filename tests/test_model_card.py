"""Model cards in plain words: every split named by what it is made of, the intended use of a research
second reader, and the shipped cards as the card writer makes them from their metadata.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from radtriage import model_card
from radtriage.labels import ANY_FINDING, PROVENANCE_REAL

REPO = Path(__file__).resolve().parents[1]
NIH = ("NIH ChestX-ray14 sample validation: the fixed 30 % patient hash split of radtriage.splits, never trained on; "
       "143 images of 143 patients (also used for temperatures and thresholds)")
FRACATLAS = ("FracAtlas upper limb test: 15 % by part x label, identical files together, never trained on nor tuned "
             "on; 189 images of 188 patients")


def test_splits_are_named_by_what_they_are_made_of() -> None:
    assert model_card.plain_split(NIH) == "143 NIH chest x-rays of 143 patients, never used to train the model"
    assert model_card.split_remark(NIH) == " (also used for temperatures and thresholds)"
    assert model_card.plain_split(FRACATLAS) == \
        "189 FracAtlas upper-limb x-rays of 188 patients, never used to train or tune the model"
    phantom = "phantom hold-out: 5 % of phantom images by id hash, never trained on; 40 images of 40 patients"
    assert "synthetic phantom images" in model_card.plain_split(phantom) and model_card.is_synthetic_split(phantom)
    assert model_card.plain_split("some other split") == "some other split"  # never invented
    assert model_card.plain_training(["NIH ChestX-ray14 sample: 357 training images (real labels)"]) == \
        "357 NIH chest x-rays (labels mined from their reports)"


def card_of(split: str) -> str:
    row = {"class": ANY_FINDING, "n": 143, "auroc": 0.75, "auroc_lo": 0.63, "auroc_hi": 0.85}
    return model_card.model_card_markdown({
        "name": "m", "task": "chest", "classes": [ANY_FINDING], "provenance": [PROVENANCE_REAL],
        "training": {"data": ["NIH ChestX-ray14 sample: 357 training images (real labels)"],
                     "splits": "NIH ChestX-ray14 sample train: the rest, never scored; 357 images of 357 patients; "
                               + NIH},
        "metrics": {"validation": {"split": split, "n_images": 143, "per_class": [row]}},
    })


def test_card_headings_name_the_split_plainly_and_the_use_is_a_second_reader() -> None:
    card = card_of(NIH)
    assert "### Validation: 143 NIH chest x-rays of 143 patients, never used to train the model" in card
    assert "  - Train: 357 NIH chest x-rays of 357 patients (the rest, never scored)" in card
    assert "radtriage.splits" not in card  # no internal module named as a split
    assert "research second reader, not a medical device" in card and "never the sole basis" in card
    assert "must not be used" not in card and "triage or treat" not in card
    phantom = card_of("phantom test: 10 % of phantoms, never trained on; 30 images of 30 patients")
    assert "synthetic phantom images: the figures below say nothing about real radiographs" in phantom


@pytest.mark.parametrize("task", ["chest", "mura"])
def test_shipped_cards_are_what_the_card_writer_makes_of_their_metadata(task: str) -> None:
    folder = REPO / "model" / task
    if not (folder / "metadata.json").is_file():
        pytest.skip(f"{folder} holds no shipped model")
    from radtriage.runs.saving import model_card_text

    shipped = (folder / model_card.CARD_FILE).read_text(encoding="utf-8")
    assert shipped == model_card_text(folder), f"regenerate: rewrite_model_card('model/{task}')"
    assert "must not be used to diagnose, triage" not in shipped
