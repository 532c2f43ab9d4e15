"""Use cases: store, search, retrieve, delete, operations, store administration."""
