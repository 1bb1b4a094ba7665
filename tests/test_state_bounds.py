"""Bounded state and sane data time (zeek_ml/temporal.py StreamClock + HostContext, zeek_ml/aggregate.py).

Real rows throughout: the shipped CTU-Normal-40 excerpt (2,000 connections over 11.6 h, hosts that
expire within it) and the NjRAT capture with relative timestamps, both in sample_logs/. The faults
are made by editing ``ts`` (a sensor clock jump, rows from 1970, a second capture appended) or by
removing Zeek's ``local_orig``/``local_resp`` columns so that every Internet source is its own
incident. Each CLI test compares with a run whose expected answer is known exactly: the same file
with each bad ``ts`` replaced by the stream's clock at that row (what clamping promises), or each
capture scored on its own (what a new epoch promises).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, SAMPLE_LOGS, run_cli
from zeek_ml.features.context import CONFIRM_ROWS, TIME_SKEW, HostContext, StreamClock
from zeek_ml.formats.writer import ZeekLogWriter
from zeek_ml.model.conn_model import load_model
from zeek_ml.model.scorer import Scorer
from zeek_ml.notices.incidents import MAX_MEMBERS, Incident, IncidentSink, NoticePolicy
from zeek_ml.sources.files import read_frames
from zeek_ml.sources.local_nets import LocalNets

CTU = SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz"
NJRAT = SAMPLE_LOGS / "001-zeek-scenario-malicious.labeled-conn.log.gz"
YEARS_10 = 10 * 365 * 86400.0


# --------------------------------------------------------------------------- helpers


def _split(path: Path) -> tuple[list[str], list[str]]:
    """Header lines (without #close) and data lines of a Zeek TSV log."""
    text = (gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()).decode()
    lines = text.splitlines()
    header = [ln for ln in lines if ln.startswith("#") and not ln.startswith("#close")]
    return header, [ln for ln in lines if ln and not ln.startswith("#")]


def _write(path: Path, header: list[str], rows: list[str]) -> Path:
    path.write_text("\n".join([*header, *rows]) + "\n")
    return path


def _ts(row: str) -> float:
    return float(row.split("\t", 1)[0])


def _set_ts(row: str, ts: str) -> str:
    return ts + "\t" + row.split("\t", 1)[1]


def _clamped(rows: list[str], bad: set[int]) -> list[str]:
    """``rows`` with each row of ``bad`` given the stream's clock at that row (the largest good ts before it)."""
    out, best = [], None
    for i, row in enumerate(rows):
        if i in bad:
            assert best is not None
            out.append(_set_ts(row, best.split("\t", 1)[0]))
            continue
        if best is None or _ts(row) > _ts(best):
            best = row
        out.append(row)
    return out


def _table(path: Path) -> pd.DataFrame:
    lines = path.read_text().splitlines()
    fields = next(ln for ln in lines if ln.startswith("#fields")).split("\t")[1:]
    return pd.DataFrame([ln.split("\t") for ln in lines if not ln.startswith("#")], columns=fields)


def _score(tmp: Path, name: str, *inputs: Path, env: dict[str, str] | None = None, extra: tuple = ()) -> dict:
    """``zeek-ml score`` as a subprocess: its notices, scores (--all) and stderr."""
    notice, enriched = tmp / f"{name}.notice.log", tmp / f"{name}.all.log"
    args = [*map(str, inputs), "-o", str(notice), "--all", str(enriched), "--format", "tsv", "-q", *extra]
    if env is None:
        res = run_cli("score", *args)
    else:
        res = subprocess.run(
            [sys.executable, "-m", "zeek_ml", "score", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    rows = [ln for ln in notice.read_text().splitlines() if not ln.startswith("#")]
    return {"notices": rows, "all": _table(enriched), "stderr": res.stderr, "notice_table": _table(notice)}


def _warnings(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "from the stream's clock" in ln]


def _without_local_flags(tmp: Path, *, by_ts: bool = False) -> Path:
    """The CTU excerpt without Zeek's local_orig/local_resp: with --local-nets 192.0.2.0/24 every
    connection is ``external`` and keyed by its originator, so each of 620 sources is an incident.
    ``by_ts``: rows in ``ts`` order (incidents then open in anchor order)."""
    frame = read_frames([CTU])
    if by_ts:
        frame = frame.sort_values("ts", kind="stable")
    types = [(c, t) for c, t in frame.attrs["types"].items() if c not in ("local_orig", "local_resp")]
    out = tmp / f"ctu-no-local-flags{'-by-ts' if by_ts else ''}.conn.log"
    writer = ZeekLogWriter(out, "conn", types, open_time=0.0)
    writer.write(frame.drop(columns=["local_orig", "local_resp"]))
    writer.close()
    return out


# --------------------------------------------------------------------------- the clock, one row at a time


def test_stream_clock_clamps_outliers_and_needs_agreeing_rows_for_a_new_epoch() -> None:
    clock = StreamClock()
    assert clock.step(1000.0).time == 1000.0
    far = clock.step(1000.0 + YEARS_10, "glitch")
    assert far.clamped and far.time == 1000.0 and clock.clock == 1000.0
    late = clock.step(1000.0 - 3600.0)  # a long connection logged late: within the skew, taken as it is
    assert late.time == 1000.0 - 3600.0 and not late.clamped
    assert late.resolved == [(1000.0 + YEARS_10, "glitch")] and clock.clamped == 1
    assert math.isnan(clock.step(float("nan")).time) and clock.clock == 1000.0  # no ts: no time, clock unmoved
    # a new capture: CONFIRM_ROWS consecutive rows that agree (one side of the clock, none far behind the rest)
    steps = [clock.step(5e8 + i, i) for i in range(CONFIRM_ROWS)]
    assert all(s.clamped and s.time == 1000.0 for s in steps[:-1])
    assert steps[-1].replay == [(5e8 + i, i) for i in range(CONFIRM_ROWS - 1)] and steps[-1].time == 5e8 + 7
    assert clock.clock == 5e8 + CONFIRM_ROWS - 1 and clock.epochs == 1 and clock.clamped == 1
    # far rows that do not agree with each other (either side of the clock, days apart) never make an epoch
    now = clock.clock
    for i in range(50):
        clock.step(now + (-1) ** i * (i + 2) * 10 * TIME_SKEW)
    assert clock.epochs == 1 and clock.clock == now
    again = StreamClock()
    again.restore(json.loads(json.dumps(clock.state())))
    assert again.state() == clock.state()


def test_a_log_whose_connections_are_days_apart_is_followed_not_clamped() -> None:
    """One host's 41 real connections (the slips horizontal scan) two days apart, as a log filtered down
    to a rarely active host looks: every gap is a jump, but the rows agree (they go one way), so the
    clock follows them in epochs of CONFIRM_ROWS; only the first row of each epoch is scored before
    that is known (at the clock's time), every other row exactly as if no jump were checked."""
    frame = read_frames([SAMPLE_LOGS / "slips-port-scans-horizontal.conn.log"]).reset_index(drop=True)
    frame["ts"] = 1.6e9 + np.arange(len(frame)) * 2 * 86400.0
    ctx = HostContext()
    got = ctx.update(frame).to_numpy()
    unchecked = HostContext()
    unchecked.time = StreamClock(skew=math.inf)
    want = unchecked.update(frame).to_numpy()
    first = set(range(1, len(frame), CONFIRM_ROWS))  # the first row of each would-be epoch
    same = [i for i in range(len(frame)) if i not in first]
    np.testing.assert_array_equal(got[same], want[same])
    assert not (got[sorted(first)] == want[sorted(first)]).all()  # the test can see a difference
    assert ctx.time.epochs == (len(frame) - 1) // CONFIRM_ROWS and ctx.time.clamped == 0


# --------------------------------------------------------------------------- CLI: bad timestamps


def test_one_far_future_ts_is_clamped_and_expiry_goes_on(tmp_path: Path) -> None:
    """A sensor clock jump on one row: scored at the stream's clock; every other row as without it.

    Before: the clock jumped ten years, every host expired at once and, the clock never being
    reached again, none expired afterwards (35 % of the later scores of a 23 k-row capture changed).
    """
    header, rows = _split(CTU)
    k = 700
    glitched = [*rows[:k], _set_ts(rows[k], f"{_ts(rows[k]) + YEARS_10:.6f}"), *rows[k + 1 :]]
    got = _score(tmp_path, "glitched", _write(tmp_path / "glitched.log", header, glitched))
    want = _score(tmp_path, "clamped", _write(tmp_path / "clamped.log", header, _clamped(glitched, {k})))
    plain = _score(tmp_path, "plain", CTU)
    assert got["all"]["zeek_ml.score"].tolist() == want["all"]["zeek_ml.score"].tolist()
    assert got["notices"] == want["notices"] == plain["notices"]
    changed = (got["all"]["zeek_ml.score"] != plain["all"]["zeek_ml.score"]).to_numpy()
    assert changed[k + 1 :].mean() < 0.01  # the jump did not switch expiry off for the rest of the stream
    (line,) = _warnings(got["stderr"])
    uid = rows[k].split("\t")[1]
    assert f"of connection {uid} (2032-" in line and "scored at the clock's time (1 such row(s) so far)" in line


def test_repeated_jumps_back_by_days_never_recurse_and_lose_nothing(tmp_path: Path) -> None:
    """Every third row two days (or 52 years) in the past: about 660 jumps in one batch.

    Before: a RecursionError (one level per jump), exit 1, nothing written.
    """
    header, rows = _split(CTU)
    bad = set(range(10, len(rows), 3))
    jumped = [_set_ts(r, "0.000000" if i % 2 else f"{_ts(r) - 2 * 86400:.6f}") if i in bad else r
              for i, r in enumerate(rows)]  # fmt: skip
    got = _score(tmp_path, "jumped", _write(tmp_path / "jumped.log", header, jumped))
    want = _score(tmp_path, "clamped", _write(tmp_path / "clamped.log", header, _clamped(jumped, bad)))
    assert len(got["all"]) == len(rows)
    assert got["all"]["zeek_ml.score"].tolist() == want["all"]["zeek_ml.score"].tolist()
    assert got["notices"] == want["notices"]
    counts = [re.search(r"\(([\d,]+) such row", ln).group(1) for ln in _warnings(got["stderr"])]  # type: ignore[union-attr]
    assert counts == ["1", "10", "100"]  # one line per power of ten, not one per row


def test_a_capture_from_another_time_is_scored_as_if_alone(tmp_path: Path) -> None:
    """Two real captures in one run, the second three years *before* the first (NjRAT's relative ts
    moved to 2025): the second gets a new epoch, so its hosts expire as they do when scored alone.

    Before: the clock stayed in 2025, no host of the second capture ever expired, and its scores
    depended on what was read before it.
    """
    header, rows = _split(NJRAT)
    later = _write(tmp_path / "njrat-2025.log", header, [_set_ts(r, f"{_ts(r) + 1.74e9:.6f}") for r in rows])
    both = _score(tmp_path, "both", later, CTU)
    first, second = _score(tmp_path, "first", later), _score(tmp_path, "second", CTU)
    scores = both["all"]["zeek_ml.score"].tolist()
    assert scores == first["all"]["zeek_ml.score"].tolist() + second["all"]["zeek_ml.score"].tolist()
    assert both["notices"] == first["notices"] + second["notices"]
    assert len(first["notices"]) >= 1 and len(second["notices"]) >= 1
    assert not _warnings(both["stderr"])  # a new epoch is not an outlier


# --------------------------------------------------------------------------- CLI: the cap on open incidents


def test_open_incidents_are_capped_oldest_first_and_nothing_is_lost(tmp_path: Path) -> None:
    source = _without_local_flags(tmp_path, by_ts=True)
    extra = ("--threshold", "0", "--local-nets", "192.0.2.0/24", "--suppress-for", "86400")
    free = _score(tmp_path, "free", source, extra=extra)
    capped = _score(tmp_path, "capped", source, extra=extra, env={"ZEEK_ML_MAX_OPEN_INCIDENTS": "25"})
    f, c = free["notice_table"], capped["notice_table"]
    assert (f["zeek_ml.direction"] == "external").all() and len(f) > 400  # one incident per source
    # every flagged connection is in exactly one notice either way
    assert f["n"].astype(int).sum() == c["n"].astype(int).sum() == len(free["all"])
    assert len(c) > len(f) + 100  # closed early, and reopened by later rows of the same source
    # the oldest (by first connection) is closed first: the notices closed early come in anchor
    # order, before the 25 still open at the end
    first_ts = c["zeek_ml.first_ts"].astype(float)
    assert first_ts.iloc[:-25].is_monotonic_increasing and first_ts.iloc[:-25].max() <= first_ts.iloc[-25:].min()

    # per source, the capped notices together cover exactly what the uncapped ones cover
    def per_src(t: pd.DataFrame) -> dict:
        return t.groupby("src")["n"].apply(lambda n: n.astype(int).sum()).to_dict()

    assert per_src(c) == per_src(f)


# --------------------------------------------------------------------------- in process: batches and checkpoints


@pytest.fixture(scope="module")
def model():
    return load_model(ROOT / "models" / "conn-cnn-v2.onnx")


def _faulty_stream(tmp: Path) -> pd.DataFrame:
    """The CTU rows without local flags, with an outlier, five agreeing outliers, and two new epochs."""
    frame = read_frames([_without_local_flags(tmp)]).reset_index(drop=True)
    ts = frame["ts"].to_numpy(dtype=float).copy()
    ts[300] += YEARS_10  # one sensor-clock glitch
    ts[500:505] = 86400.0 * 3 + np.arange(5)  # five rows agree on 1970, then the stream goes on: outliers
    ts[900:] -= 400 * 86400.0  # from here on the capture is 400 days earlier: a new epoch
    ts[1500:1520] += 4000 * 86400.0  # twenty rows eleven years later (an epoch), then back (another)
    frame["ts"] = ts
    return frame


def _run(model, frame: pd.DataFrame, cuts: list[int], *, restart: bool, max_open: int) -> tuple[bytes, list, dict]:
    """Score ``frame`` in batches cut at ``cuts``; with ``restart``, a new scorer and sink from JSON state
    after each batch (what the watcher does after a kill). Notices, scores, the last sink's state."""
    out = io.BytesIO()
    policy = NoticePolicy(local_nets=LocalNets.parse("192.0.2.0/24"), suppress_for=600.0)

    def new_sink() -> IncidentSink:
        return IncidentSink(lambda p, f: ZeekLogWriter(out, p, f, open_time=0.0, close_line=False), policy,
                            max_open=max_open)  # fmt: skip

    scorer, sink = Scorer(model, 0.5), new_sink()
    scores: list[float] = []
    for a, b in zip([0, *cuts], [*cuts, len(frame)], strict=True):
        verdicts = scorer(frame.iloc[a:b])
        scores += verdicts.scores.tolist()
        sink.write(verdicts)
        assert len(sink.open) <= max_open
        if restart:
            state, ctx = json.loads(json.dumps(sink.state())), json.loads(json.dumps(scorer.state()))
            sink.close(final=False)
            scorer, sink = Scorer(model, 0.5), new_sink()
            scorer.restore(ctx)
            sink.restore(state)
    last = sink.state()
    sink.close()
    rows = [ln for ln in out.getvalue().splitlines() if not ln.startswith(b"#")]  # each restart writes a header
    return b"\n".join(rows), scores, last


def test_batches_restarts_caps_and_clock_faults_give_the_one_shot_answer(model, tmp_path: Path) -> None:
    """Verdicts, incidents and notices never depend on batch boundaries or restarts, also while rows
    are held (far ts, not yet known to be outliers or a new epoch) and while the cap closes incidents."""
    frame = _faulty_stream(tmp_path)
    whole, scores, state = _run(model, frame, [], restart=False, max_open=12)
    assert state["counters"]["evicted"] > 0 and state["time"]["epochs"] == 3 and state["time"]["clamped"] == 6
    rng = np.random.default_rng(3)
    held = [301, 502, 503, 905, 1504, 1519, 1523]  # cut while rows are held, and right after
    for _ in range(2):
        cuts = sorted({*rng.choice(np.arange(1, len(frame)), 12, replace=False).tolist(), *held})
        again, again_scores, _ = _run(model, frame, cuts, restart=True, max_open=12)
        assert again_scores == scores
        assert again == whole
    assert len(whole.splitlines()) > 100


def test_checkpoint_stays_small_with_many_sources(model, tmp_path: Path) -> None:
    """620 Internet sources, each its own incident for a day: open incidents stop at the cap."""
    frame = read_frames([_without_local_flags(tmp_path)])
    verdicts = Scorer(model, 0.0)(frame)
    policy = NoticePolicy(local_nets=LocalNets.parse("192.0.2.0/24"), suppress_for=86400.0)
    sizes = {}
    for cap in (10_000, 50):
        sink = IncidentSink(lambda p, f: ZeekLogWriter(io.BytesIO(), p, f), policy, max_open=cap)
        sink.write(verdicts)
        sizes[cap] = (len(sink.open), len(json.dumps(sink.state())))
    assert sizes[10_000][0] > 400 and sizes[50][0] == 50
    assert sizes[50][1] < sizes[10_000][1] / 8 and sizes[50][1] < 50 * 2_000


def test_members_of_one_incident_are_capped() -> None:
    inc = Incident(key="k", direction="outbound", family="PortScan", by="src", anchor=0.0, first_ts=0.0, last_ts=0.0)
    for port in range(MAX_MEMBERS + 500):
        inc.add("ports", f"{port}/tcp")
    assert len(inc.ports) == MAX_MEMBERS and inc.count("ports") == f"{MAX_MEMBERS:,}+"
    assert Incident.from_json(json.loads(json.dumps(inc.as_json()))).count("ports") == f"{MAX_MEMBERS:,}+"


# --------------------------------------------------------------------------- old checkpoints


def test_a_checkpoint_written_before_the_stream_clock_still_restores(model) -> None:
    """Version 1 states (host context and incidents, as the released code wrote them) restore and give
    the same answer; one that saved a clock ten years ahead heals after CONFIRM_ROWS rows."""
    frame = read_frames([CTU]).reset_index(drop=True)
    half = 1000
    ctx = HostContext()
    whole = ctx.update(frame).to_numpy()
    first = HostContext()
    first.update(frame.iloc[:half])
    v1 = json.loads(json.dumps(first.state()))
    v1["version"] = 1
    del v1["time"]
    for side in ("orig", "resp"):  # hosts as version 1 wrote them: [recent, window, last_seen] in full
        table = getattr(first, side)
        v1[side] = [[key, [[list(r) for r in h.recent], list(h.window), h.last_seen]] for key, h in table.items()]
    again = HostContext.from_state(v1)
    np.testing.assert_array_equal(again.update(frame.iloc[half:]).to_numpy(), whole[half:])
    # the bug's own checkpoint: the clock ten years ahead (no row of the stream ever reaches it)
    v1["clock"] += YEARS_10
    healed = HostContext.from_state(v1)
    got = healed.update(frame.iloc[half:]).to_numpy()
    fresh = HostContext().update(frame.iloc[half:]).to_numpy()
    np.testing.assert_array_equal(got[CONFIRM_ROWS:], fresh[CONFIRM_ROWS:])  # a new epoch: as if it began there
    assert healed.time.epochs == 1 and healed.clock == frame["ts"].iloc[half:].max()
    with pytest.raises(ValueError, match="version 7 is not 1 or 2"):
        HostContext().restore({**v1, "version": 7})
    sink = IncidentSink(lambda p, f: ZeekLogWriter(io.BytesIO(), p, f))
    sink.restore({"version": 1, "watermark": 1655071198.4, "model": ["conn-cnn-v2", "2"], "open": [],
                  "counters": {"notices": 3, "incidents": 4}})  # fmt: skip
    assert sink.watermark == 1655071198.4 and sink.notices == 3 and sink.incidents == 4
    with pytest.raises(ValueError, match="incident state version 9"):
        sink.restore({"version": 9})


# --------------------------------------------------------------------------- long values


def test_long_string_values_do_not_bloat_notices_or_state(model) -> None:
    """A flagged connection whose ``service`` is 64 KiB (what a broken writer or a hostile peer can
    send; the readers cap such values): its notice and the checkpoint stay small and it is fast."""
    frame = read_frames([SAMPLE_LOGS / "slips-port-scans-horizontal.conn.log"]).reset_index(drop=True)
    frame["service"] = "x" * 65536
    out = io.BytesIO()
    sink = IncidentSink(lambda p, f: ZeekLogWriter(out, p, f, open_time=0.0, close_line=False))
    started = time.monotonic()
    sink.write(Scorer(model, 0.0)(frame))
    state = json.dumps(sink.state())
    sink.close()
    assert time.monotonic() - started < 10
    assert len(state) < 20_000
    notices = [ln for ln in out.getvalue().decode().splitlines() if not ln.startswith("#")]
    assert notices and all(len(n) < 4_000 for n in notices) and all("x" * 200 in n for n in notices)


# --------------------------------------------------------------------------- live


def test_watch_never_saves_a_jumped_clock_and_equals_offline(tmp_path: Path) -> None:
    """The watcher on a log with a far-future row and many sources under a small cap: its checkpoint holds
    the stream's real clock and at most the cap of open incidents; its notices are offline score's."""
    source = _without_local_flags(tmp_path)
    header, rows = _split(source)
    k = 600
    rows[k] = _set_ts(rows[k], f"{_ts(rows[k]) + YEARS_10:.6f}")
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    _write(logs / "conn.log", header, rows)
    env = {"ZEEK_ML_MAX_OPEN_INCIDENTS": "10"}
    opts = ("--threshold", "0.5", "--local-nets", "192.0.2.0/24", "--suppress-for", "600")
    offline = _score(tmp_path, "offline", logs / "conn.log", env=env, extra=opts)
    checkpoint = out / "ck.json"
    res = subprocess.run(
        [sys.executable, "-m", "zeek_ml", "watch", str(logs), "-o", str(out / "notice.log"), "--checkpoint",
         str(checkpoint), "--format", "tsv", "--exit-when-idle", "1", "--poll-interval", "0.05", *opts],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    live = [ln for ln in (out / "notice.log").read_text().splitlines() if not ln.startswith("#")]
    assert live == offline["notices"] and len(live) > 100
    saved = json.loads(checkpoint.read_text())
    good = max(_ts(r) for i, r in enumerate(rows) if i != k)
    context = saved["scorer"]["meta"]  # the host tables themselves are in the arrays file beside it
    assert context["clock"] == good and context["time"]["clamped"] == 1
    assert (out / saved["scorer"]["arrays"]["file"]).is_file()
    incidents = saved["sinks"]["notice"]
    assert incidents["watermark"] == good and incidents["counters"]["evicted"] > 0
