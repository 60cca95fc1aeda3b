"""The anatomy gate and out-of-distribution refusal: the rule (radtriage.triage), the OOD score
(radtriage.ood), and the shipped gate and models on real held-out files and on the bundled phantoms."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radtriage import cli, ood, tasks
from radtriage.anatomy import AnatomyVerdict
from radtriage.artifact import ArtifactError, read_metadata, read_ood
from radtriage.labels import ANATOMY_CLASSES
from radtriage.triage import FORCED, OK, REFUSED, decide, tag_conflict

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RADTRIAGE_DATA_DIR") or REPO.parent / "shared" / "data")
needs_data = pytest.mark.skipif(not (DATA / "nih-cxr-sample").is_dir() or not (DATA / "fracatlas").is_dir(),
                                reason=f"the shared real data ({DATA}) is absent")


def verdict(anatomy: str, p: float = 0.9) -> AnatomyVerdict:
    rest = (1 - p) / (len(ANATOMY_CLASSES) - 1)
    return AnatomyVerdict(anatomy, p, {c: (p if c == anatomy else rest) for c in ANATOMY_CLASSES})


# ------------------------------------------------------------------------------------ the rule


def test_the_right_anatomy_in_distribution_is_read() -> None:
    assert decide(verdict("chest"), tasks.CHEST, 0.4) == (OK, "")
    assert decide(verdict("limb"), tasks.MURA, None) == (OK, "")


def test_the_wrong_anatomy_is_refused_in_one_sentence_that_names_it() -> None:
    status, message = decide(verdict("limb", 0.97), tasks.CHEST, 0.2)
    assert status == REFUSED
    assert message == ("This looks like an upper-limb radiograph (gate probability 0.97); the chest model does "
                       "not read those.")
    status, message = decide(verdict("chest"), tasks.MURA, None)
    assert status == REFUSED and "a chest radiograph" in message and "the upper-limb model" in message
    status, message = decide(verdict("not a radiograph"), tasks.CHEST, None)
    assert status == REFUSED and message.startswith("This does not look like a radiograph")


def test_out_of_distribution_is_refused_and_the_override_shows_it_with_the_reason() -> None:
    status, message = decide(verdict("chest"), tasks.CHEST, 2.5)
    assert status == REFUSED and "unlike the images the chest model learnt from" in message and "2.5 times" in message
    status, message = decide(verdict("chest"), tasks.CHEST, 2.5, force=True)
    assert status == FORCED and message.startswith("Shown because the check was overridden: This image is unlike")
    assert decide(verdict("chest"), tasks.CHEST, 1.0)[0] == OK  # at the threshold: in distribution


def test_a_body_part_tag_that_disagrees_with_the_pixels_is_reported() -> None:
    assert "Body Part Examined says HAND" in tag_conflict("hand", verdict("chest"))
    assert tag_conflict("CHEST", verdict("chest")) == ""
    assert tag_conflict(None, verdict("chest")) == "" and tag_conflict("SKULL", verdict("chest")) == ""


# ------------------------------------------------------------------------------------ the OOD score


def test_ood_threshold_passes_the_stated_share_of_held_out_images_and_refuses_far_ones() -> None:
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(40, 40))
    train, held, far = (rng.normal(size=(n, 40)) @ mix for n in (600, 400, 50))
    fitted = ood.fit(train, held[:200], rate=0.95)
    # held-out images of the same distribution not used for the threshold pass at about the rate
    k, n = ood.refused_share(fitted, held[200:])
    assert n == 200 and k <= 25
    assert ood.refused_share(fitted, far * 3 + 5)[0] == 50
    assert np.isinf(fitted.distance(np.full((1, 40), np.nan))[0])


def test_ood_statistics_round_trip_and_a_modified_file_is_refused(tmp_path: Path) -> None:
    shipped = REPO / "model" / "chest"
    meta = read_metadata(shipped)
    if not meta.ood:
        pytest.fail("the shipped chest model carries no out-of-distribution statistics")
    fitted = read_ood(shipped, meta)
    assert fitted is not None and fitted.threshold == pytest.approx(meta.ood["threshold"], rel=1e-3)
    copy = tmp_path / "chest"
    shutil.copytree(shipped, copy)
    again = ood.OodModel.load(copy / meta.ood["file"])
    np.testing.assert_array_equal(again.whitener, fitted.whitener)
    (copy / meta.ood["file"]).write_bytes(ood.OodModel(fitted.mean + 1, fitted.whitener, 1.0, 0.5).to_bytes())
    with pytest.raises(ArtifactError, match="SHA-256"):
        read_ood(copy, meta)


# ------------------------------------------------------------------------------------ the shipped gate


def run_predict(paths: list[Path], tmp_path: Path, *extra: str) -> pd.DataFrame:
    out = tmp_path / "out.json"
    cli.main(["predict", *map(str, paths), "--out", str(out), "--no-progress", *extra])
    data = json.loads(out.read_text())
    return pd.DataFrame(data["images"] + data["errors"]).set_index("file")


def test_bundled_phantoms_route_to_their_model_and_are_out_of_the_real_models_distribution(tmp_path: Path) -> None:
    """Phantoms are a known distribution: the gate sends each to its model, and both real-data models
    call them unlike their training images (so they are shown only with the override)."""
    examples = REPO / "app_images"
    chest = sorted(examples.glob("chest_*.png"))[:2]
    limb = sorted(examples.glob("limb_*.png"))[:2]
    assert chest and limb, "the bundled examples are missing"
    rows = run_predict(chest + limb, tmp_path)
    for path in chest:
        assert rows.loc[path.as_posix(), "anatomy"] == "chest" and rows.loc[path.as_posix(), "model"] == "chest"
    for path in limb:
        assert rows.loc[path.as_posix(), "anatomy"] == "limb" and rows.loc[path.as_posix(), "model"] == "mura"
    assert (rows["status"] == "refused").all() and (rows["ood_ratio"] > 1).all()
    forced = run_predict(chest + limb, tmp_path, "--force")
    assert (forced["status"] == "forced").all()
    assert forced["warning"].str.startswith("Shown because the check was overridden").all()


@needs_data
def test_real_held_out_files_reach_their_model_and_the_wrong_model_refuses_them(tmp_path: Path) -> None:
    """No folder layout: one NIH chest x-ray of the validation patients and FracAtlas test hands, in one folder."""
    from radtriage.runs import pretrained as P

    nih = P.nih_table(DATA / "nih-cxr-sample")
    chest = [Path(p) for p in nih[nih["split"] == "validation"]["path"].head(3)]
    frac = P.fracatlas_table(DATA / "fracatlas")
    hands = [Path(p) for p in frac[(frac["split"] == "test") & (frac["part"] == "hand")]["path"].head(3)]
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in chest + hands:
        os.symlink(p, folder / p.name)
    rows = run_predict([folder], tmp_path)
    by_name = {Path(f).name: r for f, r in rows.iterrows()}
    assert {by_name[p.name]["model"] for p in chest} == {"chest"}
    assert {by_name[p.name]["model"] for p in hands} == {"mura"}
    assert all(by_name[p.name]["anatomy"] == "limb" for p in hands)
    forced_task = run_predict([folder], tmp_path, "--task", "chest")
    refused = forced_task[forced_task.index.map(lambda f: Path(f).name in {p.name for p in hands})]
    assert (refused["status"] == "refused").all()
    assert refused["error"].str.contains("upper-limb radiograph").all()
    assert refused["error"].str.contains("the chest model does not read those").all()
