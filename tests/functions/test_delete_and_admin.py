"""Delete, store administration and operations through the HTTP function."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from shared.ports.queue import Message
from shared.service import delete, handlers
from shared.service.context import Services
from tests.conftest import DW, STORE, drain
from tests.dicom_factory import Spec, make_instance
from tests.functions.http_helpers import multipart_body, stow_headers
from tests.functions.operation_helpers import WorkerDeath, deliver_twice, record_finishes

DATASET = "/v1/projects/local/locations/local/datasets/default"


def _store_study(
    client: FlaskClient, instances: int = 3, series: int = 2
) -> tuple[str, list[Spec]]:
    study = Spec().study
    specs = []
    for _ in range(series):
        series_uid = Spec().series
        specs += [
            Spec(study=study, series=series_uid, instance_number=n, seed=n)
            for n in range(instances)
        ]
    body = multipart_body([make_instance(s) for s in specs])
    assert client.post(f"{DW}/studies", data=body, headers=stow_headers()).status_code == 200
    return study, specs


def _blob_count(services: Services) -> int:
    return len(list(services.blobs.list_keys("stores/")))


def _store_id(services: Services) -> str:
    return services.index.get_store(STORE).store_id


def test_instance_delete(client: FlaskClient, services: Services) -> None:
    study, specs = _store_study(client, instances=2, series=1)
    spec = specs[0]
    url = f"{DW}/studies/{study}/series/{spec.series}/instances/{spec.sop}"
    response = client.delete(url)
    assert response.status_code == 200 and response.get_json() == {}
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404
    assert _blob_count(services) == 1
    assert len(client.get(f"{DW}/studies/{study}/instances").get_json()) == 1


def test_study_delete_is_an_operation_that_purges(client: FlaskClient, services: Services) -> None:
    study, _ = _store_study(client)
    assert _blob_count(services) == 6
    response = client.delete(f"{DW}/studies/{study}")
    assert response.status_code == 200
    name = response.get_json()["name"]
    assert name.startswith("projects/local/locations/local/datasets/default/operations/")
    # hidden at once, even before the purge ran
    assert client.get(f"{DW}/studies/{study}/metadata").status_code == 404
    assert client.get(f"{DW}/studies?StudyInstanceUID={study}").status_code == 204
    drain(services)
    operation = client.get(f"/v1/{name}").get_json()
    assert operation["done"] is True
    assert operation["metadata"]["apiMethodName"].endswith("DicomWebService.DeleteStudy")
    assert operation["metadata"]["counter"] == {"success": "6"}
    assert operation["response"]["@type"] == "type.googleapis.com/google.protobuf.Empty"
    assert _blob_count(services) == 0
    assert client.delete(f"{DW}/studies/{study}").status_code == 404


def test_series_delete_keeps_other_series(client: FlaskClient, services: Services) -> None:
    study, specs = _store_study(client, instances=2, series=2)
    response = client.delete(f"{DW}/studies/{study}/series/{specs[0].series}")
    assert response.status_code == 200
    drain(services)
    operation = client.get(f"/v1/{response.get_json()['name']}").get_json()
    assert operation["metadata"]["apiMethodName"].endswith("DeleteSeries")
    remaining = client.get(f"{DW}/studies/{study}/series").get_json()
    assert [o["0020000E"]["Value"][0] for o in remaining] == [specs[2].series]
    assert _blob_count(services) == 2


@pytest.mark.parametrize("level", ["study", "series"])
def test_every_purge_shard_delivered_twice_counts_once(
    client: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    monkeypatch.setattr(delete, "PURGE_SHARD_SIZE", 2)
    study, specs = _store_study(client, instances=5, series=2)
    deliver_twice(services, monkeypatch)
    finishes = record_finishes(services, monkeypatch)
    url = f"{DW}/studies/{study}" + (f"/series/{specs[0].series}" if level == "series" else "")
    name = client.delete(url).get_json()["name"]
    drain(services)
    operation = client.get(f"/v1/{name}").get_json()
    purged = 10 if level == "study" else 5
    assert operation["done"] is True
    assert operation["metadata"]["counter"] == {"success": str(purged)}
    assert services.operations.get(name).shards_done == purged // 2 + purged % 2
    assert finishes == [name]
    assert _blob_count(services) == 10 - purged


def test_a_purge_shard_whose_worker_dies_is_redelivered(
    client: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delete, "PURGE_SHARD_SIZE", 2)
    study, specs = _store_study(client, instances=3, series=2)  # six instances: three shards
    held: list[Message] = []
    monkeypatch.setattr(services.queue, "publish", held.append)  # deliver by hand
    finishes = record_finishes(services, monkeypatch)
    name = client.delete(f"{DW}/studies/{study}").get_json()["name"]
    first, second, third = held
    # one blob of the shard is gone, the other and both rows are not, when the worker dies
    death = WorkerDeath(monkeypatch, services.blobs, "delete", 2)
    with pytest.raises(RuntimeError, match="worker killed"):
        handlers.dispatch(services, second)
    assert death.happened
    assert _blob_count(services) == 5
    handlers.dispatch(services, first)
    handlers.dispatch(services, third)
    running = client.get(f"/v1/{name}").get_json()
    assert running.get("done") is None
    assert running["metadata"]["counter"] == {"success": "4", "pending": "2"}
    assert services.index.is_deleting(_store_id(services), study)
    handlers.dispatch(services, second)  # the redelivery
    operation = client.get(f"/v1/{name}").get_json()
    assert operation["done"] is True
    assert operation["metadata"]["counter"] == {"success": "6"}
    handlers.dispatch(services, second)  # once more, after the end
    assert client.get(f"/v1/{name}").get_json() == operation
    assert finishes == [name]
    assert _blob_count(services) == 0
    assert not services.index.is_deleting(_store_id(services), study)
    # every row is gone: the same instance can be stored into the study again
    body = multipart_body([make_instance(specs[0])])
    assert client.post(f"{DW}/studies", data=body, headers=stow_headers()).status_code == 200


def test_store_into_study_under_deletion_fails(client: FlaskClient, services: Services) -> None:
    stop = services.queue.stop
    stop()  # keep the purge from running so the study stays under deletion
    study, specs = _store_study(client, instances=1, series=1)
    assert client.delete(f"{DW}/studies/{study}").status_code == 200
    again = client.post(
        f"{DW}/studies",
        data=multipart_body([make_instance(Spec(study=study, series=specs[0].series))]),
        headers=stow_headers(accept="application/dicom+json"),
    )
    assert again.status_code == 409
    assert "being deleted" in again.get_json()["00081198"]["Value"][0]["00091097"]["Value"][0]


def test_store_crud(client: FlaskClient, services: Services) -> None:
    created = client.post(
        f"{DATASET}/dicomStores?dicomStoreId=second", json={"labels": {"env": "test"}}
    )
    assert created.status_code == 200, created.data
    assert created.get_json() == {
        "name": "projects/local/locations/local/datasets/default/dicomStores/second",
        "labels": {"env": "test"},
    }
    assert client.post(f"{DATASET}/dicomStores?dicomStoreId=second").status_code == 409
    assert client.post(f"{DATASET}/dicomStores").status_code == 400
    assert (
        client.post(
            f"{DATASET}/dicomStores?dicomStoreId=x", json={"labels": {"Bad": "x"}}
        ).status_code
        == 400
    )
    listing = client.get(f"{DATASET}/dicomStores?pageSize=1").get_json()
    assert len(listing["dicomStores"]) == 1 and "nextPageToken" in listing
    rest = client.get(
        f"{DATASET}/dicomStores?pageSize=1&pageToken={listing['nextPageToken']}"
    ).get_json()
    names = {listing["dicomStores"][0]["name"], rest["dicomStores"][0]["name"]}
    assert names == {STORE, "projects/local/locations/local/datasets/default/dicomStores/second"}
    assert client.get(f"{DATASET}/dicomStores/second").status_code == 200
    # stores are isolated from each other
    second_dw = f"{DATASET}/dicomStores/second/dicomWeb"
    assert (
        client.post(
            f"{second_dw}/studies", data=multipart_body([make_instance()]), headers=stow_headers()
        ).status_code
        == 200
    )
    assert client.get(f"{DW}/studies").status_code == 204
    assert client.delete(f"{DATASET}/dicomStores/second").get_json() == {}
    assert client.get(f"{DATASET}/dicomStores/second").status_code == 404
    assert _blob_count(services) == 0


def test_operations_list_and_errors(client: FlaskClient, services: Services) -> None:
    study, _ = _store_study(client, instances=1, series=1)
    name = client.delete(f"{DW}/studies/{study}").get_json()["name"]
    drain(services)
    listing = client.get(f"{DATASET}/operations").get_json()
    assert [op["name"] for op in listing["operations"]] == [name]
    assert client.get(f"{DATASET}/operations/123").status_code == 404
    assert client.get(f"{DATASET}/operations/abc").status_code == 404


def test_unknown_paths_and_methods(client: FlaskClient) -> None:
    assert client.get("/").status_code == 404
    assert client.get("/v2/projects").status_code == 404
    assert client.get(f"{DW}/nothing").status_code == 404
    assert client.put(f"{DW}/studies").status_code == 405
    assert client.get(f"{DW}/studies/..%2F..%2Fetc").status_code in (400, 404)
    assert client.get(f"{DW}/studies/1.2/series/..%2F..").status_code in (400, 404)
    body = client.get(f"{DW}/studies/abc").get_json()
    assert body["error"]["code"] == 400 and "StudyInstanceUID" in body["error"]["message"]


def test_store_patch(client: FlaskClient) -> None:
    url = f"{DATASET}/dicomStores/default"
    patched = client.patch(f"{url}?updateMask=labels", json={"labels": {"team": "radiology"}})
    assert patched.status_code == 200, patched.data
    assert patched.get_json()["labels"] == {"team": "radiology"}
    topic = {"notificationConfigs": [{"pubsubTopic": "projects/p/topics/dicom"}]}
    assert client.patch(f"{url}?updateMask=notificationConfigs", json=topic).status_code == 200
    got = client.get(url).get_json()
    assert got["labels"] == {"team": "radiology"}
    assert got["notificationConfigs"] == topic["notificationConfigs"]
    cleared = client.patch(f"{url}?updateMask=labels", json={}).get_json()
    assert "labels" not in cleared and "notificationConfigs" in cleared
    assert client.patch(url, json={"labels": {}}).status_code == 400  # updateMask required
    assert client.patch(f"{url}?updateMask=name", json={}).status_code == 400
    bad_topic = {"notificationConfigs": [{"pubsubTopic": "nope"}]}
    assert client.patch(f"{url}?updateMask=notificationConfigs", json=bad_topic).status_code == 400
    six = {
        "streamConfigs": [{"bigqueryDestination": {"tableUri": f"bq://p.d.t{i}"}} for i in range(6)]
    }
    assert client.patch(f"{url}?updateMask=streamConfigs", json=six).status_code == 400
    dup = {"streamConfigs": [{"bigqueryDestination": {"tableUri": "bq://p.d.t"}}] * 2}
    assert client.patch(f"{url}?updateMask=streamConfigs", json=dup).status_code == 400
