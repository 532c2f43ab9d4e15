"""Bad input and races through the HTTP function: right 4xx, nothing half-written, still serving."""

from __future__ import annotations

import threading
from pathlib import Path

from flask.testing import FlaskClient

from shared import bootstrap
from shared.service.context import Services
from tests.conftest import DW, drain, make_settings
from tests.dicom_factory import Spec, make_instance
from tests.functions.http_helpers import multipart_body, stow_headers

DATASET = "/v1/projects/local/locations/local/datasets/default"


def test_concurrent_conflicting_uploads_keep_exactly_one(
    client: FlaskClient, services: Services
) -> None:
    spec = Spec()
    bodies = []
    for number in range(8):
        spec.patient_id = f"P{number}"  # same UIDs, different bytes
        bodies.append(make_instance(spec))
    statuses: list[int] = []

    def upload(body: bytes) -> None:
        response = client.post(f"{DW}/studies", data=multipart_body([body]), headers=stow_headers())
        statuses.append(response.status_code)

    threads = [threading.Thread(target=upload, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [409] * 7
    assert len(list(services.blobs.list_keys("stores/"))) == 1
    stored = client.get(
        f"{DW}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
    ).data
    assert stored in bodies


def test_concurrent_identical_uploads_all_succeed_once_stored(
    client: FlaskClient, services: Services
) -> None:
    body = multipart_body([make_instance()])
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: statuses.append(
                client.post(f"{DW}/studies", data=body, headers=stow_headers()).status_code
            )
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 8
    assert len(list(services.blobs.list_keys("stores/"))) == 1


def test_study_delete_survives_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    first = bootstrap.build_services(settings)
    stop = first.queue.stop
    stop()  # the process "dies" before the purge runs
    old = bootstrap.set_services(first)
    try:
        import functions_framework

        from tests.conftest import REPO

        app = functions_framework.create_app(
            target="dicomweb", source=str(REPO / "functions" / "main.py")
        )
        client = app.test_client()
        spec = Spec()
        client.post(
            f"{DW}/studies", data=multipart_body([make_instance(spec)]), headers=stow_headers()
        )
        name = client.delete(f"{DW}/studies/{spec.study}").get_json()["name"]
        assert client.get(f"/v1/{name}").get_json().get("done") is None
        second = bootstrap.build_services(settings)  # restart on the same data directory
        bootstrap.set_services(second)
        drain(second)
        operation = client.get(f"/v1/{name}").get_json()
        assert operation["done"] is True
        assert operation["metadata"]["counter"] == {"success": "1"}
        assert list(second.blobs.list_keys("stores/")) == []
        second.queue.stop()
    finally:
        bootstrap.set_services(old)


def test_control_plane_body_limits_and_garbage(client: FlaskClient) -> None:
    big = b"{" + b" " * (10 * 1000 * 1000 + 10) + b"}"
    response = client.post(f"{DATASET}/dicomStores?dicomStoreId=big", data=big)
    assert response.status_code == 413
    garbage = client.post(f"{DATASET}/dicomStores?dicomStoreId=g", data=b"{not json")
    assert garbage.status_code == 400
    array = client.post(f"{DATASET}/dicomStores?dicomStoreId=g", json=[1, 2])
    assert array.status_code == 400
    assert client.get(f"{DATASET}/dicomStores/g").status_code == 404


def test_bad_resource_names(client: FlaskClient) -> None:
    for path in (
        "/v1/projects/p/locations/l/datasets/../dicomStores/s/dicomWeb/studies",
        "/v1/projects/p/locations/l/datasets/d/dicomStores/..%2F/dicomWeb/studies",
        "/v1/projects/p%00/locations/l/datasets/d/dicomStores/s",
    ):
        assert client.get(path).status_code in (400, 404), path


def test_server_keeps_serving_after_a_storm_of_bad_requests(client: FlaskClient) -> None:
    junk = [
        (b"\x00" * 1000, "application/dicom"),
        (b"--x\r\nContent-Type: application/dicom\r\n\r\nDICM", "multipart/related; boundary=x"),
        (b"", "multipart/related; boundary=x"),
        (bytes(range(256)) * 10, 'multipart/related; type="application/dicom"; boundary=zz'),
    ]
    for body, content_type in junk:
        status = client.post(
            f"{DW}/studies", data=body, headers={"Content-Type": content_type}
        ).status_code
        assert 400 <= status < 500, (content_type, status)
    assert client.get(f"{DW}/studies").status_code == 204
    ok = client.post(
        f"{DW}/studies", data=multipart_body([make_instance()]), headers=stow_headers()
    )
    assert ok.status_code == 200
