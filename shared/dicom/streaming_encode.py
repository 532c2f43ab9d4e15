"""Transcoding to a lossless encapsulated syntax, one frame decoded and encoded at a time."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import itemize_frame

from shared.dicom import codecs, frame_codecs, streaming_native, streaming_transcode
from shared.dicom.frame_codecs import Layout
from shared.dicom.parse import PIXEL_DATA, native_frame_bits
from shared.dicom.streaming_native import StoredStart
from shared.dicom.streaming_transcode import StoredFrame
from shared.errors import DicomStoreError, NotAcceptable

logger = logging.getLogger(__name__)

# Lossy targets write their compression ratio, known only once every frame is encoded, into
# the header: streaming_spool sends them. JPEG XL recompression repacks stored JPEG frames and
# is transcoded whole.
TARGETS = frozenset(
    {
        codecs.JPEG_LOSSLESS,
        codecs.JPEG_LOSSLESS_SV1,
        codecs.JPEG_LS_LOSSLESS,
        codecs.JPEG_2000_LOSSLESS,
        codecs.HTJ2K_LOSSLESS,
        codecs.HTJ2K_LOSSLESS_RPCL,
        codecs.JPEG_XL_LOSSLESS,
        codecs.RLE_LOSSLESS,
        codecs.DEFLATED_IMAGE_FRAME,
    }
)
NATIVE_SOURCES = streaming_native.SOURCES
# The encapsulated Pixel Data element header and its empty Basic Offset Table.
ENCAPSULATED_START = struct.pack(
    "<HH2sHI", PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF, b"OB", 0, 0xFFFFFFFF
) + struct.pack("<HHI", 0xFFFE, 0xE000, 0)
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


@dataclass(frozen=True)
class Source:
    """How to turn a stored frame into the native little endian frame the encoder takes."""

    syntax: str
    frame_header: Dataset
    layout: Layout  # of the native frames
    frame_size: int
    swap_width: int  # big endian sources
    native_size: int  # of the whole native Pixel Data value, as the whole transcode holds it


def start_encoded_stream(
    stored: StoredStart,
    target_ts: str,
    frame_header: Dataset,
    frame_count: int,
    stored_frame: StoredFrame,
) -> Iterator[bytes] | None:
    """The bytes codecs.transcode_instance(instance, target_ts) returns, frame by frame.

    The Pixel Data must be the stored instance's last element; frame_header describes the
    stored frames as decode_frame wants them. The header and the first frame are decoded and
    encoded before the first byte: None means the whole-instance transcode must decide (and
    give a broken instance its error). A later frame that fails raises while streaming, so
    the response is aborted rather than sent wrong.
    """
    if target_ts not in TARGETS:
        return None
    started = start_encoding(stored, target_ts, frame_header, frame_count, stored_frame)
    if started is None:
        return None
    try:
        head = codecs.write_part10(started.header) + ENCAPSULATED_START
    except DicomStoreError as exc:
        logger.info("the header does not transcode alone (%s): whole instance", exc)
        return None
    return _chunks(head, started.first, frame_count, started.next_frame)


@dataclass(frozen=True)
class Started:
    """An encoded transcode whose header and first frame are done."""

    header: Dataset  # as the whole transcode writes it, lossy compression marks aside
    source: Source
    first: bytes  # frame 1, encoded
    next_frame: Callable[[int], bytes]  # frame n (1-based), encoded


def start_encoding(
    stored: StoredStart,
    target_ts: str,
    frame_header: Dataset,
    frame_count: int,
    stored_frame: StoredFrame,
) -> Started | None:
    """The header and frame 1 of an encapsulated target, or None for the whole transcode."""
    source_ts = stored.syntax
    if source_ts == target_ts:
        return None
    prepared = prepared_source(stored, frame_header, frame_count)
    if prepared is None:
        return None
    header, source = prepared
    if not codecs.can_transcode(source_ts, target_ts, header):
        return None
    try:
        first = encoded_frame(source, target_ts, stored_frame(1), 1)
        codecs.set_encoded_layout(header, source.layout, target_ts)
    except DicomStoreError as exc:
        logger.info("frame 1 does not transcode alone (%s): transcoding the whole instance", exc)
        return None
    header.file_meta.TransferSyntaxUID = pydicom.uid.UID(target_ts)
    return Started(
        header, source, first, lambda n: encoded_frame(source, target_ts, stored_frame(n), n)
    )


def prepared_source(
    stored: StoredStart, frame_header: Dataset, frame_count: int
) -> tuple[Dataset, Source] | None:
    """The stored header changed as decoding to native little endian changes it."""
    stored_head, header_length, source_ts = stored.head, stored.header_length, stored.syntax
    if source_ts in NATIVE_SOURCES:
        header = streaming_native.stored_header(stored_head[:header_length], source_ts)
        if header is None or streaming_transcode.header_frame_count(header) != frame_count:
            return None
        pixels = streaming_native.stored_pixels(
            stored_head, header_length, stored.pixels_end, source_ts, header
        )
        layout = frame_codecs.layout_of(header)
        if pixels is None or layout is None or layout.bits_allocated % 8:
            return None
        frame_bits = native_frame_bits(header)
        if frame_bits is None:
            return None
        codecs.native_header(header, source_ts)
        frame_size, swap_width = frame_bits // 8, pixels.swap_width
        return header, Source(source_ts, header, layout, frame_size, swap_width, pixels.length)
    header = streaming_transcode.stored_header(stored_head, header_length, source_ts, frame_count)
    if header is None:
        return None
    layout = streaming_transcode.decoded_layout(header, source_ts)
    if layout is None:
        return None
    streaming_transcode.native_header(header, layout, source_ts, frame_count)
    size = streaming_transcode.native_frame_size(layout)
    native_size = frame_count * size + frame_count * size % 2  # decompress pads to even
    return header, Source(source_ts, frame_header, layout, size, 1, native_size)


def _native(source: Source, stored: bytes, number: int) -> bytes:
    if source.syntax in NATIVE_SOURCES:
        native = codecs.byteswap(stored, source.swap_width)
    else:
        native = codecs.decode_frame(stored, source.frame_header, source.syntax, number)
    if len(native) != source.frame_size:
        raise NotAcceptable(
            f"frame {number} decodes to {len(native)} bytes, not {source.frame_size}"
        )
    return native


def encoded_frame(source: Source, target_ts: str, stored: bytes, number: int) -> bytes:
    native = _native(source, stored, number)
    try:
        return frame_codecs.encode_native_frame(native, source.layout, target_ts)
    except Exception as exc:  # encoder libraries raise RuntimeError/ValueError and their own
        raise NotAcceptable(f"frame {number} does not encode ({exc})") from exc


def _chunks(
    head: bytes, first: bytes, frame_count: int, next_frame: Callable[[int], bytes]
) -> Iterator[bytes]:
    yield head
    del head
    offset = 0
    encoded = first
    for number in range(1, frame_count + 1):
        if number > 1:
            encoded = _later_frame(next_frame, number)
        # Past codecs.MAX_BASIC_OFFSET before the last item the whole transcode writes an
        # Extended Offset Table into the header, which a stream has already sent without one.
        offset += len(encoded) + 8  # as codecs.needs_extended_offsets counts
        if number < frame_count and offset > codecs.MAX_BASIC_OFFSET:
            raise streaming_native.aborted("the frames need an Extended Offset Table in the header")
        yield b"".join(itemize_frame(encoded, 1))
        del encoded  # not alive while the next one is encoded
    yield SEQUENCE_DELIMITER


def _later_frame(next_frame: Callable[[int], bytes], number: int) -> bytes:
    try:
        return next_frame(number)
    except DicomStoreError as exc:
        raise streaming_native.aborted(exc.message) from exc
