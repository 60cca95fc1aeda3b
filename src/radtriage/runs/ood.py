"""Fit a saved model's out-of-distribution score (:mod:`radtriage.ood`) on its own training images.

:func:`fit_model_ood` takes the model's features of its training images (the statistics) and of
held-out in-distribution images: the threshold is set on one part of them and the share refused is
measured on another, so the card's figure is not the rate the threshold was chosen for. It writes
``ood.npz``, records it in the metadata (``ood``), re-exports the LiteRT copy so that it carries the
features, and updates the card. The pretrained recipe calls it after saving;
:mod:`radtriage.runs.refit_ood` re-fits a shipped model from its run config without retraining it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from radtriage import ood
from radtriage.artifact import read_metadata, sha256_file, update_metadata
from radtriage.contract import FEATURES_LAYER
from radtriage.splits import hash_split

HALF_SALT = "radtriage-ood-threshold-half"


def model_features(model: Any, x: np.ndarray) -> np.ndarray:
    """(N, F) float32 features of preprocessed images from a Keras model's ``FEATURES_LAYER``."""
    import keras

    extractor = keras.Model(model.input, model.get_layer(FEATURES_LAYER).output)
    return np.asarray(extractor.predict(x, batch_size=16, verbose=0), np.float32)


def threshold_and_check_sets(validation_ids: list[str], has_test: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Which validation images set the threshold, and which check it when there is no test split.

    Returns:
        (mask over validation images that set the threshold, mask of those that check it or None
        when the test split checks it).
    """
    if has_test:
        return np.ones(len(validation_ids), bool), None
    half = hash_split(validation_ids, 0.5, HALF_SALT)
    return ~half, half


def fit_model_ood(model_dir: str | Path, train: np.ndarray, threshold_set: np.ndarray, check_set: np.ndarray,
                  descriptions: dict[str, str], rate: float = ood.DEFAULT_RATE,
                  others: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Fit, save and record a model's OOD statistics.

    Args:
        model_dir: a saved model folder.
        train, threshold_set, check_set: (N, F) features of the training images, of the held-out
            images that set the threshold, and of other held-out in-distribution images that check it.
        descriptions: "train", "threshold", "check": what each set is made of, in words.
        rate: the share of threshold-set images that must pass.
        others: optional name -> (M, F) features of other data sets, whose refused share the card reports.

    Returns:
        The metadata's ``ood`` record.
    """
    model_dir = Path(model_dir)
    fitted = ood.fit(train, threshold_set, rate)
    (model_dir / ood.OOD_FILE).write_bytes(fitted.to_bytes())
    refused = {descriptions["check"]: _share(fitted, check_set)}
    refused.update({name: _share(fitted, f) for name, f in (others or {}).items()})
    record = {
        "file": ood.OOD_FILE,
        "sha256": sha256_file(model_dir / ood.OOD_FILE),
        "method": ood.METHOD,
        "feature_layer": FEATURES_LAYER,
        "threshold": round(fitted.threshold, 4),
        "rate": rate,
        "fitted_on": descriptions["train"],
        "threshold_set_on": f"{descriptions['threshold']}: {rate:.0%} of them lie within it",
        "refused": refused,
    }
    update_metadata(model_dir, ood=record)
    return record


def _share(fitted: ood.OodModel, features: np.ndarray) -> str:
    k, n = ood.refused_share(fitted, features)
    return f"{k} of {n} ({k / n:.1%})" if n else "no image"


def fit_pretrained_ood(model_dir: Path, task: str, parts: dict[str, Any], feats: dict[str, np.ndarray]) -> dict[str, Any]:
    """The pretrained recipe's OOD fit: train split -> statistics; validation (or half of it) -> threshold;
    the test split (or the other half) -> the refused share the card reports."""
    source = "NIH chest x-rays" if task == "chest" else "FracAtlas upper-limb radiographs"
    has_test = "test" in parts
    sets, checks = threshold_and_check_sets(parts["validation"]["image_id"].astype(str).tolist(), has_test)
    val = feats["validation"]
    check = feats["test"] if has_test else val[checks]
    n_check = len(check)
    descriptions = {
        "train": f"{len(feats['train'])} training {source}",
        "threshold": f"{int(sets.sum())} validation {source} (never trained on)",
        "check": (f"{n_check} test {source} (never trained on nor used for the threshold)" if has_test else
                  f"the other {n_check} validation {source} (never trained on nor used for the threshold)"),
    }
    return fit_model_ood(model_dir, feats["train"], val[sets], check, descriptions)
