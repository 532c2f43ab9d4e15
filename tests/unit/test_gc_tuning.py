"""Cloud functions tune the garbage collector only when their settings say so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import Settings
from shared.errors import ConfigurationError
from shared.web import gc_tuning

REPO = Path(__file__).resolve().parents[2]
# Imports the entry points in a child process (tuning the collector of the test process would
# change how every later test allocates) and prints the young threshold and whether anything
# was frozen.
_SCRIPT = (
    "import gc\nimport functions.main\nprint(gc.get_threshold()[0], gc.get_freeze_count() > 1000)\n"
)


def _import_entry_points(**env: str) -> list[str]:
    child_env = {k: v for k, v in os.environ.items() if k != "DICOMSTORE_GC_TUNING"}
    child_env.update(env, DICOMSTORE_LOG_LEVEL="WARNING")
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=REPO,
        env=child_env,
    ).stdout.split()


def test_entry_points_tune_the_collector_when_asked() -> None:
    young = str(gc_tuning.YOUNG_THRESHOLD)
    assert _import_entry_points(DICOMSTORE_GC_TUNING="true") == [young, "True"]


def test_entry_points_keep_cpythons_collector_by_default() -> None:
    assert _import_entry_points() == ["700", "False"]


def test_the_setting_is_a_boolean() -> None:
    assert Settings.from_env({}).gc_tuning is False
    assert Settings.from_env({"DICOMSTORE_GC_TUNING": "yes"}).gc_tuning is True
    with pytest.raises(ConfigurationError, match="DICOMSTORE_GC_TUNING"):
        Settings.from_env({"DICOMSTORE_GC_TUNING": "sometimes"})
