"""The `tasks` CloudEvent entry point: Pub/Sub push deliveries reach the handler registry."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from cloudevents.http import CloudEvent

from shared import bootstrap
from shared.ports.queue import Message
from shared.service import handlers
from shared.service.context import Services


def _event(body: object) -> CloudEvent:
    data = {"message": {"data": base64.b64encode(json.dumps(body).encode()).decode()}}
    attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/dicomstore-tasks",
    }
    return CloudEvent(attributes, data)


@pytest.fixture
def main(services: Services) -> Iterator[object]:
    old = bootstrap.set_services(services)
    import functions.main as entry_points

    yield entry_points
    bootstrap.set_services(old)


def test_push_delivery_runs_the_handler(main: object, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, object]] = []
    monkeypatch.setitem(handlers.HANDLERS, "probe", lambda _s, payload: seen.append(payload))
    main.tasks(_event(Message("probe", {"n": 1}).to_json()))  # type: ignore[attr-defined]
    assert seen == [{"n": 1}]


def test_handler_failure_raises_so_pubsub_retries(
    main: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_services: Services, _payload: dict[str, object]) -> None:
        raise RuntimeError("backend down")

    monkeypatch.setitem(handlers.HANDLERS, "probe", broken)
    with pytest.raises(RuntimeError):
        main.tasks(_event(Message("probe", {}).to_json()))  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", ["not an object", {"type": "nope", "payload": {}}, [1, 2]])
def test_undeliverable_tasks_are_acknowledged(main: object, body: object) -> None:
    main.tasks(_event(body))  # type: ignore[attr-defined]  # returns: no endless redelivery
