"""Evaluation: metrics, the FPR threshold rule, leave-one-capture-out, and ``zeek-ml evaluate`` end to end."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, SAMPLE_LOGS, TEST_DATA, need, run_cli
from zeek_ml.features.conn import CONTEXT_SPEC, FEATURE_SPEC
from zeek_ml.training.evaluate import (
    binary_metrics,
    false_positive_sources,
    label_vector,
    leave_family_out,
    load_labelled,
    loco,
    threshold_for_fpr,
)

SMALL = ("CTU-Honeypot-Capture-4-1", "001-zeek-scenario-malicious", "010-zeek-mixed")
CAPTURES = {
    "CTU-Honeypot-Capture-4-1": TEST_DATA / "ctu" / "CTU-Honeypot-Capture-4-1.conn.log.labeled.gz",
    "001-zeek-scenario-malicious": SAMPLE_LOGS / "001-zeek-scenario-malicious.labeled-conn.log.gz",
    "010-zeek-mixed": TEST_DATA / "ctu" / "010-zeek-mixed.conn.log.labeled.gz",
}
"""The small labelled captures, shipped (tests/data/README.md, sample_logs/README.md): as in ../shared."""


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 1, width=32), min_size=1, max_size=400),
    st.sampled_from([0.0, 0.001, 0.01, 0.1, 0.5]),
)
def test_threshold_for_fpr_is_the_lowest_that_meets_the_target(benign: list[float], target: float) -> None:
    b = np.asarray(benign, dtype=np.float32)
    th = threshold_for_fpr(b, target)
    assert (b >= th).mean() <= target + 1e-12
    below = b[b < th]
    if len(below):  # lowering it to the next benign score would break the target
        assert (b >= below.max()).mean() > target


def test_binary_metrics_hand_checked() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.1, 0.3, 0.05])
    m = binary_metrics(y, s, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 4)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(6 / 8)
    assert m["benign_fpr"] == pytest.approx(0.2) and m["notices_per_1k_benign"] == pytest.approx(200)
    assert m["roc_auc"] == pytest.approx(13 / 15)  # 13 of 15 (malicious, benign) pairs ordered right
    only_benign = binary_metrics(np.zeros(4), np.array([0.1, 0.9, 0.2, 0.3]), 0.5)
    assert np.isnan(only_benign["roc_auc"]) and only_benign["benign_fpr"] == 0.25


def test_background_is_not_a_label() -> None:
    path = CAPTURES["001-zeek-scenario-malicious"]
    cap = load_labelled(str(path))
    assert cap.n_background == 739 and len(cap.y) == 253 and cap.y.sum() == 244
    assert cap.X2.shape == (253, len(CONTEXT_SPEC)) and cap.X1.shape == (253, len(FEATURE_SPEC))
    np.testing.assert_array_equal(cap.X2[:, : len(FEATURE_SPEC)], cap.X1)


def test_loco_never_lets_a_capture_choose_its_own_threshold() -> None:
    pytest.importorskip("torch")
    caps = [load_labelled(str(CAPTURES[n])) for n in SMALL]
    oof: dict = {}
    res = loco(
        caps, kinds=("logreg", "ours"), specs=(CONTEXT_SPEC,), epochs=1, max_train_rows=400, oof_out=oof,
        target_fpr=0.01, log=lambda s: None,
    )  # fmt: skip
    assert set(res["models"]) == {"logreg+temporal", "ours+temporal"}
    for name, entry in res["models"].items():
        scores = oof[name]
        for i, c in enumerate(caps):
            others = np.concatenate([scores[j][caps[j].y == 0] for j in range(len(caps)) if j != i])
            m = entry["per_capture"][c.name]
            assert m["threshold"] == pytest.approx(threshold_for_fpr(others, 0.01))
            assert m["n"] == len(c.y)
            assert m["fp"] == int(((scores[i] >= m["threshold"]) & (c.y == 0)).sum())
        pooled = entry["pooled"]
        assert pooled["n"] == sum(len(c.y) for c in caps)
        assert pooled["tp"] + pooled["fn"] == sum(int(c.y.sum()) for c in caps)
    assert "family_accuracy" in res["models"]["ours+temporal"]["per_capture"]["001-zeek-scenario-malicious"]
    json.dumps(res, allow_nan=False)  # strict JSON


def test_false_positive_sources_group_the_benign_rows_over_threshold() -> None:
    cap = load_labelled(str(CAPTURES["010-zeek-mixed"]))
    benign = cap.keys[cap.y == 0]
    top_dst = benign["id.resp_h"].value_counts().index[0]
    # flag every benign row to the busiest benign destination, and one malicious row (not a false positive)
    scores = np.where((cap.keys["id.resp_h"] == top_dst).to_numpy(), 0.9, 0.1).astype(np.float32)
    scores[np.flatnonzero(cap.y == 1)[0]] = 0.95
    fp = false_positive_sources([cap], [scores], [0.5], top=50)
    want = int(((cap.keys["id.resp_h"] == top_dst).to_numpy() & (cap.y == 0)).sum())
    assert fp["false_positives"] == want == sum(g["rows"] for g in fp["groups"])
    assert {g["resp_h"] for g in fp["groups"]} == {top_dst}
    assert fp["groups"] == sorted(fp["groups"], key=lambda g: -g["rows"])
    first = fp["groups"][0]
    hit = benign[(benign["id.resp_h"] == top_dst) & (benign["id.resp_p"] == first["resp_p"])]
    hit = hit[hit["proto"] == first["proto"]]
    assert first["rows"] == len(hit) and first["originators"] == hit["id.orig_h"].nunique()
    assert sum(first["conn_states"].values()) <= first["rows"]
    assert false_positive_sources([cap], [scores], [1.0])["groups"] == []


def test_leave_family_out_scores_each_family_it_left_out() -> None:
    from zeek_ml.training.data import FAMILIES, family_of

    caps = [load_labelled(str(CAPTURES[n])) for n in SMALL]
    counts = {f: 0 for f in FAMILIES}
    per_cap: dict = {}
    for c in caps:
        for d in c.detail[c.y == 1]:
            counts[family_of(d)] += 1
            per_cap.setdefault(family_of(d), {}).setdefault(c.name, 0)
            per_cap[family_of(d)][c.name] += 1
    kw = {"kind": "logreg", "max_train_rows": 600, "log": lambda s: None}
    res = leave_family_out(caps, 0.5, **kw)
    assert set(res["families"]) == {f for f, n in counts.items() if n >= 5} and res["families"]
    for name, e in res["families"].items():
        assert e["rows"] == counts[name]
        assert {k: v["rows"] for k, v in e["per_capture"].items()} == per_cap[name]
        assert 0.0 <= e["recall"] <= 1.0
    # the threshold is applied as given: nothing reaches 1.01, everything reaches 0
    assert all(e["recall"] == 0.0 for e in leave_family_out(caps, 1.01, **kw)["families"].values())
    assert all(e["recall"] == 1.0 for e in leave_family_out(caps, 0.0, **kw)["families"].values())
    json.dumps(res, allow_nan=False)


def test_loco_command_with_leave_family_out_writes_both_tables(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    data = [str(CAPTURES[n]) for n in SMALL]
    r = run_cli(
        "train", "--loco", *data, "--models", "logreg", "--specs", "conn-v2", "--max-train-rows", "600",
        "--leave-family-out", "--report", str(tmp_path), timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "loco.json").read_text())
    entry = res["models"]["logreg+temporal"]
    assert entry["leave_family_out"]["threshold"] == entry["threshold_all"]
    assert entry["false_positive_sources"]["false_positives"] == sum(m["fp"] for m in entry["per_capture"].values())
    md = (tmp_path / "loco.md").read_text()
    assert "Leave-one-attack-family-out" in md and "| logreg+temporal |" in md


def test_evaluate_reproduces_the_shipped_cards_numbers(tmp_path: Path) -> None:
    """The card's ``zeek-ml evaluate`` table is what the command prints for the shipped file."""
    card = json.loads((ROOT / "models" / "conn-cnn-v2.json").read_text())
    model = ROOT / "models" / "conn-cnn-v2.onnx"
    from zeek_ml.model.conn_model import sha256_file

    assert card["onnx_sha256"] == sha256_file(model)  # the card describes this very file
    shipped = card["shipped_evaluate"]
    data = [str(CAPTURES[n]) for n in SMALL]
    r = run_cli("evaluate", str(model), *data, "-o", str(tmp_path), "--no-plots", "--threads", "2")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "report.json").read_text())
    # the model in one thread gives the same report, importance included (it scores the rows again and again)
    one = run_cli("evaluate", str(model), *data, "-o", str(tmp_path / "one"), "--no-plots", "--threads", "1")
    assert one.returncode == 0, one.stderr
    assert json.loads((tmp_path / "one" / "report.json").read_text()) == rep
    assert rep["threshold"] == pytest.approx(shipped["threshold"])
    for name, m in rep["per_capture"].items():
        want = shipped["per_capture"][name]
        assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (want["tp"], want["fp"], want["fn"], want["tn"]), name
        assert m["roc_auc"] == pytest.approx(want["roc_auc"], abs=1e-6, nan_ok=True)


def _renamed_label_copy(src: Path, dst: Path, new: str) -> None:
    with gzip.open(src, "rt") as f:
        text = f.read()
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("#fields"):
            lines[i] = line.replace("\tlabel\t", f"\t{new}\t")
    dst.write_text("\n".join(lines))


def test_evaluate_command_writes_table_report_and_figures(tmp_path: Path) -> None:
    src = CAPTURES["010-zeek-mixed"]
    data = tmp_path / "010-renamed.conn.log"
    _renamed_label_copy(src, data, "truth")
    out = tmp_path / "report"
    bad = run_cli("evaluate", "models/conn-cnn-v2.onnx", str(data), "-o", str(out))
    assert bad.returncode == 2 and "no label column 'label'" in bad.stderr
    need(_has_matplotlib(), "matplotlib (the report extra) is needed for the PNG figures")
    r = run_cli("evaluate", "models/conn-cnn-v2.onnx", str(data), "-o", str(out), "--label-column", "truth")
    assert r.returncode == 0, r.stderr
    assert "| pooled |" in r.stdout and "010-renamed" in r.stdout
    rep = json.loads((out / "report.json").read_text())
    assert sorted(rep["figures"]) == ["confusion.png", "importance.png", "pr.png", "roc.png"]
    for png in rep["figures"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pooled = rep["pooled"]
    assert pooled["n"] == 5347 - 37 and pooled["n_malicious"] == 3373  # Background rows left out
    # the figures agree with scoring the same rows with the library
    from zeek_ml.model.conn_model import load_model
    from zeek_ml.sources.files import read_frames

    model = load_model(ROOT / "models" / "conn-cnn-v2.onnx")
    frame = read_frames([str(data)])
    lab = label_vector(frame, "truth")
    scores = model.predict_proba(model.features(frame, model.new_context())[lab >= 0])
    want = binary_metrics(lab[lab >= 0] == 1, scores, model.threshold)
    assert (pooled["tp"], pooled["fp"]) == (want["tp"], want["fp"])
    assert pooled["roc_auc"] == pytest.approx(want["roc_auc"])
    assert rep["permutation_importance_roc_auc_drop"]
    assert "| `" in (out / "report.md").read_text()


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
