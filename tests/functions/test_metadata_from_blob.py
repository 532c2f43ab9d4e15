"""Metadata rebuilt from the blob's header range equals the metadata computed at ingest."""

from __future__ import annotations

import dataclasses
import io

import pytest
from flask.testing import FlaskClient

from shared.dicom import json_model
from shared.dicom.parse import read_instance
from shared.service import retrieve
from shared.service import store as store_service
from shared.service.context import Services
from tests.conftest import DW, STORE
from tests.functions.http_helpers import multipart_body, stow_headers
from tests.testdata import bundled_bytes


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm", "rtplan.dcm", "image_dfl.dcm"]
)
def test_header_range_gives_the_same_metadata(
    client: FlaskClient, services: Services, name: str
) -> None:
    data = bundled_bytes(name)
    assert (
        client.post(
            f"{DW}/studies", data=multipart_body([data]), headers=stow_headers()
        ).status_code
        == 200
    )
    store = services.index.get_store(STORE)
    (result,) = services.index.search(store.store_id, _instances())
    study, series, sop = (result[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
    record = services.index.get_instance(store.store_id, study, series, sop)
    assert 0 < record.header_length <= record.size
    parsed = read_instance(io.BytesIO(data))  # what ingest computed, straight from the file
    pixel_vr = store_service._pixel_data_vr(parsed) if parsed.number_of_frames else None
    expected = json_model.dataset_to_json(parsed.dataset, pixel_data_vr=pixel_vr)
    summary = {tag: value for tag, value in expected.items() if tag < "00200000"}
    partial = dataclasses.replace(record, metadata=summary, metadata_complete=False)
    assert retrieve.full_metadata(services, partial) == expected


def _instances():  # type: ignore[no-untyped-def]
    from shared.domain.search import Level, SearchQuery

    return SearchQuery(level=Level.INSTANCE)
