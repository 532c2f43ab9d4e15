"""One frame of a stored instance as a data set to render, without reading the other frames."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

from pydicom import Dataset, dcmread
from pydicom.encaps import encapsulate

from shared.dicom import codecs
from shared.dicom.parse import PIXEL_DATA
from shared.domain.records import InstanceRecord
from shared.errors import InvalidArgument
from shared.service import retrieve
from shared.service.context import Services

# (data set, frame number within it) that render.render_frame takes for one stored frame.
RenderSource = Callable[[int], tuple[Dataset, int]]


def renderer(services: Services, record: InstanceRecord) -> RenderSource:
    """A function giving, for a frame number, what render_frame needs to show that frame.

    The header range of the blob is read once; each frame then costs one ranged read of its
    own bytes, so rendering frame 7 of a multi-gigabyte instance never loads the others.
    Single-frame instances, and those whose frames cannot be read alone (deflated, big
    endian, no recorded header or spans, float or 1-bit pixels), are loaded whole, once.
    """
    # A single frame is the whole instance: one read and one parse beat reading it in two.
    header = _header_dataset(services, record) if record.number_of_frames > 1 else None
    if header is None:
        dataset = retrieve.load_dataset(services, record)
        return lambda number: (dataset, number)

    def source(number: int) -> tuple[Dataset, int]:
        if not 1 <= number <= record.number_of_frames:
            raise InvalidArgument(
                f"frame number {number} is out of range: the instance has "
                f"{record.number_of_frames} frame(s)"
            )
        _, (frame,) = retrieve.frame_payloads(services, record, [number], None)
        return one_frame_dataset(header, record, number, frame), 1

    return source


def reads_spans(record: InstanceRecord) -> bool:
    """True when retrieve reads a frame as stored from its spans (not deflated or big endian)."""
    whole_instance = (codecs.DEFLATED_EXPLICIT_VR_LE, codecs.EXPLICIT_VR_BE)
    return bool(record.frames) and record.transfer_syntax not in whole_instance


def _header_dataset(services: Services, record: InstanceRecord) -> Dataset | None:
    """Everything before the pixel data, when frames can be rendered from it one by one.

    None when they cannot: no recorded header range or spans, Float Pixel Data (told by the
    tag that follows the header) or bit-packed 1-bit frames.
    """
    if not (record.header_length and reads_spans(record)):
        return None
    data = services.blobs.read_range(record.blob_key, 0, record.header_length + 4)
    if struct.unpack("<HH", data[-4:]) != (PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF):
        return None
    # force: uploads without the 128-byte preamble are stored as sent (validated at ingest).
    header = dcmread(io.BytesIO(data[:-4]), force=True, stop_before_pixels=True)
    return header if int(header.get("BitsAllocated") or 0) > 1 else None


def one_frame_dataset(
    header: Dataset, record: InstanceRecord, number: int, frame: bytes
) -> Dataset:
    """The header with frame `number` as its only frame, as render_frame would see it."""
    dataset = Dataset()
    # Shares the header's elements, so changed ones are replaced with add_new: assigning an
    # attribute would change the shared element's value, and with it the header.
    dataset.update(header)
    dataset.file_meta = header.file_meta
    dataset.add_new("NumberOfFrames", "IS", 1)
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if per_frame and number <= len(per_frame):
        # render reads the functional groups of frame index 0: give it this frame's.
        dataset.add_new("PerFrameFunctionalGroupsSequence", "SQ", [per_frame[number - 1]])
    if record.transfer_syntax in codecs.NATIVE_SYNTAXES:
        bits = int(header.get("BitsAllocated") or 8)
        dataset.add_new(PIXEL_DATA, "OW" if bits > 8 else "OB", frame)
        return dataset
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in dataset:
            del dataset[keyword]
    dataset.add_new(PIXEL_DATA, "OB", encapsulate([frame], has_bot=True))
    dataset[PIXEL_DATA].is_undefined_length = True
    return dataset
