"""VinBigData Chest X-ray (VinDr-CXR) challenge: ``train.csv`` + ``train/<image_id>.dicom``.

Each image was read by 3 radiologists (of 17). ``train.csv`` has one row per finding box per
reader, or one "No finding" row (class_id 14, empty box) per reader who found nothing. Per-image
labels come from the readers' votes under a stated policy:

- ``"any"``: present if at least one reader marked the class (sensitive, noisy).
- ``"majority"``: present if more than half of the image's readers marked it (>= 2 of 3).
- ``"soft"``: the fraction of readers who marked it (0, 1/3, 2/3, 1).

In the official file every reader of an image with "No finding" said "No finding" (10,606 of
15,000 images are normal by unanimous reading), and every reader of the other 4,394 images marked
at least one finding.

VinBigData has no patient identifiers: ``patient_id`` is the ``image_id``, so patient-level
splits are image-level splits here (the dataset's own train/test split is also image-level).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from radtriage.datasets.base import Dataset, DatasetError
from radtriage.labels import CHEST_CLASSES, NO_FINDING, NO_FINDING_ID

Policy = Literal["any", "majority", "soft"]
POLICIES: tuple[str, ...] = ("any", "majority", "soft")
EXPECTED_READERS = 3
CSV_COLUMNS: tuple[str, ...] = (
    "image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max",
)
CSV_NAMES: tuple[str, ...] = ("train.csv", "train.csv.gz")
VOTE_CLASSES: tuple[str, ...] = (*CHEST_CLASSES, NO_FINDING)


class Box(NamedTuple):
    """One reader's box for one finding, in original full-resolution pixel coordinates."""

    rad_id: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class VinBigDataset(Dataset):
    """VinBigData chest radiographs with 14 finding labels aggregated over 3 readers.

    Args:
        source: the folder holding ``train.csv`` (or ``train.csv.gz``) and usually ``train/``,
            or the CSV file itself.
        image_dir: folder of ``<image_id><suffix>`` files. Default: ``<folder>/train`` when it
            exists, else none (``path`` is then None: labels and statistics only).
        policy: "any", "majority" or "soft" (see the module docstring).
        suffix: image file suffix, ".dicom" in the official release.

    Attributes:
        labels: ``CHEST_CLASSES`` (14 findings; "No finding" is not a class).
        table: image_id, path, patient_id (= image_id), n_readers, n_boxes, no_finding (the
            policy applied to "No finding" votes) and one float column per class.
        votes: int DataFrame (image_id x 15 classes incl. "No finding"): number of readers who
            marked each class.
        boxes: one row per finding box: image_id, class_name, class_id, rad_id, x_min, y_min,
            x_max, y_max (pixels of the original DICOM).

    Raises:
        DatasetError: missing CSV or image folder, unexpected columns or class names.
    """

    name = "vinbigdata"

    def __init__(
        self,
        source: str | Path,
        image_dir: str | Path | None = None,
        policy: Policy = "majority",
        suffix: str = ".dicom",
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        csv_path, default_dir = _locate(Path(source))
        image_dir = Path(image_dir) if image_dir is not None else default_dir
        if image_dir is not None and not image_dir.is_dir():
            raise DatasetError(f"the VinBigData image folder {image_dir} does not exist.")
        self.policy: Policy = policy
        self.suffix = suffix
        self.image_dir = image_dir.resolve() if image_dir is not None else None
        rows = read_annotations(csv_path)
        self.votes, n_readers = reader_votes(rows)
        _warn_irregular_readers(n_readers)
        self.boxes = rows.loc[rows["class_id"] != NO_FINDING_ID].reset_index(drop=True)
        self._box_rows: dict[str, np.ndarray] | None = None
        table = self._image_table(n_readers, policy)
        super().__init__(table, CHEST_CLASSES)

    def _image_table(self, n_readers: pd.Series, policy: Policy) -> pd.DataFrame:
        labels = aggregate_votes(self.votes, n_readers, policy)
        ids = self.votes.index.to_series(index=range(len(self.votes)), name="image_id")
        if self.image_dir is None:
            paths = pd.Series([None] * len(ids), dtype=object)
        else:
            paths = str(self.image_dir) + "/" + ids + self.suffix
        n_boxes = self.boxes.groupby("image_id").size().reindex(self.votes.index, fill_value=0)
        table = pd.DataFrame(
            {
                "image_id": ids.to_numpy(),
                "path": paths.to_numpy(),
                "patient_id": ids.to_numpy(),
                "n_readers": n_readers.to_numpy(),
                "n_boxes": n_boxes.to_numpy(),
                "no_finding": labels[NO_FINDING].to_numpy(),
            }
        )
        for c in CHEST_CLASSES:
            table[c] = labels[c].to_numpy()
        return table

    def boxes_for(self, image_id: str) -> dict[str, list[Box]]:
        """All readers' boxes of one image, grouped by class name (classes without boxes absent).

        Args:
            image_id: an id from ``table``.

        Returns:
            ``{class_name: [Box(rad_id, x_min, y_min, x_max, y_max), ...]}``; ``{}`` for an image
            every reader called normal.
        """
        if image_id not in self.votes.index:
            raise KeyError(f"unknown VinBigData image_id {image_id!r}")
        if self._box_rows is None:
            self._box_rows = self.boxes.groupby("image_id").indices
        rows = self.boxes.iloc[self._box_rows.get(image_id, np.array([], dtype=np.int64))]
        out: dict[str, list[Box]] = {}
        for r in rows.itertuples(index=False):
            out.setdefault(r.class_name, []).append(Box(r.rad_id, r.x_min, r.y_min, r.x_max, r.y_max))
        return out


def _locate(source: Path) -> tuple[Path, Path | None]:
    """(CSV path, default image folder or None) for a folder or a CSV file."""
    if source.is_file():
        folder, csv_path = source.parent, source
    elif source.is_dir():
        found = [source / n for n in CSV_NAMES if (source / n).is_file()]
        if not found:
            raise DatasetError(f"no train.csv or train.csv.gz in {source}.")
        folder, csv_path = source, found[0]
    else:
        raise DatasetError(f"the VinBigData source {source} does not exist.")
    train_dir = folder / "train"
    return csv_path, (train_dir if train_dir.is_dir() else None)


def read_annotations(csv_path: Path) -> pd.DataFrame:
    """Read and check VinBigData's ``train.csv`` (plain or gzipped).

    Returns:
        The rows with string image_id/class_name/rad_id, int class_id and float box columns.

    Raises:
        DatasetError: missing columns, unknown class names, or class_id/class_name mismatch.
    """
    try:
        rows = pd.read_csv(
            csv_path,
            dtype={"image_id": str, "class_name": str, "rad_id": str},
        )
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read the VinBigData table {csv_path.name}: {err}") from None
    missing = [c for c in CSV_COLUMNS if c not in rows.columns]
    if missing:
        raise DatasetError(f"{csv_path.name} lacks the VinBigData columns {missing}.")
    unknown = sorted(set(rows["class_name"]) - set(VOTE_CLASSES))
    if unknown:
        raise DatasetError(f"{csv_path.name} has unknown class names {unknown}.")
    expected_id = rows["class_name"].map({c: i for i, c in enumerate(VOTE_CLASSES)})
    if (expected_id != rows["class_id"]).any():
        raise DatasetError(f"{csv_path.name} has class_id values that do not match class_name.")
    if rows["rad_id"].isna().any():
        raise DatasetError(f"{csv_path.name} has rows without a rad_id (is it the test table?).")
    return rows


def reader_votes(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Per image: how many distinct readers marked each class, and how many read the image.

    Args:
        rows: the annotation rows (one per box or per "No finding" reading).

    Returns:
        (votes: int DataFrame indexed by image_id with the 15 ``VOTE_CLASSES`` columns,
        n_readers: int Series with the same index), images in sorted id order.
    """
    readings = rows[["image_id", "class_name", "rad_id"]].drop_duplicates()
    votes = (
        readings.groupby(["image_id", "class_name"]).size().unstack(fill_value=0)
        .reindex(columns=list(VOTE_CLASSES), fill_value=0).astype(np.int64)
    )
    votes.columns.name = None
    n_readers = rows.groupby("image_id")["rad_id"].nunique().reindex(votes.index)
    return votes, n_readers


def aggregate_votes(votes: pd.DataFrame, n_readers: pd.Series, policy: Policy) -> pd.DataFrame:
    """Reader votes -> per-image float labels.

    Args:
        votes: readers per class (images x classes), as from ``reader_votes``.
        n_readers: readers per image (>= 1).
        policy: "any" (>= 1 vote), "majority" (votes > n_readers / 2) or "soft" (votes / n_readers).

    Returns:
        float32 DataFrame like ``votes``: {0, 1} for "any"/"majority", [0, 1] for "soft".
    """
    n = n_readers.to_numpy()[:, None]
    v = votes.to_numpy()
    if policy == "any":
        out = v >= 1
    elif policy == "majority":
        out = 2 * v > n
    elif policy == "soft":
        out = v / n
    else:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    return pd.DataFrame(out.astype(np.float32), index=votes.index, columns=votes.columns)


def _warn_irregular_readers(n_readers: pd.Series) -> None:
    """Warn (once, with a count) when some images were not read by exactly 3 readers."""
    odd = n_readers != EXPECTED_READERS
    if odd.any():
        warnings.warn(
            f"{int(odd.sum())} VinBigData images have a reader count other than "
            f"{EXPECTED_READERS} (min {n_readers.min()}, max {n_readers.max()}); their labels "
            f"use their own reader count.",
            stacklevel=3,
        )
