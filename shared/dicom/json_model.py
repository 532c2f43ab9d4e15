"""DICOM JSON (PS3.18 Annex F) built from pydicom datasets, with Google's bulkdata definition."""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import struct
from collections.abc import Callable, Iterable, MutableSequence
from typing import Any

import numpy as np
from pydicom.charset import decode_bytes
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import raw_element_vr
from pydicom.tag import BaseTag
from pydicom.valuerep import TEXT_VR_DELIMS, PersonName
from pydicom.values import convert_PN

from shared.domain.records import DicomJson
from shared.errors import InvalidArgument, NotFound

logger = logging.getLogger(__name__)

BULKDATA_PREFIX = "bulkdata/"
PIXEL_DATA_TAG = 0x7FE00010
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, PIXEL_DATA_TAG})
# Google's bulkdata definition (spec 4.6): thresholds of the current, non-legacy rules.
MAX_INLINE_BINARY_BYTES = 2048
MAX_INLINE_VM = 512
MAX_SEQUENCE_BYTES = 1 << 20

_UNDEFINED_LENGTH = 0xFFFFFFFF
_ALWAYS_BULK_VRS = frozenset({"OB", "OW", "UN"})
_OTHER_VRS = frozenset({"OD", "OF", "OL", "OV"})
# Only these VRs fall under the "VM > 512" rule; SS and SL are deliberately absent (Google's list).
_COUNTED_VR_SIZES = {"AT": 4, "FD": 8, "FL": 4, "UL": 4, "US": 2, "SV": 8, "UV": 8}
_STRUCT_CODES = {
    "US": "H",
    "SS": "h",
    "UL": "I",
    "SL": "i",
    "FL": "f",
    "FD": "d",
    "SV": "q",
    "UV": "Q",
}
_STRUCT_SIZES = {"H": 2, "h": 2, "I": 4, "i": 4, "f": 4, "d": 8, "q": 8, "Q": 8}
_SWAP_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
# A concrete VR for elements whose VR pydicom could not disambiguate from context.
_AMBIGUOUS_VRS = {"OB or OW": "OW", "US or SS": "US", "US or OW": "OW", "US or SS or OW": "OW"}
_SIZED_VRS = _ALWAYS_BULK_VRS | _OTHER_VRS | frozenset(_COUNTED_VR_SIZES)
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI"})
_MULTI_TEXT_VRS = frozenset({"SH", "LO", "UC"})
_SINGLE_TEXT_VRS = frozenset({"ST", "LT", "UT"})
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
# PS3.18 F.2.3 (CP-2275 wording, as dicom-rs does): non-finite floats travel as strings.
_NON_FINITE = {"nan": "NaN", "inf": "inf", "-inf": "-inf"}
_TAG_PATH = re.compile(r"[0-9A-Fa-f]{8}(?:/[0-9]+/[0-9A-Fa-f]{8})*")

_BULK = "bulk"
_OMIT = "omit"
_INLINE = "inline"

Decoder = Callable[[bytes, bool, list[str]], list[Any] | None]


def dataset_to_json(
    ds: Dataset, *, include_file_meta: bool = True, pixel_data_vr: str | None = None
) -> DicomJson:
    """Return the instance as DICOM JSON, bulk elements replaced by relative BulkDataURIs.

    Deferred values (`defer_size`) are never read unless they turn out to be inline metadata.
    `pixel_data_vr` ("OB" or "OW") announces Pixel Data that the caller did not read
    (`stop_before_pixels`): a `bulkdata/7FE00010` URI is then emitted for it.
    """
    if pixel_data_vr is not None and pixel_data_vr not in ("OB", "OW"):
        raise InvalidArgument(f"pixel data VR must be OB or OW, not {pixel_data_vr!r}")
    meta = getattr(ds, "file_meta", None) if include_file_meta else None
    out = {} if meta is None else _convert_dataset(meta, BULKDATA_PREFIX, True)
    out = _merge(out, _convert_dataset(ds, BULKDATA_PREFIX, _dataset_little_endian(ds, True)))
    if pixel_data_vr is not None and PIXEL_DATA_TAG not in ds._dict:
        pixel = {"vr": pixel_data_vr, "BulkDataURI": f"{BULKDATA_PREFIX}7FE00010"}
        out = _merge(out, {"7FE00010": pixel})
    return out


def absolutize_bulkdata(obj: DicomJson, instance_url: str) -> DicomJson:
    """Return a copy whose relative `bulkdata/...` URIs are prefixed with the instance URL."""
    return _absolutize(obj, instance_url.rstrip("/") + "/")


def dumps(objs: list[DicomJson]) -> bytes:
    """Serialise DICOM JSON objects compactly as UTF-8, never emitting NaN or Infinity."""
    try:
        text = json.dumps(objs, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # Metadata sent by clients (STOW JSON) may hold non-finite floats; PS3.18 wants strings.
        text = json.dumps(
            _replace_non_finite(objs), ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    return text.encode("utf-8")


def find_bulk_element(ds: Dataset, tag_path: str) -> DataElement:
    """Return the bulkdata element named by `tag_path` ("7FE00010", "00480105/0/00282000").

    Only elements that `dataset_to_json` turns into BulkDataURIs are found; anything else,
    including elements inside sequences omitted for size, raises NotFound.
    """
    if not isinstance(tag_path, str) or not _TAG_PATH.fullmatch(tag_path):
        raise InvalidArgument(f"malformed bulkdata path {str(tag_path)[:200]!r}")
    parts = tag_path.split("/")
    current = ds
    for i in range(0, len(parts) - 1, 2):
        current = _sequence_item(current, int(parts[i], 16), int(parts[i + 1]), tag_path)
    tag = int(parts[-1], 16)
    holder = _holder(current, tag, top_level=current is ds)
    if holder is None:
        raise NotFound(f"no bulkdata element at path {tag_path}")
    elem = holder[tag]
    vr = _concrete_vr(elem.VR)
    if vr == "SQ" or _classify(tag, vr, _elem_length(elem, vr)) != _BULK:
        raise NotFound(f"no bulkdata element at path {tag_path}")
    return elem


def element_value_bytes(elem: DataElement, ds_is_little_endian: bool = True) -> bytes:
    """Return the little-endian value bytes of a binary element (the bulkdata response body).

    Byte-valued elements (OB, OW, OF, ...) hold their bytes in the file's byte order, so
    `ds_is_little_endian=False` swaps them; decoded numbers (US, FL, AT, ...) are packed afresh.
    """
    vr = _concrete_vr(elem.VR)
    value = elem.value
    if value is None or (isinstance(value, bytes | bytearray | str) and not value):
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        size = _SWAP_SIZES.get(vr) or _STRUCT_SIZES.get(_STRUCT_CODES.get(vr, ""), 0)
        if vr == "AT":
            size = 2
        if vr in ("OB", "UN") or ds_is_little_endian or size < 2:
            return bytes(value)
        return _swap_bytes(bytes(value), size)
    values = list(value) if isinstance(value, MutableSequence | tuple) else [value]
    if vr == "AT":
        return b"".join(struct.pack("<HH", int(t) >> 16, int(t) & 0xFFFF) for t in values)
    code = _STRUCT_CODES.get(vr)
    if code is None:
        raise InvalidArgument(f"element {elem.tag:08X} with VR {vr} has no binary value")
    if vr == "US" and any(int(v) < 0 for v in values):
        code = "h"  # an unresolved "US or SS" holding signed values
    return struct.pack(f"<{len(values)}{code}", *values)


def number_from_text(vr: str, text: str) -> int | float | str:
    """Parse a numeric value (IS, DS, FL, FD, SL, SS, SV, UL, US, UV) as DICOM JSON holds it.

    IS and DS text that is no number stays text, as `dataset_to_json` keeps it; non-finite
    floats become "NaN", "inf" or "-inf"; any other unparsable text raises InvalidArgument.
    """
    text = text.strip(" \x00")
    if vr == "IS":
        return _is_number(text)
    if vr == "DS":
        return _ds_number(text)
    try:
        return _float_json(float(text)) if vr in ("FL", "FD") else int(text)
    except ValueError:
        raise InvalidArgument(f"invalid {vr} number") from None


def is_bulk_vr(tag: int, vr: str, length: int) -> bool:
    """Whether an element of this VR and encoded value length is bulkdata under Google's rules."""
    return _classify(tag, vr, length) == _BULK


def _merge(first: DicomJson, second: DicomJson) -> DicomJson:
    """Both inputs are sorted by tag; keep the result sorted without re-sorting when possible."""
    if not first or not second or next(reversed(first)) < next(iter(second)):
        return {**first, **second}
    return dict(sorted({**first, **second}.items()))


def _classify(tag: int, vr: str, length: int) -> str:
    if length == 0:
        return _INLINE
    if tag in PIXEL_DATA_TAGS or vr in _ALWAYS_BULK_VRS:
        return _BULK
    if vr in _OTHER_VRS:
        return _BULK if length > MAX_INLINE_BINARY_BYTES else _INLINE
    size = _COUNTED_VR_SIZES.get(vr)
    if size is not None:
        return _BULK if length // size > MAX_INLINE_VM else _INLINE
    if vr == "SQ":
        return _OMIT if length > MAX_SEQUENCE_BYTES else _INLINE
    return _INLINE


def _convert_dataset(ds: Dataset, prefix: str, little: bool) -> DicomJson:
    out: DicomJson = {}
    encodings: list[str] | None = None
    # Plain ints: BaseTag's Python-level comparisons dominate the cost otherwise.
    for tag, elem in sorted(zip(map(int, ds._dict), ds._dict.values(), strict=True)):
        key = f"{tag:08X}"
        if isinstance(elem, RawDataElement):
            if encodings is None:
                encodings = _encodings(ds)
            entry = _from_raw(ds, tag, elem, prefix + key, little, encodings)
        else:
            entry = _from_element(ds, elem, prefix + key, little)
        if entry is not None:
            out[key] = entry
    return out


def _from_raw(
    ds: Dataset, tag: int, raw: RawDataElement, uri: str, little: bool, encodings: list[str]
) -> dict[str, Any] | None:
    vr = _lookup_vr(ds, raw) if raw.VR is None or raw.VR == "UN" else str(raw.VR)
    value = raw.value
    if vr in _AMBIGUOUS_VRS:
        if tag in PIXEL_DATA_TAGS and value is None:
            # Deferred pixel data: implicit VR encodes it as OW (PS3.5 A.1), and it is bulk anyway.
            return {"vr": "OW", "BulkDataURI": uri}
        return _from_element(ds, ds[tag], uri, little)
    length = raw.length
    if length == _UNDEFINED_LENGTH:
        length = len(value) if isinstance(value, bytes) else _UNDEFINED_LENGTH
    kind = _classify(tag, vr, length)
    if kind == _BULK:
        return {"vr": vr, "BulkDataURI": uri}
    if kind == _OMIT:
        return None
    if length == 0:
        return {"vr": vr}
    if not isinstance(value, bytes):
        logger.debug("reading deferred inline value of %08X", tag)
        return _from_element(ds, ds[tag], uri, little)
    if vr in _OTHER_VRS:
        inline = value if raw.is_little_endian else _swap_bytes(value, _SWAP_SIZES[vr])
        return {"vr": vr, "InlineBinary": base64.b64encode(inline).decode("ascii")}
    decoder = _DECODERS.get(vr)
    if decoder is None:
        # Sequences (and any VR unknown here) go through pydicom's own conversion.
        return _from_element(ds, ds[tag], uri, little)
    if tag == 0x00080005:
        encodings = ["iso8859"]
    values = decoder(value, raw.is_little_endian, encodings)
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _from_element(ds: Dataset, elem: DataElement, uri: str, little: bool) -> dict[str, Any] | None:
    vr = _concrete_vr(elem.VR)
    if vr == "SQ":
        return _from_sequence(ds, elem, uri, little)
    kind = _classify(elem.tag, vr, _elem_length(elem, vr))
    if kind == _BULK:
        return {"vr": vr, "BulkDataURI": uri}
    value = elem.value
    if _is_empty(value):
        return {"vr": vr}
    if vr in _OTHER_VRS:
        inline = element_value_bytes(elem, little)
        return {"vr": vr, "InlineBinary": base64.b64encode(inline).decode("ascii")}
    values = _python_values(vr, value, little)
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _concrete_vr(vr: str) -> str:
    # str() turns pydicom's VR enum members into the plain strings JSON and XML want.
    vr = str(vr)
    return _AMBIGUOUS_VRS.get(vr, vr)


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str | bytes | bytearray | MutableSequence | tuple):
        return len(value) == 0
    return isinstance(value, PersonName) and not str(value)


def _from_sequence(ds: Dataset, elem: DataElement, uri: str, little: bool) -> dict[str, Any] | None:
    items = elem.value or []
    if _sequence_size(items, MAX_SEQUENCE_BYTES) > MAX_SEQUENCE_BYTES:
        return None
    if not items:
        return {"vr": "SQ"}
    return {
        "vr": "SQ",
        "Value": [
            _convert_dataset(item, f"{uri}/{i}/", _dataset_little_endian(item, little))
            for i, item in enumerate(items)
        ],
    }


def _lookup_vr(ds: Dataset, raw: RawDataElement) -> str:
    # pydicom's own hook: same answer as a later ds[tag], without touching the value.
    data: dict[str, Any] = {}
    raw_element_vr(raw, data, ds=ds)
    return str(data["VR"])


def _encodings(ds: Dataset) -> list[str]:
    # The expression pydicom's Dataset.__getitem__ uses, so both paths decode alike.
    charset = ds.original_character_set or ds._character_set
    if isinstance(charset, str):
        return [charset]
    return list(charset) or ["iso8859"]


def _dataset_little_endian(ds: Dataset, default: bool) -> bool:
    little = getattr(ds, "original_encoding", (None, None))[1]
    return default if little is None else bool(little)


def _elem_length(elem: DataElement, vr: str) -> int:
    """Encoded value length, computed only where the bulk rules need it."""
    if elem.tag not in PIXEL_DATA_TAGS and vr not in _SIZED_VRS:
        return 1
    value = elem.value
    if value is None:
        return 0
    if isinstance(value, bytes | bytearray | memoryview | str):
        return len(value)
    count = len(value) if isinstance(value, MutableSequence | tuple) else 1
    return count * _COUNTED_VR_SIZES.get(vr, 1)


def _sequence_size(items: Iterable[Dataset], limit: int) -> int:
    """Approximate encoded size of sequence items; stops counting once past `limit`."""
    total = 0
    for item in items:
        total += 16  # item header and delimiter
        for elem in item._dict.values():
            total += 12 + _approx_value_size(elem, limit - total)
            if total > limit:
                return total
    return total


def _approx_value_size(elem: DataElement | RawDataElement, limit: int) -> int:
    if isinstance(elem, RawDataElement):
        if elem.length != _UNDEFINED_LENGTH:
            return int(elem.length)
        return len(elem.value) if isinstance(elem.value, bytes) else 0
    value = elem.value
    if value is None:
        return 0
    if elem.VR == "SQ":
        return _sequence_size(value, limit)
    if isinstance(value, bytes | bytearray | str):
        return len(value)
    if isinstance(value, MutableSequence | tuple):
        return sum(len(str(v)) + 1 for v in value)
    return len(str(value))


def _sequence_item(ds: Dataset, tag: int, index: int, path: str) -> Dataset:
    holder = _holder(ds, tag, top_level=False)
    if holder is None:
        raise NotFound(f"no bulkdata element at path {path}")
    raw = holder._dict[BaseTag(tag)]
    if isinstance(raw, RawDataElement) and _UNDEFINED_LENGTH != raw.length > MAX_SEQUENCE_BYTES:
        raise NotFound(f"no bulkdata element at path {path}")
    elem = holder[tag]
    items = elem.value if elem.VR == "SQ" else None
    if not items or index >= len(items):
        raise NotFound(f"no bulkdata element at path {path}")
    if _sequence_size(items, MAX_SEQUENCE_BYTES) > MAX_SEQUENCE_BYTES:
        raise NotFound(f"no bulkdata element at path {path}")
    return items[index]


def _holder(ds: Dataset, tag: int, *, top_level: bool) -> Dataset | None:
    if tag in ds._dict:
        return ds
    meta = getattr(ds, "file_meta", None)
    if top_level and meta is not None and tag >> 16 == 0x0002 and tag in meta._dict:
        return meta
    return None


# Decoders from raw value bytes; each returns the JSON "Value" list or None when empty.


def _decode_ascii(data: bytes, little: bool, encodings: list[str]) -> list[Any] | None:
    text = data.decode("latin-1").strip(" \x00")
    if not text:
        return None
    return [v.strip(" \x00") or None for v in text.split("\\")]


def _decode_ur(data: bytes, little: bool, encodings: list[str]) -> list[Any] | None:
    text = data.decode("latin-1").rstrip(" \x00")
    return [text] if text else None


def _decode_multi_text(data: bytes, little: bool, encodings: list[str]) -> list[Any] | None:
    text = decode_bytes(data, encodings, TEXT_VR_DELIMS).rstrip("\x00 ")
    if not text:
        return None
    return [v.rstrip("\x00 ") or None for v in text.split("\\")]


def _decode_single_text(data: bytes, little: bool, encodings: list[str]) -> list[Any] | None:
    text = decode_bytes(data, encodings, TEXT_VR_DELIMS).rstrip("\x00 ")
    return [text] if text else None


def _decode_pn(data: bytes, little: bool, encodings: list[str]) -> list[Any] | None:
    data = data.rstrip(b"\x00 ")
    if not data:
        return None
    if b"\x1b" in data:
        # ISO 2022 escapes reset at "=" and "^": pydicom decodes each component group.
        names = convert_PN(data, encodings)
        names = names if isinstance(names, MutableSequence) else [names]
        return [_pn_json(pn.components) for pn in names]
    text = decode_bytes(data, encodings, TEXT_VR_DELIMS)
    return [_pn_json(v.split("=")) for v in text.split("\\")]


def _pn_json(groups: Iterable[str]) -> dict[str, str] | None:
    name = {key: group for key, group in zip(_PN_GROUPS, groups, strict=False) if group}
    return name or None


def _decode_is(data: bytes, little: bool, encodings: list[str]) -> list[Any] | None:
    values = _decode_ascii(data, little, encodings)
    return None if values is None else [None if v is None else _is_number(v) for v in values]


def _decode_ds(data: bytes, little: bool, encodings: list[str]) -> list[Any] | None:
    values = _decode_ascii(data, little, encodings)
    return None if values is None else [None if v is None else _ds_number(v) for v in values]


def _decode_at(data: bytes, little: bool, encodings: list[str]) -> list[Any] | None:
    count = len(data) // 4
    if not count:
        return None
    pairs = struct.unpack(f"{'<' if little else '>'}{2 * count}H", data[: 4 * count])
    return [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, 2 * count, 2)]


def _numbers_decoder(code: str) -> Decoder:
    size = _STRUCT_SIZES[code]
    is_float = code in ("f", "d")

    def decode(data: bytes, little: bool, encodings: list[str]) -> list[Any] | None:
        count = len(data) // size
        if not count:
            return None
        values = list(struct.unpack(f"{'<' if little else '>'}{count}{code}", data[: count * size]))
        if is_float and not all(map(math.isfinite, values)):
            return [_float_json(v) for v in values]
        return values

    return decode


_DECODERS: dict[str, Decoder] = {
    **dict.fromkeys(_ASCII_VRS, _decode_ascii),
    **dict.fromkeys(_MULTI_TEXT_VRS, _decode_multi_text),
    **dict.fromkeys(_SINGLE_TEXT_VRS, _decode_single_text),
    "UR": _decode_ur,
    "PN": _decode_pn,
    "IS": _decode_is,
    "DS": _decode_ds,
    "AT": _decode_at,
    **{vr: _numbers_decoder(code) for vr, code in _STRUCT_CODES.items()},
}


def _is_number(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    # "5.0" is not a valid IS but is unambiguous; anything else stays text rather than being lost.
    return int(number) if number.is_integer() else text


def _ds_number(text: str) -> int | float | str:
    try:
        if "." in text or "e" in text or "E" in text:
            number = float(text)
            return number if math.isfinite(number) else text
        return int(text)
    except ValueError:
        return text


def _float_json(value: float) -> float | str:
    return value if math.isfinite(value) else _NON_FINITE[repr(value)]


def _python_values(vr: str, value: Any, little: bool) -> list[Any] | None:
    """JSON values from an already converted pydicom value (in-memory or accessed elements)."""
    if isinstance(value, bytes | bytearray):
        decoder = _DECODERS.get(vr)
        return None if decoder is None else decoder(bytes(value), little, ["iso8859"])
    values = list(value) if isinstance(value, MutableSequence | tuple) else [value]
    if vr == "PN":
        return [_pn_value(v) for v in values]
    if vr == "AT":
        return [f"{int(v):08X}" for v in values]
    if vr in _STRUCT_CODES:
        if vr in ("FL", "FD"):
            return [None if v is None else _float_json(float(v)) for v in values]
        return [None if v is None else int(v) for v in values]
    if vr == "IS":
        return [_converted_number(v, _is_number) for v in values]
    if vr == "DS":
        return [_converted_number(v, _ds_number) for v in values]
    return [str(v) if v not in (None, "") else None for v in values]


def _pn_value(value: Any) -> dict[str, str] | None:
    if value is None or value == "":
        return None
    name = value if isinstance(value, PersonName) else PersonName(str(value))
    return _pn_json(name.components)


def _converted_number(value: Any, parse: Callable[[str], Any]) -> Any:
    if value is None or value == "":
        return None
    original = getattr(value, "original_string", None)
    if isinstance(original, str):
        return parse(original.strip(" \x00"))
    if isinstance(value, str):
        return parse(value.strip(" \x00"))
    if isinstance(value, int):
        return int(value)
    return _float_json(float(value))


def _swap_bytes(data: bytes, size: int) -> bytes:
    usable = len(data) - len(data) % size
    swapped = np.frombuffer(data, dtype=f">u{size}", count=usable // size).astype(f"<u{size}")
    return swapped.tobytes() + data[usable:]


def _absolutize(obj: Any, base: str) -> Any:
    if isinstance(obj, dict):
        copy = {key: _absolutize(value, base) for key, value in obj.items()}
        uri = copy.get("BulkDataURI")
        if isinstance(uri, str) and uri.startswith(BULKDATA_PREFIX):
            copy["BulkDataURI"] = base + uri
        return copy
    if isinstance(obj, list):
        return [_absolutize(value, base) for value in obj]
    return obj


def _replace_non_finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return _float_json(obj)
    if isinstance(obj, dict):
        return {key: _replace_non_finite(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_replace_non_finite(value) for value in obj]
    return obj
