"""Fixed (non-trained) image front-ends with a linear head, as ONE flat Keras model.

With a few hundred labelled chest x-rays, a network trained from scratch overfits; a fixed
multi-scale filter bank (wavelet-scattering-like: complex Morlet filters, modulus, local averaging)
plus regional intensity histograms, followed by an L2-regularised logistic regression, does better.
This module builds that pipeline from Keras layers so the shipped model stays one ``keras.Model``
(saved as ``model.h5``) whose only trained part, the head, is copied from a fitted scikit-learn
``LogisticRegression``.

Graph (input ``(S, S, 1)`` in [0, 1], exactly :func:`radtriage.preprocess.preprocess` output)::

    input -> [AveragePooling2D(2)]^j -> "filter_bank" Conv2D (fixed Morlet pairs) -> Modulus
          -> AveragePooling2D to (R, R) -> Log1p                           (one branch per scale j)
    input -> SoftHistogram -> AveragePooling2D to (R, R)                   (regional histograms)
    input -> AveragePooling2D to (R, R)                                    (thumbnail)
    concat -> "gradcam_target" (R, R, C) -> AveragePooling2D per grid g -> Flatten -> concat
          -> "features" -> "standardize" (Normalization) -> "logits" Dense -> "probabilities"

Everything after ``gradcam_target`` is linear, so Grad-CAM on it is the exact per-region
contribution of the features to each logit.

The defaults (``FrontEndConfig()``, S = 256, and ``fit_head(c=1e-3)``) are the configuration chosen
by 5-fold cross-validation on the NIH sample's training split; ``experiments/chest_nih_search.py``
reproduces the comparison. Usage::

    model = build_linear_model(FrontEndConfig(), N_CHEST)
    feats = build_feature_extractor(FrontEndConfig()).predict(x_train)   # x: preprocess() output
    set_head(model, fit_head(feats, y_train))                             # y: (N, 14), NaN = missing
    model.save("model.h5")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from radtriage.contract import FEATURES_LAYER, GRADCAM_LAYER, LOGITS_LAYER, PROBABILITIES_LAYER



@dataclass(frozen=True)
class FrontEndConfig:
    """Parameters of the fixed front-end, recorded in model metadata.

    Attributes:
        size: input side S in pixels; must be divisible by ``map_size * 2**(scales-1)``.
        scales: number of dyadic scales the filter bank is applied at (S, S/2, S/4, ...).
        orientations: number of Morlet orientations in [0, pi).
        kernel_size: side of the Morlet kernels, odd.
        map_size: side R of the ``gradcam_target`` feature map.
        grids: the feature map is average-pooled to g x g regions for each g; each divides R.
        hist_bins: number of soft intensity-histogram bins (0 = none).
        thumbnail: include the R x R mean-intensity map.
        log_eps: the pooled filter energies x become log(1 + x / log_eps) (0 = no compression).
    """

    size: int = 256
    scales: int = 4
    orientations: int = 8
    kernel_size: int = 7
    map_size: int = 16
    grids: tuple[int, ...] = (1, 2, 4)
    hist_bins: int = 16
    thumbnail: bool = True
    log_eps: float = 0.01

    def __post_init__(self) -> None:
        if self.size % (self.map_size * 2 ** (self.scales - 1)):
            raise ValueError(
                f"size {self.size} must be divisible by map_size * 2**(scales-1) = "
                f"{self.map_size * 2 ** (self.scales - 1)}"
            )
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        bad = [g for g in self.grids if self.map_size % g]
        if bad or not self.grids:
            raise ValueError(f"every grid must divide map_size {self.map_size}, got {self.grids}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["grids"] = list(self.grids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontEndConfig:
        d = dict(d)
        d["grids"] = tuple(d.get("grids", cls.grids))
        return cls(**d)


def morlet_bank(
    kernel_size: int = 7, orientations: int = 8, sigma: float = 0.8, xi: float = 3 * np.pi / 4,
    slant: float = 0.5,
) -> np.ndarray:
    """Complex Morlet filters (kymatio's finest-scale defaults) plus one isotropic blob filter.

    Args:
        kernel_size: odd kernel side.
        orientations: number of orientations theta = k * pi / orientations.
        sigma: Gaussian envelope width in pixels.
        xi: centre frequency in radians per pixel.
        slant: envelope aspect ratio across the oscillation.

    Returns:
        float32 array (k, k, 1, 2 * (orientations + 1)): channels are (real, imaginary) pairs;
        the last pair is a zero-mean Laplacian-of-Gaussian with zero imaginary part. Every
        filter has zero mean (no response to flat regions) and unit L1 norm per pair.
    """
    r = np.arange(kernel_size) - kernel_size // 2
    y, x = np.meshgrid(r, r, indexing="ij")
    pairs = []
    for k in range(orientations):
        theta = k * np.pi / orientations
        u = x * np.cos(theta) + y * np.sin(theta)
        v = -x * np.sin(theta) + y * np.cos(theta)
        envelope = np.exp(-(u**2 + (slant * v) ** 2) / (2 * sigma**2))
        wave = envelope * np.exp(1j * xi * u)
        wave -= envelope * (wave.sum() / envelope.sum())  # Morlet: subtract the DC leak
        pairs.append(wave)
    s2 = (1.5 * sigma) ** 2
    rr = (x**2 + y**2) / (2 * s2)
    log = (1 - rr) * np.exp(-rr)
    pairs.append((log - log.mean()).astype(complex))
    out = []
    for w in pairs:
        w = w / np.abs(w).sum()
        out += [w.real, w.imag]
    return np.stack(out, axis=-1)[:, :, None, :].astype(np.float32)


@keras.saving.register_keras_serializable(package="radtriage")
class Modulus(keras.layers.Layer):
    """(..., 2n) channels as n (real, imaginary) pairs -> (..., n) magnitudes sqrt(re^2 + im^2)."""

    def call(self, inputs: Any) -> Any:
        re, im = inputs[..., 0::2], inputs[..., 1::2]
        # The epsilon keeps the gradient finite at 0 (Grad-CAM differentiates through this).
        return ops.sqrt(re * re + im * im + 1e-12)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], input_shape[-1] // 2)


@keras.saving.register_keras_serializable(package="radtriage")
class Log1p(keras.layers.Layer):
    """x >= 0 -> log(1 + x / eps): compresses filter energies spanning orders of magnitude."""

    def __init__(self, eps: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = float(eps)

    def call(self, inputs: Any) -> Any:
        # log(1 + y), not log1p: ONNX has no Log1p operator (tf2onnx export failed on it), and the
        # difference (the float32 rounding of 1 + y, at most ~6e-8) is far below what the heads resolve
        return ops.log(1.0 + inputs / self.eps)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "eps": self.eps}


@keras.saving.register_keras_serializable(package="radtriage")
class SoftHistogram(keras.layers.Layer):
    """(..., 1) intensities in [0, 1] -> (..., bins) triangular bin memberships summing to 1.

    Bin centres are evenly spaced on [0, 1]; averaging the output over a region gives that
    region's (smooth) intensity histogram.
    """

    def __init__(self, bins: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        self.bins = int(bins)

    def call(self, inputs: Any) -> Any:
        centres = ops.linspace(0.0, 1.0, self.bins)
        width = 1.0 / (self.bins - 1)
        return ops.relu(1.0 - ops.abs(inputs - centres) / width)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.bins)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bins": self.bins}


def _pool_to(x: Any, side: int, target: int, name: str) -> Any:
    """Average-pool a (side, side, C) map to (target, target, C); identity if equal."""
    if side == target:
        return x
    return keras.layers.AveragePooling2D(side // target, name=name)(x)


def frontend_maps(inputs: Any, config: FrontEndConfig) -> Any:
    """The front-end's spatial feature map (R, R, C) named ``gradcam_target``.

    Args:
        inputs: Keras tensor (S, S, 1) in [0, 1].
        config: front-end parameters.

    Returns:
        Keras tensor (R, R, C), C = feature_channels(config).
    """
    bank = morlet_bank(config.kernel_size, config.orientations)
    conv = keras.layers.Conv2D(
        bank.shape[-1], config.kernel_size, padding="same", use_bias=False, trainable=False,
        name="filter_bank",
    )
    branches = []
    x, side = inputs, config.size
    for j in range(config.scales):
        if j:
            x = keras.layers.AveragePooling2D(2, name=f"downsample_{j}")(x)
            side //= 2
        energy = Modulus(name=f"modulus_{j}")(conv(x))
        energy = _pool_to(energy, side, config.map_size, f"pool_energy_{j}")
        if config.log_eps > 0:
            energy = Log1p(config.log_eps, name=f"log_{j}")(energy)
        branches.append(energy)
    conv.set_weights([bank])
    if config.hist_bins:
        hist = SoftHistogram(config.hist_bins, name="histogram")(inputs)
        branches.append(_pool_to(hist, config.size, config.map_size, "pool_histogram"))
    if config.thumbnail:
        branches.append(_pool_to(inputs, config.size, config.map_size, "thumbnail"))
    return keras.layers.Concatenate(name=GRADCAM_LAYER)(branches)


def feature_channels(config: FrontEndConfig) -> int:
    """Number of channels C of the ``gradcam_target`` map."""
    return config.scales * (config.orientations + 1) + config.hist_bins + int(config.thumbnail)


def feature_count(config: FrontEndConfig) -> int:
    """Length of the flat feature vector the head sees."""
    return feature_channels(config) * sum(g * g for g in config.grids)


def frontend_features(maps: Any, config: FrontEndConfig) -> Any:
    """(R, R, C) map -> flat features: region means over each g x g grid, named ``features``."""
    flats = []
    for g in config.grids:
        pooled = _pool_to(maps, config.map_size, g, f"grid_{g}")
        flats.append(keras.layers.Flatten(name=f"flatten_{g}")(pooled))
    if len(flats) == 1:
        return keras.layers.Identity(name=FEATURES_LAYER)(flats[0])
    return keras.layers.Concatenate(name=FEATURES_LAYER)(flats)


def build_feature_extractor(config: FrontEndConfig) -> keras.Model:
    """Input (S, S, 1) in [0, 1] -> flat feature vector (feature_count(config),)."""
    inputs = keras.Input((config.size, config.size, 1), name="image")
    return keras.Model(inputs, frontend_features(frontend_maps(inputs, config), config),
                       name="chest_frontend")


def build_linear_model(
    config: FrontEndConfig, n_outputs: int, l2: float = 1e-3, name: str = "chest_frontend_linear"
) -> keras.Model:
    """The whole flat model: front-end -> standardize -> Dense "logits" -> sigmoid "probabilities".

    Args:
        config: front-end parameters.
        n_outputs: number of sigmoid outputs (14 for the chest model).
        l2: L2 penalty of the head's kernel, used only if the head is fine-tuned with Keras.

    Returns:
        Uncompiled keras.Model; the head is untrained until :func:`set_head` is called.
    """
    inputs = keras.Input((config.size, config.size, 1), name="image")
    feats = frontend_features(frontend_maps(inputs, config), config)
    z = keras.layers.Normalization(axis=-1, name="standardize")(feats)
    logits = keras.layers.Dense(
        n_outputs, kernel_regularizer=keras.regularizers.L2(l2), name=LOGITS_LAYER
    )(z)
    probs = keras.layers.Activation("sigmoid", name=PROBABILITIES_LAYER)(logits)
    return keras.Model(inputs, probs, name=name)


@dataclass
class LinearHead:
    """A fitted standardize + linear head, in numpy.

    Attributes:
        mean: (F,) feature means subtracted before the head.
        scale: (F,) feature scales divided by (> 0).
        coef: (F, K) weights on the standardized features.
        intercept: (K,) biases.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, F) raw features -> (N, K) logits."""
        return ((features - self.mean) / self.scale) @ self.coef + self.intercept


def head_from_sklearn(
    scaler: Any, classifiers: dict[int, Any], n_outputs: int, constant_logits: np.ndarray | None = None
) -> LinearHead:
    """Assemble a :class:`LinearHead` from a fitted StandardScaler and per-output binary models.

    Args:
        scaler: fitted ``sklearn.preprocessing.StandardScaler`` (``mean_``, ``scale_``).
        classifiers: output index -> fitted binary ``LogisticRegression`` (or any linear model
            with ``coef_`` (1, F) and ``intercept_`` (1,)) trained on ``scaler``-standardized
            features.
        n_outputs: K; outputs without a classifier get zero weights.
        constant_logits: (K,) biases for outputs without a classifier (default 0 -> p = 0.5).

    Returns:
        LinearHead whose sigmoid(logits) equals each classifier's ``predict_proba[:, 1]``.
    """
    n_features = scaler.mean_.shape[0]
    coef = np.zeros((n_features, n_outputs), np.float64)
    intercept = np.zeros(n_outputs) if constant_logits is None else np.asarray(constant_logits, float)
    intercept = intercept.copy()
    for k, clf in classifiers.items():
        coef[:, k] = clf.coef_.ravel()
        intercept[k] = float(np.ravel(clf.intercept_)[0])
    return LinearHead(scaler.mean_.copy(), scaler.scale_.copy(), coef, intercept)


def fit_head(
    features: np.ndarray, labels: np.ndarray, c: float = 1e-3, constant_logit: float = -4.0,
    max_iter: int = 2000,
) -> LinearHead:
    """Fit standardize + one balanced L2 logistic regression per output, ignoring NaN labels.

    Args:
        features: (N, F) front-end features of the training images.
        labels: (N, K) in {0, 1} with NaN = missing; each output is fitted on its labelled rows.
        c: inverse L2 strength of scikit-learn's LogisticRegression (on standardized features).
        constant_logit: bias of outputs that cannot be fitted (no labels, or one class only);
            their weights are 0, so they output sigmoid(constant_logit) for every image.
        max_iter: lbfgs iterations.

    Returns:
        LinearHead; ``extra["fitted"]`` lists the output indices that were fitted.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    z = scaler.transform(features)
    classifiers = {}
    for k in range(labels.shape[1]):
        known = ~np.isnan(labels[:, k])
        if len(np.unique(labels[known, k])) < 2:
            continue
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=max_iter)
        classifiers[k] = clf.fit(z[known], labels[known, k].astype(int))
    head = head_from_sklearn(scaler, classifiers, labels.shape[1],
                             np.full(labels.shape[1], constant_logit))
    head.extra["fitted"] = sorted(classifiers)
    return head


def set_head(model: keras.Model, head: LinearHead) -> None:
    """Copy a :class:`LinearHead` into the model's "standardize" and "logits" layers.

    Keras' Normalization divides by max(sqrt(variance), epsilon); scales are floored at 1e-6
    (above Keras' 1e-7 epsilon) so both agree for constant features too.
    """
    scale = np.maximum(head.scale, 1e-6)
    norm = model.get_layer("standardize")
    norm.set_weights(_normalization_weights(norm, head.mean, scale**2))
    norm.finalize_state()  # Normalization computes with tensors cached from its variables
    model.get_layer(LOGITS_LAYER).set_weights(
        [head.coef.astype(np.float32), head.intercept.astype(np.float32)]
    )


def _normalization_weights(layer: keras.layers.Normalization, mean: np.ndarray,
                           variance: np.ndarray) -> list[np.ndarray]:
    """Weights list in the layer's own order (mean, variance[, count])."""
    values = {"mean": mean, "variance": variance}
    out = []
    for w in layer.weights:
        key = w.name.split("/")[-1].split(":")[0]
        out.append(np.asarray(values[key], w.dtype).reshape(w.shape) if key in values
                   else np.asarray(w.numpy()))
    return out
