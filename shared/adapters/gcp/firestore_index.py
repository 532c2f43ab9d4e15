"""Firestore implementation of the Index port: store, study, series and instance documents."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.adapters.index_common import (
    INSTANCE_NUMBER,
    MODALITIES_IN_STUDY,
    MODALITY,
    PATIENT_NAME,
    SERIES_INSTANCE_COUNT,
    SOP_CLASS_UID,
    SOP_CLASSES_IN_STUDY,
    STUDY_INSTANCE_COUNT,
    STUDY_SEARCH_FIELDS,
    STUDY_SERIES_COUNT,
    dataset_of,
    decode_token,
    encode_token,
    first,
    instance_number,
    levels,
    list_element,
    number_element,
    uid_element,
)
from shared.dicom import attributes
from shared.dicom.attributes import SERIES_UID, SOP_UID, STUDY_UID
from shared.dicom.query import (
    has_wildcard,
    is_prefix_pattern,
    literal_prefix,
    matches_all,
    name_token_hint,
    prefix_upper_bound,
    query_number,
    stored_name_tokens,
    string_values,
)
from shared.domain.operations import utc_now
from shared.domain.records import DicomJson, FrameSpan, InstanceRecord, Metrics, StoreRecord
from shared.domain.search import Condition, Level, MatchKind, SearchQuery
from shared.errors import AlreadyExists, NotFound
from shared.ports.index import DEFAULT_STUDY_PAGE, INCOMPLETE, check_page_limit

if TYPE_CHECKING:
    from google.cloud.firestore_v1.collection import CollectionReference
    from google.cloud.firestore_v1.document import DocumentReference
    from google.cloud.firestore_v1.query import Query

logger = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")

ACTIVE = "ACTIVE"
DELETING = "DELETING"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
IN_LIMIT = 30  # values per Firestore `in` filter
WRITE_BATCH = 500  # writes per WriteBatch, Firestore's maximum
READ_BATCH = 300  # references per get_all outside searches
SUMMARY_ELEMENT_LIMIT = 2 * 1024  # bytes of one element's JSON kept in the summary
SUMMARY_LIMIT = 64 * 1024  # the summary stops growing past this many bytes
FRAMES_TEXT_LIMIT = 128 * 1024  # larger frame tables are stored zlib-compressed
MAX_DOCUMENT_ID = 1400  # bytes; Firestore allows 1500
FIRST_PAGE_MIN = 10
PAGE_MAX = 1000
ADD_ATTEMPTS = 5
COUNT_WORKERS = 8


_COLLECTIONS = {Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances"}
# Result order of each level, exactly SqliteIndex's ORDER BY (NULL InstanceNumber first).
_ORDER = {
    Level.STUDY: ("study_uid",),
    Level.SERIES: ("study_uid", "series_uid"),
    Level.INSTANCE: ("study_uid", "series_uid", "instance_number", "sop_uid"),
}
# Visibility filter per level: SqliteIndex's active_count > 0, and state = 'ACTIVE'.
_VISIBLE: dict[Level, tuple[str, Any]] = {
    Level.STUDY: ("visible", True),
    Level.SERIES: ("visible", True),
    Level.INSTANCE: ("state", ACTIVE),
}
# Instance fields a search reads: the rest (frames, per-instance level JSON) only records need.
_RESULT_FIELDS = [
    *_ORDER[Level.INSTANCE],
    "state",
    "sop_class_uid",
    "metadata",
    "metadata_complete",
]

# Driver ranks (lower is more selective) of the conditions Firestore can evaluate.
_EQ_RANK = {
    "sop_uid": 0,
    "series_uid": 1,
    "study_uid": 2,
    "patient_id": 4,
    "accession_number": 4,
    "patient_name": 5,
    "referring_physician_name": 5,
    "study_date": 5,
    "sop_class_uid": 8,
    "modality": 8,
    "instance_number": 8,
}
_IN_RANK = {"sop_uid": 3, "series_uid": 3, "study_uid": 3, "sop_class_uid": 9}
_RANGE_RANK = {"study_date": 7}
_PREFIX_RANK = {"patient_id": 7, "accession_number": 7, "modality": 9}
_TOKENS_RANK = 6

_Doc = tuple["DocumentReference", dict[str, Any]]
IndexFields = tuple[tuple[str, str], ...]


# --- encoding ----------------------------------------------------------------------------


def _escape(part: str) -> str:
    """A key part made safe for a document id ('/' is a path separator, '_' joins parts)."""
    escaped = part.replace("%", "%25").replace("/", "%2F").replace("_", "%5F")
    return escaped if escaped not in ("", ".", "..") else "%" + escaped.encode().hex()


def _doc_id(*parts: str) -> str:
    joined = "_".join(_escape(part) for part in parts)
    if len(joined.encode()) <= MAX_DOCUMENT_ID:
        return joined
    # Keys this long never come from valid UIDs; a digest keeps them addressable ("%h" never
    # appears in an escaped id, so a digest cannot collide with one).
    return "%h" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def metadata_summary(metadata: DicomJson) -> tuple[str, bool]:
    """The metadata as JSON without elements over 2 KiB, capped near 64 KiB; complete flag.

    The full metadata lives in the blob's header; the summary answers searches and keeps the
    document well under Firestore's 1 MiB.
    """
    kept: list[str] = []
    size = 0
    complete = True
    for tag, element in metadata.items():
        if size > SUMMARY_LIMIT:
            return "{" + ",".join(kept) + "}", False
        encoded = _dumps(element)
        length = len(encoded.encode())
        if length > SUMMARY_ELEMENT_LIMIT:
            complete = False
            continue
        kept.append(f"{_dumps(tag)}:{encoded}")
        size += length
    return "{" + ",".join(kept) + "}", complete


def _encode_frames(frames: list[list[FrameSpan]]) -> str | bytes:
    text = _dumps([[[span.offset, span.length] for span in frame] for frame in frames])
    if len(text) <= FRAMES_TEXT_LIMIT:
        return text
    return zlib.compress(text.encode())


def _decode_frames(stored: str | bytes) -> list[list[FrameSpan]]:
    text = zlib.decompress(stored) if isinstance(stored, bytes) else stored
    return [[FrameSpan(offset, length) for offset, length in frame] for frame in json.loads(text)]


def _instance_document(record: InstanceRecord) -> dict[str, Any]:
    summary, complete = metadata_summary(record.metadata)
    return {
        "store_id": record.store_id,
        "study_uid": record.study_uid,
        "series_uid": record.series_uid,
        "sop_uid": record.sop_uid,
        "state": record.state,
        "sop_class_uid": record.sop_class_uid,
        "transfer_syntax": record.transfer_syntax,
        "blob_key": record.blob_key,
        "size": record.size,
        "crc32c": record.crc32c,
        "storage_class": record.storage_class,
        "storage_class_time": record.storage_class_time,
        "number_of_frames": record.number_of_frames,
        "frames": _encode_frames(record.frames),
        "study": _dumps(record.study),
        "series": _dumps(record.series),
        "metadata": summary,
        "metadata_complete": complete,
        "metadata_size": record.metadata_size,
        "header_length": record.header_length,
        "trailer_offset": record.trailer_offset,
        "create_time": record.create_time,
        "instance_number": instance_number(record.metadata),
    }


def _record(data: dict[str, Any]) -> InstanceRecord:
    return InstanceRecord(
        store_id=data["store_id"],
        study_uid=data["study_uid"],
        series_uid=data["series_uid"],
        sop_uid=data["sop_uid"],
        sop_class_uid=data["sop_class_uid"],
        transfer_syntax=data["transfer_syntax"],
        blob_key=data["blob_key"],
        size=data["size"],
        crc32c=data["crc32c"],
        storage_class=data["storage_class"],
        storage_class_time=data["storage_class_time"],
        number_of_frames=data["number_of_frames"],
        frames=_decode_frames(data["frames"]),
        study=json.loads(data["study"]),
        series=json.loads(data["series"]),
        metadata=json.loads(data["metadata"]),
        metadata_size=data["metadata_size"],
        header_length=data["header_length"],
        trailer_offset=data["trailer_offset"],
        metadata_complete=bool(data["metadata_complete"]),
        create_time=data["create_time"],
        state=data["state"],
    )


def _name_prefixes(tokens: Iterable[str]) -> list[str]:
    """Every prefix of every name token: `array-contains` then decides token-prefix matching."""
    return sorted({token[:end] for token in tokens for end in range(1, len(token) + 1)})


def _study_document(record: InstanceRecord, study: DicomJson) -> dict[str, Any]:
    tokens = stored_name_tokens(study.get(PATIENT_NAME))
    document: dict[str, Any] = {
        "study_uid": record.study_uid,
        "attrs": _dumps(study),
        "name_tokens": sorted(tokens),
        "name_prefixes": _name_prefixes(tokens),
        "visible": record.state == ACTIVE,
        "deleting": False,
    }
    for tag, (name, vr) in STUDY_SEARCH_FIELDS.items():
        document[name] = first(study.get(tag), vr)
    return document


def _series_document(record: InstanceRecord, series: DicomJson) -> dict[str, Any]:
    return {
        "study_uid": record.study_uid,
        "series_uid": record.series_uid,
        "attrs": _dumps(series),
        "modality": first(series.get(MODALITY), "CS"),
        "visible": record.state == ACTIVE,
        "deleting": False,
    }


def _store_record(data: dict[str, Any]) -> StoreRecord:
    return StoreRecord(
        name=data["name"],
        store_id=data["store_id"],
        labels=json.loads(data["labels"]),
        config=json.loads(data["config"]),
        create_time=data["create_time"],
    )


def _number_key(number: Any) -> tuple[int, Any]:
    return (0, 0) if number is None else (1, number)


def _order_key(level: Level, data: dict[str, Any]) -> tuple[Any, ...]:
    """Python twin of the Firestore order of a level (strings compare by code point there too)."""
    if level is Level.STUDY:
        return (data["study_uid"],)
    if level is Level.SERIES:
        return (data["study_uid"], data["series_uid"])
    number = _number_key(data.get("instance_number"))
    return (data["study_uid"], data["series_uid"], number, data["sop_uid"])


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _page_sizes(need: int) -> Iterator[int]:
    """Page sizes for streaming candidates: what the page needs first, then growing."""
    size = min(max(need, FIRST_PAGE_MIN), PAGE_MAX)
    while True:
        yield size
        size = min(size * 2, PAGE_MAX)


def _parallel(work: Callable[[K], T], keys: Sequence[K]) -> dict[K, T]:
    """Run independent round trips (one aggregation per study) side by side."""
    if len(keys) <= 1:
        return {key: work(key) for key in keys}
    with ThreadPoolExecutor(max_workers=min(COUNT_WORKERS, len(keys))) as pool:
        return dict(zip(keys, pool.map(work, keys), strict=True))


def index_fields(
    equalities: Sequence[str],
    contains: str | None = None,
    ranges: Sequence[str] = (),
    orders: Sequence[str] = (),
) -> IndexFields | None:
    """The composite index a query needs; None when single-field indexes serve it.

    Equality-only queries are served by merging single-field indexes.
    """
    fields = [(name, "ASCENDING") for name in equalities]
    if contains is not None:
        fields.append((contains, "ARRAY_CONTAINS"))
    tail = list(orders) or list(dict.fromkeys(ranges))
    fields.extend((name, "ASCENDING") for name in tail if name not in equalities)
    if (not tail and contains is None) or len(fields) < 2:
        return None
    return tuple(fields)


# --- search planning ---------------------------------------------------------------------


class _Pushed(Enum):
    """What a clause does with its condition: nothing, all of it, or a superset."""

    NONE = "none"
    EXACT = "exact"
    NARROWED = "narrowed"


@dataclass(frozen=True)
class _Clause:
    """One condition (or a superset of it) decided on a document field.

    The clauses are SqliteIndex's SQL clauses, one for one, so that both indexes accept the
    same rows: `eq`, `in`, `range` (inclusive, NULL never matches), `prefix` (low inclusive,
    high exclusive), `tokens` (study name tokens) and `modalities` (a visible series of the
    study whose modality passes the `inner` comparison).
    """

    holder: Level
    field: str
    op: str
    value: Any = None
    values: tuple[Any, ...] = ()
    low: str | None = None
    high: str | None = None
    hints: tuple[tuple[str, bool], ...] = ()
    inner: str = ""


@dataclass
class _Plan:
    """The clauses of a search, the conditions left to `matches`, and the driving clauses."""

    level: Level
    clauses: list[_Clause] = field(default_factory=list)
    residual: list[Condition] = field(default_factory=list)
    scope: list[_Clause] = field(default_factory=list)
    driver: list[_Clause] = field(default_factory=list)
    driver_level: Level = Level.STUDY

    @property
    def exact(self) -> bool:
        """Whether the Firestore query alone decides the search (offsets can skip there)."""
        return not self.residual and all(clause in self.driver for clause in self.clauses)

    @property
    def needs_modalities(self) -> bool:
        return any(clause.op == "modalities" for clause in self.clauses)


def _field_of(tag: str, level: Level) -> tuple[Level, str] | None:
    """The document and field holding a matching key; None when only `matches` can decide."""
    if tag == STUDY_UID:
        return level, "study_uid"
    if tag == SERIES_UID and level is not Level.STUDY:
        return level, "series_uid"
    if tag == SOP_UID and level is Level.INSTANCE:
        return level, "sop_uid"
    if tag == SOP_CLASS_UID and level is Level.INSTANCE:
        return level, "sop_class_uid"
    if tag == INSTANCE_NUMBER and level is Level.INSTANCE:
        return level, "instance_number"
    if tag == MODALITY and level is not Level.STUDY:
        return Level.SERIES, "modality"
    if tag in STUDY_SEARCH_FIELDS:
        return Level.STUDY, STUDY_SEARCH_FIELDS[tag][0]
    return None


def _comparison(condition: Condition, *, ranges: bool) -> tuple[dict[str, Any] | None, _Pushed]:
    """eq / in / range / prefix arguments of a text comparison, case-sensitive like `matches`."""
    kind = condition.kind
    if kind is MatchKind.EXACT:
        return {"op": "eq", "value": condition.value}, _Pushed.EXACT
    if ranges and kind is MatchKind.RANGE and condition.vr == "DA":
        return {"op": "range", "low": condition.low, "high": condition.high}, _Pushed.EXACT
    if kind is MatchKind.UID_LIST and condition.values:
        return {"op": "in", "values": condition.values}, _Pushed.EXACT
    if kind is MatchKind.WILDCARD and literal_prefix(condition.value):
        prefix = literal_prefix(condition.value)
        pushed = _Pushed.EXACT if is_prefix_pattern(condition.value) else _Pushed.NARROWED
        return {"op": "prefix", "low": prefix, "high": prefix_upper_bound(prefix)}, pushed
    return None, _Pushed.NONE


def _column_clause(
    holder: Level, name: str, condition: Condition
) -> tuple[_Clause | None, _Pushed]:
    if condition.kind is MatchKind.WILDCARD and condition.vr == "PN":
        return None, _Pushed.NONE
    arguments, pushed = _comparison(condition, ranges=True)
    if arguments is None:
        return None, _Pushed.NONE
    return _Clause(holder, name, **arguments), pushed


def _modalities_clause(condition: Condition) -> tuple[_Clause | None, _Pushed]:
    """A study matches when one of its visible series has the modality (PS3.4 C.6.1.1.3)."""
    arguments, pushed = _comparison(condition, ranges=False)
    if arguments is None:
        return None, _Pushed.NONE
    inner = arguments.pop("op")
    return _Clause(Level.STUDY, "modality", "modalities", inner=inner, **arguments), pushed


def _fuzzy_clause(condition: Condition) -> tuple[_Clause | None, _Pushed]:
    hints: list[tuple[str, bool]] = []
    for token in condition.values:
        hint = name_token_hint(token) if has_wildcard(token) else (token, True)
        if hint is None:
            return None, _Pushed.NONE
        hints.append(hint)
    if not hints:
        return None, _Pushed.NONE
    wild = any(has_wildcard(token) for token in condition.values)
    clause = _Clause(Level.STUDY, "name_tokens", "tokens", hints=tuple(hints))
    return clause, _Pushed.NARROWED if wild else _Pushed.EXACT


def _name_pattern_clause(condition: Condition) -> tuple[_Clause | None, _Pushed]:
    """Every name matching the pattern has a token holding its longest literal part."""
    hint = name_token_hint(condition.value)
    if hint is None:
        return None, _Pushed.NONE
    return _Clause(Level.STUDY, "name_tokens", "tokens", hints=(hint,)), _Pushed.NARROWED


def _clause_of(condition: Condition, level: Level) -> tuple[_Clause | None, _Pushed]:
    """SqliteIndex's `_push`, decision for decision."""
    if condition.tag == MODALITIES_IN_STUDY:
        return _modalities_clause(condition)
    if condition.tag == PATIENT_NAME and condition.kind is MatchKind.FUZZY:
        return _fuzzy_clause(condition)
    if condition.tag == PATIENT_NAME and condition.kind is MatchKind.WILDCARD:
        return _name_pattern_clause(condition)
    located = _field_of(condition.tag, level)
    if located is None or condition.kind is MatchKind.FUZZY:
        return None, _Pushed.NONE
    holder, name = located
    if name == "instance_number":
        # The field truncates a non-integer IS; `matches` keeps the final say on such values.
        number = query_number(condition.vr, condition.value)
        if condition.kind is not MatchKind.EXACT or not isinstance(number, int):
            return None, _Pushed.NONE
        return _Clause(holder, name, "eq", value=number), _Pushed.NARROWED
    return _column_clause(holder, name, condition)


def _rank(clause: _Clause) -> int | None:
    """How selective a clause is as the Firestore query of a search; None if it cannot drive."""
    if clause.op == "tokens":
        return _TOKENS_RANK if all(anchored for _, anchored in clause.hints) else None
    table = {"eq": _EQ_RANK, "in": _IN_RANK, "range": _RANGE_RANK, "prefix": _PREFIX_RANK}
    return table.get(clause.op, {}).get(clause.field)


def _choose_driver(plan: _Plan) -> None:
    """The path scope drives when given; else the most selective clause (own level first)."""
    if plan.scope:
        plan.driver, plan.driver_level = list(plan.scope), plan.level
        return
    best: tuple[tuple[int, bool], _Clause] | None = None
    for clause in plan.clauses:
        rank = _rank(clause)
        if rank is None:
            continue
        key = (rank, clause.holder is not plan.level)
        if best is None or key < best[0]:
            best = (key, clause)
    if best is None:
        plan.driver, plan.driver_level = [], plan.level
    else:
        plan.driver, plan.driver_level = [best[1]], best[1].holder


def _plan(query: SearchQuery) -> _Plan:
    plan = _Plan(query.level)
    if query.study_uid is not None:
        plan.scope.append(_Clause(query.level, "study_uid", "eq", value=query.study_uid))
    if query.series_uid is not None and query.level is not Level.STUDY:
        plan.scope.append(_Clause(query.level, "series_uid", "eq", value=query.series_uid))
    plan.clauses.extend(plan.scope)
    for condition in query.conditions:
        clause, pushed = _clause_of(condition, query.level)
        if clause is not None:
            plan.clauses.append(clause)
        if pushed is not _Pushed.EXACT:
            plan.residual.append(condition)
    _choose_driver(plan)
    return plan


def _compare(op: str, clause: _Clause, value: Any) -> bool:
    """One SQL comparison on a stored field value (NULL never matches)."""
    if value is None:
        return False
    if op == "eq":
        return bool(value == clause.value)
    if op == "in":
        return value in clause.values
    if not isinstance(value, str):
        return False
    if op == "range":
        low_ok = clause.low is None or value >= clause.low
        return low_ok and (clause.high is None or value <= clause.high)
    if op == "prefix":
        low_ok = clause.low is None or value >= clause.low
        return low_ok and (clause.high is None or value < clause.high)
    raise AssertionError(f"unhandled comparison {op}")


def _token_matches(token: str, hint: tuple[str, bool]) -> bool:
    text, anchored = hint
    if anchored:
        upper = prefix_upper_bound(text)
        return token >= text and (upper is None or token < upper)
    return text in token


def _filters(clause: _Clause) -> list[list[FieldFilter]]:
    """Firestore filter sets (OR-ed) selecting exactly the documents a clause accepts."""
    if clause.op == "eq":
        return [[FieldFilter(clause.field, "==", clause.value)]]
    if clause.op == "in":
        return [
            [FieldFilter(clause.field, "in", list(chunk))]
            for chunk in _chunks(clause.values, IN_LIMIT)
        ]
    if clause.op == "tokens":
        return [[FieldFilter("name_prefixes", "array_contains", text)] for text, _ in clause.hints]
    upper = "<=" if clause.op == "range" else "<"
    bounds = [FieldFilter(clause.field, ">=", clause.low)] if clause.low is not None else []
    if clause.high is not None:
        bounds.append(FieldFilter(clause.field, upper, clause.high))
    return [bounds]


# --- one store's documents ---------------------------------------------------------------


class _StoreDocs:
    """References of one store: `{prefix}stores/{id}` and its three flat subcollections.

    Flat subcollections (not series nested under studies) let one query span every study of
    the store at each level without collection-group queries.
    """

    def __init__(self, root: DocumentReference) -> None:
        self.root = root

    def collection(self, level: Level) -> CollectionReference:
        return self.root.collection(_COLLECTIONS[level])

    def study(self, study: str) -> DocumentReference:
        return self.collection(Level.STUDY).document(_doc_id(study))

    def series(self, study: str, series: str) -> DocumentReference:
        return self.collection(Level.SERIES).document(_doc_id(study, series))

    def instance(self, study: str, series: str, sop: str) -> DocumentReference:
        return self.collection(Level.INSTANCE).document(_doc_id(study, series, sop))

    def parent(self, study: str, series: str | None) -> DocumentReference:
        return self.study(study) if series is None else self.series(study, series)


# --- the index ---------------------------------------------------------------------------


class FirestoreIndex:
    """Index on Firestore.

    Layout: `{prefix}stores/{store id}` (name, dataset, labels, config), `{prefix}store_names/
    {escaped name}` (makes names unique), and under each store the flat subcollections
    `studies/{study}`, `series/{study}_{series}` and `instances/{study}_{series}_{sop}`.

    Storing an instance creates one document; the study and series documents are created once
    (create() with its precondition) and never updated per instance, so parallel writers of one
    study do not contend. Counts come from aggregation queries over the instance documents.
    Instance documents keep a metadata summary (see `metadata_summary`); the composite indexes
    the queries need are listed in `firestore_indexes`.
    """

    def __init__(self, client: firestore.Client, collection_prefix: str = "") -> None:
        self.client = client
        self.stores = client.collection(f"{collection_prefix}stores")
        self.names = client.collection(f"{collection_prefix}store_names")
        # Composite indexes the queries run so far needed: tests compare it with the list
        # that Terraform declares (`firestore_indexes.COMPOSITE_INDEXES`).
        self.required_indexes: set[tuple[str, IndexFields]] = set()

    def _docs(self, store_id: str) -> _StoreDocs:
        return _StoreDocs(self.stores.document(_doc_id(store_id)))

    def note_index(
        self,
        collection: str,
        equalities: Sequence[str],
        contains: str | None = None,
        ranges: Sequence[str] = (),
        orders: Sequence[str] = (),
    ) -> None:
        fields = index_fields(equalities, contains, ranges, orders)
        if fields is not None:
            self.required_indexes.add((collection, fields))

    # --- stores --------------------------------------------------------------------------

    def create_store(self, store: StoreRecord) -> StoreRecord:
        """Insert a store; AlreadyExists if the name (or internal id) is taken."""
        created = dataclasses.replace(store, create_time=store.create_time or utc_now())
        batch = self.client.batch()
        # The name document makes the resource name unique; both creates commit or neither.
        batch.create(self.names.document(_doc_id(created.name)), {"store_id": created.store_id})
        batch.create(
            self._docs(created.store_id).root,
            {
                "name": created.name,
                "store_id": created.store_id,
                "dataset": dataset_of(created.name),
                "labels": json.dumps(created.labels),
                "config": json.dumps(created.config),
                "create_time": created.create_time,
            },
        )
        try:
            batch.commit()
        except google_exceptions.AlreadyExists:
            raise AlreadyExists(f"DICOM store {store.name} already exists") from None
        return created

    def _store_root(self, name: str) -> DocumentReference:
        snapshot = self.names.document(_doc_id(name)).get()
        if not snapshot.exists:
            raise NotFound(f"DICOM store {name} not found")
        return self._docs(snapshot.get("store_id")).root

    def get_store(self, name: str) -> StoreRecord:
        """The store of that resource name; NotFound otherwise."""
        snapshot = self._store_root(name).get()
        if not snapshot.exists:
            raise NotFound(f"DICOM store {name} not found")
        return _store_record(snapshot.to_dict() or {})

    def list_stores(
        self, dataset: str, page_size: int, page_token: str | None
    ) -> tuple[list[StoreRecord], str | None]:
        """Stores of a dataset ordered by name, and the token of the next page (None at end)."""
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        after = decode_token(dataset, page_token) if page_token else ""
        query = self.stores.where(filter=FieldFilter("dataset", "==", dataset))
        if after:
            query = query.where(filter=FieldFilter("name", ">", after))
        self.note_index(self.stores.id, ["dataset"], orders=["name"])
        snapshots = list(query.order_by("name").limit(size + 1).stream())
        stores = [_store_record(snapshot.to_dict() or {}) for snapshot in snapshots[:size]]
        more = len(snapshots) > size
        return stores, encode_token(dataset, stores[-1].name) if more else None

    def update_store(self, store: StoreRecord) -> StoreRecord:
        """Replace labels and config of an existing store; NotFound otherwise."""
        root = self._store_root(store.name)
        try:
            root.update({"labels": json.dumps(store.labels), "config": json.dumps(store.config)})
        except google_exceptions.NotFound:
            raise NotFound(f"DICOM store {store.name} not found") from None
        return self.get_store(store.name)

    def delete_store(self, name: str) -> list[InstanceRecord]:
        """Remove the store and every instance document; returns the removed rows."""
        root = self._store_root(name)
        docs = _StoreDocs(root)
        removed = [
            _record(snapshot.to_dict() or {})
            for snapshot in docs.collection(Level.INSTANCE).stream()
        ]
        self.client.recursive_delete(root)
        self.names.document(_doc_id(name)).delete()
        logger.info("deleted store %s with %d instances", name, len(removed))
        return removed

    # --- instances -----------------------------------------------------------------------

    def add_instance(self, record: InstanceRecord) -> InstanceRecord:
        """Create the instance document unless its key exists; returns the row afterwards.

        One write per instance; the study and series documents cost a write only when this
        instance is their first (or brings a hidden one back).
        """
        if not record.create_time:
            record.create_time = utc_now()
        if not record.storage_class_time:
            record.storage_class_time = record.create_time
        docs = self._docs(record.store_id)
        reference = docs.instance(*record.key)
        document = _instance_document(record)
        for _ in range(ADD_ATTEMPTS):
            try:
                reference.create(document)
            except google_exceptions.AlreadyExists:
                existing = reference.get()
                if existing.exists:
                    return _record(existing.to_dict() or {})
                continue  # removed meanwhile: try again
            self._ensure_parents(docs, record, reference)
            return record
        raise AlreadyExists(f"instance {record.sop_uid} keeps being replaced; try again")

    def add_instances(self, records: Sequence[InstanceRecord]) -> list[InstanceRecord | Exception]:
        """add_instance for each record in order; Firestore has no cheaper way to do several,
        as each create is checked against the instance, study and series documents."""
        results: list[InstanceRecord | Exception] = []
        for record in records:
            try:
                results.append(self.add_instance(record))
            except Exception as error:  # the caller gets it in the record's place
                results.append(error)
        return results

    def _ensure_parents(
        self, docs: _StoreDocs, record: InstanceRecord, reference: DocumentReference
    ) -> None:
        """Create or reveal the study and series documents of a newly created instance.

        They are read after the instance exists: a delete that hides or drops them re-checks
        for instances afterwards, so between the two one side always sees the other.
        """
        study_ref = docs.study(record.study_uid)
        series_ref = docs.series(record.study_uid, record.series_uid)
        found = {
            snapshot.reference.path: snapshot
            for snapshot in self.client.get_all([docs.root, study_ref, series_ref])
        }
        if not found[docs.root.path].exists:
            reference.delete()
            raise NotFound(f"no DICOM store with id {record.store_id}")
        study, series = levels(record)
        active = record.state == ACTIVE
        self._ensure(study_ref, found[study_ref.path], _study_document(record, study), active)
        self._ensure(series_ref, found[series_ref.path], _series_document(record, series), active)

    @staticmethod
    def _ensure(
        reference: DocumentReference, snapshot: Any, document: dict[str, Any], active: bool
    ) -> None:
        if not snapshot.exists:
            try:
                reference.create(document)
                return
            except google_exceptions.AlreadyExists:
                snapshot = reference.get()  # another writer's first instance won
        if active and snapshot.exists and not snapshot.get("visible"):
            try:
                reference.update({"visible": True})
            except google_exceptions.NotFound:  # dropped meanwhile: this instance recreates it
                with contextlib.suppress(google_exceptions.AlreadyExists):
                    reference.create(document)

    def get_instance(self, store_id: str, study: str, series: str, sop: str) -> InstanceRecord:
        """The ACTIVE instance; NotFound if absent or being deleted."""
        snapshot = self._docs(store_id).instance(study, series, sop).get()
        if not snapshot.exists or snapshot.get("state") != ACTIVE:
            raise NotFound(f"instance {sop} not found")
        return _record(snapshot.to_dict() or {})

    def _scoped(self, docs: _StoreDocs, study: str, series: str | None) -> Query:
        query = docs.collection(Level.INSTANCE).where(filter=FieldFilter("study_uid", "==", study))
        if series is not None:
            query = query.where(filter=FieldFilter("series_uid", "==", series))
        return query

    def list_instances(
        self, store_id: str, study: str, series: str | None = None
    ) -> list[InstanceRecord]:
        """ACTIVE instances of a study or series ordered by series, InstanceNumber, SOP UID."""
        equalities = [("study_uid", study)] + ([] if series is None else [("series_uid", series)])
        # The search machinery's ordered stream, reading whole documents (fields=None).
        search = _Search(self, self._docs(store_id), Level.INSTANCE, _Plan(Level.INSTANCE))
        return [
            _record(data)
            for batch in search.ordered(Level.INSTANCE, equalities, PAGE_MAX)
            for _, data in batch
        ]

    def list_study_uids(
        self, store_id: str, *, after: str | None = None, limit: int = DEFAULT_STUDY_PAGE
    ) -> list[str]:
        """Visible study UIDs after `after`, ascending.

        A cursor on the (visible, study_uid) index: Firestore reads (and bills) the page's
        documents only, where an offset would read every skipped one too.
        """
        check_page_limit(limit)
        collection = _COLLECTIONS[Level.STUDY]
        name, wanted = _VISIBLE[Level.STUDY]
        query = (
            self._docs(store_id)
            .collection(Level.STUDY)
            .where(filter=FieldFilter(name, "==", wanted))
            .order_by("study_uid")
        )
        self.note_index(collection, [name], orders=["study_uid"])
        if after is not None:
            query = query.start_after({"study_uid": after})
        snapshots = query.select(["study_uid"]).limit(limit).stream()
        return [str(snapshot.get("study_uid")) for snapshot in snapshots]

    def find_study_uid(self, store_id: str, series: str) -> str | None:
        """The study holding this series (a visible one first), for routes without the study."""
        collection = self._docs(store_id).collection(Level.SERIES)
        query = collection.where(filter=FieldFilter("series_uid", "==", series))
        found = [
            snapshot.to_dict() or {} for snapshot in query.select(["study_uid", "visible"]).stream()
        ]
        if not found:
            return None
        best = min(found, key=lambda data: (not data.get("visible"), data["study_uid"]))
        return str(best["study_uid"])

    # --- deletion ------------------------------------------------------------------------

    def is_deleting(self, store_id: str, study: str, series: str | None = None) -> bool:
        """True while a study delete (or, with `series`, that series' delete) is purging it."""
        docs = self._docs(store_id)
        references = [docs.study(study)] + ([] if series is None else [docs.series(study, series)])
        return any(
            snapshot.exists and bool(snapshot.get("deleting"))
            for snapshot in self.client.get_all(references)
        )

    def mark_deleting(
        self, store_id: str, study: str, series: str | None = None
    ) -> list[InstanceRecord]:
        """Hide the study/series at once (state DELETING); returns every row to purge."""
        docs = self._docs(store_id)
        with contextlib.suppress(google_exceptions.NotFound):  # nothing stored: nothing to hide
            docs.parent(study, series).update({"deleting": True})
        found = [
            (s.reference, s.to_dict() or {}) for s in self._scoped(docs, study, series).stream()
        ]
        found.sort(key=lambda doc: _order_key(Level.INSTANCE, doc[1])[1:])
        self._write_all(
            (reference, {"state": DELETING}) for reference, data in found if data["state"] == ACTIVE
        )
        records = [_record({**data, "state": _hidden(data["state"])}) for _, data in found]
        self._settle(docs, {study: {record.series_uid for record in records}}, drop_empty=False)
        return records

    def _write_all(
        self, updates: Iterable[tuple[DocumentReference, dict[str, Any] | None]]
    ) -> None:
        """Apply updates (None: delete) in WriteBatches of at most 500 writes."""
        batch = self.client.batch()
        for reference, fields in updates:
            if fields is None:
                batch.delete(reference)
            else:
                batch.update(reference, fields)
            if len(batch) >= WRITE_BATCH:
                batch.commit()
                batch = self.client.batch()
        if len(batch):
            batch.commit()

    def remove_instances(self, store_id: str, keys: list[tuple[str, str, str]]) -> int:
        """Delete these rows (any state); returns how many existed. Idempotent."""
        docs = self._docs(store_id)
        existing = self._existing(docs, keys)
        self._write_all((snapshot.reference, None) for snapshot in existing)
        touched: dict[str, set[str]] = {}
        for snapshot in existing:
            touched.setdefault(snapshot.get("study_uid"), set()).add(snapshot.get("series_uid"))
        self._settle(docs, touched, drop_empty=True)
        return len(existing)

    def _existing(self, docs: _StoreDocs, keys: list[tuple[str, str, str]]) -> list[Any]:
        """Snapshots of the instance documents among these keys (duplicates read once)."""
        found: list[Any] = []
        for chunk in _chunks(list(dict.fromkeys(keys)), READ_BATCH):
            references = [docs.instance(*key) for key in chunk]
            found.extend(s for s in self.client.get_all(references) if s.exists)
        return found

    def _settle(self, docs: _StoreDocs, touched: dict[str, set[str]], *, drop_empty: bool) -> None:
        """Bring visibility, deleting flags and existence of touched parents up to date."""
        for study, series_uids in touched.items():
            for series in sorted(series_uids):
                self._refresh(docs, study, series, drop_empty=drop_empty)
            self._refresh(docs, study, None, drop_empty=drop_empty)

    def _exists(self, docs: _StoreDocs, study: str, series: str | None, state: str | None) -> bool:
        query = self._scoped(docs, study, series)
        if state is not None:
            query = query.where(filter=FieldFilter("state", "==", state))
        return any(True for _ in query.select([]).limit(1).stream())

    def _refresh(
        self, docs: _StoreDocs, study: str, series: str | None, *, drop_empty: bool
    ) -> None:
        """Recompute one study/series document from its instances, as SQLite's counts do.

        Visible while it has an ACTIVE instance; its deleting flag ends when no DELETING one is
        left; dropped with its last instance. A change towards hidden or dropped is re-checked
        afterwards, because an instance may have been stored meanwhile.
        """
        reference = docs.parent(study, series)
        snapshot = reference.get()
        active = self._exists(docs, study, series, ACTIVE)
        deleting = self._exists(docs, study, series, DELETING)
        if not snapshot.exists:
            if active or deleting or self._exists(docs, study, series, None):
                self._restore(docs, study, series)
            return
        if drop_empty and not (active or deleting or self._exists(docs, study, series, None)):
            reference.delete()
            if self._exists(docs, study, series, None):
                self._restore(docs, study, series)
            return
        changes: dict[str, Any] = {}
        if bool(snapshot.get("visible")) != active:
            changes["visible"] = active
        if drop_empty and snapshot.get("deleting") and not deleting:
            changes["deleting"] = False
        with contextlib.suppress(google_exceptions.NotFound):  # dropped by a parallel purge
            if changes:
                reference.update(changes)
            if changes.get("visible") is False and self._exists(docs, study, series, ACTIVE):
                reference.update({"visible": True})

    def _restore(self, docs: _StoreDocs, study: str, series: str | None) -> None:
        """Recreate a study/series document dropped while an instance was being stored."""
        found = list(self._scoped(docs, study, series).limit(1).stream())
        if not found:
            return
        record = _record(found[0].to_dict() or {})
        study_attrs, series_attrs = levels(record)
        document = (
            _study_document(record, study_attrs)
            if series is None
            else _series_document(record, series_attrs)
        )
        document["visible"] = self._exists(docs, study, series, ACTIVE)
        with contextlib.suppress(google_exceptions.AlreadyExists):
            docs.parent(study, series).create(document)

    # --- metrics and storage classes -----------------------------------------------------

    def metrics(
        self, store_id: str, study: str | None = None, series: str | None = None
    ) -> Metrics:
        """Counts and byte sizes of the ACTIVE instances of a store, study or series."""
        docs = self._docs(store_id)
        query: Query = docs.collection(Level.INSTANCE).where(
            filter=FieldFilter("state", "==", ACTIVE)
        )
        for name, uid in (("study_uid", study), ("series_uid", series)):
            if uid is not None:
                query = query.where(filter=FieldFilter(name, "==", uid))
        aggregation: Any = query.count(alias="instances")  # the library leaves it untyped
        totals = _aggregate(
            aggregation.sum("metadata_size", alias="structured").sum("size", alias="blob")
        )
        instances = int(totals.get("instances") or 0)
        studies, series_count = self._scope_counts(docs, study, series, instances)
        return Metrics(
            study_count=studies,
            series_count=series_count,
            instance_count=instances,
            structured_bytes=int(totals.get("structured") or 0),
            blob_bytes=int(totals.get("blob") or 0),
        )

    def _scope_counts(
        self, docs: _StoreDocs, study: str | None, series: str | None, instances: int
    ) -> tuple[int, int]:
        """Studies and series holding ACTIVE instances: counts of the visible documents."""
        if instances == 0:
            return 0, 0
        if study is not None and series is not None:
            return 1, 1
        if series is not None:  # a series UID without its study: one document per study
            pairs = self._count_visible(Level.SERIES, docs, "series_uid", series)
            return pairs, pairs
        if study is not None:
            return 1, self._count_visible(Level.SERIES, docs, "study_uid", study)
        return self._count_visible(Level.STUDY, docs), self._count_visible(Level.SERIES, docs)

    @staticmethod
    def _count_visible(
        level: Level, docs: _StoreDocs, name: str | None = None, uid: str | None = None
    ) -> int:
        query: Query = docs.collection(level).where(filter=FieldFilter("visible", "==", True))
        if name is not None:
            query = query.where(filter=FieldFilter(name, "==", uid))
        return int(_aggregate(query.count(alias="n")).get("n") or 0)

    def set_storage_class(
        self, store_id: str, keys: list[tuple[str, str, str]], storage_class: str, when: str
    ) -> int:
        """Record a storage class change on the ACTIVE instances among `keys`."""
        fields = {"storage_class": storage_class, "storage_class_time": when}
        active = [s for s in self._existing(self._docs(store_id), keys) if s.get("state") == ACTIVE]
        self._write_all((snapshot.reference, fields) for snapshot in active)
        return len(active)

    # --- search --------------------------------------------------------------------------

    def search(self, store_id: str, query: SearchQuery) -> list[DicomJson]:
        """Matching ACTIVE results of the query's level in a stable order, offset then limit.

        The planner's driving clause runs in Firestore; the other clauses and the conditions
        only `matches` decides are checked here, page after page, until the page is full.
        """
        if query.limit <= 0:
            return []
        plan = _plan(query)
        # Field names and operators only: query values may be patient data.
        logger.debug(
            "%s search driven by %s at %s level, %d clauses, %d residual conditions",
            query.level,
            [f"{clause.field} {clause.op}" for clause in plan.driver] or "a scan",
            plan.driver_level,
            len(plan.clauses),
            len(plan.residual),
        )
        return _Search(self, self._docs(store_id), query.level, plan).run(query)


def _hidden(state: str) -> str:
    return DELETING if state == ACTIVE else state


def _aggregate(query: Any) -> dict[str, Any]:
    return {result.alias: result.value for row in query.get() for result in row}


# --- search execution --------------------------------------------------------------------


def _first_uid(result: DicomJson, tag: str) -> str | None:
    values = string_values(result.get(tag), "UI")
    return values[0] if values else None


class _Search:
    """One search: candidate streams, parent documents and computed figures, cached per run."""

    def __init__(self, index: FirestoreIndex, docs: _StoreDocs, level: Level, plan: _Plan) -> None:
        self.index = index
        self.client = index.client
        self.docs = docs
        self.level = level
        self.plan = plan
        self.need = PAGE_MAX
        self.skip_left = 0
        self.fields: list[str] | None = None  # instance fields to read; None: whole documents
        self.studies: dict[str, dict[str, Any] | None] = {}
        self.series: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.parsed: dict[tuple[str, str, str], DicomJson] = {}
        self.facts: dict[str, tuple[set[str], int]] = {}  # modalities, visible series
        self.study_counts: dict[str, int] = {}
        self.series_counts: dict[tuple[str, str], int] = {}
        self.sop_classes: dict[str, set[str]] = {}

    def run(self, query: SearchQuery) -> list[DicomJson]:
        """Stream candidates in order, keep what every clause and `matches` accept, page."""
        computed = attributes.computed_tags(query)
        early = computed & {condition.tag for condition in self.plan.residual}
        # When Firestore alone decides, the offset skips keys unread (or runs server-side).
        self.skip_left = query.offset if self.plan.exact else 0
        self.fields = _RESULT_FIELDS
        offset = query.offset - self.skip_left
        self.need = offset + query.limit
        results: list[DicomJson] = []
        skipped = 0
        for batch in self.source():
            found = self.candidates(batch)
            self.add_computed(found, early)
            for result in found:
                if self.plan.residual and not matches_all(self.plan.residual, result):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                results.append(result)
                if len(results) >= query.limit:
                    break
            if len(results) >= query.limit:
                break
        self.add_computed(results, computed - early)
        return results

    # --- candidate streams -----------------------------------------------------------------

    def source(self) -> Iterator[list[_Doc]]:
        plan = self.plan
        if plan.driver_level is self.level:
            return self.own(self.level, plan.driver)
        return self.descend(self.own(plan.driver_level, plan.driver), plan.driver_level)

    def own(self, level: Level, clauses: list[_Clause]) -> Iterator[list[_Doc]]:
        """Documents of `level` accepted by the clauses, in the level's order."""
        if all(clause.op == "eq" for clause in clauses):
            equalities = [(clause.field, clause.value) for clause in clauses]
            return self.ordered(level, equalities, self.need)
        (clause,) = clauses
        return self.keyed(level, clause)

    def _visible_query(self, level: Level) -> Query:
        name, wanted = _VISIBLE[level]
        return self.docs.collection(level).where(filter=FieldFilter(name, "==", wanted))

    def ordered(
        self, level: Level, equalities: list[tuple[str, Any]], need: int
    ) -> Iterator[list[_Doc]]:
        """Equality filters with Firestore ordering: pages streamed with a cursor."""
        query = self._visible_query(level)
        names = [_VISIBLE[level][0]]
        for name, wanted in equalities:
            query = query.where(filter=FieldFilter(name, "==", wanted))
            names.append(name)
        # Firestore refuses to order by a field that has an equality filter.
        orders = [name for name in _ORDER[level] if name not in names]
        for name in orders:
            query = query.order_by(name)
        if level is Level.INSTANCE and self.fields is not None:
            query = query.select(self.fields)
        self.index.note_index(_COLLECTIONS[level], names, orders=orders)
        cursor = None
        for size in _page_sizes(need):
            page = query.limit(size)
            if cursor is not None:
                page = page.start_after(cursor)
            elif level is self.level and self.skip_left:
                page = page.offset(self.skip_left)
                self.skip_left = 0
            snapshots = list(page.stream())
            if snapshots:
                yield [(snapshot.reference, snapshot.to_dict() or {}) for snapshot in snapshots]
            if len(snapshots) < size:
                return
            cursor = snapshots[-1]

    def keyed(
        self,
        level: Level,
        clause: _Clause,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Iterator[list[_Doc]]:
        """Filters Firestore cannot order by the level's order (in, ranges, array-contains):
        the matches are read at once and sorted here. Instances are read as keys first and
        loaded page by page; study and series documents are small enough to read whole."""
        whole = level is not Level.INSTANCE
        found: dict[str, tuple[tuple[Any, ...], _Doc]] = {}
        for filters in _filters(clause):
            query = self._visible_query(level)
            for condition in filters:
                query = query.where(filter=condition)
            self._note_keyed(level, clause)
            if not whole:
                query = query.select(list(_ORDER[level]))
            for snapshot in query.stream():
                data = snapshot.to_dict() or {}
                if keep is None or keep(data):
                    doc = (snapshot.reference, data)
                    found[snapshot.reference.path] = (_order_key(level, data), doc)
        ordered = [doc for _, doc in sorted(found.values(), key=lambda item: item[0])]
        skip = min(self.skip_left, len(ordered)) if level is self.level else 0
        self.skip_left -= skip
        rest = ordered[skip:]
        if not whole:
            yield from self.load([reference for reference, _ in rest])
            return
        for start in range(0, len(rest), PAGE_MAX):
            yield rest[start : start + PAGE_MAX]

    def _note_keyed(self, level: Level, clause: _Clause) -> None:
        collection, visible = _COLLECTIONS[level], _VISIBLE[level][0]
        if clause.op == "tokens":
            self.index.note_index(collection, [visible], contains="name_prefixes")
        elif clause.op in ("range", "prefix"):
            self.index.note_index(collection, [visible], ranges=[clause.field])
        else:
            self.index.note_index(collection, [visible, clause.field])

    def load(self, references: list[DocumentReference]) -> Iterator[list[_Doc]]:
        sizes = _page_sizes(self.need)
        start = 0
        while start < len(references):
            chunk = references[start : start + next(sizes)]
            start += len(chunk)
            loaded = {
                snapshot.reference.path: snapshot.to_dict() or {}
                for snapshot in self.client.get_all(chunk, field_paths=self.fields)
                if snapshot.exists
            }
            docs = [(ref, loaded[ref.path]) for ref in chunk if ref.path in loaded]
            if docs:
                yield docs

    def descend(self, parents: Iterator[list[_Doc]], parent_level: Level) -> Iterator[list[_Doc]]:
        """Children of the parents that pass their own clauses, parent chunk by parent chunk.

        Parents come in order and children sort after their parent's key, so the chunks
        concatenate in the level's order.
        """
        pending: list[dict[str, Any]] = []
        for batch in parents:
            for _, data in batch:
                self.remember(parent_level, data)
                if self.parent_passes(parent_level, data):
                    pending.append(data)
                if len(pending) == IN_LIMIT:
                    yield from self.children(pending, parent_level)
                    pending = []
        if pending:
            yield from self.children(pending, parent_level)

    def parent_passes(self, parent_level: Level, data: dict[str, Any]) -> bool:
        docs = {parent_level: data}
        return all(
            self.holds(clause, docs)
            for clause in self.plan.clauses
            if clause.holder is parent_level and clause.op != "modalities"
        )

    def children(self, parents: list[dict[str, Any]], parent_level: Level) -> Iterator[list[_Doc]]:
        if parent_level is Level.STUDY:
            uids = tuple(parent["study_uid"] for parent in parents)
            return self.keyed(self.level, _Clause(self.level, "study_uid", "in", values=uids))
        pairs = {(parent["study_uid"], parent["series_uid"]) for parent in parents}
        uids = tuple(dict.fromkeys(series for _, series in sorted(pairs)))
        clause = _Clause(self.level, "series_uid", "in", values=uids)
        return self.keyed(
            self.level, clause, lambda data: (data["study_uid"], data["series_uid"]) in pairs
        )

    # --- candidates ------------------------------------------------------------------------

    def remember(self, level: Level, data: dict[str, Any]) -> None:
        if level is Level.STUDY:
            self.studies[data["study_uid"]] = data
        elif level is Level.SERIES:
            self.series[(data["study_uid"], data["series_uid"])] = data

    def candidates(self, batch: list[_Doc]) -> list[DicomJson]:
        self.load_parents(batch)
        if self.plan.needs_modalities:
            self.load_facts(sorted({data["study_uid"] for _, data in batch}))
        found = []
        for _, data in batch:
            result = self.candidate(data)
            if result is not None:
                found.append(result)
        return found

    def load_parents(self, batch: list[_Doc]) -> None:
        """The study (and series) documents of a page of candidates, in one round trip."""
        if self.level is Level.STUDY:
            return
        wanted: dict[str, tuple[Level, Any]] = {}
        for _, data in batch:
            study = data["study_uid"]
            if study not in self.studies:
                wanted[self.docs.study(study).path] = (Level.STUDY, study)
            pair = (study, data["series_uid"])
            if self.level is Level.INSTANCE and pair not in self.series:
                wanted[self.docs.series(*pair).path] = (Level.SERIES, pair)
        if not wanted:
            return
        for level, key in wanted.values():
            (self.studies if level is Level.STUDY else self.series)[key] = None
        references = [self.client.document(path) for path in wanted]
        for snapshot in self.client.get_all(references):
            if snapshot.exists:
                self.remember(wanted[snapshot.reference.path][0], snapshot.to_dict() or {})

    def candidate(self, data: dict[str, Any]) -> DicomJson | None:
        """The merged result of one document, or None when it is hidden or a clause fails."""
        name, wanted = _VISIBLE[self.level]
        if data.get(name) != wanted:
            return None
        study = data if self.level is Level.STUDY else self.studies.get(data["study_uid"])
        series: dict[str, Any] | None = data if self.level is Level.SERIES else None
        if self.level is Level.INSTANCE:
            series = self.series.get((data["study_uid"], data["series_uid"]))
        if study is None or (series is None and self.level is not Level.STUDY):
            return None  # like SQLite's JOIN: a row needs its parents
        docs = {Level.STUDY: study, Level.SERIES: series or {}, Level.INSTANCE: data}
        if not all(self.holds(clause, docs) for clause in self.plan.clauses):
            return None
        return self.result(data, study, series)

    def holds(self, clause: _Clause, docs: dict[Level, dict[str, Any]]) -> bool:
        if clause.op == "modalities":
            modalities, _ = self.facts.get(docs[Level.STUDY]["study_uid"], (set(), 0))
            return any(_compare(clause.inner, clause, modality) for modality in modalities)
        if clause.op == "tokens":
            tokens = docs[Level.STUDY].get("name_tokens") or []
            return any(_token_matches(token, hint) for hint in clause.hints for token in tokens)
        holder = docs.get(clause.holder)
        return holder is not None and _compare(clause.op, clause, holder.get(clause.field))

    def attrs(self, kind: str, data: dict[str, Any]) -> DicomJson:
        key = (kind, data["study_uid"], data.get("series_uid", ""))
        if key not in self.parsed:
            self.parsed[key] = json.loads(data["attrs"])
        return self.parsed[key]

    def result(
        self, data: dict[str, Any], study: dict[str, Any], series: dict[str, Any] | None
    ) -> DicomJson:
        # Parents win on shared tags, so a result shows the values its parents matched on.
        study_attrs = self.attrs("study", study)
        if self.level is Level.STUDY or series is None:
            return dict(study_attrs)
        series_attrs = self.attrs("series", series)
        if self.level is Level.SERIES:
            return {**series_attrs, **study_attrs}
        result: DicomJson = json.loads(data["metadata"])
        result[SOP_UID] = uid_element(data["sop_uid"])
        result.update(series_attrs)
        result.update(study_attrs)
        if not data.get("metadata_complete", True):
            result[INCOMPLETE] = True
        return result

    # --- computed attributes ---------------------------------------------------------------

    def add_computed(self, results: list[DicomJson], tags: frozenset[str]) -> None:
        """Add the computed attributes named in `tags` to each result, in place."""
        if not tags or not results:
            return
        studies = sorted({uid for r in results if (uid := _first_uid(r, STUDY_UID)) is not None})
        figures = self.study_figures(studies, tags)
        pairs: list[tuple[str, str]] = []
        if SERIES_INSTANCE_COUNT in tags:
            pairs = sorted({pair for r in results if (pair := self._pair(r)) is not None})
            self._count_series(pairs)
        for result in results:
            study = _first_uid(result, STUDY_UID)
            result.update(figures.get(study or "", {}))
            pair = self._pair(result) if pairs else None
            if pair is not None and pair in self.series_counts:
                result[SERIES_INSTANCE_COUNT] = number_element(self.series_counts[pair])

    @staticmethod
    def _pair(result: DicomJson) -> tuple[str, str] | None:
        study, series = _first_uid(result, STUDY_UID), _first_uid(result, SERIES_UID)
        return None if study is None or series is None else (study, series)

    def study_figures(self, studies: list[str], tags: frozenset[str]) -> dict[str, DicomJson]:
        figures: dict[str, DicomJson] = {study: {} for study in studies}
        if tags & {MODALITIES_IN_STUDY, STUDY_SERIES_COUNT}:
            self.load_facts(studies)
            for study, found in figures.items():
                modalities, count = self.facts[study]
                if MODALITIES_IN_STUDY in tags:
                    found[MODALITIES_IN_STUDY] = list_element("CS", modalities)
                if STUDY_SERIES_COUNT in tags:
                    found[STUDY_SERIES_COUNT] = number_element(count)
        if STUDY_INSTANCE_COUNT in tags:
            self._count_studies(studies)
            for study, found in figures.items():
                found[STUDY_INSTANCE_COUNT] = number_element(self.study_counts[study])
        if SOP_CLASSES_IN_STUDY in tags:
            self._load_sop_classes(studies)
            for study, found in figures.items():
                found[SOP_CLASSES_IN_STUDY] = list_element("UI", self.sop_classes[study])
        return figures

    def load_facts(self, studies: Sequence[str]) -> None:
        """ModalitiesInStudy and NumberOfStudyRelatedSeries, from the visible series."""
        missing = [study for study in studies if study not in self.facts]
        for chunk in _chunks(missing, IN_LIMIT):
            modalities: dict[str, set[str]] = {study: set() for study in chunk}
            counts = dict.fromkeys(chunk, 0)
            query = self._visible_query(Level.SERIES).where(
                filter=FieldFilter("study_uid", "in", list(chunk))
            )
            for snapshot in query.select(["study_uid", "modality"]).stream():
                study, modality = snapshot.get("study_uid"), snapshot.get("modality")
                counts[study] += 1
                if modality:
                    modalities[study].add(modality)
            self.facts.update({study: (modalities[study], counts[study]) for study in chunk})

    def _active(self, study: str, series: str | None = None) -> Query:
        query = self._visible_query(Level.INSTANCE).where(
            filter=FieldFilter("study_uid", "==", study)
        )
        if series is not None:
            query = query.where(filter=FieldFilter("series_uid", "==", series))
        return query

    def _count(self, study: str, series: str | None = None) -> int:
        totals = _aggregate(self._active(study, series).count(alias="n"))
        return int(totals.get("n") or 0)

    def _count_studies(self, studies: list[str]) -> None:
        missing = [study for study in studies if study not in self.study_counts]
        self.study_counts.update(_parallel(self._count, missing))

    def _count_series(self, pairs: list[tuple[str, str]]) -> None:
        missing = [pair for pair in pairs if pair not in self.series_counts]
        self.series_counts.update(_parallel(lambda pair: self._count(*pair), missing))

    def _load_sop_classes(self, studies: list[str]) -> None:
        def classes(study: str) -> set[str]:
            query = self._active(study).select(["sop_class_uid"])
            return {snapshot.get("sop_class_uid") for snapshot in query.stream()}

        missing = [study for study in studies if study not in self.sop_classes]
        self.sop_classes.update(_parallel(classes, missing))
