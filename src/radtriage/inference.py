"""The Keras backend, the reference: :class:`Predictor` loads an artifact once and serves calibrated
probabilities, flags and Grad-CAM heatmaps to the CLI and the dashboard. What every backend shares
is in :mod:`radtriage.predictor`; the faster LiteRT backend (the same
probabilities, and the same Grad-CAM once exported) in :mod:`radtriage.litert`.

Calibration: the graph computes logits; ``p = sigmoid(logit / T)`` with the metadata's per-class
temperature T is applied by :func:`radtriage.contract.calibrate`, as for every backend. The graphs
are traced once with a fixed input signature ``(None, S, S, 1)`` float32: an eager ``model(x)`` is
several times slower and ``model.predict`` adds ~100 ms of set-up per call.

Inputs: a 2-D array or a :class:`radtriage.radiograph.Radiograph` is raw pixels in [0, 1] and is
preprocessed with the metadata's :class:`PreprocessConfig`; a (S, S, 1) array is taken as already
preprocessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from radtriage.artifact import Artifact, ArtifactError, load_artifact, read_ood
from radtriage.contract import FEATURES_LAYER, LOGITS_LAYER
from radtriage.gradcam import GradCam
from radtriage.predictor import BasePredictor, Explanation, Prediction, predict_study

__all__ = ["Explanation", "Prediction", "Predictor", "predict_study"]


class Predictor(BasePredictor):
    """Calibrated predictions, flags and Grad-CAM for one model artifact, on Keras (the reference backend).

    Args:
        artifact: a verified :class:`radtriage.artifact.Artifact`. Its model must have a
            ``"logits"`` Dense layer feeding the sigmoid (all :mod:`radtriage.architectures` do).
    """

    backend = "keras"

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact.metadata, read_ood(artifact.directory, artifact.metadata))
        self.artifact = artifact
        self.model = artifact.model
        names = {layer.name for layer in self.model.layers}
        if LOGITS_LAYER not in names:
            raise ArtifactError(f"the model has no {LOGITS_LAYER!r} layer, so it cannot be calibrated.")
        self.logits_model = keras.Model(self.model.input, self.model.get_layer(LOGITS_LAYER).output,
                                        name=f"{self.model.name}_logits")
        signature = [tf.TensorSpec((None, *self.input_shape), tf.float32)]
        self._logits_fn = tf.function(lambda x: self.logits_model(x, training=False), input_signature=signature)
        self._forward_fn = None
        if FEATURES_LAYER in names:  # logits and the features the OOD score reads, in one pass
            both = keras.Model(self.model.input, [self.model.get_layer(LOGITS_LAYER).output,
                                                  self.model.get_layer(FEATURES_LAYER).output])
            self._forward_fn = tf.function(lambda x: both(x, training=False), input_signature=signature)
        # "the most probable class" is ranked as the calibrated probabilities rank it; the features the
        # OOD score reads come out of the same graph call (no second forward pass)
        extra = FEATURES_LAYER if self.ood is not None and FEATURES_LAYER in names else None
        self._gradcam = GradCam(self.model, self.metadata.gradcam_layer, rank_temperatures=self.temperatures,
                                extra_layer=extra)

    @classmethod
    def from_dir(cls, path: str | Path, custom_objects: dict[str, Any] | None = None) -> Predictor:
        """Load and verify the artifact in ``path`` (raises ArtifactError) and build the graphs."""
        return cls(load_artifact(path, custom_objects))

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self._forward_fn is None:
            return self._logits_fn(tf.constant(x)).numpy(), None
        logits, features = self._forward_fn(tf.constant(x))
        return logits.numpy(), features.numpy()

    def _explain(self, x: np.ndarray, class_index: int | None) -> tuple[np.ndarray, ...]:
        out = self._gradcam(x, class_index)
        return out.scores, out.heatmaps, out.degenerate, out.class_index, out.extra
