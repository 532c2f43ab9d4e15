"""The objects dicomStores.export writes for one instance, in each gcsDestination.mimeType."""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pydicom import Dataset

from shared.dicom import codecs
from shared.dicom.media_types import ANY_SYNTAX, EXPLICIT_VR_LITTLE_ENDIAN, INSTANCE_SYNTAXES
from shared.dicom.multipart import parse_media_type
from shared.domain.records import InstanceRecord
from shared.errors import InvalidArgument, NotAcceptable
from shared.service import frame_source, retrieve
from shared.service.context import Services

logger = logging.getLogger(__name__)

DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
JPEG = "image/jpeg"
PNG = "image/png"
_TRANSFER_SYNTAX = "transfer-syntax"
_CHUNK = 1 << 20
_SHOWN_VALUE = 200
_SUPPORTED = (
    f"{DICOM} (as stored), {DICOM}; {_TRANSFER_SYNTAX}=* or one of "
    f"{', '.join(sorted(INSTANCE_SYNTAXES - {ANY_SYNTAX}))}; "
    f"{OCTET_STREAM}; {_TRANSFER_SYNTAX}={EXPLICIT_VR_LITTLE_ENDIAN} or *; "
    f"{JPEG} (optionally {_TRANSFER_SYNTAX}={codecs.JPEG_BASELINE}); {PNG}"
)
# Attributes that change how 8-bit greyscale must be shown, so its raw values are not the image.
_GREY_PRESENTATION_TAGS = (
    "00281050",  # WindowCenter
    "00283000",  # ModalityLUTSequence
    "00283010",  # VOILUTSequence
    "52009229",  # SharedFunctionalGroupsSequence (may hold a per-frame window)
    "52009230",  # PerFrameFunctionalGroupsSequence
)


@dataclass(frozen=True)
class ExportFormat:
    """What gcsDestination.mimeType asks for.

    media_type: application/dicom, application/octet-stream, image/jpeg or image/png.
    transfer_syntax: the syntax to convert to; None keeps the stored one (and for PNG).
    extension: of each object name: ".dcm", ".jpg", ".png", or "" for octet-stream.
    """

    media_type: str
    transfer_syntax: str | None
    extension: str


AS_STORED = ExportFormat(DICOM, None, ".dcm")


@dataclass
class ExportFile:
    """One object to write: its name below the uriPrefix, Content-Type and bytes.

    `data` is a stream for an instance exported as stored, so a 2 GB instance is never held
    in memory; the caller closes it.
    """

    relative_name: str
    content_type: str
    data: bytes | BinaryIO


def parse_export_mime_type(value: str | None) -> ExportFormat:
    """Google's gcsDestination.mimeType; None or "" means DICOM as uploaded.

    Parameter names are case-insensitive and values may be quoted. InvalidArgument, naming the
    value and listing what is supported, for anything else (including unknown parameters).
    """
    if value is None or not value.strip():
        return AS_STORED
    try:
        media_type, params = parse_media_type(value)
    except InvalidArgument:
        raise _unsupported(value) from None
    syntax = params.pop(_TRANSFER_SYNTAX, None)
    syntax = syntax.strip() if syntax is not None else None
    if params:
        raise _unsupported(value, f"unknown parameter(s) {', '.join(sorted(params))}")
    if media_type == DICOM and syntax in (None, ANY_SYNTAX):
        return AS_STORED
    if media_type == DICOM and syntax in INSTANCE_SYNTAXES:
        return ExportFormat(DICOM, syntax, ".dcm")
    if media_type == OCTET_STREAM and syntax in (ANY_SYNTAX, EXPLICIT_VR_LITTLE_ENDIAN):
        # Bare octet-stream is refused: "raw pixels" and "pixels as stored" are both plausible.
        return ExportFormat(OCTET_STREAM, None if syntax == ANY_SYNTAX else syntax, "")
    if media_type == JPEG and syntax in (None, codecs.JPEG_BASELINE):
        return ExportFormat(JPEG, codecs.JPEG_BASELINE, ".jpg")
    if media_type == PNG and syntax is None:
        return ExportFormat(PNG, None, ".png")
    raise _unsupported(value)


def _unsupported(value: str, detail: str = "") -> InvalidArgument:
    shown = value if len(value) <= _SHOWN_VALUE else value[: _SHOWN_VALUE - 3] + "..."
    because = f" ({detail})" if detail else ""
    return InvalidArgument(
        f"unsupported gcsDestination.mimeType {shown!r}{because}; supported: {_SUPPORTED}"
    )


def export_files(
    services: Services, record: InstanceRecord, fmt: ExportFormat
) -> Iterator[ExportFile]:
    """The objects of one instance, named `{study}/{series}/{sop}[/{frame}]{ext}`.

    DICOM gives one object per instance; the pixel formats one per frame, with the 1-based
    frame number as a path segment only when the instance has more than one frame. A
    conversion that is impossible raises NotAcceptable here, before anything is yielded (the
    first object is converted now, so a codec that cannot handle the instance fails here too).
    A frame that turns out to be corrupt later still raises while iterating.
    """
    if fmt.media_type == DICOM:
        return iter([_dicom_file(services, record, fmt)])
    if record.number_of_frames == 0:
        raise NotAcceptable(
            f"instance {record.sop_uid} has no pixel data, so it cannot be exported as "
            f"{fmt.media_type}; export it as {DICOM}"
        )
    files = (
        ExportFile(_frame_name(record, number, fmt.extension), content_type, data)
        for number, (data, content_type) in enumerate(_frames(services, record, fmt), start=1)
    )
    first = next(files)
    return itertools.chain([first], files)


def _dicom_file(services: Services, record: InstanceRecord, fmt: ExportFormat) -> ExportFile:
    name = f"{_instance_name(record)}.dcm"
    target = retrieve.output_syntax(record, fmt.transfer_syntax)
    content_type = f"{DICOM}; {_TRANSFER_SYNTAX}={target}"
    if target == record.transfer_syntax:
        return ExportFile(name, content_type, _stream(retrieve.stored_chunks(services, record)))
    retrieve.check_transcodable([record], target)
    return ExportFile(
        name, content_type, b"".join(retrieve.instance_chunks(services, record, target))
    )


def _instance_name(record: InstanceRecord) -> str:
    return f"{record.study_uid}/{record.series_uid}/{record.sop_uid}"


def _frame_name(record: InstanceRecord, number: int, extension: str) -> str:
    if record.number_of_frames > 1:
        return f"{_instance_name(record)}/{number}{extension}"
    return f"{_instance_name(record)}{extension}"


def _frames(
    services: Services, record: InstanceRecord, fmt: ExportFormat
) -> Iterator[tuple[bytes, str]]:
    """(payload, Content-Type) of every frame in order; refusals are raised before returning."""
    if fmt.media_type == OCTET_STREAM:
        if fmt.transfer_syntax is not None:
            retrieve.check_transcodable([record], fmt.transfer_syntax)
        return _converted_frames(services, record, OCTET_STREAM, fmt.transfer_syntax)
    header = codecs.decoded_header(retrieve.pixel_header(record), record.transfer_syntax)
    if fmt.media_type == PNG:
        # Raw values at their stored depth (see frame_codecs._png_image: signed values are
        # offset by 2**(BitsStored-1), MONOCHROME1 is not inverted, PALETTE COLOR keeps its
        # indices, YBR colour becomes 8-bit RGB). What PNG cannot hold that way (colour above
        # 8 bits, float or 1-bit pixels) is rendered as WADO does, in 8 bits.
        if codecs.can_encode_frames(header, PNG, None):
            return _converted_frames(services, record, PNG, None)
        logger.debug("instance %s: raw frames do not fit PNG, rendering", record.sop_uid)
        return _rendered_frames(services, record, PNG)
    if _displays_as_stored(services, record, header):
        return _converted_frames(services, record, JPEG, codecs.JPEG_BASELINE)
    # Baseline JPEG holds 8 bits a viewer shows as is. Frames above 8 bits (CT, MR), signed,
    # MONOCHROME1, palette or windowed ones would look wrong with their raw values squeezed
    # in, so they go through the /rendered pipeline (modality LUT, the instance's VOI LUT or
    # window, else min-max, inversion, palette): an exported JPEG is what a viewer of the
    # store shows, and it is byte-identical to WADO's rendered frame.
    return _rendered_frames(services, record, JPEG)


def _displays_as_stored(services: Services, record: InstanceRecord, header: Dataset) -> bool:
    """True when frames can go to baseline JPEG with their values unchanged.

    That keeps a stored JPEG baseline frame byte for byte (no second lossy generation) and
    spares colour images a pointless decode-render-encode round trip.
    """
    if not codecs.can_encode_frames(header, JPEG, codecs.JPEG_BASELINE):
        return False
    photometric = str(header.get("PhotometricInterpretation", ""))
    if photometric == "MONOCHROME1":
        return False
    if photometric == "MONOCHROME2":
        metadata = retrieve.full_metadata(services, record)
        return not any(tag in metadata for tag in _GREY_PRESENTATION_TAGS)
    return True


def _converted_frames(
    services: Services, record: InstanceRecord, media_type: str, requested: str | None
) -> Iterator[tuple[bytes, str]]:
    for numbers in _frame_batches(record):
        syntax, payloads = retrieve.frames_as(services, record, numbers, media_type, requested)
        content_type = media_type
        if media_type == OCTET_STREAM:
            content_type = f"{media_type}; {_TRANSFER_SYNTAX}={syntax}"
        for payload in payloads:
            yield payload, content_type


def _frame_batches(record: InstanceRecord) -> list[list[int]]:
    """Frame numbers grouped for retrieve.frames_as: one frame per call where it reads spans.

    Without usable spans retrieve reads and decodes the whole instance on every call, so
    then all frames are asked for at once.
    """
    numbers = list(range(1, record.number_of_frames + 1))
    if frame_source.reads_spans(record):
        return [[number] for number in numbers]
    return [numbers]


def _rendered_frames(
    services: Services, record: InstanceRecord, media_type: str
) -> Iterator[tuple[bytes, str]]:
    """Each frame as WADO renders it, holding one frame at a time when spans allow."""
    from shared.dicom import render

    source = frame_source.renderer(services, record)
    for number in range(1, record.number_of_frames + 1):
        dataset, index = source(number)
        yield render.render_frame(dataset, index, media_type), media_type


def _stream(chunks: Iterator[bytes]) -> BinaryIO:
    return io.BufferedReader(_ChunkReader(chunks), buffer_size=_CHUNK)


class _ChunkReader(io.RawIOBase):
    """A read-only stream over byte chunks; closing it closes the chunk generator."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if callable(close):
            close()
        super().close()
