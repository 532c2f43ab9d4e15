"""QIDO parameter parsing, Google's matching rules and includefield projection."""

from __future__ import annotations

import pytest

from shared.dicom import attributes
from shared.dicom.query import matches, name_tokens, parse_search, prefix_upper_bound
from shared.domain.records import DicomJson
from shared.domain.search import Condition, Level, MatchKind, SearchQuery
from shared.errors import InvalidArgument

PATIENT_NAME = "00100010"
PATIENT_ID = "00100020"
STUDY_DATE = "00080020"
STUDY_UID = "0020000D"


def one(level: Level, key: str, value: str, *extra: tuple[str, str]) -> Condition:
    query = parse_search(level, [(key, value), *extra])
    assert len(query.conditions) == 1
    return query.conditions[0]


def bad(level: Level, params: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_search(level, params)
    assert message in caught.value.message


def pn(alphabetic: str) -> DicomJson:
    return {PATIENT_NAME: {"vr": "PN", "Value": [{"Alphabetic": alphabetic}]}}


# --- defaults, scope and paging ----------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "limit"), [(Level.STUDY, 100), (Level.SERIES, 100), (Level.INSTANCE, 1000)]
)
def test_default_limit_per_level(level: Level, limit: int) -> None:
    query = parse_search(level, [])
    assert (query.limit, query.offset, query.conditions) == (limit, 0, ())
    assert not query.fuzzy and not query.include_all and query.include_tags == frozenset()


def test_scope_from_the_path_is_kept() -> None:
    query = parse_search(Level.INSTANCE, [], study_uid="1.2", series_uid="1.2.3")
    assert (query.study_uid, query.series_uid) == ("1.2", "1.2.3")


def test_limit_and_offset_are_read() -> None:
    query = parse_search(Level.STUDY, [("limit", "7"), ("offset", "20")])
    assert (query.limit, query.offset) == (7, 20)


def test_limit_zero_is_allowed() -> None:
    assert parse_search(Level.STUDY, [("limit", "0")]).limit == 0


@pytest.mark.parametrize(
    ("level", "maximum"), [(Level.STUDY, 5000), (Level.SERIES, 5000), (Level.INSTANCE, 50000)]
)
def test_limit_above_the_maximum_is_clamped(level: Level, maximum: int) -> None:
    assert parse_search(level, [("limit", str(maximum + 1))]).limit == maximum
    assert parse_search(level, [("limit", str(maximum))]).limit == maximum


def test_offset_up_to_one_million() -> None:
    assert parse_search(Level.STUDY, [("offset", "1000000")]).offset == 1_000_000
    bad(Level.STUDY, [("offset", "1000001")], "offset")


@pytest.mark.parametrize("value", ["-1", "abc", "", "1.5", "+3", " 3", "0x10", "\u0661"])
@pytest.mark.parametrize("name", ["limit", "offset"])
def test_limit_and_offset_must_be_non_negative_integers(name: str, value: str) -> None:
    bad(Level.STUDY, [(name, value)], name)


def test_fuzzymatching_values() -> None:
    assert parse_search(Level.STUDY, [("fuzzymatching", "true")]).fuzzy
    assert parse_search(Level.STUDY, [("fuzzymatching", "TRUE")]).fuzzy
    assert not parse_search(Level.STUDY, [("fuzzymatching", "false")]).fuzzy


@pytest.mark.parametrize("value", ["yes", "1", "", "on"])
def test_fuzzymatching_rejects_other_values(value: str) -> None:
    bad(Level.STUDY, [("fuzzymatching", value)], "fuzzymatching")


def test_timezoneoffset_is_not_supported() -> None:
    bad(Level.STUDY, [("timezoneoffset", "+0100")], "Timezone Offset From UTC is not supported")


@pytest.mark.parametrize(
    "params",
    [
        [("PatientID", "a"), ("PatientID", "b")],
        [("PatientID", "a"), ("00100020", "b")],
        [("PatientID", ""), ("PatientID", "")],
        [("limit", "1"), ("limit", "2")],
        [("offset", "1"), ("offset", "1")],
        [("fuzzymatching", "true"), ("fuzzymatching", "true")],
    ],
)
def test_repeated_key_is_rejected(params: list[tuple[str, str]]) -> None:
    bad(Level.INSTANCE, params, "more than once")


# --- matching keys -----------------------------------------------------------------------


STUDY_KEYS = [
    "StudyInstanceUID",
    "PatientName",
    "PatientID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDate",
]


@pytest.mark.parametrize("level", list(Level))
@pytest.mark.parametrize("keyword", STUDY_KEYS)
def test_study_keys_at_every_level(level: Level, keyword: str) -> None:
    value = "20240101" if keyword == "StudyDate" else "x"
    condition = one(level, keyword, value)
    assert condition.keyword == keyword
    assert condition.tag == attributes.tag_of(keyword)
    assert condition.level is Level.STUDY
    assert condition.kind is MatchKind.EXACT and condition.value == value


@pytest.mark.parametrize("level", [Level.SERIES, Level.INSTANCE])
@pytest.mark.parametrize("keyword", ["SeriesInstanceUID", "Modality"])
def test_series_keys(level: Level, keyword: str) -> None:
    condition = one(level, keyword, "MR")
    assert (condition.keyword, condition.level) == (keyword, Level.SERIES)


def test_sop_instance_uid_at_instance_level() -> None:
    condition = one(Level.INSTANCE, "SOPInstanceUID", "1.2.3")
    assert (condition.tag, condition.vr, condition.level) == ("00080018", "UI", Level.INSTANCE)


@pytest.mark.parametrize(
    ("level", "keyword", "message"),
    [
        (Level.STUDY, "Modality", "Modality is not a supported study level attribute"),
        (Level.STUDY, "SeriesInstanceUID", "SeriesInstanceUID is not a supported study level"),
        (Level.STUDY, "SOPInstanceUID", "SOPInstanceUID is not a supported study level"),
        (Level.SERIES, "SOPInstanceUID", "SOPInstanceUID is not a supported series level"),
        (Level.SERIES, "SeriesDescription", "SeriesDescription is not a supported series level"),
        (Level.INSTANCE, "SOPClassUID", "SOPClassUID is not a supported instance level attribute"),
        (Level.INSTANCE, "00080016", "SOPClassUID is not a supported instance level attribute"),
        (Level.STUDY, "ModalitiesInStudy", "ModalitiesInStudy is not a supported study level"),
        (Level.INSTANCE, "TimezoneOffsetFromUTC", "TimezoneOffsetFromUTC is not a supported"),
    ],
)
def test_unsupported_attribute(level: Level, keyword: str, message: str) -> None:
    bad(level, [(keyword, "x")], message)


@pytest.mark.parametrize("key", ["NotAKeyword", "patientid", "foo", "00091001", "0010002"])
def test_unknown_attribute(key: str) -> None:
    bad(Level.INSTANCE, [(key, "x")], f"unknown/unsupported QIDO attribute: {key}")


@pytest.mark.parametrize("key", ["00100020", "00100020".lower(), "0020000d", "0020000D"])
def test_keys_by_tag_in_any_case(key: str) -> None:
    condition = one(Level.STUDY, key, "v")
    assert condition.tag == key.upper()


def test_empty_value_is_universal_matching() -> None:
    assert parse_search(Level.STUDY, [("PatientID", ""), ("StudyDate", "")]).conditions == ()


def test_conditions_keep_request_order() -> None:
    query = parse_search(
        Level.INSTANCE, [("SOPInstanceUID", "1"), ("PatientID", "p"), ("Modality", "CT")]
    )
    assert [c.keyword for c in query.conditions] == ["SOPInstanceUID", "PatientID", "Modality"]


@pytest.mark.parametrize("value", ["1.2.*", "1.2.?", "1.2.3\\1.2.4", "Doe*"])
def test_wildcards_and_uid_lists_are_literal(value: str) -> None:
    condition = one(Level.INSTANCE, "SOPInstanceUID", value)
    assert condition.kind is MatchKind.EXACT and condition.value == value
    assert matches(condition, {"00080018": {"vr": "UI", "Value": [value]}})
    assert not matches(condition, {"00080018": {"vr": "UI", "Value": ["1.2.3"]}})


# --- StudyDate ---------------------------------------------------------------------------


def test_single_date_is_exact() -> None:
    condition = one(Level.STUDY, "StudyDate", "20240229")
    assert condition.kind is MatchKind.EXACT and condition.value == "20240229"


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("20240101-20241231", "20240101", "20241231"),
        ("20240101-20240101", "20240101", "20240101"),
        ("-20241231", None, "20241231"),
        ("20240101-", "20240101", None),
    ],
)
def test_date_ranges(value: str, low: str | None, high: str | None) -> None:
    condition = one(Level.STUDY, "StudyDate", value)
    assert condition.kind is MatchKind.RANGE
    assert (condition.low, condition.high) == (low, high)


@pytest.mark.parametrize(
    "value",
    [
        "2024010",
        "202401011",
        "2024-01-01",
        "20240230",
        "20231301",
        "abcdefgh",
        "-",
        "20240102-20240101",
        "20240101-20240102-20240103",
        "20240101--",
        "20240101-2024",
        "20240101 ",
    ],
)
def test_invalid_dates(value: str) -> None:
    bad(Level.STUDY, [("StudyDate", value)], "")


@pytest.mark.parametrize(
    ("value", "stored", "expected"),
    [
        ("20240101-20241231", "20240101", True),
        ("20240101-20241231", "20241231", True),
        ("20240101-20241231", "20231231", False),
        ("20240101-20241231", "20250101", False),
        ("-20240101", "19000101", True),
        ("-20240101", "20240102", False),
        ("20240101-", "20990101", True),
        ("20240101-", "20231231", False),
        ("20240101", "20240101", True),
        ("20240101", "20240102", False),
    ],
)
def test_date_matching(value: str, stored: str, expected: bool) -> None:
    condition = one(Level.STUDY, "StudyDate", value)
    assert matches(condition, {STUDY_DATE: {"vr": "DA", "Value": [stored]}}) is expected


def test_range_never_matches_a_missing_or_empty_date() -> None:
    condition = one(Level.STUDY, "StudyDate", "-20240101")
    assert not matches(condition, {})
    assert not matches(condition, {STUDY_DATE: {"vr": "DA"}})
    assert not matches(condition, {STUDY_DATE: {"vr": "DA", "Value": [""]}})


# --- exact matching ----------------------------------------------------------------------


def test_exact_is_case_sensitive() -> None:
    condition = one(Level.STUDY, "PatientID", "Abc")
    assert matches(condition, {PATIENT_ID: {"vr": "LO", "Value": ["Abc"]}})
    assert not matches(condition, {PATIENT_ID: {"vr": "LO", "Value": ["abc"]}})
    assert not matches(condition, {PATIENT_ID: {"vr": "LO", "Value": ["Abcd"]}})


def test_exact_against_missing_attribute_is_false() -> None:
    condition = one(Level.STUDY, "PatientID", "Abc")
    assert not matches(condition, {})
    assert not matches(condition, {PATIENT_ID: {"vr": "LO"}})


def test_exact_matches_any_value_of_a_multi_valued_attribute() -> None:
    condition = one(Level.SERIES, "Modality", "PT")
    assert matches(condition, {"00080060": {"vr": "CS", "Value": ["CT", "PT"]}})


def test_exact_person_name_compares_the_alphabetic_group() -> None:
    condition = one(Level.STUDY, "PatientName", "Doe^John")
    assert matches(condition, pn("Doe^John"))
    assert not matches(condition, pn("doe^john"))
    assert not matches(condition, pn("Doe"))
    ideographic = {PATIENT_NAME: {"vr": "PN", "Value": [{"Ideographic": "Doe^John"}]}}
    assert not matches(condition, ideographic)


def test_exact_referring_physician_name() -> None:
    condition = one(Level.STUDY, "ReferringPhysicianName", "Who^Doctor")
    stored = {"00080090": {"vr": "PN", "Value": [{"Alphabetic": "Who^Doctor"}]}}
    assert matches(condition, stored)


def test_person_name_without_fuzzymatching_is_exact() -> None:
    condition = one(Level.STUDY, "PatientName", "jo", ("fuzzymatching", "false"))
    assert condition.kind is MatchKind.EXACT
    assert not matches(condition, pn("John^Doe"))


# --- fuzzy matching ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("jo", True),
        ("Do", True),
        ("John Doe", True),
        ("JOHN", True),
        ("ohn", False),
        ("oe", False),
        ("xx jo", True),
        ("Johnny", False),
        ("doe^", True),
    ],
)
def test_fuzzy_examples_from_google(query: str, expected: bool) -> None:
    condition = one(Level.STUDY, "PatientName", query, ("fuzzymatching", "true"))
    assert condition.kind is MatchKind.FUZZY
    assert matches(condition, pn("John^Doe")) is expected


def test_fuzzymatching_may_come_after_the_name() -> None:
    query = parse_search(Level.STUDY, [("fuzzymatching", "true"), ("PatientName", "jo")])
    later = parse_search(Level.STUDY, [("PatientName", "jo"), ("fuzzymatching", "true")])
    assert query.conditions == later.conditions
    assert query.conditions[0].values == ("jo",)


def test_fuzzy_folds_accents_and_case() -> None:
    condition = one(Level.STUDY, "PatientName", "jose", ("fuzzymatching", "true"))
    assert matches(condition, pn("JOSÉ^García"))
    accented = one(Level.STUDY, "PatientName", "GARCÍA", ("fuzzymatching", "true"))
    assert matches(accented, pn("Garcia^Jose"))


def test_fuzzy_uses_every_component_group() -> None:
    condition = one(Level.STUDY, "PatientName", "山田", ("fuzzymatching", "true"))
    stored = {
        PATIENT_NAME: {
            "vr": "PN",
            "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}],
        }
    }
    assert matches(condition, stored)


def test_fuzzy_against_missing_name_is_false() -> None:
    condition = one(Level.STUDY, "PatientName", "jo", ("fuzzymatching", "true"))
    assert not matches(condition, {})


def test_fuzzy_query_without_tokens_is_universal() -> None:
    query = parse_search(Level.STUDY, [("PatientName", "^ ,"), ("fuzzymatching", "true")])
    assert query.conditions == ()


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ("Doe^John", ["doe", "john"]),
        ("Doe^John^^Dr.^", ["doe", "john", "dr."]),
        ("Smith-Jones, Anne", ["smith", "jones", "anne"]),
        ("Müller=ミュラー", ["muller", "ミュラー"]),
        ("  ÉLODIE   ", ["elodie"]),
        ("Straße", ["strasse"]),
        ("", []),
        ("^^", []),
    ],
)
def test_name_tokens(value: str, tokens: list[str]) -> None:
    assert name_tokens(value) == tokens


def test_prefix_upper_bound() -> None:
    assert prefix_upper_bound("jo") == "jp"
    assert prefix_upper_bound("a\U0010ffff") == "b"
    assert prefix_upper_bound("\ud7ff") == "\ue000"
    assert prefix_upper_bound("") is None


# --- conditions of kinds Google lacks (for future use) -----------------------------------


def test_wildcard_and_uid_list_kinds_match() -> None:
    wildcard = Condition("00100020", "PatientID", "LO", Level.STUDY, MatchKind.WILDCARD, "A*b?")
    assert matches(wildcard, {PATIENT_ID: {"vr": "LO", "Value": ["Axxbc"]}})
    assert not matches(wildcard, {PATIENT_ID: {"vr": "LO", "Value": ["Axxb"]}})
    uids = Condition(
        STUDY_UID, "StudyInstanceUID", "UI", Level.STUDY, MatchKind.UID_LIST, values=("1.2", "1.3")
    )
    assert matches(uids, {STUDY_UID: {"vr": "UI", "Value": ["1.3"]}})
    assert not matches(uids, {STUDY_UID: {"vr": "UI", "Value": ["1.4"]}})


# --- includefield ------------------------------------------------------------------------


def test_includefield_lists_keywords_and_tags_repeatedly() -> None:
    query = parse_search(
        Level.STUDY,
        [("includefield", "StudyDescription,00081030"), ("includefield", " 0008103e , Rows")],
    )
    assert query.include_tags == frozenset({"00081030", "0008103E", "00280010"})
    assert not query.include_all


def test_includefield_all() -> None:
    query = parse_search(Level.SERIES, [("includefield", "all"), ("includefield", "Rows")])
    assert query.include_all and query.include_tags == frozenset({"00280010"})


def test_includefield_accepts_private_tags() -> None:
    query = parse_search(Level.INSTANCE, [("includefield", "00091001")])
    assert query.include_tags == frozenset({"00091001"})


@pytest.mark.parametrize("value", ["NotAKeyword", "AvailableTransferSyntaxUID", "Rows,bogus"])
def test_includefield_unknown(value: str) -> None:
    bad(Level.INSTANCE, [("includefield", value)], "unknown/unsupported QIDO attribute: ")


def test_includefield_empty_items_are_ignored() -> None:
    assert parse_search(Level.STUDY, [("includefield", ",,")]).include_tags == frozenset()


# --- attribute sets and projection -------------------------------------------------------


def element(vr: str, value: object) -> dict[str, object]:
    return {"vr": vr, "Value": [value]}


FULL: DicomJson = {
    "00080005": element("CS", "ISO_IR 192"),
    "00080016": element("UI", "1.2.840.10008.5.1.4.1.1.2"),
    "00080018": element("UI", "1.2.3.4.5"),
    "00080020": element("DA", "20240101"),
    "00080050": element("SH", "ACC1"),
    "00080060": element("CS", "CT"),
    "00080080": element("LO", "Hospital"),
    "00081030": element("LO", "Chest"),
    "0008103E": element("LO", "Axial"),
    "00100010": element("PN", {"Alphabetic": "Doe^John"}),
    "00100020": element("LO", "PID1"),
    "00180050": element("DS", 1.5),
    "0020000D": element("UI", "1.2.3"),
    "0020000E": element("UI", "1.2.3.4"),
    "00200011": element("IS", 3),
    "00200013": element("IS", 7),
    "00280010": element("US", 512),
    "7FE00010": {"vr": "OW", "BulkDataURI": "bulkdata/7FE00010"},
}


def test_attribute_sets() -> None:
    assert "00100010" in attributes.STUDY_DEFAULT
    assert "00080080" in attributes.STUDY_ALL_EXTRA
    assert "00200011" in attributes.SERIES_ALL_EXTRA
    assert "00080018" in attributes.INSTANCE_DEFAULT
    assert len(attributes.STUDY_DEFAULT) == 13 and len(attributes.SERIES_DEFAULT) == 8
    assert len(attributes.INSTANCE_DEFAULT) == 10 and len(attributes.STUDY_ALL_EXTRA) == 23


def test_split_levels() -> None:
    study, series = attributes.split_levels(FULL)
    assert set(study) == {
        "00080005", "00080020", "00080050", "00080080", "00081030", "00100010", "00100020",
        "0020000D",
    }  # fmt: skip
    assert set(series) == {"00080005", "00080060", "0008103E", "0020000E", "00200011"}
    assert study["00100020"] is FULL["00100020"]


def test_split_levels_of_empty_metadata() -> None:
    assert attributes.split_levels({}) == ({}, {})


def test_project_study_defaults() -> None:
    projected = attributes.project(FULL, SearchQuery(Level.STUDY))
    assert list(projected) == sorted(projected)
    assert set(projected) == {
        "00080005", "00080020", "00080050", "00100010", "00100020", "0020000D",
    }  # fmt: skip


def test_project_study_all_and_includefield() -> None:
    query = SearchQuery(Level.STUDY, include_all=True, include_tags=frozenset({"00280010"}))
    projected = attributes.project(FULL, query)
    assert {"00080080", "00081030", "00280010"} <= set(projected)
    assert "00080060" not in projected


def test_project_series_keeps_study_uid() -> None:
    projected = attributes.project(FULL, SearchQuery(Level.SERIES))
    assert set(projected) == {"00080005", "00080060", "0008103E", "0020000D", "0020000E"}
    everything = attributes.project(FULL, SearchQuery(Level.SERIES, include_all=True))
    assert "00200011" in everything and "00100010" not in everything


def test_project_instance_defaults_and_uids() -> None:
    projected = attributes.project(FULL, SearchQuery(Level.INSTANCE))
    assert set(projected) == {
        "00080005", "00080016", "00080018", "0020000D", "0020000E", "00200013", "00280010",
    }  # fmt: skip


def test_project_instance_all_is_everything_but_pixel_data() -> None:
    projected = attributes.project(FULL, SearchQuery(Level.INSTANCE, include_all=True))
    assert set(projected) == set(FULL) - {"7FE00010"}
    named = SearchQuery(Level.INSTANCE, include_tags=frozenset({"7FE00010", "00180050"}))
    assert set(attributes.project(FULL, named)) >= {"00180050"}
    assert "7FE00010" not in attributes.project(FULL, named)


def test_project_never_invents_attributes() -> None:
    assert attributes.project({}, SearchQuery(Level.STUDY, include_all=True)) == {}
