"""Native-to-native transcoding (byte order, VR encoding) of an instance, streamed in chunks."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.dataset import Dataset

from shared.dicom import codecs
from shared.dicom.parse import PIXEL_DATA
from shared.errors import DicomStoreError

logger = logging.getLogger(__name__)

# Bytes past the header a caller reads: the longest native Pixel Data element header.
PIXEL_ELEMENT_HEADER_LENGTH = 12
# Sources and targets whose pixel data is the stored value as it is, or byte-swapped.
SOURCES = frozenset({codecs.IMPLICIT_VR_LE, codecs.EXPLICIT_VR_LE, codecs.EXPLICIT_VR_BE})
TARGETS = frozenset({codecs.IMPLICIT_VR_LE, codecs.EXPLICIT_VR_LE})
# A multiple of every swap width (1, 2, 4, 8), so only the last chunk may end mid-sample.
CHUNK_SIZE = 1 << 20
_UNDEFINED_LENGTH = 0xFFFFFFFF
_NATIVE_VRS = ("OB", "OW")

# Opens the stored instance for reading (the caller's blob); the stream closes it.
OpenStored = Callable[[], AbstractContextManager[BinaryIO]]


@dataclass(frozen=True)
class StoredPixels:
    """Where the native Pixel Data value lies in the stored instance, and how to send it."""

    value_offset: int
    length: int
    vr: str  # as the whole transcode writes it (OW for implicit VR sources, see pydicom)
    swap_width: int


class StreamAborted(DicomStoreError):
    """The stored bytes stopped matching the index after the first bytes were sent (500)."""


@dataclass(frozen=True)
class StoredStart:
    """The start of a stored instance, as one ranged read gets it."""

    head: bytes  # header_length bytes, then PIXEL_ELEMENT_HEADER_LENGTH more (fewer at the end)
    header_length: int  # every element before the pixel data
    size: int  # of the whole stored instance
    syntax: str
    trailer_offset: int = 0  # where elements after the pixel data start (0: none follow)

    @property
    def pixels_end(self) -> int:
        """Where the pixel data element ends: the elements after it are the caller's."""
        return self.trailer_offset or self.size


def start_native_resyntax(
    stored: StoredStart, target_ts: str, open_stored: OpenStored
) -> Iterator[bytes] | None:
    """The bytes codecs.transcode_instance(instance, target_ts) returns, in bounded chunks.

    The native Pixel Data must end at stored.pixels_end (the elements after it are the
    caller's to send). Everything is checked before the first byte: None means the instance
    does not fit this path and the whole-instance transcode must decide. Stored bytes that run
    out early or go on past stored.size raise StreamAborted while streaming, so the response
    is cut short rather than sent wrong.
    """
    stored_head, header_length, source_ts = stored.head, stored.header_length, stored.syntax
    if source_ts not in SOURCES or target_ts not in TARGETS or source_ts == target_ts:
        return None
    header = stored_header(stored_head[:header_length], source_ts)
    if header is None:
        return None
    pixels = stored_pixels(stored_head, header_length, stored.pixels_end, source_ts, header)
    if pixels is None:
        return None
    try:
        head = codecs.write_native_header(header, source_ts, target_ts)
    except DicomStoreError as exc:
        logger.info("the header does not re-encode alone (%s): transcoding the whole instance", exc)
        return None
    head += _pixel_element_header(pixels, target_ts)
    return _chunks(head, pixels, stored, open_stored)


def stored_header(stored_bytes: bytes, source_ts: str) -> Dataset | None:
    """The data set before the pixel data, if it is encoded as source_ts promises."""
    header = codecs.read_stored_header(stored_bytes, source_ts)
    if header is None:
        return None
    promised = (source_ts == codecs.IMPLICIT_VR_LE, source_ts != codecs.EXPLICIT_VR_BE)
    if tuple(header.original_encoding[:2]) != promised:
        return None  # pydicom found another encoding than the syntax says: whole path
    if not codecs.can_transcode(source_ts, _target_for_checks(source_ts), header):
        return None
    return header


def _target_for_checks(source_ts: str) -> str:
    # The refusals of native targets do not depend on which little endian one it is.
    return codecs.IMPLICIT_VR_LE if source_ts != codecs.IMPLICIT_VR_LE else codecs.EXPLICIT_VR_LE


def stored_pixels(
    stored_head: bytes, header_length: int, pixels_end: int, source_ts: str, header: Dataset
) -> StoredPixels | None:
    """The Pixel Data element at header_length, if it is native and ends at pixels_end."""
    element = stored_head[header_length:]
    if source_ts == codecs.IMPLICIT_VR_LE:
        if len(element) < 8:
            return None
        group, number, length = struct.unpack("<HHI", element[:8])
        vr, value_offset = "OW", header_length + 8  # pydicom writes implicit pixel data OW
    else:
        if len(element) < 12:
            return None
        order = "<" if source_ts == codecs.EXPLICIT_VR_LE else ">"
        group, number, raw_vr, reserved, length = struct.unpack(order + "HH2sHI", element[:12])
        vr, value_offset = raw_vr.decode("latin-1"), header_length + 12
        if vr not in _NATIVE_VRS or reserved:
            return None
    if (group << 16 | number) != PIXEL_DATA or length == _UNDEFINED_LENGTH:
        return None
    if value_offset + length != pixels_end:
        return None  # the index disagrees: whole path
    swap_width = 1
    if source_ts == codecs.EXPLICIT_VR_BE:
        width = codecs.pixel_swap_width(vr, _int(header.get("BitsAllocated")))
        if width is None:
            return None
        swap_width = width
    return StoredPixels(value_offset, length, vr, swap_width)


def _int(value: object) -> int | None:
    try:
        return None if value is None or value == "" else int(str(value))
    except ValueError:
        return None


def _pixel_element_header(pixels: StoredPixels, target_ts: str) -> bytes:
    """The target's Pixel Data element header, with pydicom's even padding of the value."""
    padded = pixels.length + pixels.length % 2
    if target_ts == codecs.IMPLICIT_VR_LE:
        return struct.pack("<HHI", PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF, padded)
    vr = pixels.vr.encode("ascii")
    return struct.pack("<HH2sHI", PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF, vr, 0, padded)


def _chunks(
    head: bytes, pixels: StoredPixels, stored_start: StoredStart, open_stored: OpenStored
) -> Iterator[bytes]:
    stored_size = stored_start.size
    yield head
    del head
    with open_stored() as stored:
        stored.seek(pixels.value_offset)
        remaining = pixels.length
        while remaining:
            # Whole chunks are whole samples, so only the value's odd tail stays unswapped,
            # as in the whole-instance byteswap.
            chunk = _read_exactly(stored, min(CHUNK_SIZE, remaining), stored_size)
            remaining -= len(chunk)
            yield codecs.byteswap(chunk, pixels.swap_width)
            del chunk
        if stored_start.pixels_end == stored_size and stored.read(1):
            raise aborted(f"the stored instance goes on past its {stored_size} bytes")
    if pixels.length % 2:
        yield b"\0"


def _read_exactly(stored: BinaryIO, count: int, stored_size: int) -> bytes:
    data = stored.read(count)
    while len(data) < count:
        more = stored.read(count - len(data))
        if not more:
            raise aborted(f"the stored instance ends before its {stored_size} bytes")
        data += more
    return data


def aborted(reason: str) -> StreamAborted:
    """The error that cuts a stream short, logged (the client sees only a truncated body)."""
    message = f"transcoding aborted after the first bytes were sent: {reason}"
    logger.error(message)
    return StreamAborted(message)
