"""The per-host context as it was before the compiled kernel (issue 13, item 1): the host loop of
``zeek_ml/temporal.py`` at commit db654c2, verbatim, a Python loop per row, kept as the slow reference
that ``tests/test_temporal_current.py`` compares the compiled implementation against. The stream clock
and the column definitions, which the compiled context uses unchanged, are imported from it rather than
copied. Do not optimise the loop."""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FAILED_STATES", "TEMPORAL_FEATURES", "HostContext", "StreamClock", "ts_seconds"]

log = logging.getLogger("zeek_ml.time")
"""Warnings about timestamps far from the stream's clock (a line on stderr where nothing else is configured)."""

# the stream clock, the column definitions and the column readers are shared with the compiled context, not copied:
# only the Python loop over hosts below is the reference
from zeek_ml.features.context import (  # noqa: E402
    FAILED_STATES,
    SEQ_FIELDS,
    TEMPORAL_FEATURES,
    TEMPORAL_NAMES,
    StreamClock,
    _col,
    _num_col,
    _row_payload,
    no_gc,
    ts_seconds,
)


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
