"""The SOC ingest emulator (tests/soc) against the upstream pipeline tests.

The ingest definitions are read at run time from ``../shared/data/soc_ingest`` (see its README for
provenance and licences; they are never copied into this repository).  Each validation runs the
upstream test input through the emulator and compares with the upstream expected output; every
field that is ignored is listed with the reason.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, need_shared
from tests.soc import beats, ingest
from tests.soc.ingest import (
    EmulatorLimitation,
    IngestFailure,
    PainlessError,
    Registry,
    UnsupportedScript,
    community_id,
    flatten,
    painless_eval,
    render_mustache,
    simulate,
)

SOC = DATA / "soc_ingest"
ZEEK_INT = SOC / "elastic-integrations" / "zeek-notice"
SURICATA_INT = SOC / "elastic-integrations" / "suricata-eve"
ZEEK_FB = SOC / "elastic-beats" / "zeek-notice"
SO = SOC / "securityonion"
ZEEK_REAL_NOTICE = DATA / "zeek_unlabeled" / "zeek7_real" / "notice.json.log"

# elastic-package's pipeline test harness: test-common-config.yml ("fields") for both packages
HARNESS_TIMESTAMP = "2020-04-28T11:07:58.223Z"


@pytest.fixture(scope="module")
def soc() -> Path:
    return need_shared(SOC)


def _diff(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Differences, types included (3600 vs 3600.0, "443" vs 443 are differences)."""
    if type(actual) is not type(expected):
        return [f"{path or '<root>'}: {actual!r} ({type(actual).__name__}) != {expected!r} ({type(expected).__name__})"]
    if isinstance(actual, dict):
        out = []
        for key in sorted(set(actual) | set(expected)):
            sub = f"{path}.{key}" if path else key
            if key not in actual:
                out.append(f"{sub}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{sub}: unexpected {actual[key]!r}")
            else:
                out.extend(_diff(actual[key], expected[key], sub))
        return out
    if isinstance(actual, list):
        if len(actual) != len(expected):
            return [f"{path}: {actual!r} != {expected!r}"]
        return [d for i, (a, e) in enumerate(zip(actual, expected)) for d in _diff(a, e, f"{path}[{i}]")]
    return [] if actual == expected else [f"{path}: {actual!r} != {expected!r}"]


def _without(doc: dict, paths: list[str]) -> dict:
    """A deep copy of ``doc`` without the given dotted paths (absent ones are fine)."""
    doc = copy.deepcopy(doc)
    for path in paths:
        *parents, leaf = path.split(".")
        node: Any = doc
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return doc


# No GeoIP/ASN database in the emulator (geoip adds nothing): these come from MaxMind test DBs upstream.
GEO_AS = ["source.geo", "source.as", "destination.geo", "destination.as"]


def _pipelines(root: Path) -> dict[str, dict]:
    """Every pipeline file under soc_ingest, by relative path."""
    files = [
        *sorted(root.glob("elastic-integrations/*/elasticsearch/ingest_pipeline/*.yml")),
        *sorted(root.glob("elastic-integrations/zeek-notice/*.yml")),
        root / "elastic-beats" / "zeek-notice" / "ingest" / "pipeline.yml",
        *sorted((root / "securityonion" / "ingest").iterdir()),
    ]
    return {
        str(p.relative_to(root)): ingest.load_pipeline(p)
        for p in files
        if "manifest" not in p.name and p.name != "package-manifest.yml"
    }


# --------------------------------------------------------------------------- coverage of the files


def test_every_if_condition_in_the_files_parses(soc: Path) -> None:
    """Each ``if`` in every pipeline compiles in the Painless subset (and at least one runs cleanly)."""
    conditions = {
        cfg["if"] for pipeline in _pipelines(soc).values() for _, cfg in ingest.iter_processors(pipeline) if "if" in cfg
    }
    assert len(conditions) >= 90
    for condition in conditions:
        ingest.compile_painless(condition)
    # evaluated on an empty document, a condition either yields a boolean or raises PainlessError (NPE)
    for condition in conditions:
        with contextlib.suppress(PainlessError):
            assert isinstance(painless_eval(condition, {}), bool)


def test_every_pipeline_is_fully_emulated(soc: Path) -> None:
    """All processor types/options, scripts and grok patterns used upstream are covered."""
    pipelines = _pipelines(soc)
    assert len(pipelines) >= 12
    problems = {name: ingest.validate_pipeline(p) for name, p in pipelines.items()}
    assert {k: v for k, v in problems.items() if v} == {}
    scripts = [cfg for p in pipelines.values() for t, cfg in ingest.iter_processors(p) if t == "script"]
    assert len(scripts) == len(ingest.PAINLESS_SCRIPTS) == 9


def test_every_js_script_in_so_policies_is_translated(soc: Path) -> None:
    sources = []
    for name in ("zeek-logs.json", "import-zeek-logs.json", "suricata-logs.json", "import-suricata-logs.json"):
        policy = beats.parse_so_policy(
            soc / "securityonion/elasticfleet" / name, soc / "securityonion/elasticfleet/defaults.yaml"
        )
        sources += [p["script"]["source"] for p in policy["processors"] if "script" in p]
    assert len(sources) == 2
    assert {ingest.script_sha256(s) for s in sources} == set(beats.JS_SCRIPTS)


def test_so_common_renders_with_highlander_false(soc: Path) -> None:
    pipeline = ingest.load_pipeline(soc / "securityonion/ingest/common")
    names = [cfg.get("name") for t, cfg in ingest.iter_processors(pipeline) if t == "pipeline"]
    assert names == ["global@custom"]
    with_highlander = ingest.load_pipeline(soc / "securityonion/ingest/common", {"HIGHLANDER": True})
    assert [c.get("name") for t, c in ingest.iter_processors(with_highlander) if t == "pipeline"] == [
        "ecs",
        "global@custom",
    ]


# --------------------------------------------------------------------------- Elastic integration: zeek notice


@pytest.fixture(scope="module")
def zeek_registry(soc: Path) -> Registry:
    registry = Registry()
    registry.add_file(ZEEK_INT / "default.yml", "default")
    registry.add_file(ZEEK_INT / "third-party.yml", "third-party")
    return registry


def _zeek_case(line: str) -> dict:
    # test-common-config.yml of the zeek package (not copied) — the expected file shows what it set:
    # event.created is the harness @timestamp and tags is ["preserve_original_event"]
    return {"message": line, "@timestamp": HARNESS_TIMESTAMP, "tags": ["preserve_original_event"]}


@pytest.mark.parametrize("index", range(4))
def test_elastic_zeek_notice_matches_upstream(soc: Path, zeek_registry: Registry, index: int) -> None:
    """zeek 2.16.0 default.yml on test-notice.log == test-notice.log-expected.zeek-2.16.0.json entries 1-4.

    Ignored: ``source/destination.geo`` and ``.as`` only (no GeoIP database).  Entry 5 has no input
    here (README: a Splunk-style line handled by third-party.yml).
    """
    lines = (ZEEK_INT / "_dev/test/pipeline/test-notice.log").read_text().splitlines()
    expected = json.loads((ZEEK_INT / "_dev/test/pipeline/test-notice.log-expected.zeek-2.16.0.json").read_text())
    assert len(lines) == 4 and len(expected["expected"]) == 5
    result = simulate(zeek_registry, "default", _zeek_case(lines[index]))
    assert result is not None
    assert _diff(_without(result, GEO_AS), _without(expected["expected"][index], GEO_AS)) == []


def test_elastic_zeek_notice_rejects_tsv_and_drops_tsless_json(zeek_registry: Registry) -> None:
    """What the integration does with lines that are not Zeek JSON (relevant to zeek-ml's TSV output)."""
    tsv = "1320435875.879278\t-\t-\t-\t-\t-\tSSH::Password_Guessing\tmsg"
    result = simulate(zeek_registry, "default", _zeek_case(tsv))
    assert result is not None
    assert result["event"]["kind"] == "pipeline_error"
    assert result["event"]["original"] == tsv
    assert result["error"]["message"] == [
        f"The input {tsv} is not valid JSON and the strict_json_parsing parameter is true"
    ]
    header = simulate(zeek_registry, "default", _zeek_case("#fields\tts\tuid"))
    assert header is not None and header["event"]["kind"] == "pipeline_error"
    # valid JSON without ts: "Drop if no timestamp (invalid json)"
    assert simulate(zeek_registry, "default", _zeek_case('{"note": "X::Y"}')) is None


def test_elastic_zeek_third_party_entry_5(zeek_registry: Registry) -> None:
    """Entry 5 of the 2.16.0 expected file, from a *reconstructed* Splunk search result.

    The input line is not in this copy of test-notice.log; the expected output fixes every input
    field that reaches ``_source`` (``_raw`` = event.original, ``host``, ``source``).  ``_cd``,
    ``_indextime`` and ``_time`` only feed the ``_id`` fingerprint, which ``_source`` does not show.
    Ignored: geo/as (no GeoIP DB).
    """
    expected = json.loads((ZEEK_INT / "_dev/test/pipeline/test-notice.log-expected.zeek-2.16.0.json").read_text())
    want = expected["expected"][4]
    result_field = {
        "_cd": "1:2",
        "_indextime": "1551393388",
        "_raw": want["event"]["original"],
        "_time": "2019-02-28T22:36:28.426+00:00",
        "host": want["host"]["name"],
        "source": want["log"]["file"]["path"],
    }
    result = simulate(zeek_registry, "default", _zeek_case(json.dumps({"result": result_field})))
    assert result is not None
    source, metadata = ingest.split_metadata(result)
    assert set(metadata) == {"_id"}  # fingerprint target_field '_id' (metadata, returned top-level)
    assert _diff(_without(source, GEO_AS), _without(want, GEO_AS)) == []


def test_elastic_zeek_third_party_on_failure_message(zeek_registry: Registry) -> None:
    """third-party.yml's on_failure template (a mustache section on the failing processor's tag)."""
    doc = {"_temp_": {"result": {"_raw": "not json", "host": "h", "source": "/x/notice.log"}}}
    result = simulate(zeek_registry, "third-party", doc)
    assert result is not None and result["event"]["kind"] == "pipeline_error"
    prefix = "Processor 'json' with tag 'json_event_original_to__temp__7408cf8c' in pipeline 'third-party'"
    assert result["error"]["message"][0].startswith(prefix + " failed with message '")


# --------------------------------------------------------------------------- Filebeat zeek module: notice

# Keys the Filebeat test harness (filebeat/tests/system/test_modules.py, clean_keys) deletes before
# comparing, and that the emulator does produce; each with the reason.
FILEBEAT_HARNESS_DELETES = {
    "ecs.version": "clean_keys: ECS versions change for any ECS release (config sets 1.12.0)",
    "event.created": "clean_keys: the create timestamps are always new ('{{@timestamp}}')",
    "event.ingested": "clean_keys: the create timestamps are always new ('{{_ingest.timestamp}}')",
    "log.file.path": "clean_keys: source path differs for each run",
}
# Added by Filebeat's module loader (fileset input config), not by these files: supplied as fields.
FILEBEAT_MODULE_FIELDS = {
    "event.module": "zeek",
    "event.dataset": "zeek.notice",
    "fileset.name": "notice",
    "service.type": "zeek",
}


def test_filebeat_zeek_notice_matches_upstream(soc: Path) -> None:
    """config/notice.yml processors + ingest/pipeline.yml on notice-json.log == notice-json.log-expected.json.

    Ignored: the harness's deleted keys (``FILEBEAT_HARNESS_DELETES``) and geo/as (no GeoIP DB).
    Lists are compared sorted, as the harness sorts them (``objects[k][key].sort(key=str)``).
    """
    variables = beats.manifest_vars(ZEEK_FB / "manifest.yml", os_name="linux")
    assert variables["internal_networks"] == ["private"]
    path = variables["paths"][0]
    config = beats.render_agent_template(ZEEK_FB / "config/notice.yml", variables)
    assert config["json.keys_under_root"] is False and config["paths"] == [path]
    registry = Registry()
    registry.add_file(ZEEK_FB / "ingest/pipeline.yml", "pipeline")
    expected = json.loads((ZEEK_FB / "test/notice-json.log-expected.json").read_text())
    events = list(
        beats.agent_events(
            (ZEEK_FB / "test/notice-json.log").read_text(),
            path,
            tags=config["tags"],
            json_under="json",
            timestamp="2021-01-01T00:00:00.000Z",
            fields=FILEBEAT_MODULE_FIELDS,
        )
    )
    assert len(events) == len(expected) == 2
    for event, want in zip(events, expected):
        processed = beats.run_processors(config["processors"], event)
        assert processed is not None
        doc, pipeline = beats.to_wire(processed)
        assert pipeline is None  # the module's pipeline is set on the input, not per event
        result = simulate(registry, "pipeline", doc, ingest_timestamp="2021-01-01T00:00:01.000Z")
        assert result is not None and "error" not in result
        got = flatten(result)
        for key in FILEBEAT_HARNESS_DELETES:
            assert key in got
            del got[key]
        got = {k: sorted(v, key=str) if isinstance(v, list) else v for k, v in got.items()}
        want = {k: v for k, v in want.items() if not any(k.startswith(p + ".") for p in GEO_AS)}
        got = {k: v for k, v in got.items() if not any(k.startswith(p + ".") for p in GEO_AS)}
        assert _diff(got, want) == []


# --------------------------------------------------------------------------- Elastic integration: suricata eve


@pytest.fixture(scope="module")
def suricata_registry(soc: Path) -> Registry:
    registry = Registry()
    for name in ("default", "dns", "dns-answer-v1", "dns-answer-v2", "tls"):
        registry.add_file(SURICATA_INT / f"elasticsearch/ingest_pipeline/{name}.yml", name)
    return registry


def _harness_fields(soc: Path, *configs: str) -> dict:
    """The ``fields`` elastic-package adds, from the test config files (later ones win)."""
    fields: dict = {}
    for config in configs:
        fields.update(ingest.load_yaml((SURICATA_INT / "_dev/test/pipeline" / config).read_text()).get("fields", {}))
    return fields


def test_elastic_suricata_eve_metadata_matches_upstream(soc: Path, suricata_registry: Registry) -> None:
    """default.yml on test-eve-metadata.log == its expected file.

    Ignored: ``ecs.version`` (the pipeline is ECS 8.11.0, the expected file 8.3.0 — README),
    ``source/destination.geo``/``.as`` (no GeoIP DB) and ``user_agent`` (no regex DB; the harness
    also treats ``user_agent.version`` as dynamic).
    """
    fields = _harness_fields(soc, "test-common-config.yml")
    assert fields == {"@timestamp": HARNESS_TIMESTAMP, "tags": ["preserve_original_event"]}
    line = (SURICATA_INT / "_dev/test/pipeline/test-eve-metadata.log").read_text().strip()
    expected = json.loads((SURICATA_INT / "_dev/test/pipeline/test-eve-metadata.log-expected.json").read_text())
    result = simulate(suricata_registry, "default", {"message": line, **fields})
    assert result is not None
    assert result["ecs"]["version"] == "8.11.0" and expected["expected"][0]["ecs"]["version"] == "8.3.0"
    ignored = ["ecs.version", "user_agent", *GEO_AS]
    assert _diff(_without(result, ignored), _without(expected["expected"][0], ignored)) == []


def test_elastic_suricata_eve_small_has_no_pipeline_error(soc: Path, suricata_registry: Registry) -> None:
    """Every line of test-eve-small.log goes through default.yml (+dns, tls) without a failure.

    The harness config for this file is test-common-config.yml (there is no file-specific one); the
    ``forwarded`` tag of test-eve-alerts.log-config.yml is tried on one line for the observer fields.
    """
    fields = _harness_fields(soc, "test-common-config.yml")
    lines = (SURICATA_INT / "_dev/test/pipeline/test-eve-small.log").read_text().splitlines()
    assert len(lines) == 12
    kinds = []
    for line in lines:
        result = simulate(suricata_registry, "default", {"message": line, **fields})
        assert result is not None
        assert result["event"]["kind"] != "pipeline_error", result.get("error")
        assert "error" not in result and "observer" not in result
        kinds.append((result["suricata"]["eve"]["event_type"], result["event"]["kind"]))
    assert ("alert", "alert") in kinds and ("stats", "metric") in kinds
    dns = simulate(suricata_registry, "default", {"message": lines[4], **fields})
    assert dns is not None
    assert dns["dns"]["resolved_ip"] == ["175.16.199.1"]
    assert dns["dns"]["question"]["registered_domain"] == "google.com"
    assert dns["related"]["ip"] == ["175.16.199.1", "192.168.86.1", "192.168.86.85"]  # dns.yml runs first
    forwarded = _harness_fields(soc, "test-common-config.yml", "test-eve-alerts.log-config.yml")
    alert = simulate(suricata_registry, "default", {"message": lines[1], **forwarded})
    assert alert is not None and alert["tags"] == ["forwarded", "preserve_original_event"]
    assert alert["observer"] == {"product": "Suricata", "type": "ids", "vendor": "OISF"}
    assert alert["rule"] == {
        "category": "Potential Corporate Privacy Violation",
        "id": "2024833",
        "name": "ET POLICY Observed IP Lookup Domain (l2 .io in TLS SNI)",
    }
    assert alert["event"]["severity"] == 1 and alert["event"]["type"] == ["allowed"]


# --------------------------------------------------------------------------- Security Onion 2.4


@pytest.fixture(scope="module")
def so_registry(soc: Path) -> Registry:
    registry = Registry()
    for name in ("zeek.notice", "zeek.common", "common", "suricata.common", "suricata.alert", "common.nids"):
        registry.add_file(SO / "ingest" / name)
    return registry


@pytest.fixture(scope="module")
def so_zeek_policy(soc: Path) -> dict:
    return beats.parse_so_policy(SO / "elasticfleet/zeek-logs.json", SO / "elasticfleet/defaults.yaml")


def _so_agent(policy: dict, line: str, path: str) -> tuple[dict, str | None]:
    """Elastic Agent side: a logfile event, SO's processors, then what the output sends."""
    event = beats.agent_event(
        line,
        path,
        tags=policy["tags"],
        timestamp="2024-06-01T00:00:00.000Z",
        # added by Elastic Agent for the data stream, not by the SO files
        fields={"data_stream.type": "logs", "data_stream.dataset": policy["dataset"], "data_stream.namespace": "so"},
    )
    errors: list[str] = []
    processed = beats.run_processors(policy["processors"], event, errors=errors)
    assert processed is not None and errors == []
    return beats.to_wire(processed)


def test_so_zeek_notice_real_line(so_registry: Registry, so_zeek_policy: dict) -> None:
    """A real Zeek 7 JSON notice through SO's agent processors, zeek.notice -> zeek.common -> common."""
    need_shared(ZEEK_REAL_NOTICE)
    path = "/nsm/zeek/logs/current/notice.log"
    assert beats.input_accepts(so_zeek_policy, path)
    line = ZEEK_REAL_NOTICE.read_text().splitlines()[0]
    doc, pipeline = _so_agent(so_zeek_policy, line, path)
    assert pipeline == "zeek.notice"
    result = simulate(so_registry, pipeline, doc)
    assert result is not None and "error" not in result
    assert result["@timestamp"] == "2015-03-30T14:45:13.139Z"  # ts 1427726713.139576, UNIX, ms truncated
    assert result["event"]["ingested"] == "2024-06-01T00:00:00.000Z"  # the agent's @timestamp, renamed
    assert result["notice"]["note"] == "SSH::Password_Guessing"
    assert result["event"]["dataset"] == "zeek.notice" and result["tags"] == ["notice"]
    assert "message2" not in result
    # SO maps only id.orig_h/id.resp_p to source.ip/destination.port; this notice has no conn id, and
    # its src field is not mapped (it is dropped with message2), so there is no source.ip at all.
    assert "source" not in result and "destination" not in result


def test_so_zeek_notice_with_conn_id(so_registry: Registry, so_zeek_policy: dict) -> None:
    """A notice with id.* fields (line 4 of the elastic test-notice.log) gets source.ip / destination.port."""
    line = (ZEEK_INT / "_dev/test/pipeline/test-notice.log").read_text().splitlines()[3]
    doc, pipeline = _so_agent(so_zeek_policy, line, "/nsm/zeek/logs/current/notice.log")
    result = simulate(so_registry, pipeline or "", doc)
    assert result is not None
    assert result["@timestamp"] == "2021-03-30T09:52:09.601Z"
    assert result["source"] == {"ip": "10.156.0.2", "port": 48818}
    assert result["destination"] == {"ip": "89.160.20.156", "port": 443}
    assert result["client"]["port"] == "48818"  # set from a '{{source.port}}' template: a string
    assert result["network"]["community_id"] == "1:Dff30r1qWk7lVgWVwXvU4AAuxU8="  # same as the elastic expected
    assert result["notice"]["note"] == "SSL::Invalid_Server_Cert" and "message2" not in result


def test_a_sensors_name_reaches_the_soc_fields(
    so_registry: Registry, so_zeek_policy: dict, zeek_registry: Registry
) -> None:
    """Notices of an archive of several sensors name their sensor in peer_descr (score --sensor-from): Security
    Onion files it as notice.peer_description, Elastic's zeek integration as zeek.notice.peer_descr."""
    from tests.conftest import SAMPLE_LOGS, run_cli

    r = run_cli(
        "score", str(SAMPLE_LOGS / "001-zeek-scenario-malicious.labeled-conn.log.gz"),
        str(SAMPLE_LOGS / "ssh_sshguess.conn.log"), "--sensor-from", r"sample_logs/([a-z0-9]+)[-_]",
        "--format", "json", "-o", "-", "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[0]
    assert json.loads(line)["peer_descr"] == "001"
    doc, pipeline = _so_agent(so_zeek_policy, line, "/nsm/zeek/logs/current/notice.log")
    result = simulate(so_registry, pipeline or "", doc)
    assert result is not None and "error" not in result
    assert result["notice"]["peer_description"] == "001"
    elastic = simulate(zeek_registry, "default", _zeek_case(line))
    assert elastic is not None and elastic["zeek"]["notice"]["peer_descr"] == "001"


def test_so_zeek_ml_log_pipeline_name(so_zeek_policy: dict) -> None:
    """``/nsm/zeek/logs/current/zeek-ml.log`` -> ``@metadata.pipeline`` = ``zeek.zeek-ml``.

    The policy's dissect sets ``trim_chars: ".log"`` without ``trim_values``; in Beats trimming is off
    unless ``trim_values`` is left/right/all (default ``none``), so the value is not trimmed (with
    trimming on it would be ``zeek-m``: see test_beats_dissect_trim_chars).  There is no
    ``zeek.zeek-ml`` ingest pipeline in SO, so such a file would need one (or a rename).
    """
    path = "/nsm/zeek/logs/current/zeek-ml.log"
    assert beats.input_accepts(so_zeek_policy, path)
    event = beats.run_processors(so_zeek_policy["processors"], beats.agent_event("{}", path))
    assert event is not None
    assert event["@metadata"] == {"pipeline": "zeek.zeek-ml"}
    assert event["pipeline"] == "zeek-ml"
    assert event["event"] == {"category": "network", "module": "zeek"}
    assert "tags" not in event  # the ICS add_tags condition does not match


def test_so_zeek_exclude_files(so_zeek_policy: dict) -> None:
    """exclude_files is one unanchored alternation: any path containing e.g. 'stats' is skipped."""
    assert so_zeek_policy["exclude_files"][0].endswith("stderr|stdout.log$")
    assert not beats.input_accepts(so_zeek_policy, "/nsm/zeek/logs/current/stats.log")
    assert not beats.input_accepts(so_zeek_policy, "/nsm/zeek/logs/current/zeek-ml-stats.log")
    assert not beats.input_accepts(so_zeek_policy, "/nsm/zeek/logs/current/sub/notice.log")  # * stays in one dir
    assert beats.input_accepts(so_zeek_policy, "/nsm/zeek/logs/current/conn.log")


def test_so_suricata_alert_sets_index(soc: Path, so_registry: Registry) -> None:
    """suricata-logs.json -> suricata.common -> suricata.alert (sets _index) -> common.nids -> common."""
    policy = beats.parse_so_policy(SO / "elasticfleet/suricata-logs.json")
    assert policy["pipeline"] == "suricata.common"
    line = (SURICATA_INT / "_dev/test/pipeline/test-eve-small.log").read_text().splitlines()[1]
    doc, pipeline = _so_agent(policy, line, "/nsm/suricata/eve-2024-06-01-00:00.json")
    assert pipeline is None and beats.input_accepts(policy, "/nsm/suricata/eve-2024-06-01-00:00.json")
    result = simulate(so_registry, policy["pipeline"], doc)
    assert result is not None
    source, metadata = ingest.split_metadata(result)
    assert metadata == {"_index": "logs-suricata.alerts-so"}
    assert source["rule"]["name"] == "ET POLICY Observed IP Lookup Domain (l2 .io in TLS SNI)"
    assert source["rule"]["uuid"] == "2024833" and source["rule"]["ruleset"] == "Emerging Threats"
    assert source["rule"]["reference"] == "https://community.emergingthreats.net"
    assert source["event"]["severity"] == 3 and source["event"]["severity_label"] == "high"
    # suricata.alert sets tags to the string "alert"; common appends "{{dataset_tag_temp.1}}" = "alert" again
    assert source["event"]["dataset"] == "suricata.alert" and source["tags"] == ["alert", "alert"]
    assert source["@timestamp"] == "2018-07-05T19:07:20.910Z"


# --------------------------------------------------------------------------- units: Painless


def test_painless_null_safe_and_npe() -> None:
    ctx: dict[str, Any] = {"zeek": {"notice": {"p": 443}}, "destination": {"port": 443}, "tags": ["a"]}
    assert painless_eval("ctx.zeek?.notice?.p == ctx.destination?.port", ctx) is True
    assert painless_eval("ctx.source?.address == null", ctx) is True
    assert painless_eval("ctx?._temp_?.ts == null", ctx) is True
    with pytest.raises(PainlessError, match="NullPointerException"):
        painless_eval("ctx.source.address == null", ctx)
    with pytest.raises(PainlessError, match="NullPointerException"):
        painless_eval("ctx.rule?.uuid < 1000000", ctx)  # null < int
    assert painless_eval("ctx.tags == null || !(ctx.tags.contains('preserve_original_event'))", ctx) is True
    assert painless_eval("ctx['zeek']['notice'].p >= 443 && ctx.zeek.notice.p instanceof Integer", ctx) is True
    assert painless_eval("ctx.event?.dataset != null && !ctx.event.dataset.contains('.')", {"event": {"dataset": "x"}})
    assert painless_eval('ctx.a == 1.0 && ctx.b != "1"', {"a": 1, "b": 1}) is True  # numeric promotion
    assert painless_eval("ctx.a == true", {"a": 1}) is False
    with pytest.raises(PainlessError):
        painless_eval("ctx.a.b", {"a": "text"})  # no field access on a String
    with pytest.raises(EmulatorLimitation):
        painless_eval("ctx.a.matches('x')", {})


def test_if_failure_goes_to_ignore_failure_and_on_failure() -> None:
    registry = Registry(
        {
            "p": {
                "processors": [
                    {"set": {"if": "ctx.a.b == 1", "field": "x", "value": 1, "ignore_failure": True}},
                    {
                        "set": {
                            "if": "ctx.a.b == 1",
                            "field": "y",
                            "value": 1,
                            "tag": "t1",
                            "on_failure": [{"set": {"field": "why", "value": "{{_ingest.on_failure_processor_tag}}"}}],
                        }
                    },
                    {"set": {"if": "ctx.a.b == 1", "field": "z", "value": 1}},
                    {"set": {"field": "never", "value": 1}},
                ],
                "on_failure": [
                    {"set": {"field": "err", "value": "{{ _ingest.on_failure_processor_type }}:{{_ingest.pipeline}}"}}
                ],
            }
        }
    )
    result = simulate(registry, "p", {})
    assert result == {"why": "t1", "err": "set:p"}
    with pytest.raises(IngestFailure):
        simulate(Registry({"q": {"processors": [{"set": {"if": "ctx.a.b", "field": "x", "value": 1}}]}}), "q", {})


def test_unknown_script_is_never_swallowed() -> None:
    registry = Registry(
        {"p": {"processors": [{"script": {"source": "ctx.x = 1;\nctx.y = 2;", "ignore_failure": True}}]}}
    )
    with pytest.raises(UnsupportedScript, match=r"ctx\.x = 1;"):
        simulate(registry, "p", {})


# --------------------------------------------------------------------------- units: templates, values


def test_mustache() -> None:
    model = {
        "a": {"b": 'say "hi"', "n": 3600.0, "i": 48818, "l": ["x", "y"]},
        "_ingest": {"on_failure_processor_tag": None, "pipeline": "p"},
    }
    assert render_mustache("{{a.b}}", model) == 'say \\"hi\\"'  # application/json escaping
    assert render_mustache("{{{a.b}}}", model) == 'say "hi"'
    assert render_mustache("{{ a.b }}", model, escape="plain") == 'say "hi"'
    assert render_mustache("{{a.l.1}}|{{a.l}}|{{a.n}}|{{a.i}}|{{missing}}", model) == "y|[x, y]|3600.0|48818|"
    tag = "_ingest.on_failure_processor_tag"
    section = f"{{{{#{tag}}}}}tag '{{{{{{ {tag} }}}}}}' {{{{/{tag}}}}}in '{{{{{{_ingest.pipeline}}}}}}'"
    assert section == "{{#" + tag + "}}tag '{{{ " + tag + " }}}' {{/" + tag + "}}in '{{{_ingest.pipeline}}}'"
    assert render_mustache(section, model) == "in 'p'"
    model["_ingest"]["on_failure_processor_tag"] = "t"
    assert render_mustache(section, model) == "tag 't' in 'p'"


def test_java_renderings() -> None:
    assert [ingest.java_str(v) for v in (3600.0, 1.320435875879278e9, 1e-4, 1e7, True, None)] == [
        "3600.0",
        "1.320435875879278E9",
        "1.0E-4",
        "1.0E7",
        "true",
        "null",
    ]


def _run(processors: list, source: dict) -> dict | None:
    return simulate(Registry({"p": {"processors": processors}}), "p", source)


def test_date_processor_rendering() -> None:
    result = _run(
        [
            {"date": {"field": "a", "formats": ["UNIX"]}},
            {"date": {"field": "b", "target_field": "b2", "formats": ["ISO8601"]}},
            {"date": {"field": "c", "target_field": "c2", "formats": ["yyyy_MM_dd", "yyyy-MM-dd"]}},
            {"date": {"field": "b", "target_field": "b3", "formats": ["ISO8601"], "timezone": "Europe/Paris"}},
        ],
        {"a": 1320435875.879278, "b": "2021-01-27T01:28:11.488362+0100", "c": "2019-06-01"},
    )
    assert result is not None
    assert result["@timestamp"] == "2011-11-04T19:44:35.879Z"
    assert result["b2"] == "2021-01-27T00:28:11.488Z"
    assert result["c2"] == "2019-06-01T00:00:00.000Z"
    assert result["b3"] == "2021-01-27T01:28:11.488+01:00"
    with pytest.raises(IngestFailure, match=r"unable to parse date \[nope\]"):
        _run([{"date": {"field": "a", "formats": ["UNIX", "ISO8601"]}}], {"a": "nope"})


def test_append_rename_dot_expander_semantics() -> None:
    result = _run(
        [
            {"append": {"field": "s", "value": "x", "allow_duplicates": False}},  # scalar equal: unchanged
            {"append": {"field": "t", "value": ["y", "{{{s}}}"]}},  # scalar -> list
            {"append": {"field": "new", "value": "v"}},
            {"rename": {"field": "id.orig_h", "target_field": "src", "ignore_missing": True}},  # not reachable
            {"dot_expander": {"field": "id.orig_h"}},
            {"rename": {"field": "id.orig_h", "target_field": "src"}},
        ],
        {"s": "x", "t": "x", "id.orig_h": "10.0.0.1"},
    )
    assert result == {"s": "x", "t": ["x", "y", "x"], "new": ["v"], "id": {}, "src": "10.0.0.1"}
    with pytest.raises(IngestFailure, match=r"field \[b\] already exists"):
        _run([{"rename": {"field": "a", "target_field": "b"}}], {"a": 1, "b": 2})


def test_convert_and_json_types() -> None:
    result = _run(
        [
            {"json": {"field": "m", "target_field": "j"}},
            {"convert": {"field": "j.f", "target_field": "s", "type": "string"}},
            {"convert": {"field": "j.n", "target_field": "i", "type": "integer"}},
            {"convert": {"field": "j.q", "target_field": "fl", "type": "float"}},
            {"convert": {"field": "j.l", "type": "long"}},
        ],
        {"m": '{"f": 1805461738637437, "n": "443", "q": "1.1", "l": ["1", "2"]}'},
    )
    assert result is not None
    assert result["s"] == "1805461738637437" and result["i"] == 443 and result["fl"] == 1.1
    assert result["j"]["l"] == [1, 2]
    with pytest.raises(IngestFailure, match="strict_json_parsing"):
        _run([{"json": {"field": "m"}}], {"m": '{"a": 1} trailing'})
    with pytest.raises(IngestFailure, match="JsonParseException"):
        _run([{"json": {"field": "m"}}], {"m": '{"a": 1, "a": 2}'})  # duplicate keys are rejected


# --------------------------------------------------------------------------- units: community id

# From corelight/community-id-spec baseline/baseline_deflt.json and baseline_seed1.json
# (ICMP rows: sport = type, dport = code as the spec's baseline lists them).
COMMUNITY_ID_VECTORS = [
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, 0, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (
        6,
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        "2607:f8b0:400c:c03::1a",
        63943,
        25,
        0,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.1", "192.168.0.89", 0, 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "10.0.0.1", "10.0.0.2", 11, 0, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM="),
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 136, 0, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 135, 136, 0, "1:zavyT/cezQr1fmImYCwYnMXbgck="),
    (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0, 0, "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="),
    (46, "10.1.12.1", "10.1.12.2", None, None, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, 1, "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, 1, "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
]


@pytest.mark.parametrize(("proto", "src", "dst", "sport", "dport", "seed", "expected"), COMMUNITY_ID_VECTORS)
def test_community_id_spec_vectors(
    proto: int, src: str, dst: str, sport: int | None, dport: int | None, seed: int, expected: str
) -> None:
    assert community_id(src, dst, proto, sport, dport, seed=seed) == expected


def test_community_id_processors() -> None:
    tcp = {"source": {"ip": "128.232.110.120", "port": 34855}, "destination": {"ip": "66.35.250.204", "port": 80}}
    tcp["network"] = {"transport": "TCP"}
    result = _run([{"community_id": {}}], tcp)
    assert result is not None and result["network"]["community_id"] == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    icmp = {"source": {"ip": "192.168.0.89"}, "destination": {"ip": "192.168.0.1"}, "network": {"iana_number": 1}}
    icmp["icmp"] = {"type": 8, "code": 0}
    result = _run([{"community_id": {"target_field": "cid"}}], icmp)
    assert result is not None and result["cid"] == "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
    assert _run([{"community_id": {}}], {"source": {"ip": "10.0.0.1"}}) == {"source": {"ip": "10.0.0.1"}}
    event = beats.run_processors([{"community_id": None}], tcp)
    assert event is not None and event["network"]["community_id"] == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


# --------------------------------------------------------------------------- units: Beats


def test_beats_dissect_trim_chars() -> None:
    """trim_chars removes any of its characters from both ends, but only when trim_values enables it."""
    tokenizer = {"tokenizer": "/nsm/zeek/logs/current/%{pipeline}.log", "field": "log.file.path", "target_prefix": ""}
    event = beats.agent_event("x", "/nsm/zeek/logs/current/zeek-ml.log")
    plain = beats.run_processors([{"dissect": {**tokenizer, "trim_chars": ".log"}}], event)
    trimmed = beats.run_processors([{"dissect": {**tokenizer, "trim_chars": ".log", "trim_values": "all"}}], event)
    right = beats.run_processors([{"dissect": {**tokenizer, "trim_chars": "ez", "trim_values": "right"}}], event)
    assert plain is not None and plain["pipeline"] == "zeek-ml"
    assert trimmed is not None and trimmed["pipeline"] == "zeek-m"  # 'l' is in ".log"
    assert right is not None and right["pipeline"] == "zeek-ml"
    errors: list[str] = []
    failed = beats.run_processors([{"dissect": tokenizer}], beats.agent_event("x", "/var/log/x.log"), errors=errors)
    assert failed is not None and failed["log"]["flags"] == ["dissect_parsing_error"] and len(errors) == 1


def test_beats_field_access_and_rename() -> None:
    event = {"json": {"id.orig_h": "10.0.0.1", "src": "10.0.0.1"}}
    out = beats.run_processors(
        [
            {
                "rename": {
                    "fields": [
                        {"from": "json", "to": "zeek.notice"},
                        {"from": "zeek.notice.id.orig_h", "to": "source.address"},  # literal dotted key found
                        {"from": "zeek.notice.src", "to": "source.address"},  # target exists: error, skipped
                    ],
                    "ignore_missing": True,
                    "fail_on_error": False,
                }
            },
            {"add_fields": {"target": "", "fields": {"ecs.version": "1.12.0"}}},
            {"add_tags": {"tags": "ics", "when": {"regexp": {"zeek.notice.src": "^10\\."}}}},
        ],
        event,
    )
    assert out == {
        "zeek": {"notice": {"src": "10.0.0.1"}},
        "source": {"address": "10.0.0.1"},
        "ecs": {"version": "1.12.0"},
        "tags": ["ics"],
    }
    rolled_back = beats.run_processors([{"rename": {"fields": [{"from": "a", "to": "b"}]}}], {"a": 1, "b": 2})
    assert rolled_back is not None and rolled_back["a"] == 1 and "error" in rolled_back


def test_beats_json_input_and_wire() -> None:
    event = beats.agent_event('{"suppress_for": 3600.0, "ts": 1.5}', "/p", json_under="json", offset=7)
    assert event["json"] == {"suppress_for": 3600.0, "ts": 1.5} and "message" not in event
    assert event["log"] == {"offset": 7, "file": {"path": "/p"}}
    doc, pipeline = beats.to_wire({**event, "@metadata": {"pipeline": "x"}})
    assert doc["json"] == {"suppress_for": 3600, "ts": 1.5} and pipeline == "x" and "@metadata" not in doc
    assert type(beats.to_wire({"v": 1234567.0})[0]["v"]) is float  # %g: 1.234567e+06 stays a double
    bad = beats.agent_event("#fields\tts", "/p", json_under="json", add_error_key=True)
    assert bad["message"] == "#fields\tts" and bad["json"]["error"]["type"] == "json"
    assert "json" not in beats.agent_event("not json", "/p", json_under="json")


def test_beats_templates(soc: Path) -> None:
    """elastic-package Handlebars (Fleet's contains helper) and the Filebeat Go template."""
    variables = beats.manifest_vars(ZEEK_INT / "package-manifest.yml", ZEEK_INT / "manifest.yml", input_type="logfile")
    config = beats.render_agent_template(ZEEK_INT / "agent/stream/log.yml.hbs", variables)
    assert config["paths"] == [
        "/var/log/bro/current/notice.log",
        "/opt/zeek/logs/current/notice.log",
        "/usr/local/var/spool/zeek/notice.log",
    ]
    assert config["exclude_files"] == [".gz$"] and config["json.keys_under_root"] is False
    # this old template calls {{#contains tags "forwarded"}} (arguments swapped for Fleet's
    # containsHelper(item, list)), so publisher_pipeline.disable_host is never rendered
    assert "publisher_pipeline.disable_host" not in config
    suricata = beats.render_agent_template(
        SURICATA_INT / "agent/stream/log.yml.hbs", beats.manifest_vars(SURICATA_INT / "manifest.yml")
    )
    assert suricata["publisher_pipeline.disable_host"] is True
    assert suricata["processors"] == [{"add_observer_metadata": None}]
    fb = beats.render_agent_template(
        ZEEK_FB / "config/notice.yml", {"paths": ["/a/notice.log"], "tags": ["forwarded"], "internal_networks": []}
    )
    assert fb["publisher_pipeline.disable_host"] is True and fb["tags"] == ["forwarded"]
    assert not any("add_network_direction" in p for p in fb["processors"])
    assert beats.glob_matches("/var/log/**/eve*.json", "/var/log/a/b/eve-1.json")
    assert not beats.glob_matches("/var/log/*.json", "/var/log/a/eve.json")
    assert beats.excluded("/var/log/bro/current/notice.log.gz", [".gz$"])


def test_processor_doc_examples() -> None:
    """The worked examples of the Elasticsearch reference (fingerprint, registered_domain, dissect)."""
    user = {"last_name": "Smith", "first_name": "John", "date_of_birth": "1980-01-15", "is_active": True}
    result = _run([{"fingerprint": {"fields": ["user"]}}], {"user": user})
    assert result is not None and result["fingerprint"] == "WbSUPW4zY1PBPehh2AA/sSxiRjw="
    result = _run([{"registered_domain": {"field": "fqdn", "target_field": "url"}}], {"fqdn": "www.example.ac.uk"})
    assert result is not None
    assert result["url"] == {
        "subdomain": "www",
        "registered_domain": "example.ac.uk",
        "top_level_domain": "ac.uk",
        "domain": "www.example.ac.uk",
    }
    pattern = '%{clientip} %{ident} %{auth} [%{@timestamp}] "%{verb} %{request} HTTP/%{httpversion}" %{status} %{size}'
    request = "/english/venues/cities/images/montpellier/18.gif"
    message = f'1.2.3.4 - - [30/Apr/1998:22:00:52 +0000] "GET {request} HTTP/1.0" 200 3171'
    result = _run([{"dissect": {"field": "message", "pattern": pattern}}], {"message": message})
    assert result is not None
    assert {k: v for k, v in result.items() if k != "message"} == {
        "clientip": "1.2.3.4",
        "ident": "-",
        "auth": "-",
        "@timestamp": "30/Apr/1998:22:00:52 +0000",
        "verb": "GET",
        "request": request,
        "httpversion": "1.0",
        "status": "200",
        "size": "3171",
    }
