# Identities and every role binding of the module. Rules:
#   - each function runs as its own service account; delivery (Pub/Sub push, Eventarc) and the
#     function builds use accounts of their own, so no identity holds two jobs' permissions;
#   - bindings are additive *_iam_member resources (never authoritative *_iam_binding/_policy,
#     which would strip grants made outside this module) scoped to the bucket, topic,
#     subscription, dataset, service or key they are about; the few project-level grants say
#     why no narrower scope exists;
#   - nothing is granted to the public: the DICOMweb function is invokable by var.invokers only.

# --- identities --------------------------------------------------------------------------------

# The store's service agent, the counterpart of Healthcare's service-PROJECT_NUMBER@gcp-sa-
# healthcare account: the tasks function runs as it, and it performs imports and exports, so it
# holds exactly the roles Google's documentation names for that agent.
resource "google_service_account" "service_agent" {
  project      = var.project_id
  account_id   = "${var.name}-agent"
  display_name = "${var.name} service agent (tasks: imports, exports, purges)"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "dicomweb" {
  project      = var.project_id
  account_id   = "${var.name}-web"
  display_name = "${var.name} DICOMweb function"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "ingest" {
  project      = var.project_id
  account_id   = "${var.name}-ingest"
  display_name = "${var.name} ingest-bucket import function"

  depends_on = [google_project_service.apis]
}

# Pub/Sub signs pushes to the tasks function with this account's identity token.
resource "google_service_account" "tasks_push" {
  project      = var.project_id
  account_id   = "${var.name}-push"
  display_name = "${var.name} Pub/Sub push to the tasks function"

  depends_on = [google_project_service.apis]
}

# Eventarc delivers ingest-bucket events to on_object_finalized as this account.
resource "google_service_account" "eventarc" {
  project      = var.project_id
  account_id   = "${var.name}-eventarc"
  display_name = "${var.name} Eventarc trigger of the ingest function"

  depends_on = [google_project_service.apis]
}

# Cloud Build runs the function builds as this account instead of the default compute account
# (which has broad Editor rights in older projects and none in newer ones).
resource "google_service_account" "builder" {
  project      = var.project_id
  account_id   = "${var.name}-build"
  display_name = "${var.name} function builds"

  depends_on = [google_project_service.apis]
}

locals {
  members = {
    service_agent = "serviceAccount:${google_service_account.service_agent.email}"
    dicomweb      = "serviceAccount:${google_service_account.dicomweb.email}"
    ingest        = "serviceAccount:${google_service_account.ingest.email}"
    tasks_push    = "serviceAccount:${google_service_account.tasks_push.email}"
    eventarc      = "serviceAccount:${google_service_account.eventarc.email}"
    builder       = "serviceAccount:${google_service_account.builder.email}"
  }

  # The accounts the functions run as.
  runtime_members = {
    dicomweb      = local.members.dicomweb
    service_agent = local.members.service_agent
    ingest        = local.members.ingest
  }
}

# --- the service agent: the three roles the Healthcare API names ---------------------------------

# roles/storage.objectAdmin on the buckets it writes: the store bucket (imported instances,
# purges, BigQuery export staging) and every export destination.
resource "google_storage_bucket_iam_member" "service_agent_store_object_admin" {
  bucket = google_storage_bucket.store.name
  role   = "roles/storage.objectAdmin"
  member = local.members.service_agent
}

resource "google_storage_bucket_iam_member" "service_agent_export_object_admin" {
  for_each = toset(var.export_buckets)

  bucket = each.value
  role   = "roles/storage.objectAdmin"
  member = local.members.service_agent
}

# roles/bigquery.dataEditor on the export dataset: create, truncate and append tables.
resource "google_bigquery_dataset_iam_member" "service_agent_data_editor" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.exports.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = local.members.service_agent
}

# roles/bigquery.jobUser: BigQuery jobs (the export's load job) belong to a project, and the role
# cannot be granted on anything narrower.
resource "google_project_iam_member" "service_agent_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = local.members.service_agent
}

# Reading import sources: `gs://` URIs of :import in the ingest bucket and in var.import_buckets
# (the Healthcare API asks roles/storage.objectViewer for this).
resource "google_storage_bucket_iam_member" "service_agent_import_reader" {
  # Keys must be known at plan time: a fixed key for the ingest bucket, names for the rest.
  for_each = merge({ for bucket in var.import_buckets : bucket => bucket }, { ingest = google_storage_bucket.ingest.name })

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = local.members.service_agent
}

# --- the other functions ---------------------------------------------------------------------------

locals {
  # Bucket-scoped grants of the DICOMweb and ingest functions. roles/storage.objectUser reads,
  # creates and deletes objects but cannot change IAM or bucket settings: enough for STOW,
  # WADO and instance deletes, without the service agent's objectAdmin.
  function_bucket_bindings = {
    # STOW-RS writes, WADO-RS reads, DELETE removes instance blobs.
    "dicomweb-store" = { bucket = google_storage_bucket.store.name, role = "roles/storage.objectUser", member = local.members.dicomweb }
    # Reads each finalized object of the ingest bucket (and removes or moves it afterwards when
    # var.ingest_after asks for it) ...
    "ingest-source" = { bucket = google_storage_bucket.ingest.name, role = var.ingest_after == "keep" ? "roles/storage.objectViewer" : "roles/storage.objectUser", member = local.members.ingest }
    # ... and stores it as an instance blob.
    "ingest-store" = { bucket = google_storage_bucket.store.name, role = "roles/storage.objectUser", member = local.members.ingest }
  }

  # Functions that fan work out to the tasks topic: DICOMweb (study/series deletes, :import and
  # :export coordinators) and the worker itself (shards that schedule follow-ups). The ingest
  # function imports its one object in place and publishes nothing.
  tasks_publishers = {
    dicomweb      = local.members.dicomweb
    service_agent = local.members.service_agent
  }

  # Every function that stores instances may emit store notifications (notificationConfigs).
  notification_publishers = {
    for pair in setproduct(keys(local.runtime_members), var.notification_topics) :
    "${pair[0]}|${pair[1]}" => { member = local.runtime_members[pair[0]], topic = pair[1] }
  }
}

resource "google_storage_bucket_iam_member" "function" {
  for_each = local.function_bucket_bindings

  bucket = each.value.bucket
  role   = each.value.role
  member = each.value.member
}

# Firestore (index, operations, counters). Firestore has no IAM below the project, so
# roles/datastore.user must be granted on the project; the condition narrows it to this store's
# database, which keeps other Firestore databases of the project out of reach.
resource "google_project_iam_member" "firestore_user" {
  for_each = local.runtime_members

  project = var.project_id
  role    = "roles/datastore.user"
  member  = each.value

  condition {
    title       = "${var.name}-firestore-database"
    description = "Only the ${google_firestore_database.store.name} database of ${var.name}."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${google_firestore_database.store.name}\""
  }
}

resource "google_pubsub_topic_iam_member" "tasks_publisher" {
  for_each = local.tasks_publishers

  project = var.project_id
  topic   = google_pubsub_topic.tasks.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

resource "google_pubsub_topic_iam_member" "notification_publisher" {
  for_each = local.notification_publishers

  topic  = each.value.topic
  role   = "roles/pubsub.publisher"
  member = each.value.member
}

# --- who may invoke which function -------------------------------------------------------------
# Gen2 functions are Cloud Run services: invocation is roles/run.invoker on the service.

resource "google_cloud_run_v2_service_iam_member" "dicomweb_invokers" {
  for_each = toset(var.invokers)

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function["dicomweb"].name
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_v2_service_iam_member" "tasks_push_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function["tasks"].name
  role     = "roles/run.invoker"
  member   = local.members.tasks_push
}

resource "google_cloud_run_v2_service_iam_member" "eventarc_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function["on_object_finalized"].name
  role     = "roles/run.invoker"
  member   = local.members.eventarc
}

# --- what Google's delivery machinery needs ------------------------------------------------------

# Eventarc requires its trigger account to hold roles/eventarc.eventReceiver on the project (the
# role has no narrower resource).
resource "google_project_iam_member" "eventarc_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = local.members.eventarc
}

# Cloud Storage triggers publish through a Pub/Sub topic that Eventarc creates (and names) when
# the trigger is created, so the Cloud Storage service agent needs roles/pubsub.publisher on the
# project: no topic exists in advance to scope it to.
resource "google_project_iam_member" "gcs_agent_pubsub_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = local.gcs_agent_member
}

# The Pub/Sub service agent mints the identity tokens of pushes and Eventarc deliveries (needed
# explicitly in projects created before April 2021), scoped to the two delivery accounts.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  for_each = {
    tasks_push = google_service_account.tasks_push.name
    eventarc   = google_service_account.eventarc.name
  }

  service_account_id = each.value
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent_member
}

# Dead-lettering is done by the Pub/Sub service agent: it publishes to the dead-letter topic and
# acknowledges the message on the source subscription.
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent_member
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_tasks_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.tasks.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent_member
}

# --- function builds -----------------------------------------------------------------------------

# Build logs are project-level resources.
resource "google_project_iam_member" "builder" {
  for_each = toset(["roles/logging.logWriter"])

  project = var.project_id
  role    = each.value
  member  = local.members.builder
}

resource "google_artifact_registry_repository_iam_member" "builder_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = local.members.builder
}

resource "google_storage_bucket_iam_member" "builder_source_reader" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = local.members.builder
}

# --- customer-managed encryption (only with var.kms_key_name) ------------------------------------

# BigQuery's per-project agent exists only once the API is on; look it up only when CMEK needs it.
data "google_bigquery_default_service_account" "bq" {
  count = var.kms_key_name == null ? 0 : 1

  project    = var.project_id
  depends_on = [google_project_service.apis]
}

locals {
  kms_users = {
    gcs              = local.gcs_agent_member
    pubsub           = local.pubsub_agent_member
    artifactregistry = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    bigquery         = var.kms_key_name == null ? "" : "serviceAccount:${data.google_bigquery_default_service_account.bq[0].email}"
  }
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each = { for agent, member in local.kms_users : agent => member if var.kms_key_name != null }

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
