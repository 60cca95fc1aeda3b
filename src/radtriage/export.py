"""Offline export of a saved model to the LiteRT (TFLite) format, verified against Keras.

:func:`export_litert` converts the logits (and features) sub-model of ``model.h5`` (``keras.Model.export(format=
"litert")``) to ``model.tflite``, and the Grad-CAM graph (:meth:`radtriage.gradcam.GradCam.export_function`,
batch 1) to ``explain.tflite``; runs both backends on phantoms of the model's task and two constant
images (:func:`check_inputs`), and keeps the files only if the calibrated probabilities agree within
:data:`TOLERANCE` and the heatmaps within :data:`HEATMAP_TOLERANCE` (same explained class, same
"nothing to localise" verdicts); the metadata then records each file's SHA-256, the ``model.h5`` it
came from and the measured differences, and the model card's serving section says so. Training runs call it after
saving; ``radtriage export`` runs it on any model folder. Serving never imports this module.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from radtriage import tasks
from radtriage.artifact import ArtifactError, update_metadata, sha256_file
from radtriage.contract import FEATURES_LAYER, LOGITS_LAYER
from radtriage.litert import EXPLAIN_FILE, TFLITE_FILE, LiteRtPredictor, litert_available
from radtriage.model_card import CARD_FILE, set_serving_section
from radtriage.predictor import BasePredictor
from radtriage.preprocess import PreprocessConfig, preprocess

TOLERANCE = 1e-4  # largest |LiteRT - Keras| calibrated probability accepted at export
HEATMAP_TOLERANCE = 1e-3  # largest |LiteRT - Keras| Grad-CAM heatmap value (in [0, 1]) accepted at export
CHECK_IMAGES = 12  # phantom inputs compared at export


def check_inputs(task: str, config: PreprocessConfig, n: int = CHECK_IMAGES) -> np.ndarray:
    """Inputs the export is checked on: phantoms of the task (with and without findings) and two constants.

    Args:
        task: a task name of :mod:`radtriage.tasks` (its ``render_check_image`` draws the phantoms).
        config: the model's own preprocessing (from its metadata).
        n: number of phantoms.

    Returns:
        (n + 2, S, S, 1) float32 in [0, 1], S = ``config.size``.
    """
    size = config.size
    render = tasks.get(task).render_check_image
    images = [preprocess(render(i, 2 * size), config) for i in range(n)]
    constants = [np.zeros((size, size, 1), np.float32), np.ones((size, size, 1), np.float32)]
    return np.stack(images + constants)


def export_litert(directory: str | Path, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Export a saved artifact's model to ``model.tflite`` and record it in the metadata if it agrees with Keras.

    The logits sub-model of ``model.h5`` is converted (``keras.Model.export(format="litert")``);
    its calibrated probabilities on :func:`check_inputs` are compared with the Keras predictor's.

    Args:
        directory: a model directory (``model.h5`` + ``metadata.json``).
        tolerance: largest accepted |LiteRT - Keras| probability.

    Returns:
        The ``serving.litert`` record written to the metadata.

    Raises:
        ArtifactError: conversion failed, the runtime is missing, or the outputs differ by more
            than ``tolerance`` (no file is kept and the metadata is unchanged).
    """
    import importlib.metadata

    import keras

    from radtriage.inference import Predictor

    directory = Path(directory)
    reference = Predictor.from_dir(directory)
    if not litert_available():
        raise ArtifactError("the LiteRT runtime is not installed (pip install ai-edge-litert).")
    model = reference.model
    outputs = [model.get_layer(LOGITS_LAYER).output]
    if FEATURES_LAYER in {layer.name for layer in model.layers}:  # what the OOD score reads
        outputs.append(model.get_layer(FEATURES_LAYER).output)
    logits = keras.Model(model.input, outputs, name=f"{model.name}_logits")
    target = directory / TFLITE_FILE
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        candidate = Path(tmp) / TFLITE_FILE
        try:
            logits.export(str(candidate), format="litert", verbose=False)
        except Exception as e:  # the converter raises many types
            raise ArtifactError(f"the model could not be converted to LiteRT ({type(e).__name__}: {e}).") from None
        x = check_inputs(reference.metadata.task, reference.preprocess_config)
        expected, expected_ood = reference.score_batch(x)
        got, got_ood = LiteRtPredictor(reference.metadata, candidate, ood=reference.ood).score_batch(x)
        diff = float(np.max(np.abs(got - expected)))
        if not diff <= tolerance:
            raise ArtifactError(f"the LiteRT export differs from Keras by {diff:.2e} (> {tolerance:g}): not kept.")
        if (expected_ood is None) != (got_ood is None) or (
                expected_ood is not None and not np.allclose(got_ood, expected_ood, rtol=1e-3, atol=1e-3)):
            raise ArtifactError("the LiteRT export's out-of-distribution scores differ from Keras: not kept.")
        explain_candidate = Path(tmp) / EXPLAIN_FILE
        _convert_gradcam(reference, explain_candidate)
        explainer = LiteRtPredictor(reference.metadata, candidate, ood=reference.ood, explain_path=explain_candidate)
        heat_diff, explain_diff = compare_explanations(reference, explainer, x, tolerance)
        os.replace(candidate, target)
        os.replace(explain_candidate, directory / EXPLAIN_FILE)
    entry = {
        "file": TFLITE_FILE,
        "sha256": sha256_file(target),
        "from_model_sha256": reference.metadata.model_sha256,
        "max_abs_diff_vs_keras": diff,
        "tolerance": tolerance,
        "checked_on": f"{len(x)} inputs: {len(x) - 2} {reference.metadata.task} phantoms + all-black + all-white",
        "converter": f"keras {keras.__version__} Model.export(format='litert')",
        "runtime": f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}",
        "explain": {
            "file": EXPLAIN_FILE,
            "sha256": sha256_file(directory / EXPLAIN_FILE),
            "from_model_sha256": reference.metadata.model_sha256,
            "graph": "radtriage.gradcam.GradCam.export_function (batch 1): logits, Grad-CAM heatmap, explained "
                     "class, features",
            "max_abs_heatmap_diff_vs_keras": heat_diff,
            "max_abs_diff_vs_keras": explain_diff,
            "heatmap_tolerance": HEATMAP_TOLERANCE,
            "checked_on": f"the same {len(x)} inputs, each for its most probable class and for one given class",
            "converter": f"tensorflow {_tf_version()} TFLiteConverter.from_concrete_functions, builtin ops only",
        },
    }
    metadata = update_metadata(directory, serving={**(reference.metadata.serving or {}), "litert": entry})
    card = directory / CARD_FILE
    if card.is_file():
        set_serving_section(card, metadata.to_dict())
    return entry


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def _convert_gradcam(reference: Any, path: Path) -> None:
    """Convert the Keras predictor's Grad-CAM graph (batch 1, LiteRT builtin ops only) to ``path``."""
    import tensorflow as tf

    from radtriage.gradcam import GradCam

    model = reference.model
    extra = FEATURES_LAYER if FEATURES_LAYER in {layer.name for layer in model.layers} else None
    gradcam = GradCam(model, reference.metadata.gradcam_layer, extra_layer=extra)
    absl = logging.getLogger("absl")
    level = absl.level
    try:
        # Without a trackable object (the older conversion path, which warns that it is deprecated):
        # with one, the converted graph explained the wrong class (tensorflow 2.21; the check below
        # would refuse it, but then there would be no export at all).
        absl.setLevel(logging.ERROR)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([gradcam.export_function(batch=1)])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        path.write_bytes(converter.convert())
    except Exception as e:  # the converter raises many types
        raise ArtifactError(f"the Grad-CAM graph could not be converted to LiteRT ({type(e).__name__}: {e}).") from None
    finally:
        absl.setLevel(level)


def compare_explanations(reference: BasePredictor, candidate: BasePredictor, x: np.ndarray,
                         tolerance: float = TOLERANCE) -> tuple[float, float]:
    """Check a backend's Grad-CAM against the reference's on ``x``: each image's most probable class
    and one given class (cycling through the classes).

    Args:
        reference: the Keras predictor.
        candidate: a predictor whose :attr:`~radtriage.predictor.BasePredictor.explains` is True.
        x: (N, S, S, 1) float32 in [0, 1] (:func:`check_inputs`).
        tolerance: largest accepted |difference| of calibrated probabilities.

    Returns:
        (largest |heatmap difference|, largest |probability difference|).

    Raises:
        ArtifactError: another explained class, another "nothing to localise" verdict, heatmaps
            further apart than :data:`HEATMAP_TOLERANCE`, probabilities further than ``tolerance``
            or out-of-distribution ratios that differ.
    """
    heat_diff = prob_diff = 0.0
    n = len(reference.classes)
    for i, image in enumerate(x):
        for asked in (None, i % n):
            a = reference.predict_and_explain(image, asked)
            b = candidate.predict_and_explain(image, asked)
            if a.class_index != b.class_index or a.degenerate != b.degenerate:
                raise ArtifactError(f"the LiteRT Grad-CAM explains class {b.class_index} (degenerate {b.degenerate}) "
                                    f"where Keras explains {a.class_index} ({a.degenerate}): not kept.")
            if (a.ood_ratio is None) != (b.ood_ratio is None) or (
                    a.ood_ratio is not None and not np.isclose(a.ood_ratio, b.ood_ratio, rtol=1e-3, atol=1e-3)):
                raise ArtifactError("the LiteRT Grad-CAM's out-of-distribution ratios differ from Keras: not kept.")
            heat_diff = max(heat_diff, float(np.max(np.abs(a.heatmap - b.heatmap))))
            prob_diff = max(prob_diff, float(np.max(np.abs(a.prediction.vector() - b.prediction.vector()))))
    if not heat_diff <= HEATMAP_TOLERANCE or not prob_diff <= tolerance:
        raise ArtifactError(f"the LiteRT Grad-CAM differs from Keras (heatmaps by {heat_diff:.2e}, probabilities by "
                            f"{prob_diff:.2e}; tolerances {HEATMAP_TOLERANCE:g}, {tolerance:g}): not kept.")
    return heat_diff, prob_diff
