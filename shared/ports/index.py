"""Index: stores, instance records and QIDO search; the metadata database of the product."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from shared.domain.records import DicomJson, InstanceRecord, Metrics, StoreRecord
from shared.domain.search import SearchQuery
from shared.errors import InvalidArgument

# Key an index adds (True) to an instance-level search result built from a metadata summary;
# the search service pops it and completes the result from the blob's header.
INCOMPLETE = "__metadata_incomplete__"

DEFAULT_STUDY_PAGE = 1000


def check_page_limit(limit: int) -> None:
    """InvalidArgument unless `limit` asks for at least one item (shared by the adapters)."""
    if limit < 1:
        raise InvalidArgument(f"page limit must be at least 1, got {limit}")


@runtime_checkable
class Index(Protocol):
    """Errors: NotFound, AlreadyExists, InvalidArgument, as documented per method."""

    # --- stores -----------------------------------------------------------------------
    def create_store(self, store: StoreRecord) -> StoreRecord:
        """Insert a store; AlreadyExists if the name is taken."""
        ...

    def get_store(self, name: str) -> StoreRecord:
        """The store of that resource name; NotFound otherwise."""
        ...

    def list_stores(
        self, dataset: str, page_size: int, page_token: str | None
    ) -> tuple[list[StoreRecord], str | None]:
        """Stores of a dataset ordered by name, and the token of the next page (None at end)."""
        ...

    def update_store(self, store: StoreRecord) -> StoreRecord:
        """Replace labels and config of an existing store; NotFound otherwise."""
        ...

    def delete_store(self, name: str) -> list[InstanceRecord]:
        """Remove the store and every instance row; returns the removed rows (for blob purge)."""
        ...

    # --- instances --------------------------------------------------------------------
    def add_instance(self, record: InstanceRecord) -> InstanceRecord:
        """Insert the record unless a row with the same (store, study, series, sop) exists.

        Returns the row that is in the index afterwards: `record` itself when inserted, else the
        existing one (in any state), so that callers compare checksums. Race-free.
        """
        ...

    def add_instances(self, records: Sequence[InstanceRecord]) -> list[InstanceRecord | Exception]:
        """add_instance for each record in order, as if called one after the other.

        Each entry is what add_instance would have returned (the record itself, or the row
        already holding its key, an earlier record of the same call included) or the error it
        would have raised. Adapters that can make the rows durable together do: one synced
        commit for a whole STOW request instead of one per instance.
        """
        ...

    def get_instance(self, store_id: str, study: str, series: str, sop: str) -> InstanceRecord:
        """The ACTIVE instance; NotFound if absent or being deleted."""
        ...

    def list_instances(
        self, store_id: str, study: str, series: str | None = None
    ) -> list[InstanceRecord]:
        """ACTIVE instances of a study or series ordered by series, InstanceNumber, SOP UID."""
        ...

    def list_study_uids(
        self, store_id: str, *, after: str | None = None, limit: int = DEFAULT_STUDY_PAGE
    ) -> list[str]:
        """UIDs of the studies holding an ACTIVE instance, ascending, each greater than `after`.

        At most `limit` of them (InvalidArgument below 1). Keyset paging: pass the last UID of
        a page as `after` for the next; the cost of a page does not grow with its position.
        """
        ...

    def find_study_uid(self, store_id: str, series: str) -> str | None:
        """The study holding this series, for series-level routes without the study."""
        ...

    def search(self, store_id: str, query: SearchQuery) -> list[DicomJson]:
        """Matching ACTIVE results of the query's level, deterministic order, paged.

        Each result is the DICOM JSON of the level merged with its parents' attributes
        (study; study+series; study+series+instance) before includefield projection.
        """
        ...

    def is_deleting(self, store_id: str, study: str, series: str | None = None) -> bool:
        """True while a study (or series) delete operation is purging it."""
        ...

    def mark_deleting(
        self, store_id: str, study: str, series: str | None = None
    ) -> list[InstanceRecord]:
        """Hide the study/series at once (state DELETING); returns the rows to purge."""
        ...

    def metrics(
        self, store_id: str, study: str | None = None, series: str | None = None
    ) -> Metrics:
        """Counts and byte sizes of ACTIVE instances in the store, a study or a series."""
        ...

    def set_storage_class(
        self, store_id: str, keys: list[tuple[str, str, str]], storage_class: str, when: str
    ) -> int:
        """Record a new storage class (and its update time) on these instances; returns count."""
        ...

    def remove_instances(self, store_id: str, keys: list[tuple[str, str, str]]) -> int:
        """Delete these rows (any state); returns how many existed. Idempotent."""
        ...
