"""`python -m bench.ceiling`: what the thinnest Python apps reach here, beside Orthanc.

The targets of issue 7 are ratios to Orthanc on two cores shared with a Python client. This
runs the STOW and WADO-instance workloads, unchanged, against four servers:

- `thin`: a WSGI app on the store's waitress settings that does no work: STOW reads the
  body and answers; WADO answers a 0.5 MB multipart body held in memory (chunked, as the
  store's multipart responses are).
- `thin-durable`: the same, but STOW first makes the body durable the way the store must:
  write + fsync a file, link it into place + directory fsync, one synced SQLite commit.
- `raw`: the `thin` answers from a thread-per-connection socket loop with no HTTP library,
  to tell the HTTP server's share from the client's.
- the embedded store and Orthanc, fresh.

If `thin` or `thin-durable` cannot reach a target ratio, no Python server on this stack can.
The table is printed and saved as `bench/results/ceiling-<UTC timestamp>.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench import servers, workloads
from bench.run import RESULTS
from bench.servers import Server
from shared.adapters.local.fs import fsync_path

logger = logging.getLogger("bench.ceiling")

THIN_MODES = ("thin", "thin-durable", "raw")
_BOUNDARY = "ceiling"
_PART_HEAD = (
    f"--{_BOUNDARY}\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n"
).encode()
_TAIL = f"\r\n--{_BOUNDARY}--\r\n".encode()
_STOW_ANSWER = b'{"00081199":{"vr":"SQ","Value":[]}}'
_MULTIPART = f'multipart/related; type="application/dicom"; boundary={_BOUNDARY}'
_JSON = "application/dicom+json"
Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def thin_app(mode: str, data_dir: Path) -> Wsgi:
    """The WSGI app of a thin server (see the module docstring)."""
    payload = os.urandom(525_000)
    published = data_dir / "published"
    published.mkdir(parents=True, exist_ok=True)
    connections = threading.local()

    def index() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(connections, "conn", None)
        if conn is None:
            conn = sqlite3.connect(data_dir / "index.sqlite", isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, value TEXT)")
            connections.conn = conn
        return conn

    def make_durable(body: bytes) -> None:
        name = uuid.uuid4().hex
        staged = data_dir / name
        with staged.open("wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.link(staged, published / name)
        staged.unlink()
        fsync_path(published)
        conn = index()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO rows VALUES (?, ?)", (name, "x" * 2000))
        conn.execute("COMMIT")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "GET":
            start_response(
                "200 OK",
                [
                    (
                        "Content-Type",
                        f'multipart/related; type="application/dicom"; boundary={_BOUNDARY}',
                    )
                ],
            )
            return [_PART_HEAD, payload, _TAIL]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if mode == "thin-durable":
            make_durable(body)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/dicom+json"),
                ("Content-Length", str(len(_STOW_ANSWER))),
            ],
        )
        return [_STOW_ANSWER]

    return app


def serve_raw(port: int) -> None:
    """The `thin` answers from a thread-per-connection socket loop, without any HTTP library.

    Only for measuring what is left once no HTTP server does anything: it understands just
    what the benchmark client sends (a request head, then Content-Length bytes of body).
    """
    payload = os.urandom(525_000)
    chunks = (_PART_HEAD, payload, _TAIL)
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {_MULTIPART}\r\nTransfer-Encoding: chunked\r\n\r\n"
    get_head = head.encode()
    stow_answer = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {_JSON}\r\nContent-Length: {len(_STOW_ANSWER)}\r\n\r\n"
    ).encode() + _STOW_ANSWER

    def answer(conn: socket.socket) -> None:
        pending = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(1 << 16)
                    if not data:
                        return
                    pending += data
                request, _, pending = pending.partition(b"\r\n\r\n")
                length = 0
                for line in request.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(pending) < length:
                    data = conn.recv(1 << 20)
                    if not data:
                        return
                    pending += data
                pending = pending[length:]
                if request.startswith(b"GET /healthz"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                elif request.startswith(b"GET"):
                    conn.sendall(get_head)
                    for chunk in chunks:
                        conn.sendall(b"%X\r\n" % len(chunk))
                        conn.sendall(chunk)
                        conn.sendall(b"\r\n")
                    conn.sendall(b"0\r\n\r\n")
                else:
                    conn.sendall(stow_answer)

    listener = socket.create_server((servers.HOST, port))
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def serve_thin(mode: str, port: int, data_dir: Path) -> None:
    """Serve a thin app with the store's waitress settings (or `raw`) until killed."""
    from shared.web import wsgi_server

    if mode == "raw":
        serve_raw(port)
        return

    app = thin_app(mode, data_dir)

    def with_health(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
        return app(environ, start_response)

    wsgi_server.serve(with_health, host=servers.HOST, port=port, threads=8)


def start_thin(mode: str, data_dir: Path) -> Server:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = servers.free_port()
    return servers.start_python(
        ["-m", "bench.ceiling", "serve", mode, str(port), str(data_dir)],
        name=mode,
        port=port,
        root_path="/thin",
        log_path=data_dir.parent / f"{mode}.log",
    )


WORKLOADS: dict[str, Callable[[Server, list[workloads.Instance]], dict[str, object]]] = {
    "stow_sequential": lambda server, batch: workloads.stow_sequential(server, batch[:100]),
    "stow_parallel": lambda server, batch: workloads.stow_parallel(server, batch[100:], 4),
    "wado_instance": lambda server, batch: workloads.wado_instances(server, batch[:100], 300),
}


def measure(running: list[Server], rounds: int) -> dict[str, dict[str, object]]:
    """Median instances/s of each workload on each server over `rounds`.

    Every round runs each workload on every server in turn, rotating which goes first, so
    that this VM's drift over minutes hits all servers alike.
    """
    figures: dict[str, dict[str, list[float]]] = {
        s.name: {w: [] for w in WORKLOADS} for s in running
    }
    for k in range(rounds):
        batches = {
            s.name: workloads.ct_instances(40 + k * 10 + n, 200, one_study=False)
            for n, s in enumerate(running)
        }
        for w, (name, work) in enumerate(WORKLOADS.items()):
            shift = (k + w) % len(running)
            for server in running[shift:] + running[:shift]:
                result = work(server, batches[server.name])
                if result.get("errors"):
                    raise RuntimeError(f"{server.name} {name}: {result.get('error_samples')}")
                value = result["instances_per_s"]
                assert isinstance(value, int | float)
                figures[server.name][name].append(float(value))
    return {
        server: {name: round(statistics.median(values), 1) for name, values in by_name.items()}
        for server, by_name in figures.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (figures are medians)")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="(internal) serve one thin app")
    serve.add_argument("mode", choices=THIN_MODES)
    serve.add_argument("port", type=int)
    serve.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve_thin(args.mode, args.port, args.data_dir)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    servers.ensure_orthanc()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    try:
        with contextlib.ExitStack() as stack:
            starters: list[Callable[[], Server]] = [
                lambda: servers.start_orthanc(workdir / "orthanc", temp=True),
                lambda: servers.start_store(workdir / "store", temp=True),
                *(lambda m=m: start_thin(m, workdir / m) for m in THIN_MODES),  # type: ignore[misc]
            ]
            # Each is stopped however the block ends, including when a later one fails to start.
            running = [stack.enter_context(servers.running(start())) for start in starters]
            results = measure(running, args.rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(table(results) + "\n")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"machine": servers.machine(), "instances_per_s": results}
    (RESULTS / f"ceiling-{stamp}.json").write_text(json.dumps(report, indent=2))
    return 0


def table(results: dict[str, dict[str, object]]) -> str:
    """Instances/s of each server and its ratio to Orthanc's."""
    orthanc = results.get("orthanc", {})
    lines = [f"{'server':<14}{'workload':<18}{'inst/s':>9}{'x Orthanc':>11}"]
    for name, figures in results.items():
        for workload, value in figures.items():
            base = orthanc.get(workload)
            ratio = (
                f"{float(value) / float(base):.2f}"  # type: ignore[arg-type]
                if isinstance(base, int | float) and base
                else "-"
            )
            lines.append(f"{name:<14}{workload:<18}{value!s:>9}{ratio:>11}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
