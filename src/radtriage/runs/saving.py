"""What every recipe writes at the end of a run: the artifact (``model.h5`` + ``metadata.json``),
its verified LiteRT export, ``MODEL_CARD.md`` and the reference predictions on the bundled examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radtriage.model_card import CARD_FILE
from radtriage.runs.calibration import Calibration, card_plots
from radtriage.runs.reference import write_reference_predictions


@dataclass
class HeadRecord:
    """What :func:`save_run` records of "how it was trained" for a recipe whose only trained part is a
    fitted linear head (no Keras training loop, so no :class:`~radtriage.training.TrainConfig`)."""

    preprocess: Any
    config: dict[str, Any]
    architecture: str

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "preprocess": self.preprocess.to_dict(), **self.config}


@dataclass
class RunResult:
    """What a recipe produced.

    Attributes:
        model_dir: the artifact directory.
        metadata: the saved :class:`radtriage.artifact.ModelMetadata`.
        metrics: role ("validation", "test", ...) -> evaluation dict (also in the metadata).
        history: per-epoch training logs (loss, val_macro_auroc, ...).
        seconds: wall time of the run.
        sizes: split -> number of images (MURA: also studies).
    """

    model_dir: Path
    metadata: Any
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    seconds: float
    sizes: dict[str, int]

    def summary(self) -> pd.DataFrame:
        """One row per metrics role: split, n, headline AUROC with its CI."""
        rows = []
        for role, m in self.metrics.items():
            macro = m.get("macro_auroc") or {}
            if "study_level" in m:
                overall = m["study_level"][0]
                rows.append({"role": role, "split": m["split"], "n": m.get("n_studies"), "level": "study",
                             "auroc": overall.get("auroc"), "auroc_lo": macro.get("lo"), "auroc_hi": macro.get("hi"),
                             "kappa": overall.get("kappa"), "accuracy": overall.get("accuracy")})
            elif macro:
                rows.append({"role": role, "split": m["split"], "n": m.get("n_images"), "level": "macro",
                             "auroc": macro.get("auroc"), "auroc_lo": macro.get("lo"), "auroc_hi": macro.get("hi")})
        return pd.DataFrame(rows)


def card_metadata(metadata: Any, training: dict[str, Any], threshold_rule: str, architecture: str) -> dict[str, Any]:
    """Metadata as the model card reads it (``training`` with data/splits/phantom_only)."""
    card_training = {k: training[k] for k in ("data_statement", "data", "splits", "phantom_only", "label_policy",
                                              "excluded_images", "backbone", "flag_rule", "validation_flag_rates",
                                              "epochs_run", "best_val_macro_auroc") if k in training}
    return {**metadata.to_dict(), "training": card_training, "threshold_rule": threshold_rule,
            "architecture": architecture, "version": (metadata.code_version or {}).get("package")}


def save_run(model: Any, model_dir: Path, task: str, name: str, train_config: Any, cal: Calibration,
             classes: Sequence[str], metrics: dict[str, Any], provenance: dict[str, str],
             training: dict[str, Any], examples_dir: str, flaggable: dict[str, bool] | None = None) -> Any:
    """Artifact + model card + reference predictions; returns the saved metadata."""
    from radtriage.artifact import ModelMetadata, save_artifact
    from radtriage.model_card import write_model_card

    metadata = ModelMetadata.for_task(
        name, task, train_config.preprocess, classes=classes,
        thresholds={c: float(t) for c, t in zip(classes, cal.thresholds)},
        temperature={c: float(t) for c, t in zip(classes, cal.temperature)},
        metrics=metrics, provenance=provenance, training_data=training, train_config=train_config.to_dict(),
        flaggable=flaggable or {},
    )
    metadata = save_artifact(model, model_dir, metadata)
    metadata = export_serving(model_dir) or metadata
    write_model_card(card_metadata(metadata, training, cal.selection["description"], train_config.architecture),
                     model_dir / CARD_FILE, plots=card_plots(metrics, model_dir))
    if examples_dir:
        write_reference_predictions(model_dir, examples_dir)
    return metadata


def rewrite_model_card(model_dir: str | Path) -> Path:
    """Rewrite a model folder's MODEL_CARD.md from its ``metadata.json`` alone, without retraining.

    For when the card writer changes: the card says what :func:`save_run` would have written for
    the same metadata (the training summary, threshold rule, architecture and plots it records).
    ``python -c "from radtriage.runs.saving import rewrite_model_card; rewrite_model_card('model/chest')"``

    Args:
        model_dir: a folder holding ``model.h5`` and ``metadata.json``.

    Returns:
        The card's path.
    """
    path = Path(model_dir) / CARD_FILE
    path.write_text(model_card_text(model_dir), encoding="utf-8")
    return path


def model_card_text(model_dir: str | Path) -> str:
    """The MODEL_CARD.md that :func:`rewrite_model_card` writes for a model folder (nothing written)."""
    from radtriage.artifact import read_metadata
    from radtriage.model_card import model_card_markdown

    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    metrics = metadata.metrics or {}
    roles = {"evaluation": metrics} if "split" in metrics else metrics
    rule = next((str((m.get("thresholds") or {}).get("rule")) for m in roles.values()
                 if (m.get("thresholds") or {}).get("rule")), "not recorded")
    architecture = (metadata.train_config or {}).get("architecture", "not recorded")
    card = card_metadata(metadata, metadata.training_data or {}, rule, architecture)
    return model_card_markdown(card, card_plots(roles, model_dir), model_dir)


def export_serving(model_dir: Path) -> Any:
    """Add the verified LiteRT export (the CLI's fast backend); a model that cannot be exported stays Keras-only."""
    from radtriage.artifact import ArtifactError, read_metadata
    from radtriage.export import export_litert

    try:
        export_litert(model_dir)
    except ArtifactError as err:
        print(f"LiteRT export skipped: {err} The model is served by Keras.", flush=True)
        return None
    return read_metadata(model_dir)


def history_dict(history: Any) -> dict[str, list[float]]:
    """Per-epoch logs of a Keras ``History`` as plain floats."""
    return {k: [float(v) for v in vals] for k, vals in getattr(history, "history", {}).items()}


def training_summary(history: dict[str, list[float]]) -> dict[str, Any]:
    """Epochs run and the best validation macro AUROC, for the metadata."""
    aurocs = [v for v in history.get("val_macro_auroc", []) if np.isfinite(v)]
    return {"epochs_run": len(history.get("loss", [])),
            "best_val_macro_auroc": round(max(aurocs), 4) if aurocs else None}
