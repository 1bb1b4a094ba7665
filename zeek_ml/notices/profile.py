"""Site profiles: the per-site thresholds and known benign patterns that ``zeek-ml calibrate``
learns, saved as JSON and applied when notices are raised."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml._version import __version__
from zeek_ml.formats.safeio import write_json_atomic
from zeek_ml.notices.notice import DEFAULT_SUPPRESS_FOR
from zeek_ml.notices.site import DIRECTIONS, texts
from zeek_ml.sources.local_nets import LocalNets

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


def pattern_keys(conns: pd.DataFrame, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(host-level, site-level) pattern key of each connection, as ``|``-joined text."""
    host = np.where(direction == "inbound", texts(conns["id.resp_h"]), texts(conns["id.orig_h"]))
    rest = (
        "|"
        + texts(conns["proto"]).astype(object)
        + "|"
        + texts(conns["service"])
        + "|"
        + _port_texts(conns)
        + "|"
        + texts(conns["conn_state"])
    )
    d = np.asarray(direction, dtype=object)
    return d + "|" + host.astype(object) + rest, d + "|*" + rest


def _port_texts(conns: pd.DataFrame) -> np.ndarray:
    """The responder port, or ``*`` for an unanswered or rejected attempt (any closed port is one pattern)."""
    state = texts(conns["conn_state"])
    return np.where(np.isin(state, UNANSWERED_STATES), "*", texts(conns["id.resp_p"]))


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


def _iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return pd.Timestamp(ts, unit="s", tz="UTC").isoformat()
