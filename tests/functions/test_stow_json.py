"""STOW-RS of DICOM JSON metadata plus bulk data, starting from Google's own example."""

from __future__ import annotations

import io
import json

import pydicom
from flask.testing import FlaskClient
from pydicom.encaps import generate_frames

from tests.conftest import DW
from tests.dicom_factory import uid
from tests.testdata import bundled_bytes

CONTENT_TYPE = 'multipart/related; type="application/dicom+json"; boundary=DICOMwebBoundary'


def _seed_request(study: str, series: str, sop: str) -> tuple[bytes, pydicom.Dataset]:
    """The seed's opening/middle/closing files around instance.json and a real JPEG."""
    source = pydicom.dcmread(io.BytesIO(bundled_bytes("SC_rgb_jpeg_dcmtk.dcm")))
    jpeg = next(generate_frames(source.PixelData, number_of_frames=1))
    instance = [
        {
            "00020010": {"vr": "UI", "Value": ["1.2.840.10008.1.2.4.50"]},
            "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
            "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]},
            "00080018": {"vr": "UI", "Value": [sop]},
            "0020000D": {"vr": "UI", "Value": [study]},
            "0020000E": {"vr": "UI", "Value": [series]},
            "00280002": {"vr": "US", "Value": [3]},
            "00280004": {"vr": "CS", "Value": ["YBR_FULL_422"]},
            "00280006": {"vr": "US", "Value": [0]},
            "00280008": {"vr": "IS", "Value": [1]},
            "00280010": {"vr": "US", "Value": [source.Rows]},
            "00280011": {"vr": "US", "Value": [source.Columns]},
            "00280100": {"vr": "US", "Value": [8]},
            "00280101": {"vr": "US", "Value": [8]},
            "00280102": {"vr": "US", "Value": [7]},
            "00280103": {"vr": "US", "Value": [0]},
            "7FE00010": {"vr": "OB", "BulkDataURI": "jpeg-image"},
        }
    ]
    opening = b"--DICOMwebBoundary\r\nContent-Type: application/dicom+json\r\n\r\n"
    middle = (
        b"\r\n--DICOMwebBoundary\r\nContent-Location: jpeg-image\r\n"
        b"Content-Type: image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50\r\n\r\n"
    )
    closing = b"\r\n--DICOMwebBoundary--"
    return opening + json.dumps(instance).encode() + middle + jpeg + closing, source


def test_google_seed_example_verbatim(client: FlaskClient) -> None:
    study, series, sop = uid(1, 1), uid(1, 2), uid(1, 3)
    body, source = _seed_request(study, series, sop)
    response = client.post(f"{DW}/studies", data=body, headers={"Content-Type": CONTENT_TYPE})
    assert response.status_code == 200, response.data
    assert b"ReferencedSOPSequence" in response.data
    stored = client.get(
        f"{DW}/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
    )
    ds = pydicom.dcmread(io.BytesIO(stored.data))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert (ds.pixel_array == source.pixel_array).all()
    rendered = client.get(f"{DW}/studies/{study}/series/{series}/instances/{sop}/rendered")
    assert rendered.status_code == 200


def test_missing_bulk_part_stores_nothing(client: FlaskClient) -> None:
    body, _ = _seed_request(uid(2, 1), uid(2, 2), uid(2, 3))
    cut = (
        body[: body.index(b"\r\n--DICOMwebBoundary\r\nContent-Location")]
        + b"\r\n--DICOMwebBoundary--"
    )
    response = client.post(f"{DW}/studies", data=cut, headers={"Content-Type": CONTENT_TYPE})
    assert response.status_code == 400
    assert "jpeg-image" in response.get_json()["error"]["message"]
    assert client.get(f"{DW}/studies").status_code == 204


def test_wrong_content_location_and_bad_json(client: FlaskClient) -> None:
    body, _ = _seed_request(uid(3, 1), uid(3, 2), uid(3, 3))
    wrong = body.replace(b"Content-Location: jpeg-image", b"Content-Location: other")
    assert (
        client.post(f"{DW}/studies", data=wrong, headers={"Content-Type": CONTENT_TYPE}).status_code
        == 400
    )
    broken = body.replace(b'"00080005"', b'"00080005', 1)
    assert (
        client.post(
            f"{DW}/studies", data=broken, headers={"Content-Type": CONTENT_TYPE}
        ).status_code
        == 400
    )
    assert client.get(f"{DW}/studies").status_code == 204


def test_per_instance_failure_is_409(client: FlaskClient) -> None:
    body, _ = _seed_request(uid(4, 1), uid(4, 2), uid(4, 3))
    no_charset = body.replace(b'"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}, ', b"")
    response = client.post(
        f"{DW}/studies",
        data=no_charset,
        headers={"Content-Type": CONTENT_TYPE, "Accept": "application/dicom+json"},
    )
    assert response.status_code == 409, response.data
    failed = response.get_json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [272]
    assert "SpecificCharacterSet" in failed["00091097"]["Value"][0]
