"""Registry of queue message handlers; the one dispatch path for every worker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.errors import InvalidArgument
from shared.ports.queue import ENVELOPE_VERSION, Message
from shared.service import delete, storage
from shared.service.context import Services

logger = logging.getLogger(__name__)

TaskHandler = Callable[[Services, dict[str, Any]], None]

HANDLERS: dict[str, TaskHandler] = {
    delete.PURGE_TASK: delete.handle_purge,
    storage.STORAGE_CLASS_TASK: storage.handle_set_storage_class,
}


def dispatch(services: Services, message: Message) -> None:
    """Run the handler of the message's type; unknown types and versions are refused loudly."""
    if message.version != ENVELOPE_VERSION:
        raise InvalidArgument(f"unsupported message version {message.version}")
    handler = HANDLERS.get(message.type)
    if handler is None:
        raise InvalidArgument(f"no handler for message type {message.type!r}")
    handler(services, message.payload)
