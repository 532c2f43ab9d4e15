"""The operator commands (`dicomstore ops|import|export|upload`) against a live HTTP server:
the embedded store served by waitress from a thread, or a recording server for request shapes."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import functions_framework
import pytest
import requests
from urllib3.util.retry import Retry
from waitress import wasyncore
from waitress.server import create_server

from shared import bootstrap, cli
from shared.cli_ops import discover, operations, stow_client, upload
from shared.ports.warehouse import TableRef
from shared.service.context import Services
from tests.conftest import REPO, STORE, make_settings
from tests.dicom_factory import Spec, make_instance

# Imports read the embedded gs:// folder, and cancels need a queue that can be held still.
pytestmark = pytest.mark.local_only

DATASET = STORE.rsplit("/dicomStores/", 1)[0]
BUCKET = "imports"


@dataclass
class Live:
    """A running embedded store."""

    url: str
    services: Services
    data_dir: Path

    def gcs(self, name: str, data: bytes, bucket: str = BUCKET) -> None:
        path = self.data_dir / "gcs" / bucket / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def qido(self, path: str, **params: str) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/v1/{STORE}/dicomWeb/{path}", params=params, timeout=10)
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else []


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Live]]:
    """Start the embedded store; `serve(workers=False)` leaves operations running for ever."""
    started: list[
        tuple[Any, dict[int, Any], Services, Services | None, threading.Event, threading.Thread]
    ] = []

    def start(workers: bool = True) -> Live:
        data_dir = tmp_path / f"data{len(started)}"
        services = bootstrap.build_services(
            make_settings(data_dir, fsync=False), start_workers=workers
        )
        old = bootstrap.set_services(services)
        app = functions_framework.create_app(
            target="dicomweb", source=str(REPO / "functions" / "main.py")
        )
        sockets: dict[int, Any] = {}
        server: Any = create_server(app, map=sockets, host="127.0.0.1", port=0, threads=8)
        stop = threading.Event()

        def loop() -> None:
            # Closing the sockets under a running select() fails: stop the loop first.
            while not stop.is_set():
                wasyncore.loop(timeout=0.05, map=sockets, count=1)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        started.append((server, sockets, services, old, stop, thread))
        return Live(f"http://127.0.0.1:{server.effective_port}", services, data_dir)

    yield start
    for server, sockets, services, old, stop, thread in reversed(started):
        stop.set()
        thread.join(5)
        # close() alone leaves the 8 request threads and any keep-alive connections behind.
        server.task_dispatcher.shutdown()
        wasyncore.close_all(sockets)
        stop = getattr(services.queue, "stop", None)
        if callable(stop):
            stop()
        bootstrap.set_services(old)


@pytest.fixture
def live(serve: Callable[..., Live]) -> Live:
    return serve()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """An HTTP server that records requests and answers from a script of (status, JSON)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    script: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)

    def answer(self, method: str, path: str) -> tuple[int, Any]:
        answers = self.script.get(f"{method} {path}") or [(404, {"error": {"code": 404}})]
        return answers.pop(0) if len(answers) > 1 else answers[0]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    record = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            path = self.path.split("?", 1)[0]
            record.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
            status, payload = record.answer(self.command, path)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    record.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield record
    server.shutdown()
    server.server_close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`dicomstore ARGV` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def small(**fields: Any) -> bytes:
    return make_instance(Spec(rows=4, columns=4, **fields))


def operation_of(stdout: str) -> str:
    match = re.search(r"projects/\S+/operations/\d+", stdout)
    assert match, stdout
    return match.group(0)


# --- upload ------------------------------------------------------------------------------
def test_upload_folder_in_parallel(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "exam"
    study = Spec().study
    specs = [Spec(study=study, instance_number=n, rows=4, columns=4) for n in range(30)]
    for n, spec in enumerate(specs):
        target = folder / ("nested/deeper" if n % 4 == 0 else "") / f"im{n:02d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(make_instance(spec))
    (folder / "README.txt").write_text("not DICOM")
    # The same UIDs as im05 with other pixels: the store keeps whichever came first.
    conflicting = Spec(
        study=study, series=specs[5].series, sop=specs[5].sop, seed=99, rows=4, columns=4
    )
    (folder / "nested" / "copy-of-im05.dcm").write_bytes(make_instance(conflicting))

    code, out, _ = run(capsys, "upload", str(folder), "--url", live.url, "--parallel", "4")

    assert code == 1, out
    assert "30 stored, 1 failed, 1 skipped of 32 files" in out
    failed = re.findall(r"^  (\S+\.dcm): (.*)$", out.split("failed:\n", 1)[1], re.M)
    assert len(failed) == 1, out
    assert failed[0][0] in ("im05.dcm", "nested/copy-of-im05.dcm")
    assert failed[0][1].startswith("FailureReason 272")
    assert "already exists" in failed[0][1]
    assert "README.txt: not a DICOM Part-10 file" in out
    assert len(live.qido(f"studies/{study}/instances", limit="1000")) == 30

    # Identical re-uploads count as stored: without the loser, a second run is clean.
    (folder / failed[0][0]).unlink()
    code, out, _ = run(capsys, "upload", str(folder), "--url", live.url, "--batch-size", "1")
    assert code == 0, out
    assert "30 stored, 0 failed, 1 skipped of 31 files" in out


def test_upload_not_recursive_and_storage_class(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top, nested = Spec(rows=4, columns=4), Spec(rows=4, columns=4)
    folder = tmp_path / "exam"
    (folder / "sub").mkdir(parents=True)
    (folder / "top.dcm").write_bytes(make_instance(top))
    (folder / "sub" / "nested.dcm").write_bytes(make_instance(nested))
    argv = ["upload", str(folder), "--url", live.url, "--no-recursive"]
    code, out, _ = run(capsys, *argv, "--storage-class", "COLDLINE")
    assert code == 0, out
    assert "1 stored, 0 failed, 0 skipped of 1 files" in out
    assert live.qido("instances", SOPInstanceUID=nested.sop) == []
    info = requests.get(
        f"{live.url}/v1/{STORE}/dicomWeb/studies/{top.study}/series/{top.series}"
        f"/instances/{top.sop}:getStorageInfo",
        timeout=10,
    ).json()
    assert info["blobStorageInfo"]["storageClass"] == "COLDLINE"


def test_upload_of_nothing_fails(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    code, out, err = run(capsys, "upload", str(tmp_path / "empty"), "--url", live.url)
    assert code == 1
    assert "0 stored, 0 failed, 1 skipped of 1 files" in out
    assert "no DICOM Part-10 file found" in err


def test_upload_to_a_missing_store_stops_with_the_server_error(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "exam").mkdir()
    (tmp_path / "exam" / "a.dcm").write_bytes(small())
    missing = STORE.replace("/default", "/nope")
    argv = ["upload", str(tmp_path / "exam"), "--url", live.url, "--store", missing]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "NOT_FOUND (HTTP 404)" in err and "nope" in err


def test_upload_retries_overload_and_splits_a_refused_batch(
    recorder: Recorder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stow_client.time, "sleep", lambda seconds: None)
    specs = [Spec(rows=4, columns=4) for _ in range(2)]
    for n, spec in enumerate(specs):
        (tmp_path / f"{n}.dcm").write_bytes(make_instance(spec))
    stored = {
        "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [specs[1].sop]}}]}
    }
    failure = {
        "00081155": {"vr": "UI", "Value": [specs[0].sop]},
        "00081197": {"vr": "US", "Value": [272]},
        "00091097": {"vr": "LT", "Value": ["broken"]},
    }
    recorder.script[f"POST /v1/{STORE}/dicomWeb/studies"] = [
        (503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}}),
        (400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad part"}}),
        (409, {"00081198": {"vr": "SQ", "Value": [failure]}}),
        (200, stored),
    ]
    argv = ["upload", str(tmp_path), "--url", recorder.url, "--store", STORE, "--parallel", "1"]
    code, out, _ = run(capsys, *argv, "--token", "s3cret")
    assert code == 1, out
    assert "1 stored, 1 failed" in out
    assert "0.dcm: FailureReason 272: broken" in out
    posts = recorder.requests
    assert [len(p.body) > 0 for p in posts] == [True] * 4
    assert posts[0].body == posts[1].body  # the retry after 503 sent the same request
    assert posts[0].headers["Authorization"] == "Bearer s3cret"
    assert posts[0].headers["Accept"] == "application/dicom+json"
    content_type = posts[0].headers["Content-Type"]
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    assert int(posts[0].headers["Content-Length"]) == len(posts[0].body)
    assert make_instance(specs[0]) in posts[0].body and make_instance(specs[1]) in posts[0].body
    assert make_instance(specs[0]) in posts[2].body and make_instance(specs[1]) not in posts[2].body


def test_upload_reports_a_file_gone_before_it_was_sent(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "exam"
    folder.mkdir()
    kept, gone = Spec(rows=4, columns=4), Spec(rows=4, columns=4)
    (folder / "a-kept.dcm").write_bytes(make_instance(kept))
    (folder / "b-gone.dcm").write_bytes(make_instance(gone))
    real_classify = upload.classify

    def classify_then_delete(candidate: discover.Candidate) -> discover.DicomFile | str:
        verdict = real_classify(candidate)
        if candidate.path.name == "b-gone.dcm":
            candidate.path.unlink()
        return verdict

    monkeypatch.setattr(upload, "classify", classify_then_delete)
    code, out, _ = run(capsys, "upload", str(folder), "--url", live.url, "--parallel", "1")
    assert code == 1, out
    assert "1 stored, 1 failed" in out
    assert "b-gone.dcm: unreadable: No such file or directory" in out
    assert len(live.qido("instances", SOPInstanceUID=kept.sop)) == 1


def test_upload_interrupted_says_a_rerun_is_safe(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "exam"
    folder.mkdir()
    for n in range(3):
        (folder / f"{n}.dcm").write_bytes(small())
    real_classify = upload.classify

    def interrupted_at_the_last(candidate: discover.Candidate) -> discover.DicomFile | str:
        if candidate.path.name == "2.dcm":
            raise KeyboardInterrupt
        return real_classify(candidate)

    monkeypatch.setattr(upload, "classify", interrupted_at_the_last)
    argv = ["upload", str(folder), "--url", live.url, "--batch-size", "1", "--parallel", "1"]
    code, out, err = run(capsys, *argv)
    assert code == 130
    assert out == ""
    assert "interrupted: " in err and "Running the same upload again is safe" in err


# --- import and watching operations ------------------------------------------------------
def test_import_watches_to_completion(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    for n in range(5):
        live.gcs(f"dir/sub{n % 2}/f{n}.dcm", small())
    live.gcs("dir/notes.txt", b"not DICOM")
    argv = ["import", f"gs://{BUCKET}/dir/**", "--url", live.url, "--interval", "0.05"]
    code, out, _ = run(capsys, *argv, "--storage-class", "NEARLINE")
    assert code == 0, out
    lines = out.splitlines()
    name = lines[0]
    assert name.startswith(f"{DATASET}/operations/")
    assert lines[-1].startswith(f"{name} (ImportDicomData) done in ")
    assert lines[-1].endswith(": 5 files ok, 1 failed")

    code, out, _ = run(capsys, "ops", "list", "--url", live.url)
    assert code == 0
    row = out.splitlines()[1].split()
    assert row[:6] == [name.rsplit("/", 1)[-1], "ImportDicomData", "done", "5", "1", "0"]
    code, out, _ = run(capsys, "ops", "get", name.rsplit("/", 1)[-1], "--url", live.url)
    assert code == 0
    assert json.loads(out)["metadata"]["counter"] == {"success": "5", "failure": "1"}
    code, out, _ = run(capsys, "ops", "list", "--url", live.url, "--json", "--limit", "1")
    assert [op["name"] for op in json.loads(out)] == [name]


def test_watch_of_a_failed_import_prints_the_error(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    live.gcs("bad/a.txt", b"nope")
    argv = ["--url", live.url, "--interval", "0.05"]
    code, out, _ = run(capsys, "import", f"gs://{BUCKET}/missing/*.dcm", *argv)
    assert code == 1
    assert "failed: NOT_FOUND (5): no object matches" in out
    code, out, _ = run(capsys, "import", f"gs://{BUCKET}/bad/*", *argv)
    assert code == 1
    assert "failed: INVALID_ARGUMENT (3): 1 of 1 files failed to import" in out
    assert f"  gs://{BUCKET}/bad/a.txt: " in out


def test_cancel_then_watch_and_interrupt(
    serve: Callable[..., Live], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = serve(workers=False)  # nothing runs queued tasks: operations stay running
    live.gcs("x/a.dcm", small())
    code, out, _ = run(capsys, "import", f"gs://{BUCKET}/x/*", "--url", live.url, "--no-watch")
    assert code == 0
    name = out.strip()

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(operations.time, "sleep", interrupt)
        code, _, err = run(capsys, "ops", "watch", name, "--url", live.url)
    assert code == 130
    assert "keeps running on the server" in err
    assert f"dicomstore ops cancel {name}" in err

    code, out, _ = run(capsys, "ops", "cancel", name, "--url", live.url)
    assert (code, out.strip()) == (0, f"cancel requested for {name}")
    code, out, _ = run(capsys, "ops", "watch", name, "--url", live.url, "--interval", "0.05")
    assert code == 1
    assert f"{name} (ImportDicomData) cancelled" in out


def test_watch_shows_progress_and_rides_out_a_blip(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"{DATASET}/operations/42"
    meta = {"apiMethodName": "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData"}
    seen: list[tuple[float, float | None, str]] = []
    real_show = operations.Meter.show

    def spy(self: operations.Meter, done: float, total: float | None, status: str) -> None:
        seen.append((done, total, status))
        real_show(self, done, total, status)

    monkeypatch.setattr(operations.Meter, "show", spy)
    monkeypatch.setattr(operations.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(Retry, "sleep", lambda self, response=None: None)
    recorder.script[f"GET /v1/{name}"] = [
        (200, {"name": name, "metadata": meta}),
        (200, {"name": name, "metadata": {**meta, "counter": {"success": "2", "pending": "8"}}}),
        (503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "restarting"}}),
        (503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "restarting"}}),
        (503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "restarting"}}),
        (503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "restarting"}}),
        (
            200,
            {
                "name": name,
                "metadata": {**meta, "counter": {"success": "9", "failure": "1"}},
                "done": True,
                "response": {},
            },
        ),
    ]
    code, out, err = run(capsys, "ops", "watch", name, "--url", recorder.url)
    assert code == 0, err
    assert seen == [
        (0, None, "0 instances ok, 0 failed"),
        (2, 10, "2 instances ok, 0 failed, 8 pending"),
        (10, 10, "9 instances ok, 1 failed"),
    ]
    assert out.strip() == f"{name} (ExportDicomData) done: 9 instances ok, 1 failed"
    assert "polling failed" in err


# --- export ----------------------------------------------------------------------------------
def test_export_request_shapes(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    recorder.script[f"POST /v1/{STORE}:export"] = [(200, {"name": f"{DATASET}/operations/7"})]
    common = ["--url", recorder.url, "--store", STORE, "--no-watch"]
    code, out, _ = run(
        capsys,
        "export",
        "--gcs",
        "gs://out/prefix",
        "--mime-type",
        "application/dicom; transfer-syntax=*",
        "--filter",
        "gs://out/filter.txt",
        *common,
    )
    assert (code, out.strip()) == (0, f"{DATASET}/operations/7")
    code, _, _ = run(
        capsys,
        "export",
        "--bigquery",
        "bq://proj.ds.table",
        "--write-disposition",
        "WRITE_TRUNCATE",
        "--include-source-store",
        *common,
    )
    assert code == 0
    code, _, _ = run(capsys, "export", "--bigquery", "bq://proj.ds.table", *common)
    assert code == 0
    bodies = [json.loads(r.body) for r in recorder.requests]
    assert [r.path for r in recorder.requests] == [f"/v1/{STORE}:export"] * 3
    assert bodies == [
        {
            "gcsDestination": {
                "uriPrefix": "gs://out/prefix",
                "mimeType": "application/dicom; transfer-syntax=*",
            },
            "filterConfig": {"resourcePathsGcsUri": "gs://out/filter.txt"},
        },
        {
            "bigqueryDestination": {
                "tableUri": "bq://proj.ds.table",
                "writeDisposition": "WRITE_TRUNCATE",
                "includeSourceStore": True,
            }
        },
        {"bigqueryDestination": {"tableUri": "bq://proj.ds.table"}},
    ]


def test_export_end_to_end(live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "exam"
    folder.mkdir()
    specs = [Spec(rows=4, columns=4, instance_number=n) for n in range(3)]
    for n, spec in enumerate(specs):
        (folder / f"{n}.dcm").write_bytes(make_instance(spec))
    assert run(capsys, "upload", str(folder), "--url", live.url)[0] == 0
    (live.data_dir / "gcs" / "out").mkdir(parents=True)
    watch = ["--url", live.url, "--interval", "0.05"]
    code, out, _ = run(capsys, "export", "--gcs", "gs://out/copy", *watch)
    assert code == 0, out
    last = out.splitlines()[-1]
    assert "(ExportDicomData) done" in last and last.endswith(": 3 instances ok, 0 failed")
    for spec in specs:
        exported = live.data_dir / "gcs" / "out" / "copy" / spec.study / spec.series
        assert (exported / f"{spec.sop}.dcm").read_bytes() == make_instance(spec)

    code, out, _ = run(
        capsys, "export", "--bigquery", "bq://local.cli.instances", "--include-source-store", *watch
    )
    assert code == 0, out
    assert out.splitlines()[-1].endswith(": 3 instances ok, 0 failed")
    rows = live.services.warehouse.query_rows(TableRef("local", "cli", "instances"))
    assert sorted(r["SOPInstanceUID"] for r in rows) == sorted(s.sop for s in specs)
    assert {r["SourceDicomStore"] for r in rows} == {STORE}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bigquery", "bq://p.d.t", "--mime-type", "image/png"], "--mime-type goes with --gcs"),
        (["--gcs", "gs://b/p", "--include-source-store"], "go with --bigquery"),
        (["--bigquery", "bq://only-two.parts"], "bq://PROJECT.DATASET.TABLE"),
        (["--gcs", "/local/path"], "--gcs must be gs://BUCKET/"),
    ],
)
def test_export_refuses_mixed_options(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, "export", *argv, "--url", recorder.url, "--store", STORE)
    assert code == 2
    assert message in err
    assert recorder.requests == []


# --- errors and addressing --------------------------------------------------------------------
def test_server_errors_exit_2_with_the_message(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "ops", "get", "123", "--url", live.url)
    assert code == 2
    assert err.startswith("dicomstore ops: error: NOT_FOUND (HTTP 404) from ")
    assert "operation" in err and "not found" in err
    missing = STORE.replace("/default", "/nope")
    code, _, err = run(capsys, "import", "gs://b/x.dcm", "--url", live.url, "--store", missing)
    assert code == 2
    assert "NOT_FOUND (HTTP 404)" in err and "nope" in err


def test_unreachable_url_names_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        code, _, err = run(capsys, "ops", "list", "--url", f"http://127.0.0.1:{port}")
    assert code == 2
    assert f"cannot reach http://127.0.0.1:{port}/v1/{DATASET}/operations" in err
    assert "Connection refused" in err


def test_pasted_dicomweb_url_and_env_token(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "projects/p1/locations/eu/datasets/d1/dicomStores/s1"
    recorder.script["GET /v1/projects/p1/locations/eu/datasets/d1/operations"] = [
        (200, {"operations": []})
    ]
    monkeypatch.setenv("DICOMSTORE_TOKEN", "from-env")
    code, out, _ = run(capsys, "ops", "list", "--url", f"{recorder.url}/v1/{other}/dicomWeb")
    assert code == 0, out
    assert recorder.requests[0].path.startswith(f"/v1/{other.rsplit('/dicomStores', 1)[0]}/")
    assert recorder.requests[0].headers["Authorization"] == "Bearer from-env"


def test_malformed_operation_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "ops", "get", "a/b", "--url", "http://127.0.0.1:9")
    assert code == 2
    assert "invalid operation name 'a/b'" in err
