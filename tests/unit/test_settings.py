"""Settings read from the environment: defaults, accepted values, and named refusals."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.errors import ConfigurationError


def test_export_staging_prefix_defaults_and_accepts_a_folder() -> None:
    assert Settings.from_env({}).export_staging_prefix == "export-staging/"
    env = {"DICOMSTORE_EXPORT_STAGING_PREFIX": "tmp/exports/"}
    assert Settings.from_env(env).export_staging_prefix == "tmp/exports/"


@pytest.mark.parametrize("value", ["/tmp/exports/", "tmp/exports", "tmp//exports/", "../x/", "/"])
def test_export_staging_prefix_must_be_a_relative_folder(value: str) -> None:
    with pytest.raises(ConfigurationError, match="DICOMSTORE_EXPORT_STAGING_PREFIX"):
        Settings.from_env({"DICOMSTORE_EXPORT_STAGING_PREFIX": value})
