# Terraform and provider constraints of the dicom_store module.
terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 5.30 brings build_config.service_account and Firestore delete protection; 7.x is untested.
      version = ">= 5.30, < 7.0"
    }
    archive = {
      source = "hashicorp/archive"
      # 2.4 added glob patterns in `excludes` and `output_file_mode` (reproducible archives).
      version = ">= 2.4, < 3.0"
    }
  }
}
