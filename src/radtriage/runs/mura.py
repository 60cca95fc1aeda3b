"""The MURA recipe (``"recipe": "mura"``): MURA-v1.1 (or limb phantoms in its layout) -> a Keras
network calling an upper-limb radiograph normal or abnormal, judged per study.

Validation is a patient-level split of MURA's ``train``; MURA's ``valid`` split is the held-out test
set. The study verdict is the mean of its images' calibrated probabilities
(:func:`radtriage.contract.study_means`): the temperature is fitted on validation image logits, the
threshold on validation STUDY probabilities, and metrics (accuracy, AUROC, Cohen's kappa, overall and
per study type) are reported at study level.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radtriage import evaluation, labels
from radtriage.datasets.base import DatasetError, split_by_patient
from radtriage.prepare import prepare
from radtriage.runs.calibration import Calibration, predict_logits
from radtriage.runs.config import DataSource, RunCommon, check_recipe, train_config
from radtriage.runs.saving import RunResult, history_dict, save_run, training_summary
from radtriage.runs.sources import (
    SYNTHETIC_COLUMN,
    cached_arrays,
    class_provenance,
    describe_split,
    drop_failed,
    load_source,
    positives,
    resolve_synthetic,
)
from radtriage.training import TrainConfig

RECIPE = "mura"
PHANTOM_MURA_STATEMENT = (
    "No real normal/abnormal upper-limb radiographs were available: this model was trained, validated and "
    "tested on synthetic limb phantoms only (radtriage.phantoms, written in the MURA-v1.1 layout), so its "
    "performance on real radiographs is unknown and its outputs are demonstrations, not findings. "
    "The way to a real model is retraining on MURA-v1.1 with notebooks/train_mura.ipynb."
)


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
    train: TrainConfig = field(default_factory=lambda: train_config("mura", "runs/mura"))
    name: str = ""
    recipe: str = RECIPE

    task = "mura"  # the model task this recipe trains (radtriage.tasks)

    def __post_init__(self) -> None:
        self.study_types = tuple(self.study_types)
        check_recipe(self, RECIPE)
        if self.train.task != "mura":
            raise ValueError("the training config of a MURA run must have task 'mura'")
        if self.source.kind != "mura":
            raise ValueError("a MURA run needs a source of kind 'mura'")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        evaluation.threshold_rule_text(self.threshold_rule, self.target_sensitivity)


def study_frame(table: pd.DataFrame, image_probs: np.ndarray, threshold: float) -> pd.DataFrame:
    """Study rows (study_id, study_type, label, probability = mean of image probabilities, threshold)."""
    studies = evaluation.aggregate_studies(table["study_id"].tolist(), image_probs)  # contract.study_means
    first = table.drop_duplicates("study_id").set_index("study_id")
    studies["study_type"] = studies["study_id"].map(first["study_type"])
    studies["label"] = studies["study_id"].map(first[labels.MURA_CLASSES[0]]).astype(int)
    studies["threshold"] = float(threshold)
    return studies


def mura_metrics(table: pd.DataFrame, logits: np.ndarray, cal: Calibration, split: str, plots_dir: Path,
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
    parts = {n: drop_failed(p, index) for n, p in parts_raw.items()}
    for n, p in parts.items():
        p[SYNTHETIC_COLUMN] = synthetic
        if p.empty:
            raise DatasetError(f"the MURA {n} split is empty: use more studies or another val_fraction.")
    scratch = Path(run.train.output_dir)
    x = {n: cached_arrays(index, p, scratch, n) for n, p in parts.items()}
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
        "test": mura_metrics(parts["test"], logits["test"], cal, split_names["test"], model_dir / "plots" / "test",
                              run.n_boot),
        "validation": mura_metrics(parts["validation"], logits["validation"], cal,
                                    split_names["validation"] + " (also used for model selection, threshold and "
                                    "temperature: optimistic)", model_dir / "plots" / "validation", run.n_boot),
    }
    hist = history_dict(history)
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
        "train_positive_images": positives(parts["train"], classes)[classes[0]],
        "study_rule": "study probability = mean of its images' calibrated probabilities",
        **training_summary(hist),
    }
    provenance = class_provenance(parts["train"], classes)
    name = run.name or f"mura-{run.train.architecture}-{run.train.preprocess.size}"
    metadata = save_run(model, model_dir, "mura", name, run.train, cal, classes, metrics, provenance, training,
                        run.examples_dir)
    sizes = {n: int(len(p)) for n, p in parts.items()}
    sizes.update({f"{n}_studies": int(p["study_id"].nunique()) for n, p in parts.items()})
    return RunResult(model_dir, metadata, metrics, hist, time.perf_counter() - start, sizes)
