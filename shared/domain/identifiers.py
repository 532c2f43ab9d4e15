"""UID validation and Healthcare-API resource names (project/location/dataset/store)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import InvalidArgument

UID_MAX_LENGTH = 64
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# Google: project and location ids are [\w-]+; dataset ids [\p{L}\p{N}_\-\.]{1,256};
# store ids any string up to 256 chars. We refuse "/" and the dot-only names "." and ".." in
# every id because ids become URL path segments (never file paths: blobs use internal ids).
_PROJECT_RE = re.compile(r"^[\w-]{1,256}$")
_DATASET_RE = re.compile(r"^[\w.-]{1,256}$")
_STORE_RE = re.compile(r"^[\w.-]{1,256}$")


def is_valid_uid(value: str) -> bool:
    """True for a DICOM UID: digits and dots, no empty or zero-led components, <= 64 chars."""
    return 0 < len(value) <= UID_MAX_LENGTH and _UID_RE.fullmatch(value) is not None


def validate_uid(value: str, what: str = "UID") -> str:
    """Return the UID unchanged or raise InvalidArgument naming what was wrong."""
    if not is_valid_uid(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(
            f"invalid {what} {shown!r}: a UID is 1-64 characters of digits and dots, "
            "with no empty components and no leading zeros"
        )
    return value


def _check_id(kind: str, value: str, pattern: re.Pattern[str]) -> str:
    if value in (".", "..") or not pattern.fullmatch(value):
        raise InvalidArgument(f"invalid {kind} id {value!r}")
    return value


@dataclass(frozen=True, order=True)
class DatasetName:
    """`projects/{p}/locations/{l}/datasets/{d}`."""

    project: str
    location: str
    dataset: str

    def __post_init__(self) -> None:
        _check_id("project", self.project, _PROJECT_RE)
        _check_id("location", self.location, _PROJECT_RE)
        _check_id("dataset", self.dataset, _DATASET_RE)

    @property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset}"

    def store(self, store_id: str) -> StoreName:
        return StoreName(self.project, self.location, self.dataset, store_id)

    def operation(self, operation_id: str) -> str:
        return f"{self.path}/operations/{operation_id}"

    @classmethod
    def parse(cls, path: str) -> DatasetName:
        parts = path.strip("/").split("/")
        if len(parts) != 6 or parts[0::2] != ["projects", "locations", "datasets"]:
            raise InvalidArgument(f"invalid dataset name {path!r}")
        return cls(parts[1], parts[3], parts[5])


@dataclass(frozen=True, order=True)
class StoreName:
    """`projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}`."""

    project: str
    location: str
    dataset: str
    store: str

    def __post_init__(self) -> None:
        _check_id("project", self.project, _PROJECT_RE)
        _check_id("location", self.location, _PROJECT_RE)
        _check_id("dataset", self.dataset, _DATASET_RE)
        _check_id("DICOM store", self.store, _STORE_RE)

    @property
    def dataset_name(self) -> DatasetName:
        return DatasetName(self.project, self.location, self.dataset)

    @property
    def path(self) -> str:
        return f"{self.dataset_name.path}/dicomStores/{self.store}"

    def __str__(self) -> str:
        return self.path

    @classmethod
    def parse(cls, path: str) -> StoreName:
        parts = path.strip("/").split("/")
        if len(parts) != 8 or parts[0::2] != ["projects", "locations", "datasets", "dicomStores"]:
            raise InvalidArgument(f"invalid DICOM store name {path!r}")
        return cls(parts[1], parts[3], parts[5], parts[7])
