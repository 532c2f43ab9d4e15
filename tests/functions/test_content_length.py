"""Content-Length on WADO responses whose size is known ahead, and kept-alive connections."""

from __future__ import annotations

import http.client
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from shared.dicom import multipart
from shared.domain.records import InstanceRecord
from shared.service import retrieve
from shared.service.context import Services
from shared.web import responses
from tests.conftest import DW, REPO, STORE
from tests.dicom_factory import Spec, make_instance
from tests.functions.http_helpers import split_multipart

_AS_STORED = {"Accept": "application/dicom; transfer-syntax=*"}
_MULTIPART_AS_STORED = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
_IMPLICIT_LE = "1.2.840.10008.1.2"


def _store(client: FlaskClient, spec: Spec) -> bytes:
    data = make_instance(spec)
    response = client.post(
        f"{DW}/studies", data=data, headers={"Content-Type": "application/dicom"}
    )
    assert response.status_code == 200, response.data
    return data


def _instance_url(spec: Spec) -> str:
    return f"{DW}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}"


# -- multipart_length --------------------------------------------------------------------


@pytest.mark.parametrize(
    "parts",
    [
        [],
        [({"Content-Type": "application/dicom"}, [b"abc"])],
        [({"Content-Type": "application/dicom"}, [b""]), ({}, [b"x" * 70000, b"y"])],
        [({"Content-Type": "image/png", "X-Note": "é ü"}, [b"\r\n--", b"z"])] * 3,
    ],
)
def test_multipart_length_matches_what_multipart_chunks_emits(
    parts: list[tuple[dict[str, str], list[bytes]]],
) -> None:
    boundary = multipart.new_boundary()
    body = b"".join(multipart.multipart_chunks(parts, boundary))
    headers = [h for h, _ in parts]
    lengths = [sum(len(c) for c in chunks) for _, chunks in parts]
    assert multipart.multipart_length(headers, lengths, boundary) == len(body)


def test_multipart_length_refuses_mismatched_lists() -> None:
    with pytest.raises(ValueError):
        multipart.multipart_length([{}], [], "b")
    with pytest.raises(ValueError):
        multipart.multipart_length([{}], [-1], "b")


def test_length_known_multipart_response_streams_header_chunks_separately() -> None:
    parts = [({"Content-Type": "application/octet-stream"}, b"A" * 10), ({}, b"")]
    response = responses.multipart_bytes_response(parts, "application/octet-stream")
    chunks = list(cast(Iterator[bytes], response.response))
    assert int(response.headers["Content-Length"]) == sum(len(c) for c in chunks)
    assert next(c for c in chunks if b"--" in c).endswith(b"\r\n\r\n")
    assert b"A" * 10 in chunks  # the body is a chunk of its own, not joined to its headers


def test_stream_response_refuses_a_body_of_another_length() -> None:
    short = responses.stream_response([b"abc"], "application/dicom", 4)
    with pytest.raises(responses.LengthMismatch):
        list(cast(Iterator[bytes], short.response))
    long = responses.stream_response([b"ab", b"cd"], "application/dicom", 3)
    sent = []
    with pytest.raises(responses.LengthMismatch):
        for chunk in cast(Iterator[bytes], long.response):
            sent.append(chunk)
    assert sent == [b"ab"]  # the excess never leaves


# -- blob size safety --------------------------------------------------------------------


def _fake(blob: bytes, size: int) -> tuple[Services, InstanceRecord]:
    services = SimpleNamespace(blobs=SimpleNamespace(open=lambda key: io.BytesIO(blob)))
    record = SimpleNamespace(size=size, blob_key="k", sop_uid="1.2.3", transfer_syntax="1.2")
    return cast(Services, services), cast(InstanceRecord, record)


def test_stored_chunks_yield_exactly_the_recorded_size() -> None:
    blob = bytes(range(256)) * 9000  # more than one read
    services, record = _fake(blob, len(blob))
    assert b"".join(retrieve.stored_chunks(services, record)) == blob


@pytest.mark.parametrize("actual", [0, 99, 101, 5_000_000])
def test_a_blob_of_another_size_than_the_index_aborts_loudly(
    actual: int, caplog: pytest.LogCaptureFixture
) -> None:
    services, record = _fake(b"x" * actual, 100)
    sent = b""
    with pytest.raises(retrieve.BlobSizeMismatch):
        for chunk in retrieve.stored_chunks(services, record):
            sent += chunk
    assert len(sent) < 100  # the announced length is never reached: clients see truncation
    assert "recorded in the index" in caplog.text


# -- HTTP headers through the app --------------------------------------------------------


def test_single_instance_as_stored_has_content_length(client: FlaskClient) -> None:
    spec = Spec()
    data = _store(client, spec)
    response = client.get(_instance_url(spec), headers=_AS_STORED)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in response.headers
    assert response.data == data
    default = client.get(_instance_url(spec), headers={"Accept": "application/dicom"})
    assert default.headers["Content-Length"] == str(len(data))  # stored as explicit VR LE


def test_single_instance_transcoded_is_streamed_without_length(client: FlaskClient) -> None:
    spec = Spec()
    _store(client, spec)
    response = client.get(
        _instance_url(spec),
        headers={"Accept": f"application/dicom; transfer-syntax={_IMPLICIT_LE}"},
    )
    assert response.status_code == 200
    assert "Content-Length" not in response.headers
    assert response.data.startswith(b"\0" * 128 + b"DICM")


def test_multipart_retrieve_stays_chunked_for_dcmweb(client: FlaskClient) -> None:
    """See responses.DCMWEB_CHUNKED: dcmweb relies on chunk edges of multipart bodies."""
    spec = Spec()
    data = _store(client, spec)
    for url in (f"{DW}/studies/{spec.study}", _instance_url(spec)):
        response = client.get(url, headers=_MULTIPART_AS_STORED)
        assert response.status_code == 200
        assert "Content-Length" not in response.headers
        assert [p for _, p in split_multipart(response.content_type, response.data)] == [data]


def test_frames_and_bulkdata_have_content_length(client: FlaskClient) -> None:
    spec = Spec(frames=2, rows=8, columns=8)
    _store(client, spec)
    url = _instance_url(spec)
    frame = client.get(f"{url}/frames/1", headers={"Accept": "application/octet-stream"})
    assert frame.status_code == 200
    assert frame.headers["Content-Length"] == str(len(frame.data)) == str(8 * 8 * 2)
    bulk = client.get(f"{url}/bulkdata/7FE00010")
    assert bulk.status_code == 200
    assert bulk.headers["Content-Length"] == str(len(bulk.data))
    ((_, payload),) = split_multipart(bulk.content_type, bulk.data)
    assert len(payload) == 2 * 8 * 8 * 2
    single = client.get(f"{url}/bulkdata/7FE00010", headers={"Accept": "application/octet-stream"})
    assert single.headers["Content-Length"] == str(len(payload))


# -- live server: the connection is kept alive -------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ, DICOMSTORE_DATA_DIR=str(tmp_path_factory.mktemp("cl")), PORT=str(port))
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("embedded server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1/{STORE}/dicomWeb"
    finally:
        process.terminate()
        process.wait(10)


def test_live_instance_retrieves_reuse_one_connection(live: str) -> None:
    base = urlsplit(live)
    spec = Spec()
    data = make_instance(spec)
    conn = http.client.HTTPConnection(base.hostname or "", base.port, timeout=10)
    try:
        conn.request(
            "POST", f"{base.path}/studies", body=data, headers={"Content-Type": "application/dicom"}
        )
        stored = conn.getresponse()
        stored.read()
        assert stored.status == 200
        path = f"{base.path}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}"
        sockets: list[Any] = []
        for _ in range(2):
            conn.request("GET", path, headers=_AS_STORED)
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Length") == str(len(data))
            assert response.getheader("Transfer-Encoding") is None
            assert (response.getheader("Connection") or "").lower() != "close"
            assert response.read() == data
            assert not response.will_close
            sockets.append(conn.sock)
        assert sockets[0] is not None and sockets[0] is sockets[1]  # no reconnect in between
    finally:
        conn.close()
