"""The per-host context as it was before the compiled kernel (issue 13, item 1): a verbatim copy of
``zeek_ml/temporal.py`` at commit db654c2 (only this docstring differs), a Python loop per row, kept as
the slow reference that ``tests/test_temporal_current.py`` compares the compiled implementation against.
Do not optimise or edit this file."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import time
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = ["FAILED_STATES", "TEMPORAL_FEATURES", "HostContext", "StreamClock", "ts_seconds"]

log = logging.getLogger("zeek_ml.time")
"""Warnings about timestamps far from the stream's clock (a line on stderr where nothing else is configured)."""

#: conn_state values that mean "the connection did not get an ordinary answer"
FAILED_STATES = frozenset({"S0", "REJ", "RSTO", "RSTOS0", "RSTRH", "SH", "SHR"})

#: (name, kind) of each temporal column, in order; kinds as in zeek_ml.features
TEMPORAL_FEATURES: tuple[tuple[str, str], ...] = (
    ("orig_prev_conns", "log1p"),  # previous connections of the originator kept (<= k)
    ("orig_conns_window", "log1p"),  # ... within window_s before this one
    ("orig_distinct_resp_h", "log1p"),  # distinct responders among its last k
    ("orig_distinct_resp_p", "log1p"),  # distinct responder ports among its last k
    ("orig_failed_share", "log1p"),  # share of its last k in a failed state (S0, REJ, RSTO, ...)
    ("orig_same_resp_p_share", "log1p"),  # share of its last k to this row's responder port
    ("orig_same_resp_h_share", "log1p"),  # share of its last k to this row's responder
    ("orig_mean_orig_bytes", "log1p"),  # mean orig_bytes over its last k
    ("orig_mean_resp_bytes", "log1p"),  # mean resp_bytes over its last k
    ("orig_dt_prev", "log1p"),  # seconds since its previous connection's ts (abs)
    ("orig_iat_cv", "log1p"),  # coefficient of variation of inter-arrival times over its last k
    ("orig_first_seen", "flag"),  # no previous connection of this originator in memory
    ("resp_prev_conns", "log1p"),  # previous connections to the responder kept (<= k)
    ("resp_conns_window", "log1p"),
    ("resp_distinct_orig_h", "log1p"),  # distinct originators among the responder's last k
    ("resp_failed_share", "log1p"),
    ("resp_dt_prev", "log1p"),
    ("resp_first_seen", "flag"),
)
TEMPORAL_NAMES: tuple[str, ...] = tuple(n for n, _ in TEMPORAL_FEATURES)

#: per previous connection of the originator, for the sequence (CNN over time) experiment
SEQ_FIELDS: tuple[str, ...] = ("present", "log_orig_bytes", "log_resp_bytes", "failed", "same_resp_p", "same_resp_h",
                               "log_dt")  # fmt: skip


TIME_SKEW = 86400.0
"""Seconds a ``ts`` may lie from the stream's clock, ahead or behind, and still be taken as it is.
Zeek logs a connection when it ends and ``ts`` is its start, so a long connection is logged a few
hours late at most, and a sensor logs something every few minutes; a day is neither."""

CONFIRM_ROWS = 8
"""Consecutive rows that must agree on a time more than :data:`TIME_SKEW` away before the stream
takes it as its new clock (a new epoch). One or a few bad timestamps are clamped; for a capture that
starts at another time, or a sensor clock that was stepped, these first rows are held, then taken
in at their own time (only the first of them is scored before that is known)."""


class ClockStep(NamedTuple):
    """What :meth:`StreamClock.step` decided for one row."""

    time: float
    """The time the row is given: its ``ts``, the clock's when clamped, NaN when it has none."""
    clamped: bool
    """The row lies more than the skew away: it is given the clock's time (for now: see ``replay``)."""
    resolved: list[tuple[float, Any]]
    """Earlier clamped rows, as ``(ts, payload)``, now known to be outliers (their clamped time is final)."""
    replay: list[tuple[float, Any]] | None
    """Set on the row that confirms a new epoch: the clamped rows before it that started the epoch, as
    ``(ts, payload)``; a component starts afresh and takes them in at their own ``ts``, then this row."""


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: building a checkpoint of 200,000 hosts allocates a
    million small lists, each allocation burst triggering a scan of every object the context holds
    (3.5 s instead of 0.5 s per checkpoint). Nothing built here forms a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _utc(t: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return f"{t:.6g}"


_RECENT_WARNINGS: deque[str] = deque(maxlen=64)


def _warn(message: str, level: int = logging.WARNING) -> None:
    """Log ``message`` unless it was just logged (the host context and the incident clock see the same rows)."""
    if message in _RECENT_WARNINGS:
        return
    _RECENT_WARNINGS.append(message)
    log.log(level, message)


@dataclass
class StreamClock:
    """The data time of a stream: the largest sane ``ts`` read, never the wall clock.

    Fed one row at a time, in log order (:meth:`step`). A ``ts`` within ``skew`` of the clock is
    taken as it is (a late row stays behind the clock; a later one moves it). A ``ts`` farther away,
    ahead or behind, is *clamped*: the row gets the clock's time, so it can neither move the clock a
    year ahead (which would expire every host and close every incident, then stop expiry for the rest
    of the stream) nor start another clock. If ``confirm`` consecutive rows agree on another time
    (all on the same side of the clock, none more than ``skew`` before the latest of them: a
    capture from another day, a stepped sensor clock, a log whose connections are days apart), the
    stream did move: a new *epoch* starts at them, and the components take those rows in at their
    own ``ts`` (``ClockStep.replay``): ahead of the old clock, what came before expires as time
    passes; behind it, a component starts afresh. Random bad values do not agree: they are
    outliers. Clamping rather than rejecting keeps every connection scored.

    Every decision depends only on the rows before, so it is the same in any batching and after a
    restart from :meth:`state`. ``payload`` is whatever a component needs to replay a row.
    """

    skew: float = TIME_SKEW
    confirm: int = CONFIRM_ROWS
    clock: float = -math.inf
    pending: list[tuple[float, Any]] = field(default_factory=list)
    """Clamped rows that may yet start a new epoch, ``(ts, payload)``."""
    clamped: int = 0
    """Rows whose ``ts`` turned out to be an outlier (scored at the clock's time)."""
    epochs: int = 0
    """New epochs started (the clock jumped with ``confirm`` rows agreeing)."""
    label: str = ""
    """What names the first pending row in a warning (its ``uid``)."""
    ahead: bool = False
    """The pending rows lie ahead of the clock (else behind)."""

    def __post_init__(self) -> None:
        if self.confirm < 2:
            raise ValueError(f"confirm must be >= 2 rows, got {self.confirm}")

    @property
    def pending_clock(self) -> float:
        return max((t for t, _ in self.pending), default=-math.inf)

    def sane(self, ts: np.ndarray) -> bool:
        """True when ``step`` would take every row of ``ts`` as it is (nothing pending, nothing far)."""
        if self.pending:
            return False
        finite = np.isfinite(ts)
        t = np.where(finite, ts, -np.inf)
        prev = np.maximum.accumulate(np.concatenate([[self.clock], t]))[:-1]
        with np.errstate(invalid="ignore"):
            far = finite & np.isfinite(prev) & (np.abs(t - prev) > self.skew)
        return not bool(far.any())

    def advance(self, ts: np.ndarray) -> None:
        """Take a batch that :meth:`sane` accepted (the clock moves to its largest ``ts``)."""
        finite = ts[np.isfinite(ts)]
        if len(finite):
            self.clock = max(self.clock, float(finite.max()))

    def step(self, t: float, payload: Any = None, label: str = "") -> ClockStep:
        """Decide the time of the next row (see the class docstring); ``label`` names it in a warning."""
        if not math.isfinite(t):
            return ClockStep(math.nan, False, [], None)
        if not math.isfinite(self.clock):
            self.clock = t
            return ClockStep(t, False, [], None)
        if abs(t - self.clock) <= self.skew:
            resolved = self._resolve()
            self.clock = max(self.clock, t)
            return ClockStep(t, False, resolved, None)
        ahead = t > self.clock
        agrees = self.pending and ahead == self.ahead and t >= self.pending_clock - self.skew
        resolved = [] if agrees else self._resolve()
        if not self.pending:
            self.label, self.ahead = label, ahead
        self.pending.append((t, payload))
        if len(self.pending) < self.confirm:
            return ClockStep(self.clock, True, resolved, None)
        replay, old = self.pending[:-1], self.clock
        self.clock = self.pending_clock
        self.pending = []
        self.epochs += 1
        _warn(
            f"zeek-ml: {self.confirm} consecutive rows have ts near {_utc(self.clock)}, {self.clock - old:+.0f} s "
            f"from the stream's clock ({_utc(old)}): taken as a new time (another capture, or a stepped sensor "
            f"clock); host context and open incidents start afresh ({self.epochs} so far)",
            logging.INFO,
        )
        return ClockStep(t, False, resolved, replay)

    def settle(self) -> list[tuple[float, Any]]:
        """The stream ended: rows still pending are outliers (returned as ``(ts, payload)``)."""
        return self._resolve()

    def _resolve(self) -> list[tuple[float, Any]]:
        """The pending rows are outliers after all: count them (a warning at 1, 10, 100... so far)."""
        if not self.pending:
            return []
        resolved, self.pending = self.pending, []
        before, self.clamped = self.clamped, self.clamped + len(resolved)
        if len(str(self.clamped)) > len(str(before)) or before == 0:
            t = resolved[0][0]
            who = f" of connection {self.label}" if self.label else ""
            _warn(
                f"zeek-ml: warning: ts {t:.6f}{who} ({_utc(t)}) is {t - self.clock:+.0f} s from the stream's clock "
                f"({_utc(self.clock)}), more than {self.skew:.0f} s: scored at the clock's time "
                f"({self.clamped:,} such row(s) so far)"
            )
        return resolved

    def state(self, payload: Any = None) -> dict[str, Any]:
        """JSON-able; ``payload`` turns a pending row's payload into JSON (default: as it is)."""
        return {
            "clock": self.clock if math.isfinite(self.clock) else None,
            "pending": [[t, payload(p) if payload else p] for t, p in self.pending],
            "clamped": self.clamped,
            "epochs": self.epochs,
            "label": self.label,
            "ahead": self.ahead,
        }

    def restore(self, state: dict[str, Any] | None, payload: Any = None) -> None:
        """Resume from :meth:`state` (``payload`` turns JSON back into a payload)."""
        state = state or {}
        clock = state.get("clock")
        self.clock = -math.inf if clock is None else float(clock)
        self.pending = [(float(t), payload(p) if payload else p) for t, p in state.get("pending") or []]
        self.clamped = int(state.get("clamped", 0))
        self.epochs = int(state.get("epochs", 0))
        self.label = str(state.get("label") or "")
        self.ahead = bool(state.get("ahead", False))


class _Host:
    """One host's recent connections and running counters over them.

    The hot path of the context: plain dicts as counters and, for an originator, the starts of its
    recent connections kept sorted (``times``, for the inter-arrival regularity) so that no row
    re-sorts them. Every sum is taken in the same order as before, so the features are bit-identical.
    """

    __slots__ = ("failed", "last_seen", "peers", "ports", "recent", "sum_ob", "sum_rb", "times", "window")

    def __init__(self, sorted_times: bool = False) -> None:
        self.recent: deque[tuple[float, str, int, bool, float, float]] = deque()
        self.window: deque[float] = deque()
        self.peers: dict[str, int] = {}
        self.ports: dict[int, int] = {}
        self.failed = 0
        self.sum_ob = 0.0
        self.sum_rb = 0.0
        self.last_seen = -math.inf
        self.times: list[float] | None = [] if sorted_times else None
        """The starts in ``recent``, sorted (originators only: None for a responder)."""

    def add(self, rec: tuple[float, str, int, bool, float, float], k: int) -> None:
        """Remember one connection (the oldest of ``k`` is forgotten)."""
        t, peer, port, failed, ob, rb = rec
        recent, peers, ports, times = self.recent, self.peers, self.ports, self.times
        if len(recent) == k:
            ot, opeer, oport, ofailed, oob, orb = recent.popleft()
            c = peers[opeer] - 1
            if c > 0:
                peers[opeer] = c
            else:
                del peers[opeer]
            c = ports[oport] - 1
            if c > 0:
                ports[oport] = c
            else:
                del ports[oport]
            if ofailed:
                self.failed -= 1
            self.sum_ob -= oob
            self.sum_rb -= orb
            if times is not None:
                del times[bisect_left(times, ot)]
        recent.append(rec)
        peers[peer] = peers.get(peer, 0) + 1
        ports[port] = ports.get(port, 0) + 1
        if failed:
            self.failed += 1
        self.sum_ob += ob
        self.sum_rb += rb
        if times is not None:
            insort(times, t)
        self.window.append(t)

    def copy(self) -> _Host:
        h = _Host()
        h.recent, h.window = deque(self.recent), deque(self.window)
        h.peers, h.ports = dict(self.peers), dict(self.ports)
        h.failed, h.sum_ob, h.sum_rb, h.last_seen = self.failed, self.sum_ob, self.sum_rb, self.last_seen
        h.times = None if self.times is None else list(self.times)
        return h

    def to_list(self) -> list:
        """``[recent, window, last_seen]``, shortened where they follow from ``recent``: the window (the
        latest starts, a suffix of the same sequence) as its length when it is no longer than ``recent``,
        ``last_seen`` left out when it is the latest start in ``recent``."""
        recent = list(self.recent)  # tuples: JSON arrays
        window: int | list[float] = len(self.window) if len(self.window) <= len(recent) else list(self.window)
        if recent and (self.last_seen == recent[-1][0] or self.last_seen == max(r[0] for r in recent)):
            return [recent, window]
        return [recent, window, self.last_seen]

    @classmethod
    def from_list(cls, data: list, k: int, sorted_times: bool = False) -> _Host:
        h = cls(sorted_times)
        for r in data[0]:
            h.add((float(r[0]), str(r[1]), int(r[2]), bool(r[3]), float(r[4]), float(r[5])), k)
        if isinstance(data[1], int):
            h.window = deque(r[0] for r in list(h.recent)[len(h.recent) - data[1] :])
        else:
            h.window = deque(float(t) for t in data[1])
        h.last_seen = float(data[2]) if len(data) > 2 else max(r[0] for r in h.recent)
        return h


def _iat_cv(snaps: list[tuple[float, ...]], k: int) -> np.ndarray:
    """Coefficient of variation of the gaps between sorted starts, one value per snapshot (each of 3 to
    ``k`` sorted starts), vectorised across snapshots. Bit-identical to the per-row Python it replaces
    (``sum`` of the gaps, left to right, then of the squared deviations): the sums run column by column,
    left to right, and a padded gap adds an exact 0.0."""
    m = len(snaps)
    lens = np.fromiter(map(len, snaps), dtype=np.int64, count=m)
    flat = np.fromiter(chain.from_iterable(snaps), dtype=np.float64, count=int(lens.sum()))
    full = bool((lens == k).all())  # the usual case: every originator has k starts
    if full:
        mat = flat.reshape(m, k)
    else:
        mat = np.zeros((m, k), dtype=np.float64)
        mat[np.arange(k) < lens[:, None]] = flat  # row-major: each snapshot's starts, then padding
    cols = np.ascontiguousarray(mat.T)  # [k, m]: one start position per row, each contiguous
    gaps = cols[1:] - cols[:-1]
    valid = None if full else np.arange(k - 1)[:, None] < (lens - 1)[None, :]
    if valid is not None:
        gaps = np.where(valid, gaps, 0.0)
    count = (lens - 1).astype(np.float64)
    total = np.zeros(m)
    for g in gaps:
        total += g
    mu = total / count
    dev = gaps - mu
    dev *= dev
    if valid is not None:
        dev = np.where(valid, dev, 0.0)
    total = np.zeros(m)
    for d in dev:
        total += d
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mu > 0, np.sqrt(total / count) / mu, 0.0)


def _col(frame: pd.DataFrame, name: str, default: Any) -> list:
    if name not in frame.columns:
        return [default] * len(frame)
    s = frame[name]
    return s.astype(object).where(s.notna(), default).tolist()


def ts_seconds(frame: pd.DataFrame) -> np.ndarray:
    """``ts`` as float seconds, NaN where unset or not finite (what :meth:`StreamClock.step` takes)."""
    if "ts" not in frame.columns:
        return np.full(len(frame), np.nan)
    v = pd.to_numeric(frame["ts"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(v), v, np.nan)


def _num_col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.zeros(len(frame))
    v = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(v), v, 0.0)


def _row_payload(data: list) -> tuple:
    """A pending row of the host context, back from JSON: (ts, orig, resp, port, failed, orig_bytes, resp_bytes)."""
    return (float(data[0]), str(data[1]), str(data[2]), int(data[3]), bool(data[4]), float(data[5]), float(data[6]))


class HostContext:
    """Streaming per-host context (see the module docstring). JSON-able state."""

    VERSION = 2
    """2 adds the stream clock (clamped rows, epochs); a version 1 state still restores."""

    def __init__(
        self, k: int = 32, window_s: float = 60.0, ttl_s: float = 3600.0, max_hosts: int = 100_000, seq_k: int = 0
    ):
        self.seq_k = int(seq_k)
        """With ``seq_k`` > 0, ``update`` also leaves ``last_sequences`` [N, len(SEQ_FIELDS), seq_k]: the
        originator's previous ``seq_k`` connections, most recent first (for a CNN over time)."""
        self.last_sequences: np.ndarray | None = None
        self.k = int(k)
        self.window_s = float(window_s)
        self.ttl_s = float(ttl_s)
        self.max_hosts = int(max_hosts)
        self.orig: OrderedDict[str, _Host] = OrderedDict()
        self.resp: OrderedDict[str, _Host] = OrderedDict()
        self.clock = -math.inf
        self.time = StreamClock()
        """Decides each row's time (clamped outliers, new epochs); its ``clock`` equals ``self.clock``."""
        self.rows = 0

    @property
    def params(self) -> dict[str, float | int]:
        """The parameters that define the features (stored in the model's spec)."""
        return {"k": self.k, "window_s": self.window_s, "ttl_s": self.ttl_s, "max_hosts": self.max_hosts}

    def __len__(self) -> int:
        return len(self.orig) + len(self.resp)

    # ------------------------------------------------------------------ core

    def _expire(self) -> None:
        limit = self.clock - self.ttl_s
        for table in (self.orig, self.resp):
            # least recently touched first; stop at the first host still alive
            while table:
                key = next(iter(table))
                if table[key].last_seen >= limit:
                    break
                del table[key]

    def update(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Temporal features for ``frame`` (rows in log order), then remember the rows."""
        n = len(frame)
        if n == 0:
            out = np.zeros((0, len(TEMPORAL_FEATURES)), dtype=np.float32)
            return pd.DataFrame(out, columns=list(TEMPORAL_NAMES), index=frame.index)
        ts = ts_seconds(frame)
        # every column as a Python list once per batch: the per-row loop touches no numpy scalar
        tl = ts.tolist()
        oh = list(map(str, _col(frame, "id.orig_h", "?")))
        rh = list(map(str, _col(frame, "id.resp_h", "?")))
        rp = _num_col(frame, "id.resp_p").astype(np.int64).tolist()
        failed = list(map(FAILED_STATES.__contains__, map(str, _col(frame, "conn_state", "-"))))
        ob = np.maximum(_num_col(frame, "orig_bytes"), 0.0).tolist()
        rb = np.maximum(_num_col(frame, "resp_bytes"), 0.0).tolist()
        sk = self.seq_k
        seq = np.zeros((n, len(SEQ_FIELDS), sk), dtype=np.float32) if sk else None
        rows: list[list[float]] = []
        feats = rows.append
        row_ = self._row
        # rows whose originator has 3+ starts, and those starts sorted: the regularity, for the whole batch
        cvs: tuple[list[int], list[tuple[float, ...]]] = ([], [])
        if self.time.sane(ts):
            for i, t, o, r, p, f, b, c in zip(range(n), tl, oh, rh, rp, failed, ob, rb, strict=True):
                feats(row_(t, o, r, p, f, b, c, i, seq, cvs))
            self.time.advance(ts)
        else:
            uid = _col(frame, "uid", "")
            for i, t, o, r, p, f, b, c in zip(range(n), tl, oh, rh, rp, failed, ob, rb, strict=True):
                row = (o, r, p, f, b, c)
                before = self.time.clock
                step = self.time.step(t, (t, *row), str(uid[i]))
                for _, held in step.resolved:  # outliers after all: taken in at the time they were scored at
                    self._row(before, *held[1:])
                if step.replay is not None:
                    self._new_epoch(step.replay, ahead=step.replay[0][0] > before)
                if step.clamped:
                    # Held, not yet taken in: an outlier is taken in at the clock's time once that is
                    # known; rows that agree on another time (a new epoch) at their own time. Meanwhile
                    # each gets the features it would get then: the first at the clock's time, the
                    # next ones as if the new epoch had begun.
                    pending = self.time.pending
                    when = step.time if len(pending) == 1 else t
                    feats(self._preview(pending[:-1], row, self.time.ahead)._row(when, *row, i=i, seq=seq, cvs=cvs))
                else:
                    feats(row_(step.time, *row, i=i, seq=seq, cvs=cvs))
        self.rows += n
        self.last_sequences = seq
        out = np.array(rows, dtype=np.float32)
        if cvs[0]:
            out[cvs[0], TEMPORAL_NAMES.index("orig_iat_cv")] = _iat_cv(cvs[1], self.k)
        return pd.DataFrame(out, columns=list(TEMPORAL_NAMES), index=frame.index)

    def _row(self, t: float, o: str, r: str, port: int, failed: bool, ob: float, rb: float,
             i: int = 0, seq: np.ndarray | None = None,
             cvs: tuple[list, list] | None = None) -> list[float]:  # fmt: skip
        """Features of one row (and ``seq[i]``), then remember it. ``t`` NaN: no time.

        The hot path: one call per row, everything inline (see :data:`TEMPORAL_FEATURES` for the columns).
        ``orig_iat_cv`` is left 0.0: ``i`` and the originator's sorted starts go to ``cvs`` (two lists), for
        :func:`_iat_cv` to compute for the whole batch at once (nothing when ``cvs`` is None: a row
        taken in without features)."""
        moves = math.isfinite(t)
        if not moves:  # no ts: the clock's time, never moving it
            t = self.clock if math.isfinite(self.clock) else 0.0
        orig, resp = self.orig, self.resp
        ho = orig.get(o)
        if ho is None:
            ho = orig[o] = _Host(sorted_times=True)
            if len(orig) > self.max_hosts:
                orig.popitem(last=False)
        else:
            orig.move_to_end(o)
        hr = resp.get(r)
        if hr is None:
            hr = resp[r] = _Host()
            if len(resp) > self.max_hosts:
                resp.popitem(last=False)
        else:
            resp.move_to_end(r)
        lo = t - self.window_s
        # the originator's side
        win = ho.window
        while win and win[0] < lo:
            win.popleft()
        recent = ho.recent
        n = len(recent)
        if n == 0:
            feats = [0.0] * 11 + [1.0]
        else:
            feats = [
                float(n),
                float(len(win)),
                float(len(ho.peers)),
                float(len(ho.ports)),
                ho.failed / n,
                ho.ports.get(port, 0) / n,
                ho.peers.get(r, 0) / n,
                (0.0 if ho.sum_ob < 0.0 else ho.sum_ob) / n,  # max(sum, 0.0), without the call
                (0.0 if ho.sum_rb < 0.0 else ho.sum_rb) / n,
                abs(t - recent[-1][0]),
                0.0,  # orig_iat_cv: see cvs
                0.0,
            ]
            if n >= 3 and cvs is not None:
                cvs[0].append(i)
                cvs[1].append(tuple(ho.times))
        # the responder's side
        win = hr.window
        while win and win[0] < lo:
            win.popleft()
        m = len(hr.recent)
        if m == 0:
            feats += (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        else:
            feats += (float(m), float(len(win)), float(len(hr.peers)), hr.failed / m, abs(t - hr.recent[-1][0]), 0.0)
        if seq is not None:
            sk = seq.shape[2]
            for j, (tj, peer, pj, fj, obj, rbj) in enumerate(reversed(list(recent)[-sk:])):
                seq[i, :, j] = (
                    1.0, math.log1p(obj), math.log1p(rbj), float(fj), float(pj == port), float(peer == r),
                    math.log1p(abs(t - tj)),
                )  # fmt: skip
        k = self.k
        ho.add((t, r, port, failed, ob, rb), k)
        hr.add((t, o, port, failed, ob, rb), k)
        if t > ho.last_seen:
            ho.last_seen = t
        if t > hr.last_seen:
            hr.last_seen = t
        if moves and t > self.clock:
            self.clock = t
            # Per row, not per batch: what a row sees must not depend on where a batch
            # ended (offline, live, after a restart: the same features).
            limit = t - self.ttl_s
            if (orig and orig[next(iter(orig))].last_seen < limit) or (
                resp and resp[next(iter(resp))].last_seen < limit
            ):
                self._expire()
        return feats

    def _preview(self, held: list[tuple[float, Any]], row: tuple, ahead: bool) -> HostContext:
        """A scratch context to compute a held row's features in, leaving this one as it is: copies of
        the hosts involved (none when the held rows lie behind the clock: a new epoch there starts
        afresh), then the earlier held rows taken in at their own time."""
        ctx = HostContext(k=self.k, window_s=self.window_s, ttl_s=self.ttl_s, max_hosts=self.max_hosts)
        if ahead or not held:
            ctx.clock = self.clock
            for key in dict.fromkeys([row[0], *(p[1] for _, p in held)]):
                if key in self.orig:
                    ctx.orig[key] = self.orig[key].copy()
            for key in dict.fromkeys([row[1], *(p[2] for _, p in held)]):
                if key in self.resp:
                    ctx.resp[key] = self.resp[key].copy()
        for t, payload in held:
            ctx._row(t, *payload[1:])
        return ctx

    def _new_epoch(self, replay: list[tuple[float, Any]], *, ahead: bool) -> None:
        """The stream's time moved for good: take in the rows that started the new epoch at their own
        time. Ahead, the hosts of before expire as time passes; behind, the context starts afresh
        (hosts of a time that has not come yet would never expire)."""
        if not ahead:
            self.orig.clear()
            self.resp.clear()
            self.clock = -math.inf
        for t, payload in replay:
            self._row(t, *payload[1:])

    # ------------------------------------------------------------------ checkpoint

    def state(self) -> dict[str, Any]:
        """JSON-able snapshot (parameters, clock and every host's recent connections)."""
        with no_gc():
            return self._state()

    def _state(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "params": self.params,
            "clock": self.clock if math.isfinite(self.clock) else None,
            "rows": self.rows,
            "time": self.time.state(list),
            "orig": [[key, h.to_list()] for key, h in self.orig.items()],
            "resp": [[key, h.to_list()] for key, h in self.resp.items()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace this context's memory with a ``state()`` snapshot (parameters must match).

        A version 1 snapshot (before the stream clock) restores with nothing pending; a clock it
        saved a year ahead is corrected by the rows that follow (they start a new epoch).
        """
        version = int(state.get("version", -1))
        if version not in (1, self.VERSION):
            raise ValueError(f"host context state version {state.get('version')} is not 1 or {self.VERSION}")
        params = state.get("params", {})
        if {k: float(v) for k, v in params.items()} != {k: float(v) for k, v in self.params.items()}:
            raise ValueError(f"host context parameters differ: {params} != {self.params}")
        self.clock = -math.inf if state.get("clock") is None else float(state["clock"])
        self.rows = int(state.get("rows", 0))
        with no_gc():
            self.orig = OrderedDict((str(key), _Host.from_list(d, self.k, True)) for key, d in state["orig"])
            self.resp = OrderedDict((str(key), _Host.from_list(d, self.k)) for key, d in state["resp"])
        self.time = StreamClock()
        self.time.restore(state.get("time") or {"clock": state.get("clock")}, _row_payload)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HostContext:
        """A context rebuilt from ``state()``."""
        p = state["params"]
        ctx = cls(k=int(p["k"]), window_s=float(p["window_s"]), ttl_s=float(p["ttl_s"]), max_hosts=int(p["max_hosts"]))
        ctx.restore(state)
        return ctx
