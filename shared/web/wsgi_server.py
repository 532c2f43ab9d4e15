"""waitress as the embedded store runs it: DICOM-sized buffers, chunked responses kept alive."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import WSGITask

from shared.web import gc_tuning

logger = logging.getLogger(__name__)

# Bodies up to 2 MiB (one CT instance) stay in memory instead of a temp file per request;
# larger ones still spool to disk, which bounds memory per connection.
INBUF_OVERFLOW = 2 << 20
RECV_BYTES = 256 << 10
# A response is buffered up to OUTBUF_HIGH_WATERMARK before the request thread waits for the
# socket; waitress' defaults (16 MiB, spilling to a temp file past 1 MiB) sent a whole-study
# retrieve through a temp file. Below OUTBUF_OVERFLOW it stays in memory: 4-5 MiB at most.
OUTBUF_HIGH_WATERMARK = 4 << 20
OUTBUF_OVERFLOW = 8 << 20
# glibc gives each thread that allocates concurrently its own arena (up to 8 per core). With
# 8 request threads and the fsync threads, memory freed after a large request stays spread
# over many arenas and is not returned: two arenas cut RSS growth while storing a 1 GB study
# from about 88 to 61 MB in the bench, with no measurable cost in STOW throughput.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # from glibc's malloc.h


class KeepAliveChunkedTask(WSGITask):
    """A WSGI task that keeps the connection after a chunked HTTP/1.1 response.

    waitress closes the connection after every response without a Content-Length, chunked
    ones included, although HTTP/1.1 delimits a chunked body by its last chunk (RFC 9112
    7.1). Multipart retrieves stay chunked for Google's dcmweb tool, so without this every
    WADO request paid a new TCP connection. Responses without a body and without a length,
    and requests that ask to close, still close.
    """

    def set_close_on_finish(self) -> None:
        keep = (
            self.chunked_response
            and not self.wrote_header
            and self.version == "1.1"
            and self._requested_connection() != "close"
        )
        if not keep:
            super().set_close_on_finish()

    def _requested_connection(self) -> str:
        headers: dict[str, str] = getattr(self.request, "headers", {})
        return headers.get("CONNECTION", "").lower()


class KeepAliveChunkedChannel(HTTPChannel):
    """waitress's HTTP channel with KeepAliveChunkedTask."""

    task_class = KeepAliveChunkedTask


def make_server(app: Any, *, host: str, port: int, threads: int) -> Any:
    """A waitress server for `app` (not yet running) that uses KeepAliveChunkedChannel."""
    server: Any = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="dicomstore",
        channel_timeout=1800,
        max_request_body_size=1 << 62,
        inbuf_overflow=INBUF_OVERFLOW,
        recv_bytes=RECV_BYTES,
        outbuf_high_watermark=OUTBUF_HIGH_WATERMARK,
        outbuf_overflow=OUTBUF_OVERFLOW,
    )
    listeners = (
        [server]
        if isinstance(server, BaseWSGIServer)
        else [d for d in server.map.values() if isinstance(d, BaseWSGIServer)]
    )
    for listener in listeners:
        listener.channel_class = KeepAliveChunkedChannel
    return server


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (like MALLOC_ARENA_MAX); False where libc is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def serve(app: Any, *, host: str, port: int, threads: int) -> None:
    """Serve `app` until interrupted, like waitress.serve."""
    if not limit_malloc_arenas():
        logger.info("malloc arenas left as they are: not glibc")
    gc_tuning.tune_for_serving()
    server = make_server(app, host=host, port=port, threads=threads)
    server.print_listen("Serving on http://{}:{}")
    server.run()
