"""QIDO-RS query parsing and in-process matching with Google's rules (spec section 3)."""

from __future__ import annotations

import datetime
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pydicom import datadict

from shared.domain.records import DicomJson
from shared.domain.search import Condition, Level, MatchKind, SearchQuery
from shared.errors import InvalidArgument

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = {Level.STUDY: 100, Level.SERIES: 100, Level.INSTANCE: 1000}
MAX_LIMIT = {Level.STUDY: 5000, Level.SERIES: 5000, Level.INSTANCE: 50000}
MAX_OFFSET = 1_000_000

# Spec 3.2: matching keys Google supports, with the level each attribute lives at.
_STUDY_KEYS = (
    "StudyInstanceUID",
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDate",
)
_SERIES_KEYS = ("SeriesInstanceUID", "Modality")
_INSTANCE_KEYS = ("SOPInstanceUID",)
_KEY_LEVEL: dict[str, Level] = {
    **dict.fromkeys(_STUDY_KEYS, Level.STUDY),
    **dict.fromkeys(_SERIES_KEYS, Level.SERIES),
    **dict.fromkeys(_INSTANCE_KEYS, Level.INSTANCE),
}
_LEVEL_RANK = {Level.STUDY: 0, Level.SERIES: 1, Level.INSTANCE: 2}

# Google answers an includefield it cannot compute with this error (spec 3.2, observed).
_UNRETURNABLE = frozenset({"AvailableTransferSyntaxUID"})

_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_DATE_RE = re.compile(r"^[0-9]{8}$")
_INT_RE = re.compile(r"^[0-9]+$")
_NAME_SEPARATORS = re.compile(r"[\^=\s,\-]+")
_MAX_CHAR = 0x10FFFF


@dataclass
class _Draft:
    """Mutable state while the parameters are read, frozen into a SearchQuery at the end."""

    level: Level
    seen: set[str] = field(default_factory=set)
    raw_conditions: list[tuple[str, str]] = field(default_factory=list)
    include_all: bool = False
    include_tags: set[str] = field(default_factory=set)
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False


# --- parsing -----------------------------------------------------------------------------


def parse_search(
    level: Level,
    params: list[tuple[str, str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> SearchQuery:
    """Validate percent-decoded QIDO parameters into a SearchQuery; InvalidArgument if bad."""
    draft = _Draft(level)
    for key, value in params:
        _read_param(draft, key, value)
    conditions = tuple(
        condition
        for tag, value in draft.raw_conditions
        if (condition := _condition(tag, value, draft.fuzzy)) is not None
    )
    return SearchQuery(
        level=level,
        study_uid=study_uid,
        series_uid=series_uid,
        conditions=conditions,
        include_all=draft.include_all,
        include_tags=frozenset(draft.include_tags),
        limit=DEFAULT_LIMIT[level] if draft.limit is None else draft.limit,
        offset=draft.offset,
        fuzzy=draft.fuzzy,
    )


def _read_param(draft: _Draft, key: str, value: str) -> None:
    name = key.strip()
    special = name.lower()
    if special == "includefield":
        _read_includefield(draft, value)
        return
    if special == "timezoneoffset":
        raise InvalidArgument("Timezone Offset From UTC is not supported")
    tag = special if special in ("limit", "offset", "fuzzymatching") else _matching_tag(draft, name)
    if tag in draft.seen:
        raise InvalidArgument(f"query parameter {name} is given more than once")
    draft.seen.add(tag)
    if special == "limit":
        draft.limit = _read_limit(draft.level, value)
    elif special == "offset":
        draft.offset = _read_offset(value)
    elif special == "fuzzymatching":
        draft.fuzzy = _read_bool(name, value)
    else:
        draft.raw_conditions.append((tag, value))


def _resolve(name: str) -> tuple[str, str] | None:
    """(tag, keyword) of a keyword or 8-hex tag; keyword is '' for tags pydicom lacks."""
    if _TAG_RE.fullmatch(name):
        tag = int(name, 16)
        return f"{tag:08X}", datadict.keyword_for_tag(tag)
    tag_number = datadict.tag_for_keyword(name)
    if tag_number is None:
        return None
    return f"{tag_number:08X}", name


def _matching_tag(draft: _Draft, name: str) -> str:
    resolved = _resolve(name)
    if resolved is None or not resolved[1]:
        raise InvalidArgument(f"unknown/unsupported QIDO attribute: {name}")
    tag, keyword = resolved
    home = _KEY_LEVEL.get(keyword)
    if home is None or _LEVEL_RANK[home] > _LEVEL_RANK[draft.level]:
        raise InvalidArgument(f"{keyword} is not a supported {draft.level} level attribute")
    return tag


def _read_includefield(draft: _Draft, value: str) -> None:
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if item.lower() == "all":
            draft.include_all = True
            continue
        resolved = _resolve(item)
        if resolved is None or resolved[1] in _UNRETURNABLE:
            raise InvalidArgument(f"unknown/unsupported QIDO attribute: {item}")
        draft.include_tags.add(resolved[0])


def _read_int(name: str, value: str) -> int:
    if not _INT_RE.fullmatch(value):
        raise InvalidArgument(f"invalid {name} {value!r}: must be a non-negative integer")
    return int(value)


def _read_limit(level: Level, value: str) -> int:
    limit = _read_int("limit", value)
    # Google leaves an over-large limit undocumented; we clamp rather than refuse.
    if limit > MAX_LIMIT[level]:
        logger.debug("QIDO limit %d clamped to %d", limit, MAX_LIMIT[level])
        return MAX_LIMIT[level]
    return limit


def _read_offset(value: str) -> int:
    offset = _read_int("offset", value)
    if offset > MAX_OFFSET:
        raise InvalidArgument(f"invalid offset {offset}: the maximum is {MAX_OFFSET}")
    return offset


def _read_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise InvalidArgument(f"invalid {name} {value!r}: must be true or false")
    return lowered == "true"


# --- conditions --------------------------------------------------------------------------


def _condition(tag: str, value: str, fuzzy: bool) -> Condition | None:
    """The condition for one matching key; None for universal matching (empty value)."""
    if value == "":
        return None
    keyword = datadict.keyword_for_tag(int(tag, 16))
    # Google has no wildcard or UID-list matching: '*', '?' and backslash are literal.
    exact = Condition(
        tag=tag,
        keyword=keyword,
        vr=datadict.dictionary_VR(int(tag, 16)),
        level=_KEY_LEVEL[keyword],
        kind=MatchKind.EXACT,
        value=value,
    )
    if keyword == "StudyDate":
        return _date_condition(exact)
    if keyword == "PatientName" and fuzzy:
        tokens = tuple(dict.fromkeys(name_tokens(value)))
        return replace(exact, kind=MatchKind.FUZZY, values=tokens) if tokens else None
    return exact


def _date_condition(exact: Condition) -> Condition:
    value = exact.value
    if "-" not in value:
        _check_date(value)
        return exact
    low_text, _, high_text = value.partition("-")
    if "-" in high_text or not (low_text or high_text):
        raise InvalidArgument(f"invalid StudyDate range {value!r}")
    low = _check_date(low_text) if low_text else None
    high = _check_date(high_text) if high_text else None
    if low is not None and high is not None and low > high:
        raise InvalidArgument(f"invalid StudyDate range {value!r}: start is after end")
    return replace(exact, kind=MatchKind.RANGE, low=low, high=high)


def _check_date(text: str) -> str:
    try:
        if not _DATE_RE.fullmatch(text):
            raise ValueError(text)
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise InvalidArgument(f"invalid date {text!r}: expected YYYYMMDD") from None
    return text


# --- matching ----------------------------------------------------------------------------


def name_tokens(pn_value: str) -> list[str]:
    """Case- and accent-folded tokens of a person name, split on ^ = space , and -."""
    folded = unicodedata.normalize("NFKD", pn_value.casefold())
    bare = "".join(char for char in folded if not unicodedata.combining(char))
    return [token for token in _NAME_SEPARATORS.split(bare) if token]


def person_name_groups(element: Any) -> list[str]:
    """Every component group (Alphabetic, Ideographic, Phonetic) of every value of a PN."""
    groups: list[str] = []
    for item in _values(element):
        if isinstance(item, dict):
            groups.extend(
                str(item[key]) for key in ("Alphabetic", "Ideographic", "Phonetic") if item.get(key)
            )
        elif item is not None:
            groups.append(str(item))
    return groups


def stored_name_tokens(element: Any) -> set[str]:
    """The fuzzy-matching tokens of a stored PN element; indexes store exactly these."""
    return {token for group in person_name_groups(element) for token in name_tokens(group)}


def prefix_upper_bound(prefix: str) -> str | None:
    """Least string greater than every string starting with `prefix` (None if unbounded)."""
    for cut in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[cut]) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000  # surrogates cannot be stored as UTF-8
        if code <= _MAX_CHAR:
            return prefix[:cut] + chr(code)
    return None


def string_values(element: Any, vr: str) -> list[str]:
    """The values of an element as strings; a PN value is its Alphabetic group."""
    if vr == "PN":
        return [_alphabetic(item) for item in _values(element)]
    return [str(item) for item in _values(element) if item is not None]


def _alphabetic(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("Alphabetic", ""))
    return "" if item is None else str(item)


def _values(element: Any) -> list[Any]:
    if not isinstance(element, dict):
        return []
    values = element.get("Value")
    return values if isinstance(values, list) else []


def matches(condition: Condition, result: DicomJson) -> bool:
    """Whether a (merged) DICOM JSON result satisfies one condition."""
    element = result.get(condition.tag)
    if condition.kind is MatchKind.FUZZY:
        return _fuzzy(condition.values, stored_name_tokens(element))
    values = string_values(element, condition.vr)
    if condition.kind is MatchKind.EXACT:
        return condition.value in values
    if condition.kind is MatchKind.RANGE:
        return any(_in_range(value, condition.low, condition.high) for value in values)
    if condition.kind is MatchKind.UID_LIST:
        return any(value in condition.values for value in values)
    if condition.kind is MatchKind.WILDCARD:
        pattern = _wildcard_regex(condition.value)
        return any(pattern.fullmatch(value) for value in values)
    raise AssertionError(f"unhandled match kind {condition.kind}")


def matches_all(conditions: Iterable[Condition], result: DicomJson) -> bool:
    """Whether a result satisfies every condition (conditions are ANDed)."""
    return all(matches(condition, result) for condition in conditions)


def _fuzzy(query_tokens: tuple[str, ...], stored: set[str]) -> bool:
    return any(token.startswith(query) for query in query_tokens for token in stored)


def _in_range(value: str, low: str | None, high: str | None) -> bool:
    if not value:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _wildcard_regex(value: str) -> re.Pattern[str]:
    parts = (".*" if char == "*" else "." if char == "?" else re.escape(char) for char in value)
    return re.compile("".join(parts), re.DOTALL)
