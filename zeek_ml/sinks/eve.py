"""Suricata out: notices as eve.json ``alert`` events (gid 7447, a sid per family) for Suricata's consumers."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import ipaddress
import json
import math
import os
import sys
import zlib
from typing import IO, Any

import numpy as np
import pandas as pd

from zeek_ml.model.scorer import Verdicts, plain
from zeek_ml.sources.eve import LINK_HEADER_BYTES, SERVICE_NAMES

GID = 7447
"""zeek-ml's generator id in eve alerts (Suricata's own rules use gid 1)."""

SID_BASE = 7_447_000
"""zeek-ml's signature ids: 7,447,000 to 7,447,999 (outside the Snort/ET ranges and the local-use
range 1,000,000-1,999,999). ``SID_BASE`` is a flagged connection or incident without a family;
:data:`FAMILY_SIDS` lists the families' offsets; other family names hash into 900-999."""

FAMILY_SIDS: dict[str, tuple[int, str]] = {
    "": (0, "Potentially Bad Traffic"),
    "scan": (1, "Detection of a Network Scan"),
    "portscan": (1, "Detection of a Network Scan"),
    "bruteforce": (2, "Attempted Administrator Privilege Gain"),
    "dos": (3, "Attempted Denial of Service"),
    "ddos": (3, "Attempted Denial of Service"),
    "c2": (4, "A Network Trojan was detected"),
    "c&c": (4, "A Network Trojan was detected"),
    "botnet": (4, "A Network Trojan was detected"),
    "exploit": (5, "Attempted User Privilege Gain"),
    "exfiltration": (6, "Potential Corporate Privacy Violation"),
    "web_attack": (7, "Web Application Attack"),
    "malware": (8, "A Network Trojan was detected"),
}
"""Family -> (offset from :data:`SID_BASE`, Suricata classification category)."""

SEVERITY = {"high": 1, "medium": 2, "low": 3}
"""zeek-ml severity -> eve ``alert.severity`` (1 is the most severe, as in Suricata)."""


def family_signature(family: str | None) -> tuple[int, str, str]:
    """(signature_id, category, signature) for an attack family (None or "" for none)."""
    name = (family or "").strip()
    key = name.lower().replace("-", "_").replace(" ", "_")
    if key in FAMILY_SIDS:
        offset, category = FAMILY_SIDS[key]
    else:
        offset, category = 900 + zlib.crc32(key.encode()) % 100, "Potentially Bad Traffic"
    label = f" ({name})" if name else ""
    return SID_BASE + offset, category, f"ZEEK-ML Suspicious connection{label}"


def _eve_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def _eve_addr(addr: Any) -> Any:
    """IPv6 as Suricata writes it: in full (``fe80:0000:0000:0000:020c:29ff:fe62:e812``)."""
    if isinstance(addr, str) and ":" in addr:
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(addr).exploded
    return addr


def _eve_proto(proto: Any, addr: Any) -> str | None:
    if proto is None:
        return None
    p = str(proto).lower()
    if p == "icmp" and isinstance(addr, str) and ":" in addr:
        return "IPv6-ICMP"
    return {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}.get(p, str(proto).upper())


def _put(meta: dict[str, list[str]], key: str, value: Any) -> None:
    """``alert.metadata`` holds lists of strings, as Suricata writes a rule's metadata."""
    if value is None or value == "":
        return
    if isinstance(value, (list, tuple)):
        if value:
            meta[key] = [str(v) for v in value]
        return
    meta[key] = [f"{value:.6g}" if isinstance(value, float) else str(value)]


def alerts_from_notices(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Notice rows (as :mod:`zeek_ml.notices.notice` and :mod:`zeek_ml.notices.incidents` make them) -> eve alerts."""
    out = []
    cols = set(frame.columns)
    records = frame.to_dict("records")
    for row in records:
        get = lambda k, r=row: plain(r.get(k)) if k in cols else None  # noqa: E731
        ts = get("ts")
        family = get("zeek_ml.family") or ""
        sid, category, signature = family_signature(family)
        severity = get("zeek_ml.severity")
        meta: dict[str, list[str]] = {}
        put = functools.partial(_put, meta)
        put("zeek_ml_score", get("zeek_ml.score"))
        put("zeek_ml_threshold", get("zeek_ml.threshold"))
        put("zeek_ml_model", get("zeek_ml.model"))
        put("zeek_ml_model_version", get("zeek_ml.model_version"))
        put("zeek_ml_family", family)
        reasons = row.get("zeek_ml.reasons") if "zeek_ml.reasons" in cols else None
        if isinstance(reasons, (list, tuple, np.ndarray)):
            put("zeek_ml_reasons", list(reasons))
        put("zeek_ml_severity", severity)
        put("zeek_ml_direction", get("zeek_ml.direction"))
        put("zeek_ml_incident", get("zeek_ml.incident"))
        put("zeek_ml_connections", get("n"))
        for key in ("first_ts", "last_ts"):
            v = get(f"zeek_ml.{key}")
            if v is not None:
                put(f"zeek_ml_{key}", _eve_time(float(v)))
        for key in ("srcs", "dsts", "ports"):
            put(f"zeek_ml_{key}", get(f"zeek_ml.{key}"))
        put("zeek_ml_msg", get("msg"))
        uid = get("uid")
        put("zeek_uid", uid)
        event: dict[str, Any] = {"timestamp": _eve_time(float(ts)) if ts is not None else None}
        if isinstance(uid, str) and uid.isdigit():
            event["flow_id"] = int(uid)
        event["event_type"] = "alert"
        src, dst = _eve_addr(get("id.orig_h")), _eve_addr(get("id.resp_h"))
        sport, dport = get("id.orig_p"), get("id.resp_p")
        proto = _eve_proto(get("proto"), src)
        event["src_ip"] = src
        if sport is not None and proto != "ICMP" and proto != "IPv6-ICMP":
            event["src_port"] = int(sport)
        event["dest_ip"] = dst
        if dport is not None and proto != "ICMP" and proto != "IPv6-ICMP":
            event["dest_port"] = int(dport)
        if proto in ("ICMP", "IPv6-ICMP"):
            if sport is not None:
                event["icmp_type"] = int(sport)
            if dport is not None:
                event["icmp_code"] = int(dport)
        event["proto"] = proto
        rep = row.get("_rep") if "_rep" in cols else None
        if isinstance(rep, dict):
            event.update(_flow_of(rep))
        event["alert"] = {
            "action": "allowed",
            "gid": GID,
            "signature_id": sid,
            "rev": 1,
            "signature": signature,
            "category": category,
            "severity": SEVERITY.get(str(severity), 2),
            "metadata": meta,
        }
        out.append({k: v for k, v in event.items() if v is not None})
    return out


APP_PROTOS: dict[str, str] = {zeek: suricata for suricata, zeek in SERVICE_NAMES.items() if zeek} | {
    "ssl": "tls",
    "http": "http",
    "ftp-data": "ftp-data",
}
"""Zeek ``service`` -> Suricata ``app_proto`` where the names differ (the other way of :data:`SERVICE_NAMES`)."""


def _flow_of(rep: dict[str, Any]) -> dict[str, Any]:
    """``flow``, ``app_proto`` and ``community_id`` of an alert, from the connection its notice names.

    Packets are the connection's; bytes are Suricata's own counters when it came from eve.json,
    else Zeek's IP bytes plus an Ethernet header per packet (what Suricata would have counted on
    an untagged link); ``start``/``end`` from ``ts`` and ``duration``. Only what is known is written.
    """
    out: dict[str, Any] = {}
    flow: dict[str, Any] = {}
    for side, zside in (("toserver", "orig"), ("toclient", "resp")):
        pkts = rep.get(f"{zside}_pkts")
        if pkts is not None:
            flow[f"pkts_{side}"] = int(pkts)
        counted = rep.get(f"suricata.bytes_{side}")
        ip_bytes = rep.get(f"{zside}_ip_bytes")
        if counted is not None:
            flow[f"bytes_{side}"] = int(counted)
        elif ip_bytes is not None:
            flow[f"bytes_{side}"] = int(ip_bytes) + LINK_HEADER_BYTES * int(pkts or 0)
    ts = rep.get("ts")
    if ts is not None and math.isfinite(float(ts)):
        flow["start"] = _eve_time(float(ts))
        duration = rep.get("duration")
        if duration is not None and math.isfinite(float(duration)):
            flow["end"] = _eve_time(float(ts) + float(duration))
    service = rep.get("service")
    if isinstance(service, str) and service:
        first = service.split(",")[0].strip().lower()
        out["app_proto"] = APP_PROTOS.get(first, first)
    if isinstance(rep.get("community_id"), str) and rep["community_id"]:
        out["community_id"] = rep["community_id"]
    if flow:
        out["flow"] = flow
    return out


class EveAlertWriter:
    """Writes notice rows as eve alert lines; the writer a notice sink renders through.

    ``target``: a path (truncated), ``-`` (stdout) or an open binary file (kept open: the live
    watcher's append-only output). Has the part of ``ZeekLogWriter``'s surface the notice sinks use.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[bytes]):
        self.rows = 0
        if isinstance(target, (str, os.PathLike)):
            if os.fspath(target) == "-":
                self._out: IO[bytes] | None = sys.stdout.buffer
                self._own = False
            else:
                self._out = open(target, "wb")  # noqa: SIM115
                self._own = True
        else:
            self._out, self._own = target, False

    def render(self, frame: pd.DataFrame) -> bytes:
        """The rows as eve lines, each ending in a newline."""
        lines = [json.dumps(a, separators=(",", ":"), ensure_ascii=False) for a in alerts_from_notices(frame)]
        return "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")

    def header_bytes(self) -> bytes:
        """eve.json has no header."""
        return b""

    def write(self, frame: pd.DataFrame) -> int:
        if not len(frame) or self._out is None:
            return 0
        self._out.write(self.render(frame))
        self._out.flush()
        self.rows += len(frame)
        return len(frame)

    def close(self, close_time: float | None = None) -> None:
        if self._out is None:
            return
        self._out.flush()
        if self._own:
            self._out.close()
        self._out = None


def eve_writer(target: str | os.PathLike[str] | IO[bytes]) -> Any:
    """A writer factory (:data:`zeek_ml.formats.writer.WriterFactory`) that writes eve alerts to ``target``."""

    def make(path: str, fields: Any) -> EveAlertWriter:
        return EveAlertWriter(target)

    return make


class EveAlertSink:
    """Verdicts -> eve alert events (``--format eve``): a Sink.

    By default one alert per incident (the notice aggregation: a scanner is one alert per
    suppression interval, with its connection count in the metadata); ``aggregate=False``: one
    per flagged connection. ``suppress_for``, ``local_nets``, ``min_severity`` and ``profile``
    as in :func:`zeek_ml.sinks.logs.build_notice_sink`. ``state()``/``restore()`` carry open incidents
    through the watcher's checkpoint.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[bytes], **notice_options: Any):
        from zeek_ml.sinks.logs import build_notice_sink

        self.inner: Any = build_notice_sink(eve_writer(target), **notice_options)

    @property
    def notices(self) -> int:
        """Alerts written so far."""
        return int(getattr(self.inner, "notices", 0))

    def write(self, verdicts: Verdicts) -> int:
        return int(self.inner.write(verdicts))

    def flush(self) -> None:
        self.inner.flush()

    def state(self) -> dict[str, Any]:
        return self.inner.state() if hasattr(self.inner, "state") else {}

    def restore(self, state: dict[str, Any]) -> None:
        if hasattr(self.inner, "restore") and state:
            self.inner.restore(state)

    def close(self, final: bool = True) -> None:
        try:
            self.inner.close(final=final)
        except TypeError:
            self.inner.close()
