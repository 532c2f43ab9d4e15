"""Logging set-up: plain text locally, JSON lines with severity for Cloud Logging."""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.config import Settings


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the fields Cloud Logging understands."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Configure the root logger; a second call only adjusts the level."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    if any(getattr(h, "_dicomstore", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.log_json else logging.Formatter(_TEXT_FORMAT))
    handler._dicomstore = True  # type: ignore[attr-defined]
    root.addHandler(handler)
