"""Suricata eve.json in (flow events -> conn records), eve alerts out.

Real eve files: ``../shared/data/suricata_eve`` (every file) and the excerpts in tests/data
(provenance in tests/data/README.md). Expected values are worked out from the raw events here,
independently of the mapping code (``datetime.strptime`` for times, arithmetic for bytes).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, SAMPLE_LOGS, TEST_DATA, need, run_cli
from zeek_ml.features.conn import SURICATA_UNSUPPLIED, compute_features
from zeek_ml.formats.schema import CONN_FIELDS, pandas_dtype
from zeek_ml.model.scorer import Verdicts
from zeek_ml.sinks.eve import GID, SID_BASE, EveAlertSink, family_signature
from zeek_ml.sources.eve import EveArrayParser, EveParser, flows_to_conns
from zeek_ml.sources.files import expand_sources, make_parser, read_frames
from zeek_ml.sources.reading import ReadContext, ReadStats, RejectLog, SourceError
from zeek_ml.sources.zeeklog import JsonParser, TsvParser

EXCERPT = TEST_DATA / "suricata-excerpt.eve.json"
EDITED = TEST_DATA / "suricata-edited.eve.json"
NUL_PADDED = TEST_DATA / "suricata-nul-padded.eve.json"
MODEL = ROOT / "models" / "conn-cnn-v1.onnx"


def _events(path: Path) -> list[dict]:
    """Every event of an eve file, decoded here without zeek_ml (an oracle for the counts)."""
    raw = (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")).read()  # noqa: SIM115
    text = raw.decode("utf-8", "replace")
    if text.lstrip().startswith("["):
        return json.loads(text)
    out = []
    for line in text.split("\n"):
        line = line.strip(" \t\r\0")
        if line:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def _epoch(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def _read(path: Path, **kwargs) -> tuple[pd.DataFrame, ReadStats, RejectLog]:
    stats, rejects = ReadStats(), RejectLog()
    frame = read_frames(path, stats=stats, rejects=rejects, **kwargs)
    return frame, stats, rejects


def _shared_eve_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "suricata_eve").rglob("*") if p.is_file() and "README" not in p.name)


# --------------------------------------------------------------------------- every real file


def test_every_shared_eve_file_reads(shared_data: Path) -> None:
    files = _shared_eve_files(shared_data)
    assert len(files) >= 17
    no_flows = 0
    for path in files:
        events = _events(path)
        flows = sum(e.get("event_type") == "flow" for e in events)
        frame, stats, rejects = _read(path)
        assert stats.records == flows == len(frame), path
        assert stats.ignored_events == len(events) - flows, path
        assert stats.rejected == 0, (path, [str(r) for r in rejects.first])
        if flows == 0:
            no_flows += 1
            continue
        assert frame["uid"].tolist() == [str(e["flow_id"]) for e in events if e.get("event_type") == "flow"]
        assert frame["ts"].notna().all() and (frame["duration"] >= 0).all(), path
        features = compute_features(frame)
        assert np.isfinite(features).all(), path
    assert no_flows == 6  # CYT160-LAB4, SecNet-TFG and the four alert-only JSON arrays


def test_score_cli_on_every_shared_file_writes_eve_alerts(shared_data: Path, tmp_path: Path) -> None:
    files = _shared_eve_files(shared_data)
    total_flows = sum(sum(e.get("event_type") == "flow" for e in _events(p)) for p in files)
    out = tmp_path / "alerts.json"
    res = run_cli(
        "score", *map(str, files), "-o", str(out), "--format", "eve", "--no-aggregate", "--summary-json", "-q"
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["records"] == summary["scored"] == total_flows
    assert summary["files"] == len(files) and summary["rejected"] == 0
    assert summary["ignored_events"] > 10_000
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(alerts) == summary["notices"] > 0
    for alert in alerts:
        _check_alert_shape(alert)


def test_directory_with_source_suricata_takes_its_eve_files(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "suricata_eve" / "suricata_report_generator"
    res = run_cli("score", str(src), "--source", "suricata", "-o", str(tmp_path / "a.json"), "--format", "eve", "-q")
    assert res.returncode == 0, res.stderr
    # The same directory as Zeek input has no conn logs: a clear error, exit 2.
    res = run_cli("score", str(src), "--source", "zeek", "-o", str(tmp_path / "b.log"), "-q")
    assert res.returncode == 2 and "no conn logs" in res.stderr


# --------------------------------------------------------------------------- the mapping


def test_excerpt_maps_to_the_conn_schema() -> None:
    frame, stats, _ = _read(EXCERPT)
    events = _events(EXCERPT)
    flows = [e for e in events if e["event_type"] == "flow"]
    assert len(frame) == len(flows) == 12 and stats.ignored_events == 5 and stats.rejected == 0
    assert list(frame.columns[: len(CONN_FIELDS)]) == [n for n, _ in CONN_FIELDS]
    for name, zeek_type in CONN_FIELDS:
        assert frame[name].dtype == pandas_dtype(zeek_type), name
    by_uid = frame.set_index("uid")
    for e in flows:
        row = by_uid.loc[str(e["flow_id"])]
        fl = e["flow"]
        # ts is the flow's first packet, whatever the offset (+0300, -0400, +0000, +0100, -0500).
        assert row["ts"] == pytest.approx(_epoch(fl["start"]), abs=1e-6)
        assert row["duration"] == pytest.approx(_epoch(fl["end"]) - _epoch(fl["start"]), abs=1e-6)
        assert row["orig_pkts"] == fl["pkts_toserver"] and row["resp_pkts"] == fl["pkts_toclient"]
        # eve counts Ethernet frames: 14 bytes of link header per packet are not IP bytes.
        assert row["orig_ip_bytes"] == fl["bytes_toserver"] - 14 * fl["pkts_toserver"]
        assert row["resp_ip_bytes"] == fl["bytes_toclient"] - 14 * fl["pkts_toclient"]
        # Addresses as Zeek writes them: IPv6 compressed (eve writes it in full).
        assert row["id.orig_h"] == str(ipaddress.ip_address(e["src_ip"]))
        assert row["id.resp_h"] == str(ipaddress.ip_address(e["dest_ip"]))

    def one(flow_id: int) -> pd.Series:
        return by_uid.loc[str(flow_id)]

    icmp6 = one(1559353993681528)  # IPv6 router solicitation, no ports: type/code in the ports
    assert icmp6["id.orig_h"] == "fe80::20c:29ff:fe62:e812"
    assert (icmp6["proto"], icmp6["id.orig_p"], icmp6["id.resp_p"], icmp6["ip_proto"]) == ("icmp", 133, 0, 58)
    assert icmp6["orig_ip_bytes"] == 48 and icmp6["orig_bytes"] == 0  # 40 IPv6 + 8 ICMPv6
    assert icmp6["conn_state"] == "OTH" and pd.isna(icmp6["history"])
    refused = one(2117617620566422)  # SYN answered by RST|ACK
    assert (refused["conn_state"], refused["history"]) == ("REJ", "Sr")
    http = one(1339622353014238)  # FIN both ways
    assert (http["conn_state"], http["history"], http["service"]) == ("SF", "ShADadFf", "http")
    assert http["orig_bytes"] == (779 - 6 * 14) - 6 * 40 and http["resp_bytes"] == (9386 - 10 * 14) - 10 * 40
    rsto = one(727106769994312)  # originator sent the RST
    assert (rsto["conn_state"], rsto["history"], rsto["service"]) == ("RSTO", "ShADadR", "ssl")
    rstr = one(464399556273553)  # originator FIN (flags 1b), responder RST without FIN (1e)
    assert (rstr["conn_state"], rstr["history"]) == ("RSTR", "ShADadFr")
    s0 = one(1556500017834432)  # a lone SYN
    assert (s0["conn_state"], s0["history"], s0["orig_bytes"], s0["resp_pkts"]) == ("S0", "S", 0, 0)
    dns = one(1704711041378299)  # UDP both ways: 20 IP + 8 UDP headers
    assert (dns["conn_state"], dns["history"], dns["service"]) == ("SF", "Dd", "dns")
    assert (dns["orig_bytes"], dns["resp_bytes"]) == (128 - 14 - 28, 196 - 14 - 28)
    mdns = one(1440447779583630)  # one way, app_proto "failed" -> no service
    assert (mdns["conn_state"], mdns["history"]) == ("S0", "D") and pd.isna(mdns["service"])
    ping = one(2154098702547753)
    assert (ping["proto"], ping["id.orig_p"], ping["id.resp_p"], ping["conn_state"]) == ("icmp", 8, 0, "OTH")
    # What eve cannot supply stays unset, as the feature spec declares.
    for name in ("missed_bytes", "local_orig", "local_resp"):
        assert name in SURICATA_UNSUPPLIED and frame[name].isna().all()
    # ...unless the site's networks are given, as Zeek sets them from Site::local_nets.
    local, _, _ = _read(EXCERPT, local_nets="192.168.0.0/16,fe80::/10")
    local = local.set_index("uid")
    assert (local.loc["2117617620566422", "local_orig"], local.loc["2117617620566422", "local_resp"]) == (True, True)
    assert (local.loc["1556500017834432", "local_orig"], local.loc["1556500017834432", "local_resp"]) == (False, False)
    assert (local.loc["1559353993681528", "local_orig"], local.loc["1559353993681528", "local_resp"]) == (True, False)


def test_edited_cases_no_tcp_object_bypass_community_id_and_bad_lines() -> None:
    frame, stats, rejects = _read(EDITED)
    assert len(frame) == 3 and stats.rejected == 2
    assert [(r.line, r.field) for r in rejects.first] == [(4, None), (5, None)]
    assert "invalid JSON" in rejects.first[0].reason and "cut short" in rejects.first[1].reason
    no_tcp, bypassed, tagged = (frame.iloc[i] for i in range(3))
    # A TCP flow without its tcp object: no flags, so neither conn_state nor history is guessed.
    assert no_tcp["proto"] == "tcp" and pd.isna(no_tcp["conn_state"]) and pd.isna(no_tcp["history"])
    assert no_tcp["orig_pkts"] == 27
    # Local bypass: eve counts what passed after the bypass apart; the record adds both.
    assert bool(bypassed["suricata.bypassed"]) and bypassed["suricata.flow_state"] == "bypassed"
    assert (bypassed["orig_pkts"], bypassed["resp_pkts"]) == (6 + 4, 10 + 20)
    assert bypassed["orig_ip_bytes"] == 779 + 300 - 14 * 10
    assert tagged["community_id"] == "1:Qp8Y2Iw8fF9N8R/3tVgfx9mW6lc="
    assert tagged["orig_ip_bytes"] == 128 - 18  # Ethernet + one 802.1Q tag
    assert np.isfinite(compute_features(frame)).all()


def test_timestamp_without_offset_is_utc() -> None:
    # A real flow event with its offsets cut off (as suricata-sample-data's honeypot file writes).
    line = EXCERPT.read_text().splitlines()[5]
    event = json.loads(line.replace("+0300", ""))
    frame = flows_to_conns([event])
    naive = dt.datetime.strptime(event["flow"]["start"], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC)
    assert frame["ts"].iloc[0] == pytest.approx(naive.timestamp(), abs=1e-6)


def test_nul_padding_is_skipped_and_the_event_after_it_read() -> None:
    frame, stats, _ = _read(NUL_PADDED)
    assert stats.rejected == 0 and len(frame) + stats.ignored_events == 4


def test_alert_only_arrays_give_zero_flows_and_a_count(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "suricata_eve/suricata-sample-data/samples__honeypot-2018__alerts-only.json"
    frame, stats, _ = _read(path)
    assert len(frame) == 0 and stats.ignored_events == len(json.loads(path.read_text())) == 44
    res = run_cli("score", str(path), "-o", str(tmp_path / "a.json"), "--format", "eve", "-q", "--summary-json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["ignored_events"] == 44
    assert (tmp_path / "a.json").read_text() == ""


def test_feeding_in_any_chunks_of_lines_gives_the_same_records() -> None:
    data = EXCERPT.read_bytes() + EDITED.read_bytes().rsplit(b"\n", 1)[0] + b"\n"
    whole, _, _ = _read(EXCERPT)
    lines = data.splitlines(keepends=True)
    for step in (1, 2, 5, 7, 30):
        ctx = ReadContext(RejectLog(), ReadStats(), 1 << 20, True, None)
        parser = make_parser("eve.json", data, ctx)
        assert isinstance(parser, EveParser)
        frames = []
        for i in range(0, len(lines), step):
            frames += list(parser.feed(b"".join(lines[i : i + step]), i + 1, final=False))
        got = pd.concat(frames, ignore_index=True)
        assert got["uid"].tolist()[: len(whole)] == whole["uid"].tolist()
        pd.testing.assert_frame_equal(got.iloc[: len(whole)].reset_index(drop=True), whole, check_dtype=True)
        assert ctx.stats.rejected == 1 and ctx.stats.ignored_events == 5  # the "not json" line


# --------------------------------------------------------------------------- detection, names


def test_make_parser_chooses_by_content(shared_data: Path) -> None:
    ctx = ReadContext(RejectLog(), ReadStats(), 1 << 20, True, None)
    tsv = (SAMPLE_LOGS / "ssh_sshguess.conn.log").read_bytes()[:4096]
    zeek_json = (SAMPLE_LOGS / "ssh_sshguess.conn.json.log").read_bytes()[:4096]
    array = (shared_data / "suricata_eve/suricata-sample-data/samples__honeypot-2018__alerts-only.json").read_bytes()
    assert isinstance(make_parser("conn.log", tsv, ctx), TsvParser)
    assert isinstance(make_parser("conn.json", zeek_json, ctx), JsonParser)
    assert isinstance(make_parser("eve.json", EXCERPT.read_bytes()[:300], ctx), EveParser)  # a cut first line
    assert isinstance(make_parser("a.json", array[:200], ctx), EveArrayParser)
    ctx.source = "suricata"
    with pytest.raises(SourceError, match=r"conn\.log: not Suricata eve\.json"):
        make_parser("conn.log", tsv, ctx)
    ctx.source = "zeek"
    with pytest.raises(SourceError, match=r"is Suricata eve\.json"):
        make_parser("eve.json", EXCERPT.read_bytes(), ctx)


def test_expand_sources_finds_eve_files_by_name_in_time_order(tmp_path: Path) -> None:
    lines = EXCERPT.read_text().splitlines(keepends=True)
    (tmp_path / "eve.json").write_text(lines[1])  # 2026-06-12
    (tmp_path / "eve.json.1").write_text(lines[5])  # 2011-01-25
    with gzip.open(tmp_path / "eve.json.2.gz", "wt") as f:
        f.write(lines[11])  # 2022-03-21
    (tmp_path / "eve-2023-02-28-11:00.json").write_text(lines[8])  # 2023-02-28
    (tmp_path / "eve.json.swp").write_text("x")
    (tmp_path / "other.json").write_text(lines[1])
    names = [os.path.basename(p) for p in expand_sources(tmp_path, source="suricata")]
    assert names == ["eve.json.1", "eve.json.2.gz", "eve-2023-02-28-11:00.json", "eve.json"]
    assert [os.path.basename(p) for p in expand_sources(tmp_path)] == names  # auto: no conn logs here
    shutil.copy(SAMPLE_LOGS / "ssh_sshguess.conn.log", tmp_path / "conn.log")
    assert [os.path.basename(p) for p in expand_sources(tmp_path)] == ["conn.log"]
    frame = read_frames(tmp_path, source="suricata")
    assert len(frame) == 4 and frame["ts"].is_monotonic_increasing


# --------------------------------------------------------------------------- the alert sink

ALERT_SCHEMA = {
    # The eve alert shape as Suricata's documentation describes it (Eve JSON Format: common
    # section, Event type: Alert) and as EveBox / Filebeat's suricata module read it.
    "type": "object",
    "required": ["timestamp", "event_type", "src_ip", "dest_ip", "proto", "alert"],
    "properties": {
        "timestamp": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d{4}$"},
        "flow_id": {"type": "integer", "minimum": 0},
        "event_type": {"const": "alert"},
        "src_ip": {"type": "string"},
        "dest_ip": {"type": "string"},
        "src_port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "dest_port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "icmp_type": {"type": "integer"},
        "icmp_code": {"type": "integer"},
        "proto": {"type": "string", "pattern": "^[A-Z0-9v-]+$|^IPv6-ICMP$"},
        "alert": {
            "type": "object",
            "required": ["action", "gid", "signature_id", "rev", "signature", "category", "severity"],
            "properties": {
                "action": {"enum": ["allowed", "blocked"]},
                "gid": {"type": "integer"},
                "signature_id": {"type": "integer"},
                "rev": {"type": "integer"},
                "signature": {"type": "string", "minLength": 1},
                "category": {"type": "string"},
                "severity": {"type": "integer", "minimum": 1, "maximum": 4},
                "metadata": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                },
            },
        },
    },
}


def _check_alert_shape(alert: dict) -> None:
    try:
        import jsonschema
    except ImportError:
        need(False, "jsonschema missing: pip install '.[test]'")
    jsonschema.validate(alert, ALERT_SCHEMA)
    assert alert["alert"]["gid"] == GID and SID_BASE <= alert["alert"]["signature_id"] < SID_BASE + 1000
    assert ("src_port" in alert) == (alert["proto"] not in ("ICMP", "IPv6-ICMP"))
    assert float(alert["alert"]["metadata"]["zeek_ml_score"][0]) >= 0


def _verdicts(frame: pd.DataFrame, **extra) -> Verdicts:
    from zeek_ml.model.conn_model import load_model
    from zeek_ml.model.scorer import Scorer

    verdicts = Scorer(load_model(MODEL), threshold=0.0)(frame)
    for key, value in extra.items():
        setattr(verdicts, key, value)
    return verdicts


def test_alert_sink_writes_one_valid_alert_per_flagged_flow(tmp_path: Path) -> None:
    frame, _, _ = _read(EXCERPT)
    verdicts = _verdicts(frame)
    out = tmp_path / "alerts.json"
    sink = EveAlertSink(out, aggregate=False, local_discovery=True)  # every flow, its SSDP/mDNS included
    assert sink.write(verdicts) == len(frame)
    sink.flush()
    sink.close()
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(alerts) == len(frame)
    by_flow = {a["flow_id"]: a for a in alerts}
    for e in (e for e in _events(EXCERPT) if e["event_type"] == "flow"):
        alert = by_flow[e["flow_id"]]
        _check_alert_shape(alert)
        assert (alert["src_ip"], alert["dest_ip"], alert["proto"]) == (e["src_ip"], e["dest_ip"], e["proto"])
        assert (alert.get("src_port"), alert.get("dest_port")) == (e.get("src_port"), e.get("dest_port"))
        assert _epoch(alert["timestamp"]) == pytest.approx(_epoch(e["flow"]["start"]), abs=1e-6)
        meta = alert["alert"]["metadata"]
        assert meta["zeek_ml_model"] == ["conn-cnn-v1"] and "zeek_ml_family" not in meta
        assert alert["alert"]["signature_id"] == SID_BASE


def test_alert_sink_family_reasons_and_aggregation(tmp_path: Path) -> None:
    frame, _, _ = _read(EXCERPT)
    n = len(frame)
    family = np.array(["scan"] * (n - 1) + ["beaconing"], dtype=object)
    reasons = np.array(["many refused SYNs"] * n, dtype=object)
    codes = np.array([("conn_state", "history_first")] * n, dtype=object)
    verdicts = _verdicts(frame, family=family, reasons=reasons, reason_codes=codes)
    out = tmp_path / "per-conn.json"
    sink = EveAlertSink(out, aggregate=False, local_discovery=True)
    sink.write(verdicts)
    sink.close()
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    fams = {a["alert"]["metadata"]["zeek_ml_family"][0] for a in alerts}
    assert fams == {"scan", "beaconing"}
    scan = next(a for a in alerts if a["alert"]["metadata"]["zeek_ml_family"] == ["scan"])
    assert scan["alert"]["signature_id"] == family_signature("scan")[0] == SID_BASE + 1
    assert scan["alert"]["category"] == "Detection of a Network Scan"
    assert scan["alert"]["metadata"]["zeek_ml_reasons"] == ["conn_state", "history_first"]
    assert "many refused SYNs" in scan["alert"]["metadata"]["zeek_ml_msg"][0]
    other = next(a for a in alerts if a["alert"]["metadata"]["zeek_ml_family"] == ["beaconing"])
    assert SID_BASE + 900 <= other["alert"]["signature_id"] < SID_BASE + 1000
    # Aggregated (the default): one alert per incident, counting its connections; state is JSON.
    out = tmp_path / "incidents.json"
    sink = EveAlertSink(out, local_discovery=True)
    sink.write(verdicts)
    state = json.loads(json.dumps(sink.state()))
    sink.close()
    incidents = [json.loads(line) for line in out.read_text().splitlines()]
    assert 0 < len(incidents) < n
    assert sum(int(a["alert"]["metadata"]["zeek_ml_connections"][0]) for a in incidents) == n
    for alert in incidents:
        _check_alert_shape(alert)
    assert state["open"]


# --------------------------------------------------------------------------- live: rotation


def test_follower_reads_eve_through_rotation_exactly_once(tmp_path: Path) -> None:
    from zeek_ml.sources.tail import LogFollower

    lines = EXCERPT.read_bytes().splitlines(keepends=True)
    live = tmp_path / "eve.json"
    ctx = ReadContext(RejectLog(), ReadStats(), 1 << 20, True, None)
    follower = LogFollower(str(live), lambda path, first: make_parser(path, first, ctx), batch_bytes=4096)
    uids: list[str] = []

    def drain() -> None:
        for seg in follower.read():
            uids.extend(u for f in seg.file.parser.feed(seg.data, seg.first_line, seg.final) for u in f["uid"])

    with open(live, "wb") as f:
        f.writelines(lines[:6])
        f.write(lines[6][:100])  # Suricata is mid-line
        f.flush()
        drain()
        # Rotation as Suricata does it: logrotate renames eve.json, Suricata (still writing
        # through its open descriptor) ends its line, then on SIGHUP reopens a new eve.json.
        os.rename(live, tmp_path / "eve.json.1")
        f.write(lines[6][100:])
        f.writelines(lines[7:9])
    with open(live, "wb") as f:
        f.writelines(lines[9:])
    for _ in range(5):
        drain()
    follower.close()
    flows = [str(e["flow_id"]) for e in _events(EXCERPT) if e["event_type"] == "flow"]
    assert uids == flows
    assert ctx.stats.rejected == 0 and ctx.stats.ignored_events == 5


def test_watch_scores_eve_json_through_rotation_and_restart_exactly_once(tmp_path: Path) -> None:
    lines = EXCERPT.read_bytes().splitlines(keepends=True)
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    out.mkdir()
    live = logs / "eve.json"
    live.write_bytes(b"".join(lines[:4]))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, "-m", "zeek_ml", "watch", str(live), "-o", str(out / "notice.log")]
    args += ["--all", str(out / "all.log"), "--threshold", "0", "--poll-interval", "0.05", "--exit-when-idle", "2"]
    args += ["--format", "tsv"]  # eve input gives JSON notices by default

    def scored() -> list[str]:
        path = out / "all.log"
        if not path.exists():
            return []
        return [row.split("\t")[1] for row in path.read_text().splitlines() if row and not row.startswith("#")]

    # 1. Live: Suricata appends, logrotate renames eve.json, Suricata reopens a new one on SIGHUP.
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(scored()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(live, "ab") as f:
        f.writelines(lines[4:7])
    os.rename(live, logs / "eve.json.1")
    live.write_bytes(b"".join(lines[7:10]))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    # 2. Stopped: more lines, another rotation; a restart resumes from its checkpoint.
    with open(live, "ab") as f:
        f.writelines(lines[10:13])
    os.rename(live, logs / "eve.json.2")
    live.write_bytes(b"".join(lines[13:]))
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    flows = [str(e["flow_id"]) for e in _events(EXCERPT) if e["event_type"] == "flow"]
    assert scored() == flows


def test_calibrate_and_profile_apply_to_eve_input(shared_data: Path, tmp_path: Path) -> None:
    eve = shared_data / "suricata_eve"
    site = [eve / "MSSIS-suricata/data__out.json.gz", eve / "suricata_report_generator/data__eve.json.gz"]
    flows = sum(sum(e.get("event_type") == "flow" for e in _events(p)) for p in site)
    profile = tmp_path / "site.json"
    res = run_cli("calibrate", *map(str, site), "-o", str(profile))
    assert res.returncode == 0, res.stderr
    assert json.loads(profile.read_text())["fitted_on"]["rows"] == flows
    held = eve / "suricata_report_generator/data__eve_2023-10-31-IcedID-infection-traffic.json.gz"
    out = tmp_path / "alerts.json"
    res = run_cli("score", str(held), "--profile", str(profile), "--format", "eve", "-o", str(out), "-q")
    assert res.returncode == 0, res.stderr
    for line in out.read_text().splitlines():
        _check_alert_shape(json.loads(line))


def test_malformed_eve_lines_are_reported_kept_aside_and_fatal_only_when_strict(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.json"
    res = run_cli("score", str(EDITED), "-o", str(tmp_path / "a.json"), "--format", "eve", "--rejects", str(rejects))
    assert res.returncode == 0, res.stderr
    assert f"{EDITED}:4: invalid JSON" in res.stderr and "cut short" in res.stderr
    kept = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["raw"]) for r in kept] == [(4, "not json at all"), (5, EDITED.read_text().splitlines()[4])]
    res = run_cli("score", str(EDITED), "-o", str(tmp_path / "b.json"), "--format", "eve", "--strict")
    assert res.returncode == 4 and f"{EDITED}:4" in res.stderr
