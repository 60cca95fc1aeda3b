"""The shipped chest model's recipe (``"recipe": "chest_frontend"``): fixed filter-bank front-end + linear heads (small-data method).

With 500 labelled real chest x-rays and no pretrained weights, CNNs trained from scratch stay at
chance here (see BENCHMARKS.md); a fixed wavelet-like front-end (:mod:`radtriage.frontends`) with
L2-regularised logistic heads does better. This recipe builds that model as ONE Keras model:

1. Real data: the NIH ChestX-ray14 sample (9 of the 14 classes labelled). Its fixed validation
   split (:func:`radtriage.splits.nih_validation_mask`, 30 % of patients) is never trained on.
2. Synthetic data: chest phantoms (all 14 classes), split by image into train / held-out.
3. Every image goes through the shared load + preprocess path (the prepare cache).
4. Heads: the 9 real classes are fitted on NIH training images only (the regime chosen by 5-fold
   cross-validation in ``experiments/chest_nih_search.py``); the 5 classes without real labels
   are fitted on phantoms only and marked "synthetic only". Both heads are merged exactly into one
   standardize + Dense layer pair.
5. Temperatures and thresholds: real classes on the NIH validation split, synthetic-only classes on
   the held-out phantoms. Metrics with bootstrap CIs on both, split stated.
6. Artifact + verified LiteRT export + model card + reference predictions, as every recipe (:func:`radtriage.runs.saving.save_run`).

Reproduce the shipped model::

    python -m radtriage train --config model/chest/run_config.json
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radtriage import labels
from radtriage.preprocess import PreprocessConfig
from radtriage.runs.calibration import evaluate_split, fit_calibration
from radtriage.runs.config import RunCommon, check_recipe
from radtriage.runs.saving import HeadRecord, RunResult, save_run
from radtriage.runs.sources import describe_split
from radtriage.splits import hash_split, nih_validation_mask

RECIPE = "chest_frontend"
PHANTOM_SPLIT_SALT = "radtriage-phantom-holdout-v1"
REAL_CLASSES: tuple[str, ...] = labels.NIH_LABELLED
SYNTHETIC_CLASSES: tuple[str, ...] = tuple(c for c in labels.CHEST_CLASSES if c not in REAL_CLASSES)


@dataclass
class FrontEndChestRunConfig(RunCommon):
    """One run of the front-end chest recipe.

    Attributes:
        nih: folder of the NIH sample (images/ + labels.csv).
        phantom_dir: where chest phantoms are written (PNG, reused when present).
        n_phantoms: number of phantom images; ``phantom_holdout`` of them are held out.
        phantom_size: side of the rendered phantoms in pixels.
        phantom_seed: generator seed.
        phantom_prevalence: per-finding probability in the phantoms.
        phantom_holdout: share of phantoms held out for temperatures, thresholds and metrics.
        frontend: :class:`radtriage.frontends.FrontEndConfig` as a dict (its size = model input).
        c: inverse L2 strength of the logistic heads (on standardized features).
        model_dir: output model folder.
        name: model name in the metadata.
        recipe: "chest_frontend" (what a config file names to select this recipe).
        (shared settings: :class:`radtriage.runs.config.RunCommon`)
    """

    nih: str = "../shared/data/nih-cxr-sample"
    phantom_dir: str = "runs/phantom_chest"
    n_phantoms: int = 800
    phantom_size: int = 256
    phantom_seed: int = 0
    phantom_prevalence: float = 0.15
    phantom_holdout: float = 0.3
    frontend: dict[str, Any] = field(default_factory=dict)
    c: float = 1e-3
    model_dir: str = "model/chest"
    name: str = "chest-frontend-linear"
    recipe: str = RECIPE

    task = "chest"  # the model task this recipe trains (radtriage.tasks)

    def __post_init__(self) -> None:
        check_recipe(self, RECIPE)
        if not 0 < self.phantom_holdout < 1:
            raise ValueError("phantom_holdout must be in (0, 1)")
        if self.c <= 0:
            raise ValueError("c must be positive")

    def frontend_config(self) -> Any:
        from radtriage.frontends import FrontEndConfig

        return FrontEndConfig.from_dict(self.frontend) if self.frontend else FrontEndConfig()

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig(size=self.frontend_config().size)


def merge_heads(base: Any, other: Any, columns: list[int]) -> Any:
    """One head with ``base``'s standardization whose ``columns`` compute ``other``'s logits exactly.

    ``((f - m_b) / s_b) @ (w * s_b / s_o) + b + ((m_b - m_o) / s_o) @ w == ((f - m_o) / s_o) @ w + b``.
    """
    from radtriage.frontends import LinearHead

    coef, intercept = base.coef.copy(), base.intercept.copy()
    for k in columns:
        w = other.coef[:, k]
        coef[:, k] = w * base.scale / other.scale
        intercept[k] = other.intercept[k] + float(((base.mean - other.mean) / other.scale) @ w)
    return LinearHead(base.mean.copy(), base.scale.copy(), coef, intercept,
                      {"fitted": sorted(set(base.extra.get("fitted", [])) | set(columns))})


def _only(y: np.ndarray, keep: tuple[str, ...]) -> np.ndarray:
    """Labels with every class outside ``keep`` set to missing (NaN)."""
    out = y.copy()
    out[:, [i for i, c in enumerate(labels.CHEST_CLASSES) if c not in keep]] = np.nan
    return out


def _tables(run: FrontEndChestRunConfig) -> dict[str, pd.DataFrame]:
    from radtriage.datasets import NIHDataset
    from radtriage.datasets.phantom import PhantomChestDataset

    nih = NIHDataset(run.nih).table
    val = nih_validation_mask(nih["patient_id"].astype(str))
    ph = PhantomChestDataset(run.phantom_dir, run.n_phantoms, run.phantom_size, run.phantom_seed,
                             run.phantom_prevalence).table
    hold = hash_split(ph["image_id"].astype(str), run.phantom_holdout, PHANTOM_SPLIT_SALT)
    return {"nih_train": nih[~val], "nih_validation": nih[val], "phantom_train": ph[~hold],
            "phantom_holdout": ph[hold]}


def train_frontend_chest(run: FrontEndChestRunConfig) -> RunResult:
    """Build, fit, calibrate, evaluate and save the front-end chest model (see the module docstring)."""
    from radtriage import frontends
    from radtriage.prepare import load_cached, prepare

    start = time.perf_counter()
    classes = list(labels.CHEST_CLASSES)
    fe = run.frontend_config()
    config = run.preprocess
    parts = _tables(run)
    table = pd.concat(parts.values(), ignore_index=True)
    index = prepare(table, config, run.cache_dir, run.workers, run.progress)
    ok = set(index.image_ids)
    parts = {n: p[p["image_id"].isin(ok)].reset_index(drop=True) for n, p in parts.items()}

    extractor = frontends.build_feature_extractor(fe)
    feats = {n: extractor.predict(load_cached(index, p["image_id"].tolist()), batch_size=32, verbose=0)
             for n, p in parts.items()}
    y = {n: p[classes].to_numpy(np.float32) for n, p in parts.items()}

    syn_idx = [classes.index(c) for c in SYNTHETIC_CLASSES]
    head_real = frontends.fit_head(feats["nih_train"], _only(y["nih_train"], REAL_CLASSES), c=run.c)
    head_syn = frontends.fit_head(feats["phantom_train"], _only(y["phantom_train"], SYNTHETIC_CLASSES), c=run.c)
    head = merge_heads(head_real, head_syn, syn_idx)
    model = frontends.build_linear_model(fe, len(classes))
    frontends.set_head(model, head)

    logits = {n: head.logits(feats[n]) for n in ("nih_validation", "phantom_holdout")}
    y_eval = {"nih_validation": _only(y["nih_validation"], REAL_CLASSES), "phantom_holdout": y["phantom_holdout"]}
    names = {
        "nih_validation": describe_split("NIH sample validation", parts["nih_validation"],
                                         "the fixed 30 % patient hash split of radtriage.splits, never trained on"),
        "phantom_holdout": describe_split("phantom hold-out", parts["phantom_holdout"],
                                          f"{run.phantom_holdout:.0%} of phantom images by id hash, never trained on"),
    }
    # Real classes are calibrated on real images and synthetic-only classes on phantoms: one call,
    # each class seeing only its own rows (the other rows are missing, NaN).
    y_cal = np.concatenate([y_eval["nih_validation"], _only(y["phantom_holdout"], SYNTHETIC_CLASSES)])
    cal = fit_calibration(y_cal, np.concatenate([logits["nih_validation"], logits["phantom_holdout"]]), classes,
                    run.threshold_rule, run.target_sensitivity,
                    f"{names['nih_validation']} (real classes); {names['phantom_holdout']} (synthetic-only classes)")
    model_dir = Path(run.model_dir)
    note = " (also used for temperatures and thresholds: sensitivity/specificity are optimistic; AUROC is not)"
    metrics = {
        "validation": evaluate_split(y_eval["nih_validation"], logits["nih_validation"], classes, cal,
                                      names["nih_validation"] + note, model_dir / "plots" / "validation", run.n_boot),
        "phantom_holdout": evaluate_split(y_eval["phantom_holdout"], logits["phantom_holdout"], classes, cal,
                                           names["phantom_holdout"] + note, model_dir / "plots" / "phantom_holdout",
                                           run.n_boot),
    }
    provenance = {c: labels.PROVENANCE_REAL if c in REAL_CLASSES else labels.PROVENANCE_SYNTHETIC for c in classes}
    validation_files = sorted(Path(p).name for p in parts["nih_validation"]["path"])
    training = {
        "data": [f"NIH ChestX-ray14 sample, {len(parts['nih_train'])} training images (real labels for "
                 f"{len(REAL_CLASSES)} classes)",
                 f"{len(parts['phantom_train'])} synthetic chest phantoms (labels for all 14 classes; used only "
                 f"for the {len(SYNTHETIC_CLASSES)} classes without real labels)"],
        "splits": "; ".join(names.values()),
        "phantom_only": False,
        "heads": {"real classes": "fitted on NIH training images only",
                  "synthetic-only classes": "fitted on phantom training images only"},
        "frontend": fe.to_dict(),
        "c": run.c,
        "images": {n: int(len(p)) for n, p in parts.items()},
        "excluded_images": f"{len(table) - len(ok)} images could not be loaded",
        "validation_files": validation_files,
    }
    record = HeadRecord(config, {"c": run.c, "frontend": fe.to_dict()}, "frontend_linear")
    metadata = save_run(model, model_dir, "chest", run.name, record, cal, classes, metrics, provenance, training,
                        run.examples_dir)
    with open(model_dir / "MODEL_CARD.md", "a", encoding="utf-8") as card:
        card.write(f"\n## Validation split ({len(validation_files)} NIH images, never trained on)\n\n"
                   + ", ".join(validation_files) + "\n")
    return RunResult(model_dir, metadata, metrics, {}, time.perf_counter() - start,
                     {n: int(len(p)) for n, p in parts.items()})
