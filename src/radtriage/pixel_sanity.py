"""Input sanity before any model sees an image: contradictory pixel-module tags, pixel data that
contradicts its tags, and images that show nothing once the display LUTs are applied.

Every check returns ``None`` when all is well, else one plain sentence that names the tag to blame;
:mod:`radtriage.radiograph` turns the sentence into its typed error. This module imports nothing of
radtriage (it sits below the loader in ``.importlinter``) and reads only tags of the Image Pixel,
Modality LUT and VOI LUT modules, whose values identify no one, so no sentence can quote a patient
identifier.

Why an image left uniform or saturated by its own Window or Rescale tags is refused rather than shown
over the full range: those tags are the file's display instructions, and a viewer obeying them shows
a blank image. Scoring a substitute no one has seen would hide the fault (a fuzz run gave
p(Cardiomegaly) 0.99-1.00 for such files), and a file whose display tags are this far off is not to
be trusted elsewhere; the sentence names the tag so the sender can fix it. Tags that are invalid
outright (a window width below 1, a slope of 0, a non-finite value) are still ignored by the loader,
as PS3.3 allows.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

# --- parameters -----------------------------------------------------------------------------
# PS3.3 C.8.11.7 (DX Image): Bits Stored 6 to 16. Fewer is a bitmap (an overlay, a scanned form).
MIN_BITS_STORED = 6
COLOUR_SPREAD = 24 / 255  # per-pixel max-min channel spread that counts as "coloured"
COLOUR_FRACTION = 0.01  # more than this fraction of coloured pixels = colour photograph
# No radiograph's modality values come near this; float32 loses them past ~1e38 anyway.
MAX_MODALITY_VALUE = 1e12
# A display whose 0.5-99.5 percentiles are closer than this shows (nearly) one shade: fewer than
# 4 grey levels of an 8-bit screen.
MIN_SPREAD = 3 / 255
# Fewer than this share of pixels strictly between black and white: saturated. A radiograph always
# has more (its soft tissue alone), however much air or collimator is clipped.
MIN_GRADED_SHARE = 0.01
EDGE = 0.5 / 255  # within half an 8-bit grey level of 0 or 1 counts as pure black or white
SAMPLES = 250_000  # pixels looked at per check (a subsample of large images; same verdict)
# Pixel Representation flipped to signed: at least this share of pixels on each side of zero ...
WRAP_SHARE = 0.05
# ... values running on across the wrap (distinct values in the top and bottom eighth of the range;
# a padding or annotation value sitting at an extreme is one value) ...
WRAP_LEVELS = 8
# ... and this many times more neighbour jumps over half the range than the unsigned reading has.
WRAP_RATIO = 4
MIN_WRAP_JUMPS = 8
# Uncompressed transfer syntaxes (the deflated one is inflated on reading): Pixel Data is raw.
NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2")
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")

_TAG = {
    "SamplesPerPixel": "Samples per Pixel (0028,0002)",
    "PhotometricInterpretation": "Photometric Interpretation (0028,0004)",
    "Rows": "Rows (0028,0010)",
    "Columns": "Columns (0028,0011)",
    "BitsAllocated": "Bits Allocated (0028,0100)",
    "BitsStored": "Bits Stored (0028,0101)",
    "HighBit": "High Bit (0028,0102)",
    "PixelRepresentation": "Pixel Representation (0028,0103)",
    "WindowCenter": "Window Center (0028,1050)",
    "WindowWidth": "Window Width (0028,1051)",
    "RescaleIntercept": "Rescale Intercept (0028,1052)",
    "RescaleSlope": "Rescale Slope (0028,1053)",
    "ModalityLUTSequence": "Modality LUT Sequence (0028,3000)",
    "VOILUTSequence": "VOI LUT Sequence (0028,3010)",
    "PixelData": "Pixel Data (7FE0,0010)",
}


class LutRecipe(Protocol):
    """What the display check needs of the loader's pixel recipe (``radiograph._PixelRecipe``)."""

    voi: str  # "lut" | "window" | "range"
    centre: float
    width: float
    slope: float
    intercept: float
    has_modality_lut: bool

    def modality(self, stored: np.ndarray) -> np.ndarray: ...


# --- header ---------------------------------------------------------------------------------
def colour_contradiction(samples: int, photometric: str) -> str | None:
    """Samples per Pixel against Photometric Interpretation (already upper-cased and stripped).

    Returns:
        A sentence when a grayscale interpretation claims more than one sample per pixel, else None
        (a colour interpretation is the loader's "unsupported photometric" refusal, not this one).
    """
    if samples == 1 or photometric not in MONOCHROME:
        return None
    return (
        f"This DICOM file's tags contradict each other: {_TAG['SamplesPerPixel']} is {samples}, a colour "
        f"layout, but {_TAG['PhotometricInterpretation']} says {photometric}, which has one sample per pixel."
    )


def tag_contradiction(ds: Any, transfer_syntax: str) -> str | None:
    """Pixel-module tags that contradict each other or the length of the pixel data.

    Args:
        ds: a pydicom Dataset (only pixel-module tags are read); Rows, Columns, Bits Allocated and
            Bits Stored already parse as integers.
        transfer_syntax: its transfer syntax UID (the length check applies to uncompressed data only).

    Returns:
        One sentence naming the first contradicting tag, or None.
    """
    rows, columns = int(ds.Rows), int(ds.Columns)
    allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
    return (
        _bit_depth(allocated, stored, _int(ds, "HighBit"))
        or _rescale(ds, stored)
        or _pixel_length(ds, transfer_syntax, rows, columns, allocated)
    )


def _bit_depth(allocated: int, stored: int, high_bit: int | None) -> str | None:
    if stored < 1:
        return None  # not a bit depth at all: the loader's "damaged file" refusal
    if stored > allocated:
        return (
            f"{_TAG['BitsStored']} of {stored} is more than {_TAG['BitsAllocated']} of {allocated}, "
            "so the two tags contradict each other."
        )
    if stored < MIN_BITS_STORED:
        return (
            f"{_TAG['BitsStored']} of {stored} leaves only {2**stored} grey levels, too few for a radiograph "
            f"(which has at least {MIN_BITS_STORED} bits)."
        )
    if high_bit is not None and high_bit != stored - 1:  # PS3.5 8.1.1; pydicom would read the wrong bits
        return f"{_TAG['HighBit']} of {high_bit} contradicts {_TAG['BitsStored']} of {stored}: it must be {stored - 1}."
    return None


def _rescale(ds: Any, bits_stored: int) -> str | None:
    """A negative slope inverts the image against its Photometric Interpretation; a huge slope or
    intercept makes values no radiograph has. Ignored under a Modality LUT Sequence, which wins."""
    if "ModalityLUTSequence" in ds:
        return None
    slope, intercept = _float(ds, "RescaleSlope"), _float(ds, "RescaleIntercept")
    if slope is not None and slope < 0:
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()  # checked: MONOCHROME1/2
        return (
            f"{_TAG['RescaleSlope']} of {slope:g} is negative: it would invert the image, against its "
            f"{_TAG['PhotometricInterpretation']} {photometric}."
        )
    top = abs(slope or 1.0) * 2.0**bits_stored + abs(intercept or 0.0)
    if top >= MAX_MODALITY_VALUE:
        blamed = "RescaleSlope" if abs(intercept or 0.0) < MAX_MODALITY_VALUE else "RescaleIntercept"
        value = slope if blamed == "RescaleSlope" else intercept
        return (
            f"{_TAG[blamed]} of {value:g} would turn the pixel values into numbers up to {top:.1e}, "
            "far beyond any radiograph's, so it contradicts the pixel data."
        )
    return None


def _pixel_length(ds: Any, transfer_syntax: str, rows: int, columns: int, allocated: int) -> str | None:
    """Uncompressed Pixel Data must hold Rows x Columns samples; up to one row more is tolerated as
    padding (odd-length padding, and some writers' trailing bytes, which pydicom drops). Less data
    than the tags ask for is a contradiction only when it is a whole image of another size (whole
    rows of the stated width, or whole columns of the stated height); otherwise it is a cut file (a
    failed transfer, far more common than a lying tag), left to the decoder, which calls it damaged
    or incomplete."""
    if transfer_syntax not in NATIVE_SYNTAXES or allocated not in (8, 16, 32):
        return None
    samples = _int(ds, "SamplesPerPixel") or 1
    row_bytes = columns * samples * allocated // 8
    need, held = rows * row_bytes, len(ds.PixelData)
    sample_bytes = samples * allocated // 8
    cut = held < need and held % row_bytes != 0 and held % (rows * sample_bytes) != 0
    if need <= held < need + max(row_bytes, 2) or cut:
        return None
    return (
        f"{_TAG['PixelData']} holds {held:,} bytes but {_TAG['Rows']} x {_TAG['Columns']} of {rows} x {columns} "
        f"at {allocated} bits need {need:,}, so the tags contradict the pixel data."
    )


def _int(ds: Any, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except Exception:  # noqa: BLE001 - a malformed tag: the loader's own parsing refuses it
        return None


def _float(ds: Any, keyword: str) -> float | None:
    """First value of a DS tag as a finite float, else None (the loader then ignores the tag)."""
    try:
        value = ds.get(keyword)
        if value is not None and not isinstance(value, (int, float, str)) and hasattr(value, "__getitem__"):
            value = value[0]
        result = float(value)
    except Exception:  # noqa: BLE001
        return None
    return result if np.isfinite(result) else None


# --- pixel data -----------------------------------------------------------------------------
def wrapped_sign(stored: np.ndarray, bits_stored: int) -> str | None:
    """Pixel data read as signed that only make sense unsigned (Pixel Representation flipped to 1).

    The telltale is a wrap: values that ran on smoothly past 2**(bits-1) read as signed jump from
    the top of the range to the bottom between neighbours, along every contour of that value. Only
    this direction is checked: unsigned data read as signed is the fault seen, and the converse test
    would refuse real unsigned files with a white shutter or annotations at the top value.

    Args:
        stored: stored values (H, W) as decoded, signed when the file says so.
        bits_stored: the file's Bits Stored.

    Returns:
        A sentence naming Pixel Representation, or None.
    """
    rows = stored[:: max(1, stored.size // SAMPLES)].astype(np.float64)  # whole rows: neighbours stay neighbours
    negative = float(np.mean(rows < 0))
    if not WRAP_SHARE <= negative <= 1 - WRAP_SHARE:
        return None
    modulus = 2.0**bits_stored
    eighth = modulus / 16  # an eighth of the signed range on each side
    top, bottom = rows[rows >= modulus / 2 - eighth], rows[rows < -modulus / 2 + eighth]
    if min(np.unique(top).size, np.unique(bottom).size) < WRAP_LEVELS:
        return None
    declared, unsigned = _big_jumps(rows, modulus), _big_jumps(np.mod(rows, modulus), modulus)
    if declared < max(MIN_WRAP_JUMPS, WRAP_RATIO * unsigned):
        return None
    return (
        f"{_TAG['PixelRepresentation']} says the pixel values are signed, but read that way {negative:.0%} of "
        "them wrap round to negative values next to the largest positive ones, so the data only make sense unsigned."
    )


def _big_jumps(rows: np.ndarray, modulus: float) -> int:
    """Neighbours (along rows) differing by more than half the range of the stored values."""
    return int(np.count_nonzero(np.abs(np.diff(rows, axis=1)) > modulus / 2))


def colour_photograph(rgb: np.ndarray) -> str | None:
    """Grayscale stored as RGB has (nearly) equal channels; a photograph does not.

    Args:
        rgb: float (H, W, 3) in [0, 1].

    Returns:
        A sentence when more than COLOUR_FRACTION of the pixels are coloured, else None.
    """
    sub = _subsample(rgb)
    spread = sub.max(axis=-1) - sub.min(axis=-1)
    if float(np.mean(spread > COLOUR_SPREAD)) > COLOUR_FRACTION:
        return "This looks like a colour photograph, not a radiograph."
    return None


# --- after the LUTs -------------------------------------------------------------------------
def uninformative(display: np.ndarray, stored: np.ndarray | None = None, recipe: LutRecipe | None = None) -> str | None:
    """An image that shows nothing once displayed: uniform, or saturated to black and white.

    Args:
        display: the loader's output, float (H, W) in [0, 1], 0 = black.
        stored: DICOM only: the stored values the display came from (to tell the pixel data's fault
            from a tag's).
        recipe: DICOM only: the LUTs applied (to name the tag to blame).

    Returns:
        A sentence saying what the image looks like and, for a DICOM whose stored values do hold a
        picture, which Modality LUT or VOI tag made it so; None for an image with something to see.
    """
    look = _look(display)
    if look is None:
        return None
    if stored is None or recipe is None:
        return f"This image is {look}, so there is no radiograph in it to read."
    values = _subsample(stored).astype(np.float64)
    if _look(_stretch(values)) is not None:
        return (f"This image is {look}: its pixel data hold no picture whatever the window, "
                "so there is no radiograph to read.")
    return f"After its {_blame(values, recipe)} this image is {look}, so there is no radiograph left in it to read."


def _look(display: np.ndarray) -> str | None:
    """How an uninformative display looks ("all white", "a uniform gray", ...), or None."""
    sub = _subsample(display)
    black, white = float(np.mean(sub <= EDGE)), float(np.mean(sub >= 1 - EDGE))
    if black + white > 1 - MIN_GRADED_SHARE:
        if max(black, white) > 1 - MIN_GRADED_SHARE:
            return "all white" if white > black else "all black"
        return "only pure black and white"
    lo, median, hi = np.percentile(sub, [0.5, 50, 99.5])
    if hi - lo >= MIN_SPREAD:
        return None
    return "almost uniformly black" if median < 0.1 else "almost uniformly white" if median > 0.9 else "a uniform gray"


def _stretch(values: np.ndarray) -> np.ndarray:
    """The 0.5-99.5 percentile range to [0, 1] (the loader's fallback VOI): what the data could show."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    if not hi > lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def _blame(stored: np.ndarray, recipe: LutRecipe) -> str:
    """The tag (with its value) that turned informative stored values into a blank display."""
    values = recipe.modality(stored).astype(np.float64)
    if recipe.voi == "lut":
        return _TAG["VOILUTSequence"]
    rescaled = recipe.has_modality_lut or recipe.slope != 1.0 or recipe.intercept != 0.0
    if recipe.voi == "window" and not (rescaled and _window_fits(recipe, stored) and not _window_fits(recipe, values)):
        lo, hi = np.percentile(values, [0.5, 99.5])
        centre, width = f"{_TAG['WindowCenter']} of {recipe.centre:g}", f"{_TAG['WindowWidth']} of {recipe.width:g}"
        if recipe.width * MIN_SPREAD > hi - lo:
            return width  # so wide that the values span under 3 grey levels
        if recipe.centre + recipe.width / 2 <= lo or recipe.centre - recipe.width / 2 >= hi:
            return centre  # the window lies wholly beside the values
        return f"{centre} and {width}"
    if recipe.has_modality_lut:
        return _TAG["ModalityLUTSequence"]
    if recipe.slope != 1.0:
        return f"{_TAG['RescaleSlope']} of {recipe.slope:g}"
    return f"{_TAG['RescaleIntercept']} of {recipe.intercept:g}"


def _window_fits(recipe: LutRecipe, values: np.ndarray) -> bool:
    """Whether the window would show these values with some contrast (overlaps them, not far wider)."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    half = recipe.width / 2
    return recipe.centre - half < hi and recipe.centre + half > lo and recipe.width * MIN_SPREAD <= hi - lo


def _subsample(image: np.ndarray) -> np.ndarray:
    """Every step-th row and column so that about SAMPLES pixels remain (H, W[, C] -> smaller)."""
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / SAMPLES)))
    return image[::step, ::step]


__all__: list[str] = ["colour_contradiction", "colour_photograph", "tag_contradiction", "uninformative", "wrapped_sign"]
