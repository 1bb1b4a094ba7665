"""A live Zeek 8 and ``zeek-ml broker`` over real Broker (skipped where ``zeek`` is not on PATH).

Zeek sniffs the loopback interface with the zeek-ml package in BROKER mode; it peers with
``zeek-ml broker`` (the CLI, using the Broker bindings that ship with that Zeek), publishes every
finished connection, gets the verdicts back and raises them as notices in its own notice.log. The
traffic is real: a TCP connect scan of closed ports on 127.0.0.9, made by this test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, need
from tests.zeek_route import PACKAGE

HARNESS = """
redef ZeekML::transport = ZeekML::BROKER;
redef ZeekML::broker_port = {port}/tcp;
redef ZeekML::broker_retry = 1sec;

function say(line: string)
	{{
	local f = open_for_append("events.txt");
	print f, line;
	close(f);
	}}

event Broker::peer_added(endpoint: Broker::EndpointInfo, msg: string)
	{{
	say("peered");
	}}

event Notice::log_notice(rec: Notice::Info)
	{{
	if ( rec$note == ZeekML::Suspicious_Connection )
		say(fmt("notice %s %s %s", rec$uid, rec$zeek_ml$score, rec$zeek_ml?$family ? rec$zeek_ml$family : "-"));
	}}
"""

SCANNED = "127.0.0.9"
THRESHOLD: tuple[str, ...] = ()
"""The shipped model's own threshold: the scan has to be a detection, not a threshold-0 echo."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check: Callable[[], bool], procs: list[subprocess.Popen], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[0]} exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.1)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def connect_scan(host: str, ports: range) -> None:
    """What ``nmap -sT`` does: a full TCP connect to each port (closed ones answer RST)."""
    for port in ports:
        with socket.socket() as s:
            s.settimeout(1.0)
            with contextlib.suppress(OSError):
                s.connect((host, port))


def test_live_zeek_peers_with_zeek_ml_broker_and_raises_its_verdicts(zeek: str, tmp_path: Path) -> None:
    need(os.geteuid() == 0, "capturing on the loopback interface needs root (CAP_NET_RAW)")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    service_log = tmp_path / "broker.stderr"
    service = subprocess.Popen(
        [sys.executable, "-m", "zeek_ml", "broker", "--listen", f"127.0.0.1:{port}", *THRESHOLD, "--max-wait", "0.2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=service_log.open("wb"),
    )
    (tmp_path / "harness.zeek").write_text(HARNESS.format(port=port))
    events = tmp_path / "events.txt"
    zeek_proc: subprocess.Popen | None = None
    try:
        wait_until("zeek-ml broker start", lambda: ": started" in service_log.read_text(), [service])
        zeek_proc = subprocess.Popen(
            [zeek, "-C", "-i", "lo", "-f", f"not port {port}", str(PACKAGE), "harness.zeek"],
            cwd=tmp_path,
            stdout=(tmp_path / "zeek.stdout").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_until("Broker peering", lambda: "peered" in lines(events), [service, zeek_proc])
        connect_scan(SCANNED, range(31000, 31040))
        wait_until("a ZeekML notice", lambda: any(ln.startswith("notice ") for ln in lines(events)), [zeek_proc])
    finally:
        for proc in (zeek_proc, service):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    status = service_log.read_text()
    assert service.returncode == 0, status
    stopped = next(ln for ln in reversed(status.splitlines()) if ": stopped" in ln)
    counts = dict(part.split("=") for part in stopped[stopped.index("(") + 1 : -1].split())
    assert int(counts["received"]) >= 40
    conn = [ln.split("\t") for ln in lines(tmp_path / "conn.log") if not ln.startswith("#")]
    scan_uids = {row[1] for row in conn if row[4] == SCANNED and row[11] == "REJ"}
    assert len(scan_uids) == 40
    # The model flags the scan (all but its very first connection, which has no history yet); the
    # verdicts come back over Broker and Zeek raises them, one notice per originator and interval.
    assert int(counts["verdicts"]) >= 30 and int(counts["published"]) > int(counts["verdicts"])
    noticed = [ln.split() for ln in lines(events) if ln.startswith("notice ")]
    assert noticed and noticed[0][1] in scan_uids and float(noticed[0][2]) >= 0.99
    notice_log = [ln for ln in lines(tmp_path / "notice.log") if "ZeekML::Suspicious_Connection" in ln]
    assert notice_log and noticed[0][1] in notice_log[0]
