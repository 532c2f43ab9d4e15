# Example values: replace the project and the principals with your own.
project_id = "example-dicomstore-prod"
region     = "europe-west1"

invokers = [
  "group:radiology-imaging@example.org",
  "serviceAccount:dimse-adapter@example-dicomstore-prod.iam.gserviceaccount.com",
]

dicom_store = {
  dataset = "hospital"
  store   = "archive"
}
