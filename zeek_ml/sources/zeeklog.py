"""Zeek logs in: the TSV and JSON parsers, with Zeek's escaping and types and a reject for every bad line."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from zeek_ml.formats.escape import unescape
from zeek_ml.formats.schema import (
    CONN_FIELDS,
    CONN_TYPES,
    FLOAT_TYPES,
    INT64_MAX,
    INT64_MIN,
    INT_TYPES,
    KNOWN_EXTRA_TYPES,
    MAX_VALUE_CHARS,
    NONNEGATIVE_FIELDS,
    PORT_MAX,
    TIME_MAX,
    TIME_MIN,
    ColumnTypes,
    arrow_type,
    element_type,
    guess_type,
    is_container,
    pandas_dtype,
    to_pandas,
)
from zeek_ml.sources.reading import (
    _BOM,
    LogHeader,
    ReadContext,
    ReadStats,
    SourceError,
    _encodable,
    cap_json_values,
    decode_json_line,
    show,
    valid_addr,
)

stdin_state: dict[str, Any] = {"head": None, "opened": False}


def _finish_frame(
    table: pa.Table,
    types: dict[str, str],
    objects: dict[str, list[Any]],
    ctx: ReadContext,
    path: str,
    log_path: str | None,
) -> pd.DataFrame:
    if "__rows__" in table.column_names:
        table = table.drop_columns(["__rows__"])
    if ctx.conn and _CONN_NAME_SET.issubset(table.column_names):
        # conn.log's columns first, in its order: cheaper done in Arrow than on the frame below
        order = CONN_NAMES + [c for c in table.column_names if c not in CONN_TYPES]
        if order != table.column_names:
            table = table.select(order)
    frame = to_pandas(table)
    for name, values in objects.items():
        frame[name] = pd.Series(values, dtype=object, index=frame.index)
    if ctx.conn:
        for name, zeek_type in CONN_FIELDS:
            if name not in frame.columns:
                frame[name] = pd.Series(
                    pd.NA if zeek_type in INT_TYPES or zeek_type == "bool" else np.nan,
                    index=frame.index,
                    dtype=pandas_dtype(zeek_type),
                )
                types[name] = zeek_type
        order = CONN_NAMES + [c for c in frame.columns if c not in CONN_TYPES]
        if order != list(frame.columns):
            frame = frame[order]
    frame.attrs = {"source": path, "path": log_path, "types": ColumnTypes(types)}
    ctx.stats.records += len(frame)
    return frame


CONN_NAMES = [n for n, _ in CONN_FIELDS]
_CONN_NAME_SET = frozenset(CONN_NAMES)


class TsvParser:
    """Zeek ASCII (TSV) logs, header blocks and all."""

    def __init__(self, path: str, ctx: ReadContext):
        self.path = path
        self.ctx = ctx
        self.header: LogHeader | None = None
        if ctx.fields:
            self.header = LogHeader(fields=list(ctx.fields), types=[_guess_field_type(n) for n in ctx.fields])

    def feed(self, buf: bytes, first_line: int, final: bool) -> Iterator[pd.DataFrame]:
        pos = 0
        line_no = first_line
        size = len(buf)
        while pos < size:
            if (
                buf.startswith(_BOM, pos)
                and (pos == 0 or buf[pos - 1] == 0x0A)
                and (line_no == 1 or buf.startswith(b"#", pos + len(_BOM)))
            ):
                # a byte order mark: an editor's at the start of the file, or a concatenated file's before
                # its header; a data line whose first value starts with U+FEFF keeps it
                pos += len(_BOM)
                if pos >= size:
                    break
            if buf[pos] == 0x23:  # '#': a meta line
                end = buf.find(b"\n", pos)
                end = size if end < 0 else end
                self._meta(buf[pos:end].rstrip(b"\r"), line_no)
                line_no += 1
                pos = end + 1
                continue
            nxt = buf.find(b"\n#", pos)
            bom = buf.find(b"\n" + _BOM + b"#", pos)
            if bom >= 0 and (nxt < 0 or bom < nxt):
                nxt = bom
            seg_end = size if nxt < 0 else nxt + 1
            seg = buf[pos:seg_end]
            frame = self._data(seg, line_no, final and seg_end == size)
            if frame is not None:
                yield frame
            line_no += seg.count(b"\n")
            pos = seg_end

    # ------------------------------------------------------------------ header
    def _meta(self, line: bytes, line_no: int) -> None:
        text = line.decode("utf-8", "replace")  # names and markers are text: a stray byte becomes U+FFFD
        if text.startswith("#separator"):
            value = text[len("#separator") :].strip(" \t")
            separator = unescape(value) or "\t"
            if len(separator.encode("utf-8", "surrogateescape")) != 1 or separator in "\n\r":
                raise SourceError(
                    f"{self.path}:{line_no}: #separator {show(value)}: zeek-ml reads logs whose separator is one byte "
                    "(Zeek's default is \\x09)"
                )
            self.header = LogHeader(separator=separator)
            return
        header = self.header
        if header is None:
            header = self.header = LogHeader()
        key, _, value = text[1:].partition(header.separator)
        if " " in key and not value:  # btest canonified "#open XXXX"
            key, _, value = key.partition(" ")
        if key == "fields":
            names, three = _split_header(value, header.separator)
            seen: set[str] = set()
            twice = next((n for n in names if n in seen or seen.add(n)), None)  # type: ignore[func-returns-value]
            if twice is not None:
                raise SourceError(f"{self.path}:{line_no}: #fields names {show(twice)} twice: not a usable header")
            header.fields, header.three_space = names, three
            if header.types is not None and len(header.types) != len(names):
                header.types = None
        elif key == "types":
            header.types, _ = _split_header(value, header.separator)
        elif key in ("set_separator", "empty_field", "unset_field"):
            marker = unescape(value)
            if key != "set_separator" or marker:  # an empty set separator would split nothing: keep ","
                setattr(header, key, marker)
        elif key in ("path", "open"):
            setattr(header, key, value)
        elif key == "close":
            pass
        else:
            self.ctx.stats.comments += 1

    # ------------------------------------------------------------------ data
    def _data(self, seg: bytes, first_line: int, final: bool) -> pd.DataFrame | None:
        header = self.header
        if header is None or header.fields is None:
            raise SourceError(
                f"{self.path}:{first_line}: data before any #fields header: not a Zeek TSV log with its header "
                "(for header-less zeek-cut output, name the columns with --fields)"
            )
        if header.types is None or len(header.types) != len(header.fields):
            header.types = [_guess_field_type(n) for n in header.fields]
        sep = header.separator.encode("utf-8", "surrogateescape")
        if header.three_space:
            seg = seg.replace(b"   ", sep)
        seg = _as_zeek_would_write(seg)
        nfields = len(header.fields)
        arr = np.frombuffer(seg, dtype=np.uint8)
        ends = np.flatnonzero(arr == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        seps = np.flatnonzero(arr == sep[0])
        counts = np.searchsorted(seps, ends) - np.searchsorted(seps, starts)
        blank = ends == starts
        good = (counts == nfields - 1) & ~blank
        lines = first_line + np.arange(len(ends))
        long_values = bool(len(ends)) and int((ends - starts).max()) > MAX_VALUE_CHARS
        hex_suspect = _field_may_be_hex(arr, starts, seps, header)
        if not good.all():
            self.ctx.stats.blank += int(blank.sum())
            for i in np.flatnonzero(~good & ~blank):
                raw = seg[starts[i] : ends[i]]
                found = int(counts[i]) + 1
                reason = f"expected {nfields} fields, found {found}"
                if final and i == len(ends) - 1:
                    reason += " (last line of the file, no newline: cut short?)"
                self.ctx.reject(self.path, int(lines[i]), None, reason, raw)
            keep = np.flatnonzero(good)
            if not len(keep):
                return None
            seg = b"".join(seg[starts[i] : ends[i] + 1] for i in keep)
            lines = lines[keep]
        table, lines = self._parse(seg, lines, header, hex_suspect)
        if table is None:
            return None
        table, objects = _postprocess(
            table,
            header,
            self.ctx.stats if long_values else None,
            KNOWN_FIELDS if self.ctx.conn else frozenset(),
            escapes=b"\\" in seg,
        )
        return _finish_frame(table, dict(zip(header.fields, header.types)), objects, self.ctx, self.path, header.path)

    def _parse(
        self, seg: bytes, lines: np.ndarray, header: LogHeader, hex_suspect: bool = True
    ) -> tuple[pa.Table | None, np.ndarray]:
        """Typed Arrow table of the lines whose every value fits its Zeek type; the others rejected.

        The fast path is one typed Arrow parse. If Arrow refuses a value, or a field may hold a
        hexadecimal integer (which Arrow would take), the lines are read as text, each numeric
        value checked against what Zeek writes, the bad lines set aside and the rest parsed
        typed; a line Arrow still refuses is found by halving and rejected with Arrow's reason.
        Either way the values are then checked against their type's range.
        """
        table = None
        if not hex_suspect:
            with contextlib.suppress(pa.ArrowInvalid):
                table = _read_tsv(seg, header, typed=True)
        if table is None:
            table, seg, lines = self._parse_checked(seg, lines, header)
            if table is None:
                return None, lines
        return self._check_ranges(table, seg, lines, header)

    def _parse_checked(
        self, seg: bytes, lines: np.ndarray, header: LogHeader
    ) -> tuple[pa.Table | None, bytes, np.ndarray]:
        assert header.fields is not None and header.types is not None
        try:
            text = _read_tsv(seg, header, typed=False)
        except pa.ArrowInvalid:
            return self._halve(seg, lines, header)
        pieces = seg.split(b"\n")  # the segment's lines, once: for rejects and the retry
        bad = np.zeros(text.num_rows, dtype=bool)
        for index, (name, zeek_type) in enumerate(zip(header.fields, header.types)):
            col = text.column(index)
            found = _invalid_text(col, zeek_type)
            if found is None:
                continue
            mask, why = found
            for i in np.flatnonzero(mask & ~bad):
                value = col[int(i)].as_py()
                self.ctx.reject(
                    self.path,
                    int(lines[i]),
                    name,
                    f"invalid {zeek_type} value {show(value)}{why(value)}",
                    pieces[int(i)],
                )
            bad |= mask
        if bad.any():
            keep = np.flatnonzero(~bad)
            if not len(keep):
                return None, b"", lines[:0]
            seg = b"".join(pieces[i] + b"\n" for i in keep)
            lines = lines[keep]
        try:
            return _read_tsv(seg, header, typed=True), seg, lines
        except pa.ArrowInvalid:
            return self._halve(seg, lines, header)

    def _halve(self, seg: bytes, lines: np.ndarray, header: LogHeader) -> tuple[pa.Table | None, bytes, np.ndarray]:
        """Parse what parses; reject, with Arrow's reason, each line Arrow refuses on its own."""
        pieces = seg.split(b"\n")[:-1]
        tables: list[pa.Table] = []
        kept: list[int] = []
        spans = [(0, len(pieces))]  # a stack, lower half on top: lines come out in order
        while spans:
            lo, hi = spans.pop()
            chunk = b"".join(p + b"\n" for p in pieces[lo:hi])
            try:
                tables.append(_read_tsv(chunk, header, typed=True))
                kept.extend(range(lo, hi))
                continue
            except pa.ArrowInvalid as e:
                if hi - lo > 1:
                    mid = (lo + hi) // 2
                    spans += [(mid, hi), (lo, mid)]
                    continue
                field, reason = _arrow_problem(e, header)
                self.ctx.reject(self.path, int(lines[lo]), field, reason, pieces[lo])
        if not tables:
            return None, b"", lines[:0]
        seg = b"".join(pieces[i] + b"\n" for i in kept)
        return pa.concat_tables(tables), seg, lines[np.array(kept, dtype=np.int64)]

    def _check_ranges(
        self, table: pa.Table, seg: bytes, lines: np.ndarray, header: LogHeader
    ) -> tuple[pa.Table | None, np.ndarray]:
        """Reject the lines holding a value outside its Zeek type's range (a negative count, ...)."""
        assert header.fields is not None and header.types is not None
        bad: np.ndarray | None = None
        pieces: list[bytes] | None = None
        for index, (name, zeek_type) in enumerate(zip(header.fields, header.types)):
            col = table.column(index)
            found = _out_of_range(col, zeek_type, name, self.ctx.conn)
            if found is None:
                continue
            mask, why = found
            if bad is None:
                bad = np.zeros(table.num_rows, dtype=bool)
                pieces = seg.split(b"\n")
            assert pieces is not None
            for i in np.flatnonzero(mask & ~bad):
                value = col[int(i)].as_py()
                self.ctx.reject(
                    self.path, int(lines[i]), name, f"invalid {zeek_type} value {show(value)} ({why})", pieces[int(i)]
                )
            bad |= mask
        if bad is None:
            return table, lines
        keep = ~bad
        if not keep.any():
            return None, lines[:0]
        return table.filter(pa.array(keep)), lines[keep]


def _guess_field_type(name: str) -> str:
    return guess_type(name, "")


def _split_header(value: str, separator: str) -> tuple[list[str], bool]:
    names = value.split(separator)
    if any("   " in n for n in names):
        return [p for n in names for p in n.split("   ")], True
    return names, False


def _as_zeek_would_write(seg: bytes) -> bytes:
    """Lines as Zeek's writer would have written them: CRLF as LF, a bare CR and bytes that are
    not UTF-8 escaped as ``\\xHH`` (Zeek escapes both), so the value keeps them and Arrow reads it."""
    if b"\r" in seg:
        seg = seg.replace(b"\r\n", b"\n")
        if b"\r" in seg:
            seg = seg.replace(b"\r", b"\\x0d")
    if not seg.isascii():
        try:
            seg.decode("utf-8")
        except UnicodeDecodeError:
            seg = seg.decode("utf-8", "backslashreplace").encode("utf-8")
    return seg


def _field_may_be_hex(arr: np.ndarray, starts: np.ndarray, seps: np.ndarray, header: LogHeader) -> bool:
    """True when a field may start with ``0x`` (after spaces, which Arrow trims): Arrow reads that
    as a hexadecimal integer, Zeek never writes one, so the segment takes the checked path."""
    assert header.types is not None
    if not len(arr) or not any(t in INT_TYPES for t in header.types):
        return False
    if bytes(arr[:2]).lower() == b"0x":
        return True
    xs = np.concatenate([np.flatnonzero(arr == 0x78), np.flatnonzero(arr == 0x58)])  # x, X
    xs = xs[xs >= 2]
    zero = xs[arr[xs - 1] == 0x30]
    before = arr[zero - 2]
    sep = ord(header.separator)
    return bool(((before == sep) | (before == 0x0A) | (before == 0x20)).any())


def _read_tsv(seg: bytes, header: LogHeader, typed: bool) -> pa.Table:
    assert header.fields is not None and header.types is not None
    column_types = {}
    for name, zeek_type in zip(header.fields, header.types):
        scalar = typed and not is_container(zeek_type)
        column_types[name] = arrow_type(zeek_type) if scalar else pa.string()
    skip = 0
    if seg.startswith(_BOM):  # Arrow drops a byte order mark at the start of its input: a value's first character
        seg, skip = b"-\n" + seg, 1
    return pacsv.read_csv(
        io.BytesIO(seg),
        read_options=pacsv.ReadOptions(
            column_names=header.fields, block_size=max(len(seg) + 1, 1 << 20), skip_rows=skip
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=header.separator, quote_char=False, double_quote=False, escape_char=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=column_types,
            null_values=[header.unset_field],
            strings_can_be_null=True,
            true_values=["T", "1"],
            false_values=["F", "0"],
        ),
    )


_ARROW_COLUMN = re.compile(r"column #(\d+)")


def _arrow_problem(error: Exception, header: LogHeader) -> tuple[str | None, str]:
    """(field, reason) from Arrow's message about one line."""
    message = str(error)
    m = _ARROW_COLUMN.search(message)
    field = None
    if m and header.fields is not None and int(m.group(1)) < len(header.fields):
        field = header.fields[int(m.group(1))]
    reason = message.split(": ", 1)[1] if m and ": " in message else message
    return field, f"cannot parse: {reason[:200]}"


# What Zeek writes, as RE2 patterns over a whole value. Integers: decimal digits, a minus sign for
# ``int`` (a count's range is checked after); Arrow also trims spaces, so the check allows them.
_INT_TEXT = r"^ *-?[0-9]+ *$"

_FLOAT_TEXT = r"^ *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *$|^ *[+-]?(?i:inf|infinity|nan) *$"

_INT64_DIGITS = "9223372036854775807"


def _no_reason(value: Any) -> str:
    return ""


def _invalid_text(col: pa.ChunkedArray, zeek_type: str) -> tuple[np.ndarray, Any] | None:
    """(mask, reason(value)) of the text values that are not a valid ``zeek_type``, or None."""
    if zeek_type in INT_TYPES:
        ok = pc.match_substring_regex(col, _INT_TEXT)
        digits = pc.utf8_trim(col, " ")
        digits = pc.if_else(pc.starts_with(digits, "-"), pc.utf8_slice_codeunits(digits, 1), digits)
        digits = pc.utf8_ltrim(digits, "0")
        length = pc.utf8_length(digits)
        big = pc.or_(pc.greater(length, 19), pc.and_(pc.equal(length, 19), pc.greater(digits, _INT64_DIGITS)))
        bad = pc.or_(pc.invert(ok), pc.and_(ok, big))
        mask = pc.fill_null(bad, False).to_numpy(zero_copy_only=False)
        if not mask.any():
            return None
        return mask, lambda v: " (out of range)" if re.fullmatch(r" *-?[0-9]+ *", v or "") else ""
    if zeek_type in FLOAT_TYPES:
        bad = pc.invert(pc.match_substring_regex(col, _FLOAT_TEXT))
    elif zeek_type == "bool":
        bad = pc.and_(pc.is_valid(col), pc.invert(pc.is_in(col, value_set=pa.array(["T", "F", "1", "0"]))))
    else:
        return None
    mask = pc.fill_null(bad, False).to_numpy(zero_copy_only=False)
    return (mask, _no_reason) if mask.any() else None


def _out_of_range(col: pa.ChunkedArray, zeek_type: str, name: str, conn: bool) -> tuple[np.ndarray, str] | None:
    """(mask, why) of the typed values outside ``zeek_type``'s range, or None when all fit."""
    if col.null_count == len(col):
        return None
    if zeek_type in ("count", "port") and pa.types.is_integer(col.type):
        lo, hi = pc.min_max(col).values()
        top = PORT_MAX if zeek_type == "port" else INT64_MAX
        if lo.as_py() >= 0 and hi.as_py() <= top:
            return None
        bad = pc.or_(pc.less(col, 0), pc.greater(col, top))
        why = "not a port number, 0-65535" if zeek_type == "port" else "a count is never negative"
    elif zeek_type in ("time", "interval") and pa.types.is_floating(col.type):
        values = col.to_numpy()  # (numpy: one pass, where Arrow took six calls a column)
        with np.errstate(invalid="ignore"):
            if zeek_type == "time":
                ok = (values >= TIME_MIN) & (values < TIME_MAX)  # false for nan; inf is out of range
                why = "not a time between 1970 and 9999"
            elif conn and name in NONNEGATIVE_FIELDS:
                ok = (values >= 0.0) & (values < np.inf)
                why = "not a finite duration of 0 or more"
            else:
                ok = np.isfinite(values)
                why = "not finite"
        mask = ~ok
        if col.null_count:
            mask &= ~col.is_null().to_numpy(zero_copy_only=False)
        return (mask, why) if mask.any() else None
    elif zeek_type == "addr" and pa.types.is_string(col.type):
        mask = _bad_addrs(col)
        return None if mask is None else (mask, "not an IPv4 or IPv6 address")
    else:
        return None
    mask = pc.fill_null(bad, False).to_numpy(zero_copy_only=False)
    return (mask, why) if mask.any() else None


_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"

_IPV4_TEXT = rf"^{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}$"


def _bad_addrs(col: pa.ChunkedArray) -> np.ndarray | None:
    """Mask of the values that are not an address, each distinct value checked once (IPv4 in Arrow)."""
    distinct = pc.drop_null(pc.unique(col))
    v4 = pc.match_substring_regex(distinct, _IPV4_TEXT)
    if pc.all(v4).as_py():
        return None
    others = distinct.filter(pc.invert(v4)).to_pylist()
    bad = [v for v in others if not valid_addr(v)]
    if not bad:
        return None
    return pc.fill_null(pc.is_in(col, value_set=pa.array(bad, pa.string())), False).to_numpy(zero_copy_only=False)


KNOWN_FIELDS = frozenset(CONN_TYPES) | frozenset(KNOWN_EXTRA_TYPES)
"""The columns zeek-ml reads for their meaning: in a conn read their text is always valid Unicode."""


def _replace_undecodable(value: Any) -> Any:
    """A string holding undecodable bytes (as surrogates) with each such byte as U+FFFD."""
    if isinstance(value, str) and not _encodable(value):
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_replace_undecodable(v) for v in value]
    return value


def _postprocess(
    table: pa.Table,
    header: LogHeader,
    stats: ReadStats | None,
    known: frozenset[str] = frozenset(),
    escapes: bool = True,
) -> tuple[pa.Table, dict[str, list[Any]]]:
    """Empty markers, escapes and containers, column by column, vectorised; long values capped
    (``stats`` is given when a line is long enough to hold one, and counts them).

    Bytes that are not UTF-8 (Zeek's ``\\xHH``) stay exactly as they were (surrogates, PEP 383) in
    every column but those in ``known`` (in a conn read: conn.log's own fields and labels, whose
    values zeek-ml uses as text, and where Zeek never writes such bytes): there each becomes U+FFFD.
    ``escapes``: whether the lines hold a backslash at all (without one no value needs unescaping).
    """
    assert header.types is not None
    objects: dict[str, list[Any]] = {}
    for index, zeek_type in enumerate(header.types):
        name = table.column_names[index]
        col = table.column(index)
        if is_container(zeek_type):
            arr, values = _container(col, zeek_type, header, stats, replace=name in known, escapes=escapes)
            if values is not None:
                objects[name] = values
                arr = pa.nulls(len(col), pa.list_(pa.string()))
            table = table.set_column(index, name, arr)
            continue
        if not pa.types.is_string(col.type):
            continue
        empty = pc.equal(col, header.empty_field)
        if pc.any(empty).as_py():
            col = pc.if_else(empty, "", col)
        escaped = pc.match_substring(col, "\\") if escapes else None
        if escaped is not None and pc.any(escaped).as_py():
            values = col.to_pylist()
            for i in np.flatnonzero(escaped.to_numpy(zero_copy_only=False)):
                values[i] = unescape(values[i])
            if stats is not None:
                values = [_cap(v, stats) for v in values]
            try:
                col = pa.array(values, pa.string())
            except (pa.ArrowInvalid, UnicodeEncodeError):
                if name in known:
                    col = pa.array([_replace_undecodable(v) for v in values], pa.string())
                else:
                    objects[name] = values  # undecodable bytes: kept as surrogates
        elif stats is not None:
            long = pc.fill_null(pc.greater(pc.utf8_length(col), MAX_VALUE_CHARS), False)
            n = pc.sum(long).as_py() or 0
            if n:
                stats.capped += n
                col = pc.if_else(long, pc.utf8_slice_codeunits(col, 0, MAX_VALUE_CHARS), col)
        table = table.set_column(index, name, col)
    return table, objects


def _cap(value: Any, stats: ReadStats) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        stats.capped += 1
        return value[:MAX_VALUE_CHARS]
    return value


def _container(
    col: pa.ChunkedArray,
    zeek_type: str,
    header: LogHeader,
    stats: ReadStats | None = None,
    replace: bool = False,
    escapes: bool = True,
) -> tuple[pa.Array, list[Any] | None]:
    """``a,b`` -> ["a", "b"]; ``(empty)`` -> []; ``-`` -> null; elements unescaped and typed.

    Returns the Arrow array, or Python lists where elements hold undecodable bytes. A value
    longer than :data:`MAX_VALUE_CHARS` keeps the elements that fit (counted in ``stats``).
    """
    inner = element_type(zeek_type)
    if stats is None and not (escapes and pc.any(pc.match_substring(col, "\\")).as_py()):
        # Nothing to unescape or cap: split in Arrow (the same lists as the loop below makes)
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            lists = pc.split_pattern(col, pattern=header.set_separator)
            is_empty = pc.equal(col, header.empty_field)
            arr = pc.if_else(is_empty, pa.scalar([], lists.type), lists) if pc.any(is_empty).as_py() else lists
            if inner in FLOAT_TYPES or inner in INT_TYPES or inner == "bool":
                arr = arr.cast(pa.list_(arrow_type(inner)))
            return arr, None
    values = col.to_pylist()
    out: list[list[Any] | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif v == header.empty_field:
            out.append([])
        else:
            if stats is not None and len(v) > MAX_VALUE_CHARS:
                stats.capped += 1
                v = v[: MAX_VALUE_CHARS + 1].rsplit(header.set_separator, 1)[0][:MAX_VALUE_CHARS]
            out.append([unescape(e) for e in v.split(header.set_separator)])
    try:
        try:
            arr = pa.array(out, pa.list_(pa.string()))
        except UnicodeEncodeError:
            if not replace:
                raise
            out = [_replace_undecodable(v) for v in out]
            arr = pa.array(out, pa.list_(pa.string()))
        if inner in FLOAT_TYPES or inner in INT_TYPES or inner == "bool":
            arr = arr.cast(pa.list_(arrow_type(inner)))
        return arr, None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeEncodeError):
        return pa.nulls(len(out), pa.list_(pa.string())), out


JSON_FAST = os.environ.get("ZEEK_ML_JSON_FAST", "1") != "0"
"""Read plain blocks of Zeek JSON columnar (:func:`json_block_table`); tests set it False (or the
environment ``ZEEK_ML_JSON_FAST=0``) to force the line-by-line path the fast one must equal."""

_KNOWN_JSON_SCHEMA = pa.schema(
    [(name, arrow_type(t)) for name, t in {**CONN_TYPES, **KNOWN_EXTRA_TYPES}.items() if not is_container(t)]
    + [(name, pa.list_(pa.string())) for name, t in CONN_TYPES.items() if t == "set[string]"]
)
"""The columns :func:`json_block_table` parses with a fixed type: a value of any other JSON type
makes Arrow refuse the block, which then goes line by line."""

_JSON_PARSE = pajson.ParseOptions(
    explicit_schema=_KNOWN_JSON_SCHEMA, unexpected_field_behavior="infer", newlines_in_values=False
)

_JSON_READ = pajson.ReadOptions(use_threads=False, block_size=1 << 22)

_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def json_block_table(buf: bytes, conn: bool = True) -> tuple[pa.Table, dict[str, str]] | None:
    """A chunk of Zeek JSON lines as one Arrow table and its columns' Zeek types, parsed column by
    column (``pyarrow.json``, vectorised checks), or None when anything in it is unusual.

    The result equals the line-by-line path's exactly, so the chunk must be plain: one object on
    every line and nothing else (no blank line, whitespace, ``\\r``, BOM or NUL), valid UTF-8, no
    ``null``, no backslash in a decoded string, no surrogate escape, no line longer than
    :data:`MAX_VALUE_CHARS`, every value of the JSON type and range its Zeek type takes (as
    :func:`json_value_problems` checks it), ``ts`` in epoch seconds, no ``-0`` float (Python reads
    the integer ``-0`` as ``0``), and columns zeek-ml does not know only strings, booleans,
    integers or lists of strings. Anything else (a malformed line, a value to reject, ISO 8601 or
    millisecond times) gives None, and the caller reads the chunk line by line with today's
    per-line rejects.
    """
    if not buf.startswith(b"{") or not buf.endswith(b"}\n"):
        return None
    # (`b"null" in buf` and `b"\\u" in buf` each took longer than a tenth of Arrow's parse: Python's
    # substring search is slow on JSON text; a one-byte search and numpy are not)
    escapes = b"\\" in buf
    if escapes and _SURROGATE_BYTES.search(buf):
        return None
    data = np.frombuffer(buf, dtype=np.uint8)
    if _contains(data, b"null"):
        return None
    ends = np.flatnonzero(data == 10)  # every line: "{" first, "}" last, not too long
    n = len(ends)
    if not (data[ends - 1] == 125).all() or not (data[ends[:-1] + 1] == 123).all():
        return None
    if int(ends[0]) >= MAX_VALUE_CHARS or (n > 1 and int(np.diff(ends).max()) > MAX_VALUE_CHARS):
        return None
    if (data >= 0x80).any():  # Arrow does not check UTF-8; Python reads bad bytes as Zeek's \\xHH
        try:
            buf.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        table = pajson.read_json(pa.py_buffer(buf), read_options=_JSON_READ, parse_options=_JSON_PARSE)
    except (pa.ArrowException, ValueError, UnicodeError, OverflowError):
        return None
    if table.num_rows != n:  # two objects on one line: an error line by line
        return None
    first: dict[str, int] = {}
    types: dict[str, str] = {}
    for name in table.column_names:
        col = table.column(name)
        if col.null_count == n:
            continue
        zeek_type = CONN_TYPES.get(name) or KNOWN_EXTRA_TYPES.get(name)
        if zeek_type is None:
            zeek_type = _json_guess(col)
            if zeek_type is None:
                return None
        if not _json_column_ok(col, zeek_type, name, conn, escapes):
            return None
        types[name] = zeek_type
        first[name] = int(np.argmax(col.is_valid().to_numpy(zero_copy_only=False)))
    if not types:  # only empty objects: left to the line-by-line path
        return None
    # Columns in the order the line-by-line path sees them: by first line, then key order on that line.
    order: dict[str, None] = {}
    starts = np.concatenate(([0], ends[:-1] + 1))
    for row in sorted(set(first.values())):
        obj = json.loads(buf[starts[row] : ends[row]])
        order.update((k, None) for k in obj if k in types and k not in order)
    if len(order) != len(types):
        return None
    table = table.select(list(order))
    return table, {name: types[name] for name in order}


def _contains(data: np.ndarray, needle: bytes) -> bool:
    """Whether the bytes ``data`` (uint8) hold ``needle`` (``needle in bytes(data)``, vectorised)."""
    at = np.flatnonzero(data[: max(0, len(data) - len(needle) + 1)] == needle[0])
    for k in range(1, len(needle)):
        at = at[data[at + k] == needle[k]]
    return len(at) > 0


def _json_guess(col: pa.ChunkedArray) -> str | None:
    """The Zeek type :func:`guess_type` gives a column zeek-ml does not know, where Arrow's type
    says it for certain (strings, booleans, integers of one sign, lists of strings); else None."""
    if pa.types.is_string(col.type):
        return "string"
    if pa.types.is_boolean(col.type):
        return "bool"
    if pa.types.is_int64(col.type):
        values = col.drop_null()
        if values[0].as_py() < 0:
            return "int"
        return "count" if pc.min(values).as_py() >= 0 else None
    if col.type == pa.list_(pa.string()):
        return "vector[string]"
    return None


def _json_column_ok(col: pa.ChunkedArray, zeek_type: str, name: str, conn: bool, escapes: bool = True) -> bool:
    """True when every value of a column read by Arrow is one :func:`json_value_problems` accepts
    and the line-by-line path keeps unchanged (no escape to undo, no ``-0.0``, ``ts`` in seconds).
    ``escapes``: whether the chunk's text holds a backslash at all (without one no string needs looking at)."""
    if zeek_type in INT_TYPES:
        lo = 0 if zeek_type in ("port", "count") else INT64_MIN
        hi = PORT_MAX if zeek_type == "port" else INT64_MAX
        low, high = pc.min_max(col).values()
        return lo <= low.as_py() and high.as_py() <= hi
    if zeek_type in FLOAT_TYPES:
        values = col.drop_null().to_numpy()
        if not np.isfinite(values).all() or (np.signbit(values) & (values == 0)).any():
            return False
        if zeek_type == "time":  # integer milliseconds or out of range: Python decides, line by line
            return bool(((values >= TIME_MIN) & (values < 100_000_000_000)).all())
        return not (conn and name in NONNEGATIVE_FIELDS) or bool((values >= 0).all())
    if zeek_type == "bool":
        return True
    if escapes:
        if is_container(zeek_type):
            col = pc.list_flatten(col)
        if pc.any(pc.match_substring(col, "\\")).as_py():
            return False
    return not (zeek_type == "addr" and _bad_addrs(col) is not None)


class JsonParser:
    """Zeek JSON logs: one flat object a line, unset fields omitted."""

    def __init__(self, path: str, ctx: ReadContext):
        self.path = path
        self.ctx = ctx

    def feed(self, buf: bytes, first_line: int, final: bool) -> Iterator[pd.DataFrame]:
        """Frames of a chunk of complete lines: the columnar fast path when the whole chunk is plain
        Zeek JSON (:func:`json_block_table`), else line by line with per-line rejects."""
        if JSON_FAST:
            fast = json_block_table(buf, self.ctx.conn)
            if fast is not None:
                yield _finish_frame(fast[0], fast[1], {}, self.ctx, self.path, None)
                return
        yield from self._feed_lines(buf, first_line, final)

    def _feed_lines(self, buf: bytes, first_line: int, final: bool) -> Iterator[pd.DataFrame]:
        """Today's line-by-line path: every line decoded and checked on its own (the reference)."""
        records: list[dict[str, Any]] = []
        lines: list[int] = []
        raws: list[bytes] = []
        pieces = buf.split(b"\n")
        if pieces and not pieces[-1]:
            pieces.pop()
        last = len(pieces) - 1
        for i, raw in enumerate(pieces):
            obj, field, reason = decode_json_line(raw)
            if reason is not None:
                if field is None and final and i == last:
                    reason += " (last line of the file: cut short?)"
                self.ctx.reject(self.path, first_line + i, field, reason, raw)
                continue
            if obj is None:
                self.ctx.stats.blank += 1
                continue
            if len(raw) > MAX_VALUE_CHARS:
                cap_json_values(obj, self.ctx.stats)
            records.append(obj)
            lines.append(first_line + i)
            raws.append(raw)
        if records:
            frame = self._frame(records, lines, raws)
            if frame is not None:
                yield frame

    def _frame(self, records: list[dict[str, Any]], lines: list[int], raws: list[bytes]) -> pd.DataFrame | None:
        names: dict[str, None] = {}
        for r in records:
            for k in r:
                names.setdefault(k, None)
        types: dict[str, str] = {}
        columns: dict[str, list[Any]] = {}
        bad = np.zeros(len(records), dtype=bool)
        for name in names:
            values = [r.get(name) for r in records]
            known = CONN_TYPES.get(name) or KNOWN_EXTRA_TYPES.get(name)
            if known is not None:
                zeek_type = known
                for i, reason in json_value_problems(values, zeek_type, name, self.ctx.conn):
                    if not bad[i]:
                        bad[i] = True
                        self.ctx.reject(self.path, lines[i], name, reason, raws[i])
            else:  # a column zeek-ml does not know: typed by its values, passed through, never a reject
                sample = next((v for v in values if v is not None), None)
                zeek_type = guess_type(name, sample)
                if json_value_problems(values, zeek_type, name, False):
                    zeek_type = "string"
                    values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            types[name] = zeek_type
            columns[name] = values
        keep = np.flatnonzero(~bad)
        if not len(keep):
            return None
        arrays: dict[str, pa.Array] = {}
        objects: dict[str, list[Any]] = {}
        for name, values in columns.items():
            if bad.any():
                values = [values[i] for i in keep]
            arr, obj = _json_column(values, types[name], replace=self.ctx.conn and name in KNOWN_FIELDS)
            if obj is not None:
                objects[name] = obj
                arr = pa.nulls(len(values), pa.string())
            arrays[name] = arr
        if not arrays:  # every field unset on every line: rows without columns
            arrays["__rows__"] = pa.nulls(len(keep))
        table = pa.table(arrays)
        return _finish_frame(table, types, objects, self.ctx, self.path, None)


_NONE = type(None)


def json_value_problems(values: list[Any], zeek_type: str, name: str = "", conn: bool = True) -> list[tuple[int, str]]:
    """(index, reason) of each decoded JSON value that is not a valid ``zeek_type`` (None: unset).

    Integers must be JSON integers in range (a count 0 to 2^63-1, a port 0 to 65535), never
    ``true``, ``7.0`` or ``"7"``; ``time`` epoch seconds, integer milliseconds or ISO 8601
    text between 1970 and 9999; ``interval`` a finite number (``duration`` not negative in a
    conn log); ``bool`` true/false; text types strings (an ``addr`` a real address); a set or
    vector a list of valid elements.
    """
    present = [v for v in values if v is not None]
    if not present:
        return []
    kinds = set(map(type, present))
    out: list[tuple[int, str]] = []

    def flag(check: Any, why: str = "") -> list[tuple[int, str]]:
        for i, v in enumerate(values):
            if v is not None and not check(v):
                out.append((i, f"invalid {zeek_type} value {show(v)}{why(v) if callable(why) else why}"))
        return out

    if zeek_type in INT_TYPES:
        lo, hi = {"port": (0, PORT_MAX), "count": (0, INT64_MAX)}.get(zeek_type, (INT64_MIN, INT64_MAX))
        if kinds == {int} and lo <= min(present) and max(present) <= hi:
            return []
        return flag(
            lambda v: type(v) is int and lo <= v <= hi,
            lambda v: " (out of range)" if type(v) is int else "",
        )
    if zeek_type == "time":
        if not kinds <= {int, float, str}:
            flag(lambda v: type(v) in (int, float, str))
        secs = json_times(values)
        ok = (secs >= TIME_MIN) & (secs < TIME_MAX)  # NaN (unparsable) is not ok
        for i in np.flatnonzero(~ok):
            v = values[i]
            if v is None or type(v) not in (int, float, str):
                continue
            why = "not ISO 8601" if isinstance(v, str) and np.isnan(secs[i]) else "not a time between 1970 and 9999"
            out.append((int(i), f"invalid time value {show(v)} ({why})"))
        out.sort()
        return out
    if zeek_type in FLOAT_TYPES:
        finite = zeek_type == "interval"
        nonneg = conn and name in NONNEGATIVE_FIELDS

        def number_ok(v: Any) -> bool:
            if type(v) not in (int, float):
                return False
            try:
                x = float(v)
            except OverflowError:
                return False
            return (not finite or math.isfinite(x)) and (not nonneg or x >= 0)

        if kinds <= {int, float} and all(map(number_ok, present)):
            return []
        return flag(number_ok, lambda v: " (out of range)" if type(v) in (int, float) else "")
    if zeek_type == "bool":
        return [] if kinds == {bool} else flag(lambda v: type(v) is bool)
    if is_container(zeek_type):
        inner = element_type(zeek_type)
        if inner in FLOAT_TYPES or inner in INT_TYPES or inner == "bool" or is_container(inner):
            return flag(lambda v: type(v) is list and _NONE not in map(type, v) and not json_value_problems(v, inner))
        # text elements (set[string], the common case): one pass over the element types
        return flag(lambda v: type(v) is list and all(type(e) is str for e in v))
    # text types: string, enum, addr, subnet, ...
    if kinds != {str}:
        flag(lambda v: type(v) is str)
    if zeek_type == "addr":
        bad_addrs = {v for v in present if type(v) is str and not valid_addr(v)}
        if bad_addrs:
            for i, v in enumerate(values):
                if type(v) is str and v in bad_addrs:
                    out.append((i, f"invalid addr value {show(v)} (not an IPv4 or IPv6 address)"))
            out.sort()
    return out


def json_times(values: list[Any]) -> np.ndarray:
    """Epoch seconds from Zeek's JSON ``ts``: epoch seconds, integer ms, or ISO 8601 (NaN where none)."""
    out = np.full(len(values), np.nan)
    strings: list[int] = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int):
            # LogAscii::json_timestamps=JSON::TS_MILLIS writes integer milliseconds.
            with contextlib.suppress(OverflowError):
                out[i] = v / 1000.0 if abs(v) >= 100_000_000_000 else float(v)
        elif isinstance(v, float):
            out[i] = v
        elif isinstance(v, str):
            strings.append(i)
    if strings:
        texts = [values[i] for i in strings]
        try:
            parsed = pd.to_datetime(pd.Series(texts, dtype=object), utc=True, format="ISO8601", errors="coerce")
        except (ValueError, OverflowError, TypeError):  # one odd text spoils the vectorised parse: one by one
            parsed = pd.Series([_one_time(t) for t in texts], dtype="datetime64[ns, UTC]")
        ns = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        secs = ns / 1e9
        secs[parsed.isna().to_numpy()] = np.nan
        out[np.array(strings)] = secs
    return out


def _one_time(text: str) -> Any:
    try:
        return pd.to_datetime(text, utc=True, format="ISO8601")
    except (ValueError, OverflowError, TypeError):
        return pd.NaT


def _json_column(values: list[Any], zeek_type: str, replace: bool = False) -> tuple[pa.Array, list[Any] | None]:
    """A column's values as an Arrow array, or as Python objects where they hold undecodable bytes
    (``replace``: those bytes become U+FFFD instead, see :func:`_postprocess`)."""
    if zeek_type == "time":
        times = json_times(values)
        return pa.array(times, pa.float64(), mask=np.array([v is None for v in values], dtype=bool)), None
    if zeek_type in FLOAT_TYPES:
        try:
            return pa.array(values, pa.float64()), None
        except pa.ArrowInvalid:  # an integer above 2^53: Arrow will not round it, Python does
            return pa.array([None if v is None else float(v) for v in values], pa.float64()), None
    if zeek_type in INT_TYPES:
        return pa.array(values, pa.int64()), None
    if zeek_type == "bool":
        return pa.array(values, pa.bool_()), None
    if is_container(zeek_type):
        items = [None if v is None else [unescape(e) if isinstance(e, str) else e for e in v] for v in values]
        inner = element_type(zeek_type)
        try:
            return pa.array(items, pa.list_(arrow_type(inner))), None
        except UnicodeEncodeError:
            if replace:
                return pa.array([_replace_undecodable(v) for v in items], pa.list_(pa.string())), None
            return pa.array([None] * len(items), pa.list_(pa.string())), items
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return pa.array([None] * len(items), pa.list_(pa.string())), items
    strings = [None if v is None else unescape(v) if isinstance(v, str) else str(v) for v in values]
    try:
        return pa.array(strings, pa.string()), None
    except (pa.ArrowInvalid, UnicodeEncodeError):
        if replace:
            return pa.array([_replace_undecodable(v) for v in strings], pa.string()), None
        return pa.nulls(len(strings), pa.string()), strings
