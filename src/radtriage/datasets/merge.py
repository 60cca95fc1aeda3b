"""Merging sources into one training table (torchxrayvision's Merge_Dataset approach).

Label columns are aligned on a class list; a class a source does not label becomes NaN for its
images, and the per-class mask (label is not NaN) tells the loss which entries to ignore.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from radtriage.datasets.base import Dataset, DatasetError


class MergedDataset(Dataset):
    """Several datasets in one table.

    Attributes:
        labels: the aligned class list.
        table: every source's columns (absent ones NaN), plus ``source`` (the source's name) and
            ``source_image_id`` (its own id); ``image_id`` and ``patient_id`` are prefixed
            ``"<source>:"`` so that they are unique across sources.
        sources: the source names, in the given order.
    """

    name = "merged"

    def __init__(self, table: pd.DataFrame, labels: Sequence[str], sources: Sequence[str]) -> None:
        super().__init__(table, labels)
        self.sources = tuple(sources)


def merge_datasets(
    datasets: Sequence[Dataset],
    classes: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> MergedDataset:
    """Concatenate datasets with their label columns aligned on one class list.

    Args:
        datasets: at least one dataset.
        classes: the class list of the result; default: the union of the datasets' labels, in
            first-seen order. Classes of a dataset outside ``classes`` are dropped.
        names: one unique source name per dataset; default: each dataset's ``name`` (must then
            be unique: pass names to merge two datasets of one kind).

    Returns:
        A MergedDataset; ``mask()`` is False where a source does not label a class.

    Raises:
        DatasetError: no datasets or duplicated source names.
    """
    if not datasets:
        raise DatasetError("merge_datasets needs at least one dataset.")
    names = [d.name for d in datasets] if names is None else list(names)
    if len(names) != len(datasets) or len(set(names)) != len(names):
        raise DatasetError(f"merge_datasets needs one unique name per dataset, got {names}.")
    if classes is None:
        classes = list(dict.fromkeys(c for d in datasets for c in d.labels))
    parts = [_aligned(d, name, classes) for d, name in zip(datasets, names)]
    table = pd.concat(parts, ignore_index=True, sort=False)
    return MergedDataset(table, classes, names)


def _aligned(dataset: Dataset, name: str, classes: Sequence[str]) -> pd.DataFrame:
    """The dataset's table with source columns, prefixed ids and exactly ``classes`` as labels."""
    table = dataset.table.drop(columns=[c for c in dataset.labels if c not in classes])
    for c in classes:
        if c not in dataset.labels:
            table[c] = np.float32(np.nan)
    table.insert(0, "source", name)
    table.insert(1, "source_image_id", table["image_id"].astype(str))
    table["image_id"] = name + ":" + table["image_id"].astype(str)
    table["patient_id"] = name + ":" + table["patient_id"].astype(str)
    return table
