"""Offline checks of infra/terraform and cloudbuild.yaml: format, structure, IAM, checkov."""
