"""DICOM studies for the PACS tests, built at test time (nothing here is committed patient data).

Real radiographs from ../shared/data wrapped into DICOM (NIH chest PNGs as CR, FracAtlas hand JPEGs as
DX) when that folder is present, else the project's synthetic phantoms; every instance carries the fake
identifying values of :data:`dicom_fixtures.PHI`, so a test can check that none of them leaks into the
job's output or into the free text of what it writes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from dicom_fixtures import PHI, dicom_bytes, make_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHEST_PNGS = ("00000404_000.png", "00004001_000.png", "00000100_000.png")  # NIH: effusion and more
HAND_JPGS = ("IMG0000025.jpg", "IMG0000155.jpg")  # FracAtlas: hand fractures, two views


@dataclass
class Study:
    """A study to upload: its UID and its instances' DICOM bytes."""

    uid: str
    files: list[bytes] = field(default_factory=list)
    kind: str = ""


def _chest_pixels(i: int) -> np.ndarray:
    path = SHARED / "nih-cxr-sample" / "images" / CHEST_PNGS[i % len(CHEST_PNGS)]
    if path.is_file():
        return np.asarray(Image.open(path).convert("L"))
    from radtriage.phantoms import render_chest

    return np.round(render_chest(500 + i, size=256, findings=["Pleural effusion"]).image * 255).astype(np.uint8)


def _hand_pixels(i: int) -> np.ndarray:
    path = SHARED / "fracatlas" / "images" / HAND_JPGS[i % len(HAND_JPGS)]
    if path.is_file():
        return np.asarray(Image.open(path).convert("L"))
    from radtriage.phantoms import render_limb

    return np.round(render_limb("XR_HAND", 600 + i, view=i, size=256, abnormality="fracture").image * 255).astype(np.uint8)


def page_pixels(i: int = 0) -> np.ndarray:
    """A rendered text page, screenshot or gray "photo" (by ``i % 3``): not a radiograph, as a scanned form
    sent as DX would be (the anatomy gate's own renderer, another seed than its training's)."""
    from radtriage.runs.anatomy import render_non_radiograph

    return np.round(render_non_radiograph(i, 9_181) * 255).astype(np.uint8)


def _patient(ds: Dataset, study_uid: str, series_uid: str, number: int) -> None:
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.PatientSex = "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate = ds.SeriesDate = datetime.date.today().strftime("%Y%m%d")
    ds.StudyTime = "101500"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", number, 1
    ds.StudyDescription = "XR examination"


def radiograph(pixels: np.ndarray, study_uid: str, number: int, *, modality: str, body_part: str) -> bytes:
    """One single-frame 8-bit MONOCHROME2 CR or DX instance of ``pixels`` in the study."""
    ds = make_dataset(pixels.astype(np.uint8), BodyPartExamined=body_part, Modality=modality)
    sop_class = ComputedRadiographyImageStorage if modality == "CR" else DigitalXRayImageStorageForPresentation
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    if modality == "CR":
        del ds.ImagerPixelSpacing
    ds.ViewPosition = "PA"
    _patient(ds, study_uid, generate_uid(), number)
    return dicom_bytes(ds)


def pdf_instance(study_uid: str, number: int) -> bytes:
    """An encapsulated PDF (a scanned request form, say) in the study."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "DOC"
    _patient(ds, study_uid, generate_uid(), number)
    ds.BurnedInAnnotation = "YES"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "Request form"
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    ds.EncapsulatedDocument = pdf + b"\0" * (len(pdf) % 2)
    return dicom_bytes(ds)


def text_sr_instance(study_uid: str, number: int) -> bytes:
    """A radiologist's Basic Text SR (not radtriage's) in the study."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    _patient(ds, study_uid, generate_uid(), number)
    ds.SeriesDescription = "Radiology report"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = "11528-7", "LN", "Radiology Report"
    ds.ConceptNameCodeSequence = [title]
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    text = Dataset()
    text.RelationshipType, text.ValueType, text.TextValue = "CONTAINS", "TEXT", "No acute findings."
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "121071", "DCM", "Finding"
    text.ConceptNameCodeSequence = [name]
    ds.ContentSequence = [text]
    return dicom_bytes(ds)


def chest_study(i: int = 0, *, extras: bool = False) -> Study:
    """A chest CR study of one image (``extras``: plus a PDF and a text SR beside it)."""
    study = Study(generate_uid(), kind="chest")
    study.files.append(radiograph(_chest_pixels(i), study.uid, 1, modality="CR", body_part="CHEST"))
    if extras:
        study.files += [pdf_instance(study.uid, 2), text_sr_instance(study.uid, 3)]
    return study


def hand_study(i: int = 0) -> Study:
    """An upper-limb DX study of two hand views (one verdict: the mean of both)."""
    study = Study(generate_uid(), kind="hand")
    for view in range(2):
        study.files.append(radiograph(_hand_pixels(i + view), study.uid, view + 1, modality="DX", body_part="HAND"))
    return study


def mixed_hand_study() -> Study:
    """A study whose every instance says Body Part Examined HAND: two hand views, a rendered page sent as DX
    (image 3: no model reads it) and a chest radiograph (image 4: the gate sends it to the chest model)."""
    study = hand_study(0)
    study.files.append(radiograph(page_pixels(0), study.uid, 3, modality="DX", body_part="HAND"))
    study.files.append(radiograph(_chest_pixels(0), study.uid, 4, modality="DX", body_part="HAND"))
    study.kind = "mixed"
    return study


def stand_in_models(folder: Path) -> Path | None:
    """Without ../shared/data the studies hold phantoms, which the shipped real-data models rightly refuse
    as out of their distribution: then the PACS tests run on random-weight stand-in models (no
    out-of-distribution score) behind the shipped anatomy gate (which knows the phantoms), written to
    ``folder``. Returns that folder, or None when the real images (and the shipped models) are used."""
    if (SHARED / "nih-cxr-sample" / "images" / CHEST_PNGS[0]).is_file():
        return None
    import shutil

    from dashboard_support import REPO, build_models

    build_models(folder)
    shutil.copytree(REPO / "model" / "anatomy", folder / "anatomy")
    return folder
