"""QIDO-RS through the HTTP function: Google's keys, matching, paging and errors."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from tests.conftest import DW
from tests.dicom_factory import Spec, make_instance
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
