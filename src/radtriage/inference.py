"""Inference shared by the CLI and the dashboard: :class:`Predictor` loads an artifact once and serves
calibrated probabilities, flags and Grad-CAM heatmaps.

Calibration: ``p = sigmoid(logit / T)`` with the metadata's per-class temperature T (1 = the raw
model output). Everything runs through graphs traced once with a fixed input signature
``(None, S, S, 1)`` float32: an eager ``model(x)`` is several times slower and ``model.predict``
adds ~100 ms of set-up per call.

Inputs: a 2-D array or a :class:`radtriage.radiograph.Radiograph` is raw pixels in [0, 1] and is
preprocessed with the metadata's :class:`PreprocessConfig`; a (S, S, 1) array is taken as already
preprocessed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from radtriage.artifact import Artifact, ArtifactError, ModelMetadata, load_artifact
from radtriage.gradcam import GradCam
from radtriage.preprocess import PreprocessConfig, load_and_preprocess, preprocess

LOGITS_LAYER = "logits"
CHUNK = 64  # images per graph call in predict_batch: bounds memory for large batches


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


@dataclass(frozen=True)
class Explanation:
    """A prediction and the Grad-CAM heatmap of one class, from one graph call.

    Attributes:
        prediction: calibrated probabilities and flags.
        class_index: index of the explained class.
        class_name: its name.
        heatmap: (S, S) float32 in [0, 1] over the model input; zeros when ``degenerate``.
        degenerate: True when the map was constant or not finite (nothing to show).
    """

    prediction: Prediction
    class_index: int
    class_name: str
    heatmap: np.ndarray
    degenerate: bool


class _TopClassGradCam(GradCam):
    """GradCam whose class index may be -1: the top calibrated class of the first image, chosen in-graph."""

    def _compute(self, x: tf.Tensor, class_index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        return self._compute_indexed(x, class_index)  # one forward pass, top class chosen inside it

    def run(self, x: np.ndarray, class_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        probs, cams, degenerate, index = self._fn(tf.constant(x, tf.float32), tf.constant(class_index, tf.int32))
        return probs.numpy(), cams.numpy(), degenerate.numpy(), int(index)


def _calibrated_model(model: keras.Model, temperatures: np.ndarray) -> keras.Model:
    """``input -> sigmoid(logits / T)``, sharing the model's layers (stays flat, keeps "logits")."""
    logits = model.get_layer(LOGITS_LAYER).output
    scaled = keras.layers.Rescaling((1.0 / temperatures).astype(np.float32).tolist(), name="temperature")(logits)
    probs = keras.layers.Activation("sigmoid", name="calibrated", dtype="float32")(scaled)
    return keras.Model(model.input, probs, name=f"{model.name}_calibrated")


class Predictor:
    """Calibrated predictions, flags and Grad-CAM for one model artifact.

    Args:
        artifact: a verified :class:`radtriage.artifact.Artifact`. Its model must have a
            ``"logits"`` Dense layer feeding the sigmoid (all :mod:`radtriage.architectures` do).
    """

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.model = artifact.model
        meta = artifact.metadata
        names = {layer.name for layer in self.model.layers}
        if LOGITS_LAYER not in names:
            raise ArtifactError(f"the model has no {LOGITS_LAYER!r} layer, so it cannot be calibrated.")
        self.temperatures = np.asarray(meta.temperatures(), np.float32)
        self.thresholds = np.asarray([meta.thresholds[c] for c in meta.classes], np.float64)
        self.calibrated = _calibrated_model(self.model, self.temperatures)
        size = meta.preprocess.size
        self.input_shape = (size, size, 1)
        self._predict_fn = tf.function(
            lambda x: self.calibrated(x, training=False),
            input_signature=[tf.TensorSpec((None, *self.input_shape), tf.float32)],
        )
        self._gradcam = _TopClassGradCam(self.calibrated, meta.gradcam_layer)

    @classmethod
    def from_dir(cls, path: str | Path, custom_objects: dict[str, Any] | None = None) -> Predictor:
        """Load and verify the artifact in ``path`` (raises ArtifactError) and build the graphs."""
        return cls(load_artifact(path, custom_objects))

    @property
    def metadata(self) -> ModelMetadata:
        return self.artifact.metadata

    @property
    def classes(self) -> list[str]:
        return list(self.artifact.metadata.classes)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self.artifact.metadata.preprocess

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
        return np.concatenate([self._predict_fn(tf.constant(x[i : i + CHUNK])).numpy() for i in range(0, len(x), CHUNK)])

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

    # ---------------------------------------------------------------------------- Grad-CAM

    def _class_index(self, class_index: int | str | None) -> int:
        if class_index is None:
            return -1
        if isinstance(class_index, str):
            if class_index not in self.classes:
                raise ValueError(f"unknown class {class_index!r}; known: {', '.join(self.classes)}")
            return self.classes.index(class_index)
        if not 0 <= int(class_index) < len(self.classes):
            raise ValueError(f"class index {class_index} is outside [0, {len(self.classes)})")
        return int(class_index)

    def predict_and_explain(self, image: Any, class_index: int | str | None = None) -> Explanation:
        """Calibrated prediction and the Grad-CAM heatmap of one class, in ONE graph call.

        Args:
            image: raw pixels / Radiograph, or a (S, S, 1) preprocessed input.
            class_index: class to explain (index or name); None = the most probable class.

        Returns:
            :class:`Explanation` (heatmap (S, S) float32 in [0, 1] over the model input).
        """
        x = self._as_input(image)[None]
        probs, cams, degenerate, index = self._gradcam.run(x, self._class_index(class_index))
        return Explanation(self.to_prediction(probs[0]), index, self.classes[index], cams[0], bool(degenerate[0]))

    def explain(self, image: Any, class_index: int | str) -> np.ndarray:
        """Grad-CAM heatmap (S, S) float32 in [0, 1] of ``class_index`` for one image."""
        return self.predict_and_explain(image, class_index).heatmap


def predict_study(predictor: Predictor, inputs: Any) -> Prediction:
    """Study-level prediction (MURA): the mean of the images' calibrated probabilities.

    Args:
        predictor: the model.
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
