"""Model artifact: a directory with ``model.h5`` (Keras HDF5) and ``metadata.json`` beside it.

The metadata makes the model self-describing: the CLI and the dashboard need nothing else to
preprocess, predict, calibrate, flag and explain. ``metadata.json`` schema (version 1)::

    schema_version  1
    name            str               e.g. "chest-small_cnn-256"
    task            a task of radtriage.tasks ("chest" | "mura")
    classes         [str]             output order; a subset, in order, of the task's classes
    output          "sigmoid"         independent per-class probabilities
    preprocess      {..}              PreprocessConfig.to_dict(): size (= model input side), resize, contrast...
    gradcam_layer   str               4-D feature layer for Grad-CAM (pre-sigmoid layer: "logits")
    thresholds      {class: float}    flag when calibrated probability >= threshold, in [0, 1]; default 0.5
    flaggable       {class: bool}     False: the class is never flagged (no real labels, or a validation
                                      AUROC interval that includes 0.5); default True
    temperature     float | {class: float}  > 0; calibrated p = sigmoid(logit / T); 1.0 = uncalibrated
    metrics         {..}              held-out metrics, filled by evaluation.evaluate(); must state their split:
                                      either one result {"split": "...", ...} or several {name: {"split": ...}}
    provenance      {class: str}      labels.PROVENANCE_REAL | PROVENANCE_SYNTHETIC | PROVENANCE_NONE
    training_data   {..}              free-form summary (sources, image counts, positives per class)
    train_config    {..} | null       the recipe's training settings: TrainConfig.to_dict() for the Keras
                                      recipes; architecture, preprocess, c, frontend for the front-end one
    code_version    {"package": str, "git_commit": str | null, "git_dirty": bool | null}
    created         str               ISO 8601 UTC
    model_sha256    str               hex SHA-256 of model.h5
    serving         {..}              optional verified exports, e.g. {"litert": {file, sha256, from_model_sha256,
                                      max_abs_diff_vs_keras, ...}} written by serving.export_litert
    ood             {..}              optional out-of-distribution score (radtriage.ood): {file, sha256, method,
                                      threshold, rate, fitted_on, threshold_set_on, refused: {data: "k of n"}}

:func:`load_artifact` refuses (:class:`ArtifactError`, one clear sentence) a directory whose
metadata is missing or invalid, whose model.h5 does not match ``model_sha256``, or whose model
disagrees with the metadata (output count vs classes, input size vs preprocess size, Grad-CAM layer).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import radtriage
from radtriage import labels, tasks
from radtriage.contract import GRADCAM_LAYER
from radtriage.ood import OodModel
from radtriage.preprocess import PreprocessConfig

if TYPE_CHECKING:  # Keras is imported only to load a model: metadata readers (LiteRT serving) stay light
    import keras

SCHEMA_VERSION = 1
MODEL_FILE = "model.h5"
METADATA_FILE = "metadata.json"
PROVENANCES = (labels.PROVENANCE_REAL, labels.PROVENANCE_SYNTHETIC, labels.PROVENANCE_NONE)
DEFAULT_THRESHOLD = 0.5
# modules whose custom Keras layers must be registered before an .h5 using them can be loaded
LAYER_MODULES = ("radtriage.frontends",)


class ArtifactError(ValueError):
    """A model directory that cannot be used: missing, tampered with, or inconsistent."""


def _per_class(value: Any, classes: Sequence[str], what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or set(value) != set(classes):
        raise ArtifactError(f"metadata {what} must give a value for exactly the classes {list(classes)}.")
    return {c: value[c] for c in classes}


@dataclass
class ModelMetadata:
    """The contents of ``metadata.json`` (see the module docstring for the schema).

    Per-class fields default to: threshold 0.5, provenance "none". Build it with
    :meth:`for_task` and save it with :func:`save_artifact`, which fills ``model_sha256``,
    ``code_version`` and ``created``.
    """

    name: str
    task: str
    classes: list[str]
    preprocess: PreprocessConfig
    gradcam_layer: str = GRADCAM_LAYER
    output: str = "sigmoid"
    thresholds: dict[str, float] = field(default_factory=dict)
    flaggable: dict[str, bool] = field(default_factory=dict)
    temperature: float | dict[str, float] = 1.0
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] | None = None
    code_version: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    model_sha256: str = ""
    serving: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.classes = list(self.classes)
        if not self.thresholds:
            self.thresholds = {c: DEFAULT_THRESHOLD for c in self.classes}
        if not self.flaggable:
            self.flaggable = {c: True for c in self.classes}
        if not self.provenance:
            self.provenance = {c: labels.PROVENANCE_NONE for c in self.classes}
        self.validate()

    @classmethod
    def for_task(cls, name: str, task: str, preprocess: PreprocessConfig, classes: Sequence[str] | None = None,
                 **kwargs: Any) -> ModelMetadata:
        """Metadata of a ``task`` model (:mod:`radtriage.tasks`); ``classes`` default to the task's."""
        if task not in tasks.TASKS:
            raise ArtifactError(f"task must be one of {sorted(tasks.TASKS)}, got {task!r}.")
        classes = list(tasks.get(task).classes if classes is None else classes)
        return cls(name=name, task=task, classes=classes, preprocess=preprocess, **kwargs)

    def validate(self) -> None:
        """Raise :class:`ArtifactError` when a field is out of its documented range."""
        if self.schema_version != SCHEMA_VERSION:
            raise ArtifactError(f"metadata schema version {self.schema_version} is not {SCHEMA_VERSION}.")
        if self.task not in tasks.TASKS:
            raise ArtifactError(f"metadata task must be one of {sorted(tasks.TASKS)}, got {self.task!r}.")
        known = tasks.get(self.task).outputs
        if not self.classes or any(c not in known for c in self.classes) or \
                sorted(self.classes, key=known.index) != self.classes or len(set(self.classes)) != len(self.classes):
            raise ArtifactError(f"metadata classes must be distinct {self.task} classes in labels.py order.")
        if self.output != "sigmoid":
            raise ArtifactError(f"metadata output must be 'sigmoid', got {self.output!r}.")
        if not isinstance(self.preprocess, PreprocessConfig):
            raise ArtifactError("metadata preprocess must be a PreprocessConfig.")
        self.thresholds = {c: float(v) for c, v in _per_class(self.thresholds, self.classes, "thresholds").items()}
        if not all(0.0 <= v <= 1.0 for v in self.thresholds.values()):
            raise ArtifactError("metadata thresholds must lie in [0, 1].")
        self.flaggable = _per_class(self.flaggable, self.classes, "flaggable")
        if not all(isinstance(v, bool) for v in self.flaggable.values()):
            raise ArtifactError("metadata flaggable values must be true or false.")
        temps = self.temperatures()
        if not all(t > 0 and t < float("inf") for t in temps):
            raise ArtifactError("metadata temperatures must be positive and finite.")
        if not isinstance(self.metrics, Mapping):
            raise ArtifactError("metadata metrics must be a JSON object.")
        results = [self.metrics] if "split" in self.metrics else list(self.metrics.values())
        if not all(isinstance(r, Mapping) and isinstance(r.get("split"), str) and r["split"] for r in results):
            raise ArtifactError('metadata metrics must state the split they were measured on ("split").')
        self.provenance = _per_class(self.provenance, self.classes, "provenance")
        if any(p not in PROVENANCES for p in self.provenance.values()):
            raise ArtifactError(f"metadata provenance values must be among {list(PROVENANCES)}.")
        if not isinstance(self.serving, Mapping):
            raise ArtifactError("metadata serving must be a JSON object.")
        if not isinstance(self.ood, Mapping) or (self.ood and not {"file", "sha256"} <= set(self.ood)):
            raise ArtifactError("metadata ood must be a JSON object naming its file and SHA-256.")

    def temperatures(self) -> list[float]:
        """Temperature per class, in class order."""
        if isinstance(self.temperature, Mapping):
            return [float(v) for v in _per_class(self.temperature, self.classes, "temperature").values()]
        try:
            return [float(self.temperature)] * len(self.classes)
        except (TypeError, ValueError):
            raise ArtifactError("metadata temperature must be a number or a {class: number} mapping.") from None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelMetadata:
        """Parse and validate; any problem becomes an :class:`ArtifactError`."""
        if not isinstance(d, Mapping):
            raise ArtifactError("metadata must be a JSON object.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = set(d) - known, {"name", "task", "classes", "preprocess"} - set(d)
        if unknown or missing:
            raise ArtifactError(f"metadata has unknown fields {sorted(unknown)} or lacks {sorted(missing)}.")
        d = dict(d)
        try:
            d["preprocess"] = PreprocessConfig.from_dict(d["preprocess"])
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"metadata preprocess is invalid: {e}.") from None
        return cls(**d)


@dataclass
class Artifact:
    """A loaded, verified model directory."""

    model: keras.Model
    metadata: ModelMetadata
    directory: Path


def label_summary(y: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per-class counts of positive, negative and missing labels, for ``training_data``.

    Args:
        y: (N, C) in {0, 1, NaN}.
        classes: the C class names.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != len(classes):
        raise ValueError(f"labels must be (N, {len(classes)}), got {y.shape}")
    return {
        c: {"positive": int((y[:, i] == 1).sum()), "negative": int((y[:, i] == 0).sum()),
            "missing": int(np.isnan(y[:, i]).sum())}
        for i, c in enumerate(classes)
    }


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def code_version() -> dict[str, Any]:
    """Package version and, when the code runs from a git checkout, its commit and dirty flag."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"package": radtriage.__version__, "git_commit": commit, "git_dirty": None if status is None else bool(status)}


def check_model(model: keras.Model, metadata: ModelMetadata) -> None:
    """Raise :class:`ArtifactError` when the model's shapes or layers disagree with the metadata."""
    n_out = int(model.output_shape[-1])
    if n_out != len(metadata.classes):
        raise ArtifactError(f"the model has {n_out} outputs but the metadata lists {len(metadata.classes)} classes.")
    size = metadata.preprocess.size
    if tuple(model.input_shape[1:]) != (size, size, 1):
        raise ArtifactError(f"the model takes {tuple(model.input_shape[1:])} inputs but preprocessing makes ({size}, {size}, 1).")
    try:
        model.get_layer(metadata.gradcam_layer)
    except ValueError:
        raise ArtifactError(f"the model has no Grad-CAM layer {metadata.gradcam_layer!r}.") from None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False))
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def save_artifact(model: keras.Model, directory: str | Path, metadata: ModelMetadata) -> ModelMetadata:
    """Write ``model.h5`` and ``metadata.json`` into ``directory`` (created if needed).

    Fills ``model_sha256``, ``code_version`` and ``created`` (if empty) in ``metadata``, and clears
    ``serving`` (an export belongs to the model file it was made from).

    Returns:
        The metadata as written.
    """
    check_model(model, metadata)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / MODEL_FILE)
    metadata = dataclasses.replace(
        metadata,
        model_sha256=sha256_file(directory / MODEL_FILE),
        serving={},  # exports of an earlier model.h5 no longer apply; serving.export_litert records new ones
        code_version=code_version(),
        created=metadata.created or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    _write_json(directory / METADATA_FILE, metadata.to_dict())
    return metadata


def read_metadata(directory: str | Path) -> ModelMetadata:
    """Parse and validate ``directory/metadata.json`` without loading the model."""
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: not a model directory.")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}).") from None
    try:
        return ModelMetadata.from_dict(data)
    except TypeError as e:
        raise ArtifactError(f"metadata has a field of the wrong type ({e}).") from None


def verify_checksum(directory: str | Path, metadata: ModelMetadata) -> Path:
    """Path of ``model.h5`` after checking it matches ``metadata.model_sha256``."""
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} is missing.")
    if sha256_file(path) != metadata.model_sha256:
        raise ArtifactError(f"{path} does not match the SHA-256 recorded in its metadata: modified or corrupted.")
    return path


def read_ood(directory: str | Path, metadata: ModelMetadata) -> OodModel | None:
    """The model's out-of-distribution statistics (:mod:`radtriage.ood`), verified, or None when it has none.

    Raises:
        ArtifactError: the file is missing, does not match its recorded SHA-256, or is unreadable.
    """
    if not metadata.ood:
        return None
    path = Path(directory) / metadata.ood["file"]
    if not path.is_file():
        raise ArtifactError(f"{path} is missing.")
    if sha256_file(path) != metadata.ood["sha256"]:
        raise ArtifactError(f"{path} does not match the SHA-256 recorded in its metadata: modified or corrupted.")
    try:
        return OodModel.load(path)
    except ValueError as e:
        raise ArtifactError(str(e)) from None


def update_metadata(directory: str | Path, **changes: Any) -> ModelMetadata:
    """Change fields of a saved artifact's metadata (e.g. thresholds, temperature, metrics, provenance).

    The model file is verified first and never rewritten; ``model_sha256`` cannot be changed here.
    """
    if "model_sha256" in changes:
        raise ArtifactError("model_sha256 is set only by save_artifact.")
    metadata = read_metadata(directory)
    verify_checksum(directory, metadata)
    try:
        metadata = dataclasses.replace(metadata, **changes)
    except TypeError as e:
        raise ArtifactError(f"cannot update metadata: {e}.") from None
    _write_json(Path(directory) / METADATA_FILE, metadata.to_dict())
    return metadata


def load_artifact(directory: str | Path, custom_objects: dict[str, Any] | None = None) -> Artifact:
    """Load and verify a model directory.

    Args:
        directory: holds ``model.h5`` and ``metadata.json``.
        custom_objects: extra Keras objects the model needs (the project's are registered).

    Returns:
        :class:`Artifact` with the uncompiled model (compile=False: no custom loss needed).

    Raises:
        ArtifactError: missing/invalid metadata, checksum mismatch, unloadable model, or a model
            that disagrees with its metadata.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory.")
    metadata = read_metadata(directory)
    path = verify_checksum(directory, metadata)
    import keras

    for module in LAYER_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    try:
        model = keras.models.load_model(path, compile=False, custom_objects=custom_objects)
    except Exception as e:  # h5py/Keras raise many types for a bad file
        raise ArtifactError(f"{path} could not be loaded as a Keras model ({type(e).__name__}: {e}).") from None
    check_model(model, metadata)
    return Artifact(model=model, metadata=metadata, directory=directory)
