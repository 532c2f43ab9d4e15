"""The bundle of ports that every use case receives; built only by shared.bootstrap."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from shared.config import Settings
from shared.ports.blobs import BlobStore
from shared.ports.index import Index
from shared.ports.objects import ObjectStorage
from shared.ports.operations import OperationStore
from shared.ports.queue import Queue

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.ports.warehouse import Warehouse

SPOOL_IN_MEMORY_BYTES = 4 << 20
_WAREHOUSE_LOCK = threading.Lock()


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
    # Built on first use: only export to BigQuery needs it, and it is heavy to open.
    warehouse_factory: Callable[[], Warehouse] | None = None
    _warehouse: Warehouse | None = None

    @property
    def warehouse(self) -> Warehouse:
        """The BigQuery-like warehouse of this backend (opened once, on first use)."""
        with _WAREHOUSE_LOCK:
            if self._warehouse is None:
                if self.warehouse_factory is None:
                    from shared.errors import ConfigurationError

                    raise ConfigurationError("no warehouse is configured for this process")
                self._warehouse = self.warehouse_factory()
            return self._warehouse

    def spool(self) -> BinaryIO:
        """A temp file for request parts: memory up to 4 MiB, then disk in the data dir."""
        # The caller owns and closes the file, so no context manager here.
        spooled = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_IN_MEMORY_BYTES, mode="w+b", dir=str(self.tmp_dir)
        )
        return cast(BinaryIO, spooled)
