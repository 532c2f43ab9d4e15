"""Google Cloud adapters: Cloud Storage blobs, Firestore operations, Pub/Sub queue."""
