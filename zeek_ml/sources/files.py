"""Files in: which files a path names, what each holds (Zeek TSV, Zeek JSON, eve.json), opening
(gzip, stdin), and batches of connections from them (:func:`iter_batches`, :func:`read_frames`)."""

from __future__ import annotations

import contextlib
import glob
import gzip
import math
import os
import re
import select
import sys
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any, NoReturn

import numpy as np
import pandas as pd

from zeek_ml.formats.schema import CONN_FIELDS, MAX_LINE_BYTES, pandas_dtype
from zeek_ml.formats.writer import zeek_time
from zeek_ml.sources.reading import (
    _BOM,
    STDIN,
    ReadContext,
    ReadStats,
    RejectLog,
    SourceError,
    decode_json_line,
    display_name,
)
from zeek_ml.sources.zeeklog import JsonParser, TsvParser, json_times, stdin_state

DEFAULT_BATCH_BYTES = 2 << 20
"""Bytes of log text per batch: about 17k conn rows. Memory stays flat; 2 MiB rather than 8 keeps
`score` near 300 MiB (8 MiB: 530) at the same speed (bench/bench_table.py)."""

SNIFF_BYTES = 1 << 16
"""How much of a file's start decides its format."""

_GZIP_MAGIC = b"\x1f\x8b"

_CONN_NAME = re.compile(r"(?:^|__|[._-])conn(?:[._-]|__|$)")

_LOG_SUFFIX = re.compile(r"\.(?:log|json|tsv|txt)(?:\.gz)?$|\.gz$")

SOURCES = ("auto", "zeek", "suricata")
"""What a read takes: ``auto`` (by content), Zeek logs only, or Suricata eve.json only."""

_EVE_NAME = re.compile(r"(?:^|__|[._-])eve(?:[._-][^/]*)?\.json(?:[.-][\d:T_-]+)*(?:\.gz)?$")
"""eve.json, eve.json.1, eve.json.1.gz, eve-2024-01-01-10:00.json, eve.json-20240101.gz, x__eve.json..."""


def expand_sources(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], log_path: str = "conn", source: str = "auto"
) -> list[str]:
    """Files, directories, globs and URLs -> files in time order.

    A directory contributes the files whose name says they are ``log_path`` logs
    (``conn.log``, ``conn.2024-01-01-10-00-00.log``, ``conn.10:00:00-11:00:00.log.gz``,
    ``conn__<open>__<close>__.log``), or, holding none, those of the folders under it (a Zeek
    archive's day folders); files are ordered by their ``#open`` time, else their first ``ts``.
    A URL (fsspec: ``https://``, ``s3://``...) names a file, a glob or a folder read likewise.
    Explicit file names are kept as given, in that order relative to the groups they came in. With
    ``source="suricata"`` a directory contributes its eve files instead (``eve.json``, ``eve.json.1``,
    ``eve-*.json``, ``.gz``), ordered by their first event's time; with ``auto`` it contributes its conn
    logs, else its eve files. ``-`` stands for standard input (at most once).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    name_re = _CONN_NAME if log_path == "conn" else re.compile(rf"(?:^|__|[._-]){re.escape(log_path)}(?:[._-]|__|$)")
    files: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if item == STDIN:
            if STDIN in files:
                raise SourceError("-: standard input named twice (it can be read once)")
            files.append(STDIN)
        elif is_url(item):
            files.extend(sorted(_url_logs(item, name_re, log_path, source), key=_time_key))
        elif os.path.isdir(item):
            found = _directory_logs(item, name_re, log_path, source)
            if not found:
                what = "eve.json files" if source == "suricata" else f"{log_path} logs"
                raise SourceError(f"{item}: no {what} in this directory or the folders under it")
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


def _directory_logs(
    item: str, name_re: re.Pattern[str] = _CONN_NAME, log_path: str = "conn", source: str = "auto", deep: bool = True
) -> list[str]:
    """The logs a directory holds: its own, else (``deep``) those of the folders under it, at any depth (a
    Zeek archive: ``logs/2024-01-01/conn.10:00:00-11:00:00.log.gz``, several sensors' archives side by side).
    Folders reached through a symbolic link are left out (zeekctl's ``logs/current``, the live spool)."""
    try:
        entries = sorted(os.scandir(item), key=lambda e: e.name)
    except OSError as e:
        raise SourceError(f"{item}: {e.strerror or e}") from e
    found = _pick_logs([e.path for e in entries if e.is_file()], name_re, log_path, source)
    if found or not deep:
        return found
    for entry in entries:  # not through links: zeekctl's logs/current, a loop
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            found.extend(_directory_logs(entry.path, name_re, log_path, source))
    return found


def _pick_logs(paths: list[str], name_re: re.Pattern[str], log_path: str, source: str) -> list[str]:
    """Of ``paths`` (one folder's files, or every file under a URL), those whose file name says they are
    ``log_path`` logs; with ``source="suricata"``, or ``auto`` and no conn log among them, the eve files."""
    found: list[str] = []
    if source != "suricata":
        found = [p for p in paths if name_re.search(_basename(p)) and _LOG_SUFFIX.search(_basename(p))]
    if source == "suricata" or (source == "auto" and not found and log_path == "conn"):
        found = [p for p in paths if _EVE_NAME.search(_basename(p))]
    return found


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def is_url(path: str) -> bool:
    """Whether an input is a URL that fsspec reads (``s3://bucket/zeek/``, ``https://host/logs/``...)."""
    return "://" in path and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path) is not None


def _filesystem(url: str) -> tuple[Any, str]:
    """(fsspec file system, path in it) for ``url``; a missing fsspec or protocol package is one line."""
    try:
        import fsspec
    except ImportError as e:
        raise SourceError(f"{url}: reading URLs needs fsspec: pip install 'zeek-ml[remote]'") from e
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:  # an unknown protocol, or its package (s3fs, gcsfs...) not installed
        raise SourceError(f"{url}: {e}") from e


def _url_logs(item: str, name_re: re.Pattern[str], log_path: str, source: str) -> list[str]:
    """The logs a URL names: one file, a glob, or a folder (every log under it, at any depth), as URLs."""
    fs, path = _filesystem(item)
    try:
        if glob.has_magic(path):
            found = [p for p in fs.glob(path) if fs.isfile(p)]
            if not found:
                raise SourceError(f"{item}: no file matches")
        elif fs.isdir(path):
            found = _pick_logs(fs.find(path), name_re, log_path, source)
            if not found:
                what = "eve.json files" if source == "suricata" else f"{log_path} logs"
                raise SourceError(f"{item}: no {what} under this URL")
        elif fs.exists(path):
            return [item]
        else:
            raise SourceError(f"{item}: no such file or directory")
    except SourceError:
        raise
    except (OSError, ValueError) as e:  # the server said no, or could not be reached
        raise SourceError(f"{item}: {type(e).__name__}: {e}") from e
    return [fs.unstrip_protocol(p) for p in found]


def _open_url(url: str) -> Any:
    """A URL opened for one sequential read (a stream: no range requests, so any HTTP server will do)."""
    fs, path = _filesystem(url)
    try:
        kwargs = {"block_size": 0} if "http" in fs.protocol or "https" in fs.protocol else {}
        return fs.open(path, "rb", **kwargs)
    except (OSError, ValueError) as e:
        raise SourceError(f"{url}: {type(e).__name__}: {e}") from e


DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
"""A Zeek archive's day folder (``zeek-archiver``, ``zeekctl``): ``2024-01-01``."""


def sensor_groups(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    sensor_from: str | None = None,
    source: str = "auto",
) -> list[tuple[str | None, list[str]]]:
    """The inputs' files as ``(sensor, files)`` groups, each in time order; one ``(None, files)`` group
    when the inputs come from one sensor.

    A sensor is a network of its own: its hosts have their own context and incidents (the same private
    address on two sensors is two hosts). Sensors come from ``sensor_from``, a regular expression
    searched in each file's path (its ``sensor`` group, else its first group, else the whole match; a
    file it does not match is an error), else from the layout of a directory named as input: each
    folder directly under it that is not a day folder (``YYYY-MM-DD``) and holds logs is a sensor
    (``archive/<sensor>/<day>/conn.*.log.gz``). Groups are ordered by sensor name.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [os.fspath(i) for i in inputs]
    if sensor_from is not None:
        try:
            pattern = re.compile(sensor_from)
        except re.error as e:
            raise SourceError(f"--sensor-from {sensor_from!r}: not a regular expression: {e}") from e
        groups: dict[str, list[str]] = {}
        for path in expand_sources(inputs, source=source):
            m = pattern.search(path)
            if m is None:
                raise SourceError(f"{path}: --sensor-from {sensor_from!r} does not match this path")
            if "sensor" in pattern.groupindex:
                name = m.group("sensor")
            else:
                name = m.group(1) if pattern.groups else m.group(0)
            if not name:
                raise SourceError(f"{path}: --sensor-from {sensor_from!r} matches an empty sensor name")
            groups.setdefault(name, []).append(path)
        return [(name, sorted(found, key=_time_key)) for name, found in sorted(groups.items())]
    by_layout: dict[str, list[str]] = {}
    for item in inputs:
        if item == STDIN or not os.path.isdir(item):
            continue
        subdirs = sorted(
            (e for e in os.scandir(item) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")),
            key=lambda e: e.name,
        )
        if not subdirs or any(DAY_FOLDER.match(e.name) for e in subdirs):
            continue
        if _quiet_logs(item, source, deep=False):  # logs of its own: one sensor, the folders under it unread
            continue
        for entry in subdirs:
            found = _quiet_logs(entry.path, source)
            if found:
                by_layout.setdefault(entry.name, []).extend(found)
    if not by_layout:
        return [(None, expand_sources(inputs, source=source))]
    if len(inputs) > 1:
        raise SourceError(
            f"{', '.join(inputs)}: a folder of sensors must be the only input (or name sensors with --sensor-from)"
        )
    return [(name, sorted(found, key=_time_key)) for name, found in sorted(by_layout.items())]


def _quiet_logs(item: str, source: str, deep: bool = True) -> list[str]:
    """The conn logs (or eve files) :func:`expand_sources` finds in one directory, unordered; none where
    it cannot read it."""
    try:
        return _directory_logs(item, source=source, deep=deep)
    except SourceError:
        return []


def sniff_format(path: str) -> tuple[str, str] | None:
    """How a log is written, from its first line: (``tsv``/``json``/``eve``, JSON ``ts`` form).

    The ``ts`` form is what ``LogAscii::json_timestamps`` made: ``epoch`` (seconds), ``millis``
    (integer milliseconds) or ``iso8601`` (text); ``epoch`` for TSV. None when the file cannot be
    read or has no line yet. A notice log written to match the sensor uses both. ``-`` looks at
    standard input without consuming it (what it reads is replayed to the reader).
    """
    if path == STDIN:
        try:
            head = _stdin_text_head()
        except SourceError:
            return None
    elif not is_url(path) and not os.path.isfile(path):  # a FIFO or process substitution: reading it loses bytes
        return None
    else:
        try:
            with open_binary(path) as f:
                head = f.read(SNIFF_BYTES)
        except (OSError, EOFError, zlib.error):
            return None
    return _sniff(head)


def content_kind(head: bytes) -> str | None:
    """What a file holds, from its first bytes: ``tsv``, ``json`` (Zeek JSON lines), ``eve`` (eve.json
    lines) or ``eve-array`` (a JSON array of eve events); None when there is nothing yet.

    Decided on the first lines, by majority, so one damaged first line does not make a JSON
    file look like a header-less TSV one: a ``#`` header means TSV; JSON objects on most lines
    mean JSON, or eve when one of the first objects is an eve event.
    """
    from zeek_ml.sources.eve import looks_like_eve

    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return None
    if head.startswith(b"#"):
        return "tsv"
    if head.startswith(b"[") and looks_like_eve(head):
        return "eve-array"
    lines = [line.strip(b" \t\r\0") for line in head[:SNIFF_BYTES].split(b"\n")[:32]]
    lines = [line for line in lines if line]
    objects = [line for line in lines if line.startswith(b"{")]
    if not objects or 2 * len(objects) < len(lines):
        return "tsv"
    return "eve" if any(looks_like_eve(line) for line in objects[:8]) else "json"


def _sniff(head: bytes) -> tuple[str, str] | None:
    kind = content_kind(head)
    if kind is None:
        return None
    if kind in ("eve", "eve-array"):
        return ("eve", "epoch")
    if kind == "tsv":
        return ("tsv", "epoch")
    obj = None
    for line in head.lstrip(b"\xef\xbb\xbf \t\r\n").split(b"\n")[:32]:
        obj, _, _ = decode_json_line(line)
        if obj is not None:
            break
    ts = obj.get("ts") if obj is not None else None
    if isinstance(ts, str):
        return ("json", "iso8601")
    if isinstance(ts, int) and not isinstance(ts, bool) and abs(ts) >= 100_000_000_000:
        return ("json", "millis")
    return ("json", "epoch")


def _time_key(path: str) -> tuple[float, str]:
    """(``#open`` time, else first ``ts``, else +inf; name) for ordering rotated logs."""
    try:
        with open_binary(path) as f:
            head = f.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return (float("inf"), path)
    first_ts = None
    for line in head.split(b"\n")[:-1]:
        line = line.strip()
        if line.startswith(_BOM):
            line = line[len(_BOM) :]
        if line.startswith(b"#open"):
            opened = zeek_time(line[5:].decode("ascii", "replace"))
            if opened is not None:
                return (opened, path)
        elif line and not line.startswith(b"#") and first_ts is None:
            first_ts = _first_ts(line)
            if first_ts is not None and not head.lstrip(_BOM + b" \t\r\n").startswith(b"#"):
                break
    return (first_ts if first_ts is not None else float("inf"), path)


def _first_ts(line: bytes) -> float | None:
    if line.startswith(b"{"):
        obj, _, _ = decode_json_line(line)
        if obj is None:
            return None
        value = obj.get("ts")
        if value is None:  # Suricata eve: the event's time
            value = obj.get("timestamp")
        ts = json_times([value])[0]
        return None if np.isnan(ts) else float(ts)
    try:
        ts = float(line.split(b"\t", 1)[0])
    except ValueError:
        return None
    return ts if math.isfinite(ts) else None


def open_binary(path: str) -> IO[bytes]:
    """A file opened for reading, gzip undone (Python's :class:`gzip.GzipFile`, seekable; a URL: a stream)."""
    if is_url(path):
        return _open_source(path)  # type: ignore[no-any-return]
    f = open(path, "rb")  # noqa: SIM115
    magic = f.read(2)
    f.seek(0)
    if magic == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f


class GzipStream:
    """Decompress a gzip file (every member) as it is read, and stop cleanly where it breaks.

    :class:`gzip.GzipFile` raises on a corrupt or truncated stream and loses what the failing
    read had decompressed. This reader hands out every byte that decompressed before the fault,
    then reads as at end of file, with :attr:`broken` saying where (the compressed byte offset)
    and why. Memory stays bounded whatever the compression ratio.
    """

    CHUNK = 1 << 16

    def __init__(self, raw: Any):
        self.raw = raw
        self.broken: str | None = None
        self._d: Any = None  # the member being decompressed; None between members
        self._buf = b""  # compressed bytes read and not yet consumed
        self._pos = 0  # compressed offset of _buf[0]
        self._out = bytearray()
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` decompressed bytes (all that is left for ``n < 0``); ``b""`` at the end."""
        want = n if n >= 0 else 1 << 62
        while len(self._out) < want and not self._eof:
            self._step(max(want - len(self._out), self.CHUNK))
        data = bytes(self._out[:want])
        del self._out[:want]
        return data

    def _more(self) -> bool:
        chunk = self.raw.read(self.CHUNK)
        if not chunk:
            return False
        self._buf += chunk
        return True

    def _step(self, want: int) -> None:
        if not self._buf and not self._more():
            if self._d is not None:
                self._out += self._d.flush()
                self._fail(f"gzip stream cut short: it ends at compressed byte {self._pos} without its end marker")
            self._eof = True
            return
        if self._d is None:  # a new member, zero padding, or bytes that are not gzip
            stripped = self._buf.lstrip(b"\0")
            self._pos += len(self._buf) - len(stripped)
            self._buf = stripped
            if not self._buf:
                return
            if len(self._buf) < 2:
                self._more()
            if not self._buf.startswith(_GZIP_MAGIC):
                self._fail(f"not gzip from compressed byte {self._pos} on, after the end of the gzip stream: ignored")
                return
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        before = self._d.copy()
        try:
            out = self._d.decompress(self._buf, want)
        except zlib.error as e:
            self._locate(before, e)
            return
        self._out += out
        rest = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
        self._pos += len(self._buf) - len(rest)
        self._buf = rest
        if self._d.eof:
            self._d = None

    def _locate(self, before: Any, error: zlib.error) -> None:
        """Find the first compressed byte the error shows at; keep what decompressed before it."""
        lo, hi = 0, len(self._buf)  # decompressing _buf[:lo] works, _buf[:hi] fails
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                before.copy().decompress(self._buf[:mid])
                lo = mid
            except zlib.error:
                hi = mid
        with contextlib.suppress(zlib.error):
            self._out += before.decompress(self._buf[:lo])
        self._fail(f"gzip stream corrupt at compressed byte {self._pos + lo} (zlib: {error})")

    def _fail(self, reason: str) -> None:
        self.broken = reason
        self._eof = True
        self._buf = b""
        self._d = None

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> GzipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Replay:
    """A stream that gives ``head`` first, then what ``rest`` reads (stdin after sniffing)."""

    def __init__(self, head: bytes, rest: Any, own: bool = False):
        self.head = head
        self.rest = rest
        self.own = own

    def read(self, n: int = -1) -> bytes:
        if self.head:
            part = self.head if n < 0 else self.head[:n]
            self.head = self.head[len(part) :]
            if n < 0 or len(part) < n:
                more = self.rest.read(-1 if n < 0 else n - len(part))
                part += more or b""
            return part
        return self.rest.read(n) or b""

    def close(self) -> None:
        self.head = b""
        if self.own:
            self.rest.close()

    def __enter__(self) -> _Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_STOPS: list[BaseException] = []
"""The stop a signal handler asked for (:func:`stop_run`), until the reader has raised it again."""


def stop_run(exc: BaseException) -> NoReturn:
    """Raise ``exc`` (a signal handler's ``KeyboardInterrupt`` or ``SystemExit``) and remember it.

    Python loses an exception raised in a finalizer, and a C extension that clears errors loses one
    raised while it runs Python code (a Ctrl-C landing in ``import numba`` when the host context ran on
    numba: 1 stopped ``score -`` in 40, which then waited for input forever); :func:`honour_stop` raises
    it again.
    """
    _STOPS[:] = [exc]
    raise exc


def forget_stop() -> None:
    """Drop a remembered stop (a command that ended, by it or not: the next one in this process starts clean)."""
    _STOPS.clear()


def honour_stop() -> None:
    """Raise once more a stop asked for by :func:`stop_run` (the reader calls it before each read)."""
    if _STOPS:
        exc = _STOPS.pop()
        raise exc.with_traceback(None)


class _StdinPipe:
    """Standard input read so that Ctrl-C and SIGTERM always get through.

    A buffered ``read(n)`` loops in C over the pipe: a signal that lands between two of its reads
    (not during one, which would end it with EINTR) waits in Python's queue while the next read
    blocks on a writer that has nothing more to say. Here every wait is a short ``select`` in a
    Python loop, so a pending signal handler runs within a fraction of a second. Only ``read1``
    was used on ``stream`` before (sniffing), which leaves nothing in its buffer.
    """

    WAIT = 0.2

    def __init__(self, stream: Any):
        self.stream = stream
        try:
            self.fd: int | None = stream.fileno()
        except (OSError, ValueError, AttributeError):
            self.fd = None  # not a real file (a test's BytesIO): read it as it is

    def read(self, n: int = -1) -> bytes:
        if self.fd is None:
            return self.stream.read(n) or b""
        parts: list[bytes] = []
        got = 0
        while n < 0 or got < n:
            honour_stop()
            ready, _, _ = select.select([self.fd], [], [], self.WAIT)
            if not ready:
                continue
            chunk = os.read(self.fd, (1 << 20) if n < 0 else min(n - got, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)


def _stdin_raw_head() -> bytes:
    """The first bytes of stdin (up to a whole first line, or 64 KiB), read once and kept."""
    if stdin_state["head"] is None:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise SourceError("-: there is no standard input to read")
        try:
            tty = stream.isatty()
        except (OSError, ValueError):
            tty = False
        if tty:
            raise SourceError("-: standard input is a terminal; pipe a log into it (zcat conn.log.gz | zeek-ml ...)")
        head = b""
        read = getattr(stream, "read1", stream.read)
        while len(head) < SNIFF_BYTES:
            try:
                chunk = read(SNIFF_BYTES - len(head))
            except OSError as e:
                raise SourceError(f"-: cannot read standard input: {e.strerror or e}") from e
            if not chunk:
                break
            head += chunk
            if b"\n" in _gunzip_head(head):
                break
        stdin_state["head"] = head
    return stdin_state["head"]


def _gunzip_head(head: bytes) -> bytes:
    """The start of ``head`` decompressed if it is gzip (as far as it goes), else ``head``."""
    if not head.startswith(_GZIP_MAGIC):
        return head
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, SNIFF_BYTES)
    except zlib.error:
        return b""


def _stdin_text_head() -> bytes:
    return _gunzip_head(_stdin_raw_head())


def _open_source(path: str) -> Any:
    """A source opened for one pass of reading: a file or stdin, gzip undone by :class:`GzipStream`."""
    if path == STDIN:
        head = _stdin_raw_head()
        if stdin_state["opened"]:
            raise SourceError("-: standard input was read already")
        stdin_state["opened"] = True
        stream: Any = _Replay(head, _StdinPipe(sys.stdin.buffer))
        return GzipStream(stream) if head.startswith(_GZIP_MAGIC) else stream
    if is_url(path):
        remote = _open_url(path)
        head = remote.read(2)
        stream = _Replay(head, remote, own=True)
        return GzipStream(stream) if head == _GZIP_MAGIC else stream
    f = open(path, "rb")  # noqa: SIM115
    try:
        magic = f.peek(2)[:2]  # no seek: a named pipe (``<(zcat ...)``) reads too
    except OSError:
        f.close()
        raise
    return GzipStream(f) if magic == _GZIP_MAGIC else f


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
    """Yield DataFrames of Zeek log records from files, directories, globs or ``-`` (stdin).

    ``conn`` puts conn.log's standard columns first (null where absent).
    ``fields`` names the columns of header-less TSV (``zeek-cut`` output).
    ``source``: ``auto`` (Zeek TSV, Zeek JSON or Suricata eve.json by content), ``zeek`` or
    ``suricata`` (eve.json flow events mapped to conn records; directories give their eve files).
    ``local_nets`` (CIDRs or a ``LocalNets``) fills eve records' ``local_orig``/``local_resp``.
    Each batch's ``attrs`` hold ``source`` (file), ``path`` (Zeek log path) and
    ``types`` (Zeek type of each column).
    """
    ctx = ReadContext(
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


def iter_file(path: str, ctx: ReadContext) -> Iterator[pd.DataFrame]:
    """Batches of one file, or of stdin for ``-`` (TSV, JSON lines or eve, detected from the content)."""
    name = display_name(path)
    try:
        f = _open_source(path)
    except SourceError:
        raise
    except OSError as e:
        raise SourceError(f"{name}: {e.strerror or e}") from e
    ctx.stats.files += 1
    with f:
        try:
            yield from _iter_lines(f, name, ctx)
        except (OSError, EOFError) as e:
            if isinstance(e, SourceError):
                raise
            raise SourceError(f"{name}: {e.strerror or e}" if isinstance(e, OSError) else f"{name}: {e}") from e


def _iter_lines(f: Any, path: str, ctx: ReadContext) -> Iterator[pd.DataFrame]:
    """Complete lines of ``f`` to its parser, one batch of bytes at a time.

    A line that runs past :data:`MAX_LINE_BYTES` without a newline is rejected and skipped
    without holding it. A gzip stream that breaks (:class:`GzipStream`) ends the file with one
    reject saying where; a partial line just before the break is part of that report.
    """
    leftover = b""
    line_no = 0  # lines of this file consumed so far
    parser: Any = None
    skipping = False  # inside an over-long line: drop bytes up to its newline
    skipped_head = b""
    partial = b""
    while True:
        honour_stop()
        chunk = f.read(ctx.batch_bytes)
        if skipping:
            if not chunk:
                reject_long_line(ctx, path, line_no + 1, skipped_head, final=True)
                line_no += 1
                break
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            reject_long_line(ctx, path, line_no + 1, skipped_head, final=False)
            line_no += 1
            ctx.stats.lines += 1
            skipping, chunk = False, chunk[nl + 1 :]
            if not chunk:
                continue
        buf = leftover + chunk
        if chunk:
            cut = buf.rfind(b"\n")
            if cut < 0:
                leftover = buf
                if len(leftover) > MAX_LINE_BYTES:
                    skipping, skipped_head, leftover = True, leftover[:200], b""
                continue
            leftover, buf = buf[cut + 1 :], buf[: cut + 1]
            first_nl = buf.find(b"\n")
            if first_nl > MAX_LINE_BYTES:  # the line carried over from the last read is over-long
                reject_long_line(ctx, path, line_no + 1, buf[:200], final=False)
                line_no += 1
                ctx.stats.lines += 1
                buf = buf[first_nl + 1 :]
                if not buf:
                    continue
        else:
            leftover = b""
            if not buf:
                break
            if getattr(f, "broken", None):  # the line was cut by the break: reported with it
                partial = buf
                break
            if not buf.endswith(b"\n"):
                buf += b"\n"
        if parser is None:
            if line_no == 0 and buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
            stripped = buf.lstrip(b" \t\r\n")
            skipped = buf[: len(buf) - len(stripped)].count(b"\n")
            line_no += skipped
            ctx.stats.blank += skipped
            buf = stripped
            if not buf:
                if not chunk:
                    break
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
    broken = getattr(f, "broken", None)
    if broken:
        note = f"; a partial line of {len(partial):,} bytes before it is not scored" if partial else ""
        ctx.reject(path, line_no + 1, None, f"{broken}; the lines before it were read{note}", partial[:200])


def reject_long_line(ctx: ReadContext, path: str, line: int, head: bytes, final: bool) -> None:
    where = "runs to the end of the file" if final else "is longer"
    ctx.reject(path, line, None, f"line {where} than {MAX_LINE_BYTES >> 20} MiB without a newline: skipped", head)


def make_parser(path: str, first_bytes: bytes, ctx: ReadContext) -> Any:
    """The parser for a file, chosen by its first bytes: Zeek TSV, Zeek JSON or Suricata eve.json.

    Every parser has ``feed(buf, first_line, final) -> Iterator[DataFrame]`` over chunks of
    complete lines. eve.json (JSON objects with ``event_type``/``flow_id``/``src_ip``) gets
    :class:`zeek_ml.sources.eve.EveParser`, a JSON array of eve events
    :class:`~zeek_ml.sources.eve.EveArrayParser`. ``ctx.source`` (``auto``/``zeek``/``suricata``)
    says which may be chosen; a file of the other kind is a SourceError naming it.
    """
    from zeek_ml.sources import eve as eve_source

    path = display_name(path)
    source = getattr(ctx, "source", "auto")
    kind = content_kind(first_bytes) or "tsv"
    eve = kind.startswith("eve")
    if source == "suricata" and not eve:
        raise SourceError(f"{path}: not Suricata eve.json (no JSON objects with event_type); --source says suricata")
    if source == "zeek" and eve:
        raise SourceError(f"{path}: this is Suricata eve.json, not a Zeek log; use --source suricata or auto")
    if kind == "eve-array":
        return eve_source.EveArrayParser(path, ctx)
    if kind == "eve":
        return eve_source.EveParser(path, ctx)
    if kind == "json":
        return JsonParser(path, ctx)
    return TsvParser(path, ctx)
