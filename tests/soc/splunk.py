"""A small emulator of how Splunk turns a monitored file into searchable events.

It covers what the Zeek add-ons for Splunk use (Splunk_TA_bro 4.0.0, the community TA-Zeek, and
zeek-ml's TA-zeek-ml), so tests can check what a SOC would see without a Splunk instance. Every rule
below comes from Splunk's props.conf/transforms.conf/eventtypes.conf/tags.conf/inputs.conf specs and
the Getting Data In / Knowledge Manager manuals; rules the docs do not settle are marked "assumed".

Public API
----------
* :class:`SplunkApp` ``.load(dir_or_files)``: one add-on (``default/``+``local/`` dirs, or a flat dir
  with ``props.conf`` etc., or ``{"props.conf": Path, "x.csv": Path}``); lookups from ``lookups/``.
* :class:`SplunkApps` / :func:`load_apps`: several apps merged, the first one in the list wins a
  conflicting setting (Splunk: index time orders apps by ASCII name, A beats Z; search time puts the
  current app first, then the others in reverse ASCII order: :meth:`SplunkApps.in_splunk_order`).
* :func:`index_file`: read a file as a ``[monitor://]`` input would and return its events after the
  index-time and search-time pipelines; :func:`explain` / :func:`applied_stanzas` tell what applied.
* Building blocks, also tested on their own: :func:`read_conf`, :func:`clean_header_name`,
  :func:`props_stanza_matches`, :func:`matching_props_stanzas`, :func:`merged_props`,
  :func:`eval_expression`,
  :func:`search_matches`, :func:`parse_splunk_time`, :func:`find_monitor_stanza`.

Pipeline (an all-in-one instance monitoring a local file)
--------------------------------------------------------
Input: inputs.conf ``[monitor://]`` (``whitelist``/``blacklist`` regexes on the full path),
``sourcetype``/``index``/``host``; INDEXED_EXTRACTIONS (TSV/CSV/PSV/JSON) with the *input*
sourcetype. Parsing: line breaking (LINE_BREAKER, TRUNCATE), timestamp (TIME_PREFIX, TIME_FORMAT,
MAX_TIMESTAMP_LOOKAHEAD, TIMESTAMP_FIELDS, TZ, MAX_DAYS_AGO/HENCE against the file's mtime), then
TRANSFORMS- (sourcetype/host/source/index rewrite, nullQueue, indexed fields) in class order. Search
time, with the rewritten sourcetype (and ``rename``): EXTRACT → REPORT → KV_MODE → FIELDALIAS → EVAL
→ LOOKUP → eventtypes → tags.

Not emulated (raises NotImplementedError or notes it in the trace): datetime.xml automatic
timestamp recognition (a failed/absent TIME_FORMAT falls back to the previous event's time, then the
file mtime, as the docs' precedence list does after that step), SHOULD_LINEMERGE=true merging, SEDCMD,
KV_MODE=auto key=value discovery (its JSON part is emulated), xml/multi, DELIMS, INGEST_EVAL,
CLONE_SOURCETYPE, host_segment/host_regex, eval functions and search syntax beyond the subset below,
date_*/punct/linecount default fields, forwarder-specific behaviour (props on a UF vs an indexer).

Assumed (the docs found do not settle these; change here if Splunk proves otherwise)
-----------------------------------------------------------------------------------
* ``[(?::){0}pattern]``: undocumented; a sourcetype stanza containing ``::`` is a pattern in the
  source match language, priority 0, ASCII-ordered among patterns (consistent with the TA's comments).
* FIELD_HEADER_REGEX with a capturing group: the header is group 1; lines before the header are
  indexed as events without structured fields; values beyond the header are ignored.
* Several ``FIELDALIAS-``/``REPORT-``/``LOOKUP-``/``TRANSFORMS-`` classes run in ASCII class order
  (documented for EXTRACT), aliases one after another; quotes around a search-time FORMAT value
  (``bytes_in::"$1"``) are dropped; OUTPUTNEW never clears a field.
* JSON ``null`` is the string ``null``; a JSON key named like a default field (``host``) leaves the
  default field alone; a FIELD_QUOTE equal to the delimiter disables quoting.
* Eval: ``.`` has the precedence of ``+``/``-``; numeric-looking field values are numbers (``isnum``)
  but string literals are not; a multivalue field compares true if any value does, other scalar
  functions use its first value; floats print without a trailing ``.0``.
* Time: ``%z`` also accepts ``Z``; ``%s`` reads at most 10 digits; several TIMESTAMP_FIELDS are joined
  with a space; a ``\\``-continued .conf line keeps its newline.
* Search terms: bare words match ``_raw`` case-insensitively at word boundaries (not Splunk's
  segmenters).
"""

from __future__ import annotations

import csv
import fnmatch
import ipaddress
import itertools
import json
import re
import socket
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "Event",
    "EventTrace",
    "SplunkApp",
    "SplunkApps",
    "StanzaMatch",
    "applied_stanzas",
    "clean_header_name",
    "eval_expression",
    "explain",
    "find_monitor_stanza",
    "index_file",
    "load_apps",
    "matching_props_stanzas",
    "merged_props",
    "parse_splunk_time",
    "props_stanza_matches",
    "read_conf",
    "search_matches",
]

FieldValue = str | list[str]
DEFAULT_FIELDS = ("_raw", "_time", "host", "index", "source", "sourcetype")

# ---------------------------------------------------------------------------------------------------
# .conf files and apps
# ---------------------------------------------------------------------------------------------------


def read_conf(path: Path | str) -> dict[str, dict[str, str]]:
    """Parse a Splunk .conf file: ``[stanza]`` headers, ``key = value``, ``#`` comment lines,
    trailing-backslash continuation; settings before any stanza go to ``[default]``; a repeated
    stanza merges and the last value of a key wins."""
    stanzas: dict[str, dict[str, str]] = {"default": {}}
    current = stanzas["default"]
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + "\n" + lines[i]
            i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stanzas.setdefault(stripped[1:-1], {})
            continue
        if "=" not in stripped:
            continue
        key, value = stripped.split("=", 1)
        current[key.strip()] = value.strip()
    return stanzas


@dataclass
class SplunkApp:
    """One Splunk app or add-on: its .conf files (``default`` overlaid by ``local``) and lookup CSVs."""

    name: str
    confs: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    lookup_files: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def load(cls, directory_or_files: Path | str | Mapping[str, Path | str], *, name: str | None = None) -> SplunkApp:
        """Load an app from ``<dir>/default`` and ``<dir>/local`` (or a flat directory holding the .conf
        files), with lookups from ``<dir>/lookups`` (or CSVs in the flat directory); or from a mapping
        of file names (``props.conf``, ``bro_note_alert_type.csv``) to paths."""
        app = cls(name=name or "app")
        if isinstance(directory_or_files, Mapping):
            for key, value in directory_or_files.items():
                fname = Path(key).name
                path = Path(value)
                if fname.endswith(".conf"):
                    app._overlay(fname[: -len(".conf")], read_conf(path))
                elif fname.lower().endswith(".csv"):
                    app.lookup_files[fname] = path
            return app
        root = Path(directory_or_files)
        app.name = name or root.name
        layers = [d for d in (root / "default", root / "local") if d.is_dir()] or [root]
        for layer in layers:
            for conf in sorted(layer.glob("*.conf")):
                app._overlay(conf.stem, read_conf(conf))
        for lookup_dir in (root / "lookups", *([root] if layers == [root] else [])):
            if lookup_dir.is_dir():
                for csv_path in sorted(lookup_dir.glob("*.csv")):
                    app.lookup_files.setdefault(csv_path.name, csv_path)
        return app

    def _overlay(self, conf_name: str, stanzas: dict[str, dict[str, str]]) -> None:
        target = self.confs.setdefault(conf_name, {})
        for stanza, settings in stanzas.items():
            target.setdefault(stanza, {}).update(settings)


class SplunkApps:
    """Several apps merged like Splunk's configuration layering: ``apps[0]`` has the highest precedence
    (a setting it defines for a stanza beats the same setting from later apps)."""

    def __init__(self, apps: Sequence[SplunkApp]) -> None:
        self.apps = list(apps)
        self._merged: dict[str, dict[str, dict[str, str]]] = {}

    @staticmethod
    def in_splunk_order(
        apps: Sequence[SplunkApp], context: str = "index", current_app: str | None = None
    ) -> SplunkApps:
        """Order apps by Splunk's rule: index time (global context) by ASCII app name, so ``A`` beats
        ``Z``; search time the current app first, then the others in reverse ASCII order."""
        if context == "index":
            ordered = sorted(apps, key=lambda a: a.name)
        elif context == "search":
            first = [a for a in apps if a.name == current_app]
            ordered = first + sorted((a for a in apps if a.name != current_app), key=lambda a: a.name, reverse=True)
        else:
            raise ValueError(f"context must be 'index' or 'search', not {context!r}")
        return SplunkApps(ordered)

    def conf(self, name: str) -> dict[str, dict[str, str]]:
        """The merged stanzas of one .conf file across the apps."""
        if name not in self._merged:
            merged: dict[str, dict[str, str]] = {}
            for app in reversed(self.apps):
                for stanza, settings in app.confs.get(name, {}).items():
                    merged.setdefault(stanza, {}).update(settings)
            self._merged[name] = merged
        return self._merged[name]

    def lookup_file(self, filename: str) -> Path | None:
        """Where a lookup table file is, searching apps in precedence order."""
        for app in self.apps:
            if filename in app.lookup_files:
                return app.lookup_files[filename]
        return None


def load_apps(sources: Sequence[Path | str | Mapping[str, Path | str] | SplunkApp]) -> SplunkApps:
    """Load and merge apps; the first has the highest precedence."""
    return SplunkApps([s if isinstance(s, SplunkApp) else SplunkApp.load(s) for s in sources])


def _as_apps(apps: SplunkApp | SplunkApps | Sequence[SplunkApp]) -> SplunkApps:
    if isinstance(apps, SplunkApps):
        return apps
    if isinstance(apps, SplunkApp):
        return SplunkApps([apps])
    return SplunkApps(list(apps))


# ---------------------------------------------------------------------------------------------------
# props.conf stanza matching and precedence
# ---------------------------------------------------------------------------------------------------

_KIND_RANK = {"source": 0, "host": 1, "sourcetype": 2, "default": 3}


@dataclass(frozen=True)
class StanzaMatch:
    """A props.conf stanza that applies to an event: its kind, whether it matched literally, priority."""

    name: str
    kind: str
    literal: bool
    priority: int

    def sort_key(self) -> tuple[int, int, str]:
        """Precedence order: source > host > sourcetype; then higher priority; then ASCII-first name."""
        return (_KIND_RANK[self.kind], -self.priority, self.name)


def _spec_pattern_regex(pattern: str) -> str:
    """props.conf stanza match language: ``...`` any characters, ``*`` anything but ``/``, ``.`` a
    period; the rest is PCRE (``|``, ``( )``, ``\\\\``)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("...", i):
            out.append(".*")
            i += 3
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == ".":
            out.append(r"\.")
            i += 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return _pcre_to_py("".join(out))


def _stanza_kind(name: str) -> tuple[str, str]:
    for prefix in ("source", "host", "rule", "delayedrule"):
        if name.startswith(prefix + "::"):
            return prefix, name[len(prefix) + 2 :]
    if name == "default":
        return "default", ""
    return "sourcetype", name


def props_stanza_matches(
    name: str, *, source: str = "", sourcetype: str = "", host: str = "", priority: str | None = None
) -> StanzaMatch | None:
    """Whether a props.conf stanza applies to an event with this source/sourcetype/host.

    ``[source::p]``/``[host::p]`` match the whole value with the stanza match language (host
    case-insensitively unless ``(?-i)``). ``[name]`` matches the sourcetype literally; a sourcetype
    stanza containing ``::`` (the ``(?::){0}`` idiom, undocumented by Splunk) is a pattern in the same
    language. Literal matches get priority 100, pattern matches 0, unless ``priority`` is set.
    """
    kind, pattern = _stanza_kind(name)
    if kind in ("rule", "delayedrule"):
        return None
    if kind == "default":
        return StanzaMatch(name, "default", False, _priority(priority, -1))
    value = {"source": source, "host": host, "sourcetype": sourcetype}[kind]
    if kind == "sourcetype" and "::" not in pattern:
        return StanzaMatch(name, kind, True, _priority(priority, 100)) if pattern == value else None
    if pattern == value:
        return StanzaMatch(name, kind, True, _priority(priority, 100))
    flags = 0
    if kind == "host":
        if pattern.startswith("(?-i)"):
            pattern = pattern[len("(?-i)") :]
        else:
            flags = re.IGNORECASE
    if re.fullmatch(_spec_pattern_regex(pattern), value, flags):
        return StanzaMatch(name, kind, False, _priority(priority, 0))
    return None


def _priority(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def matching_props_stanzas(
    props: Mapping[str, Mapping[str, str]], *, source: str = "", sourcetype: str = "", host: str = ""
) -> list[StanzaMatch]:
    """All props.conf stanzas that apply, highest precedence first."""
    found = []
    for name, settings in props.items():
        if name == "default" and not settings:
            continue
        m = props_stanza_matches(
            name, source=source, sourcetype=sourcetype, host=host, priority=settings.get("priority")
        )
        if m is not None:
            found.append(m)
    return sorted(found, key=StanzaMatch.sort_key)


def merged_props(
    props: Mapping[str, Mapping[str, str]], *, source: str = "", sourcetype: str = "", host: str = ""
) -> dict[str, str]:
    """The final props.conf stanza for an event: every setting from its highest-precedence stanza."""
    matches = matching_props_stanzas(props, source=source, sourcetype=sourcetype, host=host)
    return {key: value for key, (value, _) in _merge_settings(props, matches).items()}


def _merge_settings(
    props: Mapping[str, Mapping[str, str]], matches: Sequence[StanzaMatch]
) -> dict[str, tuple[str, str]]:
    """The final stanza: each key from the highest-precedence stanza defining it -> (value, stanza)."""
    merged: dict[str, tuple[str, str]] = {}
    for m in matches:
        for key, value in props[m.name].items():
            merged.setdefault(key, (value, m.name))
    return merged


def _classes(settings: Mapping[str, tuple[str, str]], prefix: str) -> list[tuple[str, str, str]]:
    """(class, value, stanza) for every ``PREFIX-<class>`` key, in ASCII order of the class (assumed for
    FIELDALIAS/REPORT/LOOKUP/TRANSFORMS; documented for EXTRACT)."""
    out = []
    for key, (value, stanza) in settings.items():
        if key.upper().startswith(prefix.upper() + "-"):
            out.append((key[len(prefix) + 1 :], value, stanza))
        elif prefix.upper() == "LOOKUP" and re.match(r"(?i)lookup_?", key) and not key.upper().startswith("LOOKUP-"):
            out.append((re.sub(r"(?i)^lookup_?", "", key), value, stanza))
    return sorted(out)


def _setting(settings: Mapping[str, tuple[str, str]], key: str, default: str | None = None) -> str | None:
    return settings[key][0] if key in settings else default


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")


def _pcre_to_py(regex: str) -> str:
    """PCRE named groups ``(?<name>`` to Python's ``(?P<name>`` (lookbehinds untouched)."""
    return re.sub(r"\(\?<(?![=!])", "(?P<", regex)


# ---------------------------------------------------------------------------------------------------
# Events and their trace
# ---------------------------------------------------------------------------------------------------


@dataclass
class EventTrace:
    """What the emulator did to one event (for test messages)."""

    line: int = 0
    input: list[str] = field(default_factory=list)
    index_time_stanzas: list[str] = field(default_factory=list)
    transforms: list[str] = field(default_factory=list)
    timestamp: str = ""
    timestamp_status: str = ""
    search_time_stanzas: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Event(dict):
    """An indexed event: ``_raw``, ``_time`` (float epoch), ``host``, ``index``, ``source``,
    ``sourcetype`` and every field (a multivalue field is a list); ``.trace`` says how it was built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace = EventTrace()


def applied_stanzas(event: Event) -> dict[str, list[str]]:
    """The props.conf stanzas that applied to an event at index time and at search time, highest
    precedence first, and the transforms that matched."""
    return {
        "index_time": list(event.trace.index_time_stanzas),
        "search_time": list(event.trace.search_time_stanzas),
        "transforms": list(event.trace.transforms),
    }


def explain(event: Event) -> str:
    """A readable account of how an event was built (stanzas, timestamp, operations, skips)."""
    t = event.trace
    parts = [
        f"line {t.line}: sourcetype={event.get('sourcetype')} source={event.get('source')}",
        "input: " + "; ".join(t.input),
        "index-time stanzas: " + ", ".join(f"[{s}]" for s in t.index_time_stanzas),
        "transforms: " + ("; ".join(t.transforms) or "none"),
        f"timestamp ({t.timestamp_status}): {t.timestamp}",
        "search-time stanzas: " + ", ".join(f"[{s}]" for s in t.search_time_stanzas),
        "operations: " + ("; ".join(t.operations) or "none"),
        "skipped: " + ("; ".join(t.skipped) or "none"),
        "notes: " + ("; ".join(t.notes) or "none"),
    ]
    return "\n".join(parts)


def _values(event: Mapping[str, Any], name: str) -> list[str]:
    value = event.get(name)
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _store(event: dict[str, Any], name: str, values: Sequence[str]) -> None:
    if not values:
        event.pop(name, None)
    elif len(values) == 1:
        event[name] = values[0]
    else:
        event[name] = list(values)


def _add_value(event: dict[str, Any], name: str, value: str) -> None:
    existing = _values(event, name)
    _store(event, name, [*existing, value])


# ---------------------------------------------------------------------------------------------------
# inputs.conf
# ---------------------------------------------------------------------------------------------------


def find_monitor_stanza(
    inputs: Path | str | Mapping[str, Mapping[str, str]], path: Path | str
) -> tuple[str | None, dict[str, str], str]:
    """The enabled ``[monitor://<path>]`` stanza that picks up a file, its settings (over
    ``[default]``), and why (or why not). A monitor path covers itself and everything below it
    (``...``/``*`` wildcards allowed); ``whitelist``/``blacklist`` are regexes searched in the full path."""
    conf = read_conf(inputs) if not isinstance(inputs, Mapping) else {k: dict(v) for k, v in inputs.items()}
    target = str(Path(path).absolute())
    defaults = conf.get("default", {})
    reasons = []
    candidates = []
    for name, settings in conf.items():
        if not name.startswith("monitor://"):
            continue
        mpath = name[len("monitor://") :]
        merged = {**defaults, **settings}
        if _bool(merged.get("disabled"), False):
            reasons.append(f"[{name}] disabled")
            continue
        if not re.fullmatch(_spec_pattern_regex(mpath.rstrip("/")) + r"(?:/.*)?", target):
            continue
        if not _bool(merged.get("recursive"), True) and target != mpath and Path(target).parent != Path(mpath):
            reasons.append(f"[{name}] recursive = false")
            continue
        if merged.get("whitelist") and not re.search(_pcre_to_py(merged["whitelist"]), target):
            reasons.append(f"[{name}] whitelist {merged['whitelist']!r} does not match")
            continue
        if merged.get("blacklist") and re.search(_pcre_to_py(merged["blacklist"]), target):
            reasons.append(f"[{name}] blacklist {merged['blacklist']!r} matches")
            continue
        candidates.append((len(mpath), name, merged))
    if not candidates:
        return None, {}, "; ".join(reasons) or f"no [monitor://] stanza covers {target}"
    _, name, merged = max(candidates)
    return name, merged, f"[{name}] monitors {target}"


# ---------------------------------------------------------------------------------------------------
# Structured data (INDEXED_EXTRACTIONS)
# ---------------------------------------------------------------------------------------------------

_SPECIAL_DELIMS = {
    "space": " ",
    "tab": "\t",
    "\\t": "\t",
    "fs": "\x1c",
    "gs": "\x1d",
    "rs": "\x1e",
    "us": "\x1f",
    "whitespace": "ws",
    "ws": "ws",
}


def _delimiter(spec: str | None) -> str | None:
    if spec is None:
        return None
    low = spec.strip().lower()
    if low == "none":
        return None
    if low in _SPECIAL_DELIMS:
        return _SPECIAL_DELIMS[low]
    if re.fullmatch(r"\\x[0-9a-f]{2}", low):
        return chr(int(low[2:], 16))
    return spec.strip()[:1] or None


def clean_header_name(name: str, acceptable: str = "") -> str:
    """Header field name as INDEXED_EXTRACTIONS stores it: per props.conf.spec
    (HEADER_FIELD_ACCEPTABLE_SPECIAL_CHARACTERS), every character that is neither ASCII alphanumeric
    nor a space becomes ``_`` unless listed in ``acceptable``; so ``id.orig_h`` -> ``id_orig_h``."""
    return "".join(c if (c.isascii() and c.isalnum()) or c == " " or c in acceptable else "_" for c in name.strip())


def _split_structured(line: str, delim: str, quote: str | None) -> list[str]:
    if delim == "ws":
        return re.split(r"[ \t]+", line.strip())
    if quote is None or quote == delim:
        return line.split(delim)
    fields: list[str] = []
    i, n = 0, len(line)
    while True:
        if i < n and line[i] == quote:
            i += 1
            buf: list[str] = []
            while i < n:
                if line[i] == quote:
                    if i + 1 < n and line[i + 1] == quote:
                        buf.append(quote)
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(line[i])
                i += 1
            j = line.find(delim, i)
            buf.append(line[i:] if j == -1 else line[i:j])
            fields.append("".join(buf))
            if j == -1:
                return fields
            i = j + len(delim)
        else:
            j = line.find(delim, i)
            if j == -1:
                fields.append(line[i:])
                return fields
            fields.append(line[i:j])
            i = j + len(delim)


_STRUCTURED_DEFAULTS = {"CSV": (",", '"'), "TSV": ("\t", '"'), "PSV": ("|", '"')}


class _Structured:
    """Header-based extraction state for one file (the settings come from the input's props)."""

    def __init__(self, kind: str, settings: Mapping[str, tuple[str, str]]) -> None:
        self.kind = kind
        if kind not in (*_STRUCTURED_DEFAULTS, "JSON"):
            raise NotImplementedError(f"INDEXED_EXTRACTIONS = {kind} is not emulated")
        d_delim, d_quote = _STRUCTURED_DEFAULTS.get(kind, (",", '"'))
        self.delim = _delimiter(_setting(settings, "FIELD_DELIMITER")) or d_delim
        quote_spec = _setting(settings, "FIELD_QUOTE")
        self.quote = d_quote if quote_spec is None else _delimiter(quote_spec)
        self.header_delim = _delimiter(_setting(settings, "HEADER_FIELD_DELIMITER")) or self.delim
        hq = _setting(settings, "HEADER_FIELD_QUOTE")
        self.header_quote = self.quote if hq is None else _delimiter(hq)
        regex = _setting(settings, "FIELD_HEADER_REGEX")
        self.header_regex = re.compile(_pcre_to_py(regex)) if regex else None
        preamble = _setting(settings, "PREAMBLE_REGEX")
        self.preamble = re.compile(_pcre_to_py(preamble)) if preamble else None
        self.header_line = _priority(_setting(settings, "HEADER_FIELD_LINE_NUMBER"), 0)
        self.acceptable = _setting(settings, "HEADER_FIELD_ACCEPTABLE_SPECIAL_CHARACTERS", "") or ""
        names = _setting(settings, "FIELD_NAMES")
        self.header: list[str] | None = (
            [clean_header_name(n, self.acceptable) for n in names.split(",")] if names else None
        )
        self.header_source = "FIELD_NAMES" if names else ""

    def feed(self, lineno: int, line: str) -> tuple[str, dict[str, list[str]], str]:
        """Classify one line: ("skip", {}, why) for preamble/header lines, else ("event", fields, note)."""
        if self.kind == "JSON":
            return "event", _flatten_json_text(line), ""
        if self.header is None:
            if self.preamble is not None and self.preamble.search(line):
                return "skip", {}, "PREAMBLE_REGEX"
            if self.header_regex is not None:
                m = self.header_regex.search(line)
                if m:
                    text = m.group(1) if self.header_regex.groups else line[m.end() :]
                    self._set_header(text, f"FIELD_HEADER_REGEX on line {lineno}")
                    return "skip", {}, "header"
                return "event", {}, "line before the FIELD_HEADER_REGEX header: indexed without structured fields"
            if self.header_line in (0, lineno):
                self._set_header(line, f"line {lineno}")
                return "skip", {}, "header"
            return "event", {}, "line before HEADER_FIELD_LINE_NUMBER"
        values = _split_structured(line, self.delim, self.quote)
        fields: dict[str, list[str]] = {}
        for name, value in zip(self.header, values):
            if value != "":
                fields.setdefault(name, []).append(value)
        note = ""
        if len(values) > len(self.header):
            note = f"{len(values) - len(self.header)} value(s) beyond the header ignored"
        return "event", fields, note

    def _set_header(self, text: str, where: str) -> None:
        raw_names = _split_structured(text, self.header_delim, self.header_quote)
        self.header = [clean_header_name(n, self.acceptable) for n in raw_names]
        self.header_source = where


# ---------------------------------------------------------------------------------------------------
# JSON (KV_MODE = json, INDEXED_EXTRACTIONS = JSON, spath)
# ---------------------------------------------------------------------------------------------------


def _json_loads(text: str) -> Any:
    """JSON with numbers kept as their text (Splunk fields are strings: ``3600.0`` stays ``3600.0``)."""
    return json.loads(text, parse_float=str, parse_int=str, parse_constant=str)


def _json_scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"  # assumed: JSON null shows as the string "null"
    return str(value)


def _flatten_json(value: Any, prefix: str, out: dict[str, list[str]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten_json(sub, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list):
        for sub in value:
            _flatten_json(sub, prefix + "{}", out)
    else:
        out.setdefault(prefix, []).append(_json_scalar(value))


def _flatten_json_text(text: str) -> dict[str, list[str]]:
    """Fields Splunk's JSON extraction gives: nested keys joined by ``.``, arrays as ``name{}``
    (multivalue), empty arrays/objects give no field; names are kept as written (no key cleaning)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return {}
    try:
        doc = _json_loads(stripped)
    except ValueError:
        return {}
    out: dict[str, list[str]] = {}
    _flatten_json(doc, "", out)
    return out


# ---------------------------------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------------------------------

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def _time_format_regex(fmt: str) -> tuple[str, list[tuple[str, int]]]:
    parts: list[str] = []
    groups: list[tuple[str, int]] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            parts.append(r"\s*" if c.isspace() else re.escape(c))
            i += 1
            continue
        m = re.match(r"%(\d*)(::?z|[A-Za-z%+])", fmt[i:])
        if not m:
            raise NotImplementedError(f"TIME_FORMAT directive at {fmt[i:]!r} is not emulated")
        width_text, d = m.group(1), m.group(2)
        width = int(width_text) if width_text else 0
        i += m.end()
        simple = {
            "Y": r"(\d{4})",
            "y": r"(\d{2})",
            "m": r"(\d{1,2})",
            "d": r"(\d{1,2})",
            "e": r"\s?(\d{1,2})",
            "H": r"(\d{1,2})",
            "k": r"\s?(\d{1,2})",
            "I": r"(\d{1,2})",
            "M": r"(\d{1,2})",
            "S": r"(\d{1,2})",
            "j": r"(\d{1,3})",
            "p": r"([AaPp][Mm])",
            "b": r"([A-Za-z]{3})",
            "h": r"([A-Za-z]{3})",
            "B": r"([A-Za-z]+)",
            "a": r"[A-Za-z]{3}",
            "A": r"[A-Za-z]+",
            "s": r"(\d{1,10})",
            "f": r"(\d{1,6})",
            "z": r"(Z|[+-]\d{2}:?\d{2})",
            ":z": r"(Z|[+-]\d{2}:\d{2})",
            "::z": r"(Z|[+-]\d{2}:\d{2}:\d{2})",
            "Z": r"([A-Za-z]{1,5})",
        }
        if d == "%":
            parts.append("%")
        elif d == "T":
            sub, sub_groups = _time_format_regex("%H:%M:%S")
            parts.append(sub)
            groups += sub_groups
        elif d == "F":
            sub, sub_groups = _time_format_regex("%Y-%m-%d")
            parts.append(sub)
            groups += sub_groups
        elif d in ("N", "Q", "q"):
            w = width or (9 if d == "N" else 3)
            parts.append(rf"(\d{{1,{w}}})")
            groups.append(("frac", w))
        elif d in simple:
            parts.append(simple[d])
            if simple[d].count("(") and d not in ("a", "A"):
                groups.append((d, width))
        else:
            raise NotImplementedError(f"TIME_FORMAT directive %{d} is not emulated")
    return "".join(parts), groups


def parse_splunk_time(fmt: str, text: str, tz: str = "UTC") -> float | None:
    """Parse ``text`` from its start with a Splunk TIME_FORMAT (strptime plus ``%s`` epoch,
    ``%<n>N``/``%<n>Q`` subseconds, ``%z``/``%:z``); None when it does not match. Zones: the text's
    ``%z``/``%Z`` (UTC/GMT/Z), else ``tz``."""
    regex, groups = _time_format_regex(fmt)
    m = re.match(regex, text)
    if not m:
        return None
    values = dict(zip((g for g, _ in groups), m.groups()))
    frac = 0.0
    if "frac" in values:
        digits = values["frac"]
        frac = int(digits) / 10 ** len(digits)
    elif "f" in values:
        frac = int(values["f"]) / 10 ** len(values["f"])
    if "s" in values:
        return int(values["s"]) + frac
    zone: Any = ZoneInfo(tz) if tz not in ("UTC", "GMT", "") else UTC
    offset = values.get("z") or values.get(":z") or values.get("::z")
    if offset:
        if offset == "Z":
            zone = UTC
        else:
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0)))
    elif values.get("Z"):
        if values["Z"].upper() not in ("UTC", "GMT", "Z"):
            return None
        zone = UTC
    try:
        year = int(values["Y"]) if "Y" in values else (2000 + int(values["y"]) if "y" in values else None)
        if year is None:
            year = datetime.now(UTC).year
        if "j" in values:
            base = datetime(year, 1, 1) + timedelta(days=int(values["j"]) - 1)
            month, day = base.month, base.day
        else:
            month_text = values.get("b") or values.get("h") or values.get("B")
            month = _MONTHS.index(month_text[:3].lower()) + 1 if month_text else int(values.get("m", 1))
            day = int(values.get("d") or values.get("e") or 1)
        hour = int(values.get("H") or values.get("k") or values.get("I") or 0)
        if values.get("p"):
            hour = hour % 12 + (12 if values["p"].lower() == "pm" else 0)
        stamp = datetime(year, month, day, hour, int(values.get("M", 0)), int(values.get("S", 0)), tzinfo=zone)
    except (ValueError, KeyError):
        return None
    return stamp.timestamp() + frac


@dataclass
class _TimeContext:
    mtime: float
    now: float
    tz: str
    previous: float | None = None
    last_acceptable: float | None = None


def _extract_time(
    raw: str, fields: Mapping[str, list[str]], settings: Mapping[str, tuple[str, str]], ctx: _TimeContext
) -> tuple[float, str, str]:
    """(_time, status, description) following props.conf's timestamp settings and the docs' fallback
    order (previous event of the same source, then the file's mtime)."""
    tz = _setting(settings, "TZ") or ctx.tz
    config = (_setting(settings, "DATETIME_CONFIG") or "").upper()
    if config == "CURRENT":
        return ctx.now, "datetime_config", "DATETIME_CONFIG = CURRENT: the time the event was read"
    if config == "NONE":
        return ctx.mtime, "datetime_config", "DATETIME_CONFIG = NONE: the input layer's time (file mtime)"
    fmt = _setting(settings, "TIME_FORMAT")
    ts_fields = _setting(settings, "TIMESTAMP_FIELDS")
    status, desc, stamp = "", "", None
    if ts_fields:
        names = [n.strip() for n in ts_fields.split(",") if n.strip()]
        parts = [fields[n][0] for n in names if fields.get(n)]
        text = " ".join(parts)  # assumed: several TIMESTAMP_FIELDS are joined with a space
        where = f"TIMESTAMP_FIELDS {names} = {text!r}"
        if len(parts) != len(names):
            status, desc = "field_missing", f"{where}: a timestamp field is missing"
    else:
        text = raw
        where = "_raw"
        prefix = _setting(settings, "TIME_PREFIX")
        if prefix:
            m = re.search(_pcre_to_py(prefix), raw)
            if not m:
                status, desc = "prefix_not_found", f"TIME_PREFIX {prefix!r} not found in the event"
            else:
                text = raw[m.end() :]
                where = f"after TIME_PREFIX {prefix!r}"
        lookahead = _priority(_setting(settings, "MAX_TIMESTAMP_LOOKAHEAD"), 128)
        if lookahead > 0:
            text = text[:lookahead]
            where += f" (MAX_TIMESTAMP_LOOKAHEAD {lookahead}: {text!r})"
    if not status:
        if fmt:
            stamp = parse_splunk_time(fmt, text, tz)
            if stamp is None:
                status, desc = "format_mismatch", f"TIME_FORMAT {fmt!r} did not match {where}"
            else:
                status, desc = "parsed", f"TIME_FORMAT {fmt!r} read {where}"
        else:
            status, desc = "no_format", "no TIME_FORMAT: datetime.xml automatic recognition is not emulated"
    if stamp is not None:
        days_ago = _priority(_setting(settings, "MAX_DAYS_AGO"), 2000)
        days_hence = _priority(_setting(settings, "MAX_DAYS_HENCE"), 2)
        if stamp < ctx.mtime - days_ago * 86400 or stamp > ctx.mtime + days_hence * 86400:
            bound = "MAX_DAYS_AGO" if stamp < ctx.mtime else "MAX_DAYS_HENCE"
            fallback = ctx.last_acceptable if ctx.last_acceptable is not None else ctx.now
            which = "the last acceptable event's time" if ctx.last_acceptable is not None else "the current time"
            desc += (
                f"; {stamp} is outside {bound} ({days_ago if bound == 'MAX_DAYS_AGO' else days_hence} days)"
                f" of the file's mtime {ctx.mtime}: {which} is used"
            )
            return fallback, "out_of_range", desc
        ctx.last_acceptable = stamp
        return stamp, status, desc
    if ctx.previous is not None:
        return ctx.previous, status, desc + "; falls back to the previous event's time in this source"
    return ctx.mtime, status, desc + "; falls back to the file's modification time (no earlier event)"


# ---------------------------------------------------------------------------------------------------
# Index-time transforms
# ---------------------------------------------------------------------------------------------------


@dataclass
class _IndexState:
    raw: str
    source: str
    sourcetype: str
    host: str
    index: str
    queue: str = "indexQueue"
    meta: dict[str, list[str]] = field(default_factory=dict)


def _expand_format(fmt: str, m: re.Match[str], before: str) -> str:
    def repl(g: re.Match[str]) -> str:
        n = int(g.group(1))
        if n == 0:
            return before
        if n <= (m.re.groups or 0):
            return m.group(n) or ""
        return g.group(0)

    return re.sub(r"\$(\d)", repl, fmt)


def _apply_index_transform(name: str, stanza: Mapping[str, str], state: _IndexState, log: list[str]) -> None:
    for unsupported in ("INGEST_EVAL", "CLONE_SOURCETYPE"):
        if unsupported in stanza:
            raise NotImplementedError(f"transforms.conf [{name}] {unsupported} is not emulated")
    source_key = stanza.get("SOURCE_KEY", "_raw")
    keyed = {
        "_raw": state.raw,
        "MetaData:Source": "source::" + state.source,
        "MetaData:Sourcetype": "sourcetype::" + state.sourcetype,
        "MetaData:Host": "host::" + state.host,
        "_MetaData:Index": state.index,
    }
    if source_key in keyed:
        value = keyed[source_key]
    elif source_key.startswith(("field:", "fields:")):
        names = source_key.split(":", 1)[1].split(",")
        value = " ".join(v for n in names for v in state.meta.get(n.strip(), []))
    else:
        raise NotImplementedError(f"transforms.conf [{name}] SOURCE_KEY = {source_key} is not emulated")
    if source_key == "_raw":
        value = value[: _priority(stanza.get("LOOKAHEAD"), 4096)]
    regex = stanza.get("REGEX")
    if not regex:
        raise NotImplementedError(f"transforms.conf [{name}] without REGEX is not emulated")
    m = re.search(_pcre_to_py(regex), value)
    if not m:
        log.append(f"[{name}] REGEX {regex!r} did not match {source_key}")
        return
    dest = stanza.get("DEST_KEY", "")
    before = {"queue": state.queue, "_raw": state.raw}.get(dest, keyed.get(dest, ""))
    result = _expand_format(stanza.get("FORMAT", f"{name}::$1"), m, before)
    if dest == "queue":
        state.queue = result
        log.append(f"[{name}] {source_key} matched: queue -> {result}")
    elif dest in ("MetaData:Sourcetype", "MetaData:Host", "MetaData:Source"):
        prefix = dest.split(":")[1].lower() + "::"
        new = result[len(prefix) :] if result.startswith(prefix) else result
        attr = dest.split(":")[1].lower()
        log.append(f"[{name}] {source_key} matched {m.group(0)!r}: {attr} {getattr(state, attr)} -> {new}")
        setattr(state, attr, new)
    elif dest == "_MetaData:Index":
        log.append(f"[{name}] index {state.index} -> {result}")
        state.index = result
    elif dest == "_raw":
        log.append(f"[{name}] _raw rewritten")
        state.raw = result
    elif dest in ("", "_meta") and (dest == "_meta" or _bool(stanza.get("WRITE_META"), False)):
        for pair in re.findall(r'(\S+?)::("[^"]*"|\S+)', result):
            state.meta.setdefault(pair[0], []).append(pair[1].strip('"'))
        log.append(f"[{name}] indexed fields {result!r}")
    else:
        raise NotImplementedError(f"transforms.conf [{name}] DEST_KEY = {dest or '(none)'} is not emulated")


# ---------------------------------------------------------------------------------------------------
# Eval (calculated fields)
# ---------------------------------------------------------------------------------------------------


class _FieldStr(str):
    """A value read from an event field: numeric-looking ones count as numbers in eval."""


_NUM_RE = re.compile(r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$")

_EVAL_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
   |(?P<str>"(?:[^"\\]|\\.)*")
   |(?P<field>'(?:[^'\\]|\\.)*')
   |(?P<op>==|!=|<=|>=|[-+*/%.<>=(),!])
   |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.X,
)


def _eval_tokens(expr: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _EVAL_TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse eval expression at {expr[pos:]!r}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "name" and text in ("AND", "OR", "XOR", "NOT", "LIKE"):
            kind = "op"
        tokens.append((kind, text))
        pos = m.end()
    return tokens


class _EvalParser:
    """Precedence (low to high): OR/XOR, AND, NOT, comparisons/LIKE, + - . , * / %, unary -.
    Search docs: eval evaluates AND before OR; putting ``.`` with ``+``/``-`` is assumed."""

    def __init__(self, expr: str) -> None:
        self.tokens = _eval_tokens(expr)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, text: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (text is not None and tok[1] != text):
            raise ValueError(f"eval: expected {text or 'more input'}, got {tok}")
        self.pos += 1
        return tok

    def parse(self) -> Any:
        node = self.binary(0)
        if self.peek() is not None:
            raise ValueError(f"eval: unexpected {self.peek()}")
        return node

    LEVELS: tuple[tuple[str, ...], ...] = (
        ("OR", "XOR"),
        ("AND",),
        ("NOT",),
        ("=", "==", "!=", "<", ">", "<=", ">=", "LIKE"),
        ("+", "-", "."),
        ("*", "/", "%"),
    )

    def binary(self, level: int) -> Any:
        if level == len(self.LEVELS):
            return self.unary()
        ops = self.LEVELS[level]
        if ops == ("NOT",):
            tok = self.peek()
            if tok and tok == ("op", "NOT"):
                self.take()
                return ("not", self.binary(level))
            return self.binary(level + 1)
        node = self.binary(level + 1)
        while (tok := self.peek()) and tok[0] == "op" and tok[1] in ops:
            self.take()
            node = ("bin", tok[1], node, self.binary(level + 1))
        return node

    def unary(self) -> Any:
        tok = self.peek()
        if tok == ("op", "-"):
            self.take()
            return ("neg", self.unary())
        if tok == ("op", "!"):
            self.take()
            return ("not", self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "num":
            return ("lit", float(text) if ("." in text or "e" in text.lower()) else int(text))
        if kind == "str":
            return ("lit", re.sub(r"\\(.)", r"\1", text[1:-1]))
        if kind == "field":
            return ("field", re.sub(r"\\(.)", r"\1", text[1:-1]))
        if (kind, text) == ("op", "("):
            node = self.binary(0)
            self.take(")")
            return node
        if kind == "name":
            if self.peek() == ("op", "("):
                self.take()
                args = []
                if self.peek() != ("op", ")"):
                    args.append(self.binary(0))
                    while self.peek() == ("op", ","):
                        self.take()
                        args.append(self.binary(0))
                self.take(")")
                return ("call", text.lower(), args)
            return ("field", text)
        raise ValueError(f"eval: unexpected {text!r}")


def _num(v: Any) -> int | float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return v
    if isinstance(v, list):
        return _num(v[0]) if v else None
    if isinstance(v, str) and _NUM_RE.match(v):
        text = v.strip()
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    return None


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        text = repr(v)
        return text[:-2] if text.endswith(".0") else text
    return str(v)


def _first(v: Any) -> Any:
    if isinstance(v, list):
        return v[0] if v else None
    return v


def _truth(v: Any) -> bool:
    return bool(v) if isinstance(v, bool) else v is not None


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    left = a if isinstance(a, list) else [a]
    for item in left:
        na, nb = _num(item), _num(b)
        if na is not None and nb is not None and not (isinstance(item, str) and not isinstance(item, _FieldStr)):
            x, y = na, nb
        else:
            x, y = _fmt(item), _fmt(b)
        result = {
            "=": x == y,
            "==": x == y,
            "!=": x != y,
            "<": x < y,
            ">": x > y,
            "<=": x <= y,
            ">=": x >= y,
        }[op]
        if result:
            return True
    return False


_EVAL_FUNCS = frozenset(
    {"coalesce", "if", "case", "isnotnull", "isnull", "isnum", "isstr", "null", "true", "false", "split"}
    | {"mvindex", "mvcount", "lower", "upper", "len", "tonumber", "tostring", "spath", "like"}
)


def _eval(node: Any, event: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "field":
        value = event.get(node[1])
        if value is None:
            return None
        if isinstance(value, list):
            return [_FieldStr(v) for v in value]
        if isinstance(value, float):
            return value
        return _FieldStr(value)
    if kind == "neg":
        n = _num(_eval(node[1], event))
        return None if n is None else -n
    if kind == "not":
        v = _eval(node[1], event)
        return None if v is None else not _truth(v)
    if kind == "bin":
        return _eval_binary(node[1], node[2], node[3], event)
    if kind == "call":
        return _eval_call(node[1], node[2], event)
    raise ValueError(f"eval: bad node {node!r}")


def _eval_binary(op: str, left: Any, right: Any, event: Mapping[str, Any]) -> Any:
    if op in ("AND", "OR", "XOR"):
        a = _eval(left, event)
        if op == "AND" and not _truth(a):
            return False
        if op == "OR" and _truth(a):
            return True
        b = _eval(right, event)
        return (_truth(a) != _truth(b)) if op == "XOR" else _truth(b)
    a, b = _eval(left, event), _eval(right, event)
    if op == ".":
        if a is None or b is None:
            return None
        return _fmt(_first(a)) + _fmt(_first(b))
    if op == "LIKE":
        return _like(a, b)
    if op in ("=", "==", "!=", "<", ">", "<=", ">="):
        return _compare(op, a, b)
    a, b = _first(a), _first(b)
    if a is None or b is None:
        return None
    na, nb = _num(a), _num(b)
    if op == "+" and (na is None or nb is None):
        return _fmt(a) + _fmt(b) if isinstance(a, str) and isinstance(b, str) else None
    if na is None or nb is None:
        return None
    try:
        if op == "+":
            return na + nb
        if op == "-":
            return na - nb
        if op == "*":
            return na * nb
        if op == "/":
            return na / nb
        return na % nb
    except ZeroDivisionError:
        return None


def _like(a: Any, pattern: Any) -> bool | None:
    if a is None or pattern is None:
        return None
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in _fmt(_first(pattern)))
    return re.fullmatch(regex, _fmt(_first(a)), re.S) is not None


def _spath(doc_text: Any, path: Any) -> Any:
    if doc_text is None or path is None:
        return None
    try:
        doc = _json_loads(_fmt(_first(doc_text)))
    except ValueError:
        return None
    current: list[Any] = [doc]
    for part in _fmt(_first(path)).split("."):
        m = re.fullmatch(r"([^{}]*)((?:\{\})*)", part)
        if not m:
            raise NotImplementedError(f"spath path segment {part!r} (array index) is not emulated")
        key, arrays = m.group(1), m.group(2).count("{}")
        nxt = []
        for item in current:
            if key:
                if not isinstance(item, dict) or key not in item:
                    continue
                item = item[key]
            items = [item]
            for _ in range(arrays):
                items = [x for it in items if isinstance(it, list) for x in it]
            nxt.extend(items)
        current = nxt
    values = [json.dumps(v, separators=(",", ":")) if isinstance(v, dict | list) else _json_scalar(v) for v in current]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _eval_call(name: str, args: list[Any], event: Mapping[str, Any]) -> Any:
    if name not in _EVAL_FUNCS:
        raise NotImplementedError(f"eval function {name}() is not emulated")
    if name == "coalesce":
        for arg in args:
            value = _eval(arg, event)
            if value is not None:
                return value
        return None
    if name == "if":
        if len(args) != 3:
            raise ValueError("if() takes 3 arguments")
        return _eval(args[1] if _truth(_eval(args[0], event)) else args[2], event)
    if name == "case":
        for cond, value in zip(args[::2], args[1::2]):
            if _truth(_eval(cond, event)):
                return _eval(value, event)
        return None
    if name in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[name]
    vals = [_eval(a, event) for a in args]
    if name == "isnotnull":
        return vals[0] is not None
    if name == "isnull":
        return vals[0] is None
    if name == "isnum":
        v = _first(vals[0])
        return (isinstance(v, int | float) and not isinstance(v, bool)) or (
            isinstance(v, _FieldStr) and _num(v) is not None
        )
    if name == "isstr":
        v = _first(vals[0])
        return isinstance(v, str) and not (isinstance(v, _FieldStr) and _num(v) is not None)
    if name == "split":
        if vals[0] is None or vals[1] is None:
            return None
        sep = _fmt(_first(vals[1]))
        items = vals[0] if isinstance(vals[0], list) else [vals[0]]
        out = [p for item in items for p in (_fmt(item).split(sep) if sep else list(_fmt(item)))]
        return out[0] if len(out) == 1 else out
    if name == "mvindex":
        if vals[0] is None:
            return None
        items = vals[0] if isinstance(vals[0], list) else [vals[0]]
        start = _num(vals[1])
        end = _num(vals[2]) if len(vals) > 2 else start
        if start is None or end is None:
            return None
        start, end = int(start), int(end)
        start = start + len(items) if start < 0 else start
        end = end + len(items) if end < 0 else end
        if start < 0 or start >= len(items):
            return None
        picked = items[start : min(end, len(items) - 1) + 1]
        return picked[0] if len(picked) == 1 else (picked or None)
    if name == "mvcount":
        return None if vals[0] is None else (len(vals[0]) if isinstance(vals[0], list) else 1)
    if name in ("lower", "upper"):
        if vals[0] is None:
            return None
        conv = str.lower if name == "lower" else str.upper
        return [conv(_fmt(v)) for v in vals[0]] if isinstance(vals[0], list) else conv(_fmt(vals[0]))
    if name == "len":
        return None if vals[0] is None else len(_fmt(_first(vals[0])))
    if name == "tonumber":
        v = _first(vals[0])
        if v is None:
            return None
        base = int(_num(vals[1]) or 10) if len(vals) > 1 else 10
        try:
            return _num(v) if base == 10 else int(_fmt(v), base)
        except ValueError:
            return None
    if name == "tostring":
        return None if vals[0] is None else _fmt(_first(vals[0]))
    if name == "spath":
        return _spath(vals[0], vals[1])
    return _like(vals[0], vals[1])  # like()


def eval_expression(expr: str, event: Mapping[str, Any]) -> Any:
    """Evaluate a Splunk eval expression against an event's fields (strings or lists). Supported:
    field names (``'quoted.name'`` or bare), string/number literals, ``.`` concatenation, arithmetic,
    comparisons, AND/OR/XOR/NOT, LIKE, and the functions coalesce, if, case, isnotnull, isnull, isnum,
    isstr, null, true, false, split, mvindex, mvcount, lower, upper, len, tonumber, tostring, like,
    spath; anything else raises NotImplementedError. Returns None for null, a list for multivalue."""
    return _eval(_EvalParser(expr).parse(), event)


def _eval_result(value: Any) -> list[str] | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, list):
        return [_fmt(v) for v in value] or None
    return [_fmt(value)]


# ---------------------------------------------------------------------------------------------------
# Event type searches
# ---------------------------------------------------------------------------------------------------


def _search_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "()":
            tokens.append(c)
            i += 1
            continue
        j = i
        while j < len(text) and not text[j].isspace() and text[j] not in "()":
            if text[j] == '"':
                j += 1
                while j < len(text) and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
            j += 1
        tokens.append(text[i:j])
        i = j
    return tokens


def _unquote(value: str) -> tuple[str, bool]:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1]), True
    return value, False


def _wildcard_match(pattern: str, value: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, re.I | re.S) is not None


class _SearchParser:
    """Splunk search subset: terms, ``field=value`` (``*`` wildcards, quotes), ``field!=value``,
    ``field IN (a, b)``, implicit/explicit AND, OR, NOT, parentheses. OR binds tighter than AND
    (Search Manual, "Boolean expressions")."""

    def __init__(self, text: str) -> None:
        self.tokens = _search_tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> Any:
        node = self.and_expr()
        if self.peek() is not None:
            raise ValueError(f"search: unexpected {self.peek()!r}")
        return node

    def and_expr(self) -> Any:
        items = [self.or_expr()]
        while (tok := self.peek()) is not None and tok != ")":
            if tok == "AND":
                self.pos += 1
            items.append(self.or_expr())
        return ("and", items) if len(items) > 1 else items[0]

    def or_expr(self) -> Any:
        items = [self.not_expr()]
        while self.peek() == "OR":
            self.pos += 1
            items.append(self.not_expr())
        return ("or", items) if len(items) > 1 else items[0]

    def not_expr(self) -> Any:
        if self.peek() == "NOT":
            self.pos += 1
            return ("not", self.not_expr())
        return self.primary()

    def primary(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise ValueError("search: unexpected end")
        self.pos += 1
        if tok == "(":
            node = self.and_expr()
            if self.peek() != ")":
                raise ValueError("search: missing )")
            self.pos += 1
            return node
        if self.peek() == "IN" and self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1] == "(":
            self.pos += 2
            values = []
            while self.peek() not in (")", None):
                values += [v for v in self.tokens[self.pos].split(",") if v]
                self.pos += 1
            self.pos += 1
            return ("or", [("cmp", tok, "=", v) for v in values])
        m = re.match(r'^([^="!<>]+?)(!=|<=|>=|=|<|>)(.*)$', tok, re.S)
        if m and not tok.startswith('"'):
            if m.group(2) in ("<", ">", "<=", ">="):
                raise NotImplementedError(f"search comparison {tok!r} is not emulated")
            return ("cmp", m.group(1), m.group(2), m.group(3))
        return ("term", tok)


def _search_eval(node: Any, event: Mapping[str, Any], eventtypes: Mapping[str, Mapping[str, str]], depth: int) -> bool:
    kind = node[0]
    if kind == "and":
        return all(_search_eval(n, event, eventtypes, depth) for n in node[1])
    if kind == "or":
        return any(_search_eval(n, event, eventtypes, depth) for n in node[1])
    if kind == "not":
        return not _search_eval(node[1], event, eventtypes, depth)
    if kind == "term":
        text, quoted = _unquote(node[1])
        raw = str(event.get("_raw", ""))
        if quoted and "*" not in text:
            return text.lower() in raw.lower()
        parts = [re.escape(p) for p in text.split("*")]
        regex = r"(?<![A-Za-z0-9_])" + r"\S*".join(parts) + r"(?![A-Za-z0-9_])"
        return re.search(regex, raw, re.I) is not None
    _, name, op, value_text = node
    value, _ = _unquote(value_text)
    if name == "tag":
        raise NotImplementedError("tag= in an event type search is not emulated (tags come after event types)")
    if name == "eventtype":
        if depth > 10:
            raise ValueError("event type searches nest too deeply")
        names = [n for n in eventtypes if _wildcard_match(value, n)]
        hit = any(
            search_matches(eventtypes[n].get("search", ""), event, eventtypes=eventtypes, _depth=depth + 1)
            for n in names
            if not _bool(eventtypes[n].get("disabled"), False)
        )
        return hit if op == "=" else not hit
    values = _values(event, name)
    if value == "*":
        found = any(v != "" for v in values)
        return found if op == "=" else False
    hit = any(_wildcard_match(value, v) for v in values)
    if op == "=":
        return hit
    return bool(values) and not hit


def search_matches(
    search: str,
    event: Mapping[str, Any],
    *,
    eventtypes: Mapping[str, Mapping[str, str]] | None = None,
    _depth: int = 0,
) -> bool:
    """Whether an event matches a search (the eventtypes.conf ``search =`` subset): field values match
    case-insensitively with ``*`` wildcards; a field=value term needs the field; ``field!=v`` needs the
    field with no matching value; ``NOT field=v`` also matches events without it; bare terms match
    ``_raw`` case-insensitively at word boundaries (assumed approximation of Splunk's segmentation)."""
    return _search_eval(_SearchParser(search).parse(), event, eventtypes or {}, _depth)


# ---------------------------------------------------------------------------------------------------
# Search-time operations
# ---------------------------------------------------------------------------------------------------


def _apply_regex_fields(
    event: Event, regex: str, text: str, *, mv_add: bool, what: str, fmt: str | None = None
) -> list[str]:
    compiled = re.compile("(?ms)" + _pcre_to_py(regex))
    if any(n.startswith(("_KEY_", "_VAL_")) for n in compiled.groupindex):
        raise NotImplementedError(f"{what}: _KEY_/_VAL_ groups are not emulated")
    m = compiled.search(text)
    if not m:
        return []
    pairs: list[tuple[str, str]] = []
    if fmt:
        for fname, fvalue in re.findall(r'(\S+?)::("[^"]*"|\S+)', fmt):
            name = _expand_format(fname, m, "")
            value = _expand_format(fvalue, m, "")
            if value.startswith('"') and value.endswith('"'):
                value = value[1:-1]  # assumed: quotes around a FORMAT value are not part of the value
            pairs.append((name, value))
    else:
        pairs = [(n, v) for n, v in m.groupdict().items() if v is not None]
    added = []
    for name, value in pairs:
        if value == "":
            continue  # KEEP_EMPTY_VALS defaults to false
        if name in event and not mv_add:
            continue
        _add_value(event, name, value)
        added.append(name)
    return added


def _apply_fieldalias(event: Event, cls: str, value: str, trace: EventTrace) -> None:
    tokens = [t.strip('"') for t in value.split()]
    if len(tokens) % 3:
        raise ValueError(f"FIELDALIAS-{cls}: cannot parse {value!r}")
    for orig, kw, new in zip(tokens[::3], tokens[1::3], tokens[2::3]):
        mode = kw.upper()
        if mode not in ("AS", "ASNEW"):
            raise ValueError(f"FIELDALIAS-{cls}: expected AS or ASNEW in {value!r}")
        source_values = _values(event, orig)
        if mode == "AS":
            if source_values:
                _store(event, new, source_values)
                trace.operations.append(f"FIELDALIAS-{cls}: {orig} AS {new}")
            elif new in event:
                del event[new]
                trace.operations.append(f"FIELDALIAS-{cls}: {orig} missing, {new} removed")
        elif new not in event and source_values:
            _store(event, new, source_values)
            trace.operations.append(f"FIELDALIAS-{cls}: {orig} ASNEW {new}")


def _parse_lookup(value: str) -> tuple[str, list[tuple[str, str]], str, list[tuple[str, str]]]:
    tokens = re.findall(r'"[^"]*"|[^\s,]+', value)
    tokens = [t.strip('"') for t in tokens]
    if not tokens:
        raise ValueError("empty LOOKUP")
    table, rest = tokens[0], tokens[1:]
    matches: list[tuple[str, str]] = []
    outputs: list[tuple[str, str]] = []
    mode = ""
    target = matches
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok.upper() in ("OUTPUT", "OUTPUTNEW") and not mode:
            mode = tok.upper()
            target = outputs
            i += 1
            continue
        if i + 2 < len(rest) and rest[i + 1].upper() == "AS":
            target.append((tok, rest[i + 2]))
            i += 3
        else:
            target.append((tok, tok))
            i += 1
    return table, matches, mode or "OUTPUT", outputs


_CSV_CACHE: dict[tuple[str, float], tuple[list[str], list[dict[str, str]]]] = {}


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    key = (str(path), path.stat().st_mtime)
    if key not in _CSV_CACHE:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = [dict(r) for r in reader]
            _CSV_CACHE[key] = (list(reader.fieldnames or []), rows)
    return _CSV_CACHE[key]


def _lookup_value_matches(kind: str, pattern: str, value: str, case_sensitive: bool) -> bool:
    if kind == "WILDCARD":
        return _wildcard_match(pattern, value) if not case_sensitive else fnmatch.fnmatchcase(value, pattern)
    if kind == "CIDR":
        try:
            return ipaddress.ip_address(value) in ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
    return pattern == value if case_sensitive else pattern.lower() == value.lower()


def _apply_lookup(event: Event, cls: str, value: str, apps: SplunkApps, trace: EventTrace) -> None:
    table, matches, mode, outputs = _parse_lookup(value)
    transform = apps.conf("transforms").get(table)
    label = f"LOOKUP-{cls} ({table})"
    if transform is None:
        trace.skipped.append(f"{label}: no [{table}] in transforms.conf")
        return
    filename = transform.get("filename")
    if not filename:
        trace.skipped.append(f"{label}: not a CSV file lookup (external/KV store lookups are not emulated)")
        return
    path = apps.lookup_file(filename)
    if path is None:
        trace.skipped.append(f"{label}: {filename} is not among the files provided")
        return
    inputs = [_values(event, ev_field) for _, ev_field in matches]
    if not all(inputs):
        return
    columns, rows = _read_csv(path)
    kinds = {
        m.group(2): m.group(1).upper()
        for m in re.finditer(r"(WILDCARD|CIDR|EXACT)\(([^)]+)\)", transform.get("match_type", ""), re.I)
    }
    case_sensitive = _bool(transform.get("case_sensitive_match"), True)
    max_matches = _priority(transform.get("max_matches"), 100)
    min_matches = _priority(transform.get("min_matches"), 0)
    out_pairs = outputs or [(c, c) for c in columns if c not in {m for m, _ in matches}]
    found: dict[str, list[str]] = {}
    any_match = False
    for combo in itertools.product(*inputs):
        hits = [
            row
            for row in rows
            if all(
                _lookup_value_matches(kinds.get(col, "EXACT"), row.get(col, ""), val, case_sensitive)
                for (col, _), val in zip(matches, combo)
            )
        ][:max_matches]
        if len(hits) < min_matches:
            default = transform.get("default_match", "")
            hits += [dict.fromkeys(columns, default)] * (min_matches - len(hits))
        any_match = any_match or bool(hits)
        for row in hits:
            for col, ev_field in out_pairs:
                v = row.get(col, "")
                if v != "":
                    found.setdefault(ev_field, []).append(v)
    for _, ev_field in out_pairs:
        if mode == "OUTPUTNEW" and ev_field in event:
            continue
        if ev_field in found:
            _store(event, ev_field, found[ev_field])
        elif mode == "OUTPUT" and ev_field in event:
            del event[ev_field]  # a lookup with no matching row clears OUTPUT fields (props.conf.spec)
    trace.operations.append(
        f"{label} {mode}: "
        + (", ".join(f"{k}={v}" for k, v in found.items()) if any_match else "no matching row")
        + f" [{filename}]"
    )


def _search_time(event: Event, apps: SplunkApps, trace: EventTrace) -> None:
    props = apps.conf("props")
    sourcetype = str(event["sourcetype"])
    rename = props.get(sourcetype, {}).get("rename")
    if rename:
        event["_sourcetype"] = sourcetype
        event["sourcetype"] = rename
        trace.operations.append(f"[{sourcetype}] rename = {rename}")
        sourcetype = rename
    matches = matching_props_stanzas(props, source=str(event["source"]), sourcetype=sourcetype, host=str(event["host"]))
    trace.search_time_stanzas = [m.name for m in matches]
    settings = _merge_settings(props, matches)

    for cls, value, stanza in _classes(settings, "EXTRACT"):
        m = re.fullmatch(r"(.*)\s+in\s+([A-Za-z0-9_]+)", value, re.S)
        regex, src = (m.group(1), m.group(2)) if m else (value, "_raw")
        for text in _values(event, src):
            added = _apply_regex_fields(event, regex, text, mv_add=False, what=f"EXTRACT-{cls}")
            if added:
                trace.operations.append(f"EXTRACT-{cls} [{stanza}] from {src}: {', '.join(added)}")
    transforms = apps.conf("transforms")
    for cls, value, _stanza in _classes(settings, "REPORT"):
        for name in (n.strip() for n in value.split(",") if n.strip()):
            tr = transforms.get(name)
            if tr is None:
                trace.skipped.append(f"REPORT-{cls}: no [{name}] in transforms.conf")
                continue
            if "DELIMS" in tr or "REGEX" not in tr:
                raise NotImplementedError(f"REPORT-{cls} [{name}]: only REGEX transforms are emulated")
            src = tr.get("SOURCE_KEY", "_raw")
            for text in _values(event, src):
                added = _apply_regex_fields(
                    event, tr["REGEX"], text, mv_add=_bool(tr.get("MV_ADD"), False), what=name, fmt=tr.get("FORMAT")
                )
                if added:
                    trace.operations.append(f"REPORT-{cls} [{name}] from {src}: {', '.join(added)}")

    kv_mode = (_setting(settings, "KV_MODE", "auto") or "auto").lower()
    raw = str(event["_raw"])
    if kv_mode == "json" or (kv_mode in ("auto", "auto_escaped") and _bool(_setting(settings, "AUTO_KV_JSON"), True)):
        extracted = _flatten_json_text(raw)
        for name, vals in extracted.items():
            if name in DEFAULT_FIELDS:
                trace.notes.append(f"JSON key {name!r} clashes with the default field; emulator keeps the default")
                continue
            for v in vals:
                _add_value(event, name, v)
        if extracted:
            trace.operations.append(f"KV_MODE={kv_mode}: {len(extracted)} JSON fields")
    if kv_mode in ("auto", "auto_escaped") and "=" in raw and not raw.lstrip().startswith("{"):
        trace.notes.append("KV_MODE=auto key=value discovery is not emulated")
    elif kv_mode in ("xml",) or kv_mode.startswith("multi"):
        raise NotImplementedError(f"KV_MODE = {kv_mode} is not emulated")

    for cls, value, _stanza in _classes(settings, "FIELDALIAS"):
        _apply_fieldalias(event, cls, value, trace)

    results = {}
    for cls, value, stanza in _classes(settings, "EVAL"):
        results[cls] = (_eval_result(eval_expression(value, event)), stanza)
    for name, (vals, stanza) in results.items():  # EVALs run as if in parallel
        if vals is None:
            if name in event:
                del event[name]
                trace.operations.append(f"EVAL-{name} [{stanza}] is null: field removed")
        else:
            _store(event, name, vals)
            trace.operations.append(f"EVAL-{name} [{stanza}] = {vals[0] if len(vals) == 1 else vals}")

    for cls, value, _stanza in _classes(settings, "LOOKUP"):
        _apply_lookup(event, cls, value, apps, trace)

    eventtypes = apps.conf("eventtypes")
    matched = []
    for name, stanza in eventtypes.items():
        if name == "default" or _bool(stanza.get("disabled"), False) or not stanza.get("search"):
            continue
        if search_matches(stanza["search"], event, eventtypes=eventtypes):
            label = re.sub(r"%([^%]+)%", lambda m: (_values(event, m.group(1)) or [m.group(0)])[0], name)
            matched.append((_priority(stanza.get("priority"), 10), label))
    if matched:
        _store(event, "eventtype", [n for _, n in sorted(matched)])
        trace.operations.append(f"eventtype = {[n for _, n in sorted(matched)]}")

    tags_conf = apps.conf("tags")
    all_tags: list[str] = []
    for stanza_name, tag_settings in tags_conf.items():
        if "=" not in stanza_name:
            continue
        fname, fvalue = stanza_name.split("=", 1)
        fname, fvalue = urllib.parse.unquote(fname), urllib.parse.unquote(fvalue)
        if fvalue not in _values(event, fname):
            continue
        enabled = [t for t, state in tag_settings.items() if state.strip().lower() == "enabled"]
        for tag in enabled:
            _add_value(event, f"tag::{fname}", tag)
            if tag not in all_tags:
                all_tags.append(tag)
    if all_tags:
        _store(event, "tag", sorted(set(all_tags) | set(_values(event, "tag"))))
        trace.operations.append(f"tag = {sorted(all_tags)}")


# ---------------------------------------------------------------------------------------------------
# index_file
# ---------------------------------------------------------------------------------------------------


def _break_lines(text: str, settings: Mapping[str, tuple[str, str]]) -> list[tuple[int, str]]:
    breaker = _setting(settings, "LINE_BREAKER")
    out: list[tuple[int, str]] = []
    if breaker:
        compiled = re.compile(_pcre_to_py(breaker))
        if not compiled.groups:
            raise ValueError(f"LINE_BREAKER {breaker!r} needs a capturing group")
        pos, line_no = 0, 1
        for m in compiled.finditer(text):
            chunk = text[pos : m.start(1)]
            if chunk.strip():
                out.append((line_no, chunk))
            line_no += text[pos : m.end(1)].count("\n")
            pos = m.end(1)
        if text[pos:].strip():
            out.append((line_no, text[pos:]))
    else:
        out = [(i, line.rstrip("\r")) for i, line in enumerate(text.split("\n"), 1) if line.strip("\r\n")]
    truncate = _priority(_setting(settings, "TRUNCATE"), 10000)
    if truncate > 0:
        out = [(n, s.encode("utf-8")[:truncate].decode("utf-8", "ignore")) for n, s in out]
    return out


def index_file(
    apps: SplunkApp | SplunkApps | Sequence[SplunkApp],
    path: Path | str,
    *,
    source: str | None = None,
    sourcetype: str | None = None,
    inputs: Path | str | None = None,
    host: str | None = None,
    index: str | None = None,
    tz: str = "UTC",
    now: float | None = None,
    dropped: list[dict[str, Any]] | None = None,
) -> list[Event]:
    """Index a file as a ``[monitor://]`` input plus the apps' props/transforms would, then apply the
    search-time knowledge; returns the searchable events in file order.

    ``sourcetype``/``index``/``host`` come from the arguments, else the inputs.conf monitor stanza
    covering the file, else a props ``[source::]`` ``sourcetype``; host defaults to this machine's
    name, index to ``main``. A file that no enabled monitor stanza picks up gives no events. Events
    routed to ``nullQueue`` are left out (appended to ``dropped`` when given). ``tz`` stands for the
    splunkd system zone; ``now`` (default: the clock) is the index time used by timestamp fallbacks.
    """
    the_apps = _as_apps(apps)
    file_path = Path(path)
    src = source or str(file_path.absolute())
    input_notes = []
    monitor: dict[str, str] = {}
    if inputs is not None:
        stanza, monitor, why = find_monitor_stanza(inputs, file_path)
        input_notes.append(why)
        if stanza is None:
            return []
    props = the_apps.conf("props")
    the_host = host or monitor.get("host") or socket.gethostname()
    the_sourcetype = sourcetype or monitor.get("sourcetype")
    if the_sourcetype:
        input_notes.append(f"sourcetype {the_sourcetype} from " + ("the caller" if sourcetype else "inputs.conf"))
    else:
        source_settings = _merge_settings(props, matching_props_stanzas(props, source=src, host=the_host))
        the_sourcetype = _setting(source_settings, "sourcetype")
        if not the_sourcetype:
            raise ValueError(f"no sourcetype for {src}: pass one, an inputs.conf, or a props [source::] sourcetype")
        input_notes.append(f"sourcetype {the_sourcetype} from props [{source_settings['sourcetype'][1]}]")
    the_index = index or monitor.get("index") or "main"

    index_matches = matching_props_stanzas(props, source=src, sourcetype=the_sourcetype, host=the_host)
    settings = _merge_settings(props, index_matches)
    if _bool(_setting(settings, "SHOULD_LINEMERGE"), True):
        input_notes.append("SHOULD_LINEMERGE is true: line merging is not emulated, one event per line")
    for unsupported in ("SEDCMD",):
        if any(k.upper().startswith(unsupported + "-") for k in settings):
            raise NotImplementedError(f"{unsupported}- is not emulated")
    stat = file_path.stat()
    ctx = _TimeContext(mtime=stat.st_mtime, now=time.time() if now is None else now, tz=tz)
    text = file_path.read_bytes().decode("utf-8", errors="replace")
    structured_kind = (_setting(settings, "INDEXED_EXTRACTIONS") or "").upper()
    structured = _Structured(structured_kind, settings) if structured_kind else None
    transforms = the_apps.conf("transforms")
    transform_names = [
        (cls, name.strip(), stanza)
        for cls, value, stanza in _classes(settings, "TRANSFORMS")
        for name in value.split(",")
        if name.strip()
    ]

    events: list[Event] = []
    for line_no, raw in _break_lines(text, settings):
        fields: dict[str, list[str]] = {}
        trace = EventTrace(line=line_no, input=list(input_notes), index_time_stanzas=[m.name for m in index_matches])
        if structured is not None:
            kind, fields, note = structured.feed(line_no, raw)
            if kind == "skip":
                continue
            if note:
                trace.notes.append(note)
            trace.notes.append(f"INDEXED_EXTRACTIONS={structured_kind}, header from {structured.header_source or '-'}")
        stamp, status, desc = _extract_time(raw, fields, settings, ctx)
        ctx.previous = stamp
        trace.timestamp, trace.timestamp_status = desc, status
        state = _IndexState(raw=raw, source=src, sourcetype=the_sourcetype, host=the_host, index=the_index)
        for cls, name, stanza in transform_names:
            tr = transforms.get(name)
            if tr is None:
                trace.skipped.append(f"TRANSFORMS-{cls} [{stanza}]: no [{name}] in transforms.conf")
                continue
            _apply_index_transform(name, tr, state, trace.transforms)
        if state.queue == "nullQueue":
            if dropped is not None:
                dropped.append({"line": line_no, "_raw": raw, "reason": "nullQueue", "trace": trace})
            continue
        event = Event(
            _raw=state.raw,
            _time=stamp,
            host=state.host,
            index=state.index,
            source=state.source,
            sourcetype=state.sourcetype,
        )
        event.trace = trace
        for name, vals in (*fields.items(), *state.meta.items()):
            if name in DEFAULT_FIELDS:
                trace.notes.append(f"indexed field {name!r} clashes with the default field; emulator keeps the default")
                continue
            _store(event, name, vals)
        _search_time(event, the_apps, trace)
        events.append(event)
    return events
