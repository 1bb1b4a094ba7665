"""Honest evaluation: leave-one-capture-out (LOCO) with baselines, and ``zeek-ml evaluate MODEL DATA...``.

LOCO (needs torch and scikit-learn; ``zeek-ml train --loco``)::

    zeek-ml train --loco ../shared/data/zeek_labeled/*.gz \
        --unseen-root ../shared/data/zeek_unlabeled --report reports/loco

Every labelled file is one capture. For each capture, every model of the zoo (HistGradientBoosting,
logistic regression, the seed MLP, the SecIDS-CNN shape, ours) is trained on all *other* captures and
scores the held-out one (rows of one capture are never split). The threshold applied to capture *i* is
chosen for a target benign false-positive rate on the out-of-fold scores of the other captures' benign
rows (validation folds), never on capture *i*. ``Background`` rows are not labels: left out of training
and metrics (they still feed the per-host temporal context, as they would live).

Model evaluation (no torch; ``zeek-ml evaluate``) scores labelled conn logs with a shipped ONNX model
and writes ``report.md``, ``report.json`` and, with matplotlib (the ``report`` extra), ROC / PR curves,
the confusion matrix and permutation feature importance as PNG files.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zeek_ml.features.conn import CONTEXT_SPEC, FEATURE_SPEC, FeatureSpec, compute_features
from zeek_ml.features.context import HostContext
from zeek_ml.model.conn_model import sha256_file

__all__ = [
    "BENIGN_VALUES",
    "MALICIOUS_VALUES",
    "Labelled",
    "binary_metrics",
    "false_positive_sources",
    "leave_family_out",
    "load_labelled",
    "loco",
    "threshold_for_fpr",
]

BENIGN_VALUES = frozenset({"benign", "normal", "0", "false", "f"})
MALICIOUS_VALUES = frozenset({"malicious", "attack", "anomaly", "1", "true", "t"})
DETAIL_COLUMNS = ("detailedlabel", "detailed-label", "detailed_label", "attack_cat", "family")
DEFAULT_TARGET_FPR = 0.001
#: conn.log fields kept per labelled row to say where false positives come from
KEY_COLUMNS = ("id.orig_h", "id.resp_h", "id.resp_p", "proto", "conn_state", "service")


# --------------------------------------------------------------------------- data


@dataclass
class Labelled:
    """One labelled capture (one file): raw features of both specs, labels, families."""

    name: str
    path: str
    sha256: str
    X1: np.ndarray  # conn-v1 features
    X2: np.ndarray  # conn-v2 features (conn-v1 + temporal, context over the whole file in log order)
    y: np.ndarray  # 1.0 = malicious
    detail: np.ndarray  # detailed label (str), "-" when none
    n_background: int
    keys: pd.DataFrame | None = None  # who talked to whom (KEY_COLUMNS) per labelled row, for error analysis

    def X(self, spec: FeatureSpec) -> np.ndarray:
        """Feature matrix for a spec."""
        return self.X2 if spec.name == CONTEXT_SPEC.name else self.X1


def _read(path: str) -> pd.DataFrame:
    from zeek_ml.sources.files import read_frames

    return read_frames([path])


def capture_name(path: str) -> str:
    """Capture name from a file name (strip .gz/.log/.labeled suffixes)."""
    from zeek_ml.training.data import capture_name as _cn

    return _cn(path)


def label_vector(frame: pd.DataFrame, label_col: str = "label") -> np.ndarray:
    """Per row: 1 malicious, 0 benign, -1 unlabelled (Background, '-', anything else)."""
    if label_col not in frame.columns:
        raise ValueError(f"no label column {label_col!r} (columns: {', '.join(map(str, frame.columns))})")
    lab = frame[label_col].astype("str").fillna("-").str.strip().str.lower()
    out = np.full(len(frame), -1, dtype=np.int8)
    out[lab.isin(BENIGN_VALUES).to_numpy()] = 0
    out[lab.isin(MALICIOUS_VALUES).to_numpy()] = 1
    return out


def load_labelled(
    path: str,
    label_col: str = "label",
    detail_col: str | None = None,
    reader: Callable[[str], pd.DataFrame] = _read,
) -> Labelled:
    """Read a labelled conn log; features over all rows (in log order), then keep labelled rows."""
    frame = reader(path)
    lab = label_vector(frame, label_col)
    keep = lab >= 0
    X2 = compute_features(frame, CONTEXT_SPEC, HostContext())
    X2 = X2[keep]
    detail_col = detail_col or next((c for c in DETAIL_COLUMNS if c in frame.columns), None)
    if detail_col is not None:
        detail = frame.loc[keep, detail_col].astype("str").fillna("-").to_numpy(dtype=object)
    else:
        detail = np.full(int(keep.sum()), "-", dtype=object)
    keys = pd.DataFrame(
        {
            k: (frame.loc[keep, k].astype("str").fillna("-").to_numpy() if k in frame.columns else "-")
            for k in KEY_COLUMNS
        }
    )
    return Labelled(
        name=capture_name(path),
        path=path,
        sha256=sha256_file(path),
        X1=np.ascontiguousarray(X2[:, : len(FEATURE_SPEC)]),
        X2=X2,
        y=(lab[keep] == 1).astype(np.float32),
        detail=detail,
        n_background=int((~keep).sum()),
        keys=keys,
    )


# --------------------------------------------------------------------------- metrics


def threshold_for_fpr(benign_scores: np.ndarray, target_fpr: float) -> float:
    """Lowest threshold at which at most ``target_fpr`` of these benign scores are >= it."""
    b = np.sort(np.asarray(benign_scores, dtype=np.float32))[::-1]
    if len(b) == 0:
        return 0.5
    k = int(np.floor(target_fpr * len(b)))  # benign rows allowed at or above the threshold
    cut = b[min(k, len(b) - 1)]
    return float(np.nextafter(np.float32(cut), np.float32(np.inf)))


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float | np.ndarray) -> dict:
    """Accuracy, precision, recall, F1, ROC-AUC, PR-AUC, benign FPR and notices per 1,000 benign conns."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y)
    score = np.asarray(score)
    pred = score >= threshold
    pos = y == 1
    tp, fp = int((pred & pos).sum()), int((pred & ~pos).sum())
    fn, tn = int((~pred & pos).sum()), int((~pred & ~pos).sum())
    n = len(y)
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fn) else float("nan")
    both = 0 < pos.sum() < n
    fpr = fp / (fp + tn) if fp + tn else float("nan")
    return {
        "n": n,
        "n_malicious": int(pos.sum()),
        "n_benign": int((~pos).sum()),
        "accuracy": (tp + tn) / n if n else float("nan"),
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, score)) if both else float("nan"),
        "benign_fpr": fpr,
        "notices_per_1k_benign": 1000 * fpr if fp + tn else float("nan"),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def clean(o):
    """NaN/inf -> None and numpy scalars -> Python, so the JSON is strict."""
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return clean(o.tolist())
    if isinstance(o, np.floating | np.integer | np.bool_):
        return clean(o.item())
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def _f(v, pct: bool = False, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{100 * v:.2f} %" if pct else f"{v:.{digits}f}"


# --------------------------------------------------------------------------- LOCO


def _subsample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    if n <= cap:
        return np.arange(n)
    return np.sort(rng.choice(n, cap, replace=False))


def subsamples(caps: Sequence[Labelled], cap: int, seed: int) -> list[np.ndarray]:
    """Row indices kept for training from each capture (at most ``cap``, seeded)."""
    rng = np.random.default_rng(seed)
    return [_subsample(len(c.y), cap, rng) for c in caps]


def family_codes(detail: Sequence[str]) -> np.ndarray:
    """Index into ``train.FAMILIES`` of each detailed label (int64 [N])."""
    from zeek_ml.training.data import FAMILIES, family_of

    return np.array([FAMILIES.index(family_of(d)) for d in detail], dtype=np.int64)


def training_rows(
    caps: Sequence[Labelled],
    subs: Sequence[np.ndarray],
    idx: Sequence[int],
    spec: FeatureSpec,
    ext_attack_weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """X, y, sample weights and family codes of the (subsampled) captures ``idx``."""
    from zeek_ml.training.data import Capture, sample_weights

    tcaps = [
        Capture(
            caps[i].name, caps[i].path, "", caps[i].X(spec)[subs[i]], caps[i].y[subs[i]], caps[i].detail[subs[i]], 0
        )
        for i in idx
    ]
    X = np.concatenate([c.X for c in tcaps])
    y = np.concatenate([c.y for c in tcaps])
    w = sample_weights(tcaps, ext_attack_weight)
    fam = np.concatenate([family_codes(c.detail) for c in tcaps])
    return X, y, w, fam


def load_unseen(groups: Mapping[str, Sequence[str]], reader: Callable[[str], pd.DataFrame] = _read) -> dict:
    """conn-v2 features of unlabelled real networks, one fresh host context per file."""
    out = {}
    for name, files in groups.items():
        mats = []
        for f in files:
            try:
                fr = reader(f)
            except Exception as exc:  # a quirky file must not stop the run
                print(f"  unseen: skip {f}: {exc}", file=sys.stderr)
                continue
            if len(fr):
                mats.append(compute_features(fr, CONTEXT_SPEC, HostContext()))
        if mats:
            out[name] = np.concatenate(mats)
    return out


def loco(
    caps: Sequence[Labelled],
    *,
    kinds: Sequence[str] = ("hgb", "logreg", "mlp", "secids_cnn", "ours"),
    specs: Sequence[FeatureSpec] = (FEATURE_SPEC, CONTEXT_SPEC),
    unseen: Mapping[str, np.ndarray] | None = None,
    target_fpr: float = DEFAULT_TARGET_FPR,
    epochs: int = 6,
    max_train_rows: int = 8000,
    ext_attack_weight: float = 0.25,
    seed: int = 0,
    log: Callable[[str], None] = print,
    oof_out: dict | None = None,
    arch: Mapping | None = None,
) -> dict:
    """Leave-one-capture-out for every (model kind, feature spec); see the module docstring.

    Returns a JSON-able dict: per model, per capture metrics at its validation-fold threshold, pooled
    metrics, family accuracy (ours), flag rates on unseen networks (model fitted on all captures, threshold
    from all out-of-fold benign scores), and fit times. ``oof_out`` (a dict) receives the out-of-fold scores
    per model name (a list of arrays, one per capture). ``arch``: layer sizes of ``ours``.
    """
    from zeek_ml.training.nets import fit_scorer

    def quiet(_: str) -> None:
        return None

    subs = subsamples(caps, max_train_rows, seed)
    fam_all = [family_codes(c.detail) for c in caps]

    def train_set(idx: Sequence[int], spec: FeatureSpec):
        return training_rows(caps, subs, idx, spec, ext_attack_weight)

    results: dict = {
        "protocol": {
            "captures": [
                {"name": c.name, "file": os.path.basename(c.path), "sha256": c.sha256, "labelled": len(c.y),
                 "malicious": int(c.y.sum()), "benign": int((c.y == 0).sum()), "background": c.n_background}
                for c in caps
            ],
            "target_fpr": target_fpr,
            "epochs": epochs,
            "max_train_rows_per_capture": max_train_rows,
            "ext_attack_weight": ext_attack_weight,
            "seed": seed,
            "threshold_rule": "per test capture: lowest threshold with pooled out-of-fold benign FPR <= target on "
            "the OTHER captures (validation folds); the test capture never chooses its threshold",
        },
        "models": {},
    }  # fmt: skip
    for spec in specs:
        for kind in kinds:
            name = f"{kind}+temporal" if spec.name == CONTEXT_SPEC.name else kind
            t0 = time.time()
            oof: list[np.ndarray] = []
            fam_pred: list[np.ndarray | None] = []
            for i, c in enumerate(caps):
                others = [j for j in range(len(caps)) if j != i]
                X, y, w, fam = train_set(others, spec)
                score, family, _ = fit_scorer(
                    kind, X, y, w, spec=spec, seed=seed, epochs=epochs, fam=fam, arch=arch, log=quiet
                )
                oof.append(score(c.X(spec)))
                fam_pred.append(family(c.X(spec)).argmax(1) if family is not None else None)
                log(f"{name}: fold {c.name} done ({time.time() - t0:.0f} s)")
            entry: dict = {"kind": kind, "spec": spec.name, "per_capture": {}, "thresholds": {}}
            ths = []
            for i, c in enumerate(caps):
                benign = np.concatenate([oof[j][caps[j].y == 0] for j in range(len(caps)) if j != i])
                th = threshold_for_fpr(benign, target_fpr)
                ths.append(np.full(len(c.y), th, dtype=np.float32))
                m = binary_metrics(c.y, oof[i], th)
                m["threshold"] = th
                if fam_pred[i] is not None and c.y.sum():
                    mal = c.y == 1
                    m["family_accuracy"] = float((fam_pred[i][mal] == fam_all[i][mal]).mean())
                entry["per_capture"][c.name] = m
            per_th = [entry["per_capture"][c.name]["threshold"] for c in caps]
            if all(c.keys is not None for c in caps):
                entry["false_positive_sources"] = false_positive_sources(caps, oof, per_th)
            if oof_out is not None:
                oof_out[name] = oof
            yp, sp, tp_ = np.concatenate([c.y for c in caps]), np.concatenate(oof), np.concatenate(ths)
            entry["pooled"] = binary_metrics(yp, sp, tp_)
            # model fitted on everything: threshold from all out-of-fold benign scores, then unseen networks
            th_all = threshold_for_fpr(sp[yp == 0], target_fpr)
            entry["threshold_all"] = th_all
            if unseen:
                X, y, w, fam = train_set(range(len(caps)), spec)
                score, _, _ = fit_scorer(
                    kind, X, y, w, spec=spec, seed=seed, epochs=epochs, fam=fam, arch=arch, log=quiet
                )
                entry["unseen_flag_rates"] = {
                    g: {"rows": len(U), "flag_rate": float((score(U[:, : len(spec)]) >= th_all).mean())}
                    for g, U in unseen.items()
                }
            entry["seconds"] = round(time.time() - t0, 1)
            results["models"][name] = entry
            p = entry["pooled"]
            log(
                f"== {name}: pooled F1 {_f(p['f1'])} recall {_f(p['recall'])} ROC-AUC {_f(p['roc_auc'])} "
                f"FPR {_f(p['benign_fpr'], True)} ({entry['seconds']} s)"
            )
    return clean(results)


def false_positive_sources(
    caps: Sequence[Labelled], scores: Sequence[np.ndarray], thresholds: Sequence[float], top: int = 10
) -> dict:
    """Where the benign rows at or above their capture's threshold come from.

    Groups the false positives by (capture, responder address, responder port, proto), largest first, each with
    its originators and connection states, so a reader can tell one chatty destination (or a mislabelled one)
    from a broad pattern. Needs ``Labelled.keys``.
    """
    parts = []
    for c, s, th in zip(caps, scores, thresholds):
        if c.keys is None:
            raise ValueError(f"{c.name}: no key columns (load it with load_labelled)")
        hit = (c.y == 0) & (np.asarray(s) >= th)
        if hit.any():
            parts.append(c.keys.loc[hit].assign(capture=c.name))
    total = sum(len(p) for p in parts)
    out: dict = {"false_positives": total, "groups": []}
    if not total:
        return out
    fp = pd.concat(parts, ignore_index=True)
    by = ["capture", "id.resp_h", "id.resp_p", "proto"]
    for key, g in sorted(fp.groupby(by, sort=False), key=lambda kv: (-len(kv[1]), kv[0]))[:top]:
        states = g["conn_state"].value_counts()
        out["groups"].append(
            {
                **dict(zip(["capture", "resp_h", "resp_p", "proto"], key)),
                "rows": len(g),
                "share": len(g) / total,
                "originators": int(g["id.orig_h"].nunique()),
                "top_originator": str(g["id.orig_h"].value_counts().index[0]),
                "conn_states": {str(k): int(v) for k, v in states.head(4).items()},
                "service": str(g["service"].value_counts().index[0]),
            }
        )
    return out


def false_positive_markdown(fp: dict) -> list[str]:
    """Markdown table of :func:`false_positive_sources`."""
    if not fp["false_positives"]:
        return ["No benign row reached its threshold."]
    shown = sum(g["rows"] for g in fp["groups"])
    L = [
        f"{fp['false_positives']} benign rows at or above their capture's threshold; the {len(fp['groups'])} largest "
        f"groups (by capture, responder, port, proto) hold {shown} of them.",
        "",
        "| capture | responder | port/proto | benign rows flagged | share | originators | states | service |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in fp["groups"]:
        st = ", ".join(f"{k} {v}" for k, v in g["conn_states"].items())
        orig = g["top_originator"] if g["originators"] == 1 else f"{g['originators']} (top {g['top_originator']})"
        L.append(
            f"| {g['capture']} | {g['resp_h']} | {g['resp_p']}/{g['proto']} | {g['rows']} | {100 * g['share']:.0f} % "
            f"| {orig} | {st} | {g['service']} |"
        )
    return L


def leave_family_out(
    caps: Sequence[Labelled],
    threshold: float,
    *,
    kind: str = "ours",
    spec: FeatureSpec = CONTEXT_SPEC,
    epochs: int = 6,
    max_train_rows: int = 8000,
    ext_attack_weight: float = 0.25,
    seed: int = 0,
    arch: Mapping | None = None,
    min_rows: int = 5,
    log: Callable[[str], None] = print,
) -> dict:
    """Leave-one-attack-family-out: how the recipe does on an attack kind it never saw.

    For each attack family with at least ``min_rows`` malicious rows: fit the recipe on every capture with
    that family's malicious rows removed (the same subsample as LOCO), then score all of that family's rows
    and report the share at or above ``threshold`` (use the shipped one: the LOCO validation-fold threshold),
    per capture, and what the family head calls them. Benign rows stay in training, so this measures
    recall on a new kind, not false positives.
    """
    from zeek_ml.training.data import FAMILIES
    from zeek_ml.training.nets import fit_scorer

    subs = subsamples(caps, max_train_rows, seed)
    X, y, w, fam = training_rows(caps, subs, range(len(caps)), spec, ext_attack_weight)
    fam_all = [family_codes(c.detail) for c in caps]
    out: dict = {"threshold": threshold, "kind": kind, "spec": spec.name, "families": {}}
    t0 = time.time()
    for fi, name in enumerate(FAMILIES):
        rows = [(c, (c.y == 1) & (f == fi)) for c, f in zip(caps, fam_all)]
        n = sum(int(m.sum()) for _, m in rows)
        if n < min_rows:
            continue
        keep = ~((y == 1) & (fam == fi))
        score, family, _ = fit_scorer(
            kind, X[keep], y[keep], w[keep], spec=spec, seed=seed, epochs=epochs, fam=fam[keep], arch=arch,
            log=lambda _: None,
        )  # fmt: skip
        per, scores, named = {}, [], []
        for c, m in rows:
            if m.any():
                Xm = c.X(spec)[m]
                s = score(Xm)
                per[c.name] = {"rows": int(m.sum()), "recall": float((s >= threshold).mean())}
                scores.append(s)
                if family is not None:
                    named.append(family(Xm).argmax(1))
        s = np.concatenate(scores)
        entry = {"rows": n, "recall": float((s >= threshold).mean()), "median_score": float(np.median(s))}
        entry["per_capture"] = per
        if named:
            codes, counts = np.unique(np.concatenate(named), return_counts=True)
            entry["named_as"] = {FAMILIES[k]: int(v) for k, v in sorted(zip(codes, counts), key=lambda kv: -kv[1])}
        out["families"][name] = entry
        log(f"leave-family-out {name}: recall {entry['recall']:.3f} of {n} rows ({time.time() - t0:.0f} s)")
    rec = [e["recall"] for e in out["families"].values()]
    out["mean_recall"] = float(np.mean(rec)) if rec else None
    return clean(out)


def leave_family_out_markdown(res: dict) -> list[str]:
    """Markdown table of :func:`leave_family_out`."""
    L = [
        "| family left out | malicious rows | recall at the shipped threshold | median score | per capture | "
        "family head called them |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in res["families"].items():
        per = ", ".join(f"{k} {v['recall']:.2f} ({v['rows']})" for k, v in e["per_capture"].items())
        named = ", ".join(f"{k} {v}" for k, v in list(e.get("named_as", {}).items())[:3]) or "-"
        L.append(f"| {name} | {e['rows']} | {e['recall']:.3f} | {e['median_score']:.3f} | {per} | {named} |")
    if res.get("mean_recall") is not None:
        L.append(f"| **mean over families** | | {res['mean_recall']:.3f} | | | |")
    return L


def loco_markdown(res: dict) -> str:
    """The LOCO tables (pooled comparison, per capture F1/FPR, unseen networks) as Markdown."""
    models = res["models"]
    caps = [c["name"] for c in res["protocol"]["captures"]]
    L = [
        f"Leave-one-capture-out over {len(caps)} captures; threshold per test capture for a benign FPR of "
        f"{100 * res['protocol']['target_fpr']:.2f} % on the other captures' out-of-fold scores.",
        "",
        "| model | accuracy | precision | recall | F1 | ROC-AUC | PR-AUC | benign FPR | notices / 1k benign |",
        "|---" * 9 + "|",
    ]
    for name, e in models.items():
        p = e["pooled"]
        L.append(
            f"| {name} | {_f(p['accuracy'])} | {_f(p['precision'])} | {_f(p['recall'])} | {_f(p['f1'])} | "
            f"{_f(p['roc_auc'])} | {_f(p['pr_auc'])} | {_f(p['benign_fpr'], True)} | "
            f"{_f(p['notices_per_1k_benign'], digits=1)} |"
        )
    L += ["", "Per capture (held out): F1 / ROC-AUC / benign FPR", "", "| model | " + " | ".join(caps) + " |"]
    L.append("|---" * (len(caps) + 1) + "|")
    for name, e in models.items():
        cells = []
        for c in caps:
            m = e["per_capture"].get(c)
            if m is None:
                cells.append("-")
                continue
            cells.append(f"{_f(m['f1'], digits=2)} / {_f(m['roc_auc'], digits=2)} / {_f(m['benign_fpr'], True)}")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    groups = sorted({g for e in models.values() for g in e.get("unseen_flag_rates", {})})
    if groups:
        L += ["", "Unseen real networks (unlabelled, mostly benign): share of connections flagged", ""]
        L += ["| model | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
        for name, e in models.items():
            u = e.get("unseen_flag_rates", {})
            L.append(f"| {name} | " + " | ".join(_f(u.get(g, {}).get("flag_rate"), True) for g in groups) + " |")
    lofo = {name: e["leave_family_out"] for name, e in models.items() if e.get("leave_family_out")}
    if lofo:
        fams = list(dict.fromkeys(f for r in lofo.values() for f in r["families"]))
        L += ["", "Leave-one-attack-family-out: recall on a family left out of training, at the model's threshold", ""]
        L += ["| model | " + " | ".join(fams) + " | mean |", "|---" * (len(fams) + 2) + "|"]
        for name, r in lofo.items():
            cells = [_f(r["families"].get(f, {}).get("recall")) for f in fams]
            L.append(f"| {name} | " + " | ".join(cells) + f" | {_f(r['mean_recall'])} |")
    return "\n".join(L) + "\n"


def loco_main(argv: Sequence[str] | None = None) -> int:
    """``zeek-ml train --loco DATA...``: run LOCO with every baseline, write ``loco.json`` and ``loco.md``."""
    import argparse

    import torch

    from zeek_ml.training.data import resolve_unseen

    ap = argparse.ArgumentParser(prog="zeek-ml train --loco", description=loco.__doc__)
    ap.add_argument("data", nargs="+")
    ap.add_argument("--report", default="reports/loco", help="folder for loco.json and loco.md")
    ap.add_argument("--unseen-root", help="zeek_unlabeled/ folder: flag rates on networks never seen")
    ap.add_argument("--models", default="hgb,logreg,mlp,secids_cnn,ours")
    ap.add_argument("--specs", default="conn-v1,conn-v2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--max-train-rows", type=int, default=8000, help="rows per training capture (subsample)")
    ap.add_argument("--target-fpr", type=float, default=DEFAULT_TARGET_FPR)
    ap.add_argument("--label-column", default="label")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--arch",
        type=json.loads,
        help='layer sizes of "ours" as JSON, e.g. \'{"members": 3}\' (an ensemble) or \'{"distil": 3}\' (one network '
        "trained to an ensemble's outputs)",
    )
    ap.add_argument(
        "--leave-family-out",
        action="store_true",
        help="also refit each model without each attack family and report its recall on that family",
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    caps = [load_labelled(p, a.label_column) for p in sorted(a.data)]
    specs = [{"conn-v1": FEATURE_SPEC, "conn-v2": CONTEXT_SPEC}[s] for s in a.specs.split(",")]
    unseen = None
    if a.unseen_root:
        groups = resolve_unseen(a.unseen_root)
        unseen = load_unseen({k: v for k, v in groups.items() if not k.startswith("[")})
    res = loco(
        caps, kinds=a.models.split(","), specs=specs, unseen=unseen, target_fpr=a.target_fpr, epochs=a.epochs,
        max_train_rows=a.max_train_rows, seed=a.seed, arch=a.arch,
    )  # fmt: skip
    if a.arch:
        res["protocol"]["arch"] = a.arch
    if a.leave_family_out:
        by_name = {s.name: s for s in specs}
        for entry in res["models"].values():
            entry["leave_family_out"] = leave_family_out(
                caps, entry["threshold_all"], kind=entry["kind"], spec=by_name[entry["spec"]], epochs=a.epochs,
                max_train_rows=a.max_train_rows, seed=a.seed, arch=a.arch,
            )  # fmt: skip
    os.makedirs(a.report, exist_ok=True)
    with open(os.path.join(a.report, "loco.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = loco_markdown(res)
    with open(os.path.join(a.report, "loco.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


# --------------------------------------------------------------------------- zeek-ml evaluate MODEL DATA...


def metric_table(rows: Mapping[str, dict]) -> list[str]:
    L = [
        "| capture | rows | malicious | accuracy | precision | recall | F1 | ROC-AUC | PR-AUC | benign FPR "
        "| notices / 1k benign |",
        "|---" * 11 + "|",
    ]
    for name, m in rows.items():
        L.append(
            f"| {name} | {m['n']} | {m['n_malicious']} | {_f(m['accuracy'])} | {_f(m['precision'])} | "
            f"{_f(m['recall'])} | {_f(m['f1'])} | {_f(m['roc_auc'])} | {_f(m['pr_auc'])} | "
            f"{_f(m['benign_fpr'], True)} | {_f(m['notices_per_1k_benign'], digits=1)} |"
        )
    return L


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    *,
    max_rows: int = 20000,
    seed: int = 0,
) -> dict[str, float]:
    """Drop in ROC-AUC when one raw feature column is shuffled (rows subsampled to ``max_rows``)."""
    from sklearn.metrics import roc_auc_score

    if not 0 < y.sum() < len(y):
        return {}
    rng = np.random.default_rng(seed)
    idx = _subsample(len(y), max_rows, rng)
    Xs, ys = X[idx], y[idx]
    if not 0 < ys.sum() < len(ys):
        return {}
    base = roc_auc_score(ys, predict(Xs))
    out = {}
    for j, name in enumerate(names):
        Xp = Xs.copy()
        Xp[:, j] = rng.permutation(Xp[:, j])
        out[name] = float(base - roc_auc_score(ys, predict(Xp)))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _plots(out_dir: str, y: np.ndarray, s: np.ndarray, threshold: float, importance: dict[str, float]) -> list[str]:
    """ROC, PR, confusion matrix and permutation importance PNGs (matplotlib, the ``report`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    files = []
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, s)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(fpr, tpr)
        ax.set_xscale("log")
        ax.set_xlim(1e-4, 1)
        ax.set_xlabel("benign false-positive rate (log)")
        ax.set_ylabel("recall")
        ax.set_title("ROC (pooled)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "roc.png"), dpi=100)
        plt.close(fig)
        prec, rec, _ = precision_recall_curve(y, s)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(rec, prec)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("Precision-recall (pooled)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "pr.png"), dpi=100)
        plt.close(fig)
        files += ["roc.png", "pr.png"]
    pred = s >= threshold
    cm = np.array(
        [[((y == 0) & ~pred).sum(), ((y == 0) & pred).sum()], [((y == 1) & ~pred).sum(), ((y == 1) & pred).sum()]]
    )
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, f"{v:,}", ha="center", va="center")
    ax.set_xticks([0, 1], ["not flagged", "flagged"])
    ax.set_yticks([0, 1], ["benign", "malicious"])
    ax.set_title(f"Confusion matrix (threshold {threshold:.3f})")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "confusion.png"), dpi=100)
    plt.close(fig)
    files.append("confusion.png")
    if importance:
        top = list(importance.items())[:20][::-1]
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.barh([k for k, _ in top], [v for _, v in top])
        ax.set_xlabel("ROC-AUC drop when shuffled")
        ax.set_title("Permutation feature importance (top 20)")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "importance.png"), dpi=100)
        plt.close(fig)
        files.append("importance.png")
    return files


def evaluate_model(
    model,
    paths: Sequence[str],
    out_dir: str | None,
    *,
    threshold: float | None = None,
    label_col: str = "label",
    detail_col: str | None = None,
    plots: bool = True,
    importance_rows: int = 20000,
    reader: Callable[[str], pd.DataFrame] = _read,
) -> dict:
    """Score labelled conn logs with a loaded model; write report.md / report.json (+ PNGs) in ``out_dir``
    (``None``: write nothing, just return the report).

    Each file is one capture; rows whose label is neither benign nor malicious are left out
    (they still feed the per-host context of a conn-v2 model). Returns the report dict.
    """
    from zeek_ml.training.data import family_of

    th = float(model.threshold if threshold is None else threshold)
    per, ys, ss, Xs, fam_hits = {}, [], [], [], []
    for p in paths:
        frame = reader(p)
        lab = label_vector(frame, label_col)
        keep = lab >= 0
        if not keep.any():
            print(f"zeek-ml: {p}: no benign/malicious labels in column {label_col!r}, skipped", file=sys.stderr)
            continue
        X = model.features(frame, model.new_context())[keep]
        s, fam = model.predict_all(X)
        y = (lab[keep] == 1).astype(np.float32)
        m = binary_metrics(y, s, th)
        dcol = detail_col or next((c for c in DETAIL_COLUMNS if c in frame.columns), None)
        if fam is not None and dcol is not None and y.sum():
            mal = y == 1
            truth = np.array([family_of(d) for d in frame.loc[keep, dcol].astype("str").to_numpy()[mal]])
            pred = np.asarray(model.families)[fam[mal].argmax(1)]
            m["family_accuracy"] = float((truth == pred).mean())
            fam_hits.append((truth, pred))
        per[capture_name(p)] = m
        ys.append(y)
        ss.append(s)
        Xs.append(X)
    if not per:
        raise ValueError("no labelled rows in any input")
    y, s, X = np.concatenate(ys), np.concatenate(ss), np.concatenate(Xs)
    pooled = binary_metrics(y, s, th)
    if fam_hits:
        pooled["family_accuracy"] = float(np.mean(np.concatenate([t == p for t, p in fam_hits])))
    importance = permutation_importance(model.predict_proba, X, y, model.spec.names, max_rows=importance_rows)
    pngs: list[str] = []
    note = ""
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        if plots:
            try:
                pngs = _plots(out_dir, y, s, th, importance)
            except ImportError:
                note = "PNG figures skipped: matplotlib is not installed (pip install 'zeek-ml[report]')."
    report = clean(
        {
            "model": {"name": model.name, "version": model.version, "path": model.path, "sha256": model.sha256},
            "threshold": th,
            "label_column": label_col,
            "inputs": [os.path.abspath(p) for p in paths],
            "per_capture": per,
            "pooled": pooled,
            "permutation_importance_roc_auc_drop": importance,
            "figures": pngs,
        }
    )
    L = [
        f"# Evaluation of {model.name} v{model.version}",
        "",
        f"Threshold {th:.4f}; {len(per)} capture(s), {pooled['n']:,} labelled rows ({pooled['n_malicious']:,} "
        f"malicious). Label column `{label_col}`; rows with other labels (Background) left out.",
        "",
        *metric_table({**per, "**pooled**": pooled}),
        "",
    ]
    if "family_accuracy" in pooled:
        L += [f"Attack family accuracy on malicious rows (pooled): {_f(pooled['family_accuracy'])}.", ""]
    L += ["## Permutation feature importance (ROC-AUC drop, top 15)", "", "| feature | drop |", "|---|---|"]
    L += [f"| `{k}` | {v:.4f} |" for k, v in list(importance.items())[:15]]
    L += [""] + [f"![{f}]({f})" for f in pngs] + ([note] if note else []) + [""]
    if out_dir is not None:
        with open(os.path.join(out_dir, "report.json"), "w") as f:
            json.dump(report, f, indent=1)
        with open(os.path.join(out_dir, "report.md"), "w") as f:
            f.write("\n".join(L))
    report["table"] = metric_table({**per, "pooled": pooled})
    return report


# --------------------------------------------------------------------------- transfer check (other flow datasets)

#: how other datasets' columns become conn.log fields (what cannot be mapped stays unset)
TRANSFER_MAPPINGS: dict[str, dict[str, str]] = {
    "unsw_nb15": {
        "duration": "dur (s)",
        "proto": "proto (tcp/udp/...; others -> other)",
        "service": "service ('-' -> unset)",
        "orig_pkts / resp_pkts": "spkts / dpkts",
        "orig_ip_bytes / resp_ip_bytes": "sbytes / dbytes (IP-level bytes)",
        "orig_bytes / resp_bytes": "unset (payload bytes not given)",
        "conn_state, history": "unset (`state` is an Argus state, not a Zeek conn_state)",
        "ports, hosts, ts": "unset in this partition: every row is its own host (no temporal context)",
        "label": "label (0 normal / 1 attack); family from attack_cat",
    },
    "cicids2017": {
        "ts": "Timestamp",
        "id.orig_h/p, id.resp_h/p": "Src IP/Port, Dst IP/Port",
        "proto": "Protocol (6 tcp, 17 udp, 1 icmp)",
        "duration": "Flow Duration / 1e6",
        "orig_pkts / resp_pkts": "Total Fwd Packet / Total Bwd packets",
        "orig_bytes / resp_bytes": "Total Length of Fwd / Bwd Packet (payload)",
        "orig_ip_bytes / resp_ip_bytes": "payload + Fwd / Bwd Header Length",
        "conn_state, history, service": "unset (CICFlowMeter has flag counts, not Zeek states or analysers)",
        "label": "Label (BENIGN vs the rest); per-class files sampled from different days, so the host context "
        "sees an artificial sequence",
    },
}


def map_unsw(frame: pd.DataFrame) -> pd.DataFrame:
    """UNSW-NB15 (training/testing-set CSV) rows as conn records (see TRANSFER_MAPPINGS)."""
    n = len(frame)
    svc = frame["service"].astype("str").str.strip()
    return pd.DataFrame(
        {
            "ts": np.arange(n, dtype=float),
            "uid": [f"U{i}" for i in range(n)],
            "id.orig_h": [f"unsw-{i}" for i in range(n)],
            "id.resp_h": [f"unsw-r{i}" for i in range(n)],
            "proto": frame["proto"].astype("str").str.lower(),
            "service": svc.where(svc != "-", None),
            "duration": pd.to_numeric(frame["dur"], errors="coerce"),
            "orig_pkts": pd.to_numeric(frame["spkts"], errors="coerce"),
            "resp_pkts": pd.to_numeric(frame["dpkts"], errors="coerce"),
            "orig_ip_bytes": pd.to_numeric(frame["sbytes"], errors="coerce"),
            "resp_ip_bytes": pd.to_numeric(frame["dbytes"], errors="coerce"),
            "label": np.where(pd.to_numeric(frame["label"]) == 1, "Malicious", "Benign"),
            "detailedlabel": frame["attack_cat"].astype("str").str.strip(),
        }
    )


def map_cicids(frame: pd.DataFrame) -> pd.DataFrame:
    """CIC-IDS2017 (improved, CICFlowMeter) rows as conn records (see TRANSFER_MAPPINGS)."""
    proto = pd.to_numeric(frame["Protocol"], errors="coerce").map({6: "tcp", 17: "udp", 1: "icmp"})
    fwd = pd.to_numeric(frame["Total Length of Fwd Packet"], errors="coerce")
    bwd = pd.to_numeric(frame["Total Length of Bwd Packet"], errors="coerce")
    out = pd.DataFrame(
        {
            "ts": pd.to_datetime(frame["Timestamp"], errors="coerce").astype("int64") / 1e9,
            "uid": frame["Flow ID"].astype("str"),
            "id.orig_h": frame["Src IP"].astype("str"),
            "id.orig_p": pd.to_numeric(frame["Src Port"], errors="coerce"),
            "id.resp_h": frame["Dst IP"].astype("str"),
            "id.resp_p": pd.to_numeric(frame["Dst Port"], errors="coerce"),
            "proto": proto,
            "duration": pd.to_numeric(frame["Flow Duration"], errors="coerce") / 1e6,
            "orig_pkts": pd.to_numeric(frame["Total Fwd Packet"], errors="coerce"),
            "resp_pkts": pd.to_numeric(frame["Total Bwd packets"], errors="coerce"),
            "orig_bytes": fwd,
            "resp_bytes": bwd,
            "orig_ip_bytes": fwd + pd.to_numeric(frame["Fwd Header Length"], errors="coerce"),
            "resp_ip_bytes": bwd + pd.to_numeric(frame["Bwd Header Length"], errors="coerce"),
            "label": np.where(frame["Label"].astype("str").str.upper() == "BENIGN", "Benign", "Malicious"),
            "detailedlabel": frame["Label"].astype("str"),
        }
    )
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def transfer_check(model, flows_root: str, *, threshold: float | None = None) -> dict:
    """Score UNSW-NB15 and the CIC-IDS2017 sample through TRANSFER_MAPPINGS; metrics per dataset and class."""
    import glob

    th = float(model.threshold if threshold is None else threshold)
    out: dict = {"threshold": th, "mappings": TRANSFER_MAPPINGS, "datasets": {}}
    sets = {
        "unsw_nb15": (sorted(glob.glob(os.path.join(flows_root, "unsw_nb15", "UNSW_NB15_*.csv*"))), map_unsw),
        "cicids2017": (sorted(glob.glob(os.path.join(flows_root, "cicids2017_improved_sample", "*.csv*"))), map_cicids),
    }
    for name, (files, mapper) in sets.items():
        if not files:
            continue
        conns = mapper(pd.concat([pd.read_csv(f, low_memory=False) for f in files], ignore_index=True))
        y = (conns["label"] == "Malicious").to_numpy().astype(np.float32)
        s = model.predict_proba(model.features(conns, model.new_context()))
        entry = {"files": [os.path.basename(f) for f in files], "overall": binary_metrics(y, s, th), "per_class": {}}
        for cls, idx in conns.groupby("detailedlabel").indices.items():
            entry["per_class"][str(cls)] = {"rows": len(idx), "flag_rate": float((s[idx] >= th).mean())}
        out["datasets"][name] = entry
    return clean(out)


def transfer_markdown(res: dict) -> str:
    """The transfer check as Markdown."""
    L = []
    for name, e in res["datasets"].items():
        o = e["overall"]
        L += [
            f"**{name}** ({o['n']:,} flows, {o['n_malicious']:,} attacks): ROC-AUC {_f(o['roc_auc'])}, PR-AUC "
            f"{_f(o['pr_auc'])}, recall {_f(o['recall'])}, benign FPR {_f(o['benign_fpr'], True)} at threshold "
            f"{res['threshold']:.4f}. Share flagged per class: "
            + ", ".join(f"{k} {100 * v['flag_rate']:.1f} %" for k, v in e["per_class"].items())
            + ".",
            "",
        ]
    L += ["Column mapping:", ""]
    for name, m in res["mappings"].items():
        L.append(f"- {name}: " + "; ".join(f"`{k}` <- {v}" for k, v in m.items()))
    return "\n".join(L) + "\n"
