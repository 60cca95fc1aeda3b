"""The one preprocessing: a loaded radiograph in [0, 1] -> model input.

Training, evaluation, the CLI, the dashboard and Grad-CAM all call :func:`preprocess` with the
:class:`PreprocessConfig` stored in the model's metadata, so a model carries its own preprocessing.

Order of operations (each step is a small function below):
1. ``stretch_contrast``: optional robust percentile stretch, so DICOMs windowed by different
   vendors and 8-bit PNGs land on a comparable grey scale.
2. ``resize_square``: to ``size`` x ``size`` keeping the aspect ratio, either by centre-padding
   with black ("pad", the default: nothing of the image is lost) or by centre-cropping ("crop").
   Pillow's resampling is antialiased, which matters for 2,500 px -> 256 px.
3. A trailing channel axis: output shape ``(size, size, 1)``, float32 in [0, 1].

Anything else (intensity normalisation for the network) is a layer inside the model.

From a file to a model input: :func:`load_and_preprocess` (JPEG 2000 decoded at the config's size,
part of the preprocessing), :func:`try_load_and_preprocess` (a failure becomes a
:class:`LoadFailure`), :func:`load_and_preprocess_many` (decoding worker processes) and
:func:`model_input` (reuses a decode made for display when its resolution level is the model's);
the prepare cache, the CLI and the dashboard share them.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from radtriage import radiograph

PREPROCESS_VERSION = 1
ResizePolicy = Literal["pad", "crop"]
ContrastPolicy = Literal["none", "percentile"]


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the preprocessing, recorded in each model's metadata.

    Attributes:
        size: side of the square model input, in pixels.
        resize: "pad" keeps the whole image and pads the short side with 0 (black);
            "crop" centre-crops the long side.
        contrast: "percentile" stretches [p_low, p_high] percentiles to [0, 1]; "none" keeps
            the loader's windowing as it is.
        p_low: lower percentile for "percentile", in [0, 100).
        p_high: upper percentile for "percentile", in (p_low, 100].
    """

    size: int = 256
    resize: ResizePolicy = "pad"
    contrast: ContrastPolicy = "percentile"
    p_low: float = 0.5
    p_high: float = 99.5
    version: int = PREPROCESS_VERSION

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 2048:
            raise ValueError(f"size must be in [16, 2048], got {self.size}")
        if self.resize not in ("pad", "crop"):
            raise ValueError(f"resize must be 'pad' or 'crop', got {self.resize!r}")
        if self.contrast not in ("none", "percentile"):
            raise ValueError(f"contrast must be 'none' or 'percentile', got {self.contrast!r}")
        if not 0 <= self.p_low < self.p_high <= 100:
            raise ValueError("need 0 <= p_low < p_high <= 100")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing parameters {sorted(unknown)}")
        if d.get("version", PREPROCESS_VERSION) != PREPROCESS_VERSION:
            raise ValueError(
                f"model was made with preprocessing version {d['version']}, "
                f"this code implements version {PREPROCESS_VERSION}"
            )
        return cls(**d)


def stretch_contrast(image: np.ndarray, p_low: float = 0.5, p_high: float = 99.5) -> np.ndarray:
    """Linearly map the [p_low, p_high] percentiles of ``image`` to [0, 1], clipping outside.

    Args:
        image: 2-D float array in [0, 1].
        p_low: lower percentile.
        p_high: upper percentile.

    Returns:
        float32 2-D array in [0, 1]. A flat image (no contrast) is returned unchanged.
    """
    # Subsample large images for the percentiles: same answer to ~1e-3, 20x faster on 2,500^2.
    step = max(1, int(np.sqrt(image.size / 250_000)))
    lo, hi = np.percentile(image[::step, ::step], [p_low, p_high])
    if hi - lo < 1e-6:
        return image.astype(np.float32, copy=False)
    out = (image.astype(np.float32, copy=False) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def resize_square(image: np.ndarray, size: int, policy: ResizePolicy = "pad") -> np.ndarray:
    """Resize a 2-D image to ``size`` x ``size`` keeping its aspect ratio.

    Args:
        image: 2-D float array in [0, 1], any shape.
        size: output side in pixels.
        policy: "pad" (centre the scaled image on black) or "crop" (centre-crop to square first).

    Returns:
        float32 array (size, size) in [0, 1].
    """
    h, w = image.shape
    if policy == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = image[top : top + side, left : left + side]
        h, w = side, side
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    # np.array, not asarray: Pillow arrays are read-only and the clip below writes in place.
    resized = np.array(pil.resize((new_w, new_h), Image.Resampling.BILINEAR), dtype=np.float32)
    if (new_h, new_w) == (size, size):
        out = resized
    else:
        out = np.zeros((size, size), dtype=np.float32)
        top, left = (size - new_h) // 2, (size - new_w) // 2
        out[top : top + new_h, left : left + new_w] = resized
    return np.clip(out, 0.0, 1.0, out=out)


def preprocess(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Radiograph pixels -> model input.

    Args:
        image: 2-D float array in [0, 1] (as returned by ``radiograph.load``), any size.
        config: the model's preprocessing parameters.

    Returns:
        float32 array (size, size, 1) in [0, 1].
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    if config.contrast == "percentile":
        image = stretch_contrast(image, config.p_low, config.p_high)
    return resize_square(image, config.size, config.resize)[..., None]


def content_box(shape: tuple[int, int], config: PreprocessConfig) -> tuple[int, int, int, int]:
    """Where the original image lies inside the model input: (top, left, height, width).

    Lets Grad-CAM heatmaps be cut back to the image's own extent before overlaying them.
    """
    h, w = shape
    if config.resize == "crop":
        return 0, 0, config.size, config.size
    scale = config.size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    return (config.size - new_h) // 2, (config.size - new_w) // 2, new_h, new_w


def load_and_preprocess(source: str | Path | bytes, config: PreprocessConfig, *,
                        name: str | None = None) -> tuple[radiograph.Radiograph, np.ndarray]:
    """Load a file and make its model input: the one path from a file to a model's input.

    The loader decodes JPEG 2000 at the coarsest resolution level with at least ``config.size``
    pixels a side; that decode is part of the preprocessing, so training caches, the CLI, the
    dashboard and reference predictions all go through here.

    Args:
        source: path or bytes of a DICOM, PNG or JPEG file.
        config: the model's preprocessing parameters.
        name: display name for bytes input.

    Returns:
        The loaded :class:`radiograph.Radiograph` and its model input, float32 (size, size, 1) in [0, 1].

    Raises:
        radiograph.RadiographError: the file cannot be used (its message says why).
    """
    rg = radiograph.load(source, min_side=config.size, name=name)
    return rg, preprocess(rg.pixels, config)


def model_input(loaded: radiograph.Radiograph, config: PreprocessConfig, source: str | Path | bytes) -> np.ndarray:
    """The model input of a file already loaded for another purpose (e.g. display), decoding it again
    only when that load's resolution differs from the model's.

    Equal to ``load_and_preprocess(source, config)[1]``: a load whose decode level
    (:func:`radiograph.decode_level`) matches the one the model's size asks for is reused as is.

    Args:
        loaded: ``radiograph.load(source, min_side=...)`` of the same file.
        config: the model's preprocessing parameters.
        source: the file's path or bytes.

    Returns:
        float32 (size, size, 1) in [0, 1].
    """
    meta = loaded.metadata
    if radiograph.decode_level(meta, loaded.min_side) == radiograph.decode_level(meta, config.size):
        return preprocess(loaded.pixels, config)
    return load_and_preprocess(source, config, name=loaded.name)[1]


@dataclass(frozen=True)
class LoadFailure:
    """Why one file of :func:`load_and_preprocess_many` could not be used.

    Attributes:
        code: the loader's error code (``RadiographError.code``), or "unexpected".
        message: one plain sentence (no patient identifier).
    """

    code: str
    message: str


def try_load_and_preprocess(source: str | Path, config: PreprocessConfig) -> np.ndarray | LoadFailure:
    """:func:`load_and_preprocess` that never raises: the model input of one file, or why it cannot be used.

    Batch callers (the prepare cache, the CLI's worker processes) use it so one odd file never
    aborts a run.
    """
    try:
        return load_and_preprocess(source, config)[1]
    except radiograph.RadiographError as err:
        return LoadFailure(err.code, str(err))
    except Exception as err:  # noqa: BLE001 - one odd file must not abort a 15,000-image run
        return LoadFailure("unexpected", f"This file could not be processed ({type(err).__name__}).")


@dataclass(frozen=True)
class Loaded:
    """A file's model input and what the triage needs to know of it (nothing that identifies anyone).

    Attributes:
        x: float32 (size, size, 1) in [0, 1].
        body_part: the DICOM Body Part Examined, or None (PNG/JPEG, or absent).
        warnings: the loader's warnings (one sentence each).
    """

    x: np.ndarray
    body_part: str | None
    warnings: tuple[str, ...]


def try_load(source: str | Path | bytes, config: PreprocessConfig, name: str | None = None) -> Loaded | LoadFailure:
    """:func:`try_load_and_preprocess` that also keeps the body part and the loader's warnings
    (``name``: display name of bytes input)."""
    try:
        rg, x = load_and_preprocess(source, config, name=name)
    except radiograph.RadiographError as err:
        return LoadFailure(err.code, str(err))
    except Exception as err:  # noqa: BLE001 - one odd file must not abort a batch
        return LoadFailure("unexpected", f"This file could not be processed ({type(err).__name__}).")
    return Loaded(x, rg.metadata.body_part_examined, tuple(rg.warnings))


def load_and_preprocess_many(sources: Iterable[str | Path], config: PreprocessConfig, workers: int = 1,
                             in_flight: int = 8, loader: Any = None) -> Iterator[Any]:
    """:func:`load_and_preprocess` of many files, in order, decoded by ``workers`` processes.

    Decoding (pydicom, OpenJPEG, Pillow) holds Python's GIL, so threads do not overlap it:
    worker processes do. At most ``workers * in_flight`` results wait in memory.

    Args:
        sources: file paths.
        config: the model's preprocessing parameters.
        workers: decoding processes; <= 1 decodes in this process.
        in_flight: files queued per worker ahead of the consumer.

        loader: a picklable ``(source, config) -> result`` that never raises (default
            :func:`try_load_and_preprocess`; :func:`try_load` keeps the body part too).

    Yields:
        Per source, in order: its model input, float32 (size, size, 1) in [0, 1] (or what ``loader``
        returns), or a :class:`LoadFailure`.
    """
    loader = loader or try_load_and_preprocess
    if workers <= 1:
        for source in sources:
            yield loader(source, config)
        return
    pending: deque[tuple[str | Path, Future[np.ndarray | LoadFailure]]] = deque()
    pool = ProcessPoolExecutor(max_workers=workers)

    def first() -> np.ndarray | LoadFailure:
        # A decoder that kills its process (a native crash on a malformed file) breaks the whole pool:
        # the oldest file in flight is reported, the others go to a fresh pool.
        nonlocal pool
        source, future = pending.popleft()
        try:
            return future.result()
        except BrokenProcessPool:
            pool.shutdown(wait=True, cancel_futures=True)
            pool = ProcessPoolExecutor(max_workers=workers)
            for i, (other, _) in enumerate(pending):
                pending[i] = (other, pool.submit(loader, other, config))
            return LoadFailure("decoder_crash", "The image decoder crashed on this file: it is probably corrupt.")

    try:
        for source in sources:
            if len(pending) >= workers * in_flight:
                yield first()
            pending.append((source, pool.submit(loader, source, config)))
        while pending:
            yield first()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
