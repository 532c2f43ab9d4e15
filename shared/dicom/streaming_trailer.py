"""Elements after the pixel data (trailing padding, late elements) re-encoded for a stream."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import BinaryIO, cast

import pydicom
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from shared.dicom import codecs
from shared.dicom.parse import PIXEL_DATA
from shared.errors import DicomStoreError

logger = logging.getLogger(__name__)

# A trailer is held whole while the pixel data streams; a larger one means the whole path.
MAX_SIZE = 1 << 20


def target_trailer(
    stored_header: bytes, stored_trailer: bytes, source_ts: str, target_ts: str
) -> bytes | None:
    """What transcode_instance writes after the pixel data for these stored trailing bytes.

    stored_header holds the elements before the pixel data (their character set decodes the
    trailer's text), stored_trailer every byte after the pixel data element. None when the
    trailer is too large, does not parse exactly as source_ts promises, or holds an element
    the whole transcode would move before the pixel data: the whole path decides those.
    """
    if len(stored_trailer) > MAX_SIZE:
        return None
    try:
        encodings = _character_set(stored_header)
        trailer = _parsed(stored_trailer, source_ts, encodings)
    except Exception as exc:  # untrusted bytes: pydicom raises many exception types
        logger.info("the trailer does not parse alone (%s): transcoding the whole instance", exc)
        return None
    if trailer is None:
        return None
    trailer.file_meta = FileMetaDataset()
    try:
        codecs.native_header(trailer, source_ts)  # big endian OW/OF/... values swapped
        return _encoded(trailer, target_ts, encodings)
    except (DicomStoreError, ValueError, TypeError, AttributeError) as exc:
        logger.info("the trailer does not re-encode alone (%s): whole instance", exc)
        return None


def followed_by(stream: Iterator[bytes], tail: bytes) -> Iterator[bytes]:
    """stream's bytes, then tail (closing this closes stream)."""
    yield from stream
    yield tail


def _character_set(stored_header: bytes) -> str | list[str]:
    header = pydicom.dcmread(
        io.BytesIO(stored_header), force=True, specific_tags=["SpecificCharacterSet"]
    )
    value = header.get("SpecificCharacterSet")
    return convert_encodings(value) if value else default_encoding


def _parsed(stored_trailer: bytes, source_ts: str, encodings: str | list[str]) -> Dataset | None:
    """The trailing elements, if they re-encode in source_ts to exactly the stored bytes."""
    promised = (source_ts == codecs.IMPLICIT_VR_LE, source_ts != codecs.EXPLICIT_VR_BE)
    data = cast(BinaryIO, DicomBytesIO(stored_trailer))
    trailer = read_dataset(data, *promised, parent_encoding=encodings)
    if tuple(trailer.original_encoding[:2]) != promised or not len(trailer):
        return None
    if min(trailer.keys()) <= PIXEL_DATA:
        return None  # written before the pixel data by the whole transcode
    if _written(trailer, *promised, encodings) != stored_trailer:
        return None  # pydicom read something else than the stored bytes hold
    return trailer


def _encoded(trailer: Dataset, target_ts: str, encodings: str | list[str]) -> bytes:
    implicit = target_ts == codecs.IMPLICIT_VR_LE
    return _written(trailer, implicit, True, encodings)


def _written(
    dataset: Dataset, implicit: bool, little_endian: bool, encodings: str | list[str]
) -> bytes:
    # Convert every raw element first, as codecs.write_part10 does.
    for _ in dataset.iterall():
        pass
    stream = DicomBytesIO()
    stream.is_implicit_VR, stream.is_little_endian = implicit, little_endian
    write_dataset(stream, dataset, parent_encoding=encodings)
    return stream.getvalue()
