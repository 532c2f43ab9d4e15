"""`dicomstore upload`: a folder's DICOM files through STOW with parallel keep-alive sessions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import requests

from shared.cli_ops.api import Api, CliError
from shared.cli_ops.discover import DicomFile, batches, classify, list_files
from shared.cli_ops.progress import Meter, note, result
from shared.cli_ops.stow_client import FileOutcome, StowTarget, send
from shared.domain.identifiers import StoreName

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_INTERRUPTED = 130
MB = 1_000_000


@dataclass(frozen=True)
class UploadOptions:
    """How to send: parallel sessions, request size bounds, and what to look at."""

    parallel: int = 4
    batch_count: int = 10
    batch_bytes: int = 32 * MB
    recursive: bool = True
    storage_class: str | None = None
    retries: int = 3
    bars: bool = False


@dataclass
class UploadTally:
    """Outcomes so far; only the main thread changes it."""

    listed: int = 0
    stored: int = 0
    stored_bytes: int = 0
    failed: list[FileOutcome] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def status(self) -> str:
        return f"stored {self.stored}, failed {len(self.failed)}, skipped {len(self.skipped)}"


class _Sessions:
    """One keep-alive session per worker thread, all closed at the end."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.local = threading.local()
        self.lock = threading.Lock()
        self.all: list[requests.Session] = []

    def current(self) -> requests.Session:
        session: requests.Session | None = getattr(self.local, "session", None)
        if session is None:
            session = self.api.session()
            self.local.session = session
            with self.lock:
                self.all.append(session)
        return session

    def close(self) -> None:
        with self.lock:
            for session in self.all:
                session.close()


def upload(api: Api, store: StoreName, root: Path, options: UploadOptions) -> int:
    """Send every Part-10 file under `root`; 0 when all were stored, 1 when any failed."""
    if options.parallel < 1 or options.batch_count < 1 or options.batch_bytes < 1:
        raise CliError("--parallel, --batch-size and --batch-mb must be at least 1")
    try:
        candidates = list_files(root, options.recursive)
    except OSError as exc:
        raise CliError(str(exc)) from None
    tally = UploadTally(listed=len(candidates))
    files_meter = Meter(options.bars, "files", total=len(candidates), unit="file", position=0)
    bytes_meter = Meter(
        options.bars,
        "data",
        total=sum(c.size for c in candidates),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        position=1,
    )
    target = StowTarget(api, store, options.storage_class, options.retries)
    sessions = _Sessions(api)
    executor = ThreadPoolExecutor(max_workers=options.parallel, thread_name_prefix="stow")
    started = time.monotonic()

    def work(batch: list[DicomFile]) -> list[FileOutcome]:
        return send(target, sessions.current(), batch, bytes_meter.advance)

    def collect(finished: set[Future[list[FileOutcome]]]) -> None:
        for future in finished:
            outcomes = future.result()  # a fatal ApiError (401/403/404) stops everything
            for outcome in outcomes:
                if outcome.stored:
                    tally.stored += 1
                    tally.stored_bytes += outcome.file.size
                else:
                    tally.failed.append(outcome)
            files_meter.advance(len(outcomes))
        files_meter.postfix(tally.status())
        files_meter.maybe_line(tally.status())

    def uploadable() -> Iterator[DicomFile]:
        for candidate in candidates:
            verdict = classify(candidate)
            if isinstance(verdict, DicomFile):
                yield verdict
                continue
            tally.skipped.append((candidate.path, verdict))
            files_meter.advance(1)
            bytes_meter.advance(candidate.size)

    in_flight: set[Future[list[FileOutcome]]] = set()
    try:
        for batch in batches(uploadable(), options.batch_count, options.batch_bytes):
            # A bounded window: the folder is listed up front, but never read ahead of the wire.
            if len(in_flight) >= 2 * options.parallel:
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                collect(finished)
            in_flight.add(executor.submit(work, batch))
        while in_flight:
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            collect(finished)
    except KeyboardInterrupt:
        executor.shutdown(wait=False, cancel_futures=True)
        _close(files_meter, bytes_meter)
        note(
            f"interrupted: {tally.stored} of {tally.listed} files stored so far; requests "
            "already sent may still finish. Running the same upload again is safe: "
            "identical instances count as stored."
        )
        return EXIT_INTERRUPTED
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        _close(files_meter, bytes_meter)
        raise
    executor.shutdown()
    sessions.close()
    _close(files_meter, bytes_meter)
    return _report(root, tally, time.monotonic() - started)


def _close(*meters: Meter) -> None:
    for meter in meters:
        meter.close()


def _report(root: Path, tally: UploadTally, seconds: float) -> int:
    rate = tally.stored / seconds if seconds > 0 else 0.0
    megabytes = tally.stored_bytes / MB
    result(
        f"{root}: {tally.stored} stored, {len(tally.failed)} failed, {len(tally.skipped)} "
        f"skipped of {tally.listed} files; {megabytes:.1f} MB in {seconds:.1f} s "
        f"({rate:.0f} instances/s, {megabytes / seconds if seconds > 0 else 0:.1f} MB/s)"
    )
    if tally.failed:
        result("failed:")
        for outcome in sorted(tally.failed, key=lambda o: o.file.path):
            result(f"  {_shown(root, outcome.file.path)}: {outcome.message}")
    if tally.skipped:
        result("skipped:")
        for path, reason in tally.skipped:
            result(f"  {_shown(root, path)}: {reason}")
    if tally.failed:
        return EXIT_FAILURES
    if not tally.stored:
        note(f"no DICOM Part-10 file found under {root}")
        return EXIT_FAILURES
    return EXIT_OK


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) and path != root else str(path)
