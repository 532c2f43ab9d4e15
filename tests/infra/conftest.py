"""Parsed Terraform of the module and the environment roots, shared by the infra tests.

Terraform's Google provider cannot be downloaded on the project's machines, so nothing here runs
`terraform init` or `validate`: the `.tf` files are parsed with python-hcl2 and checked as data.
Expressions come back as their source text wrapped in `${...}`, e.g. `"${var.region}"`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

try:
    import hcl2
except ImportError:  # python-hcl2 is a dev dependency; without it the infra tests cannot run
    hcl2 = None

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
MODULE_DIR = TERRAFORM / "modules" / "dicom_store"
ENVS_DIR = TERRAFORM / "envs"
ENVS = ("dev", "prod")
GENERATOR = TERRAFORM / "scripts" / "gen_firestore_indexes.py"


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine that lacks a tool; fail in CI, where it must be present."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _clean(value: Any) -> Any:
    """Drop python-hcl2's `__comments__` entries so tests see only Terraform's own data."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


@functools.cache
def load_hcl(path: Path) -> dict[str, Any]:
    """One .tf or .tfvars file, with the options local-stack.md prescribes."""
    if hcl2 is None:
        unavailable("python-hcl2 is not installed (pip install 'python-hcl2>=8,<9')")
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    with path.open() as handle:
        return _clean(hcl2.load(handle, serialization_options=options))


def load_hcl_raw(path: Path) -> dict[str, Any]:
    """As `load_hcl`, with comments kept (checkov skips are comments)."""
    if hcl2 is None:
        unavailable("python-hcl2 is not installed (pip install 'python-hcl2>=8,<9')")
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=options)


@dataclass
class Config:
    """Every block of one Terraform directory, merged across its files."""

    directory: Path
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: list[dict[str, Any]] = field(default_factory=list)
    source_of: dict[tuple[str, str], str] = field(default_factory=dict)

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            name: body for (kind, name), body in self.resources.items() if kind == resource_type
        }

    def resource(self, resource_type: str, name: str) -> dict[str, Any]:
        key = (resource_type, name)
        assert key in self.resources, f"{resource_type}.{name} is not declared"
        return self.resources[key]


def load_config(directory: Path) -> Config:
    config = Config(directory)
    for path in sorted(directory.glob("*.tf")):
        parsed = load_hcl(path)
        for kind, table in (("resource", config.resources), ("data", config.data)):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert (rtype, name) not in table, f"{rtype}.{name} declared twice"
                        table[(rtype, name)] = body
                        config.source_of[(rtype, name)] = path.name
        for block in parsed.get("locals", []):
            duplicated = set(block) & set(config.locals)
            assert not duplicated, f"locals declared twice: {duplicated}"
            config.locals.update(block)
        for kind, named_table in (
            ("variable", config.variables),
            ("output", config.outputs),
            ("module", config.modules),
        ):
            for block in parsed.get(kind, []):
                named_table.update(block)
        config.terraform.extend(parsed.get("terraform", []))
        config.providers.extend(parsed.get("provider", []))
    return config


@pytest.fixture(scope="session")
def module() -> Config:
    return load_config(MODULE_DIR)


@pytest.fixture(scope="session", params=ENVS)
def env(request: pytest.FixtureRequest) -> tuple[str, Config]:
    return request.param, load_config(ENVS_DIR / request.param)


def tf_files(pattern: str = "*.tf") -> Iterator[Path]:
    """The repository's Terraform files (not what `terraform init` downloads into .terraform/)."""
    for path in sorted(TERRAFORM.rglob(pattern)):
        if ".terraform" not in path.relative_to(TERRAFORM).parts:
            yield path


def load_generator() -> ModuleType:
    """infra/terraform/scripts/gen_firestore_indexes.py (a script, not a package module)."""
    name = "gen_firestore_indexes"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GENERATOR)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    sys.modules[name] = generator  # dataclasses look their module up while the class is built
    spec.loader.exec_module(generator)
    return generator
