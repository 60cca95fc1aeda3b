"""The model contract: what every layer that builds, serves, explains or evaluates a model agrees on.

One definition each, called by training, evaluation, both serving backends, Grad-CAM, the CLI and
the dashboard:

- the layer names a radtriage model carries (:data:`LOGITS_LAYER`, :data:`GRADCAM_LAYER`,
  :data:`PROBABILITIES_LAYER`, :data:`FEATURES_LAYER`);
- temperature calibration, ``p = sigmoid(logit / T)`` per class (:func:`calibrate`);
- the flag rule, ``p >= threshold`` (:func:`flags`, :func:`flagged`, :func:`default_class`);
- the study rule, the mean of the study's image probabilities (:func:`study_mean`,
  :func:`study_means`), as in the MURA paper;
- when a heatmap shows nothing (:func:`heatmap_is_degenerate`), which class a heatmap explains and
  whether it is drawn at all (:func:`heatmap_class`, :func:`heatmap_note`), for the dashboard, its
  report and any overlay image;
- when a training label counts as a positive, and so where a model's knowledge of a class comes
  from (:func:`class_provenance`).

NumPy only: importing this module never loads TensorFlow.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from radtriage import labels

LOGITS_LAYER = "logits"  # Dense, pre-sigmoid scores: calibrated outside the graph, differentiated by Grad-CAM
GRADCAM_LAYER = "gradcam_target"  # the last 4-D feature map, after its activation
PROBABILITIES_LAYER = "probabilities"  # sigmoid(logits), the uncalibrated model output
FEATURES_LAYER = "features"  # what the heads read: the space of the out-of-distribution score (radtriage.ood)
DEGENERATE_EPS = 1e-8  # a heatmap whose max - min is below this is constant: it localises nothing


def calibrate(logits: np.ndarray, temperatures: np.ndarray | float) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logit / T)``, per class.

    Args:
        logits: (..., C) raw model logits, any finite real values.
        temperatures: (C,) or scalar, positive.

    Returns:
        float64 array like ``logits``, in [0, 1]. The tanh form never overflows for large |logit|.

    Raises:
        ValueError: a temperature is not positive.
    """
    t = np.asarray(temperatures, np.float64)
    if np.any(~(t > 0)):
        raise ValueError("temperatures must be positive")
    z = np.asarray(logits, np.float64) / t
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def flags(probabilities: np.ndarray, thresholds: np.ndarray | Sequence[float],
          flaggable: np.ndarray | Sequence[bool] | None = None) -> np.ndarray:
    """The flag rule: a class is flagged when it may be (it has real labels and a validation AUROC
    interval above 0.5: ``metadata.flaggable``) and its calibrated probability is at or above its threshold.

    Args:
        probabilities: (..., C) in [0, 1].
        thresholds: (C,) in [0, 1].
        flaggable: (C,) bool; None = every class may be flagged.

    Returns:
        bool array like ``probabilities``.
    """
    on = np.asarray(probabilities, np.float64) >= np.asarray(thresholds, np.float64)
    return on if flaggable is None else on & np.asarray(flaggable, bool)


def flagged(classes: Sequence[str], probabilities: np.ndarray, thresholds: np.ndarray | Sequence[float],
            flaggable: np.ndarray | Sequence[bool] | None = None) -> list[str]:
    """Names of the flagged classes of one image or study, most probable first.

    Args:
        classes: the C class names in output order.
        probabilities: (C,) in [0, 1].
        thresholds: (C,) in [0, 1].
        flaggable: (C,) bool, as in :func:`flags`.
    """
    p = np.asarray(probabilities, np.float64).reshape(-1)
    on = flags(p, thresholds, flaggable)
    return [classes[i] for i in np.argsort(-p, kind="stable") if on[i]]


def default_class(probabilities: np.ndarray, thresholds: np.ndarray | Sequence[float],
                  flaggable: np.ndarray | Sequence[bool] | None = None, classes: Sequence[str] | None = None) -> int:
    """The class shown (and explained) first: the most probable flagged class (a specific finding
    before the summary class "Any finding", as in :func:`heatmap_class`), else the most probable
    class that may be flagged, else the most probable.

    Args:
        probabilities: (C,) in [0, 1].
        thresholds: (C,) in [0, 1].
        flaggable: (C,) bool, as in :func:`flags`.
        classes: the C class names (None: no summary class is told apart).

    Returns:
        Its index in [0, C).
    """
    p = np.asarray(probabilities, np.float64).reshape(-1)
    may = np.ones(len(p), bool) if flaggable is None else np.asarray(flaggable, bool)
    on = flags(p, thresholds, may)
    specific = on & ~_summary(classes, len(p))
    # flagged findings outrank a flagged summary, which outranks the others that may be flagged, then the rest
    ranked = np.where(specific, p + 6.0, np.where(on, p + 4.0, np.where(may, p + 2.0, p)))
    return int(np.argmax(ranked))


def _summary(classes: Sequence[str] | None, n: int) -> np.ndarray:
    """(n,) bool: the summary output ("Any finding"), which a heatmap explains only when no finding is flagged."""
    if classes is None:
        return np.zeros(n, bool)
    return np.array([c == labels.ANY_FINDING for c in classes], bool)


def study_mean(probabilities: np.ndarray) -> np.ndarray:
    """A study's probabilities: the mean of its images' calibrated probabilities (the MURA rule).

    Args:
        probabilities: (N, C) in [0, 1], N >= 1 images of one study.

    Returns:
        float64 (C,) in [0, 1].

    Raises:
        ValueError: no image.
    """
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError("a study needs at least one image's probabilities, shaped (N, C)")
    return p.mean(axis=0)


def study_means(study_ids: Sequence[Hashable], probabilities: np.ndarray) -> tuple[list[Hashable], np.ndarray, np.ndarray]:
    """:func:`study_mean` of every study in a batch of images.

    Args:
        study_ids: (N,) the study of each image.
        probabilities: (N,) or (N, C) image probabilities in [0, 1].

    Returns:
        (ids, n_images, means): the studies in first-seen order, int (S,) images per study, and
        float64 (S,) or (S, C) study probabilities (same trailing shape as ``probabilities``).
    """
    p = np.asarray(probabilities, np.float64)
    if len(study_ids) != len(p):
        raise ValueError(f"{len(study_ids)} study ids for {len(p)} probabilities")
    order: dict[Hashable, list[int]] = {}
    for i, sid in enumerate(study_ids):
        order.setdefault(sid, []).append(i)
    ids = list(order)
    means = np.stack([p[rows].mean(axis=0) for rows in order.values()]) if ids else p[:0]
    return ids, np.array([len(rows) for rows in order.values()], int), means


def heatmap_is_degenerate(heatmap: np.ndarray | None) -> bool:
    """True when a heatmap shows nothing: missing, not finite anywhere, or constant (max - min < eps)."""
    if heatmap is None:
        return True
    h = np.asarray(heatmap, np.float64)
    if h.size == 0 or not np.all(np.isfinite(h)):
        return True
    return bool(h.max() - h.min() < DEGENERATE_EPS)


def heatmap_class(classes: Sequence[str], probabilities: np.ndarray, thresholds: np.ndarray | Sequence[float],
                  flaggable: np.ndarray | Sequence[bool] | None = None, requested: int | None = None) -> int | None:
    """The class a heatmap explains, or None when there is nothing to explain.

    A heatmap explains a flag: Grad-CAM normalises every map to [0, 1], so a class at p = 0.00 gets
    as vivid a map as a flagged one, and drawing it would suggest evidence the model did not find.
    The rule: the most probable flagged finding (:func:`flags`), the summary class "Any finding" only
    when no finding is flagged (a map of "some finding" says less than the finding's own); a
    ``requested`` class only when it is flagged itself; None when no class (or not the requested
    one) is flagged.

    Args:
        classes: the C class names in output order.
        probabilities: (C,) calibrated probabilities of one image (a study's images each have their own).
        thresholds: (C,) operating thresholds.
        flaggable: (C,) bool, as in :func:`flags`.
        requested: a class index chosen by the user, or None for the default.

    Returns:
        The class index in [0, C), or None.

    Raises:
        ValueError: ``classes`` and ``probabilities`` differ in length.
    """
    p = np.asarray(probabilities, np.float64).reshape(-1)
    if len(p) != len(classes):
        raise ValueError(f"{len(p)} probabilities for {len(classes)} classes")
    on = flags(p, thresholds, flaggable)
    if requested is not None:
        return int(requested) if on[int(requested)] else None
    specific = on & ~_summary(classes, len(p))
    pick = specific if specific.any() else on  # a named finding says more than "Any finding"
    return int(np.argmax(np.where(pick, p, -1.0))) if pick.any() else None


def heatmap_note(classes: Sequence[str], probabilities: np.ndarray, thresholds: np.ndarray | Sequence[float],
                 flaggable: np.ndarray | Sequence[bool] | None = None, requested: int | None = None,
                 heatmap: np.ndarray | None = None) -> str | None:
    """Why no heatmap is drawn, in one plain sentence, or None when it is drawn (:func:`heatmap_class`).

    Args:
        classes, probabilities, thresholds, flaggable, requested: as in :func:`heatmap_class`.
        heatmap: the map computed for the class :func:`heatmap_class` chose (None: not computed).

    Returns:
        None when the chosen class's heatmap localises something, else the sentence to show instead.
    """
    index = heatmap_class(classes, probabilities, thresholds, flaggable, requested)
    p, t = np.asarray(probabilities, np.float64).reshape(-1), np.asarray(thresholds, np.float64).reshape(-1)
    may = np.ones(len(p), bool) if flaggable is None else np.asarray(flaggable, bool)
    if index is None and requested is not None:
        name = classes[requested]
        if not may[requested]:
            return (f"No heatmap for {name}: the model is not reliable for this class and never flags it, "
                    "so there is nothing to explain.")
        return (f"No heatmap for {name}: its probability ({p[requested]:.2f}) is below its threshold "
                f"({t[requested]:.2f}), so there is no finding to explain.")
    if index is None:
        if len(classes) == 1:
            return (f"No heatmap: the probability of {classes[0]} ({p[0]:.2f}) is below its threshold "
                    f"({t[0]:.2f}), so there is no finding to explain.")
        return "No heatmap: no finding is flagged, so there is nothing to explain."
    if heatmap_is_degenerate(heatmap):
        return (f"{classes[index]} is flagged, but its heatmap is flat: no region of the image raised the score "
                "more than another, so the model cannot point to where its evidence lies. Read the whole image.")
    return None


def positive_labels(y: np.ndarray) -> np.ndarray:
    """Which labels count as positive evidence: > 0 (a soft label from one reader of three counts), NaN not.

    Args:
        y: labels in {0, 1, NaN} or soft fractions in [0, 1].

    Returns:
        bool array like ``y``.
    """
    y = np.asarray(y, np.float64)
    return np.nan_to_num(y, nan=0.0) > 0


def class_provenance(classes: Sequence[str], y: np.ndarray, synthetic: np.ndarray) -> dict[str, str]:
    """Where a model's knowledge of each class comes from, judged on its TRAINING labels.

    A class is ``labels.PROVENANCE_REAL`` when a real (non-phantom) training image has a positive
    label for it (:func:`positive_labels`), else ``PROVENANCE_SYNTHETIC`` when a phantom does, else
    ``PROVENANCE_NONE``.

    Args:
        classes: the C class names.
        y: (N, C) training labels.
        synthetic: (N,) bool, True for phantom images.
    """
    pos = positive_labels(np.asarray(y, np.float64).reshape(-1, len(classes)))
    syn = np.asarray(synthetic, bool).reshape(-1)
    real_pos, syn_pos = (pos & ~syn[:, None]).any(axis=0), (pos & syn[:, None]).any(axis=0)
    return {
        c: labels.PROVENANCE_REAL if r else labels.PROVENANCE_SYNTHETIC if s else labels.PROVENANCE_NONE
        for c, r, s in zip(classes, real_pos, syn_pos)
    }
