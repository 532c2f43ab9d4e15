"""PS3.19 NativeDicomModel XML rendering and parsing of DICOM JSON objects."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from typing import Any

from pydicom.datadict import keyword_for_tag

from shared.dicom.json_model import number_from_text
from shared.domain.records import DicomJson
from shared.errors import InvalidArgument

logger = logging.getLogger(__name__)

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
# Members of a DICOM JSON element object that only the XML rendering uses (see to_native_xml).
PRIVATE_CREATOR = "privateCreator"
KEYWORD = "keyword"

_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_PN_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_NUMERIC_VRS = frozenset({"IS", "DS", "FL", "FD", "SL", "SS", "SV", "UL", "US", "UV"})
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_VR = re.compile(r"[A-Z]{2}")
# XML 1.0 cannot carry most C0 controls at all, even as references; "\r" would be normalised.
_TEXT_SPECIAL = re.compile("[&<>\r]|[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTR_SPECIAL = re.compile('[&<>"\t\n\r]|[^\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')
_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "\t": "&#9;",
    "\n": "&#10;",
    "\r": "&#13;",
}


def to_native_xml(obj: DicomJson) -> bytes:
    """Render one DICOM JSON object as a UTF-8 PS3.19 NativeDicomModel document.

    Two optional, XML-only members of an element object set DicomAttribute attributes that
    DICOM JSON cannot express: "privateCreator" (the private creator of a private tag) and
    "keyword" (a keyword for a tag the data dictionary does not name). The STOW failure detail
    is thus {"vr": "LT", "Value": [...], "privateCreator": "GOOGLE", "keyword":
    "FailureDetail"} under "00090097". Public tags get their dictionary keyword; other private
    or unknown tags get none. Keep these members out of objects rendered as JSON.
    """
    out = [XML_DECLARATION, f'<NativeDicomModel xmlns="{NAMESPACE}" xml:space="preserve">']
    _write_dataset(obj, out)
    out.append("</NativeDicomModel>\n")
    return "".join(out).encode("utf-8")


def from_native_xml(data: bytes) -> DicomJson:
    """Parse a NativeDicomModel document into DICOM JSON; DTDs and entities are refused."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise InvalidArgument("XML document type declarations are not accepted")
    parser = ET.XMLParser(target=_NoDoctypeTreeBuilder())
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        raise InvalidArgument(f"malformed XML: {exc}") from None
    if _local(root.tag) != "NativeDicomModel":
        raise InvalidArgument("XML root element must be NativeDicomModel")
    return _read_dataset(root)


class _NoDoctypeTreeBuilder(ET.TreeBuilder):
    """Stops the parse at a DOCTYPE in any encoding, before entities could be declared."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise InvalidArgument("XML document type declarations are not accepted")


# Rendering.


def _write_dataset(obj: DicomJson, out: list[str]) -> None:
    for key in sorted(obj, key=str):
        element = obj[key]
        if not isinstance(key, str) or not _TAG.fullmatch(key) or not isinstance(element, dict):
            raise InvalidArgument(f"malformed DICOM JSON element {str(key)[:16]!r}")
        _write_element(key.upper(), element, out)


def _write_element(tag: str, element: dict[str, Any], out: list[str]) -> None:
    vr = element.get("vr")
    if not isinstance(vr, str):
        raise InvalidArgument(f"DICOM JSON element {tag} has no vr")
    out.append(f'<DicomAttribute tag="{tag}" vr="{_attr(vr)}"')
    keyword = element.get(KEYWORD) or _keyword(tag)
    if keyword:
        out.append(f' keyword="{_attr(str(keyword))}"')
    creator = element.get(PRIVATE_CREATOR)
    if creator:
        out.append(f' privateCreator="{_attr(str(creator))}"')
    start = len(out)
    out.append(">")
    _write_content(tag, vr, element, out)
    if len(out) == start + 1:
        out[start] = "/>"
    else:
        out.append("</DicomAttribute>")


def _write_content(tag: str, vr: str, element: dict[str, Any], out: list[str]) -> None:
    if "BulkDataURI" in element:
        out.append(f'<BulkData uri="{_attr(str(element["BulkDataURI"]))}"/>')
        return
    if "InlineBinary" in element:
        inline = element["InlineBinary"]
        if not isinstance(inline, str):
            raise InvalidArgument(f"InlineBinary of {tag} must be a string")
        out.append(f"<InlineBinary>{_text(inline)}</InlineBinary>")
        return
    values = element.get("Value")
    if values is None:
        return
    if not isinstance(values, list):
        raise InvalidArgument(f"Value of {tag} must be an array")
    for number, value in enumerate(values, start=1):
        if vr == "SQ":
            _write_item(tag, number, value, out)
        elif vr == "PN":
            _write_person_name(tag, number, value, out)
        elif value is None:
            out.append(f'<Value number="{number}"/>')
        else:
            out.append(f'<Value number="{number}">{_text(_value_text(value))}</Value>')


def _write_item(tag: str, number: int, item: Any, out: list[str]) -> None:
    if not isinstance(item, dict):
        raise InvalidArgument(f"sequence item {number} of {tag} must be an object")
    if not item:
        out.append(f'<Item number="{number}"/>')
        return
    out.append(f'<Item number="{number}">')
    _write_dataset(item, out)
    out.append("</Item>")


def _write_person_name(tag: str, number: int, name: Any, out: list[str]) -> None:
    if name is None or name == {}:
        out.append(f'<PersonName number="{number}"/>')
        return
    if not isinstance(name, dict):
        raise InvalidArgument(f"person name {number} of {tag} must be an object")
    out.append(f'<PersonName number="{number}">')
    for group in _PN_GROUPS:
        text = name.get(group)
        if text is None:
            continue
        out.append(f"<{group}>")
        # Empty interior parts are written too, so the caret structure survives a round trip.
        for part, component in zip(_PN_PARTS, str(text).split("^", 4), strict=False):
            out.append(f"<{part}>{_text(component)}</{part}>")
        out.append(f"</{group}>")
    out.append("</PersonName>")


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@lru_cache(maxsize=4096)
def _keyword(tag: str) -> str:
    number = int(tag, 16)
    if (number >> 16) % 2:
        return ""
    return keyword_for_tag(number)


def _text(text: str) -> str:
    if _TEXT_SPECIAL.search(text) is None:
        return text
    return _TEXT_SPECIAL.sub(_escape_match, text)


def _attr(text: str) -> str:
    if _ATTR_SPECIAL.search(text) is None:
        return text
    return _ATTR_SPECIAL.sub(_escape_match, text)


def _escape_match(match: re.Match[str]) -> str:
    char = match.group()
    escaped = _ESCAPES.get(char)
    if escaped is None:
        logger.debug("replaced a character XML 1.0 cannot represent")
        return "\ufffd"
    return escaped


# Parsing.


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _read_dataset(parent: ET.Element) -> DicomJson:
    out: DicomJson = {}
    for child in parent:
        if _local(child.tag) != "DicomAttribute":
            raise InvalidArgument(f"unexpected XML element {_local(child.tag)[:64]!r}")
        tag = child.get("tag", "")
        vr = child.get("vr", "")
        if not _TAG.fullmatch(tag) or not _VR.fullmatch(vr):
            raise InvalidArgument("DicomAttribute needs an 8-hex-digit tag and a VR")
        out[tag.upper()] = _read_element(tag.upper(), vr, child)
    return dict(sorted(out.items()))


def _read_element(tag: str, vr: str, node: ET.Element) -> dict[str, Any]:
    element: dict[str, Any] = {"vr": vr}
    creator = node.get(PRIVATE_CREATOR)
    if creator is not None:
        element[PRIVATE_CREATOR] = creator
    keyword = node.get(KEYWORD)
    if keyword and int(tag[:4], 16) % 2:
        element[KEYWORD] = keyword
    children = list(node)
    names = {_local(child.tag) for child in children}
    if not children:
        return element
    if names == {"BulkData"} and len(children) == 1:
        uri = children[0].get("uri")
        if not uri:
            raise InvalidArgument(f"BulkData of {tag} needs a uri")
        element["BulkDataURI"] = uri
    elif names == {"InlineBinary"} and len(children) == 1:
        element["InlineBinary"] = "".join((children[0].text or "").split())
    elif names == {_expected_child(vr)}:
        element["Value"] = _read_values(tag, vr, children)
    else:
        raise InvalidArgument(f"unexpected content in DicomAttribute {tag}")
    return element


def _expected_child(vr: str) -> str:
    return {"SQ": "Item", "PN": "PersonName"}.get(vr, "Value")


def _read_values(tag: str, vr: str, children: list[ET.Element]) -> list[Any]:
    numbered: dict[int, Any] = {}
    for position, child in enumerate(children, start=1):
        number = _number(tag, child.get("number"), position, len(children))
        if vr == "SQ":
            numbered[number] = _read_dataset(child)
        elif vr == "PN":
            numbered[number] = _read_person_name(child)
        else:
            numbered[number] = _read_value(vr, child.text)
    return [numbered.get(n) for n in range(1, max(numbered) + 1)]


def _number(tag: str, text: str | None, default: int, count: int) -> int:
    if text is None:
        return default
    # Numbers beyond the child count would only pad the list with nulls (a memory lever).
    if not text.isdigit() or not 0 < int(text) <= count:
        raise InvalidArgument(f"invalid number attribute in DicomAttribute {tag}")
    return int(text)


def _read_value(vr: str, text: str | None) -> Any:
    if not text:
        return None
    if vr in _NUMERIC_VRS:
        return number_from_text(vr, text)
    return text


def _read_person_name(node: ET.Element) -> dict[str, str] | None:
    name: dict[str, str] = {}
    for group in node:
        group_name = _local(group.tag)
        if group_name not in _PN_GROUPS:
            raise InvalidArgument(f"unexpected person name group {group_name[:64]!r}")
        parts = {_local(part.tag): part.text or "" for part in group}
        indexes = [i for i, part in enumerate(_PN_PARTS) if part in parts]
        if len(indexes) != len(parts):
            raise InvalidArgument("unexpected person name component")
        last = max(indexes, default=-1)
        name[group_name] = "^".join(parts.get(part, "") for part in _PN_PARTS[: last + 1])
    return name or None
