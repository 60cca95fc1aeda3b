"""Training speed of the chest architecture: images/s of ``fit`` and time per epoch on the NIH sample.

Architecture: the shipped ``model/chest``'s recorded ``train_config`` when it was trained by the Keras
loop, else the training default (``TrainConfig(task="chest")``: ImageNet EfficientNet-Lite0, top stages); the run's own TrainConfig otherwise (batch size,
augmentation, AdamW, masked loss), built by ``radtriage.training.build_compiled_model``.

1. images/s: ``model.fit`` on in-memory phantom arrays through ``radtriage.pipeline.make_dataset``
   (shuffle + augmentation as in training); ``--warmup-steps`` un-timed, then ``--steps`` timed.
2. Epoch time on the NIH sample (``../shared/data/nih-cxr-sample``, 500 images; skipped with the
   reason when absent): ``prepare`` into a temp cache (timed), patient split 80/20, then
   ``radtriage.training.train`` for ``--epochs`` epochs with its real callbacks (validation AUROC,
   checkpoint, early stopping, CSV log); wall time of each epoch from a timing callback.

Run: ``.venv-bench/bin/python bench/bench_training.py [--steps 20] [--epochs 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

C.quiet_tf()
NIH = C.ROOT.parent / "shared" / "data" / "nih-cxr-sample"


def chest_train_config(output_dir: Path) -> tuple[Any, str, dict[str, Any] | None]:
    """(TrainConfig or None, note, recorded train_config). None: the recorded model is not Keras-trained."""
    from radtriage.training import TrainConfig

    pinned = os.environ.get(C.PIN_ENV)
    meta = (Path(pinned) if pinned else C.SHIPPED_CHEST) / "metadata.json"
    if meta.is_file():
        recorded = json.loads(meta.read_text()).get("train_config")
        which = os.environ.get(C.PIN_NOTE_ENV, "shipped model/chest") if pinned else "shipped model/chest"
        if recorded and recorded.get("architecture") == "frontend_linear":
            return None, f"{which}: frontend_linear (fixed filter bank + scikit-learn logistic head)", recorded
        from radtriage.architectures import ARCHITECTURES

        if recorded and recorded.get("architecture") in ARCHITECTURES:
            config = TrainConfig.from_dict({**recorded, "output_dir": str(output_dir), "verbose": 0})
            return config, f"{which}: its recorded train_config ({config.architecture} at {config.preprocess.size}^2)", None
        if recorded:  # fitted heads on a pretrained backbone: measure what a user retraining with Keras gets
            config = TrainConfig(task="chest", output_dir=str(output_dir), verbose=0)
            return config, (f"{which} is {recorded.get('architecture')} (no Keras training loop); measured: the "
                            f"training default {config.architecture} at {config.preprocess.size}^2"), None
    config = TrainConfig(task="chest", output_dir=str(output_dir), verbose=0)
    return config, (f"no shipped model/chest: training default {config.architecture} "
                    f"{config.architecture_kwargs or '(default kwargs)'} at {config.preprocess.size}^2"), None


def nih_arrays(size_config: Any, work: Path, workers: int, limit: int) -> dict[str, Any]:
    """prepare the NIH sample (timed) and split it 80/20 by patient: arrays and labels."""
    from radtriage.datasets.base import split_by_patient
    from radtriage.labels import CHEST_CLASSES
    from radtriage.prepare import load_cached, prepare
    from radtriage.runs import DataSource, load_source

    table = load_source(DataSource("nih", str(NIH))).table
    table = table[table["path"].notna()].reset_index(drop=True)
    if limit:
        table = table.iloc[:limit]
    start = time.perf_counter()
    index = prepare(table, size_config, work / "cache", workers, progress=False)
    prep_s = time.perf_counter() - start
    table = table[table["image_id"].isin(set(index.image_ids))]
    parts = split_by_patient(table, (0.8, 0.2), 0)
    arrays = [(np.asarray(load_cached(index, p["image_id"].astype(str).tolist()), np.float32),
               p[list(CHEST_CLASSES)].to_numpy(np.float32)) for p in parts]
    return {"prepare_s": prep_s, "n_prepared": len(index.image_ids), "n_failed": len(index.failures),
            "train": arrays[0], "val": arrays[1]}


def frontend_training(recorded: dict[str, Any], work: Path, n_phantoms: int, workers: int, limit: int,
                      skip_nih: str) -> dict[str, Any]:
    """The frontend_linear model's training = feature extraction (Keras) + fit_head (scikit-learn)."""
    from radtriage import frontends
    from radtriage.phantoms import chest_batch
    from radtriage.preprocess import PreprocessConfig

    config = frontends.FrontEndConfig.from_dict(recorded["frontend"])
    extractor = frontends.build_feature_extractor(config)
    x = chest_batch(n_phantoms, size=config.size, seed=1, workers=2).images[..., None]
    extractor.predict(x[:32], batch_size=32, verbose=0)  # warm-up (tracing)
    start = time.perf_counter()
    extractor.predict(x, batch_size=32, verbose=0)
    out: dict[str, Any] = {"kind": "frontend", "fit": {"images_per_s": len(x) / (time.perf_counter() - start),
                                                        "images": len(x)}}
    if skip_nih:
        out["nih_skipped"] = skip_nih
        return out
    d = nih_arrays(PreprocessConfig.from_dict(recorded["preprocess"]), work, workers, limit)
    (xt, yt), (xv, _) = d["train"], d["val"]
    start = time.perf_counter()
    feats = extractor.predict(xt, batch_size=32, verbose=0)
    feat_s = time.perf_counter() - start
    start = time.perf_counter()
    frontends.fit_head(feats, yt, c=float(recorded.get("c", 1e-3)))
    head_s = time.perf_counter() - start
    out["nih"] = {"prepare_s": d["prepare_s"], "n_prepared": d["n_prepared"], "n_failed": d["n_failed"],
                  "train_images": len(xt), "val_images": len(xv), "features_s": feat_s, "head_s": head_s}
    return out


class EpochTimer:
    """Keras callback recording each epoch's wall time (fit steps + the other callbacks' epoch end)."""

    def __new__(cls) -> Any:
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []
                self._start = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.seconds.append(time.perf_counter() - self._start)

        return _Timer()


def fit_speed(config: Any, n_images: int, steps: int, warmup_steps: int) -> dict[str, Any]:
    """images/s of fit on phantom arrays (augmented, shuffled), excluding warm-up steps."""
    from radtriage.phantoms import chest_batch
    from radtriage.pipeline import make_dataset
    from radtriage.training import build_compiled_model, positive_weights

    size = config.preprocess.size
    batch = chest_batch(n_images, size=size, seed=1, workers=2)
    x = batch.images[..., None]
    y = batch.labels
    ds = make_dataset(x, y, config.batch_size, augment=config.augment, shuffle=True, seed=0).repeat()
    model = build_compiled_model(config, y.shape[1], positive_weights(y), steps)
    model.fit(ds, steps_per_epoch=warmup_steps, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return {"images_per_s": steps * config.batch_size / seconds, "steps": steps, "batch_size": config.batch_size,
            "seconds": seconds, "params_m": model.count_params() / 1e6}


def nih_epochs(config: Any, work: Path, epochs: int, workers: int, limit: int = 0) -> dict[str, Any]:
    import dataclasses

    from radtriage import training

    d = nih_arrays(config.preprocess, work, workers, limit)
    (xt, yt), (xv, yv) = d["train"], d["val"]
    prep_s = d["prepare_s"]
    index_n, index_failed = d["n_prepared"], d["n_failed"]
    timer = EpochTimer()
    original = training._callbacks
    training._callbacks = lambda *a: original(*a) + [timer]  # bench-only hook: time the real epochs
    try:
        cfg = dataclasses.replace(config, epochs=epochs, early_stopping_patience=epochs + 1)
        training.train(cfg, xt, yt, xv, yv)
    finally:
        training._callbacks = original
    return {"prepare_s": prep_s, "n_prepared": index_n, "n_failed": index_failed,
            "train_images": len(xt), "val_images": len(xv), "epoch_s": timer.seconds,
            "train_images_per_s_last_epoch": len(xt) / timer.seconds[-1] if timer.seconds else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed fit steps")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--phantoms", type=int, default=128, help="distinct phantom images fit cycles over")
    parser.add_argument("--epochs", type=int, default=2, help="NIH epochs (the first includes tracing)")
    parser.add_argument("--workers", type=int, default=2, help="prepare processes")
    parser.add_argument("--skip-nih", action="store_true")
    parser.add_argument("--nih-limit", type=int, default=0, help="use only the first N NIH images (0: all 500)")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    res: dict[str, Any] = {"machine": C.machine()}
    try:
        config, note, recorded = chest_train_config(work / "run")
        res["config_note"] = note
        skip = ("--skip-nih" if args.skip_nih else "" if (NIH / "labels.csv").is_file()
                else f"{NIH} is absent (the real NIH sample is not on this machine)")
        if config is None:
            res.update(frontend_training(recorded, work, args.phantoms, args.workers, args.nih_limit, skip))
        else:
            res["fit"] = fit_speed(config, args.phantoms, args.steps, args.warmup_steps)
            if skip:
                res["nih_skipped"] = skip
            else:
                res["nih"] = nih_epochs(config, work, args.epochs, args.workers, args.nih_limit)
        res["machine"]["loadavg_end"] = C.machine()["loadavg"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    f = res["fit"]
    print("## 4. Training\n")
    if res.get("kind") == "frontend":
        print(f"Model: {note}. Its training is one pass: front-end features of every training image (Keras "
              "predict, fixed filters, no back-propagation), then `frontends.fit_head` (standardize + one L2 "
              "logistic regression per class, scikit-learn). There are no epochs.\n")
        rows = [["front-end features of in-memory phantoms (predict, batch 32)", f"{f['images']} images", "-",
                 f["images_per_s"]]]
        if "nih" in res:
            n = res["nih"]
            rows += [[f"prepare NIH sample ({n['n_prepared']} cached, {n['n_failed']} failed, {args.workers} workers)",
                      "once", n["prepare_s"], n["n_prepared"] / n["prepare_s"]],
                     [f"NIH training split: features of {n['train_images']} images", "extractor.predict",
                      n["features_s"], n["train_images"] / n["features_s"]],
                     ["NIH training split: fit_head (14 logistic regressions)", "scikit-learn", n["head_s"], "-"],
                     ["NIH: whole training (features + head) = the 'epoch'", "one pass", n["features_s"] + n["head_s"],
                      n["train_images"] / (n["features_s"] + n["head_s"])]]
    else:
        print(f"Architecture: {note}; batch {f['batch_size']}, augmentation and optimiser as TrainConfig says; "
              f"{f['params_m']:.2f} M parameters.\n")
        rows = [["fit on in-memory phantom arrays (tf.data, augmented)", f"{f['steps']} steps after "
                 f"{args.warmup_steps} warm-up", f["seconds"], f["images_per_s"]]]
        if "nih" in res:
            n = res["nih"]
            rows.append([f"prepare NIH sample ({n['n_prepared']} cached, {n['n_failed']} failed, {args.workers} "
                         "workers)", "once", n["prepare_s"], n["n_prepared"] / n["prepare_s"]])
            for i, s in enumerate(n["epoch_s"]):
                rows.append([f"NIH epoch {i + 1}{' (incl. tracing)' if i == 0 else ''}: {n['train_images']} train + "
                             f"{n['val_images']} val images, with validation AUROC + checkpoint",
                             "training.train", s, n["train_images"] / s])
    print(C.md_table(["what", "how", "seconds", "images/s"], rows))
    print()
    if "nih_skipped" in res:
        print(f"- NIH epoch skipped: {res['nih_skipped']}")
    print(f"- Load average at start / end: {res['machine']['loadavg']} / {res['machine']['loadavg_end']}")
    C.write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
