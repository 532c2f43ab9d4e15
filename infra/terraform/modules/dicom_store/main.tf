# The dicom_store module: one serverless, Healthcare-API compatible DICOM store.
#
#   storage.tf            store, ingest and function-source buckets; the source archive
#   firestore.tf          the Firestore database and its composite indexes
#   firestore_indexes.tf  GENERATED index list (infra/terraform/scripts/gen_firestore_indexes.py)
#   pubsub.tf             tasks topic, push subscription, dead-letter topic and its hold subscription
#   functions.tf          the three Cloud Functions (gen2) built from one source archive
#   bigquery.tf           the dataset metadata exports load into
#   iam.tf                service accounts and every role binding, resource-scoped where possible
#
# This file holds what the others share: project lookups, names and API enablement.

data "google_project" "this" {
  project_id = var.project_id
}

# Cloud Storage's per-project service agent: it publishes the object events that Eventarc turns
# into on_object_finalized calls, and encrypts objects when CMEK is on.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}

locals {
  bucket_prefix = "${var.project_id}-${var.name}"
  bucket_names = {
    store  = coalesce(var.buckets.store_name, "${local.bucket_prefix}-store")
    ingest = coalesce(var.buckets.ingest_name, "${local.bucket_prefix}-ingest")
    source = coalesce(var.buckets.source_name, "${local.bucket_prefix}-source")
  }
  store_location      = coalesce(var.buckets.store_location, var.region)
  firestore_location  = coalesce(var.firestore.location_id, var.region)
  bigquery_dataset_id = coalesce(var.bigquery.dataset_id, replace("${var.name}_exports", "-", "_"))
  # Load jobs read the NDJSON staged in the store bucket: BigQuery wants both in one location.
  bigquery_location = coalesce(var.bigquery.location, local.store_location)

  # The Healthcare-API name of the store the outputs point at and the ingest bucket feeds.
  store_resource = join("/", [
    "projects", var.project_id, "locations", var.region,
    "datasets", var.dicom_store.dataset, "dicomStores", var.dicom_store.store,
  ])

  # Google-managed service agents that act on the module's resources.
  gcs_agent_member    = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
  pubsub_agent_member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  labels = merge({ app = "dicomstore", stack = var.name }, var.labels)

  # Everything the module creates or calls; storage and IAM are usually on already.
  apis = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? local.apis : toset([])

  project = var.project_id
  service = each.value
  # Other workloads in the project may rely on these APIs: destroying the store leaves them on.
  disable_on_destroy         = false
  disable_dependent_services = false
}
