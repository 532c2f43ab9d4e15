# Cloud Storage: the store bucket (instance blobs, cached metadata, export staging), the ingest
# bucket (drop a .dcm, it is imported) and the bucket holding the function source archives.
# All three are private: uniform bucket-level access (IAM only, no object ACLs) and public
# access prevention enforced, whatever IAM is granted later.

resource "google_storage_bucket" "store" {
  project                     = var.project_id
  name                        = local.bucket_names.store
  location                    = local.store_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.buckets.force_destroy
  labels                      = local.labels

  # Instances are written once and never overwritten; versioning turns an accidental delete or
  # a buggy rewrite into something recoverable for noncurrent_version_retention_days.
  versioning {
    enabled = true
  }

  # BigQuery exports stage NDJSON here before the single load job; a crashed export must not
  # leave copies of patient metadata behind.
  lifecycle_rule {
    condition {
      age            = var.buckets.export_staging_retention_days
      matches_prefix = [var.buckets.export_staging_prefix]
    }
    action {
      type = "Delete"
    }
  }

  # A deleted instance (or a removed staging object) stays as a noncurrent version for this long,
  # then is gone for good: deletes of patient data must become final.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.buckets.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.buckets.access_log_bucket == null ? [] : [var.buckets.access_log_bucket]
    content {
      log_bucket = logging.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_storage_bucket" "ingest" {
  #checkov:skip=CKV_GCP_78:A drop zone: each file is imported into the versioned store bucket on arrival, so versions here would only keep extra copies of patient data.
  project                     = var.project_id
  name                        = local.bucket_names.ingest
  location                    = var.region # Eventarc storage triggers must live in the bucket's own region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.buckets.force_destroy
  labels                      = local.labels

  # Optional clean-up of imported files; by default they stay, as after a Healthcare-API import.
  dynamic "lifecycle_rule" {
    for_each = var.buckets.ingest_retention_days == null ? [] : [var.buckets.ingest_retention_days]
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  dynamic "logging" {
    for_each = var.buckets.access_log_bucket == null ? [] : [var.buckets.access_log_bucket]
    content {
      log_bucket = logging.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs (code, no patient data); Cloud Audit Logs cover it.
  #checkov:skip=CKV_GCP_78:Objects are named by the SHA-256 of their content and never overwritten, so versioning would add nothing.
  project                     = var.project_id
  name                        = local.bucket_names.source
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # only rebuildable archives live here
  labels                      = local.labels

  depends_on = [google_project_service.apis]
}

# One archive for every function (they differ by entry point). Its object name carries the
# SHA-256 of the zip, so a code change creates a new object and redeploys the functions while an
# unchanged tree plans no change. archive_file writes entries with fixed timestamps and, with
# output_file_mode, fixed permissions: the same tree hashes the same on every machine.
data "archive_file" "function_source" {
  type             = "zip"
  source_dir       = var.source_dir
  output_path      = "${dirname(abspath(var.source_dir))}/${var.name}-function-source.zip"
  output_file_mode = "0644"
  excludes         = ["**/__pycache__/**", "**/*.pyc"]
}

resource "google_storage_bucket_object" "function_source" {
  name         = "functions/${data.archive_file.function_source.output_sha256}.zip"
  bucket       = google_storage_bucket.source.name
  source       = data.archive_file.function_source.output_path
  content_type = "application/zip"
}
