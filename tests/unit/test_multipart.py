"""Unit tests of media-type parsing and the streaming multipart reader and writer."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import io
import random
from collections.abc import Iterable

import pytest

from shared.dicom.multipart import (
    Part,
    PartBody,
    iter_parts,
    multipart_chunks,
    new_boundary,
    parse_media_type,
)
from shared.errors import InvalidArgument

BOUNDARY = "b0undary"


class _TrickleStream(io.RawIOBase):
    """Serves at most `step` bytes per read, like a socket, and fails past a read limit."""

    def __init__(self, data: bytes, step: int, limit: int | None = None) -> None:
        self._data = data
        self._step = step
        self._pos = 0
        self._limit = len(data) if limit is None else limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._limit:
            raise AssertionError("read past the allowed end of the stream")
        count = self._step if size < 0 else min(size, self._step)
        chunk = self._data[self._pos : self._pos + count]
        self._pos += len(chunk)
        return chunk


def _body(parts: Iterable[tuple[dict[str, str], bytes]], boundary: str = BOUNDARY) -> bytes:
    return b"".join(multipart_chunks(((h, [b]) for h, b in parts), boundary))


def _collect(data: bytes, boundary: str = BOUNDARY, **kwargs: int) -> list[tuple[Part, bytes]]:
    return [(part, part.body.read()) for part in iter_parts(io.BytesIO(data), boundary, **kwargs)]


def _bodies(data: bytes, boundary: str = BOUNDARY, **kwargs: int) -> list[bytes]:
    return [body for _, body in _collect(data, boundary, **kwargs)]


def _raw(*parts: bytes, boundary: str = BOUNDARY) -> bytes:
    """A body whose parts have no headers."""
    delim = f"--{boundary}".encode()
    inner = b"".join(delim + b"\r\n\r\n" + part + b"\r\n" for part in parts)
    return inner + delim + b"--\r\n"


# -- parse_media_type -------------------------------------------------------------------------


def test_parse_media_type_plain() -> None:
    assert parse_media_type("application/dicom") == ("application/dicom", {})


def test_parse_media_type_lowercases_type_and_keys_but_not_values() -> None:
    assert parse_media_type("Multipart/Related; Boundary=AbC") == (
        "multipart/related",
        {"boundary": "AbC"},
    )


def test_parse_media_type_quoted_values_and_spaces() -> None:
    header = ' multipart/related ;type = "application/dicom" ;  boundary="a;b c" '
    assert parse_media_type(header) == (
        "multipart/related",
        {"type": "application/dicom", "boundary": "a;b c"},
    )


def test_parse_media_type_escapes_in_quoted_value() -> None:
    assert parse_media_type(r'text/plain; x="a\"b\\c"') == ("text/plain", {"x": 'a"b\\c'})


def test_parse_media_type_missing_values_and_empty_params() -> None:
    assert parse_media_type("image/jpeg; flag; empty=;; transfer-syntax=1.2.3;") == (
        "image/jpeg",
        {"flag": "", "empty": "", "transfer-syntax": "1.2.3"},
    )


def test_parse_media_type_first_duplicate_wins() -> None:
    assert parse_media_type("a/b; k=1; K=2")[1] == {"k": "1"}


@pytest.mark.parametrize(
    "header",
    ["", "   ", "text", "a/b/c", "/b", "a/", "a b/c", 'a/b; k="open', 'a/b; k="x"y', "a/b; =v"],
)
def test_parse_media_type_malformed(header: str) -> None:
    with pytest.raises(InvalidArgument, match="malformed"):
        parse_media_type(header)


# -- multipart_chunks -------------------------------------------------------------------------


def test_multipart_chunks_layout() -> None:
    parts = [
        ({"Content-Type": "application/dicom"}, [b"one", b"", b"two"]),
        ({"Content-Type": "image/jpeg", "Content-Location": "x"}, [b"three"]),
    ]
    chunks = list(multipart_chunks(parts, "B"))
    assert chunks == [
        b"--B\r\nContent-Type: application/dicom\r\n\r\n",
        b"one",
        b"two",
        b"\r\n--B\r\nContent-Type: image/jpeg\r\nContent-Location: x\r\n\r\n",
        b"three",
        b"\r\n--B--\r\n",
    ]


def test_multipart_chunks_accepts_generators_and_no_headers() -> None:
    no_headers: dict[str, str] = {}
    parts = ((no_headers, (bytes([i]) * 3 for i in range(2))) for _ in range(2))
    assert b"".join(multipart_chunks(parts, "B")) == (
        b"--B\r\n\r\n\x00\x00\x00\x01\x01\x01\r\n--B\r\n\r\n\x00\x00\x00\x01\x01\x01\r\n--B--\r\n"
    )


def test_multipart_chunks_without_parts() -> None:
    data = b"".join(multipart_chunks([], "B"))
    assert data == b"--B--\r\n"
    assert _bodies(data, "B") == []


@pytest.mark.parametrize(
    "headers", [{"X": "a\r\nInjected: 1"}, {"X\n": "a"}, {"A:B": "c"}, {"X": "\r\n--B"}]
)
def test_multipart_chunks_refuses_header_injection(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        list(multipart_chunks([(headers, [b""])], "B"))


def test_multipart_chunks_is_read_by_the_email_package() -> None:
    boundary = new_boundary()
    payloads = [b"first\r\n--not-a-boundary", b"", b"\x00\xff" * 100]
    body = _body((({"Content-Type": "application/octet-stream"}, p) for p in payloads), boundary)
    head = f"MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary={boundary}\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head.encode() + body)
    got = [part.get_payload(decode=True) for part in message.iter_parts()]
    assert got == payloads


def test_new_boundary_is_random_and_usable() -> None:
    boundaries = {new_boundary() for _ in range(100)}
    assert len(boundaries) == 100
    boundary = boundaries.pop()
    assert boundary.isascii() and boundary.isalnum() and 1 <= len(boundary) <= 70
    assert _bodies(_body([({}, b"x")], boundary), boundary) == [b"x"]


# -- iter_parts: well-formed bodies -----------------------------------------------------------


def test_iter_parts_roundtrip_headers_and_content_type() -> None:
    data = _body(
        [
            ({"Content-Type": "application/dicom+json; transfer-syntax=1.2"}, b"[]"),
            ({"Content-Location": "jpeg-image", "Content-Type": "image/jpeg"}, b"\xff\xd8"),
            ({"X-Other": "v"}, b"no type"),
        ]
    )
    got = _collect(data)
    assert [body for _, body in got] == [b"[]", b"\xff\xd8", b"no type"]
    assert got[0][0].content_type == "application/dicom+json; transfer-syntax=1.2"
    assert got[1][0].headers == {"content-location": "jpeg-image", "content-type": "image/jpeg"}
    assert got[2][0].content_type == ""
    assert got[2][0].headers == {"x-other": "v"}


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 11, 13, 64, 1000])
@pytest.mark.parametrize("chunk_size", [1, 4, 9, 16, 65536])
def test_iter_parts_across_chunk_edges(step: int, chunk_size: int) -> None:
    payloads = [b"", b"a", b"\r\n", b"\r\n--b0undar", b"\r\n--b0undaryX\r\n--", b"z" * 300]
    data = b"preamble\r\n" + _body(({"Content-Type": "t/s"}, p) for p in payloads) + b"epilogue"
    parts = iter_parts(_TrickleStream(data, step), BOUNDARY, chunk_size=chunk_size)
    assert [part.body.read() for part in parts] == payloads


def test_iter_parts_opening_boundary_at_start_or_after_preamble() -> None:
    assert _bodies(_raw(b"x")) == [b"x"]
    assert _bodies(b"ignored preamble --b0undary\r\n" + _raw(b"x")) == [b"x"]
    assert _bodies(b"\r\n" + _raw(b"x")) == [b"x"]  # dicomweb-client starts with CRLF


def test_iter_parts_reads_body_written_by_dicomweb_client() -> None:
    from dicomweb_client.web import DICOMwebClient

    payloads = [b"DICM" * 50, b"\r\n", b"last"]
    content_type = 'multipart/related; type="application/dicom"; boundary=0f3c-41ef'
    data = DICOMwebClient._encode_multipart_message(payloads, content_type)
    got = _collect(data, "0f3c-41ef")
    assert [body for _, body in got] == payloads
    assert {part.content_type for part, _ in got} == {"application/dicom"}


def test_iter_parts_ignores_epilogue_and_never_reads_it() -> None:
    data = _raw(b"x")
    stream = _TrickleStream(data + b"epilogue that must not be read", 4, limit=len(data))
    assert [part.body.read() for part in iter_parts(stream, BOUNDARY, chunk_size=4)] == [b"x"]


def test_iter_parts_ignores_text_that_only_starts_like_a_delimiter() -> None:
    payloads = [b"a\r\n--b0undaryX b", b"--b0undary"]
    assert _bodies(_raw(*payloads)) == payloads


def test_iter_parts_transport_padding_after_boundary() -> None:
    data = b"--b0undary \t\r\n\r\nbody\r\n--b0undary  \r\nA: 1\r\n\r\nsecond\r\n--b0undary--"
    assert _bodies(data) == [b"body", b"second"]


def test_iter_parts_bare_lf_headers_folding_and_duplicates() -> None:
    data = (
        b"--b0undary\nContent-Type: a/b;\n  x=1\nX-Dup: 1\nx-dup: 2\nX-Empty:\n\nbody"
        b"\r\n--b0undary--\r\n"
    )
    ((part, body),) = _collect(data)
    assert body == b"body"
    assert part.headers == {"content-type": "a/b; x=1", "x-dup": "1, 2", "x-empty": ""}


def test_iter_parts_non_utf8_header_falls_back_to_latin1() -> None:
    data = b"--b0undary\r\nX-Name: caf\xe9\r\n\r\nb\r\n--b0undary--"
    assert _collect(data)[0][0].headers == {"x-name": "caf\u00e9"}


def test_iter_parts_skips_unread_and_partly_read_bodies() -> None:
    payloads = [bytes([i]) * (1000 + i) for i in range(6)]
    data = _body(({}, p) for p in payloads)
    seen = []
    for index, part in enumerate(iter_parts(io.BytesIO(data), BOUNDARY, chunk_size=64)):
        if index % 3 == 1:
            seen.append(part.body.read(10))
        elif index % 3 == 2:
            seen.append(part.body.read())
    assert seen == [payloads[1][:10], payloads[2], payloads[4][:10], payloads[5]]


def test_iter_parts_old_body_is_closed_after_moving_on() -> None:
    parts = iter_parts(io.BytesIO(_raw(b"first", b"second")), BOUNDARY)
    first = next(parts)
    second = next(parts)
    assert first.body.closed
    assert first.body.read() == b""
    assert second.body.read() == b"second"


def test_part_body_file_like_reads() -> None:
    payload = bytes(range(256)) * 40
    parts = iter_parts(_TrickleStream(_raw(payload), 7), BOUNDARY, chunk_size=16)
    body = next(parts).body
    assert isinstance(body, PartBody)
    assert body.readable()
    assert body.read(0) == b""
    assert body.read(1000) == payload[:1000]  # a full read even across many small chunks
    assert 1 <= len(chunk := body.read1(5000)) <= 5000
    rest = bytearray(20000)
    count = body.readinto(rest)
    assert payload[1000:] == chunk + bytes(rest[:count])
    assert body.read() == b""
    assert body.read(5) == b""


def test_iter_parts_part_without_headers_and_empty_body() -> None:
    assert _bodies(b"--b0undary\r\n\r\n\r\n--b0undary--") == [b""]


def test_iter_parts_large_body() -> None:
    rng = random.Random(1234)
    boundary = new_boundary()
    noise = rng.randbytes(1 << 20)
    # Near-delimiters in the data exercise the tail kept between chunks.
    near = f"\r\n--{boundary[:-1]}".encode()
    sizes = [rng.randrange(0, 400_000) for _ in range(200)]
    payloads = [near.join(noise[: s // 2] for _ in range(2))[:s] for s in sizes]

    def source() -> Iterable[tuple[dict[str, str], Iterable[bytes]]]:
        for index, payload in enumerate(payloads):
            yield {"Content-Type": "application/dicom", "X-Index": str(index)}, [payload]

    data = b"".join(multipart_chunks(source(), boundary))
    assert len(data) > 30_000_000
    digests = []
    for index, part in enumerate(iter_parts(io.BytesIO(data), boundary)):
        assert part.headers["x-index"] == str(index)
        digest = hashlib.sha256()
        while chunk := part.body.read(100_000):
            digest.update(chunk)
        digests.append(digest.digest())
    assert digests == [hashlib.sha256(p).digest() for p in payloads]


# -- iter_parts: errors -----------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"no boundary here", b"--b0undar", b"--B0UNDARY\r\n"])
def test_iter_parts_without_opening_boundary(data: bytes) -> None:
    with pytest.raises(InvalidArgument, match="no opening multipart boundary"):
        list(iter_parts(io.BytesIO(data), BOUNDARY))


@pytest.mark.parametrize(
    "data",
    [
        b"--b0undary",
        b"--b0undary-",
        b"--b0undary\r\n",
        b"--b0undary\r\nContent-Type: a/b",
        b"--b0undary\r\nContent-Type: a/b\r\n\r\nbody without end",
        b"--b0undary\r\n\r\nbody\r\n--b0undary",
        b"--b0undary\r\n\r\nbody\r\n--b0undary\r\n\r\nsecond\r\n--b0undar",
    ],
)
def test_iter_parts_truncated(data: bytes) -> None:
    with pytest.raises(InvalidArgument, match="truncated"):
        _bodies(data, chunk_size=3)


def test_iter_parts_truncated_while_caller_reads_body() -> None:
    part = next(iter_parts(io.BytesIO(b"--b0undary\r\n\r\n" + b"x" * 1000), BOUNDARY))
    with pytest.raises(InvalidArgument, match="truncated"):
        part.body.read()


def test_iter_parts_header_block_too_large() -> None:
    data = b"--b0undary\r\n" + b"X-Long: " + b"a" * 5000 + b"\r\n\r\nbody\r\n--b0undary--"
    with pytest.raises(InvalidArgument, match="exceed 1024 bytes"):
        _bodies(data, max_header_bytes=1024)
    many = b"--b0undary\r\n" + b"X: y\r\n" * 300 + b"\r\nbody\r\n--b0undary--"
    with pytest.raises(InvalidArgument, match="exceed 1024 bytes"):
        _bodies(many, max_header_bytes=1024, chunk_size=100)
    assert _bodies(many, max_header_bytes=4096) == [b"body"]


def test_iter_parts_header_line_without_colon() -> None:
    data = b"--b0undary\r\nContent-Type application/dicom\r\n\r\nbody\r\n--b0undary--"
    with pytest.raises(InvalidArgument, match="no colon"):
        _bodies(data)


def test_iter_parts_text_after_boundary() -> None:
    with pytest.raises(InvalidArgument, match="after a boundary"):
        _bodies(b"--b0undary junk\r\n\r\nbody\r\n--b0undary--")


@pytest.mark.parametrize("boundary", ["", "caf\u00e9", "a\r\nb", "x" * 201])
def test_iter_parts_invalid_boundary(boundary: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid multipart boundary"):
        list(iter_parts(io.BytesIO(b""), boundary))


def test_iter_parts_random_bodies_roundtrip_or_fail_cleanly() -> None:
    rng = random.Random(99)
    pieces = [b"\r", b"\n", b"-", b"x", b":", b" ", b"\r\n--xy", b"--xy", b"\r\n\r\n", b"H: v\r\n"]
    for _ in range(3000):
        payloads = [
            b"".join(rng.choice(pieces[:6]) for _ in range(rng.randrange(8)))
            for _ in range(rng.randrange(4))
        ]
        data = b"".join(multipart_chunks((({}, [p]) for p in payloads), "xy"))
        step, chunk_size = rng.randint(1, 8), rng.randint(1, 10)
        parts = iter_parts(_TrickleStream(data, step), "xy", chunk_size=chunk_size)
        assert [part.body.read() for part in parts] == payloads
        junk = b"".join(rng.choice(pieces) for _ in range(rng.randrange(30)))
        try:
            for part in iter_parts(io.BytesIO(junk), "xy", chunk_size=chunk_size):
                part.body.read(rng.randrange(4))
        except InvalidArgument:
            pass  # any other exception type fails the test
