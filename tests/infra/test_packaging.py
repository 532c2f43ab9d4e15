"""The function source is staged as Cloud Functions builds it; Cloud Build ships it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.infra.conftest import REPO, TERRAFORM, unavailable

STAGE = TERRAFORM / "scripts" / "stage_function_source.sh"


def test_staged_source_holds_main_requirements_and_shared(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        unavailable("bash is not on PATH")
    out = tmp_path / "function-source"
    subprocess.run(["bash", str(STAGE), str(out)], check=True, capture_output=True, timeout=60)
    assert (out / "main.py").read_text() == (REPO / "functions" / "main.py").read_text()
    assert (out / "requirements.txt").exists()
    staged = {p.relative_to(out) for p in (out / "shared").rglob("*.py")}
    source = {
        p.relative_to(REPO) for p in (REPO / "shared").rglob("*.py") if "__pycache__" not in p.parts
    }
    assert staged == source
    assert not list(out.rglob("__pycache__")), "caches would change the archive hash"


def test_staged_main_imports_with_the_staged_shared_package(tmp_path: Path) -> None:
    out = tmp_path / "function-source"
    subprocess.run(["bash", str(STAGE), str(out)], check=True, capture_output=True, timeout=60)
    probe = (
        "import os, main, shared; assert shared.__file__.startswith(os.getcwd()), shared.__file__"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=out, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_cloudbuild_tests_stages_and_deploys_the_chosen_environment() -> None:
    text = (REPO / "cloudbuild.yaml").read_text()
    steps = text[text.index("\nsteps:") :]
    order = [
        "make .venv/.installed-dev",
        "make lint typecheck",
        "make test",
        "stage_function_source.sh",
        "init -input=false",
        "- plan",
        "apply -input=false",
    ]
    positions = [steps.find(step) for step in order]
    assert all(p >= 0 for p in positions), dict(zip(order, positions, strict=True))
    assert positions == sorted(positions), "install, lint, test, stage, init, plan, apply"
    for substitution in ("_ENV", "_TF_STATE_BUCKET"):
        assert f"{substitution}:" in text
    assert "infra/terraform/envs/${_ENV}" in text
    assert 'backend-config="bucket=${_TF_STATE_BUCKET}"' in text
    assert "PIP_CACHE_DIR" in text
    assert "google-cloud-cli:emulators" in text, "the test step needs the emulators and Java"
