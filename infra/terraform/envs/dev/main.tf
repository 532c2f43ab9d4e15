# The dev environment: the dicom_store module with settings that make it cheap and disposable
# (buckets and Firestore data go with `terraform destroy`, everything scales to zero).

locals {
  environment = "dev"
  source_dir  = coalesce(var.source_dir, "${path.root}/../../../../build/function-source")
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    environment = local.environment
    managed-by  = "terraform"
  }
}

module "dicom_store" {
  source = "../../modules/dicom_store"

  project_id     = var.project_id
  region         = var.region
  name           = "dicomstore-${local.environment}"
  source_dir     = local.source_dir
  dicom_store    = var.dicom_store
  invokers       = var.invokers
  export_buckets = var.export_buckets
  import_buckets = var.import_buckets
  cors_origins   = var.cors_origins
  log_level      = "DEBUG"

  buckets = {
    force_destroy                     = true
    noncurrent_version_retention_days = 7
    ingest_retention_days             = 30
  }

  firestore = {
    delete_protection      = false
    point_in_time_recovery = false
  }

  bigquery = {
    delete_contents_on_destroy = true
  }

  tasks = {
    max_delivery_attempts = 5
  }

  functions = {
    dicomweb            = { max_instance_count = 3 }
    tasks               = { max_instance_count = 3 }
    on_object_finalized = { max_instance_count = 3 }
  }
}
