# Inputs of this environment; values live in terraform.tfvars.

variable "project_id" {
  description = "Project of this environment."
  type        = string
}

variable "region" {
  description = "Region of the functions and buckets."
  type        = string
}

variable "invokers" {
  description = "Principals allowed to call DICOMweb (user:, group:, serviceAccount:, domain:)."
  type        = list(string)
  default     = []
}

variable "dicom_store" {
  description = "Dataset and store ids of the Healthcare-API store the ingest bucket feeds."
  type = object({
    dataset = optional(string, "default")
    store   = optional(string, "default")
  })
  default = {}
}

variable "export_buckets" {
  description = "Buckets outside the module that :export may write to."
  type        = list(string)
  default     = []
}

variable "import_buckets" {
  description = "Buckets outside the module that :import may read from."
  type        = list(string)
  default     = []
}

variable "cors_origins" {
  description = "Browser origins (e.g. an OHIF viewer) allowed to call DICOMweb."
  type        = list(string)
  default     = []
}

variable "source_dir" {
  description = "Staged function source; null means build/function-source at the repository root (infra/terraform/scripts/stage_function_source.sh)."
  type        = string
  default     = null
}
