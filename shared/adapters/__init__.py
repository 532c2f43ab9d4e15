"""Implementations of the ports: local (files, SQLite) and gcp (Google Cloud)."""
