"""Score a saved chest model on one split of a phantom VinBigData-layout folder (macro and per-class AUROC).

Used for BENCHMARKS.md's "Phantom learnability" comparisons that the bench cannot print itself:
a model trained on a larger phantom set scored on the test images of a smaller one (the larger sets
contain the smaller: same seeds, same labels, and the patient hash split keeps test patients in test),
and a model scored on its own training images (how well it fits, against how well it generalises).

    .venv/bin/python experiments/score_phantom_split.py runs/bench_phantoms/model_chest \\
        runs/bench_phantoms/vin_images5000_findings_prob0.5_render160_data_seed1 --split test

The images go through the model's own preprocessing (from its metadata.json), the split through
``runs.chest.split_chest`` with the bench's fractions, the metrics through ``evaluation.macro_auroc``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from radtriage import evaluation, labels  # noqa: E402
from radtriage.artifact import load_artifact  # noqa: E402
from radtriage.prepare import prepare  # noqa: E402
from radtriage.runs.calibration import predict_logits  # noqa: E402
from radtriage.runs.chest import ChestRunConfig, chest_table, split_chest  # noqa: E402
from radtriage.runs.config import DataSource, SplitConfig  # noqa: E402
from radtriage.runs.sources import binary_labels, cached_arrays, drop_failed  # noqa: E402

FRACTIONS = (0.7, 0.15, 0.15)  # as bench/bench_phantom_training.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", help="a model directory (model.h5 + metadata.json)")
    ap.add_argument("data", help="a phantom folder in the VinBigData layout (train.csv + train/)")
    ap.add_argument("--split", choices=("train", "validation", "test"), default="test")
    ap.add_argument("--cache", default=None, help="prepare cache (default: a temporary folder)")
    args = ap.parse_args()

    artifact = load_artifact(args.model_dir)
    config = artifact.metadata.preprocess
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or str(Path(tmp) / "cache")
        run = ChestRunConfig(sources=[DataSource("vinbigdata", args.data, synthetic=True)], model_dir=tmp,
                             cache_dir=cache, split=SplitConfig(FRACTIONS), workers=2, progress=False,
                             examples_dir="")
        table, _ = chest_table(run)
        index = prepare(table, config, cache, 2, False)
        part = split_chest(drop_failed(table, index), run.split)[args.split]
        x = cached_arrays(index, part, Path(tmp) / "scratch", args.split)
        classes = list(labels.CHEST_CLASSES)
        y = binary_labels(part[classes].to_numpy(np.float32))
        probs = evaluation.apply_temperature(predict_logits(artifact.model, x), 1.0, from_logits=True)
    macro = evaluation.macro_auroc(y, probs)
    rows = evaluation.per_class_metrics(y, probs, classes)
    print(f"{args.split} split of {args.data}: {len(part)} images; macro AUROC {macro['auroc']:.4f} "
          f"[95% CI {macro['lo']:.4f}, {macro['hi']:.4f}]")
    print(", ".join(f"{r['class']} {r['auroc']:.3f}" for _, r in rows.iterrows()))


if __name__ == "__main__":
    main()
