"""Load a shipped ONNX conn model and score conn records with it (no torch needed).

    model = load_model("models/conn-cnn-v1.onnx")       # ModelLoadError / FeatureSpecMismatch
    scores = model.score_frame(conn_frame)               # float32 [N] = P(malicious)
    flagged = scores >= model.threshold

The model's feature spec (ONNX metadata ``zeek_ml.feature_spec``) must equal the code's
``FEATURE_SPEC``: name, version, feature names, order, kinds and vocabularies.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from zeek_ml.features import FEATURE_SPEC, FeatureSpec, compute_features

__all__ = ["ConnModel", "FeatureSpecMismatch", "ModelLoadError", "load_model"]

REQUIRED_KEYS = ("zeek_ml.feature_spec", "zeek_ml.threshold", "zeek_ml.model_name", "zeek_ml.model_version")
DEFAULT_BATCH_ROWS = 65536


class ModelLoadError(Exception):
    """The model file is missing, unreadable, not ONNX, or lacks zeek-ml metadata."""


class FeatureSpecMismatch(Exception):
    """The model was trained on a feature spec other than the one this code computes."""


@dataclass
class ConnModel:
    """An onnxruntime session plus the model's metadata."""

    path: str
    session: object
    name: str
    version: int
    spec: FeatureSpec
    threshold: float
    metrics: dict
    training: dict
    sha256: str
    batch_rows: int = DEFAULT_BATCH_ROWS
    _input: str = field(default="features", repr=False)

    @property
    def card(self) -> dict:
        """The machine-readable card (``<name>.json`` beside the .onnx if present, else metadata)."""
        side = os.path.splitext(self.path)[0] + ".json"
        if os.path.exists(side):
            try:
                with open(side) as f:
                    return json.load(f)
            except (OSError, ValueError):
                pass
        return {
            "model_name": self.name,
            "model_version": self.version,
            "onnx_sha256": self.sha256,
            "threshold": self.threshold,
            "metrics": self.metrics,
            "training": self.training,
            "feature_spec": self.spec.to_dict(),
        }

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(malicious) float32 [N] for a raw feature matrix [N, F] (batched)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.spec):
            raise FeatureSpecMismatch(f"expected features of shape [N, {len(self.spec)}], got {list(X.shape)}")
        out = np.empty(len(X), dtype=np.float32)
        for s in range(0, len(X), self.batch_rows):
            res = self.session.run(None, {self._input: X[s : s + self.batch_rows]})[0]  # type: ignore[attr-defined]
            out[s : s + self.batch_rows] = np.asarray(res, dtype=np.float32).reshape(-1)
        return out

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Features (with the code's FEATURE_SPEC) then scores, float32 [N]."""
        check_spec(self.spec)
        return self.predict_proba(compute_features(frame, FEATURE_SPEC))


def check_spec(model_spec: FeatureSpec, code_spec: FeatureSpec = FEATURE_SPEC) -> None:
    """Raise FeatureSpecMismatch naming what differs between the model's and the code's spec."""
    diffs = code_spec.differences(model_spec)
    if diffs:
        raise FeatureSpecMismatch(
            f"model feature spec {model_spec.name} v{model_spec.version} does not match this code's "
            f"{code_spec.name} v{code_spec.version}: " + "; ".join(diffs)
        )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(
    path: str | os.PathLike[str], *, intra_op_threads: int = 1, batch_rows: int = DEFAULT_BATCH_ROWS
) -> ConnModel:
    """Open an ONNX conn model; check its metadata and feature spec against the code."""
    import onnxruntime as ort

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"model file not found: {path}")
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(intra_op_threads))
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelLoadError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
    meta = sess.get_modelmeta().custom_metadata_map
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelLoadError(f"{path} is not a zeek-ml model: metadata lacks {missing}")
    try:
        spec = FeatureSpec.from_json(meta["zeek_ml.feature_spec"])
        threshold = float(json.loads(meta["zeek_ml.threshold"]))
        name = str(json.loads(meta["zeek_ml.model_name"]))
        version = int(json.loads(meta["zeek_ml.model_version"]))
        metrics = json.loads(meta.get("zeek_ml.metrics", "{}"))
        training = json.loads(meta.get("zeek_ml.training", "{}"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: malformed zeek-ml metadata: {exc}") from None
    check_spec(spec)
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise ModelLoadError(f"{path}: expected one input, found {len(inputs)}")
    return ConnModel(
        path=path,
        session=sess,
        name=name,
        version=version,
        spec=spec,
        threshold=threshold,
        metrics=metrics,
        training=training,
        sha256=sha256_file(path),
        batch_rows=batch_rows,
        _input=inputs[0].name,
    )
