"""Site calibration: learn from a stretch of a site's own logs what is normal there.

``zeek-ml calibrate LOGS... -o site.json`` scores the logs with the model and fits a
:class:`SiteProfile` (JSON, versioned, human-readable, with provenance):

1. **Baselines** of flagged traffic that recurs at the site. A *pattern* is (direction, host,
   proto, service, responder port, conn_state; port ``*`` for unanswered or rejected
   attempts), where host is the local responder for inbound
   traffic and the originator otherwise, or ``*`` for a pattern many hosts share (mDNS from
   every workstation). The stretch is cut into 24 time buckets (60 s to 1 h each); a pattern
   is normal when it is present in at least ``min_presence`` of the buckets that saw traffic.
   This is the robust part: an attack in the stretch (a scan, a brute force, a flood) is a
   burst, present in few buckets or spread over thousands of one-off patterns, so it does not
   become normal, while printers, backups, monitoring and mDNS recur all day. For each normal
   pattern the profile keeps the 95th percentile of its connections per suppression interval.
2. **Thresholds** per direction that meet an alert budget (notices per day, counted as the
   notice writer counts them, after aggregation and baselines; a stretch shorter than a day
   counts as one day), or a target false-positive rate (the score quantile of the stretch's
   connections in that direction). A threshold is never lowered below the model's, and
   never raised above ``max_threshold``.

Applying it (``score``/``watch --profile``): a connection counts against its direction's
threshold; an incident whose connections all match normal patterns and whose count stays
within ``slack`` x the patterns' usual count per interval is not written (for inbound
incidents, up to ``unexplained_share`` of the connections may match no pattern). Anything more
(a new pattern, a burst well above normal) still is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml import __version__
from zeek_ml.model import sha256_file
from zeek_ml.notice import DEFAULT_SUPPRESS_FOR
from zeek_ml.pipeline import Scorer, Verdicts
from zeek_ml.site import DIRECTIONS, LocalNets, directions
from zeek_ml.watch.durable import write_json_atomic
from zeek_ml.zeeklog import ReadStats, RejectLog, iter_batches

PROFILE_FORMAT = "zeek-ml-site-profile"
PROFILE_VERSION = 1
PATTERN_FIELDS: tuple[str, ...] = ("direction", "host", "proto", "service", "port", "conn_state")

DEFAULT_BUDGET_PER_DAY = 5.0
"""Notices per day and direction the fitted thresholds allow on the calibration stretch."""
DEFAULT_MIN_PRESENCE = 0.2
DEFAULT_MIN_HOSTS_SITE = 3
DEFAULT_SLACK = 2.0
DEFAULT_MAX_THRESHOLD = 0.9995
DEFAULT_UNEXPLAINED_SHARE = 0.1
BUCKETS = 24
UNANSWERED_STATES: tuple[str, ...] = ("S0", "REJ", "OTH", "SH", "SHR", "RSTOS0", "RSTRH")
"""conn_state of attempts nobody answered: their pattern has port ``*``."""


class ProfileError(ValueError):
    """A profile file that is not a zeek-ml site profile, or of a newer version."""


def _texts(values: pd.Series) -> np.ndarray:
    return values.astype(object).where(values.notna(), "-").astype(str).to_numpy()


def pattern_keys(conns: pd.DataFrame, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(host-level, site-level) pattern key of each connection, as ``|``-joined text."""
    host = np.where(direction == "inbound", _texts(conns["id.resp_h"]), _texts(conns["id.orig_h"]))
    rest = (
        "|"
        + _texts(conns["proto"]).astype(object)
        + "|"
        + _texts(conns["service"])
        + "|"
        + _port_texts(conns)
        + "|"
        + _texts(conns["conn_state"])
    )
    d = np.asarray(direction, dtype=object)
    return d + "|" + host.astype(object) + rest, d + "|*" + rest


def _port_texts(conns: pd.DataFrame) -> np.ndarray:
    """The responder port, or ``*`` for an unanswered or rejected attempt (any closed port is one pattern)."""
    state = _texts(conns["conn_state"])
    return np.where(np.isin(state, UNANSWERED_STATES), "*", _texts(conns["id.resp_p"]))


@dataclass
class SiteProfile:
    """What a site finds normal: per-direction thresholds and baseline patterns."""

    thresholds: dict[str, float] = field(default_factory=dict)
    patterns: list[dict[str, Any]] = field(default_factory=list)
    """Each: the :data:`PATTERN_FIELDS`, ``presence``, ``per_interval`` (95th percentile of
    connections per suppression interval), ``max_score``, ``hosts``."""
    local_nets: LocalNets | None = None
    suppress_for: float = DEFAULT_SUPPRESS_FOR
    slack: float = DEFAULT_SLACK
    unexplained_share: float = DEFAULT_UNEXPLAINED_SHARE
    """Share of an inbound or external incident that may match no baseline and still be
    normal (an Internet-facing host sees a few new probes every hour); 0 for local originators."""
    fitted_on: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index: dict[str, int] = {}
        for i, p in enumerate(self.patterns):
            self._index["|".join(str(p[f]) for f in PATTERN_FIELDS)] = i

    # ------------------------------------------------------------------ applying
    def thresholds_for(self, direction: np.ndarray, default: float) -> np.ndarray:
        """Each row's threshold: its direction's, else ``default`` (the model's)."""
        out = np.full(len(direction), float(default))
        for name, value in self.thresholds.items():
            out[np.asarray(direction) == name] = float(value)
        return out

    def match(self, conns: pd.DataFrame, direction: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Index of the normal pattern each row matches (host-level first), -1 for none.

        ``scores`` is unused for now (patterns keep their top calibration score for reference).
        """
        if not self.patterns or not len(conns):
            return np.full(len(conns), -1, dtype=np.int64)
        host_key, site_key = pattern_keys(conns, direction)
        idx = pd.Series(host_key).map(self._index)
        idx = idx.fillna(pd.Series(site_key).map(self._index)).fillna(-1).to_numpy(dtype=np.int64, copy=True)
        return idx

    def allowance(self, patterns: Iterable[int], interval: float) -> float:
        """How many connections of these patterns an interval may hold and still be normal."""
        scale = float(interval) / float(self.suppress_for)
        return sum(self.slack * max(1.0, self.patterns[i]["per_interval"] * scale) for i in patterns)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """The profile as a JSON document (see the README for its schema)."""
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "zeek_ml_version": __version__,
            "model": self.model,
            "fitted_on": self.fitted_on,
            "settings": self.settings,
            "local_nets": None if self.local_nets is None else list(self.local_nets.nets),
            "suppress_for": self.suppress_for,
            "slack": self.slack,
            "unexplained_share": self.unexplained_share,
            "thresholds": {k: round(float(v), 6) for k, v in sorted(self.thresholds.items())},
            "patterns": self.patterns,
            "report": self.report,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the profile as indented JSON (atomically: temp file, then rename)."""
        write_json_atomic(path, self.to_json(), indent=2)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SiteProfile:
        """Check the format and version, then build the profile."""
        if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"not a zeek-ml site profile (format is not {PROFILE_FORMAT!r})")
        version = doc.get("version")
        if not isinstance(version, int) or version > PROFILE_VERSION or version < 1:
            raise ProfileError(
                f"site profile version {version!r} not supported (this zeek-ml reads 1..{PROFILE_VERSION})"
            )
        try:
            thresholds = {str(k): float(v) for k, v in doc["thresholds"].items()}
            unknown = set(thresholds) - set(DIRECTIONS)
            if unknown:
                raise ProfileError(f"unknown direction(s) in thresholds: {', '.join(sorted(unknown))}")
            patterns = list(doc["patterns"])
            for p in patterns:
                for key in (*PATTERN_FIELDS, "per_interval", "max_score"):
                    if key not in p:
                        raise ProfileError(f"pattern without {key!r}: {p}")
            nets = doc.get("local_nets")
            return cls(
                thresholds=thresholds,
                patterns=patterns,
                local_nets=None if nets is None else LocalNets.parse(nets),
                suppress_for=float(doc.get("suppress_for", DEFAULT_SUPPRESS_FOR)),
                slack=float(doc.get("slack", DEFAULT_SLACK)),
                unexplained_share=float(doc.get("unexplained_share", DEFAULT_UNEXPLAINED_SHARE)),
                fitted_on=dict(doc.get("fitted_on") or {}),
                model=dict(doc.get("model") or {}),
                settings=dict(doc.get("settings") or {}),
                report=dict(doc.get("report") or {}),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ProfileError(f"malformed site profile: {e!r}") from e

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SiteProfile:
        """Read a profile file (JSON only, never pickle)."""
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except json.JSONDecodeError as e:
            raise ProfileError(f"{path}: not JSON: {e}") from e
        return cls.from_json(doc)


# --------------------------------------------------------------------------- fitting


def _iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return pd.Timestamp(ts, unit="s", tz="UTC").isoformat()


@dataclass
class Stretch:
    """The calibration stretch after scoring: every row's ts, the candidate rows' details."""

    ts: np.ndarray
    cand: pd.DataFrame
    """Rows at or above the lowest threshold considered, with direction and score."""
    verdicts: list[Verdicts]
    """The candidate rows as verdicts, in input order (to replay through the notice writer)."""
    files: list[dict[str, Any]]
    rows: int


def score_stretch(
    batches: Iterable[pd.DataFrame],
    scorer: Scorer,
    local_nets: LocalNets | None,
    *,
    floor: float,
    until: float | None = None,
) -> Stretch:
    """Score the calibration batches, keeping every ts and the rows scoring ``>= floor``."""
    all_ts: list[np.ndarray] = []
    cands: list[pd.DataFrame] = []
    kept: list[Verdicts] = []
    per_file: dict[str, int] = {}
    rows = 0
    for batch in batches:
        if until is not None:
            batch = batch[batch["ts"].to_numpy(dtype=float, na_value=np.nan) < until]
        if not len(batch):
            continue
        source = str(batch.attrs.get("source", "?"))
        per_file[source] = per_file.get(source, 0) + len(batch)
        rows += len(batch)
        verdicts = scorer(batch)
        ts = batch["ts"].to_numpy(dtype=float, na_value=np.nan)
        all_ts.append(ts)
        mask = np.asarray(verdicts.scores) >= floor
        if not mask.any():
            continue
        sub = verdicts.take(mask)
        kept.append(sub)
        frame = pd.DataFrame(
            {
                "ts": ts[mask],
                "score": np.asarray(verdicts.scores, dtype=float)[mask],
                "direction": directions(sub.conns, local_nets),
            }
        )
        host_key, site_key = pattern_keys(sub.conns, frame["direction"].to_numpy(dtype=object))
        frame["host_key"] = host_key
        frame["site_key"] = site_key
        cands.append(frame)
    files = [
        {"path": path, "rows": n, "sha256": sha256_file(path) if os.path.isfile(path) else None}
        for path, n in per_file.items()
    ]
    cand = (
        pd.concat(cands, ignore_index=True)
        if cands
        else pd.DataFrame(columns=["ts", "score", "direction", "host_key", "site_key"])
    )
    ts_all = np.concatenate(all_ts) if all_ts else np.zeros(0)
    return Stretch(ts=ts_all, cand=cand, verdicts=kept, files=files, rows=rows)


def _fit_patterns(
    stretch: Stretch, suppress_for: float, min_presence: float, min_hosts_site: int, threshold: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ts = stretch.ts[np.isfinite(stretch.ts)]
    cand = stretch.cand[np.isfinite(stretch.cand["ts"].to_numpy(dtype=float))]
    cand = cand[cand["score"].to_numpy(dtype=float) >= threshold]  # baselines of what the model flags
    if not len(ts) or not len(cand):
        return [], {"bucket_seconds": None, "active_buckets": 0}
    t0, t1 = float(ts.min()), float(ts.max())
    width = float(np.clip((t1 - t0) / BUCKETS, 60.0, 3600.0))
    active = len(np.unique(np.floor((ts - t0) / width)))
    bucket = np.floor((cand["ts"].to_numpy(dtype=float) - t0) / width)
    window = np.floor((cand["ts"].to_numpy(dtype=float) - t0) / suppress_for)
    patterns: list[dict[str, Any]] = []
    for level, col in (("host", "host_key"), ("site", "site_key")):
        frame = pd.DataFrame(
            {"key": cand[col].to_numpy(), "bucket": bucket, "window": window, "score": cand["score"].to_numpy()}
        )
        if level == "site":
            frame["host"] = cand["host_key"].str.split("|", n=2).str[1].to_numpy()
        grouped = frame.groupby("key", sort=True)
        presence = grouped["bucket"].nunique() / active
        normal = presence[presence >= min_presence].index
        if level == "site":
            hosts = grouped["host"].nunique()
            normal = [k for k in normal if hosts[k] >= min_hosts_site]
        if not len(normal):
            continue
        sub = frame[frame["key"].isin(normal)]
        per_window = sub.groupby(["key", "window"]).size().groupby(level=0).quantile(0.95)
        max_score = sub.groupby("key")["score"].max()
        nhosts = sub.groupby("key")["host"].nunique() if level == "site" else None
        for key in sorted(normal):
            parts = key.split("|")
            patterns.append(
                {
                    **dict(zip(PATTERN_FIELDS, parts, strict=True)),
                    "presence": round(float(presence[key]), 4),
                    "per_interval": round(float(per_window[key]), 2),
                    "max_score": float(max_score[key]),
                    "hosts": int(nhosts[key]) if nhosts is not None else 1,
                }
            )
    return patterns, {"bucket_seconds": width, "active_buckets": active}


def _count_notices(stretch: Stretch, profile: SiteProfile) -> dict[str, int]:
    """Notices per direction the notice writer would write on the stretch with ``profile``."""
    from zeek_ml.aggregate import IncidentSink, NoticePolicy

    counter = _CountingWriter()
    sink = IncidentSink(lambda path, fields: counter, NoticePolicy(suppress_for=profile.suppress_for, profile=profile))
    for verdicts in stretch.verdicts:
        sink.write(verdicts)
    sink.close()
    return counter.by_direction


class _CountingWriter:
    """A writer that only counts notices per direction."""

    def __init__(self) -> None:
        self.by_direction: dict[str, int] = {}

    def write(self, frame: pd.DataFrame) -> int:
        for d, n in frame["zeek_ml.direction"].value_counts().items():
            self.by_direction[str(d)] = self.by_direction.get(str(d), 0) + int(n)
        return len(frame)

    def close(self) -> None:
        pass


def fit_profile(
    batches: Iterable[pd.DataFrame],
    model: Any,
    *,
    local_nets: LocalNets | None = None,
    suppress_for: float = DEFAULT_SUPPRESS_FOR,
    budget_per_day: float | None = DEFAULT_BUDGET_PER_DAY,
    target_fpr: float | None = None,
    min_presence: float = DEFAULT_MIN_PRESENCE,
    min_hosts_site: int = DEFAULT_MIN_HOSTS_SITE,
    slack: float = DEFAULT_SLACK,
    max_threshold: float = DEFAULT_MAX_THRESHOLD,
    until: float | None = None,
) -> SiteProfile:
    """Fit a site profile on ``batches`` (conn records of the site, assumed mostly benign).

    Deterministic: the same logs and model give the same profile, byte for byte.
    """
    scorer = Scorer(model)
    base = float(scorer.threshold)
    floor = base if target_fpr is None else 0.0
    stretch = score_stretch(batches, scorer, local_nets, floor=floor, until=until)
    patterns, buckets = _fit_patterns(stretch, suppress_for, min_presence, min_hosts_site, base)
    finite = stretch.ts[np.isfinite(stretch.ts)]
    t0 = float(finite.min()) if len(finite) else None
    t1 = float(finite.max()) if len(finite) else None
    days = max(1.0, (t1 - t0) / 86400.0) if t0 is not None else 1.0
    profile = SiteProfile(
        thresholds={d: base for d in DIRECTIONS},
        patterns=patterns,
        local_nets=local_nets,
        suppress_for=suppress_for,
        slack=slack,
    )
    before = _count_notices(stretch, profile)
    if target_fpr is not None:
        for d in DIRECTIONS:
            scores = stretch.cand.loc[stretch.cand["direction"] == d, "score"].to_numpy()
            if len(scores):
                q = float(np.quantile(scores, 1.0 - target_fpr))
                profile.thresholds[d] = float(np.clip(q, base, max_threshold))
    elif budget_per_day is not None:
        allowed = budget_per_day * days
        for d in DIRECTIONS:
            if before.get(d, 0) <= allowed:
                continue
            scores = np.unique(stretch.cand.loc[stretch.cand["direction"] == d, "score"].to_numpy())
            scores = scores[(scores > base) & (scores <= max_threshold)]
            lo, hi = 0, len(scores)  # search the smallest candidate threshold meeting the budget
            while lo < hi:
                mid = (lo + hi) // 2
                profile.thresholds[d] = float(scores[mid])
                if _count_notices(stretch, profile).get(d, 0) <= allowed:
                    hi = mid
                else:
                    lo = mid + 1
            profile.thresholds[d] = float(scores[lo]) if lo < len(scores) else max_threshold
    after = _count_notices(stretch, profile)
    profile.thresholds = {d: v for d, v in profile.thresholds.items() if v != base}
    profile.model = {
        "name": model.name,
        "version": str(model.version),
        "sha256": getattr(model, "sha256", None),
        "threshold": base,
    }
    profile.fitted_on = {
        "files": stretch.files,
        "rows": stretch.rows,
        "first_ts": _iso(t0),
        "last_ts": _iso(t1),
        "days": round((t1 - t0) / 86400.0, 4) if t0 is not None else 0.0,
        "until": _iso(until),
    }
    profile.settings = {
        "budget_per_day": budget_per_day if target_fpr is None else None,
        "target_fpr": target_fpr,
        "min_presence": min_presence,
        "min_hosts_site": min_hosts_site,
        "max_threshold": max_threshold,
        **buckets,
    }
    profile.report = {
        "flagged_connections": int((stretch.cand["score"] >= base).sum()),
        "notices_before": dict(sorted(before.items())),
        "notices_after": dict(sorted(after.items())),
    }
    return profile


def calibrate_logs(
    inputs: Sequence[str | os.PathLike[str]],
    model: Any,
    *,
    rejects: RejectLog | None = None,
    stats: ReadStats | None = None,
    **options: Any,
) -> SiteProfile:
    """:func:`fit_profile` over conn log files, directories or globs."""
    return fit_profile(iter_batches(inputs, rejects=rejects, stats=stats), model, **options)
