"""Site calibration (zeek_ml/calibrate.py): determinism, JSON schema, and the CLI end to end."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import ROOT, SAMPLE_LOGS, run_cli
from zeek_ml.model.conn_model import load_model
from zeek_ml.notices.profile import PATTERN_FIELDS, PROFILE_FORMAT, ProfileError, SiteProfile
from zeek_ml.services.calibrate import calibrate_logs

RITA = "zeek_unlabeled/more/rita"


def _rita(shared, hours: range, day: str = "2024-04-19") -> list[str]:
    return [
        str(shared / RITA / f"test_data__missing_host__{day}__conn.{h:02d}-00-00-{h + 1:02d}-00-00.log.gz")
        for h in hours
    ]


def test_calibration_is_deterministic_and_follows_its_schema(shared_data, tmp_path) -> None:
    model = load_model(ROOT / "models" / "conn-cnn-v1.onnx")
    files = _rita(shared_data, range(0, 12))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    calibrate_logs(files, model).save(a)
    calibrate_logs(files, model).save(b)  # a second, independent fit
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    assert doc["format"] == PROFILE_FORMAT and doc["version"] == 1
    assert doc["model"]["name"] == model.name and doc["model"]["sha256"] == model.sha256
    fitted = doc["fitted_on"]
    assert len(fitted["files"]) == 12 and fitted["rows"] == sum(f["rows"] for f in fitted["files"]) > 5000
    first = fitted["files"][0]
    with open(first["path"], "rb") as f:
        assert first["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert fitted["first_ts"].startswith("2024-04-1") and fitted["last_ts"].startswith("2024-04-19T11")
    assert doc["patterns"], "an Internet-facing sensor has recurring inbound probes"
    for p in doc["patterns"]:
        assert set(PATTERN_FIELDS) <= set(p) and 0.2 <= p["presence"] <= 1.0 and p["per_interval"] >= 1
        assert p["direction"] == "inbound" and p["host"] == "64.225.56.201"
    assert set(doc["thresholds"]) <= {"inbound", "outbound", "internal", "external"}
    assert all(model.threshold < t <= 0.9995 for t in doc["thresholds"].values())
    again = SiteProfile.load(a)
    assert again.to_json() == doc


def test_a_short_attack_in_the_stretch_does_not_become_normal(shared_data) -> None:
    """The lab run has 45 benign activities and, in its first half, nmap scans and brute force."""
    model = load_model(ROOT / "models" / "conn-cnn-v1.onnx")
    lab = shared_data / "zeek_labeled/lab-namespaces-2026-run2.conn.log.labeled.gz"
    profile = calibrate_logs([lab], model)
    assert profile.report["flagged_connections"] > 1000  # the attacks score high ...
    hosts = {p["host"] for p in profile.patterns}
    assert "10.78.0.103" not in hosts and "10.78.0.104" not in hosts  # ... but the attackers are not normal


def test_target_fpr_sets_per_direction_quantile_thresholds(shared_data) -> None:
    model = load_model(ROOT / "models" / "conn-cnn-v1.onnx")
    files = _rita(shared_data, range(0, 6))
    loose = calibrate_logs(files, model, target_fpr=0.5)
    tight = calibrate_logs(files, model, target_fpr=0.001)
    assert loose.settings["target_fpr"] == 0.5 and loose.settings["budget_per_day"] is None
    assert tight.thresholds["inbound"] > model.threshold  # the sensor's inbound scores are high: raised
    assert tight.thresholds["inbound"] >= loose.thresholds.get("inbound", model.threshold)
    assert all(t <= 0.9995 for t in tight.thresholds.values())


def test_profile_errors(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ProfileError):
        SiteProfile.load(bad)
    bad.write_text(json.dumps({"format": PROFILE_FORMAT, "version": 99, "thresholds": {}, "patterns": []}))
    with pytest.raises(ProfileError, match="version"):
        SiteProfile.load(bad)
    bad.write_text(
        json.dumps({"format": PROFILE_FORMAT, "version": 1, "thresholds": {"sideways": 0.5}, "patterns": []})
    )
    with pytest.raises(ProfileError, match="sideways"):
        SiteProfile.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ProfileError):
        SiteProfile.load(bad)


def test_cli_calibrate_then_score_with_the_profile(shared_data, tmp_path) -> None:
    profile = tmp_path / "site.json"
    res = run_cli("calibrate", *_rita(shared_data, range(0, 12)), "-o", str(profile))
    assert res.returncode == 0, res.stderr
    assert "normal pattern(s)" in res.stderr and json.loads(profile.read_text())["version"] == 1
    held = _rita(shared_data, range(12, 23))
    before = run_cli("score", *held, "-o", str(tmp_path / "a.log"), "--summary-json", "-q")
    after = run_cli("score", *held, "-o", str(tmp_path / "b.log"), "--profile", str(profile), "--summary-json", "-q")
    assert before.returncode == 0 and after.returncode == 0, after.stderr
    n_before, n_after = json.loads(before.stdout)["notices"], json.loads(after.stdout)["notices"]
    records = json.loads(after.stdout)["records"]
    assert n_before >= 10 and n_after < n_before and 1000 * n_after / records < 1.0
    # the enriched per-connection output is the same with or without a profile
    run_cli("score", *held, "-o", str(tmp_path / "c.log"), "--all", str(tmp_path / "c.all"), "-q")
    run_cli(
        "score", *held, "-o", str(tmp_path / "d.log"), "--all", str(tmp_path / "d.all"), "-q", "--profile", str(profile)
    )
    strip = lambda p: [ln for ln in p.read_text().splitlines() if not ln.startswith(("#open", "#close"))]  # noqa: E731
    assert strip(tmp_path / "c.all") == strip(tmp_path / "d.all")
    bad = run_cli("score", *held, "-o", str(tmp_path / "e.log"), "--profile", str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "--profile" in bad.stderr
    bad = run_cli("score", *held, "-o", str(tmp_path / "e.log"), "--local-nets", "10.0.0.0/99")
    assert bad.returncode == 2 and "--local-nets" in bad.stderr


@pytest.mark.parametrize("until", ["99999999999999999999", "nan", "1e400", "-5", "yesterday"])
def test_until_out_of_range_is_bad_usage(until: str, tmp_path) -> None:
    res = run_cli(
        "calibrate", str(SAMPLE_LOGS / "ssh_sshguess.conn.log"), "-o", str(tmp_path / "c.json"), "--until", until
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--until" in res.stderr, res.stderr
    assert not (tmp_path / "c.json").exists()
