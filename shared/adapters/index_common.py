"""Record and paging helpers shared by every Index adapter (SQLite, Firestore)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from shared.dicom import attributes
from shared.dicom.attributes import SERIES_UID, STUDY_UID, tag_of
from shared.dicom.query import string_values
from shared.domain.records import DicomJson, InstanceRecord
from shared.errors import InvalidArgument

PATIENT_NAME = tag_of("PatientName")
PATIENT_ID = tag_of("PatientID")
ACCESSION_NUMBER = tag_of("AccessionNumber")
REFERRING_PHYSICIAN = tag_of("ReferringPhysicianName")
STUDY_DATE = tag_of("StudyDate")
MODALITY = tag_of("Modality")
INSTANCE_NUMBER = tag_of("InstanceNumber")
SOP_CLASS_UID = tag_of("SOPClassUID")
MODALITIES_IN_STUDY = tag_of("ModalitiesInStudy")
SOP_CLASSES_IN_STUDY = tag_of("SOPClassesInStudy")
STUDY_SERIES_COUNT = tag_of("NumberOfStudyRelatedSeries")
STUDY_INSTANCE_COUNT = tag_of("NumberOfStudyRelatedInstances")
SERIES_INSTANCE_COUNT = tag_of("NumberOfSeriesRelatedInstances")

# Study-level search keys kept as their own column or field: tag -> (name, VR).
STUDY_SEARCH_FIELDS = {
    PATIENT_NAME: ("patient_name", "PN"),
    PATIENT_ID: ("patient_id", "LO"),
    ACCESSION_NUMBER: ("accession_number", "SH"),
    REFERRING_PHYSICIAN: ("referring_physician_name", "PN"),
    STUDY_DATE: ("study_date", "DA"),
}


def dataset_of(store_name: str) -> str:
    return store_name.rsplit("/dicomStores/", 1)[0]


def decode_token(dataset: str, token: str) -> str:
    """The last store name of the previous page; InvalidArgument for a forged or stale token."""
    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if body["d"] == dataset and isinstance(body["n"], str):
            return str(body["n"])
    except (ValueError, TypeError, KeyError, UnicodeError, binascii.Error):
        pass
    raise InvalidArgument("invalid page token")


def encode_token(dataset: str, last_name: str) -> str:
    raw = json.dumps({"d": dataset, "n": last_name}, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def first(element: Any, vr: str) -> str | None:
    values = string_values(element, vr)
    return values[0] if values and values[0] != "" else None


def instance_number(metadata: DicomJson) -> int | None:
    text = first(metadata.get(INSTANCE_NUMBER), "IS")
    try:
        return None if text is None else int(float(text))
    except ValueError:
        return None


def levels(record: InstanceRecord) -> tuple[DicomJson, DicomJson]:
    """Study and series attributes of a record, with the UIDs taken from its key."""
    study, series = record.study, record.series
    if not study or not series:
        split_study, split_series = attributes.split_levels(record.metadata)
        study, series = study or split_study, series or split_series
    return (
        {**study, STUDY_UID: uid_element(record.study_uid)},
        {**series, SERIES_UID: uid_element(record.series_uid)},
    )


def list_element(vr: str, values: set[str]) -> DicomJson:
    return {"vr": vr, "Value": sorted(values)} if values else {"vr": vr}


def number_element(count: int) -> DicomJson:
    return {"vr": "IS", "Value": [count]}


def uid_element(uid: str) -> DicomJson:
    return {"vr": "UI", "Value": [uid]}
