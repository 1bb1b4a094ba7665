"""Per-host temporal context: what a connection's originator and responder did just before.

One streaming component, :class:`HostContext`, used the same way offline (``score``,
``evaluate``, training) and live (``watch``)::

    ctx = HostContext()
    feats = ctx.update(batch)        # DataFrame [len(batch), len(TEMPORAL_FEATURES)], row for row
    json.dumps(ctx.state())          # checkpoint; HostContext.from_state(...) / ctx.restore(...) resumes

Rows are processed **in log order**, one at a time. Zeek writes a connection when it
ends while ``ts`` is its start, so a log is not sorted by ``ts``; we never re-sort. The
rule is deterministic: a row sees the connections of its hosts that were *logged before
it* (what a live sensor knows at that moment), never later rows. Per host we keep:

- the last ``k`` connections (a bounded deque) with running counters, for
  "window of connections" features (distinct peers and ports, failed-state share, bytes,
  inter-arrival regularity);
- a time window: previously logged connections whose ``ts`` is within ``window_s`` seconds
  before this row's ``ts`` (dropped from the oldest end of the log-order queue; a row
  logged late may therefore stay slightly longer, deterministically).

Memory is bounded: at most ``max_hosts`` hosts (least recently seen evicted first) and a
host not seen for ``ttl_s`` seconds of log time (the largest ``ts`` seen) expires.
No IP address leaves this module as a feature: only counts, shares and times.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FAILED_STATES", "TEMPORAL_FEATURES", "HostContext"]

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


class _Host:
    """One host's recent connections and running counters over them."""

    __slots__ = ("failed", "last_seen", "peers", "ports", "recent", "sum_ob", "sum_rb", "window")

    def __init__(self) -> None:
        self.recent: deque[tuple[float, str, int, bool, float, float]] = deque()
        self.window: deque[float] = deque()
        self.peers: Counter[str] = Counter()
        self.ports: Counter[int] = Counter()
        self.failed = 0
        self.sum_ob = 0.0
        self.sum_rb = 0.0
        self.last_seen = -math.inf

    def add(self, rec: tuple[float, str, int, bool, float, float], k: int) -> None:
        if len(self.recent) == k:
            old = self.recent.popleft()
            self._count(old, -1)
        self.recent.append(rec)
        self._count(rec, 1)
        self.window.append(rec[0])

    def _count(self, rec: tuple[float, str, int, bool, float, float], sign: int) -> None:
        _, peer, port, failed, ob, rb = rec
        self.peers[peer] += sign
        if self.peers[peer] <= 0:
            del self.peers[peer]
        self.ports[port] += sign
        if self.ports[port] <= 0:
            del self.ports[port]
        self.failed += sign * int(failed)
        self.sum_ob += sign * ob
        self.sum_rb += sign * rb

    def to_list(self) -> list:
        return [[list(r) for r in self.recent], list(self.window), self.last_seen]

    @classmethod
    def from_list(cls, data: list, k: int) -> _Host:
        h = cls()
        for r in data[0]:
            h.add((float(r[0]), str(r[1]), int(r[2]), bool(r[3]), float(r[4]), float(r[5])), k)
        h.window = deque(float(t) for t in data[1])
        h.last_seen = float(data[2])
        return h


def _col(frame: pd.DataFrame, name: str, default: Any) -> list:
    if name not in frame.columns:
        return [default] * len(frame)
    s = frame[name]
    return s.astype(object).where(s.notna(), default).tolist()


def _num_col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.zeros(len(frame))
    v = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(v), v, 0.0)


class HostContext:
    """Streaming per-host context (see the module docstring). JSON-able state."""

    VERSION = 1

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
        self.rows = 0

    @property
    def params(self) -> dict[str, float | int]:
        """The parameters that define the features (stored in the model's spec)."""
        return {"k": self.k, "window_s": self.window_s, "ttl_s": self.ttl_s, "max_hosts": self.max_hosts}

    def __len__(self) -> int:
        return len(self.orig) + len(self.resp)

    # ------------------------------------------------------------------ core

    def _get(self, table: OrderedDict[str, _Host], key: str) -> _Host:
        h = table.get(key)
        if h is None:
            h = _Host()
            table[key] = h
            if len(table) > self.max_hosts:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return h

    def _expire(self) -> None:
        limit = self.clock - self.ttl_s
        for table in (self.orig, self.resp):
            # least recently touched first; stop at the first host still alive
            while table:
                key, h = next(iter(table.items()))
                if h.last_seen >= limit:
                    break
                del table[key]

    def _side(self, h: _Host, ts: float, peer: str, port: int, originator: bool) -> list[float]:
        while h.window and h.window[0] < ts - self.window_s:
            h.window.popleft()
        n = len(h.recent)
        if n == 0:
            return [0.0] * 11 + [1.0]
        prev_ts = h.recent[-1][0]
        dt = abs(ts - prev_ts)
        cv = 0.0
        if originator and n >= 3:  # regularity of the originator's starts (beacons are regular)
            times = sorted([r[0] for r in h.recent])
            gaps = [b - a for a, b in pairwise(times)]
            mu = sum(gaps) / len(gaps)
            if mu > 0:
                cv = math.sqrt(sum((g - mu) * (g - mu) for g in gaps) / len(gaps)) / mu
        same_port = h.ports.get(port, 0) / n if originator else 0.0
        return [
            float(n),
            float(len(h.window)),
            float(len(h.peers)),
            float(len(h.ports)),
            h.failed / n,
            same_port,
            h.peers.get(peer, 0) / n,
            max(h.sum_ob, 0.0) / n,
            max(h.sum_rb, 0.0) / n,
            dt,
            cv,
            0.0,
        ]

    def update(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Temporal features for ``frame`` (rows in log order), then remember the rows."""
        n = len(frame)
        out = np.zeros((n, len(TEMPORAL_FEATURES)), dtype=np.float32)
        if n == 0:
            return pd.DataFrame(out, columns=list(TEMPORAL_NAMES), index=frame.index)
        ts = _num_col(frame, "ts")
        oh = _col(frame, "id.orig_h", "?")
        rh = _col(frame, "id.resp_h", "?")
        rp = _num_col(frame, "id.resp_p").astype(np.int64)
        st = _col(frame, "conn_state", "-")
        ob = np.maximum(_num_col(frame, "orig_bytes"), 0.0)
        rb = np.maximum(_num_col(frame, "resp_bytes"), 0.0)
        k = self.k
        sk = self.seq_k
        seq = np.zeros((n, len(SEQ_FIELDS), sk), dtype=np.float32) if sk else None
        for i in range(n):
            t = float(ts[i])
            o, r, port = str(oh[i]), str(rh[i]), int(rp[i])
            failed = str(st[i]) in FAILED_STATES
            ho = self._get(self.orig, o)
            hr = self._get(self.resp, r)
            fo = self._side(ho, t, r, port, True)
            fr = self._side(hr, t, o, port, False)
            out[i, :12] = fo
            out[i, 12] = fr[0]
            out[i, 13] = fr[1]
            out[i, 14] = fr[2]
            out[i, 15] = fr[4]
            out[i, 16] = fr[9]
            out[i, 17] = fr[11]
            if seq is not None:
                for j, (tj, peer, pj, fj, obj, rbj) in enumerate(reversed(list(ho.recent)[-sk:])):
                    seq[i, :, j] = (
                        1.0, math.log1p(obj), math.log1p(rbj), float(fj), float(pj == port), float(peer == r),
                        math.log1p(abs(t - tj)),
                    )  # fmt: skip
            ho.add((t, r, port, failed, float(ob[i]), float(rb[i])), k)
            hr.add((t, o, port, failed, float(ob[i]), float(rb[i])), k)
            ho.last_seen = max(ho.last_seen, t)
            hr.last_seen = max(hr.last_seen, t)
            if t > self.clock:
                self.clock = t
                # Per row, not per batch: what a row sees must not depend on where a batch
                # ended (offline, live, after a restart: the same features).
                self._expire()
        self.rows += n
        self.last_sequences = seq
        return pd.DataFrame(out, columns=list(TEMPORAL_NAMES), index=frame.index)

    # ------------------------------------------------------------------ checkpoint

    def state(self) -> dict[str, Any]:
        """JSON-able snapshot (parameters, clock and every host's recent connections)."""
        return {
            "version": self.VERSION,
            "params": self.params,
            "clock": self.clock if math.isfinite(self.clock) else None,
            "rows": self.rows,
            "orig": [[key, h.to_list()] for key, h in self.orig.items()],
            "resp": [[key, h.to_list()] for key, h in self.resp.items()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace this context's memory with a ``state()`` snapshot (parameters must match)."""
        if int(state.get("version", -1)) != self.VERSION:
            raise ValueError(f"host context state version {state.get('version')} != {self.VERSION}")
        params = state.get("params", {})
        if {k: float(v) for k, v in params.items()} != {k: float(v) for k, v in self.params.items()}:
            raise ValueError(f"host context parameters differ: {params} != {self.params}")
        self.clock = -math.inf if state.get("clock") is None else float(state["clock"])
        self.rows = int(state.get("rows", 0))
        self.orig = OrderedDict((str(key), _Host.from_list(d, self.k)) for key, d in state["orig"])
        self.resp = OrderedDict((str(key), _Host.from_list(d, self.k)) for key, d in state["resp"])

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HostContext:
        """A context rebuilt from ``state()``."""
        p = state["params"]
        ctx = cls(k=int(p["k"]), window_s=float(p["window_s"]), ttl_s=float(p["ttl_s"]), max_hosts=int(p["max_hosts"]))
        ctx.restore(state)
        return ctx
