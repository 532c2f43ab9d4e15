"""Frames in every media type of the spec, decoded back to the stored pixels."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pydicom
import pytest
from flask.testing import FlaskClient
from PIL import Image

from tests.conftest import DW
from tests.dicom_factory import Spec, make_dataset, to_bytes
from tests.functions.http_helpers import multipart_body, split_multipart, stow_headers
from tests.testdata import bundled_bytes


def _store(client: FlaskClient, data: bytes) -> tuple[pydicom.Dataset, str]:
    assert (
        client.post(
            f"{DW}/studies", data=multipart_body([data]), headers=stow_headers()
        ).status_code
        == 200
    )
    ds = pydicom.dcmread(io.BytesIO(data))
    series = f"{DW}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    url = f"{series}/instances/{ds.SOPInstanceUID}"
    return ds, url


def _frame(client: FlaskClient, url: str, accept: str) -> tuple[str, bytes]:
    response = client.get(f"{url}/frames/1", headers={"Accept": accept})
    assert response.status_code == 200, (accept, response.data)
    ((ctype, payload),) = split_multipart(response.content_type, response.data)
    return ctype, payload


def test_grey_16_bit_frames_lossless_types(client: FlaskClient) -> None:
    source = make_dataset(Spec(rows=64, columns=64))
    source.PixelRepresentation = 0  # unsigned, so every lossless codec takes it
    source.PixelData = (np.arange(64 * 64, dtype=np.uint16) % 4000).tobytes()
    ds, url = _store(client, to_bytes(source))
    expected = ds.pixel_array
    ctype, png = _frame(client, url, 'multipart/related; type="image/png"')
    assert ctype.startswith("image/png")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), expected)
    ctype, deflated = _frame(client, url, 'multipart/related; type="application/x-deflate"')
    assert "1.2.840.10008.1.2.8.1" in ctype
    assert zlib.decompress(deflated, -15) == expected.tobytes()
    for accept, syntax in (
        ('multipart/related; type="image/jls"', "1.2.840.10008.1.2.4.80"),
        ('multipart/related; type="image/jp2"', "1.2.840.10008.1.2.4.90"),
        (
            'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.70',
            "1.2.840.10008.1.2.4.70",
        ),
        ('multipart/related; type="image/dicom-rle"', "1.2.840.10008.1.2.5"),
    ):
        ctype, encoded = _frame(client, url, accept)
        assert syntax in ctype, (accept, ctype)
        assert len(encoded) > 0


def test_jpeg_baseline_from_8_bit(client: FlaskClient) -> None:
    ds, url = _store(client, bundled_bytes("SC_rgb_rle.dcm"))
    ctype, jpeg = _frame(client, url, 'multipart/related; type="image/jpeg"')
    assert "1.2.840.10008.1.2.4.50" in ctype
    image = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    assert np.abs(image - ds.pixel_array.astype(int)).mean() < 0.025 * 255


def test_stored_encoding_is_served_without_transcoding(client: FlaskClient) -> None:
    data = bundled_bytes("SC_rgb_jpeg_dcmtk.dcm")
    ds, url = _store(client, data)
    _, jpeg = _frame(client, url, 'multipart/related; type="image/jpeg"')
    stored = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    assert jpeg == stored


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="image/jpeg"',  # 16-bit signed CT: not baseline JPEG
        'multipart/related; type="image/jxl"; transfer-syntax=1.2.840.10008.1.2.4.110',
    ],
)
def test_impossible_frame_encodings_are_406(client: FlaskClient, accept: str) -> None:
    _, url = _store(client, to_bytes(make_dataset(Spec(rows=64, columns=64))))
    response = client.get(f"{url}/frames/1", headers={"Accept": accept})
    assert response.status_code == 406
    assert "cannot be encoded" in response.get_json()["error"]["message"]
