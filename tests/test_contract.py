"""The model contract: calibration, the flag rule, the study rule, degenerate heatmaps and provenance,
each defined once and used by every layer."""

from __future__ import annotations

import numpy as np
import pytest

from radtriage import contract, labels


def test_calibrate_is_sigmoid_of_logit_over_temperature_and_never_overflows() -> None:
    logits = np.array([[0.0, 2.0, -3.0], [1e6, -1e6, 4.0]])
    t = np.array([1.0, 2.0, 0.5])
    p = contract.calibrate(logits, t)
    np.testing.assert_allclose(p[0], 1 / (1 + np.exp(-logits[0] / t)), rtol=1e-12)
    assert p[1, 0] == 1.0 and p[1, 1] == 0.0 and np.isfinite(p).all()
    with pytest.raises(ValueError, match="positive"):
        contract.calibrate(logits, np.array([1.0, 0.0, 1.0]))


def test_flag_rule_counts_the_threshold_itself_and_orders_by_probability() -> None:
    classes = ["a", "b", "c", "d"]
    probs = np.array([0.30, 0.90, 0.50, 0.10])
    thresholds = np.array([0.30, 0.95, 0.40, 0.05])
    assert contract.flags(probs, thresholds).tolist() == [True, False, True, True]
    assert contract.flagged(classes, probs, thresholds) == ["c", "a", "d"]
    assert contract.default_class(probs, thresholds) == 2  # the most probable FLAGGED class, not b
    assert contract.default_class(probs, np.ones(4)) == 1  # nothing flagged: the most probable


def test_study_mean_and_study_means_keep_first_seen_order() -> None:
    probs = np.array([[0.2], [0.9], [0.6], [0.1]])
    ids, n, means = contract.study_means(["s2", "s1", "s2", "s3"], probs)
    assert ids == ["s2", "s1", "s3"] and n.tolist() == [2, 1, 1]
    np.testing.assert_allclose(means[:, 0], [0.4, 0.9, 0.1])
    np.testing.assert_allclose(contract.study_mean(probs[[0, 2]]), means[0])
    with pytest.raises(ValueError, match="at least one image"):
        contract.study_mean(np.zeros((0, 1)))


def test_degenerate_heatmaps() -> None:
    assert contract.heatmap_is_degenerate(None)
    assert contract.heatmap_is_degenerate(np.full((4, 4), 0.7))
    assert contract.heatmap_is_degenerate(np.array([[0.0, np.nan], [1.0, 0.5]]))
    assert not contract.heatmap_is_degenerate(np.eye(4))


def test_provenance_counts_soft_positives_and_ignores_missing() -> None:
    classes = ["A", "B", "C", "D"]
    y = np.array([[1.0, 0.0, 0.0, np.nan],
                  [0.0, 1.0, np.nan, 1.0],
                  [0.0, np.nan, np.nan, 1 / 3]])  # D: one reader of three on a real image
    synthetic = np.array([False, True, False])
    assert contract.class_provenance(classes, y, synthetic) == {
        "A": labels.PROVENANCE_REAL, "B": labels.PROVENANCE_SYNTHETIC,
        "C": labels.PROVENANCE_NONE, "D": labels.PROVENANCE_REAL,
    }


def test_a_class_that_may_not_be_flagged_never_is() -> None:
    classes = ["a", "b", "c"]
    probs = np.array([0.9, 0.8, 0.1])
    thresholds = np.array([0.5, 0.5, 0.5])
    may = np.array([False, True, True])
    assert contract.flags(probs, thresholds, may).tolist() == [False, True, False]
    assert contract.flagged(classes, probs, thresholds, may) == ["b"]
    assert contract.default_class(probs, thresholds, may) == 1  # the flagged class, not the top unreliable one
    assert contract.default_class(np.array([0.9, 0.2, 0.1]), thresholds, may) == 1  # reliable before unreliable


def test_a_heatmap_explains_the_top_flagged_class_and_only_a_flagged_one() -> None:
    classes = ["a", "b", "c", "d"]
    probs = np.array([0.30, 0.90, 0.50, 0.00])
    thresholds = np.array([0.30, 0.95, 0.40, 0.50])
    may = np.array([True, True, True, True])
    assert contract.heatmap_class(classes, probs, thresholds, may) == 2  # the most probable FLAGGED class
    assert contract.heatmap_class(classes, probs, thresholds, may, requested=0) == 0  # flagged: as asked
    assert contract.heatmap_class(classes, probs, thresholds, may, requested=3) is None  # p = 0.00: never
    assert contract.heatmap_class(classes, probs, thresholds, [True, True, False, True]) == 0  # c may not be flagged
    assert contract.heatmap_class(classes, probs, np.ones(4)) is None  # nothing flagged: nothing to explain
    with pytest.raises(ValueError, match="4 probabilities for 3 classes"):
        contract.heatmap_class(classes[:3], probs, thresholds)


def test_a_heatmap_explains_a_named_finding_before_any_finding() -> None:
    classes = ["Cardiomegaly", "Pleural effusion", labels.ANY_FINDING]
    thresholds = np.array([0.5, 0.5, 0.5])
    probs = np.array([0.6, 0.2, 0.9])  # "Any finding" is the most probable flagged output
    assert contract.heatmap_class(classes, probs, thresholds) == 0
    assert contract.default_class(probs, thresholds, classes=classes) == 0
    assert contract.default_class(probs, thresholds) == 2  # without names nothing is told apart
    assert contract.heatmap_class(classes, probs, thresholds, requested=2) == 2  # asked for and flagged
    only_summary = np.array([0.3, 0.2, 0.9])
    assert contract.heatmap_class(classes, only_summary, thresholds) == 2  # the only flag is explained
    assert contract.default_class(only_summary, thresholds, classes=classes) == 2


def test_heatmap_note_says_why_no_heatmap_is_drawn_in_one_sentence() -> None:
    classes = ["a", "b"]
    probs, thresholds = np.array([0.8, 0.001]), np.array([0.5, 0.5])
    assert contract.heatmap_note(classes, probs, thresholds, heatmap=np.eye(4)) is None  # drawn
    flat = contract.heatmap_note(classes, probs, thresholds, heatmap=np.full((4, 4), 0.5))
    assert flat.startswith("a is flagged, but its heatmap is flat") and "whole image" in flat
    below = contract.heatmap_note(classes, probs, thresholds, requested=1, heatmap=np.eye(4))
    assert below == "No heatmap for b: its probability (0.00) is below its threshold (0.50), so there is no finding to explain."
    unreliable = contract.heatmap_note(classes, probs, thresholds, [False, True], requested=0)
    assert "not reliable for this class" in unreliable
    assert contract.heatmap_note(classes, probs, np.ones(2)) == \
        "No heatmap: no finding is flagged, so there is nothing to explain."
    one = contract.heatmap_note(["Abnormal"], np.array([0.2]), np.array([0.38]))
    assert one == "No heatmap: the probability of Abnormal (0.20) is below its threshold (0.38), so there is no finding to explain."
    for note in (flat, below, unreliable, one):
        assert note.count(". ") <= 1  # one sentence (the flat one adds what to do)
