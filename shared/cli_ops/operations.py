"""`dicomstore ops`: watch an operation to its end with a bar, and get, list or cancel them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from shared.cli_ops.api import RPC_CODE_NAMES, Api, ApiError, CliError, Unreachable
from shared.cli_ops.progress import Meter, note, result
from shared.domain.identifiers import DatasetName

EXIT_OK = 0
EXIT_OPERATION_FAILED = 1
EXIT_INTERRUPTED = 130
CANCELLED_CODE = 1
# A watch of a long import should survive a restarting front end, but not wait forever.
MAX_POLL_FAILURES = 5
MAX_POLL_BACKOFF = 30.0
SAMPLE_ERRORS_SHOWN = 10


@dataclass(frozen=True)
class OperationState:
    """What an operator needs from Google's Operation JSON."""

    name: str
    method: str
    success: int
    failure: int
    pending: int
    done: bool
    error: dict[str, Any] | None
    create_time: str | None
    end_time: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> OperationState:
        metadata = body.get("metadata") or {}
        counter = metadata.get("counter") or {}
        error = body.get("error")
        return cls(
            name=str(body.get("name", "")),
            method=str(metadata.get("apiMethodName", "")).rsplit(".", 1)[-1] or "operation",
            success=int(counter.get("success", 0)),
            failure=int(counter.get("failure", 0)),
            pending=int(counter.get("pending", 0)),
            done=bool(body.get("done")),
            error=error if isinstance(error, dict) else None,
            create_time=metadata.get("createTime"),
            end_time=metadata.get("endTime"),
        )

    @property
    def finished(self) -> int:
        return self.success + self.failure

    @property
    def total(self) -> int | None:
        """Known once the server has planned the work (pending appears) or it is over."""
        if self.pending or self.done:
            return self.finished + self.pending
        return None

    @property
    def state(self) -> str:
        if not self.done:
            return "running"
        if self.error is None:
            return "done"
        return "cancelled" if self.error.get("code") == CANCELLED_CODE else "failed"

    @property
    def unit(self) -> str:
        return "files" if self.method.startswith("Import") else "instances"

    def counts(self) -> str:
        text = f"{self.success} {self.unit} ok, {self.failure} failed"
        return text + (f", {self.pending} pending" if self.pending else "")

    def duration(self) -> str:
        if not (self.create_time and self.end_time):
            return ""
        try:
            seconds = (
                datetime.fromisoformat(self.end_time) - datetime.fromisoformat(self.create_time)
            ).total_seconds()
        except ValueError:
            return ""
        return f" in {seconds:.1f} s"


def watch(api: Api, session: requests.Session, name: str, interval: float, bars: bool) -> int:
    """Poll until done: 0 for a response, 1 for an error (cancel included), 130 on Ctrl-C."""
    meter = Meter(bars, f"operation {name.rsplit('/', 1)[-1]}", unit="items")
    state: OperationState | None = None
    failures = 0
    try:
        while True:
            try:
                state = OperationState.from_json(api.call(session, "GET", name))
                failures = 0
            except (Unreachable, ApiError) as exc:
                transient = isinstance(exc, Unreachable) or exc.transient
                failures += 1
                if state is None or not transient or failures > MAX_POLL_FAILURES:
                    raise
                note(f"polling failed ({exc}); trying again")
                time.sleep(min(max(interval, 2.0**failures), MAX_POLL_BACKOFF))
                continue
            meter.bar.unit = state.unit
            meter.show(state.finished, state.total, state.counts())
            if state.done:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        meter.close()
        note(
            f"stopped watching; operation {name} keeps running on the server.\n"
            f"Cancel it with: dicomstore ops cancel {name}"
        )
        return EXIT_INTERRUPTED
    meter.close()
    return report(state)


def report(state: OperationState) -> int:
    """The final summary line (and the error with sample failures); the exit code."""
    head = f"{state.name} ({state.method})"
    if state.error is None:
        result(f"{head} done{state.duration()}: {state.counts()}")
        return EXIT_OK
    code = state.error.get("code", 2)
    message = state.error.get("message", "")
    if state.state == "cancelled":
        result(f"{head} cancelled: {state.counts()} before the cancel")
        return EXIT_OPERATION_FAILED
    status = RPC_CODE_NAMES.get(code, str(code))
    result(f"{head} failed: {status} ({code}): {message}; {state.counts()}")
    for line in sample_errors(state.error):
        result(f"  {line}")
    return EXIT_OPERATION_FAILED


def sample_errors(error: dict[str, Any]) -> list[str]:
    """`resource: message` of the per-file errors an import error carries in its details."""
    lines: list[str] = []
    for detail in error.get("details") or []:
        for sample in (detail.get("sampleErrors") or []) if isinstance(detail, dict) else []:
            inner = sample.get("error") or {}
            lines.append(f"{sample.get('resource', '?')}: {inner.get('message', '')}")
    shown = lines[:SAMPLE_ERRORS_SHOWN]
    if len(lines) > len(shown):
        shown.append(f"... and {len(lines) - len(shown)} more")
    return shown


def get(api: Api, session: requests.Session, name: str) -> int:
    result(json.dumps(api.call(session, "GET", name), indent=2, sort_keys=True))
    return EXIT_OK


def cancel(api: Api, session: requests.Session, name: str) -> int:
    api.call(session, "POST", f"{name}:cancel")
    result(f"cancel requested for {name}")
    return EXIT_OK


def list_operations(
    api: Api, session: requests.Session, dataset: DatasetName, limit: int, as_json: bool
) -> int:
    """The newest `limit` operations of the dataset (pages followed), as a table or JSON."""
    if limit < 1:
        raise CliError("--limit must be at least 1")
    found: list[dict[str, Any]] = []
    token = ""
    while len(found) < limit:
        params = {"pageSize": str(min(limit - len(found), 1000))}
        if token:
            params["pageToken"] = token
        page = api.call(session, "GET", f"{dataset.path}/operations", params=params)
        found.extend(page.get("operations") or [])
        token = str(page.get("nextPageToken") or "")
        if not token:
            break
    found = found[:limit]
    if as_json:
        result(json.dumps(found, indent=2, sort_keys=True))
        return EXIT_OK
    result(
        f"{'ID':<22} {'METHOD':<24} {'STATE':<9} {'OK':>8} {'FAILED':>8} {'PENDING':>8}  CREATED"
    )
    for body in found:
        state = OperationState.from_json(body)
        result(
            f"{state.name.rsplit('/', 1)[-1]:<22} {state.method:<24} {state.state:<9} "
            f"{state.success:>8} {state.failure:>8} {state.pending:>8}  {state.create_time or ''}"
        )
    return EXIT_OK
