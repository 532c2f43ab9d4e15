"""DICOM codecs, parsing, DICOM JSON/XML, multipart and media types, QIDO queries."""
