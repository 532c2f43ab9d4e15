"""Ports: the Protocols that every adapter (local or gcp) implements."""

from shared.ports.blobs import BlobInfo, BlobStore
from shared.ports.index import Index
from shared.ports.operations import OperationStore
from shared.ports.queue import Message, Queue

__all__ = ["BlobInfo", "BlobStore", "Index", "Message", "OperationStore", "Queue"]
