"""The compiled hot path of :class:`zeek_ml.features.context.HostContext`: one loop over a batch's rows.

Every host lives in a *slot* of a table (one table for originators, one for responders), a row of a few
flat numpy arrays; a host's key and its peers are small integers (an intern table in ``temporal.py``
maps them to the address strings). The functions here do, row for row and operation for operation, what
the Python implementation before issue 13 did with an ``OrderedDict`` of hosts, a deque of the last
``k`` connections, dict counters and running sums (``tests/temporal_current.py`` keeps it): the same
additions and subtractions in the same order, so every float is bit-identical.

The loops (``rows``, ``load``, ``compact_windows``, ``lru_order``, ``windows`` and the helpers they call)
run compiled: ``_hostkernel.pyx`` is the same code with C types, built by Cython when zeek-ml is installed
(pip fetches Cython for the build; nothing of it is needed at run time). Where that extension is missing
(a checkout never installed) or ``ZEEK_ML_PURE_PYTHON=1`` is set, the Python functions below run instead:
the same answers, about 60 times slower.

A table is a tuple ``(si, sf, ri, rf, st, meta, free, wts, wnext, slot_of)``:

- ``si`` int64 ``[cap, NI]`` per slot: ring head and count, failed count, distinct peers and ports, LRU
  links, key, window head/tail/count; ``sf`` float64 ``[cap, NF]``: running sums, last seen;
- ``ri`` int64 ``[cap, k, 3]`` the last ``k`` connections' peer, port, failed; ``rf`` float64
  ``[cap, k, 3]`` their ts, orig_bytes, resp_bytes (a ring from ``si[RHEAD]``);
- ``st`` float64 ``[cap, k]`` the same starts sorted (originators: the inter-arrival regularity);
- ``meta`` int64: LRU head and tail, live hosts, free slots, window store length;
- ``free`` int64 ``[cap]`` a stack of free slots;
- ``wts``/``wnext``: the time windows, one linked list of starts per host in a shared store (a window is
  not bounded by ``k``: a host may start thousands of connections within ``window_s``);
- ``slot_of`` int64 ``[ids]``: a key's slot, -1 when the host is not in memory.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np

# per-slot integers (si)
RHEAD, RCNT, NFAIL, NPEERS, NPORTS, PREV, NEXT, KEY, WHEAD, WTAIL, WCNT = range(11)
NI = 11
# per-slot floats (sf)
SOB, SRB, LAST = range(3)
NF = 3
# per-table integers (meta)
HEAD, TAIL, COUNT, FREE, WLEN = range(5)
NMETA = 5
NFEAT = 18


def _unlink(si, meta, s):
    p = si[s, PREV]
    nx = si[s, NEXT]
    if p >= 0:
        si[p, NEXT] = nx
    else:
        meta[HEAD] = nx
    if nx >= 0:
        si[nx, PREV] = p
    else:
        meta[TAIL] = p


def _link_tail(si, meta, s):
    t = meta[TAIL]
    si[s, PREV] = t
    si[s, NEXT] = -1
    if t >= 0:
        si[t, NEXT] = s
    else:
        meta[HEAD] = s
    meta[TAIL] = s


def _evict(si, meta, free, slot_of, s):
    """Forget the host in slot ``s`` (its slot goes back to the free stack)."""
    _unlink(si, meta, s)
    meta[COUNT] -= 1
    slot_of[si[s, KEY]] = -1
    free[meta[FREE]] = s
    meta[FREE] += 1


def _new_slot(si, sf, meta, free, slot_of, key):
    """A fresh host at the LRU tail (``OrderedDict[key] = _Host()``), without the max_hosts check."""
    meta[FREE] -= 1
    s = free[meta[FREE]]
    si[s, RHEAD] = 0
    si[s, RCNT] = 0
    si[s, NFAIL] = 0
    si[s, NPEERS] = 0
    si[s, NPORTS] = 0
    si[s, KEY] = key
    si[s, WHEAD] = -1
    si[s, WTAIL] = -1
    si[s, WCNT] = 0
    sf[s, SOB] = 0.0
    sf[s, SRB] = 0.0
    sf[s, LAST] = -np.inf
    slot_of[key] = s
    _link_tail(si, meta, s)
    meta[COUNT] += 1
    return s


def _touch(si, sf, meta, free, slot_of, key, max_hosts):
    """The host's slot, moved to the LRU tail; a new host evicts the least recently seen one when the
    table holds more than ``max_hosts`` (one, as ``popitem(last=False)`` did; it may be this very host)."""
    s = slot_of[key]
    if s < 0:
        s = _new_slot(si, sf, meta, free, slot_of, key)
        if meta[COUNT] > max_hosts:
            _evict(si, meta, free, slot_of, meta[HEAD])
    elif meta[TAIL] != s:
        _unlink(si, meta, s)
        _link_tail(si, meta, s)
    return s


def _pop_window(si, wts, wnext, s, lo):
    c = si[s, WCNT]
    h = si[s, WHEAD]
    while c > 0 and wts[h] < lo:
        h = wnext[h]
        c -= 1
    si[s, WCNT] = c
    if c == 0:
        si[s, WHEAD] = -1
        si[s, WTAIL] = -1
    else:
        si[s, WHEAD] = h


def _window_append(si, meta, wts, wnext, s, t):
    w = meta[WLEN]
    meta[WLEN] = w + 1
    wts[w] = t
    wnext[w] = -1
    if si[s, WCNT] > 0:
        wnext[si[s, WTAIL]] = w
    else:
        si[s, WHEAD] = w
    si[s, WTAIL] = w
    si[s, WCNT] += 1


def _add(si, sf, ri, rf, st, s, t, peer, port, failed, ob, rb, k, sorted_times):
    """``_Host.add``: remember one connection, the oldest of ``k`` forgotten (not the window)."""
    n = si[s, RCNT]
    h = si[s, RHEAD]
    if n == k:
        opeer = ri[s, h, 0]
        oport = ri[s, h, 1]
        same_peer = False
        same_port = False
        for j in range(n):  # the ring is full: every position but the oldest
            if j != h:
                if ri[s, j, 0] == opeer:
                    same_peer = True
                if ri[s, j, 1] == oport:
                    same_port = True
        if not same_peer:
            si[s, NPEERS] -= 1
        if not same_port:
            si[s, NPORTS] -= 1
        if ri[s, h, 2] != 0:
            si[s, NFAIL] -= 1
        sf[s, SOB] -= rf[s, h, 1]
        sf[s, SRB] -= rf[s, h, 2]
        if sorted_times:  # del times[bisect_left(times, ot)]
            ot = rf[s, h, 0]
            p = 0
            while p < n and st[s, p] < ot:
                p += 1
            for j in range(p, n - 1):
                st[s, j] = st[s, j + 1]
        h = (h + 1) % k
        n -= 1
    new_peer = True
    new_port = True
    w = (h + n) % k  # where the new one goes
    # The n kept are every position but w: 0..n-1 for a ring never full (h == 0, w == n), all but the
    # oldest's after a removal. Counting needs no ring order (an integer division per step is slow).
    for j in range(n):
        idx = j if j < w else j + 1
        if ri[s, idx, 0] == peer:
            new_peer = False
        if ri[s, idx, 1] == port:
            new_port = False
    idx = w
    ri[s, idx, 0] = peer
    ri[s, idx, 1] = port
    ri[s, idx, 2] = 1 if failed else 0
    rf[s, idx, 0] = t
    rf[s, idx, 1] = ob
    rf[s, idx, 2] = rb
    if new_peer:
        si[s, NPEERS] += 1
    if new_port:
        si[s, NPORTS] += 1
    if failed:
        si[s, NFAIL] += 1
    sf[s, SOB] += ob
    sf[s, SRB] += rb
    if sorted_times:  # insort(times, t)
        p = 0
        while p < n and not (t < st[s, p]):
            p += 1
        for j in range(n, p, -1):
            st[s, j] = st[s, j - 1]
        st[s, p] = t
    si[s, RHEAD] = h
    si[s, RCNT] = n + 1


def _expire(si, sf, meta, free, slot_of, limit):
    while meta[COUNT] > 0 and sf[meta[HEAD], LAST] < limit:
        _evict(si, meta, free, slot_of, meta[HEAD])


def rows(otab, rtab, params, clock, ts, oid, rid, port, failed, ob, rb, start, feats, out, seq):
    """Take in rows ``start..`` (features into ``out[i]`` and ``seq[i]`` when ``feats``); return the
    first row not taken in: a table ran out of free slots or window store (the caller grows it and
    calls again from there), or ``len(ts)``. ``ts`` NaN: the row has no time (the clock's, never
    moving it). ``clock`` is a 1-array, ``params`` (k, window_s, ttl_s, max_hosts)."""
    osi, osf, ori, orf, ost, ometa, ofree, owts, ownext, oslot = otab
    rsi, rsf, rri, rrf, rst, rmeta, rfree, rwts, rwnext, rslot = rtab
    k = int(params[0])
    window_s = params[1]
    ttl_s = params[2]
    max_hosts = int(params[3])
    sk = seq.shape[2]
    n = ts.shape[0]
    for i in range(start, n):
        if ometa[FREE] < 1 or rmeta[FREE] < 1 or ometa[WLEN] >= owts.shape[0] or rmeta[WLEN] >= rwts.shape[0]:
            return i
        t = ts[i]
        moves = not math.isnan(t)
        if not moves:
            t = clock[0] if math.isfinite(clock[0]) else 0.0
        o = oid[i]
        r = rid[i]
        p = port[i]
        so = _touch(osi, osf, ometa, ofree, oslot, o, max_hosts)
        sr = _touch(rsi, rsf, rmeta, rfree, rslot, r, max_hosts)
        lo = t - window_s
        _pop_window(osi, owts, ownext, so, lo)
        _pop_window(rsi, rwts, rwnext, sr, lo)
        if feats:
            nn = osi[so, RCNT]
            if nn == 0:
                for j in range(11):
                    out[i, j] = 0.0
                out[i, 11] = 1.0
            else:
                h = osi[so, RHEAD]
                same_p = 0
                same_h = 0
                for j in range(nn):  # a ring not full starts at position 0: positions 0..nn-1, any order
                    if ori[so, j, 1] == p:
                        same_p += 1
                    if ori[so, j, 0] == r:
                        same_h += 1
                fn = float(nn)
                out[i, 0] = fn
                out[i, 1] = float(osi[so, WCNT])
                out[i, 2] = float(osi[so, NPEERS])
                out[i, 3] = float(osi[so, NPORTS])
                out[i, 4] = float(osi[so, NFAIL]) / fn
                out[i, 5] = float(same_p) / fn
                out[i, 6] = float(same_h) / fn
                v = osf[so, SOB]
                out[i, 7] = (0.0 if v < 0.0 else v) / fn
                v = osf[so, SRB]
                out[i, 8] = (0.0 if v < 0.0 else v) / fn
                out[i, 9] = abs(t - orf[so, (h + nn - 1) % k, 0])
                cv = 0.0
                if nn >= 3:  # as _iat_cv did (tests/temporal_current.py): gaps summed left to right, then squares
                    cnt = float(nn - 1)
                    tot = 0.0
                    for j in range(nn - 1):
                        tot += ost[so, j + 1] - ost[so, j]
                    mu = tot / cnt
                    tot = 0.0
                    for j in range(nn - 1):
                        d = (ost[so, j + 1] - ost[so, j]) - mu
                        tot += d * d
                    if mu > 0:
                        cv = math.sqrt(tot / cnt) / mu
                out[i, 10] = cv
                out[i, 11] = 0.0
            m = rsi[sr, RCNT]
            if m == 0:
                for j in range(12, 17):
                    out[i, j] = 0.0
                out[i, 17] = 1.0
            else:
                fm = float(m)
                out[i, 12] = fm
                out[i, 13] = float(rsi[sr, WCNT])
                out[i, 14] = float(rsi[sr, NPEERS])
                out[i, 15] = float(rsi[sr, NFAIL]) / fm
                out[i, 16] = abs(t - rrf[sr, (rsi[sr, RHEAD] + m - 1) % k, 0])
                out[i, 17] = 0.0
            if sk > 0:
                h = osi[so, RHEAD]
                for j in range(min(nn, sk)):
                    idx = (h + nn - 1 - j) % k
                    seq[i, 0, j] = 1.0
                    seq[i, 1, j] = math.log1p(orf[so, idx, 1])
                    seq[i, 2, j] = math.log1p(orf[so, idx, 2])
                    seq[i, 3, j] = float(ori[so, idx, 2])
                    seq[i, 4, j] = 1.0 if ori[so, idx, 1] == p else 0.0
                    seq[i, 5, j] = 1.0 if ori[so, idx, 0] == r else 0.0
                    seq[i, 6, j] = math.log1p(abs(t - orf[so, idx, 0]))
        f = failed[i] != 0
        _add(osi, osf, ori, orf, ost, so, t, r, p, f, ob[i], rb[i], k, True)
        _window_append(osi, ometa, owts, ownext, so, t)
        _add(rsi, rsf, rri, rrf, rst, sr, t, o, p, f, ob[i], rb[i], k, False)
        _window_append(rsi, rmeta, rwts, rwnext, sr, t)
        if t > osf[so, LAST]:
            osf[so, LAST] = t
        if t > rsf[sr, LAST]:
            rsf[sr, LAST] = t
        if moves and t > clock[0]:
            clock[0] = t
            # per row, not per batch: what a row sees must not depend on where a batch ended
            limit = t - ttl_s
            if (ometa[COUNT] > 0 and osf[ometa[HEAD], LAST] < limit) or (
                rmeta[COUNT] > 0 and rsf[rmeta[HEAD], LAST] < limit
            ):
                _expire(osi, osf, ometa, ofree, oslot, limit)
                _expire(rsi, rsf, rmeta, rfree, rslot, limit)
    return n


def compact_windows(si, meta, wts, wnext, nts, nnext):
    """Copy every live host's window into the new store ``nts``/``nnext`` (LRU order), dropping what
    expired hosts and popped starts left behind."""
    pos = 0
    s = meta[HEAD]
    while s >= 0:
        c = si[s, WCNT]
        if c > 0:
            h = si[s, WHEAD]
            si[s, WHEAD] = pos
            for _ in range(c):
                nts[pos] = wts[h]
                nnext[pos] = pos + 1
                pos += 1
                h = wnext[h]
            nnext[pos - 1] = -1
            si[s, WTAIL] = pos - 1
        s = si[s, NEXT]
    meta[WLEN] = pos


def lru_order(si, meta):
    """The live slots, least recently seen first."""
    out = np.empty(meta[COUNT], dtype=np.int64)
    s = meta[HEAD]
    i = 0
    while s >= 0:
        out[i] = s
        i += 1
        s = si[s, NEXT]
    return out


def load(tab, k, sorted_times, keys, nrec, rec_i, rec_f, wlen, wflat, last):
    """Restore hosts as ``_Host.from_list`` did, appended in LRU order without the max_hosts check: host
    ``j`` has ``nrec[j]`` connections (flat, oldest first: ``rec_i`` peer/port/failed, ``rec_f``
    ts/orig_bytes/resp_bytes) added one by one (the running sums as they were), a window of the next
    ``wlen[j]`` starts of ``wflat``, and ``last[j]`` as last seen."""
    si, sf, ri, rf, st, meta, free, wts, wnext, slot_of = tab
    r = 0
    w = 0
    for j in range(keys.shape[0]):
        s = _new_slot(si, sf, meta, free, slot_of, keys[j])
        for q in range(r, r + nrec[j]):
            f = rec_i[q, 2] != 0
            _add(si, sf, ri, rf, st, s, rec_f[q, 0], rec_i[q, 0], rec_i[q, 1], f, rec_f[q, 1], rec_f[q, 2], k,
                 sorted_times)  # fmt: skip
        for q in range(w, w + wlen[j]):
            _window_append(si, meta, wts, wnext, s, wflat[q])
        w += wlen[j]
        r += nrec[j]
        sf[s, LAST] = last[j]


def windows(si, wts, wnext, order):
    """The time windows of the slots in ``order``, one after the other, oldest start first."""
    total = 0
    for s in order:
        total += si[s, WCNT]
    out = np.empty(total, dtype=np.float64)
    i = 0
    for s in order:
        h = si[s, WHEAD]
        for _ in range(si[s, WCNT]):
            out[i] = wts[h]
            i += 1
            h = wnext[h]
    return out


def empty_table(cap: int, k: int, ids: int, wcap: int, sorted_times: bool) -> tuple[Any, ...]:
    """A table with room for ``cap`` hosts, ``ids`` keys and ``wcap`` window starts (sorted starts
    are kept for originators only)."""
    meta = np.zeros(NMETA, dtype=np.int64)
    meta[HEAD] = meta[TAIL] = -1
    meta[FREE] = cap
    return (
        np.zeros((cap, NI), dtype=np.int64),
        np.zeros((cap, NF), dtype=np.float64),
        np.zeros((cap, k, 3), dtype=np.int64),
        np.zeros((cap, k, 3), dtype=np.float64),
        np.zeros((cap if sorted_times else 1, k), dtype=np.float64),
        meta,
        np.arange(cap - 1, -1, -1, dtype=np.int64),  # slot 0 first
        np.zeros(wcap, dtype=np.float64),
        np.zeros(wcap, dtype=np.int64),
        np.full(ids, -1, dtype=np.int64),
    )


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    b = np.zeros((n, *a.shape[1:]), dtype=a.dtype)
    b[: len(a)] = a
    return b


def room(tab: tuple, slots: int = 1, starts: int = 1) -> tuple:
    """``tab`` with at least ``slots`` free slots and room for ``starts`` more window starts (the
    window store compacted, and doubled when it is more than half full of live starts)."""
    si, sf, ri, rf, st, meta, free, wts, wnext, slot_of = tab
    if meta[FREE] < slots:
        cap = len(si)
        new = max(2 * cap, cap + slots)
        si, sf, ri, rf = _grow(si, new), _grow(sf, new), _grow(ri, new), _grow(rf, new)
        if len(st) > 1:
            st = _grow(st, new)
        f = np.empty(new, dtype=np.int64)
        nf = int(meta[FREE])
        f[:nf] = free[:nf]
        f[nf : nf + new - cap] = np.arange(new - 1, cap - 1, -1)
        meta[FREE] = nf + new - cap
        free = f
    if len(wts) - meta[WLEN] < starts:
        order = lru_order(si, meta)
        live = int(si[order, WCNT].sum())
        size = max(len(wts), 2 * live + starts + 64)
        nts, nnext = np.zeros(size, dtype=np.float64), np.zeros(size, dtype=np.int64)
        compact_windows(si, meta, wts, wnext, nts, nnext)
        wts, wnext = nts, nnext
    return (si, sf, ri, rf, st, meta, free, wts, wnext, slot_of)


def more_ids(tab: tuple, n: int) -> tuple:
    """``tab`` with room for ``n`` keys (and some more)."""
    slot_of = tab[9]
    new = np.full(max(n, 2 * len(slot_of)), -1, dtype=np.int64)
    new[: len(slot_of)] = slot_of
    return (*tab[:9], new)


def copy_host(src: tuple, dst: tuple, key: int) -> None:
    """Copy the host ``key`` of ``src`` to the LRU tail of ``dst`` (running sums as they are, no
    max_hosts check): ``_Host.copy``. ``dst`` must have a free slot and room for its window."""
    s = src[9][key]
    d = _new_slot(dst[0], dst[1], dst[5], dst[6], dst[9], key)
    dst[0][d, : NPORTS + 1] = src[0][s, : NPORTS + 1]
    dst[1][d] = src[1][s]
    dst[2][d] = src[2][s]
    dst[3][d] = src[3][s]
    if len(dst[4]) > 1:
        dst[4][d] = src[4][s]
    for t in windows(src[0], src[7], src[8], np.array([s], dtype=np.int64)):
        _window_append(dst[0], dst[5], dst[7], dst[8], d, t)


def live_ids(tab: tuple) -> np.ndarray:
    """The ids the hosts of ``tab`` hold: their keys and their connections' peers."""
    si, ri = tab[0], tab[2]
    order = lru_order(si, tab[5])
    k = ri.shape[1]
    valid = (np.arange(k) - si[order, RHEAD, None]) % k < si[order, RCNT, None]
    return np.concatenate([si[order, KEY], ri[order, :, 0][valid]])


def remap_ids(tab: tuple, remap: np.ndarray, ids: int) -> tuple:
    """``tab`` with every id ``i`` its hosts hold renamed ``remap[i]`` (the others are stale)."""
    si, sf, ri, rf, st, meta, free, wts, wnext, slot_of = tab
    order = lru_order(si, meta)
    si[order, KEY] = remap[si[order, KEY]]
    # Only a host's recent connections are renamed: the rest of its ring is left over from an earlier
    # host of the slot, may name ids from before an earlier compaction (beyond ``remap``), is never
    # read, and becomes -1.
    k = ri.shape[1]
    valid = (np.arange(k) - si[order, RHEAD, None]) % k < si[order, RCNT, None]
    peers = ri[order, :, 0]
    ri[order, :, 0] = np.where(valid, remap[np.where(valid, peers, 0)], -1)
    slot_of = np.full(ids, -1, dtype=np.int64)
    slot_of[si[order, KEY]] = order
    return (si, sf, ri, rf, st, meta, free, wts, wnext, slot_of)


COMPILED = False
"""Whether the loops above are the compiled ones of ``_hostkernel.pyx``."""
if os.environ.get("ZEEK_ML_PURE_PYTHON", "") in ("", "0"):
    try:
        from zeek_ml.features import _hostkernel as _compiled
    except ImportError:
        logging.getLogger("zeek_ml.time").warning(
            "zeek-ml: the compiled per-host context is not built (install zeek-ml with pip); "
            "it runs as plain Python, about 60 times slower"
        )
    else:
        rows = _compiled.rows
        compact_windows = _compiled.compact_windows
        lru_order = _compiled.lru_order
        load = _compiled.load
        windows = _compiled.windows
        _new_slot = _compiled.new_slot
        _window_append = _compiled.window_append
        COMPILED = True
