"""Explicit VR Little Endian transcoding of an encapsulated instance, one frame at a time."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator

import pydicom
from pydicom.dataset import Dataset

from shared.dicom import codecs, frame_codecs
from shared.dicom.frame_codecs import Layout
from shared.dicom.parse import PIXEL_DATA
from shared.errors import DicomStoreError, NotAcceptable

logger = logging.getLogger(__name__)

# Bytes past the header a caller reads: the longest encapsulated Pixel Data element header.
PIXEL_ELEMENT_HEADER_LENGTH = 12
_PIXEL_TAG = struct.pack("<HH", PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF)
_UNDEFINED_LENGTH = b"\xff\xff\xff\xff"
# Encapsulated Pixel Data headers: explicit VR (OB, or OW as some writers put it) and the
# implicit VR one of files whose data set contradicts their explicit transfer syntax.
_ENCAPSULATED_PIXEL_HEADERS = (
    _PIXEL_TAG + b"OB\0\0" + _UNDEFINED_LENGTH,
    _PIXEL_TAG + b"OW\0\0" + _UNDEFINED_LENGTH,
    _PIXEL_TAG + _UNDEFINED_LENGTH,
)
# PS3.5 7.1.2: a 32-bit value length, whose all-ones value means "undefined".
_MAX_VALUE_LENGTH = 2**32 - 2

# Stored bytes of frame n (1-based): the frame's fragments joined.
StoredFrame = Callable[[int], bytes]


def start_native_stream(
    stored_head: bytes,
    header_length: int,
    source_ts: str,
    frame_header: Dataset,
    frame_count: int,
    stored_frame: StoredFrame,
) -> Iterator[bytes] | None:
    """The bytes codecs.transcode_instance(instance, EXPLICIT_VR_LE) returns, frame by frame.

    stored_head is the start of the stored instance: its first header_length bytes hold every
    element before the encapsulated Pixel Data (which must be the last element), the next
    PIXEL_ELEMENT_HEADER_LENGTH bytes that element's header. frame_header describes the
    frames as decode_frame wants them (see retrieve.pixel_header).

    Everything that can go wrong before the first byte (the header, the first frame) is
    checked here, eagerly: None means the instance does not fit this path and the
    whole-instance transcode must decide (it also gives a broken instance its error). A later
    frame that fails to decode, or decodes to the wrong size, raises while streaming, so the
    response is aborted rather than sent wrong.
    """
    header = stored_header(stored_head, header_length, source_ts, frame_count)
    if header is None:
        return None
    layout = decoded_layout(header, source_ts)
    if layout is None or frame_count * native_frame_size(layout) > _MAX_VALUE_LENGTH:
        return None
    frame_size = native_frame_size(layout)
    try:
        first = codecs.decode_frame(stored_frame(1), frame_header, source_ts, 1)
    except DicomStoreError as exc:
        logger.info("frame 1 does not decode alone (%s): transcoding the whole instance", exc)
        return None
    if len(first) != frame_size:
        logger.info(
            "frame 1 decodes to %d bytes, not %d: transcoding the whole instance",
            len(first),
            frame_size,
        )
        return None
    head = codecs.write_part10(native_header(header, layout, source_ts, frame_count))
    head += _pixel_element_header(layout, frame_count * frame_size)
    return _chunks(head, first, frame_size, frame_count, source_ts, frame_header, stored_frame)


def stored_header(
    stored_head: bytes, header_length: int, source_ts: str, frame_count: int
) -> Dataset | None:
    """The data set before the pixel data, if it is the header of what was promised."""
    pixel_element = stored_head[header_length:]
    if not pixel_element.startswith(_ENCAPSULATED_PIXEL_HEADERS):
        return None
    header = codecs.read_stored_header(stored_head[:header_length], source_ts)
    if header is None:
        return None
    if "PhotometricInterpretation" not in header or header_frame_count(header) != frame_count:
        return None  # pydicom would decide these from the pixel data itself
    if not codecs.can_transcode(source_ts, codecs.EXPLICIT_VR_LE, header):
        return None
    return header


def header_frame_count(header: Dataset) -> int | None:
    """NumberOfFrames as decoders read it (absent or 0: one), None when it is no number."""
    try:
        return max(int(header.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return None


def decoded_layout(header: Dataset, source_ts: str) -> Layout | None:
    """What one decoded frame holds, when its samples fill whole bytes."""
    layout = frame_codecs.layout_of(header)
    if layout is None or layout.bits_allocated % 8:
        return None
    return frame_codecs.decoded_layout(layout, source_ts)


def native_frame_size(layout: Layout) -> int:
    # Decoded frames are interleaved with full-size samples, even from YBR_FULL_422.
    return layout.rows * layout.columns * layout.samples * layout.bits_allocated // 8


def native_header(header: Dataset, layout: Layout, source_ts: str, frame_count: int) -> Dataset:
    """The header changed as transcode_instance changes it (codecs._to_native_little_endian)."""
    # pydicom.pixels.decompress (and codecs._set_layout for the syntaxes pydicom lacks)
    # always set the photometric interpretation and, for colour, the planar configuration.
    header.PhotometricInterpretation = layout.photometric
    if layout.samples > 1:
        header.PlanarConfiguration = layout.planar
    if source_ts not in frame_codecs.UNREGISTERED_SYNTAXES and (
        "NumberOfFrames" in header or frame_count > 1
    ):
        header.NumberOfFrames = frame_count  # decompress rewrites it, as an integer
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in header:
            del header[keyword]
    header.file_meta.TransferSyntaxUID = pydicom.uid.UID(codecs.EXPLICIT_VR_LE)
    return header


def _pixel_element_header(layout: Layout, native_size: int) -> bytes:
    """Explicit VR LE header of the native Pixel Data, with pydicom's VR and even padding."""
    vr = b"OB" if layout.bits_allocated <= 8 else b"OW"
    padded = native_size + native_size % 2
    return struct.pack("<HH2sHI", PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF, vr, 0, padded)


def _chunks(
    head: bytes,
    first: bytes,
    frame_size: int,
    frame_count: int,
    source_ts: str,
    frame_header: Dataset,
    stored_frame: StoredFrame,
) -> Iterator[bytes]:
    yield head
    yield first
    del head, first  # a long stream should hold one frame, not the first one too
    for number in range(2, frame_count + 1):
        frame = _decoded_frame(stored_frame, frame_header, source_ts, number)
        if len(frame) != frame_size:
            raise _aborted(f"frame {number} decodes to {len(frame)} bytes, not {frame_size}")
        yield frame
        del frame  # not alive while the next one decodes
    if frame_count * frame_size % 2:
        yield b"\0"


def _decoded_frame(
    stored_frame: StoredFrame, frame_header: Dataset, source_ts: str, number: int
) -> bytes:
    try:
        return codecs.decode_frame(stored_frame(number), frame_header, source_ts, number)
    except DicomStoreError as exc:
        raise _aborted(exc.message) from exc


def _aborted(reason: str) -> NotAcceptable:
    message = f"transcoding aborted after the first bytes were sent: {reason}"
    logger.error(message)
    return NotAcceptable(message)
