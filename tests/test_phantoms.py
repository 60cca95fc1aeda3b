"""Synthetic phantoms: anatomy of findings, locality, determinism, file formats and layouts."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from radtriage import radiograph
from radtriage.labels import CHEST_CLASSES, MURA_STUDY_TYPES, N_CHEST, NO_FINDING, NO_FINDING_ID
from radtriage.phantoms import (
    FINDING_ANATOMY,
    LIMB_ABNORMALITIES,
    chest_batch,
    limb_batch,
    render_chest,
    render_limb,
    write_dicom,
    write_mura,
    write_vinbigdata,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZE = 160
CHANGE = 0.02  # a pixel "changed" when it moves by more than this (grey levels in [0, 1])


def _far_outside(mask: np.ndarray, px: int) -> np.ndarray:
    return ~ndimage.binary_dilation(mask, iterations=px)


@pytest.mark.parametrize("name", CHEST_CLASSES)
def test_chest_finding_mask_in_anatomy_and_local(name):
    base = render_chest(7, SIZE)
    p = render_chest(7, SIZE, [name], severity=0.8)
    (f,) = p.findings
    assert f.name == name and f.mask.sum() > 5
    anatomy = p.anatomy[FINDING_ANATOMY[name]]
    assert (f.mask & ~anatomy).sum() == 0  # inside lungs/pleura, mediastinum or bone
    x0, y0, x1, y1 = f.box
    ys, xs = np.nonzero(f.mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    diff = np.abs(p.image - base.image) > CHANGE
    assert diff[f.mask].mean() > 0.05  # the finding is visible inside its mask
    assert diff[_far_outside(f.mask, 4)].mean() < 0.002  # and (nearly) nothing changes far from it


def test_cardiomegaly_ctr_and_normal_ctr():
    for seed in range(3):
        assert render_chest(seed, SIZE).info["ctr"] < 0.5
        assert render_chest(seed, SIZE, ["Cardiomegaly"], severity=0.0).info["ctr"] > 0.5


def test_chest_is_a_chest():
    p = render_chest(3, 256)
    lungs, img = p.anatomy["lungs"], p.image
    assert img[lungs].mean() < img[p.anatomy["heart"]].mean() - 0.2  # dark lungs, white heart
    assert img[:, :5].mean() < 0.1  # air outside the body is black


def test_pneumothorax_rim_is_darker_and_loses_markings():
    base = render_chest(11, 256)
    p = render_chest(11, 256, ["Pneumothorax"], severity=0.9)
    rim = ndimage.binary_erosion(p.findings[0].mask, iterations=3) & p.anatomy["lungs"]
    delta = (p.image - base.image)[rim]
    assert delta.mean() < -0.01  # pleural air without lung tissue is darker
    # lung markings (bright vessels) vanish: the brightest base pixels lose the most
    bright = (base.image - ndimage.gaussian_filter(base.image, 4))[rim] > 0.03
    assert delta[bright].mean() < delta[~bright].mean()


@pytest.mark.parametrize("abnormality", LIMB_ABNORMALITIES)
def test_limb_abnormality_mask_in_anatomy_and_local(abnormality):
    study = "XR_FOREARM"
    base = render_limb(study, 5, 0, SIZE)
    p = render_limb(study, 5, 0, SIZE, abnormality, severity=0.8)
    (f,) = p.findings
    assert p.info["label"] == 1 and base.info["label"] == 0
    region = p.anatomy["limb"] if abnormality == "hardware" else ndimage.binary_dilation(p.anatomy["bone"], iterations=3)
    assert f.mask.sum() > 5 and (f.mask & ~region).sum() == 0
    diff = np.abs(p.image - base.image) > CHANGE
    assert diff[f.mask].mean() > 0.05
    assert diff[_far_outside(f.mask, 3)].mean() < 0.002


@pytest.mark.parametrize("study", MURA_STUDY_TYPES)
def test_every_study_type_renders_bone_in_soft_tissue(study):
    p = render_limb(study, 1, 1, 128)
    bone, limb = p.anatomy["bone"], p.anatomy["limb"]
    assert bone.mean() > 0.03 and p.image[bone].mean() > p.image[limb & ~bone].mean() > p.image[~limb].mean()


def test_same_seed_same_pixels_different_seed_different():
    a, b = render_chest(42, 128, ["Nodule/Mass"]), render_chest(42, 128, ["Nodule/Mass"])
    assert a.image.tobytes() == b.image.tobytes()
    assert render_chest(43, 128).image.tobytes() != a.image.tobytes()
    assert render_limb("XR_HAND", 4, 1, 128, "fracture").image.tobytes() == \
        render_limb("XR_HAND", 4, 1, 128, "fracture").image.tobytes()


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_vinbigdata_writer_deterministic_across_workers(tmp_path):
    write_vinbigdata(tmp_path / "a", 4, seed=3, size=96, findings_prob=0.7, jpeg2000_prob=0.5, workers=1)
    write_vinbigdata(tmp_path / "b", 4, seed=3, size=96, findings_prob=0.7, jpeg2000_prob=0.5, workers=2)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


@pytest.fixture(scope="module")
def vin(tmp_path_factory):
    root = tmp_path_factory.mktemp("vin")
    csv = write_vinbigdata(root, 10, seed=5, size=128, findings_prob=0.6, jpeg2000_prob=0.4, workers=2)
    return root, pd.read_csv(csv)


def test_vinbigdata_table_schema(vin):
    root, df = vin
    assert list(df.columns) == ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]
    assert df["class_id"].dtype == np.int64 and all(df[c].dtype == np.float64 for c in ("x_min", "x_max"))
    assert df["image_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert df["rad_id"].str.fullmatch(r"R([1-9]|1[0-7])").all()
    assert (df.groupby("image_id")["rad_id"].nunique() == 3).all()
    nf = df[df.class_id == NO_FINDING_ID]
    assert (nf.class_name == NO_FINDING).all() and nf[["x_min", "y_min", "x_max", "y_max"]].isna().all().all()
    boxes = df[df.class_id != NO_FINDING_ID]
    assert len(boxes) > 0 and (boxes.x_max > boxes.x_min).all() and (boxes.y_max > boxes.y_min).all()
    assert (boxes.class_name == [CHEST_CLASSES[i] for i in boxes.class_id]).all()
    assert sorted(p.stem for p in (root / "train").glob("*.dicom")) == sorted(df.image_id.unique())


def test_vinbigdata_table_matches_real_dtypes(vin):
    real_csv = SHARED / "vinbigdata" / "train.csv.gz"
    if not real_csv.exists():
        pytest.skip("../shared/data is absent: cannot compare with the real VinBigData table")
    real = pd.read_csv(real_csv, nrows=2000)
    _, ours = vin
    assert list(ours.columns) == list(real.columns)
    assert [str(t) for t in ours.dtypes] == [str(t) for t in real.dtypes]


def test_vinbigdata_dicoms_decode_with_pydicom_and_loader(vin):
    root, _ = vin
    files = sorted((root / "train").glob("*.dicom"))
    syntaxes, photometrics = set(), set()
    for path in files:
        ds = pydicom.dcmread(path)
        syntaxes.add(str(ds.file_meta.TransferSyntaxUID))
        photometrics.add(ds.PhotometricInterpretation)
        assert 12 <= ds.BitsStored <= 16 and ds.BodyPartExamined == "CHEST"
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
        r = radiograph.load(path)
        assert r.pixels.shape == (ds.Rows, ds.Columns) and r.metadata.source_format == "dicom"
        assert 0 <= r.pixels.min() and r.pixels.max() <= 1
    assert "1.2.840.10008.1.2.4.90" in syntaxes  # some JPEG 2000 files


@pytest.mark.parametrize("photometric,jpeg2000", [("MONOCHROME2", False), ("MONOCHROME1", True)])
def test_loader_reads_our_dicom_with_the_right_polarity(tmp_path, photometric, jpeg2000):
    p = render_chest(2, 128)
    path = write_dicom(tmp_path / "x.dcm", p.image, uid_key="t", bits_stored=12, photometric=photometric,
                       jpeg2000=jpeg2000, body_part="WRIST")
    r = radiograph.load(path)
    lungs, heart = p.anatomy["lungs"], p.anatomy["heart"]
    assert r.pixels[lungs].mean() < r.pixels[heart].mean()  # 1 = white regardless of MONOCHROME1/2
    assert r.metadata.body_part_examined == "WRIST"


def test_mura_layout_and_csvs(tmp_path):
    base = write_mura(tmp_path, 8, seed=2, size=96, valid_fraction=0.3, workers=2)
    assert base == tmp_path / "MURA-v1.1"
    study_re = re.compile(r"MURA-v1\.1/(train|valid)/(XR_[A-Z]+)/patient\d{5}/study\d+_(positive|negative)/")
    n_studies = 0
    for split in ("train", "valid"):
        studies = (base / f"{split}_labeled_studies.csv").read_text().splitlines()
        images = (base / f"{split}_image_paths.csv").read_text().splitlines()
        n_studies += len(studies)
        for row in studies:  # headerless "folder/,label"
            folder, label = row.rsplit(",", 1)
            m = study_re.fullmatch(folder)
            assert m and m.group(1) == split and m.group(2) in MURA_STUDY_TYPES
            assert label == ("1" if m.group(3) == "positive" else "0")
        for row in images:
            folder, name = row.rsplit("/", 1)
            assert study_re.fullmatch(folder + "/") and re.fullmatch(r"image\d+\.png", name)
            im = Image.open(tmp_path / row)
            assert im.mode in ("L", "RGB") and max(im.size) <= 96
        assert {r.rsplit("/", 1)[0] + "/" for r in images} == {r.rsplit(",", 1)[0] for r in studies}
    assert n_studies == 8
    assert pd.read_csv(base / "train_labeled_studies.csv", header=None).shape[1] == 2


def test_chest_batch_labels_match_boxes():
    b = chest_batch(6, 96, seed=1, findings_prob=0.8, return_masks=True)
    assert b.images.shape == (6, 96, 96) and b.images.dtype == np.float32
    assert b.labels.shape == (6, N_CHEST) and 0 <= b.images.min() and b.images.max() <= 1
    for labels, boxes, masks in zip(b.labels, b.boxes, b.masks):
        assert sorted(np.nonzero(labels)[0]) == sorted(c for c, *_ in boxes)
        assert (masks.any(axis=(1, 2)) == labels.astype(bool)).all()
    assert b.labels.sum() > 0
    again = chest_batch(6, 96, seed=1, findings_prob=0.8, workers=2)
    assert np.array_equal(again.images, b.images) and np.array_equal(again.labels, b.labels)


def test_limb_batch_groups_views_by_study():
    b = limb_batch(9, 64, seed=3, abnormal_prob=0.5)
    assert b.images.shape == (9, 64, 64) and len(b.study_types) == 9
    for sid in np.unique(b.study_ids):
        idx = b.study_ids == sid
        assert len(set(np.asarray(b.study_types)[idx])) == 1 and len(set(b.labels[idx])) == 1
        assert len(set(b.patient_ids[idx])) == 1
    assert all((a is None) == (lab == 0) for a, lab in zip(b.abnormalities, b.labels))


def test_app_images_manifest():
    root = Path(__file__).resolve().parents[1] / "app_images"
    manifest = json.loads((root / "manifest.json").read_text())
    entries = manifest["examples"]
    chest = [e for e in entries if e["anatomy"] == "chest"]
    limb = [e for e in entries if e["anatomy"] == "limb"]
    assert len(chest) >= 8 and {e["study_type"] for e in limb} == set(MURA_STUDY_TYPES)
    total = 0
    for e in entries:
        assert "synthetic phantom" in e["statement"].lower()
        for name in e["files"]:
            assert (root / name).exists() and not re.fullmatch(r"[0-9a-f]{32}\..*|\d{8}_\d{3}\.png|image\d+\.png", name)
            total += (root / name).stat().st_size
        assert (e["label"] == 1) == bool(e.get("abnormality") or e.get("findings"))
    assert total < 15e6
    big = pydicom.dcmread(root / "chest_02_cardiomegaly.dcm", stop_before_pixels=True)
    assert (big.Rows, big.Columns) == (2048, 2048) and big.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
