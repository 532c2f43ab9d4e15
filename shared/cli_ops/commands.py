"""Argument parsing and dispatch of the operator commands: ops, import, export, upload."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.cli_ops.transfer import STORAGE_CLASSES, WRITE_DISPOSITIONS

if TYPE_CHECKING:
    from shared.cli_ops.api import Endpoint
    from shared.domain.identifiers import DatasetName, StoreName

COMMANDS = ("ops", "import", "export", "upload")
DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def add_commands(commands: Any) -> None:
    """Add the operator subcommands to `dicomstore`'s subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where")
    where.add_argument(
        "--url",
        help=f"base URL of the API (default $DICOMSTORE_URL or {DEFAULT_URL}); "
        "https://healthcare.googleapis.com drives Google's API; a pasted .../dicomWeb URL "
        "also sets the store",
    )
    where.add_argument(
        "--store",
        help="projects/P/locations/L/datasets/D/dicomStores/S (default DICOMSTORE_DEFAULT_STORE)",
    )
    where.add_argument("--token", help="Bearer token (default $DICOMSTORE_TOKEN), e.g. from gcloud")
    where.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bars on stderr: auto shows them only on a terminal",
    )
    watching = argparse.ArgumentParser(add_help=False)
    watching.add_argument(
        "--interval", type=float, default=2.0, help="seconds between polls (default 2)"
    )

    ops = commands.add_parser("ops", help="long-running operations: watch, get, list, cancel")
    verbs = ops.add_subparsers(dest="ops_command", required=True)
    for verb, text in (
        ("watch", "follow an operation with a progress bar until it ends"),
        ("get", "print an operation's JSON"),
        ("cancel", "ask the server to cancel an operation"),
    ):
        parser = verbs.add_parser(
            verb, help=text, parents=[common, watching] if verb == "watch" else [common]
        )
        parser.add_argument("name", help="projects/.../datasets/D/operations/ID, or a bare ID")
        _dataset_option(parser)
    listing = verbs.add_parser(
        "list", help="the dataset's operations, newest first", parents=[common]
    )
    _dataset_option(listing)
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--json", action="store_true", help="print the operations' JSON")

    importing = commands.add_parser(
        "import", help="import gs:// objects into the store", parents=[common, watching]
    )
    importing.add_argument("uri", help="gs://BUCKET/PATTERN with *, ? or a trailing **")
    importing.add_argument("--storage-class", choices=STORAGE_CLASSES)
    importing.add_argument("--no-watch", action="store_true", help="print the operation, exit")

    exporting = commands.add_parser(
        "export", help="export the store to Cloud Storage or BigQuery", parents=[common, watching]
    )
    destination = exporting.add_mutually_exclusive_group(required=True)
    destination.add_argument("--gcs", metavar="gs://BUCKET/PREFIX")
    destination.add_argument("--bigquery", metavar="bq://PROJECT.DATASET.TABLE")
    exporting.add_argument(
        "--mime-type", help="with --gcs, e.g. 'application/dicom; transfer-syntax=*'"
    )
    exporting.add_argument("--write-disposition", choices=WRITE_DISPOSITIONS)
    exporting.add_argument("--include-source-store", action="store_true")
    exporting.add_argument("--filter", metavar="gs://BUCKET/filter.txt", help="study/series paths")
    exporting.add_argument("--no-watch", action="store_true", help="print the operation, exit")

    uploading = commands.add_parser(
        "upload", help="store a folder's DICOM Part-10 files through STOW-RS", parents=[common]
    )
    uploading.add_argument("folder", type=Path)
    uploading.add_argument("--parallel", type=int, default=4, help="parallel requests (4)")
    uploading.add_argument("--batch-size", type=int, default=10, help="files per request (10)")
    uploading.add_argument(
        "--batch-mb",
        type=int,
        default=32,
        help="bytes per request, in MB, unless one file is bigger (32)",
    )
    uploading.add_argument("--no-recursive", action="store_true", help="skip subfolders")
    uploading.add_argument("--storage-class", choices=STORAGE_CLASSES)
    uploading.add_argument("--retries", type=int, default=3, help="per request on 429/5xx (3)")


def _dataset_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", help="projects/P/locations/L/datasets/D (default: the store's dataset)"
    )


def run(args: argparse.Namespace) -> int:
    """Run one operator command; a CliError is one line on stderr and exit code 2."""
    from shared.cli_ops.api import CliError

    try:
        return _dispatch(args)
    except CliError as exc:
        sys.stderr.write(f"dicomstore {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    from shared.cli_ops import operations, transfer
    from shared.cli_ops.progress import bars_wanted, result
    from shared.cli_ops.upload import MB, UploadOptions, upload

    endpoint = _endpoint(args)
    api = endpoint.api
    bars = bars_wanted(args.progress)
    if args.command == "upload":
        options = UploadOptions(
            parallel=args.parallel,
            batch_count=args.batch_size,
            batch_bytes=args.batch_mb * MB,
            recursive=not args.no_recursive,
            storage_class=args.storage_class,
            retries=max(args.retries, 0),
            bars=bars,
        )
        return upload(api, _store(endpoint), args.folder, options)
    session = api.session()
    with session:
        if args.command == "ops":
            if args.ops_command == "list":
                dataset = _dataset(args, endpoint)
                return operations.list_operations(api, session, dataset, args.limit, args.json)
            name = _operation(args, endpoint)
            if args.ops_command == "get":
                return operations.get(api, session, name)
            if args.ops_command == "cancel":
                return operations.cancel(api, session, name)
            return operations.watch(api, session, name, args.interval, bars)
        store = _store(endpoint)
        if args.command == "import":
            body = transfer.import_request(args.uri, args.storage_class)
        else:
            body = transfer.export_request(
                gcs_prefix=args.gcs,
                mime_type=args.mime_type,
                bigquery_table=args.bigquery,
                write_disposition=args.write_disposition,
                include_source_store=args.include_source_store,
                filter_uri=args.filter,
            )
        name = transfer.start(api, session, store, args.command, body)
        result(name)
        if args.no_watch:
            return operations.EXIT_OK
        return operations.watch(api, session, name, args.interval, bars)


def _endpoint(args: argparse.Namespace) -> Endpoint:
    from shared.cli_ops.api import resolve_endpoint

    url = args.url or os.environ.get("DICOMSTORE_URL") or DEFAULT_URL
    token = args.token or os.environ.get("DICOMSTORE_TOKEN")
    return resolve_endpoint(url, token, args.store)


def _store(endpoint: Endpoint) -> StoreName:
    """The store named on the command line or in the URL, else the configured default."""
    from shared.cli_ops.api import CliError, parse_store
    from shared.config import Settings
    from shared.errors import ConfigurationError

    if endpoint.store is not None:
        return endpoint.store
    try:
        return parse_store(Settings.from_env().default_store)
    except ConfigurationError as exc:
        raise CliError(f"{exc}; or give --store") from None


def _dataset(args: argparse.Namespace, endpoint: Endpoint) -> DatasetName:
    from shared.cli_ops.api import parse_dataset

    if args.dataset:
        return parse_dataset(args.dataset)
    return _store(endpoint).dataset_name


def _operation(args: argparse.Namespace, endpoint: Endpoint) -> str:
    """A full operation name as given, or a bare ID under --dataset or the store's dataset."""
    from shared.cli_ops.api import operation_name

    bare = "/" not in args.name.strip().strip("/")
    return operation_name(args.name, _dataset(args, endpoint) if bare else None)
