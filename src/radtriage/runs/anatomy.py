"""Train the anatomy gate (:mod:`radtriage.anatomy`) on real radiographs and evaluate it held out.

Classes (:data:`radtriage.labels.ANATOMY_CLASSES`) and where their images come from (read from the
shared data folder at run time, never copied):

- chest: the NIH sample (train / its fixed patient validation split) and Kermany's paediatric chest
  x-rays (a sample of its train folder / of its test folder);
- limb (upper limb): FracAtlas hand, shoulder and hand+shoulder views (its 70/15/15 split by part x
  label; validation + test held out), and limb-sample (20 real MURA images and paediatric hands);
- other radiograph: FracAtlas leg and hip views (same split);
- not a radiograph: text pages, user-interface screenshots and smooth gray "photos" rendered here,
  plus scikit-image's sample photographs (gray) when scikit-image is installed (different seeds and
  photos for training and held-out).

Why limb-sample is trained on: FracAtlas shows whole arms on black; MURA shows close-up hands,
wrists and elbows on gray, which frozen ImageNet features place next to FracAtlas *legs*. Trained on
FracAtlas alone, the gate called 20 of 20 limb-sample images "other radiograph" (and a logit offset
against that class could not fix it without losing the legs). So limb-sample's 20 images, with
:data:`N_AUGMENT` crops each (:func:`augment_input`), join the training set, and their figure is
grouped 5-fold cross-validation (each fold's images predicted by a head fitted without them), not a
held-out split. The project's synthetic phantoms (the bundled examples' generator) are added to
chest and limb with other seeds held out, so the examples route to their model; they are counted
apart from real images in every figure. Features: frozen ImageNet EfficientNet-Lite0, pooled stages 4-7, on the one
shared preprocessing; head: balanced multinomial logistic regression; the flat Keras model is saved
as ``model/anatomy`` (``model.h5`` + a verified LiteRT copy + ``metadata.json`` + ``MODEL_CARD.md``)::

    python -m radtriage.runs.anatomy [--out model/anatomy]
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radtriage import labels
from radtriage.anatomy import GATE_KIND, METADATA_FILE
from radtriage.artifact import MODEL_FILE, code_version, sha256_file
from radtriage.contract import FEATURES_LAYER
from radtriage.preprocess import PreprocessConfig, preprocess
from radtriage.runs import pretrained as P
from radtriage.splits import hash_split

SIZE = 224  # the input: the shipped models' preprocessing, so one decode serves the gate and the model
WORK_SIZE = SIZE // 2  # what the backbone sees: 2 x 2 mean pooling in the graph (LiteRT has no antialiased
# resize), a quarter of the cost at 224; anatomy needs no fine detail
C = 1e-2  # inverse L2 strength on standardised features (the probe's choice: recall >= 0.975 per class)
N_KERMANY_TRAIN, N_KERMANY_HELD = 600, 200
N_SYNTHETIC_TRAIN, N_SYNTHETIC_HELD = 300, 120
N_PHANTOM_TRAIN, N_PHANTOM_HELD = 120, 40
N_AUGMENT = 12  # crops per limb-sample image in training
N_FOLDS = 5
LIMB_SAMPLE = "limb-sample (MURA, paediatric hands)"
CLASSES = labels.ANATOMY_CLASSES
CHEST, LIMB, OTHER, NON = range(4)
TOLERANCE = 1e-4


# ------------------------------------------------------------------------------------ data


def render_non_radiograph(i: int, seed: int) -> np.ndarray:
    """A gray image that is not a radiograph: a text page, a screenshot or a smooth "photo" (by ``i % 3``).

    Returns:
        (H, W) float32 in [0, 1], sides 300-900 px.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, i])
    w, h = int(rng.integers(300, 900)), int(rng.integers(300, 900))
    kind = i % 3
    if kind == 0:  # a text page: dark lines on light paper
        im = Image.new("L", (w, h), int(rng.integers(220, 256)))
        d = ImageDraw.Draw(im)
        for y in range(20, h - 20, int(rng.integers(14, 30))):
            d.text((20, y), " ".join("lorem ipsum dolor sit amet"[: int(rng.integers(5, 26))] for _ in range(4)),
                   fill=int(rng.integers(0, 80)))
        return np.asarray(im, np.float32) / 255
    if kind == 1:  # a screenshot: flat panels, bars and buttons
        im = Image.new("L", (w, h), int(rng.integers(30, 250)))
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(5, 15))):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            d.rectangle([x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(10, h // 3))],
                        fill=int(rng.integers(0, 256)))
        return np.asarray(im, np.float32) / 255
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)  # a gray "photo": smooth gradients and blurred shapes
    base = 0.5 + 0.3 * np.sin(xx * rng.uniform(2, 8) + yy * rng.uniform(2, 8))
    for _ in range(5):
        cx, cy, r = rng.random(), rng.random(), rng.uniform(0.05, 0.3)
        base += rng.uniform(-0.3, 0.3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)
    return np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1).astype(np.float32)


def sample_photos() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """scikit-image's sample photographs in gray, split in two halves by name ([], [] without scikit-image)."""
    try:
        from skimage import color, data
    except ImportError:
        return [], []
    names = ("astronaut", "camera", "coins", "moon", "page", "text", "coffee", "chelsea", "rocket", "cat",
             "clock", "hubble_deep_field", "immunohistochemistry", "horse", "brick", "grass", "gravel")
    out: dict[str, np.ndarray] = {}
    for name in names:
        try:
            im = np.asarray(getattr(data, name)(), np.float32)
        except Exception:  # a sample that needs a download (pooch) is skipped
            continue
        im = color.rgb2gray(im) if im.ndim == 3 else im / max(float(im.max()), 1.0)
        out[name] = np.clip(im, 0, 1).astype(np.float32)
    held = hash_split(list(out), 0.35, "radtriage-anatomy-photos")
    items = list(out.values())
    return [p for p, h in zip(items, held) if not h], [p for p, h in zip(items, held) if h]


def _crops(images: list[np.ndarray], n: int, seed: int) -> list[np.ndarray]:
    """``n`` random crops (40-100 % of each side) of the images, for variety from few photos."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n if images else 0):
        im = images[i % len(images)]
        h, w = im.shape
        ch, cw = int(h * rng.uniform(0.4, 1)), int(w * rng.uniform(0.4, 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(im[y : y + ch, x : x + cw])
    return out


def file_table(data: Path) -> pd.DataFrame:
    """Every real file: path, anatomy label (class index), source, part and held-out flag."""
    from radtriage.datasets.kermany import KermanyDataset

    nih = P.nih_table(data / "nih-cxr-sample")
    k_train = KermanyDataset(data / "kermany-pediatric", "train").table.sample(N_KERMANY_TRAIN, random_state=0)
    k_test = KermanyDataset(data / "kermany-pediatric", "test").table.sample(N_KERMANY_HELD, random_state=0)
    upper = P.fracatlas_table(data / "fracatlas")
    other = P.fracatlas_table(data / "fracatlas", labels.FRACATLAS_OTHER_PARTS)
    limb_sample = pd.read_csv(data / "limb-sample" / "labels.csv")
    frames = [
        pd.DataFrame({"path": nih["path"], "label": CHEST, "source": "NIH chest x-rays", "part": "chest",
                      "held": nih["split"] != "train"}),
        pd.DataFrame({"path": k_train["path"], "label": CHEST, "source": "Kermany paediatric chest x-rays",
                      "part": "chest", "held": False}),
        pd.DataFrame({"path": k_test["path"], "label": CHEST, "source": "Kermany paediatric chest x-rays",
                      "part": "chest", "held": True}),
        pd.DataFrame({"path": upper["path"], "label": LIMB, "source": "FracAtlas upper limb", "part": upper["part"],
                      "held": upper["split"] != "train"}),
        pd.DataFrame({"path": [str(data / "limb-sample" / p) for p in limb_sample["path"]], "label": LIMB,
                      "source": LIMB_SAMPLE, "part": limb_sample["body_part"].fillna("hand"),
                      "group": [p.split("/")[3] if p.startswith("MURA") else p for p in limb_sample["path"]],
                      "held": False}),
        pd.DataFrame({"path": other["path"], "label": OTHER, "source": "FracAtlas leg and hip", "part": other["part"],
                      "held": other["split"] != "train"}),
    ]
    return pd.concat(frames, ignore_index=True)


def generated_inputs(config: PreprocessConfig) -> pd.DataFrame:
    """Non-radiographs and phantoms rendered here, preprocessed: columns x, label, source, part, held."""
    from radtriage.phantoms import render_chest, render_limb

    photos_train, photos_held = sample_photos()
    rows: list[tuple[np.ndarray, int, str, str, bool]] = []
    for held, n, seed in ((False, N_SYNTHETIC_TRAIN, 0), (True, N_SYNTHETIC_HELD, 1)):
        rows += [(render_non_radiograph(i, seed), NON, "rendered pages, screenshots, shapes", "-", held)
                 for i in range(n)]
    rows += [(p, NON, "photographs (scikit-image samples)", "-", False) for p in _crops(photos_train, 60, 0)]
    rows += [(p, NON, "photographs (scikit-image samples)", "-", True) for p in _crops(photos_held, 30, 1)]
    for held, n, base in ((False, N_PHANTOM_TRAIN, 0), (True, N_PHANTOM_HELD, 50_000)):
        for i in range(n):
            findings = [labels.CHEST_CLASSES[i % len(labels.CHEST_CLASSES)]] if i % 2 else []
            rows.append((render_chest(base + i, size=512, findings=findings).image, CHEST, "project phantoms",
                         "chest", held))
            study = labels.MURA_STUDY_TYPES[i % len(labels.MURA_STUDY_TYPES)]
            rows.append((render_limb(study, base + i, view=i % 2, size=512,
                                     abnormality="fracture" if i % 3 == 0 else None).image,
                         LIMB, "project phantoms", study, held))
    table = pd.DataFrame(rows, columns=["image", "label", "source", "part", "held"])
    table["x"] = [preprocess(im, config) for im in table.pop("image")]
    return table


def augment_input(x: np.ndarray, rng: np.random.Generator, config: PreprocessConfig) -> np.ndarray:
    """A variant of a preprocessed image: a random crop (45-100 % of each side of its content) with a
    random gamma, preprocessed again by the shared path.

    Why: FracAtlas (most of the upper-limb training images) shows whole arms on black, while MURA
    and other sources show close-up hands and wrists on gray; without variants the gate learns the
    source's framing instead of the anatomy.

    Args:
        x: (S, S, 1) float32 in [0, 1], the output of :func:`radtriage.preprocess.preprocess` (padding = 0).
        rng: random generator.
        config: the preprocessing.

    Returns:
        (S, S, 1) float32 in [0, 1].
    """
    img = x[..., 0]
    rows, cols = np.nonzero(img.max(axis=1) > 0)[0], np.nonzero(img.max(axis=0) > 0)[0]
    if len(rows) < 8 or len(cols) < 8:
        return x
    top, left, h, w = rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    ch, cw = max(8, int(h * rng.uniform(0.45, 1))), max(8, int(w * rng.uniform(0.45, 1)))
    y, x0 = top + int(rng.integers(0, h - ch + 1)), left + int(rng.integers(0, w - cw + 1))
    crop = np.clip(img[y : y + ch, x0 : x0 + cw], 0, 1) ** rng.uniform(0.5, 1.5)
    return preprocess(crop.astype(np.float32), config)


# ------------------------------------------------------------------------------------ fit and evaluate


def build_gate(cfg: Any) -> tuple[Any, Any, Any]:
    """The gate model: (SIZE, SIZE, 1) input -> 2 x 2 mean pooling to ``cfg.size`` -> frozen backbone
    features -> "standardize" -> "logits" -> softmax.

    Returns:
        (the whole model, its inner model at ``cfg.size`` whose head :func:`frontends.set_head` fills,
        the resize layer).
    """
    import keras

    inner = P.build_linear_model(cfg, len(CLASSES), activation="softmax")
    if cfg.size * 2 != SIZE:
        raise ValueError(f"the gate halves its {SIZE} px input: its backbone size must be {SIZE // 2}")
    shrink = keras.layers.AveragePooling2D(2, name="gate_halve")
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    return keras.Model(inputs, inner(shrink(inputs)), name="anatomy_gate"), inner, shrink


def fit_gate(features: np.ndarray, y: np.ndarray) -> Any:
    """Standardise + balanced multinomial logistic regression -> a :class:`radtriage.frontends.LinearHead`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from radtriage.frontends import LinearHead

    scaler = StandardScaler().fit(features)
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(scaler.transform(features), y)
    return LinearHead(scaler.mean_, scaler.scale_, clf.coef_.T, clf.intercept_)


def confusion(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Confusion matrix (rows: true class; columns: predicted) and recall per class, JSON-ready."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y, predicted, labels=range(len(CLASSES)))
    n = cm.sum(axis=1)
    return {"classes": list(CLASSES), "matrix": cm.tolist(),
            "recall": {c: (round(float(cm[i, i] / n[i]), 4) if n[i] else None) for i, c in enumerate(CLASSES)},
            "n": {c: int(k) for c, k in zip(CLASSES, n)}}


def by_group(table: pd.DataFrame, predicted: np.ndarray, column: str) -> dict[str, str]:
    """"k of n (p %)" of held-out images given their true class, per value of ``column``."""
    out = {}
    for value, rows in table.groupby(column).groups.items():
        idx = np.asarray(list(rows))
        k = int((predicted[idx] == table.loc[idx, "label"].to_numpy()).sum())
        out[str(value)] = f"{k} of {len(idx)} ({k / len(idx):.1%})"
    return out


def train_gate(out: Path, data: Path | None = None, workers: int = 2) -> dict[str, Any]:
    """Build the data, fit the gate, evaluate it held out, save ``out`` (model, LiteRT copy, metadata, card)."""
    import keras

    from radtriage import frontends

    data = data or P.shared_data()
    config = PreprocessConfig(size=SIZE)
    files = file_table(data)
    x_files, ok = P.load_inputs(files["path"].tolist(), SIZE, workers)
    files, x_files = files[ok].reset_index(drop=True), x_files[ok]
    made = generated_inputs(config)
    table = pd.concat([files.drop(columns="path"), made.drop(columns="x")], ignore_index=True)
    x = np.concatenate([x_files, np.stack(made["x"].tolist())])
    cfg = P.BackboneConfig(variant="lite0", size=WORK_SIZE, pooling="stages")
    model, inner, shrink = build_gate(cfg)
    extractor = keras.Model(inner.input, inner.get_layer(FEATURES_LAYER).output)

    def features(images: np.ndarray) -> np.ndarray:
        small_images = np.concatenate([np.asarray(shrink(images[i : i + 64])) for i in range(0, len(images), 64)])
        return extractor.predict(small_images, batch_size=16, verbose=0)

    feats = features(x)
    held = table["held"].to_numpy(bool)
    y = table["label"].to_numpy(int)
    small = np.nonzero((table["source"] == LIMB_SAMPLE).to_numpy())[0]
    rng = np.random.default_rng(0)
    extra = features(np.stack([augment_input(x[i], rng, config) for i in small for _ in range(N_AUGMENT)]))
    extra_of = np.repeat(small, N_AUGMENT)
    train = ~held
    head = fit_gate(np.concatenate([feats[train], extra]), np.concatenate([y[train], y[extra_of]]))
    frontends.set_head(inner, head)
    cv = cross_validated(feats, y, train, small, table["group"].to_numpy()[small], extra, extra_of)
    probs = np.asarray(model.predict(x[held], batch_size=32, verbose=0))
    predicted = probs.argmax(axis=1)
    held_table = table[held].reset_index(drop=True)
    real = (held_table["source"] != "project phantoms").to_numpy()
    metrics = {
        "split": "held out: NIH validation patients, a Kermany test-folder sample, FracAtlas validation + test "
                 "(by part x label), and rendered images / photos / phantoms of other seeds; limb-sample by "
                 f"grouped {N_FOLDS}-fold cross-validation",
        "real_and_rendered": confusion(y[held][real], predicted[real]),
        "phantoms": confusion(y[held][~real], predicted[~real]),
        "recall_by_source": by_group(held_table, predicted, "source"),
        "limb_sample_cross_validated": cv,
        "recall_by_part": by_group(held_table[held_table["label"] == LIMB].reset_index(drop=True),
                                   predicted[held_table["label"].to_numpy() == LIMB], "part"),
    }
    counts = table.groupby(["source", "held"]).size()
    images: dict[str, Any] = {f"{s} ({'held out' if h else 'train'})": int(n) for (s, h), n in counts.items()}
    images[f"{LIMB_SAMPLE} (train)"] = f"{len(small)} (+ {len(extra)} crops of them; figure by cross-validation)"
    training = {"images": images,
                "backbone": {**cfg.to_dict(), "weights": P._weights(cfg.variant), "trainable": "none (frozen)",
                             "input": f"{SIZE} px (the shared preprocessing), halved to {WORK_SIZE} px by 2 x 2 mean pooling "
                                      "in the graph"},
                "head": f"balanced multinomial logistic regression, C = {C}, on standardised features",
                "phantoms": "project phantoms are in the chest and limb classes (other seeds held out) so the "
                            "bundled examples route to their model; they are counted apart in every figure"}
    meta = save_gate(model, out, config, x[held][:16], metrics, training)
    meta["routing"] = routing(out, x[held], held_table)
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(gate_card(meta), encoding="utf-8")
    record_in_model_cards(meta)
    return meta


def record_in_model_cards(meta: dict[str, Any]) -> None:
    """Copy what the whole check does with each model (the gate's routing figures) into that model's
    metadata ``ood.with_anatomy_gate`` and its card, so each card states its own refusals."""
    from radtriage import locations, tasks
    from radtriage.artifact import read_metadata, update_metadata
    from radtriage.model_card import CARD_FILE, set_ood_section

    for task in tasks.TASKS.values():
        folder = locations.model_dir() / task.model_folder
        if not (folder / "metadata.json").is_file() or not read_metadata(folder).ood:
            continue
        key = f"refused by the {task.name} model when asked for"
        figures = {source: e[key] for source, e in meta.get("routing", {}).items()}
        metadata = update_metadata(folder, ood={**read_metadata(folder).ood, "with_anatomy_gate": figures})
        if (folder / CARD_FILE).is_file():
            set_ood_section(folder / CARD_FILE, metadata.to_dict())


def cross_validated(feats: np.ndarray, y: np.ndarray, train: np.ndarray, small: np.ndarray, groups: np.ndarray,
                    extra: np.ndarray, extra_of: np.ndarray) -> dict[str, Any]:
    """The gate's verdicts on the small real set (limb-sample) by grouped k-fold cross-validation.

    Each fold's images (and their crops) leave the training set; a head fitted on the rest predicts them.

    Returns:
        {"recall": "k of n (p %)", "seen_as": {class: count}, "folds": N_FOLDS}.
    """
    fold = {g: i % N_FOLDS for i, g in enumerate(sorted(set(groups)))}
    folds = np.array([fold[g] for g in groups])
    seen = np.zeros(len(small), int)
    for k in range(N_FOLDS):
        out, keep_extra = small[folds == k], ~np.isin(extra_of, small[folds == k])
        rows = train.copy()
        rows[out] = False
        head = fit_gate(np.concatenate([feats[rows], extra[keep_extra]]),
                        np.concatenate([y[rows], y[extra_of[keep_extra]]]))
        seen[folds == k] = head.logits(feats[out]).argmax(axis=1)
    hits = int((seen == y[small]).sum())
    return {"recall": f"{hits} of {len(small)} ({hits / len(small):.1%})", "folds": N_FOLDS,
            "seen_as": {c: int((seen == i).sum()) for i, c in enumerate(CLASSES)}}


def routing(gate_dir: Path, x: np.ndarray, table: pd.DataFrame) -> dict[str, Any]:
    """What the whole triage (gate + each model's OOD score, :class:`radtriage.triage.Triage`) does with
    held-out images, per source: share sent to the right model in automatic mode, and share refused
    when the chest or the upper-limb model is asked for.

    Args:
        gate_dir: the saved gate.
        x: (N, S, S, 1) held-out inputs (the gate's preprocessing, which the shipped models share).
        table: their ``label`` and ``source``.
    """
    from radtriage.preprocess import Loaded
    from radtriage.triage import Triage

    loaded = [Loaded(xi, None, ()) for xi in x]
    names = [str(i) for i in range(len(x))]
    status = {}
    for mode in (None, "chest", "mura"):
        results = Triage(mode, gate_dir=gate_dir).run(names, loaded)
        status[mode] = (np.array([r.task or "" for r in results]), np.array([r.status for r in results]))
    right = {CHEST: "chest", LIMB: "mura"}
    out: dict[str, Any] = {}
    for (source, label), rows in table.reset_index(drop=True).groupby(["source", "label"]).groups.items():
        idx = np.asarray(list(rows))
        n = len(idx)
        auto_task, auto_status = status[None]
        entry = {"images": n, "anatomy": CLASSES[label]}
        if label in right:
            k = int(((auto_task[idx] == right[label]) & (auto_status[idx] == "ok")).sum())
            routed = int((auto_task[idx] == right[label]).sum())
            entry["sent to its model (automatic)"] = f"{routed} of {n} ({routed / n:.1%})"
            entry["read by it (in distribution)"] = f"{k} of {n} ({k / n:.1%})"
        for task in ("chest", "mura"):
            k = int((status[task][1][idx] == "refused").sum())
            entry[f"refused by the {task} model when asked for"] = f"{k} of {n} ({k / n:.1%})"
        out[f"{source} ({CLASSES[label]})" if source == "project phantoms" else str(source)] = entry
    return out


def save_gate(model: Any, out: Path, config: PreprocessConfig, check: np.ndarray, metrics: dict[str, Any],
              training: dict[str, Any]) -> dict[str, Any]:
    """Write model.h5, the verified model.tflite, metadata.json and MODEL_CARD.md of the gate."""
    from radtriage.artifact import ArtifactError
    from radtriage.litert import LiteRtRunner

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        candidate = Path(tmp) / "model.tflite"
        model.export(str(candidate), format="litert", verbose=False)
        diff = float(np.max(np.abs(LiteRtRunner(candidate)(check)[0] - np.asarray(model.predict(check, verbose=0)))))
        if not diff <= TOLERANCE:
            raise ArtifactError(f"the gate's LiteRT export differs from Keras by {diff:.2e}: not kept.")
        candidate.replace(out / "model.tflite")
    meta = {
        "kind": GATE_KIND, "name": f"anatomy-gate-lite0-{WORK_SIZE}", "classes": list(CLASSES),
        "preprocess": config.to_dict(), "model_sha256": sha256_file(out / MODEL_FILE),
        "serving": {"litert": {"file": "model.tflite", "sha256": sha256_file(out / "model.tflite"),
                               "max_abs_diff_vs_keras": diff, "tolerance": TOLERANCE,
                               "checked_on": f"{len(check)} held-out images"}},
        "training_data": training, "metrics": metrics, "code_version": code_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def _matrix(m: dict[str, Any]) -> list[str]:
    lines = ["| true \\ seen as | " + " | ".join(m["classes"]) + " | recall |",
             "|---" * (len(m["classes"]) + 2) + "|"]
    for c, row in zip(m["classes"], m["matrix"]):
        recall = m["recall"][c]
        lines.append(f"| {c} | " + " | ".join(map(str, row)) + f" | {'n/a' if recall is None else f'{recall:.3f}'} |")
    return lines


def gate_card(meta: dict[str, Any]) -> str:
    """MODEL_CARD.md of the gate, from its metadata: data, held-out confusion matrices, routing figures."""
    m, t = meta["metrics"], meta["training_data"]
    lines = [f"# Model card: {meta['name']} (anatomy gate)", "",
             "**Research use only. Not a medical device.**", "",
             "Says what an image shows before any model judges it: " + ", ".join(meta["classes"]) + ". "
             "The CLI, the dashboard and the PACS connector send each image to the model of its anatomy, and "
             "refuse (with one sentence) an image of the wrong anatomy for the model asked for, or one unlike "
             "that model's training images (its out-of-distribution score).", "",
             "## Training data (real images, read at run time, never copied)", ""]
    lines += [f"- {k}: {v}" for k, v in t["images"].items()]
    lines += ["", f"- Backbone: ImageNet EfficientNet-Lite0 ({t['backbone']['trainable']}), pooled stages 4-7; "
              f"input: {t['backbone'].get('input', 'n/a')}; head: {t['head']}.", f"- Phantoms: {t['phantoms']}.", "",
              "## Held-out confusion matrix: real and rendered images", "", f"Split: {m['split']}.", ""]
    lines += _matrix(m["real_and_rendered"])
    lines += ["", "Project phantoms (held-out seeds):", ""] + _matrix(m["phantoms"])
    lines += ["", "Recall by source:", ""] + [f"- {k}: {v}" for k, v in m["recall_by_source"].items()]
    cv = m["limb_sample_cross_validated"]
    lines += [f"- {LIMB_SAMPLE}, grouped {cv['folds']}-fold cross-validation: {cv['recall']} (seen as: "
              + ", ".join(f"{c} {n}" for c, n in cv["seen_as"].items() if n) + ")"]
    lines += ["", "Upper-limb recall by part (FracAtlas part, or MURA study type):", ""]
    lines += [f"- {k}: {v}" for k, v in m["recall_by_part"].items()]
    lines += ["", "## The whole check on held-out images (gate + each model's out-of-distribution score)", "",
              "| source | images | sent to its model | read by it | refused by the chest model | "
              "refused by the upper-limb model |", "|---|---|---|---|---|---|"]
    for source, e in meta.get("routing", {}).items():
        lines.append(f"| {source} | {e['images']} | {e.get('sent to its model (automatic)', '-')} | "
                     f"{e.get('read by it (in distribution)', '-')} | {e['refused by the chest model when asked for']} | "
                     f"{e['refused by the mura model when asked for']} |")
    lines += ["", "## Serving", "", f"- LiteRT copy within {meta['serving']['litert']['max_abs_diff_vs_keras']:.1e} "
              "of Keras (softmax probabilities) on held-out images; used when the runtime is installed.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radtriage.runs.anatomy", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="model/anatomy", help="gate folder to write (default: model/anatomy)")
    parser.add_argument("--data", help="shared data folder (default: $RADTRIAGE_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    meta = train_gate(Path(args.out), Path(args.data) if args.data else None)
    print(json.dumps(meta["metrics"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
