"""Interop: the dicomweb-client package against a live embedded server (a real subprocess)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.conftest import REPO, STORE
from tests.dicom_factory import Spec, make_dataset


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("live")
    env = dict(os.environ, DICOMSTORE_DATA_DIR=str(data_dir), PORT=str(port))
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"embedded server did not start:\n{output}")
            time.sleep(0.1)
        yield f"{base}/v1/{STORE}/dicomWeb"
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


@pytest.fixture(scope="module")
def client(server: str) -> DICOMwebClient:
    return DICOMwebClient(url=server)


@pytest.fixture(scope="module")
def study(client: DICOMwebClient) -> list[pydicom.Dataset]:
    study_uid = Spec().study
    series_uid = Spec().series
    datasets = [
        make_dataset(
            Spec(
                study=study_uid,
                series=series_uid,
                instance_number=n,
                seed=n,
                frames=2,
                rows=8,
                columns=8,
            )
        )
        for n in range(1, 4)
    ]
    result = client.store_instances(datasets)
    assert len(result.ReferencedSOPSequence) == 3
    return datasets


def test_search(client: DICOMwebClient, study: list[pydicom.Dataset]) -> None:
    studies = client.search_for_studies(search_filters={"PatientID": "PAT001"})
    assert [s["0020000D"]["Value"][0] for s in studies] == [study[0].StudyInstanceUID]
    series = client.search_for_series(study[0].StudyInstanceUID)
    assert len(series) == 1
    instances = client.search_for_instances(study[0].StudyInstanceUID, fields=["all"])
    assert len(instances) == 3
    fuzzy = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "jo"})
    assert len(fuzzy) == 1


def test_retrieve(client: DICOMwebClient, study: list[pydicom.Dataset]) -> None:
    first = study[0]
    instance = client.retrieve_instance(
        first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID
    )
    assert instance.PixelData == first.PixelData
    whole = client.retrieve_study(first.StudyInstanceUID)
    assert sorted(d.SOPInstanceUID for d in whole) == sorted(d.SOPInstanceUID for d in study)
    series = client.retrieve_series(first.StudyInstanceUID, first.SeriesInstanceUID)
    assert len(series) == 3


def test_metadata(client: DICOMwebClient, study: list[pydicom.Dataset]) -> None:
    first = study[0]
    meta = client.retrieve_instance_metadata(
        first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID
    )
    assert meta["00080018"]["Value"] == [first.SOPInstanceUID]
    assert len(client.retrieve_study_metadata(first.StudyInstanceUID)) == 3
    assert (
        len(client.retrieve_series_metadata(first.StudyInstanceUID, first.SeriesInstanceUID)) == 3
    )
    bulk = client.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"])
    assert bulk == [first.PixelData]


def test_frames(client: DICOMwebClient, study: list[pydicom.Dataset]) -> None:
    first = study[0]
    frames = client.retrieve_instance_frames(
        first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID, frame_numbers=[2, 1]
    )
    size = 8 * 8 * 2
    assert frames == [first.PixelData[size:], first.PixelData[:size]]


def test_rendered(client: DICOMwebClient, study: list[pydicom.Dataset]) -> None:
    first = study[0]
    image = client.retrieve_instance_rendered(
        first.StudyInstanceUID,
        first.SeriesInstanceUID,
        first.SOPInstanceUID,
        media_types=("image/png",),
    )
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    frame = client.retrieve_instance_frames_rendered(
        first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID, frame_numbers=[2]
    )
    assert frame[:2] == b"\xff\xd8"


def test_iterators_and_rendered_series(
    client: DICOMwebClient, study: list[pydicom.Dataset]
) -> None:
    first = study[0]
    iterated = list(client.iter_study(first.StudyInstanceUID))
    assert len(iterated) == 3
    assert len(list(client.iter_series(first.StudyInstanceUID, first.SeriesInstanceUID))) == 3
    frames = list(
        client.iter_instance_frames(
            first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID, frame_numbers=[1]
        )
    )
    assert frames == [first.PixelData[: 8 * 8 * 2]]
    meta = client.retrieve_instance_metadata(
        first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID
    )
    assert list(client.iter_bulkdata(meta["7FE00010"]["BulkDataURI"])) == [first.PixelData]
    rendered = client.retrieve_series_rendered(
        first.StudyInstanceUID, first.SeriesInstanceUID, media_types=("image/jpeg",)
    )
    assert rendered.count(b"\xff\xd8\xff") >= 3


def test_delete(client: DICOMwebClient, study: list[pydicom.Dataset]) -> None:
    extra = make_dataset(Spec(rows=8, columns=8))
    client.store_instances([extra], study_instance_uid=extra.StudyInstanceUID)
    client.delete_series(extra.StudyInstanceUID, extra.SeriesInstanceUID)
    deadline = time.monotonic() + 20
    while client.search_for_series(search_filters={"SeriesInstanceUID": extra.SeriesInstanceUID}):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    last = study[-1]
    client.delete_instance(last.StudyInstanceUID, last.SeriesInstanceUID, last.SOPInstanceUID)
    assert len(client.search_for_instances(last.StudyInstanceUID)) == 2
    client.delete_study(last.StudyInstanceUID)
    deadline = time.monotonic() + 20
    while client.search_for_studies(search_filters={"StudyInstanceUID": last.StudyInstanceUID}):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_live_multipart_sends_part_headers_as_their_own_chunks(
    server: str, client: DICOMwebClient
) -> None:
    """Google's dcmweb reader needs this from the real server, not only from the WSGI app."""
    import socket
    from urllib.parse import urlsplit

    study_uid = Spec().study
    client.store_instances([make_dataset(Spec(study=study_uid, seed=n)) for n in range(3)])
    url = urlsplit(f"{server}/studies/{study_uid}")
    request = (
        f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        'Accept: multipart/related; type="application/dicom"; transfer-syntax=*\r\n'
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request.encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    chunks = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        body = rest[size + 2 :]
    part_heads = [c for c in chunks if c.lstrip(b"\r\n").startswith(b"--")]
    assert len(part_heads) >= 3
    for chunk in part_heads[:-1]:
        assert chunk.endswith(b"\r\n\r\n") and b"Content-Type: application/dicom" in chunk
