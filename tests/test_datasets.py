"""Dataset sources: VinBigData label policies, MURA layouts, NIH mapping, merging, splits.

Expected counts on the real files were computed once, independently of radtriage, with plain
pandas groupbys / string splits (see the report of the "Training and evaluation on real layouts"
issue) and are written here as fixed values.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_fixtures import png_bytes

from radtriage.datasets import (
    Box,
    Dataset,
    DatasetError,
    MuraDataset,
    NIHDataset,
    VinBigDataset,
    merge_datasets,
    split_by_patient,
)
from radtriage.labels import CHEST_CLASSES, MURA_CLASSES, NIH_LABELLED

# --- VinBigData: real train.csv -------------------------------------------------------------
# Images where at least 1 / at least 2 of the 3 readers marked the class.
VIN_ANY = {
    "Aortic enlargement": 3067, "Atelectasis": 186, "Calcification": 452, "Cardiomegaly": 2300,
    "Consolidation": 353, "ILD": 386, "Infiltration": 613, "Lung Opacity": 1322,
    "Nodule/Mass": 826, "Other lesion": 1134, "Pleural effusion": 1032,
    "Pleural thickening": 1981, "Pneumothorax": 96, "Pulmonary fibrosis": 1617,
}  # fmt: skip
VIN_MAJORITY = {
    "Aortic enlargement": 2346, "Atelectasis": 62, "Calcification": 177, "Cardiomegaly": 1817,
    "Consolidation": 121, "ILD": 152, "Infiltration": 245, "Lung Opacity": 547,
    "Nodule/Mass": 405, "Other lesion": 362, "Pleural effusion": 634,
    "Pleural thickening": 882, "Pneumothorax": 58, "Pulmonary fibrosis": 1017,
}  # fmt: skip
# Total (image, reader) votes per class = 3 x the sum of the soft labels.
VIN_VOTES = {
    "Aortic enlargement": 7157, "Atelectasis": 266, "Calcification": 686, "Cardiomegaly": 5414,
    "Consolidation": 505, "ILD": 609, "Infiltration": 949, "Lung Opacity": 2036,
    "Nodule/Mass": 1412, "Other lesion": 1623, "Pleural effusion": 2105,
    "Pleural thickening": 3228, "Pneumothorax": 199, "Pulmonary fibrosis": 3267,
}  # fmt: skip
VIN_NORMAL = 10_606  # images all 3 readers called "No finding" (no image has 1 or 2 such votes)


@pytest.fixture(scope="module")
def vin_csv(shared_data: Path) -> Path:
    return shared_data / "vinbigdata" / "train.csv.gz"


@pytest.mark.real_data
@pytest.mark.parametrize(("policy", "expected"), [("any", VIN_ANY), ("majority", VIN_MAJORITY)])
def test_vinbigdata_real_counts(vin_csv: Path, policy: str, expected: dict[str, int]) -> None:
    ds = VinBigDataset(vin_csv, policy=policy)
    assert len(ds) == 15_000
    assert (ds.table["n_readers"] == 3).all()
    assert ds.labels == CHEST_CLASSES
    assert ds.positive_counts() == expected
    assert set(np.unique(ds.label_matrix())) == {0.0, 1.0}
    assert int(ds.table["no_finding"].sum()) == VIN_NORMAL
    # A unanimous normal has no positive class under any policy.
    normal = ds.table["no_finding"] == 1.0
    assert (ds.label_matrix()[normal.to_numpy()] == 0).all()
    assert (ds.table["patient_id"] == ds.table["image_id"]).all()
    assert ds.table["path"].isna().all()  # CSV alone: no image folder


@pytest.mark.real_data
def test_vinbigdata_real_soft_and_votes(vin_csv: Path) -> None:
    ds = VinBigDataset(vin_csv, policy="soft")
    assert set(np.unique(np.round(ds.label_matrix() * 3, 4))) == {0.0, 1.0, 2.0, 3.0}
    votes = np.round(ds.label_matrix() * 3).sum(axis=0).astype(int)
    assert dict(zip(CHEST_CLASSES, votes.tolist())) == VIN_VOTES
    assert set(ds.votes["No finding"].unique()) == {0, 3}
    assert int((ds.votes["No finding"] == 3).sum()) == VIN_NORMAL
    assert len(ds.boxes) == 67_914 - 3 * VIN_NORMAL == 36_096


@pytest.mark.real_data
def test_vinbigdata_real_boxes(vin_csv: Path) -> None:
    ds = VinBigDataset(vin_csv)
    boxes = ds.boxes_for("ce1809b48b0ba6519f6f7b3a01155173")
    assert {k: len(v) for k, v in boxes.items()} == {
        "Aortic enlargement": 2, "Nodule/Mass": 3, "Other lesion": 1, "Pleural thickening": 1,
    }  # fmt: skip
    assert Box("R10", 1956.0, 1051.0, 2018.0, 1126.0) in boxes["Nodule/Mass"]
    row = ds.table.set_index("image_id").loc["ce1809b48b0ba6519f6f7b3a01155173"]
    assert row["n_boxes"] == 7
    assert row["Nodule/Mass"] == 1.0 and row["Other lesion"] == 0.0  # 3 readers vs 1 reader
    normal_id = ds.table.loc[ds.table["no_finding"] == 1.0, "image_id"].iloc[0]
    assert ds.boxes_for(normal_id) == {}
    with pytest.raises(KeyError):
        ds.boxes_for("not-an-id")


# --- VinBigData: small synthetic tables ------------------------------------------------------
HEADER = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
SMALL_ROWS = [
    # img_a: Cardiomegaly by 2 of 3 readers (R1 twice), Nodule/Mass by 1, R3 normal.
    "img_a,Cardiomegaly,3,R1,10,20,110,120",
    "img_a,Cardiomegaly,3,R1,12,22,112,122",
    "img_a,Nodule/Mass,8,R1,5,5,15,15",
    "img_a,Cardiomegaly,3,R2,11,21,111,121",
    "img_a,No finding,14,R3,,,,",
    # img_b: unanimous normal.
    "img_b,No finding,14,R1,,,,",
    "img_b,No finding,14,R4,,,,",
    "img_b,No finding,14,R5,,,,",
]


def write_vin(folder: Path, rows: list[str], name: str = "train.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = HEADER + "\n".join(rows) + "\n"
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("policy", "cardio", "nodule"), [("any", 1.0, 1.0), ("majority", 1.0, 0.0), ("soft", 2 / 3, 1 / 3)]
)
def test_vinbigdata_policies(tmp_path: Path, policy: str, cardio: float, nodule: float) -> None:
    ds = VinBigDataset(write_vin(tmp_path, SMALL_ROWS), policy=policy)
    t = ds.table.set_index("image_id")
    assert t.loc["img_a", "Cardiomegaly"] == pytest.approx(cardio)
    assert t.loc["img_a", "Nodule/Mass"] == pytest.approx(nodule)
    assert t.loc["img_a", "no_finding"] == pytest.approx({"any": 1.0, "majority": 0.0, "soft": 1 / 3}[policy])
    assert t.loc["img_b", "no_finding"] == 1.0
    assert (t.loc["img_b", list(CHEST_CLASSES)] == 0).all()
    assert t.loc["img_a", "n_boxes"] == 4
    assert ds.votes.loc["img_a", "Cardiomegaly"] == 2  # R1's two boxes are one vote


def test_vinbigdata_folder_layout(tmp_path: Path) -> None:
    write_vin(tmp_path, SMALL_ROWS, name="train.csv.gz")
    (tmp_path / "train").mkdir()
    ds = VinBigDataset(tmp_path)
    assert ds.paths() == [str((tmp_path / "train" / f"{i}.dicom").resolve()) for i in ("img_a", "img_b")]
    assert ds.missing_files() == ["img_a", "img_b"]
    other = tmp_path / "png"
    other.mkdir()
    ds_png = VinBigDataset(tmp_path / "train.csv.gz", image_dir=other, suffix=".png")
    assert ds_png.paths()[0] == str(other.resolve() / "img_a.png")


def test_vinbigdata_irregular_reader_count_warns(tmp_path: Path) -> None:
    rows = ["img_c,Cardiomegaly,3,R1,1,1,9,9", "img_c,No finding,14,R2,,,,"]
    with pytest.warns(UserWarning, match="1 VinBigData images have a reader count other than 3"):
        ds = VinBigDataset(write_vin(tmp_path, SMALL_ROWS + rows), policy="majority")
    t = ds.table.set_index("image_id")
    assert t.loc["img_c", "n_readers"] == 2
    assert t.loc["img_c", "Cardiomegaly"] == 0.0  # 1 of 2 is not a majority
    with pytest.warns(UserWarning):
        soft = VinBigDataset(write_vin(tmp_path, SMALL_ROWS + rows), policy="soft").table
    assert soft.set_index("image_id").loc["img_c", "Cardiomegaly"] == 0.5


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (["img_a,Fracture,3,R1,1,1,2,2"], "unknown class names"),
        (["img_a,Cardiomegaly,4,R1,1,1,2,2"], "class_id values that do not match"),
        (["img_a,Cardiomegaly,3,,1,1,2,2"], "without a rad_id"),
    ],
)
def test_vinbigdata_bad_tables(tmp_path: Path, rows: list[str], match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        VinBigDataset(write_vin(tmp_path, rows))


def test_vinbigdata_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        VinBigDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no train.csv"):
        VinBigDataset(tmp_path)
    (tmp_path / "train.csv").write_text("image_id,label\nx,1\n")
    with pytest.raises(DatasetError, match="lacks the VinBigData columns"):
        VinBigDataset(tmp_path)
    with pytest.raises(DatasetError, match="image folder"):
        VinBigDataset(write_vin(tmp_path, SMALL_ROWS), image_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="policy"):
        VinBigDataset(write_vin(tmp_path, SMALL_ROWS), policy="vote")


# --- MURA ------------------------------------------------------------------------------------
# (split, study type, patient, study folder, images, CSV label)
MURA_STUDIES = [
    ("train", "XR_WRIST", "patient00001", "study1_positive", 3, 1),
    ("train", "XR_WRIST", "patient00002", "study1_negative", 1, 0),
    ("train", "XR_HAND", "patient00002", "study1_negative", 2, 0),
    ("train", "XR_ELBOW", "patient00003", "study1_positive", 1, 1),
    ("train", "XR_ELBOW", "patient00003", "study2_negative", 2, 0),
    ("valid", "XR_WRIST", "patient11185", "study1_positive", 2, 1),
]


def write_mura(base: Path, csvs: bool = True) -> Path:
    """A tiny MURA-v1.1 tree (8-bit 40x32 PNGs) under ``base``; returns the MURA-v1.1 folder."""
    mura = base / "MURA-v1.1"
    image_rows: dict[str, list[str]] = {"train": [], "valid": []}
    study_rows: dict[str, list[str]] = {"train": [], "valid": []}
    rng = np.random.default_rng(0)
    for split, kind, patient, study, n, label in MURA_STUDIES:
        rel = f"MURA-v1.1/{split}/{kind}/{patient}/{study}/"
        (base / rel).mkdir(parents=True, exist_ok=True)
        for k in range(1, n + 1):
            (base / rel / f"image{k}.png").write_bytes(png_bytes(rng.integers(0, 255, (40, 32), dtype=np.uint8)))
            image_rows[split].append(rel + f"image{k}.png")
        study_rows[split].append(f"{rel},{label}")
    if csvs:
        for split in ("train", "valid"):
            (mura / f"{split}_image_paths.csv").write_text("\n".join(image_rows[split]) + "\n")
            (mura / f"{split}_labeled_studies.csv").write_text("\n".join(study_rows[split]) + "\n")
    return mura


@pytest.mark.parametrize("csvs", [True, False])
def test_mura_layout(tmp_path: Path, csvs: bool) -> None:
    mura = write_mura(tmp_path, csvs=csvs)
    ds = MuraDataset(tmp_path, split="train")
    assert ds.label_source == ("csv" if csvs else "folder names")
    assert ds.labels == MURA_CLASSES
    assert len(ds) == 9 and ds.missing_files() == []
    row = ds.table.set_index("image_id").loc["train/XR_WRIST/patient00001/study1_positive/image3"]
    assert row["path"] == str(mura / "train/XR_WRIST/patient00001/study1_positive/image3.png")
    assert (row["patient_id"], row["study_type"], row["view"], row["Abnormal"]) == (
        "patient00001", "XR_WRIST", 3, 1.0,
    )  # fmt: skip
    assert ds.label_matrix().shape == (9, 1)
    assert float(ds.label_matrix().sum()) == 4.0  # 3 + 1 images of the two positive studies
    studies = ds.studies.set_index("study_id")
    assert len(studies) == 5
    assert studies.loc["train/XR_ELBOW/patient00003/study2_negative", "n_images"] == 2
    assert studies["Abnormal"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]  # sorted by study_id
    assert studies.loc["train/XR_HAND/patient00002/study1_negative", "path"] == str(
        mura / "train/XR_HAND/patient00002/study1_negative"
    )
    # Same table whether given MURA-v1.1 or its parent.
    pd.testing.assert_frame_equal(MuraDataset(mura, split="train").table, ds.table)
    valid = MuraDataset(mura, split="valid")
    assert len(valid) == 2 and set(valid.table["patient_id"]) == {"patient11185"}


def test_mura_csv_labels_win_over_folder_names(tmp_path: Path) -> None:
    mura = write_mura(tmp_path)
    csv = mura / "train_labeled_studies.csv"
    csv.write_text(csv.read_text().replace("study1_positive/,1", "study1_positive/,0"))
    ds = MuraDataset(tmp_path)
    assert float(ds.label_matrix().sum()) == 0.0


def test_mura_filters_and_split(tmp_path: Path) -> None:
    write_mura(tmp_path)
    ds = MuraDataset(tmp_path, study_types=("XR_ELBOW",))
    assert set(ds.table["study_type"]) == {"XR_ELBOW"} and len(ds) == 3
    full = MuraDataset(tmp_path)
    train, val = full.split_validation(fraction=0.5, seed=3)
    assert len(train) + len(val) == len(full)
    assert not set(train["patient_id"]) & set(val["patient_id"])
    again_train, _ = full.split_validation(fraction=0.5, seed=3)
    assert again_train["image_id"].tolist() == train["image_id"].tolist()


def test_mura_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no MURA-v1.1 folder"):
        MuraDataset(tmp_path)
    write_mura(tmp_path)
    with pytest.raises(ValueError, match="split"):
        MuraDataset(tmp_path, split="test")
    with pytest.raises(ValueError, match="unknown MURA study types"):
        MuraDataset(tmp_path, study_types=("XR_KNEE",))
    (tmp_path / "MURA-v1.1" / "train_image_paths.csv").write_text("MURA-v1.1/train/knee.png\n")
    with pytest.raises(DatasetError, match="do not follow the MURA-v1.1 layout"):
        MuraDataset(tmp_path)


@pytest.mark.real_data
def test_mura_real_limb_sample(shared_data: Path) -> None:
    ds = MuraDataset(shared_data / "limb-sample", split="valid")
    assert ds.label_source == "folder names"
    assert len(ds) == 3 and ds.missing_files() == []
    assert ds.table["Abnormal"].tolist() == [1.0, 1.0, 1.0]
    assert set(ds.table["study_type"]) == {"XR_WRIST"}
    assert sorted(ds.table["patient_id"].unique()) == ["patient11185", "patient11186"]
    assert ds.studies["n_images"].tolist() == [1, 1, 1]
    with pytest.raises(DatasetError, match="no MURA images for split 'train'"):
        MuraDataset(shared_data / "limb-sample", split="train")


# --- NIH -------------------------------------------------------------------------------------
NIH_POSITIVES = {
    "Atelectasis": 76, "Cardiomegaly": 47, "Consolidation": 65, "Infiltration": 104,
    "Nodule/Mass": 121, "Pleural effusion": 70, "Pleural thickening": 54, "Pneumothorax": 37,
    "Pulmonary fibrosis": 44,
}  # fmt: skip
NIH_UNMAPPED = ("Aortic enlargement", "Calcification", "ILD", "Lung Opacity", "Other lesion")


@pytest.mark.real_data
def test_nih_real_sample(shared_data: Path) -> None:
    ds = NIHDataset(shared_data / "nih-cxr-sample")
    assert len(ds) == 500 and ds.missing_files() == []
    assert ds.table["patient_id"].nunique() == 500
    counts = ds.positive_counts()
    assert {c: counts[c] for c in NIH_LABELLED} == NIH_POSITIVES
    y = ds.label_matrix()
    for c in NIH_UNMAPPED:
        assert np.isnan(y[:, CHEST_CLASSES.index(c)]).all()
    assert not np.isnan(y[:, [CHEST_CLASSES.index(c) for c in NIH_LABELLED]]).any()
    assert int(ds.table["no_finding"].sum()) == 77
    assert ds.table["view"].value_counts().to_dict() == {"PA": 412, "AP": 88}
    assert set(ds.table["sex"]) == {"M", "F"}
    assert {"age", "sex", "view"} <= set(ds.table.columns)
    assert ds.mask().sum(axis=0).tolist() == [0 if c in NIH_UNMAPPED else 500 for c in CHEST_CLASSES]


def test_nih_small_layout(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"
        "00000001_000.png,Mass|Hernia,0,1,58,M,PA\n"
        "00000002_000.png,No Finding,0,2,40,F,AP\n"
    )
    ds = NIHDataset(tmp_path)
    t = ds.table.set_index("image_id")
    assert t.loc["00000001_000.png", "Nodule/Mass"] == 1.0
    assert t.loc["00000002_000.png", "no_finding"] == 1.0
    assert "Follow-up #" not in ds.table.columns
    assert t.loc["00000001_000.png", "patient_id"] == "1"
    (tmp_path / "labels.csv").write_text("Image Index,Finding Labels\nx.png,Mass\n")
    with pytest.raises(DatasetError, match="lacks the NIH columns"):
        NIHDataset(tmp_path)


# --- merge and splits ------------------------------------------------------------------------
def small_dataset(name: str, labels: tuple[str, ...], n: int, value: float) -> Dataset:
    table = pd.DataFrame(
        {"image_id": [f"i{k}" for k in range(n)], "path": [f"/x/{name}/i{k}.png" for k in range(n)],
         "patient_id": [f"p{k // 2}" for k in range(n)]}
    )  # fmt: skip
    for c in labels:
        table[c] = np.float32(value)
    ds = Dataset(table, labels)
    ds.name = name
    return ds


def test_merge_aligns_labels() -> None:
    a = small_dataset("a", ("x", "y"), 3, 1.0)
    b = small_dataset("b", ("y", "z"), 2, 0.0)
    m = merge_datasets([a, b])
    assert m.labels == ("x", "y", "z") and m.sources == ("a", "b")
    assert m.table["image_id"].tolist() == ["a:i0", "a:i1", "a:i2", "b:i0", "b:i1"]
    assert m.table["source_image_id"].tolist() == ["i0", "i1", "i2", "i0", "i1"]
    assert m.table["source"].tolist() == ["a"] * 3 + ["b"] * 2
    assert m.mask().tolist() == [[True, True, False]] * 3 + [[False, True, True]] * 2
    np.testing.assert_array_equal(
        m.label_matrix(), [[1, 1, np.nan]] * 3 + [[np.nan, 0, 0]] * 2
    )
    assert m.label_matrix().dtype == np.float32
    # Patients of different sources never collide, so a split cannot leak across them.
    assert m.table["patient_id"].nunique() == 2 + 1
    only_y = merge_datasets([a, b], classes=("y",))
    assert only_y.labels == ("y",) and "x" not in only_y.table.columns
    with pytest.raises(DatasetError, match="unique name"):
        merge_datasets([a, a])
    assert len(merge_datasets([a, a], names=["a1", "a2"])) == 6
    with pytest.raises(DatasetError, match="at least one"):
        merge_datasets([])


@pytest.mark.real_data
def test_merge_real_chest_sources(shared_data: Path) -> None:
    vin = VinBigDataset(shared_data / "vinbigdata" / "train.csv.gz")
    nih = NIHDataset(shared_data / "nih-cxr-sample")
    m = merge_datasets([vin, nih])
    assert len(m) == 15_500 and m.labels == CHEST_CLASSES
    known = dict(zip(CHEST_CLASSES, m.mask().sum(axis=0).tolist()))
    assert known["ILD"] == 15_000 and known["Cardiomegaly"] == 15_500
    assert m.positive_counts()["Cardiomegaly"] == VIN_MAJORITY["Cardiomegaly"] + NIH_POSITIVES["Cardiomegaly"]


def patients_table(n_patients: int, images_per_patient: int = 2) -> pd.DataFrame:
    ids = [f"p{p}" for p in range(n_patients) for _ in range(images_per_patient)]
    return pd.DataFrame({"image_id": [f"img{k}" for k in range(len(ids))], "patient_id": ids})


def test_split_by_patient() -> None:
    table = patients_table(1000)
    parts = split_by_patient(table, (0.7, 0.15, 0.15), seed=0)
    assert sum(len(p) for p in parts) == len(table)
    patient_sets = [set(p["patient_id"]) for p in parts]
    assert all(not patient_sets[i] & patient_sets[j] for i in range(3) for j in range(i + 1, 3))
    shares = [len(s) / 1000 for s in patient_sets]
    assert shares == pytest.approx([0.7, 0.15, 0.15], abs=0.05)
    # Deterministic, independent of row order, and a different seed gives another split.
    again = split_by_patient(table.sample(frac=1, random_state=1), (0.7, 0.15, 0.15), seed=0)
    assert [set(p["image_id"]) for p in again] == [set(p["image_id"]) for p in parts]
    other = split_by_patient(table, (0.7, 0.15, 0.15), seed=1)
    assert set(other[1]["image_id"]) != set(parts[1]["image_id"])
    # Adding patients does not move existing ones.
    bigger = split_by_patient(patients_table(1100), (0.7, 0.15, 0.15), seed=0)
    assert set(parts[2]["patient_id"]) <= set(bigger[2]["patient_id"])


@pytest.mark.parametrize("fractions", [(1.0,), (0.5, 0.6), (0.0, 1.0), (0.9, -0.1, 0.2)])
def test_split_by_patient_rejects_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_by_patient(patients_table(10), fractions)


# --- phantom source --------------------------------------------------------------------------
def test_phantom_chest_dataset(tmp_path: Path) -> None:
    from radtriage import radiograph
    from radtriage.datasets.phantom import PhantomChestDataset

    ds = PhantomChestDataset(tmp_path, n=4, size=64, seed=1, prevalence=0.3)
    assert len(ds) == 4 and ds.missing_files() == [] and ds.labels == CHEST_CLASSES
    y = ds.label_matrix()
    assert not np.isnan(y).any() and set(np.unique(y)) <= {0.0, 1.0}
    # Labels, boxes and pixels all agree with the generator.
    for k, image_id in enumerate(ds.table["image_id"]):
        phantom = ds.render(image_id)
        assert sorted(phantom.finding_names) == sorted(c for c, v in zip(CHEST_CLASSES, y[k]) if v)
        assert sorted(ds.boxes.loc[ds.boxes["image_id"] == image_id, "class_name"]) == sorted(phantom.finding_names)
        pixels = radiograph.load(ds.paths()[k]).pixels
        np.testing.assert_allclose(pixels, phantom.image, atol=1 / 65535)
    assert int(y.sum()) == len(ds.boxes) > 0
    mtimes = [os.stat(p).st_mtime_ns for p in ds.paths()]
    again = PhantomChestDataset(tmp_path, n=4, size=64, seed=1, prevalence=0.3)
    pd.testing.assert_frame_equal(again.table, ds.table)
    pd.testing.assert_frame_equal(again.boxes, ds.boxes)
    assert [os.stat(p).st_mtime_ns for p in again.paths()] == mtimes
    # Another size or prevalence never reuses a file made for other pixels.
    other = PhantomChestDataset(tmp_path, n=4, size=72, seed=1, prevalence=0.3)
    assert not set(other.paths()) & set(ds.paths())
