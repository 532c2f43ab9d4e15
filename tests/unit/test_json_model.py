"""DICOM JSON model: PS3.18 encoding, Google's bulkdata rules, bulk lookup and value bytes."""

from __future__ import annotations

import base64
import copy
import io
import json
import struct
from collections.abc import Callable
from typing import Any

import pydicom
import pydicom.filereader
import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian

from shared.dicom.json_model import (
    absolutize_bulkdata,
    dataset_to_json,
    dumps,
    element_value_bytes,
    find_bulk_element,
    is_bulk_vr,
    number_from_text,
)
from shared.errors import InvalidArgument, NotFound

FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "waveform_ecg.dcm",
    "test-SR.dcm",
    "JPEG2000.dcm",
]
CHARSET_FILES = ["chrRuss.dcm", "chrX1.dcm", "chrH31.dcm", "chrJapMulti.dcm", "chrSQEncoding.dcm"]


def _testfile(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, name
    return str(path)


def _charset_file(name: str) -> str:
    return str(get_charset_files(name)[0])


def _read(name: str, **kwargs: Any) -> Dataset:
    return pydicom.dcmread(_testfile(name), force=True, **kwargs)


def _via_file(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """Write and re-read `ds`, so elements arrive as raw elements as they do at ingest."""
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _in_memory(ds: Dataset) -> Dataset:
    return ds


# Each rule is checked on elements built in memory and on the raw elements of a read file.
WAYS: list[Callable[[Dataset], Dataset]] = [_in_memory, _via_file]


@pytest.fixture(params=WAYS, ids=["memory", "file"])
def via(request: pytest.FixtureRequest) -> Callable[[Dataset], Dataset]:
    return request.param


def _pydicom_reference(ds: Dataset) -> dict[str, Any]:
    def handler(elem: DataElement) -> str:
        return "bulk"

    ref = ds.to_json_dict(bulk_data_element_handler=handler, bulk_data_threshold=1)
    ref.update(ds.file_meta.to_json_dict(bulk_data_element_handler=handler, bulk_data_threshold=1))
    return ref


def _compare_leaves(mine: dict[str, Any], ref: dict[str, Any]) -> None:
    assert set(mine) == set(ref)
    for key, ours in mine.items():
        theirs = ref[key]
        if "BulkDataURI" in ours or "BulkDataURI" in theirs or "InlineBinary" in theirs:
            continue
        if ours["vr"] == "SQ":
            assert len(ours.get("Value", [])) == len(theirs.get("Value", []))
            for a, b in zip(ours.get("Value", []), theirs.get("Value", []), strict=True):
                _compare_leaves(a, b)
            continue
        # PS3.18 F.2.5 wants null for empty values of a multi-valued element; pydicom writes "".
        expected = dict(theirs)
        if "Value" in expected:
            expected["Value"] = [None if v == "" else v for v in expected["Value"]]
        assert ours == expected, key


# Whole files.


@pytest.mark.parametrize("name", FILES)
def test_inline_values_match_pydicom_reference(name: str) -> None:
    _compare_leaves(dataset_to_json(_read(name)), _pydicom_reference(_read(name)))


@pytest.mark.parametrize("name", CHARSET_FILES)
def test_charset_files_match_pydicom_reference(name: str) -> None:
    path = _charset_file(name)
    mine = dataset_to_json(pydicom.dcmread(path))
    _compare_leaves(mine, _pydicom_reference(pydicom.dcmread(path)))


def test_keys_are_sorted_upper_case_hex_with_file_meta() -> None:
    obj = dataset_to_json(_read("CT_small.dcm"))
    keys = list(obj)
    assert keys == sorted(keys)
    assert all(len(k) == 8 and k == k.upper() and int(k, 16) >= 0 for k in keys)
    assert obj["00020010"] == {"vr": "UI", "Value": ["1.2.840.10008.1.2.1"]}
    assert obj["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulkdata/7FE00010"}
    json.dumps(obj, allow_nan=False)


def test_file_meta_can_be_left_out() -> None:
    obj = dataset_to_json(_read("CT_small.dcm"), include_file_meta=False)
    assert not [k for k in obj if k.startswith("0002")]
    assert "00080018" in obj


def test_file_meta_information_version_is_bulkdata() -> None:
    obj = dataset_to_json(_read("CT_small.dcm"))
    assert obj["00020001"] == {"vr": "OB", "BulkDataURI": "bulkdata/00020001"}


def test_private_tags_are_kept() -> None:
    obj = dataset_to_json(_read("CT_small.dcm"))
    private = [k for k in obj if int(k[:4], 16) % 2]
    assert "00090010" in private
    assert obj["00090010"] == {"vr": "LO", "Value": ["GEMS_IDEN_01"]}


def test_implicit_vr_pixel_data_is_ow() -> None:
    obj = dataset_to_json(_read("MR_small_implicit.dcm"))
    assert obj["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulkdata/7FE00010"}


def test_encapsulated_pixel_data_is_bulkdata() -> None:
    obj = dataset_to_json(_read("JPEG2000.dcm"))
    assert obj["7FE00010"] == {"vr": "OB", "BulkDataURI": "bulkdata/7FE00010"}


def test_second_call_on_same_dataset_is_identical() -> None:
    ds = _read("rtplan.dcm")
    first = dataset_to_json(ds)
    assert dataset_to_json(ds) == first


# Value encodings.


def test_person_name_components_and_charsets() -> None:
    h31 = dataset_to_json(pydicom.dcmread(_charset_file("chrH31.dcm")))
    assert h31["00100010"] == {
        "vr": "PN",
        "Value": [
            {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
        ],
    }
    russian = pydicom.dcmread(_charset_file("chrRuss.dcm"))
    name = str(russian.PatientName)
    assert name.startswith("Люк")  # ISO_IR 144 decoded to Cyrillic
    assert dataset_to_json(russian)["00100010"]["Value"] == [{"Alphabetic": name}]
    x1 = dataset_to_json(pydicom.dcmread(_charset_file("chrX1.dcm")))
    assert x1["00100010"]["Value"] == [{"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東"}]


def test_value_types(via: Callable[[Dataset], Dataset]) -> None:
    ds = Dataset()
    ds.InstanceNumber = "5"
    ds.PixelSpacing = ["0.5", "1"]
    ds.SliceThickness = "1.0E1"
    ds.FrameIncrementPointer = 0x00181063
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.PatientName = "Doe^Jane^^^"
    ds.ReferencedWaveformChannels = [1, 2]
    ds.add_new(0x00700022, "FL", [0.5, float("nan"), float("inf")])
    obj = dataset_to_json(via(ds))
    assert obj["00200013"] == {"vr": "IS", "Value": [5]}
    assert obj["00280030"] == {"vr": "DS", "Value": [0.5, 1]}
    assert isinstance(obj["00280030"]["Value"][1], int)
    assert obj["00180050"] == {"vr": "DS", "Value": [10.0]}
    assert obj["00280009"] == {"vr": "AT", "Value": ["00181063"]}
    assert obj["00080008"] == {"vr": "CS", "Value": ["ORIGINAL", None, "AXIAL"]}
    assert obj["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane^^^"}]}
    assert obj["0040A0B0"] == {"vr": "US", "Value": [1, 2]}
    assert obj["00700022"] == {"vr": "FL", "Value": [0.5, "NaN", "inf"]}


def test_empty_elements_have_only_vr(via: Callable[[Dataset], Dataset]) -> None:
    ds = Dataset()
    ds.PatientName = ""
    ds.AccessionNumber = ""
    ds.InstanceNumber = None
    ds.ReferencedImageSequence = Sequence()
    ds.add_new(0x00282000, "OB", b"")
    obj = dataset_to_json(via(ds))
    assert obj["00100010"] == {"vr": "PN"}
    assert obj["00080050"] == {"vr": "SH"}
    assert obj["00200013"] == {"vr": "IS"}
    assert obj["00081140"] == {"vr": "SQ"}
    assert obj["00282000"] == {"vr": "OB"}


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
def test_invalid_number_strings_stay_text() -> None:
    ds = Dataset()
    ds.add(DataElement(0x00200013, "IS", "5.0"))
    obj = dataset_to_json(_via_file(ds))
    assert obj["00200013"]["Value"] == [5]
    assert number_from_text("IS", "abc") == "abc"
    assert number_from_text("DS", "1e999") == "1e999"
    assert number_from_text("FD", "nan") == "NaN"
    assert number_from_text("US", " 12 ") == 12
    with pytest.raises(InvalidArgument):
        number_from_text("US", "twelve")


# Google's bulkdata definition, rule by rule.


def test_small_ob_element_becomes_uri(via: Callable[[Dataset], Dataset]) -> None:
    ds = Dataset()
    ds.add_new(0x00282000, "OB", b"\x01\x02\x03\x04")
    obj = dataset_to_json(via(ds))
    assert obj["00282000"] == {"vr": "OB", "BulkDataURI": "bulkdata/00282000"}


def test_un_element_becomes_uri(via: Callable[[Dataset], Dataset]) -> None:
    ds = Dataset()
    ds.add_new(0x00111010, "UN", b"ab")
    assert dataset_to_json(via(ds))["00111010"] == {
        "vr": "UN",
        "BulkDataURI": "bulkdata/00111010",
    }


@pytest.mark.parametrize(("size", "bulk"), [(100, False), (2048, False), (3000, True)])
def test_of_inline_up_to_2_kib(via: Callable[[Dataset], Dataset], size: int, bulk: bool) -> None:
    data = struct.pack(f"<{size // 4}f", *range(size // 4))
    ds = Dataset()
    ds.add_new(0x00660016, "OF", data)
    entry = dataset_to_json(via(ds))["00660016"]
    if bulk:
        assert entry == {"vr": "OF", "BulkDataURI": "bulkdata/00660016"}
    else:
        assert entry == {"vr": "OF", "InlineBinary": _b64(data)}


def test_inline_binary_is_little_endian_for_big_endian_files() -> None:
    # pydicom keeps byte values in the file's byte order, so a big-endian file holds these.
    ds = Dataset()
    ds.add_new(0x00660016, "OF", struct.pack(">4f", 1.0, 2.0, 3.0, 4.0))
    obj = dataset_to_json(_via_file(ds, ExplicitVRBigEndian))
    expected = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    assert obj["00660016"] == {"vr": "OF", "InlineBinary": _b64(expected)}


@pytest.mark.parametrize(("count", "bulk"), [(512, False), (513, True), (600, True)])
def test_us_with_vm_over_512_becomes_uri(
    via: Callable[[Dataset], Dataset], count: int, bulk: bool
) -> None:
    ds = Dataset()
    ds.ReferencedWaveformChannels = list(range(count))
    entry = dataset_to_json(via(ds))["0040A0B0"]
    if bulk:
        assert entry == {"vr": "US", "BulkDataURI": "bulkdata/0040A0B0"}
    else:
        assert entry == {"vr": "US", "Value": list(range(count))}


def test_fl_with_vm_over_512_becomes_uri(via: Callable[[Dataset], Dataset]) -> None:
    ds = Dataset()
    ds.add_new(0x00700022, "FL", [0.5] * 600)
    assert dataset_to_json(via(ds))["00700022"] == {
        "vr": "FL",
        "BulkDataURI": "bulkdata/00700022",
    }


def test_ss_is_not_under_the_vm_rule(via: Callable[[Dataset], Dataset]) -> None:
    ds = Dataset()
    block = ds.private_block(0x0011, "TEST", create=True)
    block.add_new(0x10, "SS", [-1] * 600)
    assert dataset_to_json(via(ds))["00111010"] == {"vr": "SS", "Value": [-1] * 600}


def test_nested_bulkdata_uri_path(via: Callable[[Dataset], Dataset]) -> None:
    ds = Dataset()
    first, second = Dataset(), Dataset()
    first.add_new(0x00282000, "OB", b"icc1")
    second.add_new(0x00282000, "OB", b"icc2")
    second.OpticalPathIdentifier = "2"
    ds.OpticalPathSequence = Sequence([first, second])
    obj = dataset_to_json(via(ds))
    items = obj["00480105"]["Value"]
    assert items[0]["00282000"] == {"vr": "OB", "BulkDataURI": "bulkdata/00480105/0/00282000"}
    assert items[1]["00282000"] == {"vr": "OB", "BulkDataURI": "bulkdata/00480105/1/00282000"}
    assert items[1]["00480106"] == {"vr": "SH", "Value": ["2"]}


@pytest.mark.parametrize("undefined_length", [False, True])
def test_sequence_over_1_mib_is_omitted(
    via: Callable[[Dataset], Dataset], undefined_length: bool
) -> None:
    ds = Dataset()
    big, small = Dataset(), Dataset()
    big.TextValue = "x" * (1100 * 1024)
    small.TextValue = "y" * 1000
    ds.ContentSequence = Sequence([big])
    ds.ContentSequence.is_undefined_length = undefined_length
    ds[0x0040A730].is_undefined_length = undefined_length
    ds.ReferencedImageSequence = Sequence([small])
    ds.PatientID = "after"
    read = via(ds)
    obj = dataset_to_json(read)
    assert "0040A730" not in obj
    assert obj["00081140"]["Value"] == [{"0040A160": {"vr": "UT", "Value": ["y" * 1000]}}]
    assert obj["00100020"] == {"vr": "LO", "Value": ["after"]}
    with pytest.raises(NotFound):
        find_bulk_element(read, "0040A730/0/0040A160")


def test_pixel_data_announced_when_not_read() -> None:
    ds = _read("CT_small.dcm", stop_before_pixels=True)
    assert 0x7FE00010 not in ds
    assert "7FE00010" not in dataset_to_json(ds)
    obj = dataset_to_json(ds, pixel_data_vr="OW")
    assert obj["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulkdata/7FE00010"}
    assert list(obj) == sorted(obj)
    full = dataset_to_json(_read("CT_small.dcm"))
    del full["FFFCFFFC"]  # trailing padding after the pixel data is not read either
    assert obj == full


def test_pixel_data_vr_does_not_override_present_pixel_data() -> None:
    obj = dataset_to_json(_read("CT_small.dcm"), pixel_data_vr="OB")
    assert obj["7FE00010"]["vr"] == "OW"


def test_pixel_data_vr_is_validated() -> None:
    with pytest.raises(InvalidArgument):
        dataset_to_json(Dataset(), pixel_data_vr="XX")


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm"])
def test_deferred_bulk_values_are_never_read(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    full = dataset_to_json(_read(name))
    read_tags: list[int] = []
    original = pydicom.filereader.read_deferred_data_element

    def spy(*args: Any, **kwargs: Any) -> Any:
        read_tags.append(int(args[-1].tag))
        return original(*args, **kwargs)

    monkeypatch.setattr(pydicom.filereader, "read_deferred_data_element", spy)
    ds = _read(name, defer_size=64)
    assert dataset_to_json(ds) == full
    assert 0x7FE00010 not in read_tags
    # Only inline values longer than defer_size are fetched, never bulk ones.
    assert all(not is_bulk_vr(tag, full[f"{tag:08X}"]["vr"], 65) for tag in read_tags)


# absolutize_bulkdata and dumps.


def test_absolutize_rewrites_relative_uris_without_mutating() -> None:
    obj: dict[str, Any] = {
        "7FE00010": {"vr": "OW", "BulkDataURI": "bulkdata/7FE00010"},
        "00480105": {
            "vr": "SQ",
            "Value": [{"00282000": {"vr": "OB", "BulkDataURI": "bulkdata/00480105/0/00282000"}}],
        },
        "00091010": {"vr": "OB", "BulkDataURI": "https://elsewhere/x"},
        "00100020": {"vr": "LO", "Value": ["id"]},
    }
    before = copy.deepcopy(obj)
    out = absolutize_bulkdata(obj, "https://h/v1/s/dicomWeb/studies/1/series/2/instances/3/")
    assert obj == before
    base = "https://h/v1/s/dicomWeb/studies/1/series/2/instances/3"
    assert out["7FE00010"]["BulkDataURI"] == f"{base}/bulkdata/7FE00010"
    nested = out["00480105"]["Value"][0]["00282000"]["BulkDataURI"]
    assert nested == f"{base}/bulkdata/00480105/0/00282000"
    assert out["00091010"]["BulkDataURI"] == "https://elsewhere/x"
    out["00100020"]["Value"].append("changed")
    assert obj["00100020"]["Value"] == ["id"]


def test_dumps_is_compact_utf8() -> None:
    obj = dataset_to_json(pydicom.dcmread(_charset_file("chrRuss.dcm")))
    data = dumps([obj])
    assert obj["00100010"]["Value"][0]["Alphabetic"].encode() in data
    assert b'":{"vr":' in data and b", " not in data.split(b"Value")[0]
    assert json.loads(data) == [obj]


def test_dumps_never_emits_nan() -> None:
    data = dumps([{"00700022": {"vr": "FL", "Value": [float("nan"), float("-inf"), 1.5]}}])
    assert data == b'[{"00700022":{"vr":"FL","Value":["NaN","-inf",1.5]}}]'


# find_bulk_element.


def test_find_top_level_and_file_meta_elements() -> None:
    ds = _read("CT_small.dcm")
    assert find_bulk_element(ds, "7FE00010").tag == 0x7FE00010
    assert find_bulk_element(ds, "7fe00010").tag == 0x7FE00010
    assert find_bulk_element(ds, "00020001").value == b"\x00\x01"


def test_find_nested_element() -> None:
    ds = Dataset()
    first, second = Dataset(), Dataset()
    first.add_new(0x00282000, "OB", b"icc1")
    second.add_new(0x00282000, "OB", b"icc2")
    ds.OpticalPathSequence = Sequence([first, second])
    read = _via_file(ds)
    assert find_bulk_element(read, "00480105/1/00282000").value == b"icc2"
    assert find_bulk_element(read, "00480105/0/00282000").value == b"icc1"


@pytest.mark.parametrize(
    "path",
    ["", "7FE0001", "7FE00010/", "/7FE00010", "00480105/x/00282000", "bulkdata/7FE00010", "0048"],
)
def test_find_rejects_malformed_paths(path: str) -> None:
    with pytest.raises(InvalidArgument):
        find_bulk_element(_read("CT_small.dcm"), path)


@pytest.mark.parametrize(
    "path",
    [
        "00282000",  # absent
        "00100010",  # present but inline metadata, not bulkdata
        "00480105/0/00282000",  # no such sequence
        "00100010/0/00282000",  # not a sequence
        "00101002/5/00100020",  # item index out of range
        "00101002/0/00100020",  # inline element inside a sequence
    ],
)
def test_find_reports_missing_elements(path: str) -> None:
    with pytest.raises(NotFound) as caught:
        find_bulk_element(_read("CT_small.dcm"), path)
    assert path in caught.value.message


# element_value_bytes.


def test_big_endian_pixel_data_comes_back_little_endian() -> None:
    big = _read("MR_small_bigendian.dcm")
    little = _read("MR_small.dcm")
    elem = find_bulk_element(big, "7FE00010")
    assert element_value_bytes(elem, bool(big.original_encoding[1])) == little.PixelData
    assert element_value_bytes(find_bulk_element(little, "7FE00010")) == little.PixelData


def test_numeric_values_are_packed_little_endian() -> None:
    assert element_value_bytes(DataElement(0x0040A0B0, "US", [1, 258])) == b"\x01\x00\x02\x01"
    assert element_value_bytes(DataElement(0x00700022, "FL", [1.5])) == struct.pack("<f", 1.5)
    assert element_value_bytes(DataElement(0x00186060, "FD", 2.0)) == struct.pack("<d", 2.0)
    assert element_value_bytes(DataElement(0x00111010, "SL", [-2])) == struct.pack("<i", -2)
    assert element_value_bytes(DataElement(0x00280009, "AT", [0x00181063])) == bytes.fromhex(
        "18006310"
    )


def test_big_endian_byte_values_are_swapped() -> None:
    data = struct.pack(">2f", 1.0, 2.0)
    assert element_value_bytes(DataElement(0x00660016, "OF", data), False) == struct.pack(
        "<2f", 1.0, 2.0
    )
    assert element_value_bytes(DataElement(0x00282000, "OB", b"\x01\x02"), False) == b"\x01\x02"


def test_value_bytes_edge_cases() -> None:
    assert element_value_bytes(DataElement(0x00282000, "OB", b"")) == b""
    assert element_value_bytes(DataElement(0x0040A0B0, "US", None)) == b""
    with pytest.raises(InvalidArgument):
        element_value_bytes(DataElement(0x00081140, "SQ", Sequence([Dataset()])))
    with pytest.raises(InvalidArgument):
        element_value_bytes(DataElement(0x00100020, "LO", "text"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
