"""Part-10 instances built from a STOW-RS request of DICOM JSON metadata and bulk data parts."""

# Request shape (PS3.18 10.5 and Google's rules, spec 2.2 B): the first part is a JSON array of
# DICOM JSON objects; every later part carries the value of one BulkDataURI, named by its
# Content-Location. Errors that make the whole request unusable raise InvalidArgument before
# anything is built; errors confined to one instance become that instance's failure.

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, MPEGTransferSyntaxes

from shared.dicom.multipart import Part, parse_media_type
from shared.dicom.parse import DEFLATED_SYNTAXES, EXPLICIT_VR_BE, IMPLICIT_VR_LE, read_instance
from shared.domain.identifiers import is_valid_uid
from shared.errors import InvalidArgument, InvalidDicom

logger = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
# FailureReason 0x0110 "Processing failure": what Google reports for every invalid instance.
PROCESSING_FAILURE = 272
# Limits of this store (Google documents none): one InlineBinary value after base64 decoding,
# and the whole JSON metadata part. Larger values belong in bulk data parts.
MAX_INLINE_BINARY_BYTES = 10 * 1024 * 1024
MAX_METADATA_BYTES = 64 * 1024 * 1024
# Bulk part bodies stay in memory up to this size, then move to a temporary file.
SPOOL_MEMORY_BYTES = 4 * 1024 * 1024

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
PIXEL_DATA = 0x7FE00010
_NATIVE_SYNTAXES = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE})
_REFUSED_SYNTAXES = frozenset({EXPLICIT_VR_BE}) | DEFLATED_SYNTAXES
# pydicom 3.0 does not know JPEG XL yet; Google accepts it.
_JPEG_XL_SYNTAXES = frozenset({f"1.2.840.10008.1.2.4.{n}" for n in (110, 111, 112)})
# A video stream is one fragment sequence however many frames it holds (PS3.5 8.2.5).
_VIDEO_SYNTAXES = frozenset(MPEGTransferSyntaxes)
_BULK_VRS = frozenset({"OB", "OW", "UN"})
_ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian: the value is encapsulated already
_PARAM = "transfer-syntax"


def _syntaxes(*suffixes: str) -> frozenset[str]:
    return frozenset(f"1.2.840.10008.1.2.{s}" for s in suffixes)


# Accepted image bulk types: (default syntax when the parameter is absent, allowed syntaxes).
# The defaults are PS3.18's; image/jxl has none here, so it must name its syntax.
_IMAGE_TYPES: dict[str, tuple[str | None, frozenset[str]]] = {
    "image/jpeg": ("1.2.840.10008.1.2.4.50", _syntaxes("4.50", "4.51", "4.57", "4.70")),
    "image/dicom-rle": ("1.2.840.10008.1.2.5", _syntaxes("5")),
    "image/jls": ("1.2.840.10008.1.2.4.80", _syntaxes("4.80", "4.81")),
    "image/jp2": ("1.2.840.10008.1.2.4.90", _syntaxes("4.90", "4.91")),
    "image/jpx": ("1.2.840.10008.1.2.4.92", _syntaxes("4.92", "4.93")),
    "image/jxl": (None, _JPEG_XL_SYNTAXES),
}
_REQUIRED = (
    (0x00080005, "SpecificCharacterSet"),
    (0x00020010, "TransferSyntaxUID"),
    (0x00080016, "SOPClassUID"),
    (0x0020000D, "StudyInstanceUID"),
    (0x0020000E, "SeriesInstanceUID"),
    (0x00080018, "SOPInstanceUID"),
)
_SOP_CLASS_UID = 0x00080016
_SOP_INSTANCE_UID = 0x00080018
_STUDY_UID = 0x0020000D
_SERIES_UID = 0x0020000E
_UID_TAGS = (
    (_SOP_CLASS_UID, "SOPClassUID"),
    (_STUDY_UID, "StudyInstanceUID"),
    (_SERIES_UID, "SeriesInstanceUID"),
    (_SOP_INSTANCE_UID, "SOPInstanceUID"),
)
_NUMBER_OF_FRAMES = 0x00280008


@dataclass
class BuiltInstance:
    """One instance of the request: its Part-10 bytes, or why it cannot be stored.

    UIDs are "" when the metadata lacks them or they are not valid UIDs.
    """

    data: bytes | None
    sop_class_uid: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    failure: str | None = None
    failure_reason: int | None = None


@dataclass
class _BulkRef:
    uri: str
    tag: int
    vr: str
    nested: bool  # inside a sequence item


@dataclass
class _Plan:
    """One metadata object with what the scan found in it."""

    source: dict[str, Any]
    elements: dict[int, Any] = field(default_factory=dict)  # top level, keys as integer tags
    refs: list[_BulkRef] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class _BulkPart:
    media_type: str
    transfer_syntax: str | None  # None: raw value bytes; otherwise one compressed codestream
    body: IO[bytes]


def build_instances(
    parts: Iterator[Part], *, spool: Callable[[], IO[bytes]] | None = None
) -> list[BuiltInstance]:
    """Read a multipart/related; type="application/dicom+json" body and build its instances.

    Raises InvalidArgument when the request as a whole is malformed; nothing is built then.
    `spool` makes the temporary file that holds one bulk part body (for example
    `Services.spool`); by default bodies over SPOOL_MEMORY_BYTES go to the system temp dir.
    """
    first = next(parts, None)
    if first is None:
        raise InvalidArgument("the request holds no part: expected DICOM JSON metadata first")
    plans = [_scan_instance(obj) for obj in _read_metadata(first)]
    referenced = _referenced_uris(plans)
    with contextlib.ExitStack() as stack:
        bulk = _read_bulk_parts(parts, referenced, stack, spool or _default_spool)
        missing = [uri for uri in referenced if uri not in bulk]
        if missing:
            raise InvalidArgument(
                f"BulkDataURI {_shorten(missing[0])!r} has no part: send its value in a part "
                "whose Content-Location header equals the URI"
            )
        built = [_build(plan, bulk) for plan in plans]
    stored = sum(1 for b in built if b.data is not None)
    logger.info("built %d of %d instances from DICOM JSON metadata", stored, len(built))
    return built


# -- metadata part ----------------------------------------------------------------------------


def _read_metadata(part: Part) -> list[dict[str, Any]]:
    _check_metadata_type(part.content_type)
    raw = part.body.read(MAX_METADATA_BYTES + 1)
    if len(raw) > MAX_METADATA_BYTES:
        raise InvalidArgument(
            f"the DICOM JSON metadata part exceeds {MAX_METADATA_BYTES} bytes; "
            "send large values as bulk data parts"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"the DICOM JSON metadata is not valid UTF-8 (byte offset {exc.start})"
        ) from None
    try:
        objects = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"malformed DICOM JSON metadata: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidArgument("malformed DICOM JSON metadata: nested too deeply") from None
    return _check_array(objects)


def _check_metadata_type(content_type: str) -> None:
    if not content_type:
        raise InvalidArgument(f"the first part has no Content-Type; expected {DICOM_JSON}")
    media_type, params = parse_media_type(content_type)
    if media_type != DICOM_JSON:
        raise InvalidArgument(
            f"the first part must be {DICOM_JSON} (a JSON array of instances), not {media_type!r}"
        )
    charset = params.get("charset")
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise InvalidArgument(f"DICOM JSON must be UTF-8, not charset {_shorten(charset)!r}")
    syntax = params.get(_PARAM)
    # InlineBinary bytes are copied as they are, so they must already be little endian.
    if syntax is not None and (not is_valid_uid(syntax) or syntax == EXPLICIT_VR_BE):
        raise InvalidArgument(
            f"unsupported transfer-syntax {_shorten(syntax)!r} for the DICOM JSON part: "
            "InlineBinary values must be little endian"
        )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python keeps the last of two equal keys; an instance must not mean two things.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise InvalidArgument(f"malformed DICOM JSON metadata: duplicate key {_shorten(key)!r}")
        obj[key] = value
    return obj


def _check_array(objects: Any) -> list[dict[str, Any]]:
    if not isinstance(objects, list):
        raise InvalidArgument(
            f"the DICOM JSON metadata must be an array of instances, not a JSON "
            f"{_json_kind(objects)}"
        )
    if not objects:
        raise InvalidArgument("the DICOM JSON metadata array holds no instance")
    for number, obj in enumerate(objects, start=1):
        if not isinstance(obj, dict):
            raise InvalidArgument(
                f"metadata item {number} must be a DICOM JSON object, not a JSON {_json_kind(obj)}"
            )
    return objects


def _json_kind(value: Any) -> str:
    kinds = ((dict, "object"), (list, "array"), (str, "string"), (bool, "boolean"))
    for kind, name in kinds:
        if isinstance(value, kind):
            return name
    return "null" if value is None else "number"


def _scan_instance(obj: dict[str, Any]) -> _Plan:
    plan = _Plan(source=obj)
    _scan_elements(obj, plan, nested=False)
    return plan


def _scan_elements(obj: dict[str, Any], plan: _Plan, *, nested: bool) -> None:
    """Collect BulkDataURIs and per-instance problems; raise for request-level errors."""
    for key, element in obj.items():
        tag = _parse_tag(key)
        if tag is None:
            plan.problems.append(f"invalid attribute key {_shorten(key)!r}: expected 8 hex digits")
            continue
        if not nested:
            if tag in plan.elements:
                plan.problems.append(f"attribute {key} appears twice")
            plan.elements[tag] = element
        if not isinstance(element, dict) or not isinstance(element.get("vr"), str):
            plan.problems.append(f"attribute {key} must be a JSON object with a string vr")
            continue
        _scan_element(key, tag, element, plan, nested)


def _scan_element(key: str, tag: int, element: dict[str, Any], plan: _Plan, nested: bool) -> None:
    vr = element["vr"]
    if "BulkDataURI" in element:
        uri = element["BulkDataURI"]
        if not isinstance(uri, str) or not uri:
            plan.problems.append(f"attribute {key}: BulkDataURI must be a non-empty string")
        else:
            plan.refs.append(_BulkRef(uri, tag, vr, nested))
        if vr not in _BULK_VRS:
            plan.problems.append(
                f"attribute {key} has VR {_shorten(vr, 10)}: BulkDataURI is allowed only for "
                "VR OB, OW or UN"
            )
    if "InlineBinary" in element:
        _check_inline(key, element["InlineBinary"])
        if tag == PIXEL_DATA and not nested:
            plan.problems.append(
                "PixelData (7FE0,0010) cannot be InlineBinary: send it as a bulk data part"
            )
    if vr == "SQ":
        for item in element.get("Value") or []:
            if isinstance(item, dict):
                _scan_elements(item, plan, nested=True)
            else:
                plan.problems.append(f"sequence {key}: every item must be a JSON object")


def _check_inline(key: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"InlineBinary of attribute {key} must be a base64 string")
    # 4 base64 characters carry 3 bytes: refuse before decoding anything oversized.
    if len(value) // 4 * 3 > MAX_INLINE_BINARY_BYTES + 2:
        raise InvalidArgument(
            f"InlineBinary of attribute {key} exceeds {MAX_INLINE_BINARY_BYTES} bytes; "
            "send it as a bulk data part"
        )
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"InlineBinary of attribute {key} is not valid base64") from None
    if len(decoded) > MAX_INLINE_BINARY_BYTES:
        raise InvalidArgument(
            f"InlineBinary of attribute {key} exceeds {MAX_INLINE_BINARY_BYTES} bytes; "
            "send it as a bulk data part"
        )


def _parse_tag(key: str) -> int | None:
    if len(key) != 8:
        return None
    try:
        return int(key, 16)
    except ValueError:
        return None


def _referenced_uris(plans: list[_Plan]) -> dict[str, _BulkRef]:
    referenced: dict[str, _BulkRef] = {}
    for plan in plans:
        for ref in plan.refs:
            if ref.uri in referenced:
                raise InvalidArgument(
                    f"BulkDataURI {_shorten(ref.uri)!r} is used more than once in the metadata"
                )
            referenced[ref.uri] = ref
    return referenced


# -- bulk data parts --------------------------------------------------------------------------


def _read_bulk_parts(
    parts: Iterator[Part],
    referenced: dict[str, _BulkRef],
    stack: contextlib.ExitStack,
    spool: Callable[[], IO[bytes]],
) -> dict[str, _BulkPart]:
    bulk: dict[str, _BulkPart] = {}
    for number, part in enumerate(parts, start=2):
        location = part.headers.get("content-location", "")
        if not location:
            raise InvalidArgument(
                f"part {number} has no Content-Location header: every part after the metadata "
                "must name the BulkDataURI whose value it carries"
            )
        if location in bulk:
            raise InvalidArgument(f"part {number} repeats Content-Location {_shorten(location)!r}")
        if location not in referenced:
            raise InvalidArgument(
                f"part {number} has Content-Location {_shorten(location)!r}, which is not a "
                "BulkDataURI of the metadata"
            )
        media_type, syntax = _bulk_type(part.content_type, number)
        body = stack.enter_context(spool())
        shutil.copyfileobj(part.body, body, 1 << 20)
        body.seek(0)
        bulk[location] = _BulkPart(media_type, syntax, body)
    return bulk


def _default_spool() -> IO[bytes]:
    # The caller (an ExitStack) owns and closes the file, so no context manager here.
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)


def _bulk_type(content_type: str, number: int) -> tuple[str, str | None]:
    """Return the part's media type and the syntax of its codestream (None: raw bytes)."""
    if not content_type:
        raise InvalidArgument(f"part {number} has no Content-Type; {_ALLOWED_TYPES}")
    media_type, params = parse_media_type(content_type)
    syntax = params.get(_PARAM)
    if media_type == OCTET_STREAM:
        if syntax is None or syntax in _NATIVE_SYNTAXES:
            return media_type, None
        # Google's own proxy sends JPEG XL frames this way.
        if syntax in _JPEG_XL_SYNTAXES:
            return media_type, syntax
        raise _bad_syntax(number, media_type, syntax, _NATIVE_SYNTAXES | _JPEG_XL_SYNTAXES)
    if media_type not in _IMAGE_TYPES:
        raise InvalidArgument(
            f"part {number} has unsupported Content-Type {media_type!r}; {_ALLOWED_TYPES}"
        )
    default, allowed = _IMAGE_TYPES[media_type]
    syntax = syntax or default
    if syntax is None:
        raise InvalidArgument(f"part {number}: {media_type} needs a transfer-syntax parameter")
    if syntax not in allowed:
        raise _bad_syntax(number, media_type, syntax, allowed)
    return media_type, syntax


_ALLOWED_TYPES = (
    "bulk data parts must be application/octet-stream or image/jpeg, image/dicom-rle, "
    "image/jls, image/jp2, image/jpx or image/jxl with a matching transfer-syntax"
)


def _bad_syntax(number: int, media_type: str, syntax: str, allowed: frozenset[str]) -> Exception:
    return InvalidArgument(
        f"part {number}: transfer-syntax {_shorten(syntax)!r} is not accepted with "
        f"{media_type}; expected one of {', '.join(sorted(allowed))}"
    )


# -- building one instance --------------------------------------------------------------------


def _build(plan: _Plan, bulk: dict[str, _BulkPart]) -> BuiltInstance:
    built = BuiltInstance(
        None,
        sop_class_uid=_valid_uid(plan.elements, _SOP_CLASS_UID),
        sop_uid=_valid_uid(plan.elements, _SOP_INSTANCE_UID),
        study_uid=_valid_uid(plan.elements, _STUDY_UID),
        series_uid=_valid_uid(plan.elements, _SERIES_UID),
    )
    try:
        syntax = _check_instance(plan, bulk)
        data = _write(plan, bulk, syntax)
        read_instance(io.BytesIO(data))  # the same validation as a Part-10 upload
    except InvalidDicom as exc:
        logger.info("DICOM JSON instance %s not built", built.sop_uid or "without a valid UID")
        built.failure = exc.message
        built.failure_reason = PROCESSING_FAILURE
        return built
    built.data = data
    return built


def _check_instance(plan: _Plan, bulk: dict[str, _BulkPart]) -> str:
    """Raise InvalidDicom naming the first rule the instance breaks; return its syntax."""
    if plan.problems:
        raise InvalidDicom(plan.problems[0])
    for tag, keyword in _REQUIRED:
        if _first_value(plan.elements, tag) is None:
            raise InvalidDicom(f"missing required attribute {keyword} {_tag_text(tag)}")
    charset = plan.elements[0x00080005].get("Value")
    if charset != ["ISO_IR 192"]:
        raise InvalidDicom(
            f'SpecificCharacterSet must be "ISO_IR 192" (UTF-8), not {_shorten(str(charset))}'
        )
    syntax = _check_syntax(str(_first_value(plan.elements, 0x00020010)))
    for tag, keyword in _UID_TAGS:
        value = _first_value(plan.elements, tag)
        if not isinstance(value, str) or not is_valid_uid(value):
            raise InvalidDicom(f"invalid {keyword} {_shorten(str(value))!r}: not a valid UID")
    if any(tag >> 16 == 0 for tag in plan.elements):
        raise InvalidDicom("command group (0000,xxxx) attributes are not allowed in an instance")
    if len(plan.refs) > 1:
        raise InvalidDicom(
            f"the instance references {len(plan.refs)} BulkDataURIs; at most one is allowed"
        )
    if plan.refs:
        _check_bulk(plan, plan.refs[0], bulk[plan.refs[0].uri], syntax)
    return syntax


def _check_syntax(syntax: str) -> str:
    if not is_valid_uid(syntax):
        raise InvalidDicom(f"invalid TransferSyntaxUID {_shorten(syntax)!r}: not a valid UID")
    if syntax in _REFUSED_SYNTAXES:
        raise InvalidDicom(
            f"TransferSyntaxUID {syntax} is not accepted: big endian and deflated syntaxes "
            "cannot be stored from DICOM JSON"
        )
    if syntax not in _JPEG_XL_SYNTAXES and not UID(syntax).is_transfer_syntax:
        raise InvalidDicom(f"TransferSyntaxUID {syntax} is not a known DICOM transfer syntax")
    return syntax


def _check_bulk(plan: _Plan, ref: _BulkRef, part: _BulkPart, syntax: str) -> None:
    is_pixel_data = ref.tag == PIXEL_DATA and not ref.nested
    if part.transfer_syntax is not None:
        if not is_pixel_data:
            raise InvalidDicom(
                f"compressed bulk data ({part.media_type}) is allowed only for PixelData "
                f"(7FE0,0010), not for {_tag_text(ref.tag)}"
            )
        if part.transfer_syntax != syntax:
            raise InvalidDicom(
                f"the PixelData part has transfer-syntax {part.transfer_syntax} but the "
                f"instance's TransferSyntaxUID is {syntax}"
            )
    if is_pixel_data and syntax not in _NATIVE_SYNTAXES and syntax not in _VIDEO_SYNTAXES:
        frames = _number_of_frames(plan.elements)
        if frames > 1 and not _read_head(part.body, 4) == _ITEM_TAG:
            raise InvalidDicom(
                f"NumberOfFrames is {frames} but a compressed PixelData part holds one frame; "
                "send the encapsulated value (items and sequence delimiter) as "
                "application/octet-stream instead"
            )


def _number_of_frames(elements: dict[int, Any]) -> int:
    value = _first_value(elements, _NUMBER_OF_FRAMES)
    try:
        return int(str(value).strip()) if value is not None else 1
    except ValueError:
        return 1  # a malformed value fails later, in the Part-10 validation


def _read_head(body: IO[bytes], size: int) -> bytes:
    head = body.read(size)
    body.seek(0)
    return head


def _write(plan: _Plan, bulk: dict[str, _BulkPart], syntax: str) -> bytes:
    values = {ref.uri: _padded(bulk[ref.uri].body.read()) for ref in plan.refs}
    meta_json = {k: v for k, v in plan.source.items() if (_parse_tag(k) or 0) >> 16 == 2}
    main_json = {k: v for k, v in plan.source.items() if k not in meta_json}

    def value_of(_tag: str, _vr: str, uri: str) -> bytes:
        return values[uri]

    try:
        dataset = Dataset.from_json(main_json, bulk_data_uri_handler=value_of)
        meta = FileMetaDataset(Dataset.from_json(meta_json))
        _complete_meta(meta, dataset, syntax)
        if syntax not in _NATIVE_SYNTAXES:
            _encapsulate_pixel_data(dataset)
        return _encode(meta, dataset, syntax)
    except Exception as exc:  # client-supplied values: pydicom raises many exception types
        raise InvalidDicom(f"cannot build a DICOM instance from the metadata: {exc}") from exc


def _complete_meta(meta: FileMetaDataset, dataset: Dataset, syntax: str) -> None:
    # The file meta must name the data set's own SOP class and instance, whatever was sent.
    meta.TransferSyntaxUID = UID(syntax)
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID


def _encapsulate_pixel_data(dataset: Dataset) -> None:
    element = dataset.get(PIXEL_DATA)
    if element is None or not element.value:
        return
    value = bytes(element.value)
    if not value.startswith(_ITEM_TAG):
        value = encapsulate([value])
    dataset[PIXEL_DATA] = DataElement(PIXEL_DATA, "OB", value, is_undefined_length=True)


def _encode(meta: FileMetaDataset, dataset: Dataset, syntax: str) -> bytes:
    # pydicom's own writers, as dcmwrite(enforce_file_format=True) uses them; dcmwrite itself
    # refuses syntaxes missing from pydicom's dictionary (JPEG XL in pydicom 3.0).
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    buffer.is_implicit_VR = syntax == IMPLICIT_VR_LE
    buffer.is_little_endian = True
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def _padded(value: bytes) -> bytes:
    return value + b"\x00" if len(value) % 2 else value


# -- small helpers ----------------------------------------------------------------------------


def _first_value(elements: dict[int, Any], tag: int) -> Any:
    """The first Value entry of a top-level element; None when absent or empty."""
    element = elements.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if not isinstance(values, list) or not values or values[0] in (None, ""):
        return None
    return values[0]


def _valid_uid(elements: dict[int, Any], tag: int) -> str:
    value = _first_value(elements, tag)
    return value if isinstance(value, str) and is_valid_uid(value) else ""


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
