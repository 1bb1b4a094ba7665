"""Shipped model tests: metadata, spec checks, known outputs on real rows (no torch)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from zeek_ml.features.conn import FEATURE_SPEC
from zeek_ml.model.conn_model import FeatureSpecMismatch, ModelLoadError, load_model
from zeek_ml.sources.files import read_frames

MODEL = "models/conn-cnn-v1.onnx"
SAMPLE = "sample_logs/ctu-normal-40.first2000.conn.log.labeled.gz"

# scores of the shipped model on real rows of CTU-Normal-40 (uid -> P(malicious))
KNOWN = {
    "CHLXQF2OBY4onAR0Ug": 6.258487701416016e-07,  # Benign (Microsoft, TLS)
    "CEL3aLvvNGvO6Ecoa": 0.9999988079071045,  # Malicious (External-Attack-to-Device)
    "C5hVfL2fjFRPxB5V3d": 0.011235237121582031,  # Benign
    "CB0jzf4LVrBltxoKng": 0.9999985694885254,  # Malicious
}


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


def test_metadata(model) -> None:
    assert model.name == "conn-cnn-v1"
    assert model.version == 1
    assert model.spec == FEATURE_SPEC
    assert 0.5 <= model.threshold < 1
    assert len(model.sha256) == 64
    assert os.path.getsize(MODEL) < 1_000_000
    card = model.card
    assert card["onnx_sha256"] == model.sha256
    assert card["threshold"] == pytest.approx(model.threshold)
    assert "test" in model.metrics and "unseen_flag_rates" in model.metrics
    assert {d["role"] for d in model.training["data"]} == {"train", "validation", "test"}
    assert all(len(d["sha256"]) == 64 for d in model.training["data"])


def test_known_outputs(model) -> None:
    frame = read_frames([SAMPLE])
    rows = frame[frame["uid"].isin(list(KNOWN))].reset_index(drop=True)
    scores = model.score_frame(rows)
    assert scores.dtype == np.float32 and scores.shape == (len(KNOWN),)
    expected = np.array([KNOWN[u] for u in rows["uid"]], dtype=np.float32)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_predict_proba_batches(model) -> None:
    frame = read_frames([SAMPLE])
    from zeek_ml.features.conn import compute_features

    X = compute_features(frame)
    small = load_model(MODEL, batch_rows=97)
    np.testing.assert_allclose(small.predict_proba(X), model.predict_proba(X), atol=1e-6)
    assert model.predict_proba(X[:0]).shape == (0,)
    with pytest.raises(FeatureSpecMismatch):
        model.predict_proba(X[:, :-1])


def _copy_with_metadata(tmp_path, **changes: str) -> str:
    m = onnx.load(MODEL)
    for p in m.metadata_props:
        if p.key in changes:
            p.value = changes[p.key]
    out = str(tmp_path / "altered.onnx")
    onnx.save(m, out)
    return out


def test_spec_mismatch_refused(tmp_path) -> None:
    spec = json.loads(FEATURE_SPEC.to_json())
    spec["version"] = 99
    spec["features"] = spec["features"][1:]  # drop "duration"
    path = _copy_with_metadata(tmp_path, **{"zeek_ml.feature_spec": json.dumps(spec)})
    with pytest.raises(FeatureSpecMismatch, match=r"version 1 != 99.*features missing: \['duration'\]"):
        load_model(path)


def test_vocab_mismatch_refused(tmp_path) -> None:
    spec = json.loads(FEATURE_SPEC.to_json())
    for f in spec["features"]:
        if f["name"] == "conn_state":
            f["vocab"] = list(reversed(f["vocab"]))
    path = _copy_with_metadata(tmp_path, **{"zeek_ml.feature_spec": json.dumps(spec)})
    with pytest.raises(FeatureSpecMismatch, match="conn_state"):
        load_model(path)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nope.onnx")
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(Path(MODEL).read_bytes()[:500])
    with pytest.raises(ModelLoadError):
        load_model(bad)
    m = onnx.load(MODEL)
    del m.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(m, str(plain))
    with pytest.raises(ModelLoadError, match="metadata"):
        load_model(plain)
    ok = tmp_path / "copy.onnx"
    shutil.copy(MODEL, ok)
    assert load_model(ok).sha256 == load_model(MODEL).sha256


def test_torch_model_matches_onnx_export(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from zeek_ml.training.nets import _build_torch_model, export_onnx

    torch.manual_seed(0)
    n_num = sum(f.kind in ("log1p", "log") for f in FEATURE_SPEC.features)
    arch = {"emb_dim": 2, "channels": 4, "kernel": 5, "stride": 2, "hidden": 8, "dropout": 0.3}
    net = _build_torch_model(FEATURE_SPEC, np.zeros(n_num, np.float32), np.ones(n_num, np.float32), arch).eval()
    meta = {
        "zeek_ml.feature_spec": FEATURE_SPEC.to_json(),
        "zeek_ml.threshold": "0.5",
        "zeek_ml.model_name": '"tiny"',
        "zeek_ml.model_version": "1",
    }
    path = str(tmp_path / "tiny.onnx")
    export_onnx(net, FEATURE_SPEC, path, meta)
    from zeek_ml.features.conn import compute_features

    X = compute_features(read_frames([SAMPLE]).head(300))
    with torch.no_grad():
        want = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(load_model(path).predict_proba(X), want, atol=1e-5)


# --------------------------------------------------------------------------- conn-cnn-v2 (temporal, family, reasons)

MODEL_V2 = "models/conn-cnn-v2.onnx"


@pytest.fixture(scope="module")
def v2():
    return load_model(MODEL_V2)


@pytest.fixture(scope="module")
def lab_rows():
    from tests.conftest import TEST_DATA

    path = TEST_DATA / "lab" / "lab-namespaces-2026.part1.head4000.conn.log.labeled.gz"
    return read_frames([str(path)]).reset_index(drop=True)


def test_v2_metadata_and_threshold_table(v2) -> None:
    from zeek_ml.features.conn import CONTEXT_SPEC

    assert v2.name == "conn-cnn-v2" and v2.version == 2
    assert v2.spec == CONTEXT_SPEC
    assert {"PortScan", "BruteForce", "DDoS", "C&C", "External-Attack"} <= set(v2.families)
    fprs = [f for f, _ in v2.fpr_thresholds]
    ths = [t for _, t in v2.fpr_thresholds]
    assert fprs == sorted(fprs) and ths == sorted(ths, reverse=True)  # more FPR allowed -> lower threshold
    assert v2.threshold == pytest.approx(v2.threshold_for_fpr(0.001))
    assert v2.threshold_for_fpr(0.05) < v2.threshold
    with pytest.raises(ValueError, match="below the lowest"):
        v2.threshold_for_fpr(1e-7)
    with pytest.raises(ValueError, match="no FPR"):
        load_model(MODEL).threshold_for_fpr(0.01)
    card = v2.card
    assert card["onnx_sha256"] == v2.sha256 and card["threshold"] == pytest.approx(v2.threshold)
    assert len(card["evaluation"]["loco"]["per_capture"]) == 9
    assert os.path.getsize(MODEL_V2) < 1_000_000


def test_v2_streaming_equals_one_shot_and_checkpoints(v2, lab_rows) -> None:
    from zeek_ml.model.scorer import Scorer

    whole = v2.score_frame(lab_rows, context=v2.new_context())
    scorer = Scorer(v2)
    parts = []
    for start in range(0, len(lab_rows), 700):
        parts.append(scorer(lab_rows.iloc[start : start + 700]).scores)
        if start == 1400:  # restart from a JSON checkpoint
            state = json.loads(json.dumps(scorer.state()))
            scorer = Scorer(v2)
            scorer.restore(state)
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    fresh = v2.score_frame(lab_rows.iloc[2100:], context=v2.new_context())
    assert not np.allclose(fresh, whole[2100:], atol=1e-3)  # the context does change scores
    assert load_model(MODEL).new_context() is None  # conn-v1 keeps no state


def test_v2_names_family_and_reasons_for_flagged_rows_only(v2, lab_rows) -> None:
    from zeek_ml.model.conn_model import _group_columns
    from zeek_ml.model.scorer import Scorer

    verdicts = Scorer(v2)(lab_rows)
    flagged = verdicts.flagged
    assert flagged.sum() > 50 and (~flagged).sum() > 50
    assert set(verdicts.family[flagged]) <= set(v2.families) and (verdicts.family[~flagged] == "").all()
    assert all(r for r in verdicts.reasons[flagged]) and not any(verdicts.reasons[~flagged])
    keys = {k for k, _ in _group_columns(v2.spec)}
    assert all(1 <= len(c) <= 3 and set(c) <= keys for c in verdicts.reason_codes[flagged])
    # the first reason is the group whose occlusion lowers the score most: check one row by hand
    i = int(np.flatnonzero(flagged)[0])
    X = v2.features(lab_rows, v2.new_context())[i : i + 1]
    drops = {}
    for key, idx in _group_columns(v2.spec):
        Z = X.copy()
        Z[:, idx] = v2.explainer.reference[idx]
        drops[key] = float(verdicts.scores[i] - v2.predict_proba(Z)[0])
    assert verdicts.reason_codes[i][0] == max(drops, key=drops.get)
    # most flagged attack rows of this lab capture are scans or brute force
    truth = lab_rows["detailedlabel"].astype(str).to_numpy()[flagged]
    fam = verdicts.family[flagged]
    scan = np.char.find(truth.astype(str), "scan") >= 0
    assert (fam[scan] == "PortScan").mean() > 0.5


def test_occlusion_skips_groups_at_reference_and_chunks_without_changing_drops(v2, lab_rows) -> None:
    """The explainer runs the model once per row for the groups already at their reference values and
    in bounded chunks: its drops equal occluding every group of every row in one plain call."""
    X = v2.features(lab_rows, v2.new_context())
    scores = v2.predict_proba(X)
    exp = v2.explainer
    rows = X[np.round(scores.astype(np.float64), 6) >= v2.threshold][:700]
    rows = np.concatenate([rows, rows[:50]])  # repeated rows are occluded once
    at_ref = np.array([[(r[idx] == exp.reference[idx]).all() for _, idx in exp.groups] for r in rows])
    assert at_ref.any() and not at_ref.all()  # both kinds are present in these real rows
    s = v2.predict_proba(rows)
    plain = np.stack(
        [
            s - v2.predict_proba(np.where(np.isin(np.arange(X.shape[1]), idx), exp.reference, rows))
            for _, idx in exp.groups
        ],
        axis=1,
    )
    calls = []
    predict = exp.predict
    exp.predict, exp.chunk_rows = (lambda A: calls.append(len(A)) or predict(A)), 128
    try:
        got = exp.contributions(rows, s)
    finally:
        exp.predict, exp.chunk_rows = predict, 4096
    np.testing.assert_allclose(got, plain, atol=1e-6)
    distinct = len(np.unique(rows, axis=0))
    assert len(calls) == -(-distinct // 128)
    assert sum(calls) < distinct * len(exp.groups)  # rows at reference were not occluded group by group


def test_v2_notice_log_carries_family_and_reasons(tmp_path) -> None:
    from tests.conftest import run_cli

    out = tmp_path / "notice.log"
    r = run_cli("score", "sample_logs", "-o", str(out), "-m", MODEL_V2, "--target-fpr", "0.01", "--no-aggregate")
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    fields = next(line for line in text.splitlines() if line.startswith("#fields")).split("\t")[1:]
    assert {"zeek_ml.family", "zeek_ml.reasons"} <= set(fields)
    rows = [dict(zip(fields, line.split("\t"), strict=True)) for line in text.splitlines() if not line.startswith("#")]
    assert rows, "expected notices at a 1 % FPR threshold"
    th = load_model(MODEL_V2).threshold_for_fpr(0.01)
    for row in rows:
        assert float(row["zeek_ml.threshold"]) == pytest.approx(th, abs=1e-6)
        assert row["msg"].startswith(f"[{row['zeek_ml.family']}] ") and "; why: " in row["msg"]
        assert row["zeek_ml.reasons"] not in ("-", "(empty)")
    both = run_cli("score", "sample_logs", "-o", str(out), "-m", MODEL_V2, "--target-fpr", "0.01", "--threshold", "0.5")
    assert both.returncode == 2 and "exclude" in both.stderr
