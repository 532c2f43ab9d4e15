"""Every file of pydicom-data through the HTTP function: stored exactly, decoded faithfully."""

from __future__ import annotations

import io
import os
from pathlib import Path

import data_store
import numpy as np
import pydicom
import pytest
from flask.testing import FlaskClient
from pydicom.pixels import iter_pixels

from shared.dicom.parse import read_instance
from shared.errors import InvalidDicom
from tests.conftest import DW
from tests.functions.http_helpers import multipart_body, split_multipart, stow_headers

DATA = Path(os.path.dirname(data_store.__file__)) / "data"
FILES = sorted(p.name for p in DATA.iterdir() if p.suffix == ".dcm")
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}
LOSSY |= {"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"}


def _decoded_frames(ds: pydicom.Dataset) -> list[np.ndarray] | None:
    """pydicom's frames, None if it cannot decode them.

    One frame at a time: `ds.pixel_array` converts a whole colour instance to RGB in float64,
    which for color3d_jpeg_baseline.dcm (120 frames of 640x480x3) peaks near 1 GB.
    """
    try:
        return list(iter_pixels(ds))
    except Exception:
        return None


def _assert_frames_match(
    decoded: list[np.ndarray], expected: list[np.ndarray], lossy: bool
) -> None:
    assert len(decoded) == len(expected)
    for got, want in zip(decoded, expected, strict=True):
        if lossy:
            # Integer, per frame: a float64 copy of every frame at once took gigabytes.
            assert got.shape == want.shape
            assert np.abs(got.astype(np.int64) - want).max() <= 2
        else:
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", FILES)
def test_pydicom_data_file(client: FlaskClient, name: str) -> None:
    data = (DATA / name).read_bytes()
    try:
        read_instance(io.BytesIO(data))
    except InvalidDicom:
        refused = client.post(f"{DW}/studies", data=multipart_body([data]), headers=stow_headers())
        assert refused.status_code == 409  # refused with a reason, nothing stored
        assert client.get(f"{DW}/studies").status_code == 204
        return
    source = pydicom.dcmread(io.BytesIO(data))
    stored = client.post(f"{DW}/studies", data=multipart_body([data]), headers=stow_headers())
    assert stored.status_code == 200, stored.data
    url = (
        f"{DW}/studies/{source.StudyInstanceUID}/series/{source.SeriesInstanceUID}"
        f"/instances/{source.SOPInstanceUID}"
    )
    as_stored = client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert as_stored.data == data
    if "PixelData" not in source:
        return
    expected = _decoded_frames(source)
    default = client.get(url)
    if expected is None:
        assert default.status_code == 406, default.data  # undecodable: refused, not garbled
        return
    assert default.status_code == 200, default.data
    ((_, payload),) = split_multipart(default.content_type, default.data)
    decoded = list(iter_pixels(pydicom.dcmread(io.BytesIO(payload))))
    _assert_frames_match(decoded, expected, source.file_meta.TransferSyntaxUID in LOSSY)
