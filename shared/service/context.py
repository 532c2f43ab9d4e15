"""The bundle of ports that every use case receives; built only by shared.bootstrap."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from shared.config import Settings
from shared.ports.blobs import BlobStore
from shared.ports.index import Index
from shared.ports.objects import ObjectStorage
from shared.ports.operations import OperationStore
from shared.ports.queue import Queue

SPOOL_IN_MEMORY_BYTES = 4 << 20


@dataclass
class Services:
    """Adapters chosen by the composition root for one process."""

    settings: Settings
    blobs: BlobStore
    index: Index
    operations: OperationStore
    queue: Queue
    tmp_dir: Path
    objects: ObjectStorage

    def spool(self) -> BinaryIO:
        """A temp file for request parts: memory up to 4 MiB, then disk in the data dir."""
        # The caller owns and closes the file, so no context manager here.
        spooled = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_IN_MEMORY_BYTES, mode="w+b", dir=str(self.tmp_dir)
        )
        return cast(BinaryIO, spooled)
