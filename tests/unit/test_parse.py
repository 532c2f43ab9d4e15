"""Unit tests for shared.dicom.parse: validation, key attributes and frame locations."""

from __future__ import annotations

import io
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.filereader import data_element_generator

from shared.dicom.parse import ParsedInstance, read_instance
from shared.errors import InvalidDicom
from tests.testdata import bundled_bytes, bundled_path

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


_path = bundled_path
_raw = bundled_bytes


def _parse(data: bytes) -> ParsedInstance:
    return read_instance(io.BytesIO(data))


def _span_bytes(data: bytes, parsed: ParsedInstance, index: int) -> bytes:
    return b"".join(data[s.offset : s.offset + s.length] for s in parsed.frames[index])


def _save(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


# --- hand-made files ---------------------------------------------------------------------


def _element(tag: int, vr: str, value: bytes) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in LONG_VRS:
        return struct.pack("<HH2s2xL", group, elem, vr.encode(), len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode()
    return raw + b"\0" if len(raw) % 2 else raw


def _part10(body: bytes, transfer_syntax: str = EXPLICIT) -> bytes:
    meta = (
        _element(0x00020001, "OB", b"\0\1")
        + _element(0x00020002, "UI", _uid("1.2.840.10008.5.1.4.1.1.7"))
        + _element(0x00020003, "UI", _uid("1.2.3.4"))
        + _element(0x00020010, "UI", _uid(transfer_syntax))
    )
    group_length = _element(0x00020000, "UL", struct.pack("<L", len(meta)))
    return b"\0" * 128 + b"DICM" + group_length + meta + body


def _uids(**overrides: str) -> bytes:
    values = {
        0x00080016: "1.2.840.10008.5.1.4.1.1.7",
        0x00080018: "1.2.3.4",
        0x0020000D: "1.2.3",
        0x0020000E: "1.2.3.1",
    }
    keywords = {
        "SOPClassUID": 0x00080016,
        "SOPInstanceUID": 0x00080018,
        "StudyInstanceUID": 0x0020000D,
        "SeriesInstanceUID": 0x0020000E,
    }
    for keyword, value in overrides.items():
        values[keywords[keyword]] = value
    return b"".join(_element(tag, "UI", _uid(value)) for tag, value in sorted(values.items()))


# --- valid files -------------------------------------------------------------------------


def test_reads_key_attributes_and_a_native_frame() -> None:
    data = _raw("CT_small.dcm")
    parsed = _parse(data)
    reference = pydicom.dcmread(_path("CT_small.dcm"))
    assert parsed.transfer_syntax == EXPLICIT
    assert parsed.study_uid == reference.StudyInstanceUID
    assert parsed.series_uid == reference.SeriesInstanceUID
    assert parsed.sop_uid == reference.SOPInstanceUID
    assert parsed.sop_class_uid == reference.SOPClassUID
    assert parsed.number_of_frames == 1  # absent NumberOfFrames defaults to one frame
    assert len(parsed.frames) == 1 and len(parsed.frames[0]) == 1
    assert _span_bytes(data, parsed, 0) == reference.PixelData
    assert parsed.dataset.file_meta.TransferSyntaxUID == EXPLICIT
    assert parsed.dataset.PatientName == reference.PatientName


@pytest.mark.parametrize(
    "name", ["rtdose.dcm", "rtdose_expb.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"]
)
def test_native_spans_are_consecutive_slices_of_the_pixel_data(name: str) -> None:
    data = _raw(name)
    parsed = _parse(data)
    reference = pydicom.dcmread(_path(name))
    assert parsed.number_of_frames == int(reference.get("NumberOfFrames") or 1)
    joined = b"".join(_span_bytes(data, parsed, i) for i in range(parsed.number_of_frames))
    assert joined == reference.PixelData[: len(joined)]
    sizes = {span.length for frame in parsed.frames for span in frame}
    assert len(sizes) == 1


@pytest.mark.parametrize(
    "name",
    [
        "examples_ybr_color.dcm",
        "SC_rgb_rle_2frame.dcm",
        "rtdose_rle.dcm",
        "examples_jpeg2k.dcm",
        "MR_small_jp2klossless.dcm",
        "JPEG2000-embedded-sequence-delimiter.dcm",
    ],
)
def test_encapsulated_frames_match_pydicom(name: str) -> None:
    data = _raw(name)
    parsed = _parse(data)
    reference = pydicom.dcmread(_path(name))
    expected = list(generate_frames(reference.PixelData, number_of_frames=parsed.number_of_frames))
    assert len(parsed.frames) == len(expected)
    for index, frame in enumerate(expected):
        assert _span_bytes(data, parsed, index) == frame


def test_multi_fragment_frame_has_several_spans() -> None:
    parsed = _parse(_raw("examples_jpeg2k.dcm"))
    assert len(parsed.frames) == 1 and len(parsed.frames[0]) > 1


def _multiframe_jpeg() -> tuple[pydicom.Dataset, list[bytes]]:
    ds = pydicom.dcmread(_path("examples_ybr_color.dcm"))
    frames = list(generate_frames(ds.PixelData, number_of_frames=30))[:4]
    ds.NumberOfFrames = 4
    return ds, frames


@pytest.mark.parametrize("has_bot", [True, False])
def test_fragmented_frames_use_offset_table_or_eoi_markers(has_bot: bool) -> None:
    ds, frames = _multiframe_jpeg()
    ds.PixelData = encapsulate(frames, fragments_per_frame=3, has_bot=has_bot)
    data = _save(ds)
    parsed = _parse(data)
    assert [len(frame) for frame in parsed.frames] == [3, 3, 3, 3]
    for index, frame in enumerate(frames):
        assert _span_bytes(data, parsed, index) == frame


def test_extended_offset_table_locates_frames() -> None:
    ds, frames = _multiframe_jpeg()
    ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(
        frames
    )
    data = _save(ds)
    parsed = _parse(data)
    assert len(parsed.frames) == 4
    for index, frame in enumerate(frames):
        assert _span_bytes(data, parsed, index) == frame


def test_unsplittable_fragments_give_no_frames() -> None:
    ds = pydicom.dcmread(_path("SC_rgb_rle_2frame.dcm"))
    frames = list(generate_frames(ds.PixelData, number_of_frames=2))
    halves = [frames[0][:100], frames[0][100:], frames[1]]
    ds.PixelData = encapsulate(halves, has_bot=False)  # 3 fragments, 2 frames, no markers
    parsed = _parse(_save(ds))
    assert parsed.number_of_frames == 2
    assert parsed.frames == []


def test_deflated_syntax_has_frames_but_no_spans() -> None:
    parsed = _parse(_raw("image_dfl.dcm"))
    assert parsed.transfer_syntax == "1.2.840.10008.1.2.1.99"
    assert parsed.number_of_frames == 1
    assert parsed.frames == []
    reference = pydicom.dcmread(_path("image_dfl.dcm"))
    assert parsed.dataset.PixelData == reference.PixelData


def test_instance_without_pixel_data() -> None:
    parsed = _parse(_raw("rtplan.dcm"))
    assert parsed.transfer_syntax == IMPLICIT
    assert parsed.number_of_frames == 0
    assert parsed.frames == []


def test_pixel_data_is_deferred_and_readable_later() -> None:
    data = _raw("MR_small.dcm")
    parsed = _parse(data)
    raw = parsed.dataset.get_item(0x7FE00010, keep_deferred=True)
    assert isinstance(raw, RawDataElement) and raw.value is None
    assert parsed.dataset.PixelData == pydicom.dcmread(_path("MR_small.dcm")).PixelData


def test_large_native_pixel_data_is_not_loaded(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, 40
    ds.PixelData = np.zeros(512 * 512 * 40, dtype=np.int16).tobytes()  # 20 MiB
    path = tmp_path / "big.dcm"
    ds.save_as(path)
    del ds
    tracemalloc.start()
    try:
        with path.open("rb") as fp:
            parsed = read_instance(fp)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsed.number_of_frames == 40 and len(parsed.frames) == 40
    assert parsed.frames[1][0].offset - parsed.frames[0][0].offset == 512 * 512 * 2
    assert peak < 4 * 1024 * 1024


def test_elements_after_pixel_data_are_kept() -> None:
    parsed = _parse(_raw("MR_small_padded.dcm"))
    assert 0xFFFCFFFC in parsed.dataset
    assert len(parsed.frames) == 1


def test_float_pixel_data_frames_and_trailing_elements() -> None:
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    del ds.PixelData
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.BitsAllocated = 4, 4, 2, 32
    ds.FloatPixelData = np.arange(32, dtype="<f4").tobytes()
    ds.DigitalSignaturesSequence = pydicom.Sequence([pydicom.Dataset()])  # after the pixels
    data = _save(ds)
    parsed = _parse(data)
    assert parsed.number_of_frames == 2
    assert _span_bytes(data, parsed, 1) == np.arange(16, 32, dtype="<f4").tobytes()
    assert "DigitalSignaturesSequence" in parsed.dataset


def test_explicit_syntax_with_implicit_encoding_is_read_like_pydicom() -> None:
    data = _raw("SC_rgb_jpeg.dcm")
    parsed = _parse(data)
    reference = pydicom.dcmread(_path("SC_rgb_jpeg.dcm"))
    assert parsed.transfer_syntax == JPEG_BASELINE
    assert _span_bytes(data, parsed, 0) == next(generate_frames(reference.PixelData))


def test_one_bit_byte_aligned_frames_are_located() -> None:
    data = _raw("liver_1frame.dcm")
    parsed = _parse(data)
    assert [[span.length for span in frame] for frame in parsed.frames] == [[512 * 512 // 8]]


def test_one_bit_frames_off_byte_boundaries_are_not_located() -> None:
    ds = pydicom.dcmread(_path("liver_1frame.dcm"))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 3, 3, 2
    ds.PixelData = b"\xff\x01\x00\x00"  # 18 bits, padded
    parsed = _parse(_save(ds))
    assert parsed.number_of_frames == 2
    assert parsed.frames == []


def test_odd_sized_big_endian_ow_frames_are_not_located() -> None:
    # OW big endian swaps byte pairs, so a 27-byte frame is not a contiguous byte range.
    parsed = _parse(_raw("SC_rgb_small_odd_big_endian.dcm"))
    assert parsed.number_of_frames == 1
    assert parsed.frames == []


def test_hand_made_minimal_file_is_accepted() -> None:
    parsed = _parse(_part10(_uids()))
    assert (parsed.study_uid, parsed.series_uid, parsed.sop_uid) == ("1.2.3", "1.2.3.1", "1.2.3.4")
    assert parsed.number_of_frames == 0


# --- invalid files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00" * 64, "DICM"),
        (bytes(range(256)) * 8, "DICM"),
        (b"\0" * 128 + b"DICM", "TransferSyntaxUID"),
        (b"\0" * 128 + b"DICM" + bytes(range(200)), "TransferSyntaxUID"),
    ],
)
def test_garbage_is_rejected(data: bytes, message: str) -> None:
    with pytest.raises(InvalidDicom, match=message):
        _parse(data)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_meta.dcm", "DICM"),
        ("rtstruct.dcm", "DICM"),
        ("meta_missing_tsyntax.dcm", "TransferSyntaxUID"),
        ("MR_truncated.dcm", "7FE0,0010"),
        ("rtplan_truncated.dcm", "truncated"),
        ("badVR.dcm", "NumberOfFrames"),
        ("JPEGLSNearLossless_08.dcm", "StudyInstanceUID"),
    ],
)
def test_bundled_invalid_files_are_rejected(name: str, message: str) -> None:
    with pytest.raises(InvalidDicom, match=message):
        _parse(_raw(name))


@pytest.mark.parametrize(
    "keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"]
)
def test_missing_required_uid_is_named(keyword: str) -> None:
    ds = pydicom.dcmread(_path("CT_small.dcm"))
    delattr(ds, keyword)
    with pytest.raises(InvalidDicom, match=f"missing required attribute {keyword}"):
        _parse(_save(ds))


@pytest.mark.parametrize("value", ["1.2.abc", "1.02.3", "1." + "2" * 70, "1..2"])
@pytest.mark.parametrize(
    "keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"]
)
def test_invalid_required_uid_is_named(keyword: str, value: str) -> None:
    with pytest.raises(InvalidDicom, match=f"invalid {keyword}"):
        _parse(_part10(_uids(**{keyword: value})))


def test_multi_valued_uid_is_rejected() -> None:
    with pytest.raises(InvalidDicom, match="invalid StudyInstanceUID"):
        _parse(_part10(_uids(StudyInstanceUID="1.2\\1.3")))


def test_invalid_transfer_syntax_uid_is_rejected() -> None:
    with pytest.raises(InvalidDicom, match="TransferSyntaxUID"):
        _parse(_part10(_uids(), transfer_syntax="not.a.uid"))


def test_odd_element_length_is_rejected() -> None:
    body = _uids() + _element(0x00100020, "LO", b"abc")
    with pytest.raises(InvalidDicom, match="odd length 3"):
        _parse(_part10(body))


def test_element_longer_than_the_file_is_rejected() -> None:
    body = _uids() + struct.pack("<HH2sH", 0x0010, 0x0020, b"LO", 1000) + b"ab"
    with pytest.raises(InvalidDicom, match="truncated"):
        _parse(_part10(body))


def test_too_deeply_nested_sequences_are_rejected() -> None:
    opening = struct.pack("<HH2s2xL", 0x0040, 0xA730, b"SQ", 0xFFFFFFFF) + struct.pack(
        "<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closing = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    with pytest.raises(InvalidDicom, match="nested"):
        _parse(_part10(_uids() + opening * 100 + closing * 100))


def _fragment_offsets(data: bytes) -> list[int]:
    """Offsets of the item tags inside the (last) encapsulated pixel data element."""
    start = data.rindex(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff") + 12
    offsets = []
    while data[start : start + 4] == b"\xfe\xff\x00\xe0":
        offsets.append(start)
        start += 8 + struct.unpack("<L", data[start + 4 : start + 8])[0]
    return offsets


def test_corrupt_fragment_item_tag_is_rejected() -> None:
    data = bytearray(_raw("examples_ybr_color.dcm"))
    second_fragment = _fragment_offsets(bytes(data))[2]
    data[second_fragment : second_fragment + 4] = b"\x01\x02\x03\x04"
    with pytest.raises(InvalidDicom, match="encapsulated"):
        _parse(bytes(data))


def test_fragment_longer_than_the_file_is_rejected() -> None:
    data = bytearray(_raw("SC_rgb_rle_2frame.dcm"))
    last = _fragment_offsets(bytes(data))[-1]
    data[last + 4 : last + 8] = struct.pack("<L", 1 << 20)
    with pytest.raises(InvalidDicom, match="fragment"):
        _parse(bytes(data))


def test_truncated_deflated_data_set_is_rejected() -> None:
    data = _raw("image_dfl.dcm")
    with pytest.raises(InvalidDicom):
        _parse(data[: len(data) - 100])


def _top_level_boundaries(name: str) -> set[int]:
    """Byte offsets where a cut leaves a structurally complete file (element starts)."""
    meta = pydicom.filereader.read_file_meta_info(_path(name))
    start = 132 + 12 + int(meta.FileMetaInformationGroupLength)
    implicit = meta.TransferSyntaxUID == IMPLICIT
    data = _raw(name)
    boundaries = {len(data)}
    with open(_path(name), "rb") as fp:
        fp.seek(start)
        for element in data_element_generator(fp, implicit, True):
            assert isinstance(element, RawDataElement)
            header = 8 if implicit or element.VR not in LONG_VRS else 12
            boundaries.add(element.value_tell - header)
    return boundaries


def _cut_points(size: int, dense_until: int, step: int) -> list[int]:
    dense = range(dense_until)
    sparse = range(dense_until, size, step)
    return sorted({*dense, *sparse, *range(max(size - 24, 0), size)})


@pytest.mark.parametrize(
    ("name", "dense_until", "step"),
    [
        ("MR_small.dcm", 1600, 61),
        ("MR_small_implicit.dcm", 1600, 61),
        ("MR_small_RLE.dcm", 1600, 41),
        ("SC_rgb_rle_2frame.dcm", 2696, 1),
        ("rtplan.dcm", 2672, 1),
        ("test-SR.dcm", 6796, 1),
    ],
)
def test_truncation_anywhere_is_rejected(name: str, dense_until: int, step: int) -> None:
    data = _raw(name)
    boundaries = _top_level_boundaries(name)
    for cut in _cut_points(len(data), dense_until, step):
        try:
            _parse(data[:cut])
        except InvalidDicom:
            continue
        # Only a cut between two top-level elements leaves a well-formed (shorter) file.
        assert cut in boundaries, f"{name} cut at {cut} was accepted"


def test_truncated_deflated_file_is_rejected_everywhere() -> None:
    data = _raw("image_dfl.dcm")
    # The file ends with an 8-byte gzip-style trailer after the deflate stream, ignored.
    for cut in range(0, len(data) - 8, 7):
        with pytest.raises(InvalidDicom):
            _parse(data[:cut])


def test_file_meta_without_preamble_is_accepted() -> None:
    """dicomweb-client sends the file meta group without the preamble and DICM magic."""
    import io

    path = get_testdata_file("CT_small.dcm", download=False)
    assert path is not None
    with open(path, "rb") as handle:
        data = handle.read()[132:]
    parsed = read_instance(io.BytesIO(data))
    assert parsed.transfer_syntax == "1.2.840.10008.1.2.1"
    assert parsed.number_of_frames == 1
    assert parsed.frames[0][0].length == 128 * 128 * 2


def test_data_set_without_any_file_meta_is_refused() -> None:
    import io

    path = get_testdata_file("no_meta.dcm", download=False)
    assert path is not None
    with open(path, "rb") as handle, pytest.raises(InvalidDicom):
        read_instance(io.BytesIO(handle.read()))


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "MR_small_bigendian.dcm"]
)
def test_header_length_ends_where_pixel_data_starts(name: str) -> None:
    data = bundled_bytes(name)
    parsed = read_instance(io.BytesIO(data))
    header = pydicom.dcmread(io.BytesIO(data[: parsed.header_length]), force=True)
    assert "PixelData" not in header
    assert header.SOPInstanceUID == parsed.sop_uid
    assert data[parsed.header_length : parsed.header_length + 4] in (
        b"\xe0\x7f\x10\x00",
        b"\x7f\xe0\x00\x10",
    )


def test_header_length_is_the_whole_file_without_pixels() -> None:
    data = bundled_bytes("rtplan.dcm")
    assert read_instance(io.BytesIO(data)).header_length == len(data)
