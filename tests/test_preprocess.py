"""Tests of radtriage.preprocess: geometry (pad/crop, content_box), contrast, config round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from radtriage.preprocess import (
    PREPROCESS_VERSION,
    PreprocessConfig,
    content_box,
    preprocess,
    resize_square,
    stretch_contrast,
)

NO_STRETCH = {"contrast": "none"}


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (256, 256), (1000, 37), (50, 70)])
@pytest.mark.parametrize("resize", ["pad", "crop"])
@pytest.mark.parametrize("contrast", ["none", "percentile"])
def test_output_shape_dtype_range(shape: tuple[int, int], resize: str, contrast: str) -> None:
    image = np.random.default_rng(0).random(shape)  # float64 in: float32 out
    out = preprocess(image, PreprocessConfig(size=64, resize=resize, contrast=contrast))
    assert out.shape == (64, 64, 1) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("shape", [(300, 200), (200, 300), (128, 128), (1000, 37), (37, 1000), (61, 97)])
def test_content_box_matches_where_nonzero_pixels_land(shape: tuple[int, int]) -> None:
    config = PreprocessConfig(size=64, **NO_STRETCH)
    out = preprocess(np.ones(shape, np.float32), config)[..., 0]
    rows, cols = np.nonzero(out > 0)
    top, left, height, width = content_box(shape, config)
    assert (rows.min(), cols.min()) == (top, left)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (height, width)
    np.testing.assert_allclose(out[top : top + height, left : left + width], 1.0, atol=1e-6)


def test_pad_keeps_whole_image_centred() -> None:
    # A 200 x 100 (tall) image whose left column band is bright: it must survive padding.
    image = np.full((200, 100), 0.5, np.float32)
    image[:, :10] = 1.0
    out = preprocess(image, PreprocessConfig(size=64, resize="pad", **NO_STRETCH))[..., 0]
    assert content_box(image.shape, PreprocessConfig(size=64, **NO_STRETCH)) == (0, 16, 64, 32)
    assert np.all(out[:, :16] == 0) and np.all(out[:, 48:] == 0)  # black side bars
    assert out[32, 16] == pytest.approx(1.0, abs=1e-3)  # the bright band is at the image's left edge
    assert out[32, 40] == pytest.approx(0.5, abs=1e-3)


def test_crop_removes_the_long_sides() -> None:
    # A 100 x 200 (wide) image: the outer 50 columns each side are bright, the centre is grey.
    image = np.full((100, 200), 0.5, np.float32)
    image[:, :50] = 1.0
    image[:, 150:] = 1.0
    config = PreprocessConfig(size=50, resize="crop", **NO_STRETCH)
    out = preprocess(image, config)[..., 0]
    np.testing.assert_allclose(out, 0.5, atol=1e-6)
    assert content_box(image.shape, config) == (0, 0, 50, 50)


def test_downsampling_is_antialiased() -> None:
    checker = (np.indices((512, 512)).sum(axis=0) % 2).astype(np.float32)  # 1-px checkerboard
    out = resize_square(checker, 64)
    assert abs(float(out.mean()) - 0.5) < 0.01 and float(out.std()) < 0.05  # no aliasing pattern


def test_percentile_stretch_maps_percentiles_to_0_and_1() -> None:
    image = np.linspace(0.2, 0.6, 100 * 100, dtype=np.float32).reshape(100, 100)
    out = stretch_contrast(image, 0.5, 99.5)
    lo, hi = np.percentile(image, [0.5, 99.5])
    np.testing.assert_allclose(out, np.clip((image - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert out.min() == 0.0 and out.max() == 1.0
    assert float(np.median(out)) == pytest.approx(0.5, abs=1e-3)


def test_percentile_stretch_leaves_flat_image_alone() -> None:
    flat = np.full((50, 50), 0.3)
    out = stretch_contrast(flat)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 0.3, atol=1e-7)


def test_contrast_none_keeps_grey_levels_and_percentile_changes_them() -> None:
    image = np.linspace(0.4, 0.6, 64 * 64, dtype=np.float32).reshape(64, 64)
    kept = preprocess(image, PreprocessConfig(size=64, **NO_STRETCH))[..., 0]
    np.testing.assert_allclose(kept, image, atol=1e-6)
    stretched = preprocess(image, PreprocessConfig(size=64))[..., 0]
    assert stretched.min() == 0.0 and stretched.max() == 1.0


def test_preprocess_rejects_non_2d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        preprocess(np.zeros((64, 64, 3)), PreprocessConfig())


def test_config_round_trip_and_validation() -> None:
    config = PreprocessConfig(size=128, resize="crop", contrast="none", p_low=1.0, p_high=99.0)
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["version"] == PREPROCESS_VERSION
    with pytest.raises(ValueError, match="unknown"):
        PreprocessConfig.from_dict({**config.to_dict(), "gamma": 2.0})
    with pytest.raises(ValueError, match="version"):
        PreprocessConfig.from_dict({**config.to_dict(), "version": PREPROCESS_VERSION + 1})
    for bad in ({"size": 8}, {"resize": "stretch"}, {"contrast": "clahe"}, {"p_low": 60, "p_high": 40}):
        with pytest.raises(ValueError):
            PreprocessConfig(**bad)


@pytest.mark.parametrize("kind", ["png", "dicom", "j2k_same_level", "j2k_other_level"])
def test_model_input_from_a_display_decode_equals_the_shared_path(kind: str) -> None:
    """The dashboard decodes once for display; the model input made from that decode must be exactly
    what load_and_preprocess gives (a JPEG 2000 file decoded at another level is decoded again)."""
    from dicom_fixtures import compressed, dicom_bytes, make_dataset, png_bytes, smooth_texture

    from radtriage import radiograph
    from radtriage.preprocess import load_and_preprocess, model_input

    config = PreprocessConfig(size=64)
    pixels = smooth_texture(512, 384, 4095, seed=1)
    if kind == "png":
        data = png_bytes((pixels >> 4).astype(np.uint8))
    elif kind == "dicom":
        data = dicom_bytes(make_dataset(pixels, bits_stored=12))
    else:
        data = dicom_bytes(compressed(make_dataset(pixels, bits_stored=12), "1.2.840.10008.1.2.4.90"))
    display_side = 64 if kind == "j2k_same_level" else 256  # 384 / 2**2 = 96 >= 64 for both, or level 0 vs 2
    shown = radiograph.load(data, min_side=display_side)
    expected = load_and_preprocess(data, config)[1]
    np.testing.assert_array_equal(model_input(shown, config, data), expected)
    levels = (radiograph.decode_level(shown.metadata, display_side), radiograph.decode_level(shown.metadata, 64))
    assert levels == {"png": (0, 0), "dicom": (0, 0), "j2k_same_level": (2, 2), "j2k_other_level": (0, 2)}[kind]
