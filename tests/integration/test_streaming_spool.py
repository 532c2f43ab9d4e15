"""Retrieves in a lossy syntax encode frame by frame into a temporary file and stream it back,
byte-identical to the whole-instance transcode; the file goes however the stream ends."""

from __future__ import annotations

import io
import os
from collections.abc import Generator

import pydicom
import pytest
from flask.testing import FlaskClient
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from shared.dicom import codecs, streaming_native, streaming_spool
from shared.errors import NotAcceptable
from shared.service import retrieve
from shared.service.context import Services
from tests.integration.test_streaming_encode import FILES, streamed_targets
from tests.integration.test_streaming_native import (
    IMAGES,
    Image,
    _bundled,
    _instance,
    _stored,
    _truncate,
    _url,
    whole_transcode,
)

TARGETS = sorted(streaming_spool.TARGETS)


@pytest.mark.local_only  # the blob store is read the same way in both backends
@pytest.mark.parametrize("name", FILES)
def test_a_bundled_file_streams_exactly_what_the_whole_transcode_writes(
    client: FlaskClient, services: Services, name: str
) -> None:
    streamed_targets(client, services, _bundled(name), TARGETS)


_SYNTHETIC = ["16-bit signed, 3 frames", "8-bit, odd length", "8-bit RGB", "32-bit"]


@pytest.mark.local_only
@pytest.mark.parametrize(
    ("image", "syntax"),
    [
        *((image, syntax) for image in _SYNTHETIC for syntax in sorted(streaming_native.SOURCES)),
        *((image, codecs.RLE_LOSSLESS) for image in _SYNTHETIC if IMAGES[image].bits <= 16),
        ("8-bit RGB", codecs.JPEG_BASELINE),
        ("16-bit signed, 3 frames", codecs.JPEG_2000),
    ],
)
def test_a_synthetic_instance_streams_in_every_lossy_target_that_takes_it(
    client: FlaskClient, services: Services, image: str, syntax: str
) -> None:
    native_syntax = syntax if syntax in streaming_native.SOURCES else codecs.EXPLICIT_VR_LE
    data = _instance(IMAGES[image], native_syntax)
    if syntax not in streaming_native.SOURCES:
        data = codecs.transcode_instance(io.BytesIO(data), syntax)
    streamed = streamed_targets(client, services, data, TARGETS)
    if IMAGES[image].bits <= 16 and IMAGES[image].rows >= 32 and syntax != codecs.JPEG_2000:
        assert codecs.JPEG_2000 in streamed
    if IMAGES[image].bits == 8 and syntax != codecs.JPEG_BASELINE:
        assert codecs.JPEG_BASELINE in streamed


@pytest.mark.local_only
def test_an_extended_offset_table_is_written_as_the_whole_transcode_writes_it(
    client: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past 4 GiB of frames the Basic Offset Table cannot hold the offsets: pretend 100 bytes.
    monkeypatch.setattr(codecs, "MAX_BASIC_OFFSET", 100)
    data = _instance(IMAGES["8-bit, odd length"], ImplicitVRLittleEndian)
    assert codecs.JPEG_2000 in streamed_targets(client, services, data, [codecs.JPEG_2000])
    whole = whole_transcode(data, codecs.JPEG_2000)
    assert isinstance(whole, bytes)
    assert "ExtendedOffsetTable" in pydicom.dcmread(io.BytesIO(whole))


def test_the_lossy_marks_are_those_of_the_whole_transcode(
    client: FlaskClient, services: Services
) -> None:
    data = _instance(IMAGES["16-bit signed, 3 frames"], ExplicitVRBigEndian)
    sent = client.get(
        _url(_stored(client, services, data)),
        headers={"Accept": f"application/dicom; transfer-syntax={codecs.JPEG_2000}"},
    )
    assert sent.status_code == 200
    whole = whole_transcode(data, codecs.JPEG_2000)
    assert isinstance(whole, bytes)
    assert sent.data == whole
    marks = pydicom.dcmread(io.BytesIO(sent.data))
    assert marks.LossyImageCompression == "01"
    assert marks.LossyImageCompressionMethod == "ISO_15444_1"
    ratio = marks["LossyImageCompressionRatio"]
    assert ratio.VR == "DS" and len(str(ratio.value)) <= 16
    # Items are padded to even lengths; the ratio counts the codestreams unpadded.
    encoded = sum(len(frame) for frame in _encoded_frames(marks))
    native_size = IMAGES["16-bit signed, 3 frames"].size
    assert float(ratio.value) == pytest.approx(native_size / encoded, rel=3 / encoded)


def _encoded_frames(dataset: pydicom.Dataset) -> list[bytes]:
    from pydicom.encaps import generate_frames

    return list(generate_frames(dataset.PixelData, number_of_frames=dataset.NumberOfFrames))


def _open_spools(services: Services) -> list[str]:
    """Files of this process that are open in the temporary directory."""
    spool_dir = os.path.realpath(services.tmp_dir) + os.sep
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed since listed
        if path.startswith(spool_dir):
            found.append(path)
    return found


def _spooled_record_stream(
    client: FlaskClient, services: Services, image: Image = IMAGES["16-bit signed, 3 frames"]
) -> tuple[bytes, list[bytes]]:
    """The whole transcode of a synthetic instance to JPEG 2000, and the stream's header."""
    data = _instance(image, ImplicitVRLittleEndian)
    record = _stored(client, services, data)
    stream = retrieve.native_stream(services, record, codecs.JPEG_2000)
    assert stream is not None
    assert not _open_spools(services)  # nothing is spooled before the first next()
    first = next(stream)
    assert len(_open_spools(services)) == 1
    whole = whole_transcode(data, codecs.JPEG_2000)
    assert isinstance(whole, bytes) and whole.startswith(first)
    rest = []
    if image.frames > 1:
        rest = list(stream)
        assert not _open_spools(services)
        assert first + b"".join(rest) == whole
    else:
        assert isinstance(stream, Generator)
        stream.close()  # as the server does when the client goes away
        assert not _open_spools(services)
    assert not os.listdir(services.tmp_dir)
    return whole, [first, *rest]


@pytest.mark.local_only  # /proc/self/fd sees the spool of this process only
def test_the_spool_is_gone_once_the_stream_has_ended(
    client: FlaskClient, services: Services
) -> None:
    _spooled_record_stream(client, services)


@pytest.mark.local_only
def test_the_spool_is_gone_once_a_stream_is_closed_early(
    client: FlaskClient, services: Services
) -> None:
    _spooled_record_stream(client, services, Image(64, 64))


@pytest.mark.local_only
def test_a_frame_that_fails_while_spooling_raises_before_any_byte_and_leaves_no_spool(
    client: FlaskClient, services: Services
) -> None:
    data = _instance(IMAGES["16-bit over a chunk"], ExplicitVRBigEndian)
    record = _stored(client, services, data)
    pixel_start = record.header_length + streaming_native.PIXEL_ELEMENT_HEADER_LENGTH
    _truncate(services, record, pixel_start + IMAGES["16-bit over a chunk"].size // 2 + 100)
    stream = retrieve.native_stream(services, record, codecs.JPEG_2000)
    assert stream is not None  # frame 1 is whole
    with pytest.raises(NotAcceptable, match="frame 2 decodes to"):
        next(stream)
    assert not _open_spools(services)
    assert not os.listdir(services.tmp_dir)


@pytest.mark.local_only
def test_a_client_that_goes_away_mid_response_leaves_no_spool(
    client: FlaskClient, services: Services
) -> None:
    data = _instance(IMAGES["16-bit signed, 3 frames"], ImplicitVRLittleEndian)
    url = _url(_stored(client, services, data))
    accept = f"application/dicom; transfer-syntax={codecs.JPEG_2000}"
    response = client.get(url, headers={"Accept": accept}, buffered=False)
    assert response.status_code == 200
    body = iter(response.response)
    assert next(body)
    assert len(_open_spools(services)) == 1
    response.close()
    assert not _open_spools(services)
