"""Shared fixtures: embedded services on a temp dir and a functions-framework test client."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import functions_framework
import pytest
from flask.testing import FlaskClient

from shared import bootstrap
from shared.config import Settings
from shared.service.context import Services

pytest_plugins = ["tests.emulators"]

REPO = Path(__file__).resolve().parent.parent
STORE = "projects/local/locations/local/datasets/default/dicomStores/default"
DW = f"/v1/{STORE}/dicomWeb"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`local_only` tests inspect embedded internals: their cloud variants are not collected."""
    removed = [
        item
        for item in items
        if item.get_closest_marker("local_only")
        and getattr(getattr(item, "callspec", None), "params", {}).get("services") == "gcp"
    ]
    if removed:
        config.hook.pytest_deselected(items=removed)
        items[:] = [item for item in items if item not in removed]


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return dataclasses.replace(Settings(), data_dir=data_dir, **overrides)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "gcp"])
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    """Embedded services, or the cloud wiring on the emulators (the same composition root).

    Modules that look at local-only internals mark themselves `local_only`.
    """
    settings = make_settings(tmp_path / "data")
    if request.param == "gcp":
        settings = _cloud_settings(request, settings)
    built = bootstrap.build_services(settings, start_workers=True)
    yield built
    stop = getattr(built.queue, "stop", None)
    if callable(stop):
        stop()


def _cloud_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    from shared.adapters.gcp.pubsub_queue import PubSubQueue

    firestore = request.getfixturevalue("firestore_emulator")
    pubsub = request.getfixturevalue("pubsub_emulator")
    gcs = request.getfixturevalue("gcs_emulator")
    topic = pubsub.fresh_topic()
    cloud = dataclasses.replace(
        settings,
        backend="gcp",
        gcp_project=firestore.project,
        blob_bucket=gcs.fresh_bucket(),
        tasks_topic=topic,
        tasks_subscription=f"{topic}-workers",
        collection_prefix=f"t{uuid.uuid4().hex[:10]}_",  # a fresh namespace instead of a reset
        firestore_emulator_host=firestore.emulator.host,
        pubsub_emulator_host=pubsub.emulator.host,
        storage_emulator_host=gcs.emulator.url,
        queue_workers=2,
    ).checked()
    PubSubQueue(
        cloud.gcp_project or "",
        topic,
        pubsub.publisher,
        subscriber=pubsub.subscriber,
        subscription=cloud.tasks_subscription,
    ).create_resources()
    return cloud


@pytest.fixture
def client(services: Services) -> Iterator[FlaskClient]:
    old = bootstrap.set_services(services)
    app = functions_framework.create_app(
        target="dicomweb", source=str(REPO / "functions" / "main.py")
    )
    yield app.test_client()
    bootstrap.set_services(old)


def drain(services: Services) -> None:
    """Wait for the local queue to finish every task (study/series deletes)."""
    join = services.queue.join
    assert join(30), "queue did not drain"
