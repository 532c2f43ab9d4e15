"""WADO-RS through the HTTP function: instances, transcoding, frames, rendered, metadata."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from flask.testing import FlaskClient
from PIL import Image
from pydicom.data import get_testdata_file

from tests.conftest import DW
from tests.dicom_factory import Spec, make_dataset, make_instance, to_bytes
from tests.functions.http_helpers import multipart_body, split_multipart, stow_headers
from tests.testdata import bundled_bytes


def _store(client: FlaskClient, data: bytes) -> pydicom.Dataset:
    response = client.post(f"{DW}/studies", data=multipart_body([data]), headers=stow_headers())
    assert response.status_code == 200, response.data
    return pydicom.dcmread(io.BytesIO(data))


def _url(ds: pydicom.Dataset) -> str:
    series = f"{DW}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    return f"{series}/instances/{ds.SOPInstanceUID}"


_testfile = bundled_bytes


def test_study_retrieve_as_stored_is_byte_identical(client: FlaskClient) -> None:
    study = Spec().study
    blobs = [make_instance(Spec(study=study, instance_number=n, seed=n)) for n in range(3)]
    client.post(f"{DW}/studies", data=multipart_body(blobs), headers=stow_headers())
    response = client.get(
        f"{DW}/studies/{study}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert response.status_code == 200
    parts = split_multipart(response.content_type, response.data)
    assert sorted(p for _, p in parts) == sorted(blobs)


def test_single_part_instance_and_default_multipart(client: FlaskClient) -> None:
    data = make_instance()
    ds = _store(client, data)
    single = client.get(_url(ds), headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert single.status_code == 200
    assert single.content_type.startswith("application/dicom")
    assert single.data == data
    default = client.get(_url(ds))
    assert default.content_type.startswith("multipart/related")
    ((ctype, payload),) = split_multipart(default.content_type, default.data)
    assert "1.2.840.10008.1.2.1" in ctype
    assert payload == data  # already Explicit VR Little Endian: no change


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPGExtended.dcm",
        "image_dfl.dcm",
        "rtdose_rle.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_compressed_instances_are_decompressed_by_default(client: FlaskClient, name: str) -> None:
    data = _testfile(name)
    ds = _store(client, data)
    response = client.get(_url(ds))
    assert response.status_code == 200, response.data
    ((_ctype, payload),) = split_multipart(response.content_type, response.data)
    out = pydicom.dcmread(io.BytesIO(payload))
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert out.SOPInstanceUID == ds.SOPInstanceUID
    np.testing.assert_array_equal(out.pixel_array.shape, ds.pixel_array.shape)
    stored = client.get(_url(ds), headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert stored.data == data


def test_metadata_has_absolute_bulkdata_uris_and_bulkdata_serves_them(client: FlaskClient) -> None:
    ds = _store(client, make_instance())
    response = client.get(f"{_url(ds)}/metadata")
    assert response.status_code == 200
    (meta,) = response.get_json()
    assert meta["00100010"]["Value"][0]["Alphabetic"] == "Doe^John"
    uri = meta["7FE00010"]["BulkDataURI"]
    assert uri == f"http://localhost{_url(ds)}/bulkdata/7FE00010"
    bulk = client.get(uri.replace("http://localhost", ""))
    assert bulk.status_code == 200
    ((_, payload),) = split_multipart(bulk.content_type, bulk.data)
    assert payload == ds.PixelData
    single = client.get(
        uri.replace("http://localhost", ""), headers={"Accept": "application/octet-stream"}
    )
    assert single.data == ds.PixelData


def test_study_and_series_metadata(client: FlaskClient) -> None:
    study = Spec().study
    series = Spec().series
    blobs = [
        make_instance(Spec(study=study, series=series, instance_number=n, seed=n)) for n in (2, 1)
    ]
    client.post(f"{DW}/studies", data=multipart_body(blobs), headers=stow_headers())
    objs = client.get(f"{DW}/studies/{study}/metadata").get_json()
    assert [o["00200013"]["Value"][0] for o in objs] == [1, 2]  # ordered by InstanceNumber
    assert len(client.get(f"{DW}/studies/{study}/series/{series}/metadata").get_json()) == 2


def test_frames_default_and_as_stored(client: FlaskClient) -> None:
    source = make_dataset(Spec(frames=4, rows=8, columns=8))
    ds = _store(client, to_bytes(source))
    response = client.get(f"{_url(ds)}/frames/3,1")
    assert response.status_code == 200
    parts = split_multipart(response.content_type, response.data)
    frame_size = 8 * 8 * 2
    assert [p for _, p in parts] == [
        source.PixelData[2 * frame_size : 3 * frame_size],
        source.PixelData[0:frame_size],
    ]
    assert all(ct.startswith("application/octet-stream") for ct, _ in parts)
    for bad in ("0", "5", "1,x", ""):
        assert client.get(f"{_url(ds)}/frames/{bad}").status_code in (400, 404), bad


def test_frames_of_compressed_instance(client: FlaskClient) -> None:
    data = (
        _testfile("examples_ybr_color.dcm") if get_testdata_file("examples_ybr_color.dcm") else None
    )
    if data is None:
        pytest.skip("examples_ybr_color.dcm not bundled")
    ds = _store(client, data)
    stored = client.get(
        f"{_url(ds)}/frames/2",
        headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'},
    )
    assert stored.status_code == 200
    ((ctype, encoded),) = split_multipart(stored.content_type, stored.data)
    assert ds.file_meta.TransferSyntaxUID in ctype
    assert encoded[:2] == b"\xff\xd8"  # a JPEG stream
    decoded = client.get(f"{_url(ds)}/frames/2")
    ((_, raw),) = split_multipart(decoded.content_type, decoded.data)
    assert len(raw) == ds.Rows * ds.Columns * ds.SamplesPerPixel


def test_rendered_jpeg_and_png(client: FlaskClient) -> None:
    ds = _store(client, make_instance(Spec(rows=32, columns=32)))
    jpeg = client.get(f"{_url(ds)}/rendered")
    assert jpeg.status_code == 200 and jpeg.content_type == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.data)).size == (32, 32)
    png = client.get(f"{_url(ds)}/rendered", headers={"Accept": "image/png"})
    assert png.content_type == "image/png"
    assert Image.open(io.BytesIO(png.data)).format == "PNG"
    frame = client.get(f"{_url(ds)}/frames/1/rendered?viewport=16,16")
    assert Image.open(io.BytesIO(frame.data)).size == (16, 16)
    assert client.get(f"{_url(ds)}/rendered", headers={"Accept": "image/gif"}).status_code == 406
    assert client.get(f"{_url(ds)}/rendered?viewport=abc").status_code == 400


def test_unknown_uids_are_404(client: FlaskClient) -> None:
    ds = _store(client, make_instance())
    assert client.get(f"{DW}/studies/1.2.3").status_code == 404
    assert client.get(f"{DW}/studies/{ds.StudyInstanceUID}/series/1.2.3").status_code == 404
    assert (
        client.get(
            f"{DW}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/1.2.3"
        ).status_code
        == 404
    )
    assert client.get(f"{DW}/studies/1.2.3/metadata").status_code == 404


def test_unacceptable_transfer_syntax_is_406(client: FlaskClient) -> None:
    ds = _store(client, make_instance())
    response = client.get(
        _url(ds),
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4'},
    )
    assert response.status_code == 406
    assert client.get(_url(ds), headers={"Accept": "text/html"}).status_code == 406
