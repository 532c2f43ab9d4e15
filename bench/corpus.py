"""The QIDO corpus: small synthetic instances loaded once per server under bench/.corpus/."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from bench import client, servers
from tests.dicom_factory import Spec, make_instance, uid

logger = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).resolve().parent / ".corpus"
LAYOUT = 1
SERIES_PER_STUDY = 2
INSTANCES_PER_SERIES = 5
STUDIES_PER_BATCH = 10
LOAD_THREADS = 4
LOAD_RETRIES = 3
LOAD_TIMEOUT_S = 6 * 3600.0
CHECKPOINT_EVERY_S = 5.0
MODALITIES = ("CT", "MR", "PT", "US", "NM", "CR", "DX", "MG", "XA", "RF")
FIRST_DATE = dt.date(2000, 1, 1)
DATE_SPAN_DAYS = 3650


@dataclass(frozen=True)
class CorpusSize:
    """How many studies (10 instances each) a corpus holds."""

    name: str
    studies: int

    @property
    def instances(self) -> int:
        return self.studies * SERIES_PER_STUDY * INSTANCES_PER_SERIES

    @property
    def patients(self) -> int:
        return (self.studies + 1) // 2


FULL = CorpusSize("full", 10_000)
QUICK = CorpusSize("quick", 1_000)


def patient_id(patient: int) -> str:
    return f"PID{patient:06d}"


def patient_name(patient: int) -> str:
    return f"FAMILY{patient:06d}^GIVEN"


def study_date(study: int) -> dt.date:
    return FIRST_DATE + dt.timedelta(days=(study * 7919) % DATE_SPAN_DAYS)


def series_modality(study: int, series: int) -> str:
    return MODALITIES[(study * 7 + series * 3) % len(MODALITIES)]


def study_instances(size: CorpusSize, study: int) -> list[bytes]:
    """The 10 instances (2 series of 5, 8x8 pixels) of corpus study `study`."""
    tag = 1 if size is FULL else 2
    patient = study // 2
    out = []
    for series in range(SERIES_PER_STUDY):
        for number in range(INSTANCES_PER_SERIES):
            spec = Spec(
                study=uid(7, tag, study),
                series=uid(7, tag, study, series),
                sop=uid(7, tag, study, series, number),
                patient_name=patient_name(patient),
                patient_id=patient_id(patient),
                study_date=study_date(study).strftime("%Y%m%d"),
                modality=series_modality(study, series),
                accession=f"ACC{study:07d}",
                instance_number=number + 1,
                rows=8,
                columns=8,
                seed=study,
            )
            out.append(make_instance(spec))
    return out


def batch_bodies(size: CorpusSize) -> list[bytes]:
    """Every STOW body of the corpus, STUDIES_PER_BATCH studies (100 instances) each."""
    bodies = []
    for first in range(0, size.studies, STUDIES_PER_BATCH):
        last = min(size.studies, first + STUDIES_PER_BATCH)
        instances = [blob for study in range(first, last) for blob in study_instances(size, study)]
        bodies.append(client.multipart_body(instances))
    return bodies


def server_dir(size: CorpusSize, kind: str) -> Path:
    return CORPUS_DIR / size.name / kind


def marker_path(size: CorpusSize, kind: str) -> Path:
    return server_dir(size, kind) / "corpus.json"


def read_marker(size: CorpusSize, kind: str) -> dict[str, object]:
    path = marker_path(size, kind)
    if not path.exists():
        return {}
    marker: dict[str, object] = json.loads(path.read_text())
    if marker.get("layout") != LAYOUT or marker.get("instances") != size.instances:
        return {}
    return marker


def write_marker(size: CorpusSize, kind: str, marker: dict[str, object]) -> None:
    path = marker_path(size, kind)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(marker, indent=2))
    tmp.replace(path)


def start(size: CorpusSize, kind: str) -> servers.Server:
    """Start the server of `kind` ("store" or "orthanc") on its persisted corpus dir."""
    data = server_dir(size, kind) / "data"
    if kind == "store":
        return servers.start_store(data, name=f"corpus-{size.name}-store")
    return servers.start_orthanc(data, name=f"corpus-{size.name}-orthanc")


def count_instances(server: servers.Server) -> int:
    """The instance count the server itself reports."""
    if server.name.endswith("orthanc"):
        base = server.root.rsplit("/dicom-web", 1)[0]
        return int(requests.get(f"{base}/statistics", timeout=60).json()["CountInstances"])
    store = server.root.rsplit("/dicomWeb", 1)[0]
    metrics = requests.get(f"{store}:getDICOMStoreMetrics", timeout=600).json()
    return int(metrics.get("instanceCount", 0))


def load(
    size: CorpusSize,
    kind: str,
    server: servers.Server,
    bodies: list[bytes] | Callable[[], list[bytes]],
) -> dict[str, object]:
    """Load the corpus into `server` with parallel batched STOW, resuming a partial load."""
    marker = read_marker(size, kind) or {
        "layout": LAYOUT,
        "instances": size.instances,
        "studies": size.studies,
        "instances_per_batch": STUDIES_PER_BATCH * SERIES_PER_STUDY * INSTANCES_PER_SERIES,
        "threads": LOAD_THREADS,
        "complete": False,
        "batches_done": 0,
        "load_seconds": 0.0,
        "errors": 0,
    }
    if marker.get("complete"):
        return marker
    if callable(bodies):
        bodies = bodies()
    done_before = int(marker["batches_done"])  # type: ignore[call-overload]
    seconds_before = float(marker["load_seconds"])  # type: ignore[arg-type]
    todo = list(range(done_before, len(bodies)))
    finished: set[int] = set()
    lock = threading.Lock()
    errors = [int(marker.get("errors", 0))]  # type: ignore[call-overload]
    local = threading.local()
    started = time.monotonic()
    deadline = started + LOAD_TIMEOUT_S
    last_checkpoint = [started]

    def contiguous_done() -> int:
        done = done_before
        while done in finished:
            done += 1
        return done

    def checkpoint(force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - last_checkpoint[0] < CHECKPOINT_EVERY_S:
            return
        last_checkpoint[0] = now
        done = contiguous_done()
        marker["batches_done"] = done
        marker["load_seconds"] = round(seconds_before + now - started, 2)
        marker["errors"] = errors[0]
        write_marker(size, kind, marker)
        loaded = done * int(marker["instances_per_batch"])  # type: ignore[call-overload]
        rate = (len(finished)) * int(marker["instances_per_batch"]) / max(now - started, 1e-9)  # type: ignore[call-overload]
        logger.info(
            "%s %s corpus: %d/%d instances, %.0f instances/s",
            kind,
            size.name,
            min(loaded, size.instances),
            size.instances,
            rate,
        )

    def send(index: int) -> None:
        if time.monotonic() > deadline:
            return
        s = getattr(local, "session", None)
        if s is None:
            s = local.session = client.session()
        for attempt in range(LOAD_RETRIES):
            try:
                response = client.stow(s, server.root, bodies[index])
                if response.status_code == 200:
                    break
                message = f"batch {index}: {response.status_code} {response.text[:200]}"
            except requests.RequestException as exc:
                message = f"batch {index}: {exc!r}"
            with lock:
                errors[0] += 1
            logger.warning("%s corpus load, attempt %d: %s", kind, attempt + 1, message)
        else:
            raise RuntimeError(f"{kind} corpus load failed at batch {index}")
        with lock:
            finished.add(index)
            checkpoint()

    with ThreadPoolExecutor(max_workers=LOAD_THREADS) as pool:
        for future in [pool.submit(send, index) for index in todo]:
            future.result()
    checkpoint(force=True)
    if contiguous_done() == len(bodies):
        marker["stored_instances"] = count_instances(server)
        marker["complete"] = True
        marker["loaded_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        marker["instances_per_s"] = round(size.instances / float(marker["load_seconds"]), 1)  # type: ignore[arg-type]
        write_marker(size, kind, marker)
    return marker


def ensure_loaded(
    size: CorpusSize, kind: str, bodies: Callable[[], list[bytes]]
) -> dict[str, object]:
    """Start the server of `kind` on its corpus dir, load what is missing, stop it."""
    marker = read_marker(size, kind)
    if marker.get("complete"):
        return marker
    server_dir(size, kind).mkdir(parents=True, exist_ok=True)
    with lock_dir(server_dir(size, kind)):
        marker = read_marker(size, kind)
        if marker.get("complete"):
            return marker
        with servers.running(start(size, kind)) as server:
            return load(size, kind, server, bodies)


@contextlib.contextmanager
def lock_dir(path: Path) -> Iterator[None]:
    """An exclusive lock on a corpus dir, so two processes never load it at once."""
    with (path / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{path} is being loaded by another process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_both(size: CorpusSize) -> dict[str, dict[str, object]]:
    """Load the corpus into the store, then into Orthanc (one at a time, so times are fair)."""
    cache: list[list[bytes]] = []

    def bodies() -> list[bytes]:
        if not cache:
            started = time.monotonic()
            cache.append(batch_bodies(size))
            logger.info(
                "generated %d instances in %.0f s", size.instances, time.monotonic() - started
            )
        return cache[0]

    return {kind: ensure_loaded(size, kind, bodies) for kind in ("store", "orthanc")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the 10,000-instance corpus")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    markers = ensure_both(QUICK if args.quick else FULL)
    logger.info("corpus markers: %s", json.dumps(markers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
