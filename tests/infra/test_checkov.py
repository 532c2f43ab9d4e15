"""checkov passes over infra/terraform, and every check it skips says why, inline."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.infra.conftest import REPO, TERRAFORM, tf_files, unavailable

# checkov pins an hcl2 that clashes with python-hcl2, so it lives in its own virtualenv;
# `make test` names its launcher in this variable (default: the repository's .venv-checkov).
CHECKOV_ENV = "DICOMSTORE_CHECKOV"
SKIP = re.compile(r"checkov:skip=")
JUSTIFIED_SKIP = re.compile(r"^\s*#checkov:skip=(CKV2?_[A-Z]+_\d+):\s*(\S.{19,})$")


def checkov() -> Path:
    path = Path(os.environ.get(CHECKOV_ENV) or REPO / ".venv-checkov" / "bin" / "checkov")
    if not path.exists():
        unavailable(f"checkov not found at {path} (see the Makefile's checkov venv)")
    return path


def test_checkov_passes() -> None:
    result = subprocess.run(
        [
            str(checkov()),
            "--directory",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_every_skipped_check_is_justified_inline() -> None:
    skips = 0
    for path in tf_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if SKIP.search(line):
                skips += 1
                assert JUSTIFIED_SKIP.match(line), (
                    f"{path.relative_to(TERRAFORM)}:{number}: "
                    "write `#checkov:skip=CKV_...:<why this check does not apply>`"
                )
    assert skips <= 10, "a long skip list means the module should change instead"
