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
# the header; JPEG XL recompression repacks stored JPEG frames. Both are transcoded whole.
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
_ENCAPSULATED_PIXEL_HEADER = struct.pack(
    "<HH2sHI", PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF, b"OB", 0, 0xFFFFFFFF
)
_EMPTY_OFFSET_TABLE = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
# PS3.5 A.4: past this many bytes before the last item the whole transcode writes an
# Extended Offset Table into the header, which a stream has already sent without one.
_MAX_OFFSET = 2**32 - 1


@dataclass(frozen=True)
class _Source:
    """How to turn a stored frame into the native little endian frame the encoder takes."""

    syntax: str
    frame_header: Dataset
    layout: Layout  # of the native frames
    frame_size: int
    swap_width: int  # big endian sources


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
    source_ts = stored.syntax
    if target_ts not in TARGETS or source_ts == target_ts:
        return None
    prepared = _prepared(stored, frame_header, frame_count)
    if prepared is None:
        return None
    header, source = prepared
    if not codecs.can_transcode(source_ts, target_ts, header):
        return None
    try:
        first = _encoded(source, target_ts, stored_frame(1), 1)
        codecs.set_encoded_layout(header, source.layout, target_ts)
        header.file_meta.TransferSyntaxUID = pydicom.uid.UID(target_ts)
        head = codecs.write_part10(header) + _ENCAPSULATED_PIXEL_HEADER + _EMPTY_OFFSET_TABLE
    except DicomStoreError as exc:
        logger.info("frame 1 or the header does not transcode alone (%s): whole instance", exc)
        return None
    return _chunks(
        head, first, frame_count, lambda n: _encoded(source, target_ts, stored_frame(n), n)
    )


def _prepared(
    stored: StoredStart, frame_header: Dataset, frame_count: int
) -> tuple[Dataset, _Source] | None:
    """The stored header changed as decoding to native little endian changes it."""
    stored_head, header_length, source_ts = stored.head, stored.header_length, stored.syntax
    if source_ts in NATIVE_SOURCES:
        header = streaming_native.stored_header(stored_head[:header_length], source_ts)
        if header is None or streaming_transcode.header_frame_count(header) != frame_count:
            return None
        pixels = streaming_native.stored_pixels(
            stored_head, header_length, stored.size, source_ts, header
        )
        layout = frame_codecs.layout_of(header)
        if pixels is None or layout is None or layout.bits_allocated % 8:
            return None
        frame_bits = native_frame_bits(header)
        if frame_bits is None:
            return None
        codecs.native_header(header, source_ts)
        return header, _Source(source_ts, header, layout, frame_bits // 8, pixels.swap_width)
    header = streaming_transcode.stored_header(stored_head, header_length, source_ts, frame_count)
    if header is None:
        return None
    layout = streaming_transcode.decoded_layout(header, source_ts)
    if layout is None:
        return None
    streaming_transcode.native_header(header, layout, source_ts, frame_count)
    size = streaming_transcode.native_frame_size(layout)
    return header, _Source(source_ts, frame_header, layout, size, 1)


def _native(source: _Source, stored: bytes, number: int) -> bytes:
    if source.syntax in NATIVE_SOURCES:
        native = codecs.byteswap(stored, source.swap_width)
    else:
        native = codecs.decode_frame(stored, source.frame_header, source.syntax, number)
    if len(native) != source.frame_size:
        raise NotAcceptable(
            f"frame {number} decodes to {len(native)} bytes, not {source.frame_size}"
        )
    return native


def _encoded(source: _Source, target_ts: str, stored: bytes, number: int) -> bytes:
    native = _native(source, stored, number)
    try:
        return frame_codecs.encode_native_frame(native, source.layout, target_ts)
    except Exception as exc:  # encoder libraries raise RuntimeError/ValueError and their own
        raise NotAcceptable(f"frame {number} does not encode ({exc})") from exc


def _chunks(
    head: bytes, first: bytes, frame_count: int, encoded_frame: Callable[[int], bytes]
) -> Iterator[bytes]:
    yield head
    del head
    offset = 0
    encoded = first
    for number in range(1, frame_count + 1):
        if number > 1:
            encoded = _later_frame(encoded_frame, number)
        offset += len(encoded) + 8  # as codecs._set_encapsulated counts
        if number < frame_count and offset > _MAX_OFFSET:
            raise streaming_native.aborted("the frames need an Extended Offset Table in the header")
        yield b"".join(itemize_frame(encoded, 1))
        del encoded  # not alive while the next one is encoded
    yield _SEQUENCE_DELIMITER


def _later_frame(encoded_frame: Callable[[int], bytes], number: int) -> bytes:
    try:
        return encoded_frame(number)
    except DicomStoreError as exc:
        raise streaming_native.aborted(exc.message) from exc
