"""Export objects per mimeType: names, counts, content types and bytes of each format."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames

from shared.dicom import codecs, render
from shared.domain.records import InstanceRecord
from shared.errors import InvalidArgument, NotAcceptable
from shared.service import retrieve
from shared.service import store as store_service
from shared.service.context import Services
from shared.service.export_media import (
    ExportFile,
    ExportFormat,
    export_files,
    parse_export_mime_type,
)
from tests.conftest import STORE
from tests.dicom_factory import Spec, make_dataset, to_bytes
from tests.testdata import bundled_bytes

EXPLICIT = "1.2.840.10008.1.2.1"
BASELINE = "1.2.840.10008.1.2.4.50"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
AS_STORED = ExportFormat("application/dicom", None, ".dcm")
OCTET_NATIVE = ExportFormat("application/octet-stream", EXPLICIT, "")
OCTET_STORED = ExportFormat("application/octet-stream", None, "")
JPEG = ExportFormat("image/jpeg", BASELINE, ".jpg")
PNG = ExportFormat("image/png", None, ".png")


# --- parse_export_mime_type ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, AS_STORED),
        ("", AS_STORED),
        ("   ", AS_STORED),
        ("application/dicom", AS_STORED),
        ("application/dicom; transfer-syntax=*", AS_STORED),
        (
            "application/dicom; transfer-syntax=1.2.840.10008.1.2",
            ("application/dicom", "1.2.840.10008.1.2", ".dcm"),
        ),
        *(
            (f"application/dicom; transfer-syntax={uid}", ("application/dicom", uid, ".dcm"))
            for uid in (
                EXPLICIT,
                "1.2.840.10008.1.2.1.99",
                BASELINE,
                "1.2.840.10008.1.2.4.51",
                "1.2.840.10008.1.2.4.57",
                "1.2.840.10008.1.2.4.70",
                "1.2.840.10008.1.2.4.80",
                "1.2.840.10008.1.2.4.81",
                J2K_LOSSLESS,
                "1.2.840.10008.1.2.4.91",
                "1.2.840.10008.1.2.4.110",
                "1.2.840.10008.1.2.4.111",
                "1.2.840.10008.1.2.4.112",
                "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.202",
                "1.2.840.10008.1.2.4.203",
                RLE,
                "1.2.840.10008.1.2.8.1",
            )
        ),
        ("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1", OCTET_NATIVE),
        ("application/octet-stream; transfer-syntax=*", OCTET_STORED),
        ("image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50", JPEG),
        ("image/jpeg", JPEG),
        ("image/png", PNG),
        # case, whitespace and quoting
        (
            '  Application/DICOM ;  Transfer-Syntax = "1.2.840.10008.1.2.4.90" ',
            ("application/dicom", J2K_LOSSLESS, ".dcm"),
        ),
        ('APPLICATION/OCTET-STREAM;TRANSFER-SYNTAX="*"', OCTET_STORED),
        ("Image/PNG;", PNG),
        ("image/jpeg;transfer-syntax= 1.2.840.10008.1.2.4.50", JPEG),
    ],
)
def test_supported_mime_types(
    value: str | None, expected: ExportFormat | tuple[str, str, str]
) -> None:
    if isinstance(expected, tuple):
        expected = ExportFormat(*expected)
    assert parse_export_mime_type(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.2",  # big endian: retired
        "application/dicom; transfer-syntax=1.2.3.4",
        "application/dicom; transfer-syntax=",
        "application/dicom; charset=utf-8",
        "application/octet-stream",
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.50",
        "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.51",
        "image/jpeg; transfer-syntax=*",
        "image/png; transfer-syntax=*",
        "image/jp2",
        "image/gif",
        "multipart/related; type=application/dicom",
        "text/plain",
        "dicom",
        'application/dicom; transfer-syntax="unterminated',
    ],
)
def test_unsupported_mime_types_are_refused_with_the_supported_list(value: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_export_mime_type(value)
    message = caught.value.message
    assert repr(value) in message
    for supported in ("application/dicom", "application/octet-stream", "image/jpeg", "image/png"):
        assert supported in message
    assert J2K_LOSSLESS in message and "transfer-syntax=*" in message


def test_a_long_refused_value_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_export_mime_type("image/" + "x" * 5000)
    assert len(caught.value.message) < 2000


# --- helpers -------------------------------------------------------------------------------


def _stored(services: Services, data: bytes) -> InstanceRecord:
    store = services.index.get_store(STORE)
    spooled, size, crc = store_service.spool_with_checksum(services, io.BytesIO(data))
    with spooled:
        outcome = store_service.store_one(
            services, store, spooled, size, crc, expected_study=None, storage_class="STANDARD"
        )
    assert outcome.stored, outcome.failure_detail
    return services.index.get_instance(
        store.store_id, outcome.study_uid, outcome.series_uid, outcome.sop_uid
    )


def _base(record: InstanceRecord) -> str:
    return f"{record.study_uid}/{record.series_uid}/{record.sop_uid}"


def _read(file: ExportFile) -> bytes:
    if isinstance(file.data, bytes):
        return file.data
    with file.data as stream:
        return stream.read()


def _files(services: Services, record: InstanceRecord, fmt: ExportFormat) -> list[ExportFile]:
    return list(export_files(services, record, fmt))


def _export_one(
    services: Services, data: bytes, fmt: ExportFormat
) -> tuple[InstanceRecord, ExportFile]:
    """Store `data` and export it, expecting exactly one object."""
    record = _stored(services, data)
    (file,) = _files(services, record, fmt)
    return record, file


def _grey(rows: int = 16, columns: int = 16, frames: int = 1, bits: int = 16) -> bytes:
    """A synthetic greyscale CT: signed 16-bit, or unsigned 8-bit without a window."""
    ds = make_dataset(Spec(rows=rows, columns=columns, frames=frames))
    if bits == 8:
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        del ds.WindowCenter, ds.WindowWidth, ds.RescaleIntercept, ds.RescaleSlope
        count = rows * columns * frames
        ds.PixelData = (np.arange(count, dtype=np.uint32) * 7 % 256).astype(np.uint8).tobytes()
    return to_bytes(ds)


def _pixels(data: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(data)).pixel_array


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- application/dicom ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb_rle_2frame.dcm", "rtplan.dcm"])
def test_dicom_as_stored_is_one_streamed_byte_identical_object(
    services: Services, name: str
) -> None:
    data = bundled_bytes(name)
    record, file = _export_one(services, data, AS_STORED)
    assert file.relative_name == f"{_base(record)}.dcm"
    assert file.content_type == f"application/dicom; transfer-syntax={record.transfer_syntax}"
    assert not isinstance(file.data, bytes), "as stored is streamed, not held in memory"
    assert _read(file) == data


def test_dicom_as_stored_stream_refuses_a_blob_of_another_size(services: Services) -> None:
    record = _stored(services, bundled_bytes("CT_small.dcm"))
    record.size -= 1  # what a corrupt index row would say
    (file,) = _files(services, record, AS_STORED)
    with pytest.raises(retrieve.BlobSizeMismatch):
        _read(file)


def test_dicom_in_its_own_syntax_is_streamed_as_stored(services: Services) -> None:
    data = _grey()
    _record, file = _export_one(services, data, ExportFormat("application/dicom", EXPLICIT, ".dcm"))
    assert not isinstance(file.data, bytes)
    assert _read(file) == data


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("grey16", J2K_LOSSLESS),
        ("grey16", RLE),
        ("grey16x3", RLE),
        ("MR_small_RLE.dcm", EXPLICIT),
        ("JPEG2000.dcm", EXPLICIT),
        ("SC_rgb_rle_2frame.dcm", "1.2.840.10008.1.2"),
    ],
)
def test_dicom_transcoded_has_the_target_syntax_and_the_same_pixels(
    services: Services, source: str, target: str
) -> None:
    if source.startswith("grey16"):
        # 32x32: openjpeg needs 32 pixels a side for its 6 resolution levels
        data = _grey(rows=32, columns=32, frames=3 if source.endswith("x3") else 1)
    else:
        data = bundled_bytes(source)
    record, file = _export_one(services, data, ExportFormat("application/dicom", target, ".dcm"))
    assert file.relative_name == f"{_base(record)}.dcm"
    assert file.content_type == f"application/dicom; transfer-syntax={target}"
    out = pydicom.dcmread(io.BytesIO(_read(file)))
    assert out.file_meta.TransferSyntaxUID == target
    assert out.SOPInstanceUID == record.sop_uid
    np.testing.assert_array_equal(out.pixel_array, _pixels(data))


def test_dicom_jpeg_baseline_is_lossy_but_close(services: Services) -> None:
    data = bundled_bytes("SC_rgb_rle.dcm")
    _record, file = _export_one(services, data, ExportFormat("application/dicom", BASELINE, ".dcm"))
    out = pydicom.dcmread(io.BytesIO(_read(file)))
    assert out.file_meta.TransferSyntaxUID == BASELINE
    expected = _pixels(data).astype(int)
    decoded = out.pixel_array.astype(int)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).mean() < 8


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("SC_rgb_rle_16bit.dcm", BASELINE),  # Google: no JPEG for colour above 8 bits
        ("CT_small.dcm", "1.2.840.10008.1.2.4.111"),  # JPEG XL repacking needs stored JPEG
    ],
)
def test_dicom_untranscodable_is_refused_before_anything_is_yielded(
    services: Services, name: str, target: str
) -> None:
    record = _stored(services, bundled_bytes(name))
    with pytest.raises(NotAcceptable) as caught:
        export_files(services, record, ExportFormat("application/dicom", target, ".dcm"))
    message = caught.value.message
    assert record.sop_uid in message
    assert record.transfer_syntax in message and target in message


# --- application/octet-stream --------------------------------------------------------------


def test_octet_stream_native_has_one_object_per_frame(services: Services) -> None:
    data = _grey(frames=3)
    record = _stored(services, data)
    files = _files(services, record, OCTET_NATIVE)
    assert [f.relative_name for f in files] == [f"{_base(record)}/{n}" for n in (1, 2, 3)]
    assert {f.content_type for f in files} == {
        f"application/octet-stream; transfer-syntax={EXPLICIT}"
    }
    expected = _pixels(data)
    for file, frame in zip(files, expected, strict=True):
        assert _read(file) == frame.tobytes()


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "JPEG2000.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm"]
)
def test_octet_stream_native_equals_wado_frames_and_decoded_pixels(
    services: Services, name: str
) -> None:
    data = bundled_bytes(name)
    record, file = _export_one(services, data, OCTET_NATIVE)
    assert file.relative_name == _base(record)
    _, (wado,) = retrieve.frames_as(services, record, [1], "application/octet-stream", EXPLICIT)
    assert _read(file) == wado
    expected = _pixels(data)
    assert _read(file) == expected.astype(expected.dtype.newbyteorder("<")).tobytes()


def test_octet_stream_as_stored_is_each_stored_frame(services: Services) -> None:
    data = bundled_bytes("SC_rgb_rle_2frame.dcm")
    record = _stored(services, data)
    files = _files(services, record, OCTET_STORED)
    assert [f.relative_name for f in files] == [f"{_base(record)}/1", f"{_base(record)}/2"]
    assert {f.content_type for f in files} == {f"application/octet-stream; transfer-syntax={RLE}"}
    stored = list(generate_frames(pydicom.dcmread(io.BytesIO(data)).PixelData, number_of_frames=2))
    assert [_read(f) for f in files] == stored


def test_octet_stream_native_refuses_what_cannot_be_decoded(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _stored(services, bundled_bytes("JPEG2000.dcm"))
    monkeypatch.setattr("shared.dicom.frame_codecs.decoder_available", lambda _ts: False)
    with pytest.raises(NotAcceptable) as caught:
        export_files(services, record, OCTET_NATIVE)
    assert record.sop_uid in caught.value.message and EXPLICIT in caught.value.message


# --- image/png -----------------------------------------------------------------------------


def test_png_keeps_16_bit_signed_values_offset_binary(services: Services) -> None:
    data = _grey(rows=20, columns=12, frames=3)
    record = _stored(services, data)
    files = _files(services, record, PNG)
    assert [f.relative_name for f in files] == [f"{_base(record)}/{n}.png" for n in (1, 2, 3)]
    assert {f.content_type for f in files} == {"image/png"}
    for file, frame in zip(files, _pixels(data), strict=True):
        image = _image(_read(file))
        assert image.size == (12, 20) and image.mode.startswith("I")
        np.testing.assert_array_equal(np.asarray(image).astype(int) - 2**15, frame)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_palette.dcm"]
)
def test_png_decodes_to_the_stored_values(services: Services, name: str) -> None:
    data = bundled_bytes(name)
    record, file = _export_one(services, data, PNG)
    assert file.relative_name == f"{_base(record)}.png"
    ds = pydicom.dcmread(io.BytesIO(data))
    expected = ds.pixel_array.astype(int)
    if ds.PixelRepresentation == 1:
        expected += 2 ** (ds.BitsStored - 1)
    np.testing.assert_array_equal(np.asarray(_image(_read(file))).astype(int), expected)


def test_png_of_16_bit_colour_is_the_rendered_image(services: Services) -> None:
    data = bundled_bytes("SC_rgb_rle_16bit.dcm")
    _record, file = _export_one(services, data, PNG)
    image = _image(_read(file))
    assert (image.mode, image.size) == ("RGB", (100, 100))
    dataset = pydicom.dcmread(io.BytesIO(data))
    assert _read(file) == render.render_frame(dataset, 1, "image/png")


# --- image/jpeg ----------------------------------------------------------------------------


def _enhanced_grey() -> bytes:
    """Three CT frames, each with its own window in the per-frame functional groups."""
    ds = make_dataset(Spec(rows=24, columns=40, frames=3))
    del ds.WindowCenter, ds.WindowWidth
    groups = []
    for center in (0, 300, 1000):
        window = pydicom.Dataset()
        window.WindowCenter, window.WindowWidth = center, 400
        group = pydicom.Dataset()
        group.FrameVOILUTSequence = [window]
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = groups
    return to_bytes(ds)


@pytest.mark.parametrize(
    "name",
    [
        "grey16x2",
        "enhanced",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "rtdose.dcm",
        "examples_palette.dcm",
    ],
)
def test_jpeg_that_raw_values_cannot_give_is_wado_rendered(services: Services, name: str) -> None:
    if name == "grey16x2":
        data = _grey(rows=24, columns=40, frames=2)
    else:
        data = _enhanced_grey() if name == "enhanced" else bundled_bytes(name)
    record = _stored(services, data)
    files = _files(services, record, JPEG)
    dataset = pydicom.dcmread(io.BytesIO(data))
    count = int(dataset.get("NumberOfFrames") or 1)
    names = [f"{_base(record)}/{n}.jpg" for n in range(1, count + 1)] if count > 1 else None
    assert [f.relative_name for f in files] == (names or [f"{_base(record)}.jpg"])
    assert {f.content_type for f in files} == {"image/jpeg"}
    for number, file in enumerate(files, start=1):
        image = _image(_read(file))
        assert (image.format, image.size) == ("JPEG", (dataset.Columns, dataset.Rows))
        assert _read(file) == render.render_frame(dataset, number, "image/jpeg"), number


def test_jpeg_of_stored_baseline_is_the_stored_codestream(services: Services) -> None:
    data = bundled_bytes("SC_rgb_jpeg_dcmtk.dcm")
    record, file = _export_one(services, data, JPEG)
    assert file.relative_name == f"{_base(record)}.jpg"
    (stored,) = generate_frames(pydicom.dcmread(io.BytesIO(data)).PixelData, number_of_frames=1)
    assert _read(file) == stored
    assert _image(stored).size == (100, 100)


@pytest.mark.parametrize(
    "name", ["SC_rgb_rle_2frame.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_jpeg_decodes_to_an_image_of_the_right_size(services: Services, name: str) -> None:
    data = bundled_bytes(name)
    record = _stored(services, data)
    files = _files(services, record, JPEG)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert len(files) == record.number_of_frames
    for file in files:
        image = _image(_read(file))
        assert image.format == "JPEG" and image.size == (ds.Columns, ds.Rows)


def test_jpeg_of_plain_8_bit_grey_keeps_its_values(services: Services) -> None:
    data = _grey(rows=32, columns=32, bits=8)
    _record, file = _export_one(services, data, JPEG)
    decoded = np.asarray(_image(_read(file))).astype(int)
    assert np.abs(decoded - _pixels(data).astype(int)).mean() < 8  # not stretched or windowed


def test_jpeg_of_windowed_or_inverted_8_bit_grey_is_rendered(services: Services) -> None:
    for change in ("window", "monochrome1"):
        ds = pydicom.dcmread(io.BytesIO(_grey(rows=32, columns=32, bits=8)))
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if change == "window":
            ds.WindowCenter, ds.WindowWidth = 60, 80
        else:
            ds.PhotometricInterpretation = "MONOCHROME1"
        _record, file = _export_one(services, to_bytes(ds), JPEG)
        assert _read(file) == render.render_frame(ds, 1, "image/jpeg"), change


# --- refusals and memory -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "reason"),
    [
        *(("rtplan.dcm", fmt, "has no pixel data") for fmt in (PNG, JPEG, OCTET_NATIVE)),
        ("rtplan.dcm", OCTET_STORED, "has no pixel data"),
        # 12-bit JPEG Extended: neither pylibjpeg nor Pillow decodes this bundled file.
        *(("JPEG-lossy.dcm", fmt, "1.2.840.10008.1.2.4.51") for fmt in (PNG, JPEG, OCTET_NATIVE)),
    ],
)
def test_pixel_formats_refuse_before_the_first_object(
    services: Services, name: str, fmt: ExportFormat, reason: str
) -> None:
    record = _stored(services, bundled_bytes(name))
    with pytest.raises(NotAcceptable) as caught:
        export_files(services, record, fmt)
    assert reason in caught.value.message
    if name == "rtplan.dcm":
        assert record.sop_uid in caught.value.message


def test_a_frame_that_cannot_be_rendered_fails_before_the_first_object(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _stored(services, _grey(frames=2))

    def refuse(*_args: object, **_kwargs: object) -> bytes:
        raise NotAcceptable("pixel data in transfer syntax X cannot be rendered")

    monkeypatch.setattr(render, "render_frame", refuse)
    with pytest.raises(NotAcceptable):
        export_files(services, record, JPEG)


def test_frames_of_native_instances_are_read_by_their_spans(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _grey(rows=64, columns=64, frames=4)
    record = _stored(services, data)
    assert len(record.frames) == 4
    read: list[int] = []
    read_range = services.blobs.read_range

    def counted(key: str, offset: int, length: int) -> bytes:
        read.append(length)
        return read_range(key, offset, length)

    def whole(*_args: object) -> object:
        raise AssertionError("the whole instance was read")

    monkeypatch.setattr(services.blobs, "read_range", counted)
    monkeypatch.setattr(retrieve, "load_dataset", whole)
    monkeypatch.setattr(codecs, "frames_from_instance", whole)
    frame = 64 * 64 * 2
    for fmt in (OCTET_NATIVE, OCTET_STORED, PNG, JPEG):
        read.clear()
        files = export_files(services, record, fmt)
        assert read.count(frame) == 1, "only the first frame is read before iterating"
        assert len(list(files)) == 4
        assert read.count(frame) == 4
        # JPEG renders, so it also reads the header (and the pixel data tag after it) once.
        assert read[:-4] == ([record.header_length + 4] if fmt == JPEG else [])
