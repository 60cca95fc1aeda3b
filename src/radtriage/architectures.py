"""Model builders: FLAT functional Keras models for (S, S, 1) radiographs in [0, 1].

Every builder returns one ``keras.Model`` whose layers are plain layers (no nested sub-model), so
Grad-CAM can tap any layer without "Graph disconnected" errors, and the model saves to one ``.h5``.
Shared layout, by layer name::

    "image" Input (S, S, 1) in [0, 1]
      -> "normalize" Rescaling to roughly zero mean, unit spread (part of the model, not of the data)
      -> architecture-specific body
      -> "gradcam_target" (last 4-D feature map, after its activation)
      -> "pool" GlobalAveragePooling2D (small_cnn: or max, avg+max, a 4x4 grid of averages) -> "dropout"
      -> "logits" Dense(n_outputs)            pre-sigmoid scores (temperature scaling, Grad-CAM)
      -> "probabilities" Activation(sigmoid)  (N, n_outputs) in [0, 1]: 14 chest findings or 1 MURA

Weights are always random (no download): ``weights=None``.

Registry: :func:`build_model` (``"small_cnn"``, ``"densenet"``, ``"efficientnet_b0"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from radtriage.contract import GRADCAM_LAYER, LOGITS_LAYER, PROBABILITIES_LAYER

OUTPUT_LAYER = PROBABILITIES_LAYER
INPUT_MEAN = 0.5  # [0, 1] radiographs -> about [-2, 2] after "normalize"
INPUT_STD = 0.25


def _stem(input_size: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """Input and the in-model normalisation ``(x - 0.5) / 0.25``."""
    inputs = keras.Input((input_size, input_size, 1), name="image")
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="normalize")(inputs)
    return inputs, x


POOLINGS: tuple[str, ...] = ("avg", "max", "avgmax", "grid", "gridmax")
GRID = 4  # "grid" pooling: about this many cells per side (at least)


def _pool(features: keras.KerasTensor, pooling: str) -> keras.KerasTensor:
    """Global pooling: "avg" (diffuse findings), "max" (small local findings: an average over the
    whole map dilutes a lesion a few cells wide), "avgmax" (both, concatenated), or "grid": the
    average of each cell of a ~``GRID`` x ``GRID`` grid, flattened, so the logits know WHERE a feature
    is (a chest finding is often defined by its place: an enlarged aortic knob looks like a hilum),
    or "gridmax": the grid and the global max, concatenated."""
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="pool")(features)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="pool")(features)
    if pooling == "avgmax":
        avg = layers.GlobalAveragePooling2D(name="pool_avg")(features)
        return layers.Concatenate(name="pool")([avg, layers.GlobalMaxPooling2D(name="pool_max")(features)])
    if pooling in ("grid", "gridmax"):
        side = int(features.shape[1])
        cell = max(1, side // GRID)  # a 16 px map -> 4 x 4 cells of 4; 10 px -> 5 x 5 cells of 2
        if side % cell or int(features.shape[2]) != side:
            raise ValueError(f"grid pooling needs a square feature map whose side is a multiple of "
                             f"side // {GRID}, got {tuple(features.shape[1:3])}")
        cells = layers.AveragePooling2D(cell, name="pool_cells")(features)
        if pooling == "grid":
            return layers.Flatten(name="pool")(cells)
        grid = layers.Flatten(name="pool_grid")(cells)
        return layers.Concatenate(name="pool")([grid, layers.GlobalMaxPooling2D(name="pool_max")(features)])
    raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")


def _head(inputs: keras.KerasTensor, features: keras.KerasTensor, n_outputs: int, dropout: float,
          name: str, pooling: str = "avg") -> keras.Model:
    """Features (already named ``gradcam_target``) -> pooled -> logits -> sigmoid probabilities."""
    x = _pool(features, pooling)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(n_outputs, name=LOGITS_LAYER)(x)
    probs = layers.Activation("sigmoid", name=OUTPUT_LAYER, dtype="float32")(logits)
    return keras.Model(inputs, probs, name=name)


def _conv_bn_relu(x: keras.KerasTensor, filters: int, name: str, kernel: int = 3,
                  strides: int = 1, bn_momentum: float = 0.99) -> keras.KerasTensor:
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=name)(x)


def small_cnn(input_size: int, n_outputs: int, width: int = 32, depth: int = 4, dropout: float = 0.3,
              pooling: str = "avg", bn_momentum: float = 0.99, stem_filters: int = 0,
              stem_stride: int = 2) -> keras.Model:
    """A small VGG-like baseline: ``depth`` blocks of 2 x (Conv3x3-BN-ReLU) + max-pool, width doubling.

    Args:
        input_size: S; must be divisible by ``2**(depth-1)`` times the stem stride, if any.
        n_outputs: number of sigmoid outputs (14 chest, 1 MURA).
        width: filters of the first block (doubles per block, capped at 8x).
        depth: number of blocks (the last one is not pooled, it is the Grad-CAM target).
        dropout: dropout rate before the logits, in [0, 1).
        pooling: pooling of the last block, "avg", "max", "avgmax", "grid" or "gridmax" (see :func:`_pool`).
        bn_momentum: momentum of the batch-norm moving statistics, in (0, 1). Short runs (a few
            hundred steps) need ~0.9: with 0.99 the inference-time statistics lag the weights,
            which max pooling (driven by extreme activations) is most sensitive to.
        stem_filters: 0 (none) or the filters of a strided Conv-BN-ReLU before the blocks. It
            shrinks the map without a full-resolution block; on CPU, convolutions over wide maps with
            few channels are memory-bound, so this costs far less than a block at full size.
        stem_stride: 2 (3x3 kernel) or 4 (4x4 kernel, non-overlapping patches as in ConvNeXt): a
            large input then costs about what a quarter-size one does, while the stem's filters
            still see every pixel, so thin structures are not averaged away by a resize.

    Returns:
        Flat model (N, S, S, 1) in [0, 1] -> (N, n_outputs) in [0, 1].
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if stem_stride not in (2, 4):
        raise ValueError(f"stem_stride must be 2 or 4, got {stem_stride}")
    factor = 2 ** (depth - 1) * (stem_stride if stem_filters else 1)
    if input_size % factor:
        raise ValueError(f"input_size {input_size} must be divisible by {factor} (depth {depth}, "
                         f"{f'a stride-{stem_stride}' if stem_filters else 'no'} stem)")
    inputs, x = _stem(input_size)
    if stem_filters:
        x = _conv_bn_relu(x, stem_filters, "stem", kernel=3 if stem_stride == 2 else stem_stride,
                          strides=stem_stride, bn_momentum=bn_momentum)
    for b in range(depth):
        filters = width * 2 ** min(b, 3)
        x = _conv_bn_relu(x, filters, f"block{b + 1}_a", bn_momentum=bn_momentum)
        last = b == depth - 1
        x = _conv_bn_relu(x, filters, GRADCAM_LAYER if last else f"block{b + 1}_b", bn_momentum=bn_momentum)
        if not last:
            x = layers.MaxPooling2D(name=f"block{b + 1}_pool")(x)
    return _head(inputs, x, n_outputs, dropout, "small_cnn", pooling)


def _dense_block(x: keras.KerasTensor, n_layers: int, growth: int, name: str) -> keras.KerasTensor:
    """DenseNet block: each BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k) output is concatenated to its input."""
    for i in range(n_layers):
        p = f"{name}_l{i + 1}"
        y = layers.BatchNormalization(name=f"{p}_bn1")(x)
        y = layers.Activation("relu", name=f"{p}_relu1")(y)
        y = layers.Conv2D(4 * growth, 1, use_bias=False, name=f"{p}_conv1")(y)
        y = layers.BatchNormalization(name=f"{p}_bn2")(y)
        y = layers.Activation("relu", name=f"{p}_relu2")(y)
        y = layers.Conv2D(growth, 3, padding="same", use_bias=False, name=f"{p}_conv2")(y)
        x = layers.Concatenate(name=f"{p}_concat")([x, y])
    return x


def _transition(x: keras.KerasTensor, compression: float, name: str) -> keras.KerasTensor:
    """BN-ReLU-Conv1x1 (channels x compression) then 2x2 average pooling."""
    channels = int(int(x.shape[-1]) * compression)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, name=f"{name}_pool")(x)


def densenet(input_size: int, n_outputs: int, blocks: tuple[int, ...] = (6, 12, 24, 16), growth: int = 32,
             width: int = 64, compression: float = 0.5, dropout: float = 0.2) -> keras.Model:
    """DenseNet-BC (Huang et al. 2017) from scratch; the defaults are DenseNet-121.

    Args:
        input_size: S; the stem divides it by 4 and each transition by 2 again.
        n_outputs: number of sigmoid outputs.
        blocks: layers per dense block, e.g. (6, 12, 24, 16) for DenseNet-121, (2, 2) for a toy.
        growth: channels each dense layer adds (k).
        width: stem filters.
        compression: channel factor of each transition, in (0, 1].
        dropout: dropout rate before the logits.

    Returns:
        Flat model (N, S, S, 1) in [0, 1] -> (N, n_outputs) in [0, 1].
    """
    if input_size % 2 ** (len(blocks) + 1):
        raise ValueError(f"input_size {input_size} must be divisible by {2 ** (len(blocks) + 1)}")
    inputs, x = _stem(input_size)
    x = _conv_bn_relu(x, width, "stem", kernel=7, strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for b, n_layers in enumerate(blocks):
        x = _dense_block(x, n_layers, growth, f"dense{b + 1}")
        if b < len(blocks) - 1:
            x = _transition(x, compression, f"transition{b + 1}")
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.Activation("relu", name=GRADCAM_LAYER)(x)
    return _head(inputs, x, n_outputs, dropout, "densenet")


def efficientnet_b0(input_size: int, n_outputs: int, dropout: float = 0.2) -> keras.Model:
    """EfficientNet-B0 body of ``keras.applications`` (random weights) with the shared head.

    The application is built on our input tensor, then its layers are re-used by a new functional
    model, which is flat. Its own stem (``Rescaling(1/255)``, an un-adapted = identity
    ``Normalization``) is fed ``255 * normalized`` so it passes our normalisation through unchanged.

    Args:
        input_size: S >= 32.
        n_outputs: number of sigmoid outputs.
        dropout: dropout rate before the logits.
    """
    inputs, x = _stem(input_size)
    x = layers.Rescaling(255.0, name="to_255")(x)
    body = keras.applications.EfficientNetB0(include_top=False, weights=None, input_tensor=x)
    features = layers.Activation("linear", name=GRADCAM_LAYER)(body.output)  # "top_activation" renamed
    return _head(inputs, features, n_outputs, dropout, "efficientnet_b0")


def efficientnet_lite(input_size: int, n_outputs: int, variant: str = "lite0", weights: str | None = "imagenet",
                      trainable_from_stage: int = 5, dropout: float = 0.2) -> keras.Model:
    """ImageNet-pretrained EfficientNet-Lite (:mod:`radtriage.backbones`) with the radtriage head: the
    default for retraining on VinBigData or MURA-v1.1.

    BatchNorm layers stay frozen (their ImageNet statistics), and so do the stages before
    ``trainable_from_stage``: fine-tuning the top stages of a pretrained network is what worked on
    this project's small real datasets (BENCHMARKS.md); with tens of thousands of images and a GPU,
    ``trainable_from_stage=1`` trains every convolution.

    Args:
        input_size: S >= 32 (native sizes: lite0 224, lite1 240, lite2 260).
        n_outputs: number of sigmoid outputs.
        variant: "lite0", "lite1" or "lite2".
        weights: "imagenet" (needs the ``train`` extra's weight packages) or None (random).
        trainable_from_stage: first trained stage, 1-7 (8 = only the head's Dense layer).
        dropout: dropout rate before the logits.
    """
    from radtriage import backbones

    net = backbones.efficientnet_lite(variant, (input_size, input_size, 1), include_top=False, weights=weights,
                                      feature_map_name=GRADCAM_LAYER)
    for layer in net.layers:
        stage = backbones.stage_of(layer.name)
        head = layer.name.startswith("head") or layer.name == GRADCAM_LAYER  # after stage 7: "stage 8"
        number = stage if stage is not None else 8 if head else 0
        layer.trainable = number >= trainable_from_stage and not isinstance(layer, layers.BatchNormalization)
    return _head(net.input, net.get_layer(GRADCAM_LAYER).output, n_outputs, dropout, f"efficientnet_{variant}")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "small_cnn": small_cnn,
    "densenet": densenet,
    "efficientnet_b0": efficientnet_b0,
    "efficientnet_lite": efficientnet_lite,
}


def build_model(name: str, input_size: int, n_outputs: int, **kwargs: Any) -> keras.Model:
    """Build a registered architecture.

    Args:
        name: a key of :data:`ARCHITECTURES`.
        input_size: S of the (S, S, 1) input (= ``PreprocessConfig.size``).
        n_outputs: number of sigmoid outputs.
        **kwargs: the builder's own parameters (width, depth, blocks, growth, dropout, ...).

    Returns:
        A flat model with layers ``"gradcam_target"``, ``"logits"`` and ``"probabilities"``.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](input_size, n_outputs, **kwargs)


def is_flat(model: keras.Model) -> bool:
    """True when no layer of ``model`` is itself a model (Grad-CAM and .h5 need this)."""
    return not any(isinstance(layer, keras.Model) for layer in model.layers)
