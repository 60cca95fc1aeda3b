"""The analysis of one study's radiographs: which model read each image, the verdicts, the overlay.

:func:`analyse_study` is the one seam between the PACS job and the models. Each image goes through the
anatomy gate (:class:`radtriage.triage.Triage`, as in the CLI and the dashboard): the gate picks its
model from the pixels (DICOM Body Part Examined is only a hint), and an image of no model's anatomy,
not a radiograph, or out of its model's distribution is refused with one sentence and left out of the
findings. The verdicts then follow the task registry's unit: one per image for the chest model, one
per study for the upper-limb model (the mean of the study's shown images,
:func:`radtriage.contract.study_mean`), and the Grad-CAM overlay of the top flagged finding.

Models must draw Grad-CAM for the overlay: the verified LiteRT export with its Grad-CAM graph when the
model has one (no TensorFlow), else Keras (:func:`radtriage.serving.load_predictor` with ``explain``);
one loaded model serves probabilities and heatmaps. They are loaded once per process (:func:`predictor`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radtriage import contract, locations, radiograph, tasks, triage
from radtriage.artifact import ArtifactError
from radtriage.predictor import Prediction

OVERLAY_MAX_SIDE = 1024  # pixels: the overlay is for viewing; a 3000-px RGB copy would weigh 27 MB


# How one image was read: the triage's result (status "ok", "refused" or "error", its sentence, the
# gate's verdict, the prediction and the model input for Grad-CAM).
ImageRead = triage.ImageResult


@dataclass(frozen=True)
class Verdict:
    """One verdict: an image's (chest) or a study's (upper limb, mean of its images).

    Attributes:
        task: the task name.
        images: indexes (into the study's instances) of the images it covers.
        prediction: probabilities, flags and thresholds per class.
    """

    task: str
    images: tuple[int, ...]
    prediction: Prediction

    @property
    def unit(self) -> str:
        """"image" or "study", as the task registry says."""
        return tasks.get(self.task).unit


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a verdict: what the findings SR records and the idempotence check compares."""

    task: str
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class Overlay:
    """The Grad-CAM overlay of one class on one image: (H, W, 3) uint8 RGB over its pixels."""

    image: int
    class_name: str
    probability: float
    rgb: np.ndarray


@dataclass(frozen=True)
class StudyAnalysis:
    """Everything written back for one study.

    Attributes:
        reads: one per instance given, in order.
        verdicts: chest images one each; the upper-limb images of the study together.
        models: the models behind the verdicts.
        overlay: the overlay of the top flagged finding, or None.
        overlay_note: one sentence: what the overlay shows, or why there is none.
    """

    reads: tuple[ImageRead, ...]
    verdicts: tuple[Verdict, ...]
    models: tuple[ModelIdentity, ...]
    overlay: Overlay | None
    overlay_note: str


# ------------------------------------------------------------------------------------ models


def _folder(task: str) -> Path:
    return locations.model_dir() / tasks.get(task).model_folder


@functools.lru_cache(maxsize=2)
def _triage_at(model_root: str) -> triage.Triage:
    # keyed by the model root: the Triage reads locations.model_dir() when made, so a new root is a new one
    return triage.Triage(explain=True)


def gate() -> triage.Triage:
    """The triage (anatomy gate + models that draw Grad-CAM) of the models under :func:`locations.model_dir`, made once."""
    return _triage_at(str(locations.model_dir()))


def predictor(task: str) -> Any:
    """The predictor of ``task``'s model (:meth:`radtriage.triage.Triage.predictor`), loaded once.

    Raises:
        ArtifactError: the model cannot be used (one sentence).
    """
    return gate().predictor(task)


def identity(task: str) -> ModelIdentity:
    """The identity of ``task``'s model (loads it)."""
    meta = predictor(task).metadata
    version = f"radtriage {meta.code_version.get('package', '?')}, trained {meta.created or 'unknown'}"
    return ModelIdentity(task, meta.name, version, meta.model_sha256)


def current_identities() -> dict[str, str]:
    """Task -> SHA-256 of the model this installation would use, read from metadata.json only."""
    from radtriage.artifact import read_metadata

    found = {}
    for task in tasks.TASKS.values():
        try:
            found[task.name] = read_metadata(_folder(task.name)).model_sha256
        except (ArtifactError, OSError):
            continue  # a missing model reads nothing; its images get an error row
    return found


# ------------------------------------------------------------------------------------- reading


def _read_images(sources: Sequence[tuple[str, bytes]]) -> list[ImageRead]:
    """Each image through the anatomy gate and the model it picks, in order (refusals included)."""
    return gate().read(sources)


def anatomy_line(read: ImageRead) -> str:
    """What the anatomy check made of one image, in one or two sentences (for the SR and the page).

    E.g. "anatomy check: a chest radiograph (gate probability 0.99); read by the chest model." or
    "anatomy check: refused: This does not look like a radiograph (...)". A note that DICOM Body Part
    Examined disagrees with the pixels follows when there is one.
    """
    if read.status == triage.ERROR:
        return f"not read: {read.message}"
    if read.status == triage.REFUSED:
        line = f"anatomy check: refused: {read.message}"
    elif read.anatomy is None:
        line = f"anatomy check: not made. {triage.NO_GATE}"
    else:
        model = tasks.get(read.task).model_phrase if read.task else "no model"
        line = (f"anatomy check: {read.anatomy.phrase} (gate probability {read.anatomy.probability:.2f}); "
                f"read by {model}.")
    conflicts = [w for w in read.warnings if w.startswith("The DICOM tag Body Part Examined")]
    return " ".join([line, *conflicts])


def _verdicts(reads: Sequence[ImageRead]) -> list[Verdict]:
    """Per-image verdicts for image-unit tasks; one study verdict per study-unit task."""
    verdicts: list[Verdict] = []
    by_task: dict[str, list[int]] = {}
    for i, r in enumerate(reads):
        if r.prediction is None or r.task is None:
            continue
        if tasks.get(r.task).unit == "image":
            verdicts.append(Verdict(r.task, (i,), r.prediction))
        else:
            by_task.setdefault(r.task, []).append(i)
    for task, rows in by_task.items():
        probs = np.stack([reads[i].prediction.vector() for i in rows])  # type: ignore[union-attr]
        verdicts.append(Verdict(task, tuple(rows), predictor(task).to_prediction(contract.study_mean(probs))))
    return verdicts


# ------------------------------------------------------------------------------------- overlay


def _overlay_target(reads: Sequence[ImageRead]) -> tuple[int, str, float] | None:
    """(image, class, probability) to explain: of each read image, the class its heatmap explains by the
    contract's rule (:func:`radtriage.contract.heatmap_class`: its most probable flagged class), and of
    those the most probable; None when no image has a flag (a heatmap explains a flag, nothing else)."""
    best: tuple[int, str, float] | None = None
    for i, read in enumerate(reads):
        if read.prediction is None or read.task is None:
            continue
        model = predictor(read.task)
        k = contract.heatmap_class(model.classes, read.prediction.vector(), model.thresholds, model.flaggable)
        if k is not None and (best is None or read.prediction.vector()[k] > best[2]):
            best = (i, model.classes[k], float(read.prediction.vector()[k]))
    return best


def _overlay_rgb(data: bytes, task: str, model_input: np.ndarray, class_name: str) -> np.ndarray | None:
    """Grad-CAM of ``class_name`` blended over the image's pixels, or None when the heatmap is degenerate."""
    from radtriage.heatmap import heatmap_for_original, overlay

    model = predictor(task)
    explanation = model.predict_and_explain(model_input, class_name)
    if explanation.degenerate or contract.heatmap_is_degenerate(explanation.heatmap):
        return None
    pixels = radiograph.load(data).pixels
    scale = OVERLAY_MAX_SIDE / max(pixels.shape)
    if scale < 1:  # shrink before blending: the heatmap is coarse anyway
        from PIL import Image

        size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
        pixels = np.asarray(Image.fromarray(pixels, mode="F").resize(size, Image.Resampling.BILINEAR), np.float32)
    heat = heatmap_for_original(explanation.heatmap, pixels.shape, model.preprocess_config)
    return overlay(np.clip(pixels, 0, 1), heat)


def _overlay(sources: Sequence[tuple[str, bytes]], reads: Sequence[ImageRead],
             verdicts: Sequence[Verdict]) -> tuple[Overlay | None, str]:
    target = _overlay_target(reads)
    if target is None:
        flagged = any(v.prediction.flagged for v in verdicts)
        return None, ("No overlay: the study is flagged but no single image is." if flagged
                      else "No overlay: no finding is flagged.")
    image, cls, p = target
    read = reads[image]
    rgb = _overlay_rgb(sources[image][1], read.task or "", read.model_input, cls)  # type: ignore[arg-type]
    if rgb is None:
        return None, f"No overlay: the Grad-CAM heatmap of {cls} on {read.name} is flat (it localises nothing)."
    return Overlay(image, cls, p, rgb), f"The overlay shows the Grad-CAM heatmap of {cls} on {read.name}."


def analyse_study(sources: Sequence[tuple[str, bytes]]) -> StudyAnalysis:
    """Read a study's radiographs and make its verdicts and overlay.

    Args:
        sources: (display name, DICOM file bytes) of each image instance of the study.

    Returns:
        :class:`StudyAnalysis`; an image the anatomy gate refuses (status "refused") or that could not be
        loaded ("error") has its sentence, is in no verdict, and the others are still read.
    """
    reads = _read_images(sources)
    verdicts = _verdicts(reads)
    models = tuple(identity(t) for t in dict.fromkeys(v.task for v in verdicts))
    overlay, note = _overlay(sources, reads, verdicts) if verdicts else (None, "No overlay: no image was read.")
    return StudyAnalysis(tuple(reads), tuple(verdicts), models, overlay, note)

