"""DICOM failure reason codes used in STOW-RS responses (PS3.4 Table GG.4-1, PS3.18)."""

# 0x0110 Processing failure: Google's reason for "already exists" and for invalid files.
PROCESSING_FAILURE = 272
# 0xA900 Data Set does not match SOP Class (PS3.4); used when the body is not a DICOM instance.
DATASET_DOES_NOT_MATCH_SOP_CLASS = 43264
# 0xA901: the spec's recommendation when StudyInstanceUID differs from the study in the URL.
STUDY_UID_MISMATCH = 43265
# 0x0122 Referenced SOP Class not supported.
SOP_CLASS_NOT_SUPPORTED = 290
