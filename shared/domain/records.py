"""Records kept by the index: stores and instances with the attributes computed at ingest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")

# DICOM JSON object: {"GGGGEEEE": {"vr": "..", "Value": [...]}} as in PS3.18 F.2.
DicomJson = dict[str, Any]


@dataclass(frozen=True)
class Metrics:
    """Counts and sizes of the ACTIVE instances of a store, study or series."""

    study_count: int = 0
    series_count: int = 0
    instance_count: int = 0
    structured_bytes: int = 0
    blob_bytes: int = 0


@dataclass(frozen=True)
class FrameSpan:
    """Where one frame's bytes lie in the stored Part-10 blob (absolute byte offsets).

    For native pixel data a frame is one contiguous slice; for encapsulated pixel data a frame
    may span several fragments, so a frame is a tuple of spans.
    """

    offset: int
    length: int


@dataclass
class StoreRecord:
    """A DICOM store: its resource name, internal id (used in blob keys) and configuration."""

    name: str
    store_id: str
    labels: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    create_time: str = ""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name}
        if self.labels:
            body["labels"] = dict(self.labels)
        body.update(self.config)
        return body


@dataclass
class InstanceRecord:
    """One stored instance as the index knows it.

    `study` and `series` hold the DICOM JSON attributes of those levels (what QIDO returns and
    matches on); `metadata` is the whole instance as DICOM JSON, which is also its instance-level
    attribute set, with bulk elements replaced by relative BulkDataURIs (`bulkdata/7FE00010`),
    rewritten to absolute URLs on the way out. `frames` lists, per frame, the spans of its
    bytes in the blob (several spans when an encapsulated frame has several fragments).
    """

    store_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    blob_key: str
    size: int
    crc32c: str
    storage_class: str = "STANDARD"
    storage_class_time: str = ""
    number_of_frames: int = 0
    frames: list[list[FrameSpan]] = field(default_factory=list)
    study: DicomJson = field(default_factory=dict)
    series: DicomJson = field(default_factory=dict)
    metadata: DicomJson = field(default_factory=dict)
    metadata_size: int = 0
    # Bytes of the blob before its pixel data (0: unknown, read the whole blob). An index that
    # keeps only a summary of the metadata sets metadata_complete=False; the services then
    # rebuild the full metadata from that header range of the blob.
    header_length: int = 0
    trailer_offset: int = 0  # where the pixel data ends (0: nothing after it, or unknown)
    metadata_complete: bool = True
    create_time: str = ""
    state: str = "ACTIVE"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.study_uid, self.series_uid, self.sop_uid)
