"""Zeek events in: ``ZeekML::conn_finished`` events (Broker, or Zeek's WebSocket API) decoded and
checked value by value into conn rows; anything malformed is rejected with its field named."""

from __future__ import annotations

import collections
import datetime as dt
import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.formats.records import CONN_EVENT, CONN_FIELDS, VERDICT_FIELDS, RecordField
from zeek_ml.formats.schema import (
    CONN_TYPES,
    INT64_MAX,
    MAX_VALUE_CHARS,
    NONNEGATIVE_FIELDS,
    TIME_MAX,
    TIME_MIN,
    ColumnTypes,
    pandas_dtype,
)

UTC = dt.UTC

PROTOCOLS = ("tcp", "udp", "icmp", "unknown_transport")
"""Zeek's ``transport_proto`` values."""


class MalformedEvent(ValueError):
    """A record that does not have the shared record's shape (:func:`verdict_dicts`)."""


class Rejected(ValueError):
    """A received message that is not a valid ``ZeekML::conn_finished`` event.

    ``kind`` names the check it failed (``orig_bytes.range``, ``event.arity``...: a bounded set,
    never text from the peer), ``reason`` says why in one line, ``uid`` is the connection's when
    it was readable.
    """

    def __init__(self, kind: str, reason: str, uid: str | None = None):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.uid = uid


class ForeignEvent(Exception):
    """A well-formed Zeek event with another name (another script's event on our topic)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _Bad(Exception):
    """One field's value failed a check: ``problem`` (``type``, ``range``...) and a reason."""

    def __init__(self, problem: str, reason: str):
        super().__init__(reason)
        self.problem = problem
        self.reason = reason


def clip(value: Any, limit: int = 80) -> str:
    """``value`` for a log line: its repr (control characters and surrogates escaped), cut to ``limit``."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text):,} chars)"


def _text(raw: bytes | str) -> str:
    """A Broker string as Python text: bytes that are not UTF-8 as surrogates (PEP 383), as the reader does."""
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw


def _zeek_text(raw: bytes | str) -> str:
    """A Broker string as text: bytes that are not UTF-8 become U+FFFD, as the log reader gives them from a
    conn.log (never surrogates: the notices, their messages and the events built from a value must encode)."""
    if not isinstance(raw, bytes):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


class ConnDecoder:
    """Validates raw Broker messages as ``ZeekML::conn_finished`` events and decodes their record.

    :meth:`decode` returns one row: the values of :data:`~zeek_ml.formats.records.CONN_FIELDS` as
    the frame holds them (``ts`` float, ports int, addresses text, ``tunnel_parents`` a sorted
    list...), or raises :class:`Rejected` or :class:`ForeignEvent`. ``capped`` counts, per
    field, the strings cut to ``MAX_VALUE_CHARS`` (the connection is kept, as the reader keeps it).

    A value is read as its field's type only when it is of that type: Broker 2's ``as_count()``
    on a string raises (so the fast path reads, and checks the type only on failure), Broker 1.4's
    returns garbage or aborts the process (so there the type is checked first).
    """

    def __init__(self, broker: ModuleType):
        raw = broker._broker
        T = raw.Data.Type
        self._nil = T.Nil
        self._vector = T.Vector
        self._event = raw.zeek.Event
        self._raises = broker.Version.MAJOR >= 2
        """``as_count()`` and friends raise on a value of another type (Broker 2); 1.4's do not."""
        P = raw.Port.Protocol
        self._port_proto = {P.TCP: "tcp", P.UDP: "udp", P.ICMP: "icmp", P.Unknown: "unknown_transport"}
        self.capped: collections.Counter[str] = collections.Counter()
        wants = {
            "time": T.Timestamp,
            "interval": T.Timespan,
            "count": T.Count,
            "port": T.Port,
            "addr": T.Address,
            "transport_proto": T.EnumValue,
            "bool": T.Boolean,
            "string": T.String,
            "set[string]": T.Set,
        }
        self._fields: list[tuple[str, bool, Any, Callable[[Any], Any]]] = [
            (f.name, f.optional, wants[f.zeek_type], self._converter(f, T.String)) for f in CONN_FIELDS
        ]
        self._width = len(CONN_FIELDS)
        names = [f.name for f in CONN_FIELDS]
        self._uid_at = names.index("uid")
        self._proto_at = names.index("proto")
        self._port_at = (names.index("orig_p"), names.index("resp_p"))

    def _converter(self, field: RecordField, string_type: Any) -> Callable[[Any], Any]:
        """data of the field's Broker type -> the frame's value, or :class:`_Bad` (out of range)."""
        name, zeek_type = field.name, field.zeek_type

        if zeek_type == "time":

            def convert(d: Any) -> Any:
                x = d.as_timestamp()
                if not (math.isfinite(x) and TIME_MIN <= x < TIME_MAX):
                    raise _Bad("range", f"time {x!r} is outside [1970-01-01, 10000-01-01)")
                return x

        elif zeek_type == "interval":
            nonnegative = field.frame_column in NONNEGATIVE_FIELDS

            def convert(d: Any) -> Any:
                x = d.as_timespan()
                if not math.isfinite(x) or (nonnegative and x < 0):
                    raise _Bad("range", f"interval {x!r} is not a finite duration of 0 or more")
                return x

        elif zeek_type == "count":

            def convert(d: Any) -> Any:
                x = d.as_count()
                if x > INT64_MAX:
                    raise _Bad("range", f"count {x} is 2^63 or more (no real byte or packet count comes near)")
                return x

        elif zeek_type == "port":

            def convert(d: Any) -> Any:
                port = d.as_port()  # 16 bits by construction; its protocol is checked in decode()
                return port.number(), port.get_type()

        elif zeek_type == "addr":

            def convert(d: Any) -> Any:
                return str(d.as_address())

        elif zeek_type == "transport_proto":

            def convert(d: Any) -> Any:
                value = d.as_enum_value().name
                if value not in PROTOCOLS:
                    raise _Bad("range", f"{clip(value)} is not a transport_proto ({', '.join(PROTOCOLS)})")
                return value

        elif zeek_type == "bool":

            def convert(d: Any) -> Any:
                return d.as_boolean()

        elif zeek_type == "string" and name == "uid":

            def convert(d: Any) -> Any:
                raw = d.as_string()
                try:
                    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
                except UnicodeDecodeError:
                    reason = f"{clip(raw, 60)} is not UTF-8 (an acknowledgment must give it back)"
                    raise _Bad("encoding", reason) from None
                return self._cap(name, text)

        elif zeek_type == "string":

            def convert(d: Any) -> Any:
                return self._cap(name, _zeek_text(d.as_string()))

        elif zeek_type == "set[string]":

            def convert(d: Any) -> Any:
                out = []
                size = 0
                for member in d.as_set():
                    t = member.get_type()
                    if t != string_type:
                        raise _Bad("type", f"a set holding a {_type_name(t)}, not strings")
                    text = _zeek_text(member.as_string())
                    size += len(text) + 1
                    if size > MAX_VALUE_CHARS + 1:  # as the reader caps a set's whole text
                        self.capped[name] += 1
                        break
                    out.append(text)
                return sorted(out)

        else:  # pragma: no cover - CONN_FIELDS has no other type; tests/test_zeek_scripts.py keeps it so
            raise ValueError(f"{name}: no converter for Zeek type {zeek_type}")
        return convert

    def _cap(self, name: str, text: str) -> str:
        """``text`` cut to ``MAX_VALUE_CHARS`` as the log reader cuts it (counted in :attr:`capped`)."""
        if len(text) > MAX_VALUE_CHARS:
            self.capped[name] += 1
            return text[:MAX_VALUE_CHARS]
        return text

    def _mismatch(self, i: int, t: Any) -> None:
        """Field ``i`` holds a value of Broker type ``t``, not its own: fine if unset and optional, else _Bad."""
        if t == self._nil:
            if self._fields[i][1]:
                return
            raise _Bad("missing", "unset (nil); the record requires it")
        raise _Bad("type", f"a {_type_name(t)} where the record has a {CONN_FIELDS[i].zeek_type}")

    def decode(self, data: Any) -> tuple[Any, ...]:
        """One raw Broker message -> a row of conn values; raises :class:`Rejected` or :class:`ForeignEvent`."""
        try:
            if data.get_type() != self._vector:
                raise Rejected("message.not_an_event", f"a {_type_name(data.get_type())}, not a Zeek event")
            event = self._event(data)
            if not event.valid():
                raise Rejected("message.not_an_event", "a vector that is not a Zeek event")
            name = event.name()
            args = event.args()
        except Rejected:
            raise
        except Exception as e:  # bindings that cannot read it (a name that is not UTF-8...)
            raise Rejected("message.undecodable", f"not readable as a Zeek event: {type(e).__name__}") from None
        if name != CONN_EVENT:
            raise ForeignEvent(name)
        if len(args) != 1:
            raise Rejected("event.arity", f"{CONN_EVENT} with {len(args)} arguments, expected 1 (the record)")
        record = args[0]
        if record.get_type() != self._vector:
            raise Rejected("event.not_a_record", f"argument is a {_type_name(record.get_type())}, not a record")
        values = record.as_vector()
        if len(values) != self._width:
            raise Rejected("record.width", f"the record has {len(values)} fields, {self._width} expected")
        row: list[Any] = [None] * self._width
        i = 0
        try:
            # values[i], not iteration: the bindings' vector iterator costs twice an index
            if self._raises:
                for i, (_name, _optional, _want, convert) in enumerate(self._fields):
                    d = values[i]
                    try:
                        row[i] = convert(d)
                    except RuntimeError:  # "bad variant access": not of the field's type
                        self._mismatch(i, d.get_type())
            else:
                for i, (_name, _optional, want, convert) in enumerate(self._fields):
                    d = values[i]
                    t = d.get_type()
                    if t != want:
                        self._mismatch(i, t)
                    else:
                        row[i] = convert(d)
        except _Bad as bad:
            name = self._fields[i][0]
            uid = row[self._uid_at] if i > self._uid_at else None
            raise Rejected(f"{name}.{bad.problem}", f"{name}: {bad.reason}", uid) from None
        uid = row[self._uid_at]
        if not uid:
            raise Rejected("uid.empty", "uid is empty")
        proto = row[self._proto_at]
        for at in self._port_at:
            number, kind = row[at]
            port_proto = self._port_proto.get(kind, "unknown_transport")
            if port_proto != proto:
                name = self._fields[at][0]
                raise Rejected(f"{name}.protocol", f"{name} is a {port_proto} port in a {proto} connection", uid)
            row[at] = number
        return tuple(row)


def _type_name(t: Any) -> str:
    """A Broker data type as the record definition would say it (``count``, ``string``...)."""
    name = getattr(t, "name", str(t))
    return {
        "Nil": "nil",
        "Address": "addr",
        "Boolean": "bool",
        "Count": "count",
        "EnumValue": "enum",
        "Integer": "int",
        "Port": "port",
        "Real": "double",
        "Set": "set",
        "String": "string",
        "Subnet": "subnet",
        "Table": "table",
        "Timespan": "interval",
        "Timestamp": "time",
        "Vector": "vector",
    }.get(name, name)


def conn_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows from :meth:`ConnDecoder.decode` -> a frame in the conn schema (the reader's columns and dtypes)."""
    columns = list(zip(*rows)) if rows else [()] * len(CONN_FIELDS)
    data: dict[str, Any] = {}
    for field, values in zip(CONN_FIELDS, columns):
        column = field.frame_column
        dtype = pandas_dtype(CONN_TYPES[column])
        if dtype is object:
            data[column] = pd.Series(list(values), dtype=object)
        elif dtype is np.float64:
            data[column] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        elif isinstance(dtype, pd.StringDtype):
            try:
                data[column] = pd.array(list(values), dtype=dtype)
            except (UnicodeEncodeError, ValueError):  # bytes that are not UTF-8, as surrogates: as the reader
                data[column] = pd.Series(list(values), dtype=object)
        else:
            data[column] = pd.array(list(values), dtype=dtype)
    frame = pd.DataFrame(data)
    frame.attrs["types"] = ColumnTypes(CONN_TYPES)
    return frame


def _decode(value: Any, zeek_type: str) -> Any:
    """One Broker value (as the Python bindings give it) -> the frame's Python value."""
    if value is None:
        return None
    if zeek_type == "time":
        return value.timestamp() if isinstance(value, dt.datetime) else float(value)
    if zeek_type == "interval":
        return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if zeek_type == "port":
        return int(value.number()) if hasattr(value, "number") else int(value)
    if zeek_type in ("count", "int"):
        return int(value.value) if hasattr(value, "value") else int(value)
    if zeek_type == "transport_proto":
        return str(value.name) if hasattr(value, "name") else str(value)
    if zeek_type == "addr":
        return str(value)
    if zeek_type == "bool":
        return bool(value)
    if zeek_type.startswith("set["):
        return sorted(_text(v) for v in value)
    if zeek_type.startswith("vector"):
        return [_text(v) for v in value]
    return _text(value)


def verdict_dicts(records: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """``ZeekML::Verdict`` values as received -> dicts of plain Python values (tests, tools)."""
    out = []
    for record in records:
        if len(record) != len(VERDICT_FIELDS):
            raise MalformedEvent(f"a ZeekML::Verdict has {len(VERDICT_FIELDS)} fields, got {len(record)}")
        out.append({f.name: _decode(v, f.zeek_type) for f, v in zip(VERDICT_FIELDS, record)})
    return out
