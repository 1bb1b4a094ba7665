"""Conn records from any usual DataFrame shape, in the dtypes of zeek-ml's own reader.

The models compute their features from conn.log fields (:data:`MODEL_COLUMNS`). A frame of
conn records comes in many shapes: this project's reader (already right), zat's
``LogToDataFrame`` (``ts`` as a DatetimeIndex, ``duration`` as a timedelta, categories,
unsigned ints), parsezeeklogs records (dicts, ``None`` for unset, dots or underscores in
names), ``pandas.read_json(lines=True)`` of a Zeek JSON log (epoch, ISO 8601 or millisecond
``ts``, unset fields left out), a CSV (``-`` for unset, ``T``/``F`` booleans).
:func:`conn_frame` turns each into the reader's dtypes, or raises one :class:`FrameError`
naming every missing or mistyped column. It imports nothing from zeek-ml but the schema.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.formats.schema import FLOAT_TYPES, INT_TYPES, TIME_MAX, pandas_dtype

__all__ = ["MODEL_COLUMNS", "Column", "FrameError", "conn_frame", "describe_columns"]


@dataclass(frozen=True)
class Column:
    """A conn.log field the model reads: its name, Zeek type, and whether a frame must have it."""

    name: str
    zeek_type: str
    required: bool
    meaning: str


MODEL_COLUMNS: tuple[Column, ...] = (
    Column("ts", "time", True, "connection start (epoch seconds; a datetime or ISO 8601 text is converted)"),
    Column("uid", "string", False, "connection id (names a row in warnings about its time)"),
    Column("id.orig_h", "addr", True, "originator address (host context only, never a feature itself)"),
    Column("id.orig_p", "port", True, "originator port (well-known/registered/ephemeral class)"),
    Column("id.resp_h", "addr", True, "responder address (host context only, never a feature itself)"),
    Column("id.resp_p", "port", True, "responder port (service class)"),
    Column("proto", "enum", True, "transport protocol: tcp, udp, icmp"),
    Column("service", "string", False, "detected application protocol"),
    Column("duration", "interval", False, "seconds (a timedelta is converted)"),
    Column("orig_bytes", "count", False, "payload bytes sent by the originator"),
    Column("resp_bytes", "count", False, "payload bytes sent by the responder"),
    Column("conn_state", "string", True, "Zeek connection state (S0, SF, REJ, ...)"),
    Column("local_orig", "bool", False, "originator is in Site::local_nets"),
    Column("local_resp", "bool", False, "responder is in Site::local_nets"),
    Column("missed_bytes", "count", True, "bytes missed in content gaps"),
    Column("history", "string", False, "connection history letters"),
    Column("orig_pkts", "count", True, "packets sent by the originator"),
    Column("orig_ip_bytes", "count", True, "IP-level bytes sent by the originator"),
    Column("resp_pkts", "count", True, "packets sent by the responder"),
    Column("resp_ip_bytes", "count", True, "IP-level bytes sent by the responder"),
)
"""The conn.log fields every shipped model reads (feature specs conn-v1 and conn-v2), in Zeek's order.

Required: what Zeek writes for every connection. Optional: what Zeek leaves unset for some
connections (a JSON log then omits the key; a frame may lack the column, read as unset)."""

_UNSET_TEXT = frozenset({"-", ""})
_TRUE = frozenset({"T", "t", "true", "True", "TRUE", "1"})
_FALSE = frozenset({"F", "f", "false", "False", "FALSE", "0"})
_STRING = pd.StringDtype(storage="pyarrow", na_value=np.nan)
_MILLIS_FROM = 1e11
"""An integer ``ts`` at or above this is milliseconds (Zeek's ``JSON::TS_MILLIS``; as seconds it
would lie after the year 5138), as the reader reads it."""


class FrameError(ValueError):
    """A frame of conn records the model cannot score: every missing and every mistyped column.

    ``missing`` lists the absent required columns, ``mistyped`` maps a column to what is wrong.
    """

    def __init__(self, missing: list[str], mistyped: dict[str, str]):
        self.missing = list(missing)
        self.mistyped = dict(mistyped)
        parts = []
        if self.missing:
            parts.append("missing required column(s) " + ", ".join(repr(c) for c in self.missing))
        if self.mistyped:
            parts.append("mistyped column(s) " + "; ".join(f"{c!r}: {why}" for c, why in self.mistyped.items()))
        super().__init__("not a conn frame: " + "; ".join(parts) + " (see zeek_ml.MODEL_COLUMNS)")


def columns_markdown() -> list[str]:
    """The model card's "Input columns" section (Markdown lines), from :data:`MODEL_COLUMNS`."""
    lines = [
        "## Input columns",
        "The features are computed from these conn.log fields (`zeek_ml.MODEL_COLUMNS`; `zeek-ml info` prints "
        "them). From Python, `model.predict(frame)` / `predict_proba(frame)` take them in any usual DataFrame "
        "shape and raise `zeek_ml.FrameError` naming every missing or mistyped one.",
        "",
        "| column | Zeek type | required | used for |",
        "|---|---|---|---|",
    ]
    for c in MODEL_COLUMNS:
        required = "yes" if c.required else "no (absent = unset)"
        lines.append(f"| `{c.name}` | {c.zeek_type} | {required} | {c.meaning} |")
    return [*lines, ""]


def describe_columns() -> list[dict[str, Any]]:
    """:data:`MODEL_COLUMNS` as plain data (for ``zeek-ml info --json`` and the model card)."""
    return [
        {"name": c.name, "zeek_type": c.zeek_type, "required": c.required, "meaning": c.meaning} for c in MODEL_COLUMNS
    ]


def conn_frame(data: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Conn records in the reader's dtypes, whatever usual shape ``data`` has.

    ``data`` is a DataFrame or an iterable of dicts (parsezeeklogs records, parsed JSON lines).
    The model's columns are converted (``time``/``interval`` to float seconds, counts and ports
    to nullable Int64, bools to nullable boolean, text to strings; ``-``, empty text and None
    are unset); other columns pass through unchanged, rows keep their order. A frame the
    reader built is returned as it is. Raises :class:`FrameError` naming every missing or
    mistyped column.
    """
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame.from_records(list(data))
    frame = _rename(frame)
    missing = [c.name for c in MODEL_COLUMNS if c.required and c.name not in frame.columns]
    mistyped: dict[str, str] = {}
    converted: dict[str, pd.Series] = {}
    for col in MODEL_COLUMNS:
        if col.name not in frame.columns:
            continue
        series = frame[col.name]
        if isinstance(series, pd.DataFrame):
            mistyped[col.name] = "the column name appears more than once"
            continue
        if series.dtype == pandas_dtype(col.zeek_type):
            continue  # already the reader's dtype
        try:
            converted[col.name] = _convert(series, col.zeek_type).set_axis(frame.index)
        except _Bad as e:
            mistyped[col.name] = f"{col.zeek_type} expected, {e}"
    if missing or mistyped:
        raise FrameError(missing, mistyped)
    if not converted and isinstance(frame.index, pd.RangeIndex):
        return frame
    out = frame.assign(**converted) if converted else frame.copy()
    return out.reset_index(drop=True)


class _Bad(ValueError):
    """One column's values do not fit its Zeek type (the message says where)."""


def _rename(frame: pd.DataFrame) -> pd.DataFrame:
    """Zeek's dotted names: from ``id_orig_h`` (parsezeeklogs ``safe_headers``), a nested ``id``
    column of dicts (some JSON exports), and ``ts`` from zat's DatetimeIndex."""
    if "id" in frame.columns and not any(c.startswith("id.") for c in frame.columns):
        frame = frame.copy(deep=False)
        nested = frame["id"]
        if nested.map(lambda v: isinstance(v, Mapping) or v is None).all():
            for key in ("orig_h", "orig_p", "resp_h", "resp_p"):
                frame[f"id.{key}"] = nested.map(lambda v, k=key: v.get(k) if isinstance(v, Mapping) else None)
            frame = frame.drop(columns="id")
    renames = {}
    for col in MODEL_COLUMNS:
        flat = col.name.replace(".", "_")
        if flat != col.name and col.name not in frame.columns and flat in frame.columns:
            renames[flat] = col.name
    if renames:
        frame = frame.rename(columns=renames)
    if "ts" not in frame.columns and (frame.index.name == "ts" or isinstance(frame.index, pd.DatetimeIndex)):
        frame = frame.copy(deep=False)
        frame.insert(0, "ts", frame.index.to_series(index=frame.index))
    return frame


def _first_bad(series: pd.Series, bad: np.ndarray, what: str) -> _Bad:
    """A message naming how many values are bad, and the first one (row position, value)."""
    pos = int(np.flatnonzero(bad)[0])
    value = series.iloc[pos]
    return _Bad(f"{int(bad.sum()):,} value(s) {what}, first at row {pos}: {str(value)[:40]!r}")


def _plain(series: pd.Series) -> pd.Series:
    """Categories as their values, unset text (``-``, empty) and None as NaN."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        series = series.astype(object)
        unset = series.map(lambda v: v is None or (isinstance(v, str) and v.strip() in _UNSET_TEXT))
        series = series.where(~unset.astype(bool), np.nan)
    return series


def _convert(series: pd.Series, zeek_type: str) -> pd.Series:
    series = _plain(series)
    if zeek_type == "time":
        return _seconds(series, time=True)
    if zeek_type in FLOAT_TYPES:
        return _seconds(series, time=False)
    if zeek_type in INT_TYPES:
        return _integers(series, zeek_type)
    if zeek_type == "bool":
        return _booleans(series)
    return _strings(series)


def _numbers(series: pd.Series) -> np.ndarray:
    """float64 values (NaN where unset); text that is not a number is an error."""
    if pd.api.types.is_bool_dtype(series.dtype):
        raise _Bad("got booleans")
    if series.dtype == object:
        kinds = series.map(lambda v: isinstance(v, bool | dict | list | tuple | set))
        if kinds.any():
            raise _first_bad(series, kinds.to_numpy(dtype=bool), "are not numbers")
        values = pd.to_numeric(series, errors="coerce")
        bad = (values.isna() & series.notna()).to_numpy(dtype=bool)
        if bad.any():
            raise _first_bad(series, bad, "are not numbers")
        series = values
    if not pd.api.types.is_numeric_dtype(series.dtype):
        raise _Bad(f"got dtype {series.dtype}")
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _micros(values: np.ndarray) -> np.ndarray:
    """datetime64/timedelta64 values as float seconds, rounded to the microsecond (Zeek's log
    resolution: a datetime made from a float ``ts`` carries nanosecond noise); NaT as NaN."""
    ns = values.view(np.int64)
    us = (ns + 500) // 1000
    return np.where(np.isnat(values), np.nan, us / 1e6)


def _seconds(series: pd.Series, *, time: bool) -> pd.Series:
    """``time`` or ``interval`` values as float64 seconds."""
    if pd.api.types.is_timedelta64_dtype(series.dtype):
        if time:
            raise _Bad("got durations (timedelta), not times")
        return pd.Series(_micros(series.to_numpy(dtype="timedelta64[ns]")), index=series.index)
    if time and series.dtype == object:
        text = series.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        stamp = text & pd.to_numeric(series.where(text), errors="coerce").isna().to_numpy(dtype=bool)
        stamp |= series.map(lambda v: isinstance(v, datetime.datetime)).to_numpy(dtype=bool)
        if stamp.any():
            parsed = pd.to_datetime(series[stamp], utc=True, errors="coerce", format="ISO8601")
            if parsed.isna().any():
                bad = stamp.copy()
                bad[stamp] = parsed.isna().to_numpy()
                raise _first_bad(series, bad, "are neither epoch seconds nor ISO 8601 times")
            series = series.copy()
            # as the reader converts ISO 8601 text, so both give the same float
            series[stamp] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
    if time and pd.api.types.is_datetime64_any_dtype(series.dtype):
        naive = series.dt.tz_convert("UTC").dt.tz_localize(None) if series.dt.tz is not None else series
        values = _micros(naive.to_numpy(dtype="datetime64[ns]"))
    else:
        millis = time and pd.api.types.is_integer_dtype(series.dtype)
        values = _numbers(series)
        if millis:
            values = np.where(np.abs(values) >= _MILLIS_FROM, values / 1000.0, values)
    finite = np.isfinite(values)
    bad = ~np.isnan(values) & (~finite | (values < 0) | (time & (values >= TIME_MAX)))
    if bad.any():
        raise _first_bad(series, bad, "are out of range (negative, infinite or after year 9999)")
    return pd.Series(values, index=series.index, dtype=np.float64)


def _integers(series: pd.Series, zeek_type: str) -> pd.Series:
    """Counts and ports as nullable Int64."""
    values = _numbers(series)
    known = ~np.isnan(values)
    fractional = known & (np.floor(np.where(known, values, 0)) != np.where(known, values, 0))
    if fractional.any():
        raise _first_bad(series, fractional, "are not whole numbers")
    high = 65535 if zeek_type == "port" else 2**63 - 1
    bad = known & ((values < 0) | (values > high))
    if bad.any():
        raise _first_bad(series, bad, f"are out of range (0 to {high})")
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.astype(pd.Int64Dtype())  # exact, also past 2**53
    out = pd.array(np.where(known, values, 0).astype(np.int64), dtype=pd.Int64Dtype())
    out[~known] = pd.NA
    return pd.Series(out, index=series.index)


def _booleans(series: pd.Series) -> pd.Series:
    """T/F, true/false, 1/0 and Python booleans as nullable boolean."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype(pd.BooleanDtype())

    def parse(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, bool | np.bool_):
            return bool(v)
        text = str(v).strip() if isinstance(v, str | int | np.integer) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        return _BAD

    parsed = series.map(parse)
    bad = parsed.map(lambda v: v is _BAD).to_numpy(dtype=bool)
    if bad.any():
        raise _first_bad(series, bad, "are not T/F or true/false")
    return parsed.astype(pd.BooleanDtype())


_BAD = object()


def _strings(series: pd.Series) -> pd.Series:
    """Text columns as the reader's string dtype."""
    if series.dtype == object:
        wrong = series.map(lambda v: not (isinstance(v, str) or v is None or (isinstance(v, float) and np.isnan(v))))
        if wrong.any():
            raise _first_bad(series, wrong.to_numpy(dtype=bool), "are not text")
    elif not pd.api.types.is_string_dtype(series.dtype):
        raise _Bad(f"got dtype {series.dtype}, not text")
    return series.astype(_STRING)
