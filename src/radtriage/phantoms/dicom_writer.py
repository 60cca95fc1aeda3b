"""Writing a phantom as a DICOM file (DX, MONOCHROME1/2, 12-16 bits stored, optional JPEG 2000)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileMetaDataset
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, PYDICOM_IMPLEMENTATION_UID, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def to_stored(image: np.ndarray, bits_stored: int, photometric: str) -> np.ndarray:
    """[0, 1] radiograph (1 = white) -> uint16 stored values (MONOCHROME1 stores it inverted)."""
    top = (1 << bits_stored) - 1
    vals = np.clip(image, 0, 1) if photometric == "MONOCHROME2" else 1 - np.clip(image, 0, 1)
    return np.round(vals * top).astype(np.uint16)


def write_dicom(path: str | Path, image: np.ndarray, *, uid_key: str, bits_stored: int = 16,
                photometric: str = "MONOCHROME2", jpeg2000: bool = False, body_part: str = "CHEST",
                view: str = "PA", description: str = "synthetic phantom") -> Path:
    """Save a float (H, W) [0, 1] image as a DX DICOM file.

    Args:
        path: output file.
        image: float (H, W) in [0, 1], 0 = black.
        uid_key: any string; UIDs are derived from it, so the same key gives the same bytes.
        bits_stored: 12..16.
        photometric: "MONOCHROME2" (0 = black) or "MONOCHROME1" (0 = white, stored inverted).
        jpeg2000: compress with JPEG 2000 lossless (pylibjpeg-openjpeg encoder).
        body_part: BodyPartExamined, e.g. "CHEST" or "WRIST".
        view: ViewPosition ("PA", "AP", "LL"...).
        description: SeriesDescription; no patient identifiers are written.

    Returns:
        The path written.
    """
    if not 12 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be in [12, 16], got {bits_stored}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    arr = to_stored(image, bits_stored, photometric)
    sop_uid = generate_uid(entropy_srcs=[uid_key, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[uid_key, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_key, "series"])
    ds.Modality = "DX"
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view
    ds.SeriesDescription = description
    ds.Manufacturer = "radtriage phantom generator"
    ds.PatientName = ""
    ds.PatientID = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.14 * 2048 / arr.shape[0]] * 2
    ds.PixelData = arr.tobytes()
    if jpeg2000:
        ds.compress(JPEG2000Lossless, arr, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
