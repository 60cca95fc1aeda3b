"""The chest CNN recipe (``"recipe": "chest"``): VinBigData, the NIH sample, phantoms or a merge of
them -> a Keras network trained end to end.

Steps (each a small function): build the merged image table with a ``synthetic`` column
(:mod:`radtriage.runs.sources`); split by patient into train / validation[ / test]; prepare the
cache; :func:`radtriage.training.train` (model selection on validation macro AUROC); temperatures
and thresholds on validation (:mod:`radtriage.runs.calibration`); held-out metrics with bootstrap
CIs, per source too when sources are merged; the artifact, card and reference predictions
(:func:`radtriage.runs.saving.save_run`).

Provenance per class (``metadata.provenance``): "real labels" when the TRAINING split holds real
(non-phantom) images with a positive label for the class, "synthetic only" when only phantom
images are positive for it, "none" when no training image is positive for it
(:func:`radtriage.contract.class_provenance`).
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
from radtriage.runs.calibration import evaluate_split, fit_calibration, predict_logits
from radtriage.runs.config import CHEST_KINDS, DataSource, RunCommon, SplitConfig, check_recipe, train_config
from radtriage.runs.saving import RunResult, history_dict, save_run, training_summary
from radtriage.runs.sources import (
    SYNTHETIC_COLUMN,
    binary_labels,
    cached_arrays,
    class_provenance,
    describe_split,
    drop_failed,
    load_source,
    positives,
    resolve_synthetic,
)
from radtriage.training import TrainConfig

RECIPE = "chest"


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
        recipe: "chest" (what a config file names to select this recipe).
    """

    sources: list[DataSource] = field(default_factory=lambda: [DataSource("vinbigdata", "data/vinbigdata")])
    model_dir: str = "model/chest"
    train: TrainConfig = field(default_factory=lambda: train_config("chest", "runs/chest"))
    split: SplitConfig = field(default_factory=SplitConfig)
    name: str = ""
    recipe: str = RECIPE

    task = "chest"  # the model task this recipe trains (radtriage.tasks)

    def __post_init__(self) -> None:
        check_recipe(self, RECIPE)
        if self.train.task != "chest":
            raise ValueError("the training config of a chest run must have task 'chest'")
        if not self.sources or any(s.kind not in CHEST_KINDS for s in self.sources):
            raise ValueError(f"a chest run needs sources of kinds {', '.join(CHEST_KINDS)}")
        if len({s.label for s in self.sources}) != len(self.sources):
            raise ValueError("give every source of a run a unique name")
        evaluation.threshold_rule_text(self.threshold_rule, self.target_sensitivity)  # validates


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
    table = drop_failed(table, index)
    parts = split_chest(table, run.split)
    for name, part in parts.items():
        if part.empty:
            raise DatasetError(f"the {name} split is empty: use more images or other split fractions.")
    scratch = Path(run.train.output_dir)
    x = {n: cached_arrays(index, p, scratch, n) for n, p in parts.items()}
    y_train = parts["train"][classes].to_numpy(np.float32)
    y = {n: binary_labels(p[classes].to_numpy(np.float32)) for n, p in parts.items()}

    from radtriage.training import train

    model, history = train(run.train, x["train"], y_train, x["validation"], y["validation"])
    logits = {n: predict_logits(model, x[n]) for n in parts if n != "train"}

    fr, seed = run.split.fractions, run.split.seed
    how = {n: f"{fr[i]:.0%} of patients of all sources, patient hash split (seed {seed})"
           for i, n in enumerate(parts)}
    split_names = {n: describe_split(n, p, how[n]) for n, p in parts.items()}
    cal = fit_calibration(y["validation"], logits["validation"], classes, run.threshold_rule, run.target_sensitivity,
                    split_names["validation"])
    model_dir = Path(run.model_dir)
    metrics: dict[str, Any] = {}
    roles = [n for n in ("test", "validation") if n in parts]
    for n in roles:
        label = split_names[n] + (" (also used for model selection, thresholds and temperature: optimistic)"
                                  if n == "validation" else "")
        metrics[n] = evaluate_split(y[n], logits[n], classes, cal, label, model_dir / "plots" / n, run.n_boot)
    if "test" in parts and len(synthetic) > 1:  # per-source test metrics: real data apart from phantoms
        test = parts["test"]
        for src in synthetic:
            rows = (test["source"] == src).to_numpy()
            if rows.any():
                role = f"test_{src}"
                label = describe_split(f"test, {src} images only", test[rows], how["test"])
                metrics[role] = evaluate_split(y["test"][rows], logits["test"][rows], classes, cal, label,
                                                model_dir / "plots" / role, run.n_boot)

    hist = history_dict(history)
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
        "train_positives": positives(parts["train"], classes),
        "evaluation_labels": "soft labels binarised at >= 0.5 for evaluation" if any(
            s.policy == "soft" for s in run.sources if s.kind == "vinbigdata") else "as given",
        **training_summary(hist),
    }
    provenance = class_provenance(parts["train"], classes)
    name = run.name or f"chest-{run.train.architecture}-{run.train.preprocess.size}"
    metadata = save_run(model, model_dir, "chest", name, run.train, cal, classes, metrics, provenance, training,
                        run.examples_dir)
    return RunResult(model_dir, metadata, metrics, hist, time.perf_counter() - start,
                     {n: int(len(p)) for n, p in parts.items()})
