"""Contract suite for the Index port: every adapter must pass it unchanged."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from shared.adapters.local.sqlite_index import SqliteIndex
from shared.dicom import attributes
from shared.dicom.attributes import SERIES_UID, SOP_UID, STUDY_UID
from shared.dicom.query import dictionary_vr, matches_all, parse_search
from shared.domain.records import DicomJson, FrameSpan, InstanceRecord, Metrics, StoreRecord
from shared.domain.search import Condition, Level, MatchKind, SearchQuery
from shared.errors import AlreadyExists, InvalidArgument, NotFound
from shared.ports.index import INCOMPLETE, Index

if TYPE_CHECKING:
    from google.cloud.firestore import Client as FirestoreClient

    from shared.adapters.gcp.firestore_index import FirestoreIndex
    from shared.service.context import Services
    from tests.emulators import FirestoreEmulator

DATASET = "projects/p/locations/l/datasets/d"
STORE_NAME = f"{DATASET}/dicomStores/s"
STORE_ID = "store-1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

logger = logging.getLogger(__name__)


def fresh_firestore_index(
    emulator: FirestoreEmulator, client: FirestoreClient | None = None
) -> FirestoreIndex:
    """A FirestoreIndex on an emptied emulator holding the test store."""
    from shared.adapters.gcp.firestore_index import FirestoreIndex

    emulator.reset()
    built = FirestoreIndex(client or emulator.client)
    built.create_store(StoreRecord(name=STORE_NAME, store_id=STORE_ID))
    return built


def firestore_index_with_own_client(
    emulator: FirestoreEmulator,
) -> tuple[FirestoreIndex, FirestoreClient]:
    """A fresh FirestoreIndex on a client of its own, which a test may instrument freely."""
    from shared.adapters.gcp.clients import make_firestore_client

    client = make_firestore_client(emulator.project, emulator_host=emulator.emulator.host)
    return fresh_firestore_index(emulator, client), client


@pytest.fixture(params=["sqlite", "sqlite-memory", "firestore"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Index]:
    if request.param == "firestore":
        from shared.adapters.gcp.firestore_indexes import declared_indexes

        firestore = fresh_firestore_index(request.getfixturevalue("firestore_emulator"))
        yield firestore
        # The emulator runs any query; production needs each composite index declared.
        assert firestore.required_indexes <= declared_indexes()
        return
    built = SqliteIndex(":memory:" if request.param == "sqlite-memory" else tmp_path / "i.db")
    built.create_store(StoreRecord(name=STORE_NAME, store_id=STORE_ID))
    yield built
    built.close()


# --- record helpers ----------------------------------------------------------------------


def el(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


def name(alphabetic: str) -> dict[str, Any]:
    return el("PN", {"Alphabetic": alphabetic})


def make(
    study: str,
    series: str,
    sop: str,
    *,
    patient_id: str = "PID-1",
    patient_name: str = "Doe^John",
    accession: str = "ACC-1",
    referring: str = "Who^Doctor",
    study_date: str = "20240115",
    modality: str = "CT",
    number: int = 1,
    crc32c: str = "AAAAAA==",
    store_id: str = STORE_ID,
    extra: DicomJson | None = None,
) -> InstanceRecord:
    """A record whose DICOM JSON is built by hand, split into levels as the service does."""
    metadata: DicomJson = {
        **(extra or {}),
        "00080005": el("CS", "ISO_IR 192"),
        "00080016": el("UI", CT_IMAGE),
        "00080018": el("UI", sop),
        "00080020": el("DA", study_date),
        "00080050": el("SH", accession),
        "00080060": el("CS", modality),
        "00080090": name(referring),
        "00100010": name(patient_name),
        "00100020": el("LO", patient_id),
        "0020000D": el("UI", study),
        "0020000E": el("UI", series),
        "00200013": el("IS", number),
        "00280010": el("US", 4),
        "7FE00010": {"vr": "OW", "BulkDataURI": "bulkdata/7FE00010"},
    }
    study_attrs, series_attrs = attributes.split_levels(metadata)
    return InstanceRecord(
        store_id=store_id,
        study_uid=study,
        series_uid=series,
        sop_uid=sop,
        sop_class_uid=CT_IMAGE,
        transfer_syntax="1.2.840.10008.1.2.1",
        blob_key=f"{store_id}/{study}/{series}/{sop}.dcm",
        size=1234,
        crc32c=crc32c,
        number_of_frames=2,
        frames=[[FrameSpan(100, 16)], [FrameSpan(116, 8), FrameSpan(130, 8)]],
        study=study_attrs,
        series=series_attrs,
        metadata=metadata,
        metadata_size=999,
        create_time="2024-01-01T00:00:00.000000Z",
    )


def details(**keywords: Any) -> DicomJson:
    """Elements by keyword, each with its dictionary VR (PN values become Alphabetic)."""
    found: DicomJson = {}
    for keyword, value in keywords.items():
        tag = attributes.tag_of(keyword)
        vr = dictionary_vr(tag)
        found[tag] = name(value) if vr == "PN" else el(vr, value)
    return found


def search(index: Index, level: Level, *params: tuple[str, str], **scope: str) -> list[DicomJson]:
    return index.search(STORE_ID, parse_search(level, list(params), **scope))


def value(result: DicomJson, tag: str) -> Any:
    return result[tag]["Value"][0]


def uids(results: list[DicomJson], tag: str) -> list[str]:
    return [value(result, tag) for result in results]


def studies_of(results: list[DicomJson]) -> list[str]:
    return uids(results, attributes.STUDY_UID)


def sops_of(results: list[DicomJson]) -> list[str]:
    return uids(results, attributes.SOP_UID)


@pytest.fixture
def loaded(index: Index) -> Index:
    """Three studies: two patients, two dates, several series and modalities."""
    chest = {"StudyDescription": "Chest CT", "StudyTime": "101500", "PatientBirthDate": "19700101"}
    rows = [
        make(
            "1.1", "1.1.1", "1.1.1.1", number=2,
            extra=details(
                **chest, SeriesDescription="Axial", ContentTime="101502", SliceThickness=1.5,
                AcquisitionDateTime="20240115101502+0100",
            ),
        ),
        make(
            "1.1", "1.1.1", "1.1.1.2", number=1,
            extra=details(
                **chest, SeriesDescription="Axial", ContentTime="101501.5", SliceThickness=2.5,
                AcquisitionDateTime="20240115101501.5+0100",
            ),
        ),
        make(
            "1.1", "1.1.2", "1.1.2.1", modality="MR",
            extra=details(
                **chest, SeriesDescription="Sagittal T2", ContentTime="102000",
                AcquisitionDateTime="20240115102000+0100",
            ),
        ),
        make(
            "1.2",
            "1.2.1",
            "1.2.1.1",
            patient_id="PID-2",
            patient_name="García^José",
            accession="ACC-2",
            referring="House^Gregory",
            study_date="20230601",
            modality="MR",
            extra=details(
                StudyDescription="Brain MR", StudyTime="2345", PatientBirthDate="19851231",
                SeriesDescription="axial T1", ContentTime="234600",
                AcquisitionDateTime="20230601234600",
            ),
        ),
        make(
            "1.3", "1.3.1", "1.3.1.1", study_date="20241231", accession="ACC-3",
            extra=details(
                StudyDescription="chest follow-up", StudyTime="08", PatientBirthDate="19700101",
                SeriesDescription="Axial", AcquisitionDateTime="20241231",
            ),
        ),
    ]  # fmt: skip
    for row in rows:
        index.add_instance(row)
    return index


# --- stores ------------------------------------------------------------------------------


def test_implements_the_protocol(index: Index) -> None:
    assert isinstance(index, Index)


def test_store_crud(index: Index) -> None:
    store = StoreRecord(
        name=f"{DATASET}/dicomStores/t", store_id="store-2", labels={"k": "v"}, config={"a": 1}
    )
    created = index.create_store(store)
    assert created.create_time
    fetched = index.get_store(store.name)
    assert (fetched.store_id, fetched.labels, fetched.config) == ("store-2", {"k": "v"}, {"a": 1})
    updated = index.update_store(dataclasses.replace(store, labels={"x": "y"}, config={}))
    assert (updated.labels, updated.config) == ({"x": "y"}, {})
    assert updated.create_time == created.create_time
    assert index.get_store(store.name).labels == {"x": "y"}
    assert index.delete_store(store.name) == []
    with pytest.raises(NotFound):
        index.get_store(store.name)


def test_create_existing_store(index: Index) -> None:
    with pytest.raises(AlreadyExists):
        index.create_store(StoreRecord(name=STORE_NAME, store_id="other"))


def test_missing_store(index: Index) -> None:
    missing = f"{DATASET}/dicomStores/missing"
    with pytest.raises(NotFound):
        index.get_store(missing)
    with pytest.raises(NotFound):
        index.update_store(StoreRecord(name=missing, store_id="x"))
    with pytest.raises(NotFound):
        index.delete_store(missing)


def test_list_stores_pages_by_name(index: Index) -> None:
    for letter in "edcba":
        index.create_store(StoreRecord(name=f"{DATASET}/dicomStores/{letter}", store_id=letter))
    index.create_store(
        StoreRecord(name="projects/p/locations/l/datasets/e/dicomStores/z", store_id="z")
    )
    seen: list[str] = []
    token: str | None = None
    for _ in range(10):
        page, token = index.list_stores(DATASET, 2, token)
        assert len(page) <= 2
        seen.extend(store.name for store in page)
        if token is None:
            break
    expected = sorted([f"{DATASET}/dicomStores/{c}" for c in "abcde"] + [STORE_NAME])
    assert seen == expected
    everything, last = index.list_stores(DATASET, 100, None)
    assert [store.name for store in everything] == expected and last is None
    exact, last = index.list_stores(DATASET, 6, None)
    assert len(exact) == 6 and last is None


def test_list_stores_of_an_empty_dataset(index: Index) -> None:
    assert index.list_stores("projects/p/locations/l/datasets/none", 10, None) == ([], None)


@pytest.mark.parametrize("token", ["garbage!", "bm90IGpzb24=", "e30="])
def test_list_stores_rejects_invalid_tokens(index: Index, token: str) -> None:
    with pytest.raises(InvalidArgument):
        index.list_stores(DATASET, 10, token)


def test_list_stores_rejects_a_token_of_another_dataset(index: Index) -> None:
    other = "projects/p/locations/l/datasets/o"
    for letter in "abc":
        index.create_store(StoreRecord(name=f"{other}/dicomStores/{letter}", store_id=letter))
    _, token = index.list_stores(other, 1, None)
    assert token is not None
    with pytest.raises(InvalidArgument):
        index.list_stores(DATASET, 1, token)


def test_delete_store_returns_and_removes_its_instances(loaded: Index) -> None:
    removed = loaded.delete_store(STORE_NAME)
    assert sorted(record.sop_uid for record in removed) == [
        "1.1.1.1", "1.1.1.2", "1.1.2.1", "1.2.1.1", "1.3.1.1",
    ]  # fmt: skip
    assert all(record.blob_key for record in removed)
    with pytest.raises(NotFound):
        loaded.get_store(STORE_NAME)
    loaded.create_store(StoreRecord(name=STORE_NAME, store_id=STORE_ID))
    assert search(loaded, Level.INSTANCE) == []
    assert search(loaded, Level.STUDY) == []


# --- add / get / list --------------------------------------------------------------------


def test_add_then_get_round_trips(index: Index) -> None:
    record = make("1.1", "1.1.1", "1.1.1.1")
    assert index.add_instance(record) is record
    fetched = index.get_instance(STORE_ID, "1.1", "1.1.1", "1.1.1.1")
    assert fetched == record


def test_add_fills_an_empty_create_time(index: Index) -> None:
    record = dataclasses.replace(make("1.1", "1.1.1", "1.1.1.1"), create_time="")
    assert index.add_instance(record).create_time
    assert index.get_instance(STORE_ID, "1.1", "1.1.1", "1.1.1.1").create_time


def test_duplicate_add_returns_the_existing_row(index: Index) -> None:
    first = make("1.1", "1.1.1", "1.1.1.1", crc32c="first===")
    index.add_instance(first)
    second = make("1.1", "1.1.1", "1.1.1.1", crc32c="second==", patient_id="OTHER")
    existing = index.add_instance(second)
    assert existing == first and existing is not second
    assert len(index.list_instances(STORE_ID, "1.1")) == 1
    assert studies_of(search(index, Level.STUDY, ("PatientID", "OTHER"))) == []


def test_duplicate_add_returns_a_deleting_row(index: Index) -> None:
    index.add_instance(make("1.1", "1.1.1", "1.1.1.1"))
    index.mark_deleting(STORE_ID, "1.1")
    existing = index.add_instance(make("1.1", "1.1.1", "1.1.1.1"))
    assert existing.state == "DELETING"


def test_add_instances_adds_in_order_and_the_first_of_a_key_wins(index: Index) -> None:
    before = make("1.1", "1.1.1", "1.1.1.1", crc32c="before==")
    index.add_instance(before)
    first = make("1.1", "1.1.1", "1.1.1.2", crc32c="first===")
    twin = make("1.1", "1.1.1", "1.1.1.2", crc32c="twin====", patient_id="OTHER")
    taken = make("1.1", "1.1.1", "1.1.1.1", crc32c="taken===")
    fresh = dataclasses.replace(make("2.1", "2.1.1", "2.1.1.1"), create_time="")
    results = index.add_instances([first, twin, taken, fresh])
    assert results[0] is first and results[3] is fresh
    assert results[1] == first and results[2] == before
    assert fresh.create_time and fresh.storage_class_time
    assert sorted(r.sop_uid for r in index.list_instances(STORE_ID, "1.1")) == [
        "1.1.1.1", "1.1.1.2",
    ]  # fmt: skip
    assert index.get_instance(STORE_ID, "2.1", "2.1.1", "2.1.1.1") == fresh
    assert index.add_instances([]) == []


def test_add_instances_gives_each_row_its_own_error(index: Index) -> None:
    stored = make("1.1", "1.1.1", "1.1.1.1")
    orphan = make("9.1", "9.1.1", "9.1.1.1", store_id="no-such-store")
    results = index.add_instances([stored, orphan])
    assert results[0] is stored
    assert isinstance(results[1], NotFound)
    assert index.get_instance(STORE_ID, "1.1", "1.1.1", "1.1.1.1") == stored


def test_get_missing_instance(loaded: Index) -> None:
    for key in [("1.1", "1.1.1", "9"), ("1.1", "9", "1.1.1.1"), ("9", "1.1.1", "1.1.1.1")]:
        with pytest.raises(NotFound):
            loaded.get_instance(STORE_ID, *key)
    with pytest.raises(NotFound):
        loaded.get_instance("other-store", "1.1", "1.1.1", "1.1.1.1")


def test_list_instances_order(loaded: Index) -> None:
    listed = loaded.list_instances(STORE_ID, "1.1")
    assert [r.sop_uid for r in listed] == ["1.1.1.2", "1.1.1.1", "1.1.2.1"]
    assert [r.sop_uid for r in loaded.list_instances(STORE_ID, "1.1", "1.1.2")] == ["1.1.2.1"]
    assert loaded.list_instances(STORE_ID, "9") == []


def test_find_study_uid(loaded: Index) -> None:
    assert loaded.find_study_uid(STORE_ID, "1.1.2") == "1.1"
    assert loaded.find_study_uid(STORE_ID, "9.9") is None


def test_stores_are_isolated(loaded: Index) -> None:
    loaded.create_store(StoreRecord(name=f"{DATASET}/dicomStores/t", store_id="store-2"))
    loaded.add_instance(make("1.1", "1.1.1", "1.1.1.1", store_id="store-2", patient_id="X"))
    assert studies_of(loaded.search("store-2", parse_search(Level.STUDY, []))) == ["1.1"]
    assert studies_of(search(loaded, Level.STUDY, ("PatientID", "X"))) == []
    assert len(loaded.list_instances(STORE_ID, "1.1")) == 3


# --- search ------------------------------------------------------------------------------


def test_study_search_returns_merged_study_attributes(loaded: Index) -> None:
    results = search(loaded, Level.STUDY)
    assert studies_of(results) == ["1.1", "1.2", "1.3"]
    first = results[0]
    assert value(first, "00100020") == "PID-1"
    assert value(first, "00100010") == {"Alphabetic": "Doe^John"}
    assert "00080018" not in first and "00080060" not in first


def test_series_search_merges_study_and_series(loaded: Index) -> None:
    results = search(loaded, Level.SERIES)
    assert uids(results, attributes.SERIES_UID) == ["1.1.1", "1.1.2", "1.2.1", "1.3.1"]
    assert value(results[1], "00080060") == "MR"
    assert value(results[1], "00100020") == "PID-1"
    assert value(results[1], attributes.STUDY_UID) == "1.1"


def test_instance_search_merges_every_level(loaded: Index) -> None:
    results = search(loaded, Level.INSTANCE)
    assert sops_of(results) == ["1.1.1.2", "1.1.1.1", "1.1.2.1", "1.2.1.1", "1.3.1.1"]
    first = results[0]
    assert value(first, "00080016") == CT_IMAGE
    assert value(first, "00100020") == "PID-1"
    assert value(first, "00080060") == "CT"
    assert value(first, "00200013") == 1


STUDY_KEY_CASES = [
    (("StudyInstanceUID", "1.2"), ["1.2"]),
    (("PatientID", "PID-1"), ["1.1", "1.3"]),
    (("PatientID", "pid-1"), []),
    (("PatientName", "García^José"), ["1.2"]),
    (("PatientName", "garcía^josé"), []),
    (("AccessionNumber", "ACC-3"), ["1.3"]),
    (("ReferringPhysicianName", "House^Gregory"), ["1.2"]),
    (("StudyDate", "20240115"), ["1.1"]),
    (("StudyDate", "20240101-20241231"), ["1.1", "1.3"]),
    (("StudyDate", "-20240115"), ["1.1", "1.2"]),
    (("StudyDate", "20240116-"), ["1.3"]),
    (("StudyDate", "20230601-20230601"), ["1.2"]),
    (("0020000D", "1.3"), ["1.3"]),
    (("PatientID", ""), ["1.1", "1.2", "1.3"]),
    # Superset: Google compares '*' literally (this case used to expect []); wild cards now.
    (("PatientID", "PID-*"), ["1.1", "1.2", "1.3"]),
    (("PatientID", "PID-?"), ["1.1", "1.2", "1.3"]),
    (("PatientID", "*-2"), ["1.2"]),
    (("PatientID", "P?D-1"), ["1.1", "1.3"]),
    (("PatientID", "pid-*"), []),
    (("PatientID", "*"), ["1.1", "1.2", "1.3"]),
    (("AccessionNumber", "ACC-?"), ["1.1", "1.2", "1.3"]),
    (("AccessionNumber", "*3"), ["1.3"]),
    (("PatientName", "doe*"), ["1.1", "1.3"]),
    (("PatientName", "*JOSÉ"), ["1.2"]),
    (("PatientName", "*jose"), []),
    (("PatientName", "*o*"), ["1.1", "1.2", "1.3"]),
    (("PatientName", "?arc*"), ["1.2"]),
    (("PatientName", "Doe^J?hn"), ["1.1", "1.3"]),
    (("ReferringPhysicianName", "house*"), ["1.2"]),
    (("StudyInstanceUID", "1.1\\1.3"), ["1.1", "1.3"]),
    (("StudyInstanceUID", "1.3,9.9"), ["1.3"]),
    (("StudyInstanceUID", "1.*"), []),
    (("StudyDate", "20230601-20230601"), ["1.2"]),
    (("StudyDescription", "Chest*"), ["1.1"]),
    (("StudyDescription", "*est*"), ["1.1", "1.3"]),
    (("StudyDescription", "Brain MR"), ["1.2"]),
    (("StudyTime", "10"), ["1.1"]),
    (("StudyTime", "0800-1100"), ["1.1", "1.3"]),
    (("StudyTime", "2300-"), ["1.2"]),
    (("StudyTime", "-0859"), ["1.3"]),
    (("PatientBirthDate", "19700101"), ["1.1", "1.3"]),
    (("PatientBirthDate", "19800101-"), ["1.2"]),
    (("ModalitiesInStudy", "MR"), ["1.1", "1.2"]),
    (("ModalitiesInStudy", "CT"), ["1.1", "1.3"]),
    (("ModalitiesInStudy", "CT,MR"), ["1.1", "1.2", "1.3"]),
    (("ModalitiesInStudy", "US\\CT"), ["1.1", "1.3"]),
    (("ModalitiesInStudy", "M?"), ["1.1", "1.2"]),
    (("ModalitiesInStudy", "C*"), ["1.1", "1.3"]),
    (("ModalitiesInStudy", "*R"), ["1.1", "1.2"]),
    (("ModalitiesInStudy", "US"), []),
    (("NumberOfStudyRelatedInstances", "3"), ["1.1"]),
    (("NumberOfStudyRelatedSeries", "1"), ["1.2", "1.3"]),
    (("SOPClassesInStudy", CT_IMAGE), ["1.1", "1.2", "1.3"]),
]


@pytest.mark.parametrize(("param", "expected"), STUDY_KEY_CASES)
def test_study_search_by_key(loaded: Index, param: tuple[str, str], expected: list[str]) -> None:
    assert studies_of(search(loaded, Level.STUDY, param)) == expected


@pytest.mark.parametrize(("param", "expected"), STUDY_KEY_CASES)
def test_study_keys_filter_series_and_instances(
    loaded: Index, param: tuple[str, str], expected: list[str]
) -> None:
    series_studies = studies_of(search(loaded, Level.SERIES, param))
    instance_studies = studies_of(search(loaded, Level.INSTANCE, param))
    assert sorted(set(series_studies)) == expected
    assert sorted(set(instance_studies)) == expected


def test_conditions_are_anded(loaded: Index) -> None:
    found = search(loaded, Level.STUDY, ("PatientID", "PID-1"), ("StudyDate", "20241231"))
    assert studies_of(found) == ["1.3"]
    both = search(loaded, Level.SERIES, ("PatientID", "PID-1"), ("Modality", "MR"))
    assert uids(both, attributes.SERIES_UID) == ["1.1.2"]


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (("Modality", "MR"), ["1.1.2", "1.2.1"]),
        (("Modality", "CT"), ["1.1.1", "1.3.1"]),
        (("Modality", "mr"), []),
        (("SeriesInstanceUID", "1.2.1"), ["1.2.1"]),
        (("0020000E", "1.1.1"), ["1.1.1"]),
        (("SeriesInstanceUID", "1.1.2\\1.2.1"), ["1.1.2", "1.2.1"]),
        (("Modality", "M*"), ["1.1.2", "1.2.1"]),
        (("Modality", "?T"), ["1.1.1", "1.3.1"]),
        (("SeriesDescription", "Axial"), ["1.1.1", "1.3.1"]),
        (("SeriesDescription", "*xial*"), ["1.1.1", "1.2.1", "1.3.1"]),
        (("SeriesDescription", "*T?"), ["1.1.2", "1.2.1"]),
        (("NumberOfSeriesRelatedInstances", "2"), ["1.1.1"]),
        (("ModalitiesInStudy", "MR"), ["1.1.1", "1.1.2", "1.2.1"]),
    ],
)
def test_series_search_by_key(loaded: Index, param: tuple[str, str], expected: list[str]) -> None:
    assert uids(search(loaded, Level.SERIES, param), attributes.SERIES_UID) == expected


def test_instance_search_by_series_keys_and_sop(loaded: Index) -> None:
    assert sops_of(search(loaded, Level.INSTANCE, ("Modality", "MR"))) == ["1.1.2.1", "1.2.1.1"]
    found = search(loaded, Level.INSTANCE, ("SeriesInstanceUID", "1.1.1"))
    assert sops_of(found) == ["1.1.1.2", "1.1.1.1"]
    assert sops_of(search(loaded, Level.INSTANCE, ("SOPInstanceUID", "1.3.1.1"))) == ["1.3.1.1"]
    assert search(loaded, Level.INSTANCE, ("SOPInstanceUID", "1.3.1")) == []


ALL_SOPS = ["1.1.1.2", "1.1.1.1", "1.1.2.1", "1.2.1.1", "1.3.1.1"]


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (("SOPClassUID", CT_IMAGE), ALL_SOPS),
        (("SOPClassUID", "1.2.3"), []),
        (("SOPClassUID", f"1.2.3,{CT_IMAGE}"), ALL_SOPS),
        (("SOPInstanceUID", "1.1.1.1\\1.3.1.1"), ["1.1.1.1", "1.3.1.1"]),
        (("InstanceNumber", "2"), ["1.1.1.1"]),
        (("InstanceNumber", "+01"), ["1.1.1.2", "1.1.2.1", "1.2.1.1", "1.3.1.1"]),
        (("Rows", "4"), ALL_SOPS),
        (("SliceThickness", "1.50"), ["1.1.1.1"]),
        (("ContentTime", "1015"), ["1.1.1.2", "1.1.1.1"]),
        (("ContentTime", "101501.5-1020"), ["1.1.1.2", "1.1.1.1", "1.1.2.1"]),
        (("AcquisitionDateTime", "20240115091500-20240115092000"), ALL_SOPS[:3]),
        (("AcquisitionDateTime", "2024"), ["1.1.1.2", "1.1.1.1", "1.1.2.1", "1.3.1.1"]),
        (("AcquisitionDateTime", "-2023"), ["1.2.1.1"]),
        (("SeriesDescription", "Sag*"), ["1.1.2.1"]),
        (("ModalitiesInStudy", "CT"), ["1.1.1.2", "1.1.1.1", "1.1.2.1", "1.3.1.1"]),
    ],
)  # fmt: skip
def test_instance_search_by_any_attribute(
    loaded: Index, param: tuple[str, str], expected: list[str]
) -> None:
    assert sops_of(search(loaded, Level.INSTANCE, param)) == expected


def test_any_attribute_keys_are_anded_with_pushed_ones(loaded: Index) -> None:
    found = search(loaded, Level.INSTANCE, ("SeriesDescription", "Axial"), ("PatientID", "PID-1"))
    assert sops_of(found) == ["1.1.1.2", "1.1.1.1", "1.3.1.1"]
    scoped = search(
        loaded, Level.INSTANCE, ("ContentTime", "10"), study_uid="1.1", series_uid="1.1.2"
    )
    assert sops_of(scoped) == ["1.1.2.1"]
    studies = search(loaded, Level.STUDY, ("ModalitiesInStudy", "MR"), ("StudyDescription", "*CT"))
    assert studies_of(studies) == ["1.1"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("jo", ["1.1", "1.2", "1.3"]),
        ("Do", ["1.1", "1.3"]),
        ("John Doe", ["1.1", "1.3"]),
        ("ohn", []),
        ("GARC", ["1.2"]),
        ("jose", ["1.2"]),
        ("josé", ["1.2"]),
        ("zz gar", ["1.2"]),
        ("*oe", ["1.1", "1.3"]),
        ("j?hn", ["1.1", "1.3"]),
        ("*os*", ["1.2"]),
        ("zz *rcia", ["1.2"]),
        ("*x", []),
    ],
)
def test_fuzzy_patient_name(loaded: Index, query: str, expected: list[str]) -> None:
    params = (("PatientName", query), ("fuzzymatching", "true"))
    assert studies_of(search(loaded, Level.STUDY, *params)) == expected
    assert sorted(set(studies_of(search(loaded, Level.SERIES, *params)))) == expected
    assert sorted(set(studies_of(search(loaded, Level.INSTANCE, *params)))) == expected


def test_fuzzy_combined_with_other_keys(loaded: Index) -> None:
    params = (("PatientName", "doe"), ("fuzzymatching", "true"), ("AccessionNumber", "ACC-3"))
    assert studies_of(search(loaded, Level.STUDY, *params)) == ["1.3"]


def test_search_scoped_by_study_and_series(loaded: Index) -> None:
    series = search(loaded, Level.SERIES, study_uid="1.1")
    assert uids(series, attributes.SERIES_UID) == ["1.1.1", "1.1.2"]
    in_study = search(loaded, Level.INSTANCE, study_uid="1.1")
    assert sops_of(in_study) == ["1.1.1.2", "1.1.1.1", "1.1.2.1"]
    in_series = search(loaded, Level.INSTANCE, study_uid="1.1", series_uid="1.1.2")
    assert sops_of(in_series) == ["1.1.2.1"]
    assert search(loaded, Level.INSTANCE, study_uid="1.2", series_uid="1.1.2") == []
    assert search(loaded, Level.SERIES, ("Modality", "MR"), study_uid="1.2") != []
    assert search(loaded, Level.SERIES, ("Modality", "CT"), study_uid="1.2") == []


def test_search_of_an_unknown_store_is_empty(loaded: Index) -> None:
    assert loaded.search("nope", parse_search(Level.STUDY, [])) == []


# --- computed attributes -----------------------------------------------------------------

MODALITIES, SOP_CLASSES = "00080061", "00080062"
STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES = "00201206", "00201208", "00201209"
STUDY_FIGURES = "ModalitiesInStudy,SOPClassesInStudy,NumberOfStudyRelatedSeries,00201208"


def figures(result: DicomJson, *tags: str) -> list[Any]:
    return [result[tag].get("Value") for tag in tags]


def test_computed_study_attributes_on_request(loaded: Index) -> None:
    results = search(loaded, Level.STUDY, ("includefield", STUDY_FIGURES))
    tags = (MODALITIES, SOP_CLASSES, STUDY_SERIES, STUDY_INSTANCES)
    assert [figures(result, *tags) for result in results] == [
        [["CT", "MR"], [CT_IMAGE], [2], [3]],
        [["MR"], [CT_IMAGE], [1], [1]],
        [["CT"], [CT_IMAGE], [1], [1]],
    ]
    assert all(result[MODALITIES]["vr"] == "CS" for result in results)
    assert all(result[STUDY_INSTANCES]["vr"] == "IS" for result in results)


def test_computed_series_attributes_on_request(loaded: Index) -> None:
    fields = ("includefield", "NumberOfSeriesRelatedInstances,NumberOfStudyRelatedInstances")
    results = search(loaded, Level.SERIES, fields)
    counts = [figures(result, SERIES_INSTANCES, STUDY_INSTANCES) for result in results]
    assert counts == [[[2], [3]], [[1], [3]], [[1], [1]], [[1], [1]]]
    instances = search(loaded, Level.INSTANCE, ("includefield", "00201209,ModalitiesInStudy"))
    assert figures(instances[0], SERIES_INSTANCES, MODALITIES) == [[2], ["CT", "MR"]]


def test_computed_attributes_only_when_named_or_matched(loaded: Index) -> None:
    computed = {MODALITIES, SOP_CLASSES, STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES}
    for level in Level:
        for result in search(loaded, level) + search(loaded, level, ("includefield", "all")):
            assert not computed & set(result)
    matched = search(loaded, Level.STUDY, ("ModalitiesInStudy", "CT"))
    assert [figures(result, MODALITIES) for result in matched] == [[["CT", "MR"]], [["CT"]]]
    studies = search(loaded, Level.STUDY, ("includefield", "NumberOfSeriesRelatedInstances"))
    assert SERIES_INSTANCES not in studies[0]  # not an attribute of a study


def test_computed_attributes_follow_deletes(loaded: Index) -> None:
    loaded.mark_deleting(STORE_ID, "1.1", "1.1.1")
    first = search(loaded, Level.STUDY, ("includefield", STUDY_FIGURES))[0]
    assert figures(first, MODALITIES, STUDY_SERIES, STUDY_INSTANCES) == [["MR"], [1], [1]]
    assert studies_of(search(loaded, Level.STUDY, ("ModalitiesInStudy", "CT"))) == ["1.3"]
    assert studies_of(search(loaded, Level.STUDY, ("ModalitiesInStudy", "?T"))) == ["1.3"]
    loaded.remove_instances(STORE_ID, [("1.1", "1.1.2", "1.1.2.1")])
    assert studies_of(search(loaded, Level.STUDY, ("ModalitiesInStudy", "MR"))) == ["1.2"]


def test_study_without_modality_has_an_empty_modalities_element(index: Index) -> None:
    index.add_instance(make("5.1", "5.1.1", "5.1.1.1", modality=""))
    result = search(index, Level.STUDY, ("includefield", "ModalitiesInStudy"))[0]
    assert result[MODALITIES] == {"vr": "CS"}
    assert search(index, Level.STUDY, ("ModalitiesInStudy", "?*")) == []


def test_computed_attributes_across_many_studies(many: Index) -> None:
    fields = ("includefield", "ModalitiesInStudy,NumberOfStudyRelatedInstances")
    results = search(many, Level.STUDY, fields, ("limit", "5000"))
    assert len(results) == 30
    for result in results:
        study = int(value(result, STUDY_UID).split(".")[1])
        assert result[MODALITIES]["Value"] == (["CT", "PT"] if study % 5 == 0 else ["CT", "MR"])
        assert result[STUDY_INSTANCES]["Value"] == [6]


# --- paging ------------------------------------------------------------------------------


@pytest.fixture
def many(index: Index) -> Index:
    """30 studies x 2 series x 3 instances, UIDs chosen so string order differs from numeric.

    Series 0 is CT, series 1 is MR (PT in every fifth study); descriptions, series numbers and
    content times vary so that keys matched in process select scattered rows.
    """
    for study in range(30):
        for series in range(2):
            for number in (3, 1, 2):
                sop = f"2.{study}.{series}.{number}"
                extra = details(
                    StudyDescription=f"Study {study % 4}",
                    SeriesDescription=f"Series {series}",
                    SeriesNumber=series + 1,
                    ContentTime=f"1{number}0000",
                )
                index.add_instance(
                    make(
                        f"2.{study}",
                        f"2.{study}.{series}",
                        sop,
                        number=number,
                        patient_id=f"P{study % 3}",
                        modality=("PT" if study % 5 == 0 else "MR") if series else "CT",
                        extra=extra,
                    )
                )
    return index


def pages(fetch: Callable[[int, int], list[DicomJson]], size: int) -> list[list[DicomJson]]:
    collected: list[list[DicomJson]] = []
    offset = 0
    while page := fetch(size, offset):
        assert len(page) <= size
        collected.append(page)
        offset += size
    return collected


@pytest.mark.parametrize(
    ("level", "params", "tag"),
    [
        (Level.STUDY, [], attributes.STUDY_UID),
        (Level.STUDY, [("PatientID", "P1")], attributes.STUDY_UID),
        (Level.SERIES, [], attributes.SERIES_UID),
        (Level.SERIES, [("Modality", "MR")], attributes.SERIES_UID),
        (Level.INSTANCE, [], attributes.SOP_UID),
        (Level.INSTANCE, [("PatientID", "P2"), ("Modality", "CT")], attributes.SOP_UID),
        (Level.INSTANCE, [("PatientName", "jo"), ("fuzzymatching", "true")], attributes.SOP_UID),
    ],
)
@pytest.mark.parametrize("size", [1, 4, 7, 1000])
def test_paging_is_stable(
    many: Index, level: Level, params: list[tuple[str, str]], tag: str, size: int
) -> None:
    whole = uids(many.search(STORE_ID, parse_search(level, [*params, ("limit", "5000")])), tag)
    assert whole and len(whole) == len(set(whole))

    def fetch(limit: int, offset: int) -> list[DicomJson]:
        paging = [("limit", str(limit)), ("offset", str(offset))]
        return many.search(STORE_ID, parse_search(level, [*params, *paging]))

    concatenated = [uid for page in pages(fetch, size) for uid in uids(page, tag)]
    assert concatenated == whole


RESIDUAL_CONDITIONS = [
    # Kinds Google lacks and attributes without a search column: indexes filter in process.
    Condition("00080018", "SOPInstanceUID", "UI", Level.INSTANCE, MatchKind.WILDCARD, "2.1*.1.?"),
    Condition("00280010", "Rows", "US", Level.INSTANCE, MatchKind.EXACT, "4"),
    Condition(
        "0020000D", "StudyInstanceUID", "UI", Level.STUDY, MatchKind.UID_LIST,
        values=("2.3", "2.12", "2.25", "9.9"),
    ),
]  # fmt: skip


@pytest.mark.parametrize("condition", RESIDUAL_CONDITIONS, ids=lambda c: c.kind)
@pytest.mark.parametrize("size", [1, 5, 1000])
def test_paging_with_conditions_matched_in_process(
    many: Index, condition: Condition, size: int
) -> None:
    full = SearchQuery(Level.INSTANCE, conditions=(condition,), limit=5000)
    whole = sops_of(many.search(STORE_ID, full))
    expected = {
        MatchKind.WILDCARD: 33,  # 2.1 and 2.10-2.19, series 1, three instances each
        MatchKind.EXACT: 180,
        MatchKind.UID_LIST: 18,
    }[condition.kind]
    assert len(whole) == len(set(whole)) == expected

    def fetch(limit: int, offset: int) -> list[DicomJson]:
        paged = dataclasses.replace(full, limit=limit, offset=offset)
        return many.search(STORE_ID, paged)

    assert [sop for page in pages(fetch, size) for sop in sops_of(page)] == whole


IN_PROCESS_PAGING = [
    # (level, params, expected count): each has at least one key `matches` decides.
    (Level.STUDY, [("StudyDescription", "*y 1")], 8),
    (Level.STUDY, [("PatientID", "*1")], 10),
    (Level.STUDY, [("PatientID", "P?"), ("StudyDescription", "Study ?")], 30),
    (Level.STUDY, [("ModalitiesInStudy", "*R"), ("StudyDescription", "*2")], 6),
    (Level.STUDY, [("PatientName", "*oe*"), ("NumberOfStudyRelatedSeries", "2")], 30),
    (Level.SERIES, [("SeriesNumber", "2")], 30),
    (Level.SERIES, [("SeriesDescription", "*1"), ("PatientID", "*0")], 10),
    (Level.SERIES, [("NumberOfSeriesRelatedInstances", "3"), ("Modality", "?T")], 36),
    (Level.SERIES, [("ModalitiesInStudy", "PT"), ("SeriesNumber", "1")], 6),
    (Level.INSTANCE, [("ContentTime", "12")], 60),
    (Level.INSTANCE, [("InstanceNumber", "2"), ("StudyDescription", "*3")], 14),
    (Level.INSTANCE, [("ModalitiesInStudy", "M?"), ("ContentTime", "-1159")], 48),
    (Level.INSTANCE, [("SeriesNumber", "1"), ("StudyInstanceUID", "2.1\\2.10,2.11,9.9")], 9),
]


@pytest.mark.parametrize(("level", "params", "count"), IN_PROCESS_PAGING)
def test_paging_under_keys_matched_in_process(
    many: Index, level: Level, params: list[tuple[str, str]], count: int
) -> None:
    tag = {Level.STUDY: STUDY_UID, Level.SERIES: SERIES_UID, Level.INSTANCE: SOP_UID}[level]
    query = parse_search(level, [*params, ("limit", "5000")])
    whole = many.search(STORE_ID, query)
    assert len(whole) == len({value(r, tag) for r in whole}) == count

    # The same rows as filtering every result of the level (computed attributes included).
    computed = ",".join(sorted(attributes.computed_tags(query))) or "PatientID"
    everything = parse_search(level, [("includefield", computed), ("limit", "5000")])
    unfiltered = many.search(STORE_ID, everything)
    expected = [r for r in unfiltered if matches_all(query.conditions, r)]
    assert uids(whole, tag) == uids(expected, tag)

    def fetch(limit: int, offset: int) -> list[DicomJson]:
        paging = [("limit", str(limit)), ("offset", str(offset))]
        return many.search(STORE_ID, parse_search(level, [*params, *paging]))

    for size in (3, 7):
        assert [uid for page in pages(fetch, size) for uid in uids(page, tag)] == uids(whole, tag)


def test_default_limit_and_order(many: Index) -> None:
    results = search(many, Level.INSTANCE)
    assert len(results) == 180
    keys = [
        (value(r, "0020000D"), value(r, "0020000E"), value(r, "00200013"), value(r, "00080018"))
        for r in results
    ]
    assert keys == sorted(keys)
    assert len(search(many, Level.STUDY, ("limit", "10"))) == 10
    assert search(many, Level.STUDY, ("offset", "30")) == []
    assert search(many, Level.STUDY, ("limit", "0")) == []


# --- study UID pages (keyset) ------------------------------------------------------------

# Numeric and string order differ: "3.10", "3.100" and "30" sort before "3.2" and "4".
KEYSET_STUDIES = ["3.10", "3.11", "3.2", "3.9", "3.1", "3.100", "3.12", "3.3", "4", "30"]
KEYSET_ORDER = ["3.1", "3.10", "3.100", "3.11", "3.12", "3.2", "3.3", "3.9", "30", "4"]


def add_studies(index: Index, studies: list[str], store_id: str = STORE_ID) -> None:
    """One instance per study."""
    for study in studies:
        index.add_instance(make(study, f"{study}.1", f"{study}.1.1", store_id=store_id))


def study_pages(index: Index, limit: int, after: str | None = None) -> list[list[str]]:
    """Every page of study UIDs, each continuing after the last UID of the one before."""
    collected: list[list[str]] = []
    while page := index.list_study_uids(STORE_ID, after=after, limit=limit):
        assert len(page) <= limit
        collected.append(page)
        after = page[-1]
    return collected


def test_list_study_uids_ascending_in_string_order(index: Index) -> None:
    add_studies(index, KEYSET_STUDIES)
    assert index.list_study_uids(STORE_ID) == KEYSET_ORDER
    assert index.list_study_uids(STORE_ID, after=None, limit=1000) == KEYSET_ORDER


def test_list_study_uids_after_is_exclusive(index: Index) -> None:
    add_studies(index, KEYSET_STUDIES)
    assert index.list_study_uids(STORE_ID, after="3.10") == KEYSET_ORDER[2:]
    # A UID that is not stored: the page starts at the next one in string order.
    assert index.list_study_uids(STORE_ID, after="3.105") == KEYSET_ORDER[3:]
    assert index.list_study_uids(STORE_ID, after="3") == KEYSET_ORDER
    assert index.list_study_uids(STORE_ID, after="4") == []
    assert index.list_study_uids(STORE_ID, after="") == KEYSET_ORDER


def test_list_study_uids_limit(index: Index) -> None:
    add_studies(index, KEYSET_STUDIES)
    assert index.list_study_uids(STORE_ID, limit=1) == ["3.1"]
    assert index.list_study_uids(STORE_ID, after="3.2", limit=3) == ["3.3", "3.9", "30"]
    assert index.list_study_uids(STORE_ID, limit=10) == KEYSET_ORDER


@pytest.mark.parametrize("limit", [0, -1])
def test_list_study_uids_rejects_a_limit_below_one(index: Index, limit: int) -> None:
    with pytest.raises(InvalidArgument):
        index.list_study_uids(STORE_ID, limit=limit)


def test_list_study_uids_of_a_store_without_studies(index: Index) -> None:
    assert index.list_study_uids(STORE_ID) == []
    assert index.list_study_uids(STORE_ID, after="1.2", limit=5) == []
    assert index.list_study_uids("no-such-store") == []


def test_list_study_uids_skips_studies_without_active_instances(loaded: Index) -> None:
    loaded.mark_deleting(STORE_ID, "1.2")
    assert loaded.list_study_uids(STORE_ID) == ["1.1", "1.3"]
    # One series of 1.1 is deleting; its other series is still ACTIVE.
    loaded.mark_deleting(STORE_ID, "1.1", "1.1.1")
    assert loaded.list_study_uids(STORE_ID) == ["1.1", "1.3"]
    loaded.mark_deleting(STORE_ID, "1.1", "1.1.2")
    assert loaded.list_study_uids(STORE_ID) == ["1.3"]
    loaded.remove_instances(STORE_ID, [("1.3", "1.3.1", "1.3.1.1")])
    assert loaded.list_study_uids(STORE_ID) == []
    # An instance stored while its study is being purged makes the study listed again.
    loaded.add_instance(make("1.2", "1.2.1", "1.2.1.9"))
    assert loaded.list_study_uids(STORE_ID) == ["1.2"]


def test_list_study_uids_lists_only_its_own_store(loaded: Index) -> None:
    loaded.create_store(StoreRecord(name=f"{DATASET}/dicomStores/t", store_id="store-2"))
    add_studies(loaded, ["1.0", "1.15", "1.2", "1.9"], store_id="store-2")
    assert loaded.list_study_uids(STORE_ID) == ["1.1", "1.2", "1.3"]
    assert loaded.list_study_uids("store-2") == ["1.0", "1.15", "1.2", "1.9"]
    assert loaded.list_study_uids("store-2", after="1.1", limit=2) == ["1.15", "1.2"]


@pytest.mark.parametrize("limit", [1, 3, 5, 9, 10, 11])
def test_list_study_uids_pages_visit_each_study_once(index: Index, limit: int) -> None:
    add_studies(index, KEYSET_STUDIES)
    pages_seen = study_pages(index, limit)
    assert [study for page in pages_seen for study in page] == KEYSET_ORDER
    assert len(pages_seen) == -(-len(KEYSET_ORDER) // limit)


def test_list_study_uids_pages_survive_changes_between_pages(index: Index) -> None:
    # An offset would skip "3.12" after a delete before it, or repeat "3.11" after an add.
    add_studies(index, KEYSET_STUDIES)
    first = index.list_study_uids(STORE_ID, limit=4)
    assert first == ["3.1", "3.10", "3.100", "3.11"]
    index.mark_deleting(STORE_ID, "3.10")
    add_studies(index, ["3.0", "3.101", "3.15"])
    rest = [study for page in study_pages(index, 4, after=first[-1]) for study in page]
    assert rest == ["3.12", "3.15", "3.2", "3.3", "3.9", "30", "4"]


def test_store_instances_walks_every_study_across_pages(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.service import fanout

    monkeypatch.setattr(fanout, "_STUDY_PAGE", 3)
    add_studies(index, KEYSET_STUDIES)
    index.add_instance(make("3.2", "3.2.1", "3.2.1.0", number=0))
    index.add_instance(make("3.2", "3.2.0", "3.2.0.5", number=5))
    index.mark_deleting(STORE_ID, "3.3")  # nine studies left: three full pages, then none
    services = cast("Services", SimpleNamespace(index=index))
    walked = [
        record.key for record in fanout.store_instances(services, index.get_store(STORE_NAME))
    ]
    in_order = [(study, f"{study}.1", f"{study}.1.1") for study in KEYSET_ORDER if study != "3.3"]
    position = in_order.index(("3.2", "3.2.1", "3.2.1.1"))
    # Within a study: by series, then InstanceNumber (3.2.1.0 is number 0, 3.2.1.1 number 1).
    in_order[position:position] = [("3.2", "3.2.0", "3.2.0.5"), ("3.2", "3.2.1", "3.2.1.0")]
    assert walked == in_order


# --- deletion ----------------------------------------------------------------------------


def test_mark_deleting_a_study_hides_it_at_once(loaded: Index) -> None:
    rows = loaded.mark_deleting(STORE_ID, "1.1")
    assert sorted(r.sop_uid for r in rows) == ["1.1.1.1", "1.1.1.2", "1.1.2.1"]
    assert loaded.is_deleting(STORE_ID, "1.1")
    assert loaded.is_deleting(STORE_ID, "1.1", "1.1.1")
    assert not loaded.is_deleting(STORE_ID, "1.2")
    assert studies_of(search(loaded, Level.STUDY)) == ["1.2", "1.3"]
    assert "1.1" not in studies_of(search(loaded, Level.SERIES))
    assert "1.1" not in studies_of(search(loaded, Level.INSTANCE))
    assert studies_of(search(loaded, Level.STUDY, ("PatientID", "PID-1"))) == ["1.3"]
    assert loaded.list_instances(STORE_ID, "1.1") == []
    with pytest.raises(NotFound):
        loaded.get_instance(STORE_ID, "1.1", "1.1.1", "1.1.1.1")


def test_mark_deleting_a_series(loaded: Index) -> None:
    rows = loaded.mark_deleting(STORE_ID, "1.1", "1.1.1")
    assert sorted(r.sop_uid for r in rows) == ["1.1.1.1", "1.1.1.2"]
    assert loaded.is_deleting(STORE_ID, "1.1", "1.1.1")
    assert not loaded.is_deleting(STORE_ID, "1.1", "1.1.2")
    assert not loaded.is_deleting(STORE_ID, "1.1")
    assert "1.1" in studies_of(search(loaded, Level.STUDY))
    assert uids(search(loaded, Level.SERIES, study_uid="1.1"), attributes.SERIES_UID) == ["1.1.2"]
    assert sops_of(search(loaded, Level.INSTANCE, study_uid="1.1")) == ["1.1.2.1"]


def test_mark_deleting_again_returns_every_row_to_purge(loaded: Index) -> None:
    loaded.mark_deleting(STORE_ID, "1.1")
    assert len(loaded.mark_deleting(STORE_ID, "1.1")) == 3
    assert loaded.mark_deleting(STORE_ID, "9.9") == []
    assert not loaded.is_deleting(STORE_ID, "9.9")


def test_purge_after_mark(loaded: Index) -> None:
    rows = loaded.mark_deleting(STORE_ID, "1.1")
    assert loaded.remove_instances(STORE_ID, [r.key for r in rows]) == 3
    assert not loaded.is_deleting(STORE_ID, "1.1")
    assert loaded.find_study_uid(STORE_ID, "1.1.1") is None
    assert loaded.mark_deleting(STORE_ID, "1.1") == []
    loaded.add_instance(make("1.1", "1.1.1", "1.1.1.9", patient_id="NEW"))
    assert studies_of(search(loaded, Level.STUDY, ("PatientID", "NEW"))) == ["1.1"]
    assert not loaded.is_deleting(STORE_ID, "1.1")


def test_remove_is_idempotent(loaded: Index) -> None:
    keys = [("1.1", "1.1.1", "1.1.1.1"), ("1.1", "1.1.1", "1.1.1.1"), ("9", "9", "9")]
    assert loaded.remove_instances(STORE_ID, keys) == 1
    assert loaded.remove_instances(STORE_ID, keys) == 0
    assert loaded.remove_instances(STORE_ID, []) == 0
    assert sops_of(search(loaded, Level.INSTANCE, study_uid="1.1")) == ["1.1.1.2", "1.1.2.1"]


def test_study_and_series_vanish_with_their_last_instance(loaded: Index) -> None:
    loaded.remove_instances(STORE_ID, [("1.1", "1.1.2", "1.1.2.1")])
    assert uids(search(loaded, Level.SERIES, study_uid="1.1"), attributes.SERIES_UID) == ["1.1.1"]
    assert loaded.find_study_uid(STORE_ID, "1.1.2") is None
    loaded.remove_instances(STORE_ID, [("1.1", "1.1.1", "1.1.1.1"), ("1.1", "1.1.1", "1.1.1.2")])
    assert studies_of(search(loaded, Level.STUDY)) == ["1.2", "1.3"]
    assert search(loaded, Level.SERIES, study_uid="1.1") == []
    fuzzy = (("PatientName", "doe"), ("fuzzymatching", "true"))
    assert studies_of(search(loaded, Level.STUDY, *fuzzy)) == ["1.3"]


def test_instance_stored_during_a_purge_stays_visible(loaded: Index) -> None:
    rows = loaded.mark_deleting(STORE_ID, "1.1")
    loaded.add_instance(make("1.1", "1.1.1", "1.1.1.9"))
    assert sops_of(search(loaded, Level.INSTANCE, study_uid="1.1")) == ["1.1.1.9"]
    loaded.remove_instances(STORE_ID, [r.key for r in rows])
    assert not loaded.is_deleting(STORE_ID, "1.1")
    assert sops_of(search(loaded, Level.INSTANCE, study_uid="1.1")) == ["1.1.1.9"]
    assert studies_of(search(loaded, Level.STUDY)) == ["1.1", "1.2", "1.3"]


# --- concurrency -------------------------------------------------------------------------


def run_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def body(number: int) -> None:
        try:
            barrier.wait()
            work(number)
        except BaseException as error:  # collected and re-raised in the test thread
            errors.append(error)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_parallel_adds_to_one_study(index: Index) -> None:
    def work(worker: int) -> None:
        for n in range(50):
            sop = f"3.1.{worker}.{n}"
            index.add_instance(make("3.1", f"3.1.{worker % 2}", sop, number=n))

    run_threads(8, work)
    assert len(index.list_instances(STORE_ID, "3.1")) == 400
    found = search(index, Level.INSTANCE, ("limit", "1000"), study_uid="3.1")
    assert len(found) == len(set(sops_of(found))) == 400
    assert studies_of(search(index, Level.STUDY)) == ["3.1"]
    assert len(search(index, Level.SERIES, study_uid="3.1")) == 2
    rows = index.mark_deleting(STORE_ID, "3.1")
    assert index.remove_instances(STORE_ID, [r.key for r in rows[:399]]) == 399
    assert studies_of(search(index, Level.STUDY)) == []
    assert index.is_deleting(STORE_ID, "3.1")
    assert index.remove_instances(STORE_ID, [rows[399].key]) == 1
    assert not index.is_deleting(STORE_ID, "3.1")


def test_parallel_adds_of_the_same_instance(index: Index) -> None:
    returned: list[InstanceRecord] = []
    candidates = [make("4.1", "4.1.1", "4.1.1.1", crc32c=f"crc-{n}") for n in range(8)]

    def work(worker: int) -> None:
        returned.append(index.add_instance(candidates[worker]))

    run_threads(8, work)
    stored = index.get_instance(STORE_ID, "4.1", "4.1.1", "4.1.1.1")
    winners = [c for c in candidates if any(r is c for r in returned)]
    assert len(winners) == 1
    assert all(r == stored for r in returned)
    assert stored.crc32c == winners[0].crc32c
    assert len(index.list_instances(STORE_ID, "4.1")) == 1
    assert len(search(index, Level.INSTANCE)) == 1


# --- metrics and storage classes -------------------------------------------------------


def test_metrics_count_active_instances(index: Index) -> None:
    assert index.metrics(STORE_ID) == Metrics()
    for sop, series in (("1.1", "9.1"), ("1.2", "9.1"), ("1.3", "9.2")):
        index.add_instance(make("8.1", series, sop))
    index.add_instance(make("8.2", "9.3", "1.4"))
    store = index.metrics(STORE_ID)
    assert (store.study_count, store.series_count, store.instance_count) == (2, 3, 4)
    assert (store.blob_bytes, store.structured_bytes) == (4 * 1234, 4 * 999)
    study = index.metrics(STORE_ID, "8.1")
    assert (study.study_count, study.series_count, study.instance_count) == (1, 2, 3)
    assert index.metrics(STORE_ID, "8.1", "9.1").instance_count == 2
    index.mark_deleting(STORE_ID, "8.2")
    assert index.metrics(STORE_ID).instance_count == 3  # deleting rows no longer count
    assert index.metrics(STORE_ID, "7.7") == Metrics()


def test_set_storage_class_records_class_and_time(index: Index) -> None:
    index.add_instance(make("8.1", "9.1", "1.1"))
    index.add_instance(make("8.1", "9.1", "1.2"))
    keys = [("8.1", "9.1", "1.1"), ("8.1", "9.1", "1.1"), ("8.1", "9.1", "7.7")]
    assert index.set_storage_class(STORE_ID, keys, "ARCHIVE", "2025-01-01T00:00:00.000000Z") == 1
    changed = index.get_instance(STORE_ID, "8.1", "9.1", "1.1")
    assert (changed.storage_class, changed.storage_class_time) == (
        "ARCHIVE",
        "2025-01-01T00:00:00.000000Z",
    )
    untouched = index.get_instance(STORE_ID, "8.1", "9.1", "1.2")
    assert untouched.storage_class == "STANDARD"
    assert untouched.storage_class_time == untouched.create_time


# --- Firestore only: metadata summaries and write costs ----------------------------------


def test_firestore_keeps_a_summary_without_large_elements(
    firestore_emulator: FirestoreEmulator,
) -> None:
    firestore = fresh_firestore_index(firestore_emulator)
    comments = attributes.tag_of("ImageComments")  # LT
    big = make("6.1", "6.1.1", "6.1.1.1", extra=details(ImageComments="x" * 10 * 1024))
    assert firestore.add_instance(big) is big
    stored = firestore.get_instance(STORE_ID, "6.1", "6.1.1", "6.1.1.1")
    assert not stored.metadata_complete
    assert comments not in stored.metadata
    assert stored.metadata == {tag: e for tag, e in big.metadata.items() if tag != comments}
    assert dataclasses.replace(stored, metadata=big.metadata, metadata_complete=True) == big
    (result,) = search(firestore, Level.INSTANCE)
    assert result[INCOMPLETE] is True and comments not in result
    assert value(result, "00080018") == "6.1.1.1"
    firestore.add_instance(make("6.1", "6.1.1", "6.1.1.2"))
    small = search(firestore, Level.INSTANCE, ("SOPInstanceUID", "6.1.1.2"))
    assert [INCOMPLETE in r for r in small] == [False]
    assert firestore.get_instance(STORE_ID, "6.1", "6.1.1", "6.1.1.2").metadata_complete


def test_firestore_parallel_stores_cost_one_write_each(
    firestore_emulator: FirestoreEmulator,
) -> None:
    firestore, client = firestore_index_with_own_client(firestore_emulator)
    writes, lock = Counter[str](), threading.Lock()
    commit = client._firestore_api.commit

    def counting_commit(*args: Any, **kwargs: Any) -> Any:
        request = kwargs.get("request") or args[0]
        response = commit(*args, **kwargs)  # a failed precondition raises: no write happened
        with lock:
            writes["documents"] += len(request["writes"])
            writes["commits"] += 1
        return response

    client._firestore_api.commit = counting_commit
    total, workers = 500, 8

    def work(worker: int) -> None:
        for n in range(worker, total, workers):
            firestore.add_instance(make("7.1", f"7.1.{n % 2}", f"7.1.{n % 2}.{n}", number=n))

    run_threads(workers, work)
    per_instance = writes["documents"] / total
    logger.info("Firestore writes per stored instance: %.3f (%s)", per_instance, dict(writes))
    assert writes["documents"] <= total + 3  # one per instance, one per study and series doc
    store = client.collection("stores").document(STORE_ID)
    assert [doc.id for doc in store.collection("studies").stream()] == ["7.1"]
    assert len(list(store.collection("series").stream())) == 2
    assert len(list(store.collection("instances").select([]).stream())) == total
    assert firestore.metrics(STORE_ID) == Metrics(1, 2, total, total * 999, total * 1234)
    assert firestore.metrics(STORE_ID, "7.1", "7.1.1").instance_count == total // 2
    found = search(firestore, Level.INSTANCE, ("limit", "1000"), study_uid="7.1")
    assert len(found) == len(set(sops_of(found))) == total


def test_firestore_study_pages_read_only_their_documents(
    firestore_emulator: FirestoreEmulator,
) -> None:
    firestore, client = firestore_index_with_own_client(firestore_emulator)
    add_studies(firestore, KEYSET_STUDIES)
    requests: list[Any] = []
    documents = Counter[str]()
    run_query = client._firestore_api.run_query

    def recording_run_query(*args: Any, **kwargs: Any) -> Iterator[Any]:
        requests.append(kwargs.get("request") or args[0])
        for response in run_query(*args, **kwargs):
            documents["read"] += "document" in response
            yield response

    client._firestore_api.run_query = recording_run_query
    assert firestore.list_study_uids(STORE_ID, after="3.12", limit=3) == ["3.2", "3.3", "3.9"]
    (request,) = requests
    structured = request["structured_query"]
    # Billed reads follow the page: a cursor where the page starts, never skipped documents.
    assert structured.offset == 0
    assert list(structured.start_at.values) and not structured.start_at.before
    assert structured.limit == 3
    assert documents["read"] == 3
