"""One frozen settings object read from the environment; nothing else reads os.environ."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigurationError

_BACKENDS = ("local", "gcp")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Every tunable of the process, with the defaults of embedded mode."""

    backend: str = "local"
    data_dir: Path = Path("./dicomstore-data")
    host: str = "127.0.0.1"
    port: int = 8080
    default_store: str = "projects/local/locations/local/datasets/default/dicomStores/default"
    create_default_store: bool = True
    auth_token: str | None = None
    public_base_url: str | None = None
    queue_workers: int = 2
    server_threads: int = 8
    fsync: bool = True
    log_json: bool = False
    log_level: str = "INFO"
    # Freeze start-up objects and collect young objects less often (shared/web/gc_tuning.py).
    # The embedded server always does; cloud functions when Terraform sets it.
    gc_tuning: bool = False
    cors_origins: tuple[str, ...] = ()
    # Cloud mode (backend "gcp"): where the adapters live, and emulator endpoints for local runs.
    gcp_project: str | None = None
    blob_bucket: str | None = None
    tasks_topic: str = "dicomstore-tasks"
    tasks_subscription: str | None = None
    collection_prefix: str = ""
    firestore_database: str = "(default)"
    firestore_emulator_host: str | None = None
    pubsub_emulator_host: str | None = None
    storage_emulator_host: str | None = None
    bigquery_emulator_host: str | None = None
    # Export to BigQuery writes its rows here (as Google stages a load job) before one load;
    # None: the blob bucket in cloud mode, "dicomstore-staging" under DATA_DIR/gcs embedded.
    staging_bucket: str | None = None
    # Object-name prefix of those rows. Terraform passes the prefix its lifecycle rule clears,
    # so rows left by an export that never finished do not stay in the bucket forever.
    export_staging_prefix: str = "export-staging/"
    # Import from Cloud Storage: the storage trigger (cloud) and the inbox watcher (embedded).
    ingest_bucket: str = "ingest"
    ingest_store: str | None = None  # None: the default store
    ingest_after: str = "keep"
    ingest_watch: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read DICOMSTORE_* (and PORT) variables, failing loudly on malformed values."""
        env = os.environ if env is None else env
        backend = env.get("DICOMSTORE_BACKEND", "local")
        if backend not in _BACKENDS:
            raise ConfigurationError(
                f"DICOMSTORE_BACKEND must be one of {_BACKENDS}, got {backend!r}"
            )
        return cls(
            backend=backend,
            data_dir=Path(env.get("DICOMSTORE_DATA_DIR", "./dicomstore-data")),
            host=env.get("DICOMSTORE_HOST", "127.0.0.1"),
            port=_int(env, "PORT", 8080, minimum=0),
            default_store=env.get("DICOMSTORE_DEFAULT_STORE", cls.default_store),
            create_default_store=_bool(env, "DICOMSTORE_CREATE_DEFAULT_STORE", True),
            auth_token=env.get("DICOMSTORE_AUTH_TOKEN") or None,
            public_base_url=(env.get("DICOMSTORE_PUBLIC_BASE_URL") or None),
            queue_workers=_int(env, "DICOMSTORE_QUEUE_WORKERS", 2, minimum=1),
            server_threads=_int(env, "DICOMSTORE_SERVER_THREADS", 8, minimum=1),
            fsync=_bool(env, "DICOMSTORE_FSYNC", True),
            log_json=_bool(env, "DICOMSTORE_LOG_JSON", False),
            log_level=env.get("DICOMSTORE_LOG_LEVEL", "INFO").upper(),
            gc_tuning=_bool(env, "DICOMSTORE_GC_TUNING", False),
            cors_origins=_origins(env.get("DICOMSTORE_CORS_ORIGINS", "")),
            gcp_project=env.get("DICOMSTORE_GCP_PROJECT")
            or env.get("GOOGLE_CLOUD_PROJECT")
            or None,
            blob_bucket=env.get("DICOMSTORE_BUCKET") or None,
            tasks_topic=env.get("DICOMSTORE_TASKS_TOPIC", "dicomstore-tasks"),
            tasks_subscription=env.get("DICOMSTORE_TASKS_SUBSCRIPTION") or None,
            collection_prefix=env.get("DICOMSTORE_COLLECTION_PREFIX", ""),
            firestore_database=env.get("DICOMSTORE_FIRESTORE_DATABASE") or "(default)",
            firestore_emulator_host=env.get("FIRESTORE_EMULATOR_HOST") or None,
            pubsub_emulator_host=env.get("PUBSUB_EMULATOR_HOST") or None,
            storage_emulator_host=env.get("STORAGE_EMULATOR_HOST") or None,
            bigquery_emulator_host=env.get("BIGQUERY_EMULATOR_HOST") or None,
            staging_bucket=(
                _bucket(env, "DICOMSTORE_STAGING_BUCKET", "")
                if env.get("DICOMSTORE_STAGING_BUCKET")
                else None
            ),
            export_staging_prefix=_folder(
                env, "DICOMSTORE_EXPORT_STAGING_PREFIX", "export-staging/"
            ),
            ingest_bucket=_bucket(env, "DICOMSTORE_INGEST_BUCKET", "ingest"),
            ingest_store=env.get("DICOMSTORE_INGEST_STORE") or None,
            ingest_after=_after(env, "DICOMSTORE_INGEST_AFTER"),
            ingest_watch=_bool(env, "DICOMSTORE_INGEST_WATCH", True),
        ).checked()

    @property
    def export_staging_bucket(self) -> str:
        """Where export-to-BigQuery stages its NDJSON rows."""
        if self.staging_bucket:
            return self.staging_bucket
        if self.backend == "gcp" and self.blob_bucket:
            return self.blob_bucket
        return "dicomstore-staging"

    @property
    def ingest_target(self) -> str:
        """The store that dropped files go to."""
        return self.ingest_store or self.default_store

    def checked(self) -> Settings:
        """Fail at start-up, naming the variable, when the chosen backend lacks a setting."""
        if self.backend == "gcp":
            for value, name in (
                (self.gcp_project, "DICOMSTORE_GCP_PROJECT (or GOOGLE_CLOUD_PROJECT)"),
                (self.blob_bucket, "DICOMSTORE_BUCKET"),
            ):
                if not value:
                    raise ConfigurationError(f"{name} is required when DICOMSTORE_BACKEND=gcp")
        return self


def _bucket(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    if not _BUCKET_RE.match(value):
        raise ConfigurationError(f"{name} must be a Cloud Storage bucket name, got {value!r}")
    return value


def _folder(env: Mapping[str, str], name: str, default: str) -> str:
    """An object-name prefix such as "tmp/exports/": no leading '/', one trailing '/'."""
    value = env.get(name) or default
    if not value.endswith("/") or not _plain_path(value.removesuffix("/")):
        raise ConfigurationError(
            f"{name} must be an object-name prefix such as 'tmp/exports/' (no leading '/',"
            f" no empty, '.' or '..' segments, a trailing '/'), got {value!r}"
        )
    return value


def _plain_path(path: str) -> bool:
    """True when no segment of a '/'-separated object path is empty, '.' or '..'."""
    return not any(segment in ("", ".", "..") for segment in path.split("/"))


def _after(env: Mapping[str, str], name: str) -> str:
    value = env.get(name) or "keep"
    action, _, prefix = value.partition(":")
    if value in ("keep", "delete") or (action == "move" and _plain_path(prefix.strip("/"))):
        return value
    raise ConfigurationError(f"{name} must be keep, delete or move:PREFIX, got {value!r}")


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"DICOMSTORE_CORS_ORIGINS entries are '*' or http(s) origins, got {origin!r}"
            )
    return origins
