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

from shared.dicom.parse import read_instance
from shared.errors import InvalidDicom
from tests.conftest import DW
from tests.functions.http_helpers import multipart_body, split_multipart, stow_headers

DATA = Path(os.path.dirname(data_store.__file__)) / "data"
FILES = sorted(p.name for p in DATA.iterdir() if p.suffix == ".dcm")
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}
LOSSY |= {"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"}


def _decodable(ds: pydicom.Dataset) -> np.ndarray | None:
    try:
        return ds.pixel_array
    except Exception:
        return None


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
    expected = _decodable(source)
    default = client.get(url)
    if expected is None:
        assert default.status_code == 406, default.data  # undecodable: refused, not garbled
        return
    assert default.status_code == 200, default.data
    ((_, payload),) = split_multipart(default.content_type, default.data)
    decoded = pydicom.dcmread(io.BytesIO(payload)).pixel_array
    if source.file_meta.TransferSyntaxUID in LOSSY:
        assert np.abs(decoded.astype(float) - expected.astype(float)).max() <= 2
    else:
        np.testing.assert_array_equal(decoded, expected)
