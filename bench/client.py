"""The one HTTP client both servers get: keep-alive sessions, no compression, multipart helpers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import requests

BOUNDARY = "bench-7f3c1d2e9a4b"
STOW_CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
MULTIPART_DICOM_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MULTIPART_OCTETS = 'multipart/related; type="application/octet-stream"'
REQUEST_TIMEOUT_S = 600.0


def session() -> requests.Session:
    """A keep-alive session that never asks for compressed responses."""
    s = requests.Session()
    s.headers.update({"Accept-Encoding": "identity", "Connection": "keep-alive"})
    return s


def multipart_body(instances: Iterable[bytes]) -> bytes:
    """A STOW-RS body: one application/dicom part per Part-10 instance."""
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    parts: list[bytes] = []
    for instance in instances:
        parts.extend((head, instance, b"\r\n"))
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


def stow(s: requests.Session, root: str, body: bytes) -> requests.Response:
    """POST one STOW-RS request to {root}/studies and read the whole answer."""
    return s.post(
        f"{root}/studies",
        data=body,
        headers={"Content-Type": STOW_CONTENT_TYPE, "Accept": DICOM_JSON},
        timeout=REQUEST_TIMEOUT_S,
    )


def qido_value(value: str, *, percent_decodes: bool) -> str:
    """A QIDO query value for a server.

    Percent-encoded for servers that decode it (the store). Orthanc 1.10 does not
    percent-decode QIDO values and `requests` always encodes `^`, so a caret reaches Orthanc
    as a literal `%5E`; it gets `?` (its one-character wildcard) in that position instead.
    """
    if percent_decodes:
        return quote(value, safe="")
    return value.replace("^", "?")


@dataclass
class Timing:
    """Latencies (seconds) and byte counts of a sequence of requests."""

    latencies: list[float] = field(default_factory=list)
    nbytes: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def add_error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message[:300])

    def summary(self) -> dict[str, float | int | list[str]]:
        out: dict[str, float | int | list[str]] = {"n": len(self.latencies), "errors": self.errors}
        if self.latencies:
            out["p50_ms"] = round(percentile(self.latencies, 50) * 1000, 2)
            out["p95_ms"] = round(percentile(self.latencies, 95) * 1000, 2)
            out["mean_ms"] = round(statistics.fmean(self.latencies) * 1000, 2)
        if self.error_samples:
            out["error_samples"] = self.error_samples
        return out


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def timed_get(
    s: requests.Session, url: str, accept: str, timing: Timing, *, ok: Iterable[int] = (200,)
) -> int:
    """GET `url`, stream the body away, record latency and bytes; return the body size."""
    start = time.perf_counter()
    try:
        with s.get(url, headers={"Accept": accept}, stream=True, timeout=REQUEST_TIMEOUT_S) as r:
            size = 0
            for chunk in r.iter_content(chunk_size=1 << 20):
                size += len(chunk)
            elapsed = time.perf_counter() - start
            if r.status_code not in tuple(ok):
                timing.add_error(f"GET {url} -> {r.status_code}")
                return 0
    except requests.RequestException as exc:
        timing.add_error(f"GET {url} -> {exc!r}")
        return 0
    timing.latencies.append(elapsed)
    timing.nbytes += size
    return size
