"""tf.data pipeline: shapes, ranges, label alignment, NaN pass-through, determinism, radiograph-safe augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from radtriage.pipeline import AugmentConfig, make_dataset

SIZE = 32
STRONG = AugmentConfig(rotation=15, scale=0.2, shift=0.1, brightness=0.3, contrast=0.5, gamma=0.8)
NONE = AugmentConfig(rotation=0, scale=0, shift=0, brightness=0, contrast=0, gamma=0)


def collect(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def id_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i is constant i/n; label row i is [i, NaN for odd i]."""
    x = (np.arange(n, dtype=np.float32) / n)[:, None, None, None] * np.ones((1, SIZE, SIZE, 1), np.float32)
    y = np.stack([np.arange(n, dtype=np.float32), np.where(np.arange(n) % 2, np.nan, 1.0)], axis=1).astype(np.float32)
    return x, y


def half_bright(n: int, side: str) -> np.ndarray:
    x = np.full((n, SIZE, SIZE, 1), 0.1, np.float16)
    half = {"top": np.s_[:, : SIZE // 2], "left": np.s_[:, :, : SIZE // 2]}[side]
    x[half] = 0.9
    return x


def test_shapes_dtypes_and_range_under_strong_augmentation() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((20, SIZE, SIZE, 1)).astype(np.float16)
    y = rng.integers(0, 2, (20, 3)).astype(np.float32)
    batches = list(make_dataset(x, y, 8, augment=STRONG, shuffle=True, seed=0))
    assert [b[0].shape[0] for b in batches] == [8, 8, 4]
    xa, ya = collect(batches)
    assert xa.dtype == np.float32 and ya.dtype == np.float32
    assert xa.shape == (20, SIZE, SIZE, 1) and ya.shape == (20, 3)
    assert xa.min() >= 0.0 and xa.max() <= 1.0
    assert not np.allclose(np.sort(xa.ravel()), np.sort(x.astype(np.float32).ravel()))  # it did change


def test_without_augmentation_images_and_nan_labels_pass_through_unchanged() -> None:
    x, y = id_images(10)
    xa, ya = collect(make_dataset(x.astype(np.float16), y, 4))
    np.testing.assert_array_equal(xa, x.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(np.isnan(ya), np.isnan(y))
    np.testing.assert_array_equal(ya[~np.isnan(ya)], y[~np.isnan(y)])


def test_shuffle_keeps_each_image_with_its_labels() -> None:
    x, y = id_images(30)
    xa, ya = collect(make_dataset(x, y, 7, shuffle=True, seed=3))
    order = ya[:, 0].astype(int)
    assert sorted(order) == list(range(30)) and order.tolist() != list(range(30))
    np.testing.assert_allclose(xa[:, 0, 0, 0], order / 30, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(ya[:, 1]), order % 2 == 1)


def test_same_seed_same_batches_other_seed_or_epoch_differs() -> None:
    x = np.random.default_rng(1).random((12, SIZE, SIZE, 1)).astype(np.float32)
    y = np.zeros((12, 1), np.float32)

    def make(seed: int):
        return make_dataset(x, y, 4, augment=AugmentConfig(), shuffle=True, seed=seed)

    a, b, c = make(5), make(5), make(6)
    epoch1_a, epoch1_b = collect(a)[0], collect(b)[0]
    np.testing.assert_array_equal(epoch1_a, epoch1_b)
    assert not np.array_equal(epoch1_a, collect(c)[0])
    assert not np.array_equal(epoch1_a, collect(a)[0])  # a's second epoch: new order and augmentation


def test_zero_ranges_are_the_identity() -> None:
    x = np.random.default_rng(2).random((6, SIZE, SIZE, 1)).astype(np.float32)
    xa, _ = collect(make_dataset(x, np.zeros((6, 1), np.float32), 6, augment=NONE, seed=0))
    np.testing.assert_allclose(xa, x, atol=1e-5)


def test_default_augmentation_never_flips_vertically_or_horizontally() -> None:
    for side in ("top", "left"):
        x = half_bright(64, side)
        xa, _ = collect(make_dataset(x, np.zeros((64, 1), np.float32), 16, augment=AugmentConfig(), seed=0))
        first = xa[:, : SIZE // 2] if side == "top" else xa[:, :, : SIZE // 2]
        second = xa[:, SIZE // 2 :] if side == "top" else xa[:, :, SIZE // 2 :]
        assert np.all(first.mean(axis=(1, 2, 3)) > second.mean(axis=(1, 2, 3)) + 0.3), side


def test_horizontal_flip_when_asked_flips_about_half() -> None:
    x = half_bright(64, "left")
    cfg = AugmentConfig(rotation=0, scale=0, shift=0, brightness=0, contrast=0, gamma=0, horizontal_flip=True)
    xa, _ = collect(make_dataset(x, np.zeros((64, 1), np.float32), 64, augment=cfg, seed=0))
    flipped = xa[:, :, SIZE // 2 :].mean(axis=(1, 2, 3)) > xa[:, :, : SIZE // 2].mean(axis=(1, 2, 3))
    assert 16 <= flipped.sum() <= 48
    np.testing.assert_allclose(xa[flipped], x[flipped][:, :, ::-1].astype(np.float32), atol=1e-5)


def test_shift_moves_content_by_at_most_the_configured_fraction() -> None:
    x = np.zeros((32, SIZE, SIZE, 1), np.float32)
    x[:, 14:18, 14:18] = 1.0
    cfg = AugmentConfig(rotation=0, scale=0, shift=0.1, brightness=0, contrast=0, gamma=0)
    xa, _ = collect(make_dataset(x, np.zeros((32, 1), np.float32), 32, augment=cfg, seed=0))
    rows, cols = np.arange(SIZE)[:, None], np.arange(SIZE)[None, :]
    w = xa[..., 0]
    cy = (w * rows).sum(axis=(1, 2)) / w.sum(axis=(1, 2)) - 15.5
    cx = (w * cols).sum(axis=(1, 2)) / w.sum(axis=(1, 2)) - 15.5
    assert np.all(np.abs(cy) <= 0.1 * SIZE + 0.5) and np.all(np.abs(cx) <= 0.1 * SIZE + 0.5)
    assert np.abs(cx).max() > 1.0 and np.abs(cy).max() > 1.0


def test_reads_a_memory_map(tmp_path) -> None:
    x, y = id_images(9)
    path = tmp_path / "images.npy"
    np.save(path, x.astype(np.float16))
    xa, ya = collect(make_dataset(np.load(path, mmap_mode="r"), y, 4, shuffle=True, seed=0))
    np.testing.assert_allclose(xa[:, 0, 0, 0], ya[:, 0] / 9, atol=1e-3)


def test_bad_shapes_and_ranges_raise() -> None:
    with pytest.raises(ValueError, match="images"):
        make_dataset(np.zeros((4, SIZE, SIZE), np.float32), np.zeros((4, 1), np.float32), 2)
    with pytest.raises(ValueError, match="labels"):
        make_dataset(np.zeros((4, SIZE, SIZE, 1), np.float32), np.zeros((3, 1), np.float32), 2)
    with pytest.raises(ValueError):
        AugmentConfig(rotation=-1)
    assert AugmentConfig.from_dict(STRONG.to_dict()) == STRONG
