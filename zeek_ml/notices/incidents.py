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

State is bounded: at most ``max_open`` incidents are open (when one more opens, the oldest, by
first connection, is closed and its notice written first) and an incident remembers at most
:data:`MAX_MEMBERS` distinct originators, responders and ports (a count beyond shows as
``10,000+``). Data time is a :class:`~zeek_ml.features.context.StreamClock`, the same rule as the host
context's: a ``ts`` more than a day from it is clamped to it and counted, and only rows that agree
on a new time start a new epoch (one in the past closes every open incident first).
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zeek_ml.features.context import TIME_SKEW, StreamClock, no_gc, ts_seconds
from zeek_ml.model.scorer import Verdicts, plain
from zeek_ml.notices.notice import (
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
from zeek_ml.notices.site import arrow_texts, directions, local_discovery, severities, severity, severity_rank
from zeek_ml.sources.local_nets import LocalNets

if TYPE_CHECKING:
    from zeek_ml.formats.writer import WriterFactory
    from zeek_ml.notices.profile import SiteProfile

TIME_JUMP = TIME_SKEW
"""Seconds a ``ts`` may lie from data time, ahead or behind, before it counts as a clock jump
(see :class:`zeek_ml.features.context.StreamClock`)."""

MAX_OPEN = 10_000
"""Open incidents at most (``IncidentSink(max_open=...)``, else ``$ZEEK_ML_MAX_OPEN_INCIDENTS``, else
this); when one more opens, the oldest is closed first."""

MAX_OPEN_ENV = "ZEEK_ML_MAX_OPEN_INCIDENTS"

MAX_TEXT = 256
"""Characters of a text field of the top connection an incident keeps for its notice (``service``...)."""

MAX_MEMBERS = 10_000
"""Distinct originators, responders and ports one incident remembers, each (beyond: shown as ``N+``)."""

_MEMBER_SETS = ("srcs", "dsts", "ports")


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
    which is left out by default: see :func:`zeek_ml.notices.site.local_discovery`."""

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
        conns = verdicts.conns
        # One take of the columns read from here on (local discovery, directions, the incident sink's)
        rows = _rows(conns, _CANDIDATE_FIELDS, idx) if self.profile is None and len(idx) else None
        if not self.local_discovery and len(idx):
            chatter = local_discovery(
                rows if rows is not None else _rows(conns, ("id.resp_h", "id.resp_p", "proto"), idx)
            )
            if chatter.any():
                idx = idx[~chatter]
                rows = rows.iloc[np.flatnonzero(~chatter)] if rows is not None else None
        if not len(idx):  # most batches of real traffic: no frames to build
            family = None if verdicts.family is None else np.zeros(0, dtype=object)
            return Candidates(idx, np.zeros(0, dtype=object), np.zeros(0), np.zeros(0, dtype=np.int64), family)
        sub = conns.iloc[idx] if rows is None else rows
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
            family = np.asarray(verdicts.family, dtype=object)[idx]
            if not all(type(f) is str for f in family.tolist()):  # a model's own names are text already
                family = pd.Series(family).fillna("").astype(str).to_numpy()
        return Candidates(idx, direction, threshold, pattern, family, rows)


@dataclass
class Candidates:
    """Rows of a batch at or above their threshold, with what the policy knows of them."""

    idx: np.ndarray
    direction: np.ndarray
    threshold: np.ndarray
    pattern: np.ndarray
    """Index of the profile's baseline pattern each row matches, -1 for none."""
    family: np.ndarray | None
    rows: pd.DataFrame | None = None
    """The rows ``idx`` of the columns the incident sink reads, when already taken (else None)."""


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
        if not len(cand.idx):
            return 0
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
    capped: set[str] = field(default_factory=set)
    """Which of ``srcs``, ``dsts``, ``ports`` saw more than :data:`MAX_MEMBERS` distinct values."""
    serial: int = field(default=0, repr=False, compare=False)
    """Tells this incident from an earlier one of the same key (the sink's heap of open incidents)."""
    best: int = field(default=-1, repr=False, compare=False)
    """Candidate row of the batch being written whose score is the top score (its details come at the end)."""

    def add(self, name: str, value: str) -> None:
        """Remember ``value`` in the set ``name`` (``srcs``, ``dsts``, ``ports``) unless it is full.

        Its size is then min(distinct values seen, MAX_MEMBERS) and ``capped`` says whether more were
        seen, whatever the order they came in (the same in any batching).
        """
        members = getattr(self, name)
        if value in members:
            return
        if len(members) >= MAX_MEMBERS:
            self.capped.add(name)
            return
        members.add(value)

    def count(self, name: str) -> str:
        """The size of ``name`` in words: ``10,000+`` once it is capped."""
        return f"{len(getattr(self, name)):,}" + ("+" if name in self.capped else "")

    def merge(self, rec: Incident, t: float) -> None:
        """Fold in ``rec``, connections held apart (their time was in doubt), as if they started at ``t``."""
        self.n += rec.n
        if rec.uids:
            self.uids = [*(self.uids or []), *rec.uids]
        self.first_ts, self.last_ts = min(self.first_ts, t), max(self.last_ts, t)
        if rec.top_score > self.top_score:
            self.top_score, self.rep, self.why, self.reasons = rec.top_score, rec.rep, rec.why, rec.reasons
            self.best = -1
        self.threshold = min(self.threshold, rec.threshold)
        for name in _MEMBER_SETS:
            for value in sorted(getattr(rec, name)):
                self.add(name, value)
        self.capped |= rec.capped
        self.unexplained += rec.unexplained
        self.patterns |= rec.patterns

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
        if self.capped:
            out["capped"] = sorted(self.capped)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Incident:
        inc = cls(**{k: d[k] for k in ("key", "direction", "family", "by", "anchor", "first_ts", "last_ts")})
        inc.n, inc.top_score, inc.threshold = int(d["n"]), float(d["top_score"]), float(d["threshold"])
        inc.rep, inc.reasons, inc.why = dict(d["rep"]), d.get("reasons"), str(d.get("why") or "")
        inc.srcs, inc.dsts, inc.ports = set(d["srcs"]), set(d["dsts"]), set(d["ports"])
        inc.unexplained, inc.patterns = int(d["unexplained"]), set(d["patterns"])
        inc.capped = set(d.get("capped") or ()) & set(_MEMBER_SETS)
        return inc

    @property
    def severity(self) -> str:
        hosts = len(self.dsts) if self.by == "src" else len(self.srcs)
        return severity(self.direction, self.family, hosts=hosts, ports=len(self.ports), conns=self.n)


DIRECTION_FIELDS = ("id.orig_h", "id.resp_h", "local_orig", "local_resp")
_BATCH_FIELDS = ("id.orig_h", "id.resp_h", "id.resp_p", "proto", "uid")
_CANDIDATE_FIELDS = (*DIRECTION_FIELDS, "id.resp_p", "proto", "uid")


def _rows(conns: pd.DataFrame, names: Sequence[str], idx: np.ndarray) -> pd.DataFrame:
    """Rows ``idx`` of the columns ``names`` that ``conns`` has (one take, not a copy of every column)."""
    if not conns.columns.is_unique:
        return conns[[c for c in names if c in conns.columns]].iloc[idx]
    return conns.iloc[idx, [conns.columns.get_loc(c) for c in names if c in conns.columns]]


def max_open_incidents() -> int:
    """The cap on open incidents: ``$ZEEK_ML_MAX_OPEN_INCIDENTS`` if set, else :data:`MAX_OPEN`."""
    text = os.environ.get(MAX_OPEN_ENV, "").strip()
    if not text:
        return MAX_OPEN
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_OPEN_ENV}={text!r}: must be a whole number of incidents, 1 or more")
    return value


def _short(value: Any) -> Any:
    """A representative connection's field as kept for its notice: long text cut at :data:`MAX_TEXT`."""
    value = plain(value)
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[: MAX_TEXT - 1] + "…"
    return value


class _Batch:
    """One batch of verdicts through an :class:`IncidentSink`.

    First each row's time (the sink's :class:`~zeek_ml.features.context.StreamClock`), then the flagged
    rows join their incidents one by one in log order, so that which incident a row joins, which
    incidents the caps close and when, never depends on where a batch ends. Positions are rows
    of this batch: an incident closed at row ``p`` is written after the rows before ``p``, in
    (position, anchor, key) order.
    """

    def __init__(self, sink: IncidentSink, verdicts: Verdicts, cand: Candidates, raw: np.ndarray):
        self.sink = sink
        self.verdicts = verdicts
        self.cand = cand
        self.raw = raw
        m = len(cand.idx)
        conns = None
        if m:
            conns = cand.rows if cand.rows is not None else _rows(verdicts.conns, _BATCH_FIELDS, cand.idx)
        self.direction: list[str] = [str(d) for d in cand.direction.tolist()]
        self.family: list[str] = [str(f) for f in cand.family.tolist()] if cand.family is not None else [""] * m
        by_dst = cand.direction == "inbound"
        self.by_dst: list[bool] = by_dst.tolist()
        # The candidates' columns as Python lists: the per-row loop (_join) reads no numpy scalar. The
        # text is joined in Arrow (the key: direction|family|src=host or dst=host; the port: port/proto).
        self.keys: list[str] = []
        self.orig: list[str] = []
        self.resp: list[str] = []
        self.ports: list[str] = []
        if conns is not None:
            orig, resp = arrow_texts(conns["id.orig_h"]), arrow_texts(conns["id.resp_h"])
            inbound = pa.array(by_dst, pa.bool_())
            host = pc.binary_join_element_wise(pc.if_else(inbound, "dst=", "src="), pc.if_else(inbound, resp, orig), "")
            text = [pa.array(self.direction, pa.string()), pa.array(self.family, pa.string()), host]
            self.keys = pc.binary_join_element_wise(*text, "|").to_pylist()
            self.orig, self.resp = orig.to_pylist(), resp.to_pylist()
            ports = pc.binary_join_element_wise(arrow_texts(conns["id.resp_p"]), arrow_texts(conns["proto"]), "/")
            self.ports = ports.to_pylist()
        self.scores: list[float] = np.asarray(verdicts.scores, dtype=float)[cand.idx].tolist()
        self.threshold: list[float] = cand.threshold.astype(float).tolist()
        self.pattern: list[int] = cand.pattern.astype(int).tolist()
        self.uids = None
        if sink.track_uids and "uid" in verdicts.conns:
            self.uids = conns["uid"].astype(str).tolist() if conns is not None else []
        self.closing: list[tuple[int, float, str, Incident]] = []
        self.last_row: dict[str, int] = {}
        """key -> last row of this batch its open incident took (it closes no earlier)."""
        self.touched: list[Incident] = []
        self.seg = (0, len(raw))
        """Rows of the current epoch in this batch: data time is monotone within it."""
        self.epochs: list[int] = []
        self.wm = np.empty(0)
        sink.connections += m

    # ------------------------------------------------------------------ time
    def _times(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[tuple]]:
        """Each row's time, data time after it, which rows are held (clamped, maybe a new epoch), events."""
        clock, raw = self.sink.time, self.raw
        if clock.sane(raw):
            wm = np.maximum.accumulate(np.concatenate([[clock.clock], np.where(np.isnan(raw), -np.inf, raw)]))[1:]
            clock.advance(raw)
            return raw, wm, None, []
        n = len(raw)
        cand_of_row = np.full(n, -1, dtype=np.int64)
        cand_of_row[self.cand.idx] = np.arange(len(self.cand.idx))
        conns = self.verdicts.conns
        uids = conns["uid"].astype(object).where(conns["uid"].notna(), "").tolist() if "uid" in conns else [""] * n
        times, wm, held = np.empty(n), np.empty(n), np.zeros(n, dtype=bool)
        events: list[tuple] = []
        for p in range(n):
            before = clock.clock
            j = int(cand_of_row[p])
            step = clock.step(float(raw[p]), j if j >= 0 else None, str(uids[p]))
            if step.resolved:
                events.append((p, "resolved", step.resolved, before))
            if step.replay is not None:
                events.append((p, "epoch", step.replay, before))
            times[p], held[p], wm[p] = step.time, step.clamped, clock.clock
        return times, wm, held, events

    def run(self) -> None:
        times, self.wm, held, events = self._times()
        self.epochs = [p for p, kind, *_ in events if kind == "epoch"] + [len(self.raw)]
        self.seg = (0, self.epochs[0])
        e = 0
        times_at, wm_at = times.tolist(), self.wm.tolist()  # Python floats: no numpy scalar per row
        held_at = held.tolist() if held is not None else None
        join = self._join
        for j, p in enumerate(self.cand.idx.tolist()):
            while e < len(events) and events[e][0] <= p:
                self._event(*events[e])
                e += 1
            if held_at is None or not held_at[p]:
                join(j, times_at[p], wm_at[p], p)
        for event in events[e:]:
            self._event(*event)
        self._sweep(float(self.wm[-1]))
        clock = self.sink.time
        clock.pending = [(t, self._record(p, t) if isinstance(p, int) else p) for t, p in clock.pending]
        self._finish()

    def _event(self, p: int, kind: str, rows: list[tuple[float, Any]], before: float) -> None:
        if kind == "resolved":  # outliers: they join at the clock's time, as if they had started then
            for _, payload in rows:
                if payload is not None:
                    self._take(payload, before, before, p)
            return
        # A new epoch: take the rows that started it in at their own time. Ahead of the clock,
        # the open incidents close as data time passes them; behind it, they are closed first.
        ahead = rows[0][0] > before
        self._sweep(before)
        if not ahead:
            for inc in list(self.sink.open.values()):
                self._close(inc, p)
            self.sink._heap.clear()
        self.seg = (p, self.epochs[self.epochs.index(p) + 1])
        wm = before if ahead else -math.inf
        for t, payload in rows:
            wm = max(wm, t)
            if payload is not None:
                self._take(payload, t, wm, p)

    def _take(self, payload: int | Incident, t: float, wm: float, pos: int) -> None:
        if isinstance(payload, Incident):
            self._absorb(payload, t, wm, pos)
        else:
            self._join(payload, t, wm, pos)

    # ------------------------------------------------------------------ incidents
    def _close(self, inc: Incident, pos: int) -> None:
        self.closing.append((pos, inc.anchor, inc.key, inc))
        del self.sink.open[inc.key]

    def _sweep(self, wm: float) -> None:
        """Close every incident whose interval data time ``wm`` has passed, at the row where it did."""
        limit = wm - self.sink.interval
        while (inc := self.sink._oldest()) is not None and inc.anchor < limit:
            a, b = self.seg
            pos = int(np.searchsorted(self.wm[a:b], inc.anchor + self.sink.interval, side="right")) + a
            self._close(inc, max(pos, self.last_row.get(inc.key, -1)))

    def _incident(self, key: str, direction: str, family: str, by_dst: bool, anchor: float, pos: int) -> Incident:
        """The open incident of ``key``, opened now at ``anchor`` if there is none (the oldest makes room)."""
        sink = self.sink
        inc = sink.open.get(key)
        if inc is None:
            while len(sink.open) >= sink.max_open and (old := sink._oldest()) is not None:
                self._close(old, pos)
                sink.evicted += 1
            inc = sink._new_incident(key, direction, family, by_dst, anchor)
            sink._track(inc)
            sink.incidents += 1
        self.last_row[key] = pos
        return inc

    def _join(self, j: int, t: float, wm: float, pos: int) -> None:
        """Flagged row ``j`` (of the candidates) joins its incident; ``t`` its time, ``wm`` data time.

        The hot loop of the sink (a row at a time, in log order): it reads the batch's columns as
        Python lists and looks at the oldest open incident before sweeping.
        """
        sink = self.sink
        heap = sink._heap
        if heap and heap[0][0] < wm - sink.interval:  # else nothing is due: the heap's top is the oldest anchor
            self._sweep(wm)
        key = self.keys[j]
        inc = sink.open.get(key)
        if inc is None:
            anchor = t if math.isfinite(t) else (wm if math.isfinite(wm) else 0.0)  # 0: no ts read yet at all
            inc = self._incident(key, self.direction[j], self.family[j], self.by_dst[j], anchor, pos)
        else:
            self.last_row[key] = pos
        inc.n += 1
        if self.uids is not None:
            inc.uids = inc.uids if inc.uids is not None else []
            inc.uids.append(self.uids[j])
        if math.isfinite(t):
            if t < inc.first_ts:
                inc.first_ts = t
            if t > inc.last_ts:
                inc.last_ts = t
        score = self.scores[j]
        if score > inc.top_score:
            inc.top_score = score
            if inc.best < 0:
                self.touched.append(inc)
            inc.best = j
        threshold = self.threshold[j]
        if threshold < inc.threshold:
            inc.threshold = threshold
        for name, members, value in (("srcs", inc.srcs, self.orig[j]), ("dsts", inc.dsts, self.resp[j]),
                                     ("ports", inc.ports, self.ports[j])):  # fmt: skip
            if value not in members:  # Incident.add
                if len(members) >= MAX_MEMBERS:
                    inc.capped.add(name)
                else:
                    members.add(value)
        pattern = self.pattern[j]
        if pattern < 0:
            inc.unexplained += 1
        else:
            inc.patterns.add(pattern)

    def _absorb(self, rec: Incident, t: float, wm: float, pos: int) -> None:
        """A held connection from an earlier batch (see :meth:`_record`) joins its incident at time ``t``."""
        self._sweep(wm)
        self._incident(rec.key, rec.direction, rec.family, rec.by == "dst", t, pos).merge(rec, t)

    def _record(self, j: int, t: float) -> Incident:
        """Candidate ``j`` as a one-connection incident, held across batches (its time is not known yet)."""
        inc = Incident(key=self.keys[j], direction=self.direction[j], family=self.family[j],
                       by="dst" if self.by_dst[j] else "src", anchor=t, first_ts=t, last_ts=t)  # fmt: skip
        self._fill(inc, j)
        if self.uids is not None:
            inc.uids = [self.uids[j]]
        return inc

    def _fill(self, inc: Incident, j: int) -> None:
        inc.n, inc.top_score = 1, self.scores[j]
        inc.threshold = min(inc.threshold, self.threshold[j])
        inc.srcs, inc.dsts, inc.ports = {self.orig[j]}, {self.resp[j]}, {self.ports[j]}
        pattern = self.pattern[j]
        inc.unexplained, inc.patterns = int(pattern < 0), {pattern} if pattern >= 0 else set()
        self._details(inc, j)

    def _details(self, inc: Incident, j: int) -> None:
        """The representative connection's fields and the reasons for its score."""
        idx = int(self.cand.idx[j])
        row = self.verdicts.conns.iloc[idx]
        inc.rep = {f: _short(row.get(f)) for f in REP_FIELDS}
        why = self.verdicts.why(np.array([idx]))
        if why is not None:
            inc.why = str(why[0][0] or "")
            inc.reasons = [str(c) for c in why[1][0]]

    def _finish(self) -> None:
        """Details of each incident's top connection, once per batch (explanations cost a forward pass)."""
        for inc in self.touched:
            if inc.best >= 0:
                self._details(inc, inc.best)
                inc.best = -1

    def closed(self) -> list[Incident]:
        """The incidents closed in this batch, in the order their notices are written."""
        return [c[3] for c in sorted(self.closing, key=lambda c: (c[0], c[1], c[2]))]


class IncidentSink:
    """One notice per incident (see the module's docstring); the default notice sink.

    ``state()``/``restore()`` carry the open incidents and the data-time clock through a
    checkpoint. ``close(final=True)`` writes the open incidents (end of an offline run);
    ``close(final=False)`` leaves them in ``state()`` for the next start (a live stop).
    """

    fields: tuple[tuple[str, str], ...] = NOTICE_LOG_FIELDS
    VERSION = 2
    """2 adds the stream clock (clamped rows, epochs) and the caps; a version 1 state still restores."""

    def __init__(
        self,
        factory: WriterFactory,
        policy: NoticePolicy | None = None,
        *,
        track_uids: bool = False,
        max_open: int | None = None,
    ):
        self.writer = factory("notice", self.fields)
        self.policy = policy or NoticePolicy()
        self.track_uids = track_uids
        self.reported_uids: set[str] = set()
        """With ``track_uids``: the uids of every connection a written notice covers."""
        self.interval = float(self.policy.suppress_for)
        self.max_open = max_open_incidents() if max_open is None else int(max_open)
        if self.max_open < 1:
            raise ValueError(f"at most {self.max_open} open incidents: must be 1 or more")
        self.open: dict[str, Incident] = {}
        self._heap: list[tuple[float, str, int]] = []
        """(anchor, key, serial) of open incidents, oldest first; stale entries are skipped."""
        self._serial = 0
        self.time = StreamClock()
        """Data time: the largest sane ``ts`` read (outliers clamped, new epochs; see StreamClock)."""
        self.model: tuple[str, str] = ("", "")
        self.notices = 0
        self.incidents = 0
        self.suppressed = 0
        """Incidents the profile's baselines explain (not written)."""
        self.below_severity = 0
        self.connections = 0
        """Flagged connections folded into incidents."""
        self.evicted = 0
        """Incidents closed before their interval ended because ``max_open`` were open."""

    @property
    def watermark(self) -> float:
        """Data time (``-inf`` before any ``ts``)."""
        return self.time.clock

    # ------------------------------------------------------------------ write
    def write(self, verdicts: Verdicts) -> int:
        if not len(verdicts):
            return 0
        self.model = (verdicts.model_name, verdicts.model_version)
        batch = _Batch(self, verdicts, self.policy.candidates(verdicts), ts_seconds(verdicts.conns))
        batch.run()
        return self._emit(batch.closed())

    def _new_incident(self, key: str, direction: str, family: str, by_dst: bool, anchor: float) -> Incident:
        by = "dst" if by_dst else "src"
        return Incident(key=key, direction=direction, family=family, by=by, anchor=anchor, first_ts=anchor,
                        last_ts=anchor)  # fmt: skip

    def _track(self, inc: Incident) -> None:
        """``inc`` is open from now on."""
        self._serial += 1
        inc.serial = self._serial
        self.open[inc.key] = inc
        heapq.heappush(self._heap, (inc.anchor, inc.key, inc.serial))

    def _oldest(self) -> Incident | None:
        """The open incident with the earliest anchor (ties: by key)."""
        while self._heap:
            _, key, serial = self._heap[0]
            inc = self.open.get(key)
            if inc is not None and inc.serial == serial:
                return inc
            heapq.heappop(self._heap)
        return None

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
            who = f"{one_src} made {inc.n:,} suspicious {inc.direction} {what} to {inc.count('dsts')} host(s)"
        else:
            who = f"{one_dst} received {inc.n:,} suspicious {inc.direction} {what} from {inc.count('srcs')} host(s)"
        msg = (
            f"{fam}{inc.severity.capitalize()}: {who} on {inc.count('ports')} port(s) over {span:.0f} s; "
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
        with no_gc():
            return self._state()

    def _state(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "watermark": self.watermark if math.isfinite(self.watermark) else None,
            "model": list(self.model),
            "open": [inc.as_json() for inc in self.open.values()],
            "time": self.time.state(lambda rec: None if rec is None else rec.as_json()),
            "counters": {
                "notices": self.notices,
                "incidents": self.incidents,
                "suppressed": self.suppressed,
                "below_severity": self.below_severity,
                "connections": self.connections,
                "evicted": self.evicted,
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from ``state()`` (a version 1 state, written before the stream clock, too)."""
        if not state:
            return
        version = int(state.get("version", 1))
        if version not in (1, self.VERSION):
            raise ValueError(f"incident state version {state.get('version')} is not 1 or {self.VERSION}")
        self.model = tuple(state.get("model") or ("", ""))  # type: ignore[assignment]
        self.open, self._heap = {}, []
        with no_gc():
            for d in state.get("open", []):
                self._track(Incident.from_json(d))
        self.time = StreamClock()
        clock = state.get("time") or {"clock": state.get("watermark")}
        self.time.restore(clock, lambda d: None if d is None else Incident.from_json(d))
        for name, value in (state.get("counters") or {}).items():
            if name in ("notices", "incidents", "suppressed", "below_severity", "connections", "evicted"):
                setattr(self, name, int(value))

    def close(self, final: bool = True) -> None:
        """Close the log; with ``final`` first write every open incident (the run's end).

        Connections still held because their ``ts`` was far from data time (fewer rows than a
        new epoch needs) are outliers after all: they join their incidents at data time first.
        """
        if final:
            clock = self.time.clock
            for _, rec in self.time.settle():
                if rec is None:
                    continue
                inc = self.open.get(rec.key)
                if inc is None:
                    rec.anchor = rec.first_ts = rec.last_ts = clock
                    self._track(rec)
                    self.incidents += 1
                    continue
                inc.merge(rec, clock)
            if self.open:
                closing = sorted(self.open.values(), key=lambda i: (i.anchor, i.key))
                self.open, self._heap = {}, []
                self._emit(closing)
        self.writer.close()
