"""``zeek-ml watch`` under faults: failed batches, the fresh-start window, full disks, outputs moved
or deleted under it, corrupt archives. Real processes, real files, a real (small) tmpfs.

Each test checks the same thing in the end: every connection written to the live log is in
``--all`` exactly once, in order, whatever happened in between.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE_LOGS, need, run_cli
from zeek_ml.sources.files import read_frames

CTU = SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz"
FULL = "error: disk_full:"
"""The watcher's log line when an output or the checkpoint cannot be written for lack of space."""


# --------------------------------------------------------------------------- helpers


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ZEEK_ML_WATCH_CRASH_AT", None)
    env.update(extra)
    return env


def watch_cmd(logs: Path, out: Path, *extra: str, checkpoint: Path | None = None) -> list[str]:
    args = [sys.executable, "-m", "zeek_ml", "watch", str(logs), "-o", str(out / "notice.log")]
    args += ["--all", str(out / "all.log"), "--poll-interval", "0.05"]
    if checkpoint is not None:
        args += ["--checkpoint", str(checkpoint)]
    return args + list(extra)


def start(cmd: list[str], err: Path, crash: str | None = None) -> subprocess.Popen[bytes]:
    """The watcher as a real subprocess, its log lines appended to ``err``."""
    env = _env(ZEEK_ML_WATCH_CRASH_AT=crash) if crash else _env()
    LOG.append(err)
    with open(err, "ab") as f:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=f)


def run(cmd: list[str], crash: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the watcher to its end (``--exit-when-idle``, or a fault)."""
    env = _env(ZEEK_ML_WATCH_CRASH_AT=crash) if crash else _env()
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


LOG: list[Path] = []
"""The log the current test's watcher writes (shown when a wait times out)."""


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tail = "\n".join(text(LOG[-1]).splitlines()[-15:]) if LOG else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def data_lines(path: Path) -> list[bytes]:
    return [ln for ln in path.read_bytes().splitlines() if ln and not ln.startswith(b"#")] if path.exists() else []


def uids_in(*paths: Path) -> list[str]:
    """The uid column of Zeek TSV files, in order; every data line must parse (no torn line)."""
    out: list[str] = []
    for path in paths:
        if not path.exists() or not data_lines(path):
            continue
        frame = read_frames([str(path)])
        assert len(frame) == len(data_lines(path)), f"{path}: a line that does not parse (torn?)"
        out += frame["uid"].astype(str).tolist()
    return out


def conn_rows() -> tuple[list[bytes], list[bytes]]:
    """(header lines, data lines) of a real conn.log (CTU-Normal-40, 2,000 connections)."""
    lines = gzip.decompress(CTU.read_bytes()).splitlines(keepends=True)
    header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
    return header, [ln for ln in lines if not ln.startswith(b"#")]


HEADER, ROWS = conn_rows()


def rows(tag: str, n: int, start: int = 0) -> list[bytes]:
    """``n`` real rows with uids ``C<tag><i>`` (unique across a test)."""
    out = []
    for i in range(start, start + n):
        cols = ROWS[i % len(ROWS)].split(b"\t")
        cols[1] = f"C{tag}{i}".encode()
        out.append(b"\t".join(cols))
    return out


def uids_of(lines: list[bytes]) -> list[str]:
    return [ln.split(b"\t")[1].decode() for ln in lines]


def header(stamp: str) -> bytes:
    return b"".join(b"#open\t" + stamp.encode() + b"\n" if h.startswith(b"#open") else h for h in HEADER)


def append(path: Path, lines: list[bytes]) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(lines))


def rotate(logs: Path, stamp: str, queue: bool = False) -> Path:
    """Zeek's rotation: ``#close``, rename (zeekctl, or the archiver's log-queue), no new file yet."""
    live = logs / "conn.log"
    append(live, [b"#close\t" + stamp.encode() + b"\n"])
    if queue:
        (logs / "log-queue").mkdir(exist_ok=True)
        dest = logs / "log-queue" / f"conn__{stamp}__{stamp}__.log"
    else:
        dest = logs / f"conn.{stamp}.log"
    os.rename(live, dest)
    return dest


def metrics_address(err: Path) -> str:
    wait_for(lambda: "Prometheus metrics on" in text(err), what="the metrics server")
    match = re.search(r"http://(127\.0\.0\.1:\d+)/metrics", text(err))
    assert match
    return match.group(1)


def metric(address: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as r:
        body = r.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    assert match, f"{name} not served"
    return float(match.group(1))


def no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t, t


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (tests run as root), unmounted at the end whatever happens."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    need(res.returncode == 0, f"cannot mount a tmpfs at {mnt} (needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mount: Path, leave: int = 0) -> Path:
    """Fill the file system at ``mount`` to the last byte, then free ``leave`` bytes (so that the
    next write is cut short mid-line); returns the filler (delete it to free the space)."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 16, 4096, 1):  # unbuffered: every byte that fits is in
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


# --------------------------------------------------------------------------- failed batches


def test_a_batch_that_fails_is_not_checkpointed_and_the_restart_scores_it(tmp_path: Path) -> None:
    """An exception in the middle of a batch: one line, exit 1, no checkpoint past the batch."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    written = rows("f", 300)
    (logs / "conn.log").write_bytes(header("2015-03-30-14-45-02") + b"".join(written))
    cmd = watch_cmd(logs, out, "--batch-kib", "8", "--checkpoint-interval", "0", "--exit-when-idle", "1")
    res = run(cmd, crash="batch_scored:4:raise")
    assert res.returncode == 1, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "lines" in errors[0] and "restart scores them again" in errors[0], res.stderr
    no_traceback(res.stderr)
    scored_before = len(uids_in(out / "all.log"))
    assert 0 < scored_before < 300  # three batches written, the fourth not
    saved = json.loads((out / "notice.log.checkpoint.json").read_text())
    assert saved["input"]["current"]["line"] - len(HEADER) <= scored_before  # never past what was written
    res = run(cmd)
    assert res.returncode == 0, res.stderr
    assert uids_in(out / "all.log") == uids_of(written)


def test_strict_stops_at_the_malformed_line_and_the_checkpoint_stays_before_it(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    good = rows("s", 200)
    cols = good[150].split(b"\t")
    cols[16] = b"six"  # orig_pkts is not a count
    bad = b"\t".join(cols)
    (logs / "conn.log").write_bytes(header("2015-03-30-14-45-02") + b"".join([*good[:150], bad, *good[151:]]))
    cmd = watch_cmd(logs, out, "--batch-kib", "8", "--checkpoint-interval", "0", "--exit-when-idle", "1")
    res = run([*cmd, "--strict"])
    assert res.returncode == 4, res.stderr
    assert "orig_pkts" in res.stderr and res.stderr.count("error") == 1
    no_traceback(res.stderr)
    res = run([*cmd, "--rejects", str(out / "rejects.json")])
    assert res.returncode == 0, res.stderr
    assert uids_in(out / "all.log") == uids_of(good[:150] + good[151:])
    rejects = [json.loads(ln) for ln in (out / "rejects.json").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(len(HEADER) + 151, "orig_pkts")]


# --------------------------------------------------------------------------- the fresh-start window


@pytest.mark.parametrize("crash", ["checkpointed:1", "batch_written:1"])
def test_killed_in_the_fresh_start_window_while_zeek_rotates(tmp_path: Path, crash: str) -> None:
    """Killed right after the first checkpoint (nothing scored), or with outputs written and no
    checkpoint naming them yet; Zeek rotates twice meanwhile: a restart catches up, exactly once,
    and the notices are the ones offline scoring gives."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    a, b, c = rows("a", 700), rows("b", 700, 700), rows("c", 600, 1400)
    live = logs / "conn.log"
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    opts = ("--suppress-for", "600", "--checkpoint-interval", "30")
    first = run(watch_cmd(logs, out, *opts), crash=crash)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert "started" in first.stderr or crash == "checkpointed:1"
    files = [rotate(logs, "2015-03-30-14-50-00")]
    live.write_bytes(header("2015-03-30-14-50-01") + b"".join(b))
    files.append(rotate(logs, "2015-03-30-14-55-00", queue=True))
    live.write_bytes(header("2015-03-30-14-55-01") + b"".join(c))
    files.append(live)
    res = run(watch_cmd(logs, out, *opts, "--exit-when-idle", "1"))
    assert res.returncode == 0, res.stderr
    assert uids_in(out / "all.log") == uids_of(a + b + c)
    offline = tmp_path / "offline.log"
    res = run_cli("score", *map(str, files), "-o", str(offline), "--suppress-for", "600", "-q")
    assert res.returncode == 0, res.stderr
    assert len(data_lines(offline)) >= 1
    assert data_lines(out / "notice.log") == data_lines(offline)


# --------------------------------------------------------------------------- full disks


def test_disk_full_under_the_outputs_waits_then_resumes_exactly(small_tmpfs: Path, tmp_path: Path) -> None:
    """Outputs on a 1 MiB tmpfs that fills up (the checkpoint elsewhere): reading stops, the
    metrics say so, nothing is lost once space is freed; a second time, killed while full."""
    logs, out = tmp_path / "logs", small_tmpfs
    logs.mkdir()
    err, checkpoint = tmp_path / "watch.err", tmp_path / "checkpoint.json"
    live = logs / "conn.log"
    first, second, third = rows("x", 100), rows("y", 1500, 100), rows("z", 1500, 1600)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(first))
    cmd = watch_cmd(logs, out, "--metrics", "127.0.0.1:0", checkpoint=checkpoint)
    watcher = start(cmd, err)
    try:
        address = metrics_address(err)
        wait_for(lambda: len(data_lines(out / "all.log")) == 100, what="the first rows")
        assert metric(address, "zeek_ml_watch_healthy") == 1
        filler = fill(out, leave=6000)  # room for part of a batch: a line is cut short, then finished
        for i in range(0, len(second), 100):
            append(live, second[i : i + 100])
        wait_for(lambda: FULL in text(err), what="the disk_full line")
        wait_for(lambda: metric(address, "zeek_ml_watch_disk_full") == 1, what="the disk_full gauge")
        assert metric(address, "zeek_ml_watch_healthy") == 0
        assert metric(address, "zeek_ml_watch_unwritten_bytes") > 0
        saved = json.loads(checkpoint.read_text())
        assert saved["input"]["current"]["line"] - len(HEADER) <= len(data_lines(out / "all.log"))
        filler.unlink()
        wait_for(lambda: len(data_lines(out / "all.log")) == 1600, what="the rows once space is freed")
        wait_for(lambda: metric(address, "zeek_ml_watch_disk_full") == 0, what="the gauge back to 0")
        assert metric(address, "zeek_ml_watch_healthy") == 1
        assert metric(address, "zeek_ml_watch_disk_full_episodes_total") == 1
        assert "info: disk_ok:" in text(err)
        # Full again, and killed while it is: the restart picks up from the last checkpoint.
        filler = fill(out)
        append(live, third)
        wait_for(lambda: text(err).count(FULL) >= 2, what="the second disk_full line")
    finally:
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()
    filler.unlink()
    res = run(watch_cmd(logs, out, "--exit-when-idle", "1", checkpoint=checkpoint))
    assert res.returncode == 0, res.stderr
    assert uids_in(out / "all.log") == uids_of(first + second + third)
    no_traceback(text(err), res.stderr)


def test_disk_full_from_the_start_while_zeek_rotates(small_tmpfs: Path, tmp_path: Path) -> None:
    """Outputs and checkpoint on a full tmpfs before the first start: the watcher holds the live
    file, Zeek rotates it twice, space comes back: every row once, and SIGTERM exits 0."""
    logs, out = tmp_path / "logs", small_tmpfs
    logs.mkdir()
    err = tmp_path / "watch.err"
    live = logs / "conn.log"
    a, b, c = rows("a", 300), rows("b", 300, 300), rows("c", 300, 600)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    filler = fill(out)
    watcher = start(watch_cmd(logs, out, "--metrics", "127.0.0.1:0"), err)
    try:
        address = metrics_address(err)
        wait_for(lambda: FULL in text(err), what="the disk_full line")
        assert metric(address, "zeek_ml_watch_disk_full") == 1
        rotate(logs, "2015-03-30-14-50-00")
        live.write_bytes(header("2015-03-30-14-50-01") + b"".join(b))
        rotate(logs, "2015-03-30-14-55-00", queue=True)
        live.write_bytes(header("2015-03-30-14-55-01") + b"".join(c))
        filler.unlink()
        wait_for(lambda: len(data_lines(out / "all.log")) == 900, what="every row once space is freed")
        assert metric(address, "zeek_ml_watch_disk_full") == 0
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0, text(err)
    assert uids_in(out / "all.log") == uids_of(a + b + c)
    no_traceback(text(err))


def test_output_deleted_to_free_space_while_full(small_tmpfs: Path, tmp_path: Path) -> None:
    """The operator's reflex on a full disk: delete the big output. The watcher starts a fresh
    file with a header; a line it had begun in the deleted file is written again, whole."""
    logs, out = tmp_path / "logs", small_tmpfs
    logs.mkdir()
    err = tmp_path / "watch.err"
    live = logs / "conn.log"
    a, b = rows("a", 100), rows("b", 1500, 100)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    watcher = start(watch_cmd(logs, out, checkpoint=tmp_path / "checkpoint.json"), err)
    try:
        wait_for(lambda: len(data_lines(out / "all.log")) == 100, what="the first rows")
        filler = fill(out, leave=6000)  # room for part of the batch: a line is cut short
        append(live, b)
        wait_for(lambda: FULL in text(err), what="the disk_full line")
        assert not (out / "all.log").read_bytes().endswith(b"\n")
        os.unlink(out / "all.log")
        filler.unlink()
        wait_for(lambda: uids_in(out / "all.log")[-1:] == uids_of(b[-1:]), what="the last row in a fresh all.log")
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0, text(err)
    assert (out / "all.log").read_bytes().startswith(b"#separator \\x09\n")
    got = uids_in(out / "all.log")  # parses whole: no torn line at its start
    assert got == uids_of(a + b)[-len(got) :]
    assert "warning: output_deleted:" in text(err) and "info: disk_ok:" in text(err)


def test_stopped_while_the_disk_is_full_exits_2_without_a_checkpoint(small_tmpfs: Path, tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", small_tmpfs
    logs.mkdir()
    err, checkpoint = tmp_path / "watch.err", tmp_path / "checkpoint.json"
    live = logs / "conn.log"
    a, b = rows("a", 200), rows("b", 1500, 200)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    watcher = start(watch_cmd(logs, out, checkpoint=checkpoint), err)
    try:
        wait_for(lambda: len(data_lines(out / "all.log")) == 200, what="the first rows")
        wait_for(lambda: checkpoint.exists() and json.loads(checkpoint.read_text())["counts"]["scored"] == 200)
        filler = fill(out)
        append(live, b)
        wait_for(lambda: FULL in text(err), what="the disk_full line")
        before = checkpoint.read_bytes()
    finally:
        watcher.send_signal(signal.SIGTERM)
        code = watcher.wait(timeout=30)
    assert code == 2, text(err)
    assert checkpoint.read_bytes() == before  # nothing recorded on the way down
    last = text(err).strip().splitlines()[-1]
    assert last.startswith("zeek-ml: error:") and "restart scores those lines again" in last
    filler.unlink()
    res = run(watch_cmd(logs, out, "--exit-when-idle", "1", checkpoint=checkpoint))
    assert res.returncode == 0, res.stderr
    assert uids_in(out / "all.log") == uids_of(a + b)


# --------------------------------------------------------------------------- outputs moved or deleted under it


def test_outputs_moved_or_deleted_under_it_are_started_afresh(tmp_path: Path) -> None:
    """logrotate without SIGHUP, then an rm by hand: a new file with a header each time, every
    row once across the files, and the moved file closed with #close."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    err = out / "watch.err"
    live = logs / "conn.log"
    a, b, c = rows("a", 100), rows("b", 100, 100), rows("c", 100, 200)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    watcher = start(watch_cmd(logs, out), err)
    try:
        wait_for(lambda: len(data_lines(out / "all.log")) == 100, what="the first rows")
        os.rename(out / "all.log", out / "all.log.1")  # logrotate, no postrotate HUP
        append(live, b)
        wait_for(lambda: len(data_lines(out / "all.log")) == 100, what="a new all.log")
        assert (out / "all.log").read_bytes().startswith(b"#separator \\x09\n")
        assert (out / "all.log.1").read_bytes().rstrip(b"\n").split(b"\n")[-1].startswith(b"#close")
        os.unlink(out / "all.log")  # by hand
        append(live, c)
        wait_for(lambda: (out / "all.log").exists() and len(data_lines(out / "all.log")) == 100, what="all.log again")
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0, text(err)
    assert uids_in(out / "all.log.1") == uids_of(a)
    assert uids_in(out / "all.log") == uids_of(c)
    assert "warning: output_moved:" in text(err) and "warning: output_deleted:" in text(err)


def test_output_truncated_in_place_gets_its_header_again(tmp_path: Path) -> None:
    """logrotate's copytruncate (copy, then truncate the file we hold open): the file starts
    again with a header, the rows after it are in it, the copy has the rows before."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    err = out / "watch.err"
    live = logs / "conn.log"
    a, b = rows("a", 100), rows("b", 100, 100)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    watcher = start(watch_cmd(logs, out), err)
    try:
        wait_for(lambda: len(data_lines(out / "all.log")) == 100, what="the first rows")
        shutil.copy(out / "all.log", out / "all.log.1")
        os.truncate(out / "all.log", 0)
        append(live, b)
        wait_for(lambda: len(data_lines(out / "all.log")) == 100, what="rows in the truncated file")
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0, text(err)
    assert (out / "all.log").read_bytes().startswith(b"#separator \\x09\n")
    assert uids_in(out / "all.log.1") == uids_of(a)
    assert uids_in(out / "all.log") == uids_of(b)
    assert "warning: output_truncated:" in text(err)


@pytest.mark.parametrize("crash", ["output_switched:1", "batch_written:2"])
def test_killed_after_an_output_was_moved_under_it(tmp_path: Path, crash: str) -> None:
    """Killed as the moved output is replaced (or just after the batch went to the new file),
    before a checkpoint names the new file: the restart finds the moved one by its inode, no
    row is written twice across the two."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    err = out / "watch.err"
    live = logs / "conn.log"
    a, b, c = rows("a", 100), rows("b", 100, 100), rows("c", 100, 200)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    opts = ("--checkpoint-interval", "30")
    watcher = start(watch_cmd(logs, out, *opts), err, crash=crash)
    try:
        wait_for(lambda: len(data_lines(out / "all.log")) == 100, what="the first rows")
        os.rename(out / "all.log", out / "all.log.1")
        append(live, b)
        assert watcher.wait(timeout=60) == -signal.SIGKILL
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    append(live, c)
    res = run(watch_cmd(logs, out, *opts, "--exit-when-idle", "1"))
    assert res.returncode == 0, res.stderr
    assert uids_in(out / "all.log.1", out / "all.log") == uids_of(a + b + c)


def test_output_rotated_while_down_after_a_kill_is_not_written_again(tmp_path: Path) -> None:
    """Killed with rows written and no checkpoint naming them; logrotate moves the output while
    the watcher is down: the restart finds those rows in the moved file and does not repeat them."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    live = logs / "conn.log"
    a, b = rows("a", 300), rows("b", 300, 300)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    opts = ("--checkpoint-interval", "30")
    res = run(watch_cmd(logs, out, *opts), crash="batch_written:1")
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert len(data_lines(out / "all.log")) == 300
    os.rename(out / "all.log", out / "all.log.1")
    append(live, b)
    res = run(watch_cmd(logs, out, *opts, "--exit-when-idle", "1"))
    assert res.returncode == 0, res.stderr
    assert uids_in(out / "all.log.1") == uids_of(a)
    assert uids_in(out / "all.log") == uids_of(b)


# --------------------------------------------------------------------------- damaged inputs and state


def test_a_corrupt_gzip_in_the_archive_is_read_up_to_the_damage(tmp_path: Path) -> None:
    """A file rotated and gzipped while the watcher was down, cut short: its readable rows are
    scored, the break is reported with its offset, the files after it are read."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    live = logs / "conn.log"
    a, b, c = rows("a", 50), rows("b", 1500, 50), rows("c", 50, 1550)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    res = run(watch_cmd(logs, out, "--exit-when-idle", "1"))
    assert res.returncode == 0, res.stderr
    append(live, b)
    rotated = rotate(logs, "2015-03-30-14-50-00")
    packed = gzip.compress(rotated.read_bytes())
    (logs / (rotated.name + ".gz")).write_bytes(packed[: len(packed) // 2])  # truncated archive
    rotated.unlink()
    live.write_bytes(header("2015-03-30-14-50-01") + b"".join(c))
    res = run(watch_cmd(logs, out, "--exit-when-idle", "1"))
    assert res.returncode == 0, res.stderr
    no_traceback(res.stderr)
    assert "file_corrupt" in res.stderr and "breaks off after" in res.stderr
    got = uids_in(out / "all.log")
    assert len(set(got)) == len(got)
    assert got[:50] == uids_of(a) and got[-50:] == uids_of(c)
    assert 50 + 100 < len(got) < 50 + 1500 + 50  # part of the damaged file, not all of it


def test_a_checkpoint_that_is_not_json_is_one_line_exit_2(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    (logs / "conn.log").write_bytes(header("2015-03-30-14-45-02") + b"".join(rows("a", 10)))
    (out / "notice.log.checkpoint.json").write_bytes(b'{"version": 1, "inp')
    res = run(watch_cmd(logs, out, "--exit-when-idle", "1"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("zeek-ml: error:")
    assert "not a checkpoint" in res.stderr
    no_traceback(res.stderr)


def test_json_lines_never_go_into_a_tsv_log_left_by_an_earlier_run(tmp_path: Path) -> None:
    """The sensor switched to JSON: the TSV notice log of the earlier run is moved aside, not appended to."""
    from zeek_ml.services.durable import AppendLog

    path = tmp_path / "notice.log"
    tsv = (SAMPLE_LOGS / "ssh_sshguess.conn.log").read_bytes()
    path.write_bytes(tsv)
    out = AppendLog(str(path))  # JSON lines: no header
    assert out.moved_aside is not None and Path(out.moved_aside).read_bytes() == tsv
    out.write(b'{"ts":1.0}\n')
    out.drain()
    out.close()
    assert path.read_bytes() == b'{"ts":1.0}\n'
    again = AppendLog(str(path))  # our own JSON lines are kept and appended to
    assert again.moved_aside is None
    again.write(b'{"ts":2.0}\n')
    again.drain()
    again.close()
    assert path.read_bytes() == b'{"ts":1.0}\n{"ts":2.0}\n'


@pytest.mark.parametrize("name", ["conn.log", "conn.notice.log", "log-queue/conn.zeek-ml.log"])
def test_an_output_the_watcher_would_read_back_is_refused(tmp_path: Path, name: str) -> None:
    """``-o`` naming the live log (it used to move Zeek's log aside and follow its own notices) or a name the
    follower takes for a rotated conn log: one line, exit 2, Zeek's log untouched."""
    logs = tmp_path / "logs"
    (logs / "log-queue").mkdir(parents=True)
    live = logs / "conn.log"
    shutil.copy(SAMPLE_LOGS / "ssh_sshguess.conn.log", live)
    before = live.read_bytes()
    res = run_cli("watch", str(live), "-o", str(logs / name), "--exit-when-idle", "1", timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "would read its own output" in res.stderr and name in res.stderr
    assert live.read_bytes() == before
    assert sorted(p.name for p in logs.iterdir()) == ["conn.log", "log-queue"]
    assert not any((logs / "log-queue").iterdir())


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_line_without_end_is_rejected_and_skipped_without_being_held(tmp_path: Path) -> None:
    """96 MiB with no newline in the live log (a corrupt write): one rejected line, memory stays flat (the
    watcher held the whole line, copied at every read, before), and the rows after it are scored."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    err = out / "watch.err"
    live = logs / "conn.log"
    a, b = rows("a", 5), rows("b", 5, 5)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(a))
    watcher = start(watch_cmd(logs, out, "--rejects", str(out / "rejects.json")), err)
    try:
        wait_for(lambda: uids_in(out / "all.log") == uids_of(a), what="the first rows")
        before = _peak_rss_mib(watcher.pid)  # model, host context and its compiled loop loaded
        with open(live, "ab") as f:
            for _ in range(96):
                f.write(b"A" * (1 << 20))
        append(live, [b"\n", *b])
        wait_for(lambda: uids_in(out / "all.log") == uids_of(a + b), what="the rows after it")
        peak = _peak_rss_mib(watcher.pid)
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=60) == 0, text(err)
    rejects = [json.loads(line) for line in (out / "rejects.json").read_text().splitlines()]
    assert len(rejects) == 1 and rejects[0]["line"] == 8 + 5 + 1  # 8 header lines, 5 rows, then it
    assert len(rejects[0]["raw"]) <= 200
    # the line alone is 96 MiB; holding it (and copying it at every read, as before) grew far more
    assert peak - before < 48, f"peak RSS {before:.0f} -> {peak:.0f} MiB"


def test_small_writes_are_gathered_into_few_batches_and_scored_once(tmp_path: Path) -> None:
    """``--gather``: ten small writes 20 ms apart at the live end are scored in one or two batches
    (each batch has a fixed cost), every row exactly once; a restart finds nothing left to do."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    err, checkpoint = tmp_path / "watch.err", tmp_path / "checkpoint.json"
    live = logs / "conn.log"
    first = rows("g", 20)
    live.write_bytes(header("2015-03-30-14-45-02") + b"".join(first))
    cmd = watch_cmd(logs, out, "--gather", "3", "--checkpoint-interval", "0", checkpoint=checkpoint)
    watcher = start(cmd, err)
    try:
        wait_for(lambda: checkpoint.exists() and json.loads(checkpoint.read_text())["counts"]["scored"] == 20)
        batches_before = json.loads(checkpoint.read_text())["counts"]["batches"]
        more = rows("h", 100, 20)
        for i in range(0, 100, 10):
            append(live, more[i : i + 10])
            time.sleep(0.02)  # the writer's pace (Zeek flushing its log buffer), not a wait for the watcher
        wait_for(lambda: json.loads(checkpoint.read_text())["counts"]["scored"] == 120, what="the gathered rows")
        counts = json.loads(checkpoint.read_text())["counts"]
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0, text(err)
    assert counts["batches"] - batches_before <= 2, counts
    assert uids_in(out / "all.log") == uids_of(first + more)
    again = run([*cmd, "--exit-when-idle", "1"])
    assert again.returncode == 0, again.stderr
    assert uids_in(out / "all.log") == uids_of(first + more)


def test_host_tables_go_beside_the_checkpoint_as_arrays_and_an_old_checkpoint_still_resumes(tmp_path: Path) -> None:
    """The checkpoint names one arrays file (the host tables; older ones removed) and stays small; a
    version 1 checkpoint, which held the tables as JSON, resumes where it stopped; an arrays file that
    is not the one recorded stops the watcher with one line, exit 2."""
    import numpy as np

    from zeek_ml.features.conn import CONTEXT_SPEC, compute_features
    from zeek_ml.features.context import HostContext
    from zeek_ml.sources.frame import conn_frame

    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    live, ckpt = logs / "conn.log", out / "notice.log.checkpoint.json"
    append(live, [header("2015-03-30-14-45-02"), *rows("a", 300)])
    res = run(watch_cmd(logs, out, "--exit-when-idle", "1"))
    assert res.returncode == 0, res.stderr
    saved = json.loads(ckpt.read_text())
    assert saved["version"] == 2 and set(saved["scorer"]) == {"meta", "arrays"}
    arrays = sorted(p.name for p in out.glob("notice.log.checkpoint.json.arrays-*.npz"))
    assert arrays == [saved["scorer"]["arrays"]["file"]]
    assert ckpt.stat().st_size < 20_000  # the hosts are in the arrays file
    # the same checkpoint as version 1 wrote it: the host context's state() in the JSON
    with np.load(out / arrays[0], allow_pickle=False) as z:
        ctx = HostContext()
        ctx.restore_snapshot(saved["scorer"]["meta"], {k: z[k] for k in z.files})
    assert len(ctx.state()["orig"]) > 5
    ckpt.write_text(json.dumps({**saved, "version": 1, "scorer": ctx.state()}))
    (out / arrays[0]).unlink()
    append(live, rows("b", 200))
    res = run(watch_cmd(logs, out, "--exit-when-idle", "1"))
    assert res.returncode == 0, res.stderr
    assert uids_in(out / "all.log") == [f"Ca{i}" for i in range(300)] + [f"Cb{i}" for i in range(200)]
    saved = json.loads(ckpt.read_text())
    again = list(out.glob("notice.log.checkpoint.json.arrays-*.npz"))
    assert saved["version"] == 2 and [p.name for p in again] == [saved["scorer"]["arrays"]["file"]]
    # the context went on from the version 1 state: it is what one pass over all 500 rows leaves
    with np.load(again[0], allow_pickle=False) as z:
        resumed = HostContext()
        resumed.restore_snapshot(saved["scorer"]["meta"], {k: z[k] for k in z.files})
    whole = HostContext()
    compute_features(conn_frame(read_frames([str(live)])), CONTEXT_SPEC, whole)
    assert resumed.state() == whole.state()
    data = bytearray(again[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    again[0].write_bytes(bytes(data))
    res = run(watch_cmd(logs, out, "--exit-when-idle", "1"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("zeek-ml: error:") and "sha256 differs" in res.stderr
    no_traceback(res.stderr)
