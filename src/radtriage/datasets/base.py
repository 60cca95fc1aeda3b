"""What every dataset source shares: a per-image table, its label matrix, patient-level splits.

A dataset is a thin object around a pandas table with one row per image (torchxrayvision-like):

- ``image_id`` (str): unique within the dataset.
- ``path`` (str): absolute path of the image file (may be missing where a source has no images).
- ``patient_id`` (str): who the image belongs to; splits never put one patient in two parts.
- one float column per class in ``labels``: 1.0 present, 0.0 absent, NaN missing.

Sources add their own columns (study, view, age, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radtriage.splits import patient_fraction

SPLIT_SALT = "radtriage-split"
REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "path", "patient_id")


class DatasetError(ValueError):
    """A dataset's files or table are not what the source expects. ``str(err)`` is one sentence."""


class Dataset:
    """Base class: a table of images and the class names of its label columns.

    Attributes:
        name: short source name, used as the ``source`` column and id prefix when merging.
        labels: class names; each is a float column of ``table``.
        table: one row per image (see the module docstring for the columns).
    """

    name: str = "dataset"

    def __init__(self, table: pd.DataFrame, labels: Sequence[str]) -> None:
        self.labels: tuple[str, ...] = tuple(labels)
        self.table: pd.DataFrame = table.reset_index(drop=True)
        validate_table(self.table, self.labels)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {len(self.labels)} classes)"

    def label_matrix(self) -> np.ndarray:
        """Labels as float32 (N, C) in {0, 1} (or [0, 1] for soft labels), NaN = missing."""
        return label_matrix(self.table, self.labels)

    def mask(self) -> np.ndarray:
        """bool (N, C): True where the label is known (not NaN)."""
        return ~np.isnan(self.label_matrix())

    def paths(self) -> list[str]:
        """Absolute image paths, in table order."""
        return self.table["path"].tolist()

    def missing_files(self) -> list[str]:
        """image_ids whose ``path`` is empty or does not exist on disk."""
        exists = [isinstance(p, str) and Path(p).is_file() for p in self.table["path"]]
        return self.table.loc[~np.asarray(exists, dtype=bool), "image_id"].tolist()

    def positive_counts(self) -> dict[str, int]:
        """Number of images with label 1.0, per class."""
        return {c: int((self.table[c] == 1.0).sum()) for c in self.labels}


def validate_table(table: pd.DataFrame, labels: Sequence[str]) -> None:
    """Raise DatasetError unless ``table`` has the required and label columns and unique image_ids."""
    missing = [c for c in (*REQUIRED_COLUMNS, *labels) if c not in table.columns]
    if missing:
        raise DatasetError(f"the image table lacks the columns {missing}.")
    if table["image_id"].duplicated().any():
        n = int(table["image_id"].duplicated().sum())
        raise DatasetError(f"the image table has {n} duplicated image_id values.")


def label_matrix(table: pd.DataFrame, labels: Sequence[str]) -> np.ndarray:
    """float32 (N, C) matrix of the label columns ``labels`` of ``table``, NaN kept."""
    return table.loc[:, list(labels)].to_numpy(dtype=np.float32, na_value=np.nan)


def split_by_patient(
    table: pd.DataFrame,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[pd.DataFrame, ...]:
    """Split a table into parts (e.g. train/val/test) so that no patient is in two parts.

    Each patient gets a stable pseudo-random number in [0, 1) from a hash of its id and the seed
    (``radtriage.splits.patient_fraction``) and goes to the part whose cumulative-fraction
    interval holds it. So a patient's part never changes when images or patients are added,
    removed or reordered, and part sizes match ``fractions`` only approximately (by patients,
    not images).

    Args:
        table: image table with a ``patient_id`` column.
        fractions: one positive fraction per part (>= 2 parts), summing to 1 (within 1e-6).
        seed: names the split; same seed -> same split, another seed -> an independent one.

    Returns:
        One DataFrame per fraction, each in the original row order.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) < 2 or (fractions <= 0).any():
        raise ValueError(f"fractions must be >= 2 positive numbers, got {fractions.tolist()}")
    if abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions.sum():.6f}")
    patients = table["patient_id"].astype(str)
    unique = patients.unique()
    salt = f"{SPLIT_SALT}-{seed}"
    u = np.array([patient_fraction(p, salt) for p in unique])
    bounds = np.cumsum(fractions)[:-1]  # the last part takes everything above the last bound
    part = pd.Series(np.searchsorted(bounds, u, side="right"), index=unique)
    row_part = part.loc[patients].to_numpy()
    return tuple(table[row_part == i] for i in range(len(fractions)))
