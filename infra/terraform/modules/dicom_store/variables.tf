# Inputs of the dicom_store module. Every knob has a production-safe default; the
# environment roots (envs/dev, envs/prod) override only what differs between them.

variable "project_id" {
  description = "Google Cloud project that hosts the store."
  type        = string
}

variable "region" {
  description = "Region of the functions, the ingest bucket (Eventarc requires the trigger in the bucket's region) and, by default, every other regional resource."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name, e.g. \"dicomstore-dev\". Service account ids append up to 9 characters and must stay within 30."
  type        = string
  default     = "dicomstore"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name must be 3-21 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Labels added to every resource that accepts them."
  type        = map(string)
  default     = {}
}

variable "enable_apis" {
  description = "Enable the Google APIs the store needs. Turn off when a platform team manages project services."
  type        = bool
  default     = true
}

variable "source_dir" {
  description = "Directory holding the staged function source: main.py and requirements.txt from functions/ plus the shared/ package (see infra/terraform/scripts/stage_function_source.sh)."
  type        = string
}

variable "dicom_store" {
  description = "The Healthcare-API resource the outputs point at and the ingest bucket imports into (projects/{project}/locations/{region}/datasets/{dataset}/dicomStores/{store}). It is created on first start."
  type = object({
    dataset = optional(string, "default")
    store   = optional(string, "default")
  })
  default = {}

  validation {
    condition = alltrue([
      for id in [var.dicom_store.dataset, var.dicom_store.store] : can(regex("^[A-Za-z0-9_.-]{1,256}$", id))
    ])
    error_message = "dataset and store ids hold letters, digits, '_', '-' and '.' only (Healthcare API rules)."
  }
}

variable "buckets" {
  description = "Cloud Storage settings. Names default to \"{project_id}-{name}-{store|ingest|source}\"."
  type = object({
    store_name                        = optional(string)
    ingest_name                       = optional(string)
    source_name                       = optional(string)
    store_location                    = optional(string) # defaults to var.region; a dual-region is fine
    force_destroy                     = optional(bool, false)
    export_staging_prefix             = optional(string, "tmp/exports/")
    export_staging_retention_days     = optional(number, 2)
    noncurrent_version_retention_days = optional(number, 30)
    ingest_retention_days             = optional(number) # null keeps dropped files
    access_log_bucket                 = optional(string) # legacy usage logs; audit logs are preferred
  })
  default = {}

  validation {
    condition     = endswith(var.buckets.export_staging_prefix, "/") && !startswith(var.buckets.export_staging_prefix, "/")
    error_message = "export_staging_prefix is an object-name prefix such as \"tmp/exports/\" (no leading '/', trailing '/')."
  }

  validation {
    condition     = var.buckets.export_staging_retention_days >= 1 && var.buckets.noncurrent_version_retention_days >= 1
    error_message = "Retention periods are whole days, at least 1."
  }
}

variable "firestore" {
  description = "Firestore (native mode) database holding the index, operations and counters."
  type = object({
    database               = optional(string, "(default)")
    location_id            = optional(string) # defaults to var.region; "eur3" or "nam5" for multi-region
    collection_prefix      = optional(string, "")
    delete_protection      = optional(bool, true)
    point_in_time_recovery = optional(bool, true)
  })
  default = {}

  validation {
    condition     = can(regex("^[a-z0-9_]*$", var.firestore.collection_prefix))
    error_message = "collection_prefix holds lowercase letters, digits and '_' only."
  }
}

variable "tasks" {
  description = "Delivery of the tasks topic to the tasks function: Pub/Sub retry backoff, attempts before dead-lettering, retention."
  type = object({
    max_delivery_attempts   = optional(number, 10)
    minimum_backoff         = optional(string, "10s")
    maximum_backoff         = optional(string, "600s")
    message_retention       = optional(string, "604800s") # 7 days, the Pub/Sub maximum for subscriptions
    dead_letter_retention   = optional(string, "604800s")
    topic_message_retention = optional(string) # replay window on the topic itself; null keeps none
  })
  default = {}

  validation {
    condition     = var.tasks.max_delivery_attempts >= 5 && var.tasks.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts max_delivery_attempts between 5 and 100."
  }
}

variable "functions" {
  description = <<-EOT
    Per-function overrides of the runtime settings, keyed by dicomweb, tasks or on_object_finalized.
    Unset fields keep the defaults of local.function_defaults (functions.tf). Timeouts: dicomweb up
    to 3600 s (HTTP); tasks up to 600 s (the Pub/Sub push acknowledgement limit);
    on_object_finalized up to 540 s (event-driven functions).
  EOT
  type = map(object({
    memory                           = optional(string)
    cpu                              = optional(string)
    timeout_seconds                  = optional(number)
    min_instance_count               = optional(number)
    max_instance_count               = optional(number)
    max_instance_request_concurrency = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for key in keys(var.functions) : contains(["dicomweb", "tasks", "on_object_finalized"], key)])
    error_message = "functions keys are dicomweb, tasks and on_object_finalized."
  }
}

variable "invokers" {
  description = "Principals allowed to call the DICOMweb function (roles/run.invoker on it alone), e.g. [\"group:radiology-it@example.org\", \"serviceAccount:viewer@p.iam.gserviceaccount.com\"]. Public principals are refused."
  type        = list(string)
  default     = []

  validation {
    # An allow-list of principal kinds: the two public principals have no "kind:" prefix.
    condition     = alltrue([for m in var.invokers : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):.+", m))])
    error_message = "invokers are IAM principals such as user:..., group:..., serviceAccount:...; public access is not allowed."
  }
}

variable "dicomweb_ingress" {
  description = "Ingress of the DICOMweb function: ALLOW_ALL (IAM still applies), ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB (behind a load balancer)."
  type        = string
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.dicomweb_ingress)
    error_message = "dicomweb_ingress is ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "ingest_after" {
  description = "What on_object_finalized does with a file it imported (DICOMSTORE_INGEST_AFTER): \"keep\", \"delete\" or \"move:PREFIX\" (into PREFIX/ of the same bucket). delete and move let the ingest function write to the ingest bucket."
  type        = string
  default     = "keep"

  validation {
    condition     = can(regex("^(keep|delete|move:[^/].*)$", var.ingest_after))
    error_message = "ingest_after is keep, delete or move:PREFIX (a relative object prefix)."
  }
}

variable "export_buckets" {
  description = "Extra buckets (names) that :export may write to. The service agent gets roles/storage.objectAdmin on each, as the Healthcare API requires for its own agent."
  type        = list(string)
  default     = []
}

variable "import_buckets" {
  description = "Extra buckets (names) that :import may read from. The service agent gets roles/storage.objectViewer on each."
  type        = list(string)
  default     = []
}

variable "notification_topics" {
  description = "Pub/Sub topic ids (projects/{p}/topics/{t}) that stores' notificationConfigs may name; the functions that store instances may publish to them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.notification_topics : can(regex("^projects/[^/]+/topics/[^/]+$", t))])
    error_message = "notification_topics are full topic ids: projects/{project}/topics/{topic}."
  }
}

variable "bigquery" {
  description = "BigQuery dataset that metadata exports write to (bq://{project}.{dataset_id}.{table})."
  type = object({
    dataset_id                 = optional(string) # defaults to "{name}_exports" with '-' as '_'
    location                   = optional(string) # defaults to var.region: load jobs need the staging bucket's location
    delete_contents_on_destroy = optional(bool, false)
  })
  default = {}
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/.../cryptoKeys/...) for CMEK on the buckets, topics, the BigQuery dataset and the function image repository. The module grants the Google service agents encrypt/decrypt on it. Null uses Google-managed keys."
  type        = string
  default     = null
}

variable "log_level" {
  description = "DICOMSTORE_LOG_LEVEL of the functions."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level is DEBUG, INFO, WARNING or ERROR."
  }
}

variable "public_base_url" {
  description = "DICOMSTORE_PUBLIC_BASE_URL: base of RetrieveURL/BulkDataURI values when clients reach DICOMweb through a proxy or load balancer. Null derives it from each request."
  type        = string
  default     = null
}

variable "cors_origins" {
  description = "Browser origins (e.g. an OHIF deployment) allowed to call DICOMweb (DICOMSTORE_CORS_ORIGINS)."
  type        = list(string)
  default     = []
}

variable "extra_environment" {
  description = "Additional environment variables for every function; they override the module's own."
  type        = map(string)
  default     = {}
}
