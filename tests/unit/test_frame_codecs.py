"""Unit tests for frames in every media type: encode_frames, can_encode_frames, decoded headers."""

from __future__ import annotations

import functools
import io
import zlib

import imagecodecs
import jpeg_ls
import numpy as np
import openjpeg
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import convert_color_space, get_decoder
from pydicom.pixels.utils import as_pixel_options

from shared.dicom import frame_codecs
from shared.dicom.codecs import (
    DEFLATED_IMAGE_FRAME,
    EXPLICIT_VR_LE,
    HTJ2K,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_XL,
    JPEG_XL_LOSSLESS,
    JPEG_XL_RECOMPRESSION,
    RLE_LOSSLESS,
    can_encode_frames,
    decode_frame,
    decoded_header,
    decoded_photometric,
    encode_frames,
    frames_from_instance,
)
from shared.dicom.parse import ParsedInstance, read_instance
from shared.errors import NotAcceptable
from tests.testdata import bundled_bytes, bundled_path

# (media type, requested transfer syntax, the syntax it resolves to); one column each below.
TARGETS = [
    ("application/octet-stream", None, EXPLICIT_VR_LE),
    ("image/jpeg", None, JPEG_BASELINE),
    ("image/jpeg", JPEG_EXTENDED, JPEG_EXTENDED),
    ("image/jpeg", JPEG_LOSSLESS, JPEG_LOSSLESS),
    ("image/jpeg", JPEG_LOSSLESS_SV1, JPEG_LOSSLESS_SV1),
    ("image/png", None, frame_codecs.PNG),
    ("image/jls", None, JPEG_LS_LOSSLESS),
    ("image/jls", JPEG_LS_NEAR_LOSSLESS, JPEG_LS_NEAR_LOSSLESS),
    ("image/jp2", None, JPEG_2000_LOSSLESS),
    ("image/jp2", JPEG_2000, JPEG_2000),
    ("image/jphc", None, HTJ2K_LOSSLESS),
    ("image/jphc", HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSLESS_RPCL),
    ("image/jphc", HTJ2K, HTJ2K),
    ("image/jxl", None, JPEG_XL_LOSSLESS),
    ("image/jxl", JPEG_XL, JPEG_XL),
    ("image/dicom-rle", None, RLE_LOSSLESS),
    ("application/x-deflate", None, DEFLATED_IMAGE_FRAME),
]
# "=" decodes to exactly the source's pixels, "~" within LOSSY_TOLERANCE of them, "-" is
# refused with NotAcceptable (and can_encode_frames is False).
FRAME_MATRIX = {
    # Columns: octet-stream, jpeg .50 .51 .57 .70, png, jls .80 .81, jp2 .90 .91,
    # jphc .201 .202 .203, jxl .110 .112, dicom-rle, x-deflate.
    "CT_small.dcm": "                    =  -  -  =  =  =  =  ~  =  ~  =  =  ~  -  -  =  =",
    "MR_small_jpeg_ls_lossless.dcm": "   =  -  -  =  =  =  =  ~  =  ~  =  =  ~  -  -  =  =",
    "SC_rgb_rle_2frame.dcm": "           =  ~  -  =  =  =  =  ~  =  ~  =  =  ~  =  ~  =  =",
    "examples_ybr_color.dcm": "          =  ~  -  =  =  =  =  ~  =  ~  =  =  ~  =  ~  =  =",
    "rtdose.dcm": "                      =  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  =",
    "examples_overlay.dcm": "            =  -  ~  =  =  =  =  ~  =  ~  =  =  ~  =  ~  =  =",
    "image_dfl.dcm": "                   =  ~  ~  =  =  =  =  ~  =  ~  =  =  ~  =  ~  =  =",
    "SC_ybr_full_422_uncompressed.dcm": "=  ~  -  -  -  =  =  ~  =  ~  =  =  ~  -  ~  =  =",
    "liver_1frame.dcm": "                =  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -",
    "examples_palette.dcm": "            =  -  -  =  =  =  =  -  =  -  =  =  -  -  -  =  =",
    "SC_rgb_rle_16bit.dcm": "            =  -  -  -  -  -  =  ~  =  ~  =  =  ~  =  ~  =  =",
    "SC_rgb_small_odd.dcm": "            =  ~  -  =  =  =  -  -  -  -  =  =  ~  =  ~  =  =",
    "JPEG2000.dcm": "                    =  -  -  =  =  =  =  ~  =  ~  =  =  ~  -  -  =  =",
}
# Mean absolute error allowed for lossy targets, as a fraction of the source's pixel range.
LOSSY_TOLERANCE = 0.025
CELLS = [
    (name, media, requested, target, cell)
    for name, row in FRAME_MATRIX.items()
    for (media, requested, target), cell in zip(TARGETS, row.split(), strict=True)
]
# Frames taken from the long multi-frame file, to keep the matrix quick.
_SOME_FRAMES = {"examples_ybr_color.dcm": [1, 17, 30]}


@functools.cache
def _source(name: str) -> tuple[list[bytes], pydicom.Dataset, np.ndarray]:
    """decode_frame's output for each frame, its header, and pydicom's pixels (RGB colour)."""
    data = bundled_bytes(name)
    parsed = read_instance(io.BytesIO(data))
    count = parsed.number_of_frames
    numbers = _SOME_FRAMES.get(name, list(range(1, count + 1)))
    if parsed.frames:
        frames = [_decoded_frame(data, parsed, number) for number in numbers]
    else:  # a deflated data set has no frame spans: retrieve decodes the whole instance
        frames = frames_from_instance(io.BytesIO(data), numbers, EXPLICIT_VR_LE)
    pixels = pydicom.dcmread(bundled_path(name)).pixel_array
    pixels = pixels if count > 1 else pixels[np.newaxis]
    expected = pixels[[number - 1 for number in numbers]]
    return frames, decoded_header(parsed.dataset, parsed.transfer_syntax), expected


def _decoded_frame(data: bytes, parsed: ParsedInstance, number: int) -> bytes:
    spans = parsed.frames[number - 1]
    encoded = b"".join(data[s.offset : s.offset + s.length] for s in spans)
    return decode_frame(encoded, parsed.dataset, parsed.transfer_syntax, number)


def _as_signed(array: np.ndarray, bits: int) -> np.ndarray:
    """Read the low `bits` bits as two's complement (decoders differ in sign handling)."""
    values = array.astype(np.int64) & ((1 << bits) - 1)
    return np.where(values >= 1 << (bits - 1), values - (1 << bits), values)


def _decode(data: bytes, media: str, target: str, header: pydicom.Dataset) -> np.ndarray:
    """Decode one output frame with a library other than the one that encoded it."""
    if media == "image/png" or target == JPEG_BASELINE:
        return np.asarray(Image.open(io.BytesIO(data)))
    layout = frame_codecs.layout_of(header)
    assert layout is not None
    photometric = frame_codecs.encoded_photometric(layout, target)
    if media in ("image/jls", "image/jp2", "image/jphc", "image/jxl"):
        array = _decode_codestream(data, media)
        # These decoders return samples as coded; pydicom's reference pixels are RGB.
        if photometric == "YBR_FULL":
            return convert_color_space(array, "YBR_FULL", "RGB")
        return array
    options = as_pixel_options(header, number_of_frames=1, photometric_interpretation=photometric)
    plugin = "pydicom" if target == RLE_LOSSLESS else "pylibjpeg"
    decoder = get_decoder(target)
    array, _ = decoder.as_array(encapsulate([data]), decoding_plugin=plugin, **options)
    return array


def _decode_codestream(data: bytes, media: str) -> np.ndarray:
    if media == "image/jls":
        return np.asarray(jpeg_ls.decode(np.frombuffer(data, dtype=np.uint8)))
    if media == "image/jxl":
        return np.asarray(imagecodecs.jpegxl_decode(data))
    return np.asarray(openjpeg.decode(data))


def _comparable(decoded: np.ndarray, expected: np.ndarray, header: pydicom.Dataset) -> np.ndarray:
    decoded = decoded.reshape(expected.shape)
    if int(header.get("PixelRepresentation") or 0) == 1:
        return _as_signed(decoded, int(header.BitsStored))
    return decoded


def _png_expected(expected: np.ndarray, header: pydicom.Dataset) -> np.ndarray:
    """PNG frames hold raw values, signed ones offset by 2**(BitsStored-1)."""
    if int(header.get("PixelRepresentation") or 0) == 1:
        return expected.astype(np.int64) + (1 << (int(header.BitsStored) - 1))
    return expected


@pytest.mark.parametrize(
    ("name", "media", "requested", "target"),
    [(n, m, r, t) for n, m, r, t, cell in CELLS if cell == "="],
)
def test_lossless_frames_decode_back_exactly(
    name: str, media: str, requested: str | None, target: str
) -> None:
    frames, header, expected = _source(name)
    assert can_encode_frames(header, media, requested)
    out = encode_frames(frames, header, media, requested)
    assert len(out) == len(frames)
    if target in (EXPLICIT_VR_LE, DEFLATED_IMAGE_FRAME):
        # Both carry the native bytes (deflated for the latter), whatever the pixel layout.
        inflate = target == DEFLATED_IMAGE_FRAME
        assert [zlib.decompress(f, -15) if inflate else f for f in out] == frames
        return
    for index, frame in enumerate(out):
        decoded = _decode(frame, media, target, header)
        if media == "image/png":
            reference = _png_expected(expected[index], header)
            np.testing.assert_array_equal(decoded.reshape(reference.shape), reference)
        else:
            comparable = _comparable(decoded, expected[index], header)
            np.testing.assert_array_equal(comparable, expected[index])


@pytest.mark.parametrize(
    ("name", "media", "requested", "target"),
    [(n, m, r, t) for n, m, r, t, cell in CELLS if cell == "~"],
)
def test_lossy_frames_stay_within_tolerance(
    name: str, media: str, requested: str | None, target: str
) -> None:
    frames, header, expected = _source(name)
    assert can_encode_frames(header, media, requested)
    out = encode_frames(frames, header, media, requested)
    value_range = max(float(expected.max()) - float(expected.min()), 1.0)
    for index, frame in enumerate(out):
        decoded = _comparable(_decode(frame, media, target, header), expected[index], header)
        error = np.abs(decoded.astype(float) - expected[index].astype(float)).mean()
        assert error < LOSSY_TOLERANCE * value_range, f"frame {index + 1}"


@pytest.mark.parametrize(
    ("name", "media", "requested"),
    [(n, m, r) for n, m, r, _, cell in CELLS if cell == "-"],
)
def test_refused_frames_are_not_acceptable(name: str, media: str, requested: str | None) -> None:
    frames, header, _ = _source(name)
    assert not can_encode_frames(header, media, requested)
    with pytest.raises(NotAcceptable, match=f"cannot encode frames as {media}"):
        encode_frames(frames, header, media, requested)


def test_frame_matrix_covers_every_cell() -> None:
    assert {cell for *_, cell in CELLS} == {"=", "~", "-"}
    assert len(CELLS) == len(FRAME_MATRIX) * len(TARGETS)
    assert {media for media, _, _ in TARGETS} == set(frame_codecs.MEDIA_TYPE_SYNTAXES)


# --- media type and syntax negotiation ---------------------------------------------------


@pytest.mark.parametrize(
    ("media", "requested", "match"),
    [
        ("image/jpeg", JPEG_LS_LOSSLESS, "cannot use transfer syntax"),
        ("image/jxl", JPEG_XL_RECOMPRESSION, "cannot use transfer syntax"),
        ("image/jls", JPEG_BASELINE, "cannot use transfer syntax"),
        ("application/octet-stream", JPEG_BASELINE, "cannot use transfer syntax"),
        ("image/png", EXPLICIT_VR_LE, "take no transfer syntax"),
        ("image/gif", None, "cannot be returned as image/gif"),
        ("application/dicom", None, "cannot be returned as"),
    ],
)
def test_media_type_and_syntax_must_match(media: str, requested: str, match: str) -> None:
    frames, header, _ = _source("image_dfl.dcm")
    assert not can_encode_frames(header, media, requested)
    with pytest.raises(NotAcceptable, match=match):
        encode_frames(frames, header, media, requested)


def test_media_type_parameters_and_case_are_ignored() -> None:
    frames, header, _ = _source("image_dfl.dcm")
    out = encode_frames(frames, header, 'Image/JLS; transfer-syntax="x"', None)
    assert np.asarray(jpeg_ls.decode(np.frombuffer(out[0], np.uint8))).shape == (512, 512)


@pytest.mark.parametrize(("media", "requested"), [("image/jphc", None), ("image/jxl", JPEG_XL)])
def test_missing_encoder_is_not_acceptable(
    media: str, requested: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frame_codecs, "_imagecodecs_has", lambda codec: False)
    frames, header, _ = _source("image_dfl.dcm")
    assert not can_encode_frames(header, media, requested)
    with pytest.raises(NotAcceptable, match="no encoder is available"):
        encode_frames(frames, header, media, requested)


def test_short_frame_is_not_acceptable() -> None:
    frames, header, _ = _source("CT_small.dcm")
    with pytest.raises(NotAcceptable, match=r"frame 2 .* has 10 bytes, the image attributes need"):
        encode_frames([frames[0], frames[0][:10]], header, "image/png", None)


def test_header_without_image_size_is_not_acceptable() -> None:
    header = pydicom.Dataset()
    header.PhotometricInterpretation = "MONOCHROME2"
    assert not can_encode_frames(header, "image/png", None)
    with pytest.raises(NotAcceptable, match="pixel attributes"):
        encode_frames([b"\0" * 4], header, "image/png", None)


# --- what the frames look like -----------------------------------------------------------


def test_png_depths_and_modes() -> None:
    cases = {
        "image_dfl.dcm": "L",
        "CT_small.dcm": "I;16",
        "SC_rgb_rle_2frame.dcm": "RGB",
        "examples_palette.dcm": "L",
    }
    for name, mode in cases.items():
        frames, header, _ = _source(name)
        image = Image.open(io.BytesIO(encode_frames(frames[:1], header, "image/png", None)[0]))
        assert (image.format, image.mode) == ("PNG", mode), name


def test_png_keeps_monochrome1_values_uninverted() -> None:
    frames, header, expected = _source("image_dfl.dcm")
    header = header.copy()
    header.PhotometricInterpretation = "MONOCHROME1"
    png = encode_frames(frames, header, "image/png", None)[0]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), expected[0])


def test_jpeg_baseline_frames_are_ycbcr_jfif() -> None:
    frames, header, _ = _source("SC_rgb_rle_2frame.dcm")
    image = Image.open(io.BytesIO(encode_frames(frames, header, "image/jpeg", None)[1]))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.layer[1][1:3] == image.layer[2][1:3] == (1, 1)  # chroma at half width
    layout = frame_codecs.layout_of(header)
    assert layout is not None
    assert frame_codecs.encoded_photometric(layout, JPEG_BASELINE) == "YBR_FULL_422"


def test_rle_frames_have_the_annex_g_header() -> None:
    frames, header, _ = _source("SC_rgb_rle_2frame.dcm")
    rle = encode_frames(frames, header, "image/dicom-rle", None)[0]
    segments = int.from_bytes(rle[:4], "little")
    offsets = [int.from_bytes(rle[4 * i : 4 * i + 4], "little") for i in range(1, 16)]
    assert segments == 3 and offsets[0] == 64 and offsets[3:] == [0] * 12


def test_htj2k_frames_carry_a_cap_marker() -> None:
    frames, header, _ = _source("CT_small.dcm")
    for requested in (HTJ2K_LOSSLESS, HTJ2K):
        codestream = encode_frames(frames, header, "image/jphc", requested)[0]
        assert codestream[:4] == b"\xff\x4f\xff\x51" and b"\xff\x50" in codestream[:200]


# --- decoded headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "photometric"),
    [
        ("examples_ybr_color.dcm", "RGB"),  # JPEG YBR_FULL_422
        ("SC_rgb_jpeg_dcmtk.dcm", "RGB"),  # JPEG YBR_FULL
        ("examples_jpeg2k.dcm", "RGB"),  # JPEG 2000 YBR_RCT
        ("SC_ybr_full_422_uncompressed.dcm", "YBR_FULL_422"),  # native: bytes as stored
        ("SC_rgb_rle.dcm", "RGB"),
        ("CT_small.dcm", "MONOCHROME2"),
    ],
)
def test_decoded_photometric(name: str, photometric: str) -> None:
    parsed = read_instance(io.BytesIO(bundled_bytes(name)))
    assert decoded_photometric(parsed.dataset, parsed.transfer_syntax) == photometric


def test_decoded_header_is_interleaved_for_encapsulated_sources() -> None:
    parsed = read_instance(io.BytesIO(bundled_bytes("SC_rgb_rle.dcm")))
    parsed.dataset.PlanarConfiguration = 1
    assert decoded_header(parsed.dataset, parsed.transfer_syntax).PlanarConfiguration == 0
    assert parsed.dataset.PlanarConfiguration == 1  # a copy, the input is untouched
    native = read_instance(io.BytesIO(bundled_bytes("ExplVR_BigEnd.dcm")))
    assert decoded_header(native.dataset, native.transfer_syntax).PlanarConfiguration == 1


def test_planar_native_frames_encode_like_interleaved_ones() -> None:
    data = bundled_bytes("ExplVR_BigEnd.dcm")  # RGB, planar configuration 1
    parsed = read_instance(io.BytesIO(data))
    span = parsed.frames[0][0]
    native = decode_frame(
        data[span.offset : span.offset + span.length], parsed.dataset, parsed.transfer_syntax, 1
    )
    header = decoded_header(parsed.dataset, parsed.transfer_syntax)
    png = encode_frames([native], header, "image/png", None)[0]
    expected = pydicom.dcmread(bundled_path("ExplVR_BigEnd.dcm")).pixel_array
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), expected)


# --- frames_from_instance with the new targets -------------------------------------------


def test_frames_from_instance_in_jpeg_baseline() -> None:
    name = "SC_rgb_rle_2frame.dcm"
    frames = frames_from_instance(io.BytesIO(bundled_bytes(name)), [2, 1], JPEG_BASELINE)
    expected = pydicom.dcmread(bundled_path(name)).pixel_array
    for frame, index in zip(frames, [1, 0], strict=True):
        decoded = np.asarray(Image.open(io.BytesIO(frame))).astype(float)
        assert np.abs(decoded - expected[index]).mean() < LOSSY_TOLERANCE * 255


def test_frames_from_instance_recompress_stored_jpeg() -> None:
    name = "examples_ybr_color.dcm"
    frames = frames_from_instance(io.BytesIO(bundled_bytes(name)), [3], JPEG_XL_RECOMPRESSION)
    stored = list(
        generate_frames(pydicom.dcmread(bundled_path(name)).PixelData, number_of_frames=30)
    )
    assert imagecodecs.jpegxl_decode_jpeg(frames[0], numthreads=1) == stored[2]


def test_frames_from_instance_refuses_what_encode_frames_refuses() -> None:
    with pytest.raises(NotAcceptable, match="non-monochrome"):
        frames_from_instance(io.BytesIO(bundled_bytes("SC_rgb_rle_16bit.dcm")), [1], JPEG_LOSSLESS)
