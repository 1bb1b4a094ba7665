"""``zeek-ml`` run as a real subprocess on real files with the real shipped model."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE_LOGS, TEST_DATA, run_cli
from zeek_ml.formats.schema import NOTICE_FIELDS
from zeek_ml.notices.notice import NOTE, NOTICE_LOG_FIELDS
from zeek_ml.sources.files import read_frames

NOTICE_NAMES = [n for n, _ in NOTICE_FIELDS]
MODEL = ROOT / "models" / "conn-cnn-v1.onnx"


def header(path: Path, key: str) -> list[str]:
    for line in path.read_text().splitlines():
        if line.startswith(f"#{key}\t"):
            return line.split("\t")[1:]
    raise AssertionError(f"no #{key} in {path}")


def test_score_sample_logs_writes_a_zeek_notice_log(tmp_path: Path) -> None:
    out = tmp_path / "notice.log"
    result = run_cli("score", str(SAMPLE_LOGS), "-o", str(out), "--summary-json", "--no-aggregate")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] > 1000 and summary["rejected"] == 0
    assert summary["scored"] == summary["records"]
    assert 0 < summary["notices"] < summary["records"]
    assert "records/s" in result.stderr
    # Zeek's 26 notice columns first, in Zeek's order and with Zeek's types, then ours.
    assert header(out, "fields")[:26] == NOTICE_NAMES
    assert header(out, "types")[:26] == [t for _, t in NOTICE_FIELDS]
    assert header(out, "path") == ["notice"]
    assert out.read_text().splitlines()[-1].startswith("#close\t")
    notices = read_frames(out, conn=False, log_path="notice")
    assert len(notices) == summary["notices"]
    assert set(notices["note"]) == {NOTE}
    assert (notices["zeek_ml.score"] >= notices["zeek_ml.threshold"]).all()
    assert notices["uid"].str.startswith("C").all()
    assert (notices["src"] == notices["id.orig_h"]).all() and (notices["p"] == notices["id.resp_p"]).all()
    assert list(notices["actions"].iloc[0]) == ["Notice::ACTION_LOG"]
    assert list(notices["email_dest"].iloc[0]) == []


def test_json_output_and_all_connections(tmp_path: Path) -> None:
    src = SAMPLE_LOGS / "ssh_sshguess.conn.log"
    out, every = tmp_path / "notice.json", tmp_path / "conn.scored.json"
    result = run_cli(
        "score", str(src), "-o", str(out), "--format", "json", "--all", str(every), "--threshold", "0", "--no-aggregate"
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 11  # threshold 0: every connection is a notice
    first = rows[0]
    order = [n for n, _ in NOTICE_LOG_FIELDS]
    assert list(first) == [k for k in order if k in first]  # standard columns first, in Zeek's order
    assert isinstance(first["ts"], float) and first["actions"] == ["Notice::ACTION_LOG"]
    assert "fuid" not in first  # unset fields are omitted in Zeek's JSON
    scored = [json.loads(line) for line in every.read_text().splitlines()]
    assert len(scored) == 11 and all("zeek_ml.score" in r and r["zeek_ml.verdict"] for r in scored)


def test_threshold_above_every_score_gives_no_notice(tmp_path: Path) -> None:
    out = tmp_path / "notice.log"
    result = run_cli("score", str(SAMPLE_LOGS / "zat.conn.log"), "-o", str(out), "--threshold", "1")
    assert result.returncode == 0, result.stderr
    assert read_frames(out, conn=False, log_path="notice").empty


def test_malformed_line_is_reported_with_its_line_number_and_the_run_goes_on(tmp_path: Path) -> None:
    lines = (SAMPLE_LOGS / "ssh_sshguess.conn.log").read_text().splitlines(keepends=True)
    fields = lines[9].split("\t")
    fields[9] = "lots"  # line 10: orig_bytes is not a count
    lines[9] = "\t".join(fields)
    bad = tmp_path / "conn.log"
    bad.write_text("".join(lines))
    rejects = tmp_path / "rejects.jsonl"
    result = run_cli("score", str(bad), "-o", str(tmp_path / "n.log"), "--rejects", str(rejects), "--summary-json")
    assert result.returncode == 0, result.stderr
    assert f"{bad}:10: field orig_bytes: invalid count value 'lots'" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["rejected"] == 1 and summary["records"] == 10
    kept = json.loads(rejects.read_text())
    assert kept["line"] == 10 and "\tlots\t" in kept["raw"]
    strict = run_cli("score", str(bad), "-o", str(tmp_path / "s.log"), "--strict")
    assert strict.returncode == 4 and ":10: field orig_bytes" in strict.stderr


def test_unreadable_input_and_missing_model_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    missing = run_cli("score", str(tmp_path / "nope.log"), "-o", str(tmp_path / "n.log"))
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "no such file" in missing.stderr
    no_model = run_cli("score", str(SAMPLE_LOGS), "-o", str(tmp_path / "n.log"), "--model", str(tmp_path / "x.onnx"))
    assert no_model.returncode == 3 and "model not found" in no_model.stderr
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    corrupt = run_cli("score", str(SAMPLE_LOGS), "-o", str(tmp_path / "n.log"), "--model", str(garbage))
    assert corrupt.returncode == 3 and corrupt.stderr.strip().count("\n") == 0


def test_feature_spec_mismatch_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(MODEL))
    for prop in model.metadata_props:
        if prop.key == "zeek_ml.feature_spec":
            spec = json.loads(prop.value)
            spec["version"] = int(spec["version"]) + 1
            prop.value = json.dumps(spec)
    altered = tmp_path / "altered.onnx"
    onnx.save(model, str(altered))
    result = run_cli("score", str(SAMPLE_LOGS), "-o", str(tmp_path / "n.log"), "--model", str(altered))
    assert result.returncode == 3
    assert "feature spec mismatch" in result.stderr and "version" in result.stderr


def test_gzip_directory_of_rotated_logs(tmp_path: Path) -> None:
    logs = tmp_path / "2015-03-30"
    logs.mkdir()
    for src in (SAMPLE_LOGS / "rotated").iterdir():
        if src.name.startswith("conn"):
            with open(src, "rb") as f, gzip.open(logs / (src.name + ".gz"), "wb") as g:
                shutil.copyfileobj(f, g)
    out = tmp_path / "notice.log"
    result = run_cli("score", str(logs), "-o", str(out), "--summary-json", "--threshold", "0")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"] == 3
    notices = read_frames(out, conn=False, log_path="notice")
    assert notices["ts"].is_monotonic_increasing and notices["uid"].is_unique


def test_info_prints_the_card_essentials() -> None:
    result = run_cli("info", str(MODEL))
    assert result.returncode == 0, result.stderr
    for word in ("conn-cnn-v1", "sha256", "threshold", "features"):
        assert word in result.stdout
    card = json.loads(run_cli("info", str(MODEL), "--json").stdout)
    assert card["threshold"] == pytest.approx(float(card["threshold"]))


def test_threads_one_and_two_write_the_same_notices(tmp_path: Path) -> None:
    """``--threads 2`` (the model in a thread of its own) writes what ``--threads 1`` writes; a bad count is
    one usage line."""
    src = TEST_DATA / "ctu" / "010-zeek-mixed.conn.log.labeled.gz"
    out = {}
    for n in (1, 2):
        notice, every = tmp_path / f"notice{n}.log", tmp_path / f"all{n}.log"
        res = run_cli("score", str(src), "-o", str(notice), "--all", str(every), "-q", "--threads", str(n))
        assert res.returncode == 0, res.stderr
        out[n] = [p.read_text().split("#fields", 1)[1].rsplit("#close", 1)[0] for p in (notice, every)]
    assert out[1] == out[2]
    assert out[1][0].count("\n") > 3  # notices were written, not only headers
    bad = run_cli("score", str(src), "-o", str(tmp_path / "x.log"), "--threads", "0")
    assert bad.returncode == 2 and "whole number of threads" in bad.stderr and "Traceback" not in bad.stderr


def test_the_cli_gives_arrow_memory_back_to_the_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrow's own pool kept 40-60 MiB more resident (bench/README.md, "Issue 13, second slice"); ``score``
    and ``evaluate`` use the C library's malloc unless ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise."""
    import pyarrow as pa

    from zeek_ml.cli import arrow_memory_to_the_system

    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
        pa.set_memory_pool(pa.mimalloc_memory_pool())
        arrow_memory_to_the_system()
        assert pa.default_memory_pool().backend_name == "mimalloc"  # the user's choice stands
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        arrow_memory_to_the_system()
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(before)
