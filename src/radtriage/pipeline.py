"""tf.data input pipeline: (images, labels) arrays -> shuffled, augmented, prefetched batches.

The image array (N, S, S, 1) float16/float32 in [0, 1] may be a multi-GB memory map from the
prepare cache, so it is never put into the graph: the dataset holds only row *indices*; each batch
gathers its rows with ``tf.numpy_function`` (sorted indices: sequential reads of a memmap), then
the whole batch is augmented by vectorised TF ops.

Augmentation (:class:`AugmentConfig`) is radiograph-safe: one affine warp per image (small rotation,
isotropic scale, shift; outside is filled with black like the preprocessing's padding), then
brightness, contrast and gamma; horizontal flip only on request (chest anatomy is lateralised:
the heart is on the left); never a vertical flip. Randomness is stateless and comes from
``tf.data.Dataset.random(seed)``, so a seed gives the same batches in every run, and each epoch
draws new augmentations and a new order.

Labels are float32 (N, C) with NaN = missing; NaN passes through untouched (the loss masks it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation ranges; each value is drawn uniformly per image.

    Attributes:
        rotation: max rotation in degrees (+/-).
        scale: max relative zoom (+/-), e.g. 0.1 -> factor in [0.9, 1.1].
        shift: max translation as a fraction of the side (+/-).
        brightness: max additive intensity change (+/-), images being in [0, 1].
        contrast: max relative contrast change around the image mean (+/-).
        gamma: max |log2(gamma)|, e.g. 0.3 -> gamma in [0.81, 1.23].
        horizontal_flip: flip left-right with probability 0.5 (off: chest anatomy is lateralised).
    """

    rotation: float = 7.0
    scale: float = 0.1
    shift: float = 0.06
    brightness: float = 0.08
    contrast: float = 0.15
    gamma: float = 0.3
    horizontal_flip: bool = False

    def __post_init__(self) -> None:
        for name in ("rotation", "scale", "shift", "brightness", "contrast", "gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"augmentation {name} must be >= 0, got {getattr(self, name)}")
        if self.scale >= 1 or self.contrast >= 1:
            raise ValueError("scale and contrast ranges must be < 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentConfig:
        return cls(**d)


def _uniform(seed: tf.Tensor, n: tf.Tensor, bound: float) -> tf.Tensor:
    return tf.random.stateless_uniform([n], seed, -bound, bound)


def _affine_transforms(seeds: tf.Tensor, n: tf.Tensor, size: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """(n, 8) projective transforms mapping output to input pixels, about the image centre."""
    angle = _uniform(seeds[0], n, math.radians(cfg.rotation))
    zoom = 1.0 + _uniform(seeds[1], n, cfg.scale)
    side = tf.cast(size, tf.float32)
    dx = _uniform(seeds[2], n, cfg.shift) * side
    dy = _uniform(seeds[3], n, cfg.shift) * side
    flip = tf.ones([n])
    if cfg.horizontal_flip:
        flip = tf.where(tf.random.stateless_uniform([n], seeds[4]) < 0.5, -1.0, 1.0)
    # input = A @ (output - c) + c - d, with A = R(angle) / zoom, and x mirrored when flipped
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    c = (side - 1.0) / 2.0
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    a2 = c - a0 * c - a1 * c - dx
    b2 = c - b0 * c - b1 * c - dy
    zeros = tf.zeros([n])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """Augment a batch of radiographs.

    Args:
        images: (B, S, S, 1) float32 in [0, 1].
        seed: (2,) int64 stateless seed; the same seed gives the same output.
        cfg: the ranges.

    Returns:
        (B, S, S, 1) float32 in [0, 1].
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 8)
    n, size = tf.shape(images)[0], tf.shape(images)[1]
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=_affine_transforms(seeds, n, size, cfg), output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )
    x = tf.clip_by_value(x, 0.0, 1.0)
    gamma = tf.pow(2.0, _uniform(seeds[5], n, cfg.gamma))[:, None, None, None]
    x = tf.pow(x, gamma)
    mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
    contrast = 1.0 + _uniform(seeds[6], n, cfg.contrast)[:, None, None, None]
    brightness = _uniform(seeds[7], n, cfg.brightness)[:, None, None, None]
    x = (x - mean) * contrast + mean + brightness
    return tf.clip_by_value(x, 0.0, 1.0)


def _check(images: np.ndarray, labels: np.ndarray) -> None:
    if images.ndim != 4 or images.shape[-1] != 1 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be (N, S, S, 1), got {images.shape}")
    if labels.ndim != 2 or len(labels) != len(images):
        raise ValueError(f"labels must be (N, C) with N = {len(images)}, got {labels.shape}")


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, *, augment: AugmentConfig | None = None,
                 shuffle: bool = False, seed: int = 0, drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches of (x, y) read from in-memory or memory-mapped arrays.

    Args:
        images: (N, S, S, 1) float16/float32 in [0, 1] (numpy array or memmap; not copied).
        labels: (N, C) float in {0, 1, NaN}.
        batch_size: images per batch.
        augment: augmentation ranges, or None for none (validation, test).
        shuffle: reshuffle the order every epoch (deterministic for ``seed``).
        seed: seed of the order and the augmentations.
        drop_remainder: drop the last incomplete batch.

    Returns:
        Dataset of (x (B, S, S, 1) float32 in [0, 1], y (B, C) float32 with NaN kept).
    """
    _check(images, labels)
    labels = np.asarray(labels, dtype=np.float32)
    size, n_classes = images.shape[1], labels.shape[1]

    def gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # sorted reads are sequential on a memmap; the original order is restored after
        order = np.argsort(idx)
        x = np.empty((len(idx), size, size, 1), np.float32)
        x[order] = images[idx[order]]
        return x, labels[idx]

    def load(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.numpy_function(gather, [idx], [tf.float32, tf.float32], stateful=False)
        return tf.ensure_shape(x, [None, size, size, 1]), tf.ensure_shape(y, [None, n_classes])

    ds = tf.data.Dataset.range(len(images))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augment is None:
        ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda idx, s: (lambda x, y: (augment_batch(x, s, augment), y))(*load(idx)),
            num_parallel_calls=AUTOTUNE, deterministic=True,
        )
    return ds.prefetch(AUTOTUNE)
