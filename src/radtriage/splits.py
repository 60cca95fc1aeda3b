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


def stratified_group_split(groups: Iterable[str], strata: Iterable[str], fractions: Iterable[float],
                           salt: str) -> np.ndarray:
    """Part index per row: each stratum's groups split by ``fractions``, a group never in two parts.

    Within each stratum (e.g. body part x label) the groups (e.g. byte-identical files, or patients)
    are ordered by :func:`patient_fraction` and cut at the cumulative fractions, rounded to whole
    groups; so every part holds about its share of every stratum, and a group's part depends only
    on its id, the salt and its stratum's size.

    Args:
        groups: one group id per row.
        strata: one stratum label per row (a group must have one stratum).
        fractions: one positive share per part, summing to 1.
        salt: names the split.

    Returns:
        int array, one part index per row (0 = the first fraction).
    """
    groups, strata = [str(g) for g in groups], [str(s) for s in strata]
    fractions = np.asarray(list(fractions), np.float64)
    if len(fractions) < 2 or (fractions <= 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise ValueError(f"fractions must be >= 2 positive shares summing to 1, got {fractions.tolist()}")
    stratum_of: dict[str, str] = {}
    for g, s in zip(groups, strata):
        if stratum_of.setdefault(g, s) != s:
            raise ValueError(f"group {g!r} has rows in two strata")
    part_of: dict[str, int] = {}
    for s in sorted(set(strata)):
        members = sorted((g for g in stratum_of if stratum_of[g] == s), key=lambda g: patient_fraction(g, salt))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(members)).astype(int)
        for i, g in enumerate(members):
            part_of[g] = int(np.searchsorted(cuts, i, side="right"))
    return np.array([part_of[g] for g in groups], dtype=int)


def nih_validation_mask(patient_ids: Iterable[str]) -> np.ndarray:
    """The project's fixed NIH-sample validation split (never trained on)."""
    return hash_split(patient_ids, NIH_VALIDATION_FRACTION, NIH_VALIDATION_SALT)
