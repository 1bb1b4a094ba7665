"""``zeek-ml calibrate``: score a stretch of the site's own logs and fit a site profile to a notice budget."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.model.conn_model import sha256_file
from zeek_ml.model.scorer import Scorer, Verdicts
from zeek_ml.notices.notice import DEFAULT_SUPPRESS_FOR
from zeek_ml.notices.profile import (
    BUCKETS,
    DEFAULT_BUDGET_PER_DAY,
    DEFAULT_MAX_THRESHOLD,
    DEFAULT_MIN_HOSTS_SITE,
    DEFAULT_MIN_PRESENCE,
    DEFAULT_SLACK,
    PATTERN_FIELDS,
    SiteProfile,
    _iso,
    pattern_keys,
)
from zeek_ml.notices.site import DIRECTIONS, directions
from zeek_ml.sources.files import iter_batches
from zeek_ml.sources.local_nets import LocalNets
from zeek_ml.sources.reading import ReadStats, RejectLog


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
    from zeek_ml.notices.incidents import IncidentSink, NoticePolicy

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
