"""Session-scoped Google Cloud emulators, started on demand; skipped if missing, failed in CI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from shared.devcloud.emulators import (
    PROJECT,
    BigQueryEmulator,
    EmulatorUnavailable,
    FirestoreEmulator,
    GcsEmulator,
    PubSubEmulator,
    start_bigquery,
    start_firestore,
    start_gcs,
    start_pubsub,
)

__all__ = ["PROJECT", "BigQueryEmulator", "FirestoreEmulator", "GcsEmulator", "PubSubEmulator"]

# bqemulator pins an older protobuf than the product, so `make test` builds it in .venv-bq and
# names the launcher in this variable; without it the repository's .venv-bq is tried.
BQEMULATOR_ENV = "DICOMSTORE_BQEMULATOR"
_REPO = Path(__file__).resolve().parent.parent

E = TypeVar("E", FirestoreEmulator, PubSubEmulator, GcsEmulator, BigQueryEmulator)


def _unavailable(reason: str) -> NoReturn:
    # On CI a missing emulator is a broken machine image, not a reason to go green.
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _run(start: Callable[[], E]) -> Iterator[E]:
    try:
        running = start()
    except EmulatorUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield running
    finally:
        running.emulator.stop()


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    yield from _run(lambda: start_firestore(tmp_path_factory.mktemp("firestore")))


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    yield from _run(lambda: start_pubsub(tmp_path_factory.mktemp("pubsub")))


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    yield from _run(lambda: start_gcs(tmp_path_factory.mktemp("gcs")))


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    configured = os.environ.get(BQEMULATOR_ENV)
    launcher = Path(configured) if configured else _REPO / ".venv-bq" / "bin" / "bqemulator"
    workdir = tmp_path_factory.mktemp("bigquery")
    yield from _run(lambda: start_bigquery(workdir, launcher, workdir / "gcs"))
