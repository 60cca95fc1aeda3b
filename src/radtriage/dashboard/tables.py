"""Pure functions from a model's metadata and probabilities to what the page shows (no Streamlit).

A model's :class:`~radtriage.artifact.ModelMetadata` (``metadata.json`` beside ``model.h5``) states
its classes, operating thresholds, validation metrics (with the split they were measured on) and, per
class, where its knowledge comes from (``labels.PROVENANCE_*``). Everything shown about a model is
read from there, and every result from a :class:`~radtriage.predictor.Prediction` as the predictor
made it (flags included: the page never re-applies a threshold).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from radtriage.artifact import ModelMetadata
from radtriage.labels import ANY_FINDING, PROVENANCE_NONE, PROVENANCE_REAL, PROVENANCE_SYNTHETIC
from radtriage.model_card import is_synthetic_split, plain_split, plain_training
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
        headline: one plain sentence for a clinician: what the model learnt from and how well it tells
            abnormal from normal on real held-out images (or that it was never tested on them).
        details: the technical statement behind it (recipe, splits as recorded, threshold rule,
            calibration), one line each, shown one click away.
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
    headline: str = ""
    details: tuple[str, ...] = ()


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
    facts = ModelFacts(
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
    return dataclasses.replace(facts, headline=headline(metadata, facts), details=details(metadata, facts))


def _quoted_set(metrics: Any) -> dict[str, Any]:
    """The metrics a headline quotes: the test set (never tuned on) when there is one, else :func:`metric_set`."""
    if isinstance(metrics, Mapping) and "split" not in metrics and isinstance(metrics.get("test"), Mapping):
        return dict(metrics["test"])
    return metric_set(metrics)


def headline(metadata: ModelMetadata, facts: ModelFacts) -> str:
    """One plain sentence: what the model learnt from and how well it tells abnormal from normal on
    real images it never trained on, or that it was never tested on real images.

    The normal/abnormal figure is the AUROC of the class that says "abnormal" (``Any finding`` for
    the chest, the one class of a MURA model), on the test set if there is one, else validation.
    """
    training = metadata.training_data or {}
    if training.get("phantom_only") or only_synthetic(facts):
        return ("Learnt from synthetic phantom images only and never tested on real radiographs: "
                "its outputs are a demonstration, not evidence.")
    learnt = f"Learnt from {plain_training(training.get('data')) or 'real labelled radiographs'}"
    quoted = _quoted_set(metadata.metrics)
    split = quoted.get("split")
    overall = ANY_FINDING if ANY_FINDING in facts.classes else facts.classes[0] if len(facts.classes) == 1 else None
    if split and is_synthetic_split(str(split)):
        return f"{learnt}; it has never been tested on real images, only on synthetic phantoms."
    if overall is None:  # no normal/abnormal output: the macro AUROC over its findings
        return _macro_headline(learnt, quoted, facts)
    auroc, ci = _class_aurocs(quoted, [overall])[0] if split else (None, None)
    if auroc is None:
        return f"{learnt}; it has not been tested on real images it never trained on."
    interval = f", 95 % CI {ci[0]:.2f}–{ci[1]:.2f}" if ci else ""
    return (f"{learnt}; on {plain_split(str(split))}, it ranks a random abnormal image above a random normal "
            f"one {auroc:.0%} of the time (AUROC {auroc:.2f}{interval}; 0.5 is chance, 1 is perfect).")


def _macro_headline(learnt: str, quoted: Mapping[str, Any], facts: ModelFacts) -> str:
    """:func:`headline` of a model without a normal/abnormal output: its macro AUROC over its findings
    (as recorded, else the mean of the per-class AUROCs recorded)."""
    aurocs = [a for a, _ in _class_aurocs(quoted, facts.classes) if a is not None]
    macro = _finite((quoted.get("macro_auroc") or {}).get("auroc")) or (float(np.mean(aurocs)) if aurocs else None)
    if macro is None:
        return f"{learnt}; it has not been tested on real images it never trained on."
    return (f"{learnt}; on {plain_split(str(quoted.get('split')))}, it tells images with a finding from images "
            f"without it with a mean AUROC of {macro:.2f} over {len(aurocs)} findings (0.5 is chance, 1 is perfect).")


def details(metadata: ModelMetadata, facts: ModelFacts) -> tuple[str, ...]:
    """The technical detail behind :func:`headline`, one line each (recipe names and jargon allowed)."""
    training = metadata.training_data or {}
    lines = [model_statement(facts)]
    if architecture := (metadata.train_config or {}).get("architecture"):
        lines.append(f"Recipe / architecture: {architecture}.")
    if statement := training.get("data_statement"):
        lines.append(f"Training data: {statement}")
    metrics = metadata.metrics or {}
    for role, m in ({"evaluation": metrics} if "split" in metrics else metrics).items():
        if not isinstance(m, Mapping):
            continue
        lines.append(f"{str(role).capitalize()} split, as recorded: {m.get('split')}.")
        if rule := (m.get("thresholds") or {}).get("rule"):
            lines.append(f"{str(role).capitalize()} thresholds: {rule}.")
        if cal := m.get("calibration"):
            lines.append(f"{str(role).capitalize()} calibration: expected calibration error (ECE) "
                         f"{cal.get('ece_before', float('nan')):.3f} before temperature scaling, "
                         f"{cal.get('ece_after', float('nan')):.3f} after.")
    if rule := training.get("flag_rule"):
        lines.append(f"Flag rule: {rule}.")
    return tuple(lines)


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


def unique_names(names: Sequence[str]) -> list[str]:
    """File names made distinct in upload order: MURA names every file ``image1.png``, so repeated
    names get their rank among the same name, e.g. ["image1.png (1)", "image1.png (2)", "a.png"]."""
    counts = {n: list(names).count(n) for n in names}
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(f"{n} ({seen[n]})" if counts[n] > 1 else n)
    return out


def study_note(table: pd.DataFrame, mean: float, threshold: float) -> str | None:
    """Why an image flagged on its own sits in a study called Normal, in one sentence (else None).

    Args:
        table: :func:`study_table` of the study (Image, Probability of abnormal, Flagged).
        mean: the study's probability, the mean of its images' (the verdict's basis).
        threshold: the operating threshold.
    """
    if mean >= threshold or not table["Flagged"].any():
        return None
    rows = table[table["Flagged"]]
    above = [f"{name} ({p:.2f})" for name, p in zip(rows["Image"], rows["Probability of abnormal"])]
    return (f"{', '.join(above)} {'is' if len(above) == 1 else 'are'} above the threshold ({threshold:.2f}) on "
            f"{'its' if len(above) == 1 else 'their'} own, but the study is called Normal because its verdict is the "
            f"mean of its {len(table)} images' probabilities ({mean:.2f}), which is below the threshold.")
