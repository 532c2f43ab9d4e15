"""What viewers and tools need beyond Google: CORS, thumbnails, zip, Range, dcmweb patterns."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Iterator

import functions_framework
import pytest
from flask.testing import FlaskClient
from PIL import Image

from shared import bootstrap
from shared.service.context import Services
from tests.conftest import DW, REPO
from tests.dicom_factory import Spec, make_dataset, make_instance, to_bytes
from tests.functions.http_helpers import multipart_body, split_multipart, stow_headers

OHIF = "http://localhost:3000"


@pytest.fixture
def cors_client(services: Services) -> Iterator[FlaskClient]:
    services.settings = dataclasses.replace(services.settings, cors_origins=(OHIF,))
    old = bootstrap.set_services(services)
    app = functions_framework.create_app(
        target="dicomweb", source=str(REPO / "functions" / "main.py")
    )
    yield app.test_client()
    bootstrap.set_services(old)


def _store_series(client: FlaskClient, count: int = 3) -> list[Spec]:
    study, series = Spec().study, Spec().series
    specs = [
        Spec(study=study, series=series, instance_number=n, seed=n, rows=32, columns=32)
        for n in range(count)
    ]
    body = multipart_body([make_instance(s) for s in specs])
    assert client.post(f"{DW}/studies", data=body, headers=stow_headers()).status_code == 200
    return specs


def test_cors_preflight_and_headers(cors_client: FlaskClient) -> None:
    preflight = cors_client.options(
        f"{DW}/studies",
        headers={
            "Origin": OHIF,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept",
        },
    )
    assert preflight.status_code == 204
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Accept" in preflight.headers["Access-Control-Allow-Headers"]
    response = cors_client.get(f"{DW}/studies", headers={"Origin": OHIF})
    assert response.headers["Access-Control-Allow-Origin"] == OHIF
    stranger = cors_client.get(f"{DW}/studies", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    error = cors_client.get(f"{DW}/studies/abc", headers={"Origin": OHIF})
    assert error.status_code == 400 and error.headers["Access-Control-Allow-Origin"] == OHIF


def test_cors_is_off_by_default(client: FlaskClient) -> None:
    response = client.get(f"{DW}/studies", headers={"Origin": OHIF})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_ohif_request_patterns(cors_client: FlaskClient) -> None:
    specs = _store_series(cors_client)
    study, series = specs[0].study, specs[0].series
    studies = cors_client.get(
        f"{DW}/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060",
        headers={"Origin": OHIF, "Accept": "application/dicom+json"},
    )
    assert studies.status_code == 200
    assert studies.get_json()[0]["00081030"]["Value"] == ["Synthetic study"]
    series_meta = cors_client.get(
        f"{DW}/studies/{study}/series/{series}/metadata", headers={"Origin": OHIF}
    )
    assert len(series_meta.get_json()) == 3
    frames = cors_client.get(
        f"{DW}/studies/{study}/series/{series}/instances/{specs[0].sop}/frames/1",
        headers={
            "Origin": OHIF,
            "Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*",
        },
    )
    assert frames.status_code == 200
    ((ctype, payload),) = split_multipart(frames.content_type, frames.data)
    assert "transfer-syntax=1.2.840.10008.1.2.1" in ctype
    assert len(payload) == 32 * 32 * 2


def test_thumbnails(client: FlaskClient) -> None:
    specs = _store_series(client)
    study, series, sop = specs[0].study, specs[0].series, specs[0].sop
    for path in (
        f"studies/{study}/thumbnail",
        f"studies/{study}/series/{series}/thumbnail",
        f"studies/{study}/series/{series}/instances/{sop}/thumbnail",
        f"studies/{study}/series/{series}/instances/{sop}/frames/1/thumbnail",
    ):
        response = client.get(f"{DW}/{path}")
        assert response.status_code == 200, path
        assert response.content_type == "image/jpeg"
    png = client.get(
        f"{DW}/studies/{study}/thumbnail?viewport=16,16", headers={"Accept": "image/png"}
    )
    assert Image.open(io.BytesIO(png.data)).size == (16, 16)


def test_zip_download(client: FlaskClient) -> None:
    specs = _store_series(client)
    response = client.get(f"{DW}/studies/{specs[0].study}", headers={"Accept": "application/zip"})
    assert response.status_code == 200
    assert response.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(f"{s.study}/{s.series}/{s.sop}.dcm" for s in specs)
        assert archive.read(names[0]) in [make_instance(s) for s in specs]
    series = client.get(
        f"{DW}/studies/{specs[0].study}/series/{specs[0].series}",
        headers={"Accept": "application/zip"},
    )
    assert len(zipfile.ZipFile(io.BytesIO(series.data)).namelist()) == 3


def test_bulkdata_range(client: FlaskClient) -> None:
    ds = make_dataset(Spec(rows=16, columns=16))
    client.post(f"{DW}/studies", data=multipart_body([to_bytes(ds)]), headers=stow_headers())
    url = (
        f"{DW}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/bulkdata/7FE00010"
    )
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.data == ds.PixelData[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(ds.PixelData)}"
    tail = client.get(url, headers={"Range": "bytes=-4"})
    assert tail.data == ds.PixelData[-4:]
    for bad in ("bytes=9999-", "lines=1-2", "bytes=5-1", "bytes=0-1,4-5", "bytes=a-b"):
        assert client.get(url, headers={"Range": bad}).status_code == 416, bad


def test_dcmweb_request_patterns(client: FlaskClient) -> None:
    """Google's dcmweb CLI: one single-part POST per file, single-part retrieve as stored."""
    specs = [Spec() for _ in range(3)]
    for spec in specs:
        response = client.post(
            f"{DW}/studies", data=make_instance(spec), headers={"Content-Type": "application/dicom"}
        )
        assert response.status_code == 200
    spec = specs[1]
    response = client.get(
        f"{DW}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
    )
    assert response.data == make_instance(spec)


def test_multipart_parts_are_separate_chunks(client: FlaskClient) -> None:
    """dcmweb's reader needs each part's boundary and headers as a chunk of its own."""
    specs = _store_series(client)
    response = client.get(
        f"{DW}/studies/{specs[0].study}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        buffered=False,
    )
    chunks = list(response.response)  # type: ignore[arg-type]
    header_chunks = [c for c in chunks if c.lstrip(b"\r\n").startswith(b"--")]
    assert len(header_chunks) == 4  # three part headers and the closing delimiter
    for chunk in header_chunks[:-1]:
        assert chunk.endswith(b"\r\n\r\n") and b"Content-Type: application/dicom" in chunk


def test_capabilities_document(client: FlaskClient) -> None:
    doc = client.get(f"{DW}/capabilities").get_json()
    assert doc["dicomWebRoot"].endswith("/dicomWeb")
    frames = {entry["mediaType"] for entry in doc["retrieve"]["frames"]}
    assert {"application/octet-stream", "image/jpeg", "image/png", "image/jls"} <= frames
    assert doc["search"]["maximumLimit"]["instance"] == 50000
    assert "STANDARD" in doc["store"]["storageClasses"]
    assert client.post(f"{DW}/capabilities").status_code == 405


def test_nested_bulkdata_path(client: FlaskClient) -> None:
    from pydicom import Dataset
    from pydicom.sequence import Sequence

    ds = make_dataset(Spec(rows=8, columns=8))
    icon = Dataset()
    icon.Rows, icon.Columns = 4, 4
    icon.PixelData = bytes(range(32))  # OB/OW inside a sequence is bulk data too
    icon["PixelData"].VR = "OB"
    ds.IconImageSequence = Sequence([icon])
    client.post(f"{DW}/studies", data=multipart_body([to_bytes(ds)]), headers=stow_headers())
    url = (
        f"{DW}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    meta = client.get(f"{url}/metadata").get_json()[0]
    uri = meta["00880200"]["Value"][0]["7FE00010"]["BulkDataURI"]
    assert uri.endswith("/bulkdata/00880200/0/7FE00010")
    response = client.get(
        uri.replace("http://localhost", ""), headers={"Accept": "application/octet-stream"}
    )
    assert response.data == bytes(range(32))
    assert client.get(f"{url}/bulkdata/00880200/5/7FE00010").status_code == 404
    assert client.get(f"{url}/bulkdata/not-a-tag").status_code == 400
