"""Grad-CAM heatmaps (Selvaraju et al. 2017), in the style of the keras-io example but built once.

:class:`GradCam` wraps a trained model whose 4-D feature layer (the last convolution of a CNN; the
front-end's concatenated feature map) is named ``"gradcam_target"`` (and whose pre-sigmoid output layer is ``"logits"``; the names are
:mod:`radtriage.contract`'s). It builds, once:

1. a functional model ``input -> (feature maps, logits, probabilities)`` sharing the model's layers;
2. a ``tf.function`` with a fixed input signature: images ``(None, S, S, channels)`` float32 and a
   scalar int32 class index passed as a *tensor*, so a new batch size or a new class never retraces;
3. on request, :meth:`GradCam.export_function`: the same graph at a fixed batch size, which
   :func:`radtriage.export.export_litert` converts to LiteRT and checks against this one, so the
   dashboard and the PACS connector draw the same heatmaps without TensorFlow.

Per call the gradients are taken only w.r.t. the feature maps, so the backward pass runs through
the head (pooling + dense) only, and Grad-CAM costs little more than a forward pass. Build the
object once per model (e.g. in the dashboard's resource cache) and reuse it.

Heatmaps are (N, S, S) float32 in [0, 1]. A map that is not finite, or constant (no localisation,
e.g. zero gradients), or of an image with a non-finite pixel, is returned as zeros with
``degenerate=True`` rather than NaN or noise. ``class_index=None`` explains each image's most
probable class, chosen inside the same graph call (no second forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from radtriage.contract import DEGENERATE_EPS, GRADCAM_LAYER, LOGITS_LAYER

TOP_CLASS = -1  # class_index meaning "each image's most probable class", resolved inside the graph
EXPORT_OUTPUTS = ("scores", "heatmaps", "degenerate", "class_index", "extra")  # of GradCam.export_function


@dataclass(frozen=True)
class GradCamResult:
    """Output of :class:`GradCam`.

    Attributes:
        probs: (N, C) float32 model probabilities in [0, 1] (identical to ``model(x)``).
        heatmaps: (N, S, S) float32 in [0, 1]; all zeros where ``degenerate``.
        degenerate: (N,) bool; True where the image had a non-finite pixel or the raw map was
            non-finite or constant. A constant map is common for an image with no positive evidence
            for the class (all weighted activations <= 0 after ReLU): show "no evidence to
            localise", not an error.
        class_index: (N,) int32, the class each heatmap explains (the requested one, or each
            image's most probable class).
        scores: (N, C) float32, the outputs that were differentiated: the logits when
            ``GradCam.target == "logits"``, else ``probs``.
        extra: (N, ...) output of the ``extra_layer`` given to :class:`GradCam` (e.g. the features
            the out-of-distribution score reads), from the same forward pass; None without one.
    """

    probs: np.ndarray
    heatmaps: np.ndarray
    degenerate: np.ndarray
    class_index: np.ndarray
    scores: np.ndarray
    extra: np.ndarray | None = None

    def __iter__(self):  # allows ``probs, heatmaps, degenerate = gradcam(x, c)``
        return iter((self.probs, self.heatmaps, self.degenerate))


class GradCam:
    """Grad-CAM over a batch of preprocessed images, for one given class or each image's top class.

    Args:
        model: a Keras functional model with a layer ``layer_name`` (4-D feature maps) and,
            ideally, a ``"logits"`` layer feeding its sigmoid output.
        layer_name: the feature layer to explain.
        use_logits: differentiate the class logit (recommended: the sigmoid saturates); falls back
            to the probability when the model has no ``"logits"`` layer (``self.target`` tells which).
        rank_temperatures: (C,) positive per-class temperatures by which "the most probable class"
            is ranked (``argmax(score / T)``, the order of the calibrated probabilities); None ranks
            the raw scores.
        extra_layer: a layer whose output is returned too (:attr:`GradCamResult.extra`), so a
            caller needing it (the OOD score's features) pays no second forward pass; None: none.

    Call with ``x`` (N, S, S, channels) float32 in [0, 1] and a class index in [0, C), or None
    for each image's most probable class.
    """

    def __init__(self, model: keras.Model, layer_name: str = GRADCAM_LAYER, use_logits: bool = True,
                 rank_temperatures: np.ndarray | None = None, extra_layer: str | None = None) -> None:
        try:
            features = model.get_layer(layer_name).output
        except ValueError:
            raise ValueError(f"model has no layer named {layer_name!r} to explain") from None
        if len(features.shape) != 4:
            raise ValueError(f"layer {layer_name!r} must output 4-D feature maps, got {features.shape}")
        names = {layer.name for layer in model.layers}
        self.target = "logits" if use_logits and LOGITS_LAYER in names else "probabilities"
        score = model.get_layer(LOGITS_LAYER).output if self.target == "logits" else model.output
        self.model = model
        outputs = [features, score, model.output]
        self.extra_layer = extra_layer
        if extra_layer is not None:
            outputs.append(model.get_layer(extra_layer).output)
        self._multi = keras.Model(model.inputs, outputs, name="gradcam_multi")
        self.input_shape = tuple(model.input_shape[1:])
        self.n_classes = int(model.output.shape[-1])
        t = np.ones(self.n_classes) if rank_temperatures is None else np.asarray(rank_temperatures, np.float64)
        if t.shape != (self.n_classes,) or not np.all(t > 0):
            raise ValueError(f"rank_temperatures must be {self.n_classes} positive values")
        self._rank_scale = tf.constant((1.0 / t).astype(np.float32))
        signature = [
            tf.TensorSpec((None, *self.input_shape), tf.float32),
            tf.TensorSpec((), tf.int32),
        ]
        self._fn = tf.function(lambda x, c: self._compute(x, c, self._rank_scale), input_signature=signature)

    @property
    def tracing_count(self) -> int:
        """How many times the graph was traced (stays 1 across classes and batch sizes)."""
        return int(self._fn.experimental_get_tracing_count())

    def _compute(self, x: tf.Tensor, class_index: tf.Tensor, rank_scale: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """One forward and one partial backward pass; ``class_index < 0`` = each image's top class,
        ranked by ``score * rank_scale`` ((C,) = 1 / the calibration temperatures)."""
        # Whether a NaN pixel survives convolution, ReLU and pooling depends on the CPU's kernels,
        # so a non-finite input is caught here, explicitly, not by how NaN propagates.
        finite_input = tf.reduce_all(tf.math.is_finite(x), axis=(1, 2, 3))
        with tf.GradientTape() as tape:
            features, score, probs, *extra = self._multi(x, training=False)
            top = tf.cast(tf.argmax(score * rank_scale, axis=1), tf.int32)
            # both branches valid indices: the LiteRT conversion may evaluate the unused one
            index = tf.where(class_index < 0, top, tf.fill(tf.shape(top), tf.maximum(class_index, 0)))
            # images are independent at inference, so d(sum)/d(features) holds each image's gradient
            # a one-hot product rather than a gather: its gradient converts to LiteRT builtins as is
            target = tf.reduce_sum(score * tf.one_hot(index, self.n_classes, dtype=score.dtype))
        grads = tape.gradient(target, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # (N, 1, 1, K)
        cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, tf.shape(x)[1:3], method="bilinear")[..., 0]
        finite = tf.reduce_all(tf.math.is_finite(cam), axis=(1, 2))
        cam = tf.where(tf.math.is_finite(cam), cam, tf.zeros_like(cam))
        lo = tf.reduce_min(cam, axis=(1, 2), keepdims=True)
        hi = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        flat = tf.reshape(hi - lo, [-1]) < DEGENERATE_EPS
        degenerate = tf.logical_not(finite_input) | tf.logical_not(finite) | flat
        cam = tf.math.divide_no_nan(cam - lo, hi - lo)
        cam = tf.where(degenerate[:, None, None], tf.zeros_like(cam), cam)
        return probs, tf.clip_by_value(cam, 0.0, 1.0), degenerate, index, score, *extra

    def export_function(self, batch: int = 1) -> tf.types.experimental.ConcreteFunction:
        """This Grad-CAM graph at a fixed batch size, for conversion to LiteRT (:mod:`radtriage.export`).

        The batch is fixed because the converter cannot express the gradient of a concatenation
        over an unknown batch dimension (a front-end's concatenated feature map).

        Inputs: ``x`` (batch, S, S, channels) float32 in [0, 1]; ``class_index`` int32 scalar (< 0:
        each image's top class); ``rank_scale`` (C,) float32, 1 / the calibration temperatures (an
        input, so re-calibrating a model never invalidates its export).

        Returns:
            A concrete function whose outputs are, in :data:`EXPORT_OUTPUTS` order: scores (batch, C),
            heatmaps (batch, S, S) in [0, 1], degenerate (batch,) bool, class_index (batch,) int32,
            and the ``extra_layer`` output when there is one.
        """
        def explain(x: tf.Tensor, class_index: tf.Tensor, rank_scale: tf.Tensor) -> tuple[tf.Tensor, ...]:
            _, cam, degenerate, index, score, *extra = self._compute(x, class_index, rank_scale)
            return (score, cam, degenerate, index, *extra)

        signature = [tf.TensorSpec((batch, *self.input_shape), tf.float32, name="x"),
                     tf.TensorSpec((), tf.int32, name="class_index"),
                     tf.TensorSpec((self.n_classes,), tf.float32, name="rank_scale")]
        return tf.function(explain, input_signature=signature).get_concrete_function()

    def __call__(self, x: np.ndarray, class_index: int | None = None) -> GradCamResult:
        """Probabilities and the Grad-CAM heatmap of one class (or each image's top class) per image.

        Args:
            x: (N, S, S, channels) float32 in [0, 1], preprocessed as the model's metadata says.
            class_index: output index in [0, C), or None for each image's most probable class
                (ranked by ``rank_temperatures``), chosen from the same forward pass.

        Returns:
            :class:`GradCamResult` (probs (N, C), heatmaps (N, S, S) in [0, 1], degenerate (N,),
            class_index (N,), scores (N, C)).
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if class_index is None:
            index = TOP_CLASS
        elif not 0 <= int(class_index) < self.n_classes:
            raise ValueError(f"class index {class_index} is outside [0, {self.n_classes})")
        else:
            index = int(class_index)
        probs, cams, degenerate, explained, scores, *extra = self._fn(tf.constant(x), tf.constant(index, tf.int32))
        return GradCamResult(probs.numpy(), cams.numpy(), degenerate.numpy(), explained.numpy(), scores.numpy(),
                             extra[0].numpy() if extra else None)
