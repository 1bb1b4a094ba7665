"""Broker values <-> zeek-ml frames, driven by the shared record definitions in :mod:`zeek_ml.verdicts`.

A Zeek record travels over Broker as a vector of its field values in
declaration order, ``nil`` for an unset ``&optional`` field. Decoding a batch
of ``ZeekML::conn_finished`` events gives a frame in the conn record schema
(conn.log's column names and the reader's dtypes); encoding does the reverse
(tests, replay), and verdict rows become ``ZeekML::verdict`` arguments.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.verdicts import CONN_FIELDS, VERDICT_FIELDS, RecordField
from zeek_ml.zeeklog.schema import CONN_TYPES, pandas_dtype

UTC = dt.UTC


class MalformedEvent(ValueError):
    """An event whose arguments do not have the shared record's shape."""


# --------------------------------------------------------------------------- decode


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


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


def conn_frame(records: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """``ZeekML::FinishedConn`` values (one tuple of field values each) -> a frame in the conn schema.

    Raises :class:`MalformedEvent` when a record has the wrong number of fields.
    """
    width = len(CONN_FIELDS)
    for record in records:
        if not isinstance(record, (tuple, list)) or len(record) != width:
            raise MalformedEvent(f"a ZeekML::FinishedConn has {width} fields, got {record!r:.200}")
    columns = list(zip(*records)) if records else [()] * width
    data: dict[str, pd.Series] = {}
    for field, values in zip(CONN_FIELDS, columns):
        column = field.frame_column
        try:
            decoded = [_decode(v, field.zeek_type) for v in values]
        except (AttributeError, TypeError, ValueError) as e:
            raise MalformedEvent(f"field {field.name} ({field.zeek_type}): {e}") from e
        dtype = pandas_dtype(CONN_TYPES[column])
        if dtype is object:
            data[column] = pd.Series(decoded, dtype=object)
        elif dtype is np.float64:
            data[column] = pd.Series([np.nan if v is None else v for v in decoded], dtype=np.float64)
        else:
            data[column] = pd.Series(decoded, dtype=dtype)
    frame = pd.DataFrame(data)
    frame.attrs["types"] = dict(CONN_TYPES)
    return frame


# --------------------------------------------------------------------------- encode


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


def _rows(
    broker: ModuleType, frame: pd.DataFrame, fields: Sequence[RecordField], proto: pd.Series
) -> list[tuple[Any, ...]]:
    protos = proto.tolist()
    columns = []
    for field in fields:
        column = field.frame_column
        values = frame[column].tolist() if column in frame.columns else [None] * len(frame)
        columns.append([_encode(broker, v, field, p) for v, p in zip(values, protos)])
    return list(zip(*columns)) if columns else []


def conn_records(broker: ModuleType, frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """A frame in the conn schema -> ``ZeekML::FinishedConn`` values, as the package publishes them."""
    return _rows(broker, frame, CONN_FIELDS, frame["proto"])


def verdict_records(broker: ModuleType, rows: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Verdict rows (:func:`zeek_ml.verdicts.verdict_rows`) -> ``ZeekML::Verdict`` values."""
    return _rows(broker, rows, VERDICT_FIELDS, pd.Series([None] * len(rows), dtype=object))


def verdict_dicts(records: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """``ZeekML::Verdict`` values as received -> dicts of plain Python values (tests, tools)."""
    out = []
    for record in records:
        if len(record) != len(VERDICT_FIELDS):
            raise MalformedEvent(f"a ZeekML::Verdict has {len(VERDICT_FIELDS)} fields, got {len(record)}")
        out.append({f.name: _decode(v, f.zeek_type) for f, v in zip(VERDICT_FIELDS, record)})
    return out
