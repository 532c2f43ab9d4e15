# The task queue: study/series purges, storage-class changes, import and export shards. Every
# function that fans work out publishes a JSON envelope to the tasks topic; a push subscription
# delivers each message to the tasks function, with exponential backoff between attempts and a
# dead-letter topic after tasks.max_delivery_attempts.
#
# Why a push subscription and not an Eventarc `event_trigger` on the topic: Eventarc creates and
# owns the subscription of a Pub/Sub trigger, so Terraform could not give it a dead-letter policy.
# A poison task would then be retried until its retention expired and then vanish. Owning the
# subscription keeps retries bounded and failures inspectable, while the function still receives
# the same `messagePublished` CloudEvent (functions-framework converts the push envelope).

locals {
  tasks_topic_name       = "${var.name}-tasks"
  tasks_subscription     = "${var.name}-tasks-worker"
  dead_letter_topic_name = "${var.name}-tasks-dead-letter"
  # Pub/Sub waits this long for the function's answer before redelivering: the function timeout,
  # within Pub/Sub's 10..600 s range.
  tasks_ack_deadline = min(max(local.function_settings.tasks.timeout_seconds, 10), 600)
}

resource "google_pubsub_topic" "tasks" {
  project                    = var.project_id
  name                       = local.tasks_topic_name
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.tasks.topic_message_retention
  labels                     = local.labels

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_topic" "dead_letter" {
  project      = var.project_id
  name         = local.dead_letter_topic_name
  kms_key_name = var.kms_key_name
  labels       = local.labels

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.service_agents]
}

resource "google_pubsub_subscription" "tasks" {
  project = var.project_id
  name    = local.tasks_subscription
  topic   = google_pubsub_topic.tasks.id
  labels  = local.labels

  ack_deadline_seconds       = local.tasks_ack_deadline
  message_retention_duration = var.tasks.message_retention

  # The queue is idle for long stretches; an expired subscription would silently drop tasks.
  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = var.tasks.minimum_backoff
    maximum_backoff = var.tasks.maximum_backoff
  }

  # After this many failed deliveries the task moves to the dead-letter topic. Handlers are
  # idempotent, so a task replayed from there after a fix is safe.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.tasks.max_delivery_attempts
  }

  push_config {
    push_endpoint = google_cloudfunctions2_function.function["tasks"].service_config[0].uri
    # Pub/Sub signs each push with an identity token of this account; only it may invoke the
    # tasks function (iam.tf).
    oidc_token {
      service_account_email = google_service_account.tasks_push.email
      audience              = google_cloudfunctions2_function.function["tasks"].service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.tasks_push_invoker,
    google_pubsub_topic_iam_member.pubsub_agent_dead_letter,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# A topic without subscriptions drops what it receives: this one keeps the dead letters for
# inspection and replay (`gcloud pubsub subscriptions pull ...-tasks-worker-dead`). The name
# follows the queue adapter's convention ("{subscription}-dead").
resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = "${local.tasks_subscription}-dead"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = var.tasks.dead_letter_retention

  expiration_policy {
    ttl = ""
  }
}
