"""Benchmark: train the chest and limb models on phantom datasets (real layouts) with the recipes and
report held-out AUROC, split sizes and time.

Targets: chest macro AUROC >= 0.95 on the held-out test split, limb STUDY-level AUROC >= 0.95 on the
MURA-layout valid split, each within 15 CPU minutes (user + system time of this process and its
workers, data writing excluded).

    .venv/bin/python bench/bench_phantom_training.py            # full settings
    .venv/bin/python bench/bench_phantom_training.py --quick    # reduced settings for a busy machine
    .venv/bin/python bench/bench_phantom_training.py --only mura
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from radtriage.phantoms import write_mura, write_vinbigdata  # noqa: E402
from radtriage.preprocess import PreprocessConfig  # noqa: E402
from radtriage.recipes import ChestRunConfig, DataSource, MuraRunConfig, SplitConfig, train_chest, train_mura  # noqa: E402
from radtriage.training import TrainConfig  # noqa: E402

TARGET_AUROC = 0.95
TARGET_CPU_MIN = 15.0
FULL = {"chest_images": 2000, "mura_studies": 500, "size": 96, "epochs": 15, "width": 16}
QUICK = {"chest_images": 800, "mura_studies": 240, "size": 64, "epochs": 8, "width": 12}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (prepare workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def train_config(task: str, s: dict, out: Path) -> TrainConfig:
    return TrainConfig(task=task, architecture="small_cnn", architecture_kwargs={"width": s["width"], "depth": 4},
                       preprocess=PreprocessConfig(size=s["size"]), batch_size=32, epochs=s["epochs"],
                       lr_schedule="cosine", early_stopping_patience=s["epochs"], output_dir=str(out), verbose=0)


def report(name: str, result, cpu: float, wall: float, auroc: float | None, ci: tuple) -> None:
    ok = auroc is not None and auroc >= TARGET_AUROC and cpu / 60 <= TARGET_CPU_MIN
    print(f"{name}: sizes {result.sizes}")
    print(f"{name}: epochs run {len(result.history.get('loss', []))}, wall {wall / 60:.1f} min, "
          f"CPU {cpu / 60:.1f} min (target <= {TARGET_CPU_MIN:g})")
    lo, hi = ci
    print(f"{name}: held-out AUROC {auroc:.4f} [95% CI {lo:.4f}, {hi:.4f}] (target >= {TARGET_AUROC}) "
          f"-> {'PASS' if ok else 'FAIL'}" if auroc is not None else f"{name}: AUROC undefined -> FAIL")


def bench_chest(root: Path, s: dict) -> None:
    t = time.perf_counter()
    write_vinbigdata(root / "vin", s["chest_images"], seed=1, size=max(96, s["size"] + 32), findings_prob=0.5,
                     jpeg2000_prob=0.0, workers=2)
    print(f"chest: wrote {s['chest_images']} phantom DICOMs (VinBigData layout) in {time.perf_counter() - t:.0f} s")
    run = ChestRunConfig(sources=[DataSource("vinbigdata", str(root / "vin"), synthetic=True)],
                         model_dir=str(root / "model_chest"), cache_dir=str(root / "cache"),
                         train=train_config("chest", s, root / "work_chest"), split=SplitConfig((0.7, 0.15, 0.15)),
                         n_boot=200, workers=2, progress=False, examples_dir="")
    cpu, wall = cpu_seconds(), time.perf_counter()
    result = train_chest(run)
    macro = result.metrics["test"]["macro_auroc"]
    report("chest", result, cpu_seconds() - cpu, time.perf_counter() - wall, macro["auroc"],
           (macro["lo"], macro["hi"]))
    print(f"chest: test macro AUROC over {macro['n_classes']} classes; "
          f"validation {result.metrics['validation']['macro_auroc']['auroc']:.4f}")


def bench_mura(root: Path, s: dict) -> None:
    t = time.perf_counter()
    write_mura(root / "mura", s["mura_studies"], seed=2, size=192, valid_fraction=0.2, workers=2)
    print(f"mura: wrote {s['mura_studies']} phantom studies (MURA-v1.1 layout) in {time.perf_counter() - t:.0f} s")
    run = MuraRunConfig(source=DataSource("mura", str(root / "mura"), synthetic=True), val_fraction=0.15,
                        model_dir=str(root / "model_mura"), cache_dir=str(root / "cache"),
                        train=train_config("mura", s, root / "work_mura"), n_boot=200, workers=2, progress=False,
                        examples_dir="")
    cpu, wall = cpu_seconds(), time.perf_counter()
    result = train_mura(run)
    test = result.metrics["test"]
    overall = test["study_level"][0]
    report("mura", result, cpu_seconds() - cpu, time.perf_counter() - wall, overall["auroc"],
           (test["macro_auroc"]["lo"], test["macro_auroc"]["hi"]))
    print(f"mura: study-level accuracy {overall['accuracy']:.4f}, Cohen's kappa {overall['kappa']:.4f} "
          f"on {overall['n']} test studies")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced settings (fewer images, smaller, fewer epochs)")
    ap.add_argument("--only", choices=("chest", "mura"))
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    a = ap.parse_args()
    settings = QUICK if a.quick else FULL
    print(f"settings: {settings}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.out or tmp)
        if a.only in (None, "chest"):
            bench_chest(root, settings)
        if a.only in (None, "mura"):
            bench_mura(root, settings)


if __name__ == "__main__":
    main()
