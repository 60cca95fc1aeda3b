"""Training: one :class:`TrainConfig` drives notebooks and the CLI alike.

Loss: binary cross-entropy masked where a label is NaN (missing is not negative), with a per-class
positive weight ``neg/pos`` from the training labels (clipped) against class imbalance.
Model selection: validation macro AUROC (classes with positives and negatives in val), logged as
``val_macro_auroc`` by :class:`ValidationAUROC`; checkpointing, early stopping and
ReduceLROnPlateau all watch it. The returned model holds the best epoch's weights.

Scaling out (``TrainConfig.strategy``), the model is built and compiled inside ``strategy.scope()``:

- ``"default"``: one device (CPU, or the first GPU).
- ``"mirrored"``: ``tf.distribute.MirroredStrategy`` - synchronous data parallelism over all GPUs
  of one machine. ``batch_size`` is the GLOBAL batch (split across replicas): scale it, and
  usually the learning rate, with the number of GPUs.
- ``"multi_worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` over several machines. Start the
  same script on every worker with a ``TF_CONFIG`` environment variable, e.g. on worker 0 of 2::

      TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                  "task": {"type": "worker", "index": 0}}' radtriage train ...

  The strategy must be created before any other TensorFlow op, so call :func:`train` (or
  :func:`get_strategy`) first in the process. Each worker must see the same arrays (e.g. the
  prepare cache on a shared file system); tf.data shards the batches by DATA. Give every worker
  its own ``output_dir`` or let only the chief (index 0) keep its files.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from radtriage import architectures, evaluation, tasks
from radtriage.pipeline import AugmentConfig, make_dataset
from radtriage.preprocess import PreprocessConfig

Schedule = Literal["plateau", "cosine", "constant"]
StrategyName = Literal["default", "mirrored", "multi_worker"]
MONITOR = "val_macro_auroc"
CONFIG_FILE = "train_config.json"
CHECKPOINT_FILE = "best.weights.h5"
HISTORY_FILE = "history.csv"
PROB_EPS = 1e-7


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as JSON beside its outputs and in model metadata.

    Attributes:
        task: a task of :mod:`radtriage.tasks`: "chest" (14 findings) or "mura" (1 output: abnormal).
        architecture: a key of :data:`radtriage.architectures.ARCHITECTURES`.
        architecture_kwargs: the builder's parameters (width, depth, dropout, blocks, ...).
        preprocess: the preprocessing the input arrays were made with (its size = model input).
        augment: augmentation ranges, or None for no augmentation.
        batch_size: global batch size.
        epochs: maximum number of epochs.
        learning_rate: initial AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        lr_schedule: "plateau" (x0.3 after ``plateau_patience`` epochs without a better val macro
            AUROC), "cosine" (cosine decay to 0 over all steps) or "constant".
        plateau_patience: epochs without improvement before the rate is reduced ("plateau").
        class_weighting: weight positives by neg/pos per class (from the training labels).
        max_pos_weight: the positive weights are clipped to [1/max, max].
        early_stopping_patience: epochs without improvement before stopping.
        seed: seeds Python, NumPy, TF, weight initialisation, order and augmentation.
        output_dir: where the config, checkpoint and CSV history go.
        strategy: "default", "mirrored" or "multi_worker" (see the module docstring).
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).
    """

    task: str = "chest"
    architecture: str = "efficientnet_lite"  # ImageNet-pretrained, top stages fine-tuned, BatchNorm frozen
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    batch_size: int = 32
    epochs: int = 30
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: Schedule = "plateau"
    plateau_patience: int = 2
    class_weighting: bool = True
    max_pos_weight: float = 50.0
    early_stopping_patience: int = 6
    seed: int = 0
    output_dir: str = "runs/train"
    strategy: StrategyName = "default"
    verbose: int = 1

    def __post_init__(self) -> None:
        tasks.get(self.task)  # raises ValueError naming the known tasks
        if self.architecture not in architectures.ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; known: {', '.join(architectures.ARCHITECTURES)}")
        if self.lr_schedule not in ("plateau", "cosine", "constant"):
            raise ValueError(f"lr_schedule must be plateau, cosine or constant, got {self.lr_schedule!r}")
        if self.strategy not in ("default", "mirrored", "multi_worker"):
            raise ValueError(f"strategy must be default, mirrored or multi_worker, got {self.strategy!r}")
        if self.batch_size < 1 or self.epochs < 1 or self.learning_rate <= 0 or self.max_pos_weight < 1:
            raise ValueError("need batch_size >= 1, epochs >= 1, learning_rate > 0, max_pos_weight >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        d["augment"] = None if self.augment is None else self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training parameters {sorted(unknown)}")
        d = dict(d)
        if "preprocess" in d:
            d["preprocess"] = PreprocessConfig.from_dict(d["preprocess"])
        if d.get("augment") is not None:
            d["augment"] = AugmentConfig.from_dict(d["augment"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))


# ------------------------------------------------------------------------------------- loss


def positive_weights(labels: np.ndarray, max_weight: float = 50.0) -> np.ndarray:
    """Per-class positive weight ``neg / pos`` over the labelled (non-NaN) entries.

    Args:
        labels: (N, C) in {0, 1, NaN}.
        max_weight: weights are clipped to [1/max_weight, max_weight].

    Returns:
        float32 (C,). 1.0 for a class with no positive or no negative label.
    """
    labels = np.asarray(labels, dtype=np.float64)
    pos = np.nansum(labels == 1, axis=0).astype(np.float64)
    neg = np.nansum(labels == 0, axis=0).astype(np.float64)
    w = np.ones(labels.shape[1])
    ok = (pos > 0) & (neg > 0)
    w[ok] = np.clip(neg[ok] / pos[ok], 1.0 / max_weight, max_weight)
    return w.astype(np.float32)


@keras.saving.register_keras_serializable(package="radtriage")
class MaskedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy on probabilities, averaged over the labelled (non-NaN) entries only.

    ``loss = sum_ij m_ij * -(w_j y_ij log p_ij + (1 - y_ij) log(1 - p_ij)) / max(1, sum_ij m_ij)``
    with ``m = ~isnan(y)`` and ``w`` the per-class positive weights (1 = plain BCE).

    Args:
        pos_weight: (C,) positive weights, or None for 1.
    """

    def __init__(self, pos_weight: Any = None, name: str = "masked_bce", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.pos_weight = None if pos_weight is None else [float(v) for v in np.ravel(pos_weight)]

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.clip(ops.cast(y_pred, "float32"), PROB_EPS, 1.0 - PROB_EPS)
        mask = ops.logical_not(ops.isnan(y_true))
        y = ops.where(mask, y_true, 0.0)
        w = 1.0 if self.pos_weight is None else ops.convert_to_tensor(self.pos_weight, "float32")
        per_entry = -(w * y * ops.log(y_pred) + (1.0 - y) * ops.log(1.0 - y_pred))
        per_entry = ops.where(mask, per_entry, 0.0)  # where, not *: 0 * NaN would be NaN
        return ops.sum(per_entry) / ops.maximum(ops.sum(ops.cast(mask, "float32")), 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pos_weight": self.pos_weight}


# ---------------------------------------------------------------------------- callbacks


def macro_auroc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean AUROC over classes with both labels present (NaN labels ignored); NaN if none or diverged."""
    if not np.all(np.isfinite(y_prob)):
        return math.nan
    return float(evaluation.macro_auroc(y_true, y_prob, n_boot=0)["auroc"])


class ValidationAUROC(keras.callbacks.Callback):
    """Adds ``val_macro_auroc`` to the epoch logs (put it before callbacks that monitor it).

    Predictions go through one traced function over the whole, un-distributed validation set,
    so every worker of a multi-worker run scores all rows (``model.predict`` would return only
    the worker's shard) and no per-epoch ``predict`` set-up is paid.

    Args:
        dataset: un-augmented, un-shuffled validation batches (x, y), not distributed.
        labels: (N, C) validation labels in {0, 1, NaN}, in the dataset's order.
    """

    def __init__(self, dataset: tf.data.Dataset, labels: np.ndarray) -> None:
        super().__init__()
        self.dataset, self.labels = dataset, np.asarray(labels, np.float32)
        self._predict: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        spec = tf.TensorSpec((None, *self.model.input_shape[1:]), tf.float32)
        self._predict = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        probs = np.concatenate([self._predict(x).numpy() for x, _ in self.dataset])
        if logs is not None:
            logs[MONITOR] = macro_auroc(self.labels, probs)


def get_strategy(name: StrategyName) -> tf.distribute.Strategy:
    """The tf.distribute strategy for ``name`` ("default", "mirrored", "multi_worker")."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def _learning_rate(config: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, steps_per_epoch * config.epochs)
    return config.learning_rate


def _callbacks(config: TrainConfig, val_ds: tf.data.Dataset, val_labels: np.ndarray) -> list[keras.callbacks.Callback]:
    out = Path(config.output_dir)
    callbacks: list[keras.callbacks.Callback] = [
        ValidationAUROC(val_ds, val_labels),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(
            str(out / CHECKPOINT_FILE), monitor=MONITOR, mode="max", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="max", patience=config.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.CSVLogger(str(out / HISTORY_FILE)),
    ]
    if config.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor=MONITOR, mode="max", factor=0.3,
                                              patience=config.plateau_patience, min_lr=1e-6)
        )
    return callbacks


def _with_data_sharding(ds: tf.data.Dataset) -> tf.data.Dataset:
    # the datasets read arrays, not files: multi-worker runs must shard by batch (DATA)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _check_arrays(config: TrainConfig, images: np.ndarray, labels: np.ndarray, split: str) -> None:
    size = config.preprocess.size
    if images.ndim != 4 or images.shape[1:] != (size, size, 1):
        raise ValueError(f"{split} images must be (N, {size}, {size}, 1) for preprocess size {size}, got {images.shape}")
    if labels.ndim != 2 or len(labels) != len(images):
        raise ValueError(f"{split} labels must be (N, C) with N = {len(images)}, got {labels.shape}")


def build_compiled_model(config: TrainConfig, n_outputs: int, pos_weight: np.ndarray | None,
                         steps_per_epoch: int) -> keras.Model:
    """The configured architecture, compiled with AdamW and the masked loss (call inside a strategy scope)."""
    model = architectures.build_model(config.architecture, config.preprocess.size, n_outputs,
                                      **config.architecture_kwargs)
    optimizer = keras.optimizers.AdamW(_learning_rate(config, steps_per_epoch), weight_decay=config.weight_decay)
    model.compile(optimizer=optimizer, loss=MaskedBinaryCrossentropy(pos_weight))
    return model


def train(config: TrainConfig, train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray,
          val_labels: np.ndarray) -> tuple[keras.Model, keras.callbacks.History]:
    """Train a model as ``config`` says and return it with the best validation macro AUROC weights.

    Args:
        config: the run's parameters.
        train_images: (N, S, S, 1) float16/32 in [0, 1], S = ``config.preprocess.size``; may be a memmap.
        train_labels: (N, C) in {0, 1, NaN}.
        val_images: (M, S, S, 1) like ``train_images``; held out from training.
        val_labels: (M, C) in {0, 1, NaN}; at least one class needs positives and negatives.

    Returns:
        (model, history): the flat Keras model (compiled) and the Keras History; ``history.history``
        holds ``loss``, ``val_macro_auroc`` and ``learning_rate`` per epoch. The output directory
        gets ``train_config.json``, ``best.weights.h5`` and ``history.csv``.
    """
    strategy = get_strategy(config.strategy)  # first: multi-worker must start before other TF ops
    _check_arrays(config, train_images, train_labels, "training")
    _check_arrays(config, val_images, val_labels, "validation")
    if train_labels.shape[1] != val_labels.shape[1]:
        raise ValueError("training and validation labels have different numbers of classes")
    keras.utils.set_random_seed(config.seed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(config.to_json())

    train_ds = _with_data_sharding(make_dataset(train_images, train_labels, config.batch_size,
                                                augment=config.augment, shuffle=True, seed=config.seed))
    val_ds = make_dataset(val_images, val_labels, config.batch_size)  # read whole by ValidationAUROC
    steps_per_epoch = math.ceil(len(train_images) / config.batch_size)
    pos_weight = positive_weights(train_labels, config.max_pos_weight) if config.class_weighting else None
    with strategy.scope():
        model = build_compiled_model(config, train_labels.shape[1], pos_weight, steps_per_epoch)
    history = model.fit(train_ds, epochs=config.epochs, callbacks=_callbacks(config, val_ds, val_labels),
                        verbose=config.verbose, shuffle=False)  # the dataset shuffles itself
    return model, history
