"""Unit tests for shared.dicom.codecs: transcoding rules, round trips and frame decoding."""

from __future__ import annotations

import io
import zlib

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder, get_encoder
from pydicom.pixels.utils import as_pixel_options

from shared.dicom import frame_codecs
from shared.dicom.codecs import (
    DEFLATED_EXPLICIT_VR_LE,
    DEFLATED_IMAGE_FRAME,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    HTJ2K,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    IMPLICIT_VR_LE,
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
    can_transcode,
    decode_frame,
    frames_from_instance,
    transcode_instance,
)
from shared.dicom.parse import read_instance
from shared.errors import InvalidArgument, NotAcceptable
from tests.testdata import bundled_bytes, bundled_path

# Every bundled compressed file that pydicom and the installed plugins decode.
COMPRESSED = [
    "693_J2KI.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "JPEG2000.dcm",
    "JPEGLSNearLossless_08.dcm",
    "JPEGLSNearLossless_16.dcm",
    "JPGExtended.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "SC_jpeg_no_color_transform_2.dcm",
    "SC_rgb_dcmtk_+eb+cr.dcm",
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",
    "SC_rgb_dcmtk_+eb+cy+n2.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_dcmtk_+eb+cy+s4.dcm",
    "SC_rgb_gdcm_KY.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "SC_rgb_jls_lossy_sample.dcm",
    "SC_rgb_jpeg.dcm",
    "SC_rgb_jpeg_app14_dcmd.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_jpeg_lossy_gdcm.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_rle_32bit.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "examples_jpeg2k.dcm",
    "examples_ybr_color.dcm",
    "rtdose_rle.dcm",
    "rtdose_rle_1frame.dcm",
]
# Native files in syntaxes other than explicit VR little endian.
OTHER_NATIVE = [
    "ExplVR_BigEnd.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "SC_rgb_small_odd_big_endian.dcm",
    "image_dfl.dcm",
    "liver_expb_1frame.dcm",
    "rtdose.dcm",
    "rtdose_expb.dcm",
]
LOSSLESS_SOURCES = {
    "GDCMJ2K_TextGBR.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle.dcm",
    "examples_jpeg2k.dcm",
    "rtdose_rle.dcm",
}


_path = bundled_path
_raw = bundled_bytes


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _header(name: str) -> pydicom.Dataset:
    """The header as ingest keeps it: every element, pixel data deferred."""
    return read_instance(io.BytesIO(_raw(name))).dataset


def _le_bytes(array: np.ndarray) -> bytes:
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def _frames(ds: pydicom.Dataset) -> np.ndarray:
    """pydicom's decoded pixels, always with a leading frame axis."""
    array = ds.pixel_array
    return array if int(ds.get("NumberOfFrames") or 1) > 1 else array[np.newaxis]


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPRESSED + OTHER_NATIVE)
def test_round_trip_to_explicit_le_is_pixel_identical(name: str) -> None:
    original = pydicom.dcmread(_path(name))
    out = _read(transcode_instance(io.BytesIO(_raw(name)), EXPLICIT_VR_LE))
    assert out.file_meta.TransferSyntaxUID == EXPLICIT_VR_LE
    assert not out["PixelData"].is_undefined_length
    np.testing.assert_array_equal(out.pixel_array, original.pixel_array)
    assert out.SOPInstanceUID == original.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert out.get("StudyInstanceUID") == original.get("StudyInstanceUID")
    if name in LOSSLESS_SOURCES:
        assert original.pixel_array.tobytes() == _le_bytes(out.pixel_array)


@pytest.mark.parametrize("name", ["examples_ybr_color.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm"])
def test_ycbcr_jpeg_becomes_rgb_like_pydicom_decompress(name: str) -> None:
    assert pydicom.dcmread(_path(name)).PhotometricInterpretation == "YBR_FULL_422"
    out = _read(transcode_instance(io.BytesIO(_raw(name)), EXPLICIT_VR_LE))
    assert out.PhotometricInterpretation == "RGB"
    assert out.PlanarConfiguration == 0


def test_other_attributes_are_kept() -> None:
    name = "examples_ybr_color.dcm"
    original = pydicom.dcmread(_path(name))
    out = _read(transcode_instance(io.BytesIO(_raw(name)), EXPLICIT_VR_LE))
    changed = {"PixelData", "PhotometricInterpretation"}
    for element in original:
        if element.keyword not in changed:
            assert out[element.tag].value == element.value, element.keyword


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "CT_small.dcm", "rtplan.dcm", "MR_small_bigendian.dcm"]
)
def test_round_trip_to_implicit_le(name: str) -> None:
    original = pydicom.dcmread(_path(name))
    out = _read(transcode_instance(io.BytesIO(_raw(name)), IMPLICIT_VR_LE))
    assert out.file_meta.TransferSyntaxUID == IMPLICIT_VR_LE
    assert out.original_encoding == (True, True)
    if "PixelData" in original:
        np.testing.assert_array_equal(out.pixel_array, original.pixel_array)
    assert out.SOPInstanceUID == original.SOPInstanceUID


def test_round_trip_to_deflated() -> None:
    original = pydicom.dcmread(_path("CT_small.dcm"))
    out = _read(transcode_instance(io.BytesIO(_raw("CT_small.dcm")), DEFLATED_EXPLICIT_VR_LE))
    assert out.file_meta.TransferSyntaxUID == DEFLATED_EXPLICIT_VR_LE
    np.testing.assert_array_equal(out.pixel_array, original.pixel_array)


def test_big_endian_binary_values_are_swapped() -> None:
    big = _read(transcode_instance(io.BytesIO(_raw("rtdose_expb.dcm")), EXPLICIT_VR_LE))
    little = pydicom.dcmread(_path("rtdose.dcm"))
    assert big.PixelData == little.PixelData


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "examples_ybr_color.dcm", "rtplan.dcm"],
)
def test_identity_returns_the_exact_bytes(name: str) -> None:
    data = _raw(name)
    source = pydicom.dcmread(_path(name), stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert transcode_instance(io.BytesIO(data), source) == data


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("CT_small.dcm", RLE_LOSSLESS),
        ("CT_small.dcm", JPEG_2000_LOSSLESS),
        ("examples_rgb_color.dcm", RLE_LOSSLESS),
        ("examples_rgb_color.dcm", JPEG_2000_LOSSLESS),
        ("ExplVR_BigEnd.dcm", RLE_LOSSLESS),  # big endian, planar configuration 1
        ("SC_rgb_jpeg_dcmtk.dcm", RLE_LOSSLESS),  # JPEG YBR_FULL decoded to RGB first
        ("MR_small_jpeg_ls_lossless.dcm", JPEG_2000_LOSSLESS),
        ("SC_rgb_rle_2frame.dcm", JPEG_2000_LOSSLESS),
        ("examples_palette.dcm", RLE_LOSSLESS),
    ],
)
def test_lossless_encoding_targets_preserve_pixels(name: str, target: str) -> None:
    original = pydicom.dcmread(_path(name))
    header = _header(name)
    assert can_transcode(header.file_meta.TransferSyntaxUID, target, header)
    out = _read(transcode_instance(io.BytesIO(_raw(name)), target))
    assert out.file_meta.TransferSyntaxUID == target
    assert out["PixelData"].is_undefined_length
    np.testing.assert_array_equal(out.pixel_array, original.pixel_array)
    assert out.SOPInstanceUID == original.SOPInstanceUID


def test_lossy_jpeg_2000_target_records_the_compression() -> None:
    out = _read(transcode_instance(io.BytesIO(_raw("CT_small.dcm")), JPEG_2000))
    assert out.file_meta.TransferSyntaxUID == JPEG_2000
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_15444_1"
    original = pydicom.dcmread(_path("CT_small.dcm")).pixel_array.astype(float)
    error = np.abs(out.pixel_array.astype(float) - original)
    assert error.mean() < 0.02 * (original.max() - original.min())


def test_instance_without_pixel_data_changes_only_its_encoding() -> None:
    out = _read(transcode_instance(io.BytesIO(_raw("rtplan.dcm")), EXPLICIT_VR_LE))
    original = pydicom.dcmread(_path("rtplan.dcm"))
    assert out.file_meta.TransferSyntaxUID == EXPLICIT_VR_LE
    assert out.RTPlanLabel == original.RTPlanLabel
    assert len(out.BeamSequence) == len(original.BeamSequence)


# --- the support matrix ------------------------------------------------------------------

# Targets, one column each in MATRIX below.
MATRIX_TARGETS = [
    IMPLICIT_VR_LE,
    EXPLICIT_VR_LE,
    DEFLATED_EXPLICIT_VR_LE,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_2000_LOSSLESS,
    JPEG_2000,
    JPEG_XL_LOSSLESS,
    JPEG_XL_RECOMPRESSION,
    JPEG_XL,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    HTJ2K,
    RLE_LOSSLESS,
    DEFLATED_IMAGE_FRAME,
]
# "=" decodes to exactly the source's pixels, "~" within LOSSY_TOLERANCE of them, "r" is the
# stored JPEG repacked (reconstructible bit for bit), "-" is refused with NotAcceptable.
MATRIX = {
    # Columns: Implicit LE, Explicit LE, Deflated LE, JPEG .50 .51 .57 .70, JPEG-LS .80 .81,
    # JPEG 2000 .90 .91, JPEG XL .110 .111 .112, HTJ2K .201 .202 .203, RLE, Deflated frames.
    "CT_small.dcm": "                    =  =  =  -  -  =  =  =  ~  =  ~  -  -  -  =  =  ~  =  =",
    "MR_small.dcm": "                    =  =  =  -  -  =  =  =  ~  =  ~  -  -  -  =  =  ~  =  =",
    "SC_rgb_rle.dcm": "                  =  =  =  ~  -  =  =  =  ~  =  ~  =  -  ~  =  =  ~  =  =",
    "SC_rgb_jpeg_dcmtk.dcm": "           =  =  =  =  -  =  =  =  ~  =  ~  =  r  ~  =  =  ~  =  =",
    "JPEG2000.dcm": "                    =  =  =  -  -  =  =  =  ~  =  =  -  -  -  =  =  ~  =  =",
    "MR_small_jp2klossless.dcm": "       =  =  =  -  -  =  =  =  ~  =  ~  -  -  -  =  =  ~  =  =",
    "MR_small_jpeg_ls_lossless.dcm": "   =  =  =  -  -  =  =  =  ~  =  ~  -  -  -  =  =  ~  =  =",
    "examples_ybr_color.dcm": "          =  =  =  =  -  =  =  =  ~  =  ~  =  r  ~  =  =  ~  =  =",
    "rtdose.dcm": "                      =  =  =  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  =",
    "SC_rgb_small_odd.dcm": "            =  =  =  ~  -  =  =  -  -  -  -  =  -  ~  =  =  ~  =  =",
    "liver_1frame.dcm": "                =  =  =  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -",
    "examples_overlay.dcm": "            =  =  =  -  ~  =  =  =  ~  =  ~  =  -  ~  =  =  ~  =  =",
    "SC_ybr_full_422_uncompressed.dcm": "=  =  =  ~  -  -  -  =  ~  =  ~  -  -  ~  =  =  ~  =  =",
    "examples_palette.dcm": "            =  =  =  -  -  =  =  =  -  =  -  -  -  -  =  =  -  =  =",
    "SC_rgb_rle_16bit.dcm": "            =  =  =  -  -  -  -  =  ~  =  ~  =  -  ~  =  =  ~  =  =",
    "JPGExtended.dcm": "                 =  =  =  -  =  =  =  =  ~  =  ~  =  -  ~  =  =  ~  =  =",
    "image_dfl.dcm": "                   =  =  =  ~  ~  =  =  =  ~  =  ~  =  -  ~  =  =  ~  =  =",
}
# Mean absolute error allowed for lossy targets, as a fraction of the source's pixel range
# (JPEG quality 90, JPEG-LS error 2, JPEG 2000 ratio 10, HTJ2K qstep 0.001, JPEG XL 0.5).
LOSSY_TOLERANCE = 0.025
MATRIX_CELLS = [
    (name, target, cell)
    for name, row in MATRIX.items()
    for target, cell in zip(MATRIX_TARGETS, row.split(), strict=True)
]


def _cells(kind: str) -> list[tuple[str, str]]:
    return [(name, target) for name, target, cell in MATRIX_CELLS if cell == kind]


def _source_ts(name: str) -> str:
    return str(_header(name).file_meta.TransferSyntaxUID)


def _decoded(data: bytes) -> np.ndarray:
    """Pixels of a transcoded instance, decoded by pydicom or (JPEG XL) by libjxl directly."""
    ds = _read(data)
    if ds.file_meta.TransferSyntaxUID not in (JPEG_XL_LOSSLESS, JPEG_XL):
        return _frames(ds)
    count = int(ds.get("NumberOfFrames") or 1)
    frames = generate_frames(ds.PixelData, number_of_frames=count)
    return np.stack([imagecodecs.jpegxl_decode(frame) for frame in frames])


@pytest.mark.parametrize(("name", "target"), _cells("="))
def test_matrix_lossless_conversions_are_pixel_identical(name: str, target: str) -> None:
    header = _header(name)
    assert can_transcode(_source_ts(name), target, header)
    out = transcode_instance(io.BytesIO(_raw(name)), target)
    ds = _read(out)
    assert ds.file_meta.TransferSyntaxUID == target
    assert ds.SOPInstanceUID == header.SOPInstanceUID
    if target == DEFLATED_IMAGE_FRAME:
        # The frames are the native bytes, deflated: compare them with a native transcoding.
        native = _read(transcode_instance(io.BytesIO(_raw(name)), EXPLICIT_VR_LE)).PixelData
        count = int(ds.get("NumberOfFrames") or 1)
        inflated = [
            zlib.decompress(f, -15) for f in generate_frames(ds.PixelData, number_of_frames=count)
        ]
        assert b"".join(inflated) == native[: sum(map(len, inflated))]
        return
    expected = _frames(pydicom.dcmread(_path(name)))
    np.testing.assert_array_equal(_decoded(out), expected)


@pytest.mark.parametrize(("name", "target"), _cells("~"))
def test_matrix_lossy_conversions_stay_within_tolerance(name: str, target: str) -> None:
    assert can_transcode(_source_ts(name), target, _header(name))
    out = transcode_instance(io.BytesIO(_raw(name)), target)
    ds = _read(out)
    assert ds.file_meta.TransferSyntaxUID == target
    assert ds.LossyImageCompression == "01"
    assert frame_codecs.LOSSY_METHODS[target] in ds.LossyImageCompressionMethod
    expected = _frames(pydicom.dcmread(_path(name))).astype(float)
    error = np.abs(_decoded(out).astype(float) - expected).mean()
    assert error < LOSSY_TOLERANCE * max(expected.max() - expected.min(), 1)


@pytest.mark.parametrize(("name", "target"), _cells("r"))
def test_matrix_jpeg_recompression_reconstructs_the_stored_jpeg(name: str, target: str) -> None:
    assert can_transcode(_source_ts(name), target, _header(name))
    original = pydicom.dcmread(_path(name))
    ds = _read(transcode_instance(io.BytesIO(_raw(name)), target))
    count = int(original.get("NumberOfFrames") or 1)
    stored = list(generate_frames(original.PixelData, number_of_frames=count))
    repacked = list(generate_frames(ds.PixelData, number_of_frames=count))
    assert [imagecodecs.jpegxl_decode_jpeg(f, numthreads=1) for f in repacked] == stored
    assert ds.PhotometricInterpretation == original.PhotometricInterpretation


@pytest.mark.parametrize(("name", "target"), _cells("-"))
def test_matrix_refusals_are_not_acceptable(name: str, target: str) -> None:
    source = _source_ts(name)
    assert not can_transcode(source, target, _header(name))
    with pytest.raises(NotAcceptable) as caught:
        transcode_instance(io.BytesIO(_raw(name)), target)
    assert caught.value.message.startswith(f"cannot transcode from {source} to {target}: ")


def test_matrix_covers_every_cell() -> None:
    assert {cell for _, _, cell in MATRIX_CELLS} == {"=", "~", "r", "-"}
    assert len(MATRIX_CELLS) == len(MATRIX) * len(MATRIX_TARGETS)


@pytest.mark.parametrize("target", [JPEG_XL_LOSSLESS, DEFLATED_IMAGE_FRAME, HTJ2K_LOSSLESS])
def test_new_syntaxes_transcode_onwards(target: str) -> None:
    """Instances stored in syntaxes pydicom 3.0 cannot decode are readable sources too."""
    name = "SC_rgb_rle_2frame.dcm"
    stored = transcode_instance(io.BytesIO(_raw(name)), target)
    parsed = read_instance(io.BytesIO(stored))
    assert parsed.transfer_syntax == target and len(parsed.frames) == 2
    expected = _frames(pydicom.dcmread(_path(name)))
    for onward in (EXPLICIT_VR_LE, JPEG_2000_LOSSLESS, RLE_LOSSLESS):
        assert can_transcode(target, onward, parsed.dataset)
        out = _read(transcode_instance(io.BytesIO(stored), onward))
        np.testing.assert_array_equal(_frames(out), expected)
    for number, spans in enumerate(parsed.frames, start=1):
        encoded = b"".join(stored[s.offset : s.offset + s.length] for s in spans)
        decoded = decode_frame(encoded, parsed.dataset, target, number)
        assert decoded == _le_bytes(expected[number - 1])


def test_recompression_needs_a_jpeg_baseline_source() -> None:
    _refused("JPGExtended.dcm", JPEG_XL_RECOMPRESSION, "applies only to")


def test_htj2k_rpcl_writes_rpcl_order_and_tlm_markers() -> None:
    ds = _read(transcode_instance(io.BytesIO(_raw("CT_small.dcm")), HTJ2K_LOSSLESS_RPCL))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    cod = frame.index(b"\xff\x52")
    assert frame[cod + 5] == 2  # progression order RPCL (ISO 15444-1 Table A.16)
    assert b"\xff\x55" in frame  # TLM
    assert b"\xff\x50" in frame[:cod]  # CAP marker: a Part 15 (high-throughput) codestream


def test_jpeg_baseline_colour_is_ybr_full_422() -> None:
    out = _read(transcode_instance(io.BytesIO(_raw("SC_rgb_rle_2frame.dcm")), JPEG_BASELINE))
    assert out.PhotometricInterpretation == "YBR_FULL_422"
    assert out.PlanarConfiguration == 0
    assert out.LossyImageCompressionMethod == "ISO_10918_1"
    grey = _read(transcode_instance(io.BytesIO(_raw("image_dfl.dcm")), JPEG_BASELINE))
    assert grey.PhotometricInterpretation == "MONOCHROME2"


def test_lossy_steps_are_appended_to_the_history() -> None:
    once = transcode_instance(io.BytesIO(_raw("CT_small.dcm")), JPEG_2000)
    twice = _read(transcode_instance(io.BytesIO(once), HTJ2K))
    assert list(twice.LossyImageCompressionMethod) == ["ISO_15444_1", "ISO_15444_15"]
    assert len(twice.LossyImageCompressionRatio) == 2
    assert twice.LossyImageCompression == "01"


# --- refusals ----------------------------------------------------------------------------


def _refused(name: str, target: str, match: str) -> None:
    header = _header(name)
    assert not can_transcode(header.file_meta.TransferSyntaxUID, target, header)
    with pytest.raises(NotAcceptable, match=match) as caught:
        transcode_instance(io.BytesIO(_raw(name)), target)
    assert target in caught.value.message


def test_sixteen_bit_grey_is_not_jpeg_baseline() -> None:
    _refused(
        "CT_small.dcm",
        JPEG_BASELINE,
        f"from {EXPLICIT_VR_LE} to {JPEG_BASELINE}: the target cannot encode MONOCHROME2 images"
        " with 1 samples, pixel representation 1, 16 bits allocated and 16 stored",
    )


@pytest.mark.parametrize("target", [HTJ2K_LOSSLESS, JPEG_XL_LOSSLESS, JPEG_LOSSLESS_SV1])
def test_missing_encoder_is_not_acceptable(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame_codecs, "_imagecodecs_has", lambda codec: False)
    _refused("MR_small_jpeg_ls_lossless.dcm", target, "no encoder is available")


def test_colour_deeper_than_8_bits_never_goes_to_jpeg() -> None:
    _refused("SC_rgb_rle_16bit.dcm", JPEG_BASELINE, "non-monochrome")


@pytest.mark.parametrize("target", [RLE_LOSSLESS, JPEG_2000_LOSSLESS])
def test_one_bit_pixels_only_convert_between_native_syntaxes(target: str) -> None:
    _refused("liver_1frame.dcm", target, "1-bit")
    header = _header("liver_1frame.dcm")
    assert can_transcode(EXPLICIT_VR_LE, IMPLICIT_VR_LE, header)
    out = _read(transcode_instance(io.BytesIO(_raw("liver_expb_1frame.dcm")), EXPLICIT_VR_LE))
    np.testing.assert_array_equal(
        out.pixel_array, pydicom.dcmread(_path("liver_1frame.dcm")).pixel_array
    )


def test_float_pixels_only_convert_between_native_syntaxes() -> None:
    ds = pydicom.Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 2, 2, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.FloatPixelData = np.arange(4, dtype="<f4").tobytes()
    assert not can_transcode(EXPLICIT_VR_LE, RLE_LOSSLESS, ds)
    assert can_transcode(EXPLICIT_VR_LE, IMPLICIT_VR_LE, ds)


def test_subsampled_native_colour_is_upsampled_before_compression() -> None:
    name = "SC_ybr_full_422_uncompressed.dcm"
    out = _read(transcode_instance(io.BytesIO(_raw(name)), RLE_LOSSLESS))
    assert out.PhotometricInterpretation == "YBR_FULL"
    np.testing.assert_array_equal(out.pixel_array, pydicom.dcmread(_path(name)).pixel_array)


def test_ycbcr_is_not_sent_to_lossless_jpeg() -> None:
    _refused("SC_ybr_full_422_uncompressed.dcm", JPEG_LOSSLESS_SV1, "YBR_FULL would be misread")


def test_big_endian_is_not_a_target() -> None:
    _refused("CT_small.dcm", EXPLICIT_VR_BE, "no encoder")


def test_small_images_are_not_sent_to_openjpeg() -> None:
    _refused("SC_rgb_small_odd.dcm", JPEG_2000_LOSSLESS, "32 pixels")


def test_jpeg_ls_target_follows_encoder_availability() -> None:
    header = _header("CT_small.dcm")
    available = get_encoder(JPEG_LS_LOSSLESS).is_available
    assert can_transcode(EXPLICIT_VR_LE, JPEG_LS_LOSSLESS, header) == available


def test_unknown_source_syntax_is_not_acceptable() -> None:
    data = bytearray(_raw("SC_rgb_jpeg_dcmtk.dcm"))
    position = data.index(JPEG_BASELINE.encode())
    mpeg2 = b"1.2.840.10008.1.2.4.100"  # same padded length as the JPEG baseline UID
    data[position : position + 24] = mpeg2 + b"\0"
    header = pydicom.dcmread(io.BytesIO(bytes(data)))
    assert not can_transcode(mpeg2.decode(), EXPLICIT_VR_LE, header)
    with pytest.raises(NotAcceptable, match="no decoder"):
        transcode_instance(io.BytesIO(bytes(data)), EXPLICIT_VR_LE)


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"])
def test_undecodable_pixel_data_is_not_acceptable(name: str) -> None:
    with pytest.raises(NotAcceptable, match="could not be decoded"):
        transcode_instance(io.BytesIO(_raw(name)), EXPLICIT_VR_LE)


@pytest.mark.parametrize(
    ("name", "target"),
    [
        (name, target)
        for name in ["CT_small.dcm", "SC_rgb_rle_16bit.dcm", "rtdose.dcm", "examples_palette.dcm"]
        for target in [RLE_LOSSLESS, JPEG_2000_LOSSLESS, JPEG_2000, JPEG_BASELINE, IMPLICIT_VR_LE]
    ],
)
def test_can_transcode_predicts_transcode(name: str, target: str) -> None:
    header = _header(name)
    expected = can_transcode(header.file_meta.TransferSyntaxUID, target, header)
    try:
        transcode_instance(io.BytesIO(_raw(name)), target)
    except NotAcceptable:
        assert not expected
    else:
        assert expected


# --- frames ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "examples_ybr_color.dcm",
        "SC_rgb_rle_2frame.dcm",
        "SC_rgb_rle_16bit_2frame.dcm",
        "rtdose_rle.dcm",
        "rtdose.dcm",
        "rtdose_expb.dcm",
        "MR_small_jp2klossless.dcm",
        "examples_jpeg2k.dcm",
        "JPGExtended.dcm",
    ],
)
def test_decode_frame_matches_pydicom_pixel_array(name: str) -> None:
    data = _raw(name)
    parsed = read_instance(io.BytesIO(data))
    expected = _frames(pydicom.dcmread(_path(name)))
    assert len(parsed.frames) == len(expected)
    for index, spans in enumerate(parsed.frames):
        encoded = b"".join(data[s.offset : s.offset + s.length] for s in spans)
        decoded = decode_frame(encoded, parsed.dataset, parsed.transfer_syntax, index + 1)
        assert decoded == _le_bytes(expected[index]), f"frame {index + 1}"


def test_decode_frame_does_not_load_the_pixel_data() -> None:
    data = _raw("examples_ybr_color.dcm")
    parsed = read_instance(io.BytesIO(data))
    span = parsed.frames[4][0]
    decode_frame(
        data[span.offset : span.offset + span.length], parsed.dataset, parsed.transfer_syntax, 5
    )
    assert parsed.dataset.get_item(0x7FE00010, keep_deferred=True).value is None


@pytest.mark.parametrize("number", [0, 31, -1])
def test_decode_frame_out_of_range(number: int) -> None:
    parsed = read_instance(io.BytesIO(_raw("examples_ybr_color.dcm")))
    with pytest.raises(InvalidArgument, match="out of range"):
        decode_frame(b"", parsed.dataset, parsed.transfer_syntax, number)


@pytest.mark.parametrize(
    "name", ["examples_ybr_color.dcm", "SC_rgb_rle_2frame.dcm", "rtdose.dcm", "rtdose_expb.dcm"]
)
def test_frames_as_stored(name: str) -> None:
    ds = pydicom.dcmread(_path(name))
    count = int(ds.get("NumberOfFrames") or 1)
    wanted = [count, 1]
    frames = frames_from_instance(io.BytesIO(_raw(name)), wanted, None)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        stored = list(generate_frames(ds.PixelData, number_of_frames=count))
    else:
        size = len(ds.PixelData) // count
        stored = [ds.PixelData[i * size : (i + 1) * size] for i in range(count)]
    assert frames == [stored[count - 1], stored[0]]


@pytest.mark.parametrize(
    "name",
    [
        "examples_ybr_color.dcm",
        "SC_rgb_rle_2frame.dcm",
        "rtdose_expb.dcm",
        "image_dfl.dcm",
        "SC_rgb_small_odd_big_endian.dcm",
        "liver_expb_1frame.dcm",
    ],
)
def test_frames_decoded_to_explicit_le(name: str) -> None:
    ds = pydicom.dcmread(_path(name))
    expected = _frames(ds)
    numbers = list(range(1, len(expected) + 1))
    frames = frames_from_instance(io.BytesIO(_raw(name)), numbers, EXPLICIT_VR_LE)
    transcoded = _read(transcode_instance(io.BytesIO(_raw(name)), EXPLICIT_VR_LE)).PixelData
    assert b"".join(frames) == transcoded[: sum(len(frame) for frame in frames)]
    if ds.BitsAllocated > 1:
        assert frames == [_le_bytes(frame) for frame in expected]


def test_one_bit_frames_off_byte_boundaries_are_extracted() -> None:
    ds = pydicom.dcmread(_path("liver_1frame.dcm"))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 3, 3, 2
    bits = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0, 0, 0, 1], dtype=np.uint8)
    ds.PixelData = np.packbits(bits, bitorder="little").tobytes() + b"\0"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    second = frames_from_instance(io.BytesIO(buffer.getvalue()), [2], None)[0]
    assert second == np.packbits(bits[9:], bitorder="little").tobytes()
    np.testing.assert_array_equal(
        np.unpackbits(np.frombuffer(second, np.uint8), bitorder="little")[:9],
        ds.pixel_array[1].ravel(),
    )


def test_frames_encoded_to_another_syntax_decode_back() -> None:
    name = "SC_rgb_rle_2frame.dcm"
    frames = frames_from_instance(io.BytesIO(_raw(name)), [2], JPEG_2000_LOSSLESS)
    ds = pydicom.dcmread(_path(name))
    options = as_pixel_options(ds, number_of_frames=1)
    decoded, _ = get_decoder(JPEG_2000_LOSSLESS).as_array(encapsulate(frames), **options)
    np.testing.assert_array_equal(decoded, ds.pixel_array[1])


def test_frames_out_of_range_and_without_pixels() -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        frames_from_instance(io.BytesIO(_raw("rtdose.dcm")), [1, 16], None)
    with pytest.raises(InvalidArgument, match="out of range"):
        frames_from_instance(io.BytesIO(_raw("rtdose.dcm")), [0], EXPLICIT_VR_LE)
    with pytest.raises(InvalidArgument, match="no pixel data"):
        frames_from_instance(io.BytesIO(_raw("rtplan.dcm")), [1], None)


def _header_without_pixel_element(name: str) -> pydicom.Dataset:
    """Only the image pixel attributes, as a caller may rebuild them from stored metadata."""
    full = pydicom.dcmread(_path(name), stop_before_pixels=True)
    header = pydicom.Dataset()
    for keyword in (
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
    ):
        if keyword in full:
            setattr(header, keyword, full.data_element(keyword).value)  # type: ignore[union-attr]
    header.file_meta = pydicom.dataset.FileMetaDataset()
    header.file_meta.TransferSyntaxUID = full.file_meta.TransferSyntaxUID
    return header


@pytest.mark.parametrize(
    ("name", "target", "expected"),
    [
        ("CT_small.dcm", RLE_LOSSLESS, True),
        ("CT_small.dcm", JPEG_BASELINE, False),
        ("liver_1frame.dcm", RLE_LOSSLESS, False),
        ("liver_1frame.dcm", IMPLICIT_VR_LE, True),
        ("SC_ybr_full_422_uncompressed.dcm", RLE_LOSSLESS, True),
        ("SC_ybr_full_422_uncompressed.dcm", JPEG_LOSSLESS_SV1, False),
        ("examples_ybr_color.dcm", JPEG_BASELINE, True),
        ("CT_small.dcm", HTJ2K_LOSSLESS, True),
        ("examples_ybr_color.dcm", RLE_LOSSLESS, True),
    ],
)
def test_can_transcode_from_pixel_attributes_alone(name: str, target: str, expected: bool) -> None:
    header = _header_without_pixel_element(name)
    assert can_transcode(header.file_meta.TransferSyntaxUID, target, header) == expected


def test_decode_frame_from_pixel_attributes_alone() -> None:
    name = "examples_ybr_color.dcm"
    data = _raw(name)
    spans = read_instance(io.BytesIO(data)).frames[7]
    encoded = b"".join(data[s.offset : s.offset + s.length] for s in spans)
    header = _header_without_pixel_element(name)
    decoded = decode_frame(encoded, header, JPEG_BASELINE, 8)
    assert decoded == _le_bytes(pydicom.dcmread(_path(name)).pixel_array[7])
