"""Frozen ImageNet EfficientNet-Lite features + linear heads on the real images: which features, which C?

Data (read from ../shared/data, never copied): the NIH sample (500 chest x-rays, 9 mapped classes and
"No Finding"; the fixed validation split of ``splits.nih_validation_mask`` is scored only with --val)
and FracAtlas's upper limb (hand, shoulder, hand+shoulder; normal vs fracture; byte-identical files
kept together; split of ``runs.pretrained.fracatlas_split``). Model selection by 5-fold
cross-validation on the training part; metric: macro AUROC over the 9 NIH classes, and AUROC of
"any finding" and of "fracture".

Features are computed once through THE project preprocessing (``preprocess.load_and_preprocess``)
and cached under /tmp/pretrained_research:

    .venv/bin/python experiments/pretrained_search.py            # CV tables
    .venv/bin/python experiments/pretrained_search.py --val      # and the held-out splits
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from radtriage import labels
from radtriage.runs import pretrained as P

CACHE = Path("/tmp/pretrained_research")
C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
N_FOLDS = 5


def features(name: str, paths: list[str], variant: str, size: int, pooling: str) -> np.ndarray:
    """(N, F) frozen features of the files, cached per (data, variant, size, pooling)."""
    path = CACHE / f"{name}_{variant}_{size}_{pooling}.npy"
    if path.is_file():
        return np.load(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    extractor = P.build_feature_extractor(P.BackboneConfig(variant=variant, size=size, pooling=pooling))
    x, ok = P.load_inputs(paths, size)
    f = extractor.predict(x, batch_size=16, verbose=0)
    f[~ok] = np.nan  # files the loader refused: left out of every fit and score
    np.save(path, f)
    print(f"  features {name} {variant} {size} {pooling}: {f.shape} in {time.perf_counter() - t:.0f} s", flush=True)
    return f


def cv_auroc(f: np.ndarray, y: np.ndarray, c: float) -> float:
    """Mean over the columns of y of the 5-fold CV AUROC (columns with NaN: their labelled rows)."""
    scores = []
    for k in range(y.shape[1]):
        known = ~np.isnan(y[:, k]) & ~np.isnan(f).any(axis=1)
        yk, fk = y[known, k].astype(int), f[known]
        if yk.sum() < N_FOLDS:
            continue
        pred = np.zeros(len(yk))
        for tr, te in StratifiedKFold(N_FOLDS, shuffle=True, random_state=0).split(fk, yk):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=3000))
            pred[te] = clf.fit(fk[tr], yk[tr]).predict_proba(fk[te])[:, 1]
        scores.append(roc_auc_score(yk, pred))
    return float(np.mean(scores))


def held_out(f_tr: np.ndarray, y_tr: np.ndarray, f_te: np.ndarray, y_te: np.ndarray, c: float) -> float:
    scores = []
    for k in range(y_tr.shape[1]):
        a = ~np.isnan(y_tr[:, k]) & ~np.isnan(f_tr).any(axis=1)
        b = ~np.isnan(y_te[:, k]) & ~np.isnan(f_te).any(axis=1)
        if len(np.unique(y_te[b, k])) < 2:
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=3000))
        clf.fit(f_tr[a], y_tr[a, k].astype(int))
        scores.append(roc_auc_score(y_te[b, k].astype(int), clf.predict_proba(f_te[b])[:, 1]))
    return float(np.mean(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", action="store_true", help="also score the held-out splits")
    ap.add_argument("--variants", default="lite0")
    ap.add_argument("--sizes", default="224")
    ap.add_argument("--poolings", default="head,stages")
    args = ap.parse_args()
    data = P.shared_data()
    chest = P.nih_table(data / "nih-cxr-sample")
    limb = P.fracatlas_table(data / "fracatlas", P.UPPER_LIMB_PARTS)
    y_chest = chest[list(labels.NIH_LABELLED) + [labels.ANY_FINDING]].to_numpy(np.float64)
    y_limb = limb[[labels.MURA_CLASSES[0]]].to_numpy(np.float64)
    val = chest["split"].eq("validation").to_numpy()
    test = limb["split"].eq("test").to_numpy()
    for variant in args.variants.split(","):
        for size in map(int, args.sizes.split(",")):
            for pooling in args.poolings.split(","):
                fc = features("nih", chest["path"].tolist(), variant, size, pooling)
                fl = features("fracatlas_upper", limb["path"].tolist(), variant, size, pooling)
                for c in C_GRID:
                    nine = cv_auroc(fc[~val], y_chest[~val, :9], c)
                    anyf = cv_auroc(fc[~val], y_chest[~val, 9:], c)
                    frac = cv_auroc(fl[~test], y_limb[~test], c)
                    line = (f"{variant} {size} {pooling:7s} C={c:g}: NIH CV macro-9 {nine:.3f}, any finding {anyf:.3f}; "
                            f"FracAtlas CV fracture {frac:.3f}")
                    if args.val:
                        line += (f" | NIH validation macro-9 {held_out(fc[~val], y_chest[~val, :9], fc[val], y_chest[val, :9], c):.3f}"
                                 f", any {held_out(fc[~val], y_chest[~val, 9:], fc[val], y_chest[val, 9:], c):.3f}"
                                 f"; FracAtlas test {held_out(fl[~test], y_limb[~test], fl[test], y_limb[test], c):.3f}")
                    print(line, flush=True)


if __name__ == "__main__":
    main()
