"""QIDO-RS through the HTTP function: Google's keys, the standard superset, paging, errors."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from pydicom import Dataset
from pydicom.uid import generate_uid

from tests.conftest import DW
from tests.dicom_factory import ROOT, Spec, make_dataset, make_instance, to_bytes
from tests.functions.http_helpers import multipart_body, split_multipart, stow_headers

PATIENTS = [
    ("Doe^John", "P1", "20240101", "CT", "ACC1"),
    ("Doe^Jane", "P2", "20240215", "MR", "ACC2"),
    ("Müller^Jürgen", "P3", "20231231", "CT", "ACC3"),
    ("Smith^Anna Maria", "P4", "20240301", "US", "ACC4"),
]


@pytest.fixture
def loaded(client: FlaskClient) -> dict[str, Spec]:
    specs = {}
    for name, pid, date, modality, accession in PATIENTS:
        spec = Spec(
            patient_name=name,
            patient_id=pid,
            study_date=date,
            modality=modality,
            accession=accession,
        )
        response = client.post(
            f"{DW}/studies", data=multipart_body([make_instance(spec)]), headers=stow_headers()
        )
        assert response.status_code == 200, response.data
        specs[pid] = spec
    return specs


def _ids(response) -> list[str]:  # type: ignore[no-untyped-def]
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.data
    return sorted(obj["00100020"]["Value"][0] for obj in response.get_json())


def test_study_search_defaults(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    response = client.get(f"{DW}/studies")
    assert response.status_code == 200
    assert response.content_type.startswith("application/dicom+json")
    objs = response.get_json()
    assert len(objs) == 4
    first = objs[0]
    for tag in ("0020000D", "00100010", "00100020", "00080020", "00080050"):
        assert tag in first
    assert "00081030" not in first  # StudyDescription only with includefield


def test_exact_keys(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    assert _ids(client.get(f"{DW}/studies?PatientID=P2")) == ["P2"]
    assert _ids(client.get(f"{DW}/studies?00100020=P2")) == ["P2"]
    assert _ids(client.get(f"{DW}/studies?AccessionNumber=ACC3")) == ["P3"]
    assert _ids(client.get(f"{DW}/studies?StudyInstanceUID={loaded['P4'].study}")) == ["P4"]
    assert _ids(client.get(f"{DW}/studies?PatientID=p2")) == []  # exact is case-sensitive


def test_names_percent_decoding_and_fuzzy(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    assert _ids(client.get(f"{DW}/studies?PatientName={quote('Doe^John')}")) == ["P1"]
    assert _ids(client.get(f"{DW}/studies?PatientName={quote('Müller^Jürgen')}")) == ["P3"]
    fuzzy = f"{DW}/studies?fuzzymatching=true&PatientName="
    assert _ids(client.get(fuzzy + "jo")) == ["P1"]
    assert _ids(client.get(fuzzy + "Do")) == ["P1", "P2"]
    assert _ids(client.get(fuzzy + quote("John Doe"))) == ["P1", "P2"]
    assert _ids(client.get(fuzzy + "ohn")) == []
    assert _ids(client.get(fuzzy + quote("mül"))) == ["P3"]
    assert _ids(client.get(fuzzy + "maria")) == ["P4"]


def test_study_date_ranges(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    assert _ids(client.get(f"{DW}/studies?StudyDate=20240101-20240228")) == ["P1", "P2"]
    assert _ids(client.get(f"{DW}/studies?StudyDate=-20231231")) == ["P3"]
    assert _ids(client.get(f"{DW}/studies?StudyDate=20240215-")) == ["P2", "P4"]
    assert _ids(client.get(f"{DW}/studies?StudyDate=20240301")) == ["P4"]


def test_series_and_instance_levels(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    series = client.get(f"{DW}/series?Modality=CT")
    assert series.status_code == 200
    assert sorted(o["0020000E"]["Value"][0] for o in series.get_json()) == sorted(
        [loaded["P1"].series, loaded["P3"].series]
    )
    spec = loaded["P2"]
    scoped = client.get(f"{DW}/studies/{spec.study}/series")
    assert [o["00080060"]["Value"][0] for o in scoped.get_json()] == ["MR"]
    instances = client.get(f"{DW}/studies/{spec.study}/series/{spec.series}/instances")
    objs = instances.get_json()
    assert [o["00080018"]["Value"][0] for o in objs] == [spec.sop]
    assert objs[0]["00280010"]["Value"] == [16]
    assert client.get(f"{DW}/instances?SOPInstanceUID={spec.sop}").status_code == 200
    assert client.get(f"{DW}/studies/{spec.study}/instances").status_code == 200


def test_includefield(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    objs = client.get(f"{DW}/studies?PatientID=P1&includefield=StudyDescription").get_json()
    assert objs[0]["00081030"]["Value"] == ["Synthetic study"]
    objs = client.get(f"{DW}/studies?PatientID=P1&includefield=00081030").get_json()
    assert "00081030" in objs[0]
    objs = client.get(f"{DW}/series?PatientID=P1&includefield=all").get_json()
    assert objs[0]["00200011"]["Value"] == [1]  # SeriesNumber
    inst = client.get(f"{DW}/instances?PatientID=P1&includefield=all").get_json()[0]
    assert inst["00281050"]["Value"] == [40]  # WindowCenter: every attribute of the instance
    assert "7FE00010" not in inst  # Google: PixelData is never part of search results


def test_limit_offset_paging(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    everything = [o["0020000D"]["Value"][0] for o in client.get(f"{DW}/studies").get_json()]
    pages = []
    for offset in range(0, 4, 3):
        response = client.get(f"{DW}/studies?limit=3&offset={offset}")
        pages += [o["0020000D"]["Value"][0] for o in response.get_json()]
    assert pages == everything
    assert client.get(f"{DW}/studies?offset=10").status_code == 204


def test_no_match_is_204_with_empty_body(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    response = client.get(f"{DW}/studies?PatientID=NOPE")
    assert response.status_code == 204
    assert response.data == b""


@pytest.mark.parametrize(
    "query",
    [
        "SOPClassUID=1.2",
        "StudyDate=2024",
        "StudyDate=20241301",
        "StudyDate=20240301-20240101",
        "limit=-1",
        "limit=abc",
        "offset=2000000",
        "fuzzymatching=maybe",
        "includefield=NotAKeyword",
        "NotAKeyword=1",
        "PatientID=1&PatientID=2",
    ],
)
def test_bad_queries_are_400(client: FlaskClient, loaded: dict[str, Spec], query: str) -> None:
    response = client.get(f"{DW}/studies?{query}")
    assert response.status_code == 400, (query, response.data)
    assert response.get_json()["error"]["message"]


def test_xml_search_results(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    response = client.get(
        f"{DW}/studies?PatientID=P1",
        headers={"Accept": 'multipart/related; type="application/dicom+xml"'},
    )
    assert response.status_code == 200
    parts = split_multipart(response.content_type, response.data)
    assert len(parts) == 1
    assert parts[0][0].startswith("application/dicom+xml")
    assert b"NativeDicomModel" in parts[0][1]


def test_unknown_accept_on_search_is_406(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    assert client.get(f"{DW}/studies", headers={"Accept": "image/png"}).status_code == 406


# --- the standard superset Google lacks --------------------------------------------------
# Google compares '*', '?' and '\' literally and refuses keys outside its fixed list; this store
# matches them as PS3.4 C.2.2.2 says (wild cards, UID lists, ranges on any DA/TM/DT, any
# attribute of the level) and computes ModalitiesInStudy and the NumberOf... attributes.

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _store(client: FlaskClient, ds: Dataset) -> None:
    response = client.post(
        f"{DW}/studies", data=multipart_body([to_bytes(ds)]), headers=stow_headers()
    )
    assert response.status_code == 200, response.data


def _objs(response) -> list[dict]:  # type: ignore[no-untyped-def]
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.data
    return list(response.get_json())


def _patients(loaded: dict[str, Spec], response) -> list[str]:  # type: ignore[no-untyped-def]
    """Patient IDs of the results of any level, found through their StudyInstanceUID."""
    by_study = {spec.study: pid for pid, spec in loaded.items()}
    return sorted(by_study[o["0020000D"]["Value"][0]] for o in _objs(response))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("PatientName=doe*", ["P1", "P2"]),  # PN wild cards ignore case
        ("PatientName=*LLER*", ["P3"]),
        (f"PatientName={quote('D?e^J*')}", ["P1", "P2"]),
        (f"PatientName={quote('*^anna maria')}", ["P4"]),
        ("PatientName=*", ["P1", "P2", "P3", "P4"]),  # universal matching
        ("PatientID=P*", ["P1", "P2", "P3", "P4"]),
        ("PatientID=p*", []),  # other VRs are case-sensitive
        ("00100020=*3", ["P3"]),
        ("AccessionNumber=ACC?", ["P1", "P2", "P3", "P4"]),
        ("ReferringPhysicianName=ref*", ["P1", "P2", "P3", "P4"]),
        ("StudyDescription=Synthetic*", ["P1", "P2", "P3", "P4"]),
        ("StudyDescription=synthetic*", []),
        ("StudyTime=10", ["P1", "P2", "P3", "P4"]),
        ("StudyTime=1016-1200", []),
        ("PatientBirthDate=-19700101", ["P1", "P2", "P3", "P4"]),
        ("ModalitiesInStudy=CT", ["P1", "P3"]),
        ("ModalitiesInStudy=CT%2CMR", ["P1", "P2", "P3"]),
        ("ModalitiesInStudy=CT%5CUS", ["P1", "P3", "P4"]),
        ("ModalitiesInStudy=?S", ["P4"]),
        ("NumberOfStudyRelatedInstances=1", ["P1", "P2", "P3", "P4"]),
    ],
)
def test_study_matching_superset(
    client: FlaskClient, loaded: dict[str, Spec], query: str, expected: list[str]
) -> None:
    assert _ids(client.get(f"{DW}/studies?{query}")) == expected


def test_uid_lists(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    one, two = loaded["P1"].study, loaded["P3"].study
    assert _ids(client.get(f"{DW}/studies?StudyInstanceUID={one}%5C{two}")) == ["P1", "P3"]
    assert _ids(client.get(f"{DW}/studies?StudyInstanceUID={one},{two},1.2.3")) == ["P1", "P3"]
    sops = f"{loaded['P2'].sop}%5C{loaded['P4'].sop}"
    assert _patients(loaded, client.get(f"{DW}/instances?SOPInstanceUID={sops}")) == ["P2", "P4"]
    series = f"{loaded['P2'].series},{loaded['P4'].series}"
    assert _patients(loaded, client.get(f"{DW}/series?SeriesInstanceUID={series}")) == ["P2", "P4"]
    assert _ids(client.get(f"{DW}/studies?StudyInstanceUID={one[:-1]}*")) == []  # UIDs: literal


ALL = ["P1", "P2", "P3", "P4"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # Google answers 400 "SOPClassUID is not a supported instance level attribute".
        (f"instances?SOPClassUID={CT_IMAGE}", ALL),
        (f"instances?SOPClassUID=1.2.3,{CT_IMAGE}", ALL),
        ("instances?InstanceNumber=%2B1", ALL),
        ("instances?InstanceNumber=2", []),
        ("instances?Rows=16&WindowCenter=40", ALL),
        ("instances?ImageType=*AXIAL", ALL),
        ("instances?ModalitiesInStudy=US&SeriesDescription=Synth*", ["P4"]),
        ("series?SeriesDescription=*series&Modality=C?", ["P1", "P3"]),
        ("series?SeriesNumber=1&PatientID=*4", ["P4"]),
        ("series?NumberOfSeriesRelatedInstances=1&StudyDate=20240201-", ["P2", "P4"]),
    ],
)
def test_any_attribute_of_series_and_instances(
    client: FlaskClient, loaded: dict[str, Spec], query: str, expected: list[str]
) -> None:
    assert _patients(loaded, client.get(f"{DW}/{query}")) == expected


def test_any_attribute_within_a_study(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    spec = loaded["P2"]
    scoped = client.get(f"{DW}/studies/{spec.study}/instances?SeriesDescription=Synth*")
    assert [o["00080018"]["Value"][0] for o in _objs(scoped)] == [spec.sop]
    assert client.get(f"{DW}/studies/{spec.study}/series?SeriesNumber=2").status_code == 204


def test_matched_keys_are_returned(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    obj = _objs(client.get(f"{DW}/studies?StudyDescription=Synth*&PatientID=P1"))[0]
    assert obj["00081030"]["Value"] == ["Synthetic study"]  # not a default attribute
    assert "00080061" not in obj
    obj = _objs(client.get(f"{DW}/instances?ImageType=*AXIAL&PatientID=P1"))[0]
    assert obj["00080008"]["Value"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert "00100020" not in obj  # a study key at instance level: not returned, as Google


def test_computed_attributes_on_request(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    spec = loaded["P4"]
    _store(client, _second_series(spec, "SR"))
    fields = "ModalitiesInStudy,SOPClassesInStudy,NumberOfStudyRelatedSeries,00201208"
    obj = _objs(client.get(f"{DW}/studies?PatientID=P4&includefield={fields}"))[0]
    assert obj["00080061"] == {"vr": "CS", "Value": ["SR", "US"]}
    assert obj["00080062"]["Value"] == [CT_IMAGE]
    assert obj["00201206"] == {"vr": "IS", "Value": [2]}
    assert obj["00201208"] == {"vr": "IS", "Value": [2]}
    series = _objs(client.get(f"{DW}/series?PatientID=P4&includefield=00201209"))
    assert [o["00201209"]["Value"] for o in series] == [[1], [1]]
    for level in ("studies", "series", "instances"):
        for everything in _objs(client.get(f"{DW}/{level}?PatientID=P4&includefield=all")):
            assert not {"00080061", "00080062", "00201206", "00201208", "00201209"} & set(
                everything
            )  # Google never returns them; 'all' does not either
    assert "00080061" not in _objs(client.get(f"{DW}/studies?PatientID=P4"))[0]


def test_ohif_worklist_query(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    """The study list query OHIF sends with supportsWildcard (values wrapped in '*')."""
    _store(client, _second_series(loaded["P2"], "CT"))
    query = (
        "PatientName=*doe*&00100020=*P*&AccessionNumber=*ACC*&StudyDescription=*study*"
        "&ModalitiesInStudy=CT&limit=101&offset=0&fuzzymatching=false"
        "&includefield=00081030,00080060"
    )
    objs = _objs(client.get(f"{DW}/studies?{query}"))
    assert sorted(o["00100020"]["Value"][0] for o in objs) == ["P1", "P2"]
    assert all(o["00081030"]["Value"] == ["Synthetic study"] for o in objs)
    modalities = {o["00100020"]["Value"][0]: o["00080061"]["Value"] for o in objs}
    assert modalities == {"P1": ["CT"], "P2": ["CT", "MR"]}
    fuzzy = query.replace("fuzzymatching=false", "fuzzymatching=true")
    assert _ids(client.get(f"{DW}/studies?{fuzzy}")) == ["P1", "P2"]


def test_paging_with_keys_matched_in_process(client: FlaskClient, loaded: dict[str, Spec]) -> None:
    query = f"{DW}/studies?StudyDescription=*study&AccessionNumber=*C?&ModalitiesInStudy=CT%2CUS"
    everything = [o["0020000D"]["Value"][0] for o in _objs(client.get(query))]
    assert len(everything) == 3
    paged = []
    for offset in range(4):
        paged += [
            o["0020000D"]["Value"][0] for o in _objs(client.get(f"{query}&limit=1&offset={offset}"))
        ]
    assert paged == everything


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("studies?Modality=CT", "Modality is not a supported study level attribute"),
        ("series?SOPClassUID=1.2", "SOPClassUID is not a supported series level attribute"),
        ("studies?ReferencedStudySequence=1", "sequence matching is not supported"),
        ("instances?ReferencedSeriesSequence.SeriesInstanceUID=1", "sequence matching"),
        ("instances?PixelData=1", "cannot be used for matching"),
        ("instances?InstanceNumber=one", "invalid InstanceNumber"),
        ("studies?StudyTime=2300-0100", "cannot cross midnight"),
        ("studies?StudyTime=25", "invalid StudyTime"),
        ("studies?StudyDate=2024*", "invalid StudyDate"),  # no wild cards on dates
        ("instances?AcquisitionDateTime=2024-13", "invalid AcquisitionDateTime"),
        ("studies?StudyInstanceUID=1.2%5C", "empty item"),
        ("studies?SpecificCharacterSet=ISO_IR%20100", "not a supported study level attribute"),
    ],
)
def test_superset_bad_queries_are_400(
    client: FlaskClient, loaded: dict[str, Spec], path: str, message: str
) -> None:
    response = client.get(f"{DW}/{path}")
    assert response.status_code == 400, (path, response.data)
    assert message in response.get_json()["error"]["message"]


def _second_series(spec: Spec, modality: str) -> Dataset:
    """Another instance of the same study, in a new series of the given modality."""
    second = dataclasses.replace(
        spec, series=generate_uid(ROOT), sop=generate_uid(ROOT), modality=modality, seed=7
    )
    return make_dataset(second)
