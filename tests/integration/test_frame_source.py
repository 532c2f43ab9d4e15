"""Rendering one frame from the header range and that frame's bytes gives exactly what
rendering the whole loaded instance gives, for every pydicom-data file that renders."""

from __future__ import annotations

import io
import os
from pathlib import Path

import data_store
import pydicom
import pytest
from flask.testing import FlaskClient

from shared.dicom import render
from shared.domain.identifiers import StoreName
from shared.errors import DicomStoreError
from shared.service import frame_source, retrieve, stores
from shared.service.context import Services
from tests.conftest import DW, STORE
from tests.functions.http_helpers import multipart_body, stow_headers

# The blob store is read the same way in both backends; the embedded one keeps this fast.
pytestmark = pytest.mark.local_only

DATA = Path(os.path.dirname(data_store.__file__)) / "data"
FILES = sorted(p.name for p in DATA.iterdir() if p.suffix == ".dcm")


def _render(dataset: pydicom.Dataset, number: int) -> bytes | type[Exception]:
    try:
        return render.render_frame(dataset, number, "image/png")
    except (DicomStoreError, ValueError, NotImplementedError, RuntimeError) as exc:
        return type(exc)


@pytest.mark.parametrize("name", FILES)
def test_a_frame_renders_the_same_without_the_others(
    client: FlaskClient, services: Services, name: str
) -> None:
    data = (DATA / name).read_bytes()
    source = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    stored = client.post(f"{DW}/studies", data=multipart_body([data]), headers=stow_headers())
    if stored.status_code != 200:
        return  # refused at ingest for a real defect: test_pydicom_data covers it
    store = stores.get_store(services, StoreName.parse(STORE))
    record = services.index.get_instance(
        store.store_id, source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID
    )
    if not record.number_of_frames:
        return
    whole = retrieve.load_dataset(services, record)
    by_frame = frame_source.renderer(services, record)
    count = record.number_of_frames
    for number in sorted({1, (count + 1) // 2, count}):
        expected = _render(whole, number)
        dataset, index = by_frame(number)
        assert _render(dataset, index) == expected, f"{name} frame {number}"


def test_an_out_of_range_frame_is_refused(client: FlaskClient, services: Services) -> None:
    data = (DATA / "emri_small.dcm").read_bytes()  # ten frames
    source = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    stored = client.post(f"{DW}/studies", data=multipart_body([data]), headers=stow_headers())
    assert stored.status_code == 200
    url = (
        f"{DW}/studies/{source.StudyInstanceUID}/series/{source.SeriesInstanceUID}"
        f"/instances/{source.SOPInstanceUID}/frames/99/rendered"
    )
    response = client.get(url)
    assert response.status_code == 400
    assert "out of range" in response.get_json()["error"]["message"]
