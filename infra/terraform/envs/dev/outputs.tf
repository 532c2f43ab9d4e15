output "dicomweb_base_url" {
  description = "DICOMweb base URL in Healthcare-API path form."
  value       = module.dicom_store.dicomweb_base_url
}

output "function_urls" {
  description = "URL of each function, keyed by entry point."
  value       = module.dicom_store.function_urls
}

output "store_bucket" {
  description = "Bucket holding the instance blobs."
  value       = module.dicom_store.store_bucket
}

output "ingest_bucket" {
  description = "Drop DICOM files here to import them."
  value       = module.dicom_store.ingest_bucket
}

output "tasks_topic" {
  description = "Tasks topic id."
  value       = module.dicom_store.tasks_topic
}

output "dead_letter_subscription" {
  description = "Where failed tasks wait for inspection."
  value       = module.dicom_store.dead_letter_subscription
}

output "bigquery_dataset" {
  description = "Export dataset ({project}.{dataset})."
  value       = module.dicom_store.bigquery_dataset
}

output "service_agent_email" {
  description = "Grant this account access to export/import buckets created elsewhere."
  value       = module.dicom_store.service_agent_email
}
