"""The dicom_store module declares every resource the serverless store needs, configured safely."""

from __future__ import annotations

import re

import pytest

from tests.infra.conftest import REPO, Config

FUNCTIONS = ("dicomweb", "tasks", "on_object_finalized")


# --- storage -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", ["store", "ingest", "source"])
def test_buckets_are_private(module: Config, bucket: str) -> None:
    body = module.resource("google_storage_bucket", bucket)
    assert body["uniform_bucket_level_access"] is True
    assert body["public_access_prevention"] == "enforced"


def test_store_bucket_is_versioned(module: Config) -> None:
    assert module.resource("google_storage_bucket", "store")["versioning"] == [{"enabled": True}]


def test_store_bucket_deletes_export_staging_objects_after_n_days(module: Config) -> None:
    rules = module.resource("google_storage_bucket", "store")["lifecycle_rule"]
    staging = [
        rule
        for rule in rules
        if rule["condition"][0].get("matches_prefix") == ["${var.buckets.export_staging_prefix}"]
    ]
    assert len(staging) == 1, "one lifecycle rule for the export staging prefix"
    assert staging[0]["condition"][0]["age"] == "${var.buckets.export_staging_retention_days}"
    assert staging[0]["action"] == [{"type": "Delete"}]


def test_store_bucket_makes_deletes_final(module: Config) -> None:
    rules = module.resource("google_storage_bucket", "store")["lifecycle_rule"]
    assert any(
        rule["condition"][0].get("days_since_noncurrent_time")
        == "${var.buckets.noncurrent_version_retention_days}"
        and rule["action"] == [{"type": "Delete"}]
        for rule in rules
    ), "noncurrent versions of deleted instances must expire"


def test_ingest_bucket_is_in_the_trigger_region(module: Config) -> None:
    # Eventarc storage triggers only fire for buckets in the trigger's region.
    assert module.resource("google_storage_bucket", "ingest")["location"] == "${var.region}"


def test_one_source_archive_named_by_its_content_hash(module: Config) -> None:
    archive = module.data[("archive_file", "function_source")]
    assert archive["type"] == "zip"
    assert archive["source_dir"] == "${var.source_dir}"
    assert archive["output_file_mode"] == "0644", "reproducible archive permissions"
    obj = module.resource("google_storage_bucket_object", "function_source")
    assert obj["bucket"] == "${google_storage_bucket.source.name}"
    assert "${data.archive_file.function_source.output_sha256}" in obj["name"]
    assert obj["source"] == "${data.archive_file.function_source.output_path}"


# --- Firestore -----------------------------------------------------------------------------------


def test_firestore_database_is_native_and_protected(module: Config) -> None:
    database = module.resource("google_firestore_database", "store")
    assert database["type"] == "FIRESTORE_NATIVE"
    assert "var.firestore.delete_protection" in database["delete_protection_state"]
    assert "var.firestore.point_in_time_recovery" in database["point_in_time_recovery_enablement"]


def test_firestore_indexes_come_from_the_generated_list(module: Config) -> None:
    index = module.resource("google_firestore_index", "composite")
    assert index["for_each"] == "${local.firestore_indexes}"
    assert index["database"] == "${google_firestore_database.store.name}"
    assert "var.firestore.collection_prefix" in index["collection"]
    fields = index["dynamic"][0]["fields"]
    assert fields["for_each"] == "${each.value.fields}"
    assert set(fields["content"][0]) == {"field_path", "order", "array_config"}
    assert module.source_of[("google_firestore_index", "composite")] == "firestore.tf"
    assert "firestore_indexes" in module.locals


def test_large_fields_are_exempt_from_single_field_indexes(module: Config) -> None:
    field = module.resource("google_firestore_field", "exemption")
    assert field["for_each"] == "${local.firestore_field_exemptions}"
    assert field["index_config"] == [{}], "an empty index_config removes every index"
    assert field["field"] == "${each.value.field}"


# --- Pub/Sub -------------------------------------------------------------------------------------


def test_tasks_and_dead_letter_topics(module: Config) -> None:
    module.resource("google_pubsub_topic", "tasks")
    module.resource("google_pubsub_topic", "dead_letter")


def test_tasks_subscription_retries_then_dead_letters(module: Config) -> None:
    subscription = module.resource("google_pubsub_subscription", "tasks")
    assert subscription["topic"] == "${google_pubsub_topic.tasks.id}"
    retry = subscription["retry_policy"][0]
    assert retry["minimum_backoff"] == "${var.tasks.minimum_backoff}"
    assert retry["maximum_backoff"] == "${var.tasks.maximum_backoff}"
    dead_letter = subscription["dead_letter_policy"][0]
    assert dead_letter["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dead_letter["max_delivery_attempts"] == "${var.tasks.max_delivery_attempts}"
    assert subscription["expiration_policy"] == [{"ttl": ""}], "an idle queue must not expire"


def test_tasks_subscription_pushes_to_the_tasks_function_with_an_identity_token(
    module: Config,
) -> None:
    push = module.resource("google_pubsub_subscription", "tasks")["push_config"][0]
    uri = 'google_cloudfunctions2_function.function["tasks"].service_config[0].uri'
    assert push["push_endpoint"] == "${" + uri + "}"
    oidc = push["oidc_token"][0]
    assert oidc["service_account_email"] == "${google_service_account.tasks_push.email}"
    assert oidc["audience"] == "${" + uri + "}"


def test_dead_letters_are_kept_by_a_subscription(module: Config) -> None:
    # A topic without subscriptions drops its messages.
    hold = module.resource("google_pubsub_subscription", "dead_letter")
    assert hold["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert "push_config" not in hold


def test_max_delivery_attempts_default_is_within_pubsub_limits(module: Config) -> None:
    match = re.search(
        r"max_delivery_attempts\s*=\s*optional\(number,\s*(\d+)\)", _text("variables.tf")
    )
    assert match and 5 <= int(match.group(1)) <= 100


# --- functions -----------------------------------------------------------------------------------


def test_three_gen2_functions_from_one_archive(module: Config) -> None:
    function = module.resource("google_cloudfunctions2_function", "function")
    assert function["for_each"] == "${local.functions}"
    assert set(module.locals["functions"]) == set(FUNCTIONS)
    build = function["build_config"][0]
    assert build["runtime"] == "python311"
    assert build["entry_point"] == "${each.value.entry_point}"
    source = build["source"][0]["storage_source"][0]
    assert source == {
        "bucket": "${google_storage_bucket.source.name}",
        "object": "${google_storage_bucket_object.function_source.name}",
    }


def test_each_function_has_its_own_service_account(module: Config) -> None:
    accounts = [module.locals["functions"][fn]["service_account"] for fn in FUNCTIONS]
    assert len(set(accounts)) == len(accounts)
    for account in accounts:
        name = re.fullmatch(r"\$\{google_service_account\.(\w+)\.email\}", account)
        assert name, account
        module.resource("google_service_account", name.group(1))
    function = module.resource("google_cloudfunctions2_function", "function")
    assert function["service_config"][0]["service_account_email"] == "${each.value.service_account}"


def test_per_function_memory_timeout_and_concurrency(module: Config) -> None:
    settings = ("memory", "timeout_seconds", "max_instance_request_concurrency")
    for fn in FUNCTIONS:
        assert set(settings) <= set(module.locals["function_defaults"][fn]), fn
    service = module.resource("google_cloudfunctions2_function", "function")["service_config"][0]
    assert service["available_memory"] == "${local.function_settings[each.key].memory}"
    assert service["timeout_seconds"] == "${local.function_settings[each.key].timeout_seconds}"
    assert (
        service["max_instance_request_concurrency"]
        == "${local.function_settings[each.key].max_instance_request_concurrency}"
    )
    assert "var.functions" in module.locals["function_settings"]
    variable_type = module.variables["functions"]["type"]
    for setting in settings:
        assert setting in variable_type


def test_http_function_has_no_trigger_and_ingest_function_listens_to_the_ingest_bucket(
    module: Config,
) -> None:
    functions = module.locals["functions"]
    assert functions["dicomweb"]["event_trigger"] is None
    assert functions["tasks"]["event_trigger"] is None  # fed by the push subscription
    assert functions["on_object_finalized"]["event_trigger"] == {
        "event_type": "google.cloud.storage.object.v1.finalized",
        "bucket": "${google_storage_bucket.ingest.name}",
    }
    dynamic = module.resource("google_cloudfunctions2_function", "function")["dynamic"]
    trigger = next(block["event_trigger"] for block in dynamic if "event_trigger" in block)
    content = trigger["content"][0]
    assert content["retry_policy"] == "RETRY_POLICY_RETRY"
    assert content["event_type"] == "${event_trigger.value.event_type}"
    assert content["service_account_email"] == "${google_service_account.eventarc.email}"
    assert content["event_filters"] == [
        {"attribute": "bucket", "value": "${event_trigger.value.bucket}"}
    ]


def test_only_dicomweb_accepts_external_traffic(module: Config) -> None:
    functions = module.locals["functions"]
    assert functions["tasks"]["ingress"] == "ALLOW_INTERNAL_ONLY"
    assert functions["on_object_finalized"]["ingress"] == "ALLOW_INTERNAL_ONLY"
    assert functions["dicomweb"]["ingress"] == "${var.dicomweb_ingress}"


# Settings the gcp backend cannot start without (shared/config.py) and the ingest function's.
REQUIRED_ENV = {
    "DICOMSTORE_BACKEND",
    "DICOMSTORE_GCP_PROJECT",
    "DICOMSTORE_BUCKET",
    "DICOMSTORE_TASKS_TOPIC",
    "DICOMSTORE_COLLECTION_PREFIX",
    "DICOMSTORE_INGEST_BUCKET",
    "DICOMSTORE_INGEST_STORE",
}
# Set by Terraform before shared/config.py reads them; remove from here once it does.
PLANNED_ENV = {
    "DICOMSTORE_BIGQUERY_DATASET",
}


def test_functions_get_the_settings_the_gcp_backend_needs(module: Config) -> None:
    environment = module.locals["common_environment"]
    assert set(environment) >= REQUIRED_ENV
    assert environment["DICOMSTORE_BACKEND"] == "gcp"
    assert environment["DICOMSTORE_BUCKET"] == "${google_storage_bucket.store.name}"
    assert environment["DICOMSTORE_INGEST_BUCKET"] == "${google_storage_bucket.ingest.name}"
    assert environment["DICOMSTORE_TASKS_TOPIC"] == "${google_pubsub_topic.tasks.name}"


def test_ingest_function_applies_the_after_import_action(module: Config) -> None:
    environment = module.locals["functions"]["on_object_finalized"]["environment"]
    assert environment == {"DICOMSTORE_INGEST_AFTER": "${var.ingest_after}"}
    binding = module.locals["function_bucket_bindings"]["ingest-source"]
    # Deleting or moving imported files needs write access; keeping them needs none.
    assert "var.ingest_after" in binding["role"]


def test_every_variable_set_by_terraform_is_read_by_the_code_or_planned(module: Config) -> None:
    config_py = (REPO / "shared" / "config.py").read_text()
    # Every `DICOMSTORE_X =` key of functions.tf, conditional ones (dicomweb's) included.
    names = set(re.findall(r"\b(DICOMSTORE_[A-Z_]+)\s*=", _text("functions.tf")))
    assert set(module.locals["common_environment"]) <= names
    unknown = {name for name in names if name not in config_py} - PLANNED_ENV
    assert not unknown, f"set in functions.tf but read nowhere: {sorted(unknown)}"


# --- BigQuery, variables, outputs ----------------------------------------------------------------


def test_bigquery_export_dataset(module: Config) -> None:
    dataset = module.resource("google_bigquery_dataset", "exports")
    assert dataset["dataset_id"] == "${local.bigquery_dataset_id}"
    assert "access" not in dataset, "dataset access is granted with additive IAM members"


def test_every_variable_is_typed_and_described(module: Config) -> None:
    for name, variable in module.variables.items():
        assert variable.get("description"), f"variable {name} has no description"
        assert variable.get("type"), f"variable {name} has no type"


@pytest.mark.parametrize(
    "output",
    [
        "function_urls",
        "dicomweb_url",
        "dicomweb_base_url",
        "store_bucket",
        "ingest_bucket",
        "tasks_topic",
        "dead_letter_topic",
    ],
)
def test_outputs(module: Config, output: str) -> None:
    assert module.outputs[output].get("description"), output


def test_dicomweb_base_url_has_the_healthcare_api_path_form(module: Config) -> None:
    value = module.outputs["dicomweb_base_url"]["value"]
    assert value.startswith(
        '${google_cloudfunctions2_function.function["dicomweb"].service_config[0].uri}/v1/'
    )
    assert value.endswith("/v1/${local.store_resource}/dicomWeb")
    store = module.locals["store_resource"]
    for part in ("projects", "locations", "datasets", "dicomStores"):
        assert f'"{part}"' in store, store
    for part in (
        "var.project_id",
        "var.region",
        "var.dicom_store.dataset",
        "var.dicom_store.store",
    ):
        assert part in store, store


def _text(name: str) -> str:
    return (REPO / "infra" / "terraform" / "modules" / "dicom_store" / name).read_text()
