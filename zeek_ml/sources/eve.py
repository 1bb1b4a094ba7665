"""Suricata in: eve.json flow events (lines or a JSON array) read as Zeek conn rows."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.formats.schema import (
    CONN_FIELDS,
    MAX_VALUE_CHARS,
    PORT_MAX,
    TIME_MAX,
    TIME_MIN,
    ColumnTypes,
    pandas_dtype,
)
from zeek_ml.sources.reading import cap_json_values, decode_json_line, lone_surrogate, show, valid_addr

LINK_HEADER_BYTES = 14
"""Bytes of link-layer header Suricata counts in ``flow.bytes_*`` per packet (Ethernet II).

Suricata's flow byte counters add up whole captured frames (``GET_PKT_LEN``), link header
included: a bare TCP SYN is 54 bytes in eve.json, 40 in Zeek's ``orig_ip_bytes``. The mapping
subtracts this many bytes per packet (plus 4 per VLAN tag the event lists)."""

PROTO_NUMBERS: dict[str, int] = {
    "ICMP": 1,
    "IGMP": 2,
    "TCP": 6,
    "UDP": 17,
    "GRE": 47,
    "ESP": 50,
    "AH": 51,
    "IPV6-ICMP": 58,
    "ICMPV6": 58,
    "SCTP": 132,
}
"""Suricata's ``proto`` names -> IP protocol numbers (``ip_proto``, as Zeek 7.1+ logs it)."""

SERVICE_NAMES: dict[str, str] = {
    "tls": "ssl",
    "krb5": "krb",
    "dcerpc": "dce_rpc",
    "http2": "http",
    "ikev2": "ike",
    "ftp-data": "ftp-data",
    "ftp_data": "ftp-data",
    "failed": "",
}
"""Suricata ``app_proto`` -> Zeek ``service`` where the names differ (``failed``: no parser matched,
Zeek's unset)."""

SURICATA_STATES = ("new", "established", "closed", "bypassed", "local_bypassed", "capture_bypassed")
"""``flow.state`` values Suricata writes (bypassed flows: ``state: bypassed``, ``bypass: local|capture``)."""

# TCP flag bits as in ``tcp.tcp_flags_ts`` / ``tcp_flags_tc`` (hex, cumulative over the flow).
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

EXTRA_EVE_FIELDS: tuple[tuple[str, str], ...] = (
    ("ip_proto", "count"),
    ("community_id", "string"),
    ("suricata.flow_state", "string"),
    ("suricata.flow_reason", "string"),
    ("suricata.tcp_state", "string"),
    ("suricata.tcp_flags_ts", "string"),
    ("suricata.tcp_flags_tc", "string"),
    ("suricata.bytes_toserver", "count"),
    ("suricata.bytes_toclient", "count"),
    ("suricata.alerted", "bool"),
    ("suricata.bypassed", "bool"),
    ("suricata.age", "count"),
)
"""Columns after conn.log's in a batch read from eve.json: what eve says that conn.log cannot."""

_FLOW_EVENT = re.compile(rb'"event_type"\s*:\s*"flow"')

_BOM = b"\xef\xbb\xbf"

_EVENT_TYPE = re.compile(rb'"event_type"\s*:\s*"([^"]{1,64})"')

_EVE_KEYS = ("event_type", "flow_id", "src_ip")


def is_eve_object(obj: object) -> bool:
    """True for a decoded JSON object that looks like a Suricata eve event."""
    return isinstance(obj, dict) and "event_type" in obj and ("timestamp" in obj or "src_ip" in obj)


def looks_like_eve(first_bytes: bytes) -> bool:
    """True when the start of a file is Suricata eve.json (objects, or a JSON array of them).

    Decides on the first complete line when there is one, else on the keys in the bytes given.
    """
    head = first_bytes.lstrip(b" \t\r\n\xef\xbb\xbf")
    if head.startswith(b"["):
        return b'"event_type"' in head[:65536] or head.rstrip() == b"[]"
    if not head.startswith(b"{"):
        return False
    line = head.split(b"\n", 1)[0]
    obj, _, reason = decode_json_line(line)
    if reason is None:
        return is_eve_object(obj)
    return sum(f'"{k}"'.encode() in line for k in _EVE_KEYS) >= 2


def _get(events: Sequence[dict[str, Any]], *keys: str) -> list[Any]:
    out = []
    for e in events:
        v: Any = e
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        out.append(v)
    return out


EVE_COUNT_MAX = 2**53
"""Largest eve counter mapped: the mapping does its arithmetic in float64, exact below 2^53
(8 PiB, or 9e15 packets); a larger ``bytes_*``/``pkts_*`` makes the line a reject."""


def _int_array(values: list[Any]) -> np.ndarray:
    """Non-negative integers below :data:`EVE_COUNT_MAX` as float64 (NaN where absent or not one)."""
    return np.array(
        [float(v) if type(v) is int and 0 <= v < EVE_COUNT_MAX else np.nan for v in values],
        dtype=float,
    )


def _epoch(values: list[Any]) -> np.ndarray:
    """eve timestamps (``2024-01-01T10:00:00.123456+0000``; no offset = UTC) -> epoch seconds (NaN where none)."""
    texts = [v if isinstance(v, str) else None for v in values]
    try:
        parsed = pd.to_datetime(pd.Series(texts, dtype=object), utc=True, format="ISO8601", errors="coerce")
    except (ValueError, OverflowError, TypeError):  # one odd text spoils the vectorised parse: one by one
        parsed = pd.Series([_one_epoch(t) for t in texts], dtype="datetime64[ns, UTC]")
    secs = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return secs.to_numpy(dtype=float, na_value=np.nan)


def _one_epoch(text: str | None) -> Any:
    if text is None:
        return pd.NaT
    try:
        return pd.to_datetime(text, utc=True, format="ISO8601")
    except (ValueError, OverflowError, TypeError):
        return pd.NaT


_HEX_FLAGS = re.compile(r"[0-9a-fA-F]{1,2}")


def _hex_flags(values: list[Any]) -> np.ndarray:
    """``"1b"`` -> 0x1b; -1 where absent or not one or two hex digits (TCP flags are a byte)."""
    out = np.full(len(values), -1, dtype=np.int64)
    for i, v in enumerate(values):
        if isinstance(v, str) and _HEX_FLAGS.fullmatch(v):
            out[i] = int(v, 16)
    return out


def _proto_number(name: str) -> int:
    """Suricata's ``proto`` (``TCP``, ``IPV6-ICMP``, or a number for others) -> IP protocol number, -1 if none."""
    if name in PROTO_NUMBERS:
        return PROTO_NUMBERS[name]
    if name.isascii() and name.isdigit() and len(name) <= 3 and int(name) <= 255:
        return int(name)
    return -1


def conn_state_and_history(
    proto: np.ndarray,
    flags_ts: np.ndarray,
    flags_tc: np.ndarray,
    pkts_ts: np.ndarray,
    pkts_tc: np.ndarray,
    data_ts: np.ndarray,
    data_tc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The closest Zeek ``conn_state`` and a ``history``-like string for each flow.

    ``proto``: Zeek proto (``tcp``/``udp``/``icmp``/...); ``flags_*``: cumulative TCP flags per
    direction (-1 where eve has no ``tcp`` object); ``pkts_*``: packets per direction; ``data_*``:
    whether that direction carried payload. eve keeps the union of flags per direction, not their
    order, so history letters come in Zeek's usual order (``ShADadFfRr``) and repeats
    (``T``, ``W``, counts) are never written. A TCP flow without flags gets neither (null).
    """
    n = len(proto)
    state = np.full(n, None, dtype=object)
    history = np.full(n, None, dtype=object)
    tcp = (proto == "tcp") & (flags_ts >= 0)
    udp = proto == "udp"
    icmp = proto == "icmp"
    has_tc = pkts_tc > 0
    # UDP and other non-TCP transports as Zeek writes them: both ways SF, one way S0; ICMP OTH.
    other = ~tcp & ~icmp & (proto != "tcp")
    state[other] = np.where(has_tc[other], "SF", "S0")
    state[icmp] = "OTH"
    udp_hist = np.where(data_ts, "D", "") + np.where(has_tc & data_tc, "d", "")
    history[udp] = udp_hist[udp]
    history[udp & (udp_hist == "")] = None
    if not tcp.any():
        return state, history
    ts = np.where(tcp, flags_ts, 0)
    tc = np.where(tcp & has_tc, np.maximum(flags_tc, 0), 0)
    o_s, r_s = (ts & SYN) > 0, (tc & SYN) > 0
    o_f, r_f = (ts & FIN) > 0, (tc & FIN) > 0
    o_r, r_r = (ts & RST) > 0, (tc & RST) > 0
    # An ACK that only rides on a RST (a refused SYN: RST|ACK) is no ``a`` in Zeek's history.
    o_a = ((ts & ACK) > 0) & ((ts & ~(ACK | RST)) > 0)
    r_a = ((tc & ACK) > 0) & ((tc & ~(ACK | RST)) > 0)
    o_d = data_ts & ((ts & PSH) > 0)
    r_d = data_tc & ((tc & PSH) > 0)
    conditions = [
        o_s & ~r_s & r_r,  # SYN answered by RST: rejected
        o_s & ~r_s & o_r,  # SYN then RST from the originator, no SYN-ACK
        o_s & ~r_s & o_f,  # SYN then FIN, no SYN-ACK
        o_s & ~r_s & ~has_tc,  # SYN, no reply
        o_s & r_s & o_r,  # established, originator aborted
        o_s & r_s & r_r,  # established, responder aborted
        o_s & r_s & o_f & r_f,  # established and closed both ways
        o_s & r_s & o_f,  # close attempt by the originator only
        o_s & r_s & r_f,  # close attempt by the responder only
        o_s & r_s,  # established, not closed
        ~o_s & r_s & r_r,  # SYN-ACK then RST, originator's SYN unseen
        ~o_s & r_s & r_f,  # SYN-ACK then FIN, originator's SYN unseen
    ]
    choices = ["REJ", "RSTOS0", "SH", "S0", "RSTO", "RSTR", "SF", "S2", "S3", "S1", "RSTRH", "SHR"]
    tcp_state = np.select(conditions, choices, default="OTH")
    r_more = r_a & (~r_s | (pkts_tc > 1))  # the responder ACKed beyond its SYN-ACK
    letters = [
        (o_s, "S"), (r_s & r_a, "h"), (r_s & ~r_a, "s"), (o_a, "A"), (o_d, "D"), (r_more, "a"), (r_d, "d"),
        (o_f, "F"), (r_f, "f"), (o_r, "R"), (r_r, "r"),
    ]  # fmt: skip
    hist = np.full(n, "", dtype=object)
    for mask, letter in letters:
        hist = np.where(mask, hist + letter, hist)
    state[tcp] = tcp_state[tcp]
    history[tcp] = hist[tcp]
    history[tcp & (hist == "")] = None
    return state, history


def _compact_addrs(values: list[Any]) -> list[Any]:
    """eve writes IPv6 in full (``fe80:0000:...:e812``); Zeek compressed (``fe80::...:e812``)."""
    cache: dict[str, str] = {}
    out: list[Any] = []
    for v in values:
        if isinstance(v, str) and ":" in v:
            if v not in cache:
                try:
                    cache[v] = str(ipaddress.ip_address(v))
                except ValueError:
                    cache[v] = v
            v = cache[v]
        out.append(v)
    return out


def flows_to_conns(
    events: Sequence[dict[str, Any]], link_header_bytes: int = LINK_HEADER_BYTES, local_nets: Any = None
) -> pd.DataFrame:
    """eve ``flow`` events -> a batch in the conn record schema (conn.log's columns first, with
    their batch dtypes, then :data:`EXTRA_EVE_FIELDS`). See README.md, "Suricata", for the mapping.

    ``local_nets`` (a :class:`~zeek_ml.notices.site.LocalNets`, or CIDRs as text or a list) sets
    ``local_orig``/``local_resp`` as Zeek does from ``Site::local_nets``; without, they stay unset.
    """
    n = len(events)
    flow_start = _get(events, "flow", "start")
    stamp = _get(events, "timestamp")
    start = _epoch([s if s is not None else t for s, t in zip(flow_start, stamp)])
    end = _epoch(_get(events, "flow", "end"))
    duration = np.where(np.isnan(end) | np.isnan(start), np.nan, np.maximum(end - start, 0.0))

    proto_raw = [str(p).upper() if p is not None else "" for p in _get(events, "proto")]
    ip_proto = np.array([_proto_number(p) for p in proto_raw], dtype=np.int64)
    zeek_proto = np.select(
        [ip_proto == 6, ip_proto == 17, (ip_proto == 1) | (ip_proto == 58)],
        ["tcp", "udp", "icmp"],
        default="unknown_transport",
    ).astype(object)

    src = _compact_addrs(_get(events, "src_ip"))
    dst = _compact_addrs(_get(events, "dest_ip"))
    v6 = np.array([isinstance(a, str) and ":" in a for a in src], dtype=bool)
    sport = _int_array(_get(events, "src_port"))
    dport = _int_array(_get(events, "dest_port"))
    # Zeek puts ICMP type and code in the ports.
    icmp = zeek_proto == "icmp"
    if icmp.any():
        itype = _int_array(_get(events, "icmp_type"))
        icode = _int_array(_get(events, "icmp_code"))
        sport = np.where(icmp & np.isnan(sport), itype, sport)
        dport = np.where(icmp & np.isnan(dport), icode, dport)

    bypassed_obj = _get(events, "flow", "bypassed")
    pkts_ts = _int_array(_get(events, "flow", "pkts_toserver"))
    pkts_tc = _int_array(_get(events, "flow", "pkts_toclient"))
    bytes_ts = _int_array(_get(events, "flow", "bytes_toserver"))
    bytes_tc = _int_array(_get(events, "flow", "bytes_toclient"))
    if any(isinstance(b, dict) for b in bypassed_obj):
        # Locally bypassed flows count what passed after the bypass apart.
        for arr, key in ((pkts_ts, "pkts_toserver"), (pkts_tc, "pkts_toclient")):
            arr += np.nan_to_num(_int_array([b.get(key) if isinstance(b, dict) else 0 for b in bypassed_obj]))
        for arr, key in ((bytes_ts, "bytes_toserver"), (bytes_tc, "bytes_toclient")):
            arr += np.nan_to_num(_int_array([b.get(key) if isinstance(b, dict) else 0 for b in bypassed_obj]))
    vlan_tags = np.array([len(v) if isinstance(v, list) else 0 for v in _get(events, "vlan")], dtype=float)
    link = link_header_bytes + 4.0 * vlan_tags
    ip_ts = np.maximum(bytes_ts - link * pkts_ts, 0.0)
    ip_tc = np.maximum(bytes_tc - link * pkts_tc, 0.0)
    # Payload estimate: IP bytes less the minimal IP and transport headers per packet.
    l3 = np.where(v6, 40.0, 20.0)
    l4 = np.select([zeek_proto == "tcp", zeek_proto == "udp", zeek_proto == "icmp"], [20.0, 8.0, 8.0], 0.0)
    pay_ts = np.maximum(ip_ts - pkts_ts * (l3 + l4), 0.0)
    pay_tc = np.maximum(ip_tc - pkts_tc * (l3 + l4), 0.0)

    tcp_obj = _get(events, "tcp")
    flags_ts = _hex_flags([t.get("tcp_flags_ts") if isinstance(t, dict) else None for t in tcp_obj])
    flags_tc = _hex_flags([t.get("tcp_flags_tc") if isinstance(t, dict) else None for t in tcp_obj])
    # TCP options look like payload in byte counts: only a direction that pushed data carries any.
    is_tcp = zeek_proto == "tcp"
    pay_ts = np.where(is_tcp & ((np.maximum(flags_ts, 0) & PSH) == 0), 0.0, pay_ts)
    pay_tc = np.where(is_tcp & ((np.maximum(flags_tc, 0) & PSH) == 0), 0.0, pay_tc)
    pkts_ts0 = np.nan_to_num(pkts_ts)
    pkts_tc0 = np.nan_to_num(pkts_tc)
    state, history = conn_state_and_history(
        zeek_proto, flags_ts, flags_tc, pkts_ts0, pkts_tc0, np.nan_to_num(pay_ts) > 0, np.nan_to_num(pay_tc) > 0
    )

    service = []
    for a in _get(events, "app_proto"):
        name = SERVICE_NAMES.get(str(a).lower(), str(a).lower()) if a is not None else ""
        service.append(name or None)

    flow_state = _get(events, "flow", "state")
    bypass = _get(events, "flow", "bypass")
    bypassed = np.array(
        [(isinstance(s, str) and "bypass" in s) or isinstance(b, str) for s, b in zip(flow_state, bypass)], dtype=bool
    )

    def counts(values: np.ndarray) -> pd.Series:
        return pd.Series(pd.array(np.where(np.isnan(values), None, values).tolist(), dtype="Int64"))

    def strings(values: Sequence[Any]) -> pd.Series:
        return pd.Series([None if v is None else str(v) for v in values], dtype=pandas_dtype("string"))

    local = {"orig": pd.Series([pd.NA] * n, dtype="boolean"), "resp": pd.Series([pd.NA] * n, dtype="boolean")}
    if local_nets is not None:
        from zeek_ml.sources.local_nets import LocalNets

        nets = local_nets if isinstance(local_nets, LocalNets) else LocalNets.parse(local_nets)
        local["orig"] = pd.Series(nets.classify(pd.Series(src, dtype=object))[0], dtype="boolean")
        local["resp"] = pd.Series(nets.classify(pd.Series(dst, dtype=object))[0], dtype="boolean")

    columns: dict[str, pd.Series] = {
        "ts": pd.Series(start, dtype=float),
        "uid": strings(_get(events, "flow_id")),
        "id.orig_h": strings(src),
        "id.orig_p": counts(sport),
        "id.resp_h": strings(dst),
        "id.resp_p": counts(dport),
        "proto": strings(zeek_proto),
        "service": strings(service),
        "duration": pd.Series(duration, dtype=float),
        "orig_bytes": counts(pay_ts),
        "resp_bytes": counts(pay_tc),
        "conn_state": strings(state),
        "local_orig": local["orig"],
        "local_resp": local["resp"],
        "missed_bytes": pd.Series([pd.NA] * n, dtype=pandas_dtype("count")),
        "history": strings(history),
        "orig_pkts": counts(pkts_ts),
        "orig_ip_bytes": counts(ip_ts),
        "resp_pkts": counts(pkts_tc),
        "resp_ip_bytes": counts(ip_tc),
        "tunnel_parents": pd.Series([None] * n, dtype=object),
        "ip_proto": counts(np.where(ip_proto < 0, np.nan, ip_proto.astype(float))),
        "community_id": strings(_get(events, "community_id")),
        "suricata.flow_state": strings(flow_state),
        "suricata.flow_reason": strings(_get(events, "flow", "reason")),
        "suricata.tcp_state": strings([t.get("state") if isinstance(t, dict) else None for t in tcp_obj]),
        "suricata.tcp_flags_ts": strings([t.get("tcp_flags_ts") if isinstance(t, dict) else None for t in tcp_obj]),
        "suricata.tcp_flags_tc": strings([t.get("tcp_flags_tc") if isinstance(t, dict) else None for t in tcp_obj]),
        "suricata.bytes_toserver": counts(bytes_ts),
        "suricata.bytes_toclient": counts(bytes_tc),
        "suricata.alerted": pd.Series(
            [v if isinstance(v, bool) else None for v in _get(events, "flow", "alerted")], dtype="boolean"
        ),
        "suricata.bypassed": pd.Series(bypassed, dtype="boolean"),
        "suricata.age": counts(_int_array(_get(events, "flow", "age"))),
    }
    frame = pd.DataFrame(columns)
    frame.attrs = {"path": "conn", "types": ColumnTypes(dict(CONN_FIELDS) | dict(EXTRA_EVE_FIELDS))}
    return frame


class EveParser:
    """Suricata eve.json, one event a line: flow events -> conn batches, other events counted.

    Same interface as the reader's Zeek parsers: ``feed(buf, first_line, final)`` takes complete
    lines and yields DataFrames. Only lines whose ``event_type`` is ``flow`` are decoded; a line
    that is not a JSON object at all (cut short, garbage) is rejected with file and line, like a
    malformed Zeek line. ``ignored`` counts the other events by type.
    """

    def __init__(self, path: str, ctx: Any, link_header_bytes: int | None = None):
        self.path = path
        self.ctx = ctx
        self.link_header_bytes = int(
            link_header_bytes if link_header_bytes is not None else getattr(ctx, "link_header_bytes", LINK_HEADER_BYTES)
        )
        self.ignored: Counter[str] = Counter()

    def feed(self, buf: bytes, first_line: int, final: bool) -> Iterator[pd.DataFrame]:
        pieces = buf.split(b"\n")
        if pieces and pieces[-1] == b"":
            pieces.pop()
        events: list[dict[str, Any]] = []
        where: list[tuple[int, bytes]] = []
        last = len(pieces) - 1
        for i, raw in enumerate(pieces):
            line = raw.strip(b" \t\r\0")  # NUL padding: what an unclean shutdown leaves before a line
            if line.startswith(_BOM):
                line = line[len(_BOM) :].lstrip(b" \t\r\0")
            if not line:
                self.ctx.stats.blank += 1
                continue
            if _FLOW_EVENT.search(line) is None:
                if line.startswith(b"{") and line.endswith(b"}"):
                    m = _EVENT_TYPE.search(line)
                    self.ignored[m.group(1).decode("ascii", "replace") if m else "(none)"] += 1
                    _count_ignored(self.ctx)
                    continue
                self._reject(first_line + i, None, "invalid JSON: not a JSON object", raw, final and i == last)
                continue
            obj, field, reason = decode_json_line(line)
            if reason is not None or obj is None:
                self._reject(first_line + i, field, reason or "empty line", raw, final and i == last and not field)
                continue
            if obj.get("event_type") != "flow":  # "flow" was in a nested object
                self.ignored[str(obj.get("event_type"))[:64]] += 1
                _count_ignored(self.ctx)
                continue
            if len(line) > MAX_VALUE_CHARS:
                cap_json_values(obj, self.ctx.stats)
            problem = _flow_problem(obj)
            if problem is not None:
                self.ctx.reject(self.path, first_line + i, problem[0], problem[1], raw)
                continue
            events.append(obj)
            where.append((first_line + i, raw))
        if events:
            frame = self._frame(events, where)
            if frame is not None:
                yield frame

    def add_events(
        self, objs: Sequence[Any], first_line: int, lines: Sequence[int] | None = None
    ) -> Iterator[pd.DataFrame]:
        """Decoded events (a JSON array's elements, starting on ``lines``): keep the flows, count the rest."""
        events = []
        where: list[tuple[int, bytes]] = []
        for n, obj in enumerate(objs):
            line = lines[n] if lines is not None else first_line
            if not isinstance(obj, dict):
                self.ctx.reject(self.path, line, None, "array element is not a JSON object", _raw(obj)[:200])
                continue
            kind = obj.get("event_type")
            if kind != "flow":
                self.ignored[str(kind)[:64] if kind is not None else "(none)"] += 1
                _count_ignored(self.ctx)
                continue
            cap_json_values(obj, self.ctx.stats)
            problem = _flow_problem(obj)
            if problem is not None:
                self.ctx.reject(self.path, line, problem[0], problem[1], _raw(obj))
                continue
            events.append(obj)
            where.append((line, b""))
        if events:
            frame = self._frame(events, where)
            if frame is not None:
                yield frame

    def _reject(self, line: int, field: str | None, reason: str, raw: bytes, last: bool) -> None:
        if last:
            reason += " (last line of the file: cut short?)"
        self.ctx.reject(self.path, line, field, reason, raw)

    def _frame(self, events: list[dict[str, Any]], where: list[tuple[int, bytes]]) -> pd.DataFrame | None:
        starts = [e["flow"].get("start", e.get("timestamp")) for e in events]
        secs = _epoch(starts)
        bad = ~((secs >= TIME_MIN) & (secs < TIME_MAX))  # NaN: a time that does not parse
        if bad.any():  # the line is malformed, the others go on
            for i in np.flatnonzero(bad):
                line, raw = where[i]
                self.ctx.reject(self.path, line, "flow.start", f"invalid time {show(starts[i])}", raw)
            events = [e for e, b in zip(events, bad) if not b]
            if not events:
                return None
        frame = flows_to_conns(events, self.link_header_bytes, getattr(self.ctx, "local_nets", None))
        frame.attrs["source"] = self.path
        self.ctx.stats.records += len(frame)
        return frame


class EveArrayParser(EveParser):
    """A JSON array of eve events (``suricata-sample-data``): read whole at the end, then mapped."""

    def __init__(self, path: str, ctx: Any, link_header_bytes: int | None = None):
        super().__init__(path, ctx, link_header_bytes)
        self._parts: list[bytes] = []
        self._first = 1

    def feed(self, buf: bytes, first_line: int, final: bool) -> Iterator[pd.DataFrame]:
        if not self._parts:
            self._first = first_line
        self._parts.append(buf)
        if final:
            yield from self.finish(first_line)

    def finish(self, last_line: int = 0) -> Iterator[pd.DataFrame]:
        """Decode the whole array fed so far and map its flow events (the reader calls this at the end).

        Elements are decoded one at a time: a damaged element is rejected (with the line it starts
        on) and decoding goes on at the next element that starts a line; missing commas are
        forgiven; an array cut short keeps every whole element before the cut.
        """
        data = b"".join(self._parts)
        self._parts = []
        if not data.strip(b" \t\r\n\0"):
            return
        text = data.decode("utf-8", "zeek_ml.json_bytes")
        objs: list[Any] = []
        lines: list[int] = []
        counted, line = 0, self._first

        def line_at(pos: int) -> int:
            nonlocal counted, line
            line += text.count("\n", counted, pos)
            counted = pos
            return line

        pos = _skip(text, 0, " \t\r\n\0\ufeff")
        if not text.startswith("[", pos):
            self.ctx.reject(self.path, self._first, None, "not a JSON array of eve events", data[:200])
            return
        pos += 1
        decoder = json.JSONDecoder(strict=False)
        damaged: set[int] = set()
        while True:
            pos = _skip(text, pos, " \t\r\n\0,")
            if pos >= len(text):
                self.ctx.reject(self.path, line_at(pos), None, "JSON array cut short: no closing ]", b"")
                break
            if text[pos] == "]":
                self._after_end(text, pos + 1, line_at(pos))
                break
            start_line = line_at(pos)
            try:
                obj, end = decoder.raw_decode(text, pos)
                problem = None
                if "\\u" in text[pos:end] and lone_surrogate(obj) is not None:
                    problem = "lone surrogate (\\ud800-\\udfff escape): not valid Unicode"
            except RecursionError:
                end, problem = pos, "invalid JSON array element: nested too deeply"
            except ValueError as e:
                end, problem = pos, f"invalid JSON array element: {e}"
            if problem is not None:
                nxt = _next_element(text, end if end > pos else pos + 1)
                raw = text[pos : nxt if nxt > 0 else pos + 200][:200].encode("utf-8", "backslashreplace")
                if start_line not in damaged:  # one reject a line, whatever else on it failed
                    damaged.add(start_line)
                    self.ctx.reject(self.path, start_line, None, problem, raw)
                if nxt < 0:
                    break
                pos = nxt
                continue
            objs.append(obj)
            lines.append(start_line)
            pos = end
        if damaged:  # what decoded on a damaged line but is no event is debris of that line, already rejected
            kept = [k for k, (o, n) in enumerate(zip(objs, lines)) if isinstance(o, dict) or n not in damaged]
            objs, lines = [objs[k] for k in kept], [lines[k] for k in kept]
        yield from self.add_events(objs, self._first, lines)

    def _after_end(self, text: str, pos: int, line: int) -> None:
        """Reject each non-blank line after the array's closing ``]`` (nothing there is read)."""
        for i, piece in enumerate(text[pos:].split("\n")):
            if piece.strip(" \t\r\0"):
                raw = piece[:200].encode("utf-8", "backslashreplace")
                self.ctx.reject(self.path, line + i, None, "data after the end of the JSON array", raw)


_NEXT_ELEMENT = re.compile(r"\n[ \t]*\{|,\s*\{")


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _next_element(text: str, pos: int) -> int:
    """Where the next array element starts after ``pos`` (a ``{`` that starts a line, or follows a comma)."""
    m = _NEXT_ELEMENT.search(text, pos)
    return -1 if m is None else m.end() - 1


def _count_ignored(ctx: Any) -> None:
    stats = ctx.stats
    stats.ignored_events = getattr(stats, "ignored_events", 0) + 1


def _raw(obj: Any) -> bytes:
    """A decoded event as JSON text, for the reject file."""
    return json.dumps(obj, ensure_ascii=True, default=str).encode()


def _flow_problem(obj: Any) -> tuple[str | None, str] | None:
    """Why a decoded flow event cannot be mapped (field, reason), or None.

    Checked: the ``flow`` object; its packet and byte counters (integers, 0 to 2^53); ports
    (0-65535) and ICMP type/code (0-255); addresses (strings holding an IPv4 or IPv6 address);
    ``proto`` (a name or number); the times (text).
    """
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    flow = obj.get("flow")
    if not isinstance(flow, dict):
        return "flow", "flow event without a flow object"
    for key in ("pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient"):
        v = flow.get(key)
        if v is not None and not (type(v) is int and 0 <= v < EVE_COUNT_MAX):
            return f"flow.{key}", f"invalid count {show(v)}"
    for key, top in (("src_port", PORT_MAX), ("dest_port", PORT_MAX), ("icmp_type", 255), ("icmp_code", 255)):
        v = obj.get(key)
        if v is not None and not (type(v) is int and 0 <= v <= top):
            return key, f"invalid {'port' if top == PORT_MAX else key.replace('_', ' ')} {show(v)}"
    for key in ("src_ip", "dest_ip"):
        v = obj.get(key)
        if v is not None and not (type(v) is str and valid_addr(v)):
            return key, f"invalid address {show(v)}"
    proto = obj.get("proto")
    if proto is not None and type(proto) not in (str, int):
        return "proto", f"invalid protocol {show(proto)}"
    start = flow.get("start", obj.get("timestamp"))
    if not isinstance(start, str):
        return "flow.start", f"invalid time {show(start)}"
    end = flow.get("end")
    if end is not None and not isinstance(end, str):
        return "flow.end", f"invalid time {show(end)}"
    return None
