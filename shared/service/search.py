"""QIDO-RS: parse the query, let the index match and page, project with includefield."""

from __future__ import annotations

from shared.dicom import attributes, json_model
from shared.domain.records import DicomJson, StoreRecord
from shared.domain.search import SearchQuery
from shared.ports.index import INCOMPLETE
from shared.service import retrieve
from shared.service.context import Services

_STUDY, _SERIES, _SOP = "0020000D", "0020000E", "00080018"


def search(
    services: Services, store: StoreRecord, query: SearchQuery, dicomweb_url: str
) -> list[DicomJson]:
    """Matching results of the query's level, projected, BulkDataURIs made absolute."""
    results = [_complete(services, store, r) for r in services.index.search(store.store_id, query)]
    projected = [attributes.project(result, query) for result in results]
    return [_absolute(obj, dicomweb_url) for obj in projected]


def _complete(services: Services, store: StoreRecord, result: DicomJson) -> DicomJson:
    """Instance results from an index that keeps metadata summaries get the full metadata."""
    if not result.pop(INCOMPLETE, False):
        return result
    study, series, sop = (result[tag]["Value"][0] for tag in (_STUDY, _SERIES, _SOP))
    record = services.index.get_instance(store.store_id, study, series, sop)
    return {**result, **retrieve.full_metadata(services, record)}


def _absolute(obj: DicomJson, dicomweb_url: str) -> DicomJson:
    uids = [obj.get(tag, {}).get("Value", [None])[0] for tag in (_STUDY, _SERIES, _SOP)]
    if not all(uids):
        return obj
    study, series, sop = uids
    url = f"{dicomweb_url}/studies/{study}/series/{series}/instances/{sop}"
    return json_model.absolutize_bulkdata(obj, url)
