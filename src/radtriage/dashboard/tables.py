"""Pure functions from a model's metadata and probabilities to what the page shows (no Streamlit).

A model's :class:`~radtriage.artifact.ModelMetadata` (``metadata.json`` beside ``model.h5``) states
its classes, operating thresholds, validation metrics (with the split they were measured on) and, per
class, where its knowledge comes from (``labels.PROVENANCE_*``). Everything shown about a model is
read from there, and every result from a :class:`~radtriage.predictor.Prediction` as the predictor
made it (flags included: the page never re-applies a threshold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from radtriage.artifact import ModelMetadata
from radtriage.labels import PROVENANCE_NONE, PROVENANCE_REAL, PROVENANCE_SYNTHETIC
from radtriage.predictor import Prediction


@dataclass(frozen=True)
class ModelFacts:
    """What a model says about itself, one entry per class in output order.

    Attributes:
        name: model name (its folder name).
        task: "chest" or "mura".
        classes: output class names.
        thresholds: operating threshold per class, in [0, 1].
        flaggable: per class, whether the model may flag it (real labels and a validation AUROC
            interval above 0.5); the others are shown apart, never ranked with validated classes.
        provenance: per class, one of ``labels.PROVENANCE_*``.
        auroc: per class validation AUROC in [0, 1], or None where not measured.
        auroc_ci: per class (low, high) 95% interval, or None.
        split: the held-out split the metrics were measured on, or None.
    """

    name: str
    task: str
    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    flaggable: tuple[bool, ...]
    provenance: tuple[str, ...]
    auroc: tuple[float | None, ...]
    auroc_ci: tuple[tuple[float, float] | None, ...]
    split: str | None


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def metric_set(metrics: Any) -> dict[str, Any]:
    """The held-out metrics to show: the "validation" set when metrics are keyed by role.

    ``metrics`` is one :func:`radtriage.evaluation.evaluate` (or ``evaluate_mura``) dict, which
    states its ``split``, or a dict of them keyed by role (``{"validation": {...}, "test": {...}}``).
    """
    if not isinstance(metrics, Mapping) or not metrics:
        return {}
    if "split" in metrics:
        return dict(metrics)
    sets = {role: m for role, m in metrics.items() if isinstance(m, Mapping)}
    return dict(sets.get("validation") or next(iter(sets.values()), {}))


def _class_aurocs(m: Mapping[str, Any], classes: Sequence[str]) -> list[tuple[float | None, tuple[float, float] | None]]:
    """(AUROC, 95% CI) per class from evaluate()'s per_class rows, or MURA's study-level overall row."""
    found: dict[str, tuple[float | None, tuple[float, float] | None]] = {}
    for row in m.get("per_class") or []:
        if isinstance(row, Mapping) and "class" in row:
            lo, hi = _finite(row.get("auroc_lo")), _finite(row.get("auroc_hi"))
            found[row["class"]] = (_finite(row.get("auroc")), (lo, hi) if lo is not None and hi is not None else None)
    overall = next((r for r in m.get("study_level") or [] if isinstance(r, Mapping) and r.get("group") == "overall"), None)
    if overall is not None and len(classes) == 1 and classes[0] not in found:
        found[classes[0]] = (_finite(overall.get("auroc")), None)
    return [found.get(c, (None, None)) for c in classes]


def model_facts(metadata: ModelMetadata) -> ModelFacts:
    """Read a model's self-description from its verified metadata (see :class:`ModelFacts`)."""
    classes = tuple(metadata.classes)
    thresholds = tuple(float(metadata.thresholds[c]) for c in classes)
    flaggable = tuple(bool(metadata.flaggable[c]) for c in classes)
    provenance = tuple(str(metadata.provenance[c]) for c in classes)
    metrics = metric_set(metadata.metrics)
    entries = _class_aurocs(metrics, classes)
    split = metrics.get("split")
    if split is not None and metrics.get("study_level"):
        split = f"{split} (study level)"
    return ModelFacts(
        name=metadata.name,
        task=metadata.task,
        classes=classes,
        thresholds=thresholds,
        flaggable=flaggable,
        provenance=provenance,
        auroc=tuple(a for a, _ in entries),
        auroc_ci=tuple(c for _, c in entries),
        split=None if split is None else str(split),
    )


def _auroc_text(auroc: float | None, ci: tuple[float, float] | None) -> str:
    if auroc is None:
        return "not measured"
    return f"{auroc:.2f} ({ci[0]:.2f}–{ci[1]:.2f})" if ci else f"{auroc:.2f}"


def probability_table(prediction: Prediction, facts: ModelFacts) -> pd.DataFrame:
    """One row per class, most probable first.

    Args:
        prediction: the model's calibrated output for one image or study.
        facts: the model's :class:`ModelFacts` (validation AUROC and provenance per class).

    Returns:
        DataFrame with columns Finding, Probability, Threshold, Flagged (the prediction's flags),
        Reliable (the class may be flagged), Validation AUROC (95% CI) and Provenance.
    """
    if list(prediction.probabilities) != list(facts.classes):
        raise ValueError(f"the prediction's classes {list(prediction.probabilities)} are not the model's")
    frame = pd.DataFrame(
        {
            "Finding": facts.classes,
            "Probability": prediction.vector(),
            "Threshold": [prediction.thresholds[c] for c in facts.classes],
            "Flagged": [prediction.flags[c] for c in facts.classes],
            "Reliable": list(facts.flaggable),
            "Validation AUROC (95% CI)": [_auroc_text(a, c) for a, c in zip(facts.auroc, facts.auroc_ci)],
            "Provenance": facts.provenance,
        }
    )
    return frame.sort_values("Probability", ascending=False, kind="stable").reset_index(drop=True)


def flagged_findings(table: pd.DataFrame) -> list[str]:
    """Names of the flagged classes, most probable first."""
    return table.loc[table["Flagged"], "Finding"].tolist()


def summary_sentence(table: pd.DataFrame) -> str:
    """One plain sentence: which findings are above their operating threshold, or none."""
    flags = table[table["Flagged"]]
    if flags.empty:
        return "No finding above threshold."
    items = [f"{r.Finding} ({r.Probability:.2f} ≥ {r.Threshold:.2f})" for r in flags.itertuples()]
    return f"Flagged above threshold: {', '.join(items)}."


def model_statement(facts: ModelFacts) -> str:
    """What the model knows, in one or two sentences built from its provenance and metrics."""
    groups: dict[str, list[str]] = {}
    for name, prov in zip(facts.classes, facts.provenance):
        groups.setdefault(prov, []).append(name)
    parts = []
    n = len(facts.classes)
    if real := groups.get(PROVENANCE_REAL):
        where = f" (validation AUROC on {facts.split})" if facts.split else ""
        parts.append(f"{len(real)} of {n} {'classes' if n > 1 else 'class'} learned from real labelled radiographs{where}")
    if synth := groups.get(PROVENANCE_SYNTHETIC):
        names = ", ".join(synth) if len(synth) < n else "all classes"
        parts.append(f"{names}: learned from synthetic phantoms only, not validated on real radiographs")
    if none := groups.get(PROVENANCE_NONE):
        parts.append(f"{', '.join(none)}: no training data (output is not meaningful)")
    other = [p for p in groups if p not in (PROVENANCE_REAL, PROVENANCE_SYNTHETIC, PROVENANCE_NONE)]
    for prov in other:
        parts.append(f"{', '.join(groups[prov])}: {prov}")
    return f"Model '{facts.name}': " + "; ".join(parts) + "."


def only_synthetic(facts: ModelFacts) -> bool:
    """True when no class of the model has been trained on real labels."""
    return PROVENANCE_REAL not in facts.provenance


def study_table(names: Sequence[str], predictions: Sequence[Prediction]) -> pd.DataFrame:
    """Per-image probabilities of a one-class (abnormal) model's study: columns Image, Probability of
    abnormal, Flagged (each image's own flag; the study's verdict is the mean's)."""
    return pd.DataFrame({"Image": list(names),
                         "Probability of abnormal": [float(p.vector()[0]) for p in predictions],
                         "Flagged": [bool(next(iter(p.flags.values()))) for p in predictions]})
