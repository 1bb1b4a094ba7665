# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The loops of :mod:`zeek_ml.features.hostkernel`, compiled when zeek-ml is installed.

Statement for statement the Python functions of that module (read them there: they are the same code
with the same names, and its docstrings say what each does): the same additions and subtractions in
the same order on the same float64 values, so every feature is bit-identical to the Python ones and
to the reference in ``tests/temporal_current.py``. C ``%`` on the non-negative ring indices here is
Python's. Tables are the tuples of C-contiguous arrays that ``hostkernel.empty_table`` makes.
"""

import numpy as np

from libc.math cimport fabs, isfinite, isnan, log1p, sqrt, INFINITY
from libc.stdint cimport int64_t

ctypedef int64_t i64

# the layout of hostkernel.py (a test checks they agree)
cdef enum:
    RHEAD = 0
    RCNT = 1
    NFAIL = 2
    NPEERS = 3
    NPORTS = 4
    PREV = 5
    NEXT = 6
    KEY = 7
    WHEAD = 8
    WTAIL = 9
    WCNT = 10
    NI = 11
    SOB = 0
    SRB = 1
    LAST = 2
    NF = 3
    HEAD = 0
    TAIL = 1
    COUNT = 2
    FREE = 3
    WLEN = 4
    NMETA = 5
    NFEAT = 18

LAYOUT = {
    "RHEAD": RHEAD, "RCNT": RCNT, "NFAIL": NFAIL, "NPEERS": NPEERS, "NPORTS": NPORTS, "PREV": PREV,
    "NEXT": NEXT, "KEY": KEY, "WHEAD": WHEAD, "WTAIL": WTAIL, "WCNT": WCNT, "NI": NI, "SOB": SOB,
    "SRB": SRB, "LAST": LAST, "NF": NF, "HEAD": HEAD, "TAIL": TAIL, "COUNT": COUNT, "FREE": FREE,
    "WLEN": WLEN, "NMETA": NMETA, "NFEAT": NFEAT,
}


cdef inline void c_unlink(i64[:, ::1] si, i64[::1] meta, i64 s) noexcept nogil:
    cdef i64 p = si[s, PREV]
    cdef i64 nx = si[s, NEXT]
    if p >= 0:
        si[p, NEXT] = nx
    else:
        meta[HEAD] = nx
    if nx >= 0:
        si[nx, PREV] = p
    else:
        meta[TAIL] = p


cdef inline void c_link_tail(i64[:, ::1] si, i64[::1] meta, i64 s) noexcept nogil:
    cdef i64 t = meta[TAIL]
    si[s, PREV] = t
    si[s, NEXT] = -1
    if t >= 0:
        si[t, NEXT] = s
    else:
        meta[HEAD] = s
    meta[TAIL] = s


cdef inline void c_evict(i64[:, ::1] si, i64[::1] meta, i64[::1] free, i64[::1] slot_of, i64 s) noexcept nogil:
    c_unlink(si, meta, s)
    meta[COUNT] -= 1
    slot_of[si[s, KEY]] = -1
    free[meta[FREE]] = s
    meta[FREE] += 1


cdef inline i64 c_new_slot(i64[:, ::1] si, double[:, ::1] sf, i64[::1] meta, i64[::1] free, i64[::1] slot_of,
                           i64 key) noexcept nogil:
    meta[FREE] -= 1
    cdef i64 s = free[meta[FREE]]
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
    sf[s, LAST] = -INFINITY
    slot_of[key] = s
    c_link_tail(si, meta, s)
    meta[COUNT] += 1
    return s


cdef inline i64 c_touch(i64[:, ::1] si, double[:, ::1] sf, i64[::1] meta, i64[::1] free, i64[::1] slot_of,
                        i64 key, i64 max_hosts) noexcept nogil:
    cdef i64 s = slot_of[key]
    if s < 0:
        s = c_new_slot(si, sf, meta, free, slot_of, key)
        if meta[COUNT] > max_hosts:
            c_evict(si, meta, free, slot_of, meta[HEAD])
    elif meta[TAIL] != s:
        c_unlink(si, meta, s)
        c_link_tail(si, meta, s)
    return s


cdef inline void c_pop_window(i64[:, ::1] si, double[::1] wts, i64[::1] wnext, i64 s, double lo) noexcept nogil:
    cdef i64 c = si[s, WCNT]
    cdef i64 h = si[s, WHEAD]
    while c > 0 and wts[h] < lo:
        h = wnext[h]
        c -= 1
    si[s, WCNT] = c
    if c == 0:
        si[s, WHEAD] = -1
        si[s, WTAIL] = -1
    else:
        si[s, WHEAD] = h


cdef inline void c_window_append(i64[:, ::1] si, i64[::1] meta, double[::1] wts, i64[::1] wnext, i64 s,
                                 double t) noexcept nogil:
    cdef i64 w = meta[WLEN]
    meta[WLEN] = w + 1
    wts[w] = t
    wnext[w] = -1
    if si[s, WCNT] > 0:
        wnext[si[s, WTAIL]] = w
    else:
        si[s, WHEAD] = w
    si[s, WTAIL] = w
    si[s, WCNT] += 1


cdef inline void c_add(i64[:, ::1] si, double[:, ::1] sf, i64[:, :, ::1] ri, double[:, :, ::1] rf,
                       double[:, ::1] st, i64 s, double t, i64 peer, i64 port, bint failed, double ob, double rb,
                       i64 k, bint sorted_times) noexcept nogil:
    cdef i64 n = si[s, RCNT]
    cdef i64 h = si[s, RHEAD]
    cdef i64 opeer, oport, j, p, w, idx
    cdef bint same_peer, same_port, new_peer, new_port
    cdef double ot
    if n == k:
        opeer = ri[s, h, 0]
        oport = ri[s, h, 1]
        same_peer = False
        same_port = False
        for j in range(n):
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
        if sorted_times:
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
    w = (h + n) % k
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
    if sorted_times:
        p = 0
        while p < n and not (t < st[s, p]):
            p += 1
        j = n
        while j > p:
            st[s, j] = st[s, j - 1]
            j -= 1
        st[s, p] = t
    si[s, RHEAD] = h
    si[s, RCNT] = n + 1


cdef inline void c_expire(i64[:, ::1] si, double[:, ::1] sf, i64[::1] meta, i64[::1] free, i64[::1] slot_of,
                          double limit) noexcept nogil:
    while meta[COUNT] > 0 and sf[meta[HEAD], LAST] < limit:
        c_evict(si, meta, free, slot_of, meta[HEAD])


def rows(tuple otab, tuple rtab, double[::1] params, double[::1] clock, double[:] ts, i64[:] oid, i64[:] rid,
         i64[:] port, i64[:] failed, double[:] ob, double[:] rb, i64 start, bint feats, double[:, :] out,
         float[:, :, :] seq):
    cdef i64[:, ::1] osi, rsi
    cdef double[:, ::1] osf, rsf, ost, rst
    cdef i64[:, :, ::1] ori, rri
    cdef double[:, :, ::1] orf, rrf
    cdef i64[::1] ometa, ofree, ownext, oslot, rmeta, rfree, rwnext, rslot
    cdef double[::1] owts, rwts
    osi, osf, ori, orf, ost, ometa, ofree, owts, ownext, oslot = otab
    rsi, rsf, rri, rrf, rst, rmeta, rfree, rwts, rwnext, rslot = rtab
    cdef i64 k = <i64>params[0]
    cdef double window_s = params[1]
    cdef double ttl_s = params[2]
    cdef i64 max_hosts = <i64>params[3]
    cdef i64 sk = seq.shape[2]
    cdef i64 n = ts.shape[0]
    cdef i64 owcap = owts.shape[0]
    cdef i64 rwcap = rwts.shape[0]
    cdef i64 i, j, o, r, p, so, sr, nn, m, h, same_p, same_h, idx, top
    cdef double t, lo, fn, fm, v, cv, cnt, tot, mu, d, limit
    cdef bint moves, f
    cdef i64 taken = n
    with nogil:
        for i in range(start, n):
            if ometa[FREE] < 1 or rmeta[FREE] < 1 or ometa[WLEN] >= owcap or rmeta[WLEN] >= rwcap:
                taken = i
                break
            t = ts[i]
            moves = not isnan(t)
            if not moves:
                t = clock[0] if isfinite(clock[0]) else 0.0
            o = oid[i]
            r = rid[i]
            p = port[i]
            so = c_touch(osi, osf, ometa, ofree, oslot, o, max_hosts)
            sr = c_touch(rsi, rsf, rmeta, rfree, rslot, r, max_hosts)
            lo = t - window_s
            c_pop_window(osi, owts, ownext, so, lo)
            c_pop_window(rsi, rwts, rwnext, sr, lo)
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
                    for j in range(nn):
                        if ori[so, j, 1] == p:
                            same_p += 1
                        if ori[so, j, 0] == r:
                            same_h += 1
                    fn = <double>nn
                    out[i, 0] = fn
                    out[i, 1] = <double>osi[so, WCNT]
                    out[i, 2] = <double>osi[so, NPEERS]
                    out[i, 3] = <double>osi[so, NPORTS]
                    out[i, 4] = <double>osi[so, NFAIL] / fn
                    out[i, 5] = <double>same_p / fn
                    out[i, 6] = <double>same_h / fn
                    v = osf[so, SOB]
                    out[i, 7] = (0.0 if v < 0.0 else v) / fn
                    v = osf[so, SRB]
                    out[i, 8] = (0.0 if v < 0.0 else v) / fn
                    out[i, 9] = fabs(t - orf[so, (h + nn - 1) % k, 0])
                    cv = 0.0
                    if nn >= 3:
                        cnt = <double>(nn - 1)
                        tot = 0.0
                        for j in range(nn - 1):
                            tot += ost[so, j + 1] - ost[so, j]
                        mu = tot / cnt
                        tot = 0.0
                        for j in range(nn - 1):
                            d = (ost[so, j + 1] - ost[so, j]) - mu
                            tot += d * d
                        if mu > 0:
                            cv = sqrt(tot / cnt) / mu
                    out[i, 10] = cv
                    out[i, 11] = 0.0
                m = rsi[sr, RCNT]
                if m == 0:
                    for j in range(12, 17):
                        out[i, j] = 0.0
                    out[i, 17] = 1.0
                else:
                    fm = <double>m
                    out[i, 12] = fm
                    out[i, 13] = <double>rsi[sr, WCNT]
                    out[i, 14] = <double>rsi[sr, NPEERS]
                    out[i, 15] = <double>rsi[sr, NFAIL] / fm
                    out[i, 16] = fabs(t - rrf[sr, (rsi[sr, RHEAD] + m - 1) % k, 0])
                    out[i, 17] = 0.0
                if sk > 0:
                    h = osi[so, RHEAD]
                    top = nn if nn < sk else sk
                    for j in range(top):
                        idx = (h + nn - 1 - j) % k
                        seq[i, 0, j] = 1.0
                        seq[i, 1, j] = <float>log1p(orf[so, idx, 1])
                        seq[i, 2, j] = <float>log1p(orf[so, idx, 2])
                        seq[i, 3, j] = <float>(<double>ori[so, idx, 2])
                        seq[i, 4, j] = 1.0 if ori[so, idx, 1] == p else 0.0
                        seq[i, 5, j] = 1.0 if ori[so, idx, 0] == r else 0.0
                        seq[i, 6, j] = <float>log1p(fabs(t - orf[so, idx, 0]))
            f = failed[i] != 0
            c_add(osi, osf, ori, orf, ost, so, t, r, p, f, ob[i], rb[i], k, True)
            c_window_append(osi, ometa, owts, ownext, so, t)
            c_add(rsi, rsf, rri, rrf, rst, sr, t, o, p, f, ob[i], rb[i], k, False)
            c_window_append(rsi, rmeta, rwts, rwnext, sr, t)
            if t > osf[so, LAST]:
                osf[so, LAST] = t
            if t > rsf[sr, LAST]:
                rsf[sr, LAST] = t
            if moves and t > clock[0]:
                clock[0] = t
                limit = t - ttl_s
                if (ometa[COUNT] > 0 and osf[ometa[HEAD], LAST] < limit) or (
                    rmeta[COUNT] > 0 and rsf[rmeta[HEAD], LAST] < limit
                ):
                    c_expire(osi, osf, ometa, ofree, oslot, limit)
                    c_expire(rsi, rsf, rmeta, rfree, rslot, limit)
    return taken


def compact_windows(i64[:, ::1] si, i64[::1] meta, double[::1] wts, i64[::1] wnext, double[::1] nts,
                    i64[::1] nnext):
    cdef i64 pos = 0
    cdef i64 s = meta[HEAD]
    cdef i64 c, h, q
    with nogil:
        while s >= 0:
            c = si[s, WCNT]
            if c > 0:
                h = si[s, WHEAD]
                si[s, WHEAD] = pos
                for q in range(c):
                    nts[pos] = wts[h]
                    nnext[pos] = pos + 1
                    pos += 1
                    h = wnext[h]
                nnext[pos - 1] = -1
                si[s, WTAIL] = pos - 1
            s = si[s, NEXT]
        meta[WLEN] = pos


def lru_order(i64[:, ::1] si, i64[::1] meta):
    out_arr = np.empty(meta[COUNT], dtype=np.int64)
    cdef i64[::1] out = out_arr
    cdef i64 s = meta[HEAD]
    cdef i64 i = 0
    while s >= 0:
        out[i] = s
        i += 1
        s = si[s, NEXT]
    return out_arr


def load(tuple tab, i64 k, bint sorted_times, i64[::1] keys, i64[::1] nrec, i64[:, ::1] rec_i,
         double[:, ::1] rec_f, i64[::1] wlen, double[::1] wflat, double[::1] last):
    cdef i64[:, ::1] si
    cdef double[:, ::1] sf, st
    cdef i64[:, :, ::1] ri
    cdef double[:, :, ::1] rf
    cdef i64[::1] meta, free, wnext, slot_of
    cdef double[::1] wts
    si, sf, ri, rf, st, meta, free, wts, wnext, slot_of = tab
    cdef i64 r = 0
    cdef i64 w = 0
    cdef i64 j, q, s
    for j in range(keys.shape[0]):
        s = c_new_slot(si, sf, meta, free, slot_of, keys[j])
        for q in range(r, r + nrec[j]):
            c_add(si, sf, ri, rf, st, s, rec_f[q, 0], rec_i[q, 0], rec_i[q, 1], rec_i[q, 2] != 0, rec_f[q, 1],
                  rec_f[q, 2], k, sorted_times)
        for q in range(w, w + wlen[j]):
            c_window_append(si, meta, wts, wnext, s, wflat[q])
        w += wlen[j]
        r += nrec[j]
        sf[s, LAST] = last[j]


def windows(i64[:, ::1] si, double[::1] wts, i64[::1] wnext, i64[::1] order):
    cdef i64 total = 0
    cdef i64 a, s, h, q
    cdef i64 i = 0
    for a in range(order.shape[0]):
        total += si[order[a], WCNT]
    out_arr = np.empty(total, dtype=np.float64)
    cdef double[::1] out = out_arr
    for a in range(order.shape[0]):
        s = order[a]
        h = si[s, WHEAD]
        for q in range(si[s, WCNT]):
            out[i] = wts[h]
            i += 1
            h = wnext[h]
    return out_arr


def new_slot(i64[:, ::1] si, double[:, ::1] sf, i64[::1] meta, i64[::1] free, i64[::1] slot_of, i64 key):
    return c_new_slot(si, sf, meta, free, slot_of, key)


def window_append(i64[:, ::1] si, i64[::1] meta, double[::1] wts, i64[::1] wnext, i64 s, double t):
    c_window_append(si, meta, wts, wnext, s, t)
