"""Cloud Functions entry points: thin wrappers that hand each trigger to the shared services."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.bootstrap import get_services
from shared.config import Settings
from shared.logging_setup import configure_logging
from shared.web.app import handle

configure_logging(Settings.from_env())


@functions_framework.http
def dicomweb(request: Request) -> Response:
    """The Healthcare-API REST surface: stores, operations and DICOMweb."""
    return handle(request, get_services())
