"""Offline export of a saved model to the LiteRT (TFLite) format, verified against Keras.

:func:`export_litert` converts the logits (and features) sub-model of ``model.h5`` (``keras.Model.export(format=
"litert")``), runs both backends on phantoms of the model's task and two constant images
(:func:`check_inputs`), and keeps ``model.tflite`` only if the calibrated probabilities agree within
:data:`TOLERANCE`; the metadata then records the file's SHA-256, the ``model.h5`` it came from and the
measured difference, and the model card's serving section says so. Training runs call it after
saving; ``radtriage export`` runs it on any model folder. Serving never imports this module.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from radtriage import tasks
from radtriage.artifact import ArtifactError, update_metadata, sha256_file
from radtriage.contract import FEATURES_LAYER, LOGITS_LAYER
from radtriage.litert import TFLITE_FILE, LiteRtPredictor, litert_available
from radtriage.model_card import CARD_FILE, set_serving_section
from radtriage.preprocess import PreprocessConfig, preprocess

TOLERANCE = 1e-4  # largest |LiteRT - Keras| calibrated probability accepted at export
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
        os.replace(candidate, target)
    entry = {
        "file": TFLITE_FILE,
        "sha256": sha256_file(target),
        "from_model_sha256": reference.metadata.model_sha256,
        "max_abs_diff_vs_keras": diff,
        "tolerance": tolerance,
        "checked_on": f"{len(x)} inputs: {len(x) - 2} {reference.metadata.task} phantoms + all-black + all-white",
        "converter": f"keras {keras.__version__} Model.export(format='litert')",
        "runtime": f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}",
    }
    metadata = update_metadata(directory, serving={**(reference.metadata.serving or {}), "litert": entry})
    card = directory / CARD_FILE
    if card.is_file():
        set_serving_section(card, metadata.to_dict())
    return entry
