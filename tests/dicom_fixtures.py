"""Synthetic radiograph fixtures (DICOM via pydicom, PNG/JPEG via Pillow) for tests and benches.

Everything is generated in memory; nothing here is real patient data. Reuse freely::

    from dicom_fixtures import dicom_bytes, gradient, png_bytes

(``tests/`` is on ``sys.path`` under pytest's default rootdir-based import mode.)
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

#: Identifying values a no-PHI test can search for in every output.
PHI = {
    "PatientName": "Doe^Jane^Quincy",
    "PatientID": "PID-93817265",
    "PatientBirthDate": "19470312",
    "AccessionNumber": "ACC-55120987",
    "InstitutionName": "St Elsewhere Memorial Hospital",
    "ReferringPhysicianName": "Welby^Marcus",
    "OtherPatientIDs": "ALT-7730012",
    "PerformingPhysicianName": "Casey^Ben",
}


def gradient(rows: int = 128, columns: int = 96, top: int = 4095, *, signed: bool = False) -> np.ndarray:
    """A smooth, asymmetric test image: value rises left -> right and top -> bottom.

    Returns:
        uint16 (or int16 when ``signed``, centred on 0) array spanning [0, top] (or about
        [-(top+1)/2, (top-1)/2]); the bottom-right pixel holds the maximum, top-left the minimum.
    """
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float64)
    ramp = (xx / max(columns - 1, 1) * 0.7 + yy / max(rows - 1, 1) * 0.3) * top
    arr = np.rint(ramp).astype(np.int64)
    if signed:
        return (arr - (top + 1) // 2).astype(np.int16)
    return arr.astype(np.uint16 if top > 255 else np.uint8)


def smooth_texture(rows: int, columns: int, top: int, *, seed: int = 0) -> np.ndarray:
    """A smooth random image (low-frequency blobs) in [0, top], uint16; like soft tissue."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    img = np.zeros((rows, columns), np.float32)
    for _ in range(6):
        fy, fx, py, px = rng.uniform(0.5, 3.0, 2).tolist() + rng.uniform(0, 6.28, 2).tolist()
        img += np.sin(yy / rows * 6.28 * fy + py) * np.cos(xx / columns * 6.28 * fx + px)
    img = (img - img.min()) / (img.max() - img.min())
    return np.rint(img * top).astype(np.uint16)


def make_dataset(
    pixels: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    frames: int = 1,
    phi: bool = False,
    **tags: Any,
) -> Dataset:
    """An uncompressed single-sample DICOM dataset (DX) holding ``pixels``.

    Args:
        pixels: (rows, columns) or (frames, rows, columns) integer array; int16 -> signed.
        bits_stored: BitsStored (default: the dtype's bit width).
        photometric: MONOCHROME1 or MONOCHROME2 (other values make a deliberately unsupported file).
        frames: NumberOfFrames written when > 1 (``pixels`` must then be 3-D).
        phi: add the identifying tags in :data:`PHI`.
        **tags: any further keyword=value DICOM tags (e.g. WindowCenter=2048).
    """
    bits_allocated = pixels.dtype.itemsize * 8
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Manufacturer = "Synthetic Imaging Co"
    ds.ImagerPixelSpacing = [0.139, 0.139]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(np.issubdtype(pixels.dtype, np.signedinteger))
    if frames > 1:
        ds.NumberOfFrames = frames
    if phi:
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def compressed(ds: Dataset, transfer_syntax: str, **kwargs: Any) -> Dataset:
    """Compress ``ds`` in place with pydicom (JPEG 2000, JPEG-LS, RLE) and return it."""
    ds.compress(UID(transfer_syntax), generate_instance_uid=False, **kwargs)
    return ds


def jpeg_baseline_dataset(pixels8: np.ndarray, **tags: Any) -> Dataset:
    """A JPEG Baseline DICOM: pydicom cannot encode it, so Pillow encodes and pydicom encapsulates."""
    ds = make_dataset(pixels8.astype(np.uint8), **tags)
    buf = io.BytesIO()
    Image.fromarray(pixels8.astype(np.uint8), mode="L").save(buf, format="JPEG", quality=95)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


def dicom_bytes(ds: Dataset, *, preamble: bool = True) -> bytes:
    """Serialise ``ds``: a Part 10 file (preamble + 'DICM' + meta) or a bare dataset stream."""
    buf = io.BytesIO()
    if preamble:
        private = not UID(ds.file_meta.TransferSyntaxUID).is_transfer_syntax
        encoding = {"implicit_vr": False, "little_endian": True} if private else {}
        ds.save_as(buf, enforce_file_format=True, **encoding)
    else:
        # A bare Implicit VR Little Endian stream, as old ACR-NEMA-style exports write.
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset

        body = Dataset()
        body.update({elem.tag: elem for elem in ds})
        out = DicomBytesIO()
        out.is_little_endian, out.is_implicit_VR = True, True
        write_dataset(out, body)
        return out.getvalue()
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    """PNG of a uint8 (8-bit), uint16 (16-bit), (H, W, 3) RGB or (H, W, 4) RGBA array."""
    im = Image.fromarray(np.ascontiguousarray(pixels))
    if mode is not None:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(pixels: np.ndarray, *, orientation: int | None = None, quality: int = 95) -> bytes:
    """JPEG of a uint8 gray or RGB array, optionally with an EXIF Orientation tag (1..8)."""
    im = Image.fromarray(pixels)
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"quality": quality}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    im.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def bomb_png_bytes(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` 8-bit gray (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def colour_photo(rows: int = 120, columns: int = 160, seed: int = 0) -> np.ndarray:
    """An RGB 'photograph': saturated colour regions plus noise, uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((rows, columns, 3), np.float32)
    img[: rows // 2, :, 0] = 220  # red sky
    img[rows // 2 :, :, 1] = 180  # green field
    img[:, columns // 2 :, 2] += 150  # blue half
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
TEXT = b"Patient report: chest radiograph shows no acute cardiopulmonary process.\n" * 4
