"""Preprocessed-image cache: every image of a table -> one float16 ``.npy`` (S, S, 1) on disk.

Training reads the cache instead of decoding 2,500 px DICOMs every epoch. Layout::

    <cache_dir>/<config hash>/config.json      the PreprocessConfig the arrays were made with
    <cache_dir>/<config hash>/<image file>.npy one per image, float16 (S, S, 1) in [0, 1]
    <cache_dir>/<config hash>/failures.csv     image_id, code, message of images that failed

The hash covers ``PreprocessConfig.to_dict()``, so another preprocessing never reuses arrays.
A run is resumable: images already cached are skipped, and every file is written to a temporary
name then renamed, so an interrupted run leaves no half-written array. Bad files are recorded
and skipped; they never abort the run. Do not run two ``prepare`` calls on one cache at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radtriage.preprocess import LoadFailure, PreprocessConfig, try_load_and_preprocess

CACHE_DTYPE = np.float16
CONFIG_FILE = "config.json"
FAILURES_FILE = "failures.csv"
FAILURE_COLUMNS = ["image_id", "code", "message"]
IN_FLIGHT_PER_WORKER = 4  # tasks queued per worker: keeps workers busy, memory bounded
HASH_CHARS = 16

Task = tuple[str, object, str]  # (image_id, path, output file)
Result = tuple[str, str | None, str | None]  # (image_id, error code or None, message or None)


class CacheError(ValueError):
    """The cache is missing, made with another preprocessing, or lacks requested images."""


@dataclass
class CacheIndex:
    """What ``prepare`` produced.

    Attributes:
        directory: ``<cache_dir>/<config hash>``.
        config: the preprocessing of every array in ``directory``.
        image_ids: ids of the prepared table that are cached, in table order.
        failures: image_id, code, message of the table's images that could not be prepared.
        n_written: arrays written by this run.
        n_skipped: images found already cached (not reprocessed).
    """

    directory: Path
    config: PreprocessConfig
    image_ids: tuple[str, ...]
    failures: pd.DataFrame
    n_written: int = 0
    n_skipped: int = 0

    def path_for(self, image_id: str) -> Path:
        """The ``.npy`` file of ``image_id`` (which may not exist)."""
        return self.directory / cache_file_name(image_id)


def config_hash(config: PreprocessConfig) -> str:
    """Short stable hex hash of a preprocessing config (its ``to_dict()`` as sorted JSON)."""
    text = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def cache_file_name(image_id: str) -> str:
    """A file-system-safe, collision-free file name for an image id (ids may contain '/')."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", image_id)[-80:]
    digest = hashlib.sha1(image_id.encode()).hexdigest()[:10]
    return f"{readable}-{digest}.npy"


def cache_directory(cache_dir: str | Path, config: PreprocessConfig) -> Path:
    """Create (if needed) and return ``<cache_dir>/<config hash>`` with its ``config.json``."""
    directory = Path(cache_dir) / config_hash(config)
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / CONFIG_FILE
    if not config_file.exists():
        _write_atomic_text(config_file, json.dumps(config.to_dict(), indent=2, sort_keys=True))
    return directory


def prepare(
    table: pd.DataFrame,
    config: PreprocessConfig,
    cache_dir: str | Path,
    workers: int = 2,
    progress: bool = True,
) -> CacheIndex:
    """Load, preprocess and cache every image of ``table`` that is not cached yet.

    Args:
        table: image table with ``image_id`` (unique) and ``path`` columns (any dataset's table).
        config: the preprocessing; ``config.size`` is also the loader's ``min_side``.
        cache_dir: root of the cache (created if needed).
        workers: worker processes; 0 or 1 runs in this process.
        progress: show a tqdm progress bar.

    Returns:
        CacheIndex of the table's cached images and failures (also written to failures.csv).

    Raises:
        ValueError: missing columns or duplicated image ids.
    """
    if not {"image_id", "path"} <= set(table.columns):
        raise ValueError("the table needs 'image_id' and 'path' columns")
    ids = table["image_id"].astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise ValueError("the table has duplicated image_id values")
    directory = cache_directory(cache_dir, config)
    _remove_stale_temporaries(directory)
    tasks = [
        (image_id, path, str(directory / cache_file_name(image_id)))
        for image_id, path in zip(ids, table["path"].tolist())
    ]
    todo = [t for t in tasks if not os.path.exists(t[2])]
    failed: list[Result] = []
    with tqdm(total=len(todo), desc="prepare", unit="img", disable=not progress) as bar:
        for result in _run(todo, config, workers):
            if result[1] is not None:
                failed.append(result)
                bar.set_postfix(failed=len(failed))
            bar.update()
    failures = pd.DataFrame(failed, columns=FAILURE_COLUMNS)
    _record_failures(directory, failures, ids)
    failed_ids = set(failures["image_id"])
    return CacheIndex(
        directory=directory,
        config=config,
        image_ids=tuple(i for i in ids if i not in failed_ids),
        failures=failures,
        n_written=len(todo) - len(failures),
        n_skipped=len(tasks) - len(todo),
    )


def prepare_one(image_id: str, path: object, out_file: str, config: PreprocessConfig) -> Result:
    """Load, preprocess and atomically save one image; never raises for a bad image.

    Returns:
        (image_id, None, None) on success, else (image_id, error code, one-sentence message).
    """
    if not isinstance(path, (str, Path)) or not str(path):
        return image_id, "no_path", "The table gives no file for this image."
    loaded = try_load_and_preprocess(path, config)
    if isinstance(loaded, LoadFailure):
        return image_id, loaded.code, loaded.message
    array = loaded.astype(CACHE_DTYPE)
    tmp = f"{out_file}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, out_file)
    return image_id, None, None


def _run(tasks: Sequence[Task], config: PreprocessConfig, workers: int) -> Iterator[Result]:
    """Results of ``prepare_one`` for every task, in completion order."""
    if workers <= 1:
        for task in tasks:
            yield prepare_one(*task, config)
        return
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        pending: set[Future[Result]] = set()
        for task in tasks:
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)
            pending.add(pool.submit(prepare_one, *task, config))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in done)
    finally:
        # On interruption, drop queued tasks; files already renamed stay valid for a rerun.
        pool.shutdown(wait=True, cancel_futures=True)


def _record_failures(directory: Path, failures: pd.DataFrame, table_ids: Iterable[str]) -> None:
    """Rewrite failures.csv: this run's failures replace earlier records of the table's images."""
    path = directory / FAILURES_FILE
    if path.exists():
        earlier = pd.read_csv(path, dtype=str, keep_default_na=False)
        earlier = earlier[~earlier["image_id"].isin(set(table_ids))]
        failures = pd.concat([earlier, failures], ignore_index=True)
    _write_atomic_text(path, failures.to_csv(index=False))


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete half-written files left by an interrupted run."""
    for tmp in directory.glob("*.tmp"):
        tmp.unlink(missing_ok=True)


def _write_atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def open_cache(source: CacheIndex | str | Path) -> tuple[Path, PreprocessConfig]:
    """The directory and preprocessing of a cache given a CacheIndex or a ``<hash>`` directory."""
    if isinstance(source, CacheIndex):
        return source.directory, source.config
    directory = Path(source)
    config_file = directory / CONFIG_FILE
    if not config_file.is_file():
        raise CacheError(f"{directory} is not a prepared cache (no {CONFIG_FILE}).")
    config = PreprocessConfig.from_dict(json.loads(config_file.read_text()))
    if directory.name != config_hash(config):
        raise CacheError(f"{directory} holds arrays of another preprocessing than its name says.")
    return directory, config


def _cached_files(directory: Path, image_ids: Sequence[str]) -> list[Path]:
    files = [directory / cache_file_name(str(i)) for i in image_ids]
    missing = sum(not f.exists() for f in files)
    if missing:
        raise CacheError(f"{missing} of the {len(files)} requested images are not in the cache.")
    return files


def load_cached(source: CacheIndex | str | Path, image_ids: Sequence[str]) -> np.ndarray:
    """Cached arrays of ``image_ids`` stacked in order.

    Args:
        source: a CacheIndex or a ``<cache_dir>/<config hash>`` directory.
        image_ids: ids to load (all must be cached).

    Returns:
        float32 (N, S, S, 1) in [0, 1].

    Raises:
        CacheError: not a cache, or some ids are not cached.
    """
    directory, config = open_cache(source)
    files = _cached_files(directory, image_ids)
    out = np.empty((len(files), config.size, config.size, 1), dtype=np.float32)
    for k, f in enumerate(files):
        out[k] = np.load(f)
    return out


def stack_cached(
    source: CacheIndex | str | Path, image_ids: Sequence[str], out_file: str | Path
) -> np.memmap:
    """Write the cached arrays of ``image_ids`` into one float16 ``.npy`` and memory-map it.

    For training sets larger than memory: ``np.load(out_file, mmap_mode="r")`` reads it lazily.
    Memory use is one image at a time.

    Returns:
        float16 memmap (N, S, S, 1) in [0, 1], rows in ``image_ids`` order.
    """
    directory, config = open_cache(source)
    files = _cached_files(directory, image_ids)
    shape = (len(files), config.size, config.size, 1)
    out = np.lib.format.open_memmap(out_file, mode="w+", dtype=CACHE_DTYPE, shape=shape)
    for k, f in enumerate(files):
        out[k] = np.load(f, mmap_mode="r")
    out.flush()
    return out
