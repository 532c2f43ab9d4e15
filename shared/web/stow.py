"""STOW-RS over HTTP: read the request body into spooled parts, store, build the response."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from flask import Request, Response

from shared.dicom import json_stow, media_types, multipart, xml_model
from shared.domain import reasons
from shared.domain.identifiers import validate_uid
from shared.domain.records import DicomJson, StoreRecord
from shared.errors import InvalidArgument, UnsupportedMediaType
from shared.service import store as store_service
from shared.service.context import Services
from shared.web import responses

_DICOM = "application/dicom"
_DICOM_JSON = "application/dicom+json"


def handle_store(
    services: Services,
    store: StoreRecord,
    request: Request,
    dicomweb_url: str,
    study_uid: str | None,
) -> Response:
    """Store every instance of the body; 200 when all were stored, 409 when any failed."""
    choice = media_types.negotiate_stow_response(request.headers.get("Accept"))
    if study_uid is not None:
        validate_uid(study_uid, "StudyInstanceUID")
    storage_class = store_service.validate_storage_class(request.headers.get("Storage-Class"))
    with contextlib.ExitStack() as stack:
        # Spool the whole body before storing anything: a malformed body stores nothing.
        items: list[store_service.StoreOutcome | tuple[BinaryIO, int, int]] = []
        for source in _part_streams(services, request):
            if isinstance(source, store_service.StoreOutcome):
                items.append(source)  # an instance the JSON metadata could not describe
                continue
            data, size, crc = store_service.spool_with_checksum(services, source)
            stack.callback(data.close)
            items.append((data, size, crc))
        if not items:
            raise InvalidArgument("the request holds no DICOM instance")
        outcomes = store_service.store_many(
            services, store, items, expected_study=study_uid, storage_class=storage_class
        )
    body = stow_result(outcomes, dicomweb_url, study_uid)
    status = 200 if all(o.stored for o in outcomes) else 409
    if choice.media_type == "application/dicom+xml":
        return responses.bytes_response(
            xml_model.to_native_xml(_xml_form(body)), responses.DICOM_XML, status
        )
    return responses.json_response(body, status, choice.media_type)


def _part_streams(
    services: Services, request: Request
) -> Iterator[BinaryIO | store_service.StoreOutcome]:
    content_type = request.headers.get("Content-Type", "")
    if not content_type:
        raise UnsupportedMediaType(
            'Content-Type is required: multipart/related; type="application/dicom" or '
            "application/dicom"
        )
    media, params = multipart.parse_media_type(content_type)
    if media == _DICOM:
        yield cast(BinaryIO, request.stream)
        return
    if media != "multipart/related":
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media!r}: expected multipart/related; "
            'type="application/dicom" or application/dicom'
        )
    part_type = params.get("type", _DICOM).lower()
    if part_type not in (_DICOM, _DICOM_JSON):
        raise UnsupportedMediaType(
            f"unsupported multipart type {part_type!r}: this store accepts "
            'type="application/dicom" and type="application/dicom+json"'
        )
    boundary = params.get("boundary")
    if not boundary:
        raise InvalidArgument("the multipart/related Content-Type has no boundary parameter")
    if part_type == _DICOM_JSON:
        yield from _json_instances(services, request, boundary)
        return
    for number, part in enumerate(multipart.iter_parts(request.stream, boundary), start=1):
        part_media = multipart.parse_media_type(part.content_type or _DICOM)[0]
        if part_media != _DICOM:
            raise UnsupportedMediaType(
                f"part {number} has Content-Type {part.content_type!r}; expected application/dicom"
            )
        yield part.body


def _json_instances(
    services: Services, request: Request, boundary: str
) -> Iterator[BinaryIO | store_service.StoreOutcome]:
    """DICOM JSON metadata plus bulk parts, built into Part-10 instances (or failures)."""
    parts = multipart.iter_parts(request.stream, boundary)
    for built in json_stow.build_instances(parts, spool=services.spool):
        if built.data is not None:
            yield io.BytesIO(built.data)
        else:
            yield store_service.StoreOutcome(
                built.sop_class_uid,
                built.sop_uid,
                built.study_uid,
                built.series_uid,
                built.failure_reason or reasons.PROCESSING_FAILURE,
                built.failure or "the instance could not be built from its JSON metadata",
            )


def stow_result(
    outcomes: list[store_service.StoreOutcome], dicomweb_url: str, study_uid: str | None
) -> DicomJson:
    """PS3.18 store response: RetrieveURL, ReferencedSOPSequence, FailedSOPSequence."""
    body: DicomJson = {}
    studies = {o.study_uid for o in outcomes if o.stored}
    study = study_uid or (studies.pop() if len(studies) == 1 else None)
    if study:
        body["00081190"] = _ur(f"{dicomweb_url}/studies/{study}")
    stored = [_referenced(o, dicomweb_url) for o in outcomes if o.stored]
    failed = [_failed(o) for o in outcomes if not o.stored]
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    return body


def _xml_form(body: DicomJson) -> DicomJson:
    """Google's XML carries the failure detail as (0009,0097) FailureDetail, creator GOOGLE."""
    failed = body.get("00081198")
    if not failed:
        return body
    items = []
    for item in failed["Value"]:
        detail = item["00091097"]["Value"]
        xml_item = {k: v for k, v in item.items() if k not in ("00090010", "00091097")}
        xml_item["00090097"] = {
            "vr": "LT",
            "Value": detail,
            "privateCreator": "GOOGLE",
            "keyword": "FailureDetail",
        }
        items.append(xml_item)
    return body | {"00081198": {"vr": "SQ", "Value": items}}


def _ur(url: str) -> dict[str, Any]:
    return {"vr": "UR", "Value": [url]}


def _referenced(outcome: store_service.StoreOutcome, dicomweb_url: str) -> DicomJson:
    return {
        "00081150": {"vr": "UI", "Value": [outcome.sop_class_uid]},
        "00081155": {"vr": "UI", "Value": [outcome.sop_uid]},
        "00081190": _ur(
            f"{dicomweb_url}/studies/{outcome.study_uid}/series/{outcome.series_uid}"
            f"/instances/{outcome.sop_uid}"
        ),
    }


def _failed(outcome: store_service.StoreOutcome) -> DicomJson:
    item: DicomJson = {}
    if outcome.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [outcome.sop_class_uid]}
    if outcome.sop_uid:
        item["00081155"] = {"vr": "UI", "Value": [outcome.sop_uid]}
    item["00081197"] = {"vr": "US", "Value": [outcome.failure_reason]}
    # Google's private FailureDetail: (0009,0097) in XML, FailureDetailJSON (0009,1097) in JSON.
    item["00090010"] = {"vr": "LO", "Value": ["GOOGLE"]}
    item["00091097"] = {"vr": "LT", "Value": [outcome.failure_detail]}
    return item
