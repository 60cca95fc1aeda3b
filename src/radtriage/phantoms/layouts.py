"""Phantom datasets: in-memory batches, and writers in the real VinBigData and MURA-v1.1 layouts.

Every image ``i`` of a dataset is rendered from a seed derived from (dataset seed, i), so the
output is identical whatever the number of worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image

from radtriage.labels import CHEST_CLASSES, MURA_STUDY_TYPES, N_CHEST, NO_FINDING, NO_FINDING_ID
from radtriage.phantoms import drawing as dr
from radtriage.phantoms.chest import render_chest
from radtriage.phantoms.dicom_writer import write_dicom
from radtriage.phantoms.limb import ASPECT, LIMB_ABNORMALITIES, render_limb

VINBIGDATA_COLUMNS = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")
# Readers R1..R17, weighted like the real table (R8, R9, R10 read most images).
_READERS = [f"R{i}" for i in range(1, 18)]
_READER_W = np.array([2, 3, 2, 1.5, 3, 2, 1.7, 12, 15, 13, 1.7, 1.7, 1.8, 1.6, 1.8, 1.7, 0.8])
_PLAN = 7  # rng stream for dataset plans


def item_seed(seed: int, i: int) -> int:
    """Seed of item ``i`` of a dataset with seed ``seed`` (stable, worker-independent)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(i)]).generate_state(1)[0])


def sample_chest_findings(rng: np.random.Generator, findings_prob: float, max_findings: int = 3) -> list[str]:
    """None with probability 1 - findings_prob, else 1..max_findings distinct classes (uniform)."""
    if rng.random() >= findings_prob:
        return []
    k = min(max_findings, int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1])))
    return [str(c) for c in rng.choice(CHEST_CLASSES, size=k, replace=False)]


def _pmap(fn: Callable, items: Sequence, workers: int) -> list:
    if workers <= 1 or len(items) < 2:
        return [fn(it) for it in items]
    with ProcessPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, items, chunksize=max(1, len(items) // (workers * 8))))


# ---------------------------------------------------------------- in-memory batches


class ChestBatch(NamedTuple):
    """images float32 (n, H, W) in [0, 1]; labels float32 (n, 14) in CHEST_CLASSES order;
    boxes[i] = list of (class_id, x_min, y_min, x_max, y_max) px; masks bool (n, 14, H, W) or None."""

    images: np.ndarray
    labels: np.ndarray
    boxes: list[list[tuple[int, float, float, float, float]]]
    masks: np.ndarray | None


def _chest_item(args: tuple) -> tuple:
    seed, i, size, findings_prob, max_findings, return_masks = args
    names = sample_chest_findings(dr.rng_for(seed, _PLAN, i), findings_prob, max_findings)
    p = render_chest(item_seed(seed, i), size, names)
    boxes = [(CHEST_CLASSES.index(f.name), *f.box) for f in p.findings]
    masks = None
    if return_masks:
        masks = np.zeros((N_CHEST, size, size), bool)
        for f in p.findings:
            masks[CHEST_CLASSES.index(f.name)] = f.mask
    return p.image, p.chest_labels(), boxes, masks


def chest_batch(n: int, size: int = 256, seed: int = 0, findings_prob: float = 0.5, max_findings: int = 3,
                return_masks: bool = False, workers: int = 1) -> ChestBatch:
    """``n`` chest phantoms in memory, for training without files.

    Args:
        n: number of images.
        size: side in pixels (square images).
        seed: dataset seed; item i is rendered from ``item_seed(seed, i)``.
        findings_prob: probability that an image has >= 1 finding (classes uniform, 1-3 per image).
        max_findings: at most this many findings per image.
        return_masks: also return per-class masks (n * 14 * size^2 bytes).
        workers: processes to render with (results do not depend on it).
    """
    items = _pmap(_chest_item, [(seed, i, size, findings_prob, max_findings, return_masks) for i in range(n)],
                  workers)
    images = np.stack([it[0] for it in items]) if items else np.zeros((0, size, size), np.float32)
    labels = np.stack([it[1] for it in items]) if items else np.zeros((0, N_CHEST), np.float32)
    masks = np.stack([it[3] for it in items]) if return_masks and items else None
    return ChestBatch(images.astype(np.float32), labels.astype(np.float32), [it[2] for it in items], masks)


class LimbStudy(NamedTuple):
    """Plan of one synthetic limb study."""

    study_type: str
    seed: int
    label: int  # 1 abnormal, 0 normal
    abnormality: str | None
    n_views: int
    patient: int
    study: int  # 1-based study number of this patient
    split: str


def plan_limb_studies(n_studies: int, seed: int = 0, abnormal_prob: float = 0.45, valid_fraction: float = 0.0,
                      study_types: Sequence[str] = MURA_STUDY_TYPES) -> list[LimbStudy]:
    """Deterministic list of studies: type, label, abnormality, views (2-3), patient, split.

    About one patient in five has a second study (as in MURA); patients never cross splits.
    """
    rng = dr.rng_for(seed, _PLAN, 1_000_000)
    out: list[LimbStudy] = []
    patient = {"train": 0, "valid": 11184}  # MURA numbers valid patients from 11185
    while len(out) < n_studies:
        split = "valid" if rng.random() < valid_fraction else "train"
        patient[split] += 1
        st = str(rng.choice(study_types))
        for k in range(1 + int(rng.random() < 0.2)):
            if len(out) >= n_studies:
                break
            i = len(out)
            abnormal = bool(rng.random() < abnormal_prob)
            kind = str(rng.choice(LIMB_ABNORMALITIES, p=[0.45, 0.25, 0.1, 0.2])) if abnormal else None
            out.append(LimbStudy(st, item_seed(seed, i), int(abnormal), kind, int(rng.integers(2, 4)),
                                 patient[split], k + 1, split))
    return out


class LimbBatch(NamedTuple):
    """images float32 (n, S, S) in [0, 1]; labels float32 (n,) 1 = abnormal study; per image:
    study_types, abnormalities (None if normal), study_ids, patient_ids; masks bool (n, S, S) or None."""

    images: np.ndarray
    labels: np.ndarray
    study_types: list[str]
    abnormalities: list[str | None]
    study_ids: np.ndarray
    patient_ids: np.ndarray
    masks: np.ndarray | None


def _limb_study_arrays(args: tuple) -> list[tuple[np.ndarray, np.ndarray]]:
    st, size, square = args
    out = []
    for v in range(st.n_views):
        p = render_limb(st.study_type, st.seed, v, size, st.abnormality, width=size if square else None)
        mask = p.findings[0].mask if p.findings else np.zeros(p.image.shape, bool)
        out.append((p.image, mask))
    return out


def limb_batch(n: int, size: int = 256, seed: int = 0, abnormal_prob: float = 0.45,
               study_types: Sequence[str] = MURA_STUDY_TYPES, return_masks: bool = False,
               workers: int = 1) -> LimbBatch:
    """``n`` square upper-limb phantom images (whole studies of 2-3 views, cut at ``n``) in memory.

    The label is the study's (MURA semantics): every view of an abnormal study is labelled 1.
    """
    studies = plan_limb_studies(n, seed, abnormal_prob, 0.0, study_types)  # >= n images
    rendered = _pmap(_limb_study_arrays, [(s, size, True) for s in studies], workers)
    images, masks, labels, types, abn, sid, pid = [], [], [], [], [], [], []
    for k, (st, views) in enumerate(zip(studies, rendered)):
        for img, mask in views:
            images.append(img), masks.append(mask), labels.append(st.label), types.append(st.study_type)
            abn.append(st.abnormality), sid.append(k), pid.append(st.patient)
    images = np.stack(images[:n]).astype(np.float32)
    return LimbBatch(images, np.asarray(labels[:n], np.float32), types[:n], abn[:n], np.asarray(sid[:n]),
                     np.asarray(pid[:n]), np.stack(masks[:n]) if return_masks else None)


# ---------------------------------------------------------------- VinBigData layout


def _reader_rows(rng: np.random.Generator, image_id: str, findings: list, shape: tuple[int, int]) -> list[dict]:
    """Three readers' rows: each reports a true finding with a probability growing with its
    severity, with jittered boxes; rarely a false positive; "No finding" if the image is normal."""
    readers = rng.choice(_READERS, size=3, replace=False, p=_READER_W / _READER_W.sum())
    h, w = shape
    rows = []
    for rad in readers:
        boxes = []
        for f in findings:
            if rng.random() < 0.55 + 0.4 * f.severity:
                boxes.append((f.name, _jitter(rng, f.box, w, h)))
        if findings and not boxes:  # a reader who calls the image abnormal draws at least one box
            f = max(findings, key=lambda f: f.severity)
            boxes.append((f.name, _jitter(rng, f.box, w, h)))
        if findings and rng.random() < 0.05:
            name = str(rng.choice(CHEST_CLASSES))
            x0, y0 = rng.uniform(0.15, 0.6) * w, rng.uniform(0.15, 0.6) * h
            boxes.append((name, (x0, y0, x0 + rng.uniform(0.05, 0.2) * w, y0 + rng.uniform(0.05, 0.2) * h)))
        if not boxes:
            rows.append(dict(image_id=image_id, class_name=NO_FINDING, class_id=NO_FINDING_ID, rad_id=str(rad),
                             x_min=np.nan, y_min=np.nan, x_max=np.nan, y_max=np.nan))
        for name, (x0, y0, x1, y1) in boxes:
            rows.append(dict(image_id=image_id, class_name=name, class_id=CHEST_CLASSES.index(name), rad_id=str(rad),
                             x_min=x0, y_min=y0, x_max=x1, y_max=y1))
    return rows


def _jitter(rng, box, w, h) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    sx, sy = 0.08 * (x1 - x0) + 1, 0.08 * (y1 - y0) + 1
    x0, x1 = sorted((x0 + rng.normal(0, sx), x1 + rng.normal(0, sx)))
    y0, y1 = sorted((y0 + rng.normal(0, sy), y1 + rng.normal(0, sy)))
    return (float(np.clip(round(x0), 0, w - 1)), float(np.clip(round(y0), 0, h - 1)),
            float(np.clip(round(x1), 1, w)), float(np.clip(round(y1), 1, h)))


def _vin_item(args: tuple) -> list[dict]:
    root, seed, i, size, findings_prob, jpeg2000_prob = args
    rng = dr.rng_for(seed, _PLAN, i)
    names = sample_chest_findings(rng, findings_prob)
    image_id = rng.bytes(16).hex()
    width = int(round(size * rng.uniform(0.82, 1.0)))
    p = render_chest(item_seed(seed, i), size, names, width=width)
    write_dicom(Path(root) / "train" / f"{image_id}.dicom", p.image, uid_key=f"vin-{seed}-{i}",
                bits_stored=int(rng.choice([12, 14, 16], p=[0.5, 0.2, 0.3])),
                photometric="MONOCHROME1" if rng.random() < 0.15 else "MONOCHROME2",
                jpeg2000=bool(rng.random() < jpeg2000_prob), body_part="CHEST", view="PA")
    return _reader_rows(rng, image_id, p.findings, p.image.shape)


def write_vinbigdata(root: str | Path, n_images: int, seed: int = 0, size: int = 512, findings_prob: float = 0.3,
                     jpeg2000_prob: float = 0.2, workers: int = 2) -> Path:
    """Write ``root/train/<32-hex>.dicom`` chest phantoms and ``root/train.csv`` (VinBigData schema).

    Args:
        root: output folder (created).
        n_images: number of images.
        seed: dataset seed (output identical for any ``workers``).
        size: image height in px (width is 82-100 % of it, as real films are not square).
        findings_prob: fraction of abnormal images (the real set has ~29 %).
        jpeg2000_prob: fraction of JPEG 2000 lossless files.
        workers: processes.

    Returns:
        Path of train.csv: columns image_id, class_name, class_id, rad_id, x_min, y_min, x_max, y_max;
        3 readers per image, one row per box per reader, one "No finding" row (class 14, empty box)
        per reader who found nothing.
    """
    root = Path(root)
    (root / "train").mkdir(parents=True, exist_ok=True)
    rows = _pmap(_vin_item, [(str(root), seed, i, size, findings_prob, jpeg2000_prob) for i in range(n_images)],
                 workers)
    df = pd.DataFrame([r for rs in rows for r in rs], columns=list(VINBIGDATA_COLUMNS))
    df["class_id"] = df["class_id"].astype("int64")
    out = root / "train.csv"
    df.to_csv(out, index=False)
    return out


# ---------------------------------------------------------------- MURA layout


def _study_dir(st: LimbStudy) -> str:
    verdict = "positive" if st.label else "negative"
    return f"MURA-v1.1/{st.split}/{st.study_type}/patient{st.patient:05d}/study{st.study}_{verdict}/"


def _mura_item(args: tuple) -> list[str]:
    root, st, size = args
    rel = _study_dir(st)
    rng = dr.rng_for(st.seed, _PLAN, 5)
    paths = []
    for v in range(st.n_views):
        h = int(round(size * rng.uniform(0.9, 1.0)))
        p = render_limb(st.study_type, st.seed, v, h, st.abnormality,
                        width=min(size, int(round(h * ASPECT[st.study_type] * rng.uniform(0.85, 1.15)))))
        img = Image.fromarray(np.round(p.image * 255).astype(np.uint8), mode="L")
        if rng.random() < 0.05:  # a few MURA files are RGB
            img = img.convert("RGB")
        path = f"{rel}image{v + 1}.png"
        (Path(root) / rel).mkdir(parents=True, exist_ok=True)
        img.save(Path(root) / path, optimize=False)
        paths.append(path)
    return paths


def write_mura(root: str | Path, n_studies: int, seed: int = 0, size: int = 512, valid_fraction: float = 0.1,
               abnormal_prob: float = 0.45, workers: int = 2) -> Path:
    """Write limb phantoms in the MURA-v1.1 layout under ``root`` (8-bit PNGs, ~``size`` px high).

    Writes ``MURA-v1.1/{train,valid}/XR_*/patientNNNNN/studyN_{positive,negative}/imageN.png`` and the
    four headerless CSVs ``{train,valid}_image_paths.csv`` (one relative image path per row) and
    ``{train,valid}_labeled_studies.csv`` (``study folder/,label``). Returns ``root/MURA-v1.1``.
    """
    root = Path(root)
    studies = plan_limb_studies(n_studies, seed, abnormal_prob, valid_fraction)
    paths = _pmap(_mura_item, [(str(root), st, size) for st in studies], workers)
    base = root / "MURA-v1.1"
    base.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid"):
        chosen = [(st, ps) for st, ps in zip(studies, paths) if st.split == split]
        _write_lines(base / f"{split}_image_paths.csv", (p for _, ps in chosen for p in ps))
        _write_lines(base / f"{split}_labeled_studies.csv", (f"{_study_dir(st)},{st.label}" for st, _ in chosen))
    return base


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))

