"""The default retrieve of a compressed instance streams frame by frame, byte-identical to the
whole-instance transcode, for every bundled file and synthetic syntax that takes that path."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import data_store
import numpy as np
import pydicom
import pytest
from flask.testing import FlaskClient
from pydicom.uid import RLELossless

from shared.dicom import codecs
from shared.dicom.parse import read_instance
from shared.domain.identifiers import StoreName
from shared.domain.records import InstanceRecord
from shared.errors import DicomStoreError
from shared.service import retrieve, stores
from shared.service.context import Services
from tests.conftest import DW, STORE
from tests.dicom_factory import Spec, make_dataset, to_bytes
from tests.functions.http_helpers import multipart_body, split_multipart, stow_headers

_DIRECTORIES = {
    "pydicom-data": Path(os.path.dirname(data_store.__file__)) / "data",
    "pydicom": Path(os.path.dirname(pydicom.__file__)) / "data" / "test_files",
}
# Encapsulated files that fall back to the whole-instance transcode, and why. Neither decodes
# at all: the fallback exists so that they get the whole transcode's 406.
FALLBACKS = {
    "pydicom/JPEG-lossy.dcm": "no decoder here reads its 12-bit JPEG extended frame",
    "pydicom/JPEG2000-embedded-sequence-delimiter.dcm": "its frame is not a J2K codestream",
}
ENCAPSULATED_SYNTAXES = [
    codecs.JPEG_BASELINE,
    codecs.JPEG_EXTENDED,
    codecs.JPEG_LOSSLESS,
    codecs.JPEG_LOSSLESS_SV1,
    codecs.JPEG_LS_LOSSLESS,
    codecs.JPEG_LS_NEAR_LOSSLESS,
    codecs.JPEG_2000_LOSSLESS,
    codecs.JPEG_2000,
    codecs.HTJ2K_LOSSLESS,
    codecs.HTJ2K_LOSSLESS_RPCL,
    codecs.HTJ2K,
    codecs.JPEG_XL_LOSSLESS,
    codecs.JPEG_XL,
    codecs.RLE_LOSSLESS,
]


def _encapsulated_files() -> dict[str, str]:
    """'source/name' to syntax of every bundled file that ingest stores, if encapsulated."""
    found = {}
    for source, directory in _DIRECTORIES.items():
        for path in sorted(directory.iterdir()):
            try:
                parsed = read_instance(io.BytesIO(path.read_bytes()))
            except (DicomStoreError, OSError):
                continue  # not DICOM, or refused at ingest (test_pydicom_data covers those)
            if parsed.transfer_syntax in ENCAPSULATED_SYNTAXES:
                found[f"{source}/{path.name}"] = parsed.transfer_syntax
    return found


FILES = _encapsulated_files()


def _stored_record(client: FlaskClient, services: Services, data: bytes) -> InstanceRecord | None:
    stored = client.post(f"{DW}/studies", data=multipart_body([data]), headers=stow_headers())
    if stored.status_code != 200:
        return None
    source = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    store = stores.get_store(services, StoreName.parse(STORE))
    return services.index.get_instance(
        store.store_id, source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID
    )


def _whole_transcode(data: bytes) -> bytes | type[Exception]:
    try:
        return codecs.transcode_instance(io.BytesIO(data), codecs.EXPLICIT_VR_LE)
    except DicomStoreError as exc:
        return type(exc)


def _retrieved(services: Services, record: InstanceRecord) -> bytes | type[Exception]:
    try:
        return b"".join(retrieve.instance_chunks(services, record, codecs.EXPLICIT_VR_LE))
    except DicomStoreError as exc:
        return type(exc)


def test_most_encapsulated_bundled_files_take_the_streaming_path() -> None:
    streamed = {name: syntax for name, syntax in FILES.items() if name not in FALLBACKS}
    assert set(FALLBACKS) <= set(FILES)
    assert len(streamed) >= 40, streamed  # 48 with pydicom 3.0.2 and pydicom-data 1.0.0
    kinds = {codecs.JPEG_BASELINE, codecs.JPEG_EXTENDED, codecs.JPEG_LOSSLESS_SV1}
    kinds |= {codecs.JPEG_LS_LOSSLESS, codecs.JPEG_2000_LOSSLESS, codecs.JPEG_2000}
    assert kinds | {codecs.RLE_LOSSLESS} <= set(streamed.values())


@pytest.mark.local_only  # the blob store is read the same way in both backends
@pytest.mark.parametrize("name", FILES)
def test_a_bundled_file_streams_exactly_what_the_whole_transcode_writes(
    client: FlaskClient, services: Services, name: str
) -> None:
    source, _, filename = name.partition("/")
    data = (_DIRECTORIES[source] / filename).read_bytes()
    record = _stored_record(client, services, data)
    assert record is not None
    native = retrieve.native_stream(services, record, codecs.EXPLICIT_VR_LE)
    if name in FALLBACKS:
        assert native is None
        assert _retrieved(services, record) == _whole_transcode(data)
        return
    assert native is not None
    assert b"".join(native) == _whole_transcode(data)


@pytest.mark.local_only
@pytest.mark.parametrize("syntax", ENCAPSULATED_SYNTAXES)
def test_a_synthetic_multiframe_instance_streams_in_every_encodable_syntax(
    client: FlaskClient, services: Services, syntax: str
) -> None:
    # Odd sizes: the pixel data gets a pad byte. Colour where the syntax takes it; JPEG
    # extended takes greyscale only (its PS3.5 profile), so it gets 8-bit grey instead.
    native = _rgb_instance(frames=3, rows=33, columns=35)
    header = pydicom.dcmread(io.BytesIO(native), stop_before_pixels=True)
    if not codecs.can_transcode(codecs.EXPLICIT_VR_LE, syntax, header):
        native = _grey_instance(frames=3, rows=33, columns=35)
        header = pydicom.dcmread(io.BytesIO(native), stop_before_pixels=True)
    assert codecs.can_transcode(codecs.EXPLICIT_VR_LE, syntax, header)
    data = codecs.transcode_instance(io.BytesIO(native), syntax)
    record = _stored_record(client, services, data)
    assert record is not None and record.transfer_syntax == syntax
    stream = retrieve.native_stream(services, record, codecs.EXPLICIT_VR_LE)
    assert stream is not None
    assert b"".join(stream) == _whole_transcode(data)


def test_the_default_retrieve_sends_the_streamed_bytes(
    client: FlaskClient, services: Services
) -> None:
    data = (_DIRECTORIES["pydicom"] / "examples_ybr_color.dcm").read_bytes()  # 30 YBR frames
    record = _stored_record(client, services, data)
    assert record is not None
    assert retrieve.native_stream(services, record, codecs.EXPLICIT_VR_LE) is not None
    url = f"{DW}/studies/{record.study_uid}/series/{record.series_uid}/instances/{record.sop_uid}"
    expected = _whole_transcode(data)
    single = client.get(url, headers={"Accept": "application/dicom"})
    assert single.status_code == 200
    assert "transfer-syntax=1.2.840.10008.1.2.1" in single.content_type
    assert single.data == expected
    default = client.get(url)
    ((_, payload),) = split_multipart(default.content_type, default.data)
    assert payload == expected


def _rgb_instance(frames: int, rows: int, columns: int) -> bytes:
    dataset = make_dataset(Spec(rows=rows, columns=columns, frames=frames))
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 3, "RGB"
    dataset.PlanarConfiguration = 0
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelRepresentation = 0
    rng = np.random.default_rng(7)
    dataset.PixelData = rng.integers(0, 256, frames * rows * columns * 3, np.uint8).tobytes()
    return to_bytes(dataset)


def _grey_instance(frames: int, rows: int, columns: int) -> bytes:
    dataset = make_dataset(Spec(rows=rows, columns=columns, frames=frames))
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    dataset.PixelRepresentation = 0
    rng = np.random.default_rng(8)
    dataset.PixelData = rng.integers(0, 256, frames * rows * columns, np.uint8).tobytes()
    return to_bytes(dataset)


def _rle_instance(frames: int, rows: int, columns: int) -> bytes:
    dataset = make_dataset(Spec(rows=rows, columns=columns, frames=frames))
    # A smooth ramp per frame: RLE compresses it, as it does real images (noise it would not).
    ramp = np.add.outer(np.arange(rows), np.arange(columns)).astype(np.int16)
    dataset.PixelData = np.stack([ramp + frame for frame in range(frames)]).tobytes()
    dataset.compress(RLELossless, generate_instance_uid=False)
    return to_bytes(dataset)


@pytest.mark.local_only  # measures this code, not the storage client's buffers
def test_streaming_a_large_instance_holds_a_frame_or_two_not_the_instance(
    client: FlaskClient, services: Services
) -> None:
    frames, rows, columns = 48, 512, 512
    frame_size = rows * columns * 2
    record = _stored_record(client, services, _rle_instance(frames, rows, columns))
    assert record is not None and record.transfer_syntax == RLELossless
    tracemalloc.start()
    try:
        sent = sum(map(len, retrieve.instance_chunks(services, record, codecs.EXPLICIT_VR_LE)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent > frames * frame_size  # the header and every native frame went out
    # Measured: a 1.9 MB peak (under four 512 KB frames) for this 24 MB instance (a 13 MB
    # blob); codecs.transcode_instance on the same blob peaks at 75 MB, 3x the native size.
    assert peak < 6 * frame_size, peak
