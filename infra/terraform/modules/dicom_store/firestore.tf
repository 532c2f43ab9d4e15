# Firestore in native mode holds the search index (study/series/instance documents), the
# long-running operations with their per-shard results, and the stores themselves.

resource "google_firestore_database" "store" {
  project     = var.project_id
  name        = var.firestore.database
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"
  # Server client libraries take pessimistic locks in transactions; the code avoids contended
  # documents (per-shard results, increments) rather than relying on optimistic retries.
  concurrency_mode = "PESSIMISTIC"
  # Seven days of point-in-time reads: the way back from a bad deploy that corrupted the index.
  point_in_time_recovery_enablement = var.firestore.point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.firestore.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # "DELETE" rather than the provider's "ABANDON": with delete protection on (prod) `terraform
  # destroy` fails loudly instead of silently forgetting the database; without it (dev) the data
  # really goes, so a fresh apply starts clean.
  deletion_policy = "DELETE"

  depends_on = [google_project_service.apis]
}

# Every composite index a query of the code needs. The list lives in firestore_indexes.tf,
# generated from shared/adapters/gcp/firestore_indexes.py (plus the operations listing), so the
# planner and the deployment cannot drift apart: tests/infra checks that the file is current.
# Top-level collection ids get the prefix the adapters use (DICOMSTORE_COLLECTION_PREFIX);
# subcollections of a store document (studies, series, instances) keep their bare ids.
resource "google_firestore_index" "composite" {
  for_each = local.firestore_indexes

  project     = var.project_id
  database    = google_firestore_database.store.name
  collection  = each.value.prefixed ? "${var.firestore.collection_prefix}${each.value.collection}" : each.value.collection
  query_scope = each.value.query_scope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.field_path
      order        = fields.value.order
      array_config = fields.value.array_config
    }
  }
}

# Large values the code never filters on (instance metadata JSON, frame tables, summaries):
# exempt from automatic single-field indexing, which would cost a write per field and fail
# beyond Firestore's 1500-byte index entry limit. An empty index_config removes all indexes.
resource "google_firestore_field" "exemption" {
  for_each = local.firestore_field_exemptions

  project    = var.project_id
  database   = google_firestore_database.store.name
  collection = each.value.prefixed ? "${var.firestore.collection_prefix}${each.value.collection}" : each.value.collection
  field      = each.value.field

  index_config {}
}
