"""What every reader shares: rejects and their log, read counters, and JSON decoding that never raises."""

from __future__ import annotations

import codecs
import functools
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from typing import IO, Any

from zeek_ml.formats.schema import MAX_VALUE_CHARS

STDIN = "-"
"""The source name that reads standard input."""

STDIN_NAME = "<stdin>"
"""How standard input is named in messages and rejects."""

_BOM = b"\xef\xbb\xbf"


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
    capped: int = 0
    """String values cut to :data:`~zeek_ml.formats.schema.MAX_VALUE_CHARS` (the line is kept)."""


def printable(text: str) -> str:
    """``text`` safe to write as UTF-8: surrogates (undecodable bytes, lone JSON escapes) as ``\\uXXXX``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def show(value: Any, limit: int = 80) -> str:
    """A value for a reject reason: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text):,} chars)"


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
        """Count one malformed line, keep it for the report, write it; raise in strict mode."""
        self.count += 1
        if len(self.first) < self.keep:
            self.first.append(reject)
        if self._out is not None:
            row = {
                "file": printable(reject.file),
                "line": reject.line,
                "field": None if reject.field is None else printable(reject.field),
                "reason": printable(reject.reason),
                "raw": reject.raw.decode("utf-8", "backslashreplace"),
            }
            self._out.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace"))
            self._out.flush()
        if self.strict:
            raise MalformedLineError(str(reject))

    @property
    def writes(self) -> bool:
        """Whether every rejected line is written (``--rejects``), not only counted."""
        return self._out is not None

    def write_lines(self, lines: bytes) -> None:
        """Append reject lines already written elsewhere (another sensor's run), as they are."""
        if self._out is not None and lines:
            self._out.write(lines)
            self._out.flush()

    def close(self) -> None:
        if self._out is not None and self._own:
            self._out.close()
        self._out = None


def display_name(path: str) -> str:
    """How a source is named in messages: ``<stdin>`` for ``-``, else its path."""
    return STDIN_NAME if path == STDIN else path


@dataclass
class LogHeader:
    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    path: str | None = None
    open: str | None = None
    fields: list[str] | None = None
    types: list[str] | None = None
    three_space: bool = False  # IoT-23: the last columns are split by three spaces


class ReadContext:
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
        """Count and report one malformed line (field and reason made printable, on one line)."""
        self.stats.rejected += 1
        fld = None if fld is None else _one_line(fld)
        self.rejects.add(Reject(display_name(file), line, fld, _one_line(reason), raw))


def _one_line(text: str) -> str:
    """``text`` with control characters and surrogates escaped, so a message stays one line."""
    if text.isprintable() and _encodable(text):
        return text
    return "".join(c if c.isprintable() and _encodable(c) else repr(c)[1:-1] for c in text)


@functools.lru_cache(maxsize=1 << 16)
def valid_addr(text: str) -> bool:
    """True for an address as Zeek writes one (dotted IPv4, or IPv6 text). Remembered for the last
    65,536 distinct texts: a live batch checks the same IPv6 addresses as the batch before."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _json_bytes_as_zeek(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not UTF-8 become the JSON text ``\\\\xHH``, which is
    how Zeek's JSON writer escapes them, so a string keeps those bytes (as surrogates)."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return "".join(f"\\\\x{b:02x}" for b in bad), error.end


codecs.register_error("zeek_ml.json_bytes", _json_bytes_as_zeek)

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lone_surrogate(obj: Any) -> str | None:
    """The field (dotted for nested objects) holding a lone surrogate, or None."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path or "(value)"
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    return printable(key)
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((path, item) for item in value)
    return None


_DECODER = json.JSONDecoder(strict=False)
"""Control bytes inside a JSON string are kept, as they are in TSV (one decoder, made once)."""


def decode_json_text(data: bytes) -> tuple[Any, str | None, str | None]:
    """Decode JSON text without ever raising: ``(value, None, None)`` or ``(None, field, reason)``.

    Bytes that are not UTF-8 are read as Zeek escapes them (``\\xHH`` inside a string); nesting
    too deep for Python, numbers too long to convert and lone surrogates (``\\ud800``: not a
    character; ``field`` names where) make the text invalid.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "zeek_ml.json_bytes")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        return None, None, "nested too deeply"
    except ValueError as e:
        return None, None, str(e)
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        where = lone_surrogate(value)
        if where is not None:
            return None, where, "lone surrogate (\\ud800-\\udfff escape): not valid Unicode"
    return value, None, None


def decode_json_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """One JSON-lines record: ``(object, None, None)``, ``(None, field, reason)`` when it is not a
    usable record, or ``(None, None, None)`` for a blank line.

    Surrounding whitespace, NUL padding and a byte order mark are skipped; the rest is
    :func:`decode_json_text`, which never raises.
    """
    line = raw.strip(b" \t\r\n\0")
    if line.startswith(_BOM):
        line = line[len(_BOM) :].lstrip(b" \t\r\0")
    if not line:
        return None, None, None
    obj, field, reason = decode_json_text(line)
    if reason is not None:
        return None, field, reason if field is not None else f"invalid JSON: {reason}"
    if not isinstance(obj, dict):
        return None, None, "not a JSON object"
    return obj, None, None


def cap_json_values(obj: dict[str, Any], stats: ReadStats) -> None:
    """Cut string values (and lists of them), nested objects included, to :data:`MAX_VALUE_CHARS`,
    counting each cut value in ``stats``."""
    stack = [obj]
    while stack:
        current = stack.pop()
        for key, value in current.items():
            if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
                current[key] = value[:MAX_VALUE_CHARS]
                stats.capped += 1
            elif isinstance(value, list):
                total, kept = 0, []
                for item in value:
                    total += len(item) + 1 if isinstance(item, str) else 8
                    if total > MAX_VALUE_CHARS:
                        stats.capped += 1
                        break
                    kept.append(item)
                current[key] = kept
            elif isinstance(value, dict):
                stack.append(value)
