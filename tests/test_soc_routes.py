"""zeek-ml's notices through each SOC tool's real ingest definitions, both routes, TSV and JSON sensors.

Route 1, **Zeek's own notice.log**: ``tests/data/zeek8/notice.{tsv,json}.log`` were written by a real
Zeek 8.0.10 with the zeek-ml package loaded, from the verdicts ``zeek-ml watch`` made of the conn.log
that Zeek wrote from two real captures (``tests/zeek_route.py``; ``tests/test_zeek_package.py``
regenerates them where Zeek is installed and checks they are current).

Route 2, **zeek-ml's own notice log**: ``zeek-ml score`` (the CLI) on that same conn.log.

The tools' definitions are read from ``../shared/data/soc_ingest`` at run time (never copied here)
and executed by the emulators in ``tests/soc`` (validated against the tools' own test cases in
``tests/test_soc_emulator.py`` and ``tests/test_soc_splunk.py``); zeek-ml's additions come from
``integrations/``, installed the way the main README's "Into your SOC" says.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, ROOT, need_shared, run_cli
from tests.soc import beats
from tests.soc.ingest import Registry, load_pipeline, simulate
from tests.soc.splunk import SplunkApp, SplunkApps, explain, index_file
from zeek_ml.notices.notice import EXTRA_NOTICE_FIELDS, INCIDENT_NOTICE_FIELDS

SOC = DATA / "soc_ingest"
ZEEK_INT = SOC / "elastic-integrations" / "zeek-notice"
SURICATA_INT = SOC / "elastic-integrations" / "suricata-eve"
ZEEK_FB = SOC / "elastic-beats" / "zeek-notice"
SO = SOC / "securityonion"
TA_BRO = SOC / "splunk" / "Splunk_TA_bro-4.0.0"
OURS = ROOT / "integrations"
ZEEK8 = ROOT / "tests" / "data" / "zeek8"
ZEEK_ML_FIELDS = dict(EXTRA_NOTICE_FIELDS + INCIDENT_NOTICE_FIELDS)
AGENT_TIME = "2026-11-30T12:00:00.000Z"

SENSORS = ("tsv", "json")


@pytest.fixture(scope="module")
def soc() -> Path:
    return need_shared(SOC)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """zeek-ml's own notice log for each sensor (auto format), JSON from the TSV sensor, and eve alerts."""
    out = tmp_path_factory.mktemp("own")
    logs = {}
    for sensor in SENSORS:
        conn = ZEEK8 / f"conn.{sensor}.log"
        variants = ((sensor, ()), (f"{sensor}-json", ("--format", "json")), (f"{sensor}-eve", ("--format", "eve")))
        for name, extra in variants:
            target = out / name / "zeek_ml_notice.log"
            target.parent.mkdir()
            res = run_cli("score", str(conn), "-o", str(target), "-q", *extra)
            assert res.returncode == 0, res.stderr
            logs[name] = target
    return logs


def notice_log(route: str, sensor: str, own: dict[str, Path]) -> Path:
    return ZEEK8 / f"notice.{sensor}.log" if route == "zeek" else own[sensor]


def json_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tsv_rows(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    fields = next(ln for ln in lines if ln.startswith("#fields")).split("\t")[1:]
    return [dict(zip(fields, ln.split("\t"))) for ln in lines if ln and not ln.startswith("#")]


def iso_ms(ts: float) -> str:
    """``@timestamp`` as Elasticsearch's date processor renders epoch seconds (ms, truncated)."""
    ms = int(float(ts) * 1000)
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def test_the_routes_carry_the_same_notices(own: dict[str, Path]) -> None:
    """Zeek's notice.log (route 1) and zeek-ml's own log (route 2) hold the same notices, both formats."""
    for sensor in SENSORS:
        zeek = json_rows(ZEEK8 / "notice.json.log") if sensor == "json" else tsv_rows(ZEEK8 / "notice.tsv.log")
        ours = json_rows(own[sensor]) if sensor == "json" else tsv_rows(own[sensor])
        assert len(zeek) == len(ours) == 2
        for z, o in zip(zeek, ours):
            for key in ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "note", "msg", "sub", "n"):
                assert z[key] == o[key], (sensor, key)
            for key in ZEEK_ML_FIELDS:
                if sensor == "json" and ZEEK_ML_FIELDS[key] == "double":
                    assert z[key] == pytest.approx(o[key], abs=1e-6)  # the verdict file carries 6 decimals
                else:
                    assert z.get(key) == o.get(key), (sensor, key)
    assert own["tsv"].read_text().startswith("#separator") and own["json"].read_text().startswith("{")


# --------------------------------------------------------------------------- typed fields


def _mapping() -> dict[str, dict]:
    template = json.loads((OURS / "elasticsearch" / "zeek-ml-notice.mappings.json").read_text())
    notice = template["template"]["mappings"]["properties"]["zeek"]["properties"]["notice"]["properties"]
    return notice["zeek_ml"]["properties"]


ES_TYPES = {"double": "float", "string": "keyword", "time": "date", "count": "long", "vector[string]": "keyword"}


def test_mappings_follow_the_notice_columns() -> None:
    """One definition: every zeek_ml.* column of the notice log, mapped by its Zeek type, nothing else."""
    mapping = _mapping()
    assert {f"zeek_ml.{k}" for k in mapping} == set(ZEEK_ML_FIELDS)
    for name, zeek_type in ZEEK_ML_FIELDS.items():
        assert mapping[name.removeprefix("zeek_ml.")]["type"] == ES_TYPES[zeek_type], name
    filebeat = json.loads((OURS / "filebeat" / "zeek-ml-template.json").read_text())
    component = json.loads((OURS / "elasticsearch" / "zeek-ml-notice.mappings.json").read_text())
    assert filebeat["mappings"] == component["template"]["mappings"]
    assert filebeat["settings"]["index.final_pipeline"] == "zeek-ml-notice"


def assert_typed(fields: dict[str, Any], *, dates_iso: bool = True) -> None:
    """Every zeek_ml field present, each value of the type its mapping gives it."""
    mapping = _mapping()
    required = {"score", "threshold", "model", "model_version", "family", "reasons", "severity", "direction"}
    required |= {"incident", "first_ts", "last_ts", "srcs", "dsts", "ports"}
    assert required <= set(fields), sorted(required - set(fields))
    for name, value in fields.items():
        kind = mapping[name]["type"]
        if kind == "float":
            assert isinstance(value, float | int) and not isinstance(value, bool), (name, value)
        elif kind == "long":
            assert isinstance(value, int) and not isinstance(value, bool), (name, value)
        elif kind == "keyword":
            values = value if isinstance(value, list) else [value]
            assert values and all(isinstance(v, str) and v for v in values), (name, value)
        elif kind == "date":
            assert isinstance(value, str) and dates_iso, (name, value)
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            raise AssertionError(f"{name}: unmapped type {kind}")


def expected_notices(route: str, sensor: str, own: dict[str, Path]) -> list[dict[str, Any]]:
    """The notices as plain values (from the JSON form of the same route)."""
    path = ZEEK8 / "notice.json.log" if route == "zeek" else own["json"]
    return json_rows(path)


# --------------------------------------------------------------------------- Elastic Agent


@pytest.fixture(scope="module")
def agent_registry(soc: Path) -> Registry:
    registry = Registry()
    registry.add_file(ZEEK_INT / "default.yml", "default")
    registry.add_file(ZEEK_INT / "third-party.yml", "third-party")
    registry.add_file(OURS / "elasticsearch" / "zeek-ml-notice.pipeline.json", "logs-zeek.notice@custom")
    # Fleet installs the data stream's pipeline with a last processor calling its @custom pipeline.
    registry.add(
        "logs-zeek.notice-installed",
        {
            "processors": [
                {"pipeline": {"name": "default"}},
                {"pipeline": {"name": "logs-zeek.notice@custom", "ignore_missing_pipeline": True}},
            ]
        },
    )
    return registry


def _agent_paths(soc: Path) -> list[str]:
    stream = beats.load_yaml((OURS / "elastic-agent" / "zeek-notice-stream.yml").read_text())
    config = beats.render_agent_template(ZEEK_INT / "agent/stream/log.yml.hbs", {**stream, "tags": ["zeek-notice"]})
    return config["paths"]


def _elastic_checks(doc: dict[str, Any], want: dict[str, Any]) -> None:
    assert doc["event"]["kind"] == "alert" and "error" not in doc, doc.get("error")
    assert doc["@timestamp"] == iso_ms(want["ts"])
    assert doc["rule"]["name"] == "ZeekML::Suspicious_Connection" and doc["rule"]["description"] == want["msg"]
    assert doc["source"]["ip"] == want["id.orig_h"] and doc["destination"]["port"] == want["id.resp_p"]
    assert doc["rule"]["category"] == want["zeek_ml.family"] and doc["rule"]["ruleset"] == "zeek-ml"
    assert doc["event"]["severity"] == {"low": 21, "medium": 47, "high": 73}[want["zeek_ml.severity"]]
    fields = doc["zeek"]["notice"]["zeek_ml"]
    assert_typed(fields)
    assert fields["first_ts"] == iso_ms(want["zeek_ml.first_ts"]) and fields["family"] == want["zeek_ml.family"]
    assert doc["zeek"]["notice"]["n"] == want["n"] and doc["zeek"]["notice"]["sub"] == want["sub"]


@pytest.mark.parametrize("route", ["zeek", "own"])
def test_elastic_agent(soc: Path, agent_registry: Registry, own: dict[str, Path], route: str) -> None:
    """Elastic Agent's Zeek integration (notice stream) + zeek-ml's @custom pipeline: JSON notices index typed."""
    paths = _agent_paths(soc)
    path = "/opt/zeek/logs/current/notice.log" if route == "zeek" else "/var/log/zeek-ml/zeek_ml_notice.log"
    assert path in paths
    log = ZEEK8 / "notice.json.log" if route == "zeek" else own["json"]
    for line, want in zip(log.read_text().splitlines(), expected_notices(route, "json", own)):
        doc = simulate(agent_registry, "logs-zeek.notice-installed", {"message": line, "@timestamp": AGENT_TIME})
        assert doc is not None
        _elastic_checks(doc, want)
    # A TSV sensor's notices are not for the Elastic tools (they read JSON only): every line is an error
    # document, header included, which is why the recipe writes JSON (`--format json`) for them.
    tsv = ZEEK8 / "notice.tsv.log" if route == "zeek" else own["tsv"]
    for line in tsv.read_text().splitlines()[:1] + [ln for ln in tsv.read_text().splitlines() if ln[:1] != "#"]:
        doc = simulate(agent_registry, "logs-zeek.notice-installed", {"message": line, "@timestamp": AGENT_TIME})
        assert doc is not None and doc["event"]["kind"] == "pipeline_error"
    for line, want in zip(own["tsv-json"].read_text().splitlines(), expected_notices("own", "tsv", own)):
        doc = simulate(agent_registry, "logs-zeek.notice-installed", {"message": line, "@timestamp": AGENT_TIME})
        assert doc is not None
        assert doc["zeek"]["notice"]["zeek_ml"]["incident"] == want["zeek_ml.incident"]


def test_elastic_agent_misreads_millisecond_time(soc: Path, agent_registry: Registry, tmp_path: Path) -> None:
    """The README's warning: ``--json-ts millis`` is read as seconds by the integration (ts parsed UNIX)."""
    target = tmp_path / "zeek_ml_notice.log"
    res = run_cli("score", str(ZEEK8 / "conn.json.log"), "-o", str(target), "-q", "--json-ts", "millis")
    assert res.returncode == 0, res.stderr
    row = json_rows(target)[0]
    assert isinstance(row["ts"], int) and isinstance(row["zeek_ml.first_ts"], int)  # every time field
    doc = simulate(agent_registry, "logs-zeek.notice-installed", {"message": json.dumps(row), "@timestamp": AGENT_TIME})
    assert doc is None or doc.get("@timestamp") != iso_ms(row["ts"] / 1000)


# --------------------------------------------------------------------------- Filebeat


@pytest.mark.parametrize("route", ["zeek", "own"])
def test_filebeat(soc: Path, own: dict[str, Path], route: str) -> None:
    """Filebeat's zeek module (notice fileset, our var.paths) + zeek-ml-notice as the indices' final pipeline."""
    module = beats.load_yaml((OURS / "filebeat" / "zeek-ml.yml").read_text())[0]
    variables = beats.manifest_vars(ZEEK_FB / "manifest.yml", os_name="linux")
    variables["paths"] = module["notice"]["var.paths"]
    config = beats.render_agent_template(ZEEK_FB / "config/notice.yml", variables)
    path = "/opt/zeek/logs/current/notice.log" if route == "zeek" else "/var/log/zeek-ml/zeek_ml_notice.log"
    assert path in config["paths"]
    registry = Registry()
    registry.add_file(ZEEK_FB / "ingest/pipeline.yml", "module")
    registry.add_file(OURS / "elasticsearch" / "zeek-ml-notice.pipeline.json", "zeek-ml-notice")
    log = ZEEK8 / "notice.json.log" if route == "zeek" else own["json"]
    fields = {"event.module": "zeek", "event.dataset": "zeek.notice", "fileset.name": "notice"}
    events = beats.agent_events(log.read_text(), path, tags=config["tags"], json_under="json", fields=fields)
    for event, want in zip(events, expected_notices(route, "json", own), strict=True):
        processed = beats.run_processors(config["processors"], event)
        assert processed is not None
        doc, _ = beats.to_wire(processed)
        doc = simulate(registry, "module", doc)  # the module's pipeline, then the index's final pipeline
        assert doc is not None
        doc = simulate(registry, "zeek-ml-notice", doc)
        assert doc is not None
        assert doc["event"]["kind"] == "alert" and doc["@timestamp"] == iso_ms(want["ts"])
        assert doc["rule"]["name"] == "ZeekML::Suspicious_Connection" and doc["rule"]["description"] == want["msg"]
        assert doc["source"]["ip"] == want["id.orig_h"] and doc["destination"]["port"] == want["id.resp_p"]
        assert_typed(doc["zeek"]["notice"]["zeek_ml"])
        assert doc["event"]["severity"] == {"low": 21, "medium": 47, "high": 73}[want["zeek_ml.severity"]]


# --------------------------------------------------------------------------- Security Onion


@pytest.fixture(scope="module")
def so_registry(soc: Path) -> Registry:
    registry = Registry()
    for name in ("zeek.common", "common", "suricata.common", "suricata.alert", "common.nids"):
        registry.add_file(SO / "ingest" / name)
    for name in ("zeek_ml.extract", "zeek.zeek_ml_notice"):
        registry.add_file(OURS / "securityonion" / name)
    return registry


def local_zeek_notice() -> dict[str, Any]:
    """Security Onion's zeek.notice with the one processor the README adds first (a local override)."""
    pipeline = load_pipeline(SO / "ingest" / "zeek.notice")
    hook = json.loads((OURS / "securityonion" / "zeek.notice.first-processor.json").read_text())
    return {**pipeline, "processors": [hook, *pipeline["processors"]]}


def _so_ingest(policy: dict, line: str, path: str, registry: Registry) -> dict[str, Any]:
    event = beats.agent_event(
        line,
        path,
        tags=policy["tags"],
        timestamp=AGENT_TIME,
        fields={"data_stream.type": "logs", "data_stream.dataset": policy["dataset"], "data_stream.namespace": "so"},
    )
    errors: list[str] = []
    processed = beats.run_processors(policy["processors"], event, errors=errors)
    assert processed is not None and errors == []
    doc, pipeline = beats.to_wire(processed)
    result = simulate(registry, pipeline or policy["pipeline"], doc)
    assert result is not None
    return result


@pytest.mark.parametrize("route", ["zeek", "own"])
def test_security_onion(soc: Path, so_registry: Registry, own: dict[str, Path], route: str) -> None:
    """SO 2.4's agent policy routes by file name; zeek-ml's notices come out typed and tagged alert."""
    policy = beats.parse_so_policy(SO / "elasticfleet/zeek-logs.json", SO / "elasticfleet/defaults.yaml")
    name = "notice" if route == "zeek" else "zeek_ml_notice"
    path = f"/nsm/zeek/logs/current/{name}.log"
    assert beats.input_accepts(policy, path)
    registry = copy.deepcopy(so_registry)
    registry.add("zeek.notice", local_zeek_notice())
    log = ZEEK8 / "notice.json.log" if route == "zeek" else own["json"]
    for line, want in zip(log.read_text().splitlines(), expected_notices(route, "json", own), strict=True):
        event = beats.run_processors(policy["processors"], beats.agent_event(line, path, timestamp=AGENT_TIME))
        assert event is not None and beats.to_wire(event)[1] == f"zeek.{name}"
        doc = _so_ingest(policy, line, path, registry)
        assert "alert" in doc["tags"] and doc["event"]["kind"] == "alert"
        assert "message2" not in doc and "_zeek_ml" not in doc
        assert doc["@timestamp"] == iso_ms(want["ts"]) and doc["notice"]["note"] == "ZeekML::Suspicious_Connection"
        assert doc["notice"]["message"] == want["msg"] and doc["notice"]["sub_message"] == want["sub"]
        assert doc["source"]["ip"] == want["id.orig_h"] and doc["destination"]["port"] == want["id.resp_p"]
        assert doc["rule"]["name"] == f"ZEEK-ML Suspicious connection ({want['zeek_ml.family']})"
        assert doc["event"]["severity_label"] == want["zeek_ml.severity"]
        assert doc["event"]["dataset"] == "zeek.notice"
        assert_typed(doc["zeek_ml"])
    # Without zeek-ml's step SO's own pipelines keep none of it: why the README adds it.
    plain = copy.deepcopy(so_registry)
    plain.add_file(SO / "ingest" / "zeek.notice")
    line = (ZEEK8 / "notice.json.log").read_text().splitlines()[0]
    doc = _so_ingest(policy, line, "/nsm/zeek/logs/current/notice.log", plain)
    assert "zeek_ml" not in doc and "alert" not in doc.get("tags", [])


# --------------------------------------------------------------------------- Splunk


def _splunk(tmp_path: Path, log: Path, name: str, sourcetype: str) -> list[dict[str, Any]]:
    spool = tmp_path / sourcetype.replace(":", "_")
    spool.mkdir()
    dest = spool / name
    shutil.copyfile(log, dest)
    last_ts = max(float(row["ts"]) for row in json_rows(ZEEK8 / "notice.json.log"))
    os.utime(dest, (last_ts + 3600, last_ts + 3600))  # as a live log would be (Splunk's MAX_DAYS_AGO/HENCE)
    inputs = tmp_path / f"inputs-{spool.name}.conf"
    inputs.write_text(f"[monitor://{spool}]\nsourcetype = {sourcetype}\nindex = zeek\n")
    apps = SplunkApps.in_splunk_order([SplunkApp.load(TA_BRO), SplunkApp.load(OURS / "splunk" / "TA-zeek-ml")])
    return index_file(apps, dest, inputs=inputs)


@pytest.mark.parametrize("sensor", SENSORS)
@pytest.mark.parametrize("route", ["zeek", "own"])
def test_splunk(soc: Path, own: dict[str, Path], tmp_path: Path, route: str, sensor: str) -> None:
    """Splunk_TA_bro (Zeek's notice.log) or TA-zeek-ml's sourcetypes (zeek-ml's log): CIM IDS events."""
    if route == "zeek":
        log, name = ZEEK8 / f"notice.{sensor}.log", "notice.log"
        sourcetype, want_st = ("bro", "bro_notice") if sensor == "tsv" else ("bro:json", "bro:notice:json")
    else:
        log, name = own[sensor], "zeek_ml_notice.log"
        sourcetype = want_st = "zeek_ml:notice" if sensor == "tsv" else "zeek_ml:notice:json"
    events = _splunk(tmp_path, log, name, sourcetype)
    wants = expected_notices(route, sensor, own)
    assert len(events) == len(wants) == 2
    for ev, want in zip(events, wants):
        why = explain(ev)
        assert ev["sourcetype"] == want_st, why
        assert ev["_time"] == pytest.approx(float(want["ts"]), abs=1e-6), why
        assert ev["note"] == "ZeekML::Suspicious_Connection" and ev["msg"] == want["msg"], why
        assert ev["eventtype"] == "zeek_ml_notice" or "zeek_ml_notice" in ev["eventtype"], why
        assert {"ids", "attack"} <= set(ev["tag"] if isinstance(ev["tag"], list) else [ev["tag"]]), why
        assert ev["type"] == "alert", why
        assert ev["severity"] == want["zeek_ml.severity"], why
        assert ev["dest"] in (want["id.resp_h"], want.get("dst")), why
        assert ev["zeek_ml_family"] == want["zeek_ml.family"] and ev["zeek_ml_incident"] == want["zeek_ml.incident"]
        assert float(ev["zeek_ml_score"]) == pytest.approx(want["zeek_ml.score"], abs=1e-6), why
        reasons = ev["zeek_ml_reasons"] if isinstance(ev["zeek_ml_reasons"], list) else [ev["zeek_ml_reasons"]]
        assert reasons == want["zeek_ml.reasons"], why
        if route == "own":  # TA-zeek-ml's own sourcetypes give the whole CIM Intrusion Detection set
            assert ev["signature"] == f"ZEEK-ML Suspicious connection ({want['zeek_ml.family']})", why
            assert ev["category"] == want["zeek_ml.family"] and ev["vendor_product"] == "zeek-ml", why
            assert ev["src"] == want["id.orig_h"] and str(ev["dest_port"]) == str(want["p"]), why
            assert ev["ids_type"] == "network" and ev["transport"] == "tcp", why


# --------------------------------------------------------------------------- eve alerts


def test_eve_alerts_validate_against_suricatas_schema(soc: Path, own: dict[str, Path]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SOC / "suricata" / "schema.json").read_text())
    for sensor in SENSORS:
        alerts = json_rows(own[f"{sensor}-eve"])
        assert len(alerts) == 2
        # app_proto where Zeek named the service (the scan's refused connections have none)
        assert [a.get("app_proto") for a in alerts] == ["socks", None]
        for alert in alerts:
            jsonschema.validate(alert, schema)
            assert alert["event_type"] == "alert"
            assert set(alert["flow"]) >= {"pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient"}
            assert {"start", "end"} <= set(alert["flow"])
            assert alert["community_id"].startswith("1:")  # Zeek's conn.log has community_id


def test_eve_alerts_in_elastics_suricata_integration(soc: Path, own: dict[str, Path]) -> None:
    """Elastic's suricata integration fills bytes, packets, duration and protocol from the alert."""
    registry = Registry()
    for name in ("default", "dns", "dns-answer-v1", "dns-answer-v2", "tls"):
        registry.add_file(SURICATA_INT / f"elasticsearch/ingest_pipeline/{name}.yml", name)
    for line in own["json-eve"].read_text().splitlines():
        alert = json.loads(line)
        doc = simulate(registry, "default", {"message": line, "@timestamp": AGENT_TIME})
        assert doc is not None and "error" not in doc, doc and doc.get("error")
        assert doc["event"]["kind"] == "alert" and doc["rule"]["name"] == alert["alert"]["signature"]
        flow = alert["flow"]
        assert doc["network"]["bytes"] == flow["bytes_toserver"] + flow["bytes_toclient"]
        assert doc["network"]["packets"] == flow["pkts_toserver"] + flow["pkts_toclient"]
        assert doc["network"].get("protocol") == alert.get("app_proto") and doc["network"]["transport"] == "tcp"
        assert doc["event"]["duration"] > 0 and doc["source"]["ip"] == alert["src_ip"]
        # Zeek's community_id, carried by the alert, is the one Elastic's community_id processor computes
        assert doc["network"]["community_id"] == alert["community_id"]
        recomputed = simulate(
            registry,
            "default",
            {"message": json.dumps({k: v for k, v in alert.items() if k != "community_id"}), "@timestamp": AGENT_TIME},
        )
        assert recomputed is not None and recomputed["network"]["community_id"] == alert["community_id"]


def test_eve_alerts_in_security_onion(soc: Path, so_registry: Registry, own: dict[str, Path]) -> None:
    """zeek-ml's eve log policy (its own directory): SO's suricata pipelines put the alerts in Alerts."""
    policy = beats.parse_so_policy(OURS / "securityonion" / "zeek-ml-eve-logs.json")
    path = "/nsm/zeek-ml/eve.json"
    assert beats.input_accepts(policy, path) and policy["pipeline"] == "suricata.common"
    # SO's surilogcompress gzips every /nsm/suricata/eve*.json but the newest: never zeek-ml's file.
    assert not beats.glob_matches("/nsm/suricata/eve*.json", path)
    for line in own["json-eve"].read_text().splitlines():
        alert = json.loads(line)
        doc = _so_ingest(policy, line, path, so_registry)
        assert "alert" in doc["tags"] and doc["rule"]["name"] == alert["alert"]["signature"]
        assert doc["event"]["dataset"] == "suricata.alert"
        assert doc["event"]["severity_label"] in ("low", "medium", "high")
        assert doc["_index"] == "logs-suricata.alerts-so"
