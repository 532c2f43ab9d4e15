"""Unit tests of shared.dicom.json_stow: Part-10 instances from DICOM JSON and bulk parts."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
from typing import IO, Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames

from shared.dicom import json_stow
from shared.dicom.json_model import dataset_to_json, element_value_bytes
from shared.dicom.json_stow import PROCESSING_FAILURE, BuiltInstance, build_instances
from shared.dicom.multipart import iter_parts
from shared.dicom.parse import read_instance
from shared.errors import InvalidArgument
from tests.testdata import bundled_path

BOUNDARY = "DICOMwebBoundary"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_XL = "1.2.840.10008.1.2.4.112"
RLE = "1.2.840.10008.1.2.5"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.2"
SOP = "1.2.826.0.1.3680043.8.498.3"
JSON_TYPE = "application/dicom+json"
OCTET = "application/octet-stream"
JPEG_TYPE = f"image/jpeg; transfer-syntax={JPEG_BASELINE}"

# Google's template (seed 002), verbatim but for the placeholders, which the test fills in.
SEED_TEMPLATE = """[{
 "00020010":{"vr":"UI","Value":["1.2.840.10008.1.2.4.50"]},
 "00080005":{"vr":"CS","Value":["ISO_IR 192"]},
 "00080016":{"vr":"UI","Value":["SOP_CLASS_UID"]},
 "00080018":{"vr":"UI","Value":["SOP_INSTANCE_UID"]},
 "0020000D":{"vr":"UI","Value":["STUDY_INSTANCE_UID"]},
 "0020000E":{"vr":"UI","Value":["SERIES_INSTANCE_UID"]},
 "00280002":{"vr":"US","Value":[3]},
 "00280004":{"vr":"CS","Value":["YBR_FULL_422"]},
 "00280006":{"vr":"US","Value":[0]},
 "00280008":{"vr":"IS","Value":[1]},
 "00280010":{"vr":"US","Value":[Rows]},
 "00280011":{"vr":"US","Value":[Columns]},
 "00280100":{"vr":"US","Value":[8]},
 "00280101":{"vr":"US","Value":[8]},
 "00280102":{"vr":"US","Value":[7]},
 "00280103":{"vr":"US","Value":[0]},
 "7FE00010":{"vr":"OB","BulkDataURI":"jpeg-image"}
}]
"""
# The seed's three boundary files, byte for byte.
SEED_OPENING = b"--DICOMwebBoundary\r\nContent-Type: application/dicom+json\r\n\r\n"
SEED_MIDDLE = (
    b"\r\n--DICOMwebBoundary\r\nContent-Location: jpeg-image\r\n"
    b"Content-Type: image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50\r\n\r\n"
)
SEED_CLOSING = b"\r\n--DICOMwebBoundary--"

Headers = dict[str, str]


# --- helpers -----------------------------------------------------------------------------


def _multipart(parts: list[tuple[Headers, bytes]], boundary: str = BOUNDARY) -> bytes:
    """A multipart/related body written out by hand (not with multipart_chunks)."""
    out = b""
    for headers, body in parts:
        out += f"--{boundary}\r\n".encode()
        for name, value in headers.items():
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + body + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def _run(body: bytes, **kwargs: Any) -> list[BuiltInstance]:
    return build_instances(iter_parts(io.BytesIO(body), BOUNDARY), **kwargs)


def _store(
    metadata: Any,
    bulk: list[tuple[str, str, bytes]] | None = None,
    json_type: str = JSON_TYPE,
) -> list[BuiltInstance]:
    """Build from metadata (JSON-encoded unless bytes) and (location, type, body) parts."""
    raw = metadata if isinstance(metadata, bytes) else json.dumps(metadata).encode()
    parts: list[tuple[Headers, bytes]] = [({"Content-Type": json_type}, raw)]
    for location, content_type, body in bulk or []:
        parts.append(({"Content-Location": location, "Content-Type": content_type}, body))
    return _run(_multipart(parts))


def _one(metadata: Any, bulk: list[tuple[str, str, bytes]] | None = None) -> BuiltInstance:
    built = _store(metadata, bulk)
    assert len(built) == 1
    return built[0]


def _ok(metadata: Any, bulk: list[tuple[str, str, bytes]] | None = None) -> Dataset:
    built = _one(metadata, bulk)
    assert built.failure is None, built.failure
    assert built.failure_reason is None
    assert built.data is not None
    return pydicom.dcmread(io.BytesIO(built.data))


def _failure(metadata: Any, bulk: list[tuple[str, str, bytes]] | None = None) -> str:
    built = _one(metadata, bulk)
    assert built.data is None
    assert built.failure_reason == PROCESSING_FAILURE
    assert built.failure
    return built.failure


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _instance(
    extra: dict[str, Any] | None = None, *, sop: str = SOP, syntax: str = EXPLICIT
) -> dict[str, Any]:
    """A minimal valid instance without pixel data; extra maps tag keys to elements."""
    obj = {
        "00020010": _element("UI", syntax),
        "00080005": _element("CS", "ISO_IR 192"),
        "00080016": _element("UI", SECONDARY_CAPTURE),
        "00080018": _element("UI", sop),
        "0020000D": _element("UI", STUDY),
        "0020000E": _element("UI", SERIES),
    }
    obj.update(extra or {})
    return obj


def _image(
    extra: dict[str, Any] | None = None, *, syntax: str = EXPLICIT, frames: int | None = None
) -> dict[str, Any]:
    """A 2x2 8-bit greyscale image instance whose PixelData comes from the part "pixels"."""
    image = {
        "00280002": _element("US", 1),
        "00280004": _element("CS", "MONOCHROME2"),
        "00280010": _element("US", 2),
        "00280011": _element("US", 2),
        "00280100": _element("US", 8),
        "00280101": _element("US", 8),
        "00280102": _element("US", 7),
        "00280103": _element("US", 0),
        "7FE00010": {"vr": "OB", "BulkDataURI": "pixels"},
    }
    if frames is not None:
        image["00280008"] = _element("IS", frames)
    image.update(extra or {})
    return _instance(image, syntax=syntax)


def _jpeg_source() -> tuple[Dataset, bytes]:
    source = pydicom.dcmread(bundled_path("SC_rgb_jpeg_dcmtk.dcm"))
    return source, next(generate_frames(source.PixelData, number_of_frames=1))


def _seed_json(rows: int, columns: int) -> bytes:
    text = SEED_TEMPLATE
    for name, value in (
        ("SOP_CLASS_UID", SECONDARY_CAPTURE),
        ("SOP_INSTANCE_UID", SOP),
        ("STUDY_INSTANCE_UID", STUDY),
        ("SERIES_INSTANCE_UID", SERIES),
        ("Rows", str(rows)),
        ("Columns", str(columns)),
    ):
        text = text.replace(name, value)
    return text.encode("utf-8")


def _metadata_of(ds: Dataset) -> dict[str, Any]:
    """A file's DICOM JSON as a client sends it: PixelData by BulkDataURI, the rest inline."""
    meta = dataset_to_json(ds)
    meta.pop("FFFCFFFC", None)  # trailing padding is not an attribute
    meta["00080005"] = _element("CS", "ISO_IR 192")
    for key, element in meta.items():
        if "BulkDataURI" in element and key != "7FE00010":
            tag = int(key, 16)
            holder = ds.file_meta if tag >> 16 == 2 else ds
            del element["BulkDataURI"]
            element["InlineBinary"] = base64.b64encode(element_value_bytes(holder[tag])).decode()
    return meta


def _assert_same_attributes(source: Dataset, rebuilt: Dataset) -> None:
    skipped = {0x00080005, 0x7FE00010, 0xFFFCFFFC}
    for element in source:
        if element.tag not in skipped:
            assert rebuilt[element.tag].value == element.value, element.keyword


# --- Google's seed example ---------------------------------------------------------------


def test_seed_template_and_boundaries_work_verbatim() -> None:
    source, frame = _jpeg_source()
    body = SEED_OPENING + _seed_json(100, 100) + SEED_MIDDLE + frame + SEED_CLOSING
    built = _run(body)
    assert len(built) == 1
    instance = built[0]
    assert instance.failure is None
    assert (instance.sop_class_uid, instance.sop_uid) == (SECONDARY_CAPTURE, SOP)
    assert (instance.study_uid, instance.series_uid) == (STUDY, SERIES)
    assert instance.data is not None
    assert instance.data[:132] == b"\x00" * 128 + b"DICM"
    ds = pydicom.dcmread(io.BytesIO(instance.data))
    assert ds.file_meta.TransferSyntaxUID == JPEG_BASELINE
    assert ds.file_meta.MediaStorageSOPClassUID == SECONDARY_CAPTURE
    assert ds.file_meta.MediaStorageSOPInstanceUID == SOP
    assert ds.file_meta.ImplementationClassUID
    assert "TransferSyntaxUID" not in ds  # moved to the file meta, not left in the data set
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert ds["PixelData"].is_undefined_length
    assert next(generate_frames(ds.PixelData, number_of_frames=1)) == frame
    assert np.array_equal(ds.pixel_array, source.pixel_array)


def test_seed_instance_passes_ingest_parsing() -> None:
    _, frame = _jpeg_source()
    body = SEED_OPENING + _seed_json(100, 100) + SEED_MIDDLE + frame + SEED_CLOSING
    data = _run(body)[0].data
    assert data is not None
    parsed = read_instance(io.BytesIO(data))
    assert parsed.transfer_syntax == JPEG_BASELINE
    assert parsed.number_of_frames == 1
    assert len(parsed.frames) == 1
    span = parsed.frames[0][0]
    assert data[span.offset : span.offset + len(frame)] == frame


def test_image_part_without_transfer_syntax_uses_the_media_type_default() -> None:
    source, frame = _jpeg_source()
    metadata = json.loads(_seed_json(100, 100))
    ds = _ok(metadata, [("jpeg-image", "image/jpeg", frame)])
    assert np.array_equal(ds.pixel_array, source.pixel_array)


# --- round trips of bundled files --------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "CT_small.dcm",
        "SC_rgb_small_odd.dcm",
        "MR_small_implicit.dcm",
        # Multi-frame, implicit VR, nested sequences; one of its reference UIDs is malformed.
        pytest.param("rtdose.dcm", marks=pytest.mark.filterwarnings("ignore:Invalid value")),
    ],
)
def test_native_pixel_data_round_trips_through_octet_stream(name: str) -> None:
    source = pydicom.dcmread(bundled_path(name))
    metadata = _metadata_of(source)
    rebuilt = _ok([metadata], [("bulkdata/7FE00010", OCTET, source.PixelData)])
    assert rebuilt.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    assert np.array_equal(rebuilt.pixel_array, source.pixel_array)
    _assert_same_attributes(source, rebuilt)


def test_odd_length_native_pixel_data_is_padded() -> None:
    source = pydicom.dcmread(bundled_path("SC_rgb_small_odd.dcm"))  # 3x3 RGB: 27 bytes
    sent = source.PixelData[:27]
    rebuilt = _ok([_metadata_of(source)], [("bulkdata/7FE00010", OCTET, sent)])
    assert rebuilt.PixelData == sent + b"\x00"
    assert np.array_equal(rebuilt.pixel_array, source.pixel_array)


def test_implicit_vr_instance_is_written_implicit() -> None:
    source = pydicom.dcmread(bundled_path("MR_small.dcm"))
    metadata = _metadata_of(source)
    metadata["00020010"] = _element("UI", IMPLICIT)
    content_type = f"{OCTET}; transfer-syntax={IMPLICIT}"  # a native syntax is raw bytes too
    rebuilt = _ok([metadata], [("bulkdata/7FE00010", content_type, source.PixelData)])
    assert rebuilt.file_meta.TransferSyntaxUID == IMPLICIT
    assert rebuilt.original_encoding == (True, True)
    assert np.array_equal(rebuilt.pixel_array, source.pixel_array)
    _assert_same_attributes(source, rebuilt)


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("SC_rgb_rle.dcm", "image/dicom-rle"),
        ("MR_small_jpeg_ls_lossless.dcm", "image/jls"),
        ("MR_small_jp2klossless.dcm", "image/jp2"),
        ("JPEG2000.dcm", "image/jp2"),
        ("SC_rgb_jpeg_dcmtk.dcm", "image/jpeg"),
    ],
)
def test_compressed_frame_round_trips(name: str, media_type: str) -> None:
    source = pydicom.dcmread(bundled_path(name))
    syntax = source.file_meta.TransferSyntaxUID
    frame = next(generate_frames(source.PixelData, number_of_frames=1))
    content_type = f"{media_type}; transfer-syntax={syntax}"
    rebuilt = _ok([_metadata_of(source)], [("bulkdata/7FE00010", content_type, frame)])
    assert rebuilt.file_meta.TransferSyntaxUID == syntax
    assert rebuilt["PixelData"].VR == "OB"
    assert rebuilt["PixelData"].is_undefined_length
    assert np.array_equal(rebuilt.pixel_array, source.pixel_array)
    _assert_same_attributes(source, rebuilt)


def test_octet_stream_codestream_is_encapsulated_as_one_frame() -> None:
    source, frame = _jpeg_source()
    metadata = json.loads(_seed_json(100, 100))
    ds = _ok(metadata, [("jpeg-image", OCTET, frame)])
    assert ds["PixelData"].is_undefined_length
    assert np.array_equal(ds.pixel_array, source.pixel_array)


def test_octet_stream_encapsulated_value_is_kept_for_several_frames() -> None:
    source, frame = _jpeg_source()
    metadata = json.loads(_seed_json(100, 100))
    metadata[0]["00280008"] = _element("IS", 2)
    ds = _ok(metadata, [("jpeg-image", OCTET, encapsulate([frame, frame]))])
    assert ds.pixel_array.shape == (2, 100, 100, 3)
    assert np.array_equal(ds.pixel_array[1], source.pixel_array)


def test_jpeg_xl_parts_are_accepted_without_a_pydicom_codec() -> None:
    codestream = b"\xff\x0a" + b"\x00" * 31  # only encapsulated, never decoded here
    for content_type in (
        f"image/jxl; transfer-syntax={JPEG_XL}",
        f"{OCTET}; transfer-syntax={JPEG_XL}",
    ):
        built = _one([_image(syntax=JPEG_XL)], [("pixels", content_type, codestream)])
        assert built.failure is None
        assert built.data is not None
        parsed = read_instance(io.BytesIO(built.data))
        assert parsed.transfer_syntax == JPEG_XL
        span = parsed.frames[0][0]
        assert built.data[span.offset : span.offset + span.length] == codestream + b"\x00"


def test_video_codestream_may_hold_several_frames() -> None:
    mpeg4 = "1.2.840.10008.1.2.4.102"
    built = _one([_image(syntax=mpeg4, frames=30)], [("pixels", OCTET, b"\x00\x00\x01\xb3" * 8)])
    assert built.failure is None


# --- other elements ----------------------------------------------------------------------


def test_inline_binary_on_a_non_pixel_element() -> None:
    icc = bytes(range(7))
    metadata = _instance({"00282000": {"vr": "OB", "InlineBinary": base64.b64encode(icc).decode()}})
    ds = _ok([metadata])
    assert ds.ICCProfile == icc + b"\x00"  # odd OB values are padded with a NUL


def test_inline_binary_with_a_transfer_syntax_on_the_json_part() -> None:
    metadata = _instance({"00282000": {"vr": "OB", "InlineBinary": "AAEC"}})
    built = _store([metadata], json_type=f"{JSON_TYPE}; transfer-syntax={EXPLICIT}")
    assert built[0].failure is None


def test_octet_stream_bulk_on_a_non_pixel_element() -> None:
    metadata = _instance({"00282000": {"vr": "OB", "BulkDataURI": "icc"}})
    ds = _ok([metadata], [("icc", OCTET, b"ICC-profile")])
    assert ds.ICCProfile == b"ICC-profile\x00"


def test_bulk_inside_a_sequence_item() -> None:
    icon = {
        "00280002": _element("US", 1),
        "00280004": _element("CS", "MONOCHROME2"),
        "00280010": _element("US", 2),
        "00280011": _element("US", 2),
        "00280100": _element("US", 8),
        "00280101": _element("US", 8),
        "00280102": _element("US", 7),
        "00280103": _element("US", 0),
        "7FE00010": {"vr": "OB", "BulkDataURI": "icon"},
    }
    metadata = _instance({"00880200": {"vr": "SQ", "Value": [icon]}})
    ds = _ok([metadata], [("icon", OCTET, b"\x01\x02\x03\x04")])
    assert ds.IconImageSequence[0].PixelData == b"\x01\x02\x03\x04"


def test_file_meta_elements_are_moved_and_sop_references_made_consistent() -> None:
    metadata = _instance(
        {
            "00020002": _element("UI", "1.2.3"),
            "00020003": _element("UI", "1.2.3.4"),
            "00020016": _element("AE", "SENDER"),
        }
    )
    ds = _ok([metadata])
    assert ds.file_meta.MediaStorageSOPClassUID == SECONDARY_CAPTURE
    assert ds.file_meta.MediaStorageSOPInstanceUID == SOP
    assert ds.file_meta.SourceApplicationEntityTitle == "SENDER"
    assert not [element for element in ds if element.tag >> 16 == 2]


def test_utf8_text_round_trips() -> None:
    metadata = _instance({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]}})
    ds = _ok([metadata])
    assert str(ds.PatientName) == "Müller^Jürgen"


def test_metadata_with_utf8_bom_and_charset_parameter() -> None:
    raw = b"\xef\xbb\xbf" + json.dumps([_instance()]).encode()
    built = _store(raw, json_type=f"{JSON_TYPE}; charset=utf-8")
    assert built[0].failure is None


def test_lower_case_tag_keys_are_accepted() -> None:
    metadata = {key.lower(): value for key, value in _instance().items()}
    assert _one([metadata]).failure is None


def test_instances_keep_the_request_order() -> None:
    sops = [f"{SOP}.{n}" for n in range(1, 4)]
    built = _store([_instance(sop=sop) for sop in sops])
    assert [b.sop_uid for b in built] == sops
    assert all(b.failure is None for b in built)


def test_large_bulk_part_is_spooled_and_round_trips() -> None:
    rows, columns = 1024, 1280  # 2.5 MiB of 16-bit pixels, a part above the in-memory spool size
    pixels = np.arange(rows * columns, dtype="<u2").reshape(rows, columns)
    metadata = _image(
        {
            "00280010": _element("US", rows),
            "00280011": _element("US", columns),
            "00280100": _element("US", 16),
            "00280101": _element("US", 16),
            "00280102": _element("US", 15),
            "7FE00010": {"vr": "OW", "BulkDataURI": "pixels"},
        }
    )
    raw = pixels.tobytes()
    opened: list[IO[bytes]] = []

    def spool() -> IO[bytes]:
        opened.append(io.BytesIO())
        return opened[-1]

    body = _multipart(
        [
            ({"Content-Type": JSON_TYPE}, json.dumps([metadata]).encode()),
            ({"Content-Location": "pixels", "Content-Type": OCTET}, raw + raw),
        ]
    )
    built = _run(body, spool=spool)
    assert len(opened) == 1 and opened[0].closed  # every spool file is closed afterwards
    assert built[0].data is not None
    ds = pydicom.dcmread(io.BytesIO(built[0].data))
    assert ds.PixelData == raw + raw  # the bytes are kept as sent, even beyond one frame


def test_default_spool_handles_bodies_above_the_memory_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(json_stow, "SPOOL_MEMORY_BYTES", 16)
    source = pydicom.dcmread(bundled_path("MR_small.dcm"))
    rebuilt = _ok([_metadata_of(source)], [("bulkdata/7FE00010", OCTET, source.PixelData)])
    assert np.array_equal(rebuilt.pixel_array, source.pixel_array)


# --- several instances -------------------------------------------------------------------


def test_one_bad_instance_does_not_stop_the_others() -> None:
    _, frame = _jpeg_source()
    good = json.loads(_seed_json(100, 100))[0]
    bad = _instance({"00080005": _element("CS", "ISO_IR 100")}, sop=f"{SOP}.9")
    built = _store([bad, good], [("jpeg-image", JPEG_TYPE, frame)])
    assert [b.data is None for b in built] == [True, False]
    assert built[0].failure_reason == PROCESSING_FAILURE
    assert built[0].failure is not None and "ISO_IR 192" in built[0].failure
    assert (built[0].sop_uid, built[0].study_uid, built[0].series_uid) == (
        f"{SOP}.9",
        STUDY,
        SERIES,
    )
    assert built[0].sop_class_uid == SECONDARY_CAPTURE
    assert built[1].failure is None and built[1].sop_uid == SOP


def test_bulk_part_of_a_failed_instance_is_consumed() -> None:
    _, frame = _jpeg_source()
    bad = json.loads(_seed_json(100, 100))[0]
    del bad["00080016"]
    built = _store([bad, _instance(sop=f"{SOP}.2")], [("jpeg-image", JPEG_TYPE, frame)])
    assert built[0].failure is not None and "SOPClassUID" in built[0].failure
    assert built[1].failure is None


def test_failures_never_log_patient_data(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    metadata = _instance(
        {
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Secret^Patient"}]},
            "00280010": _element("US", "not a number"),
        }
    )
    failure = _failure([metadata])
    assert "cannot build" in failure
    assert "Secret" not in caplog.text
    assert SOP in caplog.text


# --- request-level errors ----------------------------------------------------------------


def _request_error(body: bytes) -> str:
    with pytest.raises(InvalidArgument) as info:
        _run(body)
    return info.value.message


def _json_part(raw: bytes, content_type: str = JSON_TYPE) -> tuple[Headers, bytes]:
    return ({"Content-Type": content_type}, raw)


def _valid_json() -> bytes:
    return json.dumps([_image()]).encode()


def _bulk(
    location: str = "pixels", content_type: str = OCTET, body: bytes = b"\0" * 4
) -> tuple[Headers, bytes]:
    return ({"Content-Location": location, "Content-Type": content_type}, body)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([], "no part"),
        ([({"Content-Type": "application/dicom"}, b"DICM")], "must be application/dicom+json"),
        ([({"Content-Type": "application/json"}, b"[]")], "must be application/dicom+json"),
        ([({}, b"[]")], "no Content-Type"),
        ([_json_part(b"[{}]", f"{JSON_TYPE}; charset=latin-1")], "must be UTF-8"),
        (
            [_json_part(b"[{}]", f"{JSON_TYPE}; transfer-syntax=1.2.840.10008.1.2.2")],
            "little endian",
        ),
        ([_json_part(b"[{}]", f"{JSON_TYPE}; transfer-syntax=abc")], "unsupported transfer-syntax"),
        ([_json_part(b"[{")], "malformed DICOM JSON metadata"),
        ([_json_part(b"")], "malformed DICOM JSON metadata"),
        ([_json_part(b'{"00080018": {"vr": "UI"}}')], "not a JSON object"),
        ([_json_part(b"[]")], "holds no instance"),
        ([_json_part(b"[1]")], "not a JSON number"),
        ([_json_part(b'[{"a": 1}, "x"]')], "item 2"),
        ([_json_part(b'["\xff"]')], "not valid UTF-8"),
        ([_json_part(b'[{"00080018": {"vr": "UI"}, "00080018": {"vr": "UI"}}]')], "duplicate key"),
        ([_json_part(b"[" * 100000 + b"]" * 100000)], "malformed DICOM JSON metadata"),
        ([_json_part(_valid_json()), ({"Content-Type": OCTET}, b"\0\0")], "no Content-Location"),
        ([_json_part(_valid_json()), _bulk(), _bulk()], "repeats Content-Location"),
        ([_json_part(_valid_json()), _bulk(), _bulk("other")], "not a BulkDataURI"),
        ([_json_part(_valid_json())], "has no part"),
        ([_json_part(_valid_json()), ({"Content-Location": "pixels"}, b"\0\0")], "no Content-Type"),
    ],
)
def test_request_level_errors(parts: list[tuple[Headers, bytes]], expected: str) -> None:
    assert expected in _request_error(_multipart(parts))


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain", "unsupported Content-Type"),
        ("image/png", "unsupported Content-Type"),
        ("application/dicom", "unsupported Content-Type"),
        ("image/jxl", "needs a transfer-syntax"),
        ("image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.80", "not accepted with image/jpeg"),
        (f"image/dicom-rle; transfer-syntax={JPEG_BASELINE}", "not accepted with image/dicom-rle"),
        ("image/jls; transfer-syntax=1.2.840.10008.1.2.4.90", "not accepted with image/jls"),
        ("image/jp2; transfer-syntax=1.2.840.10008.1.2.4.92", "not accepted with image/jp2"),
        ("image/jpx; transfer-syntax=1.2.840.10008.1.2.4.90", "not accepted with image/jpx"),
        ("image/jxl; transfer-syntax=1.2.840.10008.1.2.4.50", "not accepted with image/jxl"),
        (f"{OCTET}; transfer-syntax={JPEG_BASELINE}", "not accepted with application/octet-stream"),
        (f"{OCTET}; transfer-syntax=1.2.840.10008.1.2.2", "not accepted with application/octet"),
        ("image/jpeg; transfer-syntax=*", "not accepted with image/jpeg"),
    ],
)
def test_bulk_part_content_type_not_accepted(content_type: str, expected: str) -> None:
    parts = [_json_part(_valid_json()), _bulk(content_type=content_type)]
    assert expected in _request_error(_multipart(parts))


@pytest.mark.parametrize(
    "content_type",
    [
        OCTET,
        f"{OCTET}; transfer-syntax={EXPLICIT}",
        f"{OCTET}; transfer-syntax={IMPLICIT}",
        *(f"image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70)),
        f"image/dicom-rle; transfer-syntax={RLE}",
        *(f"image/jls; transfer-syntax=1.2.840.10008.1.2.4.{n}" for n in (80, 81)),
        *(f"image/jp2; transfer-syntax=1.2.840.10008.1.2.4.{n}" for n in (90, 91)),
        *(f"image/jpx; transfer-syntax=1.2.840.10008.1.2.4.{n}" for n in (92, 93)),
        *(f"image/jxl; transfer-syntax=1.2.840.10008.1.2.4.{n}" for n in (110, 111, 112)),
        *(f"{OCTET}; transfer-syntax=1.2.840.10008.1.2.4.{n}" for n in (110, 111, 112)),
        'IMAGE/JPEG; Transfer-Syntax="1.2.840.10008.1.2.4.50"',
    ],
)
def test_every_allowed_bulk_content_type_is_accepted(content_type: str) -> None:
    parts = [_json_part(_valid_json()), _bulk(content_type=content_type)]
    assert len(_run(_multipart(parts))) == 1  # any failure is per instance, not the request


def test_same_bulk_data_uri_twice_in_the_metadata() -> None:
    raw = json.dumps([_image(), _image()]).encode()
    message = _request_error(_multipart([_json_part(raw), _bulk()]))
    assert "used more than once" in message


def test_same_bulk_data_uri_twice_in_one_instance() -> None:
    metadata = _image({"00282000": {"vr": "OB", "BulkDataURI": "pixels"}})
    message = _request_error(_multipart([_json_part(json.dumps([metadata]).encode()), _bulk()]))
    assert "used more than once" in message


def test_bulk_data_uri_of_a_failing_instance_still_needs_its_part() -> None:
    metadata = _image({"00080005": _element("CS", "ISO_IR 100")})
    message = _request_error(_multipart([_json_part(json.dumps([metadata]).encode())]))
    assert "has no part" in message


def test_inline_binary_above_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_stow, "MAX_INLINE_BINARY_BYTES", 6)
    for size in (7, 64):
        value = base64.b64encode(b"\0" * size).decode()
        metadata = _instance({"00282000": {"vr": "OB", "InlineBinary": value}})
        message = _request_error(_multipart([_json_part(json.dumps([metadata]).encode())]))
        assert "exceeds 6 bytes" in message
    at_limit = base64.b64encode(b"\0" * 6).decode()
    metadata = _instance({"00282000": {"vr": "OB", "InlineBinary": at_limit}})
    assert _one([metadata]).failure is None


def test_default_inline_binary_limit_is_ten_mebibytes() -> None:
    assert json_stow.MAX_INLINE_BINARY_BYTES == 10 * 1024 * 1024


@pytest.mark.parametrize("value", ["not base64!", "AAE", "AA\nEC", 12, None])
def test_invalid_inline_binary(value: Any) -> None:
    metadata = _instance({"00282000": {"vr": "OB", "InlineBinary": value}})
    message = _request_error(_multipart([_json_part(json.dumps([metadata]).encode())]))
    assert "InlineBinary of attribute 00282000" in message


def test_metadata_part_above_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_stow, "MAX_METADATA_BYTES", 100)
    message = _request_error(_multipart([_json_part(_valid_json())]))
    assert "exceeds 100 bytes" in message


# --- per-instance errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "keyword"),
    [
        ("00080005", "SpecificCharacterSet"),
        ("00020010", "TransferSyntaxUID"),
        ("00080016", "SOPClassUID"),
        ("0020000D", "StudyInstanceUID"),
        ("0020000E", "SeriesInstanceUID"),
        ("00080018", "SOPInstanceUID"),
    ],
)
@pytest.mark.parametrize("how", ["absent", "no value", "empty string"])
def test_missing_required_attribute(key: str, keyword: str, how: str) -> None:
    metadata = _instance()
    if how == "absent":
        del metadata[key]
    elif how == "no value":
        metadata[key] = {"vr": metadata[key]["vr"]}
    else:
        metadata[key]["Value"] = [""]
    assert f"missing required attribute {keyword}" in _failure([metadata])


@pytest.mark.parametrize(
    "charset", [["ISO_IR 100"], ["ISO_IR 192", "ISO 2022 IR 87"], ["ISO_IR 6"]]
)
def test_specific_character_set_must_be_utf8(charset: list[str]) -> None:
    metadata = _instance({"00080005": {"vr": "CS", "Value": charset}})
    assert 'must be "ISO_IR 192"' in _failure([metadata])


@pytest.mark.parametrize(
    ("syntax", "expected"),
    [
        ("1.2.840.10008.1.2.2", "not accepted"),
        ("1.2.840.10008.1.2.1.99", "not accepted"),
        ("1.2.840.10008.1.2.4.95", "not accepted"),
        ("1.2.840.10008.1.2.01", "not a valid UID"),
        ("abc", "not a valid UID"),
        ("1.2.3.4", "not a known DICOM transfer syntax"),
        ("1.2.840.10008.5.1.4.1.1.7", "not a known DICOM transfer syntax"),
    ],
)
def test_refused_transfer_syntax(syntax: str, expected: str) -> None:
    assert expected in _failure([_instance(syntax=syntax)])


@pytest.mark.parametrize(
    ("key", "keyword", "value"),
    [
        ("00080016", "SOPClassUID", "1.2.840.10008.5.1.4.1.1.07"),
        ("00080018", "SOPInstanceUID", "1.2.abc"),
        ("0020000D", "StudyInstanceUID", "1." + "2" * 70),
        ("0020000E", "SeriesInstanceUID", "1..2"),
        ("00080018", "SOPInstanceUID", 12),
    ],
)
def test_invalid_uid(key: str, keyword: str, value: Any) -> None:
    metadata = _instance({key: _element("UI", value)})
    built = _one([metadata])
    assert built.failure is not None and f"invalid {keyword}" in built.failure
    assert "" in (built.sop_class_uid, built.sop_uid, built.study_uid, built.series_uid)


def test_invalid_uid_is_not_reported_back() -> None:
    built = _one([_instance(sop="1.2.abc")])
    assert built.sop_uid == ""
    assert built.study_uid == STUDY


def test_more_than_one_bulk_data_uri_in_an_instance() -> None:
    metadata = _image({"00282000": {"vr": "OB", "BulkDataURI": "icc"}})
    failure = _failure([metadata], [("pixels", OCTET, b"\0" * 4), ("icc", OCTET, b"\0\0")])
    assert "references 2 BulkDataURIs" in failure


@pytest.mark.parametrize("vr", ["OF", "US", "LO", "SQ"])
def test_bulk_data_uri_on_a_vr_other_than_ob_ow_un(vr: str) -> None:
    metadata = _instance({"00282000": {"vr": vr, "BulkDataURI": "value"}})
    failure = _failure([metadata], [("value", OCTET, b"\0\0")])
    assert "only for VR OB, OW or UN" in failure


def test_bulk_data_uri_on_un_is_accepted() -> None:
    metadata = _instance({"00291010": {"vr": "UN", "BulkDataURI": "value"}})
    assert _one([metadata], [("value", OCTET, b"\1\2")]).failure is None


def test_compressed_bulk_on_a_non_pixel_element() -> None:
    _, frame = _jpeg_source()
    metadata = _instance({"00282000": {"vr": "OB", "BulkDataURI": "icc"}}, syntax=JPEG_BASELINE)
    failure = _failure([metadata], [("icc", JPEG_TYPE, frame)])
    assert "allowed only for PixelData" in failure


def test_compressed_bulk_on_nested_pixel_data() -> None:
    _, frame = _jpeg_source()
    icon = {"7FE00010": {"vr": "OB", "BulkDataURI": "icon"}}
    metadata = _instance({"00880200": {"vr": "SQ", "Value": [icon]}}, syntax=JPEG_BASELINE)
    failure = _failure([metadata], [("icon", JPEG_TYPE, frame)])
    assert "allowed only for PixelData" in failure


@pytest.mark.parametrize(
    ("instance_syntax", "content_type"),
    [
        (JPEG_BASELINE, f"image/jpeg; transfer-syntax={JPEG_EXTENDED}"),
        (EXPLICIT, JPEG_TYPE),
        (RLE, "image/jls"),
        ("1.2.840.10008.1.2.4.110", f"image/jxl; transfer-syntax={JPEG_XL}"),
    ],
)
def test_compressed_part_syntax_must_match_the_instance(
    instance_syntax: str, content_type: str
) -> None:
    failure = _failure(
        [_image(syntax=instance_syntax)], [("pixels", content_type, b"\xff\xd8\xff\xd9")]
    )
    assert "but the instance's TransferSyntaxUID is" in failure


def test_compressed_part_with_several_frames() -> None:
    _, frame = _jpeg_source()
    metadata = json.loads(_seed_json(100, 100))
    metadata[0]["00280008"] = _element("IS", "3")
    failure = _failure(metadata, [("jpeg-image", JPEG_TYPE, frame)])
    assert "NumberOfFrames is 3" in failure


def test_inline_binary_on_pixel_data() -> None:
    metadata = _image({"7FE00010": {"vr": "OB", "InlineBinary": "AAECAw=="}})
    assert "cannot be InlineBinary" in _failure([metadata])


def test_inline_binary_on_nested_pixel_data_is_allowed() -> None:
    icon = {"7FE00010": {"vr": "OB", "InlineBinary": "AAECAw=="}}
    metadata = _instance({"00880200": {"vr": "SQ", "Value": [icon]}})
    assert _one([metadata]).failure is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"PatientName": {"vr": "PN"}}, "invalid attribute key"),
        ({"0010001": {"vr": "PN"}}, "invalid attribute key"),
        ({"zzzzzzzz": {"vr": "PN"}}, "invalid attribute key"),
        ({"00100010": "Doe^John"}, "must be a JSON object with a string vr"),
        ({"00100010": {"Value": ["x"]}}, "must be a JSON object with a string vr"),
        ({"0020000d": _element("UI", STUDY)}, "appears twice"),
        ({"00000000": _element("UL", 0)}, "command group"),
        ({"00081115": {"vr": "SQ", "Value": ["item"]}}, "every item must be a JSON object"),
        ({"00282000": {"vr": "OB", "BulkDataURI": ""}}, "non-empty string"),
        ({"00282000": {"vr": "OB", "BulkDataURI": 3}}, "non-empty string"),
        ({"00280010": _element("US", "two")}, "cannot build a DICOM instance"),
    ],
)
def test_malformed_dicom_json_fails_the_instance(extra: dict[str, Any], expected: str) -> None:
    assert expected in _failure([_instance(extra)])


def test_instance_rejected_by_part10_validation() -> None:
    metadata = _image(frames=0)
    failure = _failure([metadata], [("pixels", OCTET, b"\0" * 4)])
    assert "NumberOfFrames" in failure


def test_failure_items_keep_request_order_and_uids() -> None:
    instances = [_instance(sop=f"{SOP}.{n}") for n in range(1, 4)]
    instances[1]["00080005"] = _element("CS", "ISO_IR 100")
    built = _store(copy.deepcopy(instances))
    assert [b.failure is None for b in built] == [True, False, True]
    assert [b.sop_uid for b in built] == [f"{SOP}.{n}" for n in range(1, 4)]


def test_spool_factory_is_not_called_for_the_metadata() -> None:
    calls: list[int] = []

    def factory() -> IO[bytes]:
        calls.append(1)
        return io.BytesIO()

    _run(_multipart([_json_part(json.dumps([_instance()]).encode())]), spool=factory)
    assert calls == []
