"""Class names, their order, and mappings from other datasets: defined here and nowhere else.

The chest model's output order is VinBigData's ``class_id`` order (0..13); ``No finding`` is
class_id 14 in VinBigData and is *not* a model output (it is "no class above threshold").

Label vectors use ``1.0`` present, ``0.0`` absent and ``NaN`` missing (no information), so that
a dataset which never labels a class does not teach the model that the class is absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# VinBigData class_id order. Index i is class_id i.
CHEST_CLASSES: tuple[str, ...] = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
)
NO_FINDING = "No finding"
NO_FINDING_ID = 14
N_CHEST = len(CHEST_CLASSES)
# "Abnormal (any finding)": VinBigData's "No finding" complement, NIH's "No Finding" complement. A
# chest model may output it after the 14 classes (radtriage.tasks: the chest task's classes).
ANY_FINDING = "Any finding"
CHEST_OUTPUTS: tuple[str, ...] = (*CHEST_CLASSES, ANY_FINDING)

# MURA v1.1 study types, as its folder names spell them.
MURA_STUDY_TYPES: tuple[str, ...] = (
    "XR_ELBOW",
    "XR_FINGER",
    "XR_FOREARM",
    "XR_HAND",
    "XR_HUMERUS",
    "XR_SHOULDER",
    "XR_WRIST",
)
MURA_CLASSES: tuple[str, ...] = ("Abnormal",)

# Kermany's paediatric chest x-rays (radtriage.datasets.kermany): a backbone's adaptation task only.
KERMANY_CLASSES: tuple[str, ...] = ("Normal (paediatric)", "Bacterial pneumonia", "Viral pneumonia")

# FracAtlas (radtriage.datasets.fracatlas) labels fractures; its "fracture" maps onto MURA's
# "Abnormal" (which MURA also uses for hardware, arthritis and lesions: a narrower positive).
FRACATLAS_UPPER_LIMB_PARTS: tuple[str, ...] = ("hand", "shoulder", "hand+shoulder")
FRACATLAS_OTHER_PARTS: tuple[str, ...] = ("leg", "hip")

# DICOM BodyPartExamined values (upper-cased) that identify each MURA study type.
# What the anatomy gate (radtriage.anatomy) tells apart, in its output order. "chest" and "limb" are the
# anatomies of radtriage.tasks ("limb" = upper limb, MURA's seven study types); the other two are read by no model.
ANATOMY_CLASSES: tuple[str, ...] = ("chest", "limb", "other radiograph", "not a radiograph")
ANATOMY_PHRASES: dict[str, str] = {
    "chest": "a chest radiograph",
    "limb": "an upper-limb radiograph",
    "other radiograph": "a radiograph of another body part (such as a leg or hip)",
    "not a radiograph": "not a radiograph",
}

BODY_PART_TO_MURA: dict[str, str] = {
    "ELBOW": "XR_ELBOW",
    "FINGER": "XR_FINGER",
    "THUMB": "XR_FINGER",
    "FOREARM": "XR_FOREARM",
    "HAND": "XR_HAND",
    "HUMERUS": "XR_HUMERUS",
    "ARM": "XR_HUMERUS",
    "SHOULDER": "XR_SHOULDER",
    "WRIST": "XR_WRIST",
}
CHEST_BODY_PARTS: frozenset[str] = frozenset({"CHEST", "THORAX", "LUNG", "RIBS"})

# NIH ChestX-ray14 finding -> VinBigData class. NIH classes absent here (Edema, Emphysema,
# Hernia, Pneumonia) have no VinBigData counterpart and are dropped.
NIH_TO_CHEST: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Infiltration": "Infiltration",
    "Nodule": "Nodule/Mass",
    "Mass": "Nodule/Mass",
    "Effusion": "Pleural effusion",
    "Pleural_Thickening": "Pleural thickening",
    "Pneumothorax": "Pneumothorax",
    "Fibrosis": "Pulmonary fibrosis",
}
NIH_NO_FINDING = "No Finding"
# VinBigData classes that NIH labels at all; the others are missing (NaN) for NIH images.
NIH_LABELLED: tuple[str, ...] = tuple(c for c in CHEST_CLASSES if c in set(NIH_TO_CHEST.values()))

# Provenance of a model's knowledge of a class, as recorded in model metadata and shown in the UI.
PROVENANCE_REAL = "real labels"
PROVENANCE_SYNTHETIC = "synthetic only"
PROVENANCE_NONE = "none"


def class_index(name: str, classes: Sequence[str] = CHEST_CLASSES) -> int:
    """Position of ``name`` in ``classes``; raises KeyError with the known names otherwise."""
    try:
        return list(classes).index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; known: {', '.join(classes)}") from None


def nih_to_chest_vector(finding_labels: str) -> np.ndarray:
    """Map an NIH ``Finding Labels`` string (``|``-separated) to a 14-vector.

    Args:
        finding_labels: e.g. ``"Effusion|Mass"`` or ``"No Finding"``.

    Returns:
        float32 array of shape (14,): 1.0 present, 0.0 absent for the NIH-labelled classes,
        NaN for classes NIH never labels (missing, not negative).
    """
    vec = np.full(N_CHEST, np.nan, dtype=np.float32)
    for name in NIH_LABELLED:
        vec[class_index(name)] = 0.0
    for finding in (f.strip() for f in finding_labels.split("|")):
        if finding in NIH_TO_CHEST:
            vec[class_index(NIH_TO_CHEST[finding])] = 1.0
    return vec


def names_to_vector(names: Iterable[str], classes: Sequence[str] = CHEST_CLASSES) -> np.ndarray:
    """Fully labelled multi-hot vector (0/1, no missing) for the given present class names."""
    vec = np.zeros(len(classes), dtype=np.float32)
    for name in names:
        if name != NO_FINDING:
            vec[class_index(name, classes)] = 1.0
    return vec


def mura_study_type_from_body_part(body_part: str | None) -> str | None:
    """MURA study type for a DICOM BodyPartExamined value, or None if it names no upper limb."""
    if not body_part:
        return None
    key = body_part.strip().upper().replace(" ", "")
    for part, study_type in BODY_PART_TO_MURA.items():
        if key == part or key.endswith(part) or key.startswith(part):
            return study_type
    return None


def anatomy_from_body_part(body_part: str | None) -> str | None:
    """``"chest"``, ``"limb"`` or None (unknown) from a DICOM BodyPartExamined value."""
    if not body_part:
        return None
    if body_part.strip().upper() in CHEST_BODY_PARTS:
        return "chest"
    if mura_study_type_from_body_part(body_part):
        return "limb"
    return None
