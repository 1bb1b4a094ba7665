"""Zeek's ASCII escaping, both ways.

Zeek's ASCII writer (``src/threading/formatters/Ascii.cc`` and ``ODesc`` in
``src/Desc.cc``) writes a backslash as ``\\\\``, the field separator, the set
separator inside a container element, control bytes and bytes that are not
valid UTF-8 as ``\\xHH``. A value that is literally the unset (``-``) or empty
(``(empty)``) marker has its first byte escaped, and a data line that would
start with ``#`` starts with ``\\x23`` instead.

Python strings stand for Zeek's byte strings; bytes that are not valid UTF-8
are carried as lone surrogates (PEP 383, ``errors="surrogateescape"``), the
same convention ``os.fsdecode`` uses, so every byte string round-trips.
"""

from __future__ import annotations

import re

_UNESCAPE_RE = re.compile(rb"\\(\\|x([0-9a-fA-F]{2}))")


def _unescape_match(m: re.Match[bytes]) -> bytes:
    if m.group(2) is None:
        return b"\\"
    return bytes((int(m.group(2), 16),))


def unescape(value: str) -> str:
    """Undo Zeek's ``\\\\`` and ``\\xHH`` escapes; invalid UTF-8 becomes surrogates."""
    if "\\" not in value:
        return value
    raw = _UNESCAPE_RE.sub(_unescape_match, value.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")


def _hex(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte carried as a surrogate
        code -= 0xDC00
    return f"\\x{code:02x}"


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    return "\\\\" if ch == "\\" else _hex(ch)


def _escape_pattern(extra: str) -> re.Pattern[str]:
    chars = "\\\\\\x00-\\x1f\\x7f\\udc80-\\udcff" + "".join(f"\\x{ord(c):02x}" for c in extra)
    return re.compile(f"[{chars}]")


_PATTERNS: dict[str, re.Pattern[str]] = {}


def escape(
    value: str,
    separator: str = "\t",
    set_separator: str | None = None,
    unset_field: str = "-",
    empty_field: str = "(empty)",
) -> str:
    """Escape one string value as Zeek's ASCII writer does.

    ``set_separator`` is given for elements of a set or vector, where Zeek
    escapes it too. An empty string is returned as is: the caller decides
    whether it is written as the empty-field marker.
    """
    extra = separator + (set_separator or "")
    pattern = _PATTERNS.get(extra)
    if pattern is None:
        pattern = _PATTERNS[extra] = _escape_pattern(extra)
    out = pattern.sub(_escape_char, value)
    if out in (unset_field, empty_field):
        out = _hex(out[0]) + out[1:]
    return out


ESCAPED_CHARS_REGEX = r"[\\\x00-\x1f\x7f]"
"""A regex (RE2 syntax) matching the characters :func:`escape` always escapes: a backslash, a control byte
(bytes that are not UTF-8 cannot be in an Arrow string)."""

NEEDS_ESCAPE_REGEX = ESCAPED_CHARS_REGEX + r"|^-$|^\(empty\)$"
"""A regex (RE2 syntax, for pyarrow.compute) matching values that need :func:`escape`."""
