"""From a trained model's logits to what a run records: temperatures, thresholds and held-out metrics.

Temperatures are fitted per class on validation LOGITS; thresholds are chosen afterwards on the
calibrated validation probabilities with the run's stated rule, because the predictor flags
calibrated probabilities (:mod:`radtriage.contract`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radtriage import evaluation
from radtriage.contract import LOGITS_LAYER

PREDICT_BATCH = 64


def predict_logits(model: Any, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Pre-sigmoid outputs (N, C) float64 of a flat radtriage model (layer ``"logits"``)."""
    import keras

    logits_model = keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)
    return np.asarray(logits_model.predict(images, batch_size=batch_size, verbose=0), np.float64)


@dataclass
class Calibration:
    """Temperatures fitted and thresholds chosen on validation, and the description of both."""

    temperature: np.ndarray
    thresholds: np.ndarray
    selection: dict[str, Any]


def fit_calibration(y_val: np.ndarray, logits_val: np.ndarray, classes: Sequence[str], rule: str,
                    target_sensitivity: float, split_name: str, target_specificity: float = 0.9) -> Calibration:
    """Temperature per class from validation logits, then thresholds on calibrated probabilities.

    Thresholds are chosen after calibration because the Predictor flags calibrated probabilities.
    """
    temperature = evaluation.fit_temperature(y_val, logits_val, from_logits=True)
    probs = evaluation.apply_temperature(logits_val, temperature, from_logits=True)
    selection = evaluation.threshold_selection(y_val, probs, classes, rule, target_sensitivity,  # type: ignore[arg-type]
                                               split_name, target_specificity)
    thresholds = np.array([selection["thresholds"][c] for c in classes])
    return Calibration(temperature, thresholds, selection)


def evaluate_split(y: np.ndarray, logits: np.ndarray, classes: Sequence[str], cal: Calibration, split: str,
                   plots_dir: Path, n_boot: int) -> dict[str, Any]:
    """Held-out metrics of one split with bootstrap CIs and plots, calibrated and uncalibrated."""
    raw = evaluation.apply_temperature(logits, 1.0, from_logits=True)
    calibrated = evaluation.apply_temperature(logits, cal.temperature, from_logits=True)
    return evaluation.evaluate(y, calibrated, classes, split, cal.thresholds, cal.selection["description"],
                               y_prob_uncalibrated=raw, plots_dir=plots_dir, n_boot=n_boot)


def card_plots(metrics: dict[str, Any], model_dir: Path) -> dict[str, Path]:
    """The plots of every metrics role, as the model card names them."""
    plots = {}
    for role, m in metrics.items():
        for kind, file in (m.get("plots") or {}).items():
            plots[f"{kind} ({role})"] = model_dir / "plots" / role / file
    return plots
