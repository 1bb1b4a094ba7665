"""Issue 14: ``zeek-ml score --workers N`` / ``--cluster ADDRESS`` on a real Dask cluster (no mocks).

Every test compares the notice log (and ``--all``) of a cluster run with the single-process run of the
same inputs, byte for byte but for the ``#open``/``#close`` lines (wall-clock times). Partitions are
cut small on purpose, so that cuts fall inside files, inside incidents and inside hosts' histories;
the engine's summary line shows both ways a partition is made exact (accepted after its warm-up, or
re-scored from the previous partition's context) where the data gives both.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SAMPLE_LOGS, TEST_DATA, need_shared, run_cli

distributed = pytest.importorskip("distributed", reason="the cluster extra (dask[distributed]) is not installed")

LAB = TEST_DATA / "lab" / "lab-namespaces-2026.part1.head4000.conn.log.labeled.gz"


def body(path: Path) -> list[str]:
    """A log's lines but its #open/#close (the wall-clock times of the run)."""
    return [ln for ln in path.read_text().splitlines() if not ln.startswith(("#open", "#close"))]


def engine_line(stderr: str) -> tuple[int, int, int, int]:
    """(partitions, from the context chain, accepted after a warm-up, re-scored) from the engine's summary."""
    m = re.search(
        r"([\d,]+) partition\(s\): ([\d,]+) started from the context chain, ([\d,]+) exact after their warm-up, "
        r"([\d,]+) re-scored",
        stderr,
    )
    assert m, stderr
    return tuple(int(g.replace(",", "")) for g in m.groups())  # type: ignore[return-value]


def test_absorb_leaves_the_state_update_leaves(tmp_path: Path) -> None:
    """The context chain's absorb() (no features) and HostContext.update() leave the same state, batch
    by batch, on real logs with several captures (new epochs, clamped rows' path included); the
    fingerprint tells a copy from a context one row further on."""
    import pickle

    from zeek_ml.features.context import HostContext
    from zeek_ml.services.distributed import _copy, absorb, context_fingerprint
    from zeek_ml.sources.files import expand_sources, iter_batches
    from zeek_ml.sources.reading import ReadStats, RejectLog

    inputs = [str(TEST_DATA / d) for d in ("lab", "ctu", "zeek8")] + [str(SAMPLE_LOGS)]
    batches = [b for b in iter_batches(expand_sources(inputs), rejects=RejectLog(), stats=ReadStats()) if len(b)]
    assert len(batches) > 5
    a, b = HostContext(), HostContext()
    for batch in batches:
        for start in range(0, len(batch), 777):  # cut inside batches too
            a.update(batch.iloc[start : start + 777])
            absorb(b, batch.iloc[start : start + 777])
            assert context_fingerprint(a) == context_fingerprint(b)
    before = context_fingerprint(a)
    for copy in (pickle.loads(pickle.dumps(a)), _copy(a)):  # Dask's transfer, the tasks' own copy
        assert context_fingerprint(copy) == before
        copy.update(batches[-1].iloc[:1])
        assert context_fingerprint(copy) != before
        assert context_fingerprint(a) == before  # the original untouched


@pytest.fixture(scope="module")
def cluster():
    """One local Dask cluster of 2 worker processes for the module (127.0.0.1 only)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as c:
        yield c.scheduler_address


def score_both(tmp_path: Path, inputs: list[str], cluster_args: list[str], *extra: str) -> tuple[str, Path, Path]:
    """Run single-process and cluster scoring of ``inputs``; return the cluster run's stderr and both outputs."""
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir(exist_ok=True)
    many.mkdir(exist_ok=True)
    a = run_cli("score", *inputs, "-o", str(one / "notice.log"), "--all", str(one / "all.log"), *extra)
    assert a.returncode == 0, a.stderr
    b = run_cli("score", *inputs, "-o", str(many / "notice.log"), "--all", str(many / "all.log"), *extra, *cluster_args)
    assert b.returncode == 0, b.stderr
    return b.stderr, one, many


def assert_same(one: Path, many: Path) -> None:
    for name in ("notice.log", "all.log"):
        x, y = body(one / name), body(many / name)
        assert len(x) == len(y), name
        assert x == y, name


def test_sample_logs_local_workers(tmp_path: Path) -> None:
    """--workers 2: the CLI's own local cluster; every sample log, 700-row partitions."""
    err, one, many = score_both(tmp_path, [str(SAMPLE_LOGS)], ["--workers", "2", "--partition-rows", "700"])
    assert_same(one, many)
    parts, chained, warm, rescored = engine_line(err)
    assert parts > 3 and chained == parts - 1 and warm == rescored == 0
    assert "local cluster of 2 worker process(es)" in err
    assert len(body(one / "notice.log")) > 10


def test_the_dashboard_link_is_served_while_the_job_runs(tmp_path: Path) -> None:
    """--workers prints the dashboard's link (on 127.0.0.1) and the dashboard answers there while the job
    runs (its input, stdin, is held open until the dashboard has answered)."""
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zeek_ml", "score", "-", "-o", str(tmp_path / "n.log"), "--workers", "1"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None
    line = proc.stderr.readline()
    m = re.search(r"dashboard (http://127\.0\.0\.1:\d+/status)", line)
    assert m, line + proc.stderr.read()
    with urllib.request.urlopen(m.group(1), timeout=60) as page:
        assert page.status == 200 and b"Dask" in page.read()
    proc.stdin.write((SAMPLE_LOGS / "ssh_sshguess.conn.log").read_text())
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert "read 11 records" in proc.stderr.read()


def test_test_data_on_existing_cluster(tmp_path: Path, cluster: str) -> None:
    """--cluster ADDRESS, on the real logs of tests/data (TSV, JSON, eve, gzip), cut every 500 rows, the
    speculative way (--warmup-rows): some partitions pass the check, others are re-scored."""
    inputs = [str(TEST_DATA / d) for d in ("lab", "ctu", "zeek8")] + [str(TEST_DATA / "iot23-quirk.conn.log.labeled")]
    err, one, many = score_both(
        tmp_path, inputs, ["--cluster", cluster, "--partition-rows", "500", "--warmup-rows", "300"]
    )
    assert_same(one, many)
    parts, chained, warm, rescored = engine_line(err)
    assert parts == 1 + warm + rescored and chained == 0
    assert warm > 0 and rescored > 0, "both ways of making a partition exact must be exercised"


def test_options_carry_over(tmp_path: Path, cluster: str) -> None:
    """--no-aggregate, a lower threshold (many flagged rows explained) and JSON out: still identical."""
    _, one, many = score_both(
        tmp_path,
        [str(LAB)],
        ["--cluster", cluster, "--partition-rows", "333"],
        "--no-aggregate",
        "--threshold",
        "0.5",
        "--format",
        "json",
    )
    assert_same(one, many)


def test_site_profile_below_the_model_threshold(tmp_path: Path, cluster: str) -> None:
    """A site profile whose thresholds lie below the model's: notices (and their "why") for rows the
    model alone would not flag, so the workers must send back those rows' features too."""
    site = tmp_path / "site.json"
    r = run_cli("calibrate", str(LAB), "-o", str(site))
    assert r.returncode == 0, r.stderr
    profile = json.loads(site.read_text())
    profile["thresholds"] = {"internal": 0.3, "outbound": 0.5}
    site.write_text(json.dumps(profile))
    _, one, many = score_both(
        tmp_path, [str(LAB)], ["--cluster", cluster, "--partition-rows", "600"], "--profile", str(site)
    )
    assert_same(one, many)
    fields = next(ln for ln in body(one / "notice.log") if ln.startswith("#fields")).split("\t")[1:]
    rows = [ln.split("\t") for ln in body(one / "notice.log") if not ln.startswith("#")]
    col, why = fields.index("zeek_ml.score"), fields.index("msg")
    assert any(float(row[col]) < 0.9 and "why:" in row[why] for row in rows)


def test_model_without_host_context(tmp_path: Path, cluster: str) -> None:
    """conn-cnn-v1 keeps no context across rows: partitions are independent, still identical."""
    v1 = str(ROOT / "models" / "conn-cnn-v1.onnx")
    err, one, many = score_both(tmp_path, [str(LAB)], ["--cluster", cluster, "--partition-rows", "700"], "-m", v1)
    assert_same(one, many)
    assert engine_line(err)[3] == 0


def test_shared_captures(tmp_path: Path, cluster: str) -> None:
    """All the labelled captures (103,751 rows, 9 files), partitions of 5,000 rows."""
    data = need_shared() / "zeek_labeled"
    need_shared(data)
    err, one, many = score_both(tmp_path, [str(data)], ["--cluster", cluster, "--partition-rows", "5000"])
    assert_same(one, many)
    assert engine_line(err)[0] >= 20


def _archive_tree(root: Path, cuts: list[int]) -> list[float]:
    """The lab capture cut at ``cuts`` (row numbers) into hourly-named gzip files of a Zeek archive
    (two day folders); returns the ts of the first row after each cut."""
    with gzip.open(LAB, "rt") as f:
        lines = f.read().splitlines()
    header = [ln for ln in lines if ln.startswith("#") and not ln.startswith(("#open", "#close"))]
    rows = [ln for ln in lines if not ln.startswith("#")]
    edges = [0, *cuts, len(rows)]
    at = []
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        day = root / ("2026-11-29" if i < len(edges) // 2 else "2026-11-30")
        day.mkdir(exist_ok=True)
        hour = f"{i:02d}:00:00-{i + 1:02d}:00:00" if i < 23 else f"23:{i - 23:02d}:00-23:{i - 22:02d}:00"
        opened = f"#open\t{day.name}-{i:02d}-00-00"
        with gzip.open(day / f"conn.{hour}.log.gz", "wt") as f:
            f.write("\n".join([*header[:5], opened, *header[5:], *rows[a:b], f"#close\t{day.name}-{i + 1:02d}-00-00"]))
            f.write("\n")
        if a:
            at.append(float(rows[a].split("\t")[0]))
    return at


def test_archive_tree_cut_mid_incident(tmp_path: Path, cluster: str) -> None:
    """A many-file archive tree from one real log, files cut at awkward places (inside incidents, inside
    a scanning host's history), scored with partitions that do not line up with the files."""
    tree = tmp_path / "archive"
    tree.mkdir()
    cuts = [1, 333, 334, 1000, 1517, 1800, 2222, 2600, 2601, 3001, 3500, 3999]
    cut_ts = _archive_tree(tree, cuts)
    assert len(list(tree.rglob("*.log.gz"))) == len(cuts) + 1
    # the archive's root, as a user names it: its day folders are read, in time order
    _, one, many = score_both(tmp_path, [str(tree)], ["--cluster", cluster, "--partition-rows", "450"])
    assert_same(one, many)
    # the cuts really do fall inside incidents: a notice's [first_ts, last_ts] spans a cut
    rows = [ln.split("\t") for ln in body(one / "notice.log") if not ln.startswith("#")]
    fields = next(ln for ln in body(one / "notice.log") if ln.startswith("#fields")).split("\t")[1:]
    first, last = fields.index("zeek_ml.first_ts"), fields.index("zeek_ml.last_ts")
    spans = [(float(r[first]), float(r[last])) for r in rows]
    assert any(a < t <= b for t in cut_ts for a, b in spans), "no incident straddles a file boundary"


CTU = SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz"
SCAN = SAMPLE_LOGS / "slips-port-scans-horizontal.conn.log"


def _sensor_archive(root: Path) -> None:
    """Three sensors' archives side by side (ARCHIVE/<sensor>/<day>/conn.*.log.gz), from three real logs of
    three networks: the lab capture cut into hourly files over two days, a CTU capture with one malformed
    line (for --rejects) and a horizontal port scan."""
    (root / "east").mkdir(parents=True)
    _archive_tree(root / "east", [700, 1517, 2600, 3001])
    west = root / "west" / "2022-06-12"
    west.mkdir(parents=True)
    with gzip.open(CTU, "rt") as f:
        lines = f.read().splitlines()
    first = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    lines.insert(first + 5, "this is not a conn record")
    with gzip.open(west / "conn.22:00:00-23:00:00.log.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    dmz = root / "dmz" / "2026-11-30"
    dmz.mkdir(parents=True)
    with gzip.open(dmz / "conn.10:00:00-11:00:00.log.gz", "wb") as f:
        f.write(SCAN.read_bytes())


def notices(path: Path) -> list[dict[str, str]]:
    lines = body(path)
    fields = next(ln for ln in lines if ln.startswith("#fields")).split("\t")[1:]
    return [dict(zip(fields, ln.split("\t"))) for ln in lines if not ln.startswith("#")]


def test_sensors_are_networks_of_their_own_on_the_cluster(tmp_path: Path, cluster: str) -> None:
    """An archive of three sensors: each sensor is scored with its own context and incidents (one task each
    on the cluster), its notices name it in peer_descr, and the one notice log is merged by time and
    identical to one process's, as are --all and --rejects (which names the malformed line once)."""
    archive = tmp_path / "archive"
    _sensor_archive(archive)
    one, many = tmp_path / "one", tmp_path / "many"
    for out, extra in ((one, []), (many, ["--cluster", cluster])):
        out.mkdir()
        r = run_cli(
            "score", str(archive), "-o", str(out / "notice.log"), "--rejects", str(out / "rej.jsonl"),
            "--all", str(out / "all.log"), *extra,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "read 6,041 records from 7 file(s), rejected 1," in r.stderr, r.stderr
    assert "3 sensor(s) scored as tasks of their own" in r.stderr
    assert body(one / "notice.log") == body(many / "notice.log")
    assert (one / "rej.jsonl").read_bytes() == (many / "rej.jsonl").read_bytes()
    assert body(one / "all.log") == body(many / "all.log")  # every row, sensor after sensor
    assert len([ln for ln in body(one / "all.log") if not ln.startswith("#")]) == 6041
    (reject,) = [json.loads(ln) for ln in (one / "rej.jsonl").read_text().splitlines()]
    assert reject["file"].endswith("west/2022-06-12/conn.22:00:00-23:00:00.log.gz") and reject["line"] > 0
    rows = notices(one / "notice.log")
    assert {r["peer_descr"] for r in rows} >= {"east", "west"}
    ts = [float(r["ts"]) for r in rows]
    assert ts == sorted(ts)
    # each sensor alone gives its own notices: no context or incident crosses sensors
    for sensor in ("east", "west"):
        alone = tmp_path / f"{sensor}.log"
        r = run_cli("score", str(archive / sensor), "-o", str(alone))
        assert r.returncode == 0, r.stderr
        mine = [{**row, "peer_descr": "-"} for row in rows if row["peer_descr"] == sensor]
        assert mine == notices(alone)


def day_files(root: Path) -> dict[str, list[str]]:
    return {str(p.relative_to(root)): body(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_one_notice_log_per_sensor_and_day(tmp_path: Path, cluster: str) -> None:
    """--split-days: OUT/<sensor>/<YYYY-MM-DD>/notice.log, the same files from one process and the cluster,
    together the rows of the one merged notice log, each in its UTC day; a run that fails (--strict on the
    malformed line) leaves no folder behind."""
    import datetime as dt

    archive = tmp_path / "archive"
    _sensor_archive(archive)
    merged = tmp_path / "merged.log"
    assert run_cli("score", str(archive), "-o", str(merged), "-q").returncode == 0
    outs = {}
    for name, extra in (("one", []), ("many", ["--cluster", cluster])):
        r = run_cli("score", str(archive), "-o", str(tmp_path / name), "--split-days", "-q", *extra)
        assert r.returncode == 0, r.stderr
        outs[name] = day_files(tmp_path / name)
    assert outs["one"] == outs["many"]
    assert len(outs["one"]) >= 2, outs["one"].keys()
    rows = []
    for rel in outs["one"]:
        sensor, day, name = rel.split("/")
        assert name == "notice.log"
        for row in notices(tmp_path / "one" / rel):
            assert row["peer_descr"] == sensor
            assert dt.datetime.fromtimestamp(float(row["ts"]), dt.UTC).strftime("%Y-%m-%d") == day
            rows.append(row)
    assert sorted(map(str, rows)) == sorted(map(str, notices(merged)))
    failed = run_cli("score", str(archive), "-o", str(tmp_path / "failed"), "--split-days", "--strict")
    assert failed.returncode == 4, failed.stderr
    assert not (tmp_path / "failed").exists()


def test_sensor_from_names_sensors_by_path(tmp_path: Path) -> None:
    """--sensor-from: a regular expression over the path gives the same sensors as the archive's folders;
    one that does not match a file, or is not a regular expression, is one line naming it (exit 2)."""
    archive = tmp_path / "archive"
    _sensor_archive(archive)
    a = run_cli("score", str(archive), "-o", str(tmp_path / "a.log"), "-q")
    b = run_cli("score", str(archive), "-o", str(tmp_path / "b.log"), "-q", "--sensor-from", r"/(?P<sensor>\w+)/\d{4}-")
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert body(tmp_path / "a.log") == body(tmp_path / "b.log")
    for pattern, says in (("/(east|west)/", "does not match this path"), ("(", "not a regular expression")):
        r = run_cli("score", str(archive), "-o", str(tmp_path / "c.log"), "--sensor-from", pattern)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert says in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "c.log").exists()


@pytest.fixture
def http_archive(tmp_path: Path) -> Any:
    """The three-sensor archive served by a real HTTP server (Python's http.server) on 127.0.0.1."""
    archive = tmp_path / "archive"
    _sensor_archive(archive)
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0", "--directory", str(archive)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    first = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    m = re.search(r"\((http://[^)]+)\)", first)
    assert m, first
    try:
        yield archive, m.group(1)
    finally:
        server.kill()
        server.wait()


def test_archives_read_where_they_lie_over_http(tmp_path: Path, http_archive: Any, cluster: str) -> None:
    """URLs (fsspec; here a real HTTP server): the cluster's workers read each sensor's files from the server
    themselves, and the notices are those of the same archive on disk; a missing URL is one line."""
    archive, url = http_archive
    local = run_cli("score", str(archive), "-o", str(tmp_path / "local.log"), "-q")
    assert local.returncode == 0, local.stderr
    by_sensor = r"/(?P<sensor>\w+)/\d{4}-"
    remote = run_cli("score", url, "-o", str(tmp_path / "remote.log"), "--sensor-from", by_sensor, "--cluster", cluster)
    assert remote.returncode == 0, remote.stderr
    assert "read 6,041 records from 7 file(s), rejected 1," in remote.stderr
    assert body(tmp_path / "local.log") == body(tmp_path / "remote.log")
    one = run_cli("score", f"{url}east/", "-o", str(tmp_path / "east-remote.log"), "-q")
    two = run_cli("score", str(archive / "east"), "-o", str(tmp_path / "east-local.log"), "-q")
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert body(tmp_path / "east-remote.log") == body(tmp_path / "east-local.log")
    missing = run_cli("score", f"{url}north/", "-o", str(tmp_path / "n.log"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"zeek-ml: error: {url}north/: no such file or directory"


def test_worker_killed_while_scoring_a_sensor(tmp_path: Path) -> None:
    """The worker scoring the second sensor is SIGKILLed as it starts: Dask runs that sensor again on another
    worker, and the notices and rejects are still the single process's."""
    archive = tmp_path / "archive"
    _sensor_archive(archive)
    a = run_cli("score", str(archive), "-o", str(tmp_path / "one.log"), "--rejects", str(tmp_path / "one.jsonl"))
    assert a.returncode == 0, a.stderr
    marker = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ZEEK_ML_DASK_KILL_ONCE": f"{marker}:1"}
    b = subprocess.run(
        [sys.executable, "-m", "zeek_ml", "score", str(archive), "-o", str(tmp_path / "many.log"),
         "--rejects", str(tmp_path / "many.jsonl"), "--workers", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert b.returncode == 0, b.stderr
    killed = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # that worker process is gone
    assert "3 sensor(s) scored as tasks of their own" in b.stderr
    assert body(tmp_path / "one.log") == body(tmp_path / "many.log")
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "many.jsonl").read_bytes()


def test_worker_killed_mid_job(tmp_path: Path) -> None:
    """A worker is SIGKILLed as it starts partition 3 (the ZEEK_ML_DASK_KILL_ONCE hook, once): Dask
    reschedules its tasks (their input rows are tasks too, so nothing is lost) and the output is the same."""
    out = tmp_path / "one.log"
    a = run_cli("score", str(LAB), "-o", str(out))
    assert a.returncode == 0, a.stderr
    marker = tmp_path / "killed"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["ZEEK_ML_DASK_KILL_ONCE"] = f"{marker}:3"
    got = tmp_path / "many.log"
    b = subprocess.run(
        [
            sys.executable,
            "-m",
            "zeek_ml",
            "score",
            str(LAB),
            "-o",
            str(got),
            "--workers",
            "2",
            "--partition-rows",
            "400",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert b.returncode == 0, b.stderr
    assert marker.exists(), "no worker was killed"
    killed = int(marker.read_text())
    assert killed != b.returncode and killed > 0
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # that worker process is gone
    assert body(out) == body(got)


def test_bad_cluster_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No scheduler there: one line, exit 2, no output (after Dask's connect timeout, 2 s here)."""
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    r = run_cli("score", str(LAB), "-o", str(tmp_path / "n.log"), "--cluster", "tcp://127.0.0.1:1", timeout=120)
    assert r.returncode == 2, r.stderr
    assert "cannot reach the Dask scheduler" in r.stderr
    assert not (tmp_path / "n.log").exists()


BAD_OPTIONS = [
    ["--workers", "0"],
    ["--workers", "2", "--partition-rows", "0"],
    ["--workers", "2", "--warmup-rows", "-1"],
]


@pytest.mark.parametrize("bad", BAD_OPTIONS)
def test_bad_cluster_options(tmp_path: Path, bad: list[str]) -> None:
    r = run_cli("score", str(LAB), "-o", str(tmp_path / "n.log"), *bad)
    assert r.returncode == 2, r.stderr
    assert "must be >=" in r.stderr
    assert not (tmp_path / "n.log").exists()
