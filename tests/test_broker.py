"""``zeek-ml broker`` with real Broker endpoints on 127.0.0.1: round trip, restarts on either side, overload.

The test endpoint publishes ``ZeekML::conn_finished`` events built by
:func:`zeek_ml.sinks.broker.conn_records` from :data:`zeek_ml.formats.records.CONN_FIELDS`,
the definition ``tests/test_zeek_scripts.py`` checks ``main.zeek`` against, so
the events have exactly the shape the Zeek package sends.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import ROOT, SAMPLE_LOGS
from zeek_ml.formats.records import (
    ACK_EVENT,
    ACK_TOPIC,
    CONN_EVENT,
    CONN_TOPIC,
    VERDICT_EVENT,
    VERDICT_FIELDS,
    VERDICT_TOPIC,
)

MALICIOUS = SAMPLE_LOGS / "001-zeek-scenario-malicious.labeled-conn.log.gz"


@pytest.fixture(scope="module")
def conns() -> pd.DataFrame:
    from zeek_ml.sources.files import iter_batches

    frame = pd.concat(list(iter_batches([str(MALICIOUS)])), ignore_index=True)
    assert len(frame) > 900 and frame["uid"].is_unique
    return frame


@pytest.fixture(scope="module")
def offline_scores(conns: pd.DataFrame) -> dict[str, float]:
    """What ``zeek-ml score`` computes for the same connections in the same (log) order: the oracle."""
    return score_offline(conns)


def score_offline(frame: pd.DataFrame) -> dict[str, float]:
    """One Scorer over ``frame`` in its row order, as ``zeek-ml score`` does (the model is stateful)."""
    from zeek_ml.cli import _load
    from zeek_ml.model.scorer import Scorer

    scores = Scorer(_load(None), 0.0)(frame.reset_index(drop=True)).scores
    return dict(zip(frame["uid"], scores.astype(float)))


def differing(a: dict[str, float], b: dict[str, float]) -> list[str]:
    return [u for u in a if abs(a[u] - b[u]) > 1e-6]


@pytest.fixture(scope="module")
def isolated_scores(conns: pd.DataFrame) -> dict[str, float]:
    """Each connection scored with an empty context: what a scorer without memory would say."""
    from zeek_ml.cli import _load
    from zeek_ml.model.scorer import Scorer

    model = _load(None)
    out = {}
    for i in range(len(conns)):
        out.update(zip(conns["uid"].iloc[i : i + 1], Scorer(model, 0.0)(conns.iloc[i : i + 1]).scores.astype(float)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``zeek-ml broker`` as a real subprocess; its stderr goes to a file we can read while it runs."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None):
        self.log = tmp / f"broker-{time.monotonic_ns()}.stderr"
        env = {**os.environ, **(env or {})}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zeek_ml", "broker", "--status-interval", "3600", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "wb"),  # noqa: SIM115
        )
        self.wait_for("started")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, word: str, timeout: float = 60) -> str:
        """Wait for the log event ``word`` (``zeek-ml broker: info: word``), or a regex given as ``re:...``."""
        deadline = time.monotonic() + timeout
        pattern = re.compile(word[3:]) if word.startswith("re:") else None
        while time.monotonic() < deadline:
            text = self.text()
            if pattern.search(text) if pattern else f": {word}" in text:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"zeek-ml broker exited {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        raise AssertionError(f"no {word!r} from zeek-ml broker within {timeout} s:\n{self.text()}")

    def stop(self) -> dict[str, int]:
        """SIGTERM, wait, and return the counters of its ``stopped`` line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        text = self.text()
        assert self.proc.returncode == 0, text
        line = [ln for ln in text.splitlines() if ": stopped" in ln][-1]
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


class Zeekish:
    """A real Broker endpoint standing in for Zeek: publishes conn events, collects verdicts and acks."""

    def __init__(self, broker: Any, listen_port: int | None = None):
        self.b = broker
        self.endpoint = broker.Endpoint()
        self.verdict_sub = self.endpoint.make_subscriber(VERDICT_TOPIC, 100_000)
        self.ack_sub = self.endpoint.make_subscriber(ACK_TOPIC, 100_000)
        self.verdicts: list[dict[str, Any]] = []
        self.acked: list[str] = []
        if listen_port is not None:
            # Broker 2.x releases a shut-down endpoint's listening socket asynchronously: wait for it.
            deadline = time.monotonic() + 30
            while self.endpoint.listen("127.0.0.1", listen_port) != listen_port:
                assert time.monotonic() < deadline, f"cannot listen on 127.0.0.1:{listen_port}"
                time.sleep(0.1)

    def peer(self, port: int) -> None:
        self.endpoint.peer_nosync("127.0.0.1", port, 1.0)
        self.wait_peered()

    def wait_peered(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.status == self.b.PeerStatus.Peered for p in self.endpoint.peers()):
                time.sleep(0.3)  # let subscriptions settle
                return
            time.sleep(0.05)
        raise AssertionError("no peering with zeek-ml broker")

    def publish(self, records: list[tuple[Any, ...]]) -> None:
        for record in records:
            self.endpoint.publish(CONN_TOPIC, self.b.zeek.Event(CONN_EVENT, record))

    def collect(
        self, until: set[str] | None = None, timeout: float = 30, quiet: float = 0.0, verdicts: bool = False
    ) -> None:
        """Gather verdicts and acks until every uid in ``until`` is acked (or ``quiet`` seconds pass with none).

        ``verdicts``: every uid in ``until`` also has its verdict (threshold 0). Broker 2.x hands each
        subscriber its messages on its own, so an ack can reach us before the verdicts sent ahead of it.
        """
        wanted = set(until) if verdicts and until is not None else set()
        from zeek_ml.sources.broker import verdict_dicts

        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            got = False
            for _topic, data in self.verdict_sub.poll():
                event = self.b.zeek.Event(data)
                assert event.name() == VERDICT_EVENT
                self.verdicts.extend(verdict_dicts(event.args()))
                got = True
            for _topic, data in self.ack_sub.poll():
                event = self.b.zeek.Event(data)
                assert event.name() == ACK_EVENT
                self.acked.extend(event.args()[0])
                got = True
            if got:
                last = time.monotonic()
            if until is not None and until <= set(self.acked) and wanted <= {v["uid"] for v in self.verdicts}:
                # acks follow their verdicts on the same path; drain what is already here
                time.sleep(0.2)
                until = None
                continue
            if until is None and time.monotonic() - last >= quiet:
                return
            time.sleep(0.05)
        if until is not None:
            raise AssertionError(f"{len(until - set(self.acked))} of {len(until)} connections never acknowledged")

    def close(self) -> None:
        self.endpoint.shutdown()
        # Broker 2.x keeps the listening socket until the endpoint object is gone.
        del self.verdict_sub, self.ack_sub, self.endpoint
        gc.collect()


@contextlib.contextmanager
def sender_process(port: int, count: int) -> Iterator[subprocess.Popen[str]]:
    """``tests/broker_sender.py``: a peer that listens, sends ``count`` connections, and exits on request."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.broker_sender", str(port), str(count)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def go_away(proc: subprocess.Popen[str]) -> None:
    """The sender process shuts its endpoint down and exits ("Zeek" is gone, its port free)."""
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


@pytest.fixture
def records(broker: Any, conns: pd.DataFrame) -> list[tuple[Any, ...]]:
    from zeek_ml.sinks.broker import conn_records

    return conn_records(broker, conns)


@contextlib.contextmanager
def running(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Service]:
    service = Service(tmp_path, *args, env=env)
    try:
        yield service
    finally:
        if service.proc.poll() is None:
            service.kill9()


def test_round_trip_scores_match_offline(
    broker: Any,
    tmp_path: Path,
    conns: pd.DataFrame,
    records: list[tuple[Any, ...]],
    offline_scores: dict[str, float],
    isolated_scores: dict[str, float],
) -> None:
    from zeek_ml.cli import _load

    # The model is stateful: scores in context differ from scores in isolation, so matching the
    # in-order offline scores below means the service carried one context across its batches.
    assert len(differing(offline_scores, isolated_scores)) > 0.1 * len(conns)
    port = free_port()
    notice_log = tmp_path / "notice.log"
    args = ("--listen", f"127.0.0.1:{port}", "--threshold", "0", "--batch-size", "64", "-o", str(notice_log))
    with running(tmp_path, *args) as service:
        zeek = Zeekish(broker)
        zeek.peer(port)
        zeek.publish(records)
        zeek.collect(until=set(conns["uid"]), verdicts=True)
        counts = service.stop()
        zeek.close()
    assert counts["received"] == counts["scored"] == len(conns)
    assert counts["dropped"] == counts["malformed"] == 0 and counts["batches"] >= len(conns) // 64
    # Threshold 0: one verdict per connection, with the score the offline scorer gives.
    got = {v["uid"]: v for v in zeek.verdicts}
    assert len(zeek.verdicts) == len(got) == len(conns)
    assert set(zeek.acked) == set(got)
    for uid, score in offline_scores.items():
        assert got[uid]["score"] == pytest.approx(score, abs=1e-6)
    # The verdict carries the connection as the script needs it for $uid/$id.
    row = conns.iloc[0]
    v = got[row["uid"]]
    assert (v["orig_h"], v["orig_p"], v["resp_h"], v["resp_p"]) == (
        row["id.orig_h"],
        row["id.orig_p"],
        row["id.resp_h"],
        row["id.resp_p"],
    )
    assert v["ts"] == pytest.approx(row["ts"], abs=1e-6)
    assert v["threshold"] == 0.0 and v["model"] == _load(None).name
    assert f"Suspicious {row['proto']} connection {row['id.orig_h']}:{row['id.orig_p']} -> " in v["msg"]
    assert set(v) == {f.name for f in VERDICT_FIELDS}
    # The optional local notice log has the same connections.
    lines = [ln for ln in notice_log.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == len(conns)


def test_scores_follow_arrival_order(
    broker: Any, tmp_path: Path, conns: pd.DataFrame, records: list[tuple[Any, ...]], offline_scores: dict[str, float]
) -> None:
    """Sent in another order, connections get the scores offline scoring gives in that order, not log order."""
    order = list(range(len(conns)))
    random.Random(7).shuffle(order)
    shuffled = conns.iloc[order]
    expected = score_offline(shuffled)
    assert len(differing(expected, offline_scores)) > 0.1 * len(conns)  # the order matters to this model
    port = free_port()
    with running(tmp_path, "--listen", f"127.0.0.1:{port}", "--threshold", "0", "--batch-size", "37") as service:
        zeek = Zeekish(broker)
        zeek.peer(port)
        zeek.publish([records[i] for i in order])
        zeek.collect(until=set(conns["uid"]), verdicts=True)
        service.stop()
        zeek.close()
    got = {v["uid"]: v["score"] for v in zeek.verdicts}
    assert zeek.acked == [records[i][1] for i in order]  # acknowledged in arrival order
    assert differing(expected, got) == []


def test_default_threshold_sends_only_flagged(
    broker: Any, tmp_path: Path, conns: pd.DataFrame, records: list[tuple[Any, ...]], offline_scores: dict[str, float]
) -> None:
    from zeek_ml.cli import _load

    threshold = _load(None).threshold
    expected = {uid for uid, s in offline_scores.items() if s >= threshold}
    assert 0 < len(expected) < len(conns)
    port = free_port()
    with running(tmp_path, "--listen", f"127.0.0.1:{port}", "--batch-size", "100") as service:
        zeek = Zeekish(broker)
        zeek.peer(port)
        zeek.publish(records)
        zeek.collect(until=set(conns["uid"]))
        zeek.collect(until=expected, verdicts=True)  # an ack can overtake the verdicts sent before it
        counts = service.stop()
        zeek.close()
    assert {v["uid"] for v in zeek.verdicts} == expected
    assert counts["verdicts"] == len(expected) and counts["batches"] >= len(conns) // 100


def test_malformed_and_foreign_events_are_counted_not_fatal(
    broker: Any, tmp_path: Path, records: list[tuple[Any, ...]]
) -> None:
    port = free_port()
    with running(tmp_path, "--listen", f"127.0.0.1:{port}", "--threshold", "0") as service:
        zeek = Zeekish(broker)
        zeek.peer(port)
        zeek.endpoint.publish(CONN_TOPIC, broker.zeek.Event(CONN_EVENT, records[0][:5]))  # too few fields
        zeek.endpoint.publish(CONN_TOPIC, broker.zeek.Event("Other::event", 1))
        zeek.publish(records[1:3])
        zeek.collect(until={records[1][1], records[2][1]})
        counts = service.stop()
        zeek.close()
    assert counts["malformed"] == 1 and counts["other_events"] == 1
    assert counts["scored"] == 2 and {v["uid"] for v in zeek.verdicts} == {records[1][1], records[2][1]}


def test_kill9_and_restart_loses_nothing_acknowledged(
    broker: Any, tmp_path: Path, conns: pd.DataFrame, records: list[tuple[Any, ...]], offline_scores: dict[str, float]
) -> None:
    """kill -9 mid-stream: whatever was acknowledged kept its verdict; the rest is resent and scored after the
    restart with the context restored from the state file, so every score equals the offline one."""
    port = free_port()
    state = tmp_path / "broker-state.json"
    args = ("--listen", f"127.0.0.1:{port}", "--threshold", "0", "--batch-size", "50", "--max-wait", "0.2")
    args += ("--state", str(state))  # the other restart test names it through ZEEK_ML_BROKER_STATE
    env: dict[str, str] = {}
    zeek = Zeekish(broker)
    half = len(records) // 2
    with running(tmp_path, *args, env=env) as first:
        zeek.peer(port)
        zeek.publish(records[:half])
        zeek.collect(until={r[1] for r in records[:100]})  # some, not necessarily all, acknowledged
        zeek.publish(records[half : half + 200])  # in flight when it dies
        first.kill9()
    zeek.collect(quiet=0.5)
    acked_before = set(zeek.acked)
    verdicts_before = {v["uid"] for v in zeek.verdicts}
    assert 100 <= len(acked_before) < half + 200
    # Acknowledged means its verdict arrived first (threshold 0: every connection has one).
    assert acked_before <= verdicts_before
    saved = json.loads(state.read_text())
    assert saved["context"] and acked_before <= {uid for uid, _ in saved["recent"]}
    arrays = [p.name for p in tmp_path.glob("broker-state.json.arrays-*.npz")]
    assert saved["context"]["arrays"]["file"] in arrays and len(arrays) <= 2  # killed mid-save: one left over
    with running(tmp_path, *args, env=env) as second:
        assert "state_restored" in second.text()
        zeek.wait_peered()  # Broker re-peers by itself
        unacked = [r for r in records if r[1] not in acked_before]
        zeek.publish(unacked)  # the sender's part: resend what was never acknowledged
        zeek.collect(until=set(conns["uid"]), verdicts=True)  # acks can overtake verdicts (Broker 2.x)
        counts = second.stop()
    zeek.close()
    final = json.loads(state.read_text())["context"]["arrays"]["file"]
    assert [p.name for p in tmp_path.glob("broker-state.json.arrays-*.npz")] == [final]  # the next save tidied up
    # Resent connections scored before the kill are answered from the state file, not scored twice.
    assert counts["scored"] + counts["replayed"] == len(unacked) and counts["dropped"] == 0
    assert counts["scored"] >= len(records) - half - 200
    got: dict[str, float] = {}
    for v in zeek.verdicts:
        got.setdefault(v["uid"], v["score"])
    assert set(got) == set(conns["uid"])  # nothing lost
    # With the context restored, every score equals the offline one, before and after the kill.
    assert differing(offline_scores, got) == []
    # Not vacuous: a restart with an empty context would have scored the rest differently.
    rest = conns[conns["uid"].isin({r[1] for r in records[half + 200 :]})]
    assert len(differing(score_offline(rest), {u: offline_scores[u] for u in rest["uid"]})) > 0


def test_kill9_with_verdicts_unsent_answers_the_resend_from_the_state(
    broker: Any, tmp_path: Path, conns: pd.DataFrame, records: list[tuple[Any, ...]], offline_scores: dict[str, float]
) -> None:
    """Scored, verdicts held for a peer that is gone, then kill -9: the sender resends them after the restart.
    They are answered from the state file (not fed to the context a second time), and what follows is
    scored with the restored context: every score equals the offline one."""
    port = free_port()
    state = tmp_path / "broker-state.json"
    env = {"ZEEK_ML_BROKER_STATE": str(state)}
    # zeek-ml holds a partial batch up to --max-wait: long enough for the peer to be gone first
    args = ("--peer", f"127.0.0.1:{port}", "--retry", "1", "--threshold", "0", "--max-wait", "8")
    status = ("--status-interval", "0.2")
    with sender_process(port, 300) as first_zeek, running(tmp_path, *args, *status, env=env) as service:
        assert first_zeek.stdout is not None and first_zeek.stdout.readline().strip() == "sent"
        service.wait_for(r"re:received=300 .*verdicts=0 ")  # all in, none scored yet (--max-wait)
        go_away(first_zeek)  # "Zeek" goes away before any verdict
        service.wait_for("peer_lost", timeout=30)
        service.wait_for(r"re:received=300 .*scored=300 .*outbox=301\)")  # scored; verdicts held
        deadline = time.monotonic() + 30
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        service.kill9()  # its 300 verdicts die in the outbox; the state file has them
    zeek = Zeekish(broker, listen_port=port)
    with running(tmp_path, *args, env=env) as service:
        zeek.wait_peered()
        zeek.publish(records[:600])  # the sender resends what was never acknowledged, then goes on
        zeek.collect(until={r[1] for r in records[:600]}, verdicts=True)
        counts = service.stop()
        zeek.close()
    assert counts["replayed"] == 300 and counts["scored"] == 300
    got = {v["uid"]: v["score"] for v in zeek.verdicts}
    assert len(zeek.verdicts) == len(got) == 600
    assert differing(got, offline_scores) == []
    # Not vacuous: counting the resent 300 into the context twice would have changed what follows.
    twice = score_offline(pd.concat([conns.iloc[:300], conns.iloc[:600]]))
    assert differing({r[1]: got[r[1]] for r in records[300:600]}, twice) != []


def test_peer_restart_verdicts_wait_for_the_peer(
    broker: Any, tmp_path: Path, records: list[tuple[Any, ...]], offline_scores: dict[str, float]
) -> None:
    """zeek-ml dials Zeek; Zeek goes away after sending; the verdicts are delivered when it is back."""
    port = free_port()
    batch = records[:300]
    uids = {r[1] for r in batch}
    # zeek-ml holds a partial batch up to --max-wait: long enough for the peer to be gone first
    args = ("--peer", f"127.0.0.1:{port}", "--retry", "1", "--threshold", "0", "--max-wait", "8")
    with sender_process(port, 300) as first, running(tmp_path, *args, "--status-interval", "0.2") as service:
        assert first.stdout is not None and first.stdout.readline().strip() == "sent"
        service.wait_for(r"re:received=300 .*verdicts=0 ")  # all in, none scored yet (--max-wait)
        go_away(first)  # "Zeek" goes away before any verdict
        service.wait_for("peer_lost", timeout=30)
        # scored after the peer was lost: 300 verdicts and the batch's ack held for the next peer
        service.wait_for(r"re:received=300 .*scored=300 .*outbox=301\)")
        second = Zeekish(broker, listen_port=port)  # "Zeek" is back on the same port
        second.wait_peered()
        second.collect(until=uids, verdicts=True)
        counts = service.stop()
        second.close()
    assert {v["uid"] for v in second.verdicts} == uids
    for v in second.verdicts:
        assert v["score"] == pytest.approx(offline_scores[v["uid"]], abs=1e-6)
    assert counts["received"] == 300 and counts["outbox_dropped"] == 0


def test_overload_drops_are_counted(broker: Any, tmp_path: Path, records: list[tuple[Any, ...]]) -> None:
    port = free_port()
    args = ("--listen", f"127.0.0.1:{port}", "--threshold", "0", "--queue-size", "20", "--max-wait", "5")
    with running(tmp_path, *args) as service:
        zeek = Zeekish(broker)
        zeek.peer(port)
        zeek.publish(records[:200])
        zeek.collect(until={r[1] for r in records[:20]})
        counts = service.stop()
        zeek.close()
    assert counts["received"] == 20 and counts["dropped"] == 180
    assert len(set(zeek.acked)) == 20


def test_bindings_missing_says_how_to_get_them(tmp_path: Path) -> None:
    code = (
        "import sys, zeek_ml.services.broker.bindings as b\n"
        "b.DEBIAN_DIR = '/nonexistent'\n"
        "sys.path = [p for p in sys.path if 'dist-packages' not in p]\n"
        "try:\n    b.import_broker()\nexcept b.BrokerUnavailable as e:\n    print(e)\n    sys.exit(7)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(ROOT), ZEEK_PYTHON_DIR=str(tmp_path), PATH="/usr/bin:/bin")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 7, out.stderr
    assert "ZEEK_PYTHON_DIR" in out.stdout and "python3-broker" in out.stdout and str(tmp_path) in out.stdout


def test_bindings_are_appended_after_our_packages(broker: Any) -> None:
    """The bindings' directory goes to the end of sys.path: the system's packages never shadow ours."""
    found = str(Path(broker.__file__).resolve().parent.parent)
    ours = str(Path(pd.__file__).resolve().parent.parent)
    if found != ours:
        assert sys.path.index(found) > sys.path.index(ours)


def test_cli_rejects_bad_addresses() -> None:
    from tests.conftest import run_cli

    out = run_cli("broker", "--listen", "127.0.0.1:99999")
    assert out.returncode == 2 and "bad port" in out.stderr
    out = run_cli("broker", "--listen", "127.0.0.1:1", "--peer", "127.0.0.1:2")
    assert out.returncode == 2 and "exclude each other" in out.stderr
