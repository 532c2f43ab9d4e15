"""PS3.19 NativeDicomModel rendering and parsing, including STOW response needs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file

from shared.dicom.json_model import dataset_to_json
from shared.dicom.xml_model import NAMESPACE, from_native_xml, to_native_xml
from shared.errors import InvalidArgument

NS = {"d": NAMESPACE}
FILES = [
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "waveform_ecg.dcm",
    "test-SR.dcm",
    "JPEG2000.dcm",
]
CHARSET_FILES = ["chrH31.dcm", "chrX1.dcm", "chrRuss.dcm", "chrJapMulti.dcm", "chrSQEncoding.dcm"]


def _json_of_testfile(name: str) -> dict[str, Any]:
    path = get_testdata_file(name)
    assert path is not None, name
    return dataset_to_json(pydicom.dcmread(str(path), force=True))


def _attribute(root: ET.Element, tag: str) -> ET.Element:
    found = root.find(f"d:DicomAttribute[@tag='{tag}']", NS)
    assert found is not None, tag
    return found


@pytest.mark.parametrize("name", FILES)
def test_round_trip_of_test_files(name: str) -> None:
    obj = _json_of_testfile(name)
    assert from_native_xml(to_native_xml(obj)) == obj


@pytest.mark.parametrize("name", CHARSET_FILES)
def test_round_trip_of_charset_files(name: str) -> None:
    obj = dataset_to_json(pydicom.dcmread(str(get_charset_files(name)[0])))
    assert from_native_xml(to_native_xml(obj)) == obj


def test_document_shape() -> None:
    data = to_native_xml({"00100020": {"vr": "LO", "Value": ["id"]}})
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xmlns="')
    root = ET.fromstring(data)
    assert root.tag == f"{{{NAMESPACE}}}NativeDicomModel"
    assert root.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    attr = _attribute(root, "00100020")
    assert attr.attrib == {"tag": "00100020", "vr": "LO", "keyword": "PatientID"}
    value = attr.find("d:Value", NS)
    assert value is not None and value.get("number") == "1" and value.text == "id"


def test_person_name_components() -> None:
    obj = dataset_to_json(pydicom.dcmread(str(get_charset_files("chrH31.dcm")[0])))
    root = ET.fromstring(to_native_xml(obj))
    name = _attribute(root, "00100010").find("d:PersonName", NS)
    assert name is not None and name.get("number") == "1"
    assert name.findtext("d:Alphabetic/d:FamilyName", namespaces=NS) == "Yamada"
    assert name.findtext("d:Alphabetic/d:GivenName", namespaces=NS) == "Tarou"
    assert name.findtext("d:Ideographic/d:FamilyName", namespaces=NS) == "山田"
    assert name.findtext("d:Phonetic/d:GivenName", namespaces=NS) == "たろう"


@pytest.mark.parametrize(
    "value",
    ["Doe", "Doe^John", "^John", "Doe^^^^", "Doe^John^Q^Dr^III", "a^b^c^d^e^f", ""],
)
def test_person_name_caret_structure_survives(value: str) -> None:
    obj = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": value}, None]}}
    assert from_native_xml(to_native_xml(obj)) == obj


def test_sequences_items_and_bulk_uris() -> None:
    obj = {
        "00480105": {
            "vr": "SQ",
            "Value": [
                {"00282000": {"vr": "OB", "BulkDataURI": "bulkdata/00480105/0/00282000"}},
                {},
            ],
        },
        "00081140": {"vr": "SQ"},
        "00660016": {"vr": "OF", "InlineBinary": "AACAPwAAAEA="},
        "7FE00010": {"vr": "OW", "BulkDataURI": "https://h/x/bulkdata/7FE00010?a=1&b=2"},
    }
    data = to_native_xml(obj)
    root = ET.fromstring(data)
    items = _attribute(root, "00480105").findall("d:Item", NS)
    assert [item.get("number") for item in items] == ["1", "2"]
    bulk = items[0].find("d:DicomAttribute/d:BulkData", NS)
    assert bulk is not None and bulk.get("uri") == "bulkdata/00480105/0/00282000"
    assert b'uri="https://h/x/bulkdata/7FE00010?a=1&amp;b=2"' in data
    assert _attribute(root, "00660016").findtext("d:InlineBinary", namespaces=NS) == (
        "AACAPwAAAEA="
    )
    assert from_native_xml(data) == obj


def test_numbers_and_nulls_keep_their_types() -> None:
    obj = {
        "00200013": {"vr": "IS", "Value": [5]},
        "00280030": {"vr": "DS", "Value": [0.5, 1]},
        "00700022": {"vr": "FL", "Value": [0.10000000149011612, "NaN", "-inf"]},
        "00080008": {"vr": "CS", "Value": ["ORIGINAL", None, "AXIAL"]},
        "00280009": {"vr": "AT", "Value": ["00181063"]},
        "00200012": {"vr": "IS", "Value": ["not a number"]},
    }
    back = from_native_xml(to_native_xml(obj))
    assert back == obj
    assert isinstance(back["00280030"]["Value"][1], int)
    assert isinstance(back["00280030"]["Value"][0], float)


def test_escaping_of_markup_non_ascii_and_controls() -> None:
    text = 'a & b < c > d "q" é 漢字 \r\n\ttab'
    obj = {"00204000": {"vr": "LT", "Value": [text]}}
    data = to_native_xml(obj)
    assert b"a &amp; b &lt; c &gt; d" in data
    assert "é 漢字".encode() in data
    assert from_native_xml(data) == obj
    # XML 1.0 cannot carry a form feed or NUL at all: they become U+FFFD, the document stays valid.
    bad = to_native_xml({"00204000": {"vr": "LT", "Value": ["x\x0cy\x00"]}})
    assert from_native_xml(bad)["00204000"]["Value"] == ["x\ufffdy\ufffd"]


def test_stow_failure_detail_with_private_creator() -> None:
    detail = {
        "vr": "LT",
        "Value": ["already exists: <1.2.3> & more"],
        "privateCreator": "GOOGLE",
        "keyword": "FailureDetail",
    }
    obj = {
        "00081190": {"vr": "UR", "Value": ["https://h/v1/s/dicomWeb/studies/1.2"]},
        "00081198": {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]},
                    "00081155": {"vr": "UI", "Value": ["1.2.3"]},
                    "00081197": {"vr": "US", "Value": [272]},
                    "00090097": detail,
                }
            ],
        },
    }
    data = to_native_xml(obj)
    root = ET.fromstring(data)
    item = _attribute(root, "00081198").find("d:Item", NS)
    assert item is not None
    failure = _attribute(item, "00090097")
    assert failure.attrib == {
        "tag": "00090097",
        "vr": "LT",
        "keyword": "FailureDetail",
        "privateCreator": "GOOGLE",
    }
    assert failure.findtext("d:Value", namespaces=NS) == "already exists: <1.2.3> & more"
    assert _attribute(item, "00081197").get("keyword") == "FailureReason"
    assert from_native_xml(data) == obj


def test_keyword_omitted_for_private_and_unknown_tags() -> None:
    obj = {
        "00091010": {"vr": "LO", "Value": ["x"]},
        "00090010": {"vr": "LO", "Value": ["CREATOR"]},
        "00089999": {"vr": "LO", "Value": ["unknown public"]},
        "60020010": {"vr": "US", "Value": [512]},
    }
    root = ET.fromstring(to_native_xml(obj))
    assert "keyword" not in _attribute(root, "00091010").attrib
    assert "keyword" not in _attribute(root, "00090010").attrib
    assert "keyword" not in _attribute(root, "00089999").attrib
    assert _attribute(root, "60020010").get("keyword") == "OverlayRows"


def test_input_without_namespace_and_out_of_order_numbers() -> None:
    data = (
        b"<NativeDicomModel>"
        b'<DicomAttribute tag="00080008" vr="CS"><Value number="2">B</Value>'
        b'<Value number="1">A</Value></DicomAttribute>'
        b'<DicomAttribute tag="00100010" vr="PN"><PersonName number="1"><Alphabetic>'
        b"<GivenName>John</GivenName><FamilyName>Doe</FamilyName></Alphabetic></PersonName>"
        b"</DicomAttribute></NativeDicomModel>"
    )
    assert from_native_xml(data) == {
        "00080008": {"vr": "CS", "Value": ["A", "B"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]},
    }


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<NativeDicomModel>&b;</NativeDicomModel>",
        b'<!DOCTYPE NativeDicomModel SYSTEM "file:///etc/passwd"><NativeDicomModel/>',
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "a">]><x>&a;</x>'.encode(
            "utf-16"
        ),
    ],
    ids=["entity-expansion", "external-dtd", "utf16-doctype"],
)
def test_document_type_declarations_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidArgument):
        from_native_xml(data)


@pytest.mark.parametrize(
    "data",
    [
        b"not xml",
        b"<NativeDicomModel><DicomAttribute",
        b"<Other/>",
        b'<NativeDicomModel><DicomAttribute tag="0010" vr="LO"/></NativeDicomModel>',
        b'<NativeDicomModel><DicomAttribute tag="00100020" vr="lo"/></NativeDicomModel>',
        b"<NativeDicomModel><Surprise/></NativeDicomModel>",
        b'<NativeDicomModel><DicomAttribute tag="00200013" vr="US"><Value number="1">x'
        b"</Value></DicomAttribute></NativeDicomModel>",
        b'<NativeDicomModel><DicomAttribute tag="00200013" vr="IS"><Value number="0">1'
        b"</Value></DicomAttribute></NativeDicomModel>",
        b'<NativeDicomModel><DicomAttribute tag="7FE00010" vr="OB"><BulkData/>'
        b"</DicomAttribute></NativeDicomModel>",
        b'<NativeDicomModel><DicomAttribute tag="00080008" vr="CS"><Value number="999999">A'
        b"</Value></DicomAttribute></NativeDicomModel>",
    ],
)
def test_malformed_documents_are_invalid_argument(data: bytes) -> None:
    with pytest.raises(InvalidArgument):
        from_native_xml(data)


def test_malformed_json_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        to_native_xml({"nothex!!": {"vr": "LO"}})
    with pytest.raises(InvalidArgument):
        to_native_xml({"00100020": {"Value": ["no vr"]}})
