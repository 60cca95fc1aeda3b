"""Dataset sources as per-image tables with aligned labels (1 present, 0 absent, NaN missing).

- :class:`VinBigDataset`: VinBigData chest CSV (+ DICOM folder), 3-reader label policies, boxes.
- :class:`MuraDataset`: MURA v1.1 upper-limb studies (CSV or folder tree).
- :class:`NIHDataset`: NIH ChestX-ray14 sample, mapped onto the VinBigData classes.
- :class:`PhantomChestDataset` (in ``radtriage.datasets.phantom``, imported on demand: it pulls
  in the phantom generator): synthetic chests with exact labels and boxes.
- :func:`merge_datasets`: one table from several sources, missing classes NaN.
- :func:`split_by_patient`: deterministic splits with no patient in two parts.
"""

from radtriage.datasets.base import Dataset, DatasetError, label_matrix, split_by_patient
from radtriage.datasets.merge import MergedDataset, merge_datasets
from radtriage.datasets.mura import MuraDataset
from radtriage.datasets.nih import NIHDataset
from radtriage.datasets.vinbigdata import Box, VinBigDataset

__all__ = [
    "Box",
    "Dataset",
    "DatasetError",
    "MergedDataset",
    "MuraDataset",
    "NIHDataset",
    "VinBigDataset",
    "label_matrix",
    "merge_datasets",
    "split_by_patient",
]
