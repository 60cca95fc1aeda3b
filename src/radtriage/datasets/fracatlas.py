"""FracAtlas (Abedeen et al., Scientific Data 10, 521, 2023): musculoskeletal radiographs labelled
normal or fracture by two radiologists, checked by an orthopaedist (CC BY 4.0).

Layout::

    fracatlas/
      labels.csv       image_id, part, label (normal | fracture), fractured, hardware, frontal, lateral, oblique
      images/IMG*.jpg

``part`` is hand (hand, wrist, fingers, often the forearm), shoulder (shoulder, humerus),
hand+shoulder (whole-arm views), leg or hip. There are no patient ids, and byte-identical files
exist: the table's ``patient_id`` is the file's content hash, so identical files are one "patient"
and never fall in two splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radtriage.datasets.base import Dataset, DatasetError
from radtriage.labels import FRACATLAS_OTHER_PARTS, FRACATLAS_UPPER_LIMB_PARTS, MURA_CLASSES

COLUMNS: tuple[str, ...] = ("image_id", "part", "label")
LABELS: dict[str, float] = {"normal": 0.0, "fracture": 1.0}


class FracAtlasDataset(Dataset):
    """FracAtlas images of some body parts, with MURA's one class: 1.0 fracture, 0.0 normal.

    Args:
        root: folder holding ``labels.csv`` and ``images/``.
        parts: body parts to keep (default: the upper limb: hand, shoulder, hand+shoulder).

    Attributes:
        labels: ``MURA_CLASSES`` (``"Abnormal"`` = fracture).
        table: image_id, path, patient_id (content hash: identical files share it), part,
            hardware (0/1), frontal/lateral/oblique (0/1), and the label column.

    Raises:
        DatasetError: missing files or columns, an unknown part or label.
    """

    name = "fracatlas"

    def __init__(self, root: str | Path, parts: Sequence[str] = FRACATLAS_UPPER_LIMB_PARTS) -> None:
        root = Path(root)
        csv_path, images = root / "labels.csv", root / "images"
        if not csv_path.is_file() or not images.is_dir():
            raise DatasetError(f"{root} does not hold FracAtlas's labels.csv and images/ folder.")
        known = (*FRACATLAS_UPPER_LIMB_PARTS, *FRACATLAS_OTHER_PARTS)
        unknown = sorted(set(parts) - set(known))
        if unknown:
            raise DatasetError(f"unknown FracAtlas parts {unknown}; known: {', '.join(known)}.")
        rows = pd.read_csv(csv_path, dtype={"image_id": str, "part": str, "label": str})
        if missing := [c for c in COLUMNS if c not in rows.columns]:
            raise DatasetError(f"{csv_path.name} lacks the columns {missing}.")
        if bad := sorted(set(rows["label"]) - set(LABELS)):
            raise DatasetError(f"{csv_path.name} has unknown labels {bad}.")
        rows = rows[rows["part"].isin(parts)].reset_index(drop=True)
        paths = [images / i for i in rows["image_id"]]
        if absent := [p.name for p in paths if not p.is_file()]:
            raise DatasetError(f"{len(absent)} FracAtlas images listed in labels.csv are missing, e.g. {absent[0]}.")
        table = pd.DataFrame({
            "image_id": rows["image_id"],
            "path": [str(p) for p in paths],
            "patient_id": [hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in paths],
            "part": rows["part"],
            **{c: rows[c].astype(int) for c in ("hardware", "frontal", "lateral", "oblique") if c in rows},
            MURA_CLASSES[0]: rows["label"].map(LABELS).astype(np.float32),
        })
        super().__init__(table, MURA_CLASSES)
