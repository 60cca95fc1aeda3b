"""NIH ChestX-ray14 (a sample): ``images/*.png`` + ``labels.csv`` with the dataset's own rows.

NIH findings are mapped onto the VinBigData classes by ``radtriage.labels.nih_to_chest_vector``:
9 of the 14 classes get 0/1 labels; Aortic enlargement, Calcification, ILD, Lung Opacity and
Other lesion are never labelled by NIH and stay NaN (missing, not negative). The labels were mined
from reports by NLP and are noisy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radtriage.datasets.base import Dataset, DatasetError
from radtriage.labels import CHEST_CLASSES, NIH_NO_FINDING, nih_to_chest_vector

CSV_COLUMNS: dict[str, str] = {
    "Image Index": "image_id",
    "Finding Labels": "finding_labels",
    "Patient ID": "patient_id",
    "Patient Age": "age",
    "Patient Gender": "sex",
    "View Position": "view",
}


class NIHDataset(Dataset):
    """NIH ChestX-ray14 images with labels on the VinBigData classes.

    Args:
        root: folder holding ``labels.csv`` and ``images/``.
        labels_csv: file name of the label table inside ``root``.
        image_dir: folder name of the images inside ``root``.

    Attributes:
        labels: ``CHEST_CLASSES``; the 5 classes NIH never labels are all NaN.
        table: image_id (``Image Index``, e.g. ``00000075_000.png``), path, patient_id (NIH's
            numeric id as str), age (years), sex ("M"/"F"), view ("PA"/"AP"), finding_labels
            (the raw NIH string), no_finding (1.0 for "No Finding"), one float column per class.
            No other column of the CSV is kept.

    Raises:
        DatasetError: missing files or columns.
    """

    name = "nih"

    def __init__(
        self, root: str | Path, labels_csv: str = "labels.csv", image_dir: str = "images"
    ) -> None:
        root = Path(root)
        csv_path, images = root / labels_csv, root / image_dir
        if not csv_path.is_file():
            raise DatasetError(f"no {labels_csv} in {root}.")
        if not images.is_dir():
            raise DatasetError(f"no {image_dir}/ folder in {root}.")
        rows = _read(csv_path)
        vectors = np.stack([nih_to_chest_vector(s) for s in rows["finding_labels"]])
        table = pd.DataFrame(
            {
                "image_id": rows["image_id"].to_numpy(),
                "path": (str(images.resolve()) + "/" + rows["image_id"]).to_numpy(),
                "patient_id": rows["patient_id"].to_numpy(),
                "age": rows["age"].to_numpy(),
                "sex": rows["sex"].to_numpy(),
                "view": rows["view"].to_numpy(),
                "finding_labels": rows["finding_labels"].to_numpy(),
                "no_finding": (rows["finding_labels"] == NIH_NO_FINDING).astype(np.float32).to_numpy(),
            }
        )
        for i, c in enumerate(CHEST_CLASSES):
            table[c] = vectors[:, i]
        super().__init__(table, CHEST_CLASSES)


def _read(csv_path: Path) -> pd.DataFrame:
    """The label CSV reduced to the known columns, renamed; DatasetError if any is missing."""
    try:
        rows = pd.read_csv(csv_path, dtype={"Image Index": str, "Patient ID": str})
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {csv_path.name}: {err}") from None
    missing = [c for c in CSV_COLUMNS if c not in rows.columns]
    if missing:
        raise DatasetError(f"{csv_path.name} lacks the NIH columns {missing}.")
    rows = rows[list(CSV_COLUMNS)].rename(columns=CSV_COLUMNS)
    rows["finding_labels"] = rows["finding_labels"].fillna("").astype(str)
    return rows
