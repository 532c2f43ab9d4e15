"""STOW-RS: validate, write the blob, then commit the index row; nothing half-written on failure."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

import google_crc32c

from shared.dicom import attributes, json_model, parse
from shared.domain import reasons
from shared.domain.operations import utc_now
from shared.domain.records import STORAGE_CLASSES, InstanceRecord, StoreRecord
from shared.errors import InvalidArgument, InvalidDicom, NotFound
from shared.service.context import Services

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_PREAMBLE_LENGTH = 128
_PREFIX_LENGTH = _PREAMBLE_LENGTH + 4
_NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


@dataclass(frozen=True)
class StoreOutcome:
    """What happened to one part of a store request."""

    sop_class_uid: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    failure_reason: int | None = None
    failure_detail: str = ""

    @property
    def stored(self) -> bool:
        return self.failure_reason is None


def validate_storage_class(value: str | None) -> str:
    """The Storage-Class header or blobStorageClass value, defaulting to STANDARD."""
    if value is None or value == "":
        return "STANDARD"
    upper = value.strip().upper()
    if upper not in STORAGE_CLASSES:
        raise InvalidArgument(
            f"invalid storage class {value!r}: expected one of {', '.join(STORAGE_CLASSES)}"
        )
    return upper


@runtime_checkable
class _StagingFile(Protocol):
    def seal(self) -> None: ...


@runtime_checkable
class _StagingBlobStore(Protocol):
    """A blob store that can take a file written in its own staging area without a copy."""

    def stage(self) -> BinaryIO: ...


def spool_with_checksum(services: Services, source: BinaryIO) -> tuple[BinaryIO, int, int]:
    """Copy a stream into a temp file; returns (file at offset 0, size, CRC32C).

    A Part-10 body sent without the 128-byte preamble and DICM magic (dicomweb-client does
    this) gets them added, so every stored object is a file that any DICOM reader opens.
    Where the blob store stages files (local disk), the temp file is its staging file: the
    bytes are written once, start reaching the disk now, and `blobs.put` only links them.
    """
    blobs = services.blobs
    spooled = blobs.stage() if isinstance(blobs, _StagingBlobStore) else services.spool()
    crc = 0
    size = 0
    try:
        first = _read_at_least(source, _PREFIX_LENGTH)
        if _lacks_preamble(first):
            first = bytes(_PREAMBLE_LENGTH) + b"DICM" + first
        for chunk in _chain(first, source):
            crc = google_crc32c.extend(crc, chunk)
            size += len(chunk)
            spooled.write(chunk)
        if isinstance(spooled, _StagingFile):
            spooled.seal()
    except BaseException:
        spooled.close()
        raise
    spooled.seek(0)
    return spooled, size, crc


def _read_at_least(source: BinaryIO, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = source.read(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _lacks_preamble(head: bytes) -> bool:
    # Starts with an explicit-VR-LE element of group 0002 instead of a preamble + "DICM".
    has_magic = len(head) >= _PREFIX_LENGTH and head[_PREAMBLE_LENGTH:_PREFIX_LENGTH] == b"DICM"
    return (
        not has_magic
        and len(head) >= 8
        and head[:2] == b"\x02\x00"
        and 0x40 < head[4] < 0x5B
        and 0x40 < head[5] < 0x5B
    )


def _chain(first: bytes, source: BinaryIO) -> Iterator[bytes]:
    if first:
        yield first
    while chunk := source.read(_CHUNK):
        yield chunk


def store_one(
    services: Services,
    store: StoreRecord,
    data: BinaryIO,
    size: int,
    crc: int,
    *,
    expected_study: str | None,
    storage_class: str,
) -> StoreOutcome:
    """Store one Part-10 instance: identical re-upload succeeds, different bytes fail with 272."""
    return store_many(
        services,
        store,
        [(data, size, crc)],
        expected_study=expected_study,
        storage_class=storage_class,
    )[0]


@dataclass
class _Prepared:
    """An instance that passed validation: its record, bytes and identity, not yet stored."""

    ident: StoreOutcome
    record: InstanceRecord
    data: BinaryIO
    size: int
    crc: int


def store_many(
    services: Services,
    store: StoreRecord,
    items: Sequence[StoreOutcome | tuple[BinaryIO, int, int]],
    *,
    expected_study: str | None,
    storage_class: str,
) -> list[StoreOutcome]:
    """Store the instances of one request, outcomes in request order (see store_one).

    Items that are already outcomes pass through. The others are validated in order, their
    blobs then written at the same time (each waits on fsyncs of its bytes and directory,
    which overlap), and their index rows added in request order, together (one synced commit
    on SQLite), so when two parts share UIDs the first one wins, as if they had been stored
    one after the other. A failure while writing blobs removes every blob of the request
    before it is raised.
    """
    outcomes: list[StoreOutcome | _Prepared] = [
        item
        if isinstance(item, StoreOutcome)
        else _prepare(services, store, item, expected_study, storage_class)
        for item in items
    ]
    pending = [o for o in outcomes if isinstance(o, _Prepared)]
    _put_blobs(services, pending, storage_class)
    indexed = iter(_index(services, pending))
    return [o if isinstance(o, StoreOutcome) else next(indexed) for o in outcomes]


def _prepare(
    services: Services,
    store: StoreRecord,
    item: tuple[BinaryIO, int, int],
    expected_study: str | None,
    storage_class: str,
) -> StoreOutcome | _Prepared:
    """Parse and check one instance: a failed outcome, or what storing it needs."""
    data, size, crc = item
    try:
        parsed = parse.read_instance(data)
    except InvalidDicom as exc:
        return StoreOutcome(
            failure_reason=reasons.PROCESSING_FAILURE,
            failure_detail=f"invalid DICOM: {exc.message}",
        )
    ident = StoreOutcome(parsed.sop_class_uid, parsed.sop_uid, parsed.study_uid, parsed.series_uid)
    if expected_study is not None and parsed.study_uid != expected_study:
        return _failed(
            ident,
            reasons.STUDY_UID_MISMATCH,
            f"StudyInstanceUID {parsed.study_uid} does not match the study {expected_study} "
            "of the request URL",
        )
    if services.index.is_deleting(store.store_id, parsed.study_uid, parsed.series_uid):
        return _failed(
            ident,
            reasons.PROCESSING_FAILURE,
            "the study or series is being deleted by a long-running operation; "
            "retry when it is done",
        )
    existing = _existing(services, store, parsed.study_uid, parsed.series_uid, parsed.sop_uid)
    if existing is not None:
        return _compare_existing(ident, existing, size, crc)
    record = _build_record(services, store, parsed, size, crc, storage_class)
    return _Prepared(ident, record, data, size, crc)


def _put_blobs(services: Services, pending: list[_Prepared], storage_class: str) -> None:
    def put(item: _Prepared) -> None:
        item.data.seek(0)
        services.blobs.put(
            item.record.blob_key, item.data, if_absent=True, storage_class=storage_class
        )

    if len(pending) == 1:
        put(pending[0])
        return
    futures = [_BLOB_POOL.submit(put, item) for item in pending]
    wait(futures)
    failure = next((f.exception() for f in futures if f.exception() is not None), None)
    if failure is not None:
        for item, future in zip(pending, futures, strict=True):
            if future.exception() is None:
                _discard_blob(services, item.record.blob_key)
        raise failure


def _index(services: Services, items: list[_Prepared]) -> list[StoreOutcome]:
    """Commit the index rows of written blobs together, in request order (the first wins).

    A row that could not be added has its blob removed, and the first such error is raised
    once every row has been settled; rows that were added keep their blobs.
    """
    if not items:
        return []
    try:
        rows = services.index.add_instances([item.record for item in items])
    except BaseException:
        # Which rows are durable is unknown: an orphan blob is harmless, a row without its
        # blob would lose an instance, so every blob stays.
        logger.warning("adding %d index rows failed; their blobs are left in place", len(items))
        raise
    outcomes: list[StoreOutcome] = []
    failure: Exception | None = None
    for item, row in zip(items, rows, strict=True):
        if isinstance(row, Exception):
            _discard_blob(services, item.record.blob_key)
            failure = failure or row
            continue
        outcomes.append(_settle(services, item, row))
    if failure is not None:
        raise failure
    return outcomes


def _settle(services: Services, item: _Prepared, winner: InstanceRecord) -> StoreOutcome:
    """The outcome of an instance whose key now has `winner` as its row in the index."""
    record = item.record
    if winner.blob_key != record.blob_key:
        # An upload of the same UIDs committed first; our blob is nobody's.
        _discard_blob(services, record.blob_key)
        return _compare_existing(item.ident, winner, item.size, item.crc)
    logger.info(
        "stored instance %s (study %s, %d bytes)", record.sop_uid, record.study_uid, item.size
    )
    return item.ident


# Threads start on first use; they keep their index connections between requests.
_BLOB_POOL = ThreadPoolExecutor(4, thread_name_prefix="stow-blob")


def _existing(
    services: Services, store: StoreRecord, study: str, series: str, sop: str
) -> InstanceRecord | None:
    try:
        return services.index.get_instance(store.store_id, study, series, sop)
    except NotFound:
        return None


def _compare_existing(
    ident: StoreOutcome, existing: InstanceRecord, size: int, crc: int
) -> StoreOutcome:
    if existing.state != "ACTIVE":
        return _failed(
            ident,
            reasons.PROCESSING_FAILURE,
            "the instance is being deleted by a long-running operation; retry when it is done",
        )
    if existing.size == size and existing.crc32c == _crc_hex(crc):
        return ident
    return _failed(
        ident,
        reasons.PROCESSING_FAILURE,
        "An instance already exists in this DICOM Store with the same Study/Series/SOPInstance "
        "UID, but the DICOM files differ (checksum mismatch).",
    )


def _failed(ident: StoreOutcome, reason: int, detail: str) -> StoreOutcome:
    return StoreOutcome(
        ident.sop_class_uid, ident.sop_uid, ident.study_uid, ident.series_uid, reason, detail
    )


def _crc_hex(crc: int) -> str:
    return f"{crc:08x}"


def blob_key(store_id: str, study: str, series: str, sop: str, crc: int) -> str:
    """A key unique to this upload attempt.

    Every attempt writes its own object (create-if-absent), so no upload can overwrite another
    and each attempt's clean-up removes only what it wrote itself, even under races.
    """
    return f"stores/{store_id}/{study}/{series}/{sop}/{_crc_hex(crc)}-{uuid.uuid4().hex[:16]}.dcm"


def _build_record(
    services: Services,
    store: StoreRecord,
    parsed: parse.ParsedInstance,
    size: int,
    crc: int,
    storage_class: str,
) -> InstanceRecord:
    pixel_vr = _pixel_data_vr(parsed) if parsed.number_of_frames else None
    metadata = json_model.dataset_to_json(parsed.dataset, pixel_data_vr=pixel_vr)
    study_attrs, series_attrs = attributes.split_levels(metadata)
    now = utc_now()
    return InstanceRecord(
        store_id=store.store_id,
        study_uid=parsed.study_uid,
        series_uid=parsed.series_uid,
        sop_uid=parsed.sop_uid,
        sop_class_uid=parsed.sop_class_uid,
        transfer_syntax=parsed.transfer_syntax,
        blob_key=blob_key(store.store_id, parsed.study_uid, parsed.series_uid, parsed.sop_uid, crc),
        size=size,
        crc32c=_crc_hex(crc),
        storage_class=storage_class,
        storage_class_time=now,
        number_of_frames=parsed.number_of_frames,
        frames=parsed.frames,
        study=study_attrs,
        series=series_attrs,
        metadata=metadata,
        metadata_size=len(json_model.dumps([metadata])),
        header_length=parsed.header_length,
        trailer_offset=parsed.trailer_offset if parsed.trailer_offset < size else 0,
        create_time=now,
    )


def _pixel_data_vr(parsed: parse.ParsedInstance) -> str:
    if 0x7FE00010 in parsed.dataset:
        # keep_deferred: reading .VR must not load the pixel data into memory.
        element = parsed.dataset.get_item(0x7FE00010, keep_deferred=True)
        if element is not None and element.VR in ("OB", "OW"):
            return str(element.VR)
    return pixel_data_vr(parsed.transfer_syntax, parsed.dataset.get("BitsAllocated"))


def pixel_data_vr(transfer_syntax: str, bits_allocated: object) -> str:
    """PS3.5 8.2: encapsulated or <= 8-bit pixel data is OB, otherwise OW."""
    encapsulated = transfer_syntax not in _NATIVE_SYNTAXES
    try:
        bits = int(str(bits_allocated)) if bits_allocated is not None else 16
    except ValueError:
        bits = 16
    return "OB" if encapsulated or bits <= 8 else "OW"


def _discard_blob(services: Services, key: str) -> None:
    try:
        services.blobs.delete(key)
    except Exception:
        logger.exception("could not remove the orphan object %s", key)
