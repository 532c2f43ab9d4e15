# The three Cloud Functions (2nd gen). They share one source archive (storage.tf) and differ by
# entry point, identity, ingress, trigger and sizing:
#
#   dicomweb             HTTP: the Healthcare-API REST surface; invokable only by var.invokers
#   tasks                Pub/Sub push from the tasks subscription (pubsub.tf); runs as the
#                        store's service agent, which performs imports and exports
#   on_object_finalized  Eventarc: google.cloud.storage.object.v1.finalized on the ingest bucket

locals {
  # Sizing per function; var.functions overrides field by field. Python threads share one core
  # for CPU work (the GIL), so concurrency above 1 pays off for I/O-bound requests (DICOMweb
  # streaming, single-object imports), not for transcoding task shards.
  function_defaults = {
    dicomweb = {
      memory                           = "2Gi"
      cpu                              = "1"
      timeout_seconds                  = 3600 # Google bounds STOW/WADO at 30-60 min
      min_instance_count               = 0
      max_instance_count               = 20
      max_instance_request_concurrency = 8
    }
    tasks = {
      memory                           = "2Gi"
      cpu                              = "1"
      timeout_seconds                  = 540
      min_instance_count               = 0
      max_instance_count               = 20
      max_instance_request_concurrency = 1
    }
    on_object_finalized = {
      memory                           = "2Gi"
      cpu                              = "1"
      timeout_seconds                  = 300
      min_instance_count               = 0
      max_instance_count               = 20
      max_instance_request_concurrency = 4
    }
  }

  function_settings = {
    for fn, defaults in local.function_defaults : fn => merge(defaults, {
      for key, value in try(var.functions[fn], {}) : key => value if value != null
    })
  }

  # Settings every function reads through shared/config.py (see PLANNED_ENV in
  # tests/infra/test_module.py for those the code does not read yet).
  common_environment = {
    DICOMSTORE_BACKEND               = "gcp"
    DICOMSTORE_GCP_PROJECT           = var.project_id
    DICOMSTORE_BUCKET                = google_storage_bucket.store.name
    DICOMSTORE_TASKS_TOPIC           = google_pubsub_topic.tasks.name
    DICOMSTORE_TASKS_SUBSCRIPTION    = local.tasks_subscription
    DICOMSTORE_COLLECTION_PREFIX     = var.firestore.collection_prefix
    DICOMSTORE_FIRESTORE_DATABASE    = google_firestore_database.store.name
    DICOMSTORE_INGEST_BUCKET         = google_storage_bucket.ingest.name
    DICOMSTORE_INGEST_STORE          = local.store_resource
    DICOMSTORE_DEFAULT_STORE         = local.store_resource
    DICOMSTORE_CREATE_DEFAULT_STORE  = "true"
    DICOMSTORE_EXPORT_STAGING_PREFIX = var.buckets.export_staging_prefix
    DICOMSTORE_BIGQUERY_DATASET      = "${var.project_id}.${google_bigquery_dataset.exports.dataset_id}"
    DICOMSTORE_LOG_JSON              = "true"
    DICOMSTORE_LOG_LEVEL             = var.log_level
    DICOMSTORE_GC_TUNING             = "true"
  }

  dicomweb_environment = merge(
    var.public_base_url == null ? {} : { DICOMSTORE_PUBLIC_BASE_URL = var.public_base_url },
    length(var.cors_origins) == 0 ? {} : { DICOMSTORE_CORS_ORIGINS = join(",", var.cors_origins) },
  )

  functions = {
    dicomweb = {
      name            = "${var.name}-dicomweb"
      entry_point     = "dicomweb"
      description     = "Healthcare-API REST surface: DICOMweb, DICOM store administration, operations."
      service_account = google_service_account.dicomweb.email
      ingress         = var.dicomweb_ingress
      max_timeout     = 3600
      environment     = local.dicomweb_environment
      event_trigger   = null
    }
    tasks = {
      name            = "${var.name}-tasks"
      entry_point     = "tasks"
      description     = "Task worker fed by the tasks push subscription: purges, import and export shards."
      service_account = google_service_account.service_agent.email
      ingress         = "ALLOW_INTERNAL_ONLY" # Pub/Sub push counts as internal traffic
      max_timeout     = 600                   # the push acknowledgement deadline cannot exceed it
      environment     = {}
      event_trigger   = null
    }
    on_object_finalized = {
      name            = "${var.name}-ingest"
      entry_point     = "on_object_finalized"
      description     = "Imports each object finalized in the ingest bucket into ${local.store_resource}."
      service_account = google_service_account.ingest.email
      ingress         = "ALLOW_INTERNAL_ONLY" # Eventarc delivery counts as internal traffic
      max_timeout     = 540                   # the limit of event-driven functions
      environment     = { DICOMSTORE_INGEST_AFTER = var.ingest_after }
      event_trigger = {
        event_type = "google.cloud.storage.object.v1.finalized"
        bucket     = google_storage_bucket.ingest.name
      }
    }
  }
}

# Function images go to a repository the module owns, so the build account can be granted
# writer on it alone, and old images are cleaned up.
resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name}-functions"
  description   = "Container images of the ${var.name} Cloud Functions."
  format        = "DOCKER"
  kms_key_name  = var.kms_key_name
  labels        = local.labels

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s" # 30 days; the five most recent images are always kept
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_cloudfunctions2_function" "function" {
  #checkov:skip=CKV_GCP_124:Only dicomweb defaults to ALLOW_ALL (tasks and ingest are internal-only): it is the client-facing API, still closed by IAM (run.invoker for var.invokers alone, public principals refused); set var.dicomweb_ingress = "ALLOW_INTERNAL_AND_GCLB" behind a load balancer.
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = each.value.name
  description = each.value.description
  labels      = local.labels

  build_config {
    runtime           = "python311"
    entry_point       = each.value.entry_point
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    available_memory                 = local.function_settings[each.key].memory
    available_cpu                    = local.function_settings[each.key].cpu
    timeout_seconds                  = local.function_settings[each.key].timeout_seconds
    min_instance_count               = local.function_settings[each.key].min_instance_count
    max_instance_count               = local.function_settings[each.key].max_instance_count
    max_instance_request_concurrency = local.function_settings[each.key].max_instance_request_concurrency
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = each.value.service_account
    environment_variables            = merge(local.common_environment, each.value.environment, var.extra_environment)
  }

  dynamic "event_trigger" {
    for_each = each.value.event_trigger == null ? [] : [each.value.event_trigger]
    content {
      trigger_region        = var.region
      event_type            = event_trigger.value.event_type
      retry_policy          = "RETRY_POLICY_RETRY" # imports are idempotent on (bucket, name, generation)
      service_account_email = google_service_account.eventarc.email

      event_filters {
        attribute = "bucket"
        value     = event_trigger.value.bucket
      }
    }
  }

  lifecycle {
    precondition {
      condition     = local.function_settings[each.key].timeout_seconds <= each.value.max_timeout
      error_message = "The ${each.key} function allows at most ${each.value.max_timeout} s of timeout."
    }
    precondition {
      condition     = local.function_settings[each.key].max_instance_request_concurrency == 1 || tonumber(local.function_settings[each.key].cpu) >= 1
      error_message = "Cloud Functions needs at least 1 vCPU to serve concurrent requests (${each.key})."
    }
  }

  # A new instance touches Firestore, Cloud Storage and Pub/Sub at start-up: grant first.
  depends_on = [
    google_project_service.apis,
    google_project_iam_member.firestore_user,
    google_storage_bucket_iam_member.function,
    google_storage_bucket_iam_member.service_agent_store_object_admin,
    google_storage_bucket_iam_member.service_agent_import_reader,
    google_pubsub_topic_iam_member.tasks_publisher,
    google_project_iam_member.gcs_agent_pubsub_publisher,
    google_project_iam_member.eventarc_receiver,
    google_project_iam_member.builder,
    google_artifact_registry_repository_iam_member.builder_writer,
    google_storage_bucket_iam_member.builder_source_reader,
  ]
}
