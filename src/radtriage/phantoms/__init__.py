"""Synthetic phantom radiographs: chest (14 VinBigData findings) and upper limb (7 MURA study types).

Every phantom is deterministic for its seed; images are float32 in [0, 1], 0 = black (air),
1 = white (bone). Anatomically plausible, not photorealistic; the ground truth is exact.

Single images:
    render_chest(seed, size=512, findings=(), *, width=None, severity=None) -> Phantom
    render_limb(study_type, seed, view=0, size=512, abnormality=None, severity=None, width=None) -> Phantom
    render_study(study_type, seed, size=512, abnormality=None, n_views=None) -> list[Phantom]
    Phantom(image, findings: list[Finding(name, mask, box, severity)], anatomy: dict[str, mask], info)

In-memory training arrays (no files):
    chest_batch(n, size=256, seed=0, findings_prob=0.5, max_findings=3, return_masks=False, workers=1)
        -> ChestBatch(images (n,S,S) float32, labels (n,14) float32, boxes, masks)
    limb_batch(n, size=256, seed=0, abnormal_prob=0.45, study_types=MURA_STUDY_TYPES,
               return_masks=False, workers=1)
        -> LimbBatch(images (n,S,S), labels (n,), study_types, abnormalities, study_ids, patient_ids, masks)

Datasets in the real layouts (parallel over ``workers`` processes, identical output for any count):
    write_vinbigdata(root, n_images, seed=0, size=512, findings_prob=0.3, jpeg2000_prob=0.2, workers=2)
        -> root/train.csv  (+ root/train/<32-hex>.dicom)
    write_mura(root, n_studies, seed=0, size=512, valid_fraction=0.1, abnormal_prob=0.45, workers=2)
        -> root/MURA-v1.1  (+ images and the 4 headerless CSVs)

Curated examples and pictures:
    write_app_images(out_dir) -> manifest path;   contact_sheet(path, size=384) -> path
    CLI: python -m radtriage.phantoms {examples DIR | sheet PNG | vinbigdata DIR N | mura DIR N}
"""

from radtriage.phantoms.chest import FINDING_ANATOMY, render_chest
from radtriage.phantoms.dicom_writer import write_dicom
from radtriage.phantoms.examples import contact_sheet, write_app_images
from radtriage.phantoms.layouts import (
    ChestBatch,
    LimbBatch,
    LimbStudy,
    chest_batch,
    item_seed,
    limb_batch,
    plan_limb_studies,
    write_mura,
    write_vinbigdata,
)
from radtriage.phantoms.limb import LIMB_ABNORMALITIES, render_limb, render_study
from radtriage.phantoms.types import Finding, Phantom

__all__ = [
    "FINDING_ANATOMY", "LIMB_ABNORMALITIES", "ChestBatch", "Finding", "LimbBatch", "LimbStudy", "Phantom",
    "chest_batch", "contact_sheet", "item_seed", "limb_batch", "plan_limb_studies", "render_chest",
    "render_limb", "render_study", "write_app_images", "write_dicom", "write_mura", "write_vinbigdata",
]
