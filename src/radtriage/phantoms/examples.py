"""The curated phantom examples (``app_images/``) and the contact sheet (``docs/phantoms.png``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from radtriage.labels import CHEST_CLASSES, MURA_STUDY_TYPES
from radtriage.phantoms.chest import render_chest
from radtriage.phantoms.dicom_writer import write_dicom
from radtriage.phantoms.limb import render_limb
from radtriage.phantoms.types import Phantom

STATEMENT = ("Synthetic phantom made by radtriage's phantom generator (radtriage.phantoms); "
             "not a patient image, no real data.")
REGENERATE = "python -m radtriage.phantoms examples app_images"

# (file stem, seed, size, findings, format, DICOM options)
CHEST_EXAMPLES: list[tuple[str, int, int, tuple[str, ...], str, dict]] = [
    ("chest_01_normal", 101, 512, (), "dcm", {"bits_stored": 12}),
    ("chest_02_cardiomegaly", 102, 2048, ("Cardiomegaly",), "dcm", {"bits_stored": 14, "jpeg2000": True}),
    ("chest_03_pleural_effusion", 103, 512, ("Pleural effusion",), "png", {}),
    ("chest_04_pneumothorax", 104, 512, ("Pneumothorax",), "png", {}),
    ("chest_05_nodule_mass", 105, 512, ("Nodule/Mass",), "dcm", {"bits_stored": 16, "photometric": "MONOCHROME1"}),
    ("chest_06_consolidation_infiltration", 106, 512, ("Consolidation", "Infiltration"), "png", {}),
    ("chest_07_pulmonary_fibrosis_ild", 107, 512, ("ILD", "Pulmonary fibrosis"), "png", {}),
    ("chest_08_aortic_enlargement_calcification", 108, 512, ("Aortic enlargement", "Calcification"), "dcm",
     {"bits_stored": 12}),
    ("chest_09_normal", 109, 512, (), "png", {}),
]
# (study type, seed, abnormality, format)
LIMB_EXAMPLES: list[tuple[str, int, str | None, str]] = [
    ("XR_ELBOW", 201, None, "png"),
    ("XR_FINGER", 202, "fracture", "png"),
    ("XR_FOREARM", 203, "hardware", "png"),
    ("XR_HAND", 204, None, "png"),
    ("XR_HUMERUS", 205, "lytic lesion", "png"),
    ("XR_SHOULDER", 206, "degeneration", "png"),
    ("XR_WRIST", 207, "fracture", "dcm"),
]
LIMB_SIZE = 512


def _save_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), mode="L").save(path)


def _findings_json(p: Phantom) -> list[dict]:
    return [{"name": f.name, "class_id": CHEST_CLASSES.index(f.name) if f.name in CHEST_CLASSES else None,
             "box_xyxy": [round(v, 1) for v in f.box], "severity": round(f.severity, 2)} for f in p.findings]


def write_app_images(out_dir: str | Path) -> Path:
    """Render the curated examples, ``manifest.json`` and ``README.md`` into ``out_dir``; returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for stem, seed, size, findings, fmt, opts in CHEST_EXAMPLES:
        p = render_chest(seed, size, findings, severity=0.75)
        name = f"{stem}.{fmt}"
        if fmt == "dcm":
            write_dicom(out / name, p.image, uid_key=f"app-{stem}", body_part="CHEST", view="PA", **opts)
        else:
            _save_png(out / name, p.image)
        entries.append({"id": stem, "files": [name], "anatomy": "chest", "study_type": "CHEST PA",
                        "label": int(bool(findings)), "findings": _findings_json(p),
                        "cardiothoracic_ratio": p.info["ctr"], "size": list(p.image.shape),
                        "seed": seed, "statement": STATEMENT})
    for k, (study, seed, abn, fmt) in enumerate(LIMB_EXAMPLES, start=1):
        part = study.removeprefix("XR_").lower()
        stem = f"limb_{k:02d}_{part}_{abn.replace(' ', '_') if abn else 'normal'}"
        files, views = [], []
        for v in range(3 if k % 2 else 2):
            p = render_limb(study, seed, v, LIMB_SIZE, abn, severity=0.8)
            name = f"{stem}_view{v + 1}.{fmt}"
            if fmt == "dcm":
                write_dicom(out / name, p.image, uid_key=f"app-{name}", body_part=part.upper(),
                            view={"AP": "AP", "LAT": "LL", "OBL": "AP"}[p.info["view"]], bits_stored=12)
            else:
                _save_png(out / name, p.image)
            files.append(name)
            views.append({"file": name, "view": p.info["view"], "findings": _findings_json(p)})
        entries.append({"id": stem, "files": files, "anatomy": "limb", "study_type": study,
                        "label": int(abn is not None), "abnormality": abn, "views": views,
                        "seed": seed, "statement": STATEMENT})
    manifest = {"description": STATEMENT, "regenerate": REGENERATE,
                "box_convention": "x_min, y_min, x_max, y_max in pixels of the file",
                "examples": entries}
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "README.md").write_text(_README)
    return path


_README = f"""# app_images: synthetic phantom radiographs

Every file here is a **synthetic phantom** made by this project's generator (`radtriage.phantoms`),
not a patient image and not derived from any real data. They exist to try the dashboard and the CLI.

- `chest_*`: frontal (PA) chest phantoms, normal or with VinBigData findings; some are DICOM
  (`chest_02_cardiomegaly.dcm` is 2048 x 2048, 14 bits stored, JPEG 2000 lossless; `chest_05` is
  MONOCHROME1), some PNG. DICOMs carry BodyPartExamined `CHEST`.
- `limb_*`: one upper-limb study per MURA study type (2-3 views each, normal or abnormal); the wrist
  study is DICOM with BodyPartExamined `WRIST`.
- `manifest.json`: the ground truth of each example (files, anatomy, study type, label, findings with
  boxes in pixels).

Regenerate (deterministic, same bytes) from the project root:

    {REGENERATE}
"""


def contact_sheet(path: str | Path, size: int = 384) -> Path:
    """Save a contact sheet (matplotlib) of chest phantoms with every finding outlined, and limb studies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chest_cases: list[tuple[str, ...]] = [()] + [(c,) for c in CHEST_CLASSES if c not in ("Other lesion",)]
    chest_cases[CHEST_CLASSES.index("Calcification") + 1] = ("Calcification", "Other lesion")
    fig, axes = plt.subplots(3, 7, figsize=(21, 10.5), facecolor="black")
    colours = plt.cm.tab20(np.linspace(0, 1, 20))
    for ax, (i, case) in zip(axes[:2].flat, enumerate(chest_cases)):
        p = render_chest(300 + i, size, case, severity=0.7)
        ax.imshow(p.image, cmap="gray", vmin=0, vmax=1)
        for f in p.findings:
            ax.contour(f.mask, [0.5], colors=[colours[CHEST_CLASSES.index(f.name)]], linewidths=1.0)
        ax.set_title(" + ".join(case) or f"normal (CTR {p.info['ctr']:.2f})", color="white", fontsize=10)
    for ax, (j, study) in zip(axes[2], enumerate(MURA_STUDY_TYPES)):
        abn = (None, "fracture", "hardware", None, "lytic lesion", "degeneration", "fracture")[j]
        p = render_limb(study, 400 + j, j % 2, size, abn, severity=0.8)
        ax.imshow(p.image, cmap="gray", vmin=0, vmax=1)
        for f in p.findings:
            ax.contour(f.mask, [0.5], colors=["red"], linewidths=1.0)
        ax.set_title(f"{study} {p.info['view']}: {abn or 'normal'}", color="white", fontsize=10)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("radtriage synthetic phantoms (findings outlined)", color="white", fontsize=14)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60, facecolor="black")
    plt.close(fig)
    return path
