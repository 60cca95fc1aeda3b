"""Grad-CAM: localisation on a tiny trained model, ranges/shapes, degenerate maps, no retracing,
overlay and mapping back onto the original image."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from radtriage.gradcam import GradCam
from radtriage.heatmap import crop_to_content, heatmap_for_original, overlay
from radtriage.preprocess import PreprocessConfig, content_box, preprocess

SIZE = 32
SQUARE = 8


def head(features: keras.KerasTensor, inputs: keras.KerasTensor, n_classes: int, pool) -> keras.Model:
    """The project's layer naming: gradcam_target -> pooling -> Dense "logits" -> sigmoid "probabilities"."""
    logits = keras.layers.Dense(n_classes, name="logits")(pool(features))
    probs = keras.layers.Activation("sigmoid", name="probabilities")(logits)
    return keras.Model(inputs, probs)


def square_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list]:
    """Dim noise; half the images hold a bright square at a random place (class 0 = square present)."""
    x = (rng.random((n, SIZE, SIZE, 1)) * 0.3).astype(np.float32)
    y = np.zeros((n, 2), np.float32)
    boxes: list[tuple[int, int] | None] = []
    for i in range(n):
        if rng.random() < 0.5:
            top, left = rng.integers(0, SIZE - SQUARE, 2)
            x[i, top : top + SQUARE, left : left + SQUARE] = 1.0
            y[i, 0] = 1.0
            boxes.append((int(top), int(left)))
        else:
            boxes.append(None)
        y[i, 1] = float(x[i].mean() > 0.15)
    return x, y, boxes


@pytest.fixture(scope="module")
def trained() -> keras.Model:
    """A tiny CNN trained for a few seconds to detect the square (class 0)."""
    keras.utils.set_random_seed(0)
    x, y, _ = square_images(512, np.random.default_rng(0))
    inputs = keras.Input((SIZE, SIZE, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="gradcam_target")(h)
    model = head(h, inputs, 2, keras.layers.GlobalMaxPooling2D())
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    return model


@pytest.fixture(scope="module")
def constructed() -> keras.Model:
    """Hand-set weights: feature 0 = local brightness (-> class 0), feature 1 = local darkness (-> class 1)."""
    inputs = keras.Input((SIZE, SIZE, 1))
    h = keras.layers.Conv2D(2, 2, strides=2, activation="relu", name="gradcam_target")(inputs)
    model = head(h, inputs, 2, keras.layers.GlobalAveragePooling2D())
    kernel = np.zeros((2, 2, 1, 2), np.float32)
    kernel[..., 0, 0], kernel[..., 0, 1] = 0.25, -0.25
    model.get_layer("gradcam_target").set_weights([kernel, np.array([0.0, 0.25], np.float32)])
    model.get_layer("logits").set_weights([10 * np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    return model


def mass_inside(heatmap: np.ndarray, top: int, left: int) -> float:
    return float(heatmap[top : top + SQUARE, left : left + SQUARE].sum() / heatmap.sum())


def test_heatmap_mass_concentrates_on_the_learned_square(trained: keras.Model) -> None:
    x, y, boxes = square_images(32, np.random.default_rng(1))
    result = GradCam(trained)(x, 0)
    assert (result.probs[:, 0] > 0.5).astype(float).tolist() == y[:, 0].tolist()  # it learned the task
    positives = [i for i, b in enumerate(boxes) if b is not None]
    assert len(positives) >= 8
    # the square covers 6% of the image; a map that ignored it would put ~6% of its mass there
    fractions = [mass_inside(result.heatmaps[i], *boxes[i]) for i in positives]
    assert min(fractions) > 0.5, fractions


def test_shapes_ranges_and_probs_equal_model(trained: keras.Model) -> None:
    x, _, _ = square_images(5, np.random.default_rng(2))
    probs, heatmaps, degenerate = GradCam(trained)(x, 1)
    assert probs.shape == (5, 2) and heatmaps.shape == (5, SIZE, SIZE) and degenerate.shape == (5,)
    assert heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    assert np.allclose(heatmaps.max(axis=(1, 2))[~degenerate], 1.0)  # normalised per image
    np.testing.assert_allclose(probs, trained(x).numpy(), rtol=1e-5, atol=1e-6)


def test_class_index_selects_the_class_evidence(constructed: keras.Model) -> None:
    x = np.full((2, SIZE, SIZE, 1), 0.1, np.float32)
    x += np.random.default_rng(3).random(x.shape).astype(np.float32) * 0.05
    x[:, 4:12, 18:26] = 1.0
    gradcam = GradCam(constructed)
    bright = gradcam(x, 0).heatmaps
    dark = gradcam(x, 1).heatmaps
    assert all(mass_inside(h, 4, 18) > 0.5 for h in bright)
    assert all(mass_inside(h, 4, 18) < 0.02 for h in dark)


def test_top_class_mode_explains_each_images_most_probable_class(constructed: keras.Model) -> None:
    x = np.full((2, SIZE, SIZE, 1), 0.1, np.float32)
    x[0, 4:12, 18:26] = 1.0  # bright patch: class 0 (brightness) wins; image 1 is dark: class 1 wins
    gradcam = GradCam(constructed)
    top = gradcam(x)
    assert top.class_index.tolist() == np.argmax(top.probs, axis=1).tolist() == [0, 1]
    for i in range(2):
        np.testing.assert_array_equal(top.heatmaps[i], gradcam(x, int(top.class_index[i])).heatmaps[i])
    # ranking by temperatures: a large T on class 0 makes class 1 the "most probable" of image 0
    ranked = GradCam(constructed, rank_temperatures=np.array([1e3, 1.0]))(x)
    assert ranked.class_index.tolist() == [1, 1]
    assert gradcam.tracing_count == 1


def test_constant_and_non_finite_inputs_are_flagged_not_nan(constructed: keras.Model) -> None:
    gradcam = GradCam(constructed)
    x = np.random.default_rng(4).random((3, SIZE, SIZE, 1)).astype(np.float32)
    x[0] = 0.5  # constant image -> constant feature maps -> constant map
    x[1, 3, 3] = np.nan
    result = gradcam(x, 0)
    assert result.degenerate.tolist() == [True, True, False]
    assert np.isfinite(result.heatmaps).all()
    assert result.heatmaps[:2].max() == 0.0 and result.heatmaps[2].max() == 1.0


def test_new_class_or_batch_size_does_not_retrace(constructed: keras.Model) -> None:
    gradcam = GradCam(constructed)
    x = np.random.default_rng(5).random((4, SIZE, SIZE, 1)).astype(np.float32)
    gradcam(x, 0)
    assert gradcam.tracing_count == 1
    gradcam(x, 1)
    gradcam(x[:1], 0)
    gradcam(x[:3], np.int64(1))
    assert gradcam.tracing_count == 1


def test_falls_back_to_probabilities_without_logits_layer() -> None:
    inputs = keras.Input((SIZE, SIZE, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="gradcam_target")(inputs)
    probs = keras.layers.Dense(3, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(h))
    gradcam = GradCam(keras.Model(inputs, probs))
    assert gradcam.target == "probabilities"
    result = gradcam(np.random.default_rng(6).random((2, SIZE, SIZE, 1)).astype(np.float32), 2)
    assert result.probs.shape == (2, 3) and np.isfinite(result.heatmaps).all()


def test_bad_inputs_raise_clear_errors(constructed: keras.Model) -> None:
    gradcam = GradCam(constructed)
    x = np.zeros((1, SIZE, SIZE, 1), np.float32)
    with pytest.raises(ValueError, match="outside"):
        gradcam(x, 2)
    with pytest.raises(ValueError, match="expected images of shape"):
        gradcam(x[0], 0)
    with pytest.raises(ValueError, match="no layer named"):
        GradCam(constructed, layer_name="nope")


def test_overlay_blends_colormap_over_grey() -> None:
    image = np.zeros((4, 5), np.float32)
    heat = np.zeros((4, 5), np.float32)
    heat[0, 0] = 1.0
    rgb = overlay(image, heat, alpha=0.5, cmap="jet")
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    # jet(1.0) is dark red, jet(0.0) dark blue: half of each over black
    assert rgb[0, 0, 0] > 60 and rgb[0, 0, 2] == 0
    assert rgb[1, 1, 2] > 60 and rgb[1, 1, 0] == 0
    assert (overlay(np.ones((4, 5)), heat, alpha=0.0) == 255).all()
    with pytest.raises(ValueError):
        overlay(image, heat[:3])


def test_heatmap_maps_back_onto_padded_original() -> None:
    config = PreprocessConfig(size=SIZE, contrast="none")
    original = np.zeros((40, 80), np.float32)  # wide: padded top and bottom
    original[10:20, 60:70] = 1.0
    model_input = preprocess(original, config)[..., 0]
    box = content_box(original.shape, config)
    assert box == (8, 0, 16, 32)
    assert crop_to_content(model_input, box).shape == (16, 32)
    back = heatmap_for_original(model_input, original.shape, config)
    assert back.shape == original.shape
    # the bright patch lands where it was in the original
    assert np.unravel_index(np.argmax(back), back.shape)[1] in range(58, 72)
    assert back[10:20, 60:70].mean() > 5 * back.mean()


def test_heatmap_maps_back_onto_cropped_original() -> None:
    config = PreprocessConfig(size=SIZE, resize="crop", contrast="none")
    heat = np.ones((SIZE, SIZE), np.float32)
    back = heatmap_for_original(heat, (40, 80), config)
    assert back.shape == (40, 80)
    assert back[:, 20:60].min() > 0.99 and back[:, :20].max() == 0.0 and back[:, 60:].max() == 0.0
