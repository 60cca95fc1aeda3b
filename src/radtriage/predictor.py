"""What every predictor shares, whichever backend computes its logits.

:class:`BasePredictor` holds a model's verified metadata and turns files or pixels into model
inputs (the one shared path, :func:`radtriage.preprocess.load_and_preprocess`), logits into
calibrated probabilities and probabilities into flags, by the rules of :mod:`radtriage.contract`.
A backend supplies ``_forward`` (logits and features) and, when it draws Grad-CAM, ``_explain``:

- :class:`radtriage.inference.Predictor` (Keras, ``model.h5``): the reference, and Grad-CAM;
- :class:`radtriage.litert.LiteRtPredictor` (``model.tflite``, and ``explain.tflite`` for Grad-CAM
  when exported): no TensorFlow.

:func:`radtriage.serving.load_predictor` picks one. This module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from radtriage import contract
from radtriage.artifact import ModelMetadata
from radtriage.ood import OodModel
from radtriage.preprocess import PreprocessConfig, load_and_preprocess, preprocess

CHUNK = 64  # images per forward call: bounds memory for large batches


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

    @classmethod
    def of(cls, classes: list[str], probabilities: np.ndarray, thresholds: np.ndarray,
           provenance: dict[str, str], flaggable: np.ndarray | None = None) -> Prediction:
        """A prediction from (C,) calibrated probabilities, flagged by :func:`radtriage.contract.flags`.

        Args:
            classes: the C class names in output order.
            probabilities: (C,) in [0, 1].
            thresholds: (C,) in [0, 1].
            provenance: class -> ``labels.PROVENANCE_*``.
            flaggable: (C,) bool: classes that may be flagged (None: all).
        """
        probs = np.asarray(probabilities, np.float64).reshape(-1)
        thresholds = np.asarray(thresholds, np.float64).reshape(-1)
        if len(probs) != len(classes) or len(thresholds) != len(classes):
            raise ValueError(f"{len(probs)} probabilities and {len(thresholds)} thresholds for {len(classes)} classes")
        top = int(np.argmax(probs))
        return cls(
            probabilities={c: float(p) for c, p in zip(classes, probs)},
            flags={c: bool(f) for c, f in zip(classes, contract.flags(probs, thresholds, flaggable))},
            thresholds={c: float(t) for c, t in zip(classes, thresholds)},
            top_class=classes[top],
            top_probability=float(probs[top]),
            provenance=dict(provenance),
        )

    def vector(self) -> np.ndarray:
        """The probabilities as a float64 (C,) array in output order."""
        return np.fromiter(self.probabilities.values(), np.float64, len(self.probabilities))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the CLI's output), with ``flagged`` added."""
        return {**dataclasses.asdict(self), "flagged": self.flagged}

    @property
    def flagged(self) -> list[str]:
        """Flagged classes, most probable first."""
        names = list(self.probabilities)
        return [names[i] for i in np.argsort(-self.vector(), kind="stable") if self.flags[names[i]]]


@dataclass(frozen=True)
class Explanation:
    """A prediction and the Grad-CAM heatmap of one class, from one graph call.

    Attributes:
        prediction: calibrated probabilities and flags.
        class_index: index of the explained class.
        class_name: its name.
        heatmap: (S, S) float32 in [0, 1] over the model input; zeros when ``degenerate``.
        degenerate: True when the map was constant or not finite (nothing to show).
        ood_ratio: the image's out-of-distribution ratio (:meth:`BasePredictor.score_batch`), from
            the same graph call; None when the model has no OOD statistics or no features layer.
    """

    prediction: Prediction
    class_index: int
    class_name: str
    heatmap: np.ndarray
    degenerate: bool
    ood_ratio: float | None = None


class BasePredictor:
    """What the Keras and LiteRT predictors share: metadata, inputs, flags, Grad-CAM's outcome;
    subclasses give ``_forward`` (and ``_explain`` when they draw Grad-CAM).

    Args:
        metadata: the artifact's verified metadata.
        ood: the model's out-of-distribution statistics (:func:`radtriage.artifact.read_ood`), or None.
    """

    backend = "none"

    def __init__(self, metadata: ModelMetadata, ood: OodModel | None = None) -> None:
        self._metadata = metadata
        self.ood = ood
        self.temperatures = np.asarray(metadata.temperatures(), np.float32)
        self.thresholds = np.asarray([metadata.thresholds[c] for c in metadata.classes], np.float64)
        self.flaggable = np.asarray([metadata.flaggable[c] for c in metadata.classes], bool)
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

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, S, S, 1) float32 -> (n, C) logits and (n, F) features (None when the model has no
        ``FEATURES_LAYER``); n <= CHUNK. Each backend gives its own."""
        raise NotImplementedError

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self._forward(x)[0]

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """(N, C) logits -> float32 calibrated probabilities, by :func:`radtriage.contract.calibrate`."""
        return contract.calibrate(logits, self.temperatures).astype(np.float32)

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
        return self.calibrate(np.concatenate([self._logits(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)]))

    def score_batch(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and out-of-distribution ratios of preprocessed images, in one pass.

        Args:
            inputs: (N, S, S, 1) float in [0, 1].

        Returns:
            (N, C) float32 probabilities, and (N,) float64 OOD ratios (distance / the model's threshold,
            above 1 = unlike its training images) or None when the model carries no OOD statistics.
        """
        x = self._check_batch(inputs)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32), None if self.ood is None else np.zeros(0)
        parts = [self._forward(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)]
        probs = self.calibrate(np.concatenate([logits for logits, _ in parts]))
        if self.ood is None or any(f is None for _, f in parts):
            return probs, None
        return probs, self.ood.ratio(np.concatenate([f for _, f in parts]))

    def to_prediction(self, probs: np.ndarray) -> Prediction:
        """Wrap a (C,) calibrated probability vector with flags, thresholds and provenance."""
        return Prediction.of(self.classes, probs, self.thresholds, self.metadata.provenance, self.flaggable)

    def predict(self, image: Any) -> Prediction:
        """Prediction for one image: raw pixels / Radiograph (preprocessed here) or a (S, S, 1) input."""
        return self.to_prediction(self.predict_batch(self._as_input(image)[None])[0])

    # ---------------------------------------------------------------------------- Grad-CAM

    @property
    def explains(self) -> bool:
        """True when this backend draws Grad-CAM heatmaps (:meth:`predict_and_explain`)."""
        return type(self)._explain is not BasePredictor._explain

    def _explain(self, x: np.ndarray, class_index: int | None) -> tuple[np.ndarray, ...]:
        """(1, S, S, 1) float32 and a class (None: the top one by calibrated probability) ->
        (logits (1, C), heatmaps (1, S, S) in [0, 1], degenerate (1,) bool, explained class (1,) int,
        features (1, F) or None), all from one graph call. Each backend that explains gives its own."""
        raise NotImplementedError(f"the {self.backend} backend of this model draws no Grad-CAM")

    def _class_index(self, class_index: int | str | None) -> int | None:
        if class_index is None:
            return None
        if isinstance(class_index, str):
            if class_index not in self.classes:
                raise ValueError(f"unknown class {class_index!r}; known: {', '.join(self.classes)}")
            return self.classes.index(class_index)
        if not 0 <= int(class_index) < len(self.classes):
            raise ValueError(f"class index {class_index} is outside [0, {len(self.classes)})")
        return int(class_index)

    def predict_and_explain(self, image: Any, class_index: int | str | None = None) -> Explanation:
        """Calibrated prediction, the Grad-CAM heatmap of one class and the OOD ratio, in ONE graph call.

        Args:
            image: raw pixels / Radiograph, or a (S, S, 1) preprocessed input.
            class_index: class to explain (index or name); None = the most probable class.

        Returns:
            :class:`Explanation` (heatmap (S, S) float32 in [0, 1] over the model input; the OOD
            ratio when the model has OOD statistics).
        """
        x = self._check_batch(self._as_input(image)[None])
        logits, heatmaps, degenerate, explained, features = self._explain(x, self._class_index(class_index))
        index = int(explained[0])
        probs = self.calibrate(logits)[0]
        ratio = None if features is None or self.ood is None else float(self.ood.ratio(features)[0])
        return Explanation(self.to_prediction(probs), index, self.classes[index], np.asarray(heatmaps[0], np.float32),
                           bool(degenerate[0]), ratio)

    def explain(self, image: Any, class_index: int | str) -> np.ndarray:
        """Grad-CAM heatmap (S, S) float32 in [0, 1] of ``class_index`` for one image."""
        return self.predict_and_explain(image, class_index).heatmap


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
    return predictor.to_prediction(contract.study_mean(predictor.predict_batch(x)))
