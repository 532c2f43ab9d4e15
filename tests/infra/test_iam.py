"""IAM: the service agent holds exactly the roles Google names for it; nothing is public."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra.conftest import Config, tf_files

SERVICE_AGENT = "${local.members.service_agent}"
NAMED_ROLES = ("roles/storage.objectAdmin", "roles/bigquery.dataEditor", "roles/bigquery.jobUser")
PUBLIC = ("allUsers", "allAuthenticatedUsers")
ROLE = re.compile(r"roles/[A-Za-z0-9_.]+")
# The attribute naming the resource a binding is scoped to, per IAM member type.
SCOPE = {
    "google_storage_bucket_iam_member": "bucket",
    "google_bigquery_dataset_iam_member": "dataset_id",
    "google_project_iam_member": "project",
    "google_pubsub_topic_iam_member": "topic",
    "google_pubsub_subscription_iam_member": "subscription",
    "google_cloud_run_v2_service_iam_member": "name",
    "google_service_account_iam_member": "service_account_id",
    "google_artifact_registry_repository_iam_member": "repository",
    "google_kms_crypto_key_iam_member": "crypto_key_id",
}


def iam_members(module: Config) -> dict[tuple[str, str], dict[str, Any]]:
    return {key: body for key, body in module.resources.items() if key[0].endswith("_iam_member")}


def roles_of(module: Config, body: dict[str, Any]) -> set[str]:
    """The roles a binding can grant: its literal role, or those its for_each data lists."""
    if ROLE.fullmatch(str(body["role"])):
        return {body["role"]}
    text = json.dumps(body)
    for name in re.findall(r"local\.(\w+)", str(body.get("for_each", ""))):
        text += json.dumps(module.locals[name])
    return set(ROLE.findall(text))


def test_service_agent_member_is_the_service_agent_account(module: Config) -> None:
    members = module.locals["members"]
    assert (
        members["service_agent"] == "serviceAccount:${google_service_account.service_agent.email}"
    )
    # It is the identity that performs imports and exports: the tasks worker runs as it.
    tasks = module.locals["functions"]["tasks"]
    assert tasks["service_account"] == "${google_service_account.service_agent.email}"


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (
            "roles/storage.objectAdmin",
            {
                ("google_storage_bucket_iam_member", "${google_storage_bucket.store.name}", None),
                (
                    "google_storage_bucket_iam_member",
                    "${each.value}",
                    "${toset(var.export_buckets)}",
                ),
            },
        ),
        (
            "roles/bigquery.dataEditor",
            {
                (
                    "google_bigquery_dataset_iam_member",
                    "${google_bigquery_dataset.exports.dataset_id}",
                    None,
                )
            },
        ),
        ("roles/bigquery.jobUser", {("google_project_iam_member", "${var.project_id}", None)}),
    ],
)
def test_named_role_is_bound_to_the_service_agent_alone_on_the_right_resources(
    module: Config, role: str, expected: set[tuple[str, str, str | None]]
) -> None:
    placements = set()
    for (kind, name), body in iam_members(module).items():
        if role not in roles_of(module, body):
            continue
        assert body["role"] == role, f"{kind}.{name} grants {role} indirectly"
        assert body["member"] == SERVICE_AGENT, f"{kind}.{name} grants {role} to {body['member']}"
        assert "condition" not in body, f"{kind}.{name}: the named roles are granted as such"
        placements.add((kind, body[SCOPE[kind]], body.get("for_each")))
    assert placements == expected


def test_named_roles_appear_nowhere_else(module: Config) -> None:
    text = "\n".join(path.read_text() for path in tf_files() if "modules" in path.parts)
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    expected_count = {role: 1 for role in NAMED_ROLES} | {"roles/storage.objectAdmin": 2}
    for role in NAMED_ROLES:
        assert code.count(f'"{role}"') == expected_count[role], role


def test_nothing_is_granted_to_the_public() -> None:
    for path in [*tf_files(), *tf_files("*.tfvars")]:
        text = path.read_text()
        for principal in PUBLIC:
            assert principal not in text, f"{path} names {principal}"


def test_invokers_variable_refuses_public_principals(module: Config) -> None:
    condition = module.variables["invokers"]["validation"][0]["condition"]
    pattern = re.search(r'regex\("([^"]+)"', condition)
    assert pattern, condition
    allowed = re.compile(pattern.group(1))
    for principal in PUBLIC:
        assert not allowed.search(principal)
    assert allowed.search("group:radiology@example.org")
    assert allowed.search("serviceAccount:viewer@p.iam.gserviceaccount.com")
    assert module.variables["invokers"]["default"] == []


def test_only_the_invokers_list_may_call_the_dicomweb_function(module: Config) -> None:
    invokers = [
        (name, body)
        for (kind, name), body in iam_members(module).items()
        if "invoker" in " ".join(roles_of(module, body))
    ]
    dicomweb = '${google_cloudfunctions2_function.function["dicomweb"].name}'
    on_dicomweb = [(name, body) for name, body in invokers if body.get("name") == dicomweb]
    assert len(on_dicomweb) == 1
    _, body = on_dicomweb[0]
    assert body["for_each"] == "${toset(var.invokers)}"
    assert body["member"] == "${each.value}"
    assert body["role"] == "roles/run.invoker"
    # The other functions are invoked only by their delivery accounts.
    others = {
        body["name"]: body["member"] for name, body in invokers if body is not on_dicomweb[0][1]
    }
    assert others == {
        '${google_cloudfunctions2_function.function["tasks"].name}': "${local.members.tasks_push}",
        '${google_cloudfunctions2_function.function["on_object_finalized"].name}': (
            "${local.members.eventarc}"
        ),
    }


def test_bindings_are_additive(module: Config) -> None:
    authoritative = [
        f"{kind}.{name}"
        for kind, name in module.resources
        if kind.endswith(("_iam_binding", "_iam_policy"))
        or kind == "google_project_iam_audit_config"
    ]
    assert not authoritative, (
        f"authoritative IAM would strip grants made elsewhere: {authoritative}"
    )


def test_no_basic_or_admin_roles(module: Config) -> None:
    for (kind, name), body in iam_members(module).items():
        for role in roles_of(module, body):
            assert role not in ("roles/owner", "roles/editor", "roles/viewer"), f"{kind}.{name}"
            assert not role.endswith(("admin", "Admin")) or role == "roles/storage.objectAdmin", (
                f"{kind}.{name} grants {role}"
            )


# Project-level grants exist only where Google offers no narrower resource (see iam.tf).
PROJECT_ROLES = {
    "roles/bigquery.jobUser": {SERVICE_AGENT},
    "roles/datastore.user": {"${each.value}"},  # the runtime accounts, with a database condition
    "roles/eventarc.eventReceiver": {"${local.members.eventarc}"},
    "roles/pubsub.publisher": {"${local.gcs_agent_member}"},  # Eventarc's storage transport
    "roles/logging.logWriter": {"${local.members.builder}"},
}


def test_project_level_grants_are_the_unavoidable_ones(module: Config) -> None:
    for name, body in module.of_type("google_project_iam_member").items():
        for role in roles_of(module, body):
            assert role in PROJECT_ROLES, f"google_project_iam_member.{name}: {role}"
            assert body["member"] in PROJECT_ROLES[role], f"google_project_iam_member.{name}"


def test_firestore_access_is_limited_to_the_store_database(module: Config) -> None:
    body = module.resource("google_project_iam_member", "firestore_user")
    assert body["for_each"] == "${local.runtime_members}"
    expression = body["condition"][0]["expression"]
    assert "resource.name ==" in expression
    assert "databases/${google_firestore_database.store.name}" in expression
    assert set(module.locals["runtime_members"]) == {"dicomweb", "service_agent", "ingest"}


def test_tasks_topic_publishers_are_the_functions_that_fan_out(module: Config) -> None:
    body = module.resource("google_pubsub_topic_iam_member", "tasks_publisher")
    assert body["topic"] == "${google_pubsub_topic.tasks.name}"
    assert body["role"] == "roles/pubsub.publisher"
    assert module.locals["tasks_publishers"] == {
        "dicomweb": "${local.members.dicomweb}",
        "service_agent": SERVICE_AGENT,
    }


def test_cloud_storage_service_agent_may_publish_events(module: Config) -> None:
    body = module.resource("google_project_iam_member", "gcs_agent_pubsub_publisher")
    assert body["role"] == "roles/pubsub.publisher"
    agent = module.locals["gcs_agent_member"]
    assert "data.google_storage_project_service_account.gcs.email_address" in agent


def test_eventarc_and_pubsub_delivery_roles(module: Config) -> None:
    receiver = module.resource("google_project_iam_member", "eventarc_receiver")
    assert receiver["role"] == "roles/eventarc.eventReceiver"
    token = module.resource("google_service_account_iam_member", "pubsub_agent_token_creator")
    assert token["role"] == "roles/iam.serviceAccountTokenCreator"
    assert token["member"] == "${local.pubsub_agent_member}"
    dead_letter = module.resource("google_pubsub_topic_iam_member", "pubsub_agent_dead_letter")
    assert dead_letter["topic"] == "${google_pubsub_topic.dead_letter.name}"
    subscriber = module.resource(
        "google_pubsub_subscription_iam_member", "pubsub_agent_tasks_subscriber"
    )
    assert subscriber["role"] == "roles/pubsub.subscriber"


def test_every_binding_names_its_scope(module: Config) -> None:
    for (kind, name), body in iam_members(module).items():
        assert kind in SCOPE, f"{kind}.{name}: unknown IAM member type, add it to SCOPE"
        assert body.get(SCOPE[kind]), f"{kind}.{name} has no {SCOPE[kind]}"
