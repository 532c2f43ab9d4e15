"""WADO-RS: instances (as stored or transcoded), frames, rendered images, metadata, bulkdata."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import BinaryIO

from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID

from shared.dicom import (
    codecs,
    json_model,
    streaming_encode,
    streaming_native,
    streaming_spool,
    streaming_trailer,
    streaming_transcode,
)
from shared.domain.identifiers import validate_uid
from shared.domain.records import DicomJson, InstanceRecord, StoreRecord
from shared.errors import InvalidArgument, NotAcceptable, NotFound
from shared.service.context import Services

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_NATIVE_LE = (codecs.EXPLICIT_VR_LE, codecs.IMPLICIT_VR_LE)
_DEFLATED = "1.2.840.10008.1.2.1.99"
_OCTET_STREAM = "application/octet-stream"
# Attributes codecs need to decide and decode; all are small, so the stored metadata has them.
_PIXEL_HEADER_TAGS = (
    "00020010",  # TransferSyntaxUID
    "00080016",  # SOPClassUID
    "00280002",  # SamplesPerPixel
    "00280004",  # PhotometricInterpretation
    "00280006",  # PlanarConfiguration
    "00280008",  # NumberOfFrames
    "00280010",  # Rows
    "00280011",  # Columns
    "00280100",  # BitsAllocated
    "00280101",  # BitsStored
    "00280102",  # HighBit
    "00280103",  # PixelRepresentation
)


def find_instances(
    services: Services,
    store: StoreRecord,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> list[InstanceRecord]:
    """ACTIVE instances of the addressed study, series or instance; NotFound when none."""
    validate_uid(study, "StudyInstanceUID")
    if series is not None:
        validate_uid(series, "SeriesInstanceUID")
    if sop is not None:
        validate_uid(sop, "SOPInstanceUID")
        assert series is not None
        return [services.index.get_instance(store.store_id, study, series, sop)]
    records = services.index.list_instances(store.store_id, study, series)
    if not records:
        what = f"series {series} of study {study}" if series else f"study {study}"
        raise NotFound(f"{what} not found")
    return records


def pixel_header(record: InstanceRecord) -> Dataset:
    """A Dataset holding only the pixel-description attributes of the stored metadata."""
    subset = {tag: record.metadata[tag] for tag in _PIXEL_HEADER_TAGS if tag in record.metadata}
    subset.pop("00020010", None)
    ds = Dataset.from_json(subset)
    ds.file_meta = _file_meta(record.transfer_syntax)
    return ds


def _file_meta(transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = UID(transfer_syntax)
    return meta


def representative(records: list[InstanceRecord]) -> InstanceRecord:
    """The instance a thumbnail shows: the middle image of the first series that has pixels."""
    first_series = next((r.series_uid for r in records if r.number_of_frames), None)
    if first_series is None:
        raise NotFound("no instance with pixel data to show")
    images = [r for r in records if r.series_uid == first_series and r.number_of_frames]
    return images[len(images) // 2]


def output_syntax(record: InstanceRecord, requested: str | None) -> str:
    """The syntax an instance is sent in: '*' or None-as-stored resolve to the stored one."""
    if requested in (None, "*"):
        return record.transfer_syntax
    return requested


def check_transcodable(records: list[InstanceRecord], requested: str | None) -> None:
    """Refuse (406) before the first byte is sent if any instance cannot be converted."""
    for record in records:
        target = output_syntax(record, requested)
        if target == record.transfer_syntax:
            continue
        if not codecs.can_transcode(record.transfer_syntax, target, pixel_header(record)):
            raise NotAcceptable(
                f"instance {record.sop_uid} is stored as {record.transfer_syntax} and cannot be "
                f"transcoded to {target}; request transfer-syntax=* to get it as stored"
            )


def instance_chunks(services: Services, record: InstanceRecord, target: str) -> Iterator[bytes]:
    """The instance's Part-10 bytes in `target`, streamed from the blob when no work is needed.

    As stored, exactly `record.size` bytes come out (see stored_chunks), so a response may
    announce that length before the first byte.
    """
    if target == record.transfer_syntax:
        yield from stored_chunks(services, record)
        return
    native = native_stream(services, record, target)
    if native is not None:
        yield from native
        return
    with services.blobs.open(record.blob_key) as handle:
        yield codecs.transcode_instance(handle, target)


def native_stream(
    services: Services, record: InstanceRecord, target: str
) -> Iterator[bytes] | None:
    """transcode_instance's bytes in pieces, or None when the instance needs it whole.

    One ranged read of the header, then the pixel data frame by frame (compressed sources to
    Explicit VR LE, Google's default, and any source to a lossless compressed syntax) or in
    1 MiB chunks (native to another native syntax), so the peak memory is a frame or two, not
    three times the instance. Lossy targets encode every frame into a temporary file first
    (the header holds the compression ratio), then send it back in chunks. Elements after the
    pixel data (up to streaming_trailer.MAX_SIZE) are re-encoded and sent last.
    """
    if record.header_length <= 0:
        return None
    start = _stream_start(record, target)
    if start is None:
        return None
    stored = _stored_start(services, record)
    trailer = _target_trailer(services, record, stored, target)
    if trailer is None:
        return None
    stream = start(services, record, stored, target)
    if stream is None or not trailer:
        return stream
    return streaming_trailer.followed_by(stream, trailer)


_StreamStart = Callable[
    [Services, InstanceRecord, streaming_native.StoredStart, str], Iterator[bytes] | None
]


def _stream_start(record: InstanceRecord, target: str) -> _StreamStart | None:
    source = record.transfer_syntax
    native_pair = source in streaming_native.SOURCES and target in streaming_native.TARGETS
    if native_pair and record.number_of_frames:  # without pixel data the header is all of it
        return _native_resyntax
    if target == codecs.EXPLICIT_VR_LE and _is_encapsulated(source) and record.frames:
        return _decoded_stream
    if record.frames and source != _DEFLATED:
        if target in streaming_encode.TARGETS:
            return _encoded_stream
        if target in streaming_spool.TARGETS:
            return _spooled_stream
    return None


def _target_trailer(
    services: Services, record: InstanceRecord, stored: streaming_native.StoredStart, target: str
) -> bytes | None:
    """The elements after the pixel data in target (b"": none), None for the whole path."""
    if not record.trailer_offset:
        return b""
    length = record.size - record.trailer_offset
    if length > streaming_trailer.MAX_SIZE:
        return None
    # One byte more than the index promises: a blob that goes on past record.size is caught
    # here, as the streams without a trailer catch it after their last pixel byte.
    data = services.blobs.read_range(record.blob_key, record.trailer_offset, length + 1)
    if len(data) != length:
        return None  # the blob is not what the index says: the whole path decides
    header = stored.head[: stored.header_length]
    return streaming_trailer.target_trailer(header, data, record.transfer_syntax, target)


def _native_resyntax(
    services: Services, record: InstanceRecord, stored: streaming_native.StoredStart, target: str
) -> Iterator[bytes] | None:
    return streaming_native.start_native_resyntax(
        stored, target, lambda: services.blobs.open(record.blob_key)
    )


def _decoded_stream(
    services: Services, record: InstanceRecord, stored: streaming_native.StoredStart, target: str
) -> Iterator[bytes] | None:
    return streaming_transcode.start_native_stream(
        stored.head,
        record.header_length,
        record.transfer_syntax,
        pixel_header(record),
        len(record.frames),
        _frame_reader(services, record),
    )


def _encoded_stream(
    services: Services, record: InstanceRecord, stored: streaming_native.StoredStart, target: str
) -> Iterator[bytes] | None:
    frame_header, frame_count = pixel_header(record), len(record.frames)
    frames = _frame_reader(services, record)
    return streaming_encode.start_encoded_stream(stored, target, frame_header, frame_count, frames)


def _spooled_stream(
    services: Services, record: InstanceRecord, stored: streaming_native.StoredStart, target: str
) -> Iterator[bytes] | None:
    frame_header, frame_count = pixel_header(record), len(record.frames)
    frames, spool_dir = _frame_reader(services, record), services.tmp_dir
    return streaming_spool.start_spooled_stream(
        stored, target, frame_header, frame_count, frames, spool_dir
    )


def _frame_reader(services: Services, record: InstanceRecord) -> Callable[[int], bytes]:
    return lambda number: _read_frame(services, record, number)


def _stored_start(services: Services, record: InstanceRecord) -> streaming_native.StoredStart:
    """The elements before the pixel data and the start of that element: one ranged read."""
    pixel_element = max(
        streaming_native.PIXEL_ELEMENT_HEADER_LENGTH,
        streaming_transcode.PIXEL_ELEMENT_HEADER_LENGTH,
    )
    length = record.header_length + pixel_element
    head = services.blobs.read_range(record.blob_key, 0, length)
    return streaming_native.StoredStart(
        head, record.header_length, record.size, record.transfer_syntax, record.trailer_offset
    )


def stored_length(record: InstanceRecord, target: str) -> int | None:
    """The byte count instance_chunks yields for `target`, or None when it is not known ahead."""
    return record.size if target == record.transfer_syntax else None


def stored_chunks(services: Services, record: InstanceRecord) -> Iterator[bytes]:
    """Exactly record.size bytes of the blob; raises, before the last byte, if the blob differs.

    Responses announce record.size as their Content-Length, so a blob shorter or longer than
    the index says must not be sent as if it were whole: the error is logged and the stream
    aborted before the announced length is reached, which a client sees as a truncated body.
    """
    remaining = record.size
    with services.blobs.open(record.blob_key) as handle:
        while remaining > 0:
            chunk = handle.read(min(_CHUNK, remaining))
            if not chunk:
                raise _size_mismatch(record, "shorter", record.size - remaining)
            remaining -= len(chunk)
            if remaining == 0 and handle.read(1):
                raise _size_mismatch(record, "longer", record.size + 1)
            yield chunk
        if record.size == 0 and handle.read(1):
            raise _size_mismatch(record, "longer", 1)


def _size_mismatch(record: InstanceRecord, what: str, seen: int) -> BlobSizeMismatch:
    at_least = "at least " if what == "longer" else ""
    message = (
        f"blob {record.blob_key!r} of instance {record.sop_uid} is {what} ({at_least}{seen} "
        f"bytes) than the {record.size} bytes recorded in the index: response aborted"
    )
    logger.error(message)
    return BlobSizeMismatch(message)


class BlobSizeMismatch(RuntimeError):
    """The stored object does not have the size the index records (a corrupt store)."""


def load_dataset(services: Services, record: InstanceRecord) -> Dataset:
    """The whole stored instance, pixel data included (rendering, bulkdata)."""
    with services.blobs.open(record.blob_key) as handle:
        data = handle.read()
    # force: uploads without the 128-byte preamble are stored as sent (validated at ingest).
    return dcmread(io.BytesIO(data), force=True)


def parse_frame_list(text: str, number_of_frames: int) -> list[int]:
    """'1,3,2' -> [1, 3, 2] in request order; 400 for malformed or out-of-range numbers."""
    numbers: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit():
            raise InvalidArgument(
                f"invalid frame list {text!r}: frame numbers are positive integers"
            )
        numbers.append(int(item))
    if number_of_frames == 0:
        raise InvalidArgument("the instance has no pixel data, so it has no frames")
    for number in numbers:
        if not 1 <= number <= number_of_frames:
            raise InvalidArgument(
                f"frame {number} is out of range: the instance has {number_of_frames} frame(s)"
            )
    return numbers


def frame_payloads(
    services: Services, record: InstanceRecord, numbers: list[int], requested: str | None
) -> tuple[str, list[bytes]]:
    """The requested frames in request order and the transfer syntax they are encoded in.

    Stored spans are read directly whenever the bytes need no conversion, so a frame of a large
    multi-frame instance costs one ranged read, not a read of the whole object.
    """
    target = output_syntax(record, requested)
    spans_usable = bool(record.frames) and record.transfer_syntax != _DEFLATED
    stored_native_le = record.transfer_syntax in _NATIVE_LE
    if spans_usable and (
        target == record.transfer_syntax or (stored_native_le and target in _NATIVE_LE)
    ):
        return target, [_read_frame(services, record, n) for n in numbers]
    if spans_usable and target in _NATIVE_LE and _is_encapsulated(record.transfer_syntax):
        header = pixel_header(record)
        frames = [
            codecs.decode_frame(_read_frame(services, record, n), header, record.transfer_syntax, n)
            for n in numbers
        ]
        return target, frames
    with services.blobs.open(record.blob_key) as handle:
        return target, codecs.frames_from_instance(handle, numbers, target)


def frames_as(
    services: Services,
    record: InstanceRecord,
    numbers: list[int],
    media_type: str,
    requested: str | None,
) -> tuple[str | None, list[bytes]]:
    """Frames in the negotiated media type; returns the syntax of the bytes (None for PNG).

    Bytes already in the requested encoding are read as stored; anything else is decoded to
    native little endian and re-encoded, or refused with 406 before any work is wasted.
    """
    if media_type == _OCTET_STREAM:
        return frame_payloads(services, record, numbers, requested)
    if requested == record.transfer_syntax:
        return frame_payloads(services, record, numbers, requested)
    header = codecs.decoded_header(pixel_header(record), record.transfer_syntax)
    if not codecs.can_encode_frames(header, media_type, requested):
        raise NotAcceptable(
            f"frames of instance {record.sop_uid} (stored as {record.transfer_syntax}) cannot "
            f"be encoded as {media_type}{f' ({requested})' if requested else ''}"
        )
    _, native = frame_payloads(services, record, numbers, codecs.EXPLICIT_VR_LE)
    return requested, codecs.encode_frames(native, header, media_type, requested)


def _is_encapsulated(transfer_syntax: str) -> bool:
    return transfer_syntax.startswith("1.2.840.10008.1.2.4.") or transfer_syntax == (
        "1.2.840.10008.1.2.5"
    )


def _read_frame(services: Services, record: InstanceRecord, number: int) -> bytes:
    spans = record.frames[number - 1]
    return b"".join(services.blobs.read_range(record.blob_key, s.offset, s.length) for s in spans)


def metadata(
    services: Services, records: list[InstanceRecord], dicomweb_url: str
) -> list[DicomJson]:
    """Each instance's full metadata with absolute BulkDataURIs."""
    return [
        json_model.absolutize_bulkdata(
            full_metadata(services, record), instance_url(dicomweb_url, record)
        )
        for record in records
    ]


def full_metadata(services: Services, record: InstanceRecord) -> DicomJson:
    """The record's metadata, rebuilt from the blob's header when the index keeps a summary.

    The header range holds every attribute before the pixel data, so one ranged read of the
    object (not the whole object) gives the same JSON that was computed at ingest.
    """
    if record.metadata_complete:
        return record.metadata
    from shared.service.store import pixel_data_vr

    length = record.header_length or record.size
    data = services.blobs.read_range(record.blob_key, 0, length)
    if record.header_length and record.trailer_offset:
        tail = record.size - record.trailer_offset
        data += services.blobs.read_range(record.blob_key, record.trailer_offset, tail)
    dataset = dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
    pixel = None
    if record.number_of_frames:
        pixel = record.metadata.get("7FE00010", {}).get("vr") or pixel_data_vr(
            record.transfer_syntax, dataset.get("BitsAllocated")
        )
    return json_model.dataset_to_json(dataset, pixel_data_vr=pixel)


def instance_url(dicomweb_url: str, record: InstanceRecord) -> str:
    return (
        f"{dicomweb_url}/studies/{record.study_uid}/series/{record.series_uid}"
        f"/instances/{record.sop_uid}"
    )


def bulkdata(services: Services, record: InstanceRecord, tag_path: str) -> bytes:
    """The value bytes of the element at `tag_path` (little endian, as Google serves them)."""
    dataset = load_dataset(services, record)
    element = json_model.find_bulk_element(dataset, tag_path)
    little_endian = record.transfer_syntax != "1.2.840.10008.1.2.2"
    return json_model.element_value_bytes(element, little_endian)


def open_blob(services: Services, record: InstanceRecord) -> BinaryIO:
    return services.blobs.open(record.blob_key)
