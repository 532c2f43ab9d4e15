"""Identifiers, records and operations of the DICOM store; pure data, no I/O."""
