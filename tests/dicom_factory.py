"""Synthetic Part-10 instances built with pydicom: deterministic UIDs, no real patient data."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = "1.2.826.0.1.3680043.10.1234."


def uid(*parts: int) -> str:
    """A deterministic valid UID under a test root."""
    return ROOT + ".".join(str(p) for p in parts)


@dataclass
class Spec:
    """What a synthetic CT instance should hold."""

    study: str = field(default_factory=lambda: generate_uid(ROOT))
    series: str = field(default_factory=lambda: generate_uid(ROOT))
    sop: str = field(default_factory=lambda: generate_uid(ROOT))
    patient_name: str = "Doe^John"
    patient_id: str = "PAT001"
    study_date: str = "20240115"
    modality: str = "CT"
    accession: str = "ACC001"
    instance_number: int = 1
    rows: int = 16
    columns: int = 16
    frames: int = 1
    seed: int = 0


def make_dataset(spec: Spec | None = None) -> Dataset:
    """A small signed 16-bit CT instance with real pixel data."""
    spec = spec or Spec()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = spec.sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = spec.sop
    ds.StudyInstanceUID = spec.study
    ds.SeriesInstanceUID = spec.series
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = spec.study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = spec.accession
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyID = "1"
    ds.StudyDescription = "Synthetic study"
    ds.Modality = spec.modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Synthetic series"
    ds.InstanceNumber = spec.instance_number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    if spec.frames > 1:
        ds.NumberOfFrames = spec.frames
    rng = np.random.default_rng(spec.seed)
    shape = (spec.frames, spec.rows, spec.columns) if spec.frames > 1 else (spec.rows, spec.columns)
    pixels = rng.integers(-1000, 2000, size=shape, dtype=np.int16)
    ds.PixelData = pixels.tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def make_instance(spec: Spec | None = None) -> bytes:
    """Part-10 bytes of a synthetic instance."""
    return to_bytes(make_dataset(spec))


def make_study(instances: int = 3, series: int = 1, **overrides: object) -> list[bytes]:
    """A study of `series` series with `instances` instances each."""
    study = generate_uid(ROOT)
    out = []
    for s in range(series):
        series_uid = generate_uid(ROOT)
        for i in range(instances):
            spec = Spec(study=study, series=series_uid, instance_number=i + 1, seed=s * 1000 + i)
            for key, value in overrides.items():
                setattr(spec, key, value)
            out.append(make_instance(spec))
    return out
