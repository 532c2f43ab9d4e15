"""DICOMweb routes under {store}/dicomWeb: STOW, QIDO, WADO and delete."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from flask import Response

from shared.dicom import media_types, query, xml_model
from shared.domain.identifiers import StoreName, validate_uid
from shared.domain.records import DicomJson, InstanceRecord, StoreRecord
from shared.domain.search import Level
from shared.errors import InvalidArgument, NotAcceptable, NotFound, RangeNotSatisfiable
from shared.service import capabilities, delete, frame_source, retrieve, search, storage, stores
from shared.web import archive, responses, stow

if TYPE_CHECKING:
    from shared.web.app import Call

_SEARCH_LEVELS = {"studies": Level.STUDY, "series": Level.SERIES, "instances": Level.INSTANCE}
_XML_PART = "application/dicom+xml"
THUMBNAIL_SIDE = 128


def route(call: Call, name: StoreName, rest: list[str]) -> Response:
    """Dispatch on the path segments after `dicomWeb/`."""
    from shared.web.app import only

    store = stores.get_store(call.services, name)
    url = call.api_url(f"{name.path}/dicomWeb")
    if not rest:
        raise NotFound("unknown DICOMweb path: expected studies, series or instances")
    head, args = rest[0], rest[1:]
    if head == "capabilities" and not args:
        only(call, "GET")
        return responses.json_response(capabilities.document(url))
    if head in ("series", "instances") and not args:
        only(call, "GET")
        return _search(call, store, url, _SEARCH_LEVELS[head])
    if head != "studies":
        raise NotFound(f"unknown DICOMweb resource {head!r}")
    if not args:
        only(call, "GET", "POST")
        if call.method == "POST":
            return stow.handle_store(call.services, store, call.request, url, None)
        return _search(call, store, url, Level.STUDY)
    return _study(call, store, url, args)


def _study(call: Call, store: StoreRecord, url: str, args: list[str]) -> Response:
    from shared.web.app import only

    uid, _, verb = args[0].partition(":")
    study = validate_uid(uid, "StudyInstanceUID")
    tail = args[1:]
    if verb:
        return _verb(call, store, verb, tail, study)
    if not tail:
        only(call, "GET", "POST", "DELETE")
        if call.method == "POST":
            return stow.handle_store(call.services, store, call.request, url, study)
        if call.method == "DELETE":
            operation = delete.start_delete(call.services, store, study)
            return responses.json_response({"name": operation.name})
        records = retrieve.find_instances(call.services, store, study)
        if archive.wants_zip(call.request.headers.get("Accept")):
            return archive.zip_response(call.services, records, study)
        return _retrieve(call, records, instance=False)
    if tail[0] == "series" and len(tail) >= 2:
        return _series(call, store, url, study, tail[1:])
    only(call, "GET")
    if tail == ["metadata"]:
        return _metadata(call, retrieve.find_instances(call.services, store, study), url)
    if tail == ["thumbnail"]:
        records = retrieve.find_instances(call.services, store, study)
        return _thumbnail(call, retrieve.representative(records), 0)
    if tail == ["rendered"]:
        return _rendered_many(call, retrieve.find_instances(call.services, store, study))
    if tail == ["series"]:
        return _search(call, store, url, Level.SERIES, study=study)
    if tail == ["instances"]:
        return _search(call, store, url, Level.INSTANCE, study=study)
    raise NotFound(f"unknown study resource {'/'.join(tail)!r}")


def _series(call: Call, store: StoreRecord, url: str, study: str, args: list[str]) -> Response:
    from shared.web.app import only

    uid, _, verb = args[0].partition(":")
    series = validate_uid(uid, "SeriesInstanceUID")
    tail = args[1:]
    if verb:
        return _verb(call, store, verb, tail, study, series)
    if not tail:
        only(call, "GET", "DELETE")
        if call.method == "DELETE":
            operation = delete.start_delete(call.services, store, study, series)
            return responses.json_response({"name": operation.name})
        records = retrieve.find_instances(call.services, store, study, series)
        if archive.wants_zip(call.request.headers.get("Accept")):
            return archive.zip_response(call.services, records, series)
        return _retrieve(call, records, instance=False)
    if tail[0] == "instances" and len(tail) >= 2:
        return _instance(call, store, url, study, series, tail[1:])
    only(call, "GET")
    if tail == ["metadata"]:
        return _metadata(call, retrieve.find_instances(call.services, store, study, series), url)
    if tail == ["thumbnail"]:
        records = retrieve.find_instances(call.services, store, study, series)
        return _thumbnail(call, retrieve.representative(records), 0)
    if tail == ["rendered"]:
        records = retrieve.find_instances(call.services, store, study, series)
        return _rendered_many(call, records)
    if tail == ["instances"]:
        return _search(call, store, url, Level.INSTANCE, study=study, series=series)
    raise NotFound(f"unknown series resource {'/'.join(tail)!r}")


def _instance(
    call: Call, store: StoreRecord, url: str, study: str, series: str, args: list[str]
) -> Response:
    from shared.web.app import only

    uid, _, verb = args[0].partition(":")
    sop = validate_uid(uid, "SOPInstanceUID")
    tail = args[1:]
    if verb:
        return _verb(call, store, verb, tail, study, series, sop)
    if not tail and call.method == "DELETE":
        delete.delete_instance(call.services, store, study, series, sop)
        return responses.json_response({})
    only(call, "GET")
    record = retrieve.find_instances(call.services, store, study, series, sop)[0]
    if not tail:
        return _retrieve(call, [record], instance=True)
    if tail == ["metadata"]:
        return _metadata(call, [record], url)
    if tail == ["rendered"]:
        return _rendered(call, record, 1)
    if tail == ["thumbnail"]:
        return _thumbnail(call, record, 0)
    if tail[0] == "frames" and len(tail) in (2, 3):
        numbers = retrieve.parse_frame_list(tail[1], record.number_of_frames)
        if len(tail) == 3:
            if tail[2] not in ("rendered", "thumbnail"):
                raise NotFound(f"unknown frame resource {tail[2]!r}")
            if len(numbers) != 1:
                raise InvalidArgument(f"{tail[2]} frames take exactly one frame number")
            if tail[2] == "thumbnail":
                return _thumbnail(call, record, numbers[0])
            return _rendered(call, record, numbers[0])
        return _frames(call, record, numbers)
    if tail[0] == "bulkdata" and len(tail) >= 2:
        return _bulkdata(call, record, "/".join(tail[1:]))
    raise NotFound(f"unknown instance resource {'/'.join(tail)!r}")


def _verb(
    call: Call,
    store: StoreRecord,
    verb: str,
    tail: list[str],
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> Response:
    """Google's custom methods on DICOMweb resources (`studies/{s}:getStudyMetrics`, ...)."""
    from shared.web.admin import json_body
    from shared.web.app import only

    if tail:
        raise NotFound(f"unknown path after :{verb}")
    services = call.services
    if verb == "setBlobStorageSettings":
        only(call, "POST")
        operation = storage.start_set_storage_class(
            services, store, json_body(call), study, series, sop
        )
        return responses.json_response({"name": operation.name})
    only(call, "GET")
    if verb == "getStudyMetrics" and series is None:
        return responses.json_response(storage.study_metrics(services, store, study))
    if verb == "getSeriesMetrics" and series is not None and sop is None:
        return responses.json_response(storage.series_metrics(services, store, study, series))
    if verb == "getStorageInfo" and series is not None and sop is not None:
        record = retrieve.find_instances(services, store, study, series, sop)[0]
        return responses.json_response(storage.storage_info(store, record))
    raise NotFound(f"unknown method :{verb} on this resource")


def _search(
    call: Call,
    store: StoreRecord,
    url: str,
    level: Level,
    *,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    choice = media_types.negotiate_search(call.request.headers.get("Accept"))
    params = list(call.request.args.items(multi=True))
    parsed = query.parse_search(level, params, study_uid=study, series_uid=series)
    results = search.search(call.services, store, parsed, url)
    if not results:
        return Response(status=204)
    return _dicom_objects(results, choice)


def _dicom_objects(objects: list[DicomJson], choice: media_types.Choice) -> Response:
    if choice.multipart:
        parts = (({"Content-Type": _XML_PART}, [xml_model.to_native_xml(obj)]) for obj in objects)
        return responses.multipart_response(parts, _XML_PART)
    return responses.json_response(objects, 200, responses.DICOM_JSON)


def _metadata(call: Call, records: list[InstanceRecord], url: str) -> Response:
    choice = media_types.negotiate_metadata(call.request.headers.get("Accept"))
    return _dicom_objects(retrieve.metadata(call.services, records, url), choice)


def _retrieve(call: Call, records: list[InstanceRecord], *, instance: bool) -> Response:
    accept = call.request.headers.get("Accept")
    choice = (
        media_types.negotiate_instance(accept)
        if instance
        else media_types.negotiate_retrieve(accept)
    )
    retrieve.check_transcodable(records, choice.transfer_syntax)
    services = call.services
    if not choice.multipart:
        record = records[0]
        target = retrieve.output_syntax(record, choice.transfer_syntax)
        # As stored, the size is known: Content-Length lets the connection stay alive.
        # Transcoded, it is not, so the response is chunked.
        return responses.stream_response(
            retrieve.instance_chunks(services, record, target),
            f"application/dicom; transfer-syntax={target}",
            retrieve.stored_length(record, target),
        )

    def parts() -> Iterator[tuple[dict[str, str], Iterable[bytes]]]:
        for record in records:
            target = retrieve.output_syntax(record, choice.transfer_syntax)
            headers = {"Content-Type": f"application/dicom; transfer-syntax={target}"}
            yield headers, retrieve.instance_chunks(services, record, target)

    extra = f"; transfer-syntax={choice.transfer_syntax}" if choice.transfer_syntax else ""
    # Stays chunked even when every instance goes out as stored: responses.DCMWEB_CHUNKED.
    return responses.multipart_response(parts(), "application/dicom", extra)


def _frames(call: Call, record: InstanceRecord, numbers: list[int]) -> Response:
    choice = media_types.negotiate_frames(call.request.headers.get("Accept"))
    syntax, payloads = retrieve.frames_as(
        call.services, record, numbers, choice.media_type, choice.transfer_syntax
    )
    part_type = f"{choice.media_type}; transfer-syntax={syntax}" if syntax else choice.media_type
    if not choice.multipart:
        if len(payloads) != 1:
            raise NotAcceptable("a single-part frame response holds exactly one frame")
        return responses.bytes_response(payloads[0], part_type)
    parts = (({"Content-Type": part_type}, [payload]) for payload in payloads)
    extra = f"; transfer-syntax={choice.transfer_syntax}" if choice.transfer_syntax else ""
    # Chunked on purpose (dcmweb fetches frames as multipart): responses.DCMWEB_CHUNKED.
    return responses.multipart_response(parts, choice.media_type, extra)


def _rendered(call: Call, record: InstanceRecord, frame: int) -> Response:
    from shared.dicom import render

    choice = media_types.negotiate_rendered(call.request.headers.get("Accept"))
    viewport = render.parse_viewport(call.request.args.get("viewport"))
    if record.number_of_frames == 0:
        raise InvalidArgument("the instance has no pixel data to render")
    dataset, index = frame_source.renderer(call.services, record)(frame)
    image = render.render_frame(dataset, index, choice.media_type, viewport)
    return responses.bytes_response(image, choice.media_type)


def _rendered_many(call: Call, records: list[InstanceRecord]) -> Response:
    """Rendered study or series (PS3.18, beyond Google): each image instance's first frame."""
    from shared.dicom import render

    choice = media_types.negotiate_rendered(call.request.headers.get("Accept"))
    viewport = render.parse_viewport(call.request.args.get("viewport"))
    images = [r for r in records if r.number_of_frames]
    if not images:
        raise NotFound("no instance with pixel data to render")
    services = call.services

    def parts() -> Iterator[tuple[dict[str, str], Iterable[bytes]]]:
        for record in images:
            dataset, index = frame_source.renderer(services, record)(1)
            image = render.render_frame(dataset, index, choice.media_type, viewport)
            yield {"Content-Type": choice.media_type}, [image]

    return responses.multipart_response(parts(), choice.media_type)


def _thumbnail(call: Call, record: InstanceRecord, frame: int) -> Response:
    """A small rendered image (PS3.18 10.7); frame 0 means the middle frame of the instance."""
    from shared.dicom import render

    choice = media_types.negotiate_rendered(call.request.headers.get("Accept"))
    viewport = render.parse_viewport(call.request.args.get("viewport")) or render.Viewport(
        THUMBNAIL_SIDE, THUMBNAIL_SIDE
    )
    number = frame or max(1, (record.number_of_frames + 1) // 2)
    dataset, index = frame_source.renderer(call.services, record)(number)
    image = render.render_frame(dataset, index, choice.media_type, viewport)
    return responses.bytes_response(image, choice.media_type)


def _bulkdata(call: Call, record: InstanceRecord, tag_path: str) -> Response:
    choice = media_types.negotiate_bulkdata(call.request.headers.get("Accept"))
    value = retrieve.bulkdata(call.services, record, tag_path)
    range_header = call.request.headers.get("Range")
    if range_header:
        start, end = byte_range(range_header, len(value))
        response = responses.bytes_response(value[start : end + 1], "application/octet-stream", 206)
        response.headers["Content-Range"] = f"bytes {start}-{end}/{len(value)}"
        return response
    if not choice.multipart:
        return responses.bytes_response(value, "application/octet-stream")
    # Length-known: dcmweb never asks for bulk data, so no reader depends on chunk edges here.
    parts = [({"Content-Type": "application/octet-stream"}, value)]
    return responses.multipart_bytes_response(parts, "application/octet-stream")


def byte_range(header: str, size: int) -> tuple[int, int]:
    """Inclusive (start, end) of a single `bytes=` range (RFC 9110 14.1.2); 416 otherwise."""
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or not dash or "," in spec:
        raise RangeNotSatisfiable(f"unsupported Range {header!r}: one bytes=start-end range")
    try:
        if first == "":
            length = int(last)
            start, end = max(size - length, 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        raise RangeNotSatisfiable(f"malformed Range {header!r}") from None
    if start < 0 or start >= size or end < start:
        raise RangeNotSatisfiable(f"Range {header!r} is outside the {size} bytes of the value")
    return start, end
