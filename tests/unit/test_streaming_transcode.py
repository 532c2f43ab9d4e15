"""Frame-by-frame transcoding: whole-instance fallback before the first byte, abort after it."""

from __future__ import annotations

import io
from collections.abc import Callable

import pydicom
import pytest
from pydicom.uid import RLELossless

from shared.dicom import codecs
from shared.dicom.parse import ParsedInstance, read_instance
from shared.dicom.streaming_transcode import PIXEL_ELEMENT_HEADER_LENGTH, start_native_stream
from shared.errors import NotAcceptable
from tests.dicom_factory import Spec, make_dataset, to_bytes


def _rle_instance() -> bytes:
    dataset = make_dataset(Spec(rows=16, columns=12, frames=3))
    dataset.compress(RLELossless, generate_instance_uid=False)
    return to_bytes(dataset)


def _frame_reader(data: bytes, parsed: ParsedInstance) -> Callable[[int], bytes]:
    def stored_frame(number: int) -> bytes:
        spans = parsed.frames[number - 1]
        return b"".join(data[s.offset : s.offset + s.length] for s in spans)

    return stored_frame


def _start(
    data: bytes,
    stored_frame: Callable[[int], bytes] | None = None,
    frame_header: pydicom.Dataset | None = None,
    header_length: int | None = None,
) -> list[bytes] | None:
    parsed = read_instance(io.BytesIO(data))
    length = parsed.header_length if header_length is None else header_length
    head = data[: length + PIXEL_ELEMENT_HEADER_LENGTH]
    if frame_header is None:
        frame_header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    stream = start_native_stream(
        head,
        length,
        parsed.transfer_syntax,
        frame_header,
        len(parsed.frames),
        stored_frame or _frame_reader(data, parsed),
    )
    return None if stream is None else list(stream)


def test_the_stream_is_the_whole_transcode_in_pieces() -> None:
    data = _rle_instance()
    chunks = _start(data)
    assert chunks is not None and len(chunks) == 4  # header, then one chunk per frame
    assert b"".join(chunks) == codecs.transcode_instance(io.BytesIO(data), codecs.EXPLICIT_VR_LE)


def test_an_undecodable_first_frame_leaves_the_instance_to_the_whole_transcode() -> None:
    data = _rle_instance()
    parsed = read_instance(io.BytesIO(data))
    frames = _frame_reader(data, parsed)
    assert _start(data, lambda n: b"not rle" if n == 1 else frames(n)) is None


def test_a_first_frame_of_another_size_leaves_the_instance_to_the_whole_transcode() -> None:
    data = _rle_instance()
    smaller = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    smaller.Rows = 8  # the frames decode to half the size the stored header promises
    assert _start(data, frame_header=smaller) is None


def test_a_header_range_that_does_not_end_at_the_pixel_data_is_not_streamed() -> None:
    data = _rle_instance()
    parsed = read_instance(io.BytesIO(data))
    assert _start(data, header_length=parsed.header_length - 2) is None


def test_a_later_frame_that_fails_aborts_the_stream_after_the_first_bytes() -> None:
    data = _rle_instance()
    parsed = read_instance(io.BytesIO(data))
    frames = _frame_reader(data, parsed)
    head = data[: parsed.header_length + PIXEL_ELEMENT_HEADER_LENGTH]
    frame_header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    stream = start_native_stream(
        head,
        parsed.header_length,
        parsed.transfer_syntax,
        frame_header,
        3,
        lambda n: b"not rle" if n == 3 else frames(n),
    )
    assert stream is not None
    whole = codecs.transcode_instance(io.BytesIO(data), codecs.EXPLICIT_VR_LE)
    sent = next(stream) + next(stream) + next(stream)
    assert whole.startswith(sent)  # header, frames 1 and 2: right so far
    with pytest.raises(NotAcceptable, match="aborted"):
        next(stream)
