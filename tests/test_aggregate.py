"""Incident aggregation and suppression (zeek_ml/aggregate.py) on real captures and the real model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, SAMPLE_LOGS, TEST_DATA, run_cli
from zeek_ml.formats.writer import ZeekLogWriter
from zeek_ml.model.conn_model import load_model
from zeek_ml.model.scorer import Scorer
from zeek_ml.notices.incidents import IncidentSink, NoticePolicy
from zeek_ml.sinks.logs import build_notice_sink, file_writer
from zeek_ml.sources.files import iter_batches

LAB = TEST_DATA / "lab" / "lab-namespaces-2026.part1.head4000.conn.log.labeled.gz"
"""The first 4,000 rows of the lab capture: an nmap SYN scan and a connect scan (tests/data/README.md)."""
MODEL = ROOT / "models" / "conn-cnn-v1.onnx"


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


def _lab_rows(labels: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.concat(list(iter_batches([LAB])), ignore_index=True)
    return frame[frame["detailedlabel"].isin(labels)].reset_index(drop=True)


def _read(text: bytes) -> pd.DataFrame:
    lines = text.decode().splitlines()
    fields = next(line for line in lines if line.startswith("#fields")).split("\t")[1:]
    rows = [line.split("\t") for line in lines if not line.startswith("#")]
    return pd.DataFrame(rows, columns=fields)


def _run(model, batches, policy=None, threshold=None, state=None, scorer_state=None) -> tuple[bytes, IncidentSink]:
    out = io.BytesIO()
    sink = IncidentSink(lambda p, f: ZeekLogWriter(out, p, f, open_time=0.0, close_line=False), policy)
    if state is not None:
        sink.restore(state)
    scorer = Scorer(model, threshold)
    if scorer_state is not None:
        scorer.restore(scorer_state)
    for batch in batches:
        sink.write(scorer(batch))
    sink.close()
    return out.getvalue(), sink


def _chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + size] for i in range(0, len(frame), size)]


def test_two_real_port_scans_give_two_notices_with_the_right_counts(model) -> None:
    scans = _lab_rows(("nmap_syn_scan", "nmap_connect_scan"))
    out, sink = _run(model, _chunks(scans, 700), threshold=0.0)  # every connection flagged: counts are exact
    notices = _read(out)
    assert len(notices) == 2 == sink.notices
    expect = scans.groupby("id.orig_h").agg(
        n=("uid", "size"), t0=("ts", "min"), t1=("ts", "max"), dsts=("id.resp_h", "nunique")
    )
    ports = scans.assign(p=scans["id.resp_p"].astype(str) + "/" + scans["proto"].astype(str)).groupby("id.orig_h")["p"]
    for _, row in notices.iterrows():
        src = row["src"]
        assert int(row["n"]) == expect.loc[src, "n"]
        assert int(row["zeek_ml.dsts"]) == expect.loc[src, "dsts"] == 1
        assert int(row["zeek_ml.ports"]) == ports.nunique()[src] >= 1000
        assert float(row["zeek_ml.first_ts"]) == pytest.approx(expect.loc[src, "t0"], abs=1e-6)
        assert float(row["zeek_ml.last_ts"]) == pytest.approx(expect.loc[src, "t1"], abs=1e-6)
        assert row["zeek_ml.severity"] == "high" and row["zeek_ml.direction"] == "internal"
        assert row["uid"] in set(scans["uid"]) and row["p"] == "-"
        assert row["dst"] == scans.loc[scans["id.orig_h"] == src, "id.resp_h"].iloc[0]
        assert row["suppress_for"] == "3600.000000"


@pytest.mark.parametrize("name", ["conn-cnn-v1", "conn-cnn-v2"])  # v2 is stateful: its host context is restored too
def test_output_does_not_depend_on_batch_boundaries_or_restarts(name) -> None:
    model = load_model(ROOT / "models" / f"{name}.onnx")
    rows = pd.concat(list(iter_batches([LAB])), ignore_index=True)
    policy = NoticePolicy(suppress_for=60.0)  # short interval: many incidents open and close
    whole, _ = _run(model, [rows], policy, threshold=0.5)
    small, _ = _run(model, _chunks(rows, 333), policy, threshold=0.5)
    assert whole == small and len(_read(whole)) > 5  # 10 (v1), 16 (v2) incidents on these rows
    # stop half-way (live stop: open incidents stay in the state), restore in a new sink, go on
    half = len(rows) // 2
    out1 = io.BytesIO()
    first = IncidentSink(lambda p, f: ZeekLogWriter(out1, p, f, open_time=0.0, close_line=False), policy)
    scorer = Scorer(model, 0.5)
    for batch in _chunks(rows.iloc[:half], 500):
        first.write(scorer(batch))
    state = json.loads(json.dumps(first.state()))  # what the checkpoint holds
    scorer_state = json.loads(json.dumps(scorer.state()))
    first.close(final=False)
    assert state["open"], "a live stop keeps open incidents"
    assert bool(scorer_state) == (name == "conn-cnn-v2")  # v1 keeps no context
    out2, _ = _run(model, _chunks(rows.iloc[half:], 500), policy, threshold=0.5, state=state, scorer_state=scorer_state)
    assert pd.concat([_read(out1.getvalue()), _read(out2)]).reset_index(drop=True).equals(_read(whole))


def test_suppression_window_boundaries(model) -> None:
    base = _lab_rows(("nmap_syn_scan",)).iloc[:5].copy()
    t0 = 1_700_000_000.0
    # anchor, +10 s, exactly anchor+interval (joins), just past it (new incident), +2 intervals (a third)
    base["ts"] = [t0, t0 + 10, t0 + 100, t0 + 100.001, t0 + 300]
    out, sink = _run(model, [base], NoticePolicy(suppress_for=100.0), threshold=0.0)
    notices = _read(out)
    assert notices["n"].astype(int).tolist() == [3, 1, 1]
    assert notices["zeek_ml.first_ts"].astype(float).tolist() == pytest.approx([t0, t0 + 100.001, t0 + 300])
    assert notices["zeek_ml.last_ts"].astype(float).tolist() == pytest.approx([t0 + 100, t0 + 100.001, t0 + 300])
    assert sink.incidents == 3


def test_incidents_close_on_data_time_not_at_run_end(model) -> None:
    rows = _lab_rows(("nmap_syn_scan",)).iloc[:3].copy()
    rows["ts"] = [1000.0, 1001.0, 5000.0]  # the third row's ts closes the first incident
    out = io.BytesIO()
    sink = IncidentSink(lambda p, f: ZeekLogWriter(out, p, f, open_time=0.0, close_line=False))
    written = sink.write(Scorer(model, 0.0)(rows))
    assert written == 1 and len(sink.open) == 1  # first incident written, second still open
    sink.close(final=False)
    assert len(_read(out.getvalue())) == 1


def test_min_severity_filters_and_no_aggregate_keeps_one_per_connection(model, tmp_path) -> None:
    scans = _lab_rows(("nmap_syn_scan",))
    verdicts = Scorer(model, 0.0)(scans)
    per_conn = build_notice_sink(file_writer(tmp_path / "a.log"), aggregate=False)
    assert per_conn.write(verdicts) == len(scans)
    per_conn.close()
    # the lab log has local_orig=T: Zeek's flags win over --local-nets, the scan stays internal and high
    high = build_notice_sink(file_writer(tmp_path / "b.log"), local_nets="10.77.0.10/32", min_severity="high")
    high.write(verdicts)
    high.close()
    assert high.notices == 1
    # without Zeek's flags the scanner is outside the local nets: an inbound probe, low, filtered out
    low = build_notice_sink(file_writer(tmp_path / "c.log"), local_nets="10.77.0.10/32", min_severity="medium")
    low.write(Scorer(model, 0.0)(scans.drop(columns=["local_orig", "local_resp"])))
    low.close()
    assert low.notices == 0 and low.below_severity == 1


def test_cli_real_scan_one_notice_per_scanner_at_the_model_threshold(shared_data, tmp_path) -> None:
    """The default model (v2) at its own threshold on the lab capture's two real nmap scans."""
    src = shared_data / "zeek_labeled/lab-namespaces-2026-run2.conn.log.labeled.gz"
    res = run_cli("score", str(src), "-o", str(tmp_path / "n.log"), "--all", str(tmp_path / "all.log"), "-q")
    assert res.returncode == 0, res.stderr
    per = run_cli("score", str(src), "-o", str(tmp_path / "p.log"), "--no-aggregate", "--summary-json", "-q")
    notices = _read((tmp_path / "n.log").read_bytes())
    enriched = _read((tmp_path / "all.log").read_bytes())
    assert (enriched["zeek_ml.model"] == "conn-cnn-v2").all()
    flagged = enriched[enriched["zeek_ml.verdict"] == "T"]
    assert json.loads(per.stdout)["notices"] == len(flagged) > len(notices)  # --all and per-connection unchanged
    scans = flagged[flagged["detailedlabel"].isin(["nmap_syn_scan", "nmap_connect_scan"])]
    scanners = scans["id.orig_h"].unique()
    assert len(scanners) == 2  # two scanners are two incidents
    for scanner in scanners:
        scan = scans[scans["id.orig_h"] == scanner]
        assert len(scan) > 500
        mine = notices[(notices["src"] == scanner) & (notices["zeek_ml.family"] == "PortScan")]
        assert len(mine) == 1  # one notice for the scan, not hundreds
        assert mine["zeek_ml.incident"].iloc[0] == f"internal|PortScan|src={scanner}"
        assert mine["zeek_ml.severity"].iloc[0] == "high"
        assert int(mine["n"].iloc[0]) == len(scan)
        assert int(mine["zeek_ml.ports"].iloc[0]) == scan["id.resp_p"].nunique() > 500
        assert float(mine["zeek_ml.first_ts"].iloc[0]) == pytest.approx(scan["ts"].astype(float).min(), abs=1e-6)
        assert float(mine["zeek_ml.last_ts"].iloc[0]) == pytest.approx(scan["ts"].astype(float).max(), abs=1e-6)
        assert np.isin(mine["uid"], scan["uid"]).all()
        # the scanner's other flagged rows (its later brute force, DoS) are other incidents, none lost
        from_scanner = flagged[flagged["id.orig_h"] == scanner]
        assert notices.loc[notices["src"] == scanner, "n"].astype(int).sum() == len(from_scanner)


def test_same_notices_for_any_batching_of_out_of_order_real_rows(shared_data, model) -> None:
    """Zeek writes conn.log rows when connections end, so ``ts`` goes back and forth: the sensor's logs."""
    rita = shared_data / "zeek_unlabeled/more/rita"
    files = sorted(rita.glob("test_data__missing_host__2024-04-19__conn.1[0-2]-*"))
    rows = pd.concat(list(iter_batches(files)), ignore_index=True)
    assert (np.diff(rows["ts"].to_numpy(dtype=float)) < 0).any()  # really out of order
    policy = NoticePolicy(suppress_for=300.0)
    whole, sink = _run(model, [rows], policy, threshold=0.9)
    assert sink.notices > 10
    rng = np.random.default_rng(7)
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, len(rows)), size=40, replace=False))
        parts = [rows.iloc[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
        again, _ = _run(model, parts, policy, threshold=0.9)
        assert again == whole


def test_cli_suppression_interval_splits_a_long_scan(tmp_path) -> None:
    scan = _lab_rows(("nmap_syn_scan",))
    src = tmp_path / "conn.log"
    types = dict(next(iter_batches([LAB])).attrs["types"])
    writer = ZeekLogWriter(src, "conn", list(types.items()))
    writer.write(scan)
    writer.close()
    span = scan["ts"].max() - scan["ts"].min()
    assert span > 60
    res = run_cli("score", str(src), "-o", str(tmp_path / "n.log"), "--threshold", "0", "--suppress-for", "20", "-q")
    assert res.returncode == 0, res.stderr
    notices = _read((tmp_path / "n.log").read_bytes())
    assert len(notices) >= span // 20 and notices["n"].astype(int).sum() == len(scan)
    first, last = notices["zeek_ml.first_ts"].astype(float), notices["zeek_ml.last_ts"].astype(float)
    assert ((last - first) <= 20.0 + 1e-6).all() and (notices["suppress_for"] == "20.000000").all()
    assert (first.diff().dropna() > 0).all()  # one after the other, in data time
    res = run_cli("score", str(src), "-o", str(tmp_path / "m.log"), "--threshold", "0", "--min-severity", "high", "-q")
    assert len(_read((tmp_path / "m.log").read_bytes())) == 1
    bad = run_cli("score", str(src), "-o", str(tmp_path / "x.log"), "--suppress-for", "0")
    assert bad.returncode == 2 and "--suppress-for" in bad.stderr


def test_data_time_jumping_back_a_day_starts_a_new_clock(tmp_path: Path) -> None:
    # Two real captures in one run, the second with relative ts (0 .. 2,588 s) after one from
    # 2022: without a fresh clock every connection of the second would close its incident at
    # once (224 notices for one C&C channel); with it, each capture gives its own notices.
    first = SAMPLE_LOGS / "ctu-normal-40.first2000.conn.log.labeled.gz"
    second = SAMPLE_LOGS / "001-zeek-scenario-malicious.labeled-conn.log.gz"
    counts = []
    for inputs in ([first], [second], [first, second]):
        res = run_cli("score", *map(str, inputs), "-o", str(tmp_path / "n.log"), "--summary-json", "-q")
        assert res.returncode == 0, res.stderr
        counts.append(json.loads(res.stdout)["notices"])
    assert counts[1] >= 1 and counts[2] == counts[0] + counts[1]
