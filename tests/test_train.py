"""``zeek-ml train`` reproduces the shipped model: same data, fixed seed, metrics within noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from zeek_ml.model.conn_model import load_model


def test_train_reproduces_the_shipped_model(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    shipped = json.loads((ROOT / "models" / "conn-cnn-v1.json").read_text())
    data = sorted(str(p) for p in (shared_data / "zeek_labeled").glob("*.gz"))
    out = tmp_path / "conn-cnn-v1.onnx"
    result = run_cli("train", *data, "--out", str(out), "--no-baseline", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    retrained = json.loads(out.with_suffix(".json").read_text())
    assert retrained["threshold"] == pytest.approx(shipped["threshold"], abs=0.01)
    ours, theirs = retrained["evaluation"]["cnn"]["test_pooled"], shipped["evaluation"]["cnn"]["test_pooled"]
    for metric in ("roc_auc", "f1", "recall", "precision", "benign_fpr"):
        assert ours[metric] == pytest.approx(theirs[metric], abs=0.02), metric
    assert (tmp_path / "conn-cnn-v1.md").read_text().startswith("# Model card")
    model = load_model(out)  # loads with this code's feature spec
    assert model.name == "conn-cnn-v1"


def test_train_v2_ships_a_loadable_temporal_model_with_family_and_card(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    names = ("CTU-Honeypot-Capture-4-1", "001-zeek-scenario-malicious", "010-zeek-mixed")
    data = [str(next((shared_data / "zeek_labeled").glob(f"{n}*"))) for n in names]
    out = tmp_path / "tiny-v2.onnx"
    result = run_cli(
        "train", "--v2", *data, "--out", str(out), "--epochs", "1", "--max-train-rows", "600",
        "--flows-root", str(shared_data / "flows_other"), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads(out.with_suffix(".json").read_text())
    model = load_model(out)
    assert model.name == "conn-cnn-v2" and model.spec.name == "conn-v2"
    assert model.threshold == pytest.approx(card["threshold"]) and model.families
    assert set(card["evaluation"]["loco"]["per_capture"]) == {
        "CTU-Honeypot-Capture-4-1", "001-zeek-scenario-malicious", "010-zeek-mixed"
    }  # fmt: skip
    assert card["onnx_torch_max_abs_diff"] < 1e-5
    assert {"unsw_nb15", "cicids2017"} <= set(card["transfer"]["datasets"])
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Model card: conn-cnn-v2") and "leave-one-capture-out" in md
    lofo = card["evaluation"]["leave_family_out"]
    assert lofo["threshold"] == pytest.approx(card["threshold"]) and lofo["families"]
    assert "leave-one-attack-family-out" in md and "false positives come from" in md
    # the card's in-sample table is what `zeek-ml evaluate` gives for the exported file
    assert set(card["shipped_evaluate"]["per_capture"]) == set(card["evaluation"]["loco"]["per_capture"])
    assert card["shipped_evaluate"]["threshold"] == pytest.approx(card["threshold"])
    assert "zeek-ml evaluate" in md


def test_every_zoo_network_trains_and_the_ensemble_exports_exactly(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import numpy as np

    from zeek_ml.features.conn import CONTEXT_SPEC, Feature, FeatureSpec, compute_features
    from zeek_ml.features.context import SEQ_FIELDS, HostContext
    from zeek_ml.sources.files import read_frames
    from zeek_ml.training.nets import export_onnx, fit_net

    frame = read_frames([str(ROOT / "sample_logs" / "ctu-normal-40.first2000.conn.log.labeled.gz")])
    y = (frame["label"].astype(str).str.lower() == "malicious").to_numpy().astype(np.float32)
    assert 0 < y.sum() < len(y)
    ctx = HostContext(seq_k=4)
    X = compute_features(frame, CONTEXT_SPEC, ctx)
    w = np.ones(len(y), np.float32)
    for kind in ("mlp", "secids_cnn", "ours"):
        net = fit_net(kind, X, y, w, spec=CONTEXT_SPEC, epochs=1, log=lambda s: None)
        with torch.no_grad():
            p = net(torch.from_numpy(X)).numpy()
        assert p.shape == (len(X),) and ((p >= 0) & (p <= 1)).all(), kind
    # the CNN over time reads the originator's previous connections after the conn-v2 columns
    X3 = np.hstack([X, ctx.last_sequences.reshape(len(X), -1)]).astype(np.float32)
    seq_cols = (Feature(f"seq_{a}_{j}", "flag") for a in SEQ_FIELDS for j in range(4))
    spec3 = FeatureSpec("conn-v2-seq", 0, (*CONTEXT_SPEC.features, *seq_cols))
    arch = {"seq": [len(CONTEXT_SPEC), len(SEQ_FIELDS), 4]}
    net = fit_net("ours_seq", X3, y, w, spec=spec3, epochs=1, arch=arch, log=lambda s: None)
    with torch.no_grad():
        assert net(torch.from_numpy(X3)).shape == (len(X3),)
    # an ensemble with a family head: one graph, two outputs, equal to torch
    fam = (y > 0).astype(np.int64)
    ens = fit_net("ours", X, y, w, spec=CONTEXT_SPEC, epochs=1, fam=fam, n_families=2, arch={"members": 2},
                  log=lambda s: None)  # fmt: skip
    path = str(tmp_path / "ens.onnx")
    export_onnx(ens, CONTEXT_SPEC, path, {"k": "v"}, outputs=("score", "family"))
    import onnxruntime as ort

    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"features": X})
    with torch.no_grad():
        want = ens(torch.from_numpy(X))
    np.testing.assert_allclose(got[0], want[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(got[1], want[1].numpy(), atol=1e-5)
    assert got[1].shape == (len(X), 2)


def test_a_distilled_network_is_one_network_trained_to_its_teacher() -> None:
    """``arch={"distil": 2}``: the result is a single network (one network's cost in the graph) whose
    scores follow the two-network teacher's, which the same seed trained on the labels does not."""
    torch = pytest.importorskip("torch")
    import numpy as np

    from zeek_ml.features.conn import CONTEXT_SPEC, compute_features
    from zeek_ml.features.context import HostContext
    from zeek_ml.sources.files import read_frames
    from zeek_ml.training.nets import fit_net

    frame = read_frames([str(ROOT / "sample_logs" / "ctu-normal-40.first2000.conn.log.labeled.gz")])
    y = (frame["label"].astype(str).str.lower() == "malicious").to_numpy().astype(np.float32)
    X = compute_features(frame, CONTEXT_SPEC, HostContext())
    w, fam = np.ones(len(y), np.float32), (y > 0).astype(np.int64)
    quiet = {"spec": CONTEXT_SPEC, "epochs": 2, "fam": fam, "n_families": 2, "log": lambda s: None}
    student = fit_net("ours", X, y, w, arch={"distil": 2}, **quiet)
    teacher = fit_net("ours", X, y, w, arch={"members": 2}, **quiet)
    plain = fit_net("ours", X, y, w, **quiet)
    assert not hasattr(student, "members") and hasattr(teacher, "members")
    with torch.no_grad():
        s, t, p = (n(torch.from_numpy(X)) for n in (student, teacher, plain))
    assert s[0].shape == (len(X),) and s[1].shape == (len(X), 2)
    assert (s[0] - t[0]).abs().mean() < (p[0] - t[0]).abs().mean()
