"""QIDO-RS query parsing and in-process matching: Google's rules plus the standard superset.

Google's keys (spec 3.2) keep Google's rules: single-value exact, case-sensitive matching
(PatientName on its Alphabetic group), StudyDate ranges and fuzzy PatientName. On top of them
this module adds the PS3.4 C.2.2.2 matching Google lacks:

- Any attribute of the query's level or of a parent level is a matching key (study level:
  Google's study set plus the computed study attributes such as ModalitiesInStudy; series
  level: Google's series set plus NumberOfSeriesRelatedInstances; instance level: every other
  attribute). A key of a lower level (SOPInstanceUID at study level) keeps Google's 400
  "X is not a supported {level} level attribute"; sequences, binary VRs, attribute paths
  (`a.b`), SpecificCharacterSet and TimezoneOffsetFromUTC also give 400.
- Wild card matching (C.2.2.2.4) on AE, CS, LO, LT, PN, SH, ST, UC, UR and UT: `*` is any
  sequence, `?` any one character, the whole value must match. Case-sensitive, except PN, which
  is matched case-insensitively (casefold, accents kept) against every component group
  (Alphabetic, Ideographic, Phonetic). A value of only `*` is universal matching.
  **Differs from Google**, which compares `*` and `?` literally.
- UID list matching (C.2.2.2.2) on any UI attribute: values separated by `\\` (PS3.4) or `,`
  (PS3.18 8.3.4.1 `1#value`), any may match. **Differs from Google** (literal). A UI value
  with `*` or `?` stays literal, as the standard has no wildcards for UIDs.
- Range matching (C.2.2.2.5) on every DA, TM and DT attribute. TM and DT values of reduced
  precision stand for the whole interval they name: `10` is 10:00:00 to 10:59:59.999999, also as
  a single value; a stored value counts as its earliest instant. DT offsets (`&ZZXX`) are
  applied, and a value without one is taken as UTC. A TM range across midnight is refused.
  StudyDate and StudyTime are matched independently (no combined date-time matching).
- Numeric VRs (IS, DS, US, SS, UL, SL, UV, SV, FL, FD) compare numbers: `InstanceNumber=+007`
  matches 7.
- ModalitiesInStudy takes a `\\` or `,` separated list (OHIF sends `CT,MR`): any may match.
- With fuzzymatching=true, a PatientName query token holding `*` or `?` is a wild card pattern
  that must match the start of a stored name token (`*oe` matches `Doe`).

What a search returns is decided in `attributes`: a matching key of the query's own level is
returned (PS3.18 10.6.3.3), and the computed attributes only when named or matched.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pydicom import datadict

from shared.dicom import attributes
from shared.domain.records import DicomJson
from shared.domain.search import Condition, Level, MatchKind, SearchQuery
from shared.errors import InvalidArgument

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = {Level.STUDY: 100, Level.SERIES: 100, Level.INSTANCE: 1000}
MAX_LIMIT = {Level.STUDY: 5000, Level.SERIES: 5000, Level.INSTANCE: 50000}
MAX_OFFSET = 1_000_000

_LEVEL_RANK = {Level.STUDY: 0, Level.SERIES: 1, Level.INSTANCE: 2}

# Google answers an includefield it cannot compute with this error (spec 3.2, observed).
_UNRETURNABLE = frozenset({"AvailableTransferSyntaxUID"})

# PS3.4 C.2.2.2: SpecificCharacterSet describes the request and is never matched; a query's
# timezone is the business of the timezoneoffset parameter, which Google refuses.
_NEVER_MATCHED = frozenset({"SpecificCharacterSet", "TimezoneOffsetFromUTC"})

WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
INTEGER_VRS = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
DECIMAL_VRS = frozenset({"DS", "FD", "FL"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_MODALITIES_IN_STUDY = "ModalitiesInStudy"

_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_DATE_RE = re.compile(r"^[0-9]{8}$")
_INT_RE = re.compile(r"^[0-9]+$")
_SIGNED_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_DECIMAL_RE = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_TIME_RE = re.compile(r"([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?")
_DATETIME_RE = re.compile(
    r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
    r"(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?)?)?)?([+-][0-9]{4})?"
)
_LIST_RE = re.compile(r"[\\,]")
_WILDCARDS = frozenset("*?")
_NAME_SEPARATORS = re.compile(r"[\^=\s,\-]+")
_MAX_CHAR = 0x10FFFF
_MAX_UTC_OFFSET_HOURS = 14


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


def dictionary_vr(tag: str) -> str:
    """The VR PS3.6 gives a tag; of an ambiguous one ("US or SS") the first."""
    return str(datadict.dictionary_VR(int(tag, 16))).split(" or ")[0]


def _matching_tag(draft: _Draft, name: str) -> str:
    if "." in name:
        raise InvalidArgument(f"sequence matching is not supported: {name}")
    resolved = _resolve(name)
    if resolved is None or not resolved[1] or resolved[1] in _UNRETURNABLE:
        raise InvalidArgument(f"unknown/unsupported QIDO attribute: {name}")
    tag, keyword = resolved
    _check_matchable(draft.level, tag, keyword)
    return tag


def _check_matchable(level: Level, tag: str, keyword: str) -> None:
    """Refuse keys no search can match: sequences, binary data, and keys below the level."""
    vr = dictionary_vr(tag)
    if vr == "SQ":
        raise InvalidArgument(f"{keyword} is a sequence: sequence matching is not supported")
    if vr in _BINARY_VRS:
        raise InvalidArgument(f"{keyword} has VR {vr}, which cannot be used for matching")
    home = attributes.level_of(tag)
    # Google's wording; a parent level's key is fine (it filters on the parent).
    if keyword in _NEVER_MATCHED or _LEVEL_RANK[home] > _LEVEL_RANK[level]:
        raise InvalidArgument(f"{keyword} is not a supported {level} level attribute")


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
    """The condition for one matching key; None for universal matching (empty value, `*`)."""
    if value == "":
        return None
    keyword = datadict.keyword_for_tag(int(tag, 16))
    exact = Condition(
        tag=tag,
        keyword=keyword,
        vr=dictionary_vr(tag),
        level=attributes.level_of(tag),
        kind=MatchKind.EXACT,
        value=value,
    )
    if keyword == "PatientName" and fuzzy:
        return _fuzzy_condition(exact)
    return _BUILDERS.get(exact.vr, _text_condition)(exact)


def _fuzzy_condition(exact: Condition) -> Condition | None:
    if _only_stars(exact.value):
        return None
    tokens = tuple(dict.fromkeys(name_tokens(exact.value)))
    return replace(exact, kind=MatchKind.FUZZY, values=tokens) if tokens else None


def _text_condition(exact: Condition) -> Condition | None:
    value = exact.value
    if exact.keyword == _MODALITIES_IN_STUDY and _LIST_RE.search(value):
        return _list_condition(exact)
    if exact.vr not in WILDCARD_VRS or not has_wildcard(value):
        return exact
    # C.2.2.2.4 note: a value of only "*" is universal matching.
    return None if _only_stars(value) else replace(exact, kind=MatchKind.WILDCARD)


def _uid_condition(exact: Condition) -> Condition:
    # Google compares a UID literally; a list separator is the standard superset.
    return _list_condition(exact) if _LIST_RE.search(exact.value) else exact


def _list_condition(exact: Condition) -> Condition:
    items = [item.strip() for item in _LIST_RE.split(exact.value)]
    if not all(items):
        raise InvalidArgument(f"invalid {exact.keyword} list {exact.value!r}: empty item")
    return replace(exact, kind=MatchKind.UID_LIST, values=tuple(dict.fromkeys(items)))


def _number_condition(exact: Condition) -> Condition:
    number = query_number(exact.vr, exact.value)
    if number is None:
        kind = "an integer" if exact.vr in INTEGER_VRS else "a number"
        raise InvalidArgument(f"invalid {exact.keyword} {exact.value!r}: expected {kind}")
    return replace(exact, value=str(number))


def query_number(vr: str, text: str) -> int | float | None:
    """The number a query value of a numeric VR stands for; None if it is not one."""
    text = text.strip()
    if vr in INTEGER_VRS:
        return int(text) if _SIGNED_INT_RE.fullmatch(text) else None
    if not _DECIMAL_RE.fullmatch(text):
        return None
    return float(text)


def _range_parts(exact: Condition) -> tuple[str, str] | None:
    """(low, high) texts of a DA or TM range, None for a single value."""
    value = exact.value
    if "-" not in value:
        return None
    low, _, high = value.partition("-")
    if "-" in high or not (low or high):
        raise InvalidArgument(f"invalid {exact.keyword} range {value!r}")
    return low, high


def _ordered(exact: Condition, low: str | None, high: str | None) -> Condition:
    if low is not None and high is not None and low > high:
        raise InvalidArgument(f"invalid {exact.keyword} range {exact.value!r}: start is after end")
    return replace(exact, kind=MatchKind.RANGE, low=low, high=high)


def _date_condition(exact: Condition) -> Condition:
    parts = _range_parts(exact)
    if parts is None:
        _check_date(exact.keyword, exact.value)
        return exact
    low_text, high_text = parts
    low = _check_date(exact.keyword, low_text) if low_text else None
    high = _check_date(exact.keyword, high_text) if high_text else None
    return _ordered(exact, low, high)


def _check_date(keyword: str, text: str) -> str:
    try:
        if not _DATE_RE.fullmatch(text):
            raise ValueError(text)
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise InvalidArgument(f"invalid {keyword} date {text!r}: expected YYYYMMDD") from None
    return text


def _time_condition(exact: Condition) -> Condition:
    parts = _range_parts(exact)
    if parts is None:
        earliest, latest = _checked(exact, time_bounds, exact.value)
        return replace(exact, kind=MatchKind.RANGE, low=earliest, high=latest)
    low_text, high_text = parts
    low = _checked(exact, time_bounds, low_text)[0] if low_text else None
    high = _checked(exact, time_bounds, high_text)[1] if high_text else None
    if low is not None and high is not None and low > high:
        # C.2.2.2.5.2: "Range Matching crossing midnight is not supported".
        raise InvalidArgument(
            f"invalid {exact.keyword} range {exact.value!r}: start is after end"
            " (a time range cannot cross midnight)"
        )
    return _ordered(exact, low, high)


def _datetime_condition(exact: Condition) -> Condition:
    value = exact.value
    # A '-' separates a range or starts a UTC offset: the first reading that parses wins.
    for cut in (i for i, char in enumerate(value) if char == "-"):
        bounds = _datetime_range(value[:cut], value[cut + 1 :])
        if bounds is not None:
            return replace(exact, kind=MatchKind.RANGE, low=bounds[0], high=bounds[1])
    low, high = _checked(exact, datetime_bounds, value)
    return replace(exact, kind=MatchKind.RANGE, low=low, high=high)


def _datetime_range(low_text: str, high_text: str) -> tuple[str | None, str | None] | None:
    low = datetime_bounds(low_text) if low_text else None
    high = datetime_bounds(high_text) if high_text else None
    if (low_text and low is None) or (high_text and high is None) or not (low or high):
        return None
    earliest = low[0] if low else None
    latest = high[1] if high else None
    if earliest is not None and latest is not None and earliest > latest:
        return None
    return earliest, latest


_EXPECTED = {"TM": "HHMMSS.FFFFFF", "DT": "YYYYMMDDHHMMSS.FFFFFF&ZZXX"}


def _checked(
    exact: Condition, bounds: Callable[[str], tuple[str, str] | None], text: str
) -> tuple[str, str]:
    found = bounds(text)
    if found is None:
        expected = f"{_EXPECTED[exact.vr]} or a range"
        raise InvalidArgument(f"invalid {exact.keyword} {text!r}: expected {expected}")
    return found


def time_bounds(text: str) -> tuple[str, str] | None:
    """Earliest and latest instant a TM value names, as comparable HHMMSS.FFFFFF strings."""
    match = _TIME_RE.fullmatch(text)
    if match is None:
        return None
    hour, minute, second, fraction = match.groups()
    if int(hour) > 23 or int(minute or 0) > 59 or int(second or 0) > 60:
        return None
    earliest = f"{hour}{minute or '00'}{second or '00'}.{(fraction or '').ljust(6, '0')}"
    latest = f"{hour}{minute or '59'}{second or '59'}.{(fraction or '').ljust(6, '9')}"
    return earliest, latest


def datetime_bounds(text: str) -> tuple[str, str] | None:
    """Earliest and latest UTC instant a DT value names, as YYYYMMDDHHMMSS.FFFFFF strings."""
    match = _DATETIME_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        last_day = calendar.monthrange(int(year), int(month or 12))[1]
        shift = _utc_offset(offset)
        earliest = datetime.datetime(
            int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
            min(int(second or 0), 59), int((fraction or "").ljust(6, "0")),
        ) - shift  # fmt: skip
        latest = datetime.datetime(
            int(year), int(month or 12), int(day or last_day), int(hour or 23),
            int(minute or 59), min(int(second or 59), 59), int((fraction or "").ljust(6, "9")),
        ) - shift  # fmt: skip
    except (ValueError, OverflowError):
        return None
    return _datetime_text(earliest), _datetime_text(latest)


def _utc_offset(text: str | None) -> datetime.timedelta:
    if text is None:
        return datetime.timedelta()
    hours, minutes = int(text[1:3]), int(text[3:])
    if hours > _MAX_UTC_OFFSET_HOURS or minutes > 59:
        raise ValueError(text)
    size = datetime.timedelta(hours=hours, minutes=minutes)
    return -size if text[0] == "-" else size


def _datetime_text(moment: datetime.datetime) -> str:
    return (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
        f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}.{moment.microsecond:06d}"
    )


_BUILDERS: dict[str, Callable[[Condition], Condition | None]] = {
    "UI": _uid_condition,
    "DA": _date_condition,
    "TM": _time_condition,
    "DT": _datetime_condition,
    **dict.fromkeys(INTEGER_VRS | DECIMAL_VRS, _number_condition),
}


# --- matching ----------------------------------------------------------------------------


def has_wildcard(text: str) -> bool:
    """Whether a query value holds a wild card character (`*` or `?`)."""
    return not _WILDCARDS.isdisjoint(text)


def _only_stars(text: str) -> bool:
    return text.strip("*") == ""


def literal_prefix(pattern: str) -> str:
    """The characters of a wild card pattern before its first `*` or `?`."""
    for position, char in enumerate(pattern):
        if char in _WILDCARDS:
            return pattern[:position]
    return pattern


def is_prefix_pattern(pattern: str) -> bool:
    """Whether the pattern is `literal*` (trailing stars only), so a prefix range decides it."""
    return pattern.endswith("*") and not has_wildcard(pattern.rstrip("*"))


def name_token_hint(pattern: str) -> tuple[str, bool] | None:
    """A folded name token that every PN value matching the wild card pattern must contain.

    Returns (text, anchored): with anchored, some stored name token (see `name_tokens`) starts
    with text, otherwise some stored token contains it. None when no literal text is usable.
    Indexes use it to narrow candidates before `matches` decides.
    """
    leading = name_tokens(literal_prefix(pattern))
    if leading:
        return leading[0], True
    pieces = (token for part in re.split(r"[*?]", pattern) for token in name_tokens(part))
    longest = max(pieces, key=len, default="")
    return (longest, False) if longest else None


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
    kind = condition.kind
    if kind is MatchKind.FUZZY:
        return _fuzzy(condition.values, stored_name_tokens(element))
    if kind is MatchKind.WILDCARD:
        return _wildcard(condition, element)
    if kind is MatchKind.EXACT:
        return _exact(condition, element)
    values = string_values(element, condition.vr)
    if kind is MatchKind.RANGE:
        keys = (range_key(condition.vr, value) for value in values)
        return any(_in_range(key, condition.low, condition.high) for key in keys)
    if kind is MatchKind.UID_LIST:
        return any(value in condition.values for value in values)
    raise AssertionError(f"unhandled match kind {kind}")


def matches_all(conditions: Iterable[Condition], result: DicomJson) -> bool:
    """Whether a result satisfies every condition (conditions are ANDed)."""
    return all(matches(condition, result) for condition in conditions)


def _exact(condition: Condition, element: Any) -> bool:
    if condition.vr in INTEGER_VRS or condition.vr in DECIMAL_VRS:
        wanted = query_number(condition.vr, condition.value)
        return wanted is not None and any(
            stored_number(value) == wanted for value in _values(element)
        )
    return condition.value in string_values(element, condition.vr)


def stored_number(value: Any) -> int | float | None:
    """A stored numeric value as a number (DICOM JSON may hold IS/DS text); None if none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    if _SIGNED_INT_RE.fullmatch(text):
        return int(text)
    return float(text) if _DECIMAL_RE.fullmatch(text) else None


def range_key(vr: str, value: str) -> str | None:
    """A stored DA/TM/DT value in the form range bounds use; None when it cannot match."""
    text = value.strip()
    if vr == "TM":
        bounds = time_bounds(text.replace(":", ""))  # ACR-NEMA wrote HH:MM:SS
    elif vr == "DT":
        bounds = datetime_bounds(text)
    else:
        return text or None  # DA compares as stored, exactly like the SQL date column
    return None if bounds is None else bounds[0]


def _in_range(key: str | None, low: str | None, high: str | None) -> bool:
    if not key:
        return False
    return (low is None or key >= low) and (high is None or key <= high)


def _wildcard(condition: Condition, element: Any) -> bool:
    if condition.vr == "PN":
        pattern = wildcard_pattern(condition.value.casefold())
        return any(pattern.fullmatch(group.casefold()) for group in person_name_groups(element))
    pattern = wildcard_pattern(condition.value)
    return any(pattern.fullmatch(value) for value in string_values(element, condition.vr))


def _fuzzy(query_tokens: tuple[str, ...], stored: set[str]) -> bool:
    return any(_token_matches(query, token) for query in query_tokens for token in stored)


def _token_matches(query: str, token: str) -> bool:
    if has_wildcard(query):
        return wildcard_pattern(query).match(token) is not None  # a prefix of the token
    return token.startswith(query)


@functools.lru_cache(maxsize=256)
def wildcard_pattern(value: str) -> re.Pattern[str]:
    """The regular expression of a wild card value: `*` any run, `?` any one character."""
    parts = (".*" if char == "*" else "." if char == "?" else re.escape(char) for char in value)
    return re.compile("".join(parts), re.DOTALL)
