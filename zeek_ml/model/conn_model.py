"""Load a shipped ONNX conn model and score conn records with it (no torch needed).

    model = load_model("models/conn-cnn-v1.onnx")       # ModelLoadError / FeatureSpecMismatch
    scores = model.score_frame(conn_frame)               # float32 [N] = P(malicious)
    flagged = scores >= model.threshold

The model's feature spec (ONNX metadata ``zeek_ml.feature_spec``) must equal the code's
spec of that name and version (``conn-v1`` or ``conn-v2``, see ``zeek_ml.features.conn``):
feature names, order, kinds and vocabularies. A conn-v2 model keeps per-host context
across batches (``new_context()``, passed to ``score_frame``); a model with a ``family``
output and reference values also names the attack family and why it fired (``explain``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.features.conn import CONTEXT_SPEC, FeatureSpec, compute_features, supported_spec
from zeek_ml.features.context import HostContext

__all__ = ["ConnModel", "FeatureSpecMismatch", "ModelLoadError", "load_model"]

REQUIRED_KEYS = ("zeek_ml.feature_spec", "zeek_ml.threshold", "zeek_ml.model_name", "zeek_ml.model_version")
MIN_THREAD_ROWS = 128
"""With ``ConnModel.threads`` > 1 a batch of fewer than 1,024 rows is still shared out, in parts of at least
this many rows (the last part may be shorter)."""
DEFAULT_BATCH_ROWS = 1024
"""Rows per onnxruntime run. Measured (issue 13, conn-cnn-v2, 1 thread): 1,024 rows run 1.4 x faster than
65,536 (the activations stay in cache) and keep onnxruntime's arena small; 256 to 2,048 are within noise.
Scores are bit-identical at any batch size (checked on sample_logs and the shared captures)."""


#: feature groups an explanation names: key -> (feature-name prefixes/names, phrase template builder)
_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conn_state", ("conn_state",)),
    ("history", ("history_", "hist_")),
    ("service", ("service",)),
    ("resp_port", ("resp_port_class",)),
    ("orig_port", ("orig_port_class",)),
    ("proto", ("proto",)),
    ("locality", ("local_orig", "local_resp")),
    ("duration", ("duration",)),
    ("bytes", ("orig_bytes", "resp_bytes", "orig_ip_", "resp_ip_", "missed_bytes", "bytes_missing",
               "orig_bytes_per_pkt", "resp_bytes_per_pkt", "resp_orig_bytes_ratio")),
    ("packets", ("orig_pkts", "resp_pkts", "pkts_missing", "resp_orig_pkts_ratio")),
    ("orig_fanout", ("orig_distinct_", "orig_same_")),
    ("orig_rate", ("orig_prev_conns", "orig_conns_window", "orig_dt_prev", "orig_iat_cv", "orig_first_seen")),
    ("orig_failures", ("orig_failed_share",)),
    ("orig_volume", ("orig_mean_",)),
    ("resp_load", ("resp_prev_conns", "resp_conns_window", "resp_distinct_", "resp_failed_share", "resp_dt_prev",
                   "resp_first_seen")),
)  # fmt: skip


def _group_columns(spec: FeatureSpec) -> list[tuple[str, np.ndarray]]:
    """Feature columns of each explanation group (a feature goes to the first group that claims it)."""
    taken: set[int] = set()
    out = []
    for key, prefixes in _GROUPS:
        idx = [
            i
            for i, n in enumerate(spec.names)
            if i not in taken and any(n == p or (p.endswith("_") and n.startswith(p)) for p in prefixes)
        ]
        if idx:
            taken.update(idx)
            out.append((key, np.asarray(idx)))
    return out


class Explainer:
    """Occlusion: which feature groups, set to a typical benign value, lower a row's score most.

    Costs one model run over ``rows x groups``; call it only for the rows that become notices.
    """

    def __init__(self, spec: FeatureSpec, reference: np.ndarray, predict: Callable[[np.ndarray], np.ndarray]):
        self.spec = spec
        self.reference = np.asarray(reference, dtype=np.float32)
        self.predict = predict
        self.groups = _group_columns(spec)
        self.top = 3
        self.min_drop = 0.02
        self.chunk_rows = 4096
        """Distinct rows occluded per model call (x groups rows in memory at once)."""

    def _v(self, row: np.ndarray, name: str) -> float:
        return float(row[self.spec.index(name)])

    def _cat(self, row: np.ndarray, name: str) -> str:
        f = self.spec.features[self.spec.index(name)]
        code = int(row[self.spec.index(name)])
        return f.vocab[code] if 0 <= code < len(f.vocab) else "?"

    def phrase(self, key: str, row: np.ndarray) -> str:
        """Human words for one group of one raw feature row."""
        v, c = self._v, self._cat
        if key == "conn_state":
            return f"connection state {c(row, 'conn_state')}"
        if key == "history":
            if v(row, "history_missing"):
                return "no connection history"
            return f"connection history pattern ({v(row, 'history_len'):.0f} letters)"
        if key == "service":
            return f"service {c(row, 'service')}"
        if key == "resp_port":
            return f"responder port class {c(row, 'resp_port_class')}"
        if key == "orig_port":
            return f"originator port class {c(row, 'orig_port_class')}"
        if key == "proto":
            return f"protocol {c(row, 'proto')}"
        if key == "locality":
            return f"local_orig={c(row, 'local_orig')} local_resp={c(row, 'local_resp')}"
        if key == "duration":
            return f"duration {v(row, 'duration'):.3g} s"
        if key == "bytes":
            return f"{v(row, 'orig_bytes'):.0f} bytes sent, {v(row, 'resp_bytes'):.0f} received"
        if key == "packets":
            return f"{v(row, 'orig_pkts'):.0f} packets sent, {v(row, 'resp_pkts'):.0f} received"
        if key in ("orig_fanout", "orig_rate", "orig_failures", "orig_volume") and v(row, "orig_first_seen"):
            return "first connection seen from this originator"
        if key == "resp_load" and v(row, "resp_first_seen"):
            return "first connection seen to this responder"
        if key == "orig_fanout":
            return (
                f"originator reached {v(row, 'orig_distinct_resp_h'):.0f} hosts and "
                f"{v(row, 'orig_distinct_resp_p'):.0f} ports in its last {v(row, 'orig_prev_conns'):.0f} connections"
            )
        if key == "orig_rate":
            return (
                f"originator made {v(row, 'orig_conns_window'):.0f} connections in the previous minute "
                f"(inter-arrival CV {v(row, 'orig_iat_cv'):.2f})"
            )
        if key == "orig_failures":
            return (
                f"{100 * v(row, 'orig_failed_share'):.0f} % of the originator's last "
                f"{v(row, 'orig_prev_conns'):.0f} connections failed (S0/REJ/RST...)"
            )
        if key == "orig_volume":
            return (
                f"originator's recent connections average {v(row, 'orig_mean_orig_bytes'):.0f} bytes out, "
                f"{v(row, 'orig_mean_resp_bytes'):.0f} in"
            )
        if key == "resp_load":
            return (
                f"responder got {v(row, 'resp_conns_window'):.0f} connections in the previous minute from "
                f"{v(row, 'resp_distinct_orig_h'):.0f} hosts, {100 * v(row, 'resp_failed_share'):.0f} % failed"
            )
        return key

    def contributions(self, X: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Score drop [rows, groups] when each group is set to the reference values."""
        m, g = len(X), len(self.groups)
        if m == 0:
            return np.zeros((0, g), dtype=np.float32)
        # Each distinct row is occluded once (a scan's or a flood's rows are often alike): a row's
        # scores depend on its own features only, so the drops are the same as row by row.
        X = np.ascontiguousarray(X, dtype=np.float32)
        rows = X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        occluded = np.empty((len(first), g), dtype=np.float32)
        for s in range(0, len(first), self.chunk_rows):  # bounded memory: chunk x groups rows at once
            occluded[s : s + self.chunk_rows] = self._occlude(X[first[s : s + self.chunk_rows]])
        return np.asarray(scores, dtype=np.float32)[:, None] - occluded[inverse.ravel()]

    def _occlude(self, U: np.ndarray) -> np.ndarray:
        """Scores [rows, groups] of distinct rows ``U`` with each group set to the reference values.

        A group already at its reference values leaves the row as it is: its score is the row's own
        (one model run per row for all such groups), not a model run per group."""
        g = len(self.groups)
        asis = np.empty((len(U), g), dtype=bool)
        parts = []
        for j, (_, idx) in enumerate(self.groups):
            asis[:, j] = (U[:, idx] == self.reference[idx]).all(1)
            moved = U[~asis[:, j]]
            moved[:, idx] = self.reference[idx]
            parts.append(moved)
        need_own = asis.any(1)
        parts.append(U[need_own])
        out = self.predict(np.concatenate(parts))
        own = np.zeros(len(U), dtype=np.float32)
        own[need_own] = out[len(out) - int(need_own.sum()) :]
        occluded = np.empty((len(U), g), dtype=np.float32)
        at = 0
        for j in range(g):
            changed = ~asis[:, j]
            k = int(changed.sum())
            occluded[changed, j] = out[at : at + k]
            occluded[asis[:, j], j] = own[asis[:, j]]
            at += k
        return occluded

    def explain(self, X: np.ndarray, scores: np.ndarray) -> tuple[list[str], list[tuple[str, ...]]]:
        """Per row: the top groups in words ("; "-joined) and as keys."""
        # Rounded, then a stable sort: onnxruntime's last bits vary with the batch's size, and a
        # notice must say the same thing whether its row was scored offline, live or after a restart.
        drops = np.round(self.contributions(X, scores).astype(np.float64), 3)
        order = np.argsort(-drops, axis=1, kind="stable")[:, : self.top]
        strong = np.take_along_axis(drops, order, axis=1) >= self.min_drop
        strong[:, 0] = True  # sorted: the strong groups lead; with none strong enough, the first one alone
        names = [key for key, _ in self.groups]
        words, keys = [], []
        for r, (o, ok) in enumerate(zip(order.tolist(), strong.tolist(), strict=True)):
            chosen = [j for j, y in zip(o, ok, strict=True) if y]
            keys.append(tuple(names[j] for j in chosen))
            words.append("; ".join(self.phrase(names[j], X[r]) for j in chosen))
        return words, keys


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
    threads: int = 1
    """Threads :meth:`predict_all` runs its calls in (``evaluate --threads``, ``watch --threads``;
    ``score`` runs the model beside its other work instead, :meth:`zeek_ml.model.scorer.Scorer.stream`)."""
    families: tuple[str, ...] = ()
    """Attack family names, when the model has a ``family`` output (probabilities over them)."""
    explainer: Explainer | None = None
    """Occlusion explainer, when the model carries reference (typical benign) feature values."""
    explain_threads: int | None = None
    """Threads the explainer's model calls run in (None: :attr:`threads`). ``score`` sets its ``--threads``
    here: a batch's notices are explained in its main thread while the model thread scores the next batch."""
    fpr_thresholds: tuple[tuple[float, float], ...] = ()
    """(benign FPR, threshold) pairs measured on validation folds, for ``--target-fpr``."""
    _input: str = field(default="features", repr=False)
    _last: tuple[np.ndarray, np.ndarray | None] | None = field(default=None, repr=False)

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

    def predict_all(self, X: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """P(malicious) float32 [N] and, if the model has one, family probabilities [N, n_families]
        (``threads``: this call's, default :attr:`threads`)."""
        threads = self.threads if threads is None else threads
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.spec):
            raise FeatureSpecMismatch(f"expected features of shape [N, {len(self.spec)}], got {list(X.shape)}")
        out = np.empty(len(X), dtype=np.float32)
        fam = np.empty((len(X), len(self.families)), dtype=np.float32) if self.families else None
        names = ["score", "family"] if self.families else None  # None: the graph's only output

        step = self.batch_rows
        if threads > 1 and len(X) >= 2 * MIN_THREAD_ROWS:
            # a batch of a few hundred rows (watch under load) is shared out too
            step = min(step, max(MIN_THREAD_ROWS, -(-len(X) // threads)))

        def run(s: int) -> None:
            res = self.session.run(names, {self._input: X[s : s + step]})  # type: ignore[attr-defined]
            out[s : s + step] = np.asarray(res[0], dtype=np.float32).reshape(-1)
            if fam is not None:
                fam[s : s + step] = res[1]

        starts = range(0, len(X), step)
        if threads > 1 and len(starts) > 1:
            # onnxruntime runs concurrent calls of one session and lets go of the GIL; a row's scores
            # do not depend on the rows run with it, so the result is the one-thread result
            with ThreadPoolExecutor(min(threads, len(starts))) as pool:
                list(pool.map(run, starts))
        else:
            for s in starts:
                run(s)
        return out, fam

    def _explain_predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_all(X, self.explain_threads)[0]

    def predict_proba(self, X: np.ndarray | pd.DataFrame | Iterable[Mapping[str, Any]]) -> np.ndarray:
        """P(malicious) float32 [N] for conn records or a raw feature matrix [N, F] (batched).

        Conn records (a DataFrame or dicts in any usual shape, rows in log order) are checked and
        normalised by :func:`zeek_ml.sources.frame.conn_frame` (``FrameError`` names every missing
        or mistyped column) and scored with a fresh host context, as ``zeek-ml score`` scores a file.
        """
        if not isinstance(X, pd.DataFrame):
            rows = X if isinstance(X, np.ndarray) else list(X)
            if isinstance(rows, np.ndarray) or (rows and not isinstance(rows[0], Mapping)):
                return self.predict_all(np.asarray(rows))[0]  # a feature matrix
            X = rows
        from zeek_ml.sources.frame import conn_frame

        frame = conn_frame(X)
        return self.predict_all(self.features(frame, self.new_context()))[0]

    def predict(self, frame: pd.DataFrame | Iterable[Mapping[str, Any]], threshold: float | None = None) -> np.ndarray:
        """Verdicts: bool [N], True where P(malicious) >= ``threshold`` (default: the model card's).

        The scores are rounded to 1e-6 first, as every zeek-ml front end does, so a connection
        gets the verdict ``zeek-ml score`` gives it.
        """
        scores = np.round(self.predict_proba(frame).astype(np.float64), 6)
        return scores >= (self.threshold if threshold is None else threshold)

    def threshold_for_fpr(self, target: float) -> float:
        """The lowest tabulated threshold whose validation benign FPR is <= ``target`` (ValueError if none)."""
        if not self.fpr_thresholds:
            raise ValueError(f"model {self.name} has no FPR/threshold table (zeek_ml.fpr_thresholds)")
        ok = [th for fpr, th in self.fpr_thresholds if fpr <= target]
        if not ok:
            lowest = min(f for f, _ in self.fpr_thresholds)
            raise ValueError(f"target FPR {target} is below the lowest the card measured ({lowest})")
        return float(min(ok))

    def new_context(self) -> HostContext | None:
        """Fresh per-host context for a stream (None when the model uses no temporal features)."""
        return HostContext() if self.spec.name == CONTEXT_SPEC.name else None

    def features(self, frame: pd.DataFrame, context: HostContext | None = None) -> np.ndarray:
        """Raw features of ``frame`` in the model's spec (``context`` carries host history across batches)."""
        check_spec(self.spec)
        return compute_features(frame, supported_spec(self.spec), context)

    def score_frame(self, frame: pd.DataFrame, context: HostContext | None = None) -> np.ndarray:
        """Features (with the code's spec for this model) then scores, float32 [N].

        The batch's features and family probabilities are kept for ``explain``.
        """
        X = self.features(frame, context)
        scores, fam = self.predict_all(X)
        self._last = (X, fam)
        return scores

    def explain(self, verdicts, last: tuple[np.ndarray, np.ndarray | None] | None = None) -> None:
        """Fill ``verdicts.family`` for the flagged rows of the last batch scored (or of ``last``: its
        features and family probabilities), and give it the means to explain any of its rows
        (``verdicts.reasons``, ``verdicts.why``)."""
        last = last if last is not None else self._last
        if last is None or len(last[0]) != len(verdicts):
            return
        X, fam = last
        flagged = np.flatnonzero(verdicts.flagged)
        n = len(verdicts)
        if fam is not None:
            family = np.full(n, "", dtype=object)
            if len(flagged):
                family[flagged] = np.asarray(self.families, dtype=object)[fam[flagged].argmax(1)]
            verdicts.family = family
        if self.explainer is not None:
            explainer, scores = self.explainer, np.asarray(verdicts.scores)
            # Lazily: a sink asks for the rows it writes (one per incident when aggregating).
            verdicts.explain = lambda rows: explainer.explain(X[rows], scores[rows])


def check_spec(model_spec: FeatureSpec, code_spec: FeatureSpec | None = None) -> None:
    """Raise FeatureSpecMismatch naming what differs between the model's and the code's spec.

    Without ``code_spec``, the model's spec is compared to the code's spec of the same name
    and version (conn-v1 and conn-v2 are both computed here).
    """
    code_spec = supported_spec(model_spec) if code_spec is None else code_spec
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
        families = tuple(str(f) for f in json.loads(meta.get("zeek_ml.families", "[]")))
        reference = json.loads(meta.get("zeek_ml.reference", "null"))
        fpr_table = tuple((float(a), float(b)) for a, b in json.loads(meta.get("zeek_ml.fpr_thresholds", "[]")))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: malformed zeek-ml metadata: {exc}") from None
    check_spec(spec)
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise ModelLoadError(f"{path}: expected one input, found {len(inputs)}")
    outputs = [o.name for o in sess.get_outputs()]
    if families and "family" not in outputs:
        raise ModelLoadError(f"{path}: metadata names attack families but the graph has no 'family' output")
    model = ConnModel(
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
        families=families,
        fpr_thresholds=fpr_table,
        _input=inputs[0].name,
    )
    if reference is not None:
        if len(reference) != len(spec):
            raise ModelLoadError(f"{path}: zeek_ml.reference has {len(reference)} values for {len(spec)} features")
        model.explainer = Explainer(spec, np.asarray(reference, dtype=np.float32), model._explain_predict)
    return model
