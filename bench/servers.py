"""Start, probe and stop the two servers under test: the embedded store and Orthanc."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
FUNCTIONS_FRAMEWORK = REPO / ".venv" / "bin" / "functions-framework"
STORE_PATH = "/v1/projects/local/locations/local/datasets/default/dicomStores/default/dicomWeb"
HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One running server process and how to reach its DICOMweb root."""

    name: str
    process: subprocess.Popen[bytes]
    root: str
    probe_url: str
    log_path: Path
    workdir: Path | None = None
    version: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the process (SIGKILL after a grace period) and remove its temp dir."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0f s, killing it", self.name, STOP_TIMEOUT_S)
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def wait_until_answering(url: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Poll `url` every 5 ms until it answers 200; return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode} before answering")
            try:
                response = session.get(url, timeout=2)
                if response.status_code == 200:
                    return time.monotonic()
            except requests.ConnectionError:
                pass
            time.sleep(0.005)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


# --- the embedded store -------------------------------------------------------------------


def start_python(
    args: list[str],
    *,
    name: str,
    port: int,
    root_path: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
) -> Server:
    """Run the venv's Python with `args` (a server on `port` answering GET /healthz)."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(PYTHON), *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(
        name=name,
        process=process,
        root=f"http://{HOST}:{port}{root_path}",
        probe_url=f"http://{HOST}:{port}/healthz",
        log_path=log_path,
        workdir=workdir,
    )
    try:
        wait_until_answering(server.probe_url, process, START_TIMEOUT_S)
    except Exception:
        server.stop()
        raise
    return server


def start_store(data_dir: Path, *, name: str = "store", temp: bool = False) -> Server:
    """Run `python -m shared.cli serve` on a free port with `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ, DICOMSTORE_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    server = start_python(
        ["-m", "shared.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        name=name,
        port=port,
        root_path=STORE_PATH,
        log_path=data_dir.parent / f"{data_dir.name}-{name}.log",
        env=env,
        workdir=data_dir if temp else None,
    )
    server.version = "dicomstore (this repo)"
    logger.info("store pid %d on port %d, data %s", server.pid, port, data_dir)
    return server


def store_cold_start(runs: int) -> list[float]:
    """Seconds from spawning functions-framework to the first answered GET /healthz."""
    times: list[float] = []
    for _ in range(runs):
        workdir = Path(tempfile.mkdtemp(prefix="bench-cold-store-"))
        port = free_port()
        env = dict(os.environ, DICOMSTORE_DATA_DIR=str(workdir / "data"))
        env["DICOMSTORE_LOG_LEVEL"] = "WARNING"
        cmd = [
            str(FUNCTIONS_FRAMEWORK),
            "--target=dicomweb",
            "--source=functions/main.py",
            f"--port={port}",
            f"--host={HOST}",
        ]
        with (workdir / "log").open("wb") as log:
            start = time.monotonic()
            process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            answered = wait_until_answering(f"http://{HOST}:{port}/healthz", process, 60)
            times.append(answered - start)
        finally:
            _terminate(process)
            shutil.rmtree(workdir, ignore_errors=True)
    return times


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


# --- Orthanc ------------------------------------------------------------------------------

ORTHANC_PACKAGES = ("orthanc", "orthanc-dicomweb")


def _dicomweb_plugin() -> str | None:
    try:
        listing = subprocess.run(
            ["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listing.returncode != 0:
        return None
    libraries = [line for line in listing.stdout.splitlines() if line.endswith(".so")]
    return libraries[0] if libraries else None


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
    )


def ensure_orthanc() -> tuple[str, str]:
    """Install orthanc and orthanc-dicomweb with apt when missing; return (binary, plugin)."""
    binary, plugin = orthanc_binary(), _dicomweb_plugin()
    if binary and plugin:
        return binary, plugin
    logger.info("installing %s with apt-get (not starting the system service)", ORTHANC_PACKAGES)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # policy-rc.d exit 101 keeps dpkg from starting the packaged service during install.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = False
    if os.geteuid() == 0 and not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created_policy = True
    try:
        subprocess.run([*sudo, "apt-get", "update"], check=True, env=env, timeout=600)
        subprocess.run(
            [*sudo, "apt-get", "install", "-y", *ORTHANC_PACKAGES],
            check=True,
            env=env,
            timeout=1800,
        )
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)
    binary, plugin = orthanc_binary(), _dicomweb_plugin()
    if not binary or not plugin:
        raise RuntimeError("Orthanc or its DICOMweb plugin is still missing after apt-get install")
    return binary, plugin


def orthanc_config(
    storage: Path, http_port: int, dicom_port: int, plugin: str
) -> dict[str, object]:
    """Orthanc's JSON config: own dirs and ports, localhost only, no HTTP compression."""
    return {
        "Name": "bench-orthanc",
        "StorageDirectory": str(storage / "storage"),
        "IndexDirectory": str(storage / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "BENCHORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpCompressionEnabled": False,
        "StorageCompression": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }


def start_orthanc(storage: Path, *, name: str = "orthanc", temp: bool = False) -> Server:
    """Run Orthanc as a child process with a config in its own temp dir."""
    binary, plugin = ensure_orthanc()
    storage.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    confdir = Path(tempfile.mkdtemp(prefix="bench-orthanc-conf-"))
    config = confdir / "config.json"
    config.write_text(json.dumps(orthanc_config(storage, http_port, dicom_port, plugin), indent=2))
    log_path = storage.parent / f"{storage.name}-{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, str(config)], cwd=confdir, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://{HOST}:{http_port}"
    server = Server(
        name=name,
        process=process,
        root=f"{base}/dicom-web",
        probe_url=f"{base}/system",
        log_path=log_path,
        workdir=storage if temp else None,
    )
    try:
        wait_until_answering(server.probe_url, process, START_TIMEOUT_S)
        system = requests.get(server.probe_url, timeout=10).json()
        plugin_info = requests.get(f"{base}/plugins/dicom-web", timeout=10).json()
    except Exception:
        server.stop()
        shutil.rmtree(confdir, ignore_errors=True)
        raise
    server.version = f"Orthanc {system.get('Version')}, DICOMweb {plugin_info.get('Version')}"
    server.extra = {"confdir": str(confdir)}
    logger.info("%s pid %d on port %d, data %s", server.version, process.pid, http_port, storage)
    return server


def orthanc_cold_start(runs: int) -> list[float]:
    """Seconds from spawning Orthanc on an empty dir to its first answered GET /system."""
    binary, plugin = ensure_orthanc()
    times: list[float] = []
    for _ in range(runs):
        workdir = Path(tempfile.mkdtemp(prefix="bench-cold-orthanc-"))
        port = free_port()
        config = workdir / "config.json"
        config.write_text(json.dumps(orthanc_config(workdir, port, free_port(), plugin)))
        with (workdir / "log").open("wb") as log:
            start = time.monotonic()
            process = subprocess.Popen(
                [binary, str(config)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            answered = wait_until_answering(f"http://{HOST}:{port}/system", process, 60)
            times.append(answered - start)
        finally:
            _terminate(process)
            shutil.rmtree(workdir, ignore_errors=True)
    return times


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Stop `server` (and drop its config dir) however the block ends."""
    try:
        yield server
    finally:
        server.stop()
        confdir = server.extra.get("confdir")
        if confdir:
            shutil.rmtree(confdir, ignore_errors=True)


# --- the machine --------------------------------------------------------------------------


def machine() -> dict[str, object]:
    """nproc, memory, CPU model and Python version of this machine."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
