"""The `dicomstore` command: run the embedded store, and operate any store over HTTP."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from shared.cli_ops import commands as operator_commands
from shared.config import Settings

if TYPE_CHECKING:
    from shared.service.context import Services
    from shared.service.watch import InboxWatcher

logger = logging.getLogger(__name__)

FUNCTIONS_SOURCE = Path(__file__).resolve().parent.parent / "functions" / "main.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicomstore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the embedded DICOM store")
    serve.add_argument("--host", help="address to bind (default DICOMSTORE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default PORT or 8080)")
    serve.add_argument("--data-dir", type=Path, help="data directory (DICOMSTORE_DATA_DIR)")
    cloud = commands.add_parser(
        "run-cloud", help="run the three functions on the Google Cloud emulators, push-wired"
    )
    cloud.add_argument("--port", type=int, default=8080, help="port of dicomweb (default 8080)")
    operator_commands.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command in operator_commands.COMMANDS:
        return operator_commands.run(args)
    if args.command == "run-cloud":
        return run_cloud(args.port)
    settings = Settings.from_env()
    overrides = {
        key: value
        for key, value in (("host", args.host), ("port", args.port), ("data_dir", args.data_dir))
        if value is not None
    }
    settings = dataclasses.replace(settings, **overrides)
    return serve_forever(settings)


def run_cloud(port: int) -> int:
    """`dicomstore run-cloud`: see shared/devcloud/run.py."""
    import os

    from shared.devcloud.emulators import EmulatorUnavailable
    from shared.devcloud.run import run_cloud as run

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    store = Settings.from_env({**os.environ, "DICOMSTORE_BACKEND": "local"}).default_store
    try:
        return run(port, store)
    except EmulatorUnavailable as exc:
        sys.stderr.write(f"run-cloud: {exc}\n")
        return 2


def serve_forever(settings: Settings) -> int:
    """Serve functions/main.py's `dicomweb` with waitress, a production WSGI server."""
    import functions_framework

    from shared import bootstrap
    from shared.logging_setup import configure_logging
    from shared.web import wsgi_server

    configure_logging(settings)
    services = bootstrap.build_services(settings)
    bootstrap.set_services(services)
    watcher = _start_watcher(settings, services)
    app = functions_framework.create_app(target="dicomweb", source=str(FUNCTIONS_SOURCE))
    base = f"http://{settings.host}:{settings.port}/v1/{settings.default_store}/dicomWeb"
    sys.stdout.write(f"DICOMweb base URL: {base}\n")
    sys.stdout.flush()
    try:
        wsgi_server.serve(
            app, host=settings.host, port=settings.port, threads=settings.server_threads
        )
    finally:
        if watcher is not None:
            watcher.stop()
        stop = getattr(services.queue, "stop", None)
        if callable(stop):
            stop()
    return 0


def _start_watcher(settings: Settings, services: Services) -> InboxWatcher | None:
    """The embedded stand-in for the storage trigger: .dcm files dropped into the inbox."""
    if not settings.ingest_watch:
        return None
    from shared.service.watch import InboxWatcher

    gcs_root = Path(settings.data_dir).resolve() / "gcs"
    watcher = InboxWatcher(
        services,
        gcs_root,
        settings.ingest_bucket,
        settings.ingest_target,
        after=settings.ingest_after,
    )
    watcher.start()
    sys.stdout.write(f"Inbox: .dcm files dropped into {watcher.inbox} are imported\n")
    return watcher


if __name__ == "__main__":
    raise SystemExit(main())
