"""Composite indexes and index exemptions FirestoreIndex needs, for Terraform to declare."""

from __future__ import annotations

import json
import sys
from typing import Any

ASC = "ASCENDING"
CONTAINS = "ARRAY_CONTAINS"


def _index(collection: str, *fields: str | tuple[str, str]) -> dict[str, Any]:
    return {
        "collection": collection,
        "fields": [field if isinstance(field, tuple) else (field, ASC) for field in fields],
    }


_INSTANCE_ORDER = ("study_uid", "series_uid", "instance_number", "sop_uid")

# Every composite index the planner can need. Subcollections of every store share their id,
# so one index with query scope COLLECTION serves all stores; `stores` takes the
# collection_prefix of FirestoreIndex in front of its id. Queries with equality filters only
# (UID lookups, `in` lists, counts) are served by merging single-field indexes.
COMPOSITE_INDEXES: list[dict[str, Any]] = [
    # list_stores: a dataset's stores by name
    _index("stores", "dataset", "name"),
    # studies: the visible ones in study UID order, alone or with one equality key
    _index("studies", "visible", "study_uid"),
    _index("studies", "visible", "patient_id", "study_uid"),
    _index("studies", "visible", "accession_number", "study_uid"),
    _index("studies", "visible", "patient_name", "study_uid"),
    _index("studies", "visible", "referring_physician_name", "study_uid"),
    _index("studies", "visible", "study_date", "study_uid"),
    # studies: StudyDate ranges, `prefix*` ranges and name tokens (ordered in process)
    _index("studies", "visible", "study_date"),
    _index("studies", "visible", "patient_id"),
    _index("studies", "visible", "accession_number"),
    _index("studies", "visible", ("name_prefixes", CONTAINS)),
    # series in (study UID, series UID) order: all, of a study, by series UID, by modality
    _index("series", "visible", "study_uid", "series_uid"),
    _index("series", "visible", "series_uid", "study_uid"),
    _index("series", "visible", "modality", "study_uid", "series_uid"),
    _index("series", "visible", "modality"),
    # instances in (study, series, InstanceNumber, SOP) order: all, of a study or series,
    # and by series UID, SOP UID, SOP class or InstanceNumber
    _index("instances", "state", *_INSTANCE_ORDER),
    _index("instances", "state", "series_uid", "study_uid", "instance_number", "sop_uid"),
    _index("instances", "state", "sop_uid", "study_uid", "series_uid", "instance_number"),
    _index("instances", "state", "sop_class_uid", *_INSTANCE_ORDER),
    _index("instances", "state", "instance_number", "study_uid", "series_uid", "sop_uid"),
]

# Large JSON strings never filtered on: exempt them from single-field indexing.
FIELD_EXEMPTIONS: list[dict[str, str]] = [
    {"collection": "instances", "field": "metadata"},
    {"collection": "instances", "field": "study"},
    {"collection": "instances", "field": "series"},
    {"collection": "instances", "field": "frames"},
    {"collection": "studies", "field": "attrs"},
    {"collection": "series", "field": "attrs"},
]


def declared_indexes(prefix: str = "") -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The composite indexes as (collection id, fields), the form FirestoreIndex records."""
    declared = set()
    for entry in COMPOSITE_INDEXES:
        collection = entry["collection"]
        if collection == "stores":
            collection = prefix + collection
        declared.add((collection, tuple(tuple(field) for field in entry["fields"])))
    return declared


def main() -> None:
    """Write both lists as JSON (for a Terraform external data source or a generator)."""
    body = {"composite_indexes": COMPOSITE_INDEXES, "field_exemptions": FIELD_EXEMPTIONS}
    sys.stdout.write(json.dumps(body, indent=2) + "\n")


if __name__ == "__main__":
    main()
