"""The Python front door (``zeek_ml.load_model``, ``predict``/``predict_proba``, ``read_log``/``write_log``,
``score``): one real conn.log, loaded the ways data scientists load it, scores exactly as the CLI scores it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import zeek_ml
from tests.conftest import ROOT, SAMPLE_LOGS, run_cli
from zeek_ml.sources.frame import MODEL_COLUMNS, FrameError, conn_frame

ZAT_TSV = SAMPLE_LOGS / "zat.conn.log"  # Bro 2.x TSV: no local_resp, table[string] (the zat project's own log)
SSH_TSV = SAMPLE_LOGS / "ssh_sshguess.conn.log"
SSH_JSON = SAMPLE_LOGS / "ssh_sshguess.conn.json.log"  # the same connections as Zeek JSON lines
ISO_JSON = SAMPLE_LOGS / "http_bro.org.conn.iso8601.json.log"  # JSON with ISO 8601 text ts
REQUIRED = [c.name for c in MODEL_COLUMNS if c.required]


@pytest.fixture(scope="module")
def model() -> zeek_ml.ConnModel:
    return zeek_ml.load_model()


def cli_scores(log: Path, tmp_path: Path) -> pd.DataFrame:
    """``zeek-ml score LOG --all``: every connection with the score the CLI gives it."""
    res = run_cli("score", str(log), "-o", str(tmp_path / "notice.log"), "--all", str(tmp_path / "all.log"), "-q")
    assert res.returncode == 0, res.stderr
    return zeek_ml.read_log(tmp_path / "all.log", conn=False)


def test_zeek_tsv_by_the_reader_zat_and_parsezeeklogs_scores_as_the_cli(
    model: zeek_ml.ConnModel, tmp_path: Path
) -> None:
    from parsezeeklogs import read_zeek
    from zat.log_to_dataframe import LogToDataFrame

    ours = model.predict_proba(zeek_ml.read_log(ZAT_TSV))
    zat_frame = LogToDataFrame().create_dataframe(str(ZAT_TSV))
    assert isinstance(zat_frame.index, pd.DatetimeIndex) and "ts" not in zat_frame.columns
    assert pd.api.types.is_timedelta64_dtype(zat_frame["duration"])
    loaders = {
        "zat": zat_frame,
        "parsezeeklogs": list(read_zeek(str(ZAT_TSV))),
        "parsezeeklogs safe_headers": pd.DataFrame(list(read_zeek(str(ZAT_TSV), safe_headers=True))),
    }
    for name, data in loaders.items():
        np.testing.assert_array_equal(model.predict_proba(data), ours, err_msg=name)
    cli = cli_scores(ZAT_TSV, tmp_path)
    assert len(ours) == len(cli) == 360
    np.testing.assert_allclose(ours, cli["zeek_ml.score"].to_numpy(dtype=float), atol=1e-6)  # written with 6 decimals
    assert (model.predict(zat_frame) == cli["zeek_ml.verdict"].to_numpy(dtype=bool)).all()


def test_the_raw_zat_frame_is_what_the_api_must_fix(model: zeek_ml.ConnModel) -> None:
    """Without normalisation (ts as the index, duration as a timedelta) zat's frame scores wrong: the issue's bug."""
    from zat.log_to_dataframe import LogToDataFrame

    raw = LogToDataFrame().create_dataframe(str(ZAT_TSV))
    right = model.predict_proba(raw)
    assert np.abs(model.score_frame(raw) - right).max() > 0.5


def test_zeek_json_by_the_reader_and_pandas_read_json_scores_as_the_cli(
    model: zeek_ml.ConnModel, tmp_path: Path
) -> None:
    for log in (SSH_JSON, ISO_JSON):
        plain = pd.read_json(log, lines=True)
        ours = model.predict_proba(zeek_ml.read_log(log))
        np.testing.assert_array_equal(model.predict_proba(plain), ours, err_msg=log.name)
    assert pd.read_json(ISO_JSON, lines=True)["ts"].map(type).eq(str).all()  # ISO text, converted
    cli = cli_scores(SSH_JSON, tmp_path)
    np.testing.assert_allclose(model.predict_proba(pd.read_json(SSH_JSON, lines=True)), cli["zeek_ml.score"], atol=1e-6)
    # the TSV and the JSON log Zeek wrote of the same connections score the same
    twin = pd.read_json(SSH_JSON, lines=True)
    np.testing.assert_array_equal(model.predict_proba(zeek_ml.read_log(SSH_TSV)), model.predict_proba(twin))


def test_a_frame_missing_a_column_fails_naming_it(model: zeek_ml.ConnModel) -> None:
    frame = zeek_ml.read_log(SSH_TSV).drop(columns=["conn_state"])
    with pytest.raises(FrameError, match="'conn_state'") as caught:
        model.predict(frame)
    assert caught.value.missing == ["conn_state"] and not caught.value.mistyped


def test_a_made_up_frame_fails_naming_every_missing_column(model: zeek_ml.ConnModel) -> None:
    made_up = pd.DataFrame({"bytes": [100, 2000], "suspicious": [0.1, 0.9]})
    with pytest.raises(FrameError) as caught:
        model.predict_proba(made_up)
    assert caught.value.missing == REQUIRED
    for name in REQUIRED:
        assert repr(name) in str(caught.value)


def test_mistyped_columns_are_named_with_their_first_bad_row(model: zeek_ml.ConnModel) -> None:
    frame = zeek_ml.read_log(SSH_TSV).drop(columns=["proto"])
    frame["orig_bytes"] = frame["orig_bytes"].astype(object)
    frame.loc[3, "orig_bytes"] = "lots"
    frame["local_orig"] = frame["local_orig"].astype(object)
    frame.loc[5, "local_orig"] = "maybe"
    frame["id.resp_p"] = frame["id.resp_p"].astype(object)
    frame.loc[0, "id.resp_p"] = 70000
    with pytest.raises(FrameError) as caught:
        model.predict(frame)
    error = caught.value
    assert error.missing == ["proto"]
    assert set(error.mistyped) == {"orig_bytes", "local_orig", "id.resp_p"}
    assert "row 3: 'lots'" in error.mistyped["orig_bytes"] and "row 5: 'maybe'" in error.mistyped["local_orig"]
    assert "0 to 65535" in error.mistyped["id.resp_p"]


def test_usual_value_forms_are_normalised_to_the_readers_dtypes() -> None:
    ours = zeek_ml.read_log(SSH_TSV)
    text = ours.astype(object).where(ours.notna(), "-")  # every value as it is written in a CSV: text, '-' unset
    text["local_orig"] = text["local_orig"].map({True: "T", False: "F", "-": "-"})
    text["local_resp"] = text["local_resp"].map({True: "T", False: "F", "-": "-"})
    text = text.map(str)
    text["ts"] = pd.to_datetime(ours["ts"], unit="s", utc=True)  # tz-aware datetimes
    text = text.drop(columns="tunnel_parents")
    back = conn_frame(text)
    for column in MODEL_COLUMNS:
        assert back[column.name].dtype == ours[column.name].dtype, column.name
        pd.testing.assert_series_equal(back[column.name], ours[column.name], check_exact=False, rtol=0, atol=1e-6)
    assert conn_frame(ours) is ours  # the reader's frame passes untouched


def test_predict_gives_the_clis_verdicts_and_arrays_still_work(model: zeek_ml.ConnModel, tmp_path: Path) -> None:
    log = SAMPLE_LOGS / "slips-port-scans-horizontal.conn.log"
    frame = zeek_ml.read_log(log)
    p = model.predict_proba(frame)
    assert p.dtype == np.float32 and p.shape == (41,)
    np.testing.assert_array_equal(model.predict(frame), np.round(p.astype(float), 6) >= model.threshold)
    flagged = model.predict(frame, threshold=0.5)
    assert 0 < flagged.sum() < len(p)  # a threshold that splits this log
    out = tmp_path / "all.log"
    res = run_cli("score", str(log), "-o", str(tmp_path / "n.log"), "--all", str(out), "--threshold", "0.5", "-q")
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(flagged, zeek_ml.read_log(out, conn=False)["zeek_ml.verdict"].to_numpy(dtype=bool))
    features = model.features(frame, model.new_context())
    np.testing.assert_array_equal(model.predict_proba(features), p)


def test_load_model_finds_the_shipped_model_never_a_stray_one(tmp_path: Path) -> None:
    assert Path(zeek_ml.load_model().path) == ROOT / "models" / "conn-cnn-v2.onnx"
    stray = tmp_path / "models"
    stray.mkdir()
    (stray / "conn-cnn-v2.onnx").write_bytes(b"not a model")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ZEEK_ML_MODEL", None)
    probe = "import zeek_ml; print(zeek_ml.load_model().path)"
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()) == ROOT / "models" / "conn-cnn-v2.onnx"


def test_load_model_names_what_it_could_not_find(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZEEK_ML_MODEL", str(tmp_path / "gone.onnx"))
    with pytest.raises(zeek_ml.ModelLoadError, match=r"gone\.onnx \(ZEEK_ML_MODEL"):
        zeek_ml.load_model()
    monkeypatch.delenv("ZEEK_ML_MODEL")
    with pytest.raises(zeek_ml.ModelLoadError, match="model file not found"):
        zeek_ml.load_model(tmp_path / "also-gone.onnx")


def test_write_log_and_read_log_round_trip(model: zeek_ml.ConnModel, tmp_path: Path) -> None:
    frame = zeek_ml.read_log(SSH_TSV)
    for fmt in ("tsv", "json"):
        out = tmp_path / f"conn.{fmt}.log"
        assert zeek_ml.write_log(frame, out, fmt=fmt) == 11
        again = zeek_ml.read_log(out)
        np.testing.assert_array_equal(model.predict_proba(again), model.predict_proba(frame), err_msg=fmt)
    assert (tmp_path / "conn.tsv.log").read_text().splitlines()[-1].startswith("#close")


def test_write_log_of_several_files_read_as_one_frame(tmp_path: Path) -> None:
    """A frame read from several logs holds its string columns in several Arrow chunks (one per
    batch): the writer joins them (it read only the first chunk's buffers before, and failed)."""
    logs = [SAMPLE_LOGS / "zat.conn.log", SAMPLE_LOGS / "slips-port-scans-horizontal.conn.log"]
    frame = zeek_ml.read_log(logs)
    assert frame["uid"].array._pa_array.num_chunks > 1  # what made it fail
    out = tmp_path / "both.conn.log"
    assert zeek_ml.write_log(frame, out) == len(frame)
    again = zeek_ml.read_log(out)
    expected = pd.concat([zeek_ml.read_log(p) for p in logs], ignore_index=True)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), expected, check_dtype=False)


def test_score_does_what_the_cli_does(tmp_path: Path) -> None:
    summary = zeek_ml.score(SAMPLE_LOGS, tmp_path / "notice.log", all_out=tmp_path / "all.log")
    assert (summary.files, summary.records, summary.rejected, summary.scored) == (8, 3478, 0, 3478)
    res = run_cli("score", str(SAMPLE_LOGS), "-o", str(tmp_path / "cli.log"), "--summary-json", "-q")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["notices"] == summary.notices
    assert len(zeek_ml.read_log(tmp_path / "all.log", conn=False)) == 3478


def test_the_public_names_and_a_cheap_import() -> None:
    for name in zeek_ml.__all__:
        assert getattr(zeek_ml, name) is not None, name
    with pytest.raises(AttributeError):
        _ = zeek_ml.no_such_name  # type: ignore[attr-defined]
    probe = "import sys, zeek_ml; print(sorted({'pandas', 'onnxruntime', 'numpy'} & set(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_info_says_which_columns_the_model_needs() -> None:
    res = run_cli("info")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for column in MODEL_COLUMNS:
        mark = "*" if column.required else " "
        assert any(line.startswith(f"  {column.name:<16}{mark} {column.zeek_type}") for line in lines), column.name
    card = json.loads(run_cli("info", "--json").stdout)
    assert [c["name"] for c in card["input_columns"]] == [c.name for c in MODEL_COLUMNS]
    assert {c["name"]: c["zeek_type"] for c in card["input_columns"]}["duration"] == "interval"


def test_nested_ids_and_millisecond_times_are_read_as_zeek_writes_them(model: zeek_ml.ConnModel) -> None:
    records = pd.read_json(SSH_JSON, lines=True).to_dict("records")
    # some JSON exports nest the connection's 4-tuple: {"id": {"orig_h": ...}}
    nested = [{k: v for k, v in r.items() if not k.startswith("id.")} for r in records]
    for flat, record in zip(records, nested):
        record["id"] = {k[3:]: v for k, v in flat.items() if k.startswith("id.")}
    np.testing.assert_array_equal(model.predict_proba(nested), model.predict_proba(records))
    millis = pd.read_json(SSH_JSON, lines=True)
    millis["ts"] = (millis["ts"] * 1000).round().astype("int64")  # LogAscii::json_timestamps=JSON::TS_MILLIS
    np.testing.assert_allclose(conn_frame(millis)["ts"], pd.read_json(SSH_JSON, lines=True)["ts"], atol=1e-3)
    with pytest.raises(FrameError, match="'ts': time expected, got durations"):
        conn_frame(millis.assign(ts=pd.to_timedelta(millis["ts"], unit="ms")))
