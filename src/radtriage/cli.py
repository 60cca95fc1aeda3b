"""Command line: ``radtriage prepare | train | evaluate | predict | export | pacs`` (also ``python -m radtriage``).

Heavy modules (TensorFlow, the training runs) are imported inside the commands, so ``--help`` is instant.
Patient identifiers are never printed: the loader's messages quote no DICOM value, and results
hold file names, probabilities and flags only.

Exit codes: 0 success (``predict``: at least one file predicted), 1 nothing could be done (no file
predicted, a dataset folder without its layout, an export that could not be converted or disagreed
with Keras), 2 usage errors (bad arguments, unusable model).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radtriage import contract, tasks
from radtriage.labels import MURA_STUDY_TYPES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
IMAGE_SUFFIXES = frozenset({".dcm", ".dicom", ".png", ".jpg", ".jpeg"})
MURA_STUDY_DIR = re.compile(r"^study\d+(_(positive|negative))?$")
PREDICT_BATCH = 32
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
KINDS = ("vinbigdata", "nih", "mura", "phantom_chest")

DESCRIPTION = """\
radtriage: radiograph triage models (chest: 14 VinBigData findings; upper limb: MURA normal/abnormal).
Research use only - not a medical device."""
EPILOG = "Run 'radtriage <command> --help' for the options of a command."

DATA_HELP = """dataset kinds and the folder each expects:
  vinbigdata     folder with train.csv (or train.csv.gz) and train/<image_id>.dicom
  nih            folder with labels.csv and images/ (NIH ChestX-ray14 sample)
  mura           folder holding MURA-v1.1/ (or MURA-v1.1 itself)
  phantom_chest  folder where synthetic chest phantoms are rendered (config files only)"""


class CliError(Exception):
    """A problem to report in one sentence with an exit code (no traceback)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radtriage", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", title="commands", metavar="<command>")
    _prepare_parser(sub)
    _train_parser(sub)
    _evaluate_parser(sub)
    _predict_parser(sub)
    _export_parser(sub)
    _pacs_parser(sub)
    return parser


def _common_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS[:3], help="dataset layout (see below)")
    p.add_argument("root", help="the dataset's folder")
    p.add_argument("--policy", default="majority", choices=("any", "majority", "soft"),
                   help="VinBigData: how the 3 readers' votes make a label (default: majority, >= 2 of 3)")
    p.add_argument("--synthetic", action="store_true",
                   help="the folder holds phantoms written in the real layout (labels count as synthetic)")
    p.add_argument("--cache", default="runs/cache", help="cache folder of preprocessed images (default: runs/cache)")
    p.add_argument("--workers", type=int, default=2, help="processes for loading images (default: 2)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _prepare_parser(sub: Any) -> None:
    p = sub.add_parser("prepare", help="preprocess a dataset once into a cache of model-sized arrays", epilog=DATA_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Load every image of a dataset once, preprocess it to the model input size and "
                                   "store it in the cache (resumable: cached images are skipped). Images that "
                                   "cannot be read are listed in <cache>/<hash>/failures.csv.")
    _common_data(p)
    p.add_argument("--size", type=int, default=256, help="model input side in pixels (default: 256)")
    p.add_argument("--resize", default="pad", choices=("pad", "crop"),
                   help="keep the whole image and pad to square (default), or centre-crop")
    p.add_argument("--contrast", default="percentile", choices=("percentile", "none"),
                   help="robust 0.5-99.5 percentile contrast stretch (default) or none")
    p.add_argument("--split", default="all", choices=("all", "train", "valid"),
                   help="MURA: which of its splits to prepare (default: both)")


def _train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train, evaluate and save a model (model.h5, metadata.json, MODEL_CARD.md, model.tflite)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a model end to end: dataset -> cache -> training -> thresholds and temperature on "
                    "validation -> held-out metrics with 95% bootstrap intervals -> model folder with model.h5, "
                    "metadata.json, MODEL_CARD.md, plots and reference predictions.\n\n"
                    "Start from a config file:  radtriage train --task mura --print-config > run.json\n"
                    "edit it, then:             radtriage train --config run.json\n"
                    "Flags given together with --config override the file's values.",
        epilog=DATA_HELP + "\n\nexample:\n  radtriage train --task chest --data vinbigdata:/data/vinbigdata "
                           "--data nih:/data/nih-cxr-sample --epochs 20 --model-dir runs/chest")
    p.add_argument("--config", help="run config JSON (from --print-config)")
    p.add_argument("--print-config", action="store_true", help="print the config (defaults + flags) as JSON and exit")
    p.add_argument("--task", choices=tasks.names(),
                   help="the model's task: " + ", ".join(f"{t.name} ({t.label})" for t in tasks.TASKS.values())
                        + " (default: chest, or the config's)")
    p.add_argument("--data", action="append", metavar="KIND:PATH",
                   help="a dataset, e.g. vinbigdata:/data/vinbigdata (repeat to merge chest sources)")
    p.add_argument("--synthetic", action="store_true", help="the --data folders hold phantoms in the real layout")
    p.add_argument("--model-dir", help="output model folder (default: model/<task>)")
    p.add_argument("--architecture", help="network: efficientnet_lite (ImageNet-pretrained), small_cnn, densenet or "
                                          "efficientnet_b0 (an unknown name is refused with the known ones)")
    p.add_argument("--size", type=int, help="model input side in pixels")
    p.add_argument("--epochs", type=int, help="maximum epochs")
    p.add_argument("--batch-size", type=int, help="images per training step")
    p.add_argument("--learning-rate", type=float, help="initial AdamW learning rate")
    p.add_argument("--threshold-rule", choices=("youden", "sensitivity", "specificity", "f1"),
                   help="how per-class thresholds are chosen on validation")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--cache", help="cache folder of preprocessed images")
    p.add_argument("--workers", type=int, help="processes for loading images")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _evaluate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate", help="measure a saved model on a dataset (metrics JSON, ROC/reliability plots, model card)",
        epilog=DATA_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a saved model (its own preprocessing, calibration and thresholds) on a dataset: "
                    "writes metrics.json, roc.png, reliability.png and MODEL_CARD.md into --out.")
    p.add_argument("--model", required=True, help="model folder (model.h5 + metadata.json)")
    _common_data(p)
    p.add_argument("--split", default="all",
                   help="'all' images (a MURA model: MURA's valid split); chest models trained by the Keras recipe: "
                        "train|validation|test re-creates the patient split recorded in the metadata (the shipped "
                        "front-end chest model records none: use all); mura: train|valid (MURA's own splits)")
    p.add_argument("--out", help="output folder (default: <model>/evaluation)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default: 1000)")


def _predict_parser(sub: Any) -> None:
    p = sub.add_parser(
        "predict", help="run the models (each image sent to its model by the anatomy gate) on files or folders; CSV or JSON",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the models on DICOM/PNG/JPEG files and folders (searched recursively) and write one row "
                    "per image: calibrated probability and flag (probability >= the model's threshold) per "
                    "class. Files that cannot be read are reported with the reason and skipped.\n\n"
                    "The anatomy gate looks at each image first: by default it sends chest radiographs to the chest "
                    "model and upper-limb radiographs to the upper-limb model, whatever the folder layout. An image "
                    "that is the wrong anatomy for the model, or unlike the images the model learnt from, gets no "
                    "probabilities: status 'refused' and one sentence. --task or --model asks for one model; "
                    "--force shows refused results anyway (status 'forced', with the sentence as a warning).\n\n"
                    "Studies: images in a MURA-style study folder (e.g. .../patient00011/study1_negative/) are "
                    "also summarised per study (probability = mean of its images). --studies yes treats every "
                    "folder as a study; --studies no never aggregates.",
        epilog="examples:\n  radtriage predict scans/ --out results.csv\n"
               "  radtriage predict MURA-v1.1/valid/XR_WRIST --task mura --out wrist.json")
    p.add_argument("paths", nargs="+", help="image files and/or folders")
    p.add_argument("--model", help="model folder (default: model/<task> of the repository, or $RADTRIAGE_MODEL_DIR/<task>)")
    p.add_argument("--task", choices=tasks.names(),
                   help="use this task's model for every image (default: each image's model chosen by the anatomy gate)")
    p.add_argument("--force", action="store_true",
                   help="show results the gate would refuse (wrong anatomy, out of distribution), marked 'forced'")
    p.add_argument("--out", help="results file, .csv or .json (default: CSV on standard output)")
    p.add_argument("--format", choices=("csv", "json"), help="output format (default: from --out's extension)")
    p.add_argument("--studies", default="auto", choices=("auto", "yes", "no"),
                   help="aggregate images into studies (default: auto = MURA-style study folders)")
    p.add_argument("--batch-size", type=int, default=PREDICT_BATCH, help="images per model call (default: 32)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"processes decoding files in parallel (default: {DEFAULT_WORKERS}; 1 = none)")
    p.add_argument("--backend", default="auto", choices=("auto", "keras", "litert"),
                   help="forward pass: keras (the reference), litert (the model's verified TFLite export, "
                        "2.6-3.1x faster forward pass, no TensorFlow start-up) or auto = litert when the model has one (default)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="add a verified LiteRT (TFLite) copy of a model, the fast backend of predict",
        description="Convert a model folder's model.h5 to model.tflite (LiteRT) and its Grad-CAM graph to "
                    "explain.tflite, and record them in metadata.json, only if their calibrated probabilities agree "
                    "with Keras within the tolerance (and the heatmaps within 1e-3) on phantom inputs of the model's "
                    "task. 'radtriage train' does this after saving; the dashboard and the PACS connector draw "
                    "Grad-CAM from explain.tflite.")
    p.add_argument("model", help="model folder (model.h5 + metadata.json)")
    p.add_argument("--tolerance", type=float,
                   help="largest accepted |LiteRT - Keras| probability (default: 1e-4)")


def _pacs_parser(sub: Any) -> None:
    p = sub.add_parser(
        "pacs", help="read new studies from a PACS over DICOMweb and store the findings back in them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Query a PACS (QIDO-RS) for radiograph studies, retrieve them (WADO-RS), read each image with "
                    "the model of its anatomy (the upper-limb model per study) and store (STOW-RS), as new series "
                    "of the same study, a findings Structured Report and a Grad-CAM overlay image, both marked "
                    "research use only. The originals are never modified; a study already holding a findings SR "
                    "of the current models is skipped.\n\n"
                    "Credentials come from the environment, never from the command line: RADTRIAGE_PACS_USER and "
                    "RADTRIAGE_PACS_PASSWORD (basic auth), or RADTRIAGE_PACS_TOKEN (bearer), or "
                    "RADTRIAGE_PACS_CREDENTIALS_FILE (a private file of user=, password= or token= lines).",
        epilog="example:\n  RADTRIAGE_PACS_USER=triage RADTRIAGE_PACS_PASSWORD=... \\\n"
               "    radtriage pacs run --url http://127.0.0.1:8042/dicom-web --since 2026-01-01 --dry-run")
    pacs_sub = p.add_subparsers(dest="pacs_command", title="pacs commands", metavar="<pacs command>", required=True)
    run = pacs_sub.add_parser("run", help="process the studies found (see 'radtriage pacs --help')")
    run.add_argument("--url", required=True, help="the PACS's DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    run.add_argument("--since", help="only studies on or after this date (YYYY-MM-DD)")
    run.add_argument("--modality", action="append", type=str.upper,
                     help="radiograph modality to read, repeatable (default: CR and DX)")
    run.add_argument("--study", action="append", default=[], metavar="UID",
                     help="process this Study Instance UID only, repeatable (--since does not apply)")
    run.add_argument("--dry-run", action="store_true", help="query, retrieve and read, but write nothing to the PACS")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# ------------------------------------------------------------------------------------ prepare / train / evaluate


def _source(kind: str, root: str, policy: str = "majority", synthetic: bool = False) -> Any:
    from radtriage.runs import DataSource

    return DataSource(kind=kind, path=root, policy=policy, synthetic=synthetic)


def cmd_prepare(args: argparse.Namespace) -> int:
    import pandas as pd

    from radtriage.prepare import prepare
    from radtriage.preprocess import PreprocessConfig
    from radtriage.runs import load_source

    config = PreprocessConfig(size=args.size, resize=args.resize, contrast=args.contrast)
    source = _source(args.kind, args.root, args.policy, args.synthetic)
    if args.kind == "mura":
        splits = ("train", "valid") if args.split == "all" else (args.split,)
        table = pd.concat([load_source(source, s).table for s in splits], ignore_index=True)
    else:
        table = load_source(source).table
        table = table[table["path"].notna()]
    index = prepare(table, config, args.cache, args.workers, not args.no_progress)
    print(f"cached {len(index.image_ids)} of {len(table)} images in {index.directory} "
          f"({index.n_written} new, {index.n_skipped} already cached, {len(index.failures)} failed"
          + (f": see {index.directory / 'failures.csv'})" if len(index.failures) else ")"))
    return EXIT_OK if index.image_ids else EXIT_FAILED


def run_config_from_args(args: argparse.Namespace) -> Any:
    """The run config: --config file (or the task's defaults) with the given flags applied."""
    from radtriage.runs import RECIPES, DataSource, load_run_config

    if args.config:
        run = load_run_config(args.config)
        if args.task and args.task != run.task:
            raise CliError(f"--task {args.task} contradicts the config's task {run.task!r}.", EXIT_USAGE)
    else:
        run = RECIPES[tasks.get(args.task or tasks.CHEST.name).default_recipe][0]()
    d = run.to_dict()
    generic = (("model_dir", "model_dir"), ("threshold_rule", "threshold_rule"), ("n_boot", "n_boot"),
               ("cache", "cache_dir"), ("workers", "workers"))
    if "train" not in d:  # the front-end chest recipe: no Keras training loop, no data flags
        for flag, key in generic:
            if getattr(args, flag) is not None:
                d[key] = getattr(args, flag)
        if args.no_progress:
            d["progress"] = False
        return type(run).from_dict(d)
    train = d["train"]
    if args.data:
        sources = []
        for spec in args.data:
            kind, sep, path = spec.partition(":")
            if not sep or kind not in KINDS[:3] or not path:
                raise CliError(f"--data needs KIND:PATH with KIND one of {', '.join(KINDS[:3])}, got {spec!r}.",
                               EXIT_USAGE)
            sources.append(DataSource(kind, path, synthetic=args.synthetic))
        if "source" in d:  # a single-source recipe (MURA)
            if len(sources) != 1 or sources[0].kind != "mura":
                raise CliError("a MURA run takes exactly one --data mura:PATH.", EXIT_USAGE)
            d["source"] = vars(sources[0])
        else:
            d["sources"] = [vars(s) for s in sources]
    elif args.synthetic:
        for s in d.get("sources", [d.get("source")]):
            s["synthetic"] = True
    for flag, key in generic:
        if getattr(args, flag) is not None:
            d[key] = getattr(args, flag)
    for flag, key in (("architecture", "architecture"), ("epochs", "epochs"), ("batch_size", "batch_size"),
                      ("learning_rate", "learning_rate")):
        if getattr(args, flag) is not None:
            train[key] = getattr(args, flag)
    if args.size is not None:
        train["preprocess"]["size"] = args.size
    if args.no_progress:
        d["progress"] = False
    return type(run).from_dict(d)


def cmd_train(args: argparse.Namespace) -> int:
    run = run_config_from_args(args)
    if args.print_config:
        print(run.to_json())
        return EXIT_OK
    from radtriage.backbones import WeightsNotInstalledError
    from radtriage.runs import train_run

    try:
        result = train_run(run)
    except WeightsNotInstalledError as err:  # the pretrained default without the train extra
        raise CliError(str(err), EXIT_FAILED) from None
    print(result.summary().to_string(index=False))
    print(f"trained in {result.seconds / 60:.1f} min on {result.sizes}; model saved to {result.model_dir}")
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from radtriage.runs import evaluate_model

    out = Path(args.out) if args.out else Path(args.model) / "evaluation"
    metrics = evaluate_model(args.model, _source(args.kind, args.root, args.policy, args.synthetic), out,
                             args.split, args.cache, args.n_boot, args.workers, not args.no_progress)
    headline = metrics.get("macro_auroc") or {}
    print(f"{metrics['split']}")
    if "study_level" in metrics:
        overall = metrics["study_level"][0]
        print(f"study-level AUROC {_fmt(overall.get('auroc'))}, accuracy {_fmt(overall.get('accuracy'))}, "
              f"Cohen's kappa {_fmt(overall.get('kappa'))} on {metrics['n_studies']} studies")
    else:
        print(f"macro AUROC {_fmt(headline.get('auroc'))} [{_fmt(headline.get('lo'))}, {_fmt(headline.get('hi'))}] "
              f"over {headline.get('n_classes')} classes")
    print(f"metrics, plots and model card written to {out}")
    return EXIT_OK


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# ------------------------------------------------------------------------------------ predict


def collect_files(paths: Sequence[str]) -> list[Path]:
    """Files named, plus image files found recursively in folders (hidden ones skipped), sorted.

    In folders, files with an image suffix (.dcm .dicom .png .jpg .jpeg, any case) or no suffix
    (DICOM files often have none) are taken; a named file is always taken (the loader decides).
    """
    out: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.is_file()
                     and not any(part.startswith(".") for part in p.relative_to(path).parts)
                     and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix == ""))
            out.extend(sorted(found))
        else:
            out.append(path)
    return out


def study_of(path: Path, mode: str) -> str | None:
    """The study a file belongs to: its folder when MURA-style (``studyN[_label]``) or ``mode == "yes"``."""
    if mode == "no":
        return None
    if mode == "yes" or MURA_STUDY_DIR.match(path.parent.name):
        return path.parent.as_posix()
    return None


def study_type_of(path: Path) -> str:
    """MURA study type (``XR_WRIST``...) named by a folder of the path, or ""."""
    return next((part for part in path.parts if part in MURA_STUDY_TYPES), "")


def default_model_dir(folder: str) -> Path:
    """``<model directory>/<folder>``; the model directory is a setting (:mod:`radtriage.locations`)."""
    from radtriage import locations

    return locations.model_dir() / folder


def _flag_columns(classes: Sequence[str], probs: Any, thresholds: Sequence[float], flaggable: Any) -> dict[str, Any]:
    row: dict[str, Any] = {f"prob: {c}": float(p) for c, p in zip(classes, probs)}
    row.update({f"flag: {c}": int(f) for c, f in zip(classes, contract.flags(probs, thresholds, flaggable))})
    row["flagged"] = "; ".join(contract.flagged(classes, probs, thresholds, flaggable))
    return row


def _result_row(row: dict[str, Any], result: Any, triage: Any) -> dict[str, Any]:
    """One output row of an image: where it went, what the gate said, and its probabilities when shown."""
    out = {**row, "model": result.task or "", "status": result.status, "error_code": result.error_code,
           "error": result.message if result.status in ("error", "refused") else "",
           "warning": " ".join(([result.message] if result.status == "forced" else []) + list(result.warnings)),
           "anatomy": result.anatomy.anatomy if result.anatomy else "",
           "anatomy_probability": round(result.anatomy.probability, 4) if result.anatomy else None,
           "ood_ratio": round(result.ood_ratio, 3) if result.ood_ratio is not None else None}
    if result.shown:
        predictor = triage.predictor(result.task)
        out.update(_flag_columns(predictor.classes, result.prediction.vector(), predictor.thresholds,
                                 predictor.flaggable))
    return out


def predict_files(triage: Any, files: Sequence[Path], studies: str = "auto", batch_size: int = PREDICT_BATCH,
                  progress: bool = True, report: Any = None, workers: int = 1) -> dict[str, Any]:
    """Triage every file; bad files and refused images become rows with a sentence, never exceptions.

    Args:
        triage: a :class:`radtriage.triage.Triage` (the gate, the models and the refusal rule).
        files: image paths.
        studies: "auto" | "yes" | "no" (see :func:`study_of`).
        batch_size: images per model call.
        progress: tqdm bar on standard error.
        report: called with one line per skipped or refused file (default: tqdm.write to standard error).
        workers: processes decoding files while the models predict (1 = in this process).

    Returns:
        dict with "images" (rows of images shown: status ok or forced, in file order), "errors"
        (rows of unreadable files and refused images, with the sentence) and "studies" (per study and
        model: probability = mean of its shown images' probabilities).
    """
    import numpy as np
    from tqdm.auto import tqdm

    from radtriage.preprocess import load_and_preprocess_many, try_load

    report = report or (lambda line: tqdm.write(line, file=sys.stderr))
    images: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    shown: list[tuple[dict[str, Any], Any]] = []
    workers = workers if len(files) > 1 else 1
    size = max(1, batch_size)
    # Files are queued only while this loop pulls; two batches in flight keep the workers decoding
    # while the models run on the previous batch.
    in_flight = max(8, -(-2 * size // max(1, workers)))
    loaded = load_and_preprocess_many(files, triage.input_config, workers=workers, in_flight=in_flight, loader=try_load)
    batch: list[tuple[Path, Any]] = []

    def flush() -> None:
        results = triage.run([p.as_posix() for p, _ in batch], [item for _, item in batch], [p for p, _ in batch])
        for (path, _), result in zip(batch, results):
            row = _result_row({"level": "image", "file": path.as_posix(), "study": study_of(path, studies) or "",
                               "study_type": study_type_of(path)}, result, triage)
            if result.shown:
                images.append(row)
                shown.append((row, result))
            else:
                errors.append(row)
                report(f"{'skipped' if result.status == 'error' else 'refused'} {path.as_posix()}: {result.message}"
                       + (f" [{result.error_code}]" if result.error_code else ""))
        batch.clear()

    for path, item in tqdm(zip(files, loaded), total=len(files), desc="predict", unit="img", disable=not progress,
                           file=sys.stderr):
        batch.append((path, item))
        if len(batch) >= size:
            flush()
    if batch:
        flush()
    return {"images": images, "errors": errors, "studies": _study_rows(shown, triage)}


def _study_rows(shown: list[tuple[dict[str, Any], Any]], triage: Any) -> list[dict[str, Any]]:
    """Per study and model: the contract's mean of the study's shown images' probabilities."""
    import numpy as np

    rows: list[dict[str, Any]] = []
    for task in tasks.names():
        members = [(row, r) for row, r in shown if row["study"] and r.task == task]
        if not members:
            continue
        predictor = triage.predictor(task)
        ids, counts, means = contract.study_means([row["study"] for row, _ in members],
                                                  np.stack([r.prediction.vector() for _, r in members]))
        types = {row["study"]: row["study_type"] for row, _ in members}
        forced = {row["study"] for row, r in members if r.status == "forced"}
        for sid, n, mean in zip(ids, counts, means):
            rows.append({"level": "study", "file": sid, "study": sid, "study_type": types[sid], "n_images": int(n),
                         "model": task, "status": "forced" if sid in forced else "ok", "error_code": "", "error": "",
                         **_flag_columns(predictor.classes, mean, predictor.thresholds, predictor.flaggable)})
    return rows


def _model_summary(predictor: Any, directory: Path) -> dict[str, Any]:
    meta = predictor.metadata
    return {"name": meta.name, "task": meta.task, "directory": str(directory), "backend": predictor.backend,
            "classes": list(meta.classes),
            "thresholds": dict(meta.thresholds), "provenance": dict(meta.provenance),
            "flaggable": dict(meta.flaggable),
            "phantom_only": bool((meta.training_data or {}).get("phantom_only", False)),
            "ood": {k: meta.ood[k] for k in ("method", "threshold", "rate") if k in meta.ood} or None,
            "calibration": "probabilities are calibrated: sigmoid(logit / T) with the model's per-class T",
            "study_rule": "study probability = mean of its images' probabilities"}


def _gate_summary(triage: Any) -> dict[str, Any] | None:
    gate = triage.gate
    if gate is None:
        return None
    return {"name": gate.metadata.name, "classes": list(gate.classes), "backend": gate.backend,
            "rule": "an image of another anatomy than the model's, or out of the model's distribution "
                    "(ood_ratio > 1), is refused unless --force"}


def output_format(out: str | None, fmt: str | None) -> str:
    """"csv" or "json": ``--format``, else ``--out``'s extension, else CSV; checked before any work.

    Raises:
        CliError: an output name whose extension says neither (exit code 2).
    """
    fmt = fmt or (Path(out).suffix.lower().lstrip(".") if out else "csv")
    if fmt not in ("csv", "json"):
        raise CliError(f"cannot tell the output format from {out!r}: use a .csv or .json name or --format.",
                       EXIT_USAGE)
    return fmt


def write_results(results: dict[str, Any], model: dict[str, Any], out: str | None, fmt: str | None) -> str:
    """Write the results as CSV (image, study and error rows in one table) or JSON; returns the format."""
    import pandas as pd

    fmt = output_format(out, fmt)
    if fmt == "json":
        payload = {**model, "images": results["images"], "studies": results["studies"],
                   "errors": results["errors"], "summary": results["summary"]}
        text = json.dumps(payload, indent=1)
    else:
        rows = results["images"] + results["studies"] + results["errors"]
        columns = ["level", "file", "study", "study_type", "n_images", "model", "status", "error_code", "error",
                   "warning", "anatomy", "anatomy_probability", "ood_ratio"]
        frame = pd.DataFrame(rows)
        frame = frame.reindex(columns=columns + [c for c in frame.columns if c not in columns])
        if "n_images" in frame:
            frame["n_images"] = frame["n_images"].astype("Int64")
        text = frame.to_csv(index=False, float_format="%.6f")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return fmt


def cmd_predict(args: argparse.Namespace) -> int:
    # arguments first: nothing is loaded or written when one is wrong
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise CliError(f"no such file or folder: {', '.join(missing)}.", EXIT_USAGE)
    output_format(args.out, args.format)
    files = collect_files(args.paths)
    if not files:
        raise CliError("no image files found in the given paths.")
    from radtriage.artifact import ArtifactError
    from radtriage.triage import Triage

    try:
        triage = Triage(args.task, model_dir=args.model, force=args.force, backend=args.backend)
        for task in ([triage.task.name] if triage.task else []):
            triage.predictor(task)  # an unusable model is a usage error before any work
    except ArtifactError as err:
        raise CliError(f"cannot use the model: {err}", EXIT_USAGE) from None
    results = predict_files(triage, files, args.studies, args.batch_size, not args.no_progress, workers=args.workers)
    n_ok = len(results["images"])
    n_refused = sum(r["status"] == "refused" for r in results["errors"])
    n_bad = len(results["errors"]) - n_refused
    results["summary"] = {"files": len(files), "predicted": n_ok, "refused": n_refused, "skipped": n_bad,
                          "studies": len(results["studies"])}
    used = sorted({r["model"] for r in results["images"] + results["errors"] if r.get("model")})
    summaries = {t: _model_summary(triage.predictor(t), triage.model_dir(t)) for t in used if _usable(triage, t)}
    fmt = write_results(results, {"models": summaries, "gate": _gate_summary(triage)}, args.out, args.format)
    where = args.out or "standard output"
    names = ", ".join(f"{m['name']} ({m['backend']})" + (" [trained on synthetic phantoms only]" if m["phantom_only"]
                                                        else "") for m in summaries.values()) or "none"
    print(f"predicted {n_ok} of {len(files)} files ({n_refused} refused by the anatomy gate or out of distribution, "
          f"{n_bad} skipped), {len(results['studies'])} studies, with {names}; {fmt.upper()} written to {where}",
          file=sys.stderr)
    return EXIT_OK if n_ok else EXIT_FAILED


def _usable(triage: Any, task: str) -> bool:
    from radtriage.artifact import ArtifactError

    try:
        triage.predictor(task)
    except ArtifactError:
        return False
    return True


def cmd_export(args: argparse.Namespace) -> int:
    from radtriage.artifact import ArtifactError
    from radtriage.export import TOLERANCE, export_litert

    try:
        entry = export_litert(args.model, tolerance=TOLERANCE if args.tolerance is None else args.tolerance)
    except ArtifactError as err:
        raise CliError(f"cannot export the model in {args.model}: {err}", EXIT_FAILED) from None
    explain = entry["explain"]
    print(f"wrote {Path(args.model) / entry['file']}: probabilities within {entry['max_abs_diff_vs_keras']:.1e} "
          f"of Keras on {entry['checked_on']}", file=sys.stderr)
    print(f"wrote {Path(args.model) / explain['file']}: Grad-CAM heatmaps within "
          f"{explain['max_abs_heatmap_diff_vs_keras']:.1e} of Keras ({explain['checked_on']}); both recorded in "
          "metadata.json", file=sys.stderr)
    return EXIT_OK


def cmd_pacs(args: argparse.Namespace) -> int:
    import datetime

    from radtriage.pacs import client, run

    try:
        since = datetime.date.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise CliError(f"--since must be a date such as 2026-01-31, got {args.since!r}.", EXIT_USAGE) from None
    try:
        dicomweb = client.connect(args.url)
    except client.PacsError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    try:
        summary = run.run(dicomweb, since=since, modalities=tuple(args.modality or run.DEFAULT_MODALITIES),
                          study_uids=args.study, dry_run=args.dry_run, progress=not args.no_progress)
    except client.PacsError as err:
        raise CliError(str(err), EXIT_FAILED) from None
    run.write_rows(summary.rows, sys.stdout)
    print(summary.line(), file=sys.stderr)
    return EXIT_FAILED if summary.failed else EXIT_OK


# ------------------------------------------------------------------------------------ main

COMMANDS = {"prepare": cmd_prepare, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "export": cmd_export, "pacs": cmd_pacs}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``radtriage`` / ``python -m radtriage``; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for users
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from radtriage.datasets.base import DatasetError

    try:
        return COMMANDS[args.command](args)
    except CliError as err:
        print(f"radtriage {args.command}: {err}", file=sys.stderr)
        return err.code
    except (DatasetError, FileNotFoundError) as err:
        print(f"radtriage {args.command}: {err}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as err:  # bad config values: the dataclasses say what is wrong in one sentence
        print(f"radtriage {args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
