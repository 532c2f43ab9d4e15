"""The generated firestore_indexes.tf is current and declares every index the code can request."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.infra.conftest import MODULE_DIR, Config, load_generator, unavailable

GENERATED = MODULE_DIR / "firestore_indexes.tf"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_generator()


def declared(module: Config) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(collection, scope, fields) of every index in the generated local."""
    result = set()
    for index in module.locals["firestore_indexes"].values():
        fields = tuple(
            (field["field_path"], field["order"] or "ARRAY_CONTAINS") for field in index["fields"]
        )
        result.add((index["collection"], index["query_scope"], fields))
    return result


def test_generated_file_is_up_to_date(generator: ModuleType) -> None:
    assert GENERATED.read_text() == generator.expected_text(), (
        "stale: run `.venv/bin/python infra/terraform/scripts/gen_firestore_indexes.py`"
    )


def test_operations_listing_index_is_declared(module: Config) -> None:
    assert (
        "operations",
        "COLLECTION",
        (("dataset", "ASCENDING"), ("created", "DESCENDING"), ("__name__", "DESCENDING")),
    ) in declared(module)
    operations = [
        i for i in module.locals["firestore_indexes"].values() if i["collection"] == "operations"
    ]
    assert all(index["prefixed"] is True for index in operations), "top-level: gets the prefix"


def test_every_index_of_the_code_is_declared(module: Config, generator: ModuleType) -> None:
    code = generator.load_code_indexes()
    if code is None:
        pytest.skip("shared/adapters/gcp/firestore_indexes.py does not exist yet")
    assert code, "the planner's index list is empty"
    missing = [
        index
        for index in code
        if (index.collection, index.query_scope, index.fields) not in declared(module)
    ]
    assert not missing, f"declare them: run gen_firestore_indexes.py ({missing})"


def test_every_field_exemption_of_the_code_is_declared(
    module: Config, generator: ModuleType
) -> None:
    if generator.load_code_module() is None:
        pytest.skip("shared/adapters/gcp/firestore_indexes.py does not exist yet")
    declared_exemptions = {
        (item["collection"], item["field"], item["prefixed"])
        for item in module.locals["firestore_field_exemptions"].values()
    }
    for exemption in generator.load_code_exemptions():
        assert (exemption.collection, exemption.field, exemption.prefixed) in declared_exemptions


def test_subcollection_indexes_are_not_prefixed(generator: ModuleType) -> None:
    index = generator.normalise(
        {
            "collection": "instances",
            "fields": [("series_uid", "ASCENDING"), ("sop_uid", "ASCENDING")],
        }
    )
    assert index.prefixed is False
    assert generator.normalise({**_entry(), "collection": "stores"}).prefixed is True


def _entry(**overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "collection": "studies",
        "fields": [("visible", "ASCENDING"), ("study_date", "DESCENDING")],
    }
    return entry | overrides


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry(collection="a/b"), "collection"),
        (_entry(fields=[("visible", "ASCENDING")]), "at least two fields"),
        (_entry(fields=[("a", "ASCENDING"), ("a", "DESCENDING")]), "twice"),
        (_entry(fields=[("a", "ASCENDING"), ("b", "SIDEWAYS")]), "mode"),
        (_entry(fields=[("a", "ASCENDING"), "b"]), "not (path, mode)"),
        (_entry(query_scope="EVERYWHERE"), "query_scope"),
    ],
)
def test_generator_refuses_invalid_entries(
    generator: ModuleType, entry: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generator.normalise(entry)


def test_generator_merges_deduplicates_and_sorts(generator: ModuleType) -> None:
    code = [
        generator.normalise(_entry()),
        generator.normalise(_entry()),
        generator.normalise(generator.OPERATIONS_INDEXES[0]),
    ]
    keys = [index.key for index in generator.all_indexes(code)]
    assert keys == sorted(set(keys))
    assert len(keys) == 2


def test_array_contains_renders_as_array_config(generator: ModuleType) -> None:
    index = generator.normalise(
        _entry(fields=[("name_tokens", "ARRAY_CONTAINS"), ("study_date", "DESCENDING")])
    )
    text = generator.render([index])
    assert 'field_path = "name_tokens", order = null, array_config = "CONTAINS"' in text
    assert "name_tokens-contains" in index.key


def test_rendered_hcl_is_terraform_fmt_clean(generator: ModuleType, tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        unavailable("terraform is not on PATH")
    indexes = generator.all_indexes(
        [
            generator.normalise(
                _entry(fields=[("name_tokens", "ARRAY_CONTAINS"), ("study_date", "DESCENDING")])
            ),
            generator.normalise(_entry(query_scope="COLLECTION_GROUP")),
        ]
    )
    exemptions = [generator.normalise_exemption({"collection": "instances", "field": "metadata"})]
    for number, text in enumerate(
        [generator.render(indexes), generator.render(indexes, exemptions)]
    ):
        path = tmp_path / f"firestore_indexes_{number}.tf"
        path.write_text(text)
        result = subprocess.run(
            [terraform, "fmt", "-check", "-diff", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout


def test_check_mode_reports_a_stale_file(generator: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "firestore_indexes.tf"
    stale.write_text("locals {}\n")
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert generator.main(["--output", str(stale)]) == 0
    assert generator.main(["--check", "--output", str(stale)]) == 0
