"""Kermany et al. (Cell 172(5), 2018): paediatric chest x-rays graded normal, bacterial or viral pneumonia
(CC BY 4.0). Used to adapt a backbone to real chest radiographs, not as labels of the 14 classes
(pneumonia has no exact VinBigData class).

Layout::

    kermany-pediatric/
      labels.csv        path (relative), split (train | test), label (normal | bacterial | viral)
      train/NORMAL/*.jpeg, train/PNEUMONIA/*.jpeg, test/...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radtriage.datasets.base import Dataset, DatasetError
from radtriage.labels import KERMANY_CLASSES

GRADES: dict[str, str] = {"normal": KERMANY_CLASSES[0], "bacterial": KERMANY_CLASSES[1], "viral": KERMANY_CLASSES[2]}


class KermanyDataset(Dataset):
    """One split of the Kermany paediatric chest x-rays, one-hot over ``KERMANY_CLASSES``.

    Args:
        root: folder holding ``labels.csv``.
        split: "train" or "test" (the dataset's own split).

    Attributes:
        labels: ``KERMANY_CLASSES`` (normal, bacterial pneumonia, viral pneumonia).
        table: image_id (the relative path), path, patient_id (the file name's patient part, e.g.
            "person1_bacteria_1" -> "person1"; "IM-0001-0001" -> "IM-0001"), grade, one column per class.

    Raises:
        DatasetError: missing files or columns, an unknown split or grade.
    """

    name = "kermany"

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = Path(root)
        if split not in ("train", "test"):
            raise DatasetError(f"Kermany splits are 'train' and 'test', got {split!r}.")
        csv_path = root / "labels.csv"
        if not csv_path.is_file():
            raise DatasetError(f"no labels.csv in {root}.")
        rows = pd.read_csv(csv_path, dtype=str)
        if missing := [c for c in ("path", "split", "label") if c not in rows.columns]:
            raise DatasetError(f"{csv_path.name} lacks the columns {missing}.")
        if bad := sorted(set(rows["label"]) - set(GRADES)):
            raise DatasetError(f"{csv_path.name} has unknown labels {bad}.")
        rows = rows[rows["split"] == split].reset_index(drop=True)
        stems = rows["path"].map(lambda p: Path(p).stem)
        table = pd.DataFrame({
            "image_id": rows["path"],
            "path": [str(root / p) for p in rows["path"]],
            "patient_id": stems.map(_patient),
            "grade": rows["label"],
            **{c: (rows["label"].map(GRADES) == c).astype(np.float32) for c in KERMANY_CLASSES},
        })
        super().__init__(table, KERMANY_CLASSES)


def _patient(stem: str) -> str:
    """``person12_virus_34`` -> ``person12``; ``IM-0115-0001`` / ``NORMAL2-IM-1427-0001`` -> without the last part."""
    if stem.startswith("person"):
        return stem.split("_", 1)[0]
    return stem.rsplit("-", 1)[0]
