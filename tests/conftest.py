"""Shared fixtures: embedded services on a temp dir and a functions-framework test client."""

from __future__ import annotations

import dataclasses
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


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return dataclasses.replace(Settings(), data_dir=data_dir, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = bootstrap.build_services(make_settings(tmp_path / "data"))
    yield built
    stop = getattr(built.queue, "stop", None)
    if callable(stop):
        stop()


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
