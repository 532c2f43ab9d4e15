"""Media-type header parsing and streaming multipart/related reading and writing."""

# email.parser is not used on purpose: it buffers every part (and the whole message) in memory
# and scans line by line in Python, which is far too slow and too memory-hungry for STOW bodies
# of many gigabytes. This module finds delimiters with bytes.find over large chunks instead.

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from shared.errors import InvalidArgument

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_TYPE_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+")
# One parameter: optional empty ";" runs, a name, then an optional value that is either a
# quoted string (may hold ";" and backslash escapes) or a bare run up to the next ";".
_PARAM_RE = re.compile(
    r'[\s;]*(?P<key>[^\s=;"]+)\s*'
    r'(?:=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^;"]*)))?'
    r"\s*(?:;|$)",
    re.DOTALL,
)
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_MAX_BOUNDARY = 200  # RFC 2046 says 70; some clients exceed it, so only absurd lengths fail


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_media_type(header: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into a lower-cased type/subtype and its parameters.

    Parameter names are lower-cased, values keep their case with surrounding quotes and
    backslash escapes removed; a parameter without "=" gets the value "".
    """
    main, _, rest = header.partition(";")
    media_type = main.strip().lower()
    if not _TYPE_RE.fullmatch(media_type):
        raise InvalidArgument(f"malformed media type {_shorten(header)!r}: expected type/subtype")
    return media_type, _parse_params(rest, header)


def _parse_params(text: str, header: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    text = text.rstrip(" \t;")
    while pos < len(text):
        match = _PARAM_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise InvalidArgument(f"malformed parameters in media type {_shorten(header)!r}")
        pos = match.end()
        quoted = match.group("quoted")
        if quoted is not None:
            value = _ESCAPE_RE.sub(r"\1", quoted)
        else:
            value = (match.group("bare") or "").strip()
        # Duplicates are invalid per RFC 2045; keeping the first is as good as any choice.
        params.setdefault(match.group("key").lower(), value)
    return params


class Readable(Protocol):
    """What iter_parts needs of a request stream (any BinaryIO, wsgi.input, socket file)."""

    def read(self, size: int, /) -> bytes: ...


class PartBody(io.BufferedIOBase):
    """Readable body of one multipart part, streamed from the request on demand.

    Once the iterator moves to the next part this body is closed and reads return b"".
    """

    def __init__(self, reader: _Reader) -> None:
        super().__init__()
        self._reader = reader

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            return b""
        if size is None or size < 0:
            return self._reader.read_all()
        return self._reader.read_exact(size)

    def read1(self, size: int = -1) -> bytes:
        if self.closed:
            return b""
        return self._reader.read_some(size if size >= 0 else 1 << 62)

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


@dataclass(frozen=True)
class Part:
    """One part: lower-cased header names, its Content-Type value ("" if absent), its body.

    body is a PartBody, typed BinaryIO so callers can hand it to anything that reads files.
    """

    headers: dict[str, str]
    content_type: str
    body: BinaryIO


class _Reader:
    """Buffer over the request stream that knows where the current part body ends."""

    def __init__(
        self, stream: Readable, boundary: bytes, max_header_bytes: int, chunk_size: int
    ) -> None:
        self._stream = stream
        self._chunk_size = chunk_size
        self._max_header_bytes = max_header_bytes
        self._delim = b"\r\n--" + boundary
        # A leading CRLF lets a body that starts with "--boundary" match the one delimiter form.
        self._buf = b"\r\n"
        self._pos = 0
        self._eof = False
        self._scan_end = 0  # bytes before this offset are body bytes of the current part
        self._at_delim = False  # True once a real delimiter starts at _scan_end
        self._opened = False  # True once the opening delimiter has been consumed
        self._header_budget = max_header_bytes  # what the current part's header block may use

    # -- buffer management ----------------------------------------------------------------

    def _fill(self) -> bool:
        """Append one chunk from the stream, dropping consumed bytes; False at end of stream."""
        if self._eof:
            return False
        chunk = self._stream.read(self._chunk_size)
        if not chunk:
            self._eof = True
            return False
        self._scan_end -= self._pos
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0
        return True

    def _need(self, count: int) -> bool:
        """Make at least count unread bytes available; False if the stream ends first."""
        while len(self._buf) - self._pos < count:
            if not self._fill():
                return False
        return True

    # -- body scanning --------------------------------------------------------------------

    def _scan(self) -> None:
        """Advance _scan_end over body bytes that cannot be part of a delimiter."""
        buf, delim = self._buf, self._delim
        start = max(self._pos, self._scan_end)
        while True:
            hit = buf.find(delim, start)
            if hit < 0:
                # Keep a tail shorter than the delimiter: it may be a delimiter cut by a chunk edge.
                self._scan_end = max(self._scan_end, len(buf) - len(delim) + 1)
                return
            after = hit + len(delim)
            if after + 2 > len(buf) and not self._eof:
                self._scan_end = hit  # the bytes after it are needed to tell if it is real
                return
            follow = buf[after : after + 2]
            # "--boundaryX" is body text, not a delimiter; a real one is followed by "--",
            # transport padding or a line end. At the end of the stream "" or "-" may be a cut
            # delimiter, taken as one so that the error reports truncation.
            if follow in (b"--", b"-", b"") or follow[:1] in (b"\r", b"\n", b" ", b"\t"):
                self._scan_end = hit
                self._at_delim = True
                return
            start = hit + 1

    def _advance(self) -> None:
        """Scan, reading more of the stream as needed, until body bytes or a delimiter show up."""
        self._scan()
        while self._pos >= self._scan_end and not self._at_delim:
            if not self._fill():
                self._scan()  # at the end of the stream a held-back tail can be decided
                if self._pos >= self._scan_end and not self._at_delim:
                    raise self._truncated()
                return
            self._scan()

    def read_some(self, limit: int) -> bytes:
        """Return 1..limit body bytes, or b"" once the body is over."""
        if self._pos >= self._scan_end and not self._at_delim:
            self._advance()
        take = min(limit, self._scan_end - self._pos)
        data = self._buf[self._pos : self._pos + take]
        self._pos += take
        return data

    def read_exact(self, size: int) -> bytes:
        first = self.read_some(size) if size else b""
        if len(first) == size or not first:
            return first
        pieces = [first]
        missing = size - len(first)
        while missing:
            piece = self.read_some(missing)
            if not piece:
                break
            pieces.append(piece)
            missing -= len(piece)
        return b"".join(pieces)

    def read_all(self) -> bytes:
        pieces = []
        while piece := self.read_some(1 << 62):
            pieces.append(piece)
        return b"".join(pieces)

    def skip_body(self) -> None:
        while self.read_some(1 << 62):
            pass

    def _truncated(self) -> InvalidArgument:
        if not self._opened:
            return InvalidArgument(
                "no opening multipart boundary found: the body does not contain "
                f"{self._delim[2:].decode('latin-1')!r} (check the boundary parameter)"
            )
        return InvalidArgument(
            "multipart body is truncated: the stream ended before the closing "
            f"{self._delim[2:].decode('latin-1') + '--'!r} delimiter"
        )

    # -- delimiter and header lines -------------------------------------------------------

    def next_part(self) -> dict[str, str] | None:
        """Consume the delimiter at the cursor; return the next part's headers, None at the end."""
        self._pos += len(self._delim)
        self._at_delim = False
        self._scan_end = self._pos
        self._opened = True
        if not self._need(2):
            raise self._truncated()
        if self._buf[self._pos : self._pos + 2] == b"--":
            return None  # the epilogue is never read: the client may keep the connection open
        self._header_budget = self._max_header_bytes
        padding = self._read_line().strip(b" \t")
        if padding:
            raise InvalidArgument(
                f"unexpected text {_shorten(padding.decode('latin-1'), 60)!r} after a boundary"
            )
        return self._read_headers()

    def _read_line(self) -> bytes:
        """Return the next line without its CRLF or bare LF, charging it to the header budget."""
        start = self._pos
        while (end := self._buf.find(b"\n", start)) < 0:
            searched = len(self._buf) - self._pos
            if searched > self._header_budget:
                raise self._headers_too_large()
            if not self._fill():
                raise self._truncated()
            start = self._pos + searched
        used = end + 1 - self._pos
        if used > self._header_budget:
            raise self._headers_too_large()
        self._header_budget -= used
        line = self._buf[self._pos : end]
        self._pos = end + 1
        self._scan_end = self._pos
        return line[:-1] if line.endswith(b"\r") else line

    def _headers_too_large(self) -> InvalidArgument:
        return InvalidArgument(
            f"multipart part headers exceed {self._max_header_bytes} bytes "
            "(is the body really multipart with this boundary?)"
        )

    def _read_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        last = ""
        while line := self._read_line():
            text = _decode_header(line)
            if text[:1] in (" ", "\t") and last:
                headers[last] += " " + text.strip()  # obsolete line folding (RFC 5322)
                continue
            name, colon, value = text.partition(":")
            name = name.strip().lower()
            if not colon or not name:
                raise InvalidArgument(
                    f"malformed multipart part header line {_shorten(text, 100)!r}: no colon"
                )
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
            last = name
        return headers


def _decode_header(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")  # HTTP's historical header charset; never fails


def _boundary_bytes(boundary: str) -> bytes:
    if not boundary or len(boundary) > _MAX_BOUNDARY or "\r" in boundary or "\n" in boundary:
        raise InvalidArgument(
            f"invalid multipart boundary {_shorten(boundary, 80)!r}: "
            f"expected 1-{_MAX_BOUNDARY} characters on one line"
        )
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"invalid multipart boundary {_shorten(boundary, 80)!r}: not ASCII"
        ) from None


def iter_parts(
    stream: Readable,
    boundary: str,
    *,
    max_header_bytes: int = 16384,
    chunk_size: int = 65536,
) -> Iterator[Part]:
    """Yield the parts of a multipart body one by one, streaming each body from the stream.

    A part body the caller leaves unread is skipped when the next part is requested. The
    preamble is ignored and the epilogue is never read.
    """
    reader = _Reader(stream, _boundary_bytes(boundary), max_header_bytes, chunk_size)
    reader.skip_body()  # the preamble
    while (headers := reader.next_part()) is not None:
        body = PartBody(reader)
        yield Part(headers, headers.get("content-type", ""), cast(BinaryIO, body))
        reader.skip_body()
        body.close()


def multipart_chunks(
    parts: Iterable[tuple[dict[str, str], Iterable[bytes]]], boundary: str
) -> Iterator[bytes]:
    """Encode parts as a multipart body: per part, one chunk of delimiter and headers, then body.

    The delimiter+headers chunk stays separate because Google's dcmweb CLI reader only copes
    when each part's boundary and headers arrive in a chunk of their own.
    """
    _boundary_bytes(boundary)
    lead = ""
    for headers, body in parts:
        yield (lead + f"--{boundary}\r\n" + _header_block(headers) + "\r\n").encode("utf-8")
        for chunk in body:
            if chunk:  # an empty chunk would end a chunked HTTP response early on some servers
                yield chunk
        lead = "\r\n"
    yield (lead + f"--{boundary}--\r\n").encode("ascii")


def multipart_length(
    part_headers: list[dict[str, str]], body_lengths: list[int], boundary: str
) -> int:
    """The exact byte count multipart_chunks emits for parts with these headers and body sizes.

    Lets a response announce Content-Length (and keep the connection alive) while streaming.
    """
    if len(part_headers) != len(body_lengths):
        raise ValueError("one body length is needed per part")
    _boundary_bytes(boundary)
    total = 0
    lead = ""
    for headers, body_length in zip(part_headers, body_lengths, strict=True):
        if body_length < 0:
            raise ValueError(f"negative part body length {body_length}")
        head = lead + f"--{boundary}\r\n" + _header_block(headers) + "\r\n"
        total += len(head.encode("utf-8")) + body_length
        lead = "\r\n"
    return total + len((lead + f"--{boundary}--\r\n").encode("ascii"))


def _header_block(headers: dict[str, str]) -> str:
    lines = []
    for name, value in headers.items():
        # A CR or LF here would let a value forge extra headers or a delimiter.
        if any(c in name or c in value for c in "\r\n") or ":" in name:
            raise InvalidArgument(f"invalid multipart part header {_shorten(name, 60)!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


def new_boundary() -> str:
    """Return a fresh random boundary (32 hex digits) that no body will contain by chance."""
    return secrets.token_hex(16)
