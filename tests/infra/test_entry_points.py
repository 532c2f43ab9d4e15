"""Every function Terraform deploys names an entry point that functions/main.py defines."""

from __future__ import annotations

import ast

import pytest

from tests.infra.conftest import REPO, Config

MAIN = REPO / "functions" / "main.py"
ENTRY_POINTS = ("dicomweb", "tasks", "on_object_finalized")


def decorated_functions() -> dict[str, set[str]]:
    """Top-level functions of main.py and their functions_framework decorators (http, ...)."""
    tree = ast.parse(MAIN.read_text(), filename=str(MAIN))
    found: dict[str, set[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        kinds = set()
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "functions_framework"
            ):
                kinds.add(target.attr)
        found[node.name] = kinds
    return found


def expected_signature(module: Config, key: str) -> str:
    """HTTP unless an event reaches it: an Eventarc trigger or the tasks push subscription."""
    if module.locals["functions"][key]["event_trigger"] is not None:
        return "cloud_event"
    push = module.resource("google_pubsub_subscription", "tasks")["push_config"][0]
    if f'function["{key}"]' in push["push_endpoint"]:
        return "cloud_event"
    return "http"


def test_terraform_deploys_exactly_these_entry_points(module: Config) -> None:
    declared = {fn["entry_point"] for fn in module.locals["functions"].values()}
    assert declared == set(ENTRY_POINTS)
    for key, function in module.locals["functions"].items():
        assert function["entry_point"] == key, "for_each keys are the entry points"


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_entry_point_is_a_decorated_function_of_main_py(module: Config, entry_point: str) -> None:
    functions = decorated_functions()
    assert entry_point in functions, f"functions/main.py defines no {entry_point}()"
    signature = expected_signature(module, entry_point)
    assert functions[entry_point] == {signature}, (
        f"{entry_point}() must be decorated with @functions_framework.{signature}"
    )
