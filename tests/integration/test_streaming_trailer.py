"""Instances with elements after the pixel data stream them last, re-encoded byte for byte as
the whole-instance transcode writes them; trailers it would reorder, or too large, go whole."""

from __future__ import annotations

import io
import struct
from collections.abc import Generator

import pydicom
import pytest
from flask.testing import FlaskClient

from shared.dicom import (
    codecs,
    streaming_encode,
    streaming_native,
    streaming_spool,
    streaming_trailer,
)
from shared.service import retrieve
from shared.service.context import Services
from tests.dicom_factory import to_bytes
from tests.integration.test_streaming_encode import streamed_targets
from tests.integration.test_streaming_native import IMAGES, _instance, _stored, whole_transcode
from tests.integration.test_streaming_spool import _open_spools

EVERY_TARGET = sorted(streaming_native.TARGETS | streaming_encode.TARGETS | streaming_spool.TARGETS)


def _with_trailer(image: str, syntax: str, padding: int = 6) -> bytes:
    """A synthetic instance in syntax with a private block and trailing padding after its
    pixel data (text in Latin-1, binary words that big endian stores swapped)."""
    native_syntax = syntax if syntax in streaming_native.SOURCES else codecs.EXPLICIT_VR_LE
    dataset = pydicom.dcmread(io.BytesIO(_instance(IMAGES[image], native_syntax)))
    dataset.SpecificCharacterSet = "ISO_IR 100"
    block = dataset.private_block(0x7FE1, "STORE TEST", create=True)
    block.add_new(0x01, "LO", "Größe")
    block.add_new(0x02, "OW", b"\x01\x02\x03\x04")
    block.add_new(0x03, "US", 513)
    dataset.DataSetTrailingPadding = b"\0" * padding
    data = to_bytes(dataset)
    if syntax not in streaming_native.SOURCES:
        data = codecs.transcode_instance(io.BytesIO(data), syntax)
    assert pydicom.dcmread(io.BytesIO(data)).DataSetTrailingPadding == b"\0" * padding
    return data


@pytest.mark.local_only  # the blob store is read the same way in both backends
@pytest.mark.parametrize(
    "syntax", [*sorted(streaming_native.SOURCES), codecs.RLE_LOSSLESS, codecs.JPEG_2000_LOSSLESS]
)
def test_a_trailer_follows_the_streamed_pixels_in_every_target(
    client: FlaskClient, services: Services, syntax: str
) -> None:
    data = _with_trailer("16-bit signed, 3 frames", syntax)
    assert _stored(client, services, data).trailer_offset
    targets = EVERY_TARGET
    if syntax not in streaming_native.SOURCES:  # decoded frames stream as explicit VR only
        targets = [target for target in targets if target != codecs.IMPLICIT_VR_LE]
    streamed = streamed_targets(client, services, data, targets)
    # A native target, a lossless and a lossy encapsulated one at least, from every source.
    assert {codecs.EXPLICIT_VR_LE, codecs.RLE_LOSSLESS, codecs.JPEG_2000} - {syntax} <= set(
        streamed
    ), streamed


@pytest.mark.local_only
def test_a_trailer_larger_than_the_limit_is_transcoded_whole(
    client: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _with_trailer("8-bit, odd length", codecs.IMPLICIT_VR_LE, padding=64)
    record = _stored(client, services, data)
    assert retrieve.native_stream(services, record, codecs.EXPLICIT_VR_LE) is not None
    monkeypatch.setattr(streaming_trailer, "MAX_SIZE", record.size - record.trailer_offset - 1)
    assert retrieve.native_stream(services, record, codecs.EXPLICIT_VR_LE) is None
    sent = b"".join(retrieve.instance_chunks(services, record, codecs.EXPLICIT_VR_LE))
    assert sent == whole_transcode(data, codecs.EXPLICIT_VR_LE)


@pytest.mark.local_only
@pytest.mark.parametrize("change", ["shorter", "longer"])
def test_a_blob_that_differs_from_the_index_past_the_pixels_is_not_streamed(
    client: FlaskClient, services: Services, change: str
) -> None:
    data = _with_trailer("8-bit, odd length", codecs.IMPLICIT_VR_LE, padding=64)
    record = _stored(client, services, data)
    assert retrieve.native_stream(services, record, codecs.EXPLICIT_VR_LE) is not None
    changed = data[:-1] if change == "shorter" else data + b"\0\0"
    services.blobs.put(record.blob_key, io.BytesIO(changed))
    assert retrieve.native_stream(services, record, codecs.EXPLICIT_VR_LE) is None


def _explicit_le_element(tag: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


@pytest.mark.local_only
@pytest.mark.parametrize(
    ("what", "appended"),
    [
        ("an element the whole transcode moves before the pixel data", (0x00204000, b"late")),
        ("a trailer in implicit VR after explicit VR elements", (0xFFFCFFFC, b"\0\0")),
    ],
)
def test_a_trailer_the_stream_cannot_reproduce_is_transcoded_whole(
    client: FlaskClient, services: Services, what: str, appended: tuple[int, bytes]
) -> None:
    data = _instance(IMAGES["8-bit RGB"], codecs.EXPLICIT_VR_LE)
    tag, value = appended
    vr = b"LT" if tag == 0x00204000 else b"OB"
    trailer = _explicit_le_element(tag, vr, value)
    if "implicit" in what:
        trailer = struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value
    data += trailer
    record = _stored(client, services, data)
    assert record.trailer_offset == len(data) - len(trailer), what
    assert retrieve.native_stream(services, record, codecs.IMPLICIT_VR_LE) is None, what
    whole = whole_transcode(data, codecs.IMPLICIT_VR_LE)
    chunks = retrieve.instance_chunks(services, record, codecs.IMPLICIT_VR_LE)
    if isinstance(whole, bytes):
        assert b"".join(chunks) == whole
    else:
        with pytest.raises(whole):
            b"".join(chunks)


@pytest.mark.local_only  # /proc/self/fd sees the spool of this process only
def test_closing_a_lossy_stream_with_a_trailer_removes_its_spool(
    client: FlaskClient, services: Services
) -> None:
    data = _with_trailer("16-bit signed, 3 frames", codecs.EXPLICIT_VR_BE)
    stream = retrieve.native_stream(services, _stored(client, services, data), codecs.JPEG_2000)
    assert isinstance(stream, Generator)
    assert next(stream)
    assert len(_open_spools(services)) == 1
    stream.close()
    assert not _open_spools(services)
