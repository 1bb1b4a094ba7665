"""Stream Zeek logs (TSV or JSON lines, plain or gzip) as bounded pandas batches.

Columns are mapped by the ``#fields`` header, never by position. Every batch of a
conn log carries conn.log's standard columns (null where a log lacks one) first,
then whatever extra columns the log has (labels, ``community_id``, ``ip_proto``,
``id.ctx.*``...). A malformed line is reported with file, line number, field and
reason, kept aside if asked, and the run goes on, unless ``strict``.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from zeek_ml.zeeklog.escape import unescape
from zeek_ml.zeeklog.schema import (
    CONN_FIELDS,
    CONN_TYPES,
    FLOAT_TYPES,
    INT_TYPES,
    arrow_type,
    element_type,
    guess_type,
    is_container,
    pandas_dtype,
    to_pandas,
)
from zeek_ml.zeeklog.writer import zeek_time

DEFAULT_BATCH_BYTES = 8 << 20
"""Bytes of log text per batch: about 50k conn rows, so memory stays flat."""


class SourceError(OSError):
    """An input cannot be read at all (missing, unreadable, not a Zeek log)."""


class MalformedLineError(ValueError):
    """A malformed line in strict mode."""


@dataclass
class Reject:
    """One malformed line: where it is, which field, why, and its raw bytes."""

    file: str
    line: int
    field: str | None
    reason: str
    raw: bytes = b""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: field {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


@dataclass
class ReadStats:
    """Counters for a read: what was seen, kept and set aside."""

    files: int = 0
    lines: int = 0
    records: int = 0
    rejected: int = 0
    blank: int = 0
    comments: int = 0
    ignored_events: int = 0
    """Suricata eve events that are not flows (alert, dns, stats...): read, counted, not scored."""


class RejectLog:
    """Counts malformed lines, keeps the first few for the report, optionally writes all.

    The reject file holds one JSON object a line: file, line, field, reason, and
    the raw line (undecodable bytes as ``\\xHH``), so nothing is lost.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        strict: bool = False,
        keep: int = 20,
        target: IO[bytes] | None = None,
    ):
        self.strict = strict
        self.keep = keep
        self.count = 0
        self.first: list[Reject] = []
        # ``target``: an open binary file to append to (the live watcher's durable output).
        self._own = target is None
        self._out: IO[bytes] | None = open(path, "wb") if path else target  # noqa: SIM115

    def add(self, reject: Reject) -> None:
        self.count += 1
        if len(self.first) < self.keep:
            self.first.append(reject)
        if self._out is not None:
            row = {
                "file": reject.file,
                "line": reject.line,
                "field": reject.field,
                "reason": reject.reason,
                "raw": reject.raw.decode("utf-8", "backslashreplace"),
            }
            self._out.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape"))
            self._out.flush()
        if self.strict:
            raise MalformedLineError(str(reject))

    def close(self) -> None:
        if self._out is not None and self._own:
            self._out.close()
        self._out = None


# --------------------------------------------------------------------------- sources

_CONN_NAME = re.compile(r"(?:^|__|[._-])conn(?:[._-]|__|$)")
_LOG_SUFFIX = re.compile(r"\.(?:log|json|tsv|txt)(?:\.gz)?$|\.gz$")


SOURCES = ("auto", "zeek", "suricata")
"""What a read takes: ``auto`` (by content), Zeek logs only, or Suricata eve.json only."""

_EVE_NAME = re.compile(r"(?:^|__|[._-])eve(?:[._-][^/]*)?\.json(?:[.-][\d:T_-]+)*(?:\.gz)?$")
"""eve.json, eve.json.1, eve.json.1.gz, eve-2024-01-01-10:00.json, eve.json-20240101.gz, x__eve.json..."""


def expand_sources(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], log_path: str = "conn", source: str = "auto"
) -> list[str]:
    """Files, directories and globs -> files in time order.

    A directory contributes the files whose name says they are ``log_path`` logs
    (``conn.log``, ``conn.2024-01-01-10-00-00.log``, ``conn.10:00:00-11:00:00.log.gz``,
    ``conn__<open>__<close>__.log``); files are ordered by their ``#open`` time,
    else their first ``ts``. Explicit file names are kept as given, in that order
    relative to the groups they came in. With ``source="suricata"`` a directory contributes
    its eve files instead (``eve.json``, ``eve.json.1``, ``eve-*.json``, ``.gz``), ordered by
    their first event's time; with ``auto`` it contributes its conn logs, else its eve files.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    name_re = _CONN_NAME if log_path == "conn" else re.compile(rf"(?:^|__|[._-]){re.escape(log_path)}(?:[._-]|__|$)")
    files: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            names = [n for n in os.listdir(item) if os.path.isfile(os.path.join(item, n))]
            found = []
            if source != "suricata":
                found = [os.path.join(item, n) for n in names if name_re.search(n) and _LOG_SUFFIX.search(n)]
            if source == "suricata" or (source == "auto" and not found and log_path == "conn"):
                found = [os.path.join(item, n) for n in names if _EVE_NAME.search(n)]
            if not found:
                what = "eve.json files" if source == "suricata" else f"{log_path} logs"
                raise SourceError(f"{item}: no {what} in this directory")
            files.extend(sorted(found, key=_time_key))
        elif os.path.exists(item):
            files.append(item)
        elif glob.has_magic(item):
            found = [p for p in glob.glob(item) if os.path.isfile(p)]
            if not found:
                raise SourceError(f"{item}: no file matches")
            files.extend(sorted(found, key=_time_key))
        else:
            raise SourceError(f"{item}: no such file or directory")
    return files


def sniff_format(path: str) -> tuple[str, str] | None:
    """How a log is written, from its first line: (``tsv``/``json``/``eve``, JSON ``ts`` form).

    The ``ts`` form is what ``LogAscii::json_timestamps`` made: ``epoch`` (seconds), ``millis``
    (integer milliseconds) or ``iso8601`` (text); ``epoch`` for TSV. None when the file cannot be
    read or has no line yet. A notice log written to match the sensor uses both.
    """
    from zeek_ml.suricata import looks_like_eve

    try:
        with _open_binary(path) as f:
            head = f.read(1 << 16)
    except (OSError, EOFError):
        return None
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return None
    if looks_like_eve(head):
        return ("eve", "epoch")
    if not head.startswith(b"{"):
        return ("tsv", "epoch")
    try:
        ts = json.loads(head.split(b"\n", 1)[0]).get("ts")
    except (ValueError, AttributeError):
        ts = None
    if isinstance(ts, str):
        return ("json", "iso8601")
    if isinstance(ts, int) and not isinstance(ts, bool) and abs(ts) >= 100_000_000_000:
        return ("json", "millis")
    return ("json", "epoch")


def _time_key(path: str) -> tuple[float, str]:
    """(``#open`` time, else first ``ts``, else +inf; name) for ordering rotated logs."""
    try:
        with _open_binary(path) as f:
            head = f.read(1 << 16)
    except (OSError, EOFError):
        return (float("inf"), path)
    first_ts = None
    for line in head.split(b"\n")[:-1]:
        line = line.strip()
        if line.startswith(b"#open"):
            opened = zeek_time(line[5:].decode("ascii", "replace"))
            if opened is not None:
                return (opened, path)
        elif line and not line.startswith(b"#") and first_ts is None:
            first_ts = _first_ts(line)
            if first_ts is not None and not head.lstrip().startswith(b"#"):
                break
    return (first_ts if first_ts is not None else float("inf"), path)


def _first_ts(line: bytes) -> float | None:
    if line.startswith(b"{"):
        try:
            obj = json.loads(line)
            value = obj.get("ts")
            if value is None:  # Suricata eve: the event's time
                value = obj.get("timestamp")
        except (ValueError, AttributeError):
            return None
        ts = _json_times([value])[0]
        return None if np.isnan(ts) else float(ts)
    with contextlib.suppress(ValueError):
        return float(line.split(b"\t", 1)[0])
    return None


def _open_binary(path: str) -> IO[bytes]:
    f = open(path, "rb")  # noqa: SIM115
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f


# --------------------------------------------------------------------------- reading


@dataclass
class _Header:
    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    path: str | None = None
    open: str | None = None
    fields: list[str] | None = None
    types: list[str] | None = None
    three_space: bool = False  # IoT-23: the last columns are split by three spaces


class _Context:
    """What one read shares across files: options, stats, the reject log."""

    def __init__(
        self,
        rejects: RejectLog,
        stats: ReadStats,
        batch_bytes: int,
        conn: bool,
        fields: list[str] | None,
        source: str = "auto",
    ):
        self.rejects = rejects
        self.stats = stats
        self.batch_bytes = batch_bytes
        self.conn = conn
        self.fields = fields
        self.source = source  # auto | zeek | suricata: what make_parser may choose
        self.local_nets: Any = None  # Suricata eve: sets local_orig/local_resp (Zeek's Site::local_nets)

    def reject(self, file: str, line: int, fld: str | None, reason: str, raw: bytes = b"") -> None:
        self.stats.rejected += 1
        self.rejects.add(Reject(file, line, fld, reason, raw))


def iter_batches(
    sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    strict: bool = False,
    rejects: RejectLog | None = None,
    stats: ReadStats | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    conn: bool = True,
    fields: list[str] | None = None,
    log_path: str = "conn",
    source: str = "auto",
    local_nets: Any = None,
) -> Iterator[pd.DataFrame]:
    """Yield DataFrames of Zeek log records from files, directories or globs.

    ``conn`` puts conn.log's standard columns first (null where absent).
    ``fields`` names the columns of header-less TSV (``zeek-cut`` output).
    ``source``: ``auto`` (Zeek TSV, Zeek JSON or Suricata eve.json by content), ``zeek`` or
    ``suricata`` (eve.json flow events mapped to conn records; directories give their eve files).
    ``local_nets`` (CIDRs or a ``LocalNets``) fills eve records' ``local_orig``/``local_resp``.
    Each batch's ``attrs`` hold ``source`` (file), ``path`` (Zeek log path) and
    ``types`` (Zeek type of each column).
    """
    ctx = _Context(
        rejects if rejects is not None else RejectLog(strict=strict),
        stats if stats is not None else ReadStats(),
        batch_bytes,
        conn,
        fields,
        source,
    )
    ctx.local_nets = local_nets
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r} ({', '.join(SOURCES)})")
    if strict:
        ctx.rejects.strict = True
    for path in expand_sources(sources, log_path, source=source):
        yield from iter_file(path, ctx)


def read_frames(sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], **kwargs: Any) -> pd.DataFrame:
    """Read whole logs into one DataFrame (for small data: tests, training)."""
    frames = [f for f in iter_batches(sources, **kwargs) if len(f)]
    if not frames:
        return _empty_conn_frame()
    return pd.concat(frames, ignore_index=True)


def _empty_conn_frame() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=pandas_dtype(t)) for name, t in CONN_FIELDS})


def iter_file(path: str, ctx: _Context) -> Iterator[pd.DataFrame]:
    """Batches of one file (TSV or JSON lines, detected from the content)."""
    try:
        f = _open_binary(path)
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror or e}") from e
    ctx.stats.files += 1
    with f:
        try:
            yield from _iter_lines(f, path, ctx)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            # A gzip cut short (a file still being written, or truncated) is an
            # input error about this file, reported where it happened.
            raise SourceError(f"{path}: {e}") from e


def _iter_lines(f: IO[bytes], path: str, ctx: _Context) -> Iterator[pd.DataFrame]:
    leftover = b""
    line_no = 0  # lines of this file consumed so far
    parser: Any = None
    while True:
        chunk = f.read(ctx.batch_bytes)
        buf = leftover + chunk
        if chunk:
            cut = buf.rfind(b"\n")
            if cut < 0:
                leftover = buf
                continue
            leftover, buf = buf[cut + 1 :], buf[: cut + 1]
        else:
            leftover = b""
            if not buf:
                break
            if not buf.endswith(b"\n"):
                buf += b"\n"
        if parser is None:
            stripped = buf.lstrip(b" \t\r\n")
            skipped = buf[: len(buf) - len(stripped)].count(b"\n")
            line_no += skipped
            ctx.stats.blank += skipped
            buf = stripped
            if not buf:
                continue
            parser = make_parser(path, buf, ctx)
        ctx.stats.lines += buf.count(b"\n")
        yield from parser.feed(buf, line_no + 1, final=not chunk)
        line_no += buf.count(b"\n")
        if not chunk:
            break
    finish = getattr(parser, "finish", None)
    if finish is not None:  # a parser that needs the whole file (a JSON array of eve events)
        yield from finish(line_no)


def make_parser(path: str, first_bytes: bytes, ctx: _Context) -> Any:
    """The parser for a file, chosen by its first bytes: Zeek TSV, Zeek JSON or Suricata eve.json.

    Every parser has ``feed(buf, first_line, final) -> Iterator[DataFrame]`` over chunks of
    complete lines. eve.json (JSON objects with ``event_type``/``flow_id``/``src_ip``) gets
    :class:`zeek_ml.suricata.EveParser`, a JSON array of eve events
    :class:`~zeek_ml.suricata.EveArrayParser`. ``ctx.source`` (``auto``/``zeek``/``suricata``)
    says which may be chosen; a file of the other kind is a SourceError naming it.
    """
    from zeek_ml import suricata

    source = getattr(ctx, "source", "auto")
    head = first_bytes.lstrip(b" \t\r\n")
    eve = suricata.looks_like_eve(head)
    if source == "suricata" and not eve:
        raise SourceError(f"{path}: not Suricata eve.json (no JSON objects with event_type); --source says suricata")
    if source == "zeek" and eve:
        raise SourceError(f"{path}: this is Suricata eve.json, not a Zeek log; use --source suricata or auto")
    if eve:
        if head.startswith(b"["):
            return suricata.EveArrayParser(path, ctx)
        return suricata.EveParser(path, ctx)
    if head.startswith(b"{"):
        return _JsonParser(path, ctx)
    return _TsvParser(path, ctx)


def _finish_frame(
    table: pa.Table,
    types: dict[str, str],
    objects: dict[str, list[Any]],
    ctx: _Context,
    path: str,
    log_path: str | None,
) -> pd.DataFrame:
    frame = to_pandas(table).drop(columns="__rows__", errors="ignore")
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
        frame = frame[CONN_NAMES + [c for c in frame.columns if c not in CONN_TYPES]]
    frame.attrs = {"source": path, "path": log_path, "types": dict(types)}
    ctx.stats.records += len(frame)
    return frame


CONN_NAMES = [n for n, _ in CONN_FIELDS]


class _TsvParser:
    """Zeek ASCII (TSV) logs, header blocks and all."""

    def __init__(self, path: str, ctx: _Context):
        self.path = path
        self.ctx = ctx
        self.header: _Header | None = None
        if ctx.fields:
            self.header = _Header(fields=list(ctx.fields), types=[_guess_field_type(n) for n in ctx.fields])

    def feed(self, buf: bytes, first_line: int, final: bool) -> Iterator[pd.DataFrame]:
        pos = 0
        line_no = first_line
        size = len(buf)
        while pos < size:
            if buf[pos] == 0x23:  # '#': a meta line
                end = buf.index(b"\n", pos)
                self._meta(buf[pos:end].rstrip(b"\r"), line_no)
                line_no += 1
                pos = end + 1
                continue
            nxt = buf.find(b"\n#", pos)
            seg_end = size if nxt < 0 else nxt + 1
            seg = buf[pos:seg_end]
            frame = self._data(seg, line_no, final and seg_end == size)
            if frame is not None:
                yield frame
            line_no += seg.count(b"\n")
            pos = seg_end

    # ------------------------------------------------------------------ header
    def _meta(self, line: bytes, line_no: int) -> None:
        text = line.decode("utf-8", "surrogateescape")
        if text.startswith("#separator"):
            self.header = _Header(separator=unescape(text[len("#separator") :].strip(" \t")) or "\t")
            return
        header = self.header
        if header is None:
            header = self.header = _Header()
        key, _, value = text[1:].partition(header.separator)
        if " " in key and not value:  # btest canonified "#open XXXX"
            key, _, value = key.partition(" ")
        if key == "fields":
            names, three = _split_header(value, header.separator)
            header.fields, header.three_space = names, three
            if header.types is not None and len(header.types) != len(names):
                header.types = None
        elif key == "types":
            header.types, _ = _split_header(value, header.separator)
        elif key in ("set_separator", "empty_field", "unset_field"):
            setattr(header, key, unescape(value))
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
        sep = header.separator.encode()
        if header.three_space:
            seg = seg.replace(b"   ", sep)
        if b"\r" in seg:
            seg = seg.replace(b"\r\n", b"\n")
        nfields = len(header.fields)
        arr = np.frombuffer(seg, dtype=np.uint8)
        ends = np.flatnonzero(arr == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        if len(sep) == 1:
            seps = np.flatnonzero(arr == sep[0])
            counts = np.searchsorted(seps, ends) - np.searchsorted(seps, starts)
        else:
            counts = np.array([seg.count(sep, s, e) for s, e in zip(starts, ends)])
        blank = ends == starts
        good = (counts == nfields - 1) & ~blank
        lines = first_line + np.arange(len(ends))
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
        table, lines = self._parse(seg, lines, header)
        if table is None:
            return None
        table, objects = _postprocess(table, header)
        return _finish_frame(table, dict(zip(header.fields, header.types)), objects, self.ctx, self.path, header.path)

    def _parse(self, seg: bytes, lines: np.ndarray, header: _Header) -> tuple[pa.Table | None, np.ndarray]:
        try:
            return _read_tsv(seg, header, typed=True), lines
        except pa.ArrowInvalid as e:
            error = e
        # Slow path: find the lines whose values do not parse, set them aside, retry.
        table = _read_tsv(seg, header, typed=False)
        pieces = seg.split(b"\n")  # the segment's lines, once: for rejects and the retry
        bad = np.zeros(table.num_rows, dtype=bool)
        for name, zeek_type in zip(header.fields, header.types):
            col = table.column(name)
            reasons = _invalid_values(col, zeek_type)
            if reasons is None:
                continue
            for i in np.flatnonzero(reasons & ~bad):
                value = col[int(i)].as_py()
                self.ctx.reject(self.path, int(lines[i]), name, f"invalid {zeek_type} value {value!r}", pieces[int(i)])
            bad |= reasons
        if not bad.any():  # nothing found: fail loudly rather than lose lines
            raise SourceError(f"{self.path}:{int(lines[0])}: cannot parse: {error}") from error
        keep = np.flatnonzero(~bad)
        if not len(keep):
            return None, lines[:0]
        seg = b"".join(pieces[i] + b"\n" for i in keep)
        return _read_tsv(seg, header, typed=True), lines[keep]


def _guess_field_type(name: str) -> str:
    return guess_type(name, "")


def _split_header(value: str, separator: str) -> tuple[list[str], bool]:
    names = value.split(separator)
    if any("   " in n for n in names):
        return [p for n in names for p in n.split("   ")], True
    return names, False


def _read_tsv(seg: bytes, header: _Header, typed: bool) -> pa.Table:
    assert header.fields is not None and header.types is not None
    column_types = {}
    for name, zeek_type in zip(header.fields, header.types):
        scalar = typed and not is_container(zeek_type)
        column_types[name] = arrow_type(zeek_type) if scalar else pa.string()
    return pacsv.read_csv(
        io.BytesIO(seg),
        read_options=pacsv.ReadOptions(column_names=header.fields, block_size=max(len(seg) + 1, 1 << 20)),
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


def _invalid_values(col: pa.ChunkedArray, zeek_type: str) -> np.ndarray | None:
    """Mask of the values in a string column that are not valid for ``zeek_type``."""
    if zeek_type in FLOAT_TYPES or zeek_type in INT_TYPES:
        series = col.to_pandas()
        numbers = pd.to_numeric(series, errors="coerce")
        bad = series.notna().to_numpy() & numbers.isna().to_numpy()
        if zeek_type in INT_TYPES:
            values = numbers.to_numpy(dtype=float, na_value=0.0)
            bad |= (values != np.floor(values)) | (values < -(2.0**63)) | (values >= 2.0**63)
        return bad if bad.any() else None
    if zeek_type == "bool":
        series = col.to_pandas()
        bad = (series.notna() & ~series.isin(["T", "F", "1", "0"])).to_numpy()
        return bad if bad.any() else None
    return None


def _postprocess(table: pa.Table, header: _Header) -> tuple[pa.Table, dict[str, list[Any]]]:
    """Empty markers, escapes and containers, column by column, vectorised."""
    assert header.types is not None
    objects: dict[str, list[Any]] = {}
    for index, zeek_type in enumerate(header.types):
        name = table.column_names[index]
        col = table.column(index)
        if is_container(zeek_type):
            arr, values = _container(col, zeek_type, header)
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
        escaped = pc.match_substring(col, "\\")
        if pc.any(escaped).as_py():
            values = col.to_pylist()
            for i in np.flatnonzero(escaped.to_numpy(zero_copy_only=False)):
                values[i] = unescape(values[i])
            try:
                col = pa.array(values, pa.string())
            except (pa.ArrowInvalid, UnicodeEncodeError):
                objects[name] = values  # undecodable bytes: kept as surrogates
        table = table.set_column(index, name, col)
    return table, objects


def _container(col: pa.ChunkedArray, zeek_type: str, header: _Header) -> tuple[pa.Array, list[Any] | None]:
    """``a,b`` -> ["a", "b"]; ``(empty)`` -> []; ``-`` -> null; elements unescaped and typed.

    Returns the Arrow array, or Python lists where elements hold undecodable bytes.
    """
    values = col.to_pylist()
    out: list[list[Any] | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif v == header.empty_field:
            out.append([])
        else:
            out.append([unescape(e) for e in v.split(header.set_separator)])
    inner = element_type(zeek_type)
    try:
        arr = pa.array(out, pa.list_(pa.string()))
        if inner in FLOAT_TYPES or inner in INT_TYPES or inner == "bool":
            arr = arr.cast(pa.list_(arrow_type(inner)))
        return arr, None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeEncodeError):
        return pa.nulls(len(out), pa.list_(pa.string())), out


# --------------------------------------------------------------------------- JSON


class _JsonParser:
    """Zeek JSON logs: one flat object a line, unset fields omitted."""

    def __init__(self, path: str, ctx: _Context):
        self.path = path
        self.ctx = ctx

    def feed(self, buf: bytes, first_line: int, final: bool) -> Iterator[pd.DataFrame]:
        records: list[dict[str, Any]] = []
        lines: list[int] = []
        raws: list[bytes] = []
        pieces = buf.split(b"\n")[:-1]
        for i, raw in enumerate(pieces):
            line = raw.strip()
            if not line:
                self.ctx.stats.blank += 1
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                reason = f"invalid JSON: {e}"
                if final and i == len(pieces) - 1:
                    reason += " (last line of the file: cut short?)"
                self.ctx.reject(self.path, first_line + i, None, reason, raw)
                continue
            if not isinstance(obj, dict):
                self.ctx.reject(self.path, first_line + i, None, "not a JSON object", raw)
                continue
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
            sample = next((v for v in values if v is not None), None)
            zeek_type = guess_type(name, sample)
            types[name] = zeek_type
            invalid = _json_invalid(values, zeek_type)
            for i in np.flatnonzero(invalid & ~bad):
                self.ctx.reject(self.path, lines[i], name, f"invalid {zeek_type} value {values[i]!r}", raws[i])
            bad |= invalid
            columns[name] = values
        keep = np.flatnonzero(~bad)
        if not len(keep):
            return None
        arrays: dict[str, pa.Array] = {}
        objects: dict[str, list[Any]] = {}
        for name, values in columns.items():
            if bad.any():
                values = [values[i] for i in keep]
            arr, obj = _json_column(values, types[name])
            if obj is not None:
                objects[name] = obj
                arr = pa.nulls(len(values), pa.string())
            arrays[name] = arr
        if not arrays:  # every field unset on every line: rows without columns
            arrays["__rows__"] = pa.nulls(len(keep))
        table = pa.table(arrays)
        return _finish_frame(table, types, objects, self.ctx, self.path, None)


def _json_invalid(values: list[Any], zeek_type: str) -> np.ndarray:
    if zeek_type == "time":
        ok = [
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) or isinstance(v, str) for v in values
        ]
        bad = ~np.array(ok, dtype=bool)
        strings = [i for i, v in enumerate(values) if isinstance(v, str)]
        if strings:
            times = _json_times([values[i] for i in strings])
            bad[np.array(strings)[np.isnan(times)]] = True
        return bad
    if zeek_type in FLOAT_TYPES or zeek_type in INT_TYPES:
        check = (lambda v: isinstance(v, int)) if zeek_type in INT_TYPES else (lambda v: isinstance(v, (int, float)))
        return np.array([v is not None and (isinstance(v, bool) or not check(v)) for v in values], dtype=bool)
    if zeek_type == "bool":
        return np.array([v is not None and not isinstance(v, bool) for v in values], dtype=bool)
    if is_container(zeek_type):
        return np.array([v is not None and not isinstance(v, list) for v in values], dtype=bool)
    return np.array([v is not None and not isinstance(v, (str, int, float)) for v in values], dtype=bool)


def _json_times(values: list[Any]) -> np.ndarray:
    """Epoch seconds from Zeek's JSON ``ts``: epoch seconds, integer ms, or ISO 8601."""
    out = np.full(len(values), np.nan)
    strings: list[int] = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int):
            # LogAscii::json_timestamps=JSON::TS_MILLIS writes integer milliseconds.
            out[i] = v / 1000.0 if abs(v) >= 100_000_000_000 else float(v)
        elif isinstance(v, float):
            out[i] = v
        elif isinstance(v, str):
            strings.append(i)
    if strings:
        parsed = pd.to_datetime(pd.Series([values[i] for i in strings]), utc=True, format="ISO8601", errors="coerce")
        ns = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        secs = ns / 1e9
        secs[parsed.isna().to_numpy()] = np.nan
        out[np.array(strings)] = secs
    return out


def _json_column(values: list[Any], zeek_type: str) -> tuple[pa.Array, list[Any] | None]:
    if zeek_type == "time":
        times = _json_times(values)
        return pa.array(times, pa.float64(), mask=np.array([v is None for v in values], dtype=bool)), None
    if zeek_type in FLOAT_TYPES:
        return pa.array(values, pa.float64()), None
    if zeek_type in INT_TYPES:
        return pa.array(values, pa.int64()), None
    if zeek_type == "bool":
        return pa.array(values, pa.bool_()), None
    if is_container(zeek_type):
        items = [None if v is None else [unescape(e) if isinstance(e, str) else e for e in v] for v in values]
        inner = element_type(zeek_type)
        try:
            return pa.array(items, pa.list_(arrow_type(inner))), None
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
            return pa.array([None] * len(items), pa.list_(pa.string())), items
    strings = [None if v is None else unescape(v) if isinstance(v, str) else str(v) for v in values]
    try:
        return pa.array(strings, pa.string()), None
    except (pa.ArrowInvalid, UnicodeEncodeError):
        return pa.nulls(len(strings), pa.string()), strings
