"""Multi-instance STOW: blobs written together, index rows added together in request order."""

from __future__ import annotations

from typing import Any, BinaryIO

import pytest
from flask.testing import FlaskClient

from shared.errors import Unavailable
from shared.service.context import Services
from tests.conftest import DW
from tests.dicom_factory import Spec, make_instance, uid
from tests.functions.http_helpers import multipart_body, stow_headers


def _spec(n: int) -> Spec:
    return Spec(study=uid(3, 1), series=uid(3, 1, 1), sop=uid(3, 1, 1, n), instance_number=n + 1)


def _retrieve(client: FlaskClient, spec: Spec) -> bytes:
    response = client.get(
        f"{DW}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
    )
    assert response.status_code == 200, response.data
    return response.data


def _store(client: FlaskClient, specs: list[Spec]) -> Any:
    return client.post(
        f"{DW}/studies",
        data=multipart_body([make_instance(s) for s in specs]),
        headers=stow_headers(accept="application/dicom+json"),
    )


def test_a_batch_stores_every_instance_in_order(client: FlaskClient) -> None:
    specs = [_spec(n) for n in range(12)]
    response = _store(client, specs)
    assert response.status_code == 200, response.data
    referenced = [item["00081155"]["Value"][0] for item in response.get_json()["00081199"]["Value"]]
    assert referenced == [s.sop for s in specs]
    assert _retrieve(client, specs[7]) == make_instance(specs[7])


def test_the_first_of_two_parts_with_the_same_uids_wins(client: FlaskClient) -> None:
    first, second = _spec(0), _spec(0)
    second.patient_name = "Other^Name"
    parts = [make_instance(_spec(1)), make_instance(first), make_instance(second)]
    response = client.post(
        f"{DW}/studies",
        data=multipart_body(parts),
        headers=stow_headers(accept="application/dicom+json"),
    )
    assert response.status_code == 409
    body = response.get_json()
    assert len(body["00081199"]["Value"]) == 2
    [failed] = body["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [first.sop]
    assert "checksum mismatch" in failed["00091097"]["Value"][0]
    assert _retrieve(client, first) == make_instance(first)


def test_identical_parts_in_one_request_both_succeed(client: FlaskClient) -> None:
    data = make_instance(_spec(0))
    response = client.post(
        f"{DW}/studies",
        data=multipart_body([data, data]),
        headers=stow_headers(accept="application/dicom+json"),
    )
    assert response.status_code == 200, response.data
    assert len(response.get_json()["00081199"]["Value"]) == 2


def test_a_blob_write_failure_leaves_no_instance_and_no_blob(
    client: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = [_spec(n) for n in range(6)]
    real_put = services.blobs.put
    calls = []

    def failing_put(key: str, data: BinaryIO, **kwargs: Any) -> Any:
        calls.append(key)
        if len(calls) == 4:
            raise OSError("disk full")
        return real_put(key, data, **kwargs)

    monkeypatch.setattr(services.blobs, "put", failing_put)
    response = _store(client, specs)
    assert response.status_code == 500
    assert client.get(f"{DW}/studies").status_code == 204
    assert list(services.blobs.list_keys("stores/")) == []


def test_a_request_s_rows_are_added_together_and_a_refused_row_loses_its_blob(
    client: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = [_spec(n) for n in range(3)]
    real_add = services.index.add_instances
    calls: list[int] = []

    def refuse_the_second(records: list[Any]) -> list[Any]:
        calls.append(len(records))
        results = real_add([records[0], records[2]])
        return [results[0], Unavailable("index unreachable"), results[1]]

    monkeypatch.setattr(services.index, "add_instances", refuse_the_second)
    response = _store(client, specs)
    assert response.status_code == 503
    assert calls == [3]  # one call for the whole request
    monkeypatch.undo()
    # The rows that were added keep their blobs; the refused one left nothing behind.
    assert _retrieve(client, specs[0]) == make_instance(specs[0])
    assert _retrieve(client, specs[2]) == make_instance(specs[2])
    kept = list(services.blobs.list_keys("stores/"))
    assert len(kept) == 2 and not any(f"/{specs[1].sop}/" in key for key in kept)
