"""HTTP Accept negotiation (RFC 7231) for DICOMweb endpoints, with type and transfer-syntax."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.dicom.multipart import parse_media_type
from shared.errors import InvalidArgument, NotAcceptable

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
ANY_SYNTAX = "*"  # "no transcoding": the stored encoding is returned as is

_JPEG = "1.2.840.10008.1.2.4."
# Spec 4.2: what a whole instance can be transcoded to.
INSTANCE_SYNTAXES = frozenset(
    {
        ANY_SYNTAX,
        "1.2.840.10008.1.2",
        EXPLICIT_VR_LITTLE_ENDIAN,
        "1.2.840.10008.1.2.1.99",
        RLE_LOSSLESS,
        DEFLATED_IMAGE_FRAME,
        *(_JPEG + n for n in ("50", "51", "57", "70", "80", "81", "90", "91")),
        *(_JPEG + n for n in ("110", "111", "112", "201", "202", "203")),
    }
)

# An element is either a quoted string (commas inside are not separators) or any other char.
_ELEMENT_RE = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*(?:"|$))+', re.DOTALL)
_Q_RE = re.compile(r"(?:[01](?:\.[0-9]*)?|\.[0-9]+)")
_SHOWN_ACCEPT = 200


@dataclass(frozen=True)
class MediaRange:
    """One Accept element: lower-cased type (may be */* or type/*), other params, q-value."""

    type: str
    params: tuple[tuple[str, str], ...]
    q: float

    def param(self, name: str) -> str | None:
        """Value of the named parameter (names are lower-case), or None if absent."""
        for key, value in self.params:
            if key == name:
                return value
        return None


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse an Accept header into media ranges in the order listed.

    Malformed elements, including bad q-values (outside 0..1 or not a number), are dropped
    rather than failing the request: RFC 7231 asks servers to be lenient here, and one odd
    element of a browser's header should not make the others unusable. Parameters after q
    (accept-extensions) are kept with the media parameters, because DICOM clients put
    transfer-syntax on either side of q.
    """
    if header is None:
        return []
    ranges = []
    for match in _ELEMENT_RE.finditer(header):
        media_range = _parse_range(match.group())
        if media_range is not None:
            ranges.append(media_range)
    return ranges


def _parse_range(element: str) -> MediaRange | None:
    main, sep, rest = element.strip().partition(";")
    main = _normalize_pattern(main)
    if not main:
        return None
    try:
        media_type, params = parse_media_type(main + sep + rest)
    except InvalidArgument:
        return None
    q = _parse_q(params.pop("q", "1"))
    if q is None or (media_type.startswith("*/") and media_type != "*/*"):
        return None
    return MediaRange(media_type, tuple(params.items()), q)


def _normalize_pattern(text: str) -> str:
    text = text.strip().lower()
    if text == "*":
        return "*/*"  # Java's HttpURLConnection sends a bare "*"
    if text.endswith("/"):
        return text + "*"  # dicomweb-client writes "image/" for "any image type"
    return text


def _parse_q(raw: str) -> float | None:
    raw = raw.strip()
    if not _Q_RE.fullmatch(raw):
        return None
    q = float(raw)
    return q if q <= 1.0 else None


@dataclass(frozen=True)
class Choice:
    """The negotiated representation.

    multipart: answer multipart/related with parts of media_type; else a single body of it.
    media_type: the (part) media type to send, e.g. application/dicom or image/jpeg.
    transfer_syntax: the syntax to encode to, "*" for the stored one, None if not applicable.
    """

    multipart: bool
    media_type: str
    transfer_syntax: str | None


@dataclass(frozen=True)
class _Offer:
    """One representation an endpoint can produce; syntaxes None means no transfer-syntax."""

    multipart: bool
    media_type: str
    syntaxes: frozenset[str] | None = None
    default_syntax: str | None = None

    @property
    def outer_type(self) -> str:
        return "multipart/related" if self.multipart else self.media_type

    def describe(self) -> str:
        if self.multipart:
            return f'multipart/related; type="{self.media_type}"'
        return self.media_type


@dataclass(frozen=True)
class _Want:
    """A media range reduced to what negotiation compares."""

    outer: str
    inner: str | None  # the multipart "type" pattern, None when absent
    syntax: str | None
    q: float

    @classmethod
    def of(cls, media_range: MediaRange) -> _Want:
        inner = media_range.param("type")
        # A "type" value may carry its own parameters; only its media type matters here.
        inner = _normalize_pattern(inner.partition(";")[0]) if inner is not None else ""
        syntax = (media_range.param("transfer-syntax") or "").strip()
        return cls(media_range.type, inner or None, syntax or None, media_range.q)

    @property
    def specificity(self) -> tuple[int, int, bool]:
        inner = _specificity(self.inner) if self.inner is not None else 0
        return _specificity(self.outer), inner, self.syntax is not None

    def covers(self, offer: _Offer) -> bool:
        """True when this range names the offer's media type, whatever the syntax."""
        if not _type_matches(self.outer, offer.outer_type):
            return False
        if not offer.multipart or self.inner is None:
            return True
        return _type_matches(self.inner, offer.media_type)

    def propose(self, offer: _Offer) -> Choice | None:
        """The representation of the offer this range asks for, None if it cannot be made."""
        if not self.covers(offer):
            return None
        if offer.syntaxes is None:
            return None if self.syntax else Choice(offer.multipart, offer.media_type, None)
        syntax = self.syntax or offer.default_syntax
        if syntax not in offer.syntaxes:
            return None
        return Choice(offer.multipart, offer.media_type, syntax)

    def accepts(self, offer: _Offer, choice: Choice) -> bool:
        return self.covers(offer) and self.syntax in (None, choice.transfer_syntax)


def _specificity(pattern: str) -> int:
    if pattern == "*/*":
        return 0
    return 1 if pattern.endswith("/*") else 2


def _type_matches(pattern: str, media_type: str) -> bool:
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return media_type.startswith(pattern[:-1])
    return pattern == media_type


def _effective_q(offer: _Offer, choice: Choice, wants: Sequence[_Want]) -> float:
    """RFC 7231 5.3.2: the most specific matching range decides; on a tie the first listed."""
    best: _Want | None = None
    for want in wants:
        if want.accepts(offer, choice) and (best is None or want.specificity > best.specificity):
            best = want
    return best.q if best is not None else 0.0


def _negotiate(accept: str | None, offers: Sequence[_Offer], what: str) -> Choice:
    if accept is None or not accept.strip():
        return _default(offers[0])
    wants = [_Want.of(media_range) for media_range in parse_accept(accept)]
    # Candidates in Accept order, so that among equal q-values the first listed wins.
    candidates: dict[Choice, _Offer] = {}
    for want in wants:
        if want.q <= 0:
            continue  # a q=0 range only excludes, it never proposes
        for offer in offers:
            choice = want.propose(offer)
            if choice is not None:
                candidates.setdefault(choice, offer)
    best, best_q = None, 0.0
    for choice, offer in candidates.items():
        q = _effective_q(offer, choice, wants)
        if q > best_q:
            best, best_q = choice, q
    if best is None:
        raise _not_acceptable(accept, offers, what)
    return best


def _default(offer: _Offer) -> Choice:
    return Choice(offer.multipart, offer.media_type, offer.default_syntax)


def _not_acceptable(accept: str, offers: Sequence[_Offer], what: str) -> NotAcceptable:
    shown = accept if len(accept) <= _SHOWN_ACCEPT else accept[: _SHOWN_ACCEPT - 3] + "..."
    supported = ", ".join(dict.fromkeys(offer.describe() for offer in offers))
    return NotAcceptable(
        f"none of the media types in Accept {shown!r} can be produced for {what} "
        f"(unknown type or unsupported transfer-syntax); supported: {supported}"
    )


def _syntaxes(*uids: str) -> frozenset[str]:
    return frozenset(uids)


_DICOM_MULTIPART = _Offer(True, "application/dicom", INSTANCE_SYNTAXES, EXPLICIT_VR_LITTLE_ENDIAN)
_DICOM_SINGLE = _Offer(False, "application/dicom", INSTANCE_SYNTAXES, EXPLICIT_VR_LITTLE_ENDIAN)
_RAW_SYNTAXES = _syntaxes(ANY_SYNTAX, EXPLICIT_VR_LITTLE_ENDIAN)
_RETRIEVE_OFFERS = (_DICOM_MULTIPART,)
_INSTANCE_OFFERS = (_DICOM_MULTIPART, _DICOM_SINGLE)
# Spec 4.3; when a type is given without transfer-syntax its first listed syntax is used.
_FRAME_OFFERS = (
    _Offer(True, "application/octet-stream", _RAW_SYNTAXES, EXPLICIT_VR_LITTLE_ENDIAN),
    _Offer(
        True, "image/jpeg", _syntaxes(*(_JPEG + n for n in ("50", "51", "57", "70"))), _JPEG + "50"
    ),
    _Offer(True, "image/jls", _syntaxes(_JPEG + "80", _JPEG + "81"), _JPEG + "80"),
    _Offer(True, "image/jp2", _syntaxes(_JPEG + "90", _JPEG + "91"), _JPEG + "90"),
    _Offer(
        True, "image/jphc", _syntaxes(*(_JPEG + n for n in ("201", "202", "203"))), _JPEG + "201"
    ),
    _Offer(True, "image/jxl", _syntaxes(_JPEG + "110", _JPEG + "112"), _JPEG + "110"),
    _Offer(True, "image/dicom-rle", _syntaxes(RLE_LOSSLESS), RLE_LOSSLESS),
    _Offer(True, "application/x-deflate", _syntaxes(DEFLATED_IMAGE_FRAME), DEFLATED_IMAGE_FRAME),
    _Offer(True, "image/png"),
    # Not in Google's list; a convenience the caller may only honour for a single frame.
    _Offer(False, "application/octet-stream", _RAW_SYNTAXES, EXPLICIT_VR_LITTLE_ENDIAN),
)
_RENDERED_OFFERS = (_Offer(False, "image/jpeg"), _Offer(False, "image/png"))
_METADATA_OFFERS = (
    _Offer(False, "application/dicom+json"),
    _Offer(False, "application/json"),
    _Offer(True, "application/dicom+xml"),
)
_ANY_ONLY = _syntaxes(ANY_SYNTAX)
_BULKDATA_OFFERS = (
    _Offer(True, "application/octet-stream", _ANY_ONLY, ANY_SYNTAX),
    _Offer(False, "application/octet-stream", _ANY_ONLY, ANY_SYNTAX),
)
_STOW_RESPONSE_OFFERS = (
    _Offer(False, "application/dicom+xml"),
    _Offer(False, "application/dicom+json"),
    _Offer(False, "application/json"),
)


def negotiate_retrieve(accept: str | None) -> Choice:
    """Study or series retrieval: multipart application/dicom only (default explicit VR LE)."""
    return _negotiate(accept, _RETRIEVE_OFFERS, "study/series retrieval")


def negotiate_instance(accept: str | None) -> Choice:
    """Instance retrieval: as for a study, plus single-part application/dicom."""
    return _negotiate(accept, _INSTANCE_OFFERS, "instance retrieval")


def negotiate_frames(accept: str | None) -> Choice:
    """Frame retrieval: multipart octet-stream (default explicit VR LE) or an image type.

    A single-part application/octet-stream choice is only valid for one frame; the caller
    checks the frame count.
    """
    return _negotiate(accept, _FRAME_OFFERS, "frame retrieval")


def negotiate_rendered(accept: str | None) -> Choice:
    """Rendered instance or frames: single-part image/jpeg (default) or image/png."""
    return _negotiate(accept, _RENDERED_OFFERS, "rendered retrieval")


def negotiate_metadata(accept: str | None) -> Choice:
    """Metadata: application/dicom+json (default), application/json or multipart XML."""
    return _negotiate(accept, _METADATA_OFFERS, "metadata retrieval")


def negotiate_search(accept: str | None) -> Choice:
    """Search results: the same representations as metadata."""
    return _negotiate(accept, _METADATA_OFFERS, "search")


def negotiate_bulkdata(accept: str | None) -> Choice:
    """Bulkdata: multipart (default) or single-part application/octet-stream, syntax "*"."""
    return _negotiate(accept, _BULKDATA_OFFERS, "bulkdata retrieval")


def negotiate_stow_response(accept: str | None) -> Choice:
    """STOW response body: application/dicom+xml (default) or DICOM JSON."""
    return _negotiate(accept, _STOW_RESPONSE_OFFERS, "the store response")


def advertised() -> dict[str, list[dict[str, Any]]]:
    """Every representation each endpoint can negotiate, for the capabilities document."""
    tables = {
        "retrieve": _INSTANCE_OFFERS,
        "frames": _FRAME_OFFERS,
        "rendered": _RENDERED_OFFERS,
        "metadata": _METADATA_OFFERS,
        "bulkdata": _BULKDATA_OFFERS,
        "storeResponse": _STOW_RESPONSE_OFFERS,
    }
    return {
        name: [
            {
                "mediaType": offer.media_type,
                "multipart": offer.multipart,
                **({"transferSyntaxes": sorted(offer.syntaxes)} if offer.syntaxes else {}),
                **({"default": offer.default_syntax} if offer.default_syntax else {}),
            }
            for offer in offers
        ]
        for name, offers in tables.items()
    }
