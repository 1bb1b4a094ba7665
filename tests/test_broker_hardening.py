"""``zeek-ml broker`` against a misbehaving peer: every value checked before the model, nothing a peer
sends can stop the service, and overload shows in its metrics.

The service runs as the real CLI (a subprocess); the peer is a real Broker endpoint on 127.0.0.1
publishing on the conn topic. The good events are real connections (the sample IoT capture); the bad
ones are those connections with one thing wrong: each kind of fault the record definition
(:data:`zeek_ml.formats.records.CONN_FIELDS`) rules out, plus messages that are not Zeek events at all.
The model is stateful, so "the good events are scored exactly as offline, in order" also proves
that no bad event reached the model.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import need, run_cli
from tests.test_broker import MALICIOUS, Zeekish, differing, free_port, running, score_offline
from zeek_ml.formats.records import CONN_EVENT, CONN_FIELDS, CONN_TOPIC
from zeek_ml.formats.schema import MAX_VALUE_CHARS

FIELD = {f.name: i for i, f in enumerate(CONN_FIELDS)}


@pytest.fixture(scope="module")
def conns() -> pd.DataFrame:
    from zeek_ml.sources.files import iter_batches

    frame = pd.concat(list(iter_batches([str(MALICIOUS)])), ignore_index=True)
    assert len(frame) > 400 and frame["uid"].is_unique
    return frame


@pytest.fixture(scope="module")
def records(broker: Any, conns: pd.DataFrame) -> list[tuple[Any, ...]]:
    from zeek_ml.sinks.broker import conn_records

    return conn_records(broker, conns)


def with_field(record: tuple[Any, ...], name: str, value: Any) -> tuple[Any, ...]:
    out = list(record)
    out[FIELD[name]] = value
    return tuple(out)


def malformed_cases(broker: Any, rec: tuple[Any, ...]) -> list[tuple[str, str, Any]]:
    """(case, the kind the service must count it as, the message to publish). ``rec`` is a valid record."""
    b = broker
    ev = b.zeek.Event
    cases: list[tuple[str, str, Any]] = [
        # not Zeek events at all
        ("a plain string", "message.not_an_event", "hello, zeek-ml"),
        ("a count", "message.not_an_event", b.Count(7)),
        ("a table", "message.not_an_event", {"uid": "C1"}),
        ("a vector that is not an event", "message.not_an_event", (1, 2, 3)),
        # events of the wrong shape
        ("no argument", "event.arity", ev(CONN_EVENT)),
        ("two arguments", "event.arity", ev(CONN_EVENT, rec, rec)),
        ("10,000 arguments", "event.arity", ev(CONN_EVENT, *([1] * 10_000))),
        ("argument not a record", "event.not_a_record", ev(CONN_EVENT, "C1")),
        ("record too short", "record.width", ev(CONN_EVENT, rec[:5])),
        ("record too long", "record.width", ev(CONN_EVENT, (*rec, None))),
        ("empty record", "record.width", ev(CONN_EVENT, ())),
    ]
    fields: list[tuple[str, str, str, Any]] = [
        ("ts as a double", "ts", "type", 1.5e9),
        ("ts as a count", "ts", "type", b.Count(1_500_000_000)),
        ("ts unset", "ts", "missing", None),
        ("ts before 1970", "ts", "range", dt.datetime(1960, 1, 1, tzinfo=dt.UTC)),
        ("uid as a count", "uid", "type", b.Count(1)),
        ("uid unset", "uid", "missing", None),
        ("uid empty", "uid", "empty", ""),
        ("orig_h as a string", "orig_h", "type", "10.0.0.1"),
        ("orig_h as a count", "orig_h", "type", b.Count(167772161)),
        ("resp_h as a subnet", "resp_h", "type", ipaddress.ip_network("10.0.0.0/8")),
        ("resp_h unset", "resp_h", "missing", None),
        ("proto unset", "proto", "missing", None),
        ("local_resp as a count", "local_resp", "type", b.Count(1)),
        ("orig_p as a count", "orig_p", "type", b.Count(80)),
        ("resp_p a udp port in a tcp connection", "resp_p", "protocol", b.Port(80, b.Port.UDP)),
        ("proto as a string", "proto", "type", "tcp"),
        ("proto an enum that is no transport_proto", "proto", "range", b.Enum("sctp")),
        ("service as a count", "service", "type", b.Count(80)),
        ("duration negative", "duration", "range", dt.timedelta(seconds=-1)),
        ("duration as a double", "duration", "type", 0.5),
        ("orig_bytes 2^63", "orig_bytes", "range", b.Count(2**63)),
        ("resp_bytes 2^64-1", "resp_bytes", "range", b.Count(2**64 - 1)),
        ("missed_bytes as a negative int", "missed_bytes", "type", -1),
        ("orig_pkts as NaN", "orig_pkts", "type", float("nan")),
        ("orig_ip_bytes as infinity", "orig_ip_bytes", "type", float("inf")),
        ("resp_pkts as a table", "resp_pkts", "type", {"a": 1}),
        ("local_orig as a string", "local_orig", "type", "T"),
        ("conn_state as a bool", "conn_state", "type", True),
        ("history as a vector", "history", "type", ("S", "h")),
        ("history nested 50 deep", "history", "type", _nested(50)),
        ("tunnel_parents a vector, not a set", "tunnel_parents", "type", ("C1", "C2")),
        ("tunnel_parents a set of ints", "tunnel_parents", "type", {1, 2}),
    ]
    if b.Version.MAJOR < 2:
        # Broker 1.4 itself: after a peer publishes an infinite double, nothing more arrives from it (between
        # two plain Broker endpoints too); zeek-ml never sees the message. Broker 2 delivers it.
        fields = [f for f in fields if "infinity" not in f[0]]
    for case, field, problem, value in fields:
        cases.append((case, f"{field}.{problem}", ev(CONN_EVENT, with_field(rec, field, value))))
    return cases


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = (value,)
    return value


def scrape(address: str) -> dict[str, float]:
    """The metrics at ``address`` as {'name{labels}': value}."""
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metrics_address(service: Any) -> str:
    text = service.wait_for("metrics")
    return re.search(r": metrics \(address=([^ )]+)\)", text).group(1)


def wait_metric(address: str, check: Any, timeout: float = 30) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(address)
        if check(m):
            return m
        assert time.monotonic() < deadline, f"metrics never satisfied the check: {m}"
        time.sleep(0.05)


def test_malformed_events_are_counted_logged_once_dropped_and_the_stream_goes_on(
    broker: Any, tmp_path: Path, conns: pd.DataFrame, records: list[tuple[Any, ...]]
) -> None:
    """35+ kinds of bad events, each sent twice, between two runs of good ones: the service stays up,
    counts each by kind (metrics and exit summary), logs the first of each kind once, and scores the
    good events after them exactly as offline scoring of the good ones alone, in order."""
    good_a, good_b = list(range(0, 60)), list(range(60, 120))
    base = next(i for i in range(300, len(records)) if conns["proto"].iloc[i] == "tcp")
    bad = malformed_cases(broker, records[base])
    kinds = {kind for _, kind, _ in bad}
    assert len(bad) >= 35 and len(kinds) >= 30
    port = free_port()
    args = ("--listen", f"127.0.0.1:{port}", "--threshold", "0", "--batch-size", "16", "--max-wait", "0.1")
    with running(tmp_path, *args, "--metrics", "127.0.0.1:0") as service:
        address = metrics_address(service)
        zeek = Zeekish(broker)
        zeek.peer(port)
        zeek.publish([records[i] for i in good_a])
        for _ in range(2):
            for _case, _kind, message in bad:
                zeek.endpoint.publish(CONN_TOPIC, message)
            zeek.endpoint.publish(CONN_TOPIC, broker.zeek.Event("Other::event", 1))
        zeek.publish([records[i] for i in good_b])
        wanted = [records[i][1] for i in good_a + good_b]
        zeek.collect(until=set(wanted), verdicts=True)
        m = wait_metric(address, lambda m: m.get("zeek_ml_broker_scored_total") == len(wanted))
        assert service.proc.poll() is None  # alive
        counts = service.stop()
        zeek.close()
    text = service.text()
    assert "Traceback" not in text
    # Counted: by kind in the metrics, in all in the exit line.
    expected = pd.Series([kind for _, kind, _ in bad]).value_counts() * 2
    for kind, n in expected.items():
        assert m[f'zeek_ml_broker_malformed_total{{kind="{kind}"}}'] == n, kind
    assert counts["malformed"] == len(bad) * 2 and counts["other_events"] == 2
    assert counts["received"] == counts["scored"] == len(wanted) and counts["dropped"] == 0
    # Logged: the first of each kind once, with its reason; the repeats summed up at exit.
    for kind in kinds | {"other_event"}:
        lines = [ln for ln in text.splitlines() if f": malformed_event (kind={kind} " in ln]
        assert len(lines) == 1, (kind, lines)
        assert "reason=" in lines[0]
    assert len([ln for ln in text.splitlines() if ": malformed_event (" in ln]) == len(kinds) + 1
    repeats = [ln for ln in text.splitlines() if ": malformed_event_repeats (" in ln]
    assert len(repeats) == 1 and "orig_bytes.range=1" in repeats[0] and "other_event=1" in repeats[0]
    assert re.search(r"orig_bytes\.range .*count 9223372036854775808 is 2\^63 or more", text)
    # Nothing of a bad event was scored or acknowledged; the good ones were, in order, as offline.
    assert zeek.acked == wanted
    assert records[base][1] not in {v["uid"] for v in zeek.verdicts}
    got = {v["uid"]: v["score"] for v in zeek.verdicts}
    expected_scores = score_offline(conns.iloc[good_a + good_b])
    assert differing(expected_scores, got) == []
    # Not vacuous: had the decodable bad records entered the context, the scores after them would differ.
    polluted = score_offline(conns.iloc[good_a + [base] * 20 + good_b])
    assert differing({u: expected_scores[u] for u in wanted[60:]}, polluted) != []


def test_huge_strings_are_capped_and_odd_bytes_replaced(
    broker: Any, tmp_path: Path, records: list[tuple[Any, ...]]
) -> None:
    """A 1 MiB history and a 100,000-member tunnel_parents set: the connection is kept and scored, its strings
    cut to the reader's cap (counted, logged once per field, memory bounded). A history that is not UTF-8 is
    kept, its odd bytes as U+FFFD as the log reader gives them; a uid that is not UTF-8 is rejected (an
    acknowledgment could not give it back), and the stream goes on."""
    huge = with_field(records[0], "history", "ShAD" * (1 << 18))
    huge = with_field(huge, "tunnel_parents", {f"C{i:017d}" for i in range(100_000)})
    odd_history = with_field(records[1], "history", b"Sh\xffAD")
    odd_uid = with_field(records[2], "uid", b"Cnot-utf8-\xff\xfe")
    notice = tmp_path / "notice.log"
    port = free_port()
    args = ("--listen", f"127.0.0.1:{port}", "--threshold", "0", "--max-wait", "0.1", "-o", str(notice))
    with running(tmp_path, *args) as service:
        zeek = Zeekish(broker)
        zeek.peer(port)
        zeek.publish([huge, huge, odd_history, odd_uid, records[3]])
        zeek.collect(until={records[3][1]}, verdicts=True)
        with open(f"/proc/{service.proc.pid}/status") as f:
            peak_mib = int(next(ln for ln in f if ln.startswith("VmHWM:")).split()[1]) / 1024
        counts = service.stop()
        zeek.close()
    text = service.text()
    assert "Traceback" not in text and "internal_error" not in text
    assert counts["scored"] == 4 and counts["malformed"] == 1 and counts["capped"] == 4
    assert len(re.findall(r": capped \(field=history ", text)) == 1
    assert len(re.findall(r": capped \(field=tunnel_parents ", text)) == 1
    assert re.search(r"malformed_event \(kind=uid\.encoding reason=.*is not UTF-8", text)
    assert peak_mib < 1024, peak_mib
    assert zeek.acked == [records[0][1], records[0][1], records[1][1], records[3][1]]
    assert {v["uid"] for v in zeek.verdicts} == {records[0][1], records[1][1], records[3][1]}
    lines = [ln for ln in notice.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == 4 and any(records[1][1] in ln and "history Sh\ufffdAD)" in ln for ln in lines)


def test_overload_and_backlog_show_in_the_metrics(broker: Any, tmp_path: Path, records: list[tuple[Any, ...]]) -> None:
    """More events than the queue holds while a batch fills: queue length at capacity, the waiting time of
    the oldest queued connection, the drops and the arrival delay are all in the metrics."""
    port = free_port()
    args = ("--listen", f"127.0.0.1:{port}", "--threshold", "0", "--queue-size", "50", "--max-wait", "30")
    with running(tmp_path, *args, "--batch-size", "1000", "--metrics", "127.0.0.1:0") as service:
        address = metrics_address(service)
        zeek = Zeekish(broker)
        zeek.peer(port)
        zeek.publish(records[:400])
        m = wait_metric(address, lambda m: m.get("zeek_ml_broker_dropped_total") == 350)
        assert m["zeek_ml_broker_queue_length"] == m["zeek_ml_broker_queue_capacity"] == 50
        assert m["zeek_ml_broker_received_total"] == 50 and m["zeek_ml_broker_scored_total"] == 0
        assert m["zeek_ml_broker_peers"] == 1 and m["zeek_ml_broker_subscriber_backlog"] == 0
        # The sample capture's clock starts at 0 (1970): its connections arrive decades after they ended.
        assert m["zeek_ml_broker_receive_delay_seconds"] > 365 * 86400
        assert "zeek_ml_broker_lag_seconds" not in m  # nothing scored yet
        waited = wait_metric(address, lambda m: m["zeek_ml_broker_queue_wait_seconds"] > 0.5)
        assert waited["zeek_ml_broker_queue_length"] == 50
        counts = service.stop()  # scores the 50 on the way out
        zeek.close()
    assert counts["received"] == counts["scored"] == 50 and counts["dropped"] == 350


def test_bad_metrics_address_is_one_line() -> None:
    out = run_cli("broker", "--metrics", "127.0.0.1:http")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--metrics" in out.stderr


# --------------------------------------------------------------------------- property test of the decoder


def broker_values(b: Any) -> st.SearchStrategy[Any]:
    """Any Broker value the Python bindings can send: scalars of every type and containers of them."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.integers(min_value=0, max_value=2**64 - 1).map(b.Count),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.binary(max_size=20),
        st.integers(min_value=0, max_value=65535).flatmap(
            lambda n: st.sampled_from([b.Port.TCP, b.Port.UDP, b.Port.ICMP, b.Port.Unknown]).map(lambda p: b.Port(n, p))
        ),
        st.sampled_from(["tcp", "udp", "icmp", "unknown_transport", "sctp", ""]).map(b.Enum),
        st.ip_addresses(),
        st.floats(min_value=-9e9, max_value=9e9).map(lambda s: dt.datetime.fromtimestamp(s, dt.UTC)),
        st.floats(min_value=-1e6, max_value=1e6).map(lambda s: dt.timedelta(seconds=s)),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=3).map(tuple), st.sets(st.text(max_size=5), max_size=3)),
        max_leaves=5,
    )


@pytest.fixture(scope="module")
def scorer() -> Any:
    from zeek_ml.cli import _load
    from zeek_ml.model.scorer import Scorer

    return Scorer(_load(None), 0.0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decoder_never_raises_anything_else_and_what_it_accepts_scores(
    data: st.DataObject, broker: Any, records: list[tuple[Any, ...]], scorer: Any
) -> None:
    """A real record with random fields replaced by random Broker values (or cut, or padded): the decoder
    either returns a row that builds a frame the model scores, or raises Rejected naming a field or
    the message; nothing else escapes."""
    from zeek_ml.sources.broker import ConnDecoder, Rejected, conn_frame

    decoder = ConnDecoder(broker)
    record = list(records[data.draw(st.integers(0, len(records) - 1))])
    for name in data.draw(st.lists(st.sampled_from(sorted(FIELD)), max_size=4, unique=True)):
        record[FIELD[name]] = data.draw(broker_values(broker))
    shape = data.draw(st.sampled_from(["record", "record", "record", "cut", "padded"]))
    if shape == "cut":
        record = record[: data.draw(st.integers(0, len(record) - 1))]
    elif shape == "padded":
        record.append(data.draw(broker_values(broker)))
    message = broker.Data(broker.zeek.Event(CONN_EVENT, tuple(record)))
    try:
        row = decoder.decode(message)
    except Rejected as r:
        field, _, problem = r.kind.partition(".")
        assert (field in FIELD and problem) or field in ("record", "event", "message"), r.kind
        assert r.reason and "\n" not in r.reason
        return
    assert shape == "record"
    frame = conn_frame([row])
    assert len(frame) == 1 and frame["uid"].iloc[0] and np.isfinite(frame["ts"].iloc[0])
    assert all(len(v) <= MAX_VALUE_CHARS for v in frame[["uid", "history"]].iloc[0] if isinstance(v, str))
    scores = scorer(frame).scores
    assert np.isfinite(scores).all()


# --------------------------------------------------------------------------- files across restarts


def test_notice_log_is_appended_across_restarts_and_a_bad_state_path_is_one_line(
    broker: Any, tmp_path: Path, records: list[tuple[Any, ...]]
) -> None:
    """``-o`` keeps the notices of earlier runs (a restart used to truncate it); ``--state`` in a missing
    directory is refused at start, exit 2, before anything is received."""
    notice = tmp_path / "notice.log"
    wanted: list[str] = []
    for run in range(2):
        port = free_port()
        part = records[run * 30 : (run + 1) * 30]
        with running(tmp_path, "--listen", f"127.0.0.1:{port}", "--threshold", "0", "-o", str(notice)) as service:
            zeek = Zeekish(broker)
            zeek.peer(port)
            zeek.publish(part)
            zeek.collect(until={r[FIELD["uid"]] for r in part}, verdicts=True)
            service.stop()
            zeek.close()
        wanted += [r[FIELD["uid"]] for r in part]
        lines = notice.read_text().splitlines()
        assert sum(line.startswith("#fields") for line in lines) == 1  # one header, the file never started again
        uids = [line.split("\t")[1] for line in lines if not line.startswith("#")]
        assert uids == wanted
    bad = run_cli("broker", "--listen", "127.0.0.1:0", "--state", str(tmp_path / "missing" / "state.json"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "--state" in bad.stderr and "missing" in bad.stderr and "Traceback" not in bad.stderr


def test_a_full_disk_under_the_state_and_notice_log_is_waited_out(
    broker: Any, tmp_path: Path, records: list[tuple[Any, ...]]
) -> None:
    """State file and notice log on a real 1 MiB tmpfs that fills up: the service says disk_full, holds the
    batch (no verdict or ack leaves before its state is written), and once space is freed goes on: every
    connection acknowledged and written once. It used to die at the first failed write."""
    from tests.test_watch_faults import fill

    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    need(res.returncode == 0, f"cannot mount a tmpfs at {mnt} (needs root): {res.stderr.strip()}")
    try:
        port = free_port()
        args = ("--listen", f"127.0.0.1:{port}", "--threshold", "0", "--state", str(mnt / "state.json"))
        with running(tmp_path, *args, "-o", str(mnt / "notice.log"), "--max-wait", "0.1") as service:
            zeek = Zeekish(broker)
            zeek.peer(port)
            first, second = records[:20], records[20:60]
            zeek.publish(first)
            zeek.collect(until={r[FIELD["uid"]] for r in first}, verdicts=True)
            filler = fill(mnt)
            zeek.publish(second)
            service.wait_for("disk_full")
            zeek.collect(quiet=1.0)
            assert len(zeek.acked) == len(first)  # held while the state cannot be written
            filler.unlink()
            service.wait_for("disk_ok")
            zeek.collect(until={r[FIELD["uid"]] for r in first + second}, verdicts=True)
            counts = service.stop()
            zeek.close()
        assert counts["scored"] == 60 and "Traceback" not in service.text()
        lines = (mnt / "notice.log").read_text().splitlines()
        uids = [line.split("\t")[1] for line in lines if not line.startswith("#")]
        assert uids == [r[FIELD["uid"]] for r in first + second]  # each once, in order
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_the_state_file_keeps_the_host_tables_as_arrays_and_a_version_1_file_still_loads(tmp_path: Path) -> None:
    """``--state``: the host context goes beside the state file as arrays (one file, named in it) and
    loads back to the same context; a version 1 file (the context as JSON inside it) loads too."""
    from tests.conftest import TEST_DATA
    from zeek_ml.api import load_model
    from zeek_ml.services.broker.service import BrokerOptions, BrokerService
    from zeek_ml.sources.files import read_frames

    model = load_model()
    frame = read_frames([str(TEST_DATA / "lab" / "lab-namespaces-2026.part1.head4000.conn.log.labeled.gz")])
    state = tmp_path / "state.json"
    first = BrokerService(None, model, BrokerOptions(state_path=str(state)))  # type: ignore[arg-type]
    first.scorer(frame.head(1500))
    first.save_state()
    first.scorer(frame.iloc[1500:2500])
    first.save_state()  # a second save replaces the arrays file of the first
    saved = json.loads(state.read_text())
    assert saved["version"] == 2 and set(saved["context"]) == {"meta", "arrays"}
    assert [p.name for p in tmp_path.glob("state.json.arrays-*.npz")] == [saved["context"]["arrays"]["file"]]
    want = first.scorer.state()
    assert len(want["orig"]) > 10
    second = BrokerService(None, model, BrokerOptions(state_path=str(state)))  # type: ignore[arg-type]
    second.load_state()
    assert second.scorer.state() == want
    state.write_text(json.dumps({**saved, "version": 1, "context": want}))  # as version 1 wrote it
    for p in tmp_path.glob("state.json.arrays-*.npz"):
        p.unlink()
    third = BrokerService(None, model, BrokerOptions(state_path=str(state)))  # type: ignore[arg-type]
    third.load_state()
    assert third.scorer.state() == want
