"""Tests of radtriage.radiograph.load: values, orientation, refusals, no PHI, fuzzing, real files."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGLSLossless, RLELossless

from dicom_fixtures import (
    MINIMAL_PDF,
    PHI,
    TEXT,
    bomb_png_bytes,
    colour_photo,
    compressed,
    dicom_bytes,
    gradient,
    jpeg_baseline_dataset,
    jpeg_bytes,
    make_dataset,
    png_bytes,
    smooth_texture,
)
import radtriage.radiograph as radiograph_module
from radtriage.radiograph import (
    ColourPhotoError,
    ContradictoryTagsError,
    CorruptFileError,
    ImageTooLargeError,
    ImageTooSmallError,
    MultiFrameError,
    NoPixelDataError,
    NotAnImageError,
    Radiograph,
    RadiographError,
    UninformativeImageError,
    UnreadableFileError,
    UnsupportedPhotometricError,
    UnsupportedTransferSyntaxError,
    load,
)


def blocks(values: list[int], dtype: type = np.uint16, rows: int = 64, width: int = 32) -> np.ndarray:
    """Vertical bands of constant stored values, left to right."""
    return np.repeat(np.array(values, dtype=dtype)[None, :], width, axis=1).repeat(rows, axis=0)


def band_values(pixels: np.ndarray, n: int, width: int = 32) -> np.ndarray:
    return pixels[0, ::width][:n]


def dicom_window(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR, scaled to [0, 1]."""
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)


# --- DICOM values ---------------------------------------------------------------------------
def test_monochrome2_without_window_uses_percentile_range() -> None:
    arr = gradient(128, 96, 4095)
    rad = load(dicom_bytes(make_dataset(arr, bits_stored=12)))
    assert rad.pixels.dtype == np.float32 and rad.pixels.shape == (128, 96)
    lo, hi = np.percentile(arr, [0.5, 99.5])
    expected = np.clip((arr - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(rad.pixels, expected, atol=1e-5)
    assert rad.pixels[0, 0] == 0.0 and rad.pixels[-1, -1] == 1.0
    assert rad.metadata.source_format == "dicom" and rad.metadata.bits_stored == 12


def test_monochrome1_largest_stored_value_is_black() -> None:
    arr = gradient(128, 96, 4095)
    m1 = load(dicom_bytes(make_dataset(arr, bits_stored=12, photometric="MONOCHROME1")))
    m2 = load(dicom_bytes(make_dataset(arr, bits_stored=12)))
    assert m1.pixels[-1, -1] == 0.0  # largest stored value
    assert m1.pixels[0, 0] == 1.0  # smallest stored value
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)


def test_monochrome1_with_window_inverts_after_windowing() -> None:
    values = [0, 1000, 2048, 3000, 4095]
    rad = load(dicom_bytes(make_dataset(blocks(values), bits_stored=12, photometric="MONOCHROME1",
                                        WindowCenter=2048, WindowWidth=2048)))
    got = band_values(rad.pixels, 5)
    np.testing.assert_allclose(got, 1 - dicom_window(np.array(values, float), 2048, 2048), atol=1e-5)
    assert got[-1] == 0.0


def test_window_centre_maps_to_half_and_edges_saturate() -> None:
    values = [0, 1535, 1800, 2048, 2300, 2561, 4095]
    rad = load(dicom_bytes(make_dataset(blocks(values), bits_stored=12, WindowCenter=2048, WindowWidth=1024)))
    got = band_values(rad.pixels, len(values))
    np.testing.assert_allclose(got, dicom_window(np.array(values, float), 2048, 1024), atol=1e-5)
    assert got[3] == pytest.approx(0.5, abs=2e-3)
    assert got[0] == 0.0 and got[1] == 0.0 and got[-1] == 1.0 and got[-2] == 1.0


def test_multivalued_window_uses_first_value() -> None:
    values = [1024, 2048, 3072]
    rad = load(dicom_bytes(make_dataset(blocks(values), bits_stored=12,
                                        WindowCenter=[2048, 500], WindowWidth=[2048, 100])))
    np.testing.assert_allclose(band_values(rad.pixels, 3), dicom_window(np.array(values, float), 2048, 2048),
                               atol=1e-5)


def test_rescale_slope_intercept_applied_before_window() -> None:
    # modality value = 2 * stored - 1024; the window is in modality units
    values = [0, 512, 1024]  # -> -1024, 0, 1024
    ds = make_dataset(blocks(values), bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024,
                      WindowCenter=0, WindowWidth=2048)
    got = band_values(load(dicom_bytes(ds)).pixels, 3)
    np.testing.assert_allclose(got, dicom_window(np.array([-1024.0, 0.0, 1024.0]), 0, 2048), atol=1e-5)
    assert got[1] == pytest.approx(0.5, abs=1e-3)


def test_signed_pixels_sign_extended_from_bits_stored() -> None:
    # 12-bit two's complement in 16-bit words with the unused high bits zero: 0x0F9C is -100.
    stored = blocks([0x0F9C, 0x0800, 0x07FF, 0x0000])
    ds = make_dataset(stored.astype(np.int16), bits_stored=12, WindowCenter=-100, WindowWidth=4096)
    got = band_values(load(dicom_bytes(ds)).pixels, 4)
    np.testing.assert_allclose(got, dicom_window(np.array([-100.0, -2048, 2047, 0]), -100, 4096), atol=1e-5)
    assert got[0] == pytest.approx(0.5, abs=1e-3)


def test_unsigned_unused_high_bits_are_ignored() -> None:
    stored = blocks([0xF800, 0x0800, 0x0400])  # 0xF800 masked to 12 bits is 0x800 = 2048
    ds = make_dataset(stored, bits_stored=12, WindowCenter=2048, WindowWidth=1024)
    got = band_values(load(dicom_bytes(ds)).pixels, 3)
    assert got[0] == pytest.approx(got[1]) and got[0] == pytest.approx(0.5, abs=1e-3)
    assert got[2] == 0.0


def voi_lut_dataset(window: bool) -> Dataset:
    values = [0, 1024, 2048, 4095]
    tags = {"WindowCenter": 100, "WindowWidth": 10} if window else {}
    ds = make_dataset(blocks(values), bits_stored=12, **tags)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    lut = np.rint((np.arange(4096) / 4095.0) ** 2 * 65535).astype(np.uint16)  # a gamma curve
    item.add_new(0x00283006, "US", lut.tolist())
    ds.VOILUTSequence = [item]
    return ds


@pytest.mark.parametrize("with_window", [False, True])
def test_voi_lut_sequence_is_applied_and_preferred(with_window: bool) -> None:
    got = band_values(load(dicom_bytes(voi_lut_dataset(with_window))).pixels, 4)
    expected = np.rint((np.array([0, 1024, 2048, 4095]) / 4095.0) ** 2 * 65535) / 65535
    np.testing.assert_allclose(got, expected, atol=1e-5)


LOSSLESS = [JPEG2000Lossless, JPEGLSLossless, RLELossless]


@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda u: u.name)
@pytest.mark.parametrize("bits", [12, 16])
def test_lossless_compressed_equals_uncompressed(ts: str, bits: int) -> None:
    arr = smooth_texture(96, 80, 2**bits - 1)
    plain = load(dicom_bytes(make_dataset(arr, bits_stored=bits)))
    comp = load(dicom_bytes(compressed(make_dataset(arr, bits_stored=bits), ts)))
    np.testing.assert_allclose(comp.pixels, plain.pixels, atol=1e-6)
    assert comp.metadata.transfer_syntax == ts.name


@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda u: u.name)
def test_signed_compressed_equals_uncompressed(ts: str) -> None:
    arr = (smooth_texture(96, 80, 4095).astype(np.int32) - 2048).astype(np.int16)
    plain = load(dicom_bytes(make_dataset(arr, bits_stored=12)))
    comp = load(dicom_bytes(compressed(make_dataset(arr, bits_stored=12), ts)))
    np.testing.assert_allclose(comp.pixels, plain.pixels, atol=1e-6)


def test_lossy_jpeg2000_and_jpeg_baseline_are_close_to_original() -> None:
    arr = smooth_texture(128, 128, 4095)
    plain = load(dicom_bytes(make_dataset(arr, bits_stored=12, WindowCenter=2048, WindowWidth=4096)))
    j2k = load(dicom_bytes(compressed(make_dataset(arr, bits_stored=12, WindowCenter=2048, WindowWidth=4096),
                                      JPEG2000, j2k_cr=[10])))
    assert np.abs(j2k.pixels - plain.pixels).mean() < 0.01
    arr8 = (arr >> 4).astype(np.uint8)
    base = load(dicom_bytes(jpeg_baseline_dataset(arr8, WindowCenter=128, WindowWidth=256)))
    ref = dicom_window(arr8.astype(float), 128, 256)
    assert np.abs(base.pixels - ref).mean() < 0.01


# --- JPEG 2000 at reduced resolution (Pillow) -----------------------------------------------
@pytest.mark.parametrize(("bits", "signed"), [(12, False), (16, False), (12, True)])
def test_reduced_jpeg2000_agrees_with_full_decode(bits: int, signed: bool) -> None:
    top = 2**bits - 1
    arr = smooth_texture(512, 384, top)
    centre = top / 2
    if signed:
        arr = (arr.astype(np.int32) - 2 ** (bits - 1)).astype(np.int16)
        centre = -0.5
    ds = compressed(make_dataset(arr, bits_stored=bits, WindowCenter=centre, WindowWidth=top), JPEG2000Lossless)
    data = dicom_bytes(ds)
    full = load(data)
    reduced = load(data, min_side=96)  # 384 / 4 = 96 -> two levels down
    assert reduced.pixels.shape == (128, 96) and reduced.is_reduced
    assert (reduced.metadata.rows, reduced.metadata.columns) == (512, 384)
    reference = full.pixels.reshape(128, 4, 96, 4).mean(axis=(1, 3))
    # The wavelet low-pass is not a box mean (and sits ~1.5 px off), hence the tolerance; a
    # wrong 12->16-bit scale or sign offset would be off by ~0.5 everywhere.
    assert abs(float(reduced.pixels.mean() - reference.mean())) < 0.005
    assert float(np.abs(reduced.pixels - reference).mean()) < 0.02
    np.testing.assert_allclose(reduced.full_resolution(), full.pixels, atol=1e-6)
    assert reduced.full_resolution() is reduced.full_resolution()  # decoded once, cached


def test_reduction_level_keeps_min_side() -> None:
    ds = compressed(make_dataset(smooth_texture(512, 384, 4095), bits_stored=12), JPEG2000Lossless)
    data = dicom_bytes(ds)
    assert load(data, min_side=100).pixels.shape == (256, 192)  # 384/4 = 96 < 100
    assert load(data, min_side=384).pixels.shape == (512, 384)
    assert not load(data, min_side=384).is_reduced


def test_min_side_on_other_syntaxes_gives_full_resolution() -> None:
    arr = smooth_texture(256, 256, 4095)
    rad = load(dicom_bytes(compressed(make_dataset(arr, bits_stored=12), RLELossless)), min_side=64)
    assert rad.pixels.shape == (256, 256)
    assert rad.full_resolution() is rad.pixels


# --- DICOM refusals -------------------------------------------------------------------------
def test_multi_frame_refused() -> None:
    arr = np.stack([gradient(), gradient()])
    with pytest.raises(MultiFrameError, match="2 frames"):
        load(dicom_bytes(make_dataset(arr, bits_stored=12, frames=2)))


def test_no_pixel_data_refused() -> None:
    ds = make_dataset(gradient(), bits_stored=12)
    del ds.PixelData
    with pytest.raises(NoPixelDataError):
        load(dicom_bytes(ds))


@pytest.mark.parametrize("ts", [None, JPEG2000Lossless, RLELossless], ids=["native", "j2k", "rle"])
def test_truncated_dicom_is_corrupt(ts: str | None) -> None:
    ds = make_dataset(smooth_texture(128, 128, 4095), bits_stored=12)
    if ts:
        compressed(ds, ts)
    data = dicom_bytes(ds)
    with pytest.raises(CorruptFileError):
        load(data[: len(data) * 2 // 3], min_side=64)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "PALETTE COLOR"])
def test_colour_photometric_refused(photometric: str) -> None:
    ds = make_dataset(gradient(), bits_stored=12, photometric=photometric)
    if photometric != "PALETTE COLOR":
        ds.SamplesPerPixel = 3
    with pytest.raises(UnsupportedPhotometricError, match=photometric.split()[0]):
        load(dicom_bytes(ds))


@pytest.mark.parametrize(("uid", "shown"), [("1.2.840.10008.1.2.4.100", "MPEG2"), ("1.2.3.4.5", "unknown")])
def test_unsupported_transfer_syntax_refused(uid: str, shown: str) -> None:
    ds = make_dataset(gradient(), bits_stored=12)
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid
    with pytest.raises(UnsupportedTransferSyntaxError, match=shown):
        load(dicom_bytes(ds))


def test_too_small_and_too_large_dicom_refused_from_header() -> None:
    with pytest.raises(ImageTooSmallError, match="32 x 32"):
        load(dicom_bytes(make_dataset(gradient(32, 32), bits_stored=12)))
    ds = make_dataset(gradient(), bits_stored=12)
    ds.Rows, ds.Columns = 20_000, 20_000  # pixel data far too short: only a header check says "large"
    with pytest.raises(ImageTooLargeError):
        load(dicom_bytes(ds))


def test_jpeg2000_codestream_larger_than_header_is_refused() -> None:
    big = compressed(make_dataset(smooth_texture(256, 256, 4095), bits_stored=12), JPEG2000Lossless)
    big.Rows, big.Columns = 128, 128  # header says small, codestream says 256^2
    with pytest.raises(CorruptFileError):
        load(dicom_bytes(big))
    with pytest.raises(CorruptFileError):
        load(dicom_bytes(big), min_side=64)


def test_dicom_without_preamble_loads_same_values() -> None:
    ds = make_dataset(gradient(), bits_stored=12)
    with_preamble = load(dicom_bytes(ds))
    raw = load(dicom_bytes(ds, preamble=False))
    np.testing.assert_array_equal(raw.pixels, with_preamble.pixels)
    assert raw.metadata.transfer_syntax == "Implicit VR Little Endian"


# --- paths and names ------------------------------------------------------------------------
def test_format_from_content_not_extension(tmp_path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(dicom_bytes(make_dataset(gradient(), bits_stored=12)))
    rad = load(str(path))
    assert rad.metadata.source_format == "dicom" and rad.name == "scan.png"
    assert load(path, name="/some/dir/film.dcm").name == "film.dcm"
    assert load(path.read_bytes()).name == "upload"


def test_missing_path_is_unreadable(tmp_path) -> None:
    with pytest.raises(UnreadableFileError, match="nothing.dcm"):
        load(tmp_path / "nothing.dcm")
    with pytest.raises(UnreadableFileError):
        load(tmp_path)


# --- PNG / JPEG -----------------------------------------------------------------------------
def test_png_8_and_16_bit_values() -> None:
    arr16 = gradient(100, 80, 65535)
    arr8 = gradient(100, 80, 255)
    np.testing.assert_allclose(load(png_bytes(arr8)).pixels, arr8 / 255.0, atol=1e-6)
    rad16 = load(png_bytes(arr16))
    np.testing.assert_allclose(rad16.pixels, arr16 / 65535.0, atol=1e-6)
    assert rad16.metadata.bits_stored == 16 and rad16.metadata.source_format == "png"


def asymmetric(rows: int = 80, columns: int = 120) -> np.ndarray:
    """Dark image with a bright block in the top-left corner only."""
    img = np.full((rows, columns), 30, np.uint8)
    img[: rows // 3, : columns // 4] = 230
    return img


@pytest.mark.parametrize(("orientation", "rot_k"), [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_jpeg_exif_orientation_honoured(orientation: int, rot_k: int) -> None:
    stored = asymmetric()
    rad = load(jpeg_bytes(stored, orientation=orientation))
    expected = np.rot90(stored, k=rot_k) / 255.0
    assert rad.pixels.shape == expected.shape
    assert float(np.abs(rad.pixels - expected).mean()) < 0.02
    assert rad.metadata.source_format == "jpeg"


def test_grayscale_stored_as_rgb_accepted() -> None:
    gray = gradient(100, 80, 255)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    np.testing.assert_allclose(load(png_bytes(rgb)).pixels, gray / 255.0, atol=1e-6)
    assert float(np.abs(load(jpeg_bytes(rgb)).pixels - gray / 255.0).mean()) < 0.01


def test_alpha_dropped_onto_black() -> None:
    gray = gradient(100, 80, 255)
    alpha = np.full_like(gray, 255)
    alpha[:, :40] = 0  # left half transparent
    rgba = np.dstack([gray, gray, gray, alpha])
    rad = load(png_bytes(rgba))
    assert np.all(rad.pixels[:, :40] == 0)
    np.testing.assert_allclose(rad.pixels[:, 40:], gray[:, 40:] / 255.0, atol=1e-6)
    la = load(png_bytes(np.dstack([gray, alpha]), mode="LA"))
    np.testing.assert_allclose(la.pixels, rad.pixels, atol=1e-6)


def test_palette_grayscale_png_accepted() -> None:
    gray = gradient(100, 80, 255)
    rad = load(png_bytes(gray, mode="P"))
    assert float(np.abs(rad.pixels - gray / 255.0).mean()) < 0.01


@pytest.mark.parametrize("encode", [png_bytes, jpeg_bytes], ids=["png", "jpeg"])
def test_colour_photograph_refused(encode) -> None:
    with pytest.raises(ColourPhotoError):
        load(encode(colour_photo()))


def test_gray_with_small_coloured_annotation_accepted() -> None:
    rgb = np.repeat(gradient(200, 200, 255)[..., None], 3, axis=2)
    rgb[5:8, 5:20] = (255, 0, 0)  # a red marker: < 1 % of pixels
    assert load(png_bytes(rgb)).pixels.shape == (200, 200)


def test_decompression_bombs_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match="100000 x 100000"):
        load(bomb_png_bytes())
    with pytest.raises(ImageTooLargeError):  # 64 MP: under the side limit, over the pixel limit
        load(bomb_png_bytes(8000, 8000))


def test_too_small_png_refused() -> None:
    with pytest.raises(ImageTooSmallError, match="40 x 30"):
        load(png_bytes(gradient(30, 40, 255)))


@pytest.mark.parametrize(
    "data",
    [TEXT, MINIMAL_PDF, b"", b"\x00" * 1000, np.random.default_rng(1).bytes(5000), b"GIF89a" + b"\x00" * 100],
    ids=["text", "pdf", "empty", "zeros", "random", "gif"],
)
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(NotAnImageError):
        load(data)


def test_truncated_png_is_corrupt() -> None:
    data = png_bytes(smooth_texture(200, 200, 65535))
    with pytest.raises(CorruptFileError):
        load(data[: len(data) // 2])


# A JPEG cut in its last bytes: read when the whole scan is there, refused when any of it is missing.
NO_EOI_NOTE = "This JPEG file ends without its end marker; every row of the image was decoded."
EOI = b"\xff\xd9"


def textured_jpeg(kind: str = "gray", **save) -> bytes:
    """A noisy texture (so the last blocks hold data), 200 x 168 px: not a whole number of MCUs."""
    rng = np.random.default_rng(3)
    gray = np.clip(smooth_texture(200, 168, 255).astype(np.int16) + rng.integers(-12, 13, (200, 168)), 0, 255)
    pixels = gray.astype(np.uint8) if kind == "gray" else np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90, **save)
    data = buf.getvalue()
    assert data.endswith(EOI)
    return data


NO_EOI_KINDS = {
    "gray": ("gray", {}),
    "rgb_420": ("rgb", {}),
    "rgb_444_optimized": ("rgb", {"subsampling": 0, "optimize": True}),
    "restart_markers": ("gray", {"restart_marker_blocks": 5}),
}


@pytest.mark.parametrize("kind", NO_EOI_KINDS)
@pytest.mark.parametrize("cut", [2, 1], ids=["no_eoi", "half_eoi"])
def test_jpeg_missing_only_its_end_marker_loads_with_a_warning(kind: str, cut: int) -> None:
    colour, save = NO_EOI_KINDS[kind]
    intact = textured_jpeg(colour, **save)
    rad = load(intact[:-cut])
    assert rad.warnings == (NO_EOI_NOTE,)
    np.testing.assert_array_equal(rad.pixels, load(intact).pixels)
    assert rad.metadata.source_format == "jpeg"


def test_intact_jpeg_and_other_formats_carry_no_warning() -> None:
    assert load(textured_jpeg()).warnings == ()
    assert load(png_bytes(gradient(100, 80, 255))).warnings == ()
    assert load(dicom_bytes(make_dataset(gradient(), bits_stored=12))).warnings == ()


@pytest.mark.parametrize("kind", NO_EOI_KINDS)
def test_jpeg_cut_in_its_scan_is_refused(kind: str) -> None:
    colour, save = NO_EOI_KINDS[kind]
    intact = textured_jpeg(colour, **save)
    for data in (intact[: int(len(intact) * 0.6)], intact[:-3]):  # 40 % cut; one byte of scan data + EOI
        # The trap: with the marker appended Pillow decodes it "without error", the missing data
        # filled in as zero bits and mid-gray.
        with Image.open(io.BytesIO(data + EOI)) as im:
            im.load()
        with pytest.raises(CorruptFileError) as info:
            load(data)
        assert str(info.value) == "This image file is damaged or incomplete and cannot be read."


def test_jpeg_end_marker_check_agrees_with_the_decoder_at_every_cut() -> None:
    intact = textured_jpeg()
    reference = load(intact).pixels
    for cut in range(1, 41):
        try:
            rad = load(intact[:-cut])
        except CorruptFileError:
            assert cut > 2, cut
            continue
        assert cut <= 2, cut
        np.testing.assert_array_equal(rad.pixels, reference)


def test_progressive_jpeg_without_end_marker_is_refused() -> None:
    """A progressive file cut between scans has every row, at lower quality: refused, and so is one
    lacking only its end marker (nothing says its last scan is the last one written)."""
    intact = textured_jpeg(progressive=True)
    scans = [i for i in range(len(intact)) if intact.startswith(b"\xff\xda", i)]
    assert len(scans) >= 5
    after_three = intact[: scans[3]]
    with Image.open(io.BytesIO(after_three + EOI)) as im:  # premise: a whole image, lower quality
        coarse = np.asarray(im.convert("L"), dtype=np.float32) / 255
    assert coarse.shape == (200, 168) and not np.array_equal(coarse, load(intact).pixels)
    for data in (after_three, intact[:-2]):
        with pytest.raises(CorruptFileError):
            load(data)


def test_jpeg_without_end_marker_above_the_check_limit_is_refused(monkeypatch) -> None:
    data = textured_jpeg()[:-2]
    monkeypatch.setattr(radiograph_module, "JPEG_SALVAGE_MAX_BYTES", len(data) - 1)
    with pytest.raises(CorruptFileError):
        load(data)


def test_error_messages_are_one_sentence() -> None:
    cases = [TEXT, bomb_png_bytes(), png_bytes(colour_photo()), png_bytes(gradient(30, 40, 255))]
    for data in cases:
        with pytest.raises(RadiographError) as info:
            load(data)
        message = str(info.value)
        assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message
        assert info.value.code != RadiographError.code


# --- metadata and PHI -----------------------------------------------------------------------
def test_safe_metadata_as_dict() -> None:
    rad = load(dicom_bytes(make_dataset(gradient(), bits_stored=12, PixelSpacing=[0.2, 0.25])))
    d = rad.metadata.as_dict()
    assert d == {
        "source_format": "dicom",
        "rows": 128,
        "columns": 96,
        "bits_stored": 12,
        "modality": "DX",
        "body_part_examined": "CHEST",
        "view_position": "PA",
        "photometric_interpretation": "MONOCHROME2",
        "pixel_spacing": [0.2, 0.25],
        "manufacturer": "Synthetic Imaging Co",
        "transfer_syntax": "Explicit VR Little Endian",
    }


def _phi_free(text: str) -> None:
    for value in PHI.values():
        for part in value.split("^"):
            assert part not in text, f"identifier {part!r} leaked"


def test_no_phi_in_radiograph_repr_or_metadata() -> None:
    ds = compressed(make_dataset(smooth_texture(256, 256, 4095), bits_stored=12, phi=True), JPEG2000Lossless)
    for min_side in (None, 64):
        rad = load(dicom_bytes(ds), min_side=min_side)
        _phi_free(repr(rad))
        _phi_free(str(rad.metadata.as_dict()))
        _phi_free(repr(vars(rad)))  # including the private lazy-decode state
        assert not any(isinstance(v, Dataset) for v in vars(rad).values())


def test_no_phi_in_error_messages() -> None:
    multi = make_dataset(np.stack([gradient(), gradient()]), bits_stored=12, frames=2, phi=True)
    empty = make_dataset(gradient(), bits_stored=12, phi=True)
    del empty.PixelData
    rgb = make_dataset(gradient(), bits_stored=12, phi=True, photometric="RGB")
    full = dicom_bytes(make_dataset(gradient(), bits_stored=12, phi=True))
    for data in (dicom_bytes(multi), dicom_bytes(empty), dicom_bytes(rgb), full[: len(full) - 2000]):
        with pytest.raises(RadiographError) as info:
            load(data)
        _phi_free(str(info.value))
        _phi_free(repr(info.value))
        assert info.value.__cause__ is None


# --- input sanity: contradictory tags, blank displays (issue 16, item 5) ----------------------
def sane_dataset(**tags) -> Dataset:
    """The fuzz run's kind of file: a smooth 12-bit image with a window covering its values."""
    return make_dataset(smooth_texture(128, 96, 4095), bits_stored=12, phi=True,
                        **{"WindowCenter": 2048, "WindowWidth": 4096, **tags})


def mutated(keyword: str, value) -> bytes:
    ds = sane_dataset()
    setattr(ds, keyword, value)
    return dicom_bytes(ds)


def assert_plain_sentence(err: RadiographError) -> None:
    message = str(err)
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message
    _phi_free(message)
    assert err.__cause__ is None


# (tag, mutated value, error, the words the sentence must hold)
MUTATIONS = {
    "bits_stored_1": ("BitsStored", 1, ContradictoryTagsError,
                      "Bits Stored (0028,0101) of 1 leaves only 2 grey levels"),
    "bits_stored_over_allocated": ("BitsStored", 20, ContradictoryTagsError,
                                   "Bits Stored (0028,0101) of 20 is more than Bits Allocated (0028,0100) of 16"),
    "high_bit": ("HighBit", 15, ContradictoryTagsError, "High Bit (0028,0102) of 15 contradicts Bits Stored"),
    "window_width_1e30": ("WindowWidth", 1e30, UninformativeImageError,
                          "After its Window Width (0028,1051) of 1e+30 this image is a uniform gray"),
    "window_center_-1e9": ("WindowCenter", -1e9, UninformativeImageError,
                           "After its Window Center (0028,1050) of -1e+09 this image is all white"),
    "window_width_2": ("WindowWidth", 2, UninformativeImageError,
                       "Window Center (0028,1050) of 2048 and Window Width (0028,1051) of 2 this image is only pure"),
    "rescale_slope_-1": ("RescaleSlope", -1, ContradictoryTagsError, "Rescale Slope (0028,1053) of -1 is negative"),
    "rescale_slope_1e20": ("RescaleSlope", 1e20, ContradictoryTagsError, "Rescale Slope (0028,1053) of 1e+20 would"),
    "rescale_slope_1000": ("RescaleSlope", 1000, UninformativeImageError,
                           "After its Rescale Slope (0028,1053) of 1000 this image is all white"),
    "rescale_intercept_1e6": ("RescaleIntercept", 1e6, UninformativeImageError,
                              "After its Rescale Intercept (0028,1052) of 1e+06 this image is all white"),
    "pixel_representation_signed": ("PixelRepresentation", 1, ContradictoryTagsError,
                                    "Pixel Representation (0028,0103) says the pixel values are signed"),
    "samples_per_pixel_3": ("SamplesPerPixel", 3, ContradictoryTagsError,
                            "tags contradict each other: Samples per Pixel (0028,0002) is 3"),
    "rows_minus_1": ("Rows", 127, ContradictoryTagsError, "Rows (0028,0010) x Columns (0028,0011) of 127 x 96"),
    "columns_plus_1": ("Columns", 97, ContradictoryTagsError, "of 128 x 97 at 16 bits need 24,832"),
}


def test_the_unmutated_file_loads_with_real_spread() -> None:
    rad = load(dicom_bytes(sane_dataset()))
    assert np.percentile(rad.pixels, 99.5) - np.percentile(rad.pixels, 0.5) > 0.5


@pytest.mark.parametrize("name", MUTATIONS)
@pytest.mark.parametrize("min_side", [None, 64])
def test_each_mutation_is_refused_with_a_sentence_naming_its_tag(name: str, min_side: int | None) -> None:
    keyword, value, error, words = MUTATIONS[name]
    with pytest.raises(error) as info:
        load(mutated(keyword, value), min_side=min_side)
    assert words in str(info.value)
    assert info.value.code == {ContradictoryTagsError: "contradictory_tags",
                               UninformativeImageError: "uninformative"}[error]
    assert_plain_sentence(info.value)


def test_samples_per_pixel_3_with_monochrome2_no_longer_contradicts_itself() -> None:
    with pytest.raises(ContradictoryTagsError) as info:
        load(mutated("SamplesPerPixel", 3))
    message = str(info.value)
    assert "rather than grayscale" not in message
    assert "is 3, a colour layout, but Photometric Interpretation (0028,0004) says MONOCHROME2" in message


def test_signed_pixel_representation_refused_in_compressed_files_too() -> None:
    ds = compressed(sane_dataset(), JPEG2000Lossless)
    ds.PixelRepresentation = 1
    with pytest.raises(ContradictoryTagsError, match=r"Pixel Representation \(0028,0103\)"):
        load(dicom_bytes(ds))


def test_signed_data_really_signed_still_loads() -> None:
    """Signed values crossing zero smoothly (no wrap), and the extremes side by side in bands (a wrap
    seen locally, but no values running on across it): both are real signed images."""
    smooth = (smooth_texture(128, 96, 4095).astype(np.int32) - 2048).astype(np.int16)
    assert load(dicom_bytes(make_dataset(smooth, bits_stored=12))).pixels.std() > 0.1
    bands = blocks([-2048, 2047, -2048, 2047, 0], dtype=np.int16)
    assert load(dicom_bytes(make_dataset(bands, bits_stored=12))).pixels.std() > 0.1


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize(("keyword", "value"), [("WindowWidth", 0), ("WindowWidth", -10), ("WindowCenter", "NaN"),
                                                ("RescaleSlope", 0), ("RescaleSlope", "NaN")])
def test_invalid_lut_tags_still_fall_back_to_the_full_range(keyword: str, value) -> None:
    reference = load(dicom_bytes(make_dataset(smooth_texture(128, 96, 4095), bits_stored=12)))
    tags = {"WindowCenter": 2048, "WindowWidth": 4096} if keyword == "RescaleSlope" else {}
    ds = make_dataset(smooth_texture(128, 96, 4095), bits_stored=12, **{**tags, keyword: value})
    rad = load(dicom_bytes(ds))
    if keyword == "RescaleSlope":  # the slope is ignored, the window kept
        reference = load(dicom_bytes(make_dataset(smooth_texture(128, 96, 4095), bits_stored=12, **tags)))
    np.testing.assert_allclose(rad.pixels, reference.pixels, atol=1e-6)


def test_uniform_pixel_data_is_refused_whatever_its_window() -> None:
    flat = np.full((96, 96), 700, np.uint16)
    for tags in ({}, {"WindowCenter": 2048, "WindowWidth": 4096}):
        with pytest.raises(UninformativeImageError, match="its pixel data hold no picture") as info:
            load(dicom_bytes(make_dataset(flat, bits_stored=12, phi=True, **tags)))
        assert_plain_sentence(info.value)


@pytest.mark.parametrize(
    ("pixels", "encode", "look"),
    [(np.zeros((100, 100), np.uint8), png_bytes, "all black"),
     (np.full((100, 100), 128, np.uint8), png_bytes, "a uniform gray"),
     (np.full((100, 100), 65535, np.uint16), png_bytes, "all white"),
     (np.full((100, 100), 128, np.uint8), jpeg_bytes, "a uniform gray"),
     (np.where(gradient(100, 100, 255) > 128, 255, 0).astype(np.uint8), png_bytes, "only pure black and white")],
    ids=["black_png", "gray_png", "white_png16", "gray_jpeg", "binary_png"],
)
def test_blank_png_and_jpeg_are_refused(pixels: np.ndarray, encode, look: str) -> None:
    with pytest.raises(UninformativeImageError) as info:
        load(encode(pixels))
    assert str(info.value) == f"This image is {look}, so there is no radiograph in it to read."


def test_dim_or_mostly_black_images_with_content_still_load() -> None:
    dim = (gradient(100, 100, 255) // 32 + 10).astype(np.uint8)  # 8 grey levels, 10..17
    assert load(png_bytes(dim)).pixels.max() < 0.1
    finger = np.zeros((200, 200), np.uint8)  # 95 % pure black air around a small bright part
    finger[90:110, 50:150] = gradient(20, 100, 255)
    assert load(png_bytes(finger)).pixels.max() == 1.0


# Hypothesis: one pixel-module tag of the fuzz run's file set to an odd value, as the fuzz run did.
ODD_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                       st.sampled_from([0.0, -1.0, 1e-30, 1e30, -1e9, 1e9, 1e20, 2048.0, 4096.0]))
TAG_MUTATIONS = st.one_of(
    st.tuples(st.sampled_from(["BitsStored", "HighBit", "BitsAllocated", "SamplesPerPixel"]), st.integers(0, 40)),
    st.tuples(st.just("PixelRepresentation"), st.integers(0, 1)),
    st.tuples(st.sampled_from(["Rows", "Columns"]), st.integers(60, 200)),
    st.tuples(st.sampled_from(["WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"]), ODD_FLOATS),
    st.tuples(st.just("PhotometricInterpretation"), st.sampled_from(["MONOCHROME1", "RGB", "YBR_FULL", ""])),
)
SANE_BYTES = dicom_bytes(sane_dataset())
SANE_PIXELS = load(SANE_BYTES).pixels


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag=TAG_MUTATIONS, min_side=st.sampled_from([None, 64]))
def test_a_mutated_tag_gives_a_readable_image_or_a_sentence(tag: tuple, min_side: int | None) -> None:
    """Never anything but a RadiographError or a finite [0, 1] image with real spread; and one that
    loads still shows the intact picture, not its negative (MONOCHROME1 aside: that inversion is the
    tag's meaning)."""
    keyword, value = tag
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)  # a DS holds text: "nan", "inf"
    ds = sane_dataset()
    setattr(ds, keyword, value)
    try:
        rad = load(dicom_bytes(ds), min_side=min_side)
    except RadiographError as err:
        assert_plain_sentence(err)
        return
    pixels = rad.pixels
    assert pixels.dtype == np.float32 and np.isfinite(pixels).all() and 0.0 <= pixels.min() and pixels.max() <= 1.0
    assert np.percentile(pixels, 99.5) - np.percentile(pixels, 0.5) >= 3 / 255
    assert np.mean((pixels > 0.5 / 255) & (pixels < 1 - 0.5 / 255)) >= 0.01
    if pixels.shape == SANE_PIXELS.shape and keyword != "PhotometricInterpretation":
        assert np.corrcoef(pixels.ravel(), SANE_PIXELS.ravel())[0, 1] > 0


# --- fuzzing --------------------------------------------------------------------------------
def _fuzz_bases() -> list[bytes]:
    arr = smooth_texture(64, 72, 4095)
    return [
        dicom_bytes(make_dataset(arr, bits_stored=12, WindowCenter=2048, WindowWidth=4096)),
        dicom_bytes(compressed(make_dataset(arr, bits_stored=12), JPEG2000Lossless)),
        dicom_bytes(compressed(make_dataset(arr, bits_stored=12), RLELossless)),
        dicom_bytes(compressed(make_dataset(arr, bits_stored=12), JPEGLSLossless)),
        png_bytes((arr >> 4).astype(np.uint8)),
        png_bytes(arr * 16),
        jpeg_bytes((arr >> 4).astype(np.uint8))[:-2],  # no end marker: the scan check on mutated bytes
    ]


FUZZ_BASES = _fuzz_bases()
mutation = st.tuples(st.sampled_from(["flip", "truncate", "insert", "delete"]), st.integers(0, 10**9),
                     st.binary(min_size=1, max_size=8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(range(len(FUZZ_BASES))), mutations=st.lists(mutation, min_size=1, max_size=4),
       min_side=st.sampled_from([None, 32]))
def test_fuzzed_bytes_load_or_raise_typed_error(base: int, mutations: list, min_side: int | None) -> None:
    data = bytearray(FUZZ_BASES[base])
    for kind, pos, payload in mutations:
        pos %= max(len(data), 1)
        if kind == "flip":
            data[pos : pos + len(payload)] = bytes(b ^ (p or 1) for b, p in zip(data[pos : pos + len(payload)], payload))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = payload
        else:
            del data[pos : pos + len(payload)]
    try:
        rad = load(bytes(data), min_side=min_side)
    except RadiographError:
        return
    assert isinstance(rad, Radiograph)
    assert rad.pixels.ndim == 2 and rad.pixels.dtype == np.float32
    assert np.isfinite(rad.pixels).all() and rad.pixels.min() >= 0.0 and rad.pixels.max() <= 1.0


# --- real files -----------------------------------------------------------------------------
@pytest.mark.real_data
def test_all_nih_sample_images_load(shared_data) -> None:
    paths = sorted((shared_data / "nih-cxr-sample" / "images").glob("*.png"))
    assert len(paths) == 500
    for path in paths:
        rad = load(path, min_side=256)
        assert rad.pixels.shape == (512, 512), path.name
        assert 0.0 <= rad.pixels.min() and rad.pixels.max() <= 1.0, path.name
        assert rad.pixels.std() > 0.02, path.name
        assert rad.name == path.name


@pytest.mark.real_data
def test_limb_sample_images_load(shared_data) -> None:
    paths = sorted((shared_data / "limb-sample").rglob("*.png"))
    assert len(paths) >= 20
    for path in paths:
        rad = load(path)
        with Image.open(path) as im:
            assert rad.pixels.shape == (im.height, im.width) or rad.pixels.shape == (im.width, im.height)
        assert 0.0 <= rad.pixels.min() and rad.pixels.max() <= 1.0 and rad.pixels.std() > 0.02, path.name


@pytest.mark.real_data
def test_fracatlas_jpegs_cut_in_their_scan_stay_refused(shared_data) -> None:
    """The FracAtlas JPEGs Pillow cannot decode strictly lack their end marker and also part of their
    scan: they are refused, not read with the warning; the rest load without one."""
    folder = shared_data / "fracatlas" / "images"
    if not folder.is_dir():
        pytest.skip("../shared/data/fracatlas/images is absent: this test reads the FracAtlas JPEGs")
    paths = sorted(folder.glob("*.jpg"))
    assert len(paths) == 1589
    strict_failures = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()
        except OSError:
            strict_failures.append(path)
    assert 1 <= len(strict_failures) <= 100
    for path in strict_failures:
        data = path.read_bytes()
        # Proof that data is missing: a whole scan ignores bytes between its end and the marker, but
        # here the bottom rows change with them (libjpeg decodes them in place of the missing data).
        with Image.open(io.BytesIO(data + EOI)) as a, Image.open(io.BytesIO(data + b"\x55" * 64 + EOI)) as b:
            assert not np.array_equal(np.asarray(a), np.asarray(b)), path.name
        with pytest.raises(CorruptFileError):
            load(path)
    for path in paths[::5]:  # a fifth: the input sanity checks (issue 16) must refuse no real radiograph
        if path not in strict_failures:
            assert load(path).warnings == (), path.name


@pytest.mark.real_data
def test_kermany_paediatric_chest_jpegs_load(shared_data) -> None:
    """Small RGB JPEGs of gray content from a third party: none is refused as blank or colour."""
    folder = shared_data / "kermany-pediatric"
    if not folder.is_dir():
        pytest.skip("../shared/data/kermany-pediatric is absent: this test reads its chest JPEGs")
    paths = sorted(folder.rglob("*.jpeg"))
    assert len(paths) == 5840
    for path in paths[::8]:
        rad = load(path)
        assert np.percentile(rad.pixels, 99.5) - np.percentile(rad.pixels, 0.5) > 0.2, path.name
