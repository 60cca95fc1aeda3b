"""Groundwork for the anatomy gate: do frozen ImageNet EfficientNet-Lite0 features tell chest, upper limb,
other radiograph and "not a radiograph" apart? A probe, not the product's gate.

Data (read from ../shared/data, never copied): chest = NIH sample + 600 Kermany training images; upper
limb = FracAtlas hand / shoulder / hand+shoulder + limb-sample; other radiograph = FracAtlas leg / hip;
not a radiograph = images generated here (rendered text pages, UI-like screenshots, smooth gray
"photos" of shapes). Hold-out: 30 % of each class by a hash of the file name (FracAtlas: by its
content group). Features: the pretrained recipe's (stages 4-7, 224 px, the shared preprocessing);
head: balanced multinomial logistic regression. Prints the held-out confusion matrix.

    .venv/bin/python experiments/anatomy_probe.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from radtriage import labels  # noqa: E402
from radtriage.runs import pretrained as P  # noqa: E402
from radtriage.splits import hash_split  # noqa: E402

CLASSES = ("chest", "upper limb", "other radiograph", "not a radiograph")
N_KERMANY = 600
N_SYNTHETIC = 300
HOLDOUT = 0.3
SALT = "radtriage-anatomy-probe-v1"


def not_radiographs(folder: Path, n: int, seed: int = 0) -> list[str]:
    """Documents, screenshots and gray photos of shapes, rendered here (no real data)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        kind = i % 3
        w, h = int(rng.integers(300, 900)), int(rng.integers(300, 900))
        if kind == 0:  # a text page: dark lines on light paper
            im = Image.new("L", (w, h), int(rng.integers(220, 256)))
            d = ImageDraw.Draw(im)
            for y in range(20, h - 20, int(rng.integers(14, 30))):
                d.text((20, y), " ".join("lorem ipsum dolor sit amet"[: int(rng.integers(5, 26))] for _ in range(4)),
                       fill=int(rng.integers(0, 80)))
        elif kind == 1:  # a screenshot: flat panels, bars and buttons
            im = Image.new("L", (w, h), int(rng.integers(30, 250)))
            d = ImageDraw.Draw(im)
            for _ in range(int(rng.integers(5, 15))):
                x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
                d.rectangle([x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(10, h // 3))],
                            fill=int(rng.integers(0, 256)))
        else:  # a gray "photo": smooth gradients and blurred shapes
            yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
            base = 0.5 + 0.3 * np.sin(xx * rng.uniform(2, 8) + yy * rng.uniform(2, 8))
            for _ in range(5):
                cx, cy, r = rng.random(), rng.random(), rng.uniform(0.05, 0.3)
                base += rng.uniform(-0.3, 0.3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)
            im = Image.fromarray(np.clip(base * 255 + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))
        path = folder / f"synthetic_{i:04d}.png"
        im.save(path)
        paths.append(str(path))
    return paths


def main() -> None:
    data = P.shared_data()
    from radtriage.datasets.fracatlas import FracAtlasDataset
    from radtriage.datasets.kermany import KermanyDataset

    nih = P.nih_table(data / "nih-cxr-sample")
    kermany = KermanyDataset(data / "kermany-pediatric", "train").table.sample(N_KERMANY, random_state=0)
    upper = FracAtlasDataset(data / "fracatlas", labels.FRACATLAS_UPPER_LIMB_PARTS).table
    other = FracAtlasDataset(data / "fracatlas", labels.FRACATLAS_OTHER_PARTS).table
    limb_sample = pd.read_csv(data / "limb-sample" / "labels.csv")
    rows = ([(p, 0, Path(p).name) for p in nih["path"]] + [(p, 0, Path(p).name) for p in kermany["path"]]
            + [(p, 1, g) for p, g in zip(upper["path"], upper["patient_id"])]
            + [(str(data / "limb-sample" / p), 1, p) for p in limb_sample["path"]]
            + [(p, 2, g) for p, g in zip(other["path"], other["patient_id"])])
    with tempfile.TemporaryDirectory() as tmp:
        rows += [(p, 3, Path(p).name) for p in not_radiographs(Path(tmp), N_SYNTHETIC)]
        table = pd.DataFrame(rows, columns=["path", "label", "group"])
        x, ok = P.load_inputs(table["path"].tolist(), 224)
    extractor = P.build_feature_extractor(P.BackboneConfig(variant="lite0", size=224, pooling="stages"))
    feats = extractor.predict(x[ok], batch_size=16, verbose=0)
    table = table[ok].reset_index(drop=True)
    held = hash_split(table["group"].astype(str), HOLDOUT, SALT)
    y = table["label"].to_numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1e-2, class_weight="balanced", max_iter=3000))
    clf.fit(feats[~held], y[~held])
    cm = confusion_matrix(y[held], clf.predict(feats[held]), labels=range(len(CLASSES)))
    print(f"loaded {ok.sum()} of {len(ok)} files; held out {held.sum()} (30 % by file / content group)")
    print(pd.DataFrame(cm, index=[f"true {c}" for c in CLASSES], columns=CLASSES).to_string())
    recall = cm.diagonal() / cm.sum(axis=1)
    print("recall per class:", ", ".join(f"{c} {r:.3f}" for c, r in zip(CLASSES, recall)))


if __name__ == "__main__":
    main()
