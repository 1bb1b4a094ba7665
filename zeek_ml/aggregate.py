"""Notices an analyst can read: flagged connections grouped into incidents, one notice each.

Like Zeek's notice suppression (``$identifier``, ``$suppress_for``), connections are grouped by
an incident key and a suppression interval (default 1 hour):

- a local originator (direction ``outbound`` or ``internal``) or an outside host talking to
  another outside host (``external``): the key is the originator, its family and direction,
  so one scanner is one incident however many hosts and ports it touches, and two scanners
  are two;
- ``inbound`` traffic (outside -> local): the key is the local responder, its family and the
  direction, so a host probed by thousands of Internet sources is one low-severity incident
  per interval, not thousands.

An incident opens at its first connection (the *anchor*) and takes every later connection of
its key until data time (the largest ``ts`` read so far, never the wall clock) passes
anchor + interval; then it closes and its one notice is written (``n`` = connections,
``zeek_ml.first_ts``/``last_ts``, distinct originators, responders and ports, the top score
and the ``uid`` of the top-scoring connection). A later connection opens the next incident.
Whether a connection joins depends only on the rows before it, never on batch boundaries,
so offline scoring, live scoring and a restart from a checkpoint write the same notices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from zeek_ml.notice import (
    ACTIONS,
    DEFAULT_SUPPRESS_FOR,
    EMPTY,
    NOTE,
    NOTICE_LOG_FIELDS,
    REP_FIELDS,
    connection_subs,
    notice_sub,
    notices_from_verdicts,
)
from zeek_ml.pipeline import Verdicts, plain
from zeek_ml.site import LocalNets, directions, local_discovery, severities, severity, severity_rank

if TYPE_CHECKING:
    from zeek_ml.calibrate import SiteProfile
    from zeek_ml.sinks import WriterFactory

TIME_JUMP = 86400.0
"""Seconds data time may go back before it counts as another capture (a conn's ts is its start,
so a long connection logged late is a few hours behind at most)."""


@dataclass
class NoticePolicy:
    """What decides which flagged connections become notices, shared by every notice sink.

    ``local_nets`` (else the profile's, else the private address space) decides direction
    where the log has no ``local_orig``/``local_resp``; ``profile`` brings per-direction
    thresholds and the site's baselines of normal traffic; ``min_severity`` drops notices below it.
    """

    local_nets: LocalNets | None = None
    suppress_for: float = DEFAULT_SUPPRESS_FOR
    min_severity: str = "low"
    profile: SiteProfile | None = None
    local_discovery: bool = False
    """Also notice link-local discovery chatter (mDNS, LLMNR, NetBIOS... to multicast/broadcast),
    which is left out by default: see :func:`zeek_ml.site.local_discovery`."""

    def __post_init__(self) -> None:
        severity_rank(self.min_severity)
        if not self.suppress_for > 0:
            raise ValueError(f"suppression interval must be > 0 s, got {self.suppress_for}")

    @property
    def nets(self) -> LocalNets:
        if self.local_nets is not None:
            return self.local_nets
        if self.profile is not None and self.profile.local_nets is not None:
            return self.profile.local_nets
        return LocalNets()

    def candidates(self, verdicts: Verdicts) -> Candidates:
        """The rows that cross their threshold (the profile's for their direction, else the model's)."""
        scores = np.asarray(verdicts.scores, dtype=float)
        floor = verdicts.threshold
        if self.profile is not None and self.profile.thresholds:
            floor = min([floor, *self.profile.thresholds.values()])
        idx = np.flatnonzero(scores >= floor)
        if not self.local_discovery and len(idx):
            idx = idx[~local_discovery(verdicts.conns.iloc[idx])]
        sub = verdicts.conns.iloc[idx]
        direction = directions(sub, self.nets)
        threshold = np.full(len(idx), float(verdicts.threshold))
        pattern = np.full(len(idx), -1, dtype=np.int64)
        if self.profile is not None:
            threshold = self.profile.thresholds_for(direction, verdicts.threshold)
            keep = scores[idx] >= threshold
            idx, sub, direction, threshold = idx[keep], sub.iloc[np.flatnonzero(keep)], direction[keep], threshold[keep]
            pattern = self.profile.match(sub, direction, scores[idx])
        family = None
        if verdicts.family is not None:
            family = pd.Series(np.asarray(verdicts.family, dtype=object)[idx]).fillna("").astype(str).to_numpy()
        return Candidates(idx, direction, threshold, pattern, family)


@dataclass
class Candidates:
    """Rows of a batch at or above their threshold, with what the policy knows of them."""

    idx: np.ndarray
    direction: np.ndarray
    threshold: np.ndarray
    pattern: np.ndarray
    """Index of the profile's baseline pattern each row matches, -1 for none."""
    family: np.ndarray | None


# --------------------------------------------------------------------------- per connection


class ConnectionNoticeSink:
    """One notice per flagged connection (``--no-aggregate``), with severity and direction.

    Rows that match a baseline of the site profile are not written (per connection there is
    no volume to compare, so a matching row is normal by definition).
    """

    fields: tuple[tuple[str, str], ...] = NOTICE_LOG_FIELDS

    def __init__(self, factory: WriterFactory, policy: NoticePolicy | None = None):
        self.writer = factory("notice", self.fields)
        self.policy = policy or NoticePolicy()
        self.notices = 0
        self.suppressed = 0

    def write(self, verdicts: Verdicts) -> int:
        cand = self.policy.candidates(verdicts)
        keep = cand.pattern < 0
        sev = severities(cand.direction, cand.family)
        rank = pd.Series(sev, dtype=object).map({name: severity_rank(name) for name in set(sev)})
        keep &= rank.to_numpy(dtype=int) >= severity_rank(self.policy.min_severity)
        self.suppressed += int((cand.pattern >= 0).sum())
        if not keep.any():
            return 0
        rows = verdicts.take(np.isin(np.arange(len(verdicts)), cand.idx[keep]))
        frame = notices_from_verdicts(rows)
        frame["zeek_ml.threshold"] = cand.threshold[keep]
        frame["zeek_ml.severity"] = sev[keep]
        frame["zeek_ml.direction"] = cand.direction[keep]
        frame["suppress_for"] = float(self.policy.suppress_for)
        frame["sub"] = connection_subs(frame)
        written = self.writer.write(frame)
        self.notices += written
        return written

    def flush(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {"notices": self.notices, "suppressed": self.suppressed}

    def restore(self, state: dict[str, Any]) -> None:
        self.notices = int(state.get("notices", 0))
        self.suppressed = int(state.get("suppressed", 0))

    def close(self, final: bool = True) -> None:
        self.writer.close()


# --------------------------------------------------------------------------- incidents


@dataclass
class Incident:
    """Connections of one key within one suppression interval."""

    key: str
    direction: str
    family: str
    by: str
    """``src`` (keyed by the originator) or ``dst`` (by the local responder, inbound)."""
    anchor: float
    first_ts: float
    last_ts: float
    n: int = 0
    top_score: float = -1.0
    threshold: float = 1.0
    rep: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] | None = None
    why: str = ""
    """The top connection's reasons in words."""
    srcs: set[str] = field(default_factory=set)
    dsts: set[str] = field(default_factory=set)
    ports: set[str] = field(default_factory=set)
    unexplained: int = 0
    """Connections that match none of the profile's baselines."""
    patterns: set[int] = field(default_factory=set)
    """Baseline patterns matched by the others."""
    uids: list[str] | None = None
    """Every member's uid, only when the sink tracks them (measurements; not checkpointed)."""

    def as_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("key", "direction", "family", "by", "anchor", "first_ts", "last_ts")}
        out.update(
            n=self.n,
            top_score=self.top_score,
            threshold=self.threshold,
            rep=self.rep,
            reasons=self.reasons,
            why=self.why,
            srcs=sorted(self.srcs),
            dsts=sorted(self.dsts),
            ports=sorted(self.ports),
            unexplained=self.unexplained,
            patterns=sorted(self.patterns),
        )
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Incident:
        inc = cls(**{k: d[k] for k in ("key", "direction", "family", "by", "anchor", "first_ts", "last_ts")})
        inc.n, inc.top_score, inc.threshold = int(d["n"]), float(d["top_score"]), float(d["threshold"])
        inc.rep, inc.reasons, inc.why = dict(d["rep"]), d.get("reasons"), str(d.get("why") or "")
        inc.srcs, inc.dsts, inc.ports = set(d["srcs"]), set(d["dsts"]), set(d["ports"])
        inc.unexplained, inc.patterns = int(d["unexplained"]), set(d["patterns"])
        return inc

    @property
    def severity(self) -> str:
        hosts = len(self.dsts) if self.by == "src" else len(self.srcs)
        return severity(self.direction, self.family, hosts=hosts, ports=len(self.ports), conns=self.n)


def _texts(values: pd.Series) -> np.ndarray:
    return values.astype(object).where(values.notna(), "-").astype(str).to_numpy()


class IncidentSink:
    """One notice per incident (see the module's docstring); the default notice sink.

    ``state()``/``restore()`` carry the open incidents and the data-time watermark through a
    checkpoint. ``close(final=True)`` writes the open incidents (end of an offline run);
    ``close(final=False)`` leaves them in ``state()`` for the next start (a live stop).
    """

    fields: tuple[tuple[str, str], ...] = NOTICE_LOG_FIELDS

    def __init__(self, factory: WriterFactory, policy: NoticePolicy | None = None, *, track_uids: bool = False):
        self.writer = factory("notice", self.fields)
        self.policy = policy or NoticePolicy()
        self.track_uids = track_uids
        self.reported_uids: set[str] = set()
        """With ``track_uids``: the uids of every connection a written notice covers."""
        self.interval = float(self.policy.suppress_for)
        self.open: dict[str, Incident] = {}
        self.watermark = -math.inf
        self.model: tuple[str, str] = ("", "")
        self.notices = 0
        self.incidents = 0
        self.suppressed = 0
        """Incidents the profile's baselines explain (not written)."""
        self.below_severity = 0
        self.connections = 0
        """Flagged connections folded into incidents."""

    # ------------------------------------------------------------------ write
    def write(self, verdicts: Verdicts) -> int:
        if not len(verdicts):
            return 0
        self.model = (verdicts.model_name, verdicts.model_version)
        ts = verdicts.conns["ts"].to_numpy(dtype=float, na_value=np.nan)
        wm = np.maximum.accumulate(np.concatenate([[self.watermark], np.where(np.isnan(ts), -np.inf, ts)]))
        # Data time jumping back by more than a day is another capture (or a log with relative
        # ts), not a late row: close what is open, then start that capture's clock afresh.
        back = np.flatnonzero(ts < wm[:-1] - TIME_JUMP)
        if len(back):
            cut = int(back[0])
            written = self.write(verdicts.take(np.arange(len(ts)) < cut)) if cut else 0
            written += self._emit(sorted(self.open.values(), key=lambda i: (i.anchor, i.key)))
            self.open = {}
            self.watermark = -math.inf
            return written + self.write(verdicts.take(np.arange(len(ts)) >= cut))
        wm = wm[1:]
        closing: list[tuple[int, float, str, Incident]] = []
        self._last_row: dict[str, int] = {}  # key -> last batch row joined (close no earlier than that)
        cand = self.policy.candidates(verdicts)
        if len(cand.idx):
            self._assign(verdicts, cand, ts, wm, closing)
        self.watermark = float(wm[-1])
        for key, inc in list(self.open.items()):
            if inc.anchor + self.interval < self.watermark:
                pos = int(np.searchsorted(wm, inc.anchor + self.interval, side="right"))
                pos = max(pos, self._last_row.get(key, -1))
                closing.append((pos, inc.anchor, key, inc))
                del self.open[key]
        closing.sort(key=lambda c: (c[0], c[1], c[2]))
        return self._emit([c[3] for c in closing])

    def _assign(self, verdicts: Verdicts, cand: Candidates, ts: np.ndarray, wm: np.ndarray, closing: list) -> None:
        conns = verdicts.conns.iloc[cand.idx]
        orig = _texts(conns["id.orig_h"])
        resp = _texts(conns["id.resp_h"])
        ports = _texts(conns["id.resp_p"]) + "/" + _texts(conns["proto"])
        family = cand.family if cand.family is not None else np.full(len(cand.idx), "", dtype=object)
        by_dst = cand.direction == "inbound"
        host = np.where(by_dst, resp, orig)
        keys = pd.Series(cand.direction, dtype=object) + "|" + family + "|" + np.where(by_dst, "dst=", "src=") + host
        scores = np.asarray(verdicts.scores, dtype=float)[cand.idx]
        row_ts = ts[cand.idx]
        row_wm = wm[cand.idx]
        self.connections += len(cand.idx)
        for key, pos in pd.Series(np.arange(len(cand.idx))).groupby(keys.to_numpy(), sort=False):
            rows = pos.to_numpy()
            while len(rows):
                inc = self.open.get(key)
                if inc is None:
                    first = rows[0]
                    anchor = row_ts[first] if np.isfinite(row_ts[first]) else self.watermark
                    anchor = anchor if np.isfinite(anchor) else 0.0  # no ts read yet at all
                    inc = Incident(
                        key=key,
                        direction=str(cand.direction[first]),
                        family=str(family[first]),
                        by="dst" if by_dst[first] else "src",
                        anchor=float(anchor),
                        first_ts=float(anchor),
                        last_ts=float(anchor),
                    )
                    self.open[key] = inc
                    self.incidents += 1
                    take = max(1, int(np.searchsorted(row_wm[rows], inc.anchor + self.interval, side="right")))
                else:
                    take = int(np.searchsorted(row_wm[rows], inc.anchor + self.interval, side="right"))
                if take:
                    self._last_row[key] = int(cand.idx[rows[take - 1]])
                    self._update(inc, verdicts, cand, rows[:take], orig, resp, ports, scores, row_ts)
                if take < len(rows):
                    pos_close = int(np.searchsorted(wm, inc.anchor + self.interval, side="right"))
                    pos_close = max(pos_close, int(cand.idx[rows[take - 1]]) if take else 0)
                    closing.append((pos_close, inc.anchor, key, inc))
                    del self.open[key]
                rows = rows[take:]

    def _update(self, inc: Incident, verdicts: Verdicts, cand: Candidates, rows: np.ndarray, orig, resp, ports,
                scores, row_ts) -> None:  # fmt: skip
        inc.n += len(rows)
        if self.track_uids:
            inc.uids = inc.uids if inc.uids is not None else []
            inc.uids.extend(verdicts.conns["uid"].iloc[cand.idx[rows]].astype(str).tolist())
        t = row_ts[rows]
        if not np.isnan(t).all():
            inc.first_ts = min(inc.first_ts, float(np.nanmin(t)))
            inc.last_ts = max(inc.last_ts, float(np.nanmax(t)))
        best = rows[int(np.argmax(scores[rows]))]
        if scores[best] > inc.top_score:
            inc.top_score = float(scores[best])
            row = verdicts.conns.iloc[int(cand.idx[best])]
            inc.rep = {f: plain(row.get(f)) for f in REP_FIELDS}
            why = verdicts.why(np.array([int(cand.idx[best])]))
            if why is not None:
                inc.why = str(why[0][0] or "")
                inc.reasons = [str(c) for c in why[1][0]]
        inc.threshold = min(inc.threshold, float(cand.threshold[rows].min()))
        inc.srcs.update(np.unique(orig[rows]).tolist())
        inc.dsts.update(np.unique(resp[rows]).tolist())
        inc.ports.update(np.unique(ports[rows]).tolist())
        pat = cand.pattern[rows]
        inc.unexplained += int((pat < 0).sum())
        inc.patterns.update(int(p) for p in np.unique(pat[pat >= 0]))

    # ------------------------------------------------------------------ notices
    def _explained(self, inc: Incident) -> bool:
        """All its connections match baselines and their count is within what the site sees."""
        profile = self.policy.profile
        if profile is None or not inc.patterns:
            return False
        tolerated = profile.unexplained_share if inc.direction in ("inbound", "external") else 0.0
        if inc.unexplained > tolerated * inc.n:
            return False
        return inc.n - inc.unexplained <= profile.allowance(inc.patterns, self.interval)

    def _emit(self, closed: list[Incident]) -> int:
        rows = []
        floor = severity_rank(self.policy.min_severity)
        for inc in closed:
            if self._explained(inc):
                self.suppressed += 1
                continue
            if severity_rank(inc.severity) < floor:
                self.below_severity += 1
                continue
            rows.append(self._row(inc))
            if inc.uids:
                self.reported_uids.update(inc.uids)
        if not rows:
            return 0
        written = self.writer.write(pd.DataFrame(rows))
        self.notices += written
        return written

    def _row(self, inc: Incident) -> dict[str, Any]:
        rep = inc.rep
        one_src = next(iter(inc.srcs)) if len(inc.srcs) == 1 else None
        one_dst = next(iter(inc.dsts)) if len(inc.dsts) == 1 else None
        one_port = next(iter(inc.ports)) if len(inc.ports) == 1 else None
        span = max(0.0, inc.last_ts - inc.first_ts)
        fam = f"[{inc.family}] " if inc.family else ""
        what = "connection" if inc.n == 1 else "connections"
        if inc.by == "src":
            who = f"{one_src} made {inc.n:,} suspicious {inc.direction} {what} to {len(inc.dsts):,} host(s)"
        else:
            who = f"{one_dst} received {inc.n:,} suspicious {inc.direction} {what} from {len(inc.srcs):,} host(s)"
        msg = (
            f"{fam}{inc.severity.capitalize()}: {who} on {len(inc.ports):,} port(s) over {span:.0f} s; "
            f"top score {inc.top_score:.3f} >= threshold {inc.threshold:.3f} "
            f"({rep.get('proto')} {rep.get('id.orig_h')}:{rep.get('id.orig_p')} -> "
            f"{rep.get('id.resp_h')}:{rep.get('id.resp_p')}, {rep.get('service') or 'no service'}, "
            f"{rep.get('conn_state')}, uid {rep.get('uid')})"
        )
        if inc.why:
            msg += f"; why: {inc.why}"
        return {
            "ts": inc.first_ts,
            "uid": rep.get("uid"),
            "id.orig_h": rep.get("id.orig_h"),
            "id.orig_p": rep.get("id.orig_p"),
            "id.resp_h": rep.get("id.resp_h"),
            "id.resp_p": rep.get("id.resp_p"),
            "proto": rep.get("proto"),
            "note": NOTE,
            "msg": msg,
            "sub": notice_sub(
                inc.top_score,
                severity=inc.severity,
                family=inc.family,
                n=inc.n,
                srcs=len(inc.srcs),
                dsts=len(inc.dsts),
                ports=len(inc.ports),
                model=self.model[0],
            ),
            "src": one_src,
            "dst": one_dst,
            "p": int(one_port.split("/")[0]) if one_port and one_port.split("/")[0].isdigit() else None,
            "n": inc.n,
            "actions": ACTIONS,
            "email_dest": EMPTY,
            "suppress_for": self.interval,
            "zeek_ml.score": inc.top_score,
            "zeek_ml.threshold": inc.threshold,
            "zeek_ml.model": self.model[0],
            "zeek_ml.model_version": self.model[1],
            "zeek_ml.family": inc.family or None,
            "zeek_ml.reasons": tuple(inc.reasons) if inc.reasons else None,
            "zeek_ml.severity": inc.severity,
            "zeek_ml.direction": inc.direction,
            "zeek_ml.incident": inc.key,
            "zeek_ml.first_ts": inc.first_ts,
            "zeek_ml.last_ts": inc.last_ts,
            "zeek_ml.srcs": len(inc.srcs),
            "zeek_ml.dsts": len(inc.dsts),
            "zeek_ml.ports": len(inc.ports),
            "_rep": rep,
        }

    # ------------------------------------------------------------------ lifecycle
    def flush(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        """Open incidents, data time and counters, JSON-able (for the watcher's checkpoint)."""
        return {
            "version": 1,
            "watermark": None if math.isinf(self.watermark) else self.watermark,
            "model": list(self.model),
            "open": [inc.as_json() for inc in self.open.values()],
            "counters": {
                "notices": self.notices,
                "incidents": self.incidents,
                "suppressed": self.suppressed,
                "below_severity": self.below_severity,
                "connections": self.connections,
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from ``state()``."""
        if not state:
            return
        wm = state.get("watermark")
        self.watermark = -math.inf if wm is None else float(wm)
        self.model = tuple(state.get("model") or ("", ""))  # type: ignore[assignment]
        self.open = {d["key"]: Incident.from_json(d) for d in state.get("open", [])}
        for name, value in (state.get("counters") or {}).items():
            setattr(self, name, int(value))

    def close(self, final: bool = True) -> None:
        """Close the log; with ``final`` first write every open incident (the run's end)."""
        if final and self.open:
            closing = sorted(self.open.values(), key=lambda i: (i.anchor, i.key))
            self.open = {}
            self._emit(closing)
        self.writer.close()
