"""The preprocessed-image cache: contents, failures, resumption, config hashing, loading back."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_fixtures import dicom_bytes, gradient, make_dataset, png_bytes, smooth_texture

from radtriage import radiograph
from radtriage.datasets import MuraDataset
from radtriage.prepare import (
    CACHE_DTYPE,
    FAILURES_FILE,
    CacheError,
    cache_file_name,
    config_hash,
    load_cached,
    prepare,
    stack_cached,
)
from radtriage.preprocess import PreprocessConfig, preprocess

CONFIG = PreprocessConfig(size=32)
GOOD = ("png_wide", "png_tall16", "dicom")
BAD = {"truncated": "corrupt", "text": "not_an_image", "absent": "unreadable", "no_path": "no_path"}


@pytest.fixture()
def image_table(tmp_path: Path) -> pd.DataFrame:
    """Three good images (8-bit PNG, 16-bit PNG, DICOM) and four bad rows."""
    folder = tmp_path / "images"
    folder.mkdir()
    files = {
        "png_wide": png_bytes(smooth_texture(90, 140, 255, seed=1).astype(np.uint8)),
        "png_tall16": png_bytes(smooth_texture(150, 100, 65535, seed=2).astype(np.uint16)),
        "dicom": dicom_bytes(make_dataset(gradient(128, 96, 4095).astype(np.uint16), bits_stored=12)),
        "truncated": png_bytes(smooth_texture(90, 90, 255, seed=3).astype(np.uint8))[:200],
        "text": b"patient notes, not an image\n" * 10,
    }
    paths: dict[str, object] = {}
    for image_id, data in files.items():
        paths[image_id] = str(folder / f"{image_id}.bin")
        Path(paths[image_id]).write_bytes(data)
    paths["absent"] = str(folder / "absent.png")
    paths["no_path"] = None
    return pd.DataFrame({"image_id": list(paths), "path": list(paths.values())})


def expected_array(path: str) -> np.ndarray:
    pixels = radiograph.load(path, min_side=CONFIG.size).pixels
    return preprocess(pixels, CONFIG).astype(CACHE_DTYPE)


def test_prepare_caches_good_and_records_bad(image_table: pd.DataFrame, tmp_path: Path) -> None:
    index = prepare(image_table, CONFIG, tmp_path / "cache", workers=0, progress=False)
    assert index.directory == tmp_path / "cache" / config_hash(CONFIG)
    assert index.image_ids == GOOD
    assert (index.n_written, index.n_skipped) == (3, 0)
    assert dict(zip(index.failures["image_id"], index.failures["code"])) == BAD
    assert all(isinstance(m, str) and m for m in index.failures["message"])
    on_disk = pd.read_csv(index.directory / FAILURES_FILE, keep_default_na=False)
    assert dict(zip(on_disk["image_id"], on_disk["code"])) == BAD
    assert sorted(p.name for p in index.directory.glob("*.npy")) == sorted(cache_file_name(i) for i in GOOD)
    paths = dict(zip(image_table["image_id"], image_table["path"]))
    for image_id in GOOD:
        cached = np.load(index.path_for(image_id))
        assert cached.dtype == np.float16 and cached.shape == (32, 32, 1)
        np.testing.assert_array_equal(cached, expected_array(paths[image_id]))


def test_prepare_resumes_without_rewriting(image_table: pd.DataFrame, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = prepare(image_table.iloc[:1], CONFIG, cache, workers=0, progress=False)
    assert (first.n_written, first.n_skipped) == (1, 0)
    mtime = os.stat(first.path_for("png_wide")).st_mtime_ns
    stale = first.directory / "png_tall16-interrupted.npy.123.tmp"  # left by a killed run
    stale.write_bytes(b"half")
    second = prepare(image_table, CONFIG, cache, workers=0, progress=False)
    assert (second.n_written, second.n_skipped) == (2, 1)
    assert os.stat(first.path_for("png_wide")).st_mtime_ns == mtime
    assert not stale.exists()
    third = prepare(image_table, CONFIG, cache, workers=0, progress=False)
    assert (third.n_written, third.n_skipped) == (0, 3)
    assert len(third.failures) == len(BAD)  # bad files are retried, and fail again
    on_disk = pd.read_csv(third.directory / FAILURES_FILE)
    assert sorted(on_disk["image_id"]) == sorted(BAD)  # replaced, not appended


def test_prepare_parallel_equals_serial(image_table: pd.DataFrame, tmp_path: Path) -> None:
    serial = prepare(image_table, CONFIG, tmp_path / "a", workers=0, progress=False)
    parallel = prepare(image_table, CONFIG, tmp_path / "b", workers=2, progress=False)
    assert parallel.image_ids == serial.image_ids
    assert sorted(parallel.failures["code"]) == sorted(serial.failures["code"])
    np.testing.assert_array_equal(load_cached(parallel, GOOD), load_cached(serial, GOOD))


def test_config_change_never_reuses_cache(image_table: pd.DataFrame, tmp_path: Path) -> None:
    other = PreprocessConfig(size=32, resize="crop")
    assert config_hash(other) != config_hash(CONFIG)
    assert config_hash(PreprocessConfig(size=32)) == config_hash(CONFIG)
    a = prepare(image_table, CONFIG, tmp_path, workers=0, progress=False)
    b = prepare(image_table, other, tmp_path, workers=0, progress=False)
    assert a.directory != b.directory and b.n_skipped == 0 and b.n_written == 3
    assert not np.array_equal(load_cached(a, ["png_wide"]), load_cached(b, ["png_wide"]))


def test_load_cached_and_stack(image_table: pd.DataFrame, tmp_path: Path) -> None:
    index = prepare(image_table, CONFIG, tmp_path / "cache", workers=0, progress=False)
    order = ["dicom", "png_wide"]
    arrays = load_cached(index.directory, order)  # from the directory alone
    assert arrays.shape == (2, 32, 32, 1) and arrays.dtype == np.float32
    assert 0.0 <= arrays.min() and arrays.max() <= 1.0
    np.testing.assert_array_equal(arrays[1], np.load(index.path_for("png_wide")).astype(np.float32))
    stacked = stack_cached(index, order, tmp_path / "stack.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "stack.npy", mmap_mode="r"), arrays.astype(np.float16))
    assert stacked.shape == (2, 32, 32, 1)
    with pytest.raises(CacheError, match="1 of the 2 requested images are not in the cache"):
        load_cached(index, ["dicom", "truncated"])
    with pytest.raises(CacheError, match="not a prepared cache"):
        load_cached(tmp_path, order)


def test_prepare_rejects_bad_tables(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicated"):
        prepare(pd.DataFrame({"image_id": ["a", "a"], "path": ["x", "y"]}), CONFIG, tmp_path, progress=False)
    with pytest.raises(ValueError, match="'image_id' and 'path'"):
        prepare(pd.DataFrame({"image_id": ["a"]}), CONFIG, tmp_path, progress=False)


def test_cache_file_names_are_safe_and_distinct() -> None:
    names = {cache_file_name(i) for i in ("a/b", "a_b", "a b", "mura:train/XR_WRIST/p1/s1/image1")}
    assert len(names) == 4
    assert all("/" not in n and " " not in n and n.endswith(".npy") for n in names)


@pytest.mark.real_data
def test_prepare_real_mura_images(shared_data: Path, tmp_path: Path) -> None:
    ds = MuraDataset(shared_data / "limb-sample", split="valid")
    index = prepare(ds.table, CONFIG, tmp_path, workers=0, progress=False)
    assert index.image_ids == tuple(ds.table["image_id"]) and index.failures.empty
    arrays = load_cached(index, ds.table["image_id"].tolist())
    for k, path in enumerate(ds.paths()):
        np.testing.assert_array_equal(arrays[k], expected_array(path).astype(np.float32))
    assert (arrays.reshape(3, -1).std(axis=1) > 0.05).all()  # real content, not blank
