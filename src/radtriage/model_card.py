"""Markdown model card written from a model's metadata alone: every figure comes from metadata.

Metadata keys read (all optional except ``classes``; missing ones are reported as "not recorded"):

- ``name``, ``task`` ("chest" | "mura"), ``version``, ``created``, ``architecture``: identity.
- ``classes``: output names, in order. ``provenance``: class -> provenance string (dict, or list
  in class order) using ``labels.PROVENANCE_*``.
- ``thresholds`` (dict class -> value or list), ``threshold_rule`` (sentence),
  ``temperature`` (dict or list, per class).
- ``preprocess``: the ``PreprocessConfig`` dict.
- ``training``: dict; ``data`` (str or list of str: what it was trained on), ``splits`` (str),
  ``phantom_only`` (bool: trained on synthetic phantoms only), other keys listed as they are.
- ``metrics``: one :func:`radtriage.evaluation.evaluate` dict (it has ``split``), or a dict of
  them keyed by role (``{"validation": {...}, "test": {...}}``); a dict with ``study_level``
  (from :func:`radtriage.evaluation.evaluate_mura`) is rendered as a MURA study table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from radtriage.labels import PROVENANCE_NONE, PROVENANCE_SYNTHETIC

INTENDED_USE = (
    "A research second reader, not a medical device. It may help order or double-check a worklist of "
    "radiographs for research, but it is never the sole basis of a clinical decision: every output needs "
    "review by a qualified reader."
)
# What a split's images are, by the source named in its recorded description (first match wins).
SOURCE_PHRASES = (
    ("phantom", "synthetic phantom images (not real radiographs)"),
    ("nih", "NIH chest x-rays"),
    ("vinbigdata", "VinBigData chest x-rays"),
    ("kermany", "Kermany paediatric chest x-rays"),
    ("fracatlas", "FracAtlas upper-limb x-rays"),
    ("mura", "MURA upper-limb x-rays"),
)
# What a source's labels say, added where the training data is named (a clinician reads "abnormal" by it).
LABEL_NOTES = (("fracatlas", " (labelled normal or fractured)"), ("nih", " (labels mined from their reports)"))
# runs.sources.describe_split: "<source> <role>: <how it was drawn>; <n> images of <p> patients"
SPLIT_PATTERN = re.compile(r"(?P<source>[^;:]*?)\s*\b(?P<role>train|validation|test|evaluation|hold-out)?: "
                           r"(?P<how>[^;]*); (?P<n>\d+) images of (?P<patients>\d+) patients")
TRAINING_PATTERN = re.compile(r"^(?P<source>[^:]+): (?P<n>[\d,]+) training images")
NA = "n/a"
CARD_FILE = "MODEL_CARD.md"  # the card's name in a model folder
SERVING_HEADING = "## Serving"
OOD_HEADING = "## Out-of-distribution refusal"
LIMITS_HEADING = "## Limitations"


def _num(value: Any, digits: int = 3) -> str:
    return NA if value is None else f"{float(value):.{digits}f}"


def _with_ci(value: Any, lo: Any, hi: Any, digits: int = 3) -> str:
    if value is None:
        return NA
    if lo is None or hi is None:
        return _num(value, digits)
    return f"{_num(value, digits)} [{_num(lo, digits)}, {_num(hi, digits)}]"


def _per_class(value: Any, classes: Sequence[str]) -> dict[str, Any]:
    """Dict, class-ordered list or one scalar for all -> dict class -> value (missing classes absent)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (int, float, str)):
        return {c: value for c in classes}
    return dict(zip(classes, value))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return lines


def _metric_sets(metrics: Any) -> list[tuple[str, dict[str, Any]]]:
    """(role, metrics dict) pairs from either one evaluate() dict or a dict of them."""
    if not isinstance(metrics, Mapping) or not metrics:
        return []
    if "split" in metrics:
        return [("evaluation", dict(metrics))]
    return [(str(role), dict(m)) for role, m in metrics.items() if isinstance(m, Mapping)]


def source_phrase(source: str) -> str:
    """What a dataset's images are, in plain words, e.g. "NIH ChestX-ray14 sample" -> "NIH chest x-rays"."""
    low = source.lower()
    return next((phrase for key, phrase in SOURCE_PHRASES if key in low), f"images of {source}" if source else "images")


def is_synthetic_split(split: str | None) -> bool:
    """True when a recorded split (or training data) description names synthetic phantoms."""
    return bool(split) and any(word in split.lower() for word in ("phantom", "synthetic"))


def plain_split(split: str) -> str:
    """A recorded split named by what it is made of, e.g. "143 NIH chest x-rays of 143 patients, never
    used to train the model"; an unrecognised description is returned as recorded.

    Args:
        split: the ``split`` a metrics dict states (:func:`radtriage.runs.sources.describe_split`'s form).
    """
    match = SPLIT_PATTERN.search(split)
    if not match:
        return split
    how = match["how"]
    use = ("never used to train or tune the model" if "tuned on" in how else
           "never used to train the model" if "never trained on" in how else "")
    text = f"{match['n']} {source_phrase(match['source'].strip())} of {match['patients']} patients"
    return f"{text}, {use}" if use else text


def plain_training(data: Any) -> str | None:
    """The training data in plain words, e.g. "357 NIH chest x-rays", from ``training.data``."""
    items = data if isinstance(data, (list, tuple)) else [data] if data else []
    parts = []
    for item in items:
        match = TRAINING_PATTERN.match(str(item))
        note = next((n for key, n in LABEL_NOTES if match and key in match["source"].lower()), "")
        parts.append(f"{match['n']} {source_phrase(match['source'])}{note}" if match else str(item))
    return " and ".join(parts) or None


def split_remark(split: str) -> str:
    """What a recorded split description says after its counts, e.g. " (also used for thresholds...)"."""
    match = SPLIT_PATTERN.search(split)
    return split[match.end():] if match else ""


def _drawn(split: str) -> str:
    """How a split was drawn, without the internal module that draws it."""
    match = SPLIT_PATTERN.search(split)
    how = match["how"] if match else split
    return re.sub(r"\s+of radtriage(\.\w+)+", "", how)


def _identity(meta: Mapping[str, Any]) -> list[str]:
    name = meta.get("name", "unnamed model")
    lines = [f"# Model card: {name}", ""]
    for key in ("task", "version", "created", "architecture"):
        if key in meta:
            lines.append(f"- **{key.capitalize()}**: {meta[key]}")
    n = len(meta["classes"])
    lines.append(f"- **Outputs**: {n} sigmoid {'probability' if n == 1 else 'probabilities'} ({', '.join(meta['classes'])})")
    return lines + ["", "## Intended use", "", INTENDED_USE, ""]


def _data(meta: Mapping[str, Any], sets: list[tuple[str, dict[str, Any]]]) -> list[str]:
    training = meta.get("training") or {}
    lines = ["## Data and splits", ""]
    data = training.get("data")
    if isinstance(data, (list, tuple)):
        lines += ["- **Training data**:"] + [f"  - {d}" for d in data]
    else:
        lines.append(f"- **Training data**: {data or 'not recorded'}")
    splits = str(training.get("splits") or "")
    parts = [(m["role"] or "split", m.group(0)) for m in SPLIT_PATTERN.finditer(splits)]
    if parts:
        lines += ["- **Splits**:"] + [f"  - {role.capitalize()}: {plain_split(text)} ({_drawn(text)})"
                                      for role, text in parts]
    else:
        lines.append(f"- **Splits**: {splits or 'not recorded'}")
    for key, value in training.items():
        if key not in ("data", "splits", "phantom_only"):
            lines.append(f"- **{key.replace('_', ' ').capitalize()}**: {value}")
    for role, m in sets:
        split = str(m.get("split", "not stated"))
        lines.append(f"- **Metrics measured on ({role})**: {plain_split(split)}{split_remark(split)}")
    preprocess = meta.get("preprocess")
    if preprocess:
        lines.append("- **Preprocessing**: " + ", ".join(f"{k}={v}" for k, v in preprocess.items()))
    return lines + [""]


def _class_rows(meta: Mapping[str, Any], m: Mapping[str, Any]) -> list[list[str]]:
    classes = meta["classes"]
    provenance = _per_class(meta.get("provenance"), classes)
    rows = []
    for r in m.get("per_class", []):
        name = r["class"]
        rows.append(
            [
                name,
                provenance.get(name, "not recorded"),
                str(r.get("n", NA)),
                _num(r.get("prevalence"), 3),
                _with_ci(r.get("auroc"), r.get("auroc_lo"), r.get("auroc_hi")),
                _with_ci(r.get("ap"), r.get("ap_lo"), r.get("ap_hi")),
                _num(r.get("threshold")),
                _with_ci(r.get("sensitivity"), r.get("sensitivity_lo"), r.get("sensitivity_hi"), 2),
                _with_ci(r.get("specificity"), r.get("specificity_lo"), r.get("specificity_hi"), 2),
                r.get("note") or "",
            ]
        )
    return rows


def _performance(meta: Mapping[str, Any], sets: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = ["## Performance", ""]
    if not sets:
        return lines + ["No held-out metrics are recorded for this model.", ""]
    header = ["Class", "Provenance", "n", "Prevalence", "AUROC [95% CI]", "AP [95% CI]",
              "Threshold", "Sensitivity [95% CI]", "Specificity [95% CI]", "Note"]
    for role, m in sets:
        split = m.get("split")
        lines += [f"### {role.capitalize()}: {plain_split(split) + split_remark(split) if split else 'split not stated'}", ""]
        if is_synthetic_split(split):
            lines += ["These are synthetic phantom images: the figures below say nothing about real radiographs.", ""]
        if "per_class" in m:
            n_images = m.get("n_images")
            if n_images is not None:
                lines += [f"{n_images} images.", ""]
            lines += _table(header, _class_rows(meta, m)) + [""]
            macro = m.get("macro_auroc") or {}
            lines.append(
                f"**Macro AUROC** over {macro.get('n_classes', NA)} classes with a defined AUROC: "
                f"{_with_ci(macro.get('auroc'), macro.get('lo'), macro.get('hi'))}"
            )
            boot = m.get("bootstrap") or {}
            if boot:
                lines.append(
                    f"Intervals: {boot.get('method', '')} bootstrap, {boot.get('n_boot', NA)} resamples "
                    f"(seed {boot.get('seed', NA)}); sensitivity/specificity: Wilson intervals."
                )
            rule = (m.get("thresholds") or {}).get("rule")
            if rule:
                lines.append(f"Thresholds: {rule}.")
            lines.append("")
        if "study_level" in m:
            lines += _mura_section(m)
    return lines


def _mura_section(m: Mapping[str, Any]) -> list[str]:
    lines = [f"Study verdict: {m.get('rule', 'rule not stated')}.", ""]
    rows = [
        [r["group"], str(r["n"]), str(r.get("n_pos", NA)), _num(r.get("accuracy")), _num(r.get("auroc")),
         _with_ci(r.get("kappa"), r.get("kappa_lo"), r.get("kappa_hi")), r.get("note") or ""]
        for r in m["study_level"]
    ]
    return lines + _table(["Group", "Studies", "Abnormal", "Accuracy", "AUROC", "Cohen's kappa [95 % CI]", "Note"], rows) + [""]


def _calibration(meta: Mapping[str, Any], sets: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = ["## Calibration", ""]
    temps = _per_class(meta.get("temperature"), meta["classes"])
    if temps:
        lines.append("Per-class temperature scaling, p = sigmoid(logit / T), fitted on the validation split:")
        lines += [""] + _table(["Class", "T"], [[c, _num(t, 2)] for c, t in temps.items()]) + [""]
    else:
        lines += ["No temperature scaling is recorded.", ""]
    for role, m in sets:
        cal = m.get("calibration") or {}
        if cal:
            lines.append(
                f"- {role.capitalize()}: expected calibration error ({cal.get('n_bins', NA)} bins, all labelled "
                f"outputs pooled) before {_num(cal.get('ece_before'))}, after {_num(cal.get('ece_after'))}."
            )
    return lines + [""]


def _plots(plots: Mapping[str, str | Path] | None, out_dir: Path) -> list[str]:
    if not plots:
        return []
    lines = ["## Plots", ""]
    for title, path in plots.items():
        rel = Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()
        lines += [f"![{title}]({rel})", ""]
    return lines


def _limits(meta: Mapping[str, Any], sets: list[tuple[str, dict[str, Any]]]) -> list[str]:
    classes = meta["classes"]
    provenance = _per_class(meta.get("provenance"), classes)
    synthetic = [c for c in classes if provenance.get(c) == PROVENANCE_SYNTHETIC]
    untrained = [c for c in classes if provenance.get(c) == PROVENANCE_NONE]
    unknown = [c for c in classes if c not in provenance]
    lines = [LIMITS_HEADING, ""]
    training = meta.get("training") or {}
    if training.get("phantom_only") or meta.get("phantom_only"):
        lines.append(
            "- **Trained on synthetic phantom radiographs only.** No real radiograph with this task's "
            "labels was used in training; its outputs on real images are not validated and must not be "
            "read as findings."
        )
    if synthetic:
        lines.append(
            f"- **Synthetic only** (learned from phantoms, never from real labels): {', '.join(synthetic)}. "
            "Outputs for these classes are demonstrations, not evidence."
        )
    if untrained:
        lines.append(f"- **No training signal** (provenance \"none\"): {', '.join(untrained)}. Outputs are meaningless.")
    if unknown:
        lines.append(f"- Provenance not recorded for: {', '.join(unknown)}.")
    flaggable = meta.get("flaggable") or {}
    never = [c for c in classes if flaggable.get(c) is False]
    if never:
        lines.append(f"- **Never flagged** (no real training labels, or a validation AUROC interval that includes "
                     f"0.5): {', '.join(never)}. Shown apart, as not reliable.")
    for role, m in sets:
        undefined = [r["class"] for r in m.get("per_class", []) if r.get("auroc") is None]
        if undefined:
            lines.append(
                f"- Not evaluable on the {role} split (no positive or no negative labels): {', '.join(undefined)}."
            )
    lines += [
        "- Thresholds and calibration were fitted on a small validation split; prevalences there differ "
        "from clinical practice, so predictive values do not transfer.",
        "- Grad-CAM heatmaps show where the network's evidence lies, not where a lesion is.",
        "",
    ]
    return lines


def _serving(meta: Mapping[str, Any]) -> list[str]:
    lines = [SERVING_HEADING, "", "- Keras (`model.h5`): the reference."]
    entry = (meta.get("serving") or {}).get("litert")
    if entry:
        diff = entry.get("max_abs_diff_vs_keras")
        lines.append(
            f"- LiteRT (`{entry.get('file')}`, the CLI's default backend): calibrated probabilities within "
            f"{_sci(diff)} of Keras on {entry.get('checked_on', 'inputs not recorded')} "
            f"(tolerance {entry.get('tolerance', NA)})."
        )
        explain = entry.get("explain")
        if isinstance(explain, dict):
            lines.append(
                f"- LiteRT Grad-CAM (`{explain.get('file')}`, used by the dashboard and the PACS connector): the "
                f"same graph as Keras's Grad-CAM; heatmaps within {_sci(explain.get('max_abs_heatmap_diff_vs_keras'))} "
                f"and probabilities within {_sci(explain.get('max_abs_diff_vs_keras'))} of Keras, the same class "
                f"explained, on {explain.get('checked_on', 'inputs not recorded')}."
            )
        else:
            lines.append("- No LiteRT Grad-CAM export: heatmaps come from Keras.")
    else:
        lines.append("- No LiteRT export: `radtriage export <model folder>` adds one after checking it against Keras; "
                     "until then probabilities and heatmaps come from Keras.")
    return lines + [""]


def _sci(value: Any) -> str:
    return format(value, ".1e") if isinstance(value, (int, float)) else NA


def _ood(meta: Mapping[str, Any]) -> list[str]:
    record = meta.get("ood") or {}
    lines = [OOD_HEADING, ""]
    if not record:
        return lines + ["- This model carries no out-of-distribution score: only the anatomy gate checks its inputs.", ""]
    lines += [
        "Before its probabilities are shown, an image must resemble the images this model learnt from; "
        "otherwise it is refused with a sentence (the CLI's `--force` and the dashboard's override show the "
        "result anyway, with a warning).",
        "",
        f"- Score: {record.get('method', NA)}, in the `{record.get('feature_layer', 'features')}` layer.",
        f"- Fitted on {record.get('fitted_on', NA)}; threshold {record.get('threshold', NA)} set on "
        f"{record.get('threshold_set_on', NA)}.",
    ]
    lines += [f"- Refused: {name}: {share}" for name, share in (record.get("refused") or {}).items()]
    gated = record.get("with_anatomy_gate") or {}
    if gated:
        lines += ["", "With the anatomy gate in front (`model/anatomy`), images of each held-out set refused when "
                  "this model is asked for (wrong anatomy or out of distribution):", ""]
        lines += [f"- {source}: {share}" for source, share in gated.items()]
    return lines + [""]


def set_ood_section(card_path: str | Path, metadata: Mapping[str, Any]) -> None:
    """Replace (or add before the limitations) the out-of-distribution section of an existing model card."""
    _set_section(card_path, OOD_HEADING, _ood(metadata))


def set_serving_section(card_path: str | Path, metadata: Mapping[str, Any]) -> None:
    """Replace (or add before the limitations) the serving section of an existing model card."""
    _set_section(card_path, SERVING_HEADING, _serving(metadata))


def _set_section(card_path: str | Path, heading: str, lines: list[str]) -> None:
    path = Path(card_path)
    text = path.read_text(encoding="utf-8")
    section = "\n".join(lines)
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    else:
        at = text.find(LIMITS_HEADING)
        text = text[:at] + section + "\n" + text[at:] if at >= 0 else text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def model_card_markdown(metadata: Mapping[str, Any], plots: Mapping[str, str | Path] | None = None,
                        out_dir: str | Path = ".") -> str:
    """The model card as a Markdown string; ``plots`` paths are made relative to ``out_dir``."""
    if "classes" not in metadata:
        raise ValueError("metadata has no 'classes': cannot describe the model's outputs")
    sets = _metric_sets(metadata.get("metrics"))
    sections = (
        _identity(metadata)
        + _data(metadata, sets)
        + _performance(metadata, sets)
        + _calibration(metadata, sets)
        + _plots(plots, Path(out_dir))
        + _serving(metadata)
        + _ood(metadata)
        + _limits(metadata, sets)
    )
    return "\n".join(sections)


def write_model_card(metadata: Mapping[str, Any], out_path: str | Path,
                     plots: Mapping[str, str | Path] | None = None) -> Path:
    """Write the Markdown model card of ``metadata`` to ``out_path``.

    Args:
        metadata: the model's metadata dict (see the module docstring for the keys read).
        out_path: the .md file to write (its folder is created).
        plots: title -> PNG path, embedded by a path relative to the card.

    Returns:
        the written path.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(model_card_markdown(metadata, plots, out_path.parent), encoding="utf-8")
    return out_path
