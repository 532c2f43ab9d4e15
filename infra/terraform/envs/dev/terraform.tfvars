# Example values: replace the project and the principals with your own.
project_id = "example-dicomstore-dev"
region     = "europe-west1"

invokers = [
  "group:dicomstore-dev@example.org",
]

dicom_store = {
  dataset = "dev"
  store   = "default"
}

# A local OHIF viewer during development.
cors_origins = ["http://localhost:3000"]
