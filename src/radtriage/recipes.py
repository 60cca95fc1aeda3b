"""End-to-end training recipes: data -> prepare cache -> train -> evaluate -> artifact + model card.

One config object drives a whole run, so a notebook, the CLI (``radtriage train --config run.json``)
and a benchmark do exactly the same thing:

- :func:`train_chest` with a :class:`ChestRunConfig` (VinBigData layout, NIH sample, phantoms, merged).
- :func:`train_mura` with a :class:`MuraRunConfig` (MURA-v1.1 layout; its ``valid`` split is the
  held-out test set, a patient-level split of ``train`` gives the validation set).
- :func:`evaluate_model`: an existing model directory on a dataset (the CLI's ``evaluate``).

Steps of a training run (each a small function below):

1. Build the image table(s) from :class:`DataSource` entries; each image is tagged ``synthetic``
   (phantom) or real. Phantom DICOMs written by :mod:`radtriage.phantoms` are recognised from their
   Manufacturer tag even when the source is not declared synthetic.
2. Split by patient (:func:`radtriage.datasets.split_by_patient`): chest train/validation/test;
   MURA train/validation from MURA's train, test = MURA's valid.
3. :func:`radtriage.prepare.prepare` every image once (parallel, resumable, progress bar); images
   that fail to load are left out and counted.
4. :func:`radtriage.training.train` (model selection on validation macro AUROC).
5. Temperature per class fitted on the validation LOGITS; thresholds chosen on the calibrated
   validation probabilities with the stated rule (MURA: on validation STUDY probabilities).
6. Held-out evaluation with bootstrap CIs (test split; validation metrics too, marked optimistic),
   ROC and reliability plots; MURA at study level (mean of image probabilities): accuracy, AUROC,
   Cohen's kappa overall and per study type.
7. The artifact (``model.h5`` + ``metadata.json``), ``MODEL_CARD.md`` and
   ``reference_predictions.json``: the saved model's outputs on every bundled example of
   ``app_images/`` through the public load -> preprocess -> :class:`~radtriage.inference.Predictor`
   path, which :func:`check_reference_predictions` re-computes to catch preprocessing drift.

Provenance per class (``metadata.provenance``): "real labels" when the TRAINING split holds real
(non-phantom) images with a positive label for the class, "synthetic only" when only phantom
images are positive for it, "none" when no training image is positive for it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from radtriage import evaluation, labels, radiograph
from radtriage.datasets.base import Dataset, DatasetError, split_by_patient
from radtriage.model_card import CARD_FILE
from radtriage.prepare import CacheIndex, load_cached, prepare, stack_cached
from radtriage.training import TrainConfig

log = logging.getLogger(__name__)

SourceKind = Literal["vinbigdata", "nih", "phantom_chest", "mura"]
SOURCE_KINDS: tuple[str, ...] = ("vinbigdata", "nih", "phantom_chest", "mura")
CHEST_KINDS: tuple[str, ...] = ("vinbigdata", "nih", "phantom_chest")
PHANTOM_MANUFACTURER = "radtriage phantom generator"  # written by radtriage.phantoms.write_dicom
REFERENCE_FILE = "reference_predictions.json"
MANIFEST_FILE = "manifest.json"
PHANTOM_MURA_STATEMENT = (
    "No real normal/abnormal upper-limb radiographs were available: this model was trained, validated and "
    "tested on synthetic limb phantoms only (radtriage.phantoms, written in the MURA-v1.1 layout), so its "
    "performance on real radiographs is unknown and its outputs are demonstrations, not findings. "
    "The way to a real model is retraining on MURA-v1.1 with notebooks/train_mura.ipynb."
)
PHANTOM_MURA_VALID_FRACTION = 0.2  # patients of rendered MURA-layout phantoms that go to "valid"
IN_MEMORY_LIMIT_BYTES = 2_000_000_000  # larger splits are stacked into a float16 memmap instead
PREDICT_BATCH = 64
DEFAULT_ATOL = 1e-4
SYNTHETIC_COLUMN = "synthetic"


# ------------------------------------------------------------------------------------ configs


@dataclass
class DataSource:
    """One dataset in its real layout (or phantoms).

    Attributes:
        kind: "vinbigdata" (folder with train.csv[.gz] and train/*.dicom), "nih" (labels.csv +
            images/), "phantom_chest" (renders ``n`` phantom PNGs into ``path``) or "mura" (folder
            holding or being ``MURA-v1.1``).
        path: the dataset's root folder.
        synthetic: the images are phantoms written in the real layout (e.g. by
            ``radtriage.phantoms.write_vinbigdata``); their labels count as synthetic.
        policy: VinBigData reader-vote policy: "any", "majority" or "soft".
        name: source name in merged tables (default: ``kind``); must be unique within a run.
        n: phantom_chest: number of images. mura: 0 reads the folder as it is; > 0 renders that
            many limb phantom STUDIES into ``path`` in the MURA-v1.1 layout first (unless already
            there; ``PHANTOM_MURA_VALID_FRACTION`` of the patients go to ``valid``), which makes the
            source synthetic.
        size: phantoms only: image side (chest) or height (limb) in pixels (>= 64).
        seed: phantoms only: generator seed.
        prevalence: phantoms only: per-class probability of a finding (chest), or of an abnormal
            study (limb).
    """

    kind: str
    path: str
    synthetic: bool = False
    policy: str = "majority"
    name: str = ""
    n: int = 0
    size: int = 256
    seed: int = 0
    prevalence: float = 0.15

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown data source kind {self.kind!r}; use one of {', '.join(SOURCE_KINDS)}")
        if self.kind == "phantom_chest":
            self.synthetic = True
            if self.n < 1:
                raise ValueError("a phantom_chest source needs n >= 1 images")
        if self.kind == "mura" and self.n > 0:
            self.synthetic = True  # rendered limb phantoms

    @property
    def label(self) -> str:
        return self.name or self.kind

    def describe(self, synthetic: bool | None = None) -> str:
        """One line for metadata and the model card (``synthetic`` overrides the declared flag)."""
        what = "synthetic phantoms" if (self.synthetic if synthetic is None else synthetic) else "real images"
        extra = f", label policy {self.policy}" if self.kind == "vinbigdata" else ""
        return f"{self.label}: {self.kind} layout at {self.path} ({what}{extra})"


@dataclass
class SplitConfig:
    """Patient-level split fractions (train, validation[, test]) and the split seed."""

    fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        self.fractions = tuple(float(f) for f in self.fractions)
        if len(self.fractions) not in (2, 3):
            raise ValueError("split fractions are (train, validation) or (train, validation, test)")


def _train_config(task: str, output_dir: str) -> TrainConfig:
    return TrainConfig(task=task, output_dir=output_dir)


class _JsonConfig:
    """JSON round trip shared by the run configurations."""

    def to_dict(self) -> dict[str, Any]:
        return _config_to_dict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        return _config_from_dict(cls, d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Any:
        return cls.from_dict(json.loads(text))


@dataclass
class RunCommon(_JsonConfig):
    """Settings every training recipe shares (its own fields follow in each run config).

    Attributes:
        cache_dir: the prepare cache.
        threshold_rule: "youden", "sensitivity" or "f1" (see :mod:`radtriage.evaluation`).
        target_sensitivity: for the "sensitivity" rule.
        n_boot: bootstrap resamples for the 95 % intervals.
        workers: processes for the prepare cache and phantom rendering.
        progress: progress bars.
        examples_dir: bundled examples for the reference predictions ("" to skip).
    """

    cache_dir: str = "runs/cache"
    threshold_rule: str = "youden"
    target_sensitivity: float = 0.9
    n_boot: int = 1000
    workers: int = 2
    progress: bool = True
    examples_dir: str = "app_images"


@dataclass
class ChestRunConfig(RunCommon):
    """A chest training run (14 VinBigData findings).

    Attributes:
        sources: one or more :class:`DataSource` of chest kinds, merged on ``CHEST_CLASSES``
            (classes a source does not label are missing, not negative).
        model_dir: where the artifact, model card, plots and reference predictions go.
        cache_dir: root of the preprocessed-image cache (shared between runs).
        train: the :class:`TrainConfig`; its ``preprocess`` decides the cache and model input.
        split: patient-level split; with 2 fractions there is no test split and the card
            reports validation metrics only.
        threshold_rule: "youden", "sensitivity" or "f1" (see :func:`evaluation.choose_thresholds`).
        target_sensitivity: for rule "sensitivity", in (0, 1].
        n_boot: bootstrap resamples for confidence intervals (0: none).
        workers: processes for ``prepare``.
        progress: progress bars.
        examples_dir: the bundled examples (``app_images``) for reference predictions; "" skips them.
        name: artifact name (default ``chest-<architecture>-<size>``).
    """

    sources: list[DataSource] = field(default_factory=lambda: [DataSource("vinbigdata", "data/vinbigdata")])
    model_dir: str = "model/chest"
    train: TrainConfig = field(default_factory=lambda: _train_config("chest", "runs/chest"))
    split: SplitConfig = field(default_factory=SplitConfig)
    name: str = ""
    task: str = "chest"

    def __post_init__(self) -> None:
        if self.task != "chest":
            raise ValueError(f"a ChestRunConfig has task 'chest', got {self.task!r}")
        if self.train.task != "chest":
            raise ValueError("the training config of a chest run must have task 'chest'")
        if not self.sources or any(s.kind not in CHEST_KINDS for s in self.sources):
            raise ValueError(f"a chest run needs sources of kinds {', '.join(CHEST_KINDS)}")
        if len({s.label for s in self.sources}) != len(self.sources):
            raise ValueError("give every source of a run a unique name")
        evaluation.threshold_rule_text(self.threshold_rule, self.target_sensitivity)  # validates


@dataclass
class MuraRunConfig(RunCommon):
    """A MURA (upper-limb normal/abnormal) training run.

    Attributes:
        source: a "mura" :class:`DataSource` (its ``train`` split is trained on, its ``valid``
            split is the held-out test set).
        study_types: MURA study types to use (default all seven).
        val_fraction: share of the train split's PATIENTS held out for validation.
        split_seed: seed of that split.
        (other attributes as in :class:`ChestRunConfig`; thresholds are chosen on validation
        study-level probabilities.)
    """

    source: DataSource = field(default_factory=lambda: DataSource("mura", "data"))
    study_types: tuple[str, ...] = labels.MURA_STUDY_TYPES
    val_fraction: float = 0.1
    split_seed: int = 0
    model_dir: str = "model/mura"
    train: TrainConfig = field(default_factory=lambda: _train_config("mura", "runs/mura"))
    name: str = ""
    task: str = "mura"

    def __post_init__(self) -> None:
        self.study_types = tuple(self.study_types)
        if self.task != "mura":
            raise ValueError(f"a MuraRunConfig has task 'mura', got {self.task!r}")
        if self.train.task != "mura":
            raise ValueError("the training config of a MURA run must have task 'mura'")
        if self.source.kind != "mura":
            raise ValueError("a MURA run needs a source of kind 'mura'")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        evaluation.threshold_rule_text(self.threshold_rule, self.target_sensitivity)


RunConfig = ChestRunConfig | MuraRunConfig


def _config_to_dict(run: RunConfig) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for f in dataclasses.fields(run):
        value = getattr(run, f.name)
        if isinstance(value, TrainConfig):
            d[f.name] = value.to_dict()
        elif dataclasses.is_dataclass(value):
            d[f.name] = dataclasses.asdict(value)
        elif isinstance(value, list):
            d[f.name] = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
        elif isinstance(value, tuple):
            d[f.name] = list(value)
        else:
            d[f.name] = value
    return d


def _config_from_dict(cls: type, d: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} parameters {sorted(unknown)}")
    d = dict(d)
    if "train" in d:
        d["train"] = TrainConfig.from_dict(d["train"])
    if "sources" in d:
        d["sources"] = [DataSource(**s) for s in d["sources"]]
    if "source" in d:
        d["source"] = DataSource(**d["source"])
    if "split" in d:
        d["split"] = SplitConfig(**d["split"])
    return cls(**d)


def run_config_from_dict(d: dict[str, Any]) -> RunConfig:
    """A Chest- or MuraRunConfig, chosen by the ``task`` key ("chest" or "mura")."""
    task = d.get("task")
    if task == "chest":
        return ChestRunConfig.from_dict(d)
    if task == "mura":
        return MuraRunConfig.from_dict(d)
    if task == "chest_frontend":
        from radtriage.frontend_recipe import FrontEndChestRunConfig

        return FrontEndChestRunConfig.from_dict(d)
    raise ValueError(f"a run config needs \"task\": \"chest\", \"chest_frontend\" or \"mura\", got {task!r}")


def load_run_config(path: str | Path) -> RunConfig:
    """Read a run config JSON file (as written by ``to_json`` or ``radtriage train --print-config``)."""
    return run_config_from_dict(json.loads(Path(path).read_text()))


# ------------------------------------------------------------------------------------ data


def load_source(source: DataSource, study_split: str = "train",
                study_types: Sequence[str] = labels.MURA_STUDY_TYPES) -> Dataset:
    """The :class:`~radtriage.datasets.Dataset` of one source (MURA: its ``study_split``).

    Raises:
        DatasetError: the folder does not hold the expected layout.
    """
    if source.kind == "vinbigdata":
        from radtriage.datasets import VinBigDataset

        ds: Dataset = VinBigDataset(source.path, policy=source.policy)  # type: ignore[arg-type]
        if ds.table["path"].isna().all():
            raise DatasetError(f"the VinBigData source {source.path} has a table but no train/ image folder.")
        return ds
    if source.kind == "nih":
        from radtriage.datasets import NIHDataset

        return NIHDataset(source.path)
    if source.kind == "phantom_chest":
        from radtriage.datasets.phantom import PhantomChestDataset

        return PhantomChestDataset(source.path, source.n, source.size, source.seed, source.prevalence)
    from radtriage.datasets import MuraDataset

    if source.n > 0:
        ensure_phantom_mura(source)
    return MuraDataset(source.path, study_split, tuple(study_types))  # type: ignore[arg-type]


def ensure_phantom_mura(source: DataSource, workers: int = 2) -> Path:
    """Render ``source.n`` limb phantom studies into ``source.path`` (MURA-v1.1 layout) unless present.

    The output depends only on (n, size, seed, prevalence), so a re-run re-uses the files; a
    folder written with other settings is refused rather than silently mixed.

    Returns:
        the ``MURA-v1.1`` folder.
    """
    from radtriage.phantoms import write_mura

    root = Path(source.path)
    stamp = root / "phantom_settings.json"
    settings = {"generator": "radtriage.phantoms.write_mura", "n_studies": source.n, "size": source.size,
                "seed": source.seed, "abnormal_prob": source.prevalence,
                "valid_fraction": PHANTOM_MURA_VALID_FRACTION}
    if stamp.is_file():
        if json.loads(stamp.read_text()) != settings:
            raise DatasetError(f"{root} holds limb phantoms written with other settings ({stamp}): "
                               "use another folder or delete it.")
        return root / "MURA-v1.1"
    base = write_mura(root, source.n, seed=source.seed, size=source.size,
                      valid_fraction=PHANTOM_MURA_VALID_FRACTION, abnormal_prob=source.prevalence, workers=workers)
    stamp.write_text(json.dumps(settings, indent=1))
    return base


def is_phantom_file(path: str | Path) -> bool:
    """True when the file is a DICOM written by radtriage's phantom generator (its Manufacturer tag)."""
    try:
        meta = radiograph.load(path, min_side=radiograph.MIN_SIDE_PX).metadata
    except radiograph.RadiographError:
        return False
    return (meta.manufacturer or "").strip().lower() == PHANTOM_MANUFACTURER


def resolve_synthetic(source: DataSource, table: pd.DataFrame) -> bool:
    """Whether a source's images are phantoms: declared, or detected from its first file.

    A source not declared synthetic whose first image is a phantom DICOM is treated as synthetic
    (with a warning), so phantom labels are never reported as real ones.
    """
    if source.synthetic:
        return True
    paths = [p for p in table["path"].tolist() if isinstance(p, str) and Path(p).is_file()]
    if paths and is_phantom_file(paths[0]):
        warnings.warn(f"source {source.label!r} holds phantom images: its labels are recorded as synthetic.",
                      stacklevel=2)
        return True
    return False


def binary_labels(y: np.ndarray) -> np.ndarray:
    """Labels for evaluation: soft labels (reader fractions) -> 1 where >= 0.5; NaN kept."""
    y = np.asarray(y, np.float32)
    return np.where(np.isnan(y), np.nan, (y >= 0.5).astype(np.float32)).astype(np.float32)


def class_provenance(table: pd.DataFrame, classes: Sequence[str]) -> dict[str, str]:
    """Provenance of each class from the TRAINING table (see the module docstring).

    Args:
        table: training images with one label column per class (1 present, 0 absent, NaN
            missing, or a soft fraction) and a bool ``synthetic`` column.
        classes: the label columns.

    Returns:
        class -> ``labels.PROVENANCE_REAL`` | ``PROVENANCE_SYNTHETIC`` | ``PROVENANCE_NONE``.
    """
    synthetic = table[SYNTHETIC_COLUMN].astype(bool).to_numpy()
    out = {}
    for c in classes:
        positive = (table[c].to_numpy(dtype=np.float64) > 0) & ~np.isnan(table[c].to_numpy(dtype=np.float64))
        if (positive & ~synthetic).any():
            out[c] = labels.PROVENANCE_REAL
        elif (positive & synthetic).any():
            out[c] = labels.PROVENANCE_SYNTHETIC
        else:
            out[c] = labels.PROVENANCE_NONE
    return out


def describe_split(name: str, table: pd.DataFrame, how: str) -> str:
    """e.g. ``"test: 10% of patients, hash split seed 0; 150 images of 150 patients"``."""
    n_pat = table["patient_id"].nunique() if len(table) else 0
    return f"{name}: {how}; {len(table)} images of {n_pat} patients"


def _drop_failed(table: pd.DataFrame, index: CacheIndex) -> pd.DataFrame:
    ok = set(index.image_ids)
    return table[table["image_id"].isin(ok)].reset_index(drop=True)


def _arrays(index: CacheIndex, table: pd.DataFrame, scratch: Path, name: str) -> np.ndarray:
    """(N, S, S, 1) cached images of ``table`` in table order: in memory, or a float16 memmap if large."""
    ids = table["image_id"].tolist()
    size = index.config.size
    if len(ids) * size * size * 4 <= IN_MEMORY_LIMIT_BYTES:
        return load_cached(index, ids)
    scratch.mkdir(parents=True, exist_ok=True)
    return stack_cached(index, ids, scratch / f"{name}_images.npy")


def _positives(table: pd.DataFrame, classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """class -> {"real": n positive real images, "synthetic": n positive phantom images}."""
    synthetic = table[SYNTHETIC_COLUMN].astype(bool)
    return {c: {"real": int(((table[c] > 0) & ~synthetic).sum()),
                "synthetic": int(((table[c] > 0) & synthetic).sum())} for c in classes}


# ------------------------------------------------------------------------------------ model outputs


def predict_logits(model: Any, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Pre-sigmoid outputs (N, C) float64 of a flat radtriage model (layer ``"logits"``)."""
    import keras

    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    return np.asarray(logits_model.predict(images, batch_size=batch_size, verbose=0), np.float64)


@dataclass
class Calibration:
    """Temperatures fitted and thresholds chosen on validation, and the description of both."""

    temperature: np.ndarray
    thresholds: np.ndarray
    selection: dict[str, Any]


def calibrate(y_val: np.ndarray, logits_val: np.ndarray, classes: Sequence[str], rule: str,
              target_sensitivity: float, split_name: str) -> Calibration:
    """Temperature per class from validation logits, then thresholds on calibrated probabilities.

    Thresholds are chosen after calibration because the Predictor flags calibrated probabilities.
    """
    temperature = evaluation.fit_temperature(y_val, logits_val, from_logits=True)
    probs = evaluation.apply_temperature(logits_val, temperature, from_logits=True)
    selection = evaluation.threshold_selection(y_val, probs, classes, rule, target_sensitivity, split_name)  # type: ignore[arg-type]
    thresholds = np.array([selection["thresholds"][c] for c in classes])
    return Calibration(temperature, thresholds, selection)


def _evaluate_split(y: np.ndarray, logits: np.ndarray, classes: Sequence[str], cal: Calibration, split: str,
                    plots_dir: Path, n_boot: int) -> dict[str, Any]:
    raw = evaluation.apply_temperature(logits, 1.0, from_logits=True)
    calibrated = evaluation.apply_temperature(logits, cal.temperature, from_logits=True)
    return evaluation.evaluate(y, calibrated, classes, split, cal.thresholds, cal.selection["description"],
                               y_prob_uncalibrated=raw, plots_dir=plots_dir, n_boot=n_boot)


def _card_plots(metrics: dict[str, Any], model_dir: Path) -> dict[str, Path]:
    plots = {}
    for role, m in metrics.items():
        for kind, file in (m.get("plots") or {}).items():
            plots[f"{kind} ({role})"] = model_dir / "plots" / role / file
    return plots


# ------------------------------------------------------------------------------------ artifact


@dataclass
class RunResult:
    """What a recipe produced.

    Attributes:
        model_dir: the artifact directory.
        metadata: the saved :class:`radtriage.artifact.ModelMetadata`.
        metrics: role ("validation", "test", ...) -> evaluation dict (also in the metadata).
        history: per-epoch training logs (loss, val_macro_auroc, ...).
        seconds: wall time of the run.
        sizes: split -> number of images (MURA: also studies).
    """

    model_dir: Path
    metadata: Any
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    seconds: float
    sizes: dict[str, int]

    def summary(self) -> pd.DataFrame:
        """One row per metrics role: split, n, headline AUROC with its CI."""
        rows = []
        for role, m in self.metrics.items():
            macro = m.get("macro_auroc") or {}
            if "study_level" in m:
                overall = m["study_level"][0]
                rows.append({"role": role, "split": m["split"], "n": m.get("n_studies"), "level": "study",
                             "auroc": overall.get("auroc"), "auroc_lo": macro.get("lo"), "auroc_hi": macro.get("hi"),
                             "kappa": overall.get("kappa"), "accuracy": overall.get("accuracy")})
            elif macro:
                rows.append({"role": role, "split": m["split"], "n": m.get("n_images"), "level": "macro",
                             "auroc": macro.get("auroc"), "auroc_lo": macro.get("lo"), "auroc_hi": macro.get("hi")})
        return pd.DataFrame(rows)


def _card_metadata(metadata: Any, training: dict[str, Any], threshold_rule: str, architecture: str) -> dict[str, Any]:
    """Metadata as the model card reads it (``training`` with data/splits/phantom_only)."""
    card_training = {k: training[k] for k in ("data_statement", "data", "splits", "phantom_only", "label_policy",
                                              "excluded_images",
                                              "epochs_run", "best_val_macro_auroc") if k in training}
    return {**metadata.to_dict(), "training": card_training, "threshold_rule": threshold_rule,
            "architecture": architecture, "version": (metadata.code_version or {}).get("package")}


def save_run(model: Any, model_dir: Path, task: str, name: str, train_config: TrainConfig, cal: Calibration,
             classes: Sequence[str], metrics: dict[str, Any], provenance: dict[str, str],
             training: dict[str, Any], examples_dir: str) -> Any:
    """Artifact + model card + reference predictions; returns the saved metadata."""
    from radtriage.artifact import ModelMetadata, save_artifact
    from radtriage.model_card import write_model_card

    metadata = ModelMetadata.for_task(
        name, task, train_config.preprocess,
        thresholds={c: float(t) for c, t in zip(classes, cal.thresholds)},
        temperature={c: float(t) for c, t in zip(classes, cal.temperature)},
        metrics=metrics, provenance=provenance, training_data=training, train_config=train_config.to_dict(),
    )
    metadata = save_artifact(model, model_dir, metadata)
    metadata = _export_serving(model_dir) or metadata
    write_model_card(_card_metadata(metadata, training, cal.selection["description"], train_config.architecture),
                     model_dir / CARD_FILE, plots=_card_plots(metrics, model_dir))
    if examples_dir:
        write_reference_predictions(model_dir, examples_dir)
    return metadata


def _export_serving(model_dir: Path) -> Any:
    """Add the verified LiteRT export (the CLI's fast backend); a model that cannot be exported stays Keras-only."""
    from radtriage.artifact import ArtifactError, read_metadata
    from radtriage.serving import export_litert

    try:
        export_litert(model_dir)
    except ArtifactError as err:
        print(f"LiteRT export skipped: {err} The model is served by Keras.", flush=True)
        return None
    return read_metadata(model_dir)


def _history(history: Any) -> dict[str, list[float]]:
    return {k: [float(v) for v in vals] for k, vals in getattr(history, "history", {}).items()}


def _training_summary(history: dict[str, list[float]]) -> dict[str, Any]:
    aurocs = [v for v in history.get("val_macro_auroc", []) if np.isfinite(v)]
    return {"epochs_run": len(history.get("loss", [])),
            "best_val_macro_auroc": round(max(aurocs), 4) if aurocs else None}


# ------------------------------------------------------------------------------------ chest


def chest_table(run: ChestRunConfig) -> tuple[pd.DataFrame, dict[str, bool]]:
    """The merged image table of a chest run with a ``synthetic`` column, and source -> synthetic."""
    from radtriage.datasets import merge_datasets

    datasets = [load_source(s) for s in run.sources]
    synthetic = {s.label: resolve_synthetic(s, d.table) for s, d in zip(run.sources, datasets)}
    merged = merge_datasets(datasets, classes=labels.CHEST_CLASSES, names=[s.label for s in run.sources])
    table = merged.table[merged.table["path"].notna()].reset_index(drop=True)
    table[SYNTHETIC_COLUMN] = table["source"].map(synthetic).astype(bool)
    return table, synthetic


def split_chest(table: pd.DataFrame, split: SplitConfig) -> dict[str, pd.DataFrame]:
    """{"train", "validation"[, "test"]} tables, no patient in two of them."""
    parts = split_by_patient(table, split.fractions, seed=split.seed)
    names = ("train", "validation", "test")[: len(parts)]
    return {n: p.reset_index(drop=True) for n, p in zip(names, parts)}


def train_chest(run: ChestRunConfig) -> RunResult:
    """Train, evaluate and save a chest model as ``run`` says (see the module docstring).

    Returns:
        :class:`RunResult`; ``run.model_dir`` holds model.h5, metadata.json, MODEL_CARD.md,
        plots/<role>/{roc,reliability}.png and reference_predictions.json.

    Raises:
        DatasetError: a source folder does not hold its layout, or a split is empty.
    """
    start = time.perf_counter()
    classes = list(labels.CHEST_CLASSES)
    table, synthetic = chest_table(run)
    index = prepare(table, run.train.preprocess, run.cache_dir, run.workers, run.progress)
    excluded = len(table) - len(index.image_ids)
    table = _drop_failed(table, index)
    parts = split_chest(table, run.split)
    for name, part in parts.items():
        if part.empty:
            raise DatasetError(f"the {name} split is empty: use more images or other split fractions.")
    scratch = Path(run.train.output_dir)
    x = {n: _arrays(index, p, scratch, n) for n, p in parts.items()}
    y_train = parts["train"][classes].to_numpy(np.float32)
    y = {n: binary_labels(p[classes].to_numpy(np.float32)) for n, p in parts.items()}

    from radtriage.training import train

    model, history = train(run.train, x["train"], y_train, x["validation"], y["validation"])
    logits = {n: predict_logits(model, x[n]) for n in parts if n != "train"}

    fr, seed = run.split.fractions, run.split.seed
    how = {n: f"{fr[i]:.0%} of patients of all sources, patient hash split (seed {seed})"
           for i, n in enumerate(parts)}
    split_names = {n: describe_split(n, p, how[n]) for n, p in parts.items()}
    cal = calibrate(y["validation"], logits["validation"], classes, run.threshold_rule, run.target_sensitivity,
                    split_names["validation"])
    model_dir = Path(run.model_dir)
    metrics: dict[str, Any] = {}
    roles = [n for n in ("test", "validation") if n in parts]
    for n in roles:
        label = split_names[n] + (" (also used for model selection, thresholds and temperature: optimistic)"
                                  if n == "validation" else "")
        metrics[n] = _evaluate_split(y[n], logits[n], classes, cal, label, model_dir / "plots" / n, run.n_boot)
    if "test" in parts and len(synthetic) > 1:  # per-source test metrics: real data apart from phantoms
        test = parts["test"]
        for src in synthetic:
            rows = (test["source"] == src).to_numpy()
            if rows.any():
                role = f"test_{src}"
                label = describe_split(f"test, {src} images only", test[rows], how["test"])
                metrics[role] = _evaluate_split(y["test"][rows], logits["test"][rows], classes, cal, label,
                                                model_dir / "plots" / role, run.n_boot)

    hist = _history(history)
    training = {
        "data": [s.describe(synthetic[s.label]) for s in run.sources],
        "splits": "; ".join(split_names.values()),
        "split": {"fractions": list(fr), "seed": seed, "by": "patient"},
        "phantom_only": all(synthetic.values()),
        "synthetic_sources": [s for s, v in synthetic.items() if v],
        "label_policy": {s.label: s.policy for s in run.sources if s.kind == "vinbigdata"},
        "excluded_images": f"{excluded} images could not be loaded (see the cache's failures.csv)",
        "images": {n: int(len(p)) for n, p in parts.items()},
        "images_per_source": {n: {str(k): int(v) for k, v in p["source"].value_counts().items()}
                              for n, p in parts.items()},
        "train_positives": _positives(parts["train"], classes),
        "evaluation_labels": "soft labels binarised at >= 0.5 for evaluation" if any(
            s.policy == "soft" for s in run.sources if s.kind == "vinbigdata") else "as given",
        **_training_summary(hist),
    }
    provenance = class_provenance(parts["train"], classes)
    name = run.name or f"chest-{run.train.architecture}-{run.train.preprocess.size}"
    metadata = save_run(model, model_dir, "chest", name, run.train, cal, classes, metrics, provenance, training,
                        run.examples_dir)
    return RunResult(model_dir, metadata, metrics, hist, time.perf_counter() - start,
                     {n: int(len(p)) for n, p in parts.items()})


# ------------------------------------------------------------------------------------ MURA


def study_frame(table: pd.DataFrame, image_probs: np.ndarray, threshold: float) -> pd.DataFrame:
    """Study rows (study_id, study_type, label, probability = mean of image probabilities, threshold)."""
    studies = evaluation.aggregate_studies(table["study_id"].tolist(), image_probs)
    first = table.drop_duplicates("study_id").set_index("study_id")
    studies["study_type"] = studies["study_id"].map(first["study_type"])
    studies["label"] = studies["study_id"].map(first[labels.MURA_CLASSES[0]]).astype(int)
    studies["threshold"] = float(threshold)
    return studies


def _mura_metrics(table: pd.DataFrame, logits: np.ndarray, cal: Calibration, split: str, plots_dir: Path,
                  n_boot: int) -> dict[str, Any]:
    """Study-level metrics (evaluate() on study means, with CIs and plots) + per-type table."""
    probs = evaluation.apply_temperature(logits, cal.temperature, from_logits=True)[:, 0]
    raw = evaluation.apply_temperature(logits, 1.0, from_logits=True)[:, 0]
    studies = study_frame(table, probs, float(cal.thresholds[0]))
    raw_studies = evaluation.aggregate_studies(table["study_id"].tolist(), raw)
    y = studies["label"].to_numpy(np.float32)[:, None]
    result = evaluation.evaluate(y, studies["probability"].to_numpy()[:, None], list(labels.MURA_CLASSES),
                                 split, cal.thresholds, cal.selection["description"],
                                 y_prob_uncalibrated=raw_studies["probability"].to_numpy()[:, None],
                                 plots_dir=plots_dir, n_boot=n_boot)
    result.update(evaluation.evaluate_mura(studies, split))
    result.pop("n_images")  # evaluate() counted study rows; the card would call them images
    result["n_image_files"] = int(len(table))
    return result


def train_mura(run: MuraRunConfig) -> RunResult:
    """Train, evaluate (study level) and save a MURA model as ``run`` says.

    Validation = ``run.val_fraction`` of the PATIENTS of MURA's train split; test = MURA's valid
    split (no patient of it is trained on). Temperature is fitted on validation image logits;
    the threshold is chosen on validation study probabilities (mean of the images').

    Returns:
        :class:`RunResult` (sizes include ``*_studies``).
    """
    start = time.perf_counter()
    classes = list(labels.MURA_CLASSES)
    train_all = load_source(run.source, "train", run.study_types)
    test_ds = load_source(run.source, "valid", run.study_types)
    synthetic = resolve_synthetic(run.source, train_all.table)
    parts_raw = dict(zip(("train", "validation"),
                         split_by_patient(train_all.table, (1 - run.val_fraction, run.val_fraction), run.split_seed)))
    parts_raw["test"] = test_ds.table
    everything = pd.concat(parts_raw.values(), ignore_index=True)
    index = prepare(everything, run.train.preprocess, run.cache_dir, run.workers, run.progress)
    excluded = len(everything) - len(index.image_ids)
    parts = {n: _drop_failed(p, index) for n, p in parts_raw.items()}
    for n, p in parts.items():
        p[SYNTHETIC_COLUMN] = synthetic
        if p.empty:
            raise DatasetError(f"the MURA {n} split is empty: use more studies or another val_fraction.")
    scratch = Path(run.train.output_dir)
    x = {n: _arrays(index, p, scratch, n) for n, p in parts.items()}
    y = {n: p[classes].to_numpy(np.float32) for n, p in parts.items()}

    from radtriage.training import train

    model, history = train(run.train, x["train"], y["train"], x["validation"], y["validation"])
    logits = {n: predict_logits(model, x[n]) for n in ("validation", "test")}

    how = {"train": f"MURA train split minus validation patients (seed {run.split_seed})",
           "validation": f"{run.val_fraction:.0%} of the MURA train split's patients (seed {run.split_seed})",
           "test": "MURA valid split (held out)"}
    split_names = {n: describe_split(n, p, how[n]) + f", {p['study_id'].nunique()} studies"
                   for n, p in parts.items()}
    # temperature on image logits; threshold on the study means the verdict is made of
    temperature = evaluation.fit_temperature(y["validation"], logits["validation"], from_logits=True)
    val_probs = evaluation.apply_temperature(logits["validation"], temperature, from_logits=True)[:, 0]
    val_studies = study_frame(parts["validation"], val_probs, 0.5)
    selection = evaluation.threshold_selection(val_studies["label"].to_numpy(np.float32)[:, None],
                                               val_studies["probability"].to_numpy()[:, None], classes,
                                               run.threshold_rule, run.target_sensitivity,  # type: ignore[arg-type]
                                               split_names["validation"] + " (study level)")
    selection["description"] += " (on study-level probabilities: mean of the study's images)"
    cal = Calibration(temperature, np.array([selection["thresholds"][classes[0]]]), selection)
    model_dir = Path(run.model_dir)
    metrics = {
        "test": _mura_metrics(parts["test"], logits["test"], cal, split_names["test"], model_dir / "plots" / "test",
                              run.n_boot),
        "validation": _mura_metrics(parts["validation"], logits["validation"], cal,
                                    split_names["validation"] + " (also used for model selection, threshold and "
                                    "temperature: optimistic)", model_dir / "plots" / "validation", run.n_boot),
    }
    hist = _history(history)
    training = {
        **({"data_statement": PHANTOM_MURA_STATEMENT} if synthetic else {}),
        "data": [run.source.describe(synthetic) + f", study types {', '.join(run.study_types)}"],
        "splits": "; ".join(split_names.values()),
        "split": {"val_fraction": run.val_fraction, "seed": run.split_seed, "by": "patient",
                  "test": "MURA valid"},
        "phantom_only": synthetic,
        "excluded_images": f"{excluded} images could not be loaded (see the cache's failures.csv)",
        "images": {n: int(len(p)) for n, p in parts.items()},
        "studies": {n: int(p["study_id"].nunique()) for n, p in parts.items()},
        "train_positive_images": _positives(parts["train"], classes)[classes[0]],
        "study_rule": "study probability = mean of its images' calibrated probabilities",
        **_training_summary(hist),
    }
    provenance = class_provenance(parts["train"], classes)
    name = run.name or f"mura-{run.train.architecture}-{run.train.preprocess.size}"
    metadata = save_run(model, model_dir, "mura", name, run.train, cal, classes, metrics, provenance, training,
                        run.examples_dir)
    sizes = {n: int(len(p)) for n, p in parts.items()}
    sizes.update({f"{n}_studies": int(p["study_id"].nunique()) for n, p in parts.items()})
    return RunResult(model_dir, metadata, metrics, hist, time.perf_counter() - start, sizes)


def train_run(run: RunConfig) -> RunResult:
    """:func:`train_chest`, :func:`train_mura` or the front-end chest recipe, by the config's task."""
    if run.task == "chest_frontend":
        from radtriage.frontend_recipe import train_frontend_chest

        return train_frontend_chest(run)  # type: ignore[arg-type]
    return train_chest(run) if isinstance(run, ChestRunConfig) else train_mura(run)


# ------------------------------------------------------------------------------------ evaluate a model


def evaluate_model(model_dir: str | Path, source: DataSource, out_dir: str | Path, split: str = "all",
                   cache_dir: str | Path = "runs/cache", n_boot: int = 1000, workers: int = 2,
                   progress: bool = True) -> dict[str, Any]:
    """Evaluate a saved model on a dataset: metrics.json, plots and a model card in ``out_dir``.

    Uses the model's own preprocessing, temperatures and thresholds (the Predictor path on the
    prepare cache).

    Args:
        model_dir: a model artifact directory.
        source: the dataset (chest kinds for a chest model, "mura" for a MURA model).
        out_dir: output folder (created).
        split: "all" images of the dataset; for chest, "train" | "validation" | "test" re-create
            the patient split recorded in the model's metadata (same fractions and seed, so "test"
            is the model's own held-out test set when the sources are the same); for MURA,
            "train" | "valid" (MURA's own splits).
        cache_dir, n_boot, workers, progress: as in the run configs.

    Returns:
        the metrics dict written to ``out_dir/metrics.json``.
    """
    from radtriage.inference import Predictor
    from radtriage.model_card import write_model_card

    predictor = Predictor.from_dir(model_dir)
    meta = predictor.metadata
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = list(meta.classes)
    if meta.task == "mura":
        if source.kind != "mura":
            raise ValueError("a MURA model is evaluated on a 'mura' source")
        mura_split = "valid" if split in ("all", "valid", "test") else "train"
        table = load_source(source, mura_split).table
        split_label = f"MURA {mura_split} split at {source.path}"
    else:
        if source.kind not in CHEST_KINDS:
            raise ValueError(f"a chest model is evaluated on a source of kind {', '.join(CHEST_KINDS)}")
        table = load_source(source).table.copy()
        table = table[table["path"].notna()].reset_index(drop=True)
        split_label = f"all images of {source.describe()}"
        if split != "all":
            recorded = (meta.training_data or {}).get("split") or {}
            if "fractions" not in recorded:
                raise ValueError("the model's metadata records no patient split: use split 'all'")
            table["patient_id"] = source.label + ":" + table["patient_id"].astype(str)  # as merged in training
            names = ("train", "validation", "test")
            parts = dict(zip(names, split_by_patient(table, recorded["fractions"], recorded["seed"])))
            if split not in parts:
                raise ValueError(f"split must be 'all' or one of {', '.join(parts)}")
            table = parts[split].reset_index(drop=True)
            split_label = (f"{split} part of {source.describe()} by the model's recorded patient split "
                           f"(fractions {recorded['fractions']}, seed {recorded['seed']})")
    index = prepare(table, meta.preprocess, cache_dir, workers, progress)
    table = _drop_failed(table, index)
    if table.empty:
        raise DatasetError("no image of the dataset could be loaded.")
    x = _arrays(index, table, out, "evaluate")
    logits = predict_logits(predictor.model, x)
    cal = Calibration(np.asarray(meta.temperatures()), np.array([meta.thresholds[c] for c in classes]),
                      {"description": f"as recorded in the model ({meta.name})"})
    split_name = describe_split("evaluation", table, split_label)
    if meta.task == "mura":
        metrics = _mura_metrics(table, logits, cal, split_name + f", {table['study_id'].nunique()} studies", out,
                                n_boot)
    else:
        y = binary_labels(table[classes].to_numpy(np.float32))
        metrics = _evaluate_split(y, logits, classes, cal, split_name, out, n_boot)
    metrics["excluded_images"] = len(index.failures)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False))
    card_meta = _card_metadata(meta, meta.training_data or {}, cal.selection["description"],
                               (meta.train_config or {}).get("architecture", "not recorded"))
    card_meta["metrics"] = {"evaluation": metrics}
    write_model_card(card_meta, out / CARD_FILE, plots={k: out / v for k, v in metrics["plots"].items()})
    return metrics


# ------------------------------------------------------------------------------------ reference predictions


def example_files(examples_dir: str | Path) -> list[dict[str, Any]]:
    """The bundled examples from ``manifest.json``: id, anatomy, study_type, files (paths)."""
    examples_dir = Path(examples_dir)
    manifest = json.loads((examples_dir / MANIFEST_FILE).read_text())
    return [{"id": e["id"], "anatomy": e["anatomy"], "study_type": e.get("study_type"),
             "files": [examples_dir / f for f in e["files"]]} for e in manifest["examples"]]


def _file_sha256(path: Path) -> str:
    from radtriage.artifact import sha256_file

    return sha256_file(path)


def reference_outputs(predictor: Any, examples_dir: str | Path) -> dict[str, Any]:
    """The predictor's calibrated outputs on every bundled example (public load + preprocess path).

    Every file goes through ``Predictor.load_input`` (the shared load + preprocess path of the
    prepare cache, the CLI and the dashboard) and is predicted one by one.
    """
    size = predictor.preprocess_config.size
    task_anatomy = {"chest": "chest", "mura": "limb"}[predictor.metadata.task]
    examples = []
    for ex in example_files(examples_dir):
        files, probs = [], []
        for path in ex["files"]:
            p = predictor.predict_batch(predictor.load_input(path)[1][None])[0]
            probs.append(p)
            files.append({"file": path.name, "sha256": _file_sha256(path),
                          "probabilities": [float(v) for v in p]})
        examples.append({"id": ex["id"], "anatomy": ex["anatomy"], "matches_task": ex["anatomy"] == task_anatomy,
                         "files": files, "study_probabilities": [float(v) for v in np.mean(probs, axis=0)]})
    return {"model": predictor.metadata.name, "model_sha256": predictor.metadata.model_sha256,
            "classes": predictor.classes, "loader": {"min_side": size},
            "note": "calibrated probabilities; study_probabilities = mean over the example's files",
            "examples": examples}


def write_reference_predictions(model_dir: str | Path, examples_dir: str | Path = "app_images") -> Path:
    """Write ``<model_dir>/reference_predictions.json`` from the SAVED artifact (loaded back)."""
    from radtriage.inference import Predictor

    predictor = Predictor.from_dir(model_dir)
    path = Path(model_dir) / REFERENCE_FILE
    path.write_text(json.dumps(reference_outputs(predictor, examples_dir), indent=1))
    return path


@dataclass
class ReferenceCheck:
    """Result of :func:`check_reference_predictions`.

    Attributes:
        n_files: files compared.
        max_abs_diff: largest |new - stored| probability.
        mismatches: one sentence per file differing by more than ``atol``, or changed on disk.
    """

    n_files: int
    max_abs_diff: float
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        return self.n_files > 0 and not self.mismatches


def check_reference_predictions(model_dir: str | Path, atol: float = DEFAULT_ATOL,
                                examples_dir: str | Path | None = None, backend: str = "keras") -> ReferenceCheck:
    """Re-run the bundled examples through today's code and compare with the stored outputs.

    A difference means the loading or preprocessing (or the model file) drifted since the model
    was made. An example file changed on disk is reported as such (not as drift).

    Args:
        model_dir: a model directory holding ``reference_predictions.json``.
        atol: tolerated absolute difference per probability.
        examples_dir: the examples (default: ``app_images`` next to ``model_dir``'s parent's
            parent, i.e. the repository's, else ``./app_images``).
        backend: "keras" (the reference that made the file) or "litert" (the model's export,
            checked against the same stored outputs).

    Returns:
        :class:`ReferenceCheck`; ``.ok`` is False when anything differs or nothing was compared.
    """
    from radtriage.serving import load_predictor

    model_dir = Path(model_dir)
    stored = json.loads((model_dir / REFERENCE_FILE).read_text())
    if examples_dir is None:
        candidate = model_dir.resolve().parents[1] / "app_images"
        examples_dir = candidate if candidate.is_dir() else Path("app_images")
    examples_dir = Path(examples_dir)
    predictor = load_predictor(model_dir, backend)
    mismatches, n, worst = [], 0, 0.0
    for ex in stored["examples"]:
        for f in ex["files"]:
            path = examples_dir / f["file"]
            if not path.is_file():
                mismatches.append(f"{f['file']}: the example file is missing.")
                continue
            if _file_sha256(path) != f["sha256"]:
                mismatches.append(f"{f['file']}: the example file changed since the reference was made.")
                continue
            p = predictor.predict_batch(predictor.load_input(path)[1][None])[0]
            diff = float(np.max(np.abs(p - np.asarray(f["probabilities"]))))
            n += 1
            worst = max(worst, diff)
            if diff > atol:
                mismatches.append(f"{f['file']}: outputs differ by up to {diff:.2e} (> {atol:g}).")
    return ReferenceCheck(n, worst, mismatches)
