"""Loading radiographs (DICOM, PNG, JPEG) from a path or bytes into grayscale [0, 1] + safe metadata.

``load`` detects the format from the content (never the file extension), refuses bad input with a
typed :class:`RadiographError` whose ``str()`` is one plain sentence, and returns a
:class:`Radiograph`: float32 pixels (H, W) in [0, 1] with 0 = black (air) and 1 = white (bone).

DICOM display pipeline (PS3.3 C.11): stored values (BitsStored and sign honoured by pydicom) ->
Modality LUT (sequence, else Rescale Slope/Intercept) -> VOI (VOI LUT Sequence, else the first
Window Center/Width, else the 0.5-99.5 percentile range of the modality values) -> [0, 1] ->
inverted for MONOCHROME1. :mod:`radtriage.pixel_sanity` refuses contradictory pixel-module tags and
any image (DICOM, PNG, JPEG) left uniform or saturated by this pipeline, naming the tag to blame.

A JPEG whose scan is whole but whose end-of-image marker is missing (a file cut in its last bytes)
is read with a note in :attr:`Radiograph.warnings`; a JPEG missing any part of its scan is refused.

JPEG 2000 DICOMs with ``min_side`` are decoded at reduced resolution by Pillow (a 2048 px file
with ``min_side=256`` decodes 8x smaller: 12-22 ms instead of 0.6-0.8 s for a full decode, load and
preprocess included, bench/RESULTS.md);
:meth:`Radiograph.full_resolution` decodes the full image lazily when it is wanted for display.

Patient identifiers never leave this module: only :class:`SafeMetadata` tags are read out, the
pydicom Dataset is not kept (only a copy of the pixel-module tags and the pixel bytes), and no
error message quotes a DICOM value other than a pixel-module tag's (Bits Stored, Window Width...).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from radtriage import jpeg_scan, pixel_sanity

# --- parameters -----------------------------------------------------------------------------
MIN_SIDE_PX = 64  # smaller than this is an icon or a thumbnail, not a radiograph
MAX_SIDE_PX = 10_000
MAX_PIXELS = 60_000_000  # ~ 7,750^2: every real radiograph fits, a decompression bomb does not
MAX_FILE_BYTES = 1_000_000_000
FALLBACK_PERCENTILES = (0.5, 99.5)  # VOI when a DICOM has neither VOI LUT nor window
PERCENTILE_SAMPLES = 250_000  # subsample for the fallback percentiles (same answer to ~1e-3)
PILLOW_J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
# A JPEG without its end marker is checked by walking its scan in Python (~0.5 s per MB of scan);
# a larger one is refused as before rather than kept waiting.
JPEG_SALVAGE_MAX_BYTES = 16_000_000
_J2K_SYNTAXES = (*PILLOW_J2K_SYNTAXES, "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
_JPEG_SYNTAXES = tuple(f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70, 80, 81))

_DICM_OFFSET = 128
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
# Tags copied into the private pixel recipe (for a lazy full-resolution decode): the Image Pixel
# module, Modality LUT and VOI LUT modules only. Nothing that identifies a person.
_PIXEL_TAGS = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "PixelData",
)

# --- errors ---------------------------------------------------------------------------------
class RadiographError(ValueError):
    """Base of every error the loader raises on bad input. ``str(err)`` is one plain sentence."""

    #: short machine-readable code, e.g. "not_an_image"
    code = "radiograph_error"


class NotAnImageError(RadiographError):
    code = "not_an_image"


class CorruptFileError(RadiographError):
    code = "corrupt"


class MultiFrameError(RadiographError):
    code = "multi_frame"


class NoPixelDataError(RadiographError):
    code = "no_pixel_data"


class UnsupportedPhotometricError(RadiographError):
    code = "unsupported_photometric"


class UnsupportedTransferSyntaxError(RadiographError):
    code = "unsupported_transfer_syntax"


class ImageTooSmallError(RadiographError):
    code = "too_small"


class ImageTooLargeError(RadiographError):
    code = "too_large"


class ColourPhotoError(RadiographError):
    code = "colour_photo"


class ContradictoryTagsError(CorruptFileError):
    code = "contradictory_tags"  # pixel-module tags contradict each other or the pixel data


class UninformativeImageError(RadiographError):
    code = "uninformative"  # uniform or saturated once displayed (after the DICOM LUTs)


class UnreadableFileError(RadiographError):
    """A path that does not exist, is a folder, or cannot be opened."""

    code = "unreadable"


# Never turned into CorruptFileError: the user or the interpreter is stopping us.
_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)
_NOT_AN_IMAGE = "This file is not a radiograph image: please provide a DICOM, PNG or JPEG file."
_CORRUPT = "This image file is damaged or incomplete and cannot be read."
_JPEG_NO_EOI = "This JPEG file ends without its end marker; every row of the image was decoded."


# --- public data types ----------------------------------------------------------------------
@dataclass(frozen=True)
class SafeMetadata:
    """Only the tags that identify no one. Patient/institution/physician fields never get here."""

    source_format: str  # "dicom" | "png" | "jpeg"
    rows: int  # original full-resolution height
    columns: int  # original full-resolution width
    bits_stored: int | None = None
    modality: str | None = None
    body_part_examined: str | None = None
    view_position: str | None = None
    photometric_interpretation: str | None = None
    pixel_spacing: tuple[float, float] | None = None
    manufacturer: str | None = None
    transfer_syntax: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (JSON-serialisable: pixel_spacing becomes a list or None)."""
        d = asdict(self)
        if d["pixel_spacing"] is not None:
            d["pixel_spacing"] = list(d["pixel_spacing"])
        return d


@dataclass(repr=False)
class Radiograph:
    """A grayscale radiograph.

    Attributes:
        pixels: float32 (H, W) in [0, 1], 0 = black (air on a radiograph), 1 = white (bone).
            May be a reduced-resolution decode when ``load`` was given ``min_side``.
        metadata: safe metadata (full-resolution size in rows/columns).
        name: the file's base name (never a full path), or "upload".
        warnings: plain one-sentence notes the caller can show beside the image (e.g. a JPEG read
            although its end marker is missing); empty for a file read without remark.
    """

    pixels: np.ndarray
    metadata: SafeMetadata
    name: str = "upload"
    _full: Any = field(default=None, repr=False)  # None | callable -> full pixels | ndarray
    min_side: int | None = None  # what ``load`` was asked for: with the metadata, it fixes the decode
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Radiograph(name={self.name!r}, shape={self.pixels.shape}, metadata={self.metadata!r})"

    @property
    def is_reduced(self) -> bool:
        """True when ``pixels`` is smaller than the file's full resolution."""
        return self.pixels.shape != (self.metadata.rows, self.metadata.columns)

    def full_resolution(self) -> np.ndarray:
        """Pixels at the file's full resolution, float32 (rows, columns) in [0, 1].

        Decoded on first call (and cached) when ``pixels`` is a reduced decode, else ``pixels``.
        """
        if self._full is None:
            return self.pixels
        if callable(self._full):
            try:
                self._full = self._full()
            except (RadiographError, *_PASS_THROUGH):
                raise
            except BaseException:  # noqa: BLE001 - decoder internals; the message must stay plain
                raise CorruptFileError(_CORRUPT) from None
        return self._full


# --- entry point ----------------------------------------------------------------------------
def load(source: str | Path | bytes, *, min_side: int | None = None, name: str | None = None) -> Radiograph:
    """Load a radiograph from a path or from bytes (an upload).

    Args:
        source: path to a DICOM/PNG/JPEG file, or the file's bytes. The format is detected from
            the content, not the name.
        min_side: the smallest side the caller needs (e.g. the model input size). JPEG 2000
            DICOMs are then decoded at the coarsest resolution level with both sides >= min_side;
            other formats always decode at full resolution.
        name: display name; defaults to the path's base name, or "upload" for bytes.

    Returns:
        Radiograph with float32 pixels (H, W) in [0, 1] (0 = black/air, 1 = white/bone).

    Raises:
        RadiographError: a subclass saying what is wrong; no other exception escapes for any bytes.
    """
    data, default_name = _read_source(source)
    display_name = Path(name).name if name else default_name
    try:
        pixels, metadata, full, notes = _decode(data, min_side)
    except RadiographError:
        raise
    except MemoryError:
        raise ImageTooLargeError("This image is too large to open on this computer.") from None
    except _PASS_THROUGH:
        raise
    except BaseException:  # noqa: BLE001 - decoder failures on bad bytes, incl. Rust panics (pyo3)
        raise CorruptFileError(_CORRUPT) from None
    return Radiograph(
        pixels=pixels, metadata=metadata, name=display_name or "upload", warnings=notes, _full=full, min_side=min_side
    )


def decode_level(metadata: SafeMetadata, min_side: int | None) -> int:
    """The resolution level ``load(min_side=...)`` decodes a file at: 0 = full resolution, k = 1/2**k.

    Only JPEG 2000 DICOMs that Pillow can reduce have levels; every other file decodes to the same
    pixels whatever ``min_side``. Two loads of one file with the same level give the same pixels,
    which lets a caller reuse a decode instead of decoding again (:func:`radtriage.preprocess.model_input`).
    """
    if metadata.source_format != "dicom" or metadata.transfer_syntax not in _pillow_j2k_names():
        return 0
    return _reduction_level(metadata.rows, metadata.columns, min_side)


def _pillow_j2k_names() -> frozenset[str]:
    return frozenset(_ts_name(ts) for ts in PILLOW_J2K_SYNTAXES)


def _read_source(source: str | Path | bytes) -> tuple[bytes, str]:
    """The file's bytes and its default display name (base name only)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "upload"
    if not isinstance(source, (str, Path)):
        raise TypeError(f"source must be a path or bytes, got {type(source).__name__}")
    path = Path(source)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageTooLargeError("This file is larger than 1 GB, too large for a single radiograph.")
        return path.read_bytes(), path.name
    except OSError:
        raise UnreadableFileError(f"The file {path.name!r} could not be opened.") from None


def _decode(data: bytes, min_side: int | None) -> tuple[np.ndarray, SafeMetadata, Any, tuple[str, ...]]:
    has_preamble = len(data) >= _DICM_OFFSET + 4 and data[_DICM_OFFSET : _DICM_OFFSET + 4] == b"DICM"
    if not has_preamble and data.startswith(_PNG_MAGIC):
        return _load_pil(data, "PNG")
    if not has_preamble and data.startswith(_JPEG_MAGIC):
        return _load_pil(data, "JPEG")
    if has_preamble or _looks_like_raw_dicom(data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's value warnings quote tag values
            return (*_load_dicom(data, min_side, force=not has_preamble), ())
    raise NotAnImageError(_NOT_AN_IMAGE)


def _looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM stream without the 128-byte preamble starts with a group 0002 or 0008 tag."""
    if len(data) < 8:
        return False
    group, element = struct.unpack("<HH", data[:4])
    return group in (0x0002, 0x0008) and element <= 0x0100


def _check_size(rows: int, columns: int) -> None:
    """Refuse thumbnails and decompression bombs from header sizes, before any decoding."""
    if max(rows, columns) > MAX_SIDE_PX or rows * columns > MAX_PIXELS:
        raise ImageTooLargeError(
            f"This image is {columns} x {rows} pixels, larger than the limit of {MAX_SIDE_PX:,} pixels "
            f"a side and {MAX_PIXELS // 1_000_000} megapixels."
        )
    if min(rows, columns) < MIN_SIDE_PX:
        raise ImageTooSmallError(
            f"This image is only {columns} x {rows} pixels; a radiograph needs at least "
            f"{MIN_SIDE_PX} pixels on each side."
        )


# --- PNG / JPEG -----------------------------------------------------------------------------
def _load_pil(data: bytes, fmt: str) -> tuple[np.ndarray, SafeMetadata, None, tuple[str, ...]]:
    """PNG or JPEG bytes -> grayscale [0, 1], EXIF orientation applied, alpha composited on black
    (+ the notes for :attr:`Radiograph.warnings`)."""
    if fmt == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        _check_size(height, width)
    # PIL warns above Image.MAX_IMAGE_PIXELS (~89 MP) and raises above twice that; the warning is
    # an error here, and _check_size applies our lower limit from the header before decoding.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError("This image is larger than the size limit this tool accepts.") from None
    except Exception:  # noqa: BLE001
        raise CorruptFileError(_CORRUPT) from None
    width, height = im.size
    _check_size(height, width)
    notes: tuple[str, ...] = ()
    if fmt == "JPEG":
        im, notes = _load_jpeg(im, data)
    bits = 16 if im.mode.startswith("I") else 8
    im = ImageOps.exif_transpose(im)  # loads the pixels; JPEG orientation from the camera/scanner
    gray = _pil_to_gray(im)
    _refuse(UninformativeImageError, pixel_sanity.uninformative(gray))
    rows, columns = gray.shape
    meta = SafeMetadata(source_format=fmt.lower(), rows=rows, columns=columns, bits_stored=bits)
    return gray, meta, None, notes


def _pil_to_gray(im: Image.Image) -> np.ndarray:
    """Any PIL image -> float32 (H, W) in [0, 1]; refuses colour photographs."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.float32) / np.float32(255)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im, dtype=np.float32)
        top = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        return np.clip(arr / np.float32(top), 0.0, 1.0)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float32))
        lo, hi = float(arr.min()), float(arr.max())
        return (arr - lo) / np.float32(hi - lo) if hi > lo else np.zeros_like(arr)
    if mode == "LA":
        la = np.asarray(im, dtype=np.float32) / np.float32(255)
        return la[..., 0] * la[..., 1]  # transparent = black, like air around the body
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / np.float32(255)
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    _refuse(ColourPhotoError, pixel_sanity.colour_photograph(rgb))
    return rgb.mean(axis=-1) * alpha


# --- JPEG without its end marker ------------------------------------------------------------
def _load_jpeg(im: Image.Image, data: bytes) -> tuple[Image.Image, tuple[str, ...]]:
    """Decode a JPEG strictly; a file lacking only its end marker (its scan whole, which a decode
    cannot tell: see :mod:`radtriage.jpeg_scan`) is decoded with the marker appended and a note.
    Every other incomplete JPEG, progressive ones included, is refused."""
    try:
        im.load()
        return im, ()
    except OSError:  # truncated ("image file is truncated") or broken data: decided below
        pass
    if len(data) > JPEG_SALVAGE_MAX_BYTES or not jpeg_scan.scan_is_whole(data):
        raise CorruptFileError(_CORRUPT)
    whole = Image.open(io.BytesIO(data + _JPEG_EOI), formats=["JPEG"])
    whole.load()  # strict: any other fault still refuses the file (via load)
    return whole, (_JPEG_NO_EOI,)


# --- DICOM ----------------------------------------------------------------------------------
def _load_dicom(data: bytes, min_side: int | None, *, force: bool) -> tuple[np.ndarray, SafeMetadata, Any]:
    """DICOM bytes -> grayscale [0, 1] + safe metadata (+ a lazy full decode when reduced)."""
    ds = _read_dataset(data, force=force)
    if "PixelData" not in ds and _PIXEL_DATA_TAG in data:
        raise CorruptFileError(_CORRUPT)  # pydicom drops a Pixel Data element cut off by truncation
    ts = _transfer_syntax(ds)
    _check_dicom_header(ds, ts)
    recipe = _PixelRecipe.from_dataset(ds, ts)
    meta = _safe_metadata(ds, ts)
    del ds  # nothing below may reach identifying tags

    level = _reduction_level(recipe.rows, recipe.columns, min_side)
    if level and ts in PILLOW_J2K_SYNTAXES:
        stored = _decode_j2k_reduced(recipe, level)
        if stored is not None:
            return _display(recipe, stored), meta, lambda: recipe.to_unit(recipe.decode_full())
    return _display(recipe, recipe.decode_full()), meta, None


def _display(recipe: _PixelRecipe, stored: np.ndarray) -> np.ndarray:
    """Stored values -> display [0, 1]; refuses a wrapped sign or a blank display (pixel_sanity)."""
    _refuse(ContradictoryTagsError, pixel_sanity.wrapped_sign(stored, int(recipe.ds.BitsStored)))
    recipe.fit_range(stored)
    out = recipe.to_unit(stored)
    _refuse(UninformativeImageError, pixel_sanity.uninformative(out, stored, recipe))
    return out


def _refuse(error: type[RadiographError], sentence: str | None) -> None:
    if sentence:
        raise error(sentence)


def _read_dataset(data: bytes, *, force: bool) -> Any:
    import pydicom  # deferred: PNG-only callers never pay for it

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warnings may quote tag values (names, IDs)
            ds = pydicom.dcmread(io.BytesIO(data), force=force)
    except Exception:  # noqa: BLE001
        if force:
            raise NotAnImageError(_NOT_AN_IMAGE) from None
        raise CorruptFileError(_CORRUPT) from None
    if force and not any(k in ds for k in ("PixelData", "Rows", "SOPClassUID", "Modality")):
        raise NotAnImageError(_NOT_AN_IMAGE)  # force=True "parses" almost anything: demand substance
    return ds


def _transfer_syntax(ds: Any) -> str:
    """The dataset's transfer syntax UID, inferred from its encoding when the file meta lacks it."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if ts:
        return str(ts)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        return str(ImplicitVRLittleEndian)
    return str(ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _ts_name(ts: str) -> str:
    """A transfer syntax's name, only for known UIDs (the UID field itself is untrusted text)."""
    from pydicom.uid import UID

    uid = UID(ts)
    return uid.name if uid.is_transfer_syntax else "an unknown encoding"


def _check_dicom_header(ds: Any, ts: str) -> None:
    """Every refusal that the header alone can decide, before touching the pixel data."""
    from pydicom.pixels import get_decoder

    if "PixelData" not in ds or ds["PixelData"].VM == 0 or not ds.PixelData:
        raise NoPixelDataError(
            "This DICOM file contains no image (it may be a report or a structured document)."
        )
    frames = _int_tag(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise MultiFrameError(
            f"This DICOM file holds {frames} frames (a series or a cine loop); "
            "please provide a single radiograph image."
        )
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    samples = _int_tag(ds, "SamplesPerPixel", 1)
    _refuse(ContradictoryTagsError, pixel_sanity.colour_contradiction(samples, photometric))
    if samples != 1 or photometric not in _MONOCHROME:
        known = re.fullmatch(r"[A-Z0-9_ ]{1,16}", photometric)  # the tag is free text: quote only a CS value
        raise UnsupportedPhotometricError(
            f"This DICOM image is stored as {photometric if known else 'unknown'} rather than grayscale "
            "(MONOCHROME1/2), which this tool does not read as a radiograph."
        )
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        bits_alloc, bits_stored = int(ds.BitsAllocated), int(ds.BitsStored)
    except Exception:  # noqa: BLE001 - missing or malformed size tags
        raise CorruptFileError(_CORRUPT) from None
    _check_size(rows, columns)
    _refuse(ContradictoryTagsError, pixel_sanity.tag_contradiction(ds, ts))
    if not (1 <= bits_stored <= bits_alloc <= 32):
        raise CorruptFileError(_CORRUPT)
    try:
        available = get_decoder(ts).is_available
    except Exception:  # noqa: BLE001 - no decoder exists for this UID
        available = False
    if not available:
        raise UnsupportedTransferSyntaxError(
            f"This DICOM file is compressed with {_ts_name(ts)}, which this tool cannot decode."
        )


def _int_tag(ds: Any, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword, default)
        return default if value in (None, "") else int(value)
    except Exception:  # noqa: BLE001
        raise CorruptFileError(_CORRUPT) from None


def _safe_metadata(ds: Any, ts: str) -> SafeMetadata:
    """Copy out the whitelisted, non-identifying tags."""

    def text(keyword: str) -> str | None:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001
            return None
        shown = "" if value is None else str(value).strip()[:64]
        return shown or None

    spacing = None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            values = [float(v) for v in ds.get(keyword) or []]
        except Exception:  # noqa: BLE001
            values = []
        if len(values) == 2 and all(np.isfinite(v) and v > 0 for v in values):
            spacing = (values[0], values[1])
            break
    return SafeMetadata(
        source_format="dicom",
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        bits_stored=int(ds.BitsStored),
        modality=text("Modality"),
        body_part_examined=text("BodyPartExamined"),
        view_position=text("ViewPosition"),
        photometric_interpretation=text("PhotometricInterpretation"),
        pixel_spacing=spacing,
        manufacturer=text("Manufacturer"),
        transfer_syntax=_ts_name(ts),
    )


def _reduction_level(rows: int, columns: int, min_side: int | None) -> int:
    """Largest k with min(rows, columns) / 2**k >= min_side (0 without min_side)."""
    if not min_side or min_side <= 0:
        return 0
    k = 0
    while min(rows, columns) / 2 ** (k + 1) >= min_side:
        k += 1
    return k


@dataclass
class _J2KHeader:
    width: int
    height: int
    components: int
    precision: int
    signed: bool


def _j2k_header(codestream: bytes) -> _J2KHeader | None:
    """Size and sample format from a JPEG 2000 codestream's SIZ marker (ISO 15444-1 A.5.1)."""
    start = codestream.find(_J2K_SOC_SIZ, 0, 64)  # some encoders wrap the codestream in a JP2 box
    if start < 0 or len(codestream) < start + 4 + 38 + 3:
        return None
    siz = start + 4
    _lsiz, _rsiz, xsiz, ysiz, xosiz, yosiz = struct.unpack(">HHIIII", codestream[siz : siz + 20])
    csiz = struct.unpack(">H", codestream[siz + 36 : siz + 38])[0]
    ssiz = codestream[siz + 38]
    return _J2KHeader(xsiz - xosiz, ysiz - yosiz, csiz, (ssiz & 0x7F) + 1, bool(ssiz & 0x80))


def _decode_j2k_reduced(recipe: _PixelRecipe, level: int) -> np.ndarray | None:
    """Stored values at 1/2**level resolution via Pillow, or None to fall back to pydicom.

    Pillow scales samples of precision p (9..16 bits) to 16 bits by a left shift of 16 - p and
    offsets signed samples by 2**(p - 1); both are undone here so values match pydicom's.
    """
    from pydicom.encaps import generate_frames

    codestream = next(generate_frames(recipe.pixel_data, number_of_frames=1))
    header = _j2k_header(codestream)
    if (
        header is None
        or header.components != 1
        or (header.height, header.width) != (recipe.rows, recipe.columns)
        or header.precision > 16
    ):
        return None
    try:
        im = Image.open(io.BytesIO(codestream), formats=["JPEG2000"])
        im.reduce = level
        im.load()
        arr = np.asarray(im, dtype=np.float32)
    except _PASS_THROUGH:
        raise
    except BaseException:  # noqa: BLE001 - let pydicom's decoder have a go (and raise if it fails too)
        return None
    if header.precision > 8:
        arr = arr / np.float32(2 ** (16 - header.precision))
    if header.signed:
        arr = arr - np.float32(2 ** (header.precision - 1))
    return arr


@dataclass
class _PixelRecipe:
    """Everything needed to turn stored values into display [0, 1], and nothing identifying.

    Holds a fresh Dataset with only the Image Pixel, Modality LUT and VOI LUT tags (+ the
    transfer syntax) so pydicom can decode the pixels and apply LUT sequences later.
    """

    ds: Any
    rows: int
    columns: int
    invert: bool
    slope: float
    intercept: float
    has_modality_lut: bool
    voi: str  # "lut" | "window" | "range"
    centre: float = 0.0
    width: float = 1.0
    function: str = "LINEAR"
    lut_top: float = 1.0
    lo: float | None = None  # fallback range (fitted once, reused for the full-resolution decode)
    hi: float | None = None

    @property
    def pixel_data(self) -> bytes:
        return self.ds.PixelData

    @classmethod
    def from_dataset(cls, source: Any, ts: str) -> _PixelRecipe:
        from pydicom.dataset import Dataset, FileMetaDataset

        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
        for keyword in _PIXEL_TAGS:
            if keyword in source:
                ds[keyword] = source[keyword]
        ds.set_original_encoding(*getattr(source, "original_encoding", (False, True)))
        recipe = cls(
            ds=ds,
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            invert=str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1",
            slope=_first_float(ds.get("RescaleSlope"), 1.0) or 1.0,
            intercept=_first_float(ds.get("RescaleIntercept"), 0.0),
            has_modality_lut=_has_lut(ds, "ModalityLUTSequence"),
            voi="range",
        )
        centre = _first_float(ds.get("WindowCenter"), None)
        width = _first_float(ds.get("WindowWidth"), None)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        if _has_lut(ds, "VOILUTSequence"):
            item = ds.VOILUTSequence[0]
            bits = int(item.LUTDescriptor[2])
            recipe.voi, recipe.lut_top = "lut", float(max(2**bits - 1, 1))
        elif centre is not None and width is not None and width >= (1.0 if function == "LINEAR" else 1e-6):
            recipe.voi, recipe.centre, recipe.width = "window", centre, width
            recipe.function = function if function in ("LINEAR", "LINEAR_EXACT", "SIGMOID") else "LINEAR"
        return recipe

    def decode_full(self) -> np.ndarray:
        """Full-resolution stored values (BitsStored and sign honoured by pydicom)."""
        self._check_codestream_size()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = self.ds.pixel_array
        if arr.shape != (self.rows, self.columns):
            raise CorruptFileError(_CORRUPT)
        return arr

    def _check_codestream_size(self) -> None:
        """A compressed frame must be the size the header says: a decoder allocates what the
        codestream claims, so a small Rows/Columns over a huge codestream would be a bomb."""
        ts = str(self.ds.file_meta.TransferSyntaxUID)
        if ts in _J2K_SYNTAXES or ts in _JPEG_SYNTAXES:
            from pydicom.encaps import generate_frames
            from pydicom.pixels.utils import _get_jpg_parameters

            frame = next(generate_frames(self.pixel_data, number_of_frames=1))
            if ts in _J2K_SYNTAXES:
                header = _j2k_header(frame)
                size = (header.height, header.width) if header else None
            else:
                params = _get_jpg_parameters(frame)
                size = (params.get("height"), params.get("width"))
            if size != (self.rows, self.columns):
                raise CorruptFileError(_CORRUPT)

    def modality(self, stored: np.ndarray) -> np.ndarray:
        """Modality LUT: stored values -> modality values (float32)."""
        if self.has_modality_lut:
            from pydicom.pixels import apply_modality_lut

            return apply_modality_lut(np.rint(stored).astype(np.int64), self.ds).astype(np.float32)
        out = stored.astype(np.float32)
        if self.slope != 1.0:
            out *= np.float32(self.slope)
        if self.intercept != 0.0:
            out += np.float32(self.intercept)
        return out

    def fit_range(self, stored: np.ndarray) -> None:
        """For the fallback VOI: the robust percentile range of the modality values."""
        if self.voi != "range" or self.lo is not None:
            return
        values = self.modality(stored)
        step = max(1, int(np.sqrt(values.size / PERCENTILE_SAMPLES)))
        lo, hi = np.percentile(values[::step, ::step], FALLBACK_PERCENTILES)
        self.lo, self.hi = float(lo), float(hi)

    def to_unit(self, stored: np.ndarray) -> np.ndarray:
        """Stored values -> display float32 [0, 1], 0 = black; MONOCHROME1 inverted."""
        if self.voi == "lut":
            from pydicom.pixels import apply_voi_lut

            values = self.modality(stored)
            if not self.has_modality_lut:
                values = np.rint(values).astype(np.int64)  # LUT input must be integer
            out = apply_voi_lut(values, self.ds, index=0, prefer_lut=True).astype(np.float32)
            top = max(self.lut_top, float(out.max(initial=0)))
            out /= np.float32(top)
        else:
            out = self._window(self.modality(stored))
        np.clip(out, 0.0, 1.0, out=out)
        if self.invert:
            out = np.float32(1.0) - out
        return np.nan_to_num(out, copy=False).astype(np.float32, copy=False)

    def _window(self, x: np.ndarray) -> np.ndarray:
        """Vectorised VOI window (PS3.3 C.11.2.1.2) to [0, 1]; ~10x faster than apply_voi_lut."""
        if self.voi == "range":
            lo, hi = self.lo, self.hi
            if lo is None or hi is None or hi - lo <= 0:
                return np.zeros_like(x)
            return (x - np.float32(lo)) / np.float32(hi - lo)
        c, w = self.centre, self.width
        if self.function == "LINEAR_EXACT":
            return (x - np.float32(c)) / np.float32(w) + np.float32(0.5)
        if self.function == "SIGMOID":
            return 1.0 / (1.0 + np.exp(np.float32(-4.0 / w) * (x - np.float32(c))))
        return (x - np.float32(c - 0.5)) / np.float32(w - 1.0) + np.float32(0.5)


def _first_float(value: Any, default: float | None) -> float | None:
    """First value of a possibly multi-valued DS tag as a finite float, else ``default``."""
    if value is None or value == "":
        return default
    try:
        if not isinstance(value, (int, float, str)) and hasattr(value, "__getitem__"):
            value = value[0]
        result = float(value)
    except Exception:  # noqa: BLE001
        return default
    return result if np.isfinite(result) else default


def _has_lut(ds: Any, keyword: str) -> bool:
    try:
        seq = ds.get(keyword)
        return bool(seq) and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]
    except Exception:  # noqa: BLE001
        return False


__all__: list[str] = [
    "ColourPhotoError",
    "ContradictoryTagsError",
    "CorruptFileError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "MultiFrameError",
    "NoPixelDataError",
    "NotAnImageError",
    "Radiograph",
    "RadiographError",
    "SafeMetadata",
    "UninformativeImageError",
    "UnreadableFileError",
    "UnsupportedPhotometricError",
    "UnsupportedTransferSyntaxError",
    "load",
]
