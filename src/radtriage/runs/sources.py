"""Data for a run: a :class:`~radtriage.runs.config.DataSource` -> an image table, which images are
phantoms, labels for evaluation, what the training labels teach per class, and cached arrays.

Phantom DICOMs written by :mod:`radtriage.phantoms` are recognised from their Manufacturer tag even
when a source is not declared synthetic, so phantom labels are never reported as real ones.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radtriage import contract, labels, radiograph
from radtriage.datasets.base import Dataset, DatasetError
from radtriage.prepare import CacheIndex, load_cached, stack_cached
from radtriage.runs.config import DataSource

PHANTOM_MANUFACTURER = "radtriage phantom generator"  # written by radtriage.phantoms.write_dicom
PHANTOM_MURA_VALID_FRACTION = 0.2  # patients of rendered MURA-layout phantoms that go to "valid"
IN_MEMORY_LIMIT_BYTES = 2_000_000_000  # larger splits are stacked into a float16 memmap instead
SYNTHETIC_COLUMN = "synthetic"


def load_source(source: DataSource, study_split: str = "train",
                study_types: Sequence[str] = labels.MURA_STUDY_TYPES) -> Dataset:
    """The :class:`~radtriage.datasets.Dataset` of one source (MURA: its ``study_split``).

    Raises:
        DatasetError: the folder does not hold the expected layout.
    """
    if source.kind == "vinbigdata":
        from radtriage.datasets import VinBigDataset

        ds: Dataset = VinBigDataset(source.path, policy=source.policy)  # type: ignore[arg-type]
        if ds.table["path"].isna().all():
            raise DatasetError(f"the VinBigData source {source.path} has a table but no train/ image folder.")
        return ds
    if source.kind == "nih":
        from radtriage.datasets import NIHDataset

        return NIHDataset(source.path)
    if source.kind == "phantom_chest":
        from radtriage.datasets.phantom import PhantomChestDataset

        return PhantomChestDataset(source.path, source.n, source.size, source.seed, source.prevalence)
    from radtriage.datasets import MuraDataset

    if source.n > 0:
        ensure_phantom_mura(source)
    return MuraDataset(source.path, study_split, tuple(study_types))  # type: ignore[arg-type]


def ensure_phantom_mura(source: DataSource, workers: int = 2) -> Path:
    """Render ``source.n`` limb phantom studies into ``source.path`` (MURA-v1.1 layout) unless present.

    The output depends only on (n, size, seed, prevalence), so a re-run re-uses the files; a
    folder written with other settings is refused rather than silently mixed.

    Returns:
        the ``MURA-v1.1`` folder.
    """
    from radtriage.phantoms import write_mura

    root = Path(source.path)
    stamp = root / "phantom_settings.json"
    settings = {"generator": "radtriage.phantoms.write_mura", "n_studies": source.n, "size": source.size,
                "seed": source.seed, "abnormal_prob": source.prevalence,
                "valid_fraction": PHANTOM_MURA_VALID_FRACTION}
    if stamp.is_file():
        if json.loads(stamp.read_text()) != settings:
            raise DatasetError(f"{root} holds limb phantoms written with other settings ({stamp}): "
                               "use another folder or delete it.")
        return root / "MURA-v1.1"
    base = write_mura(root, source.n, seed=source.seed, size=source.size,
                      valid_fraction=PHANTOM_MURA_VALID_FRACTION, abnormal_prob=source.prevalence, workers=workers)
    stamp.write_text(json.dumps(settings, indent=1))
    return base


def is_phantom_file(path: str | Path) -> bool:
    """True when the file is a DICOM written by radtriage's phantom generator (its Manufacturer tag)."""
    try:
        meta = radiograph.load(path, min_side=radiograph.MIN_SIDE_PX).metadata
    except radiograph.RadiographError:
        return False
    return (meta.manufacturer or "").strip().lower() == PHANTOM_MANUFACTURER


def resolve_synthetic(source: DataSource, table: pd.DataFrame) -> bool:
    """Whether a source's images are phantoms: declared, or detected from its first file.

    A source not declared synthetic whose first image is a phantom DICOM is treated as synthetic
    (with a warning), so phantom labels are never reported as real ones.
    """
    if source.synthetic:
        return True
    paths = [p for p in table["path"].tolist() if isinstance(p, str) and Path(p).is_file()]
    if paths and is_phantom_file(paths[0]):
        warnings.warn(f"source {source.label!r} holds phantom images: its labels are recorded as synthetic.",
                      stacklevel=2)
        return True
    return False


def binary_labels(y: np.ndarray) -> np.ndarray:
    """Labels for evaluation: soft labels (reader fractions) -> 1 where >= 0.5; NaN kept."""
    y = np.asarray(y, np.float32)
    return np.where(np.isnan(y), np.nan, (y >= 0.5).astype(np.float32)).astype(np.float32)


def class_provenance(table: pd.DataFrame, classes: Sequence[str]) -> dict[str, str]:
    """Provenance of each class from the TRAINING table, by :func:`radtriage.contract.class_provenance`.

    Args:
        table: training images with one label column per class (1 present, 0 absent, NaN
            missing, or a soft fraction) and a bool ``synthetic`` column.
        classes: the label columns.

    Returns:
        class -> ``labels.PROVENANCE_REAL`` | ``PROVENANCE_SYNTHETIC`` | ``PROVENANCE_NONE``.
    """
    return contract.class_provenance(classes, table[list(classes)].to_numpy(np.float64),
                                     table[SYNTHETIC_COLUMN].astype(bool).to_numpy())


def describe_split(name: str, table: pd.DataFrame, how: str) -> str:
    """e.g. ``"test: 10% of patients, hash split seed 0; 150 images of 150 patients"``."""
    n_pat = table["patient_id"].nunique() if len(table) else 0
    return f"{name}: {how}; {len(table)} images of {n_pat} patients"


def drop_failed(table: pd.DataFrame, index: CacheIndex) -> pd.DataFrame:
    """The rows of ``table`` whose image is in the cache (the others failed to load)."""
    ok = set(index.image_ids)
    return table[table["image_id"].isin(ok)].reset_index(drop=True)


def cached_arrays(index: CacheIndex, table: pd.DataFrame, scratch: Path, name: str) -> np.ndarray:
    """(N, S, S, 1) cached images of ``table`` in table order: in memory, or a float16 memmap if large."""
    ids = table["image_id"].tolist()
    size = index.config.size
    if len(ids) * size * size * 4 <= IN_MEMORY_LIMIT_BYTES:
        return load_cached(index, ids)
    scratch.mkdir(parents=True, exist_ok=True)
    return stack_cached(index, ids, scratch / f"{name}_images.npy")


def positives(table: pd.DataFrame, classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """class -> {"real": n positive real images, "synthetic": n positive phantom images} (:func:`contract.positive_labels`)."""
    synthetic = table[SYNTHETIC_COLUMN].astype(bool).to_numpy()
    pos = contract.positive_labels(table[list(classes)].to_numpy(np.float64))
    return {c: {"real": int((pos[:, i] & ~synthetic).sum()), "synthetic": int((pos[:, i] & synthetic).sum())}
            for i, c in enumerate(classes)}
