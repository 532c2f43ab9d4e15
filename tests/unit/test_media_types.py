"""Unit tests of Accept parsing and per-endpoint media-type negotiation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.dicom.media_types import (
    Choice,
    MediaRange,
    negotiate_bulkdata,
    negotiate_frames,
    negotiate_instance,
    negotiate_metadata,
    negotiate_rendered,
    negotiate_retrieve,
    negotiate_search,
    negotiate_stow_response,
    parse_accept,
)
from shared.errors import NotAcceptable

Negotiator = Callable[[str | None], Choice]

ELE = "1.2.840.10008.1.2.1"
JPEG = "1.2.840.10008.1.2.4."
BROWSER = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
DICOM = Choice(True, "application/dicom", ELE)
OCTETS = Choice(True, "application/octet-stream", ELE)
RAW_FRAMES = Choice(True, "application/octet-stream", "*")
JSON = Choice(False, "application/dicom+json", None)
XML_PARTS = Choice(True, "application/dicom+xml", None)

ALL = [
    negotiate_retrieve,
    negotiate_instance,
    negotiate_frames,
    negotiate_rendered,
    negotiate_metadata,
    negotiate_search,
    negotiate_bulkdata,
    negotiate_stow_response,
]
DEFAULTS = [
    DICOM,
    DICOM,
    OCTETS,
    Choice(False, "image/jpeg", None),
    JSON,
    JSON,
    Choice(True, "application/octet-stream", "*"),
    Choice(False, "application/dicom+xml", None),
]


def _mr(accept: str, ts: str) -> str:
    return f'multipart/related; type="{accept}"; transfer-syntax={ts}'


# -- parse_accept -----------------------------------------------------------------------------


def test_parse_accept_empty() -> None:
    assert parse_accept(None) == []
    assert parse_accept("") == []
    assert parse_accept(" , ,") == []


def test_parse_accept_q_params_and_order() -> None:
    ranges = parse_accept('Image/JPEG;q=0.5, multipart/related; type="a/b, c"; q=1; x=y, */*;q=0')
    assert ranges == [
        MediaRange("image/jpeg", (), 0.5),
        MediaRange("multipart/related", (("type", "a/b, c"), ("x", "y")), 1.0),
        MediaRange("*/*", (), 0.0),
    ]
    assert ranges[1].param("type") == "a/b, c"
    assert ranges[1].param("missing") is None


@pytest.mark.parametrize("q", ["2", "1.5", "-1", "abc", "", "nan", "0.5x", "1e-1"])
def test_parse_accept_drops_ranges_with_malformed_q(q: str) -> None:
    assert parse_accept(f"image/png;q={q}, image/jpeg") == [MediaRange("image/jpeg", (), 1.0)]


@pytest.mark.parametrize("q, value", [("0", 0.0), (".2", 0.2), ("1.", 1.0), ("0.875", 0.875)])
def test_parse_accept_lenient_q_forms(q: str, value: float) -> None:
    assert parse_accept(f"image/png; q={q}")[0].q == value


def test_parse_accept_drops_malformed_ranges_and_normalizes_odd_wildcards() -> None:
    ranges = parse_accept("text, a/b/c, */json, image/, *; q=.2, text/plain")
    assert [(r.type, r.q) for r in ranges] == [("image/*", 1.0), ("*/*", 0.2), ("text/plain", 1.0)]


# -- defaults and wildcards -------------------------------------------------------------------


@pytest.mark.parametrize("negotiate, expected", list(zip(ALL, DEFAULTS, strict=True)))
@pytest.mark.parametrize("accept", [None, "", "   ", "*/*", "*", BROWSER, "*/*;q=0.1"])
def test_defaults(negotiate: Negotiator, expected: Choice, accept: str | None) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize("negotiate", ALL)
@pytest.mark.parametrize("accept", ["text/html", "*/*;q=0", "video/mp4, text/*", "garbage"])
def test_unknown_types_are_not_acceptable(negotiate: Negotiator, accept: str) -> None:
    with pytest.raises(NotAcceptable, match="none of the media types in Accept"):
        negotiate(accept)


def test_not_acceptable_quotes_a_truncated_accept() -> None:
    accept = "text/html, " + "x" * 500
    with pytest.raises(NotAcceptable) as caught:
        negotiate_retrieve(accept)
    assert f"Accept {accept[:197] + '...'!r} can" in caught.value.message
    assert accept[:198] not in caught.value.message
    assert caught.value.http_status == 406


# -- study / series / instance ----------------------------------------------------------------


@pytest.mark.parametrize(
    "ts",
    [
        "*",
        "1.2.840.10008.1.2",
        ELE,
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.8.1",
        *(JPEG + n for n in ("50", "51", "57", "70", "80", "81", "90", "91")),
        *(JPEG + n for n in ("110", "111", "112", "201", "202", "203")),
    ],
)
def test_retrieve_transfer_syntaxes(ts: str) -> None:
    assert negotiate_retrieve(_mr("application/dicom", ts)) == Choice(True, "application/dicom", ts)
    assert negotiate_instance(f"application/dicom; transfer-syntax={ts}") == Choice(
        False, "application/dicom", ts
    )


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/dicom"',
        "multipart/related; type=application/dicom",
        "Multipart/Related; Type=Application/DICOM",
        "multipart/related",
        'multipart/related; type="*/*"',
        "multipart/*",
        'multipart/related; type="application/dicom"; transfer-syntax=',
    ],
)
def test_retrieve_multipart_forms_default_to_explicit_vr(accept: str) -> None:
    assert negotiate_retrieve(accept) == DICOM
    assert negotiate_instance(accept) == DICOM


@pytest.mark.parametrize(
    "accept",
    [
        _mr("application/dicom", "1.2.840.10008.1.2.2"),  # big endian: not offered
        _mr("application/dicom", "1.2.840.10008.1.2.4.92"),
        _mr("application/dicom", "bogus"),
        "application/dicom",
        "application/dicom; transfer-syntax=*",
        "application/*",
        _mr("application/octet-stream", "*"),
    ],
)
def test_retrieve_refuses(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate_retrieve(accept)


def test_instance_single_part() -> None:
    assert negotiate_instance("application/dicom") == Choice(False, "application/dicom", ELE)
    assert negotiate_instance("application/*") == Choice(False, "application/dicom", ELE)
    with pytest.raises(NotAcceptable):
        negotiate_instance("application/dicom; transfer-syntax=1.2.840.10008.1.2.2")


def test_dicomweb_client_default_accepts_for_dicom() -> None:
    assert negotiate_retrieve('multipart/related; type="application/dicom"') == DICOM
    assert negotiate_instance(_mr("application/dicom", "*")) == Choice(
        True, "application/dicom", "*"
    )


# -- frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inner, ts",
    [
        ("application/octet-stream", "*"),
        ("application/octet-stream", ELE),
        *(("image/jpeg", JPEG + n) for n in ("50", "51", "57", "70")),
        ("image/jls", JPEG + "80"),
        ("image/jls", JPEG + "81"),
        ("image/jp2", JPEG + "90"),
        ("image/jp2", JPEG + "91"),
        *(("image/jphc", JPEG + n) for n in ("201", "202", "203")),
        ("image/jxl", JPEG + "110"),
        ("image/jxl", JPEG + "112"),
        ("image/dicom-rle", "1.2.840.10008.1.2.5"),
        ("application/x-deflate", "1.2.840.10008.1.2.8.1"),
    ],
)
def test_frames_listed_types(inner: str, ts: str) -> None:
    assert negotiate_frames(_mr(inner, ts)) == Choice(True, inner, ts)


@pytest.mark.parametrize(
    "inner, ts",
    [
        ("application/octet-stream", ELE),
        ("image/jpeg", JPEG + "50"),
        ("image/jls", JPEG + "80"),
        ("image/jp2", JPEG + "90"),
        ("image/jphc", JPEG + "201"),
        ("image/jxl", JPEG + "110"),
        ("image/dicom-rle", "1.2.840.10008.1.2.5"),
        ("application/x-deflate", "1.2.840.10008.1.2.8.1"),
        ("image/png", None),
    ],
)
def test_frames_default_syntax_per_type(inner: str, ts: str | None) -> None:
    assert negotiate_frames(f'multipart/related; type="{inner}"') == Choice(True, inner, ts)


@pytest.mark.parametrize(
    "accept",
    [
        _mr("image/jpeg", JPEG + "80"),  # a syntax of another type
        _mr("image/jpeg", "*"),
        _mr("image/jxl", JPEG + "111"),
        _mr("application/octet-stream", "1.2.840.10008.1.2"),
        _mr("image/png", ELE),
        _mr("application/dicom", "*"),
        _mr("image/gif", "*"),
        "image/jpeg",
        "image/*",
    ],
)
def test_frames_refuses(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate_frames(accept)


def test_frames_single_part_octet_stream() -> None:
    expected = Choice(False, "application/octet-stream", ELE)
    assert negotiate_frames("application/octet-stream") == expected
    assert negotiate_frames("application/octet-stream; transfer-syntax=*") == Choice(
        False, "application/octet-stream", "*"
    )


def test_frames_client_defaults() -> None:
    # dicomweb-client without media types, with octet-stream, and OHIF's usual header
    assert negotiate_frames('multipart/related; type="*/*"') == OCTETS
    assert negotiate_frames(_mr("application/octet-stream", "*")) == RAW_FRAMES
    ohif = "multipart/related; type=application/octet-stream; transfer-syntax=*"
    assert negotiate_frames(ohif) == RAW_FRAMES
    assert negotiate_frames('multipart/related; type="image/"') == Choice(
        True, "image/jpeg", JPEG + "50"
    )


def test_frames_q_values_pick_the_best_listed() -> None:
    accept = (
        f"{_mr('image/jls', JPEG + '80')};q=0.5, "
        f"{_mr('image/jp2', JPEG + '90')};q=0.9, "
        f"{_mr('application/octet-stream', '*')};q=0.1"
    )
    assert negotiate_frames(accept) == Choice(True, "image/jp2", JPEG + "90")


def test_frames_unacceptable_range_falls_back_to_the_next() -> None:
    accept = f"{_mr('image/jpeg', JPEG + '90')}, {_mr('application/octet-stream', '*')};q=0.2"
    assert negotiate_frames(accept) == RAW_FRAMES


def test_frames_ties_go_to_the_first_listed() -> None:
    accept = f"{_mr('image/jp2', JPEG + '91')}, {_mr('image/jls', JPEG + '81')}"
    assert negotiate_frames(accept) == Choice(True, "image/jp2", JPEG + "91")
    accept = f"{_mr('image/jls', JPEG + '81')}, {_mr('image/jp2', JPEG + '91')}"
    assert negotiate_frames(accept) == Choice(True, "image/jls", JPEG + "81")


def test_frames_specific_q0_excludes_a_syntax_a_wildcard_would_give() -> None:
    accept = f'{_mr("application/octet-stream", ELE)};q=0, multipart/related; type="*/*"'
    assert negotiate_frames(accept) == Choice(True, "image/jpeg", JPEG + "50")
    accept = 'multipart/related; type="image/jpeg";q=0, multipart/related; type="image/*"'
    assert negotiate_frames(accept) == Choice(True, "image/jls", JPEG + "80")


# -- rendered ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept, expected",
    [
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        ("image/jpeg", "image/jpeg"),
        ("image/*", "image/jpeg"),
        ("image/", "image/jpeg"),
        ("image/jpeg;q=0.4, image/png;q=0.6", "image/png"),
        ("image/*, image/jpeg;q=0", "image/png"),
        ("image/webp, image/png;q=0.1, */*;q=0.05", "image/png"),
        ("image/gif, */*;q=0.1", "image/jpeg"),
    ],
)
def test_rendered(accept: str, expected: str) -> None:
    assert negotiate_rendered(accept) == Choice(False, expected, None)


@pytest.mark.parametrize(
    "accept", ["image/gif", "image/jp2", "application/dicom", 'multipart/related; type="image/png"']
)
def test_rendered_refuses(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate_rendered(accept)


# -- metadata and search ----------------------------------------------------------------------


@pytest.mark.parametrize("negotiate", [negotiate_metadata, negotiate_search])
def test_metadata_and_search(negotiate: Negotiator) -> None:
    assert negotiate("application/dicom+json") == JSON
    assert negotiate("application/json") == Choice(False, "application/json", None)
    assert negotiate("application/dicom+json, application/json") == JSON  # dicomweb-client
    assert negotiate('multipart/related; type="application/dicom+xml"') == XML_PARTS
    assert negotiate("multipart/related; type=application/dicom+xml") == XML_PARTS
    assert negotiate("application/json;q=0.5, multipart/related; type=application/dicom+xml") == (
        XML_PARTS
    )
    assert negotiate("application/*") == JSON
    with pytest.raises(NotAcceptable):
        negotiate("application/dicom+xml")  # XML only comes as multipart
    with pytest.raises(NotAcceptable):
        negotiate("application/dicom+json; transfer-syntax=1.2.840.10008.1.2.1")


# -- bulkdata ---------------------------------------------------------------------------------


def test_bulkdata() -> None:
    octets = Choice(True, "application/octet-stream", "*")
    assert negotiate_bulkdata('multipart/related; type="application/octet-stream"') == octets
    assert negotiate_bulkdata(_mr("application/octet-stream", "*")) == octets
    assert negotiate_bulkdata('multipart/related; type="*/*"') == octets  # dicomweb-client
    assert negotiate_bulkdata("application/octet-stream; transfer-syntax=*") == Choice(
        False, "application/octet-stream", "*"
    )
    assert negotiate_bulkdata("application/octet-stream") == Choice(
        False, "application/octet-stream", "*"
    )
    with pytest.raises(NotAcceptable):
        negotiate_bulkdata(_mr("application/octet-stream", JPEG + "50"))
    with pytest.raises(NotAcceptable):
        negotiate_bulkdata(_mr("image/jpeg", JPEG + "50"))


# -- STOW response ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept, expected",
    [
        ("application/dicom+xml", "application/dicom+xml"),
        ("application/dicom+json", "application/dicom+json"),
        ("application/json", "application/json"),
        ("Application/DICOM+JSON", "application/dicom+json"),
        ("application/dicom+json;q=0.9, application/dicom+xml;q=0.8", "application/dicom+json"),
        ("application/*", "application/dicom+xml"),
        ("text/html, application/dicom+json;q=0.1", "application/dicom+json"),
    ],
)
def test_stow_response(accept: str, expected: str) -> None:
    assert negotiate_stow_response(accept) == Choice(False, expected, None)


@pytest.mark.parametrize(
    "accept", ["application/xml", "text/xml", "multipart/related; type=application/dicom+xml"]
)
def test_stow_response_refuses(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate_stow_response(accept)


# -- precedence details -----------------------------------------------------------------------


def test_quoted_parameter_values_may_hold_commas_and_semicolons() -> None:
    accept = 'multipart/related; type="application/dicom"; x="a, b; c"; transfer-syntax="*"'
    assert negotiate_retrieve(accept) == Choice(True, "application/dicom", "*")


def test_q_after_other_parameters_and_before_them() -> None:
    explicit = _mr("application/dicom", JPEG + "50") + ";q=0.4"
    wildcard = 'multipart/related; q=0.6; type="application/dicom"; transfer-syntax=*'
    expected = Choice(True, "application/dicom", "*")
    assert negotiate_retrieve(f"{explicit}, {wildcard}") == expected


def test_more_specific_range_overrides_a_general_one() -> None:
    accept = f"{_mr('application/dicom', '*')};q=0.2, multipart/related;q=0.9"
    # the default syntax comes from the general range at 0.9; "*" keeps its own 0.2
    assert negotiate_retrieve(accept) == DICOM
    accept = f'{_mr("application/dicom", ELE)};q=0, multipart/related; type="application/dicom"'
    with pytest.raises(NotAcceptable):
        negotiate_retrieve(accept)
