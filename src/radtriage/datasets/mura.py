"""MURA v1.1 (Stanford upper-limb radiographs): one normal/abnormal label per study.

Layout (as distributed)::

    MURA-v1.1/
      train_image_paths.csv     MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png
      train_labeled_studies.csv MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/,1
      valid_image_paths.csv, valid_labeled_studies.csv
      train/<study type>/<patient>/<study>_<positive|negative>/image<k>.png
      valid/...

Both CSVs are headerless. Where they are absent (e.g. a partial copy), the table is built from the
folder tree and each study's label is read from its folder name (``_positive`` = abnormal).
Images inherit their study's label; a study's verdict is the mean of its images' probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from radtriage.datasets.base import Dataset, DatasetError, split_by_patient
from radtriage.labels import MURA_CLASSES, MURA_STUDY_TYPES

Split = Literal["train", "valid"]
ROOT_NAME = "MURA-v1.1"
LABEL = MURA_CLASSES[0]  # "Abnormal"
FOLDER_LABELS = {"positive": 1.0, "negative": 0.0}


class MuraDataset(Dataset):
    """One split of MURA v1.1: an image table and a study table.

    Args:
        root: the folder containing ``MURA-v1.1/``, or ``MURA-v1.1`` itself.
        split: "train" or "valid" (MURA's own split; its test set is not public).
        study_types: keep only these study types (default: all of ``MURA_STUDY_TYPES``).

    Attributes:
        labels: ``MURA_CLASSES`` (("Abnormal",)).
        table: one row per image: image_id (path below ``MURA-v1.1/`` without suffix, e.g.
            ``train/XR_WRIST/patient00001/study1_positive/image1``), path, patient_id
            (``patient00001``), study_id (study folder below ``MURA-v1.1/``), study_type
            (``XR_WRIST``), view (k of ``image<k>.png``), Abnormal (0.0/1.0 from the study label).
        studies: one row per study: study_id, patient_id, study_type, Abnormal, n_images, path.
        label_source: "csv" or "folder names".

    Raises:
        DatasetError: no MURA-v1.1 folder, an unparsable row, or no images for the split.
    """

    name = "mura"

    def __init__(
        self,
        root: str | Path,
        split: Split = "train",
        study_types: tuple[str, ...] = MURA_STUDY_TYPES,
    ) -> None:
        if split not in ("train", "valid"):
            raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
        unknown = sorted(set(study_types) - set(MURA_STUDY_TYPES))
        if unknown:
            raise ValueError(f"unknown MURA study types {unknown}; known: {MURA_STUDY_TYPES}")
        self.mura_dir = find_mura_dir(Path(root))
        self.split: Split = split
        images_csv = self.mura_dir / f"{split}_image_paths.csv"
        studies_csv = self.mura_dir / f"{split}_labeled_studies.csv"
        if images_csv.is_file() and studies_csv.is_file():
            rel_paths = _read_headerless(images_csv, ["rel_path"])["rel_path"]
            study_labels = _read_headerless(studies_csv, ["study_dir", LABEL])
            self.label_source = "csv"
        else:
            rel_paths = _scan_tree(self.mura_dir, split)
            study_labels = None
            self.label_source = "folder names"
        table = image_table(rel_paths, self.mura_dir.parent, study_labels)
        table = table[table["study_type"].isin(study_types)].reset_index(drop=True)
        if table.empty:
            raise DatasetError(f"no MURA images for split {split!r} under {self.mura_dir}.")
        super().__init__(table, MURA_CLASSES)
        self.studies = study_table(self.table)

    def split_validation(
        self, fraction: float = 0.1, seed: int = 0
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Split this table into (train, validation) by patient, for tuning without MURA's valid.

        Args:
            fraction: share of patients for validation, in (0, 1).
            seed: random seed.

        Returns:
            (train_table, validation_table), no patient in both.
        """
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        train, val = split_by_patient(self.table, (1 - fraction, fraction), seed=seed)
        return train, val


def find_mura_dir(root: Path) -> Path:
    """The ``MURA-v1.1`` folder given itself or its parent; DatasetError otherwise."""
    for candidate in (root / ROOT_NAME, root):
        if candidate.name == ROOT_NAME and candidate.is_dir():
            return candidate.resolve()
    raise DatasetError(f"no {ROOT_NAME} folder at or inside {root}.")


def _read_headerless(csv_path: Path, names: list[str]) -> pd.DataFrame:
    try:
        return pd.read_csv(csv_path, header=None, names=names, dtype={names[0]: str})
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {csv_path.name}: {err}") from None


def _scan_tree(mura_dir: Path, split: str) -> pd.Series:
    """Image paths ``MURA-v1.1/<split>/<type>/<patient>/<study>/image<k>.png`` found on disk."""
    found = sorted(
        p.relative_to(mura_dir.parent).as_posix()
        for p in (mura_dir / split).glob("*/*/*/*.png")
        if not p.name.startswith(".")
    )
    return pd.Series(found, name="rel_path", dtype=str)


def image_table(
    rel_paths: pd.Series, base: Path, study_labels: pd.DataFrame | None
) -> pd.DataFrame:
    """Build the image table from MURA-relative paths.

    Args:
        rel_paths: paths like ``MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png``.
        base: the folder containing ``MURA-v1.1``.
        study_labels: headerless study CSV as (study_dir, Abnormal), or None to read labels
            from the study folder names.

    Returns:
        The image table described in :class:`MuraDataset`.
    """
    pattern = (
        rf"^{ROOT_NAME}/(?P<split>train|valid)/(?P<study_type>XR_[A-Z]+)/(?P<patient_id>patient\d+)/"
        r"(?P<study>study\d+_(?P<folder_label>positive|negative))/image(?P<view>\d+)\.png$"
    )
    parts = rel_paths.str.extract(pattern)
    bad = parts["split"].isna()
    if bad.any():
        raise DatasetError(
            f"{int(bad.sum())} MURA image paths do not follow the MURA-v1.1 layout "
            f"(first: {rel_paths[bad].iloc[0]})."
        )
    rel = rel_paths.str.slice(len(ROOT_NAME) + 1)
    study_id = parts["split"] + "/" + parts["study_type"] + "/" + parts["patient_id"] + "/" + parts["study"]
    table = pd.DataFrame(
        {
            "image_id": rel.str.slice(0, -len(".png")).to_numpy(),
            "path": (str(base.resolve()) + "/" + rel_paths).to_numpy(),
            "patient_id": parts["patient_id"].to_numpy(),
            "study_id": study_id.to_numpy(),
            "study_type": parts["study_type"].to_numpy(),
            "view": parts["view"].astype(int).to_numpy(),
        }
    )
    if study_labels is None:
        table[LABEL] = parts["folder_label"].map(FOLDER_LABELS).astype(np.float32).to_numpy()
    else:
        key = study_labels["study_dir"].str.slice(len(ROOT_NAME) + 1).str.rstrip("/")
        labels = pd.Series(study_labels[LABEL].astype(np.float32).to_numpy(), index=key.to_numpy())
        table[LABEL] = table["study_id"].map(labels).astype(np.float32)
        unlabelled = table[LABEL].isna()
        if unlabelled.any():
            raise DatasetError(f"{int(unlabelled.sum())} MURA images belong to no labelled study.")
    return table


def study_table(images: pd.DataFrame) -> pd.DataFrame:
    """One row per study: study_id, patient_id, study_type, Abnormal, n_images, path (folder)."""
    studies = images.groupby("study_id", sort=True).agg(
        patient_id=("patient_id", "first"),
        study_type=("study_type", "first"),
        **{LABEL: (LABEL, "first")},
        n_images=("image_id", "size"),
        path=("path", "first"),
    )
    studies["path"] = studies["path"].str.rsplit("/", n=1).str[0]
    return studies.reset_index()
