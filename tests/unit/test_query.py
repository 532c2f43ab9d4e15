"""QIDO parameter parsing, Google's matching rules, the standard superset and projection."""

from __future__ import annotations

import pytest

from shared.dicom import attributes
from shared.dicom.query import (
    datetime_bounds,
    is_prefix_pattern,
    literal_prefix,
    matches,
    name_token_hint,
    name_tokens,
    parse_search,
    prefix_upper_bound,
    time_bounds,
)
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
        # Superset: keys of a lower level keep Google's 400 and wording.
        (Level.STUDY, "SOPClassUID", "SOPClassUID is not a supported study level attribute"),
        (Level.SERIES, "00080016", "SOPClassUID is not a supported series level attribute"),
        (Level.STUDY, "SeriesDescription", "SeriesDescription is not a supported study level"),
        (Level.SERIES, "Rows", "Rows is not a supported series level attribute"),
        (Level.STUDY, "NumberOfSeriesRelatedInstances", "is not a supported study level"),
        (Level.INSTANCE, "TimezoneOffsetFromUTC", "TimezoneOffsetFromUTC is not a supported"),
        (Level.STUDY, "SpecificCharacterSet", "SpecificCharacterSet is not a supported study"),
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


# Google compares '*' and '?' in a UID literally; so does the standard (no wild cards on UI).
# A backslash used to be literal too: it is now UID list matching (see the superset below).
@pytest.mark.parametrize("value", ["1.2.*", "1.2.?", "Doe*"])
def test_wildcards_in_uids_are_literal(value: str) -> None:
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


# --- conditions of kinds Google lacks, built by hand -------------------------------------


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


# --- superset: any attribute of the level ------------------------------------------------


@pytest.mark.parametrize(
    ("level", "keyword", "home"),
    [
        (Level.STUDY, "StudyDescription", Level.STUDY),
        (Level.STUDY, "PatientBirthDate", Level.STUDY),
        (Level.STUDY, "ModalitiesInStudy", Level.STUDY),
        (Level.STUDY, "NumberOfStudyRelatedInstances", Level.STUDY),
        (Level.SERIES, "SeriesDescription", Level.SERIES),
        (Level.SERIES, "SeriesNumber", Level.SERIES),
        (Level.SERIES, "NumberOfSeriesRelatedInstances", Level.SERIES),
        (Level.SERIES, "StudyDescription", Level.STUDY),
        (Level.INSTANCE, "SOPClassUID", Level.INSTANCE),
        (Level.INSTANCE, "00080016", Level.INSTANCE),
        (Level.INSTANCE, "InstanceNumber", Level.INSTANCE),
        (Level.INSTANCE, "ImageComments", Level.INSTANCE),
        (Level.INSTANCE, "SeriesDescription", Level.SERIES),
        (Level.INSTANCE, "PatientID", Level.STUDY),
    ],
)
def test_any_attribute_of_the_level_or_above(level: Level, keyword: str, home: Level) -> None:
    condition = one(level, keyword, "19700101" if keyword.endswith("Date") else "1")
    assert condition.level is home
    assert attributes.level_of(condition.tag) is home


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("ReferencedStudySequence", "sequence matching is not supported"),
        ("ProcedureCodeSequence", "ProcedureCodeSequence is a sequence"),
        ("ReferencedSeriesSequence.SeriesInstanceUID", "sequence matching is not supported"),
        ("0008110D.00081150", "sequence matching is not supported"),
        ("PixelData", "PixelData has VR OB, which cannot be used for matching"),
        ("AvailableTransferSyntaxUID", "unknown/unsupported QIDO attribute"),
    ],
)
def test_keys_that_cannot_be_matched(key: str, message: str) -> None:
    bad(Level.INSTANCE, [(key, "x")], message)


def test_sequence_key_is_refused_even_when_empty() -> None:
    bad(Level.INSTANCE, [("ReferencedStudySequence", "")], "sequence")


# --- superset: wild card matching --------------------------------------------------------

WILDCARD_KEYS = [  # one keyword per wild card VR
    ("AE", "RetrieveAETitle"),
    ("CS", "Modality"),
    ("LO", "PatientID"),
    ("LT", "ImageComments"),
    ("PN", "PatientName"),
    ("SH", "AccessionNumber"),
    ("ST", "InstitutionAddress"),
    ("UC", "StrainDescription"),
    ("UR", "RetrieveURI"),
    ("UT", "TextValue"),
]


@pytest.mark.parametrize(("vr", "keyword"), WILDCARD_KEYS)
@pytest.mark.parametrize("value", ["A*", "*b", "a?c", "?", "x*y?z"])
def test_wildcards_on_text_vrs(vr: str, keyword: str, value: str) -> None:
    condition = one(Level.INSTANCE, keyword, value)
    assert (condition.vr, condition.kind, condition.value) == (vr, MatchKind.WILDCARD, value)


@pytest.mark.parametrize("value", ["*", "**", "***"])
@pytest.mark.parametrize("keyword", ["PatientName", "PatientID", "Modality", "StudyDescription"])
def test_only_stars_is_universal_matching(keyword: str, value: str) -> None:
    assert parse_search(Level.INSTANCE, [(keyword, value)]).conditions == ()


def test_only_stars_is_universal_with_fuzzymatching() -> None:
    assert (
        parse_search(Level.STUDY, [("PatientName", "*"), ("fuzzymatching", "true")]).conditions
        == ()
    )


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("InstanceNumber", "1*"), ("StudyDate", "2024*"), ("StudyTime", "10*"), ("Rows", "?")],
)
def test_wildcards_on_other_vrs_are_invalid(keyword: str, value: str) -> None:
    bad(Level.INSTANCE, [(keyword, value)], keyword)


def lo(value: object, *more: object) -> DicomJson:
    return {PATIENT_ID: {"vr": "LO", "Value": [value, *more]}}


@pytest.mark.parametrize(
    ("pattern", "stored", "expected"),
    [
        ("PID*", "PID-1", True),
        ("PID*", "PID", True),
        ("PID*", "pid-1", False),  # case-sensitive outside PN
        ("*-1", "PID-1", True),
        ("*-1", "PID-12", False),  # the whole value must match
        ("P?D-1", "PID-1", True),
        ("P?D-1", "PD-1", False),  # '?' is exactly one character
        ("P*1", "P1", True),
        ("a.b*", "a.bc", True),
        ("a.b*", "axbc", False),  # regex characters are literal
        ("(x)+*", "(x)+y", True),
        ("line?two", "line\ntwo", True),
    ],
)
def test_wildcard_matching(pattern: str, stored: str, expected: bool) -> None:
    condition = one(Level.STUDY, "PatientID", pattern)
    assert matches(condition, lo(stored)) is expected


def test_wildcard_matches_any_value_and_never_a_missing_one() -> None:
    condition = one(Level.STUDY, "PatientID", "B*")
    assert matches(condition, lo("A", "B2"))
    assert not matches(condition, {})
    assert not matches(condition, {PATIENT_ID: {"vr": "LO"}})
    assert not matches(one(Level.STUDY, "PatientID", "?*"), lo(""))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("doe*", True),  # PN wild cards ignore case
        ("DOE^J?HN", True),
        ("*john", True),
        ("john*", False),  # the whole group string, not one component
        ("*^jo*", True),
        ("山田*", True),  # every component group is tried
        ("*太郎", True),
        ("やまだ*", True),
        ("yamada*", False),
    ],
)
def test_person_name_wildcards(pattern: str, expected: bool) -> None:
    stored = {
        PATIENT_NAME: {
            "vr": "PN",
            "Value": [
                {"Alphabetic": "Doe^John", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
            ],
        }
    }
    assert matches(one(Level.STUDY, "PatientName", pattern), stored) is expected


def test_person_name_wildcards_keep_accents() -> None:
    assert matches(one(Level.STUDY, "PatientName", "*josé"), pn("García^José"))
    assert matches(one(Level.STUDY, "PatientName", "GARCÍA*"), pn("García^José"))
    assert not matches(one(Level.STUDY, "PatientName", "*jose"), pn("García^José"))


def test_person_name_exact_stays_google_exact() -> None:
    condition = one(Level.STUDY, "PatientName", "Doe^John")
    assert condition.kind is MatchKind.EXACT
    assert not matches(condition, pn("DOE^JOHN"))


@pytest.mark.parametrize(
    ("query", "expected"),
    [("*oe", True), ("j?hn", True), ("d*", True), ("x*", False), ("*x", False), ("?oe", True)],
)
def test_fuzzy_tokens_with_wildcards_match_the_start_of_a_token(query: str, expected: bool) -> None:
    condition = one(Level.STUDY, "PatientName", query, ("fuzzymatching", "true"))
    assert condition.kind is MatchKind.FUZZY
    assert matches(condition, pn("John^Doe")) is expected


def test_literal_prefix_and_prefix_patterns() -> None:
    assert literal_prefix("AB?C*") == "AB"
    assert literal_prefix("*A") == ""
    assert literal_prefix("ABC") == "ABC"
    assert is_prefix_pattern("AB*") and is_prefix_pattern("AB**")
    assert (
        not is_prefix_pattern("A?B*")
        and not is_prefix_pattern("AB")
        and not is_prefix_pattern("*A*")
    )


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        ("Doe*", ("doe", True)),
        ("doe^j*", ("doe", True)),
        ("^Jo*", ("jo", True)),
        ("Mü?ler*", ("mu", True)),
        ("*doe*", ("doe", False)),
        ("*Mül*er", ("mul", False)),
        ("?ohn^Smith*", ("smith", False)),
        ("*", None),
        ("*^*", None),
        ("?", None),
    ],
)
def test_name_token_hint(pattern: str, hint: tuple[str, bool] | None) -> None:
    assert name_token_hint(pattern) == hint


# --- superset: UID lists -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "values"),
    [
        ("1.2\\1.3", ("1.2", "1.3")),
        ("1.2,1.3", ("1.2", "1.3")),
        ("1.2\\1.3,1.4", ("1.2", "1.3", "1.4")),
        ("1.2\\1.2", ("1.2",)),
        ("1.2, 1.3", ("1.2", "1.3")),
    ],
)
@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"])
def test_uid_lists(keyword: str, value: str, values: tuple[str, ...]) -> None:
    condition = one(Level.INSTANCE, keyword, value)
    assert (condition.kind, condition.values) == (MatchKind.UID_LIST, values)


@pytest.mark.parametrize("value", ["1.2\\", "\\1.2", "1.2,,1.3", ","])
def test_uid_list_with_an_empty_item(value: str) -> None:
    bad(Level.INSTANCE, [("SOPInstanceUID", value)], "empty item")


def test_uid_list_matching() -> None:
    condition = one(Level.INSTANCE, "SOPClassUID", "1.2.3,1.2.4")
    assert matches(condition, {"00080016": {"vr": "UI", "Value": ["1.2.4"]}})
    assert not matches(condition, {"00080016": {"vr": "UI", "Value": ["1.2.5"]}})
    assert not matches(condition, {})


@pytest.mark.parametrize("value", ["CT,MR", "CT\\MR", "CT, MR"])
def test_modalities_in_study_takes_a_list(value: str) -> None:
    condition = one(Level.STUDY, "ModalitiesInStudy", value)
    assert (condition.kind, condition.values, condition.level) == (
        MatchKind.UID_LIST, ("CT", "MR"), Level.STUDY,
    )  # fmt: skip
    assert matches(condition, {"00080061": {"vr": "CS", "Value": ["MR", "SR"]}})
    assert not matches(condition, {"00080061": {"vr": "CS", "Value": ["US"]}})


def test_modalities_in_study_single_value_and_wildcard() -> None:
    stored = {"00080061": {"vr": "CS", "Value": ["CT", "PT"]}}
    assert matches(one(Level.STUDY, "ModalitiesInStudy", "PT"), stored)
    assert matches(one(Level.STUDY, "ModalitiesInStudy", "P?"), stored)
    assert not matches(one(Level.STUDY, "ModalitiesInStudy", "MR"), stored)


def test_other_text_keys_keep_a_backslash_literal() -> None:
    condition = one(Level.SERIES, "Modality", "CT\\MR")
    assert condition.kind is MatchKind.EXACT and condition.value == "CT\\MR"


# --- superset: DA, TM and DT ranges on any attribute ---------------------------------------


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("19700101-19801231", "19700101", "19801231"),
        ("-19800101", None, "19800101"),
        ("19700101-", "19700101", None),
    ],
)
def test_date_ranges_on_any_date(value: str, low: str | None, high: str | None) -> None:
    condition = one(Level.STUDY, "PatientBirthDate", value)
    assert (condition.kind, condition.low, condition.high) == (MatchKind.RANGE, low, high)


def test_other_dates_match_like_study_date() -> None:
    birth = "00100030"
    single = one(Level.STUDY, "PatientBirthDate", "19700101")
    assert single.kind is MatchKind.EXACT
    assert matches(single, {birth: {"vr": "DA", "Value": ["19700101"]}})
    ranged = one(Level.INSTANCE, "AcquisitionDate", "20240101-20240131")
    assert matches(ranged, {"00080022": {"vr": "DA", "Value": ["20240115"]}})
    assert not matches(ranged, {"00080022": {"vr": "DA", "Value": ["20240201"]}})
    bad(Level.STUDY, [("PatientBirthDate", "19701301")], "invalid PatientBirthDate date")
    bad(Level.SERIES, [("SeriesDate", "20240102-20240101")], "invalid SeriesDate range")


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        ("10", ("100000.000000", "105959.999999")),
        ("1015", ("101500.000000", "101559.999999")),
        ("101500", ("101500.000000", "101500.999999")),
        ("101500.1", ("101500.100000", "101500.199999")),
        ("101500.123456", ("101500.123456", "101500.123456")),
        ("235960", ("235960.000000", "235960.999999")),  # leap second
        ("24", None),
        ("1060", None),
        ("101", None),
        ("101500.", None),
        ("101500.1234567", None),
        ("10:15", None),
        ("", None),
    ],
)
def test_time_bounds(text: str, bounds: tuple[str, str] | None) -> None:
    assert time_bounds(text) == bounds


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("10", "100000.000000", "105959.999999"),
        ("0800-1200", "080000.000000", "120059.999999"),
        ("-1015", None, "101559.999999"),
        ("1015-", "101500.000000", None),
        ("1030-10", "103000.000000", "105959.999999"),
        ("101500.123-101500.124", "101500.123000", "101500.124999"),
    ],
)
def test_time_conditions(value: str, low: str | None, high: str | None) -> None:
    condition = one(Level.STUDY, "StudyTime", value)
    assert (condition.kind, condition.low, condition.high) == (MatchKind.RANGE, low, high)


@pytest.mark.parametrize("value", ["2300-0100", "25", "10-11-12", "-", "ab", "10 "])
def test_invalid_times(value: str) -> None:
    bad(Level.STUDY, [("StudyTime", value)], "invalid StudyTime")


def test_time_range_across_midnight_is_refused() -> None:
    bad(Level.STUDY, [("StudyTime", "2300-0100")], "cannot cross midnight")


@pytest.mark.parametrize(
    ("value", "stored", "expected"),
    [
        ("10", "101530", True),
        ("10", "1059", True),
        ("10", "110000", False),
        ("10", "09", False),
        ("1015", "10:15:30", True),  # ACR-NEMA separators in stored values
        ("101500", "101500.75", True),
        ("101500.7", "101500.75", True),
        ("101500.7", "101500.8", False),
        ("0800-1200", "120059.5", True),
        ("0800-1200", "1201", False),
        ("0800-1200", "08", True),  # a stored value counts as its earliest instant
        ("-0800", "075959.999999", True),
        ("1200-", "235959", True),
        ("10", "junk", False),
        ("10", "", False),
    ],
)
def test_time_matching(value: str, stored: str, expected: bool) -> None:
    condition = one(Level.STUDY, "StudyTime", value)
    assert matches(condition, {"00080030": {"vr": "TM", "Value": [stored]}}) is expected


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        ("2024", ("20240101000000.000000", "20241231235959.999999")),
        ("202402", ("20240201000000.000000", "20240229235959.999999")),
        ("20230228", ("20230228000000.000000", "20230228235959.999999")),
        ("2024010112", ("20240101120000.000000", "20240101125959.999999")),
        ("20240101123456.5", ("20240101123456.500000", "20240101123456.599999")),
        ("20240101120000+0100", ("20240101110000.000000", "20240101110000.999999")),
        ("20240101003000-0130", ("20240101020000.000000", "20240101020000.999999")),
        ("2024+0100", ("20231231230000.000000", "20241231225959.999999")),
        ("20241301", None),
        ("20240230", None),
        ("202401011", None),
        ("20240101+1500", None),
        ("20240101+0160", None),
        ("0000", None),
        ("2024-01-01", None),
    ],
)
def test_datetime_bounds(text: str, bounds: tuple[str, str] | None) -> None:
    assert datetime_bounds(text) == bounds


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("20240101", "20240101000000.000000", "20240101235959.999999"),
        ("20240101-20240131", "20240101000000.000000", "20240131235959.999999"),
        ("2024-2025", "20240101000000.000000", "20251231235959.999999"),
        ("-20240101", None, "20240101235959.999999"),
        ("20240101-", "20240101000000.000000", None),
        # A '-' that cannot end a valid range starts a UTC offset.
        ("20240101120000-0500", "20240101170000.000000", "20240101170000.999999"),
        ("20240101120000-0500-", "20240101170000.000000", None),
        (
            "20240101000000+0100-20240101000000-0100",
            "20231231230000.000000",
            "20240101010000.999999",
        ),
    ],
)
def test_datetime_conditions(value: str, low: str | None, high: str | None) -> None:
    condition = one(Level.INSTANCE, "AcquisitionDateTime", value)
    assert (condition.kind, condition.low, condition.high) == (MatchKind.RANGE, low, high)


@pytest.mark.parametrize("value", ["20240102-20240101", "2024013", "-", "20241301-", "x"])
def test_invalid_datetimes(value: str) -> None:
    bad(Level.INSTANCE, [("AcquisitionDateTime", value)], "invalid AcquisitionDateTime")


@pytest.mark.parametrize(
    ("value", "stored", "expected"),
    [
        ("202401", "20240115103000", True),
        ("202401", "20240201", False),
        ("20240101-20240131", "20240131235959.999", True),
        ("-2023", "20240101003000+0100", True),  # 2023-12-31 23:30 UTC
        ("2024", "20240101003000+0100", False),
        ("20240101120000-0500", "20240101170000", True),  # stored without offset: UTC
        ("20240101", "garbage", False),
    ],
)
def test_datetime_matching(value: str, stored: str, expected: bool) -> None:
    condition = one(Level.INSTANCE, "AcquisitionDateTime", value)
    assert matches(condition, {"0008002A": {"vr": "DT", "Value": [stored]}}) is expected


# --- superset: numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "vr", "value", "stored", "expected"),
    [
        ("InstanceNumber", "IS", "7", 7, True),
        ("InstanceNumber", "IS", "+007", 7, True),
        ("InstanceNumber", "IS", "7", "7", True),  # IS kept as text in JSON
        ("InstanceNumber", "IS", "7", 8, False),
        ("InstanceNumber", "IS", "-1", -1, True),
        ("SliceThickness", "DS", "1.50", 1.5, True),
        ("SliceThickness", "DS", "2", 2.0, True),
        ("SliceThickness", "DS", "1e1", 10, True),
        ("SliceThickness", "DS", "1.5", "n/a", False),
        ("Rows", "US", "512", 512, True),
        ("Rows", "US", "512", 256, False),
        ("PixelPaddingValue", "US", "5", 5, True),
    ],
)
def test_numbers_compare_as_numbers(
    keyword: str, vr: str, value: str, stored: object, expected: bool
) -> None:
    condition = one(Level.INSTANCE, keyword, value)
    assert condition.kind is MatchKind.EXACT and condition.vr == vr
    tag = attributes.tag_of(keyword)
    assert matches(condition, {tag: {"vr": vr, "Value": [stored]}}) is expected
    assert not matches(condition, {})


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("InstanceNumber", "1.5"),
        ("InstanceNumber", "seven"),
        ("InstanceNumber", "1-2"),
        ("SliceThickness", "nan"),
        ("SliceThickness", "1,5"),
        ("Rows", "0x10"),
    ],
)
def test_invalid_numbers(keyword: str, value: str) -> None:
    bad(Level.INSTANCE, [(keyword, value)], f"invalid {keyword}")


# --- computed attributes and matched keys in the projection -------------------------------

COMPUTED_RESULT: DicomJson = {
    **FULL,
    "00080061": element("CS", "CT"),
    "00080062": element("UI", "1.2.840.10008.5.1.4.1.1.2"),
    "00201206": element("IS", 1),
    "00201208": element("IS", 2),
    "00201209": element("IS", 2),
}
COMPUTED_TAGS = {"00080061", "00080062", "00201206", "00201208", "00201209"}


@pytest.mark.parametrize("level", list(Level))
def test_computed_attributes_are_not_returned_by_default_nor_with_all(level: Level) -> None:
    assert not COMPUTED_TAGS & set(attributes.project(COMPUTED_RESULT, SearchQuery(level)))
    everything = attributes.project(COMPUTED_RESULT, SearchQuery(level, include_all=True))
    assert not COMPUTED_TAGS & set(everything)


def test_computed_attributes_are_returned_when_named() -> None:
    query = parse_search(
        Level.STUDY, [("includefield", "ModalitiesInStudy,NumberOfStudyRelatedInstances")]
    )
    assert {"00080061", "00201208"} <= set(attributes.project(COMPUTED_RESULT, query))
    assert attributes.computed_tags(query) == frozenset({"00080061", "00201208"})
    instance = parse_search(Level.INSTANCE, [("includefield", "all,00201209")])
    projected = attributes.project(COMPUTED_RESULT, instance)
    assert "00201209" in projected and "00080061" not in projected


def test_computed_attributes_are_returned_when_matched_at_the_level() -> None:
    study = parse_search(Level.STUDY, [("ModalitiesInStudy", "CT")])
    assert "00080061" in attributes.project(COMPUTED_RESULT, study)
    assert attributes.computed_tags(study) == frozenset({"00080061"})
    series = parse_search(Level.SERIES, [("ModalitiesInStudy", "CT")])
    assert "00080061" not in attributes.project(COMPUTED_RESULT, series)
    assert attributes.computed_tags(series) == frozenset({"00080061"})  # needed to match


def test_series_count_is_not_computed_for_studies() -> None:
    query = parse_search(Level.STUDY, [("includefield", "NumberOfSeriesRelatedInstances")])
    assert attributes.computed_tags(query) == frozenset()


def test_matched_keys_of_the_level_are_returned() -> None:
    study = parse_search(Level.STUDY, [("StudyDescription", "Ch*")])
    assert "00081030" in attributes.project(FULL, study)
    instance = parse_search(Level.INSTANCE, [("SliceThickness", "1.5"), ("PatientID", "PID1")])
    projected = attributes.project(FULL, instance)
    assert "00180050" in projected
    assert "00100020" not in projected  # a parent level's key, as Google: not returned


def test_level_of() -> None:
    assert attributes.level_of("00100020") is Level.STUDY
    assert attributes.level_of("00080061") is Level.STUDY
    assert attributes.level_of("0008103E") is Level.SERIES
    assert attributes.level_of("00201209") is Level.SERIES
    assert attributes.level_of("00080016") is Level.INSTANCE
    assert attributes.level_of("00091001") is Level.INSTANCE
