"""STOW-RS through the HTTP function: responses, duplicates, conflicts and bad bodies."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from flask.testing import FlaskClient

from tests.conftest import DW
from tests.dicom_factory import Spec, make_instance, make_study
from tests.functions.http_helpers import multipart_body, stow_headers

NS = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}


def _count_studies(client: FlaskClient) -> int:
    response = client.get(f"{DW}/studies")
    return 0 if response.status_code == 204 else len(response.get_json())


def test_multipart_store_returns_xml_by_default(client: FlaskClient) -> None:
    parts = make_study(instances=3)
    response = client.post(f"{DW}/studies", data=multipart_body(parts), headers=stow_headers())
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("application/dicom+xml")
    root = ET.fromstring(response.data)
    items = root.findall("d:DicomAttribute[@tag='00081199']/d:Item", NS)
    assert len(items) == 3
    url = root.find("d:DicomAttribute[@tag='00081190']/d:Value", NS)
    assert url is not None and url.text and "/dicomWeb/studies/" in url.text
    assert root.find("d:DicomAttribute[@tag='00081198']", NS) is None


def test_store_json_response_and_retrieve_urls(client: FlaskClient) -> None:
    spec = Spec()
    response = client.post(
        f"{DW}/studies",
        data=multipart_body([make_instance(spec)]),
        headers=stow_headers(accept="application/dicom+json"),
    )
    assert response.status_code == 200
    body = response.get_json()
    item = body["00081199"]["Value"][0]
    assert item["00081155"]["Value"] == [spec.sop]
    url = item["00081190"]["Value"][0]
    assert url.endswith(f"/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}")
    assert url.startswith("http://localhost/v1/projects/local/")


def test_single_part_application_dicom(client: FlaskClient) -> None:
    spec = Spec()
    response = client.post(
        f"{DW}/studies",
        data=make_instance(spec),
        headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"},
    )
    assert response.status_code == 200, response.data
    assert (
        client.get(
            f"{DW}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}/metadata"
        ).status_code
        == 200
    )


def test_identical_reupload_is_success_and_different_bytes_conflict(client: FlaskClient) -> None:
    spec = Spec()
    original = make_instance(spec)
    headers = stow_headers(accept="application/dicom+json")
    assert (
        client.post(f"{DW}/studies", data=multipart_body([original]), headers=headers).status_code
        == 200
    )
    again = client.post(f"{DW}/studies", data=multipart_body([original]), headers=headers)
    assert again.status_code == 200
    assert "00081198" not in again.get_json()
    spec.patient_name = "Other^Name"
    changed = make_instance(spec)
    conflict = client.post(f"{DW}/studies", data=multipart_body([changed]), headers=headers)
    assert conflict.status_code == 409
    failed = conflict.get_json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [272]
    assert "already exists" in failed["00091097"]["Value"][0]
    stored = client.get(
        f"{DW}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
    )
    assert stored.data == original


def test_study_url_mismatch_fails_that_instance_only(client: FlaskClient) -> None:
    good, other = Spec(), Spec()
    good_bytes = make_instance(good)
    other_bytes = make_instance(other)
    response = client.post(
        f"{DW}/studies/{good.study}",
        data=multipart_body([good_bytes, other_bytes]),
        headers=stow_headers(accept="application/dicom+json"),
    )
    assert response.status_code == 409
    body = response.get_json()
    assert [i["00081155"]["Value"][0] for i in body["00081199"]["Value"]] == [good.sop]
    failed = body["00081198"]["Value"][0]
    assert failed["00081155"]["Value"] == [other.sop]
    assert failed["00081197"]["Value"] == [43265]


def test_invalid_and_truncated_instances_fail_without_trace(client: FlaskClient) -> None:
    spec = Spec()
    whole = make_instance(spec)
    response = client.post(
        f"{DW}/studies",
        data=multipart_body([b"not dicom at all", whole[: len(whole) - 100]]),
        headers=stow_headers(accept="application/dicom+json"),
    )
    assert response.status_code == 409
    failures = response.get_json()["00081198"]["Value"]
    assert len(failures) == 2
    assert all(f["00081197"]["Value"] == [272] for f in failures)
    assert _count_studies(client) == 0


def test_malformed_multipart_stores_nothing(client: FlaskClient) -> None:
    parts = make_study(instances=2)
    body = multipart_body(parts)
    truncated = body[: len(body) - 20]  # closing delimiter missing
    response = client.post(f"{DW}/studies", data=truncated, headers=stow_headers())
    assert response.status_code == 400
    assert "error" in response.get_json()
    wrong = client.post(f"{DW}/studies", data=body, headers=stow_headers(boundary="OTHER"))
    assert wrong.status_code == 400
    assert _count_studies(client) == 0
    # and the server keeps serving
    ok = client.post(f"{DW}/studies", data=body, headers=stow_headers())
    assert ok.status_code == 200


def test_unsupported_content_types(client: FlaskClient) -> None:
    data = make_instance()
    for content_type in ("text/plain", "", 'multipart/related; type="image/jpeg"; boundary=x'):
        response = client.post(f"{DW}/studies", data=data, headers={"Content-Type": content_type})
        assert response.status_code == 400, content_type
        assert response.get_json()["error"]["status"] == "INVALID_ARGUMENT"
    no_boundary = client.post(
        f"{DW}/studies",
        data=data,
        headers={"Content-Type": "multipart/related; type=application/dicom"},
    )
    assert no_boundary.status_code == 400
    assert _count_studies(client) == 0


def test_unacceptable_response_type_is_406_and_stores_nothing(client: FlaskClient) -> None:
    response = client.post(
        f"{DW}/studies",
        data=multipart_body([make_instance()]),
        headers=stow_headers(accept="text/html"),
    )
    assert response.status_code == 406
    assert _count_studies(client) == 0


def test_bad_study_uid_in_url(client: FlaskClient) -> None:
    for bad in ("1.02.3", "abc", "1..2", "1." + "2" * 70):
        response = client.post(
            f"{DW}/studies/{bad}", data=multipart_body([make_instance()]), headers=stow_headers()
        )
        assert response.status_code == 400, bad


def test_storage_class_header_is_validated(client: FlaskClient) -> None:
    headers = stow_headers() | {"Storage-Class": "FROZEN"}
    response = client.post(f"{DW}/studies", data=multipart_body([make_instance()]), headers=headers)
    assert response.status_code == 400
    headers = stow_headers() | {"Storage-Class": "NEARLINE"}
    response = client.post(f"{DW}/studies", data=multipart_body([make_instance()]), headers=headers)
    assert response.status_code == 200


def test_empty_multipart_is_400(client: FlaskClient) -> None:
    response = client.post(f"{DW}/studies", data=b"--TESTBOUNDARY--\r\n", headers=stow_headers())
    assert response.status_code == 400


def test_store_into_unknown_store_is_404(client: FlaskClient) -> None:
    url = "/v1/projects/local/locations/local/datasets/default/dicomStores/nope/dicomWeb/studies"
    response = client.post(url, data=multipart_body([make_instance()]), headers=stow_headers())
    assert response.status_code == 404


def test_xml_failure_detail_is_google_private_element(client: FlaskClient) -> None:
    response = client.post(
        f"{DW}/studies", data=multipart_body([b"garbage"]), headers=stow_headers()
    )
    assert response.status_code == 409
    root = ET.fromstring(response.data)
    detail = root.find(
        "d:DicomAttribute[@tag='00081198']/d:Item/d:DicomAttribute[@tag='00090097']", NS
    )
    assert detail is not None
    assert detail.get("privateCreator") == "GOOGLE"
    assert detail.get("keyword") == "FailureDetail"
    reason = root.find(
        "d:DicomAttribute[@tag='00081198']/d:Item/d:DicomAttribute[@tag='00081197']/d:Value", NS
    )
    assert reason is not None and reason.text == "272"


def test_upload_without_preamble_is_stored_as_valid_part10(client: FlaskClient) -> None:
    spec = Spec()
    full = make_instance(spec)
    bare = full[132:]  # file meta group first, no preamble, no DICM (as dicomweb-client sends)
    response = client.post(f"{DW}/studies", data=multipart_body([bare]), headers=stow_headers())
    assert response.status_code == 200, response.data
    stored = client.get(
        f"{DW}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
    )
    assert stored.data == bytes(128) + b"DICM" + bare
    again = client.post(f"{DW}/studies", data=multipart_body([bare]), headers=stow_headers())
    assert again.status_code == 200  # the identical re-upload still matches
