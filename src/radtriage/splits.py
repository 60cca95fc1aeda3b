"""Deterministic, order-independent splits by patient.

A patient's split depends only on a hash of its id and a salt, so it never changes when images are
added, removed or reordered, and no patient can land in two splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

#: salt of the NIH sample's fixed validation split used for model selection and the model card
NIH_VALIDATION_SALT = "radtriage-nih-val-v1"
NIH_VALIDATION_FRACTION = 0.3


def patient_fraction(patient_id: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for a patient id."""
    digest = hashlib.sha256(f"{salt}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(patient_ids: Iterable[str], fraction: float, salt: str) -> np.ndarray:
    """Boolean mask: True where the patient falls in the held-out part (about ``fraction`` of patients).

    Args:
        patient_ids: one id per image (repeated for images of the same patient).
        fraction: share of patients held out, in [0, 1].
        salt: names the split; a different salt gives an independent split.

    Returns:
        bool array, one entry per input id.
    """
    return np.array([patient_fraction(str(p), salt) < fraction for p in patient_ids], dtype=bool)


def nih_validation_mask(patient_ids: Iterable[str]) -> np.ndarray:
    """The project's fixed NIH-sample validation split (never trained on)."""
    return hash_split(patient_ids, NIH_VALIDATION_FRACTION, NIH_VALIDATION_SALT)
