"""`dicomstore run-cloud` end to end: the three functions on the emulators, push-wired.

STOW and QIDO through `dicomweb`; a study delete finishes only if the tasks topic's push
subscription reaches the `tasks` function; a .dcm uploaded to the ingest bucket appears only if
fake-gcs-server's notification travels through Pub/Sub to `on_object_finalized`. Every wait is
bounded so the whole test stays well under a minute.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

import pytest
import requests

from shared.adapters.gcp.clients import make_storage_client
from shared.devcloud.emulators import (
    PROJECT,
    EmulatorUnavailable,
    _fake_gcs_binary,
    _require_modules,
    _sdk_path,
)
from tests.conftest import REPO
from tests.dicom_factory import Spec, make_instance
from tests.functions.http_helpers import multipart_body, stow_headers

START_TIMEOUT = 45.0
STEP_TIMEOUT = 20.0
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_emulators() -> None:
    try:
        _require_modules("google.cloud.firestore", "google.cloud.pubsub_v1", "google.cloud.storage")
        _sdk_path("platform/cloud-firestore-emulator/cloud_firestore_emulator")
        _sdk_path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
        _fake_gcs_binary()
    except EmulatorUnavailable as exc:
        # On CI a missing emulator is a broken machine image, not a reason to go green.
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


def _pump(stream: IO[bytes], lines: queue.Queue[str], seen: list[str]) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        seen.append(line)
        lines.put(line)


def _tagged_processes(tag: str) -> list[int]:
    """Processes that inherited run-cloud's environment marker (children, grandchildren)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"DICOMSTORE_RUN_CLOUD_TEST={tag}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _poll(check: Callable[[], T | None], what: str, timeout: float = STEP_TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(0.25)


def test_run_cloud_serves_pushes_and_storage_notifications(tmp_path: Path) -> None:
    _require_emulators()
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc to check for left-over processes")
    port = _free_port()
    tag = uuid.uuid4().hex
    env = dict(os.environ, DICOMSTORE_RUN_CLOUD_TEST=tag, DICOMSTORE_LOG_LEVEL="WARNING")
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "run-cloud", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    pump = threading.Thread(target=_pump, args=(process.stdout, lines, seen), daemon=True)
    pump.start()
    try:
        found: dict[str, str] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while "base" not in found:
            if process.poll() is not None and lines.empty():
                pytest.fail("run-cloud exited:\n" + "\n".join(seen[-40:]), pytrace=False)
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("run-cloud not ready:\n" + "\n".join(seen[-40:]), pytrace=False)
            if match := re.match(r"Cloud Storage emulator: (\S+)", line):
                found["storage"] = match.group(1)
            if match := re.match(r"DICOMweb base URL: (\S+)", line):
                found["base"] = match.group(1)
        base = found["base"]
        assert base.startswith(f"http://127.0.0.1:{port}/v1/")
        origin = f"http://127.0.0.1:{port}"
        session = requests.Session()

        # STOW, then QIDO finds it.
        spec = Spec()
        stored = session.post(
            f"{base}/studies",
            data=multipart_body([make_instance(spec)]),
            headers=stow_headers(),
            timeout=30,
        )
        assert stored.status_code == 200, stored.text
        found_study = session.get(f"{base}/studies?StudyInstanceUID={spec.study}", timeout=30)
        assert found_study.status_code == 200 and len(found_study.json()) == 1

        # A study delete is an operation finished by the `tasks` function, reached by push.
        deleted = session.delete(f"{base}/studies/{spec.study}", timeout=30)
        assert deleted.status_code == 200, deleted.text
        name = deleted.json()["name"]

        def operation_done() -> dict[str, object] | None:
            body: dict[str, object] = session.get(f"{origin}/v1/{name}", timeout=10).json()
            return body if body.get("done") else None

        operation = _poll(operation_done, "the delete operation (push to `tasks`)")
        assert "error" not in operation, operation

        # A .dcm finalized in the ingest bucket is imported through gcs-events -> relay.
        client = make_storage_client(PROJECT, endpoint=found["storage"])
        dropped = Spec()
        client.bucket("ingest").blob("drop/one.dcm").upload_from_string(
            make_instance(dropped), content_type="application/dicom"
        )

        def imported() -> bool | None:
            answer = session.get(f"{base}/studies?StudyInstanceUID={dropped.study}", timeout=10)
            return True if answer.status_code == 200 and answer.json() else None

        _poll(imported, "the dropped .dcm to be imported (storage notification)")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code: int | None = None
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        # Whatever happened above, leave no emulator or function behind.
        deadline = time.monotonic() + 15
        while (leftovers := _tagged_processes(tag)) and time.monotonic() < deadline:
            time.sleep(0.25)
        for pid in leftovers:  # only processes carrying this test's unique marker
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        pump.join(5)
        process.stdout.close()
    assert code == 0, "\n".join(seen[-40:])
    assert leftovers == []
    assert "run-cloud: stopped" in seen
