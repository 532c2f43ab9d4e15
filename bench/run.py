"""`python -m bench.run [--quick] [--profile]`: the store against Orthanc, side by side."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import client, corpus, flame, probes, servers, workloads
from bench.servers import Server

logger = logging.getLogger("bench")

RESULTS = Path(__file__).resolve().parent / "results"
PY_SPY = servers.REPO / ".venv" / "bin" / "py-spy"
STORE, ORTHANC = "store", "orthanc"


@dataclass(frozen=True)
class Params:
    """Request counts of one run."""

    stow_sequential: int = 100
    stow_batch_total: int = 500
    stow_batch_size: int = 50
    stow_parallel_total: int = 400
    stow_parallel_clients: int = 4
    wado_instances: int = 200
    wado_study_instances: int = 100
    wado_study_repeats: int = 3
    metadata_requests: int = 20
    frame_requests: int = 100
    multiframe_frames: int = 30
    multiframe_requests: int = 60
    rendered_requests: int = 50
    qido_queries: int = 200
    qido_warmup: int = 10
    memory_instances: int = 2000
    memory_batch: int = 50
    cold_start_runs: int = 5


FULL_PARAMS = Params()
QUICK_PARAMS = Params(
    stow_sequential=100,
    stow_batch_total=200,
    stow_parallel_total=100,
    wado_instances=100,
    wado_study_repeats=2,
    metadata_requests=10,
    frame_requests=50,
    multiframe_requests=30,
    rendered_requests=30,
    qido_queries=100,
    memory_instances=400,
    cold_start_runs=3,
)


# --- the fresh-server workloads (STOW, WADO, memory) --------------------------------------


GROUPS = ("stow", "wado", "rendered", "memory", "qido", "cold")
FRESH_GROUPS = frozenset({"stow", "wado", "rendered", "memory"})


def fresh_workloads(
    params: Params, pair: list[Server], groups: frozenset[str] = FRESH_GROUPS
) -> dict[str, dict[str, dict[str, object]]]:
    """STOW, WADO and memory on two empty servers, alternating which goes first."""
    out: dict[str, dict[str, dict[str, object]]] = {}
    step = iter(range(1000))

    def run(name: str, work: Callable[[Server], dict[str, object]]) -> None:
        logger.info("workload %s", name)
        out[name] = workloads.each(next(step), pair, work)
        logger.info("  %s", json.dumps(out[name]))

    seq = workloads.ct_instances(1, params.stow_sequential)
    if "stow" in groups:
        run("stow_sequential", lambda s: workloads.stow_sequential(s, seq))
        batch = workloads.ct_instances(2, params.stow_batch_total, one_study=False)
        run("stow_batch", lambda s: workloads.stow_batches(s, batch, params.stow_batch_size))
        parallel = workloads.ct_instances(3, params.stow_parallel_total, one_study=False)
        clients = params.stow_parallel_clients
        run("stow_parallel", lambda s: workloads.stow_parallel(s, parallel, clients))
    elif groups & {"wado", "rendered"}:
        for server in pair:  # the WADO workloads read what stow_sequential stores
            workloads.stow_batches(server, seq, params.stow_batch_size)
    if "wado" in groups:
        _wado_workloads(params, pair, seq, run)
    if "rendered" in groups:
        run(
            "wado_rendered",
            lambda s: workloads.latency(
                s, _urls(s.root, seq, params.rendered_requests, "/rendered"), "image/jpeg"
            ),
        )
    if "memory" in groups:
        big = workloads.ct_instances(5, params.memory_instances)
        nbytes = sum(len(i.data) for i in big)
        bodies = [
            client.multipart_body(i.data for i in big[k : k + params.memory_batch])
            for k in range(0, len(big), params.memory_batch)
        ]
        study = big[0].study
        run("memory_big_study", lambda s: workloads.memory_big_study(s, bodies, study, nbytes))
    return out


def _urls(root: str, seq: list[workloads.Instance], n: int, suffix: str) -> list[str]:
    return [f"{workloads.instance_url(root, seq[k % len(seq)])}{suffix}" for k in range(n)]


def _wado_workloads(
    params: Params,
    pair: list[Server],
    seq: list[workloads.Instance],
    run: Callable[[str, Callable[[Server], dict[str, object]]], None],
) -> None:
    """Retrieval as stored, metadata and frames of what stow_sequential stored."""

    def urls(root: str, n: int, suffix: str) -> list[str]:
        return _urls(root, seq, n, suffix)

    run("wado_instance", lambda s: workloads.wado_instances(s, seq, params.wado_instances))
    run("wado_study", lambda s: workloads.wado_study(s, seq[0], params.wado_study_repeats))
    run(
        "wado_metadata",
        lambda s: workloads.latency(
            s,
            [f"{s.root}/studies/{seq[0].study}/metadata"] * params.metadata_requests,
            client.DICOM_JSON,
        ),
    )
    run(
        "wado_frame_single",
        lambda s: workloads.latency(
            s, urls(s.root, params.frame_requests, "/frames/1"), client.MULTIPART_OCTETS
        ),
    )
    multi = workloads.multiframe_instance(4, params.multiframe_frames)
    for server in pair:
        with client.session() as session:
            response = client.stow(session, server.root, client.multipart_body([multi.data]))
            if response.status_code != 200:
                logger.error("%s: multi-frame STOW failed: %s", server.name, response.status_code)
    frames = params.multiframe_frames

    def frame_urls(root: str) -> list[str]:
        base = workloads.instance_url(root, multi)
        return [f"{base}/frames/{k % frames + 1}" for k in range(params.multiframe_requests)]

    run(
        "wado_frames_multiframe",
        lambda s: workloads.latency(s, frame_urls(s.root), client.MULTIPART_OCTETS),
    )
    every = ",".join(str(k + 1) for k in range(frames))
    run(
        "wado_frames_all",
        lambda s: workloads.latency(
            s,
            [f"{workloads.instance_url(s.root, multi)}/frames/{every}"] * 5,
            client.MULTIPART_OCTETS,
        ),
    )


def qido_workloads(
    params: Params, size: corpus.CorpusSize, pair: list[Server]
) -> dict[str, dict[str, dict[str, object]]]:
    """The four QIDO searches on the corpus servers, alternating which goes first."""
    out: dict[str, dict[str, dict[str, object]]] = {}
    for index, kind in enumerate(workloads.QIDO_KINDS):
        queries = workloads.qido_queries(size, kind, params.qido_queries + params.qido_warmup, 7)
        logger.info("workload qido_%s", kind)
        out[f"qido_{kind}"] = workloads.each(
            index,
            pair,
            lambda s, q=queries: workloads.qido(  # type: ignore[misc]
                s, q, percent_decodes=s.name == STORE, warmup=params.qido_warmup
            ),
        )
        logger.info("  %s", json.dumps(out[f"qido_{kind}"]))
    return out


def cold_start(params: Params) -> dict[str, dict[str, object]]:
    """Median spawn-to-first-answer time of functions-framework (store) and Orthanc."""
    out: dict[str, dict[str, object]] = {}
    for name, measure in ((STORE, servers.store_cold_start), (ORTHANC, servers.orthanc_cold_start)):
        times = measure(params.cold_start_runs)
        out[name] = {
            "runs_s": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3),
        }
    return out


# --- profiling (a separate pass, so the figures above are not perturbed) ------------------


@contextlib.contextmanager
def py_spy(pid: int, name: str, rate: int = 100) -> Iterator[None]:
    """Record collapsed stacks of `pid` with py-spy until the block ends."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{name}.txt"
    cmd = [str(PY_SPY), "record", "--format", "raw", "--rate", str(rate), "-o", str(out)]
    recorder = subprocess.Popen(
        [*cmd, "--pid", str(pid), "--duration", "600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            _, err = recorder.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, err = recorder.communicate(timeout=10)
        if recorder.returncode not in (0, -signal.SIGINT) and not out.exists():
            logger.warning("py-spy %s failed: %s", name, err.decode(errors="replace")[-500:])


IDLE_LEAVES = (
    "Condition.wait (threading.py",
    "select (",
    "poll (",
    "Event.wait (threading.py",
    "_worker (concurrent/futures/thread.py",  # a pool thread waiting for work (blob fsyncs)
)
IDLE_SKIP = ("threading.py", "waitress/", "runpy>", "cli.py", "functions_framework/", "flask/")


def hotspots(path: Path, top: int = 12) -> dict[str, object]:
    """Self time by leaf frame (file:line) and total time by function, over busy samples.

    Stacks that end in an idle wait (waitress workers and the queue waiting for work) are
    counted apart: py-spy reports them as active, but they are not work.
    """
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = idle = 0
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        busy += count
        leaf[frames[-1]] += count
        seen = set()
        for frame in frames:
            function = frame.rsplit(":", 1)[0] + ")" if ":" in frame else frame
            if function not in seen:
                seen.add(function)
                inclusive[function] += count
    if not busy:
        return {}

    def rows(counter: Counter[str]) -> list[dict[str, object]]:
        return [
            {"frame": frame, "share": round(count / busy, 3)}
            for frame, count in counter.most_common(top)
        ]

    interesting = Counter(
        {f: c for f, c in inclusive.items() if not any(k in f for k in IDLE_SKIP) and "(" in f}
    )
    return {
        "busy_samples": busy,
        "idle_samples": idle,
        "self": rows(leaf),
        "inclusive": rows(interesting),
    }


def repeat_for(seconds: float, max_runs: int, work: Callable[[int], object]) -> int:
    """Call `work(k)` for k = 0, 1, ... until `seconds` have passed (at most `max_runs`)."""
    deadline = time.monotonic() + seconds
    runs = 0
    while runs < max_runs and time.monotonic() < deadline:
        work(runs)
        runs += 1
    return runs


def profile_pass(params: Params, size: corpus.CorpusSize, seconds: float) -> dict[str, object]:
    """Run the store's STOW, WADO and QIDO workloads again, each under py-spy for ~`seconds`."""
    out: dict[str, object] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    per_run = 100
    with servers.running(servers.start_store(workdir / "store", temp=True)) as store:
        batches = [workloads.ct_instances(100 + k, per_run, one_study=False) for k in range(2)]
        with py_spy(store.pid, "stow_batch"):
            repeat_for(
                seconds,
                20,
                lambda k: workloads.stow_batches(
                    store,
                    batches[k % 2]
                    if k < 2
                    else workloads.ct_instances(100 + k, per_run, one_study=False),
                    params.stow_batch_size,
                ),
            )
        seq = workloads.ct_instances(12, per_run)
        with py_spy(store.pid, "stow_sequential"):
            repeat_for(
                seconds,
                20,
                lambda k: workloads.stow_sequential(
                    store, seq if k == 0 else workloads.ct_instances(200 + k, per_run)
                ),
            )
        with py_spy(store.pid, "wado_instance"):
            repeat_for(seconds, 50, lambda k: workloads.wado_instances(store, seq, 200))
        with py_spy(store.pid, "wado_study"):
            repeat_for(seconds, 200, lambda k: workloads.wado_study(store, seq[0], 1))
        rendered = [f"{workloads.instance_url(store.root, i)}/rendered" for i in seq]
        with py_spy(store.pid, "wado_rendered"):
            repeat_for(seconds, 50, lambda k: workloads.latency(store, rendered, "image/jpeg"))
    shutil.rmtree(workdir, ignore_errors=True)
    with servers.running(corpus.start(size, STORE)) as store:
        for kind in workloads.QIDO_KINDS:
            queries = workloads.qido_queries(size, kind, 200, 11)
            with py_spy(store.pid, f"qido_{kind}"):
                repeat_for(
                    seconds,
                    50,
                    lambda k, q=queries: workloads.qido(  # type: ignore[misc]
                        store, q, percent_decodes=True, warmup=0
                    ),
                )
    for path in sorted(RESULTS.glob("profile-*.txt")):
        out[path.stem] = hotspots(path)
        flame.write_svg(path)
    return out


# --- the table ----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table."""

    workload: str
    metric: str
    store: float | None
    orthanc: float | None
    target: str = ""
    verdict: str = ""

    @property
    def ratio(self) -> float | None:
        if self.store is None or not self.orthanc:
            return None
        return self.store / self.orthanc


def _get(
    results: dict[str, dict[str, dict[str, object]]], workload: str, server: str, key: str
) -> float | None:
    value = results.get(workload, {}).get(server, {}).get(key)
    return float(value) if isinstance(value, int | float) else None


def build_rows(results: dict[str, dict[str, dict[str, object]]], quick: bool) -> list[Row]:
    """Figures, ratios and PASS/FAIL verdicts against the targets of issue 7."""
    rows: list[Row] = []

    def add(
        workload: str,
        metric: str,
        key: str,
        target: str = "",
        check: Callable[[Row], bool] | None = None,
    ) -> None:
        row = Row(
            workload,
            metric,
            _get(results, workload, STORE, key),
            _get(results, workload, ORTHANC, key),
            target,
        )
        if check is not None:
            try:
                row.verdict = "PASS" if check(row) else "FAIL"
            except TypeError:
                row.verdict = "n/a"
        rows.append(row)

    def ratio_at_least(k: float) -> Callable[[Row], bool]:
        return lambda r: r.ratio is not None and r.ratio >= k

    def ratio_at_most(k: float) -> Callable[[Row], bool]:
        return lambda r: r.ratio is not None and r.ratio <= k

    def cpu(workload: str) -> None:
        add(workload, "client CPU ms/item", workloads.CLIENT_CPU)
        add(workload, "server CPU ms/item", workloads.SERVER_CPU)

    for w in ("stow_sequential", "stow_batch", "stow_parallel"):
        add(w, "instances/s", "instances_per_s", "ratio >= 2.0", ratio_at_least(2.0))
        add(w, "MB/s", "mb_per_s")
        cpu(w)
    corpus_note = " (quick corpus)" if quick else ""
    for kind in workloads.QIDO_KINDS:
        w = f"qido_{kind}"
        add(w, "p50 ms", "p50_ms", f"ratio <= 0.5{corpus_note}", ratio_at_most(0.5))
        add(w, "p95 ms", "p95_ms")
        add(w, "results/query", "mean_results")
    add("wado_instance", "instances/s", "instances_per_s", "ratio >= 1.5", ratio_at_least(1.5))
    add("wado_instance", "MB/s", "mb_per_s")
    cpu("wado_instance")
    add("wado_study", "seconds (p50)", "p50_ms")
    add("wado_study", "MB/s", "mb_per_s")
    for w in ("wado_metadata", "wado_frame_single", "wado_frames_multiframe", "wado_frames_all"):
        add(w, "p50 ms", "p50_ms")
        add(w, "p95 ms", "p95_ms")
    add("wado_rendered", "p50 ms", "p50_ms", "ratio <= 1.0", ratio_at_most(1.0))
    add("wado_rendered", "p95 ms", "p95_ms")
    cpu("wado_rendered")
    below_100 = lambda r: r.store is not None and r.store < 100  # noqa: E731
    add(
        "memory_big_study",
        "store RSS growth MB",
        "store_rss_growth_mb",
        "store < 100 MB",
        below_100,
    )
    add(
        "memory_big_study",
        "retrieve RSS growth MB",
        "retrieve_rss_growth_mb",
        "store < 100 MB",
        below_100,
    )
    add("memory_big_study", "store MB/s", "store_mb_per_s")
    add("memory_big_study", "retrieve seconds", "retrieve_seconds")
    add(
        "cold_start",
        "median s",
        "median_s",
        "store <= 1.5 s",
        lambda r: r.store is not None and r.store <= 1.5,
    )
    for row in rows:
        if row.metric == "seconds (p50)":
            row.store = row.store / 1000 if row.store is not None else None
            row.orthanc = row.orthanc / 1000 if row.orthanc is not None else None
    return rows


def render(rows: list[Row], header: list[str]) -> str:
    """A fixed-width text table."""

    def fmt(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"

    lines = [
        [r.workload, r.metric, fmt(r.store), fmt(r.orthanc), fmt(r.ratio), r.target, r.verdict]
        for r in rows
    ]
    titles = ["workload", "metric", "store", "orthanc", "store/orthanc", "target", "verdict"]
    widths = [max(len(str(x)) for x in col) for col in zip(titles, *lines, strict=False)]
    out = [*header, ""]
    for line in [titles, ["-" * w for w in widths], *lines]:
        out.append("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    return "\n".join(out) + "\n"


def _groups(text: str) -> frozenset[str]:
    chosen = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = chosen - set(GROUPS)
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown workload {', '.join(sorted(unknown)) or text!r}:"
            f" choose from {', '.join(GROUPS)}"
        )
    return chosen


def fresh_round(
    params: Params, groups: frozenset[str]
) -> tuple[dict[str, dict[str, dict[str, object]]], dict[str, str]]:
    """The fresh-server workloads of `groups` on a new store and a new Orthanc."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-fresh-"))
    try:
        with (
            servers.running(servers.start_store(workdir / "store", name=STORE, temp=True)) as store,
            servers.running(
                servers.start_orthanc(workdir / "orthanc", name=ORTHANC, temp=True)
            ) as orthanc,
        ):
            versions = {STORE: store.version, ORTHANC: orthanc.version}
            results = fresh_workloads(params, [store, orthanc], groups)
            for server in (store, orthanc):
                if not server.alive():
                    logger.error("%s died during the run; see %s", server.name, server.log_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, versions


def median_results(
    rounds: list[dict[str, dict[str, dict[str, object]]]],
) -> dict[str, dict[str, dict[str, object]]]:
    """Per workload and server, the median of every number over `rounds` (one round: as is).

    The other fields come from the first round; `rounds` keeps each round's figure.
    """
    if len(rounds) == 1:
        return rounds[0]
    merged: dict[str, dict[str, dict[str, object]]] = {}
    for workload, per_server in rounds[0].items():
        merged[workload] = {}
        for server, first in per_server.items():
            entry: dict[str, object] = dict(first)
            for key, value in first.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                values = [
                    v
                    for r in rounds
                    if isinstance(v := r.get(workload, {}).get(server, {}).get(key), int | float)
                ]
                entry[key] = round(statistics.median(values), 3)
                entry.setdefault("rounds", {})
                rounds_of = entry["rounds"]
                assert isinstance(rounds_of, dict)
                rounds_of[key] = values
            merged[workload][server] = entry
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, 10,000-instance corpus")
    parser.add_argument("--profile", action="store_true", help="then profile the store with py-spy")
    parser.add_argument("--skip-fresh", action="store_true", help="only QIDO and cold start")
    parser.add_argument("--profile-only", action="store_true", help="only the py-spy pass")
    parser.add_argument(
        "--only",
        type=_groups,
        default=frozenset(GROUPS),
        metavar="WORKLOAD[,WORKLOAD]",
        help=f"run only these workload groups: {', '.join(GROUPS)}",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each selected workload N times (fresh servers each time); report medians",
    )
    args = parser.parse_args(argv)
    groups: frozenset[str] = args.only
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    params = QUICK_PARAMS if args.quick else FULL_PARAMS
    size = corpus.QUICK if args.quick else corpus.FULL
    servers.ensure_orthanc()
    started = dt.datetime.now(dt.UTC)
    report: dict[str, object] = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": servers.machine() | {"disk": probes.disk_costs()},
        "params": asdict(params),
        "corpus": {"name": size.name, "instances": size.instances, "studies": size.studies},
        "only": sorted(groups),
        "repeat": args.repeat,
    }
    results: dict[str, dict[str, dict[str, object]]] = {}
    versions: dict[str, str] = {}
    profile_seconds = 10.0 if args.quick else 20.0
    if args.profile_only:
        corpus.ensure_both(size)
        profile = profile_pass(params, size, profile_seconds)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "profile.json").write_text(json.dumps(profile, indent=2))
        sys.stdout.write(json.dumps(profile, indent=2) + "\n")
        return 0

    fresh_groups = FRESH_GROUPS & groups
    if fresh_groups and not args.skip_fresh:
        rounds = []
        for _ in range(args.repeat):
            round_results, versions = fresh_round(params, fresh_groups)
            rounds.append(round_results)
        results.update(median_results(rounds))

    markers: dict[str, dict[str, object]] = {}
    if "qido" in groups:
        markers = corpus.ensure_both(size)
        report["corpus_load"] = markers
        rounds = []
        with (
            servers.running(corpus.start(size, STORE)) as store,
            servers.running(corpus.start(size, ORTHANC)) as orthanc,
        ):
            store.name, orthanc.name = STORE, ORTHANC
            versions = {STORE: store.version, ORTHANC: orthanc.version}
            for _ in range(args.repeat):
                rounds.append(qido_workloads(params, size, [store, orthanc]))
        results.update(median_results(rounds))

    if "cold" in groups:
        logger.info("workload cold_start")
        results["cold_start"] = cold_start(params)
    report["versions"] = versions
    report["results"] = results
    if args.profile:
        logger.info("profiling the store with py-spy")
        report["profile"] = profile_pass(params, size, profile_seconds)

    rows = [
        row
        for row in build_rows(results, args.quick)
        if row.store is not None or row.orthanc is not None
    ]
    report["table"] = [{**asdict(r), "ratio": r.ratio} for r in rows]
    machine = report["machine"]
    assert isinstance(machine, dict)
    load_line = ", ".join(
        f"{kind} {m.get('load_seconds')} s ({m.get('instances_per_s', '?')} inst/s)"
        for kind, m in markers.items()
    )
    header = [
        f"dicomstore vs {versions.get(ORTHANC, 'Orthanc')} — {report['started']}"
        + (" (--quick)" if args.quick else ""),
        f"machine: {machine['nproc']} CPU ({machine['cpu_model']}), {machine['memory_gib']} GiB,"
        f" Python {machine['python']}",
        f"QIDO corpus: {size.instances} instances / {size.studies} studies; load time {load_line}",
    ]
    table = render(rows, header)
    report["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = groups != frozenset(GROUPS)
    stamp = (
        started.strftime("%Y%m%dT%H%M%SZ")
        + ("-quick" if args.quick else "")
        + ("-only-" + "-".join(sorted(groups)) if partial else "")
    )
    text = json.dumps(report, indent=2, default=str)
    # A partial run is kept under its own name; latest.json stays the last complete run.
    for name in (f"{stamp}.json",) if partial else (f"{stamp}.json", "latest.json"):
        tmp = RESULTS / f"{name}.tmp"
        tmp.write_text(text)
        tmp.replace(RESULTS / name)
    sys.stdout.write(table)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
