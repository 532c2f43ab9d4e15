# Remote state in Cloud Storage, one prefix per environment (so each has its own state and
# lock). The bucket is not named here: `terraform init -backend-config="bucket=STATE_BUCKET"`
# supplies it (cloudbuild.yaml passes _TF_STATE_BUCKET), so the same files serve any project.
terraform {
  backend "gcs" {
    prefix = "dicomstore/prod"
  }
}
