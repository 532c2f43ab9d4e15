"""Native to native retrieves (implicit/explicit VR, big/little endian) stream in bounded chunks,
byte-identical to the whole-instance transcode, for every bundled and synthetic instance."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest
from flask.testing import FlaskClient
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from shared.dicom import codecs, streaming_native
from shared.dicom.parse import ParsedInstance, read_instance
from shared.domain.records import InstanceRecord
from shared.errors import DicomStoreError, NotAcceptable
from shared.service import retrieve
from shared.service.context import Services
from tests.conftest import DW
from tests.dicom_factory import Spec, make_dataset, to_bytes
from tests.integration.test_streaming_transcode import _DIRECTORIES, _stored_record

TARGETS = sorted(streaming_native.TARGETS)


def _bundled(name: str) -> bytes:
    source, _, filename = name.partition("/")
    return (_DIRECTORIES[source] / filename).read_bytes()


def _stored(client: FlaskClient, services: Services, data: bytes) -> InstanceRecord:
    record = _stored_record(client, services, data)
    assert record is not None
    return record


def _url(record: InstanceRecord) -> str:
    return f"{DW}/studies/{record.study_uid}/series/{record.series_uid}/instances/{record.sop_uid}"


def _sent_before_abort(chunks: Iterator[bytes], reason: str) -> bytes:
    """What a client got of a stream that must be cut short, for `reason`."""
    sent = b""
    with pytest.raises(streaming_native.StreamAborted, match=reason):
        for chunk in chunks:
            sent += chunk
    return sent


def bundled_instances() -> Iterator[tuple[str, bytes, ParsedInstance]]:
    """('source/name', bytes, parsed) of each bundled file that ingest stores."""
    for source, directory in _DIRECTORIES.items():
        for path in sorted(directory.iterdir()):
            try:
                data = path.read_bytes()
                parsed = read_instance(io.BytesIO(data))
            except (DicomStoreError, OSError):
                continue  # not DICOM, or refused at ingest (test_pydicom_data covers those)
            yield f"{source}/{path.name}", data, parsed


def _native_files() -> dict[str, tuple[str, bool]]:
    """'source/name' to (syntax, pixel data ends the file) of each stored native image."""
    return {
        name: (parsed.transfer_syntax, parsed.trailer_offset >= len(data))
        for name, data, parsed in bundled_instances()
        if parsed.transfer_syntax in streaming_native.SOURCES and parsed.number_of_frames
    }


FILES = _native_files()
PAIRS = [
    (name, target) for name, (syntax, _) in FILES.items() for target in TARGETS if target != syntax
]


def whole_transcode(data: bytes, target: str) -> bytes | type[Exception]:
    try:
        return codecs.transcode_instance(io.BytesIO(data), target)
    except DicomStoreError as exc:
        return type(exc)


def test_most_bundled_native_pairs_take_the_streaming_path() -> None:
    # 85 with pydicom 3.0.2 and pydicom-data 1.0.0, 10 of them with elements after the pixel
    # data (trailing padding and the like), which are re-encoded after the streamed pixels.
    assert len(PAIRS) >= 80, len(PAIRS)
    assert len([name for name, _ in PAIRS if not FILES[name][1]]) >= 10
    assert {FILES[name][0] for name, _ in PAIRS} == set(streaming_native.SOURCES)


@pytest.mark.local_only  # the blob store is read the same way in both backends
@pytest.mark.parametrize(("name", "target"), PAIRS)
def test_a_bundled_file_streams_exactly_what_the_whole_transcode_writes(
    client: FlaskClient, services: Services, name: str, target: str
) -> None:
    data = _bundled(name)
    record = _stored(client, services, data)
    assert (record.trailer_offset == 0) == FILES[name][1]
    stream = retrieve.native_stream(services, record, target)
    assert stream is not None
    assert b"".join(stream) == whole_transcode(data, target)


@dataclass(frozen=True)
class Image:
    """A synthetic image's pixel attributes (little endian sample values are random)."""

    rows: int
    columns: int
    frames: int = 1
    bits: int = 16
    samples: int = 1
    signed: bool = False
    vr: str | None = None  # None: what pydicom writes (OW above 8 bits, OB otherwise)

    @property
    def size(self) -> int:
        return self.rows * self.columns * self.frames * self.samples * self.bits // 8


IMAGES = {
    "16-bit signed, 3 frames": Image(33, 35, frames=3, signed=True),
    "8-bit, odd length": Image(33, 35, frames=3, bits=8),
    "8-bit in OW, odd length": Image(33, 35, frames=3, bits=8, vr="OW"),
    "8-bit RGB": Image(17, 19, frames=2, bits=8, samples=3),
    "32-bit": Image(20, 30, frames=2, bits=32),
    "8-bit over a chunk, odd length": Image(1101, 1001, bits=8),
    "16-bit over a chunk": Image(600, 512, frames=2),
}
SYNTAXES = sorted(streaming_native.SOURCES)


def _instance(image: Image, syntax: str, seed: int = 3) -> bytes:
    dataset = make_dataset(Spec(rows=image.rows, columns=image.columns, frames=image.frames))
    dataset.BitsAllocated, dataset.BitsStored = image.bits, image.bits
    dataset.HighBit, dataset.PixelRepresentation = image.bits - 1, int(image.signed)
    if image.samples == 3:
        dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 3, "RGB"
        dataset.PlanarConfiguration = 0
    pixels = np.random.default_rng(seed).integers(0, 256, image.size, np.uint8).tobytes()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.UID(syntax)
    vr = image.vr or ("OW" if image.bits > 8 else "OB")
    if syntax == ExplicitVRBigEndian:
        # pydicom writes OB/OW values verbatim: the big endian samples are ours to swap.
        pixels = codecs.byteswap(pixels, codecs.pixel_swap_width(vr, image.bits))
    dataset.PixelData = pixels
    dataset["PixelData"].VR = vr
    return to_bytes(dataset)


@pytest.mark.local_only
@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("image", IMAGES)
def test_a_synthetic_instance_streams_exactly_what_the_whole_transcode_writes(
    client: FlaskClient, services: Services, image: str, syntax: str
) -> None:
    data = _instance(IMAGES[image], syntax)
    assert read_instance(io.BytesIO(data)).transfer_syntax == syntax
    record = _stored(client, services, data)
    for target in TARGETS:
        if target == syntax:
            continue
        whole = whole_transcode(data, target)
        assert isinstance(whole, bytes)
        stream = retrieve.native_stream(services, record, target)
        assert stream is not None, target
        chunks = list(stream)
        assert b"".join(chunks) == whole, target
        assert max(map(len, chunks)) <= streaming_native.CHUNK_SIZE + len(chunks[0])


def test_http_retrieves_send_the_streamed_bytes(client: FlaskClient, services: Services) -> None:
    implicit = _instance(IMAGES["16-bit signed, 3 frames"], ImplicitVRLittleEndian)
    check_http_retrieve(client, services, implicit, None)  # the default: Explicit VR LE
    big_endian = _instance(IMAGES["8-bit RGB"], ExplicitVRBigEndian)
    check_http_retrieve(client, services, big_endian, codecs.IMPLICIT_VR_LE)


def check_http_retrieve(
    client: FlaskClient, services: Services, data: bytes, target: str | None
) -> bytes:
    """GET of the stored data as application/dicom in target (None: the default) sends
    what the whole transcode writes; returns the body."""
    accept = "application/dicom" + (f"; transfer-syntax={target}" if target else "")
    response = client.get(_url(_stored(client, services, data)), headers={"Accept": accept})
    assert response.status_code == 200
    assert response.data == whole_transcode(data, target or codecs.EXPLICIT_VR_LE)
    return response.data


def _truncate(services: Services, record: InstanceRecord, length: int) -> None:
    data = services.blobs.read_range(record.blob_key, 0, length)
    services.blobs.put(record.blob_key, io.BytesIO(data))


@pytest.mark.parametrize("cut", ["in the pixel data", "at the pixel data"])
def test_a_blob_truncated_after_the_header_aborts_the_stream(
    client: FlaskClient, services: Services, cut: str
) -> None:
    pixel_bytes_kept = 1000 if cut == "in the pixel data" else 0
    check_truncation_cuts_short(
        client, services, codecs.EXPLICIT_VR_LE, pixel_bytes_kept, "ends before"
    )


def check_truncation_cuts_short(
    client: FlaskClient, services: Services, target: str, pixel_bytes_kept: int, reason: str
) -> None:
    """A big endian blob cut pixel_bytes_kept into its pixel data: the stream ends early."""
    data = _instance(IMAGES["16-bit over a chunk"], ExplicitVRBigEndian)
    record = _stored(client, services, data)
    pixel_start = record.header_length + streaming_native.PIXEL_ELEMENT_HEADER_LENGTH
    _truncate(services, record, pixel_start + pixel_bytes_kept)
    whole = whole_transcode(data, target)
    assert isinstance(whole, bytes)
    sent = _sent_before_abort(retrieve.instance_chunks(services, record, target), reason)
    assert whole.startswith(sent) and len(sent) < len(whole)  # cut short, never wrong


def test_a_blob_longer_than_the_index_says_aborts_the_stream(
    client: FlaskClient, services: Services
) -> None:
    data = _instance(IMAGES["8-bit, odd length"], ImplicitVRLittleEndian)
    record = _stored(client, services, data)
    services.blobs.put(record.blob_key, io.BytesIO(data + b"\0" * 8))
    _sent_before_abort(retrieve.instance_chunks(services, record, codecs.EXPLICIT_VR_LE), "past")


def test_a_pixel_element_that_does_not_end_where_the_index_says_is_not_streamed() -> None:
    data = _instance(IMAGES["8-bit, odd length"], ImplicitVRLittleEndian)
    parsed = read_instance(io.BytesIO(data))
    head = data[: parsed.header_length + streaming_native.PIXEL_ELEMENT_HEADER_LENGTH]

    def start(header_length: int, size: int) -> object:
        stored = streaming_native.StoredStart(head, header_length, size, parsed.transfer_syntax)
        return streaming_native.start_native_resyntax(
            stored, codecs.EXPLICIT_VR_LE, lambda: io.BytesIO(data)
        )

    assert start(parsed.header_length, len(data)) is not None
    assert start(parsed.header_length, len(data) + 2) is None
    assert start(parsed.header_length - 2, len(data)) is None


@pytest.mark.local_only
def test_an_untranscodable_request_gets_its_406_before_any_byte(
    client: FlaskClient, services: Services
) -> None:
    # Big endian 12-bit samples in OW: no swap width, so both paths refuse it.
    dataset = pydicom.dcmread(io.BytesIO(_instance(IMAGES["32-bit"], ExplicitVRBigEndian)))
    dataset.BitsAllocated = 12
    data = to_bytes(dataset)
    record = _stored(client, services, data)
    assert retrieve.native_stream(services, record, codecs.EXPLICIT_VR_LE) is None
    chunks = retrieve.instance_chunks(services, record, codecs.EXPLICIT_VR_LE)
    with pytest.raises(NotAcceptable):
        next(chunks)
    url = _url(record)
    refused = client.get(url, headers={"Accept": "application/dicom"})
    assert refused.status_code == 406


@pytest.mark.local_only  # measures this code, not the storage client's buffers
@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_streaming_a_large_instance_holds_a_chunk_or_two_not_the_instance(
    client: FlaskClient, services: Services, syntax: str
) -> None:
    target = codecs.EXPLICIT_VR_LE if syntax != codecs.EXPLICIT_VR_LE else codecs.IMPLICIT_VR_LE
    sent, peak = bytes_and_peak_memory(client, services, syntax, target)
    assert sent > LARGE.size
    # Measured 1.05 MB (implicit) and 2.1 MB (big endian, a swapped copy of each chunk);
    # the whole transcode of this 24 MB instance peaks at 75 MB.
    assert peak < 8 * LARGE_FRAME_SIZE, peak


LARGE = Image(512, 512, frames=48)
LARGE_FRAME_SIZE = LARGE.size // LARGE.frames


def bytes_and_peak_memory(
    client: FlaskClient, services: Services, syntax: str, target: str
) -> tuple[int, int]:
    """Bytes instance_chunks sends of the LARGE image stored in syntax, in target, and the
    peak memory traced while it does."""
    record = _stored(client, services, _instance(LARGE, syntax))
    tracemalloc.start()
    try:
        sent = sum(map(len, retrieve.instance_chunks(services, record, target)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return sent, peak
