"""Which chest model can 357 labelled NIH x-rays train on a CPU? A reproducible search.

Data: ../shared/data/nih-cxr-sample (500 images, one per patient), labels mapped with
``labels.nih_to_chest_vector`` (9 real classes). Split: ``splits.nih_validation_mask`` holds out
143 images; everything is selected by 5-fold cross-validation on the other 357 (image = patient
here), metric = macro AUROC over the 9 classes. Only the final table scores the validation split.

Features are cached under /tmp/chest_research, so re-runs are cheap:

    .venv/bin/python experiments/chest_nih_search.py                # CV table only
    .venv/bin/python experiments/chest_nih_search.py --only baseline,"j4 g124"
    .venv/bin/python experiments/chest_nih_search.py --cnn --val --build   # the final table

--cnn adds the small CNN (about 15 min on 2 busy cores; cached after), --val scores the
validation split (final comparison only), --build fits the recommended configuration as the
shipped Keras model (.h5 under /tmp/chest_research), reloads it and times the fit.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from radtriage import frontends, labels, radiograph, splits
from radtriage.preprocess import PreprocessConfig, preprocess

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nih-cxr-sample"
CACHE = Path("/tmp/chest_research")
N_FOLDS = 5
SEED = 0
C_GRID = (0.0003, 0.001, 0.003, 0.01)
CLASS_IDX = [labels.class_index(c) for c in labels.NIH_LABELLED]


# ---------------------------------------------------------------- data and cached features
def load_table() -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Labels (500, 9) in {0, 1}, validation mask (500,), and the table."""
    df = pd.read_csv(DATA / "labels.csv")
    y = np.stack([labels.nih_to_chest_vector(s) for s in df["Finding Labels"]])[:, CLASS_IDX]
    val = splits.nih_validation_mask(df["Patient ID"].astype(str))
    return y, val, df


def images(size: int) -> np.ndarray:
    """(500, S, S, 1) float32 in [0, 1]: loader + THE project preprocessing, cached."""
    path = CACHE / f"img_{size}.npy"
    if not path.exists():
        _, _, df = load_table()
        cfg = PreprocessConfig(size=size)
        x = np.stack([preprocess(radiograph.load(DATA / "images" / f).pixels, cfg)
                      for f in df["Image Index"]])
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, x.astype(np.float32))
    return np.load(path)


def cached(name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    path = CACHE / f"feat_{name}.npy"
    if not path.exists():
        np.save(path, compute().astype(np.float32))
    return np.load(path)


def thumb_hist(size: int = 32, bins: int = 32) -> np.ndarray:
    """The earlier baseline: a size x size thumbnail + a global intensity histogram."""
    x = images(256)[..., 0]
    f = 256 // size
    thumbs = x.reshape(len(x), size, f, size, f).mean(axis=(2, 4)).reshape(len(x), -1)
    hists = np.stack([np.histogram(im, bins=bins, range=(0, 1))[0] / im.size for im in x])
    return np.hstack([thumbs, hists])


def frontend(config: frontends.FrontEndConfig) -> np.ndarray:
    """Features of the Keras front-end (exactly what the shipped model computes)."""
    model = frontends.build_feature_extractor(config)
    return model.predict(images(config.size), batch_size=20, verbose=0)


def random_conv(size: int = 128, filters: int = 64, kernel: int = 7, grid: int = 4) -> np.ndarray:
    """Random zero-mean 7x7 filters, ReLU, mean-pooled over a grid x grid layout and globally."""
    import keras

    rng = np.random.default_rng(SEED)
    w = rng.standard_normal((kernel, kernel, 1, filters)).astype(np.float32)
    w -= w.mean(axis=(0, 1, 2), keepdims=True)
    w /= np.abs(w).sum(axis=(0, 1, 2), keepdims=True)
    inp = keras.Input((size, size, 1))
    outs = []
    x = inp
    for j in range(3):  # three scales
        if j:
            x = keras.layers.AveragePooling2D(2)(x)
        conv = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False)
        r = keras.layers.ReLU()(conv(x))
        conv.set_weights([w])
        side = size // 2**j
        outs.append(keras.layers.Flatten()(keras.layers.AveragePooling2D(side // grid)(r)))
        outs.append(keras.layers.GlobalAveragePooling2D()(r))
    model = keras.Model(inp, keras.layers.Concatenate()(outs))
    return model.predict(images(size), batch_size=20, verbose=0)


# ---------------------------------------------------------------- evaluation
def macro_auc(y: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray]:
    per = np.array([roc_auc_score(y[:, k], p[:, k]) for k in range(y.shape[1])])
    return float(per.mean()), per


def fit_predict(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, cs: tuple[float, ...],
                pca: int | None = None) -> dict[float, np.ndarray]:
    """Per class, a balanced L2 logistic regression on standardized (optionally PCA) features.

    With more features than images, the L2 solution lies in the span of the training rows, so
    fitting on the rows' SVD coordinates (n <= 357 columns) gives the same model, much faster.

    Returns:
        C -> (len(xte), n_classes) probabilities.
    """
    steps = [StandardScaler()] + ([PCA(pca, whiten=True, random_state=SEED)] if pca else [])
    pre = make_pipeline(*steps).fit(xtr)
    ztr, zte = pre.transform(xtr), pre.transform(xte)
    if ztr.shape[1] > ztr.shape[0]:
        _, _, vt = np.linalg.svd(ztr, full_matrices=False)
        ztr, zte = ztr @ vt.T, zte @ vt.T
    out = {c: np.zeros((len(xte), ytr.shape[1])) for c in cs}
    for k in range(ytr.shape[1]):
        for c in cs:
            clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
            out[c][:, k] = clf.fit(ztr, ytr[:, k]).predict_proba(zte)[:, 1]
    return out


def with_aug(x: np.ndarray, y: np.ndarray, idx: np.ndarray,
             x_aug: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Training rows idx, plus their augmented copies (same labels) when given."""
    if x_aug is None:
        return x[idx], y[idx]
    return np.vstack([x[idx], x_aug[idx]]), np.vstack([y[idx], y[idx]])


def cv_scores(x: np.ndarray, y: np.ndarray, cs: tuple[float, ...], pca: int | None = None,
              x_aug: np.ndarray | None = None) -> tuple[dict[float, np.ndarray], dict]:
    """C -> macro AUROC of each of the 5 folds (training images only), and per-class AUROCs."""
    scores: dict[float, list[float]] = {c: [] for c in cs}
    per: dict[float, list[np.ndarray]] = {c: [] for c in cs}
    for tr, te in KFold(N_FOLDS, shuffle=True, random_state=SEED).split(x):
        for c, p in fit_predict(*with_aug(x, y, tr, x_aug), x[te], cs, pca).items():
            m, pc = macro_auc(y[te], p)
            scores[c].append(m)
            per[c].append(pc)
    return ({c: np.array(v) for c, v in scores.items()},
            {c: np.mean(v, axis=0) for c, v in per.items()})


def cached_cv(name: str, compute: Callable[[], tuple[dict, dict]]) -> tuple[dict, dict]:
    """CV results per C (fold AUROCs, per-class means), cached by method name and C grid."""
    key = "".join(ch if ch.isalnum() else "_" for ch in name) + "_" + "_".join(map(str, C_GRID))
    path = CACHE / f"cv_{key}.npz"
    if not path.exists():
        folds, per = compute()
        np.savez(path, cs=np.array(C_GRID), folds=np.stack([folds[c] for c in C_GRID]),
                 per=np.stack([per[c] for c in C_GRID]))
    saved = np.load(path)
    cs = [float(c) for c in saved["cs"]]
    return (dict(zip(cs, saved["folds"])), dict(zip(cs, saved["per"])))


def evaluate(name: str, x: np.ndarray, y: np.ndarray, val: np.ndarray,
             pca: int | None = None, score_val: bool = False,
             x_aug: np.ndarray | None = None) -> dict:
    """CV over C_GRID on the training split; with score_val, the best C is scored on validation."""
    t0 = time.time()
    xtr, ytr = x[~val], y[~val]
    xa = None if x_aug is None else x_aug[~val]
    results, cv_per = cached_cv(name, lambda: cv_scores(xtr, ytr, C_GRID, pca, xa))
    best_c = max(results, key=lambda c: results[c].mean())
    cv_time = time.time() - t0
    t0 = time.time()
    p = fit_predict(*with_aug(xtr, ytr, np.arange(len(xtr)), xa), x[val], (best_c,), pca)[best_c]
    fit_time = time.time() - t0
    val_auc, per = macro_auc(y[val], p) if score_val else (np.nan, np.full(y.shape[1], np.nan))
    return {"method": name, "dim": x.shape[1], "C": best_c, "cv": results[best_c].mean(),
            "cv_sd": results[best_c].std(), "cv_per_class": cv_per[best_c], "val": val_auc, "per_class": per,
            "fit_s": fit_time, "cv_s": cv_time,
            "cv_by_C": {c: round(float(r.mean()), 3) for c, r in results.items()}}


# ---------------------------------------------------------------- small CNN from scratch
def small_cnn(size: int, n_out: int, width: int = 16, dropout: float = 0.5, l2: float = 1e-3):
    """4 conv blocks (stride-2 stem), GAP, dropout, sigmoid; augmentation inside the model."""
    import keras

    reg = keras.regularizers.L2(l2)
    inp = keras.Input((size, size, 1))
    x = keras.layers.RandomTranslation(0.06, 0.06, fill_mode="constant")(inp)
    x = keras.layers.RandomZoom(0.1, fill_mode="constant")(x)
    x = keras.layers.RandomRotation(0.03, fill_mode="constant")(x)
    x = keras.layers.RandomContrast(0.2)(x)
    x = keras.layers.Rescaling(2.0, -1.0)(x)
    for i, f in enumerate((width, 2 * width, 4 * width, 8 * width)):
        x = keras.layers.Conv2D(f, 3, strides=2 if i == 0 else 1, padding="same",
                                use_bias=False, kernel_regularizer=reg)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout)(x)
    out = keras.layers.Dense(n_out, activation="sigmoid", kernel_regularizer=reg)(x)
    return keras.Model(inp, out)


def cnn_fit_predict(xtr, ytr, xte, epochs: int = 30, mixup: float = 0.2,
                    batch: int = 32) -> np.ndarray:
    """Train the small CNN (Adam + cosine decay, label smoothing 0.1, mixup); predict with TTA
    over 5 small shifts."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    model = small_cnn(xtr.shape[1], ytr.shape[1])
    steps = epochs * int(np.ceil(len(xtr) / batch))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
                  keras.losses.BinaryCrossentropy(label_smoothing=0.1))

    def mix(xa, ya, xb, yb):
        g1 = tf.random.gamma((tf.shape(xa)[0],), mixup)
        g2 = tf.random.gamma((tf.shape(xa)[0],), mixup)
        lam = g1 / (g1 + g2)
        return (lam[:, None, None, None] * xa + (1 - lam[:, None, None, None]) * xb,
                lam[:, None] * ya + (1 - lam[:, None]) * yb)

    base = tf.data.Dataset.from_tensor_slices((xtr, ytr.astype(np.float32)))
    a = base.shuffle(len(xtr), seed=SEED).batch(batch, drop_remainder=True)
    b = base.shuffle(len(xtr), seed=SEED + 1).batch(batch, drop_remainder=True)
    ds = tf.data.Dataset.zip(a, b).map(lambda p, q: mix(*p, *q)).prefetch(2)
    model.fit(ds, epochs=epochs, verbose=0)
    shifts = [(0, 0), (4, 0), (-4, 0), (0, 4), (0, -4)]
    return np.mean([model.predict(np.roll(xte, s, axis=(1, 2)), verbose=0) for s in shifts],
                   axis=0)


def evaluate_cnn(name: str, size: int, y: np.ndarray, val: np.ndarray, score_val: bool) -> dict:
    """5-fold CV of the small CNN, then one fit on all training images; cached (it takes minutes)."""
    path = CACHE / f"cnn_{size}.npz"
    x = images(size)
    xtr, ytr = x[~val], y[~val].astype(np.float32)
    if not path.exists():
        t0 = time.time()
        oof = np.zeros_like(ytr)
        folds = list(KFold(N_FOLDS, shuffle=True, random_state=SEED).split(xtr))
        for tr, te in folds:
            oof[te] = cnn_fit_predict(xtr[tr], ytr[tr], xtr[te])
        cv_time = time.time() - t0
        t0 = time.time()
        p_val = cnn_fit_predict(xtr, ytr, x[val])
        np.savez(path, oof=oof, p_val=p_val, cv_s=cv_time, fit_s=time.time() - t0)
    saved = np.load(path)
    folds = KFold(N_FOLDS, shuffle=True, random_state=SEED).split(xtr)
    fold_auc = [macro_auc(ytr[te], saved["oof"][te]) for _, te in folds]
    cv = np.array([a for a, _ in fold_auc])
    val_auc, per = (macro_auc(y[val], saved["p_val"]) if score_val
                    else (np.nan, np.full(y.shape[1], np.nan)))
    return {"method": name, "dim": 0, "C": np.nan, "cv": cv.mean(), "cv_sd": cv.std(),
            "cv_per_class": np.mean([p for _, p in fold_auc], axis=0), "val": val_auc,
            "per_class": per, "fit_s": float(saved["fit_s"]), "cv_s": float(saved["cv_s"]),
            "cv_by_C": {}}


# ---------------------------------------------------------------- the candidates
FE = frontends.FrontEndConfig
Features = tuple[np.ndarray, np.ndarray | None]  # features, features of flipped images (or None)
PCA_DIMS = {"PCA": 32}  # methods whose name contains a key use PCA with that many components


def scat(config: frontends.FrontEndConfig, key: str, flip: bool = False) -> Features:
    x = cached(key, lambda: frontend(config))
    if not flip:
        return x, None
    return x, cached(key + "_flip", lambda: frontend_flipped(config))


def frontend_flipped(config: frontends.FrontEndConfig) -> np.ndarray:
    model = frontends.build_feature_extractor(config)
    return model.predict(images(config.size)[:, :, ::-1], batch_size=20, verbose=0)


def candidates() -> dict[str, Callable[[], Features]]:
    return {
        "thumb32+hist32 (baseline)": lambda: (cached("thumb32_hist32", thumb_hist), None),
        "thumb8+16+32": lambda: (cached("thumb_multi", lambda: np.hstack(
            [thumb_hist(s, 2)[:, :-2] for s in (8, 16, 32)])), None),
        "random conv S128": lambda: (cached("randconv_128", random_conv), None),
        "scat S256 j4 g124": lambda: scat(FE(), "scat_256_s4_g124"),
        "scat S256 j4 g1248": lambda: scat(FE(grids=(1, 2, 4, 8)), "scat_256_s4_g1248"),
        "scat S256 j5 m8 g124": lambda: scat(
            FE(scales=5, map_size=8, grids=(1, 2, 4, 8)), "scat_256_s5_m8"),
        "scat S256 j4 nolog": lambda: scat(FE(log_eps=0.0), "scat_256_s4_nolog"),
        "scat S128 j4 m8": lambda: scat(
            FE(size=128, map_size=8, grids=(1, 2, 4, 8)), "scat_128_s4_m8"),
        "scat S256 j4 g124 +flip-aug": lambda: scat(FE(), "scat_256_s4_g124", flip=True),
        "scat S256 j4 g124 PCA32": lambda: scat(FE(), "scat_256_s4_g124"),
        "scat S256 j4 g124 + thumb32/hist32": lambda: (np.hstack(
            [scat(FE(), "scat_256_s4_g124")[0], cached("thumb32_hist32", thumb_hist)]), None),
    }


RECOMMENDED = (FE(), 1e-3)  # front-end config and C, chosen by CV
CNN_CANDIDATES = {"small CNN S128 (aug, mixup, LS, TTA)": 128}


def print_table(rows: list[dict]) -> None:
    print(f"\n{'method':36s} {'dim':>6s} {'C':>7s} {'CV macro AUROC':>16s} {'val':>6s} "
          f"{'fit s':>6s}   (fit s: head fit on 357 cached feature rows; CNN: full training)")
    for r in rows:
        print(f"{r['method']:36s} {r['dim']:6d} {r['C']:7.4f} {r['cv']:8.3f} ± {r['cv_sd']:.3f} "
              f"{r['val']:6.3f} {r['fit_s']:6.1f}   CV by C: {r['cv_by_C']}")
    best = max(rows, key=lambda r: r["cv"])
    print(f"\nper-class AUROC of the best by CV ({best['method']}):   CV mean    validation")
    for name, a, v in zip(labels.NIH_LABELLED, best["cv_per_class"], best["per_class"]):
        print(f"  {name:20s} {a:17.3f} {v:13.3f}")


def build_recommended(y: np.ndarray, val: np.ndarray, score_val: bool) -> None:
    """Fit the recommended model end to end as the shipped Keras model, check and time it.

    Features are recomputed from the images (not read from the cache) so the timing is honest.
    The 5 classes NIH does not label get constant-bias outputs (no real information).
    """
    config, c = RECOMMENDED
    df = pd.read_csv(DATA / "labels.csv")
    y14 = np.stack([labels.nih_to_chest_vector(s) for s in df["Finding Labels"]])
    x = images(config.size)
    t0 = time.time()
    feats = frontends.build_feature_extractor(config).predict(x[~val], batch_size=20, verbose=0)
    t_feat = time.time() - t0
    t0 = time.time()
    head = frontends.fit_head(feats, y14[~val], c=c)
    t_fit = time.time() - t0
    model = frontends.build_linear_model(config, labels.N_CHEST)
    frontends.set_head(model, head)
    path = CACHE / "chest_frontend_linear.h5"
    model.save(path)
    import keras

    probs = keras.models.load_model(path, compile=False).predict(x[val], batch_size=20, verbose=0)
    print(f"\nrecommended: {config}, C={c}: features of {int((~val).sum())} images "
          f"{t_feat:.0f} s + head fit {t_fit:.1f} s (2 shared CPU cores); saved {path}")
    if score_val:
        auc, per = macro_auc(y[val], probs[:, CLASS_IDX])
        print(f"Keras model (.h5 reloaded) validation macro AUROC: {auc:.3f}  per class: "
              + ", ".join(f"{n} {a:.2f}" for n, a in zip(labels.NIH_LABELLED, per)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated substrings of method names")
    parser.add_argument("--val", action="store_true",
                        help="also score the validation split (only for the final table)")
    parser.add_argument("--cnn", action="store_true", help="also the small CNN (minutes)")
    parser.add_argument("--build", action="store_true",
                        help="fit the recommended configuration as the Keras model and time it")
    args = parser.parse_args()
    y, val, _ = load_table()
    rows = []
    for name, features in candidates().items():
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        t0 = time.time()
        x, x_aug = features()
        pca = next((d for key, d in PCA_DIMS.items() if key in name), None)
        row = evaluate(name, x, y, val, pca=pca, score_val=args.val, x_aug=x_aug)
        row["feat_s"] = time.time() - t0 - row["cv_s"] - row["fit_s"]
        rows.append(row)
        print(f"{name}: CV {row['cv']:.3f} ± {row['cv_sd']:.3f}, val {row['val']:.3f}; CV per class "
              + " ".join(f"{a:.2f}" for a in row["cv_per_class"]), flush=True)
    if args.cnn:
        for name, size in CNN_CANDIDATES.items():
            rows.append(evaluate_cnn(name, size, y, val, args.val))
            print(f"{name}: CV {rows[-1]['cv']:.3f} ± {rows[-1]['cv_sd']:.3f}", flush=True)
    if rows:
        print_table(rows)
    if args.build:
        build_recommended(y, val, args.val)


if __name__ == "__main__":
    main()
