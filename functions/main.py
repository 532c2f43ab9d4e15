"""Cloud Functions entry points: thin wrappers that hand each trigger to the shared services."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent
from flask import Request, Response

from shared.bootstrap import get_services
from shared.config import Settings
from shared.logging_setup import configure_logging
from shared.service import handlers, imports
from shared.web import gc_tuning
from shared.web.app import handle

_settings = Settings.from_env()
configure_logging(_settings)
if _settings.gc_tuning:
    gc_tuning.tune_for_serving()  # last at import: what the imports built is frozen


@functions_framework.http
def dicomweb(request: Request) -> Response:
    """The Healthcare-API REST surface: stores, operations and DICOMweb."""
    return handle(request, get_services())


@functions_framework.cloud_event
def tasks(event: CloudEvent) -> None:
    """A Pub/Sub task (purge, storage class, import/export shards); raising makes Pub/Sub retry."""
    handlers.handle_push(get_services(), event.data)


@functions_framework.cloud_event
def on_object_finalized(event: CloudEvent) -> None:
    """A .dcm finalized in the ingest bucket: import it once; only backend errors raise (retry)."""
    services = get_services()
    settings = services.settings
    imports.import_finalized_event(
        services, event.data, settings.ingest_target, settings.ingest_after
    )
