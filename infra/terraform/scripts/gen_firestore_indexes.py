#!/usr/bin/env python3
"""Write the Firestore composite indexes (and index exemptions) the code needs as Terraform data.

The queries of the Firestore adapters are the single source of truth: the index planner lists
the composite indexes it can request in ``shared/adapters/gcp/firestore_indexes.py``
(``COMPOSITE_INDEXES``: ``{"collection": ..., "fields": [(field, "ASCENDING" | "DESCENDING" |
"ARRAY_CONTAINS"), ...]}``) and the large fields it never filters on (``FIELD_EXEMPTIONS``:
``{"collection": ..., "field": ...}``); the operations store needs one more index for its
newest-first listing. This script merges them and writes
``infra/terraform/modules/dicom_store/firestore_indexes.tf``: ``locals`` maps that
``google_firestore_index.composite`` and ``google_firestore_field.exemption`` iterate over.
``tests/infra`` fails when the file is stale.

Usage::

    python infra/terraform/scripts/gen_firestore_indexes.py          # rewrite the file
    python infra/terraform/scripts/gen_firestore_indexes.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
OUTPUT = REPO_ROOT / "infra/terraform/modules/dicom_store/firestore_indexes.tf"
CODE_MODULE = "shared.adapters.gcp.firestore_indexes"
# Names the code's list may have; otherwise the one module-level list of index dicts is used.
CODE_LIST_NAMES = ("COMPOSITE_INDEXES", "FIRESTORE_INDEXES", "INDEXES")
CODE_EXEMPTIONS_NAME = "FIELD_EXEMPTIONS"

ORDERS = {"ASCENDING": "asc", "DESCENDING": "desc", "ARRAY_CONTAINS": "contains"}
# The adapters put DICOMSTORE_COLLECTION_PREFIX in front of top-level collection ids only
# (`{prefix}stores`, `{prefix}operations`); the studies/series/instances subcollections under a
# store document keep their bare ids. An entry may say so itself with "prefixed": true/false.
TOP_LEVEL_COLLECTIONS = frozenset({"operations", "stores", "store_names"})
QUERY_SCOPES = ("COLLECTION", "COLLECTION_GROUP")
_COLLECTION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")

# FirestoreOperationStore.list_operations: where dataset == d, order by created desc, __name__ desc.
OPERATIONS_INDEXES: list[dict[str, Any]] = [
    {
        "collection": "operations",
        "fields": [
            ("dataset", "ASCENDING"),
            ("created", "DESCENDING"),
            ("__name__", "DESCENDING"),
        ],
    },
]


@dataclass(frozen=True)
class Index:
    """One composite index, normalised: the collection id has no deployment prefix."""

    collection: str
    fields: tuple[tuple[str, str], ...]
    query_scope: str = "COLLECTION"
    prefixed: bool = False

    @property
    def key(self) -> str:
        """Stable, readable for_each key, e.g. ``operations--dataset-asc--created-desc``."""
        parts = [f"{path.replace('.', '_')}-{ORDERS[mode]}" for path, mode in self.fields]
        scope = "--group" if self.query_scope == "COLLECTION_GROUP" else ""
        return "--".join([self.collection + scope, *parts])


@dataclass(frozen=True)
class Exemption:
    """A field kept out of single-field indexing (large values that are never filtered on)."""

    collection: str
    field: str
    prefixed: bool = False

    @property
    def key(self) -> str:
        return f"{self.collection}--{self.field.replace('.', '_')}"


def normalise_exemption(raw: Mapping[str, Any]) -> Exemption:
    """Validate one entry of FIELD_EXEMPTIONS."""
    collection, field = raw.get("collection"), raw.get("field")
    if not isinstance(collection, str) or not _COLLECTION_ID.match(collection):
        raise ValueError(f"exemption {raw!r}: 'collection' must be a collection id")
    if not isinstance(field, str) or not field:
        raise ValueError(f"exemption {raw!r}: 'field' must be a field path")
    prefixed = raw.get("prefixed", collection in TOP_LEVEL_COLLECTIONS)
    if not isinstance(prefixed, bool):
        raise ValueError(f"exemption on {collection!r}: 'prefixed' must be true or false")
    return Exemption(collection, field, prefixed)


def normalise(raw: Mapping[str, Any]) -> Index:
    """Validate one entry of the code's list and turn it into an `Index`.

    Raises ``ValueError`` naming the problem, so a bad entry fails the tests, not `terraform apply`.
    """
    collection = raw.get("collection")
    if not isinstance(collection, str) or not _COLLECTION_ID.match(collection):
        raise ValueError(f"index {raw!r}: 'collection' must be a collection id, got {collection!r}")
    scope = str(raw.get("query_scope", "COLLECTION")).upper()
    if scope not in QUERY_SCOPES:
        raise ValueError(f"index on {collection!r}: query_scope must be one of {QUERY_SCOPES}")
    fields = tuple(_field(collection, field) for field in raw.get("fields", ()))
    if len(fields) < 2:
        raise ValueError(
            f"index on {collection!r}: a composite index has at least two fields, got {fields!r}"
        )
    paths = [path for path, _ in fields]
    if len(set(paths)) != len(paths):
        raise ValueError(f"index on {collection!r}: a field appears twice in {paths!r}")
    prefixed = raw.get("prefixed", collection in TOP_LEVEL_COLLECTIONS)
    if not isinstance(prefixed, bool):
        raise ValueError(f"index on {collection!r}: 'prefixed' must be true or false")
    return Index(collection, fields, scope, prefixed)


def _field(collection: str, field: Any) -> tuple[str, str]:
    if isinstance(field, Mapping):
        path = field.get("field_path", field.get("field"))
        mode = field.get("order") or (
            "ARRAY_CONTAINS" if field.get("array_config") == "CONTAINS" else None
        )
    elif isinstance(field, Sequence) and not isinstance(field, str) and len(field) == 2:
        path, mode = field
    else:
        raise ValueError(f"index on {collection!r}: field {field!r} is not (path, mode)")
    mode = str(mode).upper()
    if not isinstance(path, str) or not path:
        raise ValueError(f"index on {collection!r}: empty field path in {field!r}")
    if mode not in ORDERS:
        raise ValueError(f"index on {collection!r}: {path!r} mode must be one of {list(ORDERS)}")
    return path, mode


def load_code_module() -> ModuleType | None:
    """shared/adapters/gcp/firestore_indexes.py, or None while it does not exist."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        return importlib.import_module(CODE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in (CODE_MODULE, *_parents(CODE_MODULE)):
            raise  # the module exists but one of its own imports is missing: say so
        return None


def load_code_indexes() -> list[Index] | None:
    """The planner's indexes, or None while the code's module is absent."""
    module = load_code_module()
    return None if module is None else [normalise(entry) for entry in _index_list(module)]


def load_code_exemptions() -> list[Exemption]:
    """The code's single-field index exemptions (none while the module or list is absent)."""
    module = load_code_module()
    entries = getattr(module, CODE_EXEMPTIONS_NAME, None) or []
    exemptions = {e.key: e for e in map(normalise_exemption, entries)}
    return [exemptions[key] for key in sorted(exemptions)]


def _parents(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _index_list(module: ModuleType) -> list[Mapping[str, Any]]:
    for name in CODE_LIST_NAMES:
        if isinstance(getattr(module, name, None), list | tuple):
            return list(getattr(module, name))
    candidates = [
        value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and isinstance(value, list | tuple)
        and value
        and all(isinstance(item, Mapping) and "collection" in item for item in value)
    ]
    if len(candidates) != 1:
        raise ValueError(
            f"{CODE_MODULE} must define one list of index dicts (e.g. {CODE_LIST_NAMES[0]}); "
            f"found {len(candidates)}"
        )
    return list(candidates[0])


def all_indexes(code_indexes: Iterable[Index] | None = None) -> list[Index]:
    """The operations index plus the code's, deduplicated, in a stable order."""
    if code_indexes is None:
        code_indexes = load_code_indexes() or []
    merged = {index.key: index for index in map(normalise, OPERATIONS_INDEXES)}
    for index in code_indexes:
        merged.setdefault(index.key, index)
    return [merged[key] for key in sorted(merged)]


def _hcl_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


def render(
    indexes: Sequence[Index],
    exemptions: Sequence[Exemption] = (),
    *,
    code_module_present: bool = True,
) -> str:
    """The firestore_indexes.tf text, already in `terraform fmt` layout."""
    source = (
        "shared/adapters/gcp/firestore_indexes.py and the operations store's listing"
        if code_module_present
        else "the operations store's listing (shared/adapters/gcp/firestore_indexes.py is absent)"
    )
    lines = [
        "# GENERATED by infra/terraform/scripts/gen_firestore_indexes.py: do not edit by hand.",
        f"# Source: {source}.",
        "# To change an index, change the Python list and run the script again; tests/infra fails",
        "# while this file is stale. firestore.tf turns these maps into google_firestore_index",
        "# and google_firestore_field resources.",
        "",
        "locals {",
        "  firestore_indexes = {",
    ]
    for index in indexes:
        lines += [
            f"    {_hcl_string(index.key)} = {{",
            f"      collection  = {_hcl_string(index.collection)}",
            f"      query_scope = {_hcl_string(index.query_scope)}",
            f"      prefixed    = {'true' if index.prefixed else 'false'}",
            "      fields = [",
        ]
        for path, mode in index.fields:
            order = "null" if mode == "ARRAY_CONTAINS" else _hcl_string(mode)
            array = '"CONTAINS"' if mode == "ARRAY_CONTAINS" else "null"
            lines.append(
                f"        {{ field_path = {_hcl_string(path)}, order = {order}, "
                f"array_config = {array} }},"
            )
        lines += ["      ]", "    }"]
    lines += ["  }", ""]
    lines.append(
        "  firestore_field_exemptions = {" if exemptions else "  firestore_field_exemptions = {}"
    )
    for exemption in exemptions:
        lines += [
            f"    {_hcl_string(exemption.key)} = {{",
            f"      collection = {_hcl_string(exemption.collection)}",
            f"      field      = {_hcl_string(exemption.field)}",
            f"      prefixed   = {'true' if exemption.prefixed else 'false'}",
            "    }",
        ]
    lines += ["  }", "}", ""] if exemptions else ["}", ""]
    return "\n".join(lines)


def expected_text() -> str:
    """What the generated file must contain for the code as it is now."""
    code = load_code_indexes()
    return render(
        all_indexes(code or []), load_code_exemptions(), code_module_present=code is not None
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="file to write or check")
    args = parser.parse_args(argv)
    text = expected_text()
    current = args.output.read_text() if args.output.exists() else None
    if args.check:
        if current != text:
            sys.stderr.write(f"{args.output} is stale: run {Path(__file__).name}\n")
            return 1
        return 0
    if current != text:
        args.output.write_text(text)
        sys.stderr.write(f"wrote {args.output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
