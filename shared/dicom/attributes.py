"""QIDO attribute sets per level, level splitting and includefield projection.

Google's sets decide what a search returns. Beyond Google, the level of any attribute is known
(`level_of`), and the computed attributes of PS3.4 C.3.4 (ModalitiesInStudy, NumberOf...) are
returned when named in includefield or used as a matching key, never by default nor with
`includefield=all` (Google returns none of them; PS3.18 leaves 'all' to the origin server).
"""

from __future__ import annotations

from pydicom import datadict

from shared.domain.records import DicomJson
from shared.domain.search import Level, SearchQuery


def tag_of(keyword: str) -> str:
    """The 8 upper-case hex digit tag of a DICOM keyword; KeyError if pydicom does not know it."""
    tag = datadict.tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def _tags(keywords: str) -> frozenset[str]:
    return frozenset(tag_of(keyword) for keyword in keywords.split())


STUDY_UID = tag_of("StudyInstanceUID")
SERIES_UID = tag_of("SeriesInstanceUID")
SOP_UID = tag_of("SOPInstanceUID")

# Spec 3.4: returned by default per level.
STUDY_DEFAULT = _tags(
    "SpecificCharacterSet StudyDate StudyTime AccessionNumber InstanceAvailability "
    "ReferringPhysicianName TimezoneOffsetFromUTC PatientName PatientID PatientBirthDate "
    "PatientSex StudyInstanceUID StudyID"
)
SERIES_DEFAULT = _tags(
    "SpecificCharacterSet Modality TimezoneOffsetFromUTC SeriesDescription SeriesInstanceUID "
    "PerformedProcedureStepStartDate PerformedProcedureStepStartTime RequestAttributesSequence"
)
INSTANCE_DEFAULT = _tags(
    "SpecificCharacterSet SOPClassUID SOPInstanceUID InstanceAvailability "
    "TimezoneOffsetFromUTC InstanceNumber Rows Columns BitsAllocated NumberOfFrames"
)

# Spec 3.4: added by includefield=all (instances: every attribute of the instance).
STUDY_ALL_EXTRA = _tags(
    "PersonIdentificationCodeSequence PersonAddress PersonTelephoneNumbers "
    "PersonTelecomInformation InstitutionName InstitutionAddress InstitutionCodeSequence "
    "ReferringPhysicianIdentificationSequence ConsultingPhysicianName "
    "ConsultingPhysicianIdentificationSequence IssuerOfAccessionNumberSequence "
    "LocalNamespaceEntityID UniversalEntityID UniversalEntityIDType StudyDescription "
    "PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence NameOfPhysiciansReadingStudy "
    "PhysiciansReadingStudyIdentificationSequence RequestingServiceCodeSequence "
    "ReferencedStudySequence ProcedureCodeSequence ReasonForPerformedProcedureCodeSequence"
)
SERIES_ALL_EXTRA = _tags("SeriesNumber Laterality SeriesDate SeriesTime")

STUDY_ATTRIBUTES = STUDY_DEFAULT | STUDY_ALL_EXTRA
SERIES_ATTRIBUTES = SERIES_DEFAULT | SERIES_ALL_EXTRA

# PS3.4 C.3.4: derived by the index from the stored series and instances, never stored.
COMPUTED_STUDY = _tags(
    "ModalitiesInStudy SOPClassesInStudy NumberOfStudyRelatedSeries NumberOfStudyRelatedInstances"
)
COMPUTED_SERIES = _tags("NumberOfSeriesRelatedInstances")
COMPUTED = COMPUTED_STUDY | COMPUTED_SERIES

# Google never returns pixel data from a search, even with includefield=all or by name.
NEVER_RETURNED = _tags("PixelData FloatPixelData DoubleFloatPixelData")

_UIDS_AT = {
    Level.STUDY: frozenset({STUDY_UID}),
    Level.SERIES: frozenset({STUDY_UID, SERIES_UID}),
    Level.INSTANCE: frozenset({STUDY_UID, SERIES_UID, SOP_UID}),
}
_DEFAULT_AT = {
    Level.STUDY: STUDY_DEFAULT,
    Level.SERIES: SERIES_DEFAULT,
    Level.INSTANCE: INSTANCE_DEFAULT,
}
_ALL_AT = {
    Level.STUDY: STUDY_ATTRIBUTES,
    Level.SERIES: SERIES_ATTRIBUTES,
}


_COMPUTED_AT = {
    Level.STUDY: COMPUTED_STUDY,
    Level.SERIES: COMPUTED,
    Level.INSTANCE: COMPUTED,
}


def _pick(metadata: DicomJson, tags: frozenset[str]) -> DicomJson:
    return {tag: element for tag, element in metadata.items() if tag in tags}


def split_levels(metadata: DicomJson) -> tuple[DicomJson, DicomJson]:
    """The study and series attributes (defaults plus includefield=all sets) of one instance."""
    return _pick(metadata, STUDY_ATTRIBUTES), _pick(metadata, SERIES_ATTRIBUTES)


def level_of(tag: str) -> Level:
    """The level an attribute lives at: Google's study and series sets, else the instance."""
    if tag in STUDY_ATTRIBUTES or tag in COMPUTED_STUDY:
        return Level.STUDY
    if tag in SERIES_ATTRIBUTES or tag in COMPUTED_SERIES:
        return Level.SERIES
    return Level.INSTANCE


def matched_tags(query: SearchQuery) -> frozenset[str]:
    """Matching keys of the query's own level, which PS3.18 10.6.3.3 says a result includes.

    Keys of a parent level are left out: Google returns none of them (series?PatientID=).
    """
    return frozenset(c.tag for c in query.conditions if c.level is query.level)


def computed_tags(query: SearchQuery) -> frozenset[str]:
    """Computed attributes an index must add to the results: named or matched, at the level."""
    named = query.include_tags | {condition.tag for condition in query.conditions}
    return named & _COMPUTED_AT[query.level]


def returned_tags(query: SearchQuery) -> frozenset[str] | None:
    """Tags a search of this query returns; None means every attribute of the result.

    Computed attributes come back only when named or matched, even when None is returned.
    """
    if query.include_all and query.level is Level.INSTANCE:
        return None
    base = _ALL_AT[query.level] if query.include_all else _DEFAULT_AT[query.level]
    return base | query.include_tags | matched_tags(query) | _UIDS_AT[query.level]


def project(result: DicomJson, query: SearchQuery) -> DicomJson:
    """Keep the attributes of the query's level that includefield asks for, in tag order."""
    wanted = returned_tags(query)
    asked = query.include_tags | matched_tags(query)
    return {
        tag: result[tag]
        for tag in sorted(result)
        if tag not in NEVER_RETURNED
        and (wanted is None or tag in wanted)
        and (tag not in COMPUTED or tag in asked)
    }
