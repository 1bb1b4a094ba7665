"""Zeek events out: verdicts encoded as ``ZeekML::verdict`` events, each Broker value typed as the
Zeek package declares it (:mod:`zeek_ml.formats.records`)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.formats.records import CONN_FIELDS, VERDICT_FIELDS, RecordField
from zeek_ml.sources.broker import UTC

UNIQUE_FIELDS = frozenset({"ts", "uid", "msg", "sub", "incident", "first_ts", "last_ts"})
"""``ZeekML::Verdict`` fields whose values seldom repeat; the others' Broker values are cached."""

CACHE_SIZE = 4096
"""Most cached values per field (the cache starts over beyond)."""


class VerdictEncoder:
    """Verdict rows and acknowledgments as raw Broker events, ready for ``publish_batch``."""

    def __init__(self, broker: ModuleType):
        raw = broker._broker
        self._raw = raw
        self._Data = raw.Data
        P = raw.Port.Protocol
        self._protos = {"tcp": P.TCP, "udp": P.UDP, "icmp": P.ICMP}
        self._unknown = P.Unknown
        self._event = raw.zeek.Event
        self._cache: dict[str, dict[Any, Any]] = {}

    def _string(self, value: Any) -> Any:
        text = str(value)
        try:
            return self._Data(text)
        except (TypeError, UnicodeEncodeError):  # surrogates: the original bytes
            return self._Data(text.encode("utf-8", "surrogateescape"))

    def _value(self, value: Any, zeek_type: str) -> Any:
        raw, Data = self._raw, self._Data
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return Data()
        if zeek_type == "time":
            return Data(raw.Timestamp(float(value)))
        if zeek_type == "double":
            return Data(float(value))
        if zeek_type == "count":
            return Data(raw.Count(int(value)))
        if zeek_type == "port":  # verdict rows: "80/tcp"
            number, _, proto = str(value).partition("/")
            return Data(raw.Port(int(number), self._protos.get(proto.lower(), self._unknown)))
        if zeek_type == "addr":
            address = ipaddress.ip_address(str(value).split("%", 1)[0])
            return Data(raw.Address(address.packed, address.version))
        if zeek_type.startswith("vector"):
            return Data(raw.Vector([self._string(v) for v in value]))
        return self._string(value)

    def event(self, name: str, args: Sequence[Any]) -> Any:
        """A Zeek event ``name(args...)`` (raw data values) as raw Broker data."""
        return self._event(name, self._Data(self._raw.Vector(list(args)))).as_data()

    def verdict_events(self, name: str, rows: pd.DataFrame) -> list[Any]:
        """One ``name(v: ZeekML::Verdict)`` event per row of ``rows`` (:func:`zeek_ml.sinks.verdict_file.verdict_rows`).

        Building a Broker value costs microseconds (the bindings try their constructors in turn), so the
        values that repeat (model, threshold, severity, hosts, ports...) are built once and reused.
        """
        columns = []
        for field in VERDICT_FIELDS:
            values = rows[field.name].tolist() if field.name in rows.columns else [None] * len(rows)
            if field.name in UNIQUE_FIELDS:
                columns.append([self._value(v, field.zeek_type) for v in values])
                continue
            cache = self._cache.setdefault(field.name, {})
            if len(cache) > CACHE_SIZE:
                cache.clear()
            column = []
            for v in values:
                key = tuple(v) if isinstance(v, (list, np.ndarray)) else v
                try:
                    data = cache.get(key)
                except TypeError:  # unhashable: not cached
                    key, data = None, None
                if data is None:
                    data = self._value(v, field.zeek_type)
                    if key is not None:
                        cache[key] = data
                column.append(data)
            columns.append(column)
        vector, Data = self._raw.Vector, self._Data
        return [self.event(name, [Data(vector(list(record)))]) for record in zip(*columns)]

    def ack_event(self, name: str, uids: Sequence[str]) -> Any:
        """``name(uids: vector of string)``."""
        return self.event(name, [self._Data(self._raw.Vector([self._string(u) for u in uids]))])


def _port(broker: ModuleType, number: Any, proto: Any) -> Any:
    kinds = {"tcp": broker.Port.TCP, "udp": broker.Port.UDP, "icmp": broker.Port.ICMP}
    return broker.Port(int(number), kinds.get(str(proto).lower(), broker.Port.Unknown))


def _encode(broker: ModuleType, value: Any, field: RecordField, proto: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    t = field.zeek_type
    if t == "time":
        return dt.datetime.fromtimestamp(float(value), UTC)
    if t == "interval":
        return dt.timedelta(seconds=float(value))
    if t == "port":
        if isinstance(value, str) and "/" in value:  # verdict rows: "80/tcp"
            number, proto = value.split("/", 1)
            return _port(broker, number, proto)
        return _port(broker, value, proto)
    if t == "count":
        return broker.Count(int(value))
    if t == "transport_proto":
        return broker.Enum(str(value))
    if t == "addr":
        return ipaddress.ip_address(str(value))
    if t == "bool":
        return bool(value)
    if t.startswith("set["):
        return {str(v) for v in value}
    if t.startswith("vector"):
        return [str(v) for v in value]
    if t == "double":
        return float(value)
    return str(value)


def conn_records(broker: ModuleType, frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """A frame in the conn schema -> ``ZeekML::FinishedConn`` values, as the package publishes them."""
    protos = frame["proto"].tolist()
    columns = []
    for field in CONN_FIELDS:
        column = field.frame_column
        values = frame[column].tolist() if column in frame.columns else [None] * len(frame)
        columns.append([_encode(broker, v, field, p) for v, p in zip(values, protos)])
    return list(zip(*columns))
