"""`terraform fmt` is clean and every Terraform file parses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import TERRAFORM, load_hcl, tf_files, unavailable


def test_terraform_fmt_check_is_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        unavailable("terraform is not on PATH")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"run `terraform fmt -recursive infra/terraform`:\n{result.stdout}"
    )


@pytest.mark.parametrize("path", list(tf_files()), ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_tf_file_parses(path: Path) -> None:
    assert load_hcl(path), f"{path} is empty"


def test_every_tfvars_file_parses() -> None:
    tfvars = list(tf_files("*.tfvars"))
    assert tfvars, "each environment has a terraform.tfvars"
    for path in tfvars:
        assert load_hcl(path), f"{path} is empty"
