"""OperationStore on Firestore: one document per operation, one create-once document per shard."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.domain.operations import CANCELLED_CODE, Operation, utc_now
from shared.errors import AlreadyExists, Conflict, InvalidArgument, NotFound

if TYPE_CHECKING:
    from google.cloud.firestore_v1.base_document import DocumentSnapshot
    from google.cloud.firestore_v1.document import DocumentReference

_SAMPLE_ERRORS = 20
_FINISH_ATTEMPTS = 50
_RESERVED_ID = re.compile(r"^__.*__$")


class FirestoreOperationStore:
    """`{prefix}operations/{id}` holds the operation; `.../shards/{shard}` one result each.

    Shards never write the operation document: Firestore sustains about one write per second
    per document, and a large import records hundreds of shards. Counters are sums over the
    shard documents, computed when the operation is read.
    """

    def __init__(self, client: firestore.Client, collection_prefix: str = "") -> None:
        self.client = client
        self.collection = client.collection(f"{collection_prefix}operations")

    def create(self, operation: Operation) -> Operation:
        dataset = _dataset_of(operation.name)
        op_id = _document_id(operation.operation_id, "operation id")
        document = {
            "name": operation.name,
            "dataset": dataset,
            "api_method_name": operation.api_method_name,
            "create_time": operation.create_time,
            "created": firestore.SERVER_TIMESTAMP,  # the commit order, for newest-first lists
            "end_time": None,
            "done": False,
            "cancel_requested": False,
            "error": None,
            "response": None,
            "logs_url": operation.logs_url,
            "details": json.dumps(operation.details),
            "items": 0,
            "shards_total": 0,
        }
        try:
            self.collection.document(op_id).create(document)
        except google_exceptions.AlreadyExists:
            raise AlreadyExists(f"operation {operation.name!r} already exists") from None
        return self.get(operation.name)

    def get(self, name: str) -> Operation:
        return self._load(self._snapshot(name))

    def list_operations(
        self, dataset: str, page_size: int, page_token: str | None
    ) -> tuple[list[Operation], str | None]:
        query = (
            self.collection.where(filter=FieldFilter("dataset", "==", dataset))
            .order_by("created", direction=firestore.Query.DESCENDING)
            .order_by("__name__", direction=firestore.Query.DESCENDING)
        )
        if page_token:
            created, op_id = _decode_token(page_token)
            query = query.start_after({"created": created, "__name__": op_id})
        snapshots = list(query.limit(page_size + 1).stream())
        page = [self._load(snapshot) for snapshot in snapshots[:page_size]]
        token = None
        if len(snapshots) > page_size:
            last = snapshots[page_size - 1]
            token = _encode_token(last.get("created"), last.id)
        return page, token

    def set_plan(self, name: str, *, items: int, shards: int) -> None:
        snapshot = self._snapshot(name)
        snapshot.reference.update({"items": items, "shards_total": shards})

    def record_shard(
        self, name: str, shard_id: str, success: int, failure: int, errors: list[dict[str, Any]]
    ) -> bool:
        snapshot = self._snapshot(name)
        shard = snapshot.reference.collection("shards").document(_document_id(shard_id, "shard id"))
        try:
            # create() fails if the document exists: a redelivered shard changes nothing.
            shard.create(
                {
                    "success": success,
                    "failure": failure,
                    "errors": json.dumps(errors[:_SAMPLE_ERRORS]),
                    "recorded": firestore.SERVER_TIMESTAMP,
                }
            )
        except google_exceptions.AlreadyExists:
            return False
        return True

    def sample_errors(self, name: str) -> list[dict[str, Any]]:
        """Up to 20 per-item errors recorded by the shards, for the operation's error details."""
        shards = self._snapshot(name).reference.collection("shards")
        sample: list[dict[str, Any]] = []
        for shard in shards.order_by("__name__").select(["errors"]).stream():
            sample.extend(json.loads(shard.get("errors") or "[]"))
            if len(sample) >= _SAMPLE_ERRORS:
                break
        return sample[:_SAMPLE_ERRORS]

    def request_cancel(self, name: str) -> Operation:
        self._snapshot(name).reference.update({"cancel_requested": True})
        if not self.get(name).done:
            self.finish(name, error={"code": CANCELLED_CODE, "message": "Operation cancelled"})
        return self.get(name)

    def finish(
        self,
        name: str,
        *,
        error: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
    ) -> bool:
        fields = {
            "done": True,
            "end_time": utc_now(),
            "error": json.dumps(error) if error is not None else None,
            "response": json.dumps(response) if response is not None else None,
        }
        for _ in range(_FINISH_ATTEMPTS):
            try:
                snapshot = self._snapshot(name)
            except NotFound:
                return False
            if snapshot.get("done"):
                return False
            if self._update_unchanged(snapshot, fields):
                return True
        raise Conflict(f"operation {name!r} kept changing; could not mark it done")

    def _update_unchanged(self, snapshot: DocumentSnapshot, fields: dict[str, Any]) -> bool:
        # The precondition makes done=False -> True a compare-and-set: of concurrent finishers
        # only the first commit matches the update time they all read.
        option = self.client.write_option(last_update_time=snapshot.update_time)
        try:
            snapshot.reference.update(fields, option=option)
        except (google_exceptions.FailedPrecondition, google_exceptions.Aborted):
            return False
        return True

    def _reference(self, name: str) -> DocumentReference:
        op_id = name.rsplit("/", 1)[-1]
        if "/operations/" not in name or not _valid_document_id(op_id):
            raise NotFound(f"operation {name!r} not found")
        return self.collection.document(op_id)

    def _snapshot(self, name: str) -> DocumentSnapshot:
        snapshot = self._reference(name).get()
        # Ids are random per operation; the name check keeps another dataset's id invisible.
        if not snapshot.exists or snapshot.get("name") != name:
            raise NotFound(f"operation {name!r} not found")
        return snapshot

    def _load(self, snapshot: DocumentSnapshot) -> Operation:
        shards_done, success, failure = self._shard_totals(snapshot.reference)
        row = snapshot.to_dict() or {}
        done = bool(row.get("done"))
        pending = 0 if done else max(int(row.get("items") or 0) - success - failure, 0)
        return Operation(
            name=row["name"],
            api_method_name=row["api_method_name"],
            create_time=row["create_time"],
            end_time=row.get("end_time"),
            done=done,
            success=success,
            failure=failure,
            pending=pending,
            cancel_requested=bool(row.get("cancel_requested")),
            error=_json_or_none(row.get("error")),
            response=_json_or_none(row.get("response")),
            logs_url=row.get("logs_url"),
            details=json.loads(row.get("details") or "{}"),
            shards_total=int(row.get("shards_total") or 0),
            shards_done=shards_done,
        )

    def _shard_totals(self, reference: DocumentReference) -> tuple[int, int, int]:
        # One aggregation round trip instead of reading every shard document.
        query = (
            reference.collection("shards")
            .count(alias="shards")
            .sum("success", alias="success")
            .sum("failure", alias="failure")
        )
        totals = {result.alias: result.value for row in query.get() for result in row}
        return (
            int(totals.get("shards") or 0),
            int(totals.get("success") or 0),
            int(totals.get("failure") or 0),
        )


def _dataset_of(name: str) -> str:
    head, sep, _ = name.partition("/operations/")
    if not sep:
        raise InvalidArgument(f"invalid operation name {name!r}")
    return head


def _valid_document_id(value: str) -> bool:
    return (
        bool(value)
        and value not in (".", "..")
        and "/" not in value
        and not _RESERVED_ID.match(value)
        and len(value.encode()) <= 1500
    )


def _document_id(value: str, what: str) -> str:
    if not _valid_document_id(value):
        raise InvalidArgument(f"invalid {what} {value!r}")
    return value


def _json_or_none(value: Any) -> dict[str, Any] | None:
    if not value:
        return None
    loaded: dict[str, Any] = json.loads(value)
    return loaded


def _encode_token(created: datetime, op_id: str) -> str:
    text = json.dumps({"c": created.isoformat(), "i": op_id})
    return base64.urlsafe_b64encode(text.encode()).decode("ascii")


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        created = datetime.fromisoformat(body["c"])
        op_id = str(body["i"])
    except (ValueError, UnicodeError, KeyError, TypeError):
        raise InvalidArgument(f"invalid page token {token!r}") from None
    if created.tzinfo is None or not _valid_document_id(op_id):
        raise InvalidArgument(f"invalid page token {token!r}")
    return created, op_id
