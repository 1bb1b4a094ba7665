"""``zeek-ml train`` reproduces the shipped model: same data, fixed seed, metrics within noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from zeek_ml.model import load_model


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
