"""The typed QIDO-RS query that the web layer parses and every index executes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Level(StrEnum):
    """Query/retrieve level of a search."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


class MatchKind(StrEnum):
    """How a condition compares the stored value with the query value."""

    EXACT = "exact"  # single value, case-sensitive equality (Google)
    RANGE = "range"  # DA/TM/DT ranges: low and/or high, inclusive
    FUZZY = "fuzzy"  # PN, any query token is a prefix of any stored token (case-insensitive)
    WILDCARD = "wildcard"  # '*' and '?' (standard matching Google lacks)
    UID_LIST = "uid_list"  # backslash-separated list of UIDs, any may match


@dataclass(frozen=True)
class Condition:
    """One matching key: attribute tag as 8 upper-case hex digits, its level and match."""

    tag: str
    keyword: str
    vr: str
    level: Level
    kind: MatchKind
    value: str = ""
    values: tuple[str, ...] = ()
    low: str | None = None
    high: str | None = None


@dataclass(frozen=True)
class SearchQuery:
    """A QIDO-RS search, already validated: scope from the path, conditions, paging, fields."""

    level: Level
    study_uid: str | None = None
    series_uid: str | None = None
    conditions: tuple[Condition, ...] = ()
    include_all: bool = False
    include_tags: frozenset[str] = field(default_factory=frozenset)
    limit: int = 100
    offset: int = 0
    fuzzy: bool = False
