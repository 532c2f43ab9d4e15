"""Every transfer syntax in pydicom's bundled files: stored as sent, served as stored or decoded."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from flask.testing import FlaskClient

from tests.conftest import DW
from tests.functions.http_helpers import multipart_body, split_multipart, stow_headers
from tests.testdata import bundled_bytes

# One or more files per stored transfer syntax, each with valid UIDs.
FILES = {
    "CT_small.dcm": "1.2.840.10008.1.2.1",
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",
    "image_dfl.dcm": "1.2.840.10008.1.2.1.99",
    "SC_rgb_jpeg_dcmtk.dcm": "1.2.840.10008.1.2.4.50",
    "JPGExtended.dcm": "1.2.840.10008.1.2.4.51",
    "SC_rgb_jpeg_gdcm.dcm": "1.2.840.10008.1.2.4.70",
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "JPEGLSNearLossless_08.dcm": "1.2.840.10008.1.2.4.81",
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",
    "examples_ybr_color.dcm": "1.2.840.10008.1.2.4.50",
    "rtdose.dcm": "1.2.840.10008.1.2",
}
# Files whose own UIDs are missing or invalid: the store must refuse them (409, reason 272).
REFUSED = ["JPEGLSNearLossless_08.dcm", "no_meta.dcm", "MR_truncated.dcm", "rtplan_truncated.dcm"]


def _url(ds: pydicom.Dataset) -> str:
    return (
        f"{DW}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


@pytest.mark.parametrize("name", [n for n in FILES if n not in REFUSED])
def test_round_trip(client: FlaskClient, name: str) -> None:
    data = bundled_bytes(name)
    source = pydicom.dcmread(io.BytesIO(data))
    assert source.file_meta.TransferSyntaxUID == FILES[name]
    stored = client.post(f"{DW}/studies", data=multipart_body([data]), headers=stow_headers())
    assert stored.status_code == 200, stored.data
    as_stored = client.get(_url(source), headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert as_stored.data == data
    default = client.get(_url(source))
    assert default.status_code == 200, default.data
    ((ctype, payload),) = split_multipart(default.content_type, default.data)
    assert "transfer-syntax=1.2.840.10008.1.2.1" in ctype
    decoded = pydicom.dcmread(io.BytesIO(payload))
    assert decoded.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    expected = source.pixel_array  # pydicom 3 already converts YBR to RGB here
    if FILES[name] in (
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
    ):
        # lossy: the same decoder was used on both sides, so values agree within rounding
        assert np.abs(decoded.pixel_array.astype(int) - expected.astype(int)).max() <= 2
    else:
        np.testing.assert_array_equal(decoded.pixel_array, expected)
    metadata = client.get(f"{_url(source)}/metadata")
    assert metadata.status_code == 200
    frames = int(source.get("NumberOfFrames", 1) or 1)
    frame = client.get(f"{_url(source)}/frames/{frames}")
    assert frame.status_code == 200, frame.data


@pytest.mark.parametrize("name", REFUSED)
def test_invalid_bundled_files_are_refused(client: FlaskClient, name: str) -> None:
    response = client.post(
        f"{DW}/studies",
        data=multipart_body([bundled_bytes(name)]),
        headers=stow_headers(accept="application/dicom+json"),
    )
    assert response.status_code == 409
    assert response.get_json()["00081198"]["Value"][0]["00081197"]["Value"] == [272]
    assert client.get(f"{DW}/studies").status_code == 204
