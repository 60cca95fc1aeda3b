"""The pretrained recipe (``"recipe": "pretrained"``): a frozen ImageNet EfficientNet-Lite backbone ->
pooled features -> L2 logistic heads fitted on real labels, as ONE flat Keras model, for either task.

Why: with 357 labelled NIH chest x-rays or ~1,100 FracAtlas upper-limb radiographs, a network
trained from scratch stays near chance on a CPU; ImageNet features with fitted linear heads do
better (``experiments/pretrained_search.py``, BENCHMARKS.md). The model is::

    "image" (S, S, 1) in [0, 1] -> EfficientNet-Lite (radtriage.backbones, ImageNet weights, frozen)
      -> "gradcam_target" (the last feature map) -> global average pooling -> "features"
      -> "standardize" -> "logits" Dense -> "probabilities" sigmoid

so everything after ``gradcam_target`` is linear and Grad-CAM is the exact per-region contribution
of the map to each logit. The heads come from :func:`radtriage.frontends.fit_head` (balanced L2
logistic regression per class on standardized features, NaN labels ignored).

Data, read at run time from the shared data folder (never copied into the repository):

- chest: the NIH sample; its fixed validation split (:func:`radtriage.splits.nih_validation_mask`)
  is never trained on. Classes: the 9 NIH-mapped VinBigData classes and "Any finding" (NIH's
  "No Finding" complement); the 5 classes NIH does not label get no head (provenance "none") and
  are never flagged.
- mura: FracAtlas upper limb (hand, shoulder, hand+shoulder), normal vs fracture as "Abnormal",
  split 70/15/15 by :func:`radtriage.splits.stratified_group_split` over part x label with
  byte-identical files kept together.

Temperatures and thresholds are fitted on the validation split; a class is flagged only when it has
real labels and its validation AUROC's 95 % interval lies above 0.5 (``metadata.flaggable``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radtriage import contract, evaluation, labels, locations, tasks
from radtriage.contract import FEATURES_LAYER, GRADCAM_LAYER, LOGITS_LAYER, PROBABILITIES_LAYER, calibrate
from radtriage.runs.config import RunCommon, check_recipe
from radtriage.splits import nih_validation_mask, stratified_group_split

RECIPE = "pretrained"
DATA_DIR_ENV = "RADTRIAGE_DATA_DIR"
FRACATLAS_FRACTIONS = (0.70, 0.15, 0.15)  # train, validation, test
FRACATLAS_SALT = "radtriage-fracatlas-v1"
SPLITS = ("train", "validation", "test")
UPPER_LIMB_PARTS = labels.FRACATLAS_UPPER_LIMB_PARTS


@dataclass(frozen=True)
class BackboneConfig:
    """The frozen feature extractor, recorded in the model's metadata.

    Attributes:
        variant: EfficientNet-Lite variant ("lite0", "lite1", "lite2").
        size: input side S in pixels (the model's preprocessing size).
        pooling: "head": average of the 1280-channel head map; "stages": averages of the outputs
            of stages 4-7 concatenated (the last stage's map is then the Grad-CAM target).
    """

    variant: str = "lite0"
    size: int = 224
    pooling: str = "head"

    def __post_init__(self) -> None:
        if self.pooling not in ("head", "stages"):
            raise ValueError(f"pooling must be 'head' or 'stages', got {self.pooling!r}")
        if self.size < 32:
            raise ValueError(f"size must be >= 32, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "size": self.size, "pooling": self.pooling}


@dataclass(frozen=True)
class FinetuneConfig:
    """Optional fine-tuning after the heads are fitted (``epochs`` 0 = the backbone stays frozen).

    Attributes:
        epochs: maximum epochs (early stopping on validation macro AUROC keeps the best).
        from_stage: backbone stages >= this (1-7) are trained; earlier ones and every BatchNorm stay
            frozen (BatchNorm statistics of a few hundred images would be worse than ImageNet's).
        learning_rate: Adam learning rate.
        batch_size: images per step.
        patience: epochs without a better validation AUROC before stopping.
        horizontal_flip: flip augmentation (limbs: yes; chests: no, anatomy is lateralised).
    """

    epochs: int = 0
    from_stage: int = 5
    learning_rate: float = 1e-4
    batch_size: int = 16
    patience: int = 3
    horizontal_flip: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0 or not 1 <= self.from_stage <= 7 or self.learning_rate <= 0 or self.batch_size < 1:
            raise ValueError("finetune needs epochs >= 0, 1 <= from_stage <= 7, learning_rate > 0, batch_size >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def finetune(model: Any, ft: FinetuneConfig, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
             y_val: np.ndarray, verbose: int = 0) -> dict[str, list[float]]:
    """Train the backbone's stages >= ``ft.from_stage`` and the logits layer, BatchNorm frozen.

    The masked BCE of :mod:`radtriage.training` on the probabilities, Adam, radiograph augmentation of
    :mod:`radtriage.pipeline`, early stopping on validation macro AUROC with the best weights restored.

    Returns:
        The per-epoch logs.
    """
    import keras

    from radtriage.backbones import stage_of
    from radtriage.pipeline import AugmentConfig, make_dataset
    from radtriage.training import MONITOR, MaskedBinaryCrossentropy, ValidationAUROC

    for layer in model.layers:
        stage = stage_of(layer.name)
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = (layer.name == LOGITS_LAYER or (stage is not None and stage >= ft.from_stage)) and not is_bn
    model.compile(keras.optimizers.Adam(ft.learning_rate), MaskedBinaryCrossentropy())
    train_ds = make_dataset(x_train, y_train, ft.batch_size, augment=AugmentConfig(horizontal_flip=ft.horizontal_flip),
                            shuffle=True, seed=0)
    val_ds = make_dataset(x_val, y_val, 32)
    history = model.fit(train_ds, epochs=ft.epochs, verbose=verbose, callbacks=[
        ValidationAUROC(val_ds, y_val),
        keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=ft.patience, restore_best_weights=True),
    ])
    model.trainable = False
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def adapt_backbone(model: Any, cfg: BackboneConfig, ft: FinetuneConfig, data: Path, cache_dir: str, workers: int,
                   progress: bool) -> dict[str, Any]:
    """Adapt the backbone to real chest radiographs first: fine-tune it on Kermany's paediatric x-rays
    (normal / bacterial / viral pneumonia) and copy the adapted backbone weights into ``model``.

    Early stopping watches Kermany's own test split; the project's NIH validation split is not
    touched. Returns what the metadata records (images, epochs, Kermany test macro AUROC).
    """
    import keras

    from radtriage import frontends
    from radtriage.backbones import stage_of
    from radtriage.datasets.kermany import KermanyDataset
    from radtriage.prepare import load_cached, prepare
    from radtriage.preprocess import PreprocessConfig
    from radtriage.runs.calibration import predict_logits
    from radtriage.runs.sources import drop_failed

    root = data / "kermany-pediatric"
    parts = {s: KermanyDataset(root, s) for s in ("train", "test")}
    classes = list(parts["train"].labels)
    table = pd.concat([d.table for d in parts.values()], ignore_index=True)
    index = prepare(table, PreprocessConfig(size=cfg.size), cache_dir, workers, progress)
    tables = {s: drop_failed(d.table, index) for s, d in parts.items()}
    x = {s: load_cached(index, t["image_id"].tolist()) for s, t in tables.items()}
    y = {s: t[classes].to_numpy(np.float32) for s, t in tables.items()}
    temp = build_linear_model(cfg, len(classes))
    extractor = keras.Model(temp.input, temp.get_layer(FEATURES_LAYER).output)
    frontends.set_head(temp, frontends.fit_head(extractor.predict(x["train"], batch_size=16, verbose=0), y["train"]))
    history = finetune(temp, ft, x["train"], y["train"], x["test"], y["test"], verbose=2 if progress else 0)
    copied = 0
    for layer in temp.layers:
        if stage_of(layer.name) is not None and layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
            copied += 1
    auroc = evaluation.macro_auroc(y["test"], calibrate(predict_logits(temp, x["test"]), 1.0), n_boot=0)["auroc"]
    return {"dataset": "Kermany paediatric chest x-rays (normal / bacterial / viral pneumonia), train split",
            "images": int(len(x["train"])), "epochs_run": len(history.get("loss", [])), **ft.to_dict(),
            "kermany_test_macro_auroc": round(float(auroc), 4), "layers_copied": copied}


def _features(cfg: BackboneConfig, weights: str | None) -> tuple[Any, Any]:
    """(inputs, "features" tensor) of the frozen backbone, with the Grad-CAM target named."""
    import keras

    from radtriage import backbones

    net = backbones.efficientnet_lite(cfg.variant, (cfg.size, cfg.size, 1), include_top=False, weights=weights,
                                      feature_map_name=GRADCAM_LAYER if cfg.pooling == "head" else "head_relu6")
    net.trainable = False
    if cfg.pooling == "head":
        maps = [net.get_layer(GRADCAM_LAYER).output]
    else:
        last = {}
        for b in backbones.block_specs(cfg.variant):
            last[b.stage] = b.name
        maps = []
        for stage in (4, 5, 6, 7):
            name = f"{last[stage]}_add" if f"{last[stage]}_add" in {l.name for l in net.layers} else f"{last[stage]}_project_bn"
            maps.append(net.get_layer(name).output)
        maps[-1] = keras.layers.Activation("linear", name=GRADCAM_LAYER)(maps[-1])
    pooled = [keras.layers.GlobalAveragePooling2D(name=f"pool{i}")(m) for i, m in enumerate(maps)]
    feats = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate()(pooled)
    feats = keras.layers.Activation("linear", name=FEATURES_LAYER)(feats)
    return net.input, feats


def build_feature_extractor(cfg: BackboneConfig, weights: str | None = "imagenet") -> Any:
    """Input (S, S, 1) in [0, 1] -> (F,) float32 pooled features of the frozen backbone."""
    import keras

    inputs, feats = _features(cfg, weights)
    return keras.Model(inputs, feats, name=f"{cfg.variant}_features")


def build_linear_model(cfg: BackboneConfig, n_outputs: int, weights: str | None = "imagenet",
                       activation: str = "sigmoid") -> Any:
    """The whole flat model: backbone -> features -> "standardize" -> "logits" -> "probabilities".

    The head is untrained until :func:`radtriage.frontends.set_head` copies a fitted one in.
    ``activation``: "sigmoid" (triage models: independent classes) or "softmax" (the anatomy gate).
    """
    import keras

    inputs, feats = _features(cfg, weights)
    z = keras.layers.Normalization(axis=-1, name="standardize")(feats)
    logits = keras.layers.Dense(n_outputs, name=LOGITS_LAYER)(z)
    probs = keras.layers.Activation(activation, name=PROBABILITIES_LAYER, dtype="float32")(logits)
    return keras.Model(inputs, probs, name=f"pretrained_{cfg.variant}_linear")


# ------------------------------------------------------------------------------------ data


def shared_data() -> Path:
    """The shared real-data folder: ``$RADTRIAGE_DATA_DIR``, else ``../shared/data`` beside the checkout."""
    return Path(os.environ.get(DATA_DIR_ENV) or locations.project_root().parent / "shared" / "data")


def nih_table(root: str | Path) -> pd.DataFrame:
    """The NIH sample with an "Any finding" column and a ``split`` column (train | validation)."""
    from radtriage.datasets import NIHDataset

    table = NIHDataset(root).table.copy()
    table[labels.ANY_FINDING] = 1.0 - table["no_finding"].astype(np.float32)
    table["split"] = np.where(nih_validation_mask(table["patient_id"].astype(str)), "validation", "train")
    return table


def fracatlas_table(root: str | Path, parts: tuple[str, ...] = UPPER_LIMB_PARTS) -> pd.DataFrame:
    """FracAtlas images of ``parts`` with a ``split`` column (train | validation | test), stratified by
    part x label, byte-identical files together."""
    from radtriage.datasets.fracatlas import FracAtlasDataset

    table = FracAtlasDataset(root, parts).table.copy()
    strata = table["part"] + ":" + table[labels.MURA_CLASSES[0]].astype(int).astype(str)
    part = stratified_group_split(table["patient_id"], strata, FRACATLAS_FRACTIONS, FRACATLAS_SALT)
    table["split"] = [SPLITS[i] for i in part]
    return table


def load_inputs(paths: list[str], size: int, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs of files by the shared path (:func:`radtriage.preprocess.load_and_preprocess_many`).

    Returns:
        (N, S, S, 1) float32 in [0, 1] (zeros where a file failed) and the (N,) bool mask of files
        that loaded.
    """
    from radtriage.preprocess import LoadFailure, PreprocessConfig, load_and_preprocess_many

    config = PreprocessConfig(size=size)
    out = np.zeros((len(paths), size, size, 1), np.float32)
    ok = np.zeros(len(paths), bool)
    for i, x in enumerate(load_and_preprocess_many(paths, config, workers=workers)):
        if not isinstance(x, LoadFailure):
            out[i], ok[i] = x, True
    return out, ok


# ------------------------------------------------------------------------------------ the run

CHEST_STATEMENT = (
    "Trained on 357 real adult chest x-rays of the NIH ChestX-ray14 sample (report-mined labels for 9 of the "
    "14 classes, and 'Any finding' = not 'No Finding'), on top of ImageNet EfficientNet-Lite features. "
    "Aortic enlargement, Calcification, ILD, Lung Opacity and Other lesion had no training labels: the model "
    "outputs a constant for them and never flags them. Not trained on VinBigData; retrain with "
    "notebooks/train_chest.ipynb for that."
)
LIMB_STATEMENT = (
    "Trained on real upper-limb radiographs of FracAtlas (hand, wrist, forearm, shoulder, whole arm; "
    "radiologist-labelled normal vs fracture), on top of ImageNet EfficientNet-Lite features. It learnt "
    "fractures only: MURA's 'abnormal' also covers hardware, arthritis and lesions, which it was not trained "
    "on; there were no elbow- or humerus-only labels and no ages. Each image is judged alone (FracAtlas has no "
    "studies); a study's verdict is the mean of its images' probabilities."
)


@dataclass
class PretrainedRunConfig(RunCommon):
    """A run of the pretrained recipe (see the module docstring).

    Attributes:
        task: "chest" (NIH sample) or "mura" (FracAtlas upper limb).
        data_dir: the shared real-data folder ("" = :func:`shared_data`).
        backbone: :class:`BackboneConfig` as a dict ({} = defaults).
        c: inverse L2 strength of the logistic heads (on standardized features).
        finetune: :class:`FinetuneConfig` as a dict ({} = frozen backbone, heads only).
        adapt: chest only: a :class:`FinetuneConfig` as a dict to adapt the backbone to real chest
            radiographs on Kermany's paediatric x-rays first ({} = no adaptation).
        model_dir: output model folder ("" = model/<task>).
        name: model name in the metadata ("" = <task>-pretrained-<variant>-<size>).
        recipe: "pretrained".
        (shared settings: :class:`radtriage.runs.config.RunCommon`)
    """

    task: str = "chest"
    data_dir: str = ""
    backbone: dict[str, Any] = field(default_factory=dict)
    c: float = 1e-3
    finetune: dict[str, Any] = field(default_factory=dict)
    adapt: dict[str, Any] = field(default_factory=dict)
    model_dir: str = ""
    name: str = ""
    recipe: str = RECIPE

    def __post_init__(self) -> None:
        check_recipe(self, RECIPE)
        tasks.get(self.task)
        if self.c <= 0:
            raise ValueError("c must be positive")
        self.backbone_config()  # validates
        self.finetune_config()
        FinetuneConfig(**self.adapt)
        if self.adapt and self.task != "chest":
            raise ValueError("adapt (Kermany chest x-rays) is for the chest task only")
        evaluation.threshold_rule_text(self.threshold_rule, self.target_sensitivity, self.target_specificity)

    def backbone_config(self) -> BackboneConfig:
        return BackboneConfig(**self.backbone)

    def finetune_config(self) -> FinetuneConfig:
        return FinetuneConfig(**self.finetune)


def _tables(run: PretrainedRunConfig) -> tuple[dict[str, pd.DataFrame], list[str], str]:
    """Split tables, the model's classes, and the data statement of the run's task."""
    data = Path(run.data_dir) if run.data_dir else shared_data()
    if run.task == "chest":
        table, classes, statement = nih_table(data / "nih-cxr-sample"), list(labels.CHEST_OUTPUTS), CHEST_STATEMENT
    else:
        table, classes, statement = fracatlas_table(data / "fracatlas"), list(labels.MURA_CLASSES), LIMB_STATEMENT
    for c in classes:
        if c not in table:
            table[c] = np.nan  # a class this data never labels: missing, not negative
    return {s: table[table["split"] == s].reset_index(drop=True) for s in SPLITS if (table["split"] == s).any()}, \
        classes, statement


def _flaggable(metrics: dict[str, Any], classes: list[str], provenance: dict[str, str]) -> dict[str, bool]:
    """A class may be flagged when it has real labels and its validation AUROC interval lies above 0.5."""
    rows = {r["class"]: r for r in metrics.get("per_class", [])}
    out = {}
    for c in classes:
        lo = rows.get(c, {}).get("auroc_lo")
        out[c] = provenance[c] == labels.PROVENANCE_REAL and lo is not None and np.isfinite(lo) and lo > 0.5
    return out


def _flag_rates(table: pd.DataFrame, probs: np.ndarray, cal: Any, classes: list[str],
                flaggable: dict[str, bool]) -> dict[str, Any]:
    """Share of validation images with any flag, among normal and among abnormal images (the card's line)."""
    from radtriage import contract

    may = np.array([flaggable[c] for c in classes])
    on = contract.flags(probs, cal.thresholds, may)
    findings = [i for i, c in enumerate(classes) if c != labels.ANY_FINDING]
    normal = (table["no_finding"] == 1).to_numpy() if "no_finding" in table else (table[classes[0]] == 0).to_numpy()

    def share(rows: np.ndarray, cols: list[int]) -> str:
        n = int(rows.sum())
        k = int(on[rows][:, cols].any(axis=1).sum()) if n else 0
        return f"{k} of {n} ({k / n:.0%})" if n else "no such image"

    out = {"normal images with any finding flagged": share(normal, findings),
           "abnormal images with any finding flagged": share(~normal, findings)}
    if labels.ANY_FINDING in classes:
        i = classes.index(labels.ANY_FINDING)
        out["normal images flagged 'Any finding'"] = share(normal, [i])
        out["abnormal images flagged 'Any finding'"] = share(~normal, [i])
    return out


def train_pretrained(run: PretrainedRunConfig) -> Any:
    """Extract frozen features, fit the heads, calibrate, evaluate and save (see the module docstring)."""
    import time

    import keras

    from radtriage import frontends
    from radtriage.prepare import load_cached, prepare
    from radtriage.preprocess import PreprocessConfig
    from radtriage.runs.calibration import evaluate_split, fit_calibration, predict_logits
    from radtriage.runs.saving import HeadRecord, RunResult, save_run
    from radtriage.runs.sources import describe_split, drop_failed

    start = time.perf_counter()
    cfg = run.backbone_config()
    config = PreprocessConfig(size=cfg.size)
    parts, classes, statement = _tables(run)
    table = pd.concat(parts.values(), ignore_index=True)
    index = prepare(table, config, run.cache_dir, run.workers, run.progress)
    parts = {n: drop_failed(p, index) for n, p in parts.items()}
    ft = run.finetune_config()
    data = Path(run.data_dir) if run.data_dir else shared_data()
    model = build_linear_model(cfg, len(classes))
    adapted = adapt_backbone(model, cfg, FinetuneConfig(**run.adapt), data, run.cache_dir, run.workers,
                             run.progress) if run.adapt else None
    x = {n: load_cached(index, p["image_id"].tolist()) for n, p in parts.items()}
    extractor = keras.Model(model.input, model.get_layer(FEATURES_LAYER).output)
    feats = {n: extractor.predict(x[n], batch_size=16, verbose=0) for n in parts}
    y = {n: p[classes].to_numpy(np.float32) for n, p in parts.items()}
    head = frontends.fit_head(feats["train"], y["train"], c=run.c)
    frontends.set_head(model, head)
    history: dict[str, list[float]] = {}
    if ft.epochs:
        history = finetune(model, ft, x["train"], y["train"], x["validation"], y["validation"],
                           verbose=2 if run.progress else 0)
    model_dir = Path(run.model_dir or f"model/{run.task}")
    source = "NIH ChestX-ray14 sample" if run.task == "chest" else "FracAtlas upper limb"
    how = {"train": "the rest, never scored", "validation": (
        "the fixed 30 % patient hash split of radtriage.splits, never trained on" if run.task == "chest" else
        "15 % by part x label, identical files together, never trained on"),
        "test": "15 % by part x label, identical files together, never trained on nor tuned on"}
    names = {n: describe_split(f"{source} {n}", p, how[n]) for n, p in parts.items()}
    logits = {n: predict_logits(model, x[n]) if ft.epochs else head.logits(feats[n]) for n in parts if n != "train"}
    cal = fit_calibration(y["validation"], logits["validation"], classes, run.threshold_rule, run.target_sensitivity,
                          names["validation"], run.target_specificity)
    note = " (also used for temperatures and thresholds: sensitivity/specificity are optimistic; AUROC is not)"
    metrics = {n: evaluate_split(y[n], logits[n], classes, cal, names[n] + (note if n == "validation" else ""),
                                 model_dir / "plots" / n, run.n_boot) for n in ("test", "validation") if n in parts}
    if run.task != "chest":  # per part, with Cohen's kappa: each image is its own study
        for n in metrics:
            p = calibrate(logits[n], cal.temperature)[:, 0]
            per_image = pd.DataFrame({"study_id": parts[n]["image_id"], "study_type": parts[n]["part"],
                                      "label": y[n][:, 0].astype(int), "probability": p,
                                      "threshold": float(cal.thresholds[0])})
            metrics[n].update(evaluation.evaluate_mura(per_image, names[n]))
    positives = {c: int(n) for c, n in zip(classes, contract.positive_labels(y["train"]).sum(axis=0))}
    provenance = contract.class_provenance(classes, y["train"], np.zeros(len(y["train"]), bool))  # all real
    flaggable = _flaggable(metrics["validation"], classes, provenance)
    val_probs = calibrate(logits["validation"], cal.temperature)
    training = {
        "data_statement": statement + (
            f" Before that, the backbone was adapted to real chest radiographs on {adapted['images']:,} paediatric "
            "chest x-rays of Kermany et al. (normal / bacterial / viral pneumonia)." if adapted else ""),
        "data": [f"{source}: {len(parts['train'])} training images (real labels)"],
        "splits": "; ".join(names.values()),
        "phantom_only": False,
        "backbone": {**cfg.to_dict(), "weights": _weights(cfg.variant),
                     "adapted_on": adapted or "none",
                     "fine_tuning": {**ft.to_dict(), "epochs_run": len(history.get("loss", []))} if ft.epochs
                     else "none: frozen features, fitted heads"},
        "c": run.c,
        "images": {n: int(len(p)) for n, p in parts.items()},
        "train_positives": positives,
        **{f"{n}_files": sorted(parts[n]["image_id"].tolist()) for n in ("validation", "test") if n in parts},
        "excluded_images": f"{len(table) - len(index.image_ids)} images could not be loaded",
        "flag_rule": "a class is flagged only when it has real training labels and its validation AUROC 95 % "
                     "interval lies above 0.5; then when its calibrated probability >= its threshold",
        "validation_flag_rates": _flag_rates(parts["validation"], val_probs, cal, classes, flaggable),
    }
    record = HeadRecord(config, {"c": run.c, "backbone": cfg.to_dict(), "finetune": ft.to_dict(), "adapt": run.adapt},
                        f"pretrained_{cfg.variant}_linear")
    name = run.name or f"{run.task}-pretrained-{cfg.variant}-{cfg.size}"
    metadata = save_run(model, model_dir, run.task, name, record, cal, classes, metrics, provenance, training,
                        run.examples_dir, flaggable)
    # the OOD score reads the final model's features (fine-tuning changed them), then the export carries them
    from radtriage.artifact import read_metadata
    from radtriage.model_card import CARD_FILE, set_ood_section
    from radtriage.runs.ood import fit_pretrained_ood, model_features
    from radtriage.runs.saving import export_serving

    fit_pretrained_ood(model_dir, run.task, parts, {n: model_features(model, x[n]) for n in parts}
                       if ft.epochs else feats)
    metadata = export_serving(model_dir) or read_metadata(model_dir)
    set_ood_section(model_dir / CARD_FILE, metadata.to_dict())
    return RunResult(model_dir, metadata, metrics, history, time.perf_counter() - start,
                     {n: int(len(p)) for n, p in parts.items()})


def _weights(variant: str) -> dict[str, str]:
    from radtriage import backbones

    return backbones.weights_provenance(variant)
