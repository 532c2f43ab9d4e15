# The dataset that `:export` with a bigqueryDestination (bq://{project}.{dataset}.{table}) loads
# into. Tables are created by the export itself, with the schema it derives from the data.
# Access is granted with dataset-scoped IAM members (iam.tf), never with authoritative `access`
# blocks here, which would fight those members on every apply.

resource "google_bigquery_dataset" "exports" {
  project                    = var.project_id
  dataset_id                 = local.bigquery_dataset_id
  friendly_name              = "${var.name} DICOM metadata exports"
  description                = "Flattened DICOM metadata exported from ${local.store_resource} and other stores of ${var.name}."
  location                   = local.bigquery_location
  delete_contents_on_destroy = var.bigquery.delete_contents_on_destroy
  labels                     = local.labels

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}
