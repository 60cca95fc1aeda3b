"""Synthetic chest phantoms as a dataset source, written as 16-bit PNGs so ``prepare`` reads them
like any real image.

Labels are exact (the generator knows what it drew) and complete (no NaN); a model that learns a
class only from phantoms records that as ``PROVENANCE_SYNTHETIC``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from radtriage.datasets.base import Dataset
from radtriage.labels import CHEST_CLASSES
from radtriage.phantoms.chest import render_chest
from radtriage.phantoms.types import Phantom

BOX_COLUMNS = ["image_id", "class_name", "x_min", "y_min", "x_max", "y_max"]
PNG_MAX = 65535  # 16-bit PNGs keep the phantom's grey levels to 1.5e-5


class PhantomChestDataset(Dataset):
    """``n`` synthetic PA chest radiographs with random findings, written under ``out_dir``.

    Each class is present independently with probability ``prevalence``; everything is fixed by
    ``seed`` (same arguments -> same images and labels). Existing files are not rewritten;
    images with findings are rendered again for their boxes.

    Args:
        out_dir: folder for ``images/<image_id>.png`` (created if needed).
        n: number of images (>= 1).
        size: image side in pixels (>= 64).
        seed: random seed.
        prevalence: per-class probability in [0, 1].
        classes: the findings to draw from (subset of ``CHEST_CLASSES``).

    Attributes:
        labels: ``CHEST_CLASSES`` (classes outside ``classes`` are always 0.0).
        table: image_id (see :func:`phantom_id`), path, patient_id (= image_id), phantom_seed,
            one 0/1 column per class.
        boxes: one row per finding: image_id, class_name, x_min, y_min, x_max, y_max (pixels).
    """

    name = "phantom"

    def __init__(
        self,
        out_dir: str | Path,
        n: int,
        size: int = 256,
        seed: int = 0,
        prevalence: float = 0.15,
        classes: Sequence[str] = CHEST_CLASSES,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 0 <= prevalence <= 1:
            raise ValueError(f"prevalence must be in [0, 1], got {prevalence}")
        images = Path(out_dir).resolve() / "images"
        images.mkdir(parents=True, exist_ok=True)
        self.size = size
        rng = np.random.default_rng(seed)
        present = rng.random((n, len(classes))) < prevalence
        phantom_seeds = rng.integers(0, 2**31 - 1, size=n)
        rows, boxes = [], []
        for k in range(n):
            findings = [c for c, p in zip(classes, present[k]) if p]
            image_id = phantom_id(int(phantom_seeds[k]), size, findings)
            path = images / f"{image_id}.png"
            row = {"image_id": image_id, "path": str(path), "patient_id": image_id,
                   "phantom_seed": int(phantom_seeds[k]), "findings": findings}  # fmt: skip
            if findings or not path.exists():  # boxes need a render; normals only a missing file
                phantom = self.render(row)
                if not path.exists():
                    _write_png(path, phantom.image)
                boxes += [(image_id, f.name, *f.box) for f in phantom.findings]
            rows.append(row)
        table = pd.DataFrame(rows)
        for c in CHEST_CLASSES:
            table[c] = np.float32([c in f for f in table["findings"]])
        super().__init__(table.drop(columns="findings"), CHEST_CLASSES)
        self._findings = dict(zip(table["image_id"], table["findings"]))
        self.boxes = pd.DataFrame(boxes, columns=BOX_COLUMNS)

    def render(self, row: dict | str) -> Phantom:
        """Render one image again in memory (masks and anatomy included)."""
        if isinstance(row, str):
            match = self.table.loc[self.table["image_id"] == row]
            if match.empty:
                raise KeyError(f"unknown phantom image_id {row!r}")
            row = {"phantom_seed": int(match["phantom_seed"].iloc[0]), "findings": self._findings[row]}
        return render_chest(int(row["phantom_seed"]), self.size, row["findings"])


def phantom_id(phantom_seed: int, size: int, findings: Sequence[str]) -> str:
    """``phantom-<seed>-<size>px-<hex bitmask of the findings' class ids>``.

    The id names everything the pixels depend on, so a file on disk is only reused for the
    identical image.
    """
    bits = sum(1 << CHEST_CLASSES.index(f) for f in findings)
    return f"phantom-{phantom_seed}-{size}px-{bits:04x}"


def _write_png(path: Path, image: np.ndarray) -> None:
    """Save float [0, 1] as a 16-bit grayscale PNG, atomically."""
    pixels = np.round(np.clip(image, 0, 1) * PNG_MAX).astype(np.uint16)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(pixels).save(tmp, format="PNG")
    tmp.replace(path)
