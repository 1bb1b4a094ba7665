"""Zeek JSON read columnar (issue 13, item 4) gives exactly what the line-by-line reader gives.

The columnar path (:func:`zeek_ml.sources.zeeklog.json_block_table`, ``pyarrow.json`` and vectorised
checks) reads a plain chunk of Zeek JSON lines in one go; any chunk with something unusual goes
line by line, as before. These tests read the same bytes both ways (``zeeklog.JSON_FAST`` set and
unset, or ``ZEEK_ML_JSON_FAST=0`` for a subprocess) and require identical frames (columns and
their order, dtypes, values, ``attrs``), identical rejects (file, line, field, reason, raw bytes)
and identical counters:

- a hypothesis property test over generated conn JSON (random unset fields, extra columns, long
  numbers) with faults injected at random lines, read in small batches so some chunks are plain
  and some are not;
- the shipped JSON samples, and a ``zeek-ml score`` subprocess whose notices and summary must not
  change;
- that a plain chunk really takes the columnar path and each kind of fault really leaves it.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLE_LOGS, run_cli
from zeek_ml.sources import files, reading, zeeklog

ADDRS = ["10.0.0.1", "192.168.1.20", "8.8.8.8", "fe80::1", "2001:db8::7", "::1", "255.255.255.255"]


class Raw(str):
    """A value written into the JSON line as is (a number spelled oddly, a bad literal)."""


def render(obj: dict[str, Any]) -> bytes:
    """One JSON line the way Zeek writes it (compact), with :class:`Raw` values spliced in."""
    parts = []
    for key, value in obj.items():
        text = str(value) if isinstance(value, Raw) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        parts.append(json.dumps(key) + ":" + text)
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


@st.composite
def conn_record(draw: st.DrawFn) -> dict[str, Any]:
    """A valid conn record as Zeek's JSON writer makes one; unset fields omitted at random."""
    count = st.integers(0, 2**40)
    ts = draw(st.floats(1e9, 2e9) | st.integers(1_000_000_000, 2_000_000_000))
    full: dict[str, Any] = {
        "ts": Raw(f"{ts:.9f}") if isinstance(ts, float) and draw(st.booleans()) else ts,
        "uid": "C" + draw(st.text("abcdefXYZ0123456789", min_size=5, max_size=17)),
        "id.orig_h": draw(st.sampled_from(ADDRS)),
        "id.orig_p": draw(st.integers(0, 65535)),
        "id.resp_h": draw(st.sampled_from(ADDRS)),
        "id.resp_p": draw(st.integers(0, 65535)),
        "proto": draw(st.sampled_from(["tcp", "udp", "icmp"])),
        "service": draw(st.sampled_from(["dns", "http", "ssl,http", "ssh", "é-svc"])),
        "duration": draw(
            st.floats(0, 1e6)
            | st.integers(0, 10**25)
            | st.floats(0, 1e3).map(lambda x: Raw(f"{x:.25f}"))
            | st.floats(1e-300, 1e300).map(lambda x: Raw(f"{x:.17e}"))
        ),
        "orig_bytes": draw(count),
        "resp_bytes": draw(count),
        "conn_state": draw(st.sampled_from(["SF", "S0", "REJ", "OTH"])),
        "local_orig": draw(st.booleans()),
        "local_resp": draw(st.booleans()),
        "missed_bytes": draw(count),
        "history": draw(st.text("ShADadFfRrTt^", max_size=20)),
        "orig_pkts": draw(count),
        "orig_ip_bytes": draw(count),
        "resp_pkts": draw(count),
        "resp_ip_bytes": draw(count),
        "tunnel_parents": draw(st.lists(st.text("CXY0123", min_size=1, max_size=6), max_size=3)),
        "community_id": "1:" + draw(st.text("abcXYZ+/=", max_size=10)),
        "vlan": draw(st.integers(-5, 4095)),
        "_extra_text": draw(st.text(max_size=8).filter(lambda t: "\\" not in t and "null" not in t)),
        "_extra_count": draw(st.integers(0, 99)),
        "_extra_int": draw(st.integers(-99, 99)),
        "_extra_flag": draw(st.booleans()),
        "_extra_list": draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=2)),
    }
    keep = draw(st.lists(st.booleans(), min_size=len(full), max_size=len(full)))
    return {k: v for (k, v), kept in zip(full.items(), keep, strict=True) if kept or k in ("ts", "uid")}


# Each fault: a new value for one field, or None with a whole raw line.
VALUE_FAULTS: list[Any] = [
    Raw("null"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-0"),
    Raw("-0.0"),
    Raw("1e400"),
    Raw("7.0"),
    Raw("1e3"),
    Raw("9223372036854775808"),
    Raw("-1"),
    Raw("70000"),
    Raw("1" + "0" * 400),
    Raw("true"),
    Raw('"7"'),
    Raw('{"a":1}'),
    Raw("[1,2]"),
    Raw('["a",null]'),
    Raw('"\\ud800"'),
    Raw('"a\\\\x41b"'),
    Raw('"a\\u005cx41"'),
    Raw('"\\u0000"'),
    Raw('"tab\there"'),
    Raw('"1.2.3.4.5"'),
    Raw('"2024-01-01T00:00:00Z"'),
    Raw("1700000000000"),
    Raw("-5"),
    Raw("01"),
    "x" * 5000,
]
LINE_FAULTS: list[bytes] = [
    b"",
    b"   ",
    b"not json",
    b'{"ts":',
    b"[1]",
    b'"text"',
    b"{}",
    b'{"ts":1700000000.5,"ts":1700000001.5,"uid":"Cdup"}',
    b'{"ts":1700000000.5}{"ts":1700000001.5}',
    b' {"ts":1700000000.5,"uid":"Cspace"}',
    b'{"ts":1700000000.5,"uid":"Ccr"}\r',
    b'\xef\xbb\xbf{"ts":1700000000.5,"uid":"Cbom"}',
    b'{"ts":1700000000.5,"uid":"Cnul"}\0\0',
    b'{"ts":1700000000.5,"uid":"C\xff\xfe"}',
    b'{"ts":1700000000.5,"uid":"Cctl\x01"}',
    b'{"\\u0074s":1700000000.5,"uid":"Cesc"}',
    b'{"ts":1700000000.5,"uid":"Ctrail",}',
    b'{"ts":1700000000.5,"uid":"Cgarbage"} x',
    b'{"ts":1700000000.5,"nested":{"a":[1,{"b":2}]}}',
    b'{"ts":1700000000.5,"_extra_count":-3}',
    b'{"ts":1700000000.5,"_extra_mixed":1}\n{"ts":1700000000.6,"_extra_mixed":1.5}',
    b'{"ts":1700000000.5,"_when":"2024-01-01T00:00:00"}',
]


@st.composite
def json_log(draw: st.DrawFn) -> bytes:
    """Lines of conn JSON, mostly valid, with faults at random lines after the first (often none)."""
    records = draw(st.lists(conn_record(), min_size=7, max_size=40))
    lines = [render(r) for r in records]
    for _ in range(draw(st.integers(0, 3))):  # first line a record, most lines objects: sniffed as JSON
        at = draw(st.integers(1, len(lines) - 1))
        if draw(st.booleans()):
            lines[at] = draw(st.sampled_from(LINE_FAULTS))
        else:
            record = dict(records[at])
            record[draw(st.sampled_from(sorted(record)))] = draw(st.sampled_from(VALUE_FAULTS))
            lines[at] = render(record)
    tail = b"" if draw(st.booleans()) else b"\n"
    return b"\n".join(lines) + tail


def read_both(path: Path, batch_bytes: int = files.DEFAULT_BATCH_BYTES, conn: bool = True) -> tuple[Any, Any]:
    """(frames, rejects, counters) of the columnar and of the line-by-line read of ``path``."""
    results = []
    for fast in (True, False):
        zeeklog.JSON_FAST = fast
        try:
            rejects = reading.RejectLog(keep=10**6)
            stats = reading.ReadStats()
            frames = list(
                files.iter_batches(str(path), rejects=rejects, stats=stats, batch_bytes=batch_bytes, conn=conn)
            )
        finally:
            zeeklog.JSON_FAST = True
        results.append((frames, [(r.file, r.line, r.field, r.reason, r.raw) for r in rejects.first], stats))
    return results[0], results[1]


def assert_same(fast: Any, slow: Any) -> None:
    """Frames, rejects and counters identical, frame by frame."""
    fast_frames, fast_rejects, fast_stats = fast
    slow_frames, slow_rejects, slow_stats = slow
    assert fast_rejects == slow_rejects
    assert fast_stats == slow_stats
    assert len(fast_frames) == len(slow_frames)
    for a, b in zip(fast_frames, slow_frames, strict=True):
        assert list(a.columns) == list(b.columns)
        assert list(a.dtypes) == list(b.dtypes)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert a.attrs == b.attrs
        assert list(a.attrs["types"].items()) == list(b.attrs["types"].items())
        for name in a.columns:  # -0.0 and 0.0 compare equal: the sign must match too
            if a[name].dtype == "float64":
                assert [math.copysign(1, x) for x in a[name]] == [math.copysign(1, x) for x in b[name]], name


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=json_log(), batch=st.sampled_from([256, 1024, 1 << 20]))
def test_columnar_equals_line_by_line(data: bytes, batch: int) -> None:
    """Any mix of valid conn JSON and faults: the same frames, rejects and counters both ways."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conn.json.log"
        path.write_bytes(data)
        fast, slow = read_both(path, batch)
    assert_same(fast, slow)


@pytest.mark.parametrize("conn", [True, False])
@pytest.mark.parametrize(
    "name", ["zat.conn.json.log", "ssh_sshguess.conn.json.log", "http_bro.org.conn.iso8601.json.log"]
)
def test_shipped_samples_identical(name: str, conn: bool) -> None:
    """The real JSON logs shipped in sample_logs/ read identically both ways, as conn logs or not."""
    fast, slow = read_both(SAMPLE_LOGS / name, conn=conn)
    assert fast[0], "no frames read"
    assert_same(fast, slow)


def plain_block(n: int = 50) -> bytes:
    """``n`` lines of zat.conn.json.log, a real Zeek JSON conn log, as one chunk."""
    lines = (SAMPLE_LOGS / "zat.conn.json.log").read_bytes().splitlines()[:n]
    assert len(lines) == n
    return b"\n".join(lines) + b"\n"


def test_plain_chunk_takes_the_columnar_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real Zeek JSON log never reaches the line-by-line path (else there is no speed-up)."""
    path = tmp_path / "conn.json.log"
    path.write_bytes(plain_block())

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the line-by-line path was used on a plain chunk")

    monkeypatch.setattr(zeeklog.JsonParser, "_feed_lines", refuse)
    frame = files.read_frames(str(path))
    assert len(frame) == 50


LEAVING_VALUES = [
    ("uid", Raw("null")),
    ("duration", Raw("NaN")),
    ("duration", Raw("Infinity")),
    ("duration", Raw("-0")),
    ("duration", Raw("-1.5")),
    ("duration", Raw("1" + "0" * 400)),
    ("orig_bytes", Raw("7.0")),
    ("orig_bytes", Raw("1e3")),
    ("orig_bytes", Raw("9223372036854775808")),
    ("orig_bytes", Raw("-1")),
    ("id.resp_p", Raw("70000")),
    ("orig_bytes", Raw("true")),
    ("orig_bytes", Raw('"7"')),
    ("uid", Raw('{"a":1}')),
    ("uid", Raw("[1,2]")),
    ("tunnel_parents", Raw('["a",null]')),
    ("uid", Raw('"\\ud800"')),
    ("uid", Raw('"a\\\\x41b"')),
    ("uid", Raw('"a\\u005cx41"')),
    ("id.orig_h", Raw('"1.2.3.4.5"')),
    ("ts", Raw('"2024-01-01T00:00:00Z"')),
    ("ts", Raw("1700000000000")),
    ("ts", Raw("-5")),
    ("uid", "x" * 5000),
]


VALID_BUT_ODD = {
    b'{"\\u0074s":1700000000.5,"uid":"Cesc"}',
    b'{"ts":1700000000.5,"_extra_count":-3}',
    b'{"ts":1700000000.5,"_extra_mixed":1}\n{"ts":1700000000.6,"_extra_mixed":1.5}',
}
"""Lines from LINE_FAULTS that are valid records: either path may read them."""


@pytest.mark.parametrize(
    "fault", [f for f in LINE_FAULTS if f != b"{}"] + [render({"ts": 1.7e9, k: v}) for k, v in LEAVING_VALUES]
)
def test_each_fault_leaves_the_columnar_path(fault: bytes, tmp_path: Path) -> None:
    """A chunk holding any one fault is read line by line, with the same result as before."""
    lines = plain_block(10).splitlines()
    lines[4] = fault
    buf = b"\n".join(lines) + b"\n"
    if fault not in VALID_BUT_ODD:
        assert zeeklog.json_block_table(buf) is None, fault
    path = tmp_path / "conn.json.log"
    path.write_bytes(buf)
    fast, slow = read_both(path)
    assert_same(fast, slow)


def test_score_subprocess_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``zeek-ml score`` on a real JSON log writes the same notices and summary either way."""
    log = SAMPLE_LOGS / "zat.conn.json.log"
    outputs = []
    for fast in ("1", "0"):
        monkeypatch.setenv("ZEEK_ML_JSON_FAST", fast)
        out, scored = tmp_path / f"notice-{fast}.log", tmp_path / f"all-{fast}.log"
        proc = run_cli("score", str(log), "-o", str(out), "--all", str(scored), "--summary-json", "-q")
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        summary = json.loads(proc.stdout)
        summary.pop("records_per_second")
        summary.pop("seconds")
        outputs.append((out.read_bytes(), scored.read_bytes(), summary))
    assert outputs[0][2]["records"] > 0
    assert outputs[0] == outputs[1]
