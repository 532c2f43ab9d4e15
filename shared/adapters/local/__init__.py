"""Embedded-mode adapters: blobs in a directory, SQLite index and operations, in-process queue."""
