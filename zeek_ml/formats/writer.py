"""Write Zeek logs exactly as Zeek's ASCII writer does: TSV with header and ``#close``, or JSON lines."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zeek_ml.formats.escape import ESCAPED_CHARS_REGEX, NEEDS_ESCAPE_REGEX, escape
from zeek_ml.formats.schema import FLOAT_TYPES, INT_TYPES, is_container

JSON_TS_FORMATS = ("epoch", "iso8601", "millis")


def zeek_time_string(epoch: float) -> str:
    """``#open``/``#close`` stamp: local time as ``%Y-%m-%d-%H-%M-%S``, as Zeek writes it."""
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(epoch))


def zeek_time(stamp: str) -> float | None:
    """Epoch of a ``#open``/``#close`` stamp (or a rotated file name's), local time; None if not one."""
    try:
        return time.mktime(time.strptime(stamp.strip(), "%Y-%m-%d-%H-%M-%S"))
    except (ValueError, OverflowError):
        return None


class ZeekLogWriter:
    """A Zeek log file: ``fields`` is a list of (name, Zeek type) in column order.

    ``fmt`` is ``tsv`` (Zeek's default ASCII format) or ``json`` (one object a
    line, unset fields omitted, every ``time`` field as epoch seconds unless
    ``json_ts`` says ``iso8601`` or ``millis``, as ``LogAscii::json_timestamps``
    does). ``target`` is a path, ``-`` for stdout, or a binary file object.
    A path is opened with :func:`zeek_ml.formats.safeio.open_output` (``atomic=False``): written
    as it goes, never through a symbolic link; for a file that appears whole or not at all,
    pass a :class:`zeek_ml.formats.safeio.AtomicOutput` and commit it after :meth:`close` (as
    ``score`` does). Frames may lack columns (written unset) and hold others (ignored).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes],
        path: str,
        fields: Sequence[tuple[str, str]],
        *,
        fmt: str = "tsv",
        json_ts: str = "epoch",
        open_time: float | None = None,
        separator: str = "\t",
        set_separator: str = ",",
        empty_field: str = "(empty)",
        unset_field: str = "-",
        header: bool = True,
        close_line: bool = True,
    ):
        if fmt not in ("tsv", "json"):
            raise ValueError(f"unknown log format {fmt!r} (tsv or json)")
        if json_ts not in JSON_TS_FORMATS:
            raise ValueError(f"unknown JSON ts format {json_ts!r} ({', '.join(JSON_TS_FORMATS)})")
        self.path = path
        self.fields = list(fields)
        self.fmt = fmt
        self.json_ts = json_ts
        self.separator = separator
        self.set_separator = set_separator
        self.empty_field = empty_field
        self.unset_field = unset_field
        self.rows = 0
        self.close_line = close_line
        if isinstance(target, (str, os.PathLike)):
            if os.fspath(target) == "-":
                self._out: IO[bytes] = sys.stdout.buffer
                self._own = False
            else:
                from zeek_ml.formats.safeio import open_output

                # written as it goes (a live log can be followed), never through a link
                self._out = open_output(target, atomic=False)  # type: ignore[assignment]
                self._own = True
        else:
            self._out = target
            self._own = False
        if fmt == "tsv" and header:
            self._out.write(self.header_bytes(open_time))

    # ------------------------------------------------------------------ header
    def header_bytes(self, open_time: float | None = None) -> bytes:
        """The TSV header block (``#separator`` to ``#types``); empty for JSON."""
        if self.fmt != "tsv":
            return b""
        open_time = open_time if open_time is not None else time.time()
        sep = self.separator
        sep_hex = "".join(f"\\x{ord(c):02x}" for c in sep)
        lines = [
            f"#separator {sep_hex}",
            f"#set_separator{sep}{self.set_separator}",
            f"#empty_field{sep}{self.empty_field}",
            f"#unset_field{sep}{self.unset_field}",
            f"#path{sep}{self.path}",
            f"#open{sep}{zeek_time_string(open_time)}",
            "#fields" + sep + sep.join(n for n, _ in self.fields),
            "#types" + sep + sep.join(t for _, t in self.fields),
        ]
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")

    # ------------------------------------------------------------------ rows
    def write(
        self, frame: pd.DataFrame, extra: Mapping[str, pd.Series] | None = None, prepared: Prepared | None = None
    ) -> int:
        """Append the rows of ``frame`` (with the columns ``extra``, of as many rows, taking precedence over
        the frame's: cheaper than a new frame); returns how many were written. ``prepared``: what
        :meth:`prepare` rendered of this ``frame`` before ``extra`` was known."""
        n = len(frame)
        if n == 0:
            return 0
        self._out.write(self.render(frame, extra, prepared))
        self._out.flush()
        self.rows += n
        return n

    def render(
        self, frame: pd.DataFrame, extra: Mapping[str, pd.Series] | None = None, prepared: Prepared | None = None
    ) -> bytes:
        """The rows of ``frame`` (and the columns ``extra``) as log lines, each ending in a newline."""
        columns = _Columns(frame, extra or {})
        if self.fmt != "tsv":
            return self._json_bytes(columns)
        done = prepared.columns if prepared is not None and prepared.frame is frame else {}
        return self._join_lines(self._tsv_columns(columns, done), len(frame))

    def prepare(self, frame: pd.DataFrame, later: Sequence[str]) -> Prepared | None:
        """Render now the columns of ``frame`` other than ``later`` (TSV; None for JSON), for a :meth:`write`
        of this ``frame`` with the columns ``later`` as ``extra``: the same bytes, with the work done
        while something else computes ``later`` (the watcher: while the model runs)."""
        if self.fmt != "tsv" or not len(frame):
            return None
        skip = set(later)
        fields = [index for index, (name, _) in enumerate(self.fields) if name not in skip]
        return Prepared(frame, self._tsv_columns(_Columns(frame, {}), {}, fields))

    def _tsv_columns(
        self, frame: _Columns, done: Mapping[int, pa.Array], fields: Sequence[int] | None = None
    ) -> dict[int, pa.Array]:
        """The fields at ``fields`` (default: all) rendered as Zeek's TSV text, by position, but those
        ``done`` has."""
        n = len(frame)
        columns: dict[int, pa.Array] = dict(done)
        groups: dict[str, list[tuple[int, Any]]] = {}
        for index in range(len(self.fields)) if fields is None else fields:
            if index in columns:
                continue
            name, zeek_type = self.fields[index]
            first = index == 0
            if name not in frame:
                columns[index] = pa.array([self.unset_field] * n, pa.string())
                continue
            series = frame[name]
            kind = _group_of(series, zeek_type) if not first and n <= GROUP_ROWS else None
            if kind == "string":
                try:
                    series = self._string_array(series)
                except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
                    kind = None
            if kind is None:
                columns[index] = self._tsv_column(series, zeek_type, first=first)
            else:
                groups.setdefault(kind, []).append((index, series))
        # Columns rendered alike go through Arrow as one array (the same values, one call instead of one
        # a column: what a live batch of a few hundred rows spends most of its writing time on).
        for kind, members in groups.items():
            rendered = self._group_column(kind, [column for _, column in members])
            for j, (index, _) in enumerate(members):
                columns[index] = rendered.slice(j * n, n)
        return columns

    def _join_lines(self, columns: Mapping[int, pa.Array], n: int) -> bytes:
        """The rendered fields, in the log's order, as lines."""
        ordered = [columns[index] for index in range(len(self.fields))]
        lines = pc.binary_join_element_wise(*ordered, self.separator)
        lines = pc.binary_join_element_wise(lines, pa.array([""] * n, pa.string()), "\n")
        if isinstance(lines, pa.ChunkedArray):
            lines = lines.combine_chunks()
        return _concat_strings(lines)

    def _group_column(self, kind: str, members: list[Any]) -> pa.Array:
        """The columns of one :func:`_group_of` kind, rendered back to back as :meth:`_tsv_column` renders each."""
        unset = self.unset_field
        if kind in ("fixed6", "double"):
            values = np.concatenate([s.to_numpy(dtype=float, na_value=np.nan) for s in members])
            return _fixed6(values, unset) if kind == "fixed6" else _double(values, unset)
        if kind == "int":
            ints = np.concatenate([s.to_numpy(dtype=np.int64, na_value=0) for s in members])
            mask = np.concatenate([_isna(s) for s in members])
            return pc.fill_null(pa.array(ints, mask=mask).cast(pa.string()), unset)
        if kind == "bool":
            mask = np.concatenate([_isna(s) for s in members])
            bools = pa.array(np.concatenate([s.to_numpy(dtype=bool, na_value=False) for s in members]), mask=mask)
            return pc.fill_null(pc.if_else(bools, "T", "F"), unset)
        return self._escape_strings(pa.concat_arrays(members), first=False)  # text: Arrow arrays already

    def _tsv_column(self, series: pd.Series, zeek_type: str, first: bool) -> pa.Array:
        unset = self.unset_field
        if zeek_type in ("time", "interval"):
            return _fixed6(series.to_numpy(dtype=float, na_value=np.nan), unset)
        if zeek_type == "double":
            return _double(series.to_numpy(dtype=float, na_value=np.nan), unset)
        if zeek_type in INT_TYPES:
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                exact = pa.array(series, from_pandas=True)
                if pa.types.is_integer(exact.type) or pa.types.is_null(exact.type):
                    return pc.fill_null(exact.cast(pa.string()), unset)
            values = pd.to_numeric(series, errors="coerce")
            mask = values.isna().to_numpy()
            ints = values.to_numpy(dtype=float, na_value=0.0)
            arr = pa.array(ints.astype(np.int64), mask=mask).cast(pa.string())
            return pc.fill_null(arr, unset)
        if zeek_type == "bool":
            mask = series.isna().to_numpy()
            bools = pa.array(series.to_numpy(dtype=bool, na_value=False), mask=mask)
            return pc.fill_null(pc.if_else(bools, "T", "F"), unset)  # no string per row made in numpy
        if is_container(zeek_type):
            return self._containers(series)
        return self._strings(series, first)

    def _containers(self, series: pd.Series) -> pa.Array:
        """Sets and vectors, joined in Arrow; Python only for elements that need escaping."""
        try:
            lists = pa.array(series, from_pandas=True)
            if not (pa.types.is_list(lists.type) or pa.types.is_large_list(lists.type) or pa.types.is_null(lists.type)):
                raise TypeError(lists.type)
            if pa.types.is_null(lists.type):
                return pa.array([self.unset_field] * len(series), pa.string())
            flat = lists.flatten()
            if pa.types.is_null(flat.type) and not len(flat):  # only empty sets and unset ones (list<null>)
                empty = pc.equal(pc.list_value_length(lists), 0)
                unset = pa.scalar(self.unset_field, pa.string())
                return pc.fill_null(pc.if_else(empty, pa.scalar(self.empty_field, pa.string()), unset), unset)
            if not pa.types.is_string(flat.type) and not pa.types.is_large_string(flat.type):
                raise TypeError(flat.type)
            pattern = NEEDS_ESCAPE_REGEX + "|" + _re_escape(self.set_separator) + "|^$"
            if len(flat) and pc.any(pc.match_substring_regex(flat, pattern)).as_py():
                raise ValueError("elements need escaping")
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, UnicodeEncodeError):
            return pa.array([self._container(v) for v in series], pa.string())
        joined = pc.binary_join(lists, self.set_separator)
        empty = pc.equal(pc.list_value_length(lists), 0)
        joined = pc.if_else(empty, pa.scalar(self.empty_field, pa.string()), joined)
        return pc.fill_null(joined, self.unset_field)

    def _strings(self, series: pd.Series, first: bool) -> pa.Array:
        try:
            arr = self._string_array(series)
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
            values = [None if _is_null(v) else str(v) for v in series]
            return pc.fill_null(pa.array([self._string(v, first) for v in values], pa.string()), self.unset_field)
        return self._escape_strings(arr, first)

    @staticmethod
    def _string_array(series: pd.Series) -> pa.Array:
        """A string column as one Arrow array (raises when its values are not all text or null)."""
        arr = pa.array(
            series.astype("string[pyarrow]") if series.dtype == object else series, pa.string(), from_pandas=True
        )
        if isinstance(arr, pa.ChunkedArray):  # a frame of several files' batches (read_log of many)
            arr = arr.combine_chunks()
        return arr

    def _escape_strings(self, arr: pa.Array, first: bool) -> pa.Array:
        needs = _needs_escape(arr, first)
        if pc.any(needs).as_py():
            values = arr.to_pylist()
            for i in np.flatnonzero(needs.to_numpy(zero_copy_only=False)):
                values[i] = self._string(values[i], first)
            arr = pa.array(values, pa.string())
        return pc.fill_null(arr, self.unset_field)

    def _string(self, value: str | None, first: bool = False) -> str | None:
        if value is None:
            return None
        if value == "":
            return self.empty_field
        out = escape(value, self.separator, None, self.unset_field, self.empty_field)
        if first and out.startswith("#"):
            out = "\\x23" + out[1:]
        return out

    def _container(self, value: Any) -> str:
        if _is_null(value):
            return self.unset_field
        items = list(value)
        if not items:
            return self.empty_field
        return self.set_separator.join(
            escape(_element_str(v), self.separator, self.set_separator, self.unset_field, self.empty_field)
            for v in items
        )

    # ------------------------------------------------------------------ JSON
    def _json_bytes(self, frame: _Columns) -> bytes:
        names = [(n, t) for n, t in self.fields if n in frame]
        # json.dumps writes a double as Python's repr, which is RapidJSON's (Zeek's JSON writer) but for
        # exponents: 2e-06 where Zeek writes 0.000002, 1e+20 for 100000000000000000000.0. Rows holding
        # such a number are written with _json_double.
        unlike = np.zeros(len(frame), dtype=bool)
        for name, zeek_type in names:
            if zeek_type in FLOAT_TYPES:
                size = np.abs(frame[name].to_numpy(dtype=float, na_value=np.nan))
                unlike |= ((size < 1e-4) & (size > 0)) | (size >= 1e16)
        floats = [(n, json.dumps(n, ensure_ascii=False)) for n, t in names if t in FLOAT_TYPES]
        values = [(n, _json_column(frame[n], t, self.json_ts)) for n, t in names]
        out: list[str] = []
        for i in range(len(frame)):
            row = {name: column[i] for name, column in values if column[i] is not None}
            line = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
            if unlike[i]:
                line = _as_rapidjson(line, row, floats)
            out.append(line)
        return ("\n".join(out) + "\n").encode("utf-8", "surrogateescape")

    # ------------------------------------------------------------------ close
    def close(self, close_time: float | None = None) -> None:
        """Write ``#close`` (TSV) and close the file."""
        if self._out is None:
            return
        if self.fmt == "tsv" and self.close_line:
            stamp = zeek_time_string(close_time if close_time is not None else time.time())
            self._out.write(f"#close{self.separator}{stamp}\n".encode())
        self._out.flush()
        if self._own:
            self._out.close()
        self._out = None  # type: ignore[assignment]

    def __enter__(self) -> ZeekLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


GROUP_ROWS = 8192
"""Batches up to this many rows render columns of a kind together (one Arrow call for all of them saves
more than copying them into one array costs); bigger ones (offline ``score``) column by column."""


def _group_of(series: pd.Series, zeek_type: str) -> str | None:
    """Which columns :meth:`ZeekLogWriter._tsv_columns` renders together (None: this one on its own).

    Only where rendering is the same function of each value whatever the column: times and intervals,
    doubles, integers held as integers, booleans, and text (a column Arrow does not take as text is
    then rendered on its own).
    """
    if zeek_type in ("time", "interval"):
        return "fixed6"
    if zeek_type == "double":
        return "double"
    if zeek_type in INT_TYPES:
        return "int" if isinstance(series.dtype, pd.Int64Dtype) or series.dtype == np.int64 else None
    if zeek_type == "bool":
        return "bool"
    if is_container(zeek_type) or not (isinstance(series.dtype, pd.StringDtype) or series.dtype == object):
        return None
    return "string"


class _Columns:
    """A frame's columns by name, with ``extra`` ones (the same length) in front."""

    def __init__(self, frame: pd.DataFrame, extra: Mapping[str, pd.Series]):
        self.frame, self.extra = frame, extra
        self.names = set(frame.columns) | set(extra)

    def __len__(self) -> int:
        return len(self.frame)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> pd.Series:
        column = self.extra.get(name)
        return self.frame[name] if column is None else column


@dataclass(frozen=True)
class Prepared:
    """Fields of one frame already rendered (:meth:`ZeekLogWriter.prepare`)."""

    frame: pd.DataFrame
    columns: Mapping[int, pa.Array]
    """By position in the writer's fields."""


def _isna(series: pd.Series) -> np.ndarray:
    """``series.isna()`` as a numpy array, asked of its array (no Series made)."""
    return np.asarray(series.array.isna(), dtype=bool)


def _re_escape(text: str) -> str:
    """Escape a literal for an RE2 pattern."""
    return "".join("\\" + c if not c.isalnum() else c for c in text)


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _element_str(value: Any) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _concat_strings(arr: pa.Array) -> bytes:
    """All values of a string array back to back, without a Python string per row."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if pa.types.is_large_string(arr.type) else np.int32)
    start = offsets[arr.offset]
    end = offsets[arr.offset + len(arr)]
    return arr.buffers()[2].to_pybytes()[start:end]


EXP_FROM = float(2**31 - 1)
"""From this magnitude on Zeek 8.0 writes a time or interval in exponent form (``modp_dtoa``'s
``INT_MAX`` threshold) and a double with every digit (``modp_dtoa3``)."""


def _fixed6_parts(values: np.ndarray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Six-decimal text of each finite value below :data:`EXP_FROM` (null where not finite), which rows
    are at or above it (their text is to be replaced), and the values with the non-finite ones zeroed."""
    mask = ~np.isfinite(values)
    clean = np.where(mask, 0.0, values)
    big = np.abs(clean) >= EXP_FROM
    fixed = np.where(big, 0.0, clean)
    # Zeek's own arithmetic (modp_dtoa): the fraction times 10^6, cut, then rounded up past one half
    # (at exactly one half: when odd, or when zero). rint(value * 10^6) differs where the product's
    # own rounding lands on a half (a timestamp's sub-microsecond part of .4 could become .5).
    magnitude = np.abs(fixed)
    whole = np.trunc(magnitude)
    scaled = (magnitude - whole) * 1e6
    frac = np.floor(scaled)
    diff = scaled - frac
    frac += (diff > 0.5) | ((diff == 0.5) & ((frac == 0) | (frac % 2 == 1)))
    micros = whole.astype(np.int64) * 1_000_000 + frac.astype(np.int64)  # a fraction of 10^6 carries over
    whole = pa.array(micros // 1_000_000).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(micros % 1_000_000).cast(pa.string()), 6, "0")
    text = pc.binary_join_element_wise(whole, frac, ".")
    negative = fixed < 0  # Zeek keeps the sign of a value that rounds to zero: -0.000000
    if negative.any():
        text = pc.if_else(pa.array(negative), pc.binary_join_element_wise("-", text, ""), text)
    if mask.any():
        text = pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), text)
    return text, big, clean


def _replace_rows(text: pa.Array, rows: np.ndarray, values: list[str]) -> pa.Array:
    out = text.to_pylist()
    for i, value in zip(rows.tolist(), values, strict=True):
        out[i] = value
    return pa.array(out, pa.string())


def _fixed6(values: np.ndarray, unset: str) -> pa.Array:
    """Zeek's time/interval rendering: six decimals (a magnitude from :data:`EXP_FROM` on in exponent
    form, as Zeek 8.0 writes it), without going through Python floats for the usual values."""
    text, big, clean = _fixed6_parts(values)
    if big.any():
        rows = np.flatnonzero(big)
        text = _replace_rows(text, rows, [_exponent_text(v) for v in clean[rows].tolist()])
    return pc.fill_null(text, unset)


def _exponent_text(value: float) -> str:
    """``%.16e`` with the mantissa's trailing zeros (and a bare ``.``) cut: Zeek 8.0's ``modp_dtoa``."""
    mantissa, _, exponent = f"{value:.16e}".partition("e")
    return mantissa.rstrip("0").rstrip(".") + "e" + exponent


def _double(values: np.ndarray, unset: str) -> pa.Array:
    """Zeek's double rendering (``modp_dtoa3``, then ``ODesc::Add``): up to six decimals, trailing zeros
    trimmed; a value that rounds to a whole number keeps ``.0`` only when it is within 1e-9 of one
    (``0.0``, but ``0`` for 1e-7); from :data:`EXP_FROM` on every digit of ``%.6f``."""
    text, big, clean = _fixed6_parts(values)
    trimmed = pc.utf8_rtrim(text, "0")  # every value has a "." before its zeros
    dot = pc.ends_with(trimmed, ".")
    if pc.any(dot).as_py():
        near = pa.array(np.abs(clean - np.rint(clean)) < 1e-9)
        whole = pc.if_else(near, pc.binary_join_element_wise(trimmed, "0", ""), pc.utf8_rtrim(trimmed, "."))
        trimmed = pc.if_else(dot, whole, trimmed)
    if big.any():
        rows = np.flatnonzero(big)
        trimmed = _replace_rows(trimmed, rows, [_all_digits_text(v) for v in clean[rows].tolist()])
    return pc.fill_null(trimmed, unset)


def _all_digits_text(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text + ".0" if value == np.rint(value) else text


_ESCAPED_BYTES = np.zeros(256, dtype=bool)
_ESCAPED_BYTES[:0x20] = _ESCAPED_BYTES[0x7F] = _ESCAPED_BYTES[ord("\\")] = True
"""The bytes :data:`~zeek_ml.formats.escape.NEEDS_ESCAPE_REGEX`'s character class matches."""


def _needs_escape(arr: pa.Array, first: bool) -> pa.Array:
    """Where a string needs :func:`escape`: ``NEEDS_ESCAPE_REGEX``, ``""`` and, in the first column, a
    leading ``#`` (null where null). A byte scan first: without a backslash or a control byte only the
    whole-value cases remain, tested without a regex (compiling one costs more than a live batch)."""
    data = arr.buffers()[2]
    plain = True
    if data is not None and len(arr):
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)
        chars = np.frombuffer(data, dtype=np.uint8)[offsets[arr.offset] : offsets[arr.offset + len(arr)]]
        plain = not _ESCAPED_BYTES[chars].any()
    if plain:
        needs = pc.or_kleene(pc.equal(arr, "-"), pc.equal(arr, "(empty)"))
        if first:
            needs = pc.or_kleene(needs, pc.starts_with(arr, "#"))
    else:
        needs = pc.match_substring_regex(arr, NEEDS_ESCAPE_REGEX + ("|^#" if first else ""))
    return pc.or_kleene(needs, pc.equal(arr, ""))


def _json_string(value: str) -> str:
    # Zeek's JSON writer escapes a backslash and bytes that are not UTF-8 the
    # same way its ASCII writer does; JSON's own escaping is applied on top.
    return escape(value, "", None, "\x00unset", "\x00empty") if value else value


def _json_column(series: pd.Series, zeek_type: str, ts_format: str) -> list[Any]:
    """:func:`_json_value` of every value of a column (None: left out), whole columns at a time where the
    dtype allows (integers, doubles, booleans, Arrow text), else value by value."""
    dtype = series.dtype
    if zeek_type in INT_TYPES and (isinstance(dtype, pd.Int64Dtype) or dtype == np.int64):
        return series.to_numpy(dtype=object, na_value=None).tolist()
    if zeek_type in FLOAT_TYPES and dtype == np.float64 and (zeek_type != "time" or ts_format == "epoch"):
        numbers = series.to_numpy(dtype=float)
        out = numbers.astype(object)
        out[~np.isfinite(numbers)] = None
        return out.tolist()
    if zeek_type == "bool" and (isinstance(dtype, pd.BooleanDtype) or dtype == np.bool_):
        return series.to_numpy(dtype=object, na_value=None).tolist()
    if (
        isinstance(dtype, pd.StringDtype)
        and dtype.storage == "pyarrow"
        and not is_container(zeek_type)
        and zeek_type not in FLOAT_TYPES | INT_TYPES | {"bool"}
    ):
        text = series.to_numpy(dtype=object, na_value=None).tolist()
        arr = pa.array(series, pa.string(), from_pandas=True)
        escaped = pc.match_substring_regex(arr, ESCAPED_CHARS_REGEX)  # the values _json_string changes
        for i in np.flatnonzero(pc.fill_null(escaped, False).to_numpy(zero_copy_only=False)):
            text[i] = _json_string(text[i])
        return text
    return [_json_value(v, zeek_type, ts_format) for v in series.tolist()]


def _json_value(value: Any, zeek_type: str, ts_format: str) -> Any:
    if _is_null(value) if not isinstance(value, (list, tuple, np.ndarray)) else False:
        return None
    if zeek_type == "time" and ts_format != "epoch":
        if ts_format == "millis":
            return round(float(value) * 1000)
        stamp = dt.datetime.fromtimestamp(float(value), dt.UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if zeek_type in FLOAT_TYPES:
        # Zeek 8.0's JSON writer gives every double in full, times too (its ASCII writer six decimals).
        v = float(value)
        return v if math.isfinite(v) else None
    if zeek_type in INT_TYPES:
        return int(value)
    if zeek_type == "bool":
        return bool(value)
    if is_container(zeek_type):
        return [_json_string(e) if isinstance(e, str) else _json_scalar(e) for e in value]
    return _json_string(str(value))


def _as_rapidjson(line: str, row: dict[str, Any], keys: list[tuple[str, str]]) -> str:
    """``line`` (``json.dumps(row)``) with the doubles of ``keys`` ((name, name as JSON) pairs) as
    :func:`_json_double` writes them. ``"key":`` is found once, where the key is: in a string value its
    quotes are escaped."""
    for name, key in keys:
        value = row.get(name)
        if type(value) is float:
            text = _json_double(value)
            if text != repr(value):
                line = line.replace(f"{key}:{value!r}", f"{key}:{text}", 1)
    return line


def _json_double(value: float) -> str:
    """``value`` as RapidJSON's ``Writer::Double`` writes it (Zeek's JSON logs): the shortest digits that
    read back as the value, in plain notation from 1e-6 up to 1e21 with ``.0`` for a whole number
    (``0.000002``, ``100000000000000000000.0``), else ``1e-7``, ``1.5e300``: no ``+``, no leading zero."""
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign, text = ("-", repr(-value)) if value < 0 else ("", repr(value))
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    k = int(exponent or 0) - len(fraction)  # the value is int(whole + fraction) * 10**k
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k  # 10**(kk - 1) <= value < 10**kk
    if k >= 0 and kk <= 21:
        return f"{sign}{digits}{'0' * k}.0"
    if 0 < kk <= 21:
        return f"{sign}{digits[:kk]}.{digits[kk:]}"
    if -6 < kk <= 0:
        return f"{sign}0.{'0' * -kk}{digits}"
    head = digits if length == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{head}e{kk - 1}"


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


WriterFactory = Callable[[str, Sequence[tuple[str, str]]], ZeekLogWriter]
"""``factory(zeek_path, fields) -> ZeekLogWriter``: how a sink opens its log."""
