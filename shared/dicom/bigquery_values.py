"""DICOM JSON values as BigQuery NDJSON values: one converter per VR, strict about what fits."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any

from shared.dicom.query import datetime_bounds, time_bounds

PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
PN_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
TEXT_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UI", "UR", "UT"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_DATE = re.compile(r"[0-9]{8}")


class ValueMismatch(ValueError):
    """A value that does not fit its column's type: the element goes to DroppedTags."""


def to_text(value: Any) -> str:
    """STRING: text as is; a number (an element whose VR disagrees with the dictionary) as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueMismatch("not text")


def to_decimal_text(value: Any) -> str:
    """DS and IS as text, as Google exports them; the JSON model may hold them as numbers."""
    return to_text(value).strip()


def to_tag_text(value: Any) -> str:
    """AT: "GGGGEEEE", upper case."""
    if isinstance(value, str) and _TAG.fullmatch(value):
        return value.upper()
    raise ValueMismatch("not a tag")


def to_integer(value: Any) -> int:
    """SL, SS, UL, US, SV, UV: BigQuery's INTEGER is int64, so larger UV values do not fit."""
    if isinstance(value, bool):
        raise ValueMismatch("a boolean is no number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueMismatch("not an integer")
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueMismatch("not an integer") from None
    if not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueMismatch("not an int64")
    return value


def to_float(value: Any) -> float:
    """FL, FD: finite floats only; BigQuery's JSON loader refuses NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueMismatch("not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueMismatch("not a number") from None
    if not math.isfinite(number):
        raise ValueMismatch("not finite")
    return number


def to_date(value: Any) -> str:
    """DA (or ACR-NEMA's YYYY.MM.DD) as BigQuery's DATE, "YYYY-MM-DD"."""
    text = _stripped(value)
    if len(text) == 10 and text[4] == text[7] == ".":
        text = text[:4] + text[5:7] + text[8:]
    # Not pydicom's DA: int() lets it read "2024 229" and full-width digits as dates.
    if not _DATE.fullmatch(text):
        raise ValueMismatch("not a DA")
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    except ValueError:
        raise ValueMismatch("not a date") from None


def to_time(value: Any) -> str:
    """TM (HH, HHMM, HHMMSS, HHMMSS.F...) as BigQuery's TIME, "HH:MM:SS[.ffffff]"."""
    bounds = time_bounds(_stripped(value))
    if bounds is None:
        raise ValueMismatch("not a TM")
    earliest = bounds[0]  # HHMMSS.ffffff: what a partial TM means, as search reads it
    # A leap second (60) is valid DICOM but no BigQuery TIME: as pydicom does, 59.
    second = min(int(earliest[4:6]), 59)
    time = dt.time(int(earliest[:2]), int(earliest[2:4]), second, int(earliest[7:]))
    return time.isoformat()


def to_timestamp(value: Any) -> str:
    """DT, partial or whole, as a UTC TIMESTAMP "YYYY-MM-DDTHH:MM:SS[.ffffff]Z".

    Missing components take their lowest value, as PS3.5 (and search) read a partial DT. A DT
    without an offset is taken as UTC, as BigQuery reads a TIMESTAMP without one: the
    instance's TimezoneOffsetFromUTC is not applied [I], so the value reads back as written.
    """
    bounds = datetime_bounds(_stripped(value))
    if bounds is None:
        raise ValueMismatch("not a DT")
    moment = dt.datetime.strptime(bounds[0], "%Y%m%d%H%M%S.%f")
    return moment.isoformat() + "Z"


def person_name(value: Any) -> dict[str, dict[str, str]]:
    """A PN value {"Alphabetic": "Doe^John", ...} as {group: {FamilyName: ..., ...}}.

    Empty components and groups are left out (NULL). More than five components is not a PN.
    """
    if not isinstance(value, dict) or not value.keys() <= set(PN_GROUPS):
        raise ValueMismatch("not a PN")
    record: dict[str, dict[str, str]] = {}
    for group, text in value.items():
        if not isinstance(text, str):
            raise ValueMismatch("not a PN")
        parts = text.split("^")
        if len(parts) > len(PN_PARTS):
            raise ValueMismatch("too many PN components")
        components = {key: part for key, part in zip(PN_PARTS, parts, strict=False) if part}
        if components:
            record[group] = components
    return record


def as_text(value: Any, vr: str | None) -> str:
    """Any value of a private or unknown element as the text OtherElements.Data holds.

    A PN keeps all its groups in DICOM's own "Alphabetic=Ideographic=Phonetic" form (just the
    Alphabetic name when it has no other); a sequence item is its compact DICOM JSON.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and vr == "PN":
        return "=".join(str(value.get(group) or "") for group in PN_GROUPS).rstrip("=")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# BigQuery type and value converter of each VR with a scalar column.
SCALAR_COLUMNS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    **dict.fromkeys(TEXT_VRS, ("STRING", to_text)),
    "DS": ("STRING", to_decimal_text),
    "IS": ("STRING", to_decimal_text),
    "AT": ("STRING", to_tag_text),
    "DA": ("DATE", to_date),
    "TM": ("TIME", to_time),
    "DT": ("TIMESTAMP", to_timestamp),
    **dict.fromkeys(("FL", "FD"), ("FLOAT", to_float)),
    **dict.fromkeys(("SL", "SS", "UL", "US", "SV", "UV"), ("INTEGER", to_integer)),
}


def _stripped(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueMismatch("not text")
    return value.strip(" \x00")
