"""Finding the DICOM Part-10 files of a folder and grouping them into STOW requests."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class Candidate:
    """A regular file under the folder, with its size when it was listed."""

    path: Path
    size: int


@dataclass(frozen=True)
class DicomFile:
    """A file to upload; `sop_uid` (from the file meta) matches it to the STOW response."""

    path: Path
    size: int
    sop_uid: str


def list_files(root: Path, recursive: bool) -> list[Candidate]:
    """Regular files under `root` in a stable order; symlinked folders are not followed."""
    if root.is_file():
        return [Candidate(root, root.stat().st_size)]
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder or a file")
    found: list[Candidate] = []
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        if not recursive:
            subfolders.clear()
        for name in sorted(names):
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:
                continue  # vanished or a dangling link: classify() would only report it
            if path.is_file():
                found.append(Candidate(path, stat.st_size))
    return found


def classify(candidate: Candidate) -> DicomFile | str:
    """The file to upload, or why it is skipped.

    Only Part-10 files (128-byte preamble, then "DICM") are sent: STOW stores bytes as sent
    and Google refuses anything else, so a bare dataset would need rewriting to be stored.
    A DICOMDIR is a Part-10 file too, but a media index, not an instance.
    """
    try:
        with candidate.path.open("rb") as handle:
            head = handle.read(PREAMBLE_LENGTH + len(MAGIC))
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if head[PREAMBLE_LENGTH:] != MAGIC:
        return "not a DICOM Part-10 file (no DICM after the 128-byte preamble)"
    try:
        meta = read_file_meta_info(candidate.path)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        # The server decides about a damaged header and reports it as that file's failure.
        return DicomFile(candidate.path, size, "")
    if str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
        return "DICOMDIR (a media index, not an instance)"
    return DicomFile(candidate.path, size, str(meta.get("MediaStorageSOPInstanceUID", "")))


def batches(
    files: Iterable[DicomFile], max_count: int, max_bytes: int
) -> Iterator[list[DicomFile]]:
    """Requests of at most `max_count` files and `max_bytes` (a bigger file goes alone).

    Two files with one SOP Instance UID never share a request, so every item of the STOW
    response names exactly one file.
    """
    batch: list[DicomFile] = []
    size = 0
    uids: set[str] = set()
    for item in files:
        full = len(batch) >= max_count or (batch and size + item.size > max_bytes)
        if full or (item.sop_uid and item.sop_uid in uids):
            yield batch
            batch, size, uids = [], 0, set()
        batch.append(item)
        size += item.size
        uids.add(item.sop_uid)
    if batch:
        yield batch
