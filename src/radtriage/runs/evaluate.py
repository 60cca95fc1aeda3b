"""Evaluate a saved model on a dataset (the CLI's ``evaluate``): its own preprocessing, temperatures
and thresholds, on the prepare cache; metrics.json, plots and a model card in an output folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from radtriage import tasks
from radtriage.datasets.base import DatasetError, split_by_patient
from radtriage.model_card import CARD_FILE
from radtriage.prepare import prepare
from radtriage.runs.calibration import Calibration, evaluate_split, predict_logits
from radtriage.runs.config import CHEST_KINDS, DataSource
from radtriage.runs.mura import mura_metrics
from radtriage.runs.saving import card_metadata
from radtriage.runs.sources import binary_labels, cached_arrays, describe_split, drop_failed, load_source


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
    per_study = tasks.get(meta.task).unit == "study"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = list(meta.classes)
    if per_study:
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
    table = drop_failed(table, index)
    if table.empty:
        raise DatasetError("no image of the dataset could be loaded.")
    x = cached_arrays(index, table, out, "evaluate")
    logits = predict_logits(predictor.model, x)
    cal = Calibration(np.asarray(meta.temperatures()), np.array([meta.thresholds[c] for c in classes]),
                      {"description": f"as recorded in the model ({meta.name})"})
    split_name = describe_split("evaluation", table, split_label)
    if per_study:
        metrics = mura_metrics(table, logits, cal, split_name + f", {table['study_id'].nunique()} studies", out,
                                n_boot)
    else:
        y = binary_labels(table[classes].to_numpy(np.float32))
        metrics = evaluate_split(y, logits, classes, cal, split_name, out, n_boot)
    metrics["excluded_images"] = len(index.failures)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False))
    card_meta = card_metadata(meta, meta.training_data or {}, cal.selection["description"],
                               (meta.train_config or {}).get("architecture", "not recorded"))
    card_meta["metrics"] = {"evaluation": metrics}
    write_model_card(card_meta, out / CARD_FILE, plots={k: out / v for k, v in metrics["plots"].items()})
    return metrics
