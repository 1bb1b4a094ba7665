"""The live watcher, end to end: real processes, real files, real rotation, kill -9."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, SAMPLE_LOGS, run_cli
from zeek_ml.zeeklog import read_frames

WRITER = ROOT / "bench" / "zeek_live_writer.py"
SSH_CONN = SAMPLE_LOGS / "ssh_sshguess.conn.log"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_watch(logs: Path, out: Path, *extra: str, stderr: Path | None = None) -> subprocess.Popen[bytes]:
    """``zeek-ml watch`` as a real subprocess."""
    args = [sys.executable, "-m", "zeek_ml", "watch", str(logs), "-o", str(out / "notice.log")]
    args += ["--all", str(out / "all.log"), "--poll-interval", "0.05", *extra]
    err = open(stderr or out / "watch.err", "ab")  # noqa: SIM115
    return subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=err)


def drain(logs: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the watcher until it has read everything, then let it stop by itself."""
    res = run_cli(
        "watch",
        str(logs),
        "-o",
        str(out / "notice.log"),
        "--all",
        str(out / "all.log"),
        "--poll-interval",
        "0.05",
        "--exit-when-idle",
        "1.5",
        *extra,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr
    return res


def scored_uids(out: Path) -> list[str]:
    path = out / "all.log"
    if not path.exists():
        return []
    return read_frames([str(path)])["uid"].astype(str).tolist()


def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(logs, out): Zeek's log directory and ours."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    return logs, out


def wait_for(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def conn_lines(path: Path = SSH_CONN) -> tuple[list[bytes], list[bytes]]:
    """(header lines, data lines) of a real Zeek 7 conn.log."""
    lines = path.read_bytes().splitlines(keepends=True)
    header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
    data = [ln for ln in lines if not ln.startswith(b"#")]
    return header, data


def with_uid(line: bytes, uid: str) -> bytes:
    cols = line.split(b"\t")
    cols[1] = uid.encode()
    return b"\t".join(cols)


def with_open(header: list[bytes], stamp: str) -> list[bytes]:
    return [b"#open\t" + stamp.encode() + b"\n" if h.startswith(b"#open") else h for h in header]


# --------------------------------------------------------------------------- exactly once under kill -9


def test_sigkill_at_random_moments_scores_every_uid_exactly_once_in_order(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    out.mkdir()
    manifest = tmp_path / "manifest.json"
    writer = subprocess.Popen(
        [
            *(sys.executable, str(WRITER), str(logs), "--rows", "12000", "--rotate-every", "1100", "--burst", "40"),
            *("--rate", "900", "--style", "mixed", "--header-change", "--seed", "7", "--manifest", str(manifest)),
        ],
        env=_env(),
        stderr=subprocess.PIPE,
    )
    rng = random.Random(20261124)
    kills = 0
    extra = ("--rotated-dir", str(logs / "archive" / "*"))
    while writer.poll() is None or kills < 3:
        watcher = start_watch(logs, out, *extra)
        time.sleep(rng.uniform(0.2, 1.8))
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()
        kills += 1
    assert writer.returncode == 0, writer.stderr.read().decode() if writer.stderr else ""
    drain(logs, out, *extra)
    expected = [uid for file in json.loads(manifest.read_text())["files"] for uid in file]
    got = scored_uids(out)
    assert len(expected) == 12000
    dupes = len(got) - len(set(got))
    missing = set(expected) - set(got)
    assert not dupes and not missing, f"{kills} kills: {dupes} scored twice, {len(missing)} never scored"
    assert got == expected  # the order of the files, and within each file
    # The archiver gzipped and moved files while the watcher was down: they were found by fingerprint.
    assert list((logs / "archive").rglob("*.log.gz"))
    notices = (out / "notice.log").read_bytes()
    assert notices.count(b"#fields") == 1  # one header, appended to across restarts
    assert not re.search(rb"\n[^\n#][^\n]*\n#", notices)  # no header block after data


# --------------------------------------------------------------------------- single situations


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    logs, out = dirs(tmp_path)
    header, data = conn_lines()
    live = logs / "conn.log"
    live.write_bytes(b"".join(header) + b"".join(data[:5]) + data[5][:20])
    drain(logs, out)
    assert len(scored_uids(out)) == 5
    with open(live, "ab") as f:
        f.write(data[5][20:] + b"".join(data[6:8]))
    drain(logs, out)
    uids = scored_uids(out)
    assert uids == [ln.split(b"\t")[1].decode() for ln in data[:8]]


def test_copytruncate_restarts_the_file_and_says_so(tmp_path: Path) -> None:
    logs, out = dirs(tmp_path)
    header, data = conn_lines()
    live = logs / "conn.log"
    live.write_bytes(b"".join(header) + b"".join(with_uid(ln, f"Cfirst{i}") for i, ln in enumerate(data)))
    watcher = start_watch(logs, out)
    try:
        wait_for(lambda: len(scored_uids(out)) == len(data), what="the first file to be scored")
        shutil.copy(live, logs / "conn.log.1")  # logrotate copytruncate: copy, then truncate in place
        with open(live, "r+b") as f:
            f.truncate(0)
        # New rows past the old offset before the watcher looks: only the first bytes tell.
        new_header = with_open(header, "2030-01-01-00-00-00")
        rows = [with_uid(ln, f"Csecond{i}") for i, ln in enumerate(data * 3)]
        with open(live, "ab") as f:
            f.write(b"".join(new_header) + b"".join(rows))
        wait_for(lambda: len(scored_uids(out)) == len(data) * 4, what="the truncated file to be scored")
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0
    uids = scored_uids(out)
    assert uids == [f"Cfirst{i}" for i in range(len(data))] + [f"Csecond{i}" for i in range(len(data) * 3)]
    assert "file_truncated" in (out / "watch.err").read_text()


def test_header_change_between_files_and_json_logs(tmp_path: Path) -> None:
    logs, out = dirs(tmp_path)
    header, data = conn_lines()
    live = logs / "conn.log"
    live.write_bytes(b"".join(header) + b"".join(data))
    watcher = start_watch(logs, out)
    try:
        wait_for(lambda: len(scored_uids(out)) == len(data), what="TSV rows")
        # Rotate to a JSON conn.log (a site switching LogAscii::use_json) with fields the TSV had not.
        os.rename(live, logs / "conn.2015-03-30-14-45-02.log")
        rows = [json.loads(ln) for ln in (SAMPLE_LOGS / "ssh_sshguess.conn.json.log").read_text().splitlines()]
        for i, row in enumerate(rows):
            row["uid"] = f"Cjson{i}"
            row["ip_proto"] = 6
        live.write_text("".join(json.dumps(r) + "\n" for r in rows))
        wait_for(lambda: len(scored_uids(out)) == len(data) + len(rows), what="JSON rows")
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0
    assert scored_uids(out)[len(data) :] == [f"Cjson{i}" for i in range(len(rows))]


def test_file_deleted_before_it_was_drained_is_reported(tmp_path: Path) -> None:
    logs, out = dirs(tmp_path)
    header, data = conn_lines()
    live = logs / "conn.log"
    live.write_bytes(b"".join(header) + b"".join(data[:4]))
    drain(logs, out)
    with open(live, "ab") as f:  # rows the watcher, now down, will never see
        f.write(b"".join(data[4:]))
    os.unlink(live)
    new_rows = [with_uid(ln, f"Cnew{i}") for i, ln in enumerate(data)]
    live.write_bytes(b"".join(with_open(header, "2030-01-01-00-00-00")) + b"".join(new_rows))
    res = drain(logs, out)
    assert "file_missing" in res.stderr and "after line" in res.stderr and str(live) in res.stderr
    assert scored_uids(out)[4:] == [f"Cnew{i}" for i in range(len(data))]


def test_gzipped_by_the_archiver_while_down_is_caught_up(tmp_path: Path) -> None:
    logs, out = dirs(tmp_path)
    header, data = conn_lines()
    live = logs / "conn.log"
    live.write_bytes(b"".join(header) + b"".join(data[:3]))
    drain(logs, out)
    with open(live, "ab") as f:
        f.write(b"".join(data[3:]) + b"#close\t2015-03-30-14-45-30\n")
    archive = logs / "archive" / "2015-03-30"
    archive.mkdir(parents=True)
    with gzip.open(archive / "conn.14:45:02-14:45:30.log.gz", "wb") as g:
        g.write(live.read_bytes())
    live.unlink()
    live.write_bytes(b"".join(with_open(header, "2030-01-01-00-00-00")) + with_uid(data[0], "Cnext"))
    drain(logs, out, "--rotated-dir", str(logs / "archive" / "*"))
    expected = [ln.split(b"\t")[1].decode() for ln in data] + ["Cnext"]
    assert scored_uids(out) == expected


# --------------------------------------------------------------------------- service behaviour


def test_sighup_reopens_the_notice_log_and_metrics_are_served(tmp_path: Path) -> None:
    logs, out = dirs(tmp_path)
    shutil.copy(SAMPLE_LOGS / "slips-port-scans-horizontal.conn.log", logs / "conn.log")
    watcher = start_watch(
        logs, out, "--metrics", "127.0.0.1:0", "--log-format", "json", "--no-aggregate", "--threshold", "0"
    )
    try:
        err = out / "watch.err"
        wait_for(lambda: err.exists() and '"metrics"' in err.read_text(), what="the metrics server")
        wait_for(lambda: (out / "notice.log").stat().st_size > 2000, what="notices")
        address = re.search(r"http://(127\.0\.0\.1:\d+)/metrics", err.read_text()).group(1)
        wait_for(lambda: "zeek_ml_notices_total" in _get(address), what="notice counter")
        metrics = _get(address)
        assert re.search(r"^zeek_ml_records_read_total \d", metrics, re.M)
        assert "zeek_ml_batch_seconds_bucket" in metrics and "zeek_ml_lag_bytes" in metrics
        os.rename(out / "notice.log", out / "notice.log.1")  # logrotate
        watcher.send_signal(signal.SIGHUP)
        wait_for(lambda: (out / "notice.log").exists(), what="a fresh notice.log")
        wait_for(lambda: (out / "notice.log.1").read_bytes().rstrip().split(b"\n")[-1].startswith(b"#close"))
        assert (out / "notice.log").read_bytes().startswith(b"#separator \\x09\n")
        for line in err.read_text().splitlines():
            json.loads(line)  # --log-format json: every log line is one JSON object
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0


def _get(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as r:
        return r.read().decode()


def test_waits_for_a_directory_that_does_not_exist_yet(tmp_path: Path) -> None:
    logs, out = tmp_path / "not-yet", tmp_path / "out"
    out.mkdir()
    watcher = start_watch(logs, out)
    try:
        err = out / "watch.err"
        wait_for(lambda: err.exists() and "does not exist yet" in err.read_text(), what="the waiting message")
        logs.mkdir()
        shutil.copy(SSH_CONN, logs / "conn.log")
        wait_for(lambda: len(scored_uids(out)) == len(conn_lines()[1]), what="rows once the directory appears")
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0


def test_systemd_unit_is_printed() -> None:
    res = run_cli("watch", "--print-systemd-unit")
    assert res.returncode == 0
    assert "ExecStart=" in res.stdout and "zeek-ml watch" in res.stdout and "ExecReload=/bin/kill -HUP" in res.stdout


def test_malformed_lines_are_set_aside_once_and_the_rest_is_scored(tmp_path: Path) -> None:
    logs, out = dirs(tmp_path)
    header, data = conn_lines()
    cols = data[2].split(b"\t")
    cols[16] = b"six"  # orig_pkts is not a count
    bad_count = b"\t".join(cols)
    live = logs / "conn.log"
    live.write_bytes(b"".join(header) + data[0] + data[1] + bad_count + b"only\ttwo fields\n" + data[3])
    res = drain(logs, out, "--rejects", str(out / "rejects.json"))
    assert len(scored_uids(out)) == 3
    rejects = [json.loads(line) for line in (out / "rejects.json").read_text().splitlines()]
    assert sorted((r["line"], r["field"] or "") for r in rejects) == [
        (len(header) + 3, "orig_pkts"),
        (len(header) + 4, ""),
    ]
    assert all(r["file"] == str(live) for r in rejects)
    assert "stopped" in res.stderr
    drain(logs, out, "--rejects", str(out / "rejects.json"))  # a restart reads nothing again
    assert len((out / "rejects.json").read_text().splitlines()) == 2


def test_aggregated_notices_live_with_kills_equal_offline_scoring(tmp_path: Path) -> None:
    """One notice per incident, live as offline: same rows, whatever the kills and batch boundaries."""
    source = SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz"
    logs, out, offline = tmp_path / "logs", tmp_path / "out", tmp_path / "offline.log"
    logs.mkdir()
    out.mkdir()
    res = run_cli("score", str(source), "-o", str(offline), "--suppress-for", "600", "-q")
    assert res.returncode == 0, res.stderr
    lines = gzip.decompress(source.read_bytes()).splitlines(keepends=True)
    header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
    data = [ln for ln in lines if not ln.startswith(b"#")]
    live = logs / "conn.log"
    live.write_bytes(b"".join(header))
    rng = random.Random(5)
    pos = starts = 0
    while pos < len(data) or starts < 3:
        watcher = start_watch(logs, out, "--suppress-for", "600")
        starts += 1
        deadline = time.monotonic() + rng.uniform(0.5, 2.0)
        while time.monotonic() < deadline and pos < len(data):
            step = rng.randint(10, 60)
            with open(live, "ab") as f:
                f.write(b"".join(data[pos : pos + step]))
            pos += step
            time.sleep(0.1)
        watcher.send_signal(signal.SIGKILL if rng.random() < 0.7 else signal.SIGTERM)
        watcher.wait()
    drain(logs, out, "--suppress-for", "600")

    def rows(path: Path) -> list[bytes]:
        return [ln for ln in path.read_bytes().splitlines() if not ln.startswith(b"#")]

    expected = rows(offline)
    assert len(expected) >= 3  # a few incidents, far fewer than flagged connections
    assert rows(out / "notice.log") == expected


def test_eve_json_in_eve_alerts_out_exactly_once(tmp_path: Path) -> None:
    excerpt = ROOT / "tests" / "data" / "suricata-excerpt.eve.json"
    lines = excerpt.read_bytes().splitlines(keepends=True)
    flows = [json.loads(ln)["flow_id"] for ln in lines if json.loads(ln).get("event_type") == "flow"]
    logs, out = dirs(tmp_path)
    live = logs / "eve.json"
    live.write_bytes(b"".join(lines[:8]))
    opts = ("--format", "eve", "--threshold", "0", "--no-aggregate", "--notice-local-discovery")
    drain(logs, out, *opts)
    with open(live, "ab") as f:
        f.writelines(lines[8:])
    drain(logs, out, *opts)
    alerts = [json.loads(ln) for ln in (out / "notice.log").read_text().splitlines()]
    assert [a["flow_id"] for a in alerts] == flows
    assert {a["event_type"] for a in alerts} == {"alert"} and all(a["alert"]["gid"] == 7447 for a in alerts)
