"""Lossy transcoding frame by frame through a temporary file, as the header needs every size."""

from __future__ import annotations

import logging
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.encaps import itemize_frame

from shared.dicom import codecs, frame_codecs, streaming_encode
from shared.dicom.streaming_encode import Started
from shared.dicom.streaming_native import StoredStart
from shared.dicom.streaming_transcode import StoredFrame
from shared.errors import DicomStoreError

logger = logging.getLogger(__name__)

# Lossy targets: LossyImageCompressionRatio, in the header, is the native size over the sum
# of every encoded frame's length, so the frames are encoded to a spool before the header.
TARGETS = frozenset(frame_codecs.LOSSY_METHODS)
READ_SIZE = 1 << 20


def start_spooled_stream(
    stored: StoredStart,
    target_ts: str,
    frame_header: Dataset,
    frame_count: int,
    stored_frame: StoredFrame,
    spool_dir: Path,
) -> Iterator[bytes] | None:
    """The bytes codecs.transcode_instance(instance, target_ts) returns, for a lossy target.

    As streaming_encode.start_encoded_stream (same preconditions, frame 1 encoded before
    returning, None for the whole transcode), except that every frame is encoded into a
    temporary file in spool_dir on the first next() before the header goes out: a frame that
    fails then raises before any byte is sent. The file is removed when the stream ends,
    fails or is closed.
    """
    if target_ts not in TARGETS:
        return None
    started = streaming_encode.start_encoding(
        stored, target_ts, frame_header, frame_count, stored_frame
    )
    if started is None:
        return None
    try:
        codecs.write_part10(started.header)  # before the frames are spooled, not after
    except DicomStoreError as exc:
        logger.info("the header does not transcode alone (%s): whole instance", exc)
        return None
    return _spooled_chunks(started, target_ts, frame_count, spool_dir)


def _spooled_chunks(
    started: Started, target_ts: str, frame_count: int, spool_dir: Path
) -> Iterator[bytes]:
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        lengths = _spool_items(started, frame_count, spool)
        header, native_size = started.header, started.source.native_size
        del started  # frame 1 is in the spool now
        if codecs.needs_extended_offsets(lengths):
            _set_extended_offsets(header, lengths)
        codecs.mark_lossy(header, target_ts, native_size, sum(lengths))
        yield codecs.write_part10(header) + streaming_encode.ENCAPSULATED_START
        del header
        spool.seek(0)
        while chunk := spool.read(READ_SIZE):
            yield chunk
            del chunk  # not alive while the next one is read
    yield streaming_encode.SEQUENCE_DELIMITER


def _spool_items(started: Started, frame_count: int, spool: BinaryIO) -> list[int]:
    """Each frame as its Pixel Data item in the spool; returns the encoded frame lengths."""
    lengths = []
    for number in range(1, frame_count + 1):
        encoded = started.first if number == 1 else started.next_frame(number)
        lengths.append(len(encoded))
        spool.write(b"".join(itemize_frame(encoded, 1)))
        del encoded  # not alive while the next one is encoded
    return lengths


def _set_extended_offsets(header: Dataset, lengths: list[int]) -> None:
    """The Extended Offset Table pydicom.encaps.encapsulate_extended computes (items padded)."""
    padded = [length + length % 2 for length in lengths]
    offsets = [0]
    for length in padded[:-1]:
        offsets.append(offsets[-1] + length + 8)
    header.ExtendedOffsetTable = struct.pack(f"<{len(lengths)}Q", *offsets)
    header.ExtendedOffsetTableLengths = struct.pack(f"<{len(lengths)}Q", *padded)
