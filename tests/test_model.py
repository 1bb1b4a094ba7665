"""Shipped model tests: metadata, spec checks, known outputs on real rows (no torch)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from zeek_ml.features import FEATURE_SPEC
from zeek_ml.model import FeatureSpecMismatch, ModelLoadError, load_model
from zeek_ml.zeeklog import read_frames

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
    from zeek_ml.features import compute_features

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
    from zeek_ml.train import _build_torch_model, export_onnx

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
    from zeek_ml.features import compute_features

    X = compute_features(read_frames([SAMPLE]).head(300))
    with torch.no_grad():
        want = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(load_model(path).predict_proba(X), want, atol=1e-5)
