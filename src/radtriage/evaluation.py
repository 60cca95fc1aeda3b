"""Held-out evaluation: per-class discrimination with bootstrap intervals, thresholds, calibration,
plots and MURA study-level metrics.

Conventions used throughout:

- ``y_true`` is (N, C) float with 1.0 present, 0.0 absent and NaN missing (see ``labels.py``);
  a missing label is left out of that class's metrics, never counted as negative.
- ``y_prob`` is (N, C) float in [0, 1].
- A case is called positive when ``prob >= threshold`` (scikit-learn's ``roc_curve`` convention).
- Every function works on arrays; nothing here imports TensorFlow.

Point estimates come from ``sklearn.metrics``. The bootstrap uses a vectorised rank/cumulative-sum
form of the same AUROC and average precision (checked against scikit-learn in the tests), because
1,000 resamples x 14 classes of scikit-learn calls take tens of seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global backend/state, safe in Streamlit threads
from scipy.optimize import minimize_scalar
from scipy.stats import binomtest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    cohen_kappa_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from radtriage import contract

# Parameters
N_BOOT = 1000
CI_LEVEL = 0.95
DEFAULT_THRESHOLD = 0.5
TEMPERATURE_BOUNDS = (0.05, 20.0)
PROB_EPS = 1e-7  # clip before logit so that 0/1 probabilities stay finite
BOOT_CHUNK_ELEMENTS = 2_000_000  # resamples x rows held in memory at once

ThresholdRule = Literal["youden", "sensitivity", "specificity", "f1"]
NOTE_NO_POS = "no positive labels in this split: AUROC/AP undefined"
NOTE_NO_NEG = "no negative labels in this split: AUROC undefined"
NOTE_NO_LABELS = "no labels in this split"


# ----------------------------------------------------------------------------- input checks


def _as_2d(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return float64 (N, C) copies; 1-D inputs become (N, 1)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if y_prob.ndim == 1:
        y_prob = y_prob[:, None]
    if y_true.shape != y_prob.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_prob {y_prob.shape} must both be (N, C)")
    labelled = ~np.isnan(y_true)
    if not np.isin(y_true[labelled], (0.0, 1.0)).all():
        raise ValueError("y_true must hold only 0, 1 or NaN (missing)")
    if not np.isfinite(y_prob).all():
        raise ValueError("y_prob must be finite")
    return y_true, y_prob


def _class_names(classes: Sequence[str] | None, n: int) -> list[str]:
    names = [f"class_{i}" for i in range(n)] if classes is None else list(classes)
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for {n} columns")
    return names


def _class_note(n_pos: int, n_neg: int) -> str:
    if n_pos + n_neg == 0:
        return NOTE_NO_LABELS
    if n_pos == 0:
        return NOTE_NO_POS
    if n_neg == 0:
        return NOTE_NO_NEG
    return ""


# ----------------------------------------------------------------------------- vectorised AUROC / AP


def _tie_group_bounds(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each position's group of tied scores, row-wise on a (B, n) array."""
    b, n = sorted_scores.shape
    idx = np.broadcast_to(np.arange(n), (b, n))
    new_group = np.ones((b, n), dtype=bool)
    new_group[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    end_group = np.ones((b, n), dtype=bool)
    end_group[:, :-1] = new_group[:, 1:]
    start = np.maximum.accumulate(np.where(new_group, idx, 0), axis=1)
    end = np.minimum.accumulate(np.where(end_group, idx, n - 1)[:, ::-1], axis=1)[:, ::-1]
    return start, end


def auroc_ap_batch(
    y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise AUROC and average precision of many resamples at once.

    Same definitions as ``sklearn.metrics.roc_auc_score`` (ties count 1/2) and
    ``average_precision_score`` (step-wise, ties grouped) applied to each row.

    Args:
        y: (B, n) labels in {0, 1}.
        score: (B, n) scores.
        weight: (B, n) bool, False drops an entry (a missing label); None keeps all.

    Returns:
        (auroc, ap): float arrays (B,); NaN where a row lacks positives (both) or negatives (AUROC).
    """
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=np.float64)
    pos, neg = y * w, (1.0 - y) * w
    n_pos, n_neg = pos.sum(1), neg.sum(1)

    # AUROC: each positive scores the negatives below it, plus half of those tied with it.
    order = np.argsort(score, axis=1, kind="stable")
    s = np.take_along_axis(score, order, 1)
    p, q = np.take_along_axis(pos, order, 1), np.take_along_axis(neg, order, 1)
    start, end = _tie_group_bounds(s)
    cum_neg = np.concatenate([np.zeros((len(q), 1)), np.cumsum(q, 1)], 1)
    below = np.take_along_axis(cum_neg, start, 1)
    tied = np.take_along_axis(cum_neg, end + 1, 1) - below
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (p * (below + 0.5 * tied)).sum(1) / (n_pos * n_neg)

    # AP: precision at each threshold (end of a tie group, scores descending), weighted by recall gain.
    p_desc, q_desc, s_desc = p[:, ::-1], q[:, ::-1], s[:, ::-1]
    _, end_d = _tie_group_bounds(s_desc)
    tp = np.take_along_axis(np.cumsum(p_desc, 1), end_d, 1)
    fp = np.take_along_axis(np.cumsum(q_desc, 1), end_d, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (p_desc * precision).sum(1) / n_pos
    auroc[(n_pos == 0) | (n_neg == 0)] = np.nan
    ap[n_pos == 0] = np.nan
    return auroc, ap


def _percentile_ci(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of the finite samples; (NaN, NaN) when there are none."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _bootstrap_rows(
    y: np.ndarray, score: np.ndarray, weight: np.ndarray | None, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """AUROC/AP of ``n_boot`` row resamples of 1-D arrays, in memory-bounded chunks."""
    n = len(y)
    chunk = max(1, BOOT_CHUNK_ELEMENTS // max(n, 1))
    aurocs, aps = [], []
    for done in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - done), n))
        w = None if weight is None else weight[idx]
        a, p = auroc_ap_batch(y[idx], score[idx], w)
        aurocs.append(a)
        aps.append(p)
    return np.concatenate(aurocs), np.concatenate(aps)


# ----------------------------------------------------------------------------- per-class metrics


def proportion_ci(k: int, n: int, level: float = CI_LEVEL) -> tuple[float, float, float]:
    """Proportion k/n with its Wilson score interval; NaNs when n == 0."""
    if n == 0:
        return math.nan, math.nan, math.nan
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def per_class_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    classes: Sequence[str] | None = None,
    thresholds: np.ndarray | Sequence[float] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per class: counts, AUROC and AP with bootstrap 95% CIs, sensitivity/specificity.

    Args:
        y_true: (N, C) in {0, 1, NaN}; NaN = missing label (the row is left out for that class).
        y_prob: (N, C) probabilities in [0, 1].
        classes: C class names (default ``class_i``).
        thresholds: (C,) operating thresholds in [0, 1]; default 0.5 for all.
        n_boot: bootstrap resamples of each class's labelled rows (0 disables intervals).
        seed: seed of the resampling.

    Returns:
        DataFrame with columns class, n, n_pos, prevalence, auroc, auroc_lo, auroc_hi, ap, ap_lo,
        ap_hi, n_boot_valid, threshold, sensitivity (+_lo/_hi, Wilson), specificity (+_lo/_hi),
        note. Undefined values are NaN and ``note`` says why. Resamples holding one label only are
        skipped; ``n_boot_valid`` counts the rest.
    """
    y_true, y_prob = _as_2d(y_true, y_prob)
    names = _class_names(classes, y_true.shape[1])
    thr = _thresholds_or_default(thresholds, len(names))
    rng = np.random.default_rng(seed)
    rows = []
    for c, name in enumerate(names):
        mask = ~np.isnan(y_true[:, c])
        yt, yp = y_true[mask, c], y_prob[mask, c]
        n_pos, n = int(yt.sum()), int(mask.sum())
        note = _class_note(n_pos, n - n_pos)
        auroc = ap = lo_a = hi_a = lo_p = hi_p = math.nan
        n_valid = 0
        if n_pos > 0:
            ap = float(average_precision_score(yt, yp))
        if note == "":
            auroc = float(roc_auc_score(yt, yp))
            if n_boot > 0:
                boot_a, boot_p = _bootstrap_rows(yt, yp, None, n_boot, rng)
                n_valid = int(np.isfinite(boot_a).sum())
                lo_a, hi_a = _percentile_ci(boot_a)
                lo_p, hi_p = _percentile_ci(boot_p[np.isfinite(boot_a)])
        pred = contract.flags(yp, thr[c])
        sens = proportion_ci(int((pred & (yt == 1)).sum()), n_pos)
        spec = proportion_ci(int((~pred & (yt == 0)).sum()), n - n_pos)
        rows.append(
            {
                "class": name,
                "n": n,
                "n_pos": n_pos,
                "prevalence": n_pos / n if n else math.nan,
                "auroc": auroc,
                "auroc_lo": lo_a,
                "auroc_hi": hi_a,
                "ap": ap,
                "ap_lo": lo_p,
                "ap_hi": hi_p,
                "n_boot_valid": n_valid,
                "threshold": float(thr[c]),
                "sensitivity": sens[0],
                "sensitivity_lo": sens[1],
                "sensitivity_hi": sens[2],
                "specificity": spec[0],
                "specificity_lo": spec[1],
                "specificity_hi": spec[2],
                "note": note,
            }
        )
    return pd.DataFrame(rows)


def macro_auroc(
    y_true: np.ndarray, y_prob: np.ndarray, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """Mean AUROC over the classes whose AUROC is defined, with a joint-row bootstrap interval.

    Rows (images) are resampled jointly for all classes, so the interval keeps the correlation
    between classes. In each resample the macro mean is taken over the classes defined in that
    resample; a resample where no class is defined is skipped.

    Returns:
        dict with auroc, lo, hi (NaN if no class is defined), n_classes (used), n_boot_valid.
    """
    y_true, y_prob = _as_2d(y_true, y_prob)
    labelled = ~np.isnan(y_true)
    n_pos = np.nansum(y_true, 0)
    n_neg = labelled.sum(0) - n_pos
    defined = np.flatnonzero((n_pos > 0) & (n_neg > 0))
    out: dict[str, Any] = {
        "auroc": math.nan,
        "lo": math.nan,
        "hi": math.nan,
        "n_classes": len(defined),
        "n_boot_valid": 0,
    }
    if len(defined) == 0:
        return out
    out["auroc"] = float(
        np.mean([roc_auc_score(y_true[labelled[:, c], c], y_prob[labelled[:, c], c]) for c in defined])
    )
    if n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOT_CHUNK_ELEMENTS // len(y_true))
    per_class = np.empty((n_boot, len(defined)))
    for done in range(0, n_boot, chunk):
        rows = rng.integers(0, len(y_true), size=(min(chunk, n_boot - done), len(y_true)))
        for j, c in enumerate(defined):
            y_c = np.nan_to_num(y_true[rows, c])
            per_class[done : done + len(rows), j] = auroc_ap_batch(y_c, y_prob[rows, c], labelled[rows, c])[0]
    any_defined = np.isfinite(per_class).any(1)
    with np.errstate(invalid="ignore"):
        boot = np.nanmean(per_class[any_defined], 1) if any_defined.any() else np.array([])
    out["lo"], out["hi"] = _percentile_ci(boot)
    out["n_boot_valid"] = int(any_defined.sum())
    return out


# ----------------------------------------------------------------------------- thresholds


def _thresholds_or_default(thresholds: Any, n_classes: int) -> np.ndarray:
    if thresholds is None:
        return np.full(n_classes, DEFAULT_THRESHOLD)
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thr.shape != (n_classes,):
        raise ValueError(f"need {n_classes} thresholds, got {thr.shape[0]}")
    return thr


def threshold_rule_text(rule: ThresholdRule, target_sensitivity: float = 0.9, target_specificity: float = 0.9) -> str:
    """One sentence stating how thresholds were chosen, for metadata and the model card."""
    texts = {
        "youden": "maximises Youden's J (sensitivity + specificity - 1)",
        "sensitivity": f"highest threshold reaching sensitivity >= {target_sensitivity:g}",
        "specificity": f"lowest threshold keeping specificity >= {target_specificity:g}",
        "f1": "maximises F1",
    }
    if rule not in texts:
        raise ValueError(f"unknown threshold rule {rule!r}; use one of {sorted(texts)}")
    return f"per class, on the validation split: {texts[rule]}; {DEFAULT_THRESHOLD} where a class lacks positive or negative labels"


def _threshold_one(yt: np.ndarray, yp: np.ndarray, rule: ThresholdRule, target: float) -> float:
    if rule == "f1":
        precision, recall, thr = precision_recall_curve(yt, yp)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        return float(thr[int(np.argmax(f1))])
    if rule == "specificity":  # the lowest observed score above the ceil(target * n_neg)-th lowest negative
        neg = np.sort(yp[yt == 0])
        cut = neg[int(np.ceil(target * len(neg))) - 1]
        above = yp[yp > cut]
        return float(above.min()) if above.size else float(np.nextafter(cut, np.inf))
    fpr, tpr, thr = roc_curve(yt, yp)
    finite = np.isfinite(thr)  # the first threshold is +inf (nothing called positive)
    fpr, tpr, thr = fpr[finite], tpr[finite], thr[finite]
    if rule == "youden":
        return float(thr[int(np.argmax(tpr - fpr))])
    reach = np.flatnonzero(tpr >= target)  # thresholds descend, so the first is the highest
    return float(thr[reach[0]])


def choose_thresholds(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    rule: ThresholdRule = "youden",
    target_sensitivity: float = 0.9,
    target_specificity: float = 0.9,
) -> np.ndarray:
    """Per-class operating thresholds, to be chosen on the VALIDATION split (never the test split).

    Args:
        y_true: (N, C) in {0, 1, NaN}.
        y_prob: (N, C) in [0, 1].
        rule: "youden" (max sensitivity + specificity - 1), "sensitivity" (highest threshold with
            sensitivity >= ``target_sensitivity``), "specificity" (lowest threshold with specificity
            >= ``target_specificity``: bounds how often a normal image is flagged) or "f1" (max F1).
            State it with :func:`threshold_rule_text` (or use :func:`threshold_selection`).
        target_sensitivity: in (0, 1], for rule "sensitivity".
        target_specificity: in (0, 1], for rule "specificity".

    Returns:
        float array (C,) in [0, 1]; 0.5 for classes without both positive and negative labels.
    """
    threshold_rule_text(rule, target_sensitivity, target_specificity)  # validates the rule
    target = target_specificity if rule == "specificity" else target_sensitivity
    y_true, y_prob = _as_2d(y_true, y_prob)
    out = np.full(y_true.shape[1], DEFAULT_THRESHOLD)
    for c in range(y_true.shape[1]):
        mask = ~np.isnan(y_true[:, c])
        yt, yp = y_true[mask, c], y_prob[mask, c]
        if _class_note(int(yt.sum()), int((yt == 0).sum())) == "":
            out[c] = np.clip(_threshold_one(yt, yp, rule, target), 0.0, 1.0)
    return out


def threshold_selection(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    classes: Sequence[str] | None = None,
    rule: ThresholdRule = "youden",
    target_sensitivity: float = 0.9,
    split_name: str = "validation",
    target_specificity: float = 0.9,
) -> dict[str, Any]:
    """:func:`choose_thresholds` plus the rule, split and per-class notes, for model metadata."""
    y_true, y_prob = _as_2d(y_true, y_prob)
    names = _class_names(classes, y_true.shape[1])
    thr = choose_thresholds(y_true, y_prob, rule, target_sensitivity, target_specificity)
    n_pos = np.nansum(y_true, 0).astype(int)
    n_neg = (y_true == 0).sum(0)
    notes = {
        name: f"{_class_note(int(p), int(q))}; threshold {DEFAULT_THRESHOLD} (default)"
        for name, p, q in zip(names, n_pos, n_neg)
        if _class_note(int(p), int(q))
    }
    return {
        "rule": rule,
        "description": threshold_rule_text(rule, target_sensitivity, target_specificity),
        "split": split_name,
        "thresholds": dict(zip(names, thr.tolist())),
        "notes": notes,
    }


# ----------------------------------------------------------------------------- calibration


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, PROB_EPS, 1 - PROB_EPS)
    return np.log(p) - np.log1p(-p)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of logits z against labels y, computed stably."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(y_true: np.ndarray, scores: np.ndarray, from_logits: bool = False) -> np.ndarray:
    """Per-class temperature T minimising the masked NLL of ``sigmoid(logit / T)`` on held-out data.

    Args:
        y_true: (N, C) in {0, 1, NaN}; NaN entries are ignored.
        scores: (N, C) probabilities in [0, 1] or, with ``from_logits``, logits.
        from_logits: whether ``scores`` are logits.

    Returns:
        float array (C,) in [0.05, 20]; T > 1 softens over-confident outputs. 1.0 for classes
        without both positive and negative labels.
    """
    # logits may lie outside [0, 1]; _as_2d only checks shapes, labels and finiteness
    y_true, scores = _as_2d(y_true, scores)
    if not from_logits and ((scores < 0) | (scores > 1)).any():
        raise ValueError("probabilities must be in [0, 1]; pass from_logits=True for logits")
    z_all = scores if from_logits else _logit(scores)
    temps = np.ones(y_true.shape[1])
    for c in range(y_true.shape[1]):
        mask = ~np.isnan(y_true[:, c])
        y, z = y_true[mask, c], z_all[mask, c]
        if _class_note(int(y.sum()), int((y == 0).sum())):
            continue
        res = minimize_scalar(lambda t: _nll(z / t, y), bounds=TEMPERATURE_BOUNDS, method="bounded")
        temps[c] = float(res.x)
    return temps


def apply_temperature(scores: np.ndarray, temperature: np.ndarray | float, from_logits: bool = False) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logit / T)``.

    Args:
        scores: (N, C) probabilities in [0, 1] (or logits with ``from_logits``).
        temperature: scalar or (C,) positive temperatures.

    Returns:
        float array like ``scores``, in [0, 1].
    """
    scores = np.asarray(scores, dtype=np.float64)
    return contract.calibrate(scores if from_logits else _logit(scores), temperature)


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 10) -> float:
    """ECE over all labelled (image, class) entries pooled, with equal-width bins on [0, 1].

    ECE = sum over bins of (bin share of entries) x |mean probability - fraction positive|.

    Returns:
        float in [0, 1]; NaN when nothing is labelled.
    """
    y_true, y_prob = _as_2d(y_true, y_prob)
    mask = ~np.isnan(y_true)
    y, p = y_true[mask], y_prob[mask]
    if y.size == 0:
        return math.nan
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)  # p == 1 goes in the last bin
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, p, n_bins) - np.bincount(bins, y, n_bins))
    return float(gap.sum() / count.sum())


def reliability_diagram(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    path: str | Path,
    title: str,
    n_bins: int = 10,
    calibrated: np.ndarray | None = None,
) -> Path:
    """PNG reliability diagram (fraction positive vs mean probability per bin), pooled over classes.

    Args:
        calibrated: optional second set of probabilities (e.g. after temperature scaling),
            drawn on the same axes with its own ECE.

    Returns:
        the written path.
    """
    y_true, y_prob = _as_2d(y_true, y_prob)
    mask = ~np.isnan(y_true)
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    series = {"model": y_prob} if calibrated is None else {"before": y_prob, "after": calibrated}
    for name, probs in series.items():
        probs = np.asarray(probs, dtype=np.float64).reshape(y_true.shape)
        if mask.any() and len(np.unique(y_true[mask])) == 2:
            frac, mean = calibration_curve(y_true[mask], probs[mask], n_bins=n_bins)
            ece = expected_calibration_error(y_true, probs, n_bins)
            ax.plot(mean, frac, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability", ylabel="fraction positive")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def roc_plot(y_true: np.ndarray, y_prob: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "ROC") -> Path:
    """PNG of per-class ROC curves, AUROCs in the legend; classes lacking a label kind are listed as n/a."""
    y_true, y_prob = _as_2d(y_true, y_prob)
    names = _class_names(classes, y_true.shape[1])
    fig = Figure(figsize=(6.5, 5.5), dpi=100)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    colours = matplotlib.colormaps["tab20"]
    for c, name in enumerate(names):
        mask = ~np.isnan(y_true[:, c])
        yt, yp = y_true[mask, c], y_prob[mask, c]
        if _class_note(int(yt.sum()), int((yt == 0).sum())):
            ax.plot([], [], c="none", label=f"{name}: n/a")
            continue
        fpr, tpr, _ = roc_curve(yt, yp)
        ax.plot(fpr, tpr, lw=1.2, c=colours(c % 20), label=f"{name}: {roc_auc_score(yt, yp):.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=7, title="AUROC", title_fontsize=7)
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


# ----------------------------------------------------------------------------- MURA


def aggregate_studies(study_ids: Sequence[Any], probs: np.ndarray) -> pd.DataFrame:
    """Study verdicts by the MURA paper rule: the mean of its images' abnormality probabilities.

    Args:
        study_ids: (N,) one id per image.
        probs: (N,) image probabilities in [0, 1].

    Returns:
        DataFrame (study_id, n_images, probability), one row per study in first-seen order.
    """
    ids, n_images, means = contract.study_means(list(study_ids), np.asarray(probs, dtype=np.float64).reshape(-1))
    return pd.DataFrame({"study_id": ids, "n_images": n_images, "probability": means})


def _mura_row(group: str, df: pd.DataFrame) -> dict[str, Any]:
    y = df["label"].to_numpy(dtype=int)
    p = df["probability"].to_numpy(dtype=np.float64)
    pred = contract.flags(p, df["threshold"].to_numpy(dtype=np.float64)).astype(int)
    both = len(np.unique(y)) == 2
    # kappa is undefined (0/0) when labels and predictions are the same single value
    kappa_defined = len(np.unique(np.concatenate([y, pred]))) == 2
    kappa_lo, kappa_hi = _kappa_ci(y, pred) if kappa_defined else (math.nan, math.nan)
    return {
        "group": group,
        "n": len(df),
        "n_pos": int(y.sum()),
        "accuracy": float(accuracy_score(y, pred)),
        "auroc": float(roc_auc_score(y, p)) if both else math.nan,
        "kappa": float(cohen_kappa_score(y, pred)) if kappa_defined else math.nan,
        "kappa_lo": kappa_lo,
        "kappa_hi": kappa_hi,
        "note": "" if both else "one label only: AUROC undefined",
    }


def _kappa_ci(y: np.ndarray, pred: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of Cohen's kappa (resamples where it is undefined are dropped)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (n_boot, len(y)))
    yb, pb = y[idx].astype(np.float64), pred[idx].astype(np.float64)  # (n_boot, n), binary
    agree = (yb == pb).mean(axis=1)
    chance = yb.mean(axis=1) * pb.mean(axis=1) + (1 - yb.mean(axis=1)) * (1 - pb.mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(chance < 1, (agree - chance) / (1 - chance), np.nan)  # undefined resamples: NaN
    return _percentile_ci(kappa)


def mura_metrics(study_table: pd.DataFrame) -> pd.DataFrame:
    """MURA study-level metrics, overall and per study type.

    Args:
        study_table: columns study_id, study_type, label (0 normal / 1 abnormal), probability
            (study mean, in [0, 1]) and threshold (per row, usually constant).

    Returns:
        DataFrame (group, n, n_pos, accuracy, auroc, kappa with its bootstrap 95 % interval, note):
        first row "overall", then one row
        per study type present. AUROC is NaN with a note where a group has one label only.
    """
    needed = {"study_id", "study_type", "label", "probability", "threshold"}
    missing = needed - set(study_table.columns)
    if missing:
        raise ValueError(f"study table lacks columns {sorted(missing)}")
    if study_table["study_id"].duplicated().any():
        raise ValueError("study table has repeated study ids: aggregate images first")
    rows = [_mura_row("overall", study_table)]
    rows += [_mura_row(t, g) for t, g in study_table.groupby("study_type", sort=True)]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- bundle


def to_jsonable(obj: Any) -> Any:
    """Nested numpy/pandas values -> plain JSON types; NaN and inf become None."""
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def evaluate(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    classes: Sequence[str],
    split_name: str,
    thresholds: np.ndarray | Sequence[float] | None = None,
    threshold_rule: str | None = None,
    y_prob_uncalibrated: np.ndarray | None = None,
    plots_dir: str | Path | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    n_bins: int = 10,
) -> dict[str, Any]:
    """All held-out metrics of one split, JSON-serialisable (NaN -> None), for metadata "metrics".

    Args:
        y_true: (N, C) in {0, 1, NaN}.
        y_prob: (N, C) probabilities in [0, 1] as the model reports them (after calibration).
        classes: C class names.
        split_name: states the split, e.g. "NIH sample validation, 150 images of 150 patients, by patient".
        thresholds: (C,) operating thresholds (chosen on validation); default 0.5.
        threshold_rule: sentence stating how the thresholds were chosen.
        y_prob_uncalibrated: the same outputs before temperature scaling, for ECE before/after.
        plots_dir: if given, writes roc.png and reliability.png there (names stored under "plots").
        n_boot, seed: bootstrap settings. n_bins: calibration bins.

    Returns:
        dict: split, n_images, classes, per_class (list of row dicts), macro_auroc, thresholds,
        calibration (ece_before/ece_after, per class), bootstrap, plots.
    """
    y_true, y_prob = _as_2d(y_true, y_prob)
    names = _class_names(classes, y_true.shape[1])
    table = per_class_metrics(y_true, y_prob, names, thresholds, n_boot, seed)
    calibration: dict[str, Any] = {
        "n_bins": n_bins,
        "ece_after": expected_calibration_error(y_true, y_prob, n_bins),
        "ece_after_per_class": {
            n: expected_calibration_error(y_true[:, c], y_prob[:, c], n_bins) for c, n in enumerate(names)
        },
    }
    if y_prob_uncalibrated is not None:
        _, before = _as_2d(y_true, y_prob_uncalibrated)
        calibration["ece_before"] = expected_calibration_error(y_true, before, n_bins)
        calibration["ece_before_per_class"] = {
            n: expected_calibration_error(y_true[:, c], before[:, c], n_bins) for c, n in enumerate(names)
        }
    plots: dict[str, str] = {}
    if plots_dir is not None:
        plots_dir = Path(plots_dir)
        roc_plot(y_true, y_prob, names, plots_dir / "roc.png", f"ROC, {split_name}")
        reliability_diagram(
            y_true, y_prob_uncalibrated if y_prob_uncalibrated is not None else y_prob,
            plots_dir / "reliability.png", f"Reliability, {split_name}", n_bins,
            calibrated=y_prob if y_prob_uncalibrated is not None else None,
        )
        plots = {"roc": "roc.png", "reliability": "reliability.png"}
    result = {
        "split": split_name,
        "n_images": int(len(y_true)),
        "classes": names,
        "per_class": table,
        "macro_auroc": macro_auroc(y_true, y_prob, n_boot, seed),
        "thresholds": {
            "values": dict(zip(names, _thresholds_or_default(thresholds, len(names)).tolist())),
            "rule": threshold_rule or ("default 0.5" if thresholds is None else "not stated"),
        },
        "calibration": calibration,
        "bootstrap": {"n_boot": n_boot, "seed": seed, "ci": CI_LEVEL, "method": "percentile"},
        "plots": plots,
    }
    return to_jsonable(result)


def evaluate_mura(study_table: pd.DataFrame, split_name: str) -> dict[str, Any]:
    """MURA study-level metrics as a JSON-serialisable dict for metadata "metrics".

    Args:
        study_table: as for :func:`mura_metrics` (one row per study, probability = study mean).
        split_name: states the split.

    Returns:
        dict: split, n_studies, rule, study_level (list of row dicts, "overall" first).
    """
    return to_jsonable(
        {
            "split": split_name,
            "n_studies": int(len(study_table)),
            "rule": "mean of the study's image probabilities (MURA paper), abnormal if >= threshold",
            "study_level": mura_metrics(study_table),
        }
    )
