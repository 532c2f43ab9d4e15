# The prod environment: the dicom_store module with its protective defaults (versioned store
# bucket, Firestore delete protection and point-in-time recovery) and room to scale.

locals {
  environment = "prod"
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

  firestore = {
    # Multi-region (europe-west1 + europe-west4): the index survives the loss of a region.
    location_id = "eur3"
  }

  functions = {
    # One warm instance keeps DICOMweb latency free of cold starts during the working day.
    dicomweb            = { min_instance_count = 1, max_instance_count = 50 }
    tasks               = { max_instance_count = 50 }
    on_object_finalized = { max_instance_count = 50 }
  }
}
