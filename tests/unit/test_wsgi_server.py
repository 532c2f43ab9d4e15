"""The embedded server keeps HTTP/1.1 connections alive after chunked responses."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from shared.web import wsgi_server


def _chunked_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # No Content-Length: the server has to use chunked transfer coding.
    start_response("200 OK", [("Content-Type", "text/plain")])
    return iter([b"hello ", b"world"])


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    server = wsgi_server.make_server(_chunked_app, host="127.0.0.1", port=0, threads=2)
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    try:
        yield "127.0.0.1", server.effective_port
    finally:
        server.close()
        server.task_dispatcher.shutdown()
        loop.join(timeout=10)


def _read_response(sock: socket.socket, buffered: bytearray) -> tuple[bytes, bytes]:
    """Head and de-chunked body of one response; `buffered` keeps what follows it."""
    while b"\r\n\r\n" not in buffered:
        buffered += _recv(sock)
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    buffered[:] = rest
    body = b""
    while True:
        while b"\r\n" not in buffered:
            buffered += _recv(sock)
        size_line, _, rest = bytes(buffered).partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            rest += _recv(sock)
        body += rest[:size]
        buffered[:] = rest[size + 2 :]
        if size == 0:
            return head, body


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    assert data, "the server closed the connection"
    return data


def _get(sock: socket.socket, extra: str = "") -> None:
    sock.sendall(f"GET / HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode())


def test_two_chunked_responses_on_one_connection(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        buffered = bytearray()
        for _ in range(2):
            _get(sock)
            head, body = _read_response(sock, buffered)
            assert b"transfer-encoding: chunked" in head.lower()
            assert b"connection: close" not in head.lower()
            assert body == b"hello world"


def test_a_request_that_asks_to_close_is_closed(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock:
        buffered = bytearray()
        _get(sock, "Connection: close\r\n")
        head, body = _read_response(sock, buffered)
        assert body == b"hello world"
        assert b"connection: close" in head.lower()
        assert sock.recv(65536) == b""


def test_malloc_arenas_are_capped_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt(M_ARENA_MAX) is glibc's")
    assert wsgi_server.limit_malloc_arenas(wsgi_server.MALLOC_ARENAS) is True


def test_serving_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    # In a child process: freezing and retuning the collector of the test process itself
    # would change how every later test allocates.
    import subprocess
    import sys

    script = (
        "import gc\n"
        "from shared.web import gc_tuning\n"
        "assert gc.get_freeze_count() == 0\n"
        "gc_tuning.tune_for_serving()\n"
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == [str(wsgi_server.gc_tuning.YOUNG_THRESHOLD), "True"]
