"""Embedded inbox: a thread that imports the .dcm files dropped into a local bucket folder."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from shared.service import imports
from shared.service.context import Services

logger = logging.getLogger(__name__)

# (size, mtime_ns): a file is imported once this stays the same for one whole poll.
_Signature = tuple[int, int]


class InboxWatcher:
    """Polls `gcs_root/bucket` (the directory behind gs://bucket) and hands each new or changed
    file to `imports.import_object_event`, as the storage trigger does in the cloud.

    A file is imported once its size and mtime have not moved for one poll, so a file still
    being copied waits. The generation is the mtime in nanoseconds, and the markers of
    `import_object_event` make restarts and rescans harmless. Hidden files and folders (names
    starting with '.', such as editors' and copy tools' temporary files) are skipped. A file
    whose import raised (a backend error) is tried again after `retry_seconds`.
    """

    def __init__(
        self,
        services: Services,
        gcs_root: Path,
        bucket: str,
        target_store: str,
        *,
        after: str = "keep",
        interval: float = 1.0,
        retry_seconds: float = 30.0,
    ) -> None:
        imports.parse_after(after)  # a bad setting fails at start-up, not at the first file
        self.services = services
        self.bucket = bucket
        self.inbox = Path(gcs_root) / bucket
        self.target_store = target_store
        self.after = after
        self.interval = interval
        self.retry_seconds = retry_seconds
        self._seen: dict[str, _Signature] = {}
        self._handled: dict[str, _Signature] = {}
        self._retry_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Create the inbox folder if needed and start polling it in a daemon thread."""
        if self._thread is not None:
            return
        self.inbox.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="inbox-watcher", daemon=True)
        self._thread.start()
        logger.info("watching %s for .dcm files (gs://%s)", self.inbox, self.bucket)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling; a file being imported is finished first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                # The watcher outlives a bad poll (a backend hiccup): the next poll retries.
                logger.exception("inbox poll of %s failed", self.inbox)
            self._stop.wait(self.interval)

    def poll_once(self) -> dict[str, imports.EventOutcome]:
        """One scan: import the files that were stable since the last scan; their outcomes."""
        current = dict(self._scan())
        for table in (self._seen, self._handled, self._retry_at):
            for gone in set(table) - set(current):
                del table[gone]
        outcomes: dict[str, imports.EventOutcome] = {}
        now = time.monotonic()
        for name, signature in sorted(current.items()):
            if self._stop.is_set():
                break
            if self._handled.get(name) == signature or self._retry_at.get(name, 0) > now:
                continue
            if self._seen.get(name) != signature:
                self._seen[name] = signature  # new or still changing: wait one more poll
                continue
            outcome = self._import(name, signature)
            if outcome is not None:
                outcomes[name] = outcome
        return outcomes

    def _import(self, name: str, signature: _Signature) -> imports.EventOutcome | None:
        try:
            outcome = imports.import_object_event(
                self.services, self.bucket, name, str(signature[1]), self.target_store, self.after
            )
        except Exception:
            # A backend error (or a missing target store): retry later, without flooding the log.
            logger.exception(
                "inbox: importing gs://%s/%s failed; retrying in %.0f s",
                self.bucket,
                name,
                self.retry_seconds,
            )
            self._retry_at[name] = time.monotonic() + self.retry_seconds
            return None
        self._retry_at.pop(name, None)
        self._handled[name] = signature
        return outcome

    def _scan(self) -> list[tuple[str, _Signature]]:
        found: list[tuple[str, _Signature]] = []
        for dirpath, dirnames, filenames in os.walk(self.inbox):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(self.inbox).as_posix()
            for filename in filenames:
                name = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                if filename.startswith(".") or not imports.is_importable(name, self.after):
                    continue
                try:
                    stat = os.stat(os.path.join(dirpath, filename))
                except OSError:
                    continue  # removed during the scan
                found.append((name, (stat.st_size, stat.st_mtime_ns)))
        return found
