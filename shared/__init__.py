"""A serverless DICOM store compatible with the Google Cloud Healthcare API."""

__version__ = "0.1.0"
__all__ = ["__version__"]
