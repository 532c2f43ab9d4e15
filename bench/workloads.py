"""The workloads, written once and run unchanged against either server."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psutil
import requests

from bench import client, corpus
from bench.servers import Server
from tests.dicom_factory import Spec, make_instance, uid

MB = 1_000_000
# CPU milliseconds per counted item (see `each`), of the benchmark client and of the server.
CLIENT_CPU = "client_cpu_ms"
SERVER_CPU = "server_cpu_ms"
WORKLOAD_TIMEOUT_S = 1800.0
RSS_POLL_S = 0.05


@dataclass
class Instance:
    """A Part-10 instance and the UIDs that address it."""

    study: str
    series: str
    sop: str
    data: bytes


@dataclass
class Uploaded:
    """What the STOW workloads left on a server for the WADO workloads to read."""

    study: Instance | None = None
    instances: list[Instance] = field(default_factory=list)
    multiframe: Instance | None = None


def ct_instances(
    tag: int, count: int, *, study_index: int = 0, one_study: bool = True
) -> list[Instance]:
    """`count` 512x512 16-bit CT instances (~0.5 MB each) with UIDs under `tag`."""
    out = []
    for n in range(count):
        study_no = study_index if one_study else study_index + n
        study, series, sop = (
            uid(8, tag, study_no),
            uid(8, tag, study_no, 1),
            uid(8, tag, study_no, 1, n),
        )
        spec = Spec(
            study=study,
            series=series,
            sop=sop,
            patient_id=f"BENCH{tag}",
            patient_name="BENCH^STOW",
            instance_number=n + 1,
            rows=512,
            columns=512,
            seed=n % 16,
        )
        out.append(Instance(study, series, sop, make_instance(spec)))
    return out


def multiframe_instance(tag: int, frames: int) -> Instance:
    """A 512x512 16-bit CT instance with `frames` frames."""
    study, series, sop = uid(8, tag, 0), uid(8, tag, 0, 1), uid(8, tag, 0, 1, 0)
    spec = Spec(study=study, series=series, sop=sop, rows=512, columns=512, frames=frames)
    return Instance(study, series, sop, make_instance(spec))


def instance_url(root: str, inst: Instance) -> str:
    return f"{root}/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"


def _check_stow(response: requests.Response, errors: list[str]) -> None:
    if response.status_code != 200:
        errors.append(f"STOW -> {response.status_code} {response.text[:200]}")


def _throughput(
    count: int, nbytes: int, seconds: float, errors: list[str], client_cpu_s: float | None = None
) -> dict[str, object]:
    out: dict[str, object] = {
        "n": count,
        "seconds": round(seconds, 3),
        "instances_per_s": round(count / seconds, 2),
        "mb_per_s": round(nbytes / MB / seconds, 2),
        "errors": len(errors),
    }
    if client_cpu_s is not None and count:
        out[CLIENT_CPU] = round(client_cpu_s / count * 1000, 3)
    if errors:
        out["error_samples"] = errors[:5]
    return out


# --- STOW ---------------------------------------------------------------------------------


def stow_sequential(server: Server, instances: Sequence[Instance]) -> dict[str, object]:
    """One instance per request, one client, back to back."""
    bodies = [client.multipart_body([i.data]) for i in instances]
    errors: list[str] = []
    with client.session() as s:
        start, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
            _check_stow(client.stow(s, server.root, body), errors)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return _throughput(len(bodies), sum(len(i.data) for i in instances), seconds, errors, cpu)


def stow_batches(
    server: Server, instances: Sequence[Instance], per_request: int
) -> dict[str, object]:
    """`per_request` instances per multipart request, one client."""
    bodies = [
        client.multipart_body(i.data for i in instances[k : k + per_request])
        for k in range(0, len(instances), per_request)
    ]
    errors: list[str] = []
    with client.session() as s:
        start, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
            _check_stow(client.stow(s, server.root, body), errors)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return _throughput(len(instances), sum(len(i.data) for i in instances), seconds, errors, cpu)


def stow_parallel(server: Server, instances: Sequence[Instance], clients: int) -> dict[str, object]:
    """`clients` threads, each with its own session, one instance per request."""
    bodies = [client.multipart_body([i.data]) for i in instances]
    shares = [bodies[k::clients] for k in range(clients)]
    errors: list[str] = []

    def run(share: list[bytes]) -> None:
        with client.session() as s:
            for body in share:
                _check_stow(client.stow(s, server.root, body), errors)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        start, cpu = time.perf_counter(), time.process_time()
        for future in [pool.submit(run, share) for share in shares]:
            future.result(timeout=WORKLOAD_TIMEOUT_S)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return _throughput(len(bodies), sum(len(i.data) for i in instances), seconds, errors, cpu)


# --- QIDO ---------------------------------------------------------------------------------

QIDO_KINDS = ("PatientID", "PatientName", "StudyDate", "Modality")


def qido_queries(size: corpus.CorpusSize, kind: str, count: int, seed: int) -> list[dict[str, str]]:
    """The same pseudo-random query sequence for both servers: path and raw value."""
    rng = random.Random(f"{seed}-{kind}")
    queries = []
    for _ in range(count):
        if kind == "PatientID":
            value = corpus.patient_id(rng.randrange(size.patients))
            queries.append({"path": "studies", "key": "PatientID", "value": value})
        elif kind == "PatientName":
            value = corpus.patient_name(rng.randrange(size.patients))
            queries.append({"path": "studies", "key": "PatientName", "value": value})
        elif kind == "StudyDate":
            first = corpus.FIRST_DATE.toordinal() + rng.randrange(corpus.DATE_SPAN_DAYS - 30)
            low = corpus.dt.date.fromordinal(first).strftime("%Y%m%d")
            high = corpus.dt.date.fromordinal(first + 30).strftime("%Y%m%d")
            queries.append({"path": "studies", "key": "StudyDate", "value": f"{low}-{high}"})
        else:
            value = rng.choice(corpus.MODALITIES)
            queries.append({"path": "series", "key": "Modality", "value": value, "limit": "100"})
    return queries


def qido(
    server: Server, queries: Sequence[dict[str, str]], *, percent_decodes: bool, warmup: int
) -> dict[str, object]:
    """Latency of each query (full JSON body read); warm-up queries are not counted."""
    timing = client.Timing()
    results: list[int] = []
    with client.session() as s:
        for n, query in enumerate(queries):
            value = client.qido_value(query["value"], percent_decodes=percent_decodes)
            url = f"{server.root}/{query['path']}?{query['key']}={value}"
            if "limit" in query:
                url += f"&limit={query['limit']}"
            start = time.perf_counter()
            try:
                r = s.get(
                    url, headers={"Accept": client.DICOM_JSON}, timeout=client.REQUEST_TIMEOUT_S
                )
                elapsed = time.perf_counter() - start
            except requests.RequestException as exc:
                timing.add_error(f"{url} -> {exc!r}")
                continue
            if r.status_code == 200:
                found = len(r.json())
            elif r.status_code == 204:
                found = 0
            else:
                timing.add_error(f"{url} -> {r.status_code} {r.text[:200]}")
                continue
            if n >= warmup:
                timing.latencies.append(elapsed)
                timing.nbytes += len(r.content)
                results.append(found)
    out: dict[str, object] = dict(timing.summary())
    out["mean_results"] = round(sum(results) / len(results), 2) if results else 0
    out["zero_result_queries"] = sum(1 for r in results if r == 0)
    return out


# --- WADO ---------------------------------------------------------------------------------


def wado_instances(server: Server, instances: Sequence[Instance], count: int) -> dict[str, object]:
    """Single-instance retrieval as stored, one client, `count` requests."""
    timing = client.Timing()
    with client.session() as s:
        start, cpu = time.perf_counter(), time.process_time()
        for n in range(count):
            inst = instances[n % len(instances)]
            client.timed_get(
                s, instance_url(server.root, inst), client.MULTIPART_DICOM_AS_STORED, timing
            )
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    out = _throughput(len(timing.latencies), timing.nbytes, seconds, timing.error_samples, cpu)
    out.update({k: v for k, v in timing.summary().items() if k.endswith("_ms")})
    return out


def wado_study(server: Server, study: Instance, repeats: int) -> dict[str, object]:
    """Whole-study retrieval as stored (one multipart request), `repeats` times."""
    timing = client.Timing()
    url = f"{server.root}/studies/{study.study}"
    with client.session() as s:
        for _ in range(repeats):
            client.timed_get(s, url, client.MULTIPART_DICOM_AS_STORED, timing)
    out: dict[str, object] = dict(timing.summary())
    if timing.latencies:
        per = timing.nbytes / len(timing.latencies)
        out["mb"] = round(per / MB, 1)
        out["mb_per_s"] = round(per / MB / client.percentile(timing.latencies, 50), 1)
    return out


def latency(server: Server, urls: Sequence[str], accept: str) -> dict[str, object]:
    """p50/p95 of sequential GETs of `urls` (body fully read)."""
    timing = client.Timing()
    with client.session() as s:
        deadline = time.monotonic() + WORKLOAD_TIMEOUT_S
        for url in urls:
            if time.monotonic() > deadline:
                timing.add_error("workload time limit reached")
                break
            client.timed_get(s, url, accept, timing)
    out: dict[str, object] = dict(timing.summary())
    if timing.latencies:
        out["mean_kb"] = round(timing.nbytes / len(timing.latencies) / 1000, 1)
    return out


# --- memory -------------------------------------------------------------------------------


class RssSampler:
    """Polls a process tree's RSS every 50 ms in a thread and keeps the peak."""

    def __init__(self, pid: int, limit_s: float = WORKLOAD_TIMEOUT_S) -> None:
        self.process = psutil.Process(pid)
        self.limit_s = limit_s
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.peak = max(self.peak, self.rss())
                self.samples += 1
            except psutil.NoSuchProcess:
                return
            self._stop.wait(RSS_POLL_S)

    def __enter__(self) -> RssSampler:
        self.baseline = self.rss()
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, self.rss())

    @property
    def growth_mb(self) -> float:
        return round((self.peak - self.baseline) / MB, 1)


def memory_big_study(
    server: Server, bodies: Sequence[bytes], study: str, nbytes: int
) -> dict[str, object]:
    """Peak RSS growth while storing a large study in batches, then retrieving it at once."""
    errors: list[str] = []
    with client.session() as s:
        with RssSampler(server.pid) as storing:
            start = time.perf_counter()
            for body in bodies:
                _check_stow(client.stow(s, server.root, body), errors)
            store_s = time.perf_counter() - start
        timing = client.Timing()
        with RssSampler(server.pid) as retrieving:
            client.timed_get(
                s, f"{server.root}/studies/{study}", client.MULTIPART_DICOM_AS_STORED, timing
            )
        errors.extend(timing.error_samples)
    retrieve_s = timing.latencies[0] if timing.latencies else float("nan")
    out: dict[str, object] = {
        "study_mb": round(nbytes / MB, 1),
        "store_rss_baseline_mb": round(storing.baseline / MB, 1),
        "store_rss_growth_mb": storing.growth_mb,
        "store_seconds": round(store_s, 2),
        "store_mb_per_s": round(nbytes / MB / store_s, 1),
        "retrieve_rss_baseline_mb": round(retrieving.baseline / MB, 1),
        "retrieve_rss_growth_mb": retrieving.growth_mb,
        "retrieve_seconds": round(retrieve_s, 2),
        "retrieved_mb": round(timing.nbytes / MB, 1),
        "rss_samples": storing.samples + retrieving.samples,
        "errors": len(errors),
    }
    if errors:
        out["error_samples"] = errors[:5]
    return out


def alternate(index: int, servers: Sequence[Server]) -> list[Server]:
    """Server order for workload `index`: alternates so neither always goes first."""
    return list(servers) if index % 2 == 0 else list(reversed(servers))


def each(
    index: int, servers: Sequence[Server], work: Callable[[Server], dict[str, object]]
) -> dict[str, dict[str, object]]:
    """Run `work` on each server in alternating order; results keyed by server name.

    Each result also gets the CPU time the server process and this client process spent per
    counted item (its "n": an instance for throughput workloads, a request for latency ones),
    unless the workload measured the client's share over its timed loop itself. Both run on
    the same cores, so the client's share bounds what any server can reach.
    """
    out: dict[str, dict[str, object]] = {}
    for server in alternate(index, servers):
        client_cpu, server_cpu = time.process_time(), _cpu_seconds(server.pid)
        result = work(server)
        client_cpu = time.process_time() - client_cpu
        server_cpu = _cpu_seconds(server.pid) - server_cpu
        count = result.get("n")
        if isinstance(count, int) and count > 0:
            result.setdefault(CLIENT_CPU, round(client_cpu / count * 1000, 3))
            result[SERVER_CPU] = round(server_cpu / count * 1000, 3)
        out[server.name] = result
    return out


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process, its threads included."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)
