"""envs/dev and envs/prod are thin roots: the module, a GCS backend prefix each, example values."""

from __future__ import annotations

import re

from tests.infra.conftest import ENVS, ENVS_DIR, Config, load_config, load_hcl


def test_env_calls_the_module(env: tuple[str, Config], module: Config) -> None:
    name, root = env
    assert set(root.modules) == {"dicom_store"}, f"{name}: one module call"
    call = root.modules["dicom_store"]
    assert call["source"] == "../../modules/dicom_store"
    arguments = set(call) - {"source", "providers", "depends_on"}
    unknown = arguments - set(module.variables)
    assert not unknown, f"{name}: the module has no variables {unknown}"
    required = {var for var, body in module.variables.items() if "default" not in body}
    assert required <= arguments, f"{name}: missing required {required - arguments}"
    assert not root.resources, f"{name}: resources belong in the module"


def test_env_has_its_own_gcs_backend_prefix(env: tuple[str, Config]) -> None:
    name, root = env
    backends = [backend for block in root.terraform for backend in block.get("backend", [])]
    assert len(backends) == 1, f"{name}: one backend block"
    assert set(backends[0]) == {"gcs"}
    assert backends[0]["gcs"]["prefix"] == f"dicomstore/{name}"
    assert load_hcl(ENVS_DIR / name / "backend.tf"), "the backend lives in backend.tf"


def test_backend_prefixes_differ() -> None:
    prefixes = set()
    for name in ENVS:
        root = load_config(ENVS_DIR / name)
        for block in root.terraform:
            for backend in block.get("backend", []):
                prefixes.add(backend["gcs"]["prefix"])
    assert len(prefixes) == len(ENVS)


def test_env_tfvars_fill_the_env_variables(env: tuple[str, Config]) -> None:
    name, root = env
    values = load_hcl(ENVS_DIR / name / "terraform.tfvars")
    assert set(values) <= set(root.variables), (
        f"{name}: unknown tfvars {set(values) - set(root.variables)}"
    )
    required = {var for var, body in root.variables.items() if "default" not in body}
    assert required <= set(values), f"{name}: tfvars lack {required - set(values)}"
    for principal in values.get("invokers", []):
        assert re.match(r"^(user|group|serviceAccount|domain|principal|principalSet):", principal)


def test_env_variables_and_outputs_are_described(env: tuple[str, Config]) -> None:
    name, root = env
    for kind, table in (("variable", root.variables), ("output", root.outputs)):
        for item, body in table.items():
            assert body.get("description"), f"{name}: {kind} {item} has no description"
    assert "dicomweb_base_url" in root.outputs


def test_env_roots_share_their_shape() -> None:
    files = [sorted(p.name for p in (ENVS_DIR / name).iterdir() if p.is_file()) for name in ENVS]
    assert all(names == files[0] for names in files), files
    assert {"main.tf", "backend.tf", "variables.tf", "outputs.tf", "terraform.tfvars"} <= set(
        files[0]
    )
