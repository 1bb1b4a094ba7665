"""Verdicts -> notice.log rows (Zeek's 26 standard columns first, then ours)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.formats.schema import NOTICE_FIELDS
from zeek_ml.model.scorer import Verdicts, plain

NOTE = "ZeekML::Suspicious_Connection"
"""The ``note`` of every notice zeek-ml writes (one Notice::Type, as in zeek_scripts/)."""

DEFAULT_SUPPRESS_FOR = 3600.0
"""Zeek's default ``Notice::default_suppression_interval`` (1 hour)."""

EXTRA_NOTICE_FIELDS: tuple[tuple[str, str], ...] = (
    ("zeek_ml.score", "double"),
    ("zeek_ml.threshold", "double"),
    ("zeek_ml.model", "string"),
    ("zeek_ml.model_version", "string"),
    ("zeek_ml.family", "string"),
    ("zeek_ml.reasons", "vector[string]"),
)
"""Columns after the standard ones: the score, the threshold it crossed, the model, the predicted
attack family and the feature groups that drove the score (when the model names them)."""

REP_FIELDS: tuple[str, ...] = (
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "conn_state",
    "history",
    "ts",
    "duration",
    "orig_pkts",
    "resp_pkts",
    "orig_ip_bytes",
    "resp_ip_bytes",
    "community_id",
    "suricata.bytes_toserver",
    "suricata.bytes_toclient",
)
"""What a notice keeps of the connection it names (an incident's top-scoring one), in its ``_rep``
column: the notice log does not write it; eve alerts take their ``flow``, ``app_proto`` and
``community_id`` from it."""

ACTIONS: tuple[str, ...] = ("Notice::ACTION_LOG",)
EMPTY: tuple[str, ...] = ()

INCIDENT_NOTICE_FIELDS: tuple[tuple[str, str], ...] = (
    ("zeek_ml.severity", "string"),
    ("zeek_ml.direction", "string"),
    ("zeek_ml.incident", "string"),
    ("zeek_ml.first_ts", "time"),
    ("zeek_ml.last_ts", "time"),
    ("zeek_ml.srcs", "count"),
    ("zeek_ml.dsts", "count"),
    ("zeek_ml.ports", "count"),
)
"""Severity (low/medium/high), direction (inbound/outbound/internal/external) and, for an
aggregated notice, its incident key, the first and last ``ts`` and the distinct originators,
responders and responder ports it covers (``n`` holds its count of connections)."""

NOTICE_LOG_FIELDS: tuple[tuple[str, str], ...] = NOTICE_FIELDS + EXTRA_NOTICE_FIELDS + INCIDENT_NOTICE_FIELDS

SCORE_FIELDS: tuple[tuple[str, str], ...] = (
    ("zeek_ml.score", "double"),
    ("zeek_ml.verdict", "bool"),
    ("zeek_ml.model", "string"),
)
"""Columns appended to each connection by ``score --all`` (an enriched conn log)."""


def notice_sub(
    score: float,
    *,
    severity: str | None = None,
    family: str | None = None,
    n: int | None = None,
    srcs: int | None = None,
    dsts: int | None = None,
    ports: int | None = None,
    model: str | None = None,
) -> str:
    """The notice's ``sub``: its details as ``key=value`` words, in a fixed order.

    Pipelines that keep only Zeek's standard notice fields (Security Onion's, Splunk's) keep
    ``msg`` and ``sub``, so score, severity, family, incident size and detector survive there:
    ``score=0.999 severity=high family=PortScan n=120 srcs=1 dsts=40 ports=3 model=conn-cnn-v2``.
    """
    words = [f"score={score:.3f}"]
    for key, value in (
        ("severity", severity),
        ("family", family),
        ("n", n),
        ("srcs", srcs),
        ("dsts", dsts),
        ("ports", ports),
        ("model", model),
    ):
        if value is not None and value != "":
            words.append(f"{key}={value}")
    return " ".join(words)


def _text(series: pd.Series, default: str) -> pd.Series:
    return series.astype(object).where(series.notna(), default).astype(str)


def notices_from_conns(
    conns: pd.DataFrame, scores: np.ndarray, threshold: float, model_name: str, model_version: str
) -> pd.DataFrame:
    """One notice row per connection in ``conns`` (already the flagged ones)."""
    n = len(conns)
    orig_h = _text(conns["id.orig_h"], "?")
    resp_h = _text(conns["id.resp_h"], "?")
    orig_p = _text(conns["id.orig_p"], "?")
    resp_p = _text(conns["id.resp_p"], "?")
    proto = _text(conns["proto"], "?")
    service = _text(conns["service"], "no service")
    state = _text(conns["conn_state"], "?")
    history = _text(conns["history"], "-")
    score_txt = pd.Series(np.char.mod("%.3f", np.asarray(scores, dtype=float)), index=conns.index)
    msg = (
        "Suspicious "
        + proto
        + " connection "
        + orig_h
        + ":"
        + orig_p
        + " -> "
        + resp_h
        + ":"
        + resp_p
        + " ("
        + service
        + ", "
        + state
        + ", history "
        + history
        + "): model score "
        + score_txt
        + f" >= threshold {threshold:.3f}"
    )
    frame = pd.DataFrame(
        {
            "ts": conns["ts"].to_numpy(dtype=float, na_value=np.nan),
            "uid": conns["uid"].to_numpy(),
            "id.orig_h": conns["id.orig_h"].to_numpy(),
            "id.orig_p": conns["id.orig_p"].to_numpy(),
            "id.resp_h": conns["id.resp_h"].to_numpy(),
            "id.resp_p": conns["id.resp_p"].to_numpy(),
            "proto": conns["proto"].to_numpy(),
            "note": [NOTE] * n,
            "msg": msg.to_numpy(),
            "sub": ("score=" + score_txt).to_numpy(),
            "src": conns["id.orig_h"].to_numpy(),
            "dst": conns["id.resp_h"].to_numpy(),
            "p": conns["id.resp_p"].to_numpy(),
            "actions": [ACTIONS] * n,  # shared, read-only
            "email_dest": [EMPTY] * n,
            "suppress_for": np.full(n, DEFAULT_SUPPRESS_FOR),
            "zeek_ml.score": np.asarray(scores, dtype=float),
            "zeek_ml.threshold": np.full(n, float(threshold)),
            "zeek_ml.model": [model_name] * n,
            "zeek_ml.model_version": [model_version] * n,
        }
    )
    return frame


def connection_subs(frame: pd.DataFrame) -> list[str]:
    """``sub`` for notice rows that stand for one connection each (score, severity, family, model)."""
    get = lambda name: frame[name].tolist() if name in frame.columns else [None] * len(frame)  # noqa: E731
    return [
        notice_sub(float(score), severity=sev, family=fam if isinstance(fam, str) else None, model=model)
        for score, sev, fam, model in zip(
            get("zeek_ml.score"), get("zeek_ml.severity"), get("zeek_ml.family"), get("zeek_ml.model")
        )
    ]


def notices_from_verdicts(verdicts: Verdicts) -> pd.DataFrame:
    """One notice row per row of ``verdicts`` (pass the flagged ones), with family and reasons if known."""
    frame = notices_from_conns(
        verdicts.conns, verdicts.scores, verdicts.threshold, verdicts.model_name, verdicts.model_version
    )
    msg = frame["msg"].to_numpy(dtype=object)
    if verdicts.family is not None:
        fam = np.array(["" if f is None else str(f) for f in verdicts.family], dtype=object)
        has = fam != ""
        msg = np.where(has, "[" + fam + "] " + msg, msg)
        frame["zeek_ml.family"] = np.where(has, fam, None)
    if verdicts.reasons is not None:
        why = np.array(["" if r is None else str(r) for r in verdicts.reasons], dtype=object)
        msg = np.where(why != "", msg + "; why: " + why, msg)
    if verdicts.reason_codes is not None:
        frame["zeek_ml.reasons"] = [tuple(c) if c is not None else None for c in verdicts.reason_codes]
    frame["msg"] = msg
    frame["_rep"] = rep_records(verdicts.conns)
    return frame


def rep_records(conns: pd.DataFrame) -> list[dict[str, Any]]:
    """:data:`REP_FIELDS` of each connection as plain values (None where unset or absent)."""
    columns = {f: conns[f].tolist() if f in conns.columns else [None] * len(conns) for f in REP_FIELDS}
    return [{f: plain(columns[f][i]) for f in REP_FIELDS} for i in range(len(conns))]
