"""Part-10 ingest parsing: structural validation, key UIDs and frame byte locations."""

from __future__ import annotations

import io
import itertools
import logging
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag

from shared.domain.identifiers import is_valid_uid
from shared.domain.records import FrameSpan
from shared.errors import DicomStoreError, InvalidDicom

logger = logging.getLogger(__name__)

PREAMBLE_LENGTH = 128
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
# Syntaxes whose data set (not just the frames) is deflated after the file meta.
DEFLATED_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"}
)
# JPEG-family syntaxes whose frames end in an EOI/EOC marker (FFD9), used to split fragments.
_MARKER_SYNTAX_PREFIXES = ("1.2.840.10008.1.2.4.",)

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_FLOAT_PIXEL_DATA = 0x7FE00009
PIXEL_TAGS = frozenset({FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA, PIXEL_DATA})
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_MAX_DEPTH = 64
# Values above this size stay on disk until accessed (pydicom reads them lazily from fp).
DEFER_SIZE = 64 * 1024
_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


@dataclass
class ParsedInstance:
    """What ingest needs from one Part-10 file, read without loading the pixel values."""

    dataset: pydicom.Dataset
    transfer_syntax: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    number_of_frames: int
    frames: list[list[FrameSpan]] = field(default_factory=list)
    # Bytes before the pixel data element: a ranged read of these holds every attribute the
    # metadata needs. The whole size when there is no pixel data or the data set is deflated.
    header_length: int = 0
    # Where the pixel data element ends: bytes from here to the end (trailing padding, rare
    # late elements) belong to the metadata too. The file size when there is nothing after.
    trailer_offset: int = 0


@dataclass
class _PixelElement:
    """The top-level pixel data element as found by the scanner."""

    tag: int
    vr: str | None
    value_offset: int
    length: int  # _UNDEFINED for encapsulated pixel data
    end: int
    items: list[tuple[int, int]] = field(default_factory=list)  # (value offset, length)


@dataclass
class _Layout:
    transfer_syntax: str
    implicit: bool
    little: bool
    deflated: bool
    pixel: _PixelElement | None
    no_preamble: bool = False


def read_instance(fp: BinaryIO) -> ParsedInstance:
    """Validate and parse a seekable Part-10 file; raise InvalidDicom for anything malformed."""
    size = _stream_size(fp)
    meta_offset = _check_prefix(fp, size)
    layout = _scan_file(fp, size, meta_offset)
    dataset = _read_dataset(fp, size, layout)
    uids = [_required_uid(dataset, keyword) for keyword in _REQUIRED_UIDS]
    number_of_frames = _number_of_frames(dataset) if layout.pixel is not None else 0
    frames = _locate_frames(fp, dataset, layout, number_of_frames)
    return ParsedInstance(
        dataset=dataset,
        transfer_syntax=layout.transfer_syntax,
        study_uid=uids[0],
        series_uid=uids[1],
        sop_uid=uids[2],
        sop_class_uid=uids[3],
        number_of_frames=number_of_frames,
        frames=frames,
        header_length=_header_length(layout, size),
        trailer_offset=size if layout.pixel is None or layout.deflated else layout.pixel.end,
    )


def _header_length(layout: _Layout, size: int) -> int:
    pixel = layout.pixel
    if pixel is None or layout.deflated:
        return size
    element_header = 8 if layout.implicit else 12  # tag + length, plus VR and padding
    return pixel.value_offset - element_header


def read_transfer_syntax(fp: BinaryIO) -> str:
    """Return the file meta TransferSyntaxUID of a Part-10 file, reading only the file meta."""
    size = _stream_size(fp)
    meta_offset = _check_prefix(fp, size)
    transfer_syntax = _Scanner(fp, size).scan_meta(meta_offset)[1]
    fp.seek(0)
    if not transfer_syntax:
        raise InvalidDicom("invalid DICOM file meta: missing TransferSyntaxUID (0002,0010)")
    return transfer_syntax


def _stream_size(fp: BinaryIO) -> int:
    size = fp.seek(0, io.SEEK_END)
    fp.seek(0)
    return size


def _check_prefix(fp: BinaryIO, size: int) -> int:
    """Where the file meta group starts: after preamble and DICM, or at byte 0.

    Some clients (dicomweb-client among them) send the file meta group without the 128-byte
    preamble and the DICM magic. Google stores such uploads, so we accept them as long as the
    file meta group is there; a data set with no file meta at all is still refused.
    """
    if size == 0:
        raise InvalidDicom("not a DICOM Part-10 file: the file is empty")
    head = fp.read(PREAMBLE_LENGTH + 4)
    if len(head) == PREAMBLE_LENGTH + 4 and head[PREAMBLE_LENGTH:] == b"DICM":
        return PREAMBLE_LENGTH + 4
    if _starts_with_file_meta(head):
        return 0
    raise InvalidDicom(
        "not a DICOM Part-10 file: missing DICM prefix after the preamble and no file meta group"
    )


def _starts_with_file_meta(head: bytes) -> bool:
    # An explicit VR little endian element of group 0002 with a plausible upper-case VR.
    return (
        len(head) >= 8
        and head[:2] == b"\x02\x00"
        and 0x40 < head[4] < 0x5B
        and 0x40 < head[5] < 0x5B
    )


def _truncated(what: str, offset: int) -> InvalidDicom:
    return InvalidDicom(f"truncated or malformed DICOM file: {what} at byte offset {offset}")


class _Scanner:
    """Walks element headers (never values) checking that every length fits its container."""

    def __init__(self, fp: BinaryIO, size: int) -> None:
        self._fp = fp
        self.size = size
        self._pos = -1
        self.pixel: _PixelElement | None = None

    def read(self, pos: int, count: int, limit: int, what: str = "element header") -> bytes:
        if pos + count > limit:
            raise _truncated(f"{what} runs past the end of its container", pos)
        if pos != self._pos:
            self._fp.seek(pos)
        data = self._fp.read(count)
        self._pos = pos + len(data)
        if len(data) != count:
            raise _truncated(f"{what} runs past the end of the file", pos)
        return data

    def scan_meta(self, pos: int) -> tuple[int, str]:
        """Walk the explicit-VR-LE group 0002; return where the data set starts and the TS."""
        transfer_syntax = ""
        while pos + 8 <= self.size:
            tag, vr, length, header = self._header(pos, self.size, False, True)
            if tag >> 16 != 0x0002:
                break
            if length == _UNDEFINED or vr == "SQ":
                raise InvalidDicom(
                    f"invalid file meta element ({tag >> 16:04X},{tag & 0xFFFF:04X})"
                )
            value_pos = pos + header
            if tag == 0x00020010 and length <= 256:
                raw = self.read(value_pos, length, self.size, "TransferSyntaxUID value")
                transfer_syntax = raw.decode("ascii", "replace").strip("\x00 ")
            elif value_pos + length > self.size:
                raise _truncated("file meta element value runs past the end of the file", pos)
            pos = value_pos + length
        return pos, transfer_syntax

    def looks_implicit(self, pos: int, limit: int) -> bool | None:
        """Guess the VR encoding of the element at pos like pydicom does (None: no element)."""
        if pos + 6 > limit:
            return None
        raw = self.read(pos, 6, limit)
        if raw[:2] == b"\xfe\xff" or raw[:2] == b"\xff\xfe":
            return None
        return not (0x40 < raw[4] < 0x5B and 0x40 < raw[5] < 0x5B)

    def _header(
        self, pos: int, limit: int, implicit: bool, little: bool
    ) -> tuple[int, str | None, int, int]:
        raw = self.read(pos, 8, limit)
        order = "<" if little else ">"
        group, elem = struct.unpack(order + "HH", raw[:4])
        tag = group << 16 | elem
        vr_bytes = raw[4:6]
        if implicit or group == 0xFFFE:
            return tag, None, struct.unpack(order + "L", raw[4:])[0], 8
        if vr_bytes in _LONG_VRS:
            length = struct.unpack(order + "L", self.read(pos + 8, 4, limit))[0]
            return tag, vr_bytes.decode("ascii"), length, 12
        if not (0x40 < vr_bytes[0] < 0x5B and 0x40 < vr_bytes[1] < 0x5B):
            # pydicom reads an element without a plausible VR as implicit VR
            return tag, None, struct.unpack(order + "L", raw[4:])[0], 8
        return tag, vr_bytes.decode("ascii"), struct.unpack(order + "H", raw[6:])[0], 8

    def scan_dataset(
        self, pos: int, end: int | None, implicit: bool, little: bool, depth: int
    ) -> int:
        """Walk a data set up to `end`, or up to its item delimiter when `end` is None."""
        if depth > _MAX_DEPTH:
            raise InvalidDicom("malformed DICOM file: sequences are nested too deeply")
        limit = self.size if end is None else end
        while end is None or pos < end:
            tag, vr, length, header = self._header(pos, limit, implicit, little)
            value_pos = pos + header
            if tag == _ITEM_DELIMITER and end is None and depth > 0:
                return value_pos
            if tag >> 16 == 0xFFFE:
                raise _truncated(f"unexpected delimiter tag {tag:08X}", pos)
            if length == _UNDEFINED:
                pos = self._scan_undefined(tag, vr, value_pos, implicit, little, depth)
                continue
            if length % 2:
                raise InvalidDicom(
                    f"malformed DICOM file: odd length {length} for element "
                    f"({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte offset {pos}"
                )
            if value_pos + length > limit:
                raise _truncated(
                    f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes", pos
                )
            if _is_sequence(tag, vr):
                self.scan_items(value_pos, value_pos + length, implicit, little, depth + 1)
            elif depth == 0 and tag in PIXEL_TAGS and self.pixel is None:
                self.pixel = _PixelElement(tag, vr, value_pos, length, value_pos + length)
            pos = value_pos + length
        return pos

    def _scan_undefined(
        self, tag: int, vr: str | None, pos: int, implicit: bool, little: bool, depth: int
    ) -> int:
        if depth == 0 and tag == PIXEL_DATA:
            end, items = self.scan_fragments(pos, little)
            if self.pixel is None:
                self.pixel = _PixelElement(tag, vr, pos, _UNDEFINED, end, items)
            return end
        if vr in (None, "SQ", "UN"):
            # PS3.5 6.2.2: an undefined-length UN holds a sequence in implicit VR little endian
            item_implicit = implicit or vr == "UN"
            return self.scan_items(pos, None, item_implicit, little or vr == "UN", depth + 1)
        return self.scan_fragments(pos, little)[0]

    def scan_items(
        self, pos: int, end: int | None, implicit: bool, little: bool, depth: int
    ) -> int:
        """Walk the items of a sequence up to `end` or its sequence delimiter."""
        limit = self.size if end is None else end
        order = "<" if little else ">"
        while end is None or pos < end:
            group, elem, length = struct.unpack(order + "HHL", self.read(pos, 8, limit, "item"))
            tag = group << 16 | elem
            if tag == _SEQUENCE_DELIMITER and end is None:
                return pos + 8
            if tag != _ITEM:
                raise _truncated(f"expected a sequence item, found tag {tag:08X}", pos)
            body = pos + 8
            item_end = None if length == _UNDEFINED else body + length
            if item_end is not None and item_end > limit:
                raise _truncated(f"sequence item needs {length} bytes", pos)
            item_implicit = implicit
            if not implicit:
                guess = self.looks_implicit(body, item_end or limit)
                item_implicit = bool(guess)
            pos = self.scan_dataset(body, item_end, item_implicit, little, depth)
        return pos

    def scan_fragments(self, pos: int, little: bool) -> tuple[int, list[tuple[int, int]]]:
        """Walk encapsulated items (offset table and fragments) by their headers only."""
        unpack = struct.Struct("<HHL" if little else ">HHL").unpack
        items: list[tuple[int, int]] = []
        fp, size = self._fp, self.size
        # A tight loop: whole-slide images can hold hundreds of thousands of fragments.
        while True:
            if pos + 8 > size:
                raise _truncated("encapsulated item runs past the end of the file", pos)
            fp.seek(pos)
            group, elem, length = unpack(fp.read(8))
            tag = group << 16 | elem
            if tag == _SEQUENCE_DELIMITER:
                self._pos = -1
                return pos + 8, items
            if tag != _ITEM or length == _UNDEFINED:
                raise _truncated(f"invalid encapsulated pixel data item {tag:08X}", pos)
            if pos + 8 + length > size:
                raise _truncated(f"encapsulated fragment needs {length} bytes", pos)
            items.append((pos + 8, length))
            pos += 8 + length


def _is_sequence(tag: int, vr: str | None) -> bool:
    if vr is not None:
        return vr == "SQ"
    if tag >> 16 & 1:
        return False  # private: unknown without its creator, treated as opaque bytes
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:
        return False


def _scan_file(fp: BinaryIO, size: int, meta_offset: int) -> _Layout:
    scanner = _Scanner(fp, size)
    data_offset, transfer_syntax = scanner.scan_meta(meta_offset)
    if not transfer_syntax:
        raise InvalidDicom("invalid DICOM file meta: missing TransferSyntaxUID (0002,0010)")
    if not is_valid_uid(transfer_syntax):
        raise InvalidDicom(f"invalid TransferSyntaxUID {transfer_syntax[:80]!r}")
    implicit = transfer_syntax == IMPLICIT_VR_LE
    little = transfer_syntax != EXPLICIT_VR_BE
    deflated = transfer_syntax in DEFLATED_SYNTAXES
    if deflated:
        scanner = _inflated_scanner(fp, data_offset, size)
        data_offset, size = 0, scanner.size  # the scanner now walks the inflated bytes
    guess = scanner.looks_implicit(data_offset, size)
    if guess is not None:
        implicit = guess  # pydicom switches too when the first element contradicts the TS
    scanner.scan_dataset(data_offset, size, implicit, little, 0)
    return _Layout(
        transfer_syntax, implicit, little, deflated, scanner.pixel, no_preamble=meta_offset == 0
    )


def _inflated_scanner(fp: BinaryIO, offset: int, size: int) -> _Scanner:
    fp.seek(offset)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(fp.read(size - offset)) + inflater.flush()
    except zlib.error as exc:
        raise InvalidDicom(f"invalid deflated DICOM data set: {exc}") from exc
    if not inflater.eof:
        raise InvalidDicom("truncated DICOM file: the deflated data set is incomplete")
    return _Scanner(io.BytesIO(data), len(data))


def _read_dataset(fp: BinaryIO, size: int, layout: _Layout) -> pydicom.Dataset:
    fp.seek(0)
    try:
        if layout.deflated:
            # pydicom inflates the whole data set in memory anyway
            return pydicom.dcmread(fp, force=layout.no_preamble)
        pixel = layout.pixel
        dataset = pydicom.dcmread(
            fp,
            defer_size=DEFER_SIZE,
            stop_before_pixels=pixel is not None,
            force=layout.no_preamble,  # our scanner already validated the structure
        )
        if pixel is not None:
            _attach_pixel_and_tail(fp, size, layout, pixel, dataset)
    except DicomStoreError:
        raise
    except Exception as exc:  # untrusted bytes: pydicom raises many exception types
        raise InvalidDicom(f"could not parse DICOM data set: {exc}") from exc
    return dataset


def _attach_pixel_and_tail(
    fp: BinaryIO, size: int, layout: _Layout, pixel: _PixelElement, dataset: pydicom.Dataset
) -> None:
    # A deferred raw element: pydicom reads the value from fp only if someone asks for it.
    dataset[pixel.tag] = RawDataElement(
        BaseTag(pixel.tag),
        pixel.vr,
        pixel.length,
        None,
        pixel.value_offset,
        layout.implicit,
        layout.little,
    )
    if pixel.end < size:
        fp.seek(pixel.end)
        tail = read_dataset(
            fp, layout.implicit, layout.little, bytelength=size - pixel.end, defer_size=DEFER_SIZE
        )
        for element in tail.elements():  # raw elements stay unconverted and deferred
            dataset[element.tag] = element


def _required_uid(dataset: pydicom.Dataset, keyword: str) -> str:
    try:
        value = dataset.get(keyword)
    except Exception as exc:  # a malformed value may fail to convert
        raise InvalidDicom(f"invalid {keyword}: {exc}") from exc
    if value is None or value == "":
        raise InvalidDicom(f"missing required attribute {keyword}")
    if not isinstance(value, str) or not is_valid_uid(value):
        raise InvalidDicom(f"invalid {keyword} {str(value)[:80]!r}: not a valid UID")
    return str(value)


def _int_attribute(dataset: pydicom.Dataset, keyword: str) -> int | None:
    try:
        value = dataset.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _number_of_frames(dataset: pydicom.Dataset) -> int:
    try:
        value = dataset.get("NumberOfFrames")
    except Exception as exc:
        raise InvalidDicom(f"invalid NumberOfFrames: {exc}") from exc
    if value is None or value == "":
        return 1
    try:
        count = int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidDicom(f"invalid NumberOfFrames {str(value)[:20]!r}") from exc
    if count < 1:
        raise InvalidDicom(f"invalid NumberOfFrames {count}: must be at least 1")
    return count


def _locate_frames(
    fp: BinaryIO, dataset: pydicom.Dataset, layout: _Layout, number_of_frames: int
) -> list[list[FrameSpan]]:
    pixel = layout.pixel
    if pixel is None or layout.deflated:
        return []
    if pixel.length == _UNDEFINED:
        frames = _encapsulated_frames(fp, dataset, layout, pixel, number_of_frames)
    else:
        frames = _native_frames(dataset, pixel, number_of_frames, layout.little)
    if not frames:
        logger.info("frame boundaries not locatable; frames will be extracted on demand")
    return frames


def native_frame_bits(dataset: pydicom.Dataset, pixel_tag: int = PIXEL_DATA) -> int | None:
    """Bits one native frame occupies, or None when the image attributes do not say."""
    rows = _int_attribute(dataset, "Rows")
    columns = _int_attribute(dataset, "Columns")
    samples = _int_attribute(dataset, "SamplesPerPixel") or 1
    bits = _int_attribute(dataset, "BitsAllocated")
    if pixel_tag != PIXEL_DATA:
        bits = 32 if pixel_tag == FLOAT_PIXEL_DATA else 64
    if not rows or not columns or not bits:
        return None
    if samples == 3 and dataset.get("PhotometricInterpretation") == "YBR_FULL_422":
        samples = 2  # two chroma samples shared by each pair of luma samples
    return rows * columns * samples * bits


def _native_frames(
    dataset: pydicom.Dataset, pixel: _PixelElement, number_of_frames: int, little: bool
) -> list[list[FrameSpan]]:
    frame_bits = native_frame_bits(dataset, pixel.tag)
    if not frame_bits or frame_bits % 8:
        return []  # unknown geometry, or bit-packed frames not starting on byte boundaries
    frame_size = frame_bits // 8
    if not little and pixel.vr == "OW" and frame_size % 2:
        return []  # big endian OW swaps byte pairs, which would straddle frame boundaries
    if frame_size * number_of_frames > pixel.length:
        logger.warning("native pixel data is shorter than its image attributes require")
        return []
    return [
        [FrameSpan(pixel.value_offset + index * frame_size, frame_size)]
        for index in range(number_of_frames)
    ]


def _encapsulated_frames(
    fp: BinaryIO,
    dataset: pydicom.Dataset,
    layout: _Layout,
    pixel: _PixelElement,
    number_of_frames: int,
) -> list[list[FrameSpan]]:
    if not pixel.items:
        raise InvalidDicom("invalid encapsulated pixel data: missing Basic Offset Table item")
    table, fragments = pixel.items[0], pixel.items[1:]
    if not fragments:
        return []
    extended = _extended_offset_frames(dataset, fragments, number_of_frames)
    if extended:
        return extended
    if len(fragments) == number_of_frames:
        return [[FrameSpan(offset, length)] for offset, length in fragments]
    if number_of_frames == 1:
        return [[FrameSpan(offset, length) for offset, length in fragments]]
    by_table = _offset_table_frames(fp, table, fragments, number_of_frames)
    if by_table:
        return by_table
    if layout.transfer_syntax.startswith(_MARKER_SYNTAX_PREFIXES):
        return _marker_frames(fp, fragments, number_of_frames)
    return []


def _fragment_index(fragments: list[tuple[int, int]]) -> dict[int, int]:
    """Map each fragment's item-tag offset, relative to the first fragment, to its index."""
    first = fragments[0][0] - 8
    return {offset - 8 - first: index for index, (offset, _) in enumerate(fragments)}


def _extended_offset_frames(
    dataset: pydicom.Dataset, fragments: list[tuple[int, int]], number_of_frames: int
) -> list[list[FrameSpan]]:
    try:
        offsets_raw = dataset.get("ExtendedOffsetTable")
        lengths_raw = dataset.get("ExtendedOffsetTableLengths")
    except Exception:
        return []
    if not offsets_raw or not lengths_raw:
        return []
    count = len(offsets_raw) // 8
    if count != number_of_frames or len(lengths_raw) // 8 != count:
        return []
    offsets = struct.unpack(f"<{count}Q", offsets_raw[: count * 8])
    lengths = struct.unpack(f"<{count}Q", lengths_raw[: count * 8])
    index = _fragment_index(fragments)
    frames: list[list[FrameSpan]] = []
    for offset, length in zip(offsets, lengths, strict=True):
        position = index.get(offset)
        if position is None or length > fragments[position][1]:
            return []
        frames.append([FrameSpan(fragments[position][0], length)])
    return frames


def _offset_table_frames(
    fp: BinaryIO, table: tuple[int, int], fragments: list[tuple[int, int]], number_of_frames: int
) -> list[list[FrameSpan]]:
    offset, length = table
    if length != 4 * number_of_frames:
        return []
    fp.seek(offset)
    starts = list(struct.unpack(f"<{number_of_frames}L", fp.read(length)))
    index = _fragment_index(fragments)
    positions = [index.get(start, -1) for start in starts]
    if positions[0] != 0 or positions != sorted(set(positions)):
        return []  # not a usable table: unknown offsets, or not strictly increasing
    bounds = [*positions, len(fragments)]
    return [
        [FrameSpan(value, size) for value, size in fragments[begin:end]]
        for begin, end in itertools.pairwise(bounds)
    ]


def _marker_frames(
    fp: BinaryIO, fragments: list[tuple[int, int]], number_of_frames: int
) -> list[list[FrameSpan]]:
    """Split fragments at JPEG EOI / JPEG 2000 EOC markers, as pydicom's generate_frames does."""
    frames: list[list[FrameSpan]] = []
    current: list[FrameSpan] = []
    for offset, length in fragments:
        current.append(FrameSpan(offset, length))
        tail = min(length, 10)
        fp.seek(offset + length - tail)
        if b"\xff\xd9" in fp.read(tail):
            frames.append(current)
            current = []
    if current or len(frames) != number_of_frames:
        return []
    return frames
