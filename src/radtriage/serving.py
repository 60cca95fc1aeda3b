"""Serving: what every predictor shares, and the LiteRT (TFLite) backend of a model artifact.

Two backends compute the same calibrated probabilities ``sigmoid(logit / T)`` of a model artifact:

- ``keras`` (:class:`radtriage.inference.Predictor`): the reference. It loads ``model.h5`` and also
  serves Grad-CAM, which needs gradients.
- ``litert`` (:class:`LiteRtPredictor`): ``model.tflite``, exported from the same ``model.h5`` by
  :func:`export_litert`. The export is kept only if its probabilities agree with Keras within
  :data:`TOLERANCE` on phantom inputs of the task; the metadata records the file's SHA-256, the
  ``model.h5`` it came from and the measured difference. It runs on the ``ai-edge-litert``
  interpreter and never imports TensorFlow, so a batch job starts in about a second instead of
  several, and its forward pass is ~3x faster on CPU (``bench/RESULTS.md``).

Temperature scaling is applied outside the TFLite graph (the file holds the logits), so
re-calibrating a model never invalidates its export.

This module imports neither TensorFlow nor Keras at import time.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radtriage.artifact import ArtifactError, ModelMetadata, read_metadata, sha256_file, update_metadata, verify_checksum
from radtriage.model_card import CARD_FILE, set_serving_section
from radtriage.preprocess import PreprocessConfig, load_and_preprocess, preprocess

TFLITE_FILE = "model.tflite"
BACKENDS = ("auto", "keras", "litert")
TOLERANCE = 1e-4  # largest |LiteRT - Keras| calibrated probability accepted at export
CHUNK = 64  # images per forward call: bounds memory for large batches
CHECK_IMAGES = 12  # phantom inputs compared at export


@dataclass(frozen=True)
class Prediction:
    """Calibrated output for one image (or one study).

    Attributes:
        probabilities: class -> calibrated probability in [0, 1].
        flags: class -> probability >= threshold.
        thresholds: class -> threshold in [0, 1].
        top_class: the class with the highest probability.
        top_probability: its probability.
        provenance: class -> where the model's knowledge of it comes from (labels.PROVENANCE_*).
    """

    probabilities: dict[str, float]
    flags: dict[str, bool]
    thresholds: dict[str, float]
    top_class: str
    top_probability: float
    provenance: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the CLI's output), with ``flagged`` added."""
        return {**dataclasses.asdict(self), "flagged": self.flagged}

    @property
    def flagged(self) -> list[str]:
        """Flagged classes, most probable first."""
        return sorted((c for c, f in self.flags.items() if f), key=lambda c: -self.probabilities[c])


def calibrate(logits: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """``sigmoid(logits / T)`` per class.

    Args:
        logits: (N, C) raw model logits, any real values.
        temperatures: (C,) positive temperatures.

    Returns:
        (N, C) float32 calibrated probabilities in [0, 1].
    """
    z = np.asarray(logits, np.float64) / np.asarray(temperatures, np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)  # tanh form: no overflow for large |z|


class BasePredictor:
    """What the Keras and LiteRT predictors share: metadata, inputs, flags; subclasses give ``_forward``.

    Args:
        metadata: the artifact's verified metadata.
    """

    backend = "none"

    def __init__(self, metadata: ModelMetadata) -> None:
        self._metadata = metadata
        self.temperatures = np.asarray(metadata.temperatures(), np.float32)
        self.thresholds = np.asarray([metadata.thresholds[c] for c in metadata.classes], np.float64)
        size = metadata.preprocess.size
        self.input_shape = (size, size, 1)

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    @property
    def classes(self) -> list[str]:
        return list(self._metadata.classes)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self._metadata.preprocess

    # ----------------------------------------------------------------------------- inputs

    def prepare_input(self, radiograph: Any) -> np.ndarray:
        """Raw radiograph pixels (2-D in [0, 1], or a Radiograph) -> model input (S, S, 1) float32 in [0, 1]."""
        pixels = getattr(radiograph, "pixels", radiograph)
        return preprocess(np.asarray(pixels, np.float32), self.preprocess_config)

    def load_input(self, source: Any, name: str | None = None) -> tuple[Any, np.ndarray]:
        """A file (path or bytes) -> (Radiograph, model input (S, S, 1) float32 in [0, 1]).

        Goes through :func:`radtriage.preprocess.load_and_preprocess`, the path every caller shares
        (the decode resolution of JPEG 2000 is part of the preprocessing).
        """
        return load_and_preprocess(source, self.preprocess_config, name=name)

    def _as_input(self, image: Any) -> np.ndarray:
        """(S, S, 1) model input from raw pixels, a Radiograph, or an already preprocessed array."""
        arr = image.pixels if hasattr(image, "pixels") else np.asarray(image)
        if arr.ndim == 2:
            return self.prepare_input(arr)
        return self._check_batch(arr[None])[0]

    def _check_batch(self, inputs: Any) -> np.ndarray:
        x = np.asarray(inputs, np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"expected preprocessed inputs of shape (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("inputs contain NaN or infinite values")
        return x

    # ------------------------------------------------------------------------- predictions

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """(n, S, S, 1) float32 -> (n, C) calibrated probabilities; n <= CHUNK."""
        raise NotImplementedError

    def predict_batch(self, inputs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of preprocessed images.

        Args:
            inputs: (N, S, S, 1) float in [0, 1].

        Returns:
            (N, C) float32 in [0, 1], ``sigmoid(logit / T)``.
        """
        x = self._check_batch(inputs)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return np.concatenate([self._forward(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)])

    def to_prediction(self, probs: np.ndarray) -> Prediction:
        """Wrap a (C,) calibrated probability vector with flags, thresholds and provenance."""
        probs = np.asarray(probs, np.float64).reshape(-1)
        top = int(np.argmax(probs))
        return Prediction(
            probabilities={c: float(p) for c, p in zip(self.classes, probs)},
            flags={c: bool(p >= t) for c, p, t in zip(self.classes, probs, self.thresholds)},
            thresholds={c: float(t) for c, t in zip(self.classes, self.thresholds)},
            top_class=self.classes[top],
            top_probability=float(probs[top]),
            provenance=dict(self.metadata.provenance),
        )

    def predict(self, image: Any) -> Prediction:
        """Prediction for one image: raw pixels / Radiograph (preprocessed here) or a (S, S, 1) input."""
        return self.to_prediction(self.predict_batch(self._as_input(image)[None])[0])


def predict_study(predictor: BasePredictor, inputs: Any) -> Prediction:
    """Study-level prediction (MURA): the mean of the images' calibrated probabilities.

    Args:
        predictor: the model (either backend).
        inputs: (N, S, S, 1) preprocessed images of one study, N >= 1, or a list of raw images.

    Returns:
        :class:`Prediction` of the mean probabilities, flagged with the model's thresholds.
    """
    if isinstance(inputs, (list, tuple)):
        inputs = np.stack([predictor._as_input(i) for i in inputs]) if inputs else np.zeros((0,))
    x = np.asarray(inputs, np.float32)
    if len(x) == 0:
        raise ValueError("a study needs at least one image")
    return predictor.to_prediction(predictor.predict_batch(x).mean(axis=0))


# ------------------------------------------------------------------------------------ LiteRT


def litert_available() -> bool:
    """True when the ``ai-edge-litert`` interpreter can be imported."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def litert_entry(metadata: ModelMetadata) -> dict[str, Any] | None:
    """The metadata's record of a verified LiteRT export, or None."""
    entry = (metadata.serving or {}).get("litert")
    return dict(entry) if isinstance(entry, dict) else None


class LiteRtPredictor(BasePredictor):
    """Calibrated probabilities from ``model.tflite`` on the LiteRT interpreter (no Grad-CAM).

    Args:
        metadata: the artifact's metadata, with a ``serving.litert`` record.
        model_path: the verified ``model.tflite``.
        threads: interpreter threads (default: all cores).
    """

    backend = "litert"

    def __init__(self, metadata: ModelMetadata, model_path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(metadata)
        self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads or os.cpu_count() or 1)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = -1

    @classmethod
    def from_dir(cls, path: str | Path, threads: int | None = None) -> LiteRtPredictor:
        """Load a model directory's verified LiteRT export.

        Raises:
            ArtifactError: no export recorded, the runtime is missing, or ``model.tflite`` does
                not match its recorded SHA-256 or was exported from another ``model.h5``.
        """
        path = Path(path)
        metadata = read_metadata(path)
        entry = litert_entry(metadata)
        if entry is None:
            raise ArtifactError(f"{path} has no LiteRT export (run 'radtriage export {path}').")
        if not litert_available():
            raise ArtifactError("the LiteRT runtime is not installed (pip install ai-edge-litert).")
        verify_checksum(path, metadata)
        tflite = path / entry.get("file", TFLITE_FILE)
        if not tflite.is_file():
            raise ArtifactError(f"{tflite} is missing.")
        if entry.get("from_model_sha256") != metadata.model_sha256:
            raise ArtifactError(f"{tflite} was exported from another model.h5: export it again.")
        if sha256_file(tflite) != entry.get("sha256"):
            raise ArtifactError(f"{tflite} does not match the SHA-256 recorded in its metadata: modified or corrupted.")
        return cls(metadata, tflite, threads)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:  # resizing re-plans the graph: only when the batch size changes
            self._interpreter.resize_tensor_input(self._input, [len(x), *self.input_shape])
            self._interpreter.allocate_tensors()
            self._batch = len(x)
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(x, np.float32))
        self._interpreter.invoke()
        return calibrate(self._interpreter.get_tensor(self._output), self.temperatures)


def check_inputs(task: str, config: PreprocessConfig, n: int = CHECK_IMAGES) -> np.ndarray:
    """Inputs the export is checked on: phantoms of the task (with and without findings) and two constants.

    Args:
        task: "chest" or "mura".
        config: the model's own preprocessing (from its metadata).
        n: number of phantoms.

    Returns:
        (n + 2, S, S, 1) float32 in [0, 1], S = ``config.size``.
    """
    from radtriage.labels import CHEST_CLASSES, MURA_STUDY_TYPES
    from radtriage.phantoms import render_chest, render_limb

    size = config.size
    images = []
    for i in range(n):
        if task == "chest":
            findings = [CHEST_CLASSES[i % len(CHEST_CLASSES)]] if i % 2 else []
            image = render_chest(7000 + i, size=2 * size, findings=findings).image
        else:
            study = MURA_STUDY_TYPES[i % len(MURA_STUDY_TYPES)]
            image = render_limb(study, 7000 + i, size=2 * size, abnormality="fracture" if i % 2 else None).image
        images.append(preprocess(image, config))
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

    from radtriage.inference import LOGITS_LAYER, Predictor

    directory = Path(directory)
    reference = Predictor.from_dir(directory)
    if not litert_available():
        raise ArtifactError("the LiteRT runtime is not installed (pip install ai-edge-litert).")
    model = reference.model
    logits = keras.Model(model.input, model.get_layer(LOGITS_LAYER).output, name=f"{model.name}_logits")
    target = directory / TFLITE_FILE
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        candidate = Path(tmp) / TFLITE_FILE
        try:
            logits.export(str(candidate), format="litert", verbose=False)
        except Exception as e:  # the converter raises many types
            raise ArtifactError(f"the model could not be converted to LiteRT ({type(e).__name__}: {e}).") from None
        x = check_inputs(reference.metadata.task, reference.preprocess_config)
        expected = reference.predict_batch(x)
        got = LiteRtPredictor(reference.metadata, candidate).predict_batch(x)
        diff = float(np.max(np.abs(got - expected)))
        if not diff <= tolerance:
            raise ArtifactError(f"the LiteRT export differs from Keras by {diff:.2e} (> {tolerance:g}): not kept.")
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


# ------------------------------------------------------------------------------------ choosing a backend


def resolve_backend(directory: str | Path, backend: str = "auto") -> str:
    """The backend ``load_predictor`` would use: "auto" = litert when a verified export and the runtime exist."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    has_export = litert_entry(read_metadata(directory)) is not None
    return "litert" if has_export and litert_available() else "keras"


def load_predictor(directory: str | Path, backend: str = "auto") -> BasePredictor:
    """A predictor of the model in ``directory`` on the chosen backend.

    Args:
        directory: a model directory.
        backend: "keras" (reference, with Grad-CAM), "litert", or "auto" (litert when available).

    Raises:
        ArtifactError: the model (or its export) cannot be used; ValueError: unknown backend.
    """
    if resolve_backend(directory, backend) == "litert":
        return LiteRtPredictor.from_dir(directory)
    from radtriage.inference import Predictor

    return Predictor.from_dir(directory)

