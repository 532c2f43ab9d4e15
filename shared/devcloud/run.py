"""`dicomstore run-cloud`: the serverless system on one machine, wired as on Google Cloud.

Firestore and Pub/Sub emulators, fake-gcs-server publishing storage notifications to the
Pub/Sub topic `gcs-events`, and three functions-framework processes (`dicomweb`, `tasks`,
`on_object_finalized`) with DICOMSTORE_BACKEND=gcp. Tasks reach `tasks` by a Pub/Sub push
subscription, as in production; no queue worker runs in any process.

Cloud Storage triggers deliver a `google.cloud.storage.object.v1.finalized` CloudEvent whose
data is the object. Locally the notification arrives wrapped in a Pub/Sub push, so a small
relay in this process unwraps it and posts the storage CloudEvent (binary mode) to the
`on_object_finalized` process; Pub/Sub retries when that function fails, like Eventarc.

Every child runs in its own process group; Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from shared.devcloud import emulators
from shared.devcloud.emulators import (
    PROJECT,
    Emulator,
    EmulatorFailed,
    FirestoreEmulator,
    GcsEmulator,
    PubSubEmulator,
)

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent.parent
FUNCTIONS_SOURCE = REPO / "functions" / "main.py"
BLOB_BUCKET = "dicomstore-blobs"
INGEST_BUCKET = "ingest"
TASKS_TOPIC = "dicomstore-tasks"
TASKS_SUBSCRIPTION = "dicomstore-tasks-push"
EVENTS_TOPIC = "gcs-events"
EVENTS_SUBSCRIPTION = "gcs-events-ingest-push"
FINALIZED_TYPE = "google.cloud.storage.object.v1.finalized"
READY_TIMEOUT = 60.0


class _Stop(Exception):
    """Raised in the main thread by SIGTERM or SIGINT (Ctrl-C) to begin the shutdown."""


@dataclass
class FunctionProcess:
    """One functions-framework process, alone in its process group (gunicorn forks workers)."""

    target: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        emulators.stop_process_group(self.process)


@dataclass
class CloudStack:
    """Everything `run-cloud` started, stopped in reverse order by `stop()`."""

    workdir: Path
    emulators: list[Emulator] = field(default_factory=list)
    functions: list[FunctionProcess] = field(default_factory=list)
    relay: ThreadingHTTPServer | None = None
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        for function in reversed(self.functions):
            try:
                function.stop()
            except Exception:
                logger.exception("run-cloud: could not stop %s", function.target)
        if self.relay is not None:
            self.relay.shutdown()
            self.relay.server_close()
        for emulator in reversed(self.emulators):
            try:
                emulator.stop()
            except Exception:
                logger.exception("run-cloud: could not stop the %s emulator", emulator.name)

    def dead_child(self) -> str | None:
        for function in self.functions:
            if function.process.poll() is not None:
                return f"function {function.target}"
        for emulator in self.emulators:
            if emulator.process.poll() is not None:
                return f"{emulator.name} emulator"
        return None


# --- the storage-notification relay -------------------------------------------------------
def storage_event_from_push(
    push: Mapping[str, Any], ingest_bucket: str
) -> tuple[dict[str, str], bytes] | None:
    """The binary-mode CloudEvent (headers, body) for a Pub/Sub-wrapped finalize notification,
    or None when the notification is not a finalize in the ingest bucket (acknowledged)."""
    message = push.get("message")
    if not isinstance(message, dict):
        raise ValueError("push without a message")
    attributes = message.get("attributes") or {}
    if attributes.get("eventType") != "OBJECT_FINALIZE":
        return None
    try:
        obj = json.loads(base64.b64decode(message.get("data") or "", validate=True) or b"{}")
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"notification data is not object JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("notification data is not an object")
    obj.setdefault("bucket", attributes.get("bucketId"))
    obj.setdefault("name", attributes.get("objectId"))
    if not obj.get("generation"):
        obj["generation"] = attributes.get("objectGeneration")
    if obj.get("bucket") != ingest_bucket:
        return None
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-type": FINALIZED_TYPE,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{obj['bucket']}",
        "ce-subject": f"objects/{obj.get('name')}",
        "ce-id": str(message.get("messageId") or message.get("message_id") or time.time_ns()),
    }
    published = message.get("publishTime") or message.get("publish_time")
    if published:
        headers["ce-time"] = str(published)
    return headers, json.dumps(obj).encode()


def start_relay(target_url: str, ingest_bucket: str) -> ThreadingHTTPServer:
    """An HTTP endpoint for the `gcs-events` push subscription that forwards finalize events
    as storage CloudEvents to `target_url`, answering with the function's status."""

    class Relay(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                event = storage_event_from_push(json.loads(self.rfile.read(length)), ingest_bucket)
            except ValueError as exc:
                logger.error("run-cloud relay: dropping a malformed notification: %s", exc)
                self._answer(204)
                return
            if event is None:
                self._answer(204)
                return
            headers, body = event
            request = urllib.request.Request(target_url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    status = int(response.status)
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError as exc:
                logger.warning("run-cloud relay: on_object_finalized unreachable: %s", exc)
                status = 503
            self._answer(204 if status < 300 else 503)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("run-cloud relay: " + format, *args)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="gcs-events-relay", daemon=True).start()
    return server


# --- starting -----------------------------------------------------------------------------
def function_env(
    firestore: FirestoreEmulator, pubsub: PubSubEmulator, gcs: GcsEmulator
) -> dict[str, str]:
    """The environment of the three functions: the deployed configuration, on the emulators."""
    env = dict(os.environ)
    env.update(
        DICOMSTORE_BACKEND="gcp",
        DICOMSTORE_GCP_PROJECT=PROJECT,
        GOOGLE_CLOUD_PROJECT=PROJECT,
        DICOMSTORE_BUCKET=BLOB_BUCKET,
        DICOMSTORE_TASKS_TOPIC=TASKS_TOPIC,
        DICOMSTORE_TASKS_SUBSCRIPTION=TASKS_SUBSCRIPTION,
        DICOMSTORE_INGEST_BUCKET=INGEST_BUCKET,
        FIRESTORE_EMULATOR_HOST=firestore.emulator.host,
        PUBSUB_EMULATOR_HOST=pubsub.emulator.host,
        STORAGE_EMULATOR_HOST=gcs.emulator.url,
    )
    env.pop("PORT", None)
    return env


def start_function(
    target: str, signature: str, port: int, env: Mapping[str, str]
) -> FunctionProcess:
    command = [sys.executable, "-m", "functions_framework", f"--target={target}"]
    command += [f"--source={FUNCTIONS_SOURCE}", f"--signature-type={signature}"]
    command += ["--host=127.0.0.1", f"--port={port}"]
    process = subprocess.Popen(
        command, cwd=REPO, env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True
    )
    return FunctionProcess(target, port, process)


def wait_answering(function: FunctionProcess, path: str = "/") -> None:
    """Until the function answers HTTP at all (a CloudEvent function refuses a bare GET)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if function.process.poll() is not None:
            raise EmulatorFailed(f"function {function.target} exited early")
        try:
            with urllib.request.urlopen(f"{function.url}{path}", timeout=30) as response:
                response.read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise EmulatorFailed(f"function {function.target} not ready in {READY_TIMEOUT:.0f}s")


def create_push_subscription(
    pubsub: PubSubEmulator, topic: str, subscription: str, endpoint: str
) -> None:
    from google.api_core import exceptions as google_exceptions

    request = {
        "name": pubsub.subscriber.subscription_path(PROJECT, subscription),
        "topic": pubsub.publisher.topic_path(PROJECT, topic),
        "ack_deadline_seconds": 600,
        "push_config": {"push_endpoint": endpoint},
        "retry_policy": {"minimum_backoff": {"seconds": 1}},
    }
    with contextlib.suppress(google_exceptions.AlreadyExists):
        pubsub.subscriber.create_subscription(request=request)


def start_stack(port: int, workdir: Path) -> CloudStack:
    """Start everything; on failure what was started is stopped before the error propagates."""
    from google.api_core import exceptions as google_exceptions

    from shared.adapters.gcp.pubsub_queue import PubSubQueue

    stack = CloudStack(workdir)
    try:
        pool = ThreadPoolExecutor(2)
        firestore_future = pool.submit(emulators.start_firestore, workdir / "firestore")
        pubsub_future = pool.submit(emulators.start_pubsub, workdir / "pubsub")
        try:
            firestore, pubsub = firestore_future.result(), pubsub_future.result()
        finally:
            # Even when interrupted or when one failed: record what started, to stop it.
            pool.shutdown(wait=True)
            for future in (firestore_future, pubsub_future):
                if future.exception() is None:
                    stack.emulators.append(future.result().emulator)
        # fake-gcs-server publishes to the topic only if it exists when it starts.
        events_topic = pubsub.publisher.topic_path(PROJECT, EVENTS_TOPIC)
        with contextlib.suppress(google_exceptions.AlreadyExists):
            pubsub.publisher.create_topic(name=events_topic)
        gcs = emulators.start_gcs(
            workdir / "gcs", pubsub_host=pubsub.emulator.host, events_topic=EVENTS_TOPIC
        )
        stack.emulators.append(gcs.emulator)
        for bucket in (BLOB_BUCKET, INGEST_BUCKET):
            with contextlib.suppress(google_exceptions.Conflict):
                gcs.client.create_bucket(bucket)

        stack.env = function_env(firestore, pubsub, gcs)
        ports = {"dicomweb": port, "tasks": _free_port(), "on_object_finalized": _free_port()}
        for target, signature in (
            ("dicomweb", "http"),
            ("tasks", "cloudevent"),
            ("on_object_finalized", "cloudevent"),
        ):
            stack.functions.append(start_function(target, signature, ports[target], stack.env))
        by_target = {function.target: function for function in stack.functions}
        # /healthz builds the services, which creates the default store once, before any push.
        wait_answering(by_target["dicomweb"], "/healthz")
        wait_answering(by_target["tasks"])
        wait_answering(by_target["on_object_finalized"])

        # The tasks topic, its dead-letter topic, then the push subscription (Terraform's job).
        queue = PubSubQueue(
            PROJECT,
            TASKS_TOPIC,
            pubsub.publisher,
            subscriber=pubsub.subscriber,
            subscription=TASKS_SUBSCRIPTION,
        )
        queue.create_resources(ack_deadline_seconds=600, min_backoff_seconds=1.0)
        pubsub.subscriber.modify_push_config(
            request={
                "subscription": queue.subscription_path,
                "push_config": {"push_endpoint": f"{by_target['tasks'].url}/"},
            }
        )
        stack.relay = start_relay(f"{by_target['on_object_finalized'].url}/", INGEST_BUCKET)
        relay_port = stack.relay.server_address[1]
        create_push_subscription(
            pubsub, EVENTS_TOPIC, EVENTS_SUBSCRIPTION, f"http://127.0.0.1:{relay_port}/"
        )
    except BaseException:
        stack.stop()
        raise
    return stack


def _free_port() -> int:
    return emulators._free_port()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def raise_stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    # SIGINT too: a shell starts background jobs with Ctrl-C ignored, which Python inherits.
    previous = {sig: signal.signal(sig, raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_cloud(port: int = 8080, store: str | None = None) -> int:
    """Run until Ctrl-C or SIGTERM, then stop every process group; 1 if a child died."""
    from shared.config import Settings

    default_store = store or Settings.default_store
    workdir = Path(tempfile.mkdtemp(prefix="dicomstore-run-cloud-"))
    stack: CloudStack | None = None
    code = 0
    with _stop_on_signals():
        try:
            stack = start_stack(port, workdir)
            env = stack.env
            lines = [
                f"Firestore emulator: {env['FIRESTORE_EMULATOR_HOST']}",
                f"Pub/Sub emulator: {env['PUBSUB_EMULATOR_HOST']}",
                f"Cloud Storage emulator: {env['STORAGE_EMULATOR_HOST']}",
                f"Project: {PROJECT}",
                f"Ingest bucket: gs://{INGEST_BUCKET} (.dcm objects are imported)",
                *(f"Function {f.target}: {f.url}" for f in stack.functions),
                f"Emulator logs: {workdir}",
                f"DICOMweb base URL: http://127.0.0.1:{port}/v1/{default_store}/dicomWeb",
            ]
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            while True:
                dead = stack.dead_child()
                if dead is not None:
                    logger.error("run-cloud: %s exited; stopping everything", dead)
                    code = 1
                    break
                time.sleep(0.5)
        except (KeyboardInterrupt, _Stop):
            pass
        finally:
            # A second Ctrl-C or SIGTERM must not interrupt the shutdown itself.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if stack is not None:
                stack.stop()
            sys.stdout.write("run-cloud: stopped\n")
            sys.stdout.flush()
    return code
