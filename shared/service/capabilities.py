"""The capabilities document at {store}/dicomWeb/capabilities, built from the code's own tables."""

from __future__ import annotations

from typing import Any

from shared import __version__
from shared.dicom import media_types, query
from shared.domain.records import STORAGE_CLASSES
from shared.domain.search import Level


def document(dicomweb_url: str) -> dict[str, Any]:
    """What this server supports, so clients can discover it instead of guessing."""
    return {
        "server": {"name": "dicomstore", "version": __version__},
        "compatibleWith": "Google Cloud Healthcare API v1 DICOM store (DICOMweb)",
        "dicomWebRoot": dicomweb_url,
        "store": {
            "resources": ["studies", "studies/{study}"],
            "requestTypes": [
                'multipart/related; type="application/dicom"',
                'multipart/related; type="application/dicom+json"',
                "application/dicom",
            ],
            "storageClasses": list(STORAGE_CLASSES),
        },
        "search": {
            "levels": ["studies", "series", "instances"],
            "parameters": ["includefield", "limit", "offset", "fuzzymatching"],
            "defaultLimit": {level.value: query.DEFAULT_LIMIT[level] for level in Level},
            "maximumLimit": {level.value: query.MAX_LIMIT[level] for level in Level},
            "maximumOffset": query.MAX_OFFSET,
            "noMatchStatus": 204,
        },
        "retrieve": media_types.advertised(),
        "extensions": {
            "thumbnail": "studies/{s}[/series/{se}[/instances/{i}[/frames/{n}]]]/thumbnail",
            "zip": "Accept: application/zip on a study or series",
            "renderedStudySeries": "multipart/related of one rendered image per instance",
            "bulkdataRange": "single bytes= range, answered with 206",
            "cors": "origins listed in DICOMSTORE_CORS_ORIGINS",
        },
        "delete": {
            "instance": "synchronous, returns {}",
            "studySeries": "long-running operation under .../datasets/{d}/operations",
        },
    }
