"""Long-running operations shaped like google.longrunning.Operation with Healthcare metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

METADATA_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"

API_DELETE_STUDY = "google.cloud.healthcare.v1.dicomweb.DicomWebService.DeleteStudy"
API_DELETE_SERIES = "google.cloud.healthcare.v1.dicomweb.DicomWebService.DeleteSeries"
API_IMPORT = "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
API_EXPORT = "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData"
API_SET_BLOB_STORAGE = (
    "google.cloud.healthcare.v1.storageinfo.StorageInfoService.SetBlobStorageSettings"
)
API_EXPORT_BQ = "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData_bq"

CANCELLED_CODE = 1


def utc_now() -> str:
    """RFC 3339 UTC timestamp with microseconds, as Google formats createTime."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Operation:
    """The stored state of one operation; `to_json` renders Google's JSON shape."""

    name: str
    api_method_name: str
    create_time: str = field(default_factory=utc_now)
    end_time: str | None = None
    done: bool = False
    success: int = 0
    failure: int = 0
    pending: int = 0
    cancel_requested: bool = False
    error: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    logs_url: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    shards_total: int = 0
    shards_done: int = 0

    @property
    def operation_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        counts = (("success", self.success), ("failure", self.failure), ("pending", self.pending))
        counter = {k: str(v) for k, v in counts if v}
        metadata: dict[str, Any] = {
            "@type": METADATA_TYPE,
            "apiMethodName": self.api_method_name,
            "createTime": self.create_time,
        }
        if self.end_time:
            metadata["endTime"] = self.end_time
        if self.cancel_requested:
            metadata["cancelRequested"] = True
        if self.logs_url:
            metadata["logsUrl"] = self.logs_url
        if counter:
            metadata["counter"] = counter
        body: dict[str, Any] = {"name": self.name, "metadata": metadata}
        if self.done:
            body["done"] = True
            if self.error is not None:
                body["error"] = self.error
            else:
                body["response"] = self.response or {"@type": EMPTY_TYPE}
        return body
