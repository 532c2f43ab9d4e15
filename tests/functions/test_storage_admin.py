"""Metrics, storage info and storage-class changes through the HTTP function."""

from __future__ import annotations

from flask.testing import FlaskClient

from shared.service.context import Services
from tests.conftest import DW, STORE, drain
from tests.dicom_factory import Spec, make_instance
from tests.functions.http_helpers import multipart_body, stow_headers


def _load(client: FlaskClient) -> list[Spec]:
    study = Spec().study
    series_a, series_b = Spec().series, Spec().series
    specs = [Spec(study=study, series=series_a, seed=n, instance_number=n) for n in range(2)]
    specs.append(Spec(study=study, series=series_b, seed=9))
    specs.append(Spec())  # a second study
    body = multipart_body([make_instance(s) for s in specs])
    headers = stow_headers() | {"Storage-Class": "NEARLINE"}
    assert client.post(f"{DW}/studies", data=body, headers=headers).status_code == 200
    return specs


def test_store_study_series_metrics(client: FlaskClient) -> None:
    empty = client.get(f"/v1/{STORE}:getDICOMStoreMetrics").get_json()
    assert empty == {"name": STORE}  # zero counts are omitted, as in proto3 JSON
    specs = _load(client)
    metrics = client.get(f"/v1/{STORE}:getDICOMStoreMetrics").get_json()
    assert metrics["studyCount"] == "2"
    assert metrics["seriesCount"] == "3"
    assert metrics["instanceCount"] == "4"
    blob_total = sum(len(make_instance(s)) for s in specs)
    assert metrics["blobStorageSizeBytes"] == str(blob_total)
    assert int(metrics["structuredStorageSizeBytes"]) > 0
    study = client.get(f"{DW}/studies/{specs[0].study}:getStudyMetrics").get_json()
    assert study["study"] == f"{STORE}/dicomWeb/studies/{specs[0].study}"
    assert (study["seriesCount"], study["instanceCount"]) == ("2", "3")
    series = client.get(
        f"{DW}/studies/{specs[0].study}/series/{specs[0].series}:getSeriesMetrics"
    ).get_json()
    assert series["instanceCount"] == "2"
    assert client.get(f"{DW}/studies/1.2.3:getStudyMetrics").status_code == 404
    assert client.get(f"{DW}/studies/{specs[0].study}:nonsense").status_code == 404


def test_storage_info_and_set_blob_storage_settings(
    client: FlaskClient, services: Services
) -> None:
    specs = _load(client)
    spec = specs[0]
    instance = f"{DW}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}"
    info = client.get(f"{instance}:getStorageInfo").get_json()
    assert info["referencedResource"].endswith(f"/instances/{spec.sop}")
    assert info["blobStorageInfo"]["storageClass"] == "NEARLINE"
    assert info["blobStorageInfo"]["sizeBytes"] == str(len(make_instance(spec)))
    before = info["blobStorageInfo"]["storageClassUpdateTime"]
    body = {"blobStorageSettings": {"blobStorageClass": "ARCHIVE"}}
    response = client.post(f"{DW}/studies/{spec.study}:setBlobStorageSettings", json=body)
    assert response.status_code == 200, response.data
    drain(services)
    operation = client.get(f"/v1/{response.get_json()['name']}").get_json()
    assert operation["done"] is True
    assert operation["metadata"]["apiMethodName"].endswith("SetBlobStorageSettings")
    assert operation["metadata"]["counter"] == {"success": "3"}
    after = client.get(f"{instance}:getStorageInfo").get_json()["blobStorageInfo"]
    assert after["storageClass"] == "ARCHIVE"
    assert after["storageClassUpdateTime"] > before
    other = specs[3]
    untouched = client.get(
        f"{DW}/studies/{other.study}/series/{other.series}/instances/{other.sop}:getStorageInfo"
    ).get_json()
    assert untouched["blobStorageInfo"]["storageClass"] == "NEARLINE"
    store_wide = client.post(
        f"/v1/{STORE}:setBlobStorageSettings",
        json={"blobStorageSettings": {"blobStorageClass": "COLDLINE"}},
    )
    assert store_wide.status_code == 200
    drain(services)
    counter = client.get(f"/v1/{store_wide.get_json()['name']}").get_json()["metadata"]["counter"]
    assert counter == {"success": "4"}


def test_set_blob_storage_settings_rejects_bad_input(client: FlaskClient) -> None:
    specs = _load(client)
    url = f"{DW}/studies/{specs[0].study}:setBlobStorageSettings"
    assert client.post(url, json={}).status_code == 400
    assert (
        client.post(url, json={"blobStorageSettings": {"blobStorageClass": "COLD"}}).status_code
        == 400
    )
    assert client.get(url).status_code == 405
    assert (
        client.post(
            f"{DW}/studies/1.2.3:setBlobStorageSettings",
            json={"blobStorageSettings": {"blobStorageClass": "ARCHIVE"}},
        ).status_code
        == 404
    )
