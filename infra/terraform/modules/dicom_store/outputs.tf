# What callers need to use the store: where to send DICOMweb requests, where to drop files, and
# the identities to grant on resources outside the module.

output "function_urls" {
  description = "HTTPS URL of each function, keyed by entry point."
  value       = { for fn, function in google_cloudfunctions2_function.function : fn => function.service_config[0].uri }
}

output "dicomweb_url" {
  description = "URL of the DICOMweb function; the Healthcare-API paths (/v1/projects/...) go after it."
  value       = google_cloudfunctions2_function.function["dicomweb"].service_config[0].uri
}

output "dicomweb_base_url" {
  description = "DICOMweb base URL of the store, in the Healthcare API's path form: what a dicomweb-client or OHIF needs in place of https://healthcare.googleapis.com/v1/.../dicomWeb."
  value       = "${google_cloudfunctions2_function.function["dicomweb"].service_config[0].uri}/v1/${local.store_resource}/dicomWeb"
}

output "dicom_store_name" {
  description = "Healthcare-API resource name of the store the ingest bucket imports into."
  value       = local.store_resource
}

output "store_bucket" {
  description = "Bucket holding the instance blobs."
  value       = google_storage_bucket.store.name
}

output "ingest_bucket" {
  description = "Bucket to drop DICOM files into; each finalized object is imported into dicom_store_name."
  value       = google_storage_bucket.ingest.name
}

output "source_bucket" {
  description = "Bucket holding the content-addressed function source archives."
  value       = google_storage_bucket.source.name
}

output "function_source_object" {
  description = "Object name of the deployed source archive (functions/{sha256}.zip)."
  value       = google_storage_bucket_object.function_source.name
}

output "tasks_topic" {
  description = "Id of the tasks topic (projects/{project}/topics/{name})."
  value       = google_pubsub_topic.tasks.id
}

output "tasks_subscription" {
  description = "Id of the push subscription feeding the tasks function."
  value       = google_pubsub_subscription.tasks.id
}

output "dead_letter_topic" {
  description = "Id of the topic receiving tasks that failed tasks.max_delivery_attempts times."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Id of the pull subscription keeping dead-lettered tasks for inspection and replay."
  value       = google_pubsub_subscription.dead_letter.id
}

output "firestore_database" {
  description = "Name of the Firestore database."
  value       = google_firestore_database.store.name
}

output "bigquery_dataset" {
  description = "Export dataset as {project}.{dataset}: export to bq://{project}.{dataset}.{table}."
  value       = "${var.project_id}.${google_bigquery_dataset.exports.dataset_id}"
}

output "service_agent_email" {
  description = "The store's service agent (runs imports and exports): grant it roles/storage.objectAdmin on export buckets and roles/storage.objectViewer on import buckets created outside this module."
  value       = google_service_account.service_agent.email
}

output "function_service_accounts" {
  description = "Runtime service account of each function, keyed by entry point."
  value       = { for fn, function in local.functions : fn => function.service_account }
}
