"""A small interpreter of Elasticsearch ingest pipelines, for tests.

It runs the ingest definitions that SOC tools ship for Zeek notices and Suricata eve (the Elastic
integrations, the Filebeat zeek module, Security Onion 2.4) on a document, the way the
``_ingest/pipeline/_simulate`` API would, so that zeek-ml's output can be checked against the real
parsing rules without an Elasticsearch cluster.  It is written from the Elasticsearch reference
documentation and the processor sources, and it is validated against the upstream pipeline tests
(``tests/test_soc_emulator.py``).

Public API
----------
``load_pipeline(path, variables=None) -> dict``
    Read a pipeline definition: YAML (``*.yml``) or JSON (Security Onion files), rendering the few
    Jinja constructs Security Onion wraps its files in (see :func:`render_jinja`).
``Registry``
    Named pipelines, as ``PUT _ingest/pipeline/<name>`` would store them; used by the ``pipeline``
    processor.  ``'{{ IngestPipeline "x" }}'`` (elastic-package) resolves to the registered ``x``.
``simulate(registry, name, source, *, metadata=None, ingest_timestamp=None) -> dict | None``
    Run pipeline ``name`` on a deep copy of ``source`` (the document ``_source``).  Returns the
    resulting ``_source``, or ``None`` when a ``drop`` processor dropped the document.  Raises
    :class:`IngestFailure` when a processor fails and no ``on_failure`` handles it (Elasticsearch
    would reject the document).
    *Metadata choice*: metadata fields (``_index``, ``_id``, ``_routing``, ...) passed in ``metadata``
    or set by processors (``set: {field: _index}``) are returned as top-level keys of the same dict,
    next to the source fields, as Elasticsearch's ``ctx`` shows them.  They can never collide with
    source fields (Elasticsearch forbids those names in ``_source``); :func:`split_metadata` separates
    them.
``render_mustache(template, model, *, escape="json") -> str``, ``painless_eval(expr, ctx) -> object``,
``community_id(...) -> str``, ``flatten(doc) -> dict``, ``script_sha256(source) -> str``,
``validate_pipeline(pipeline) -> list[str]`` (what the emulator would not cover, found statically).

Semantics kept from Elasticsearch
---------------------------------
* Processors run in order; ``if`` (a Painless condition, see below), ``ignore_failure``,
  per-processor ``on_failure`` and pipeline-level ``on_failure`` behave as in Elasticsearch, with
  ``_ingest.on_failure_message`` / ``_processor_type`` / ``_processor_tag`` / ``_pipeline`` and
  ``_ingest.pipeline`` visible to templates.  A failure inside a sub-pipeline keeps the type and tag
  of the innermost failing processor.
* Dotted field paths walk nested objects; a list level takes a numeric index.  A key that literally
  contains dots (``"id.orig_h"`` from the ``json`` processor) is *not* reachable by a dotted path
  until ``dot_expander`` expands it, exactly as in Elasticsearch.
* Values keep JSON types: ``int`` (Java Integer/Long), ``float`` (Double), ``bool``, ``str``,
  ``list``, ``dict``; ``convert`` to ``float`` yields the float32 value that Elasticsearch would
  serialise.  ``toString()`` of numbers follows Java (``3600.0``, ``1.320435875879278E9``).
* ``date`` renders ``yyyy-MM-dd'T'HH:mm:ss.SSSXXX`` in the processor timezone (default UTC, shown
  as ``Z``), truncating to milliseconds; ``UNIX`` is ``(long)(Double.parseDouble(s) * 1000)`` ms.

Painless
--------
``if`` conditions are evaluated by a small expression interpreter covering what the SOC files use:
``ctx.a.b``, null-safe ``?.``, ``ctx['x']``, literals, ``== != < <= > >=``, ``&& || !``, parentheses,
``instanceof`` and a few methods (``contains``, ``startsWith``, ``endsWith``, ``equals``, ``size``,
``isEmpty``, ...).  A non-null-safe access on null raises :class:`PainlessError` (Painless'
``NullPointerException``), which fails the processor (then ``ignore_failure`` / ``on_failure``
apply).  ``script`` processors are *not* interpreted: :data:`PAINLESS_SCRIPTS` maps the sha256 of a
script's exact ``source`` to a hand translation; any other script raises :class:`UnsupportedScript`
(never swallowed by ``ignore_failure``) so an upstream change is noticed.

Emulator limits (raise :class:`EmulatorLimitation`, never swallowed by ``ignore_failure``)
-----------------------------------------------------------------------------------------
Unknown processors or options, Painless outside the subset, unknown grok patterns, Java date
letters outside ``yMdHmsSXZEa``.  ``geoip`` and ``user_agent`` have no databases here: they check
their input like Elasticsearch does (missing field, non-IP value) but **add nothing**, so tests that
compare with upstream expected output must ignore ``*.geo``, ``*.as`` and ``user_agent`` fields.
``registered_domain`` uses a tiny built-in public-suffix list (:data:`PUBLIC_SUFFIXES`; a name whose
last label is not listed is treated as having a one-label suffix, like the PSL ``*`` rule).  Error
*messages* mimic Elasticsearch's but are not guaranteed to be byte-identical.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import ipaddress
import json
import math
import re
import struct
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "METADATA_FIELDS",
    "PAINLESS_SCRIPTS",
    "PUBLIC_SUFFIXES",
    "EmulatorLimitation",
    "IngestError",
    "IngestFailure",
    "PainlessError",
    "Registry",
    "UnsupportedScript",
    "community_id",
    "compile_painless",
    "dissect",
    "flatten",
    "iter_processors",
    "java_split",
    "java_str",
    "load_pipeline",
    "load_yaml",
    "painless_eval",
    "render_jinja",
    "render_mustache",
    "script_sha256",
    "simulate",
    "split_metadata",
    "validate_pipeline",
]

METADATA_FIELDS = (
    "_index",
    "_id",
    "_routing",
    "_version",
    "_version_type",
    "_if_seq_no",
    "_if_primary_term",
    "_dynamic_templates",
)
_MISSING = object()


# --------------------------------------------------------------------------- errors


class IngestError(Exception):
    """A runtime failure that Elasticsearch would raise inside a processor (handled by on_failure)."""


class PainlessError(IngestError):
    """A Painless runtime error (NullPointerException, ClassCastException, ...)."""


class ProcessorError(IngestError):
    """A processor failure, tagged with the innermost failing processor (as ES' headers are)."""

    def __init__(
        self, message: str, processor_type: str | None = None, tag: str | None = None, pipeline: str | None = None
    ):
        super().__init__(message)
        self.message = message
        self.processor_type = processor_type
        self.tag = tag
        self.pipeline = pipeline


class IngestFailure(ProcessorError):
    """Raised by :func:`simulate` when a failure reaches the top pipeline unhandled (ES rejects the doc)."""


class EmulatorLimitation(Exception):
    """Something this emulator does not implement; never swallowed by ``ignore_failure``."""


class UnsupportedScript(EmulatorLimitation):
    """A ``script`` source with no translation in the sha256 table (upstream changed, or new)."""


# --------------------------------------------------------------------------- Java-ish values


def java_type(value: Any) -> str:
    """The Java class name Elasticsearch would show for a JSON value (for error messages)."""
    if isinstance(value, bool):
        return "java.lang.Boolean"
    if isinstance(value, int):
        return "java.lang.Integer" if -(2**31) <= value < 2**31 else "java.lang.Long"
    if isinstance(value, float):
        return "java.lang.Double"
    if isinstance(value, str):
        return "java.lang.String"
    if isinstance(value, list):
        return "java.util.ArrayList"
    if isinstance(value, dict):
        return "java.util.HashMap"
    return type(value).__name__


def _java_double_str(value: float) -> str:
    """``Double.toString``: decimal for 1e-3 <= |x| < 1e7, else ``d.dddE±n``; shortest round-trip digits."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exponent = int(exponent) + len(digits) - len(stripped)
    digits = stripped
    sci_exp = len(digits) - 1 + exponent  # power of ten of the leading digit
    if 1e-3 <= abs(value) < 1e7:
        point = sci_exp + 1  # digits before the decimal point
        if point <= 0:
            text = "0." + "0" * (-point) + digits
        elif point >= len(digits):
            text = digits + "0" * (point - len(digits)) + ".0"
        else:
            text = digits[:point] + "." + digits[point:]
        return sign + text
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{sci_exp}"


def java_str(value: Any) -> str:
    """``Object.toString()`` as Java renders a JSON value (mustache, ``convert`` to string, dates)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _java_double_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(java_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_str(v)}" for k, v in value.items()) + "}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _object_equals(a: Any, b: Any) -> bool:
    """``Object.equals``: no numeric promotion (Integer(1) != Double(1.0)), booleans are not numbers."""
    if type(a) is not type(b):
        if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
            return a == b
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_object_equals(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_object_equals(a[k], b[k]) for k in a)
    return a == b


def _painless_equals(a: Any, b: Any) -> bool:
    """Painless ``==`` on ``def``: numbers compare by value (promoted), otherwise ``equals``."""
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) and _is_number(b):
        return a == b
    return _object_equals(a, b)


def _java_trim(text: str) -> str:
    """``String.trim()``: strips code points <= U+0020."""
    start, end = 0, len(text)
    while start < end and ord(text[start]) <= 32:
        start += 1
    while end > start and ord(text[end - 1]) <= 32:
        end -= 1
    return text[start:end]


_JAVA_INT = re.compile(r"[+-]?[0-9]+")
_JAVA_FLOAT = re.compile(
    r"[+-]?(?:NaN|Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?)",
)


def _parse_java_int(text: str, bits: int) -> int:
    """``Integer.parseInt`` / ``Long.parseLong`` (``decode`` for ``0x`` / ``-0x`` prefixes)."""
    if text.startswith(("0x", "-0x")):
        neg = text.startswith("-")
        body = text[3:] if neg else text[2:]
        if not re.fullmatch(r"[0-9a-fA-F]+", body):
            raise ValueError(text)
        value = -int(body, 16) if neg else int(body, 16)
    else:
        if not _JAVA_INT.fullmatch(text):
            raise ValueError(text)
        value = int(text)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise ValueError(text)
    return value


def _parse_java_double(text: str) -> float:
    """``Double.parseDouble`` (decimal forms; leading/trailing whitespace allowed)."""
    body = _java_trim(text)
    if not _JAVA_FLOAT.fullmatch(body):
        raise ValueError(text)
    return float(body.rstrip("fFdD"))


def _to_float32(value: float) -> float:
    """The float32 nearest ``value``, as the shortest decimal that round-trips (what ES serialises)."""
    f32 = struct.unpack("f", struct.pack("f", value))[0]
    if f32 != f32 or f32 in (float("inf"), float("-inf")):
        return f32
    for precision in range(1, 10):
        candidate = float(f"{f32:.{precision}g}")
        if struct.unpack("f", struct.pack("f", candidate))[0] == f32:
            return candidate
    return f32


# --------------------------------------------------------------------------- loading


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: only true/false are booleans, no timestamps or sexagesimals."""


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse YAML the way Go/Elastic tooling does (YAML 1.2 booleans, dates stay strings)."""
    return yaml.load(text, Loader=_Yaml12Loader)


_JINJA_TOKEN = re.compile(r"\{%(-?)\s*(.*?)\s*(-?)%\}|\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_JINJA_JOIN = re.compile(r"""^([A-Za-z_][\w.]*)\s*(?:\|\s*join\(\s*(['"])(.*?)\2\s*\))?$""")


def _dotted(variables: Mapping[str, Any], name: str) -> Any:
    value: Any = variables
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def render_jinja(text: str, variables: Mapping[str, Any] | None = None) -> str:
    """Render the Jinja subset Security Onion wraps its ingest/fleet files in.

    Supported: ``{% raw %}`` … ``{% endraw %}`` (verbatim), ``{% if NAME %}`` / ``{% else %}`` /
    ``{% endif %}`` (``NAME`` looked up in ``variables``, missing = false), ``{{ a.b | join('|') }}``,
    whitespace control (``{%-`` / ``-%}``).  ``{% set %}`` and ``{% from … import … %}`` are ignored:
    pass the values they would compute in ``variables`` (a missing name is false/empty).
    """
    variables = variables or {}
    out: list[str] = []
    emit = [True]
    raw = False
    pos = 0
    strip_next = False
    for m in _JINJA_TOKEN.finditer(text):
        chunk = text[pos : m.start()]
        is_stmt = m.group(2) is not None
        body = m.group(2) if is_stmt else m.group(5)
        left_trim = (m.group(1) if is_stmt else m.group(4)) == "-"
        right_trim = (m.group(3) if is_stmt else m.group(6)) == "-"
        pos = m.end()
        if raw and not (is_stmt and body == "endraw"):
            if strip_next:
                chunk, strip_next = chunk.lstrip(), False
            if all(emit):
                out.append(chunk + m.group(0))
            continue
        if strip_next:
            chunk = chunk.lstrip()
        if left_trim:
            chunk = chunk.rstrip()
        if all(emit):
            out.append(chunk)
        strip_next = right_trim
        if not is_stmt:
            if not all(emit):
                continue
            jm = _JINJA_JOIN.match(body)
            if not jm:
                raise EmulatorLimitation(f"unsupported Jinja expression: {{{{ {body} }}}}")
            value = _dotted(variables, jm.group(1))
            if jm.group(2):
                value = jm.group(3).join(str(v) for v in (value or []))
            out.append("" if value is None else str(value))
            continue
        word = body.split(None, 1)[0] if body else ""
        if word == "raw":
            raw = True
        elif word == "endraw":
            raw = False
        elif word in ("set", "from", "import"):
            pass
        elif word == "if":
            cond = body[2:].strip()
            negate = cond.startswith("not ")
            name = cond[4:].strip() if negate else cond
            if not re.fullmatch(r"[A-Za-z_][\w.]*", name):
                raise EmulatorLimitation(f"unsupported Jinja condition: {body}")
            emit.append(bool(_dotted(variables, name)) != negate)
        elif word == "else":
            emit[-1] = not emit[-1]
        elif word == "endif":
            emit.pop()
        else:
            raise EmulatorLimitation(f"unsupported Jinja statement: {{% {body} %}}")
    tail = text[pos:]
    if strip_next:
        tail = tail.lstrip()
    if all(emit):
        out.append(tail)
    return "".join(out)


def load_pipeline(path: str | Path, variables: Mapping[str, Any] | None = None) -> dict:
    """Load a pipeline definition: YAML for ``*.yml``/``*.yaml``, else JSON (Jinja-rendered first).

    Security Onion's ``ingest-dynamic/common`` is a Jinja template; by default it renders with
    ``HIGHLANDER`` false (the ``{% if HIGHLANDER %}`` block dropped), everything else verbatim.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yml", ".yaml"):
        pipeline = load_yaml(text)
    else:
        if "{%" in text:
            text = render_jinja(text, variables)
        pipeline = json.loads(text)
    if not isinstance(pipeline, dict) or not isinstance(pipeline.get("processors"), list):
        raise ValueError(f"{path}: not an ingest pipeline (no processors list)")
    return pipeline


_INGEST_PIPELINE_TEMPLATE = re.compile(r"""^\{\{\s*IngestPipeline\s+"([^"]+)"\s*\}\}$""")


class Registry:
    """Named pipelines, as ``PUT _ingest/pipeline/<name>`` stores them."""

    def __init__(self, pipelines: Mapping[str, dict] | None = None) -> None:
        self._pipelines: dict[str, dict] = {}
        for name, pipeline in (pipelines or {}).items():
            self.add(name, pipeline)

    def add(self, name: str, pipeline: dict) -> None:
        """Register ``pipeline`` (a dict with ``processors``) under ``name``."""
        if not isinstance(pipeline, dict) or not isinstance(pipeline.get("processors"), list):
            raise ValueError(f"pipeline {name!r} has no processors list")
        self._pipelines[name] = pipeline

    def add_file(self, path: str | Path, name: str | None = None, variables: Mapping[str, Any] | None = None) -> str:
        """Load and register a file; the name defaults to the file stem (``.yml``) or file name (SO)."""
        path = Path(path)
        if name is None:
            name = path.stem if path.suffix in (".yml", ".yaml", ".json") else path.name
        self.add(name, load_pipeline(path, variables))
        return name

    def resolve(self, name: str) -> str:
        """Map elastic-package's ``{{ IngestPipeline "x" }}`` to ``x``; other names unchanged."""
        m = _INGEST_PIPELINE_TEMPLATE.match(name.strip())
        return m.group(1) if m else name

    def get(self, name: str) -> dict:
        """The pipeline registered under ``name`` (KeyError if none)."""
        return self._pipelines[name]

    def __contains__(self, name: object) -> bool:
        return name in self._pipelines

    def names(self) -> list[str]:
        """Registered names, in insertion order."""
        return list(self._pipelines)


# --------------------------------------------------------------------------- document fields


class _Doc:
    """``IngestDocument``: ``source`` is sourceAndMetadata, ``ingest`` the ``_ingest`` map."""

    def __init__(self, source: dict, ingest: dict) -> None:
        self.source = source
        self.ingest = ingest

    def _root(self, path: str) -> tuple[Any, list[str]]:
        if not path:
            raise IngestError("path cannot be null nor empty")
        if path.startswith("_ingest."):
            return self.ingest, path[len("_ingest.") :].split(".")
        if path.startswith("_source."):
            path = path[len("_source.") :]
        return self.source, path.split(".")

    def has(self, path: str, fail_out_of_range: bool = False) -> bool:
        container, parts = self._root(path)
        for key in parts:
            if isinstance(container, dict):
                if key not in container:
                    return False
                container = container[key]
            elif isinstance(container, list):
                try:
                    index = int(key)
                except ValueError:
                    return False
                if not 0 <= index < len(container):
                    if fail_out_of_range:
                        raise IngestError(
                            f"[{index}] is out of bounds for array with length [{len(container)}]"
                            f" as part of path [{path}]"
                        )
                    return False
                container = container[index]
            else:
                return False
        return True

    def get(self, path: str, ignore_missing: bool = False) -> Any:
        if ignore_missing and not self.has(path):
            return None
        container, parts = self._root(path)
        for key in parts:
            container = _step(container, key, path)
        return container

    def set(self, path: str, value: Any, *, append: bool = False, allow_duplicates: bool = True) -> None:
        container, parts = self._root(path)
        for key in parts[:-1]:
            if isinstance(container, dict):
                if key not in container:
                    container[key] = {}
                container = container[key]
            elif isinstance(container, list):
                container = _step(container, key, path)
            else:
                raise IngestError(
                    f"cannot set [{parts[-1]}] with parent object of type [{java_type(container)}]"
                    f" as part of path [{path}]"
                )
        leaf = parts[-1]
        if container is None:
            raise IngestError(f"cannot set [{leaf}] with null parent as part of path [{path}]")
        if isinstance(container, dict):
            if append:
                if leaf in container:
                    container[leaf] = _append_values(container[leaf], value, allow_duplicates)
                else:
                    container[leaf] = _append_values([], value, allow_duplicates)
            else:
                container[leaf] = value
        elif isinstance(container, list):
            index = _list_index(container, leaf, path)
            if append:
                container[index] = _append_values(container[index], value, allow_duplicates)
            else:
                container[index] = value
        else:
            raise IngestError(
                f"cannot set [{leaf}] with parent object of type [{java_type(container)}] as part of path [{path}]"
            )

    def remove(self, path: str) -> None:
        container, parts = self._root(path)
        for key in parts[:-1]:
            container = _step(container, key, path)
        leaf = parts[-1]
        if isinstance(container, dict):
            if leaf not in container:
                raise IngestError(f"field [{leaf}] not present as part of path [{path}]")
            del container[leaf]
        elif isinstance(container, list):
            del container[_list_index(container, leaf, path)]
        elif container is None:
            raise IngestError(f"cannot remove [{leaf}] from null as part of path [{path}]")
        else:
            raise IngestError(
                f"cannot remove [{leaf}] from object of type [{java_type(container)}] as part of path [{path}]"
            )

    def model(self) -> dict:
        """The template model: source and metadata, plus ``_ingest``."""
        return {**self.source, "_ingest": self.ingest}


def _list_index(container: list, key: str, path: str) -> int:
    try:
        index = int(key)
    except ValueError:
        raise IngestError(f"[{key}] is not an integer, cannot be used as an index as part of path [{path}]") from None
    if not 0 <= index < len(container):
        raise IngestError(
            f"[{index}] is out of bounds for array with length [{len(container)}] as part of path [{path}]"
        )
    return index


def _step(container: Any, key: str, path: str) -> Any:
    if isinstance(container, dict):
        if key not in container:
            raise IngestError(f"field [{key}] not present as part of path [{path}]")
        return container[key]
    if isinstance(container, list):
        return container[_list_index(container, key, path)]
    if container is None:
        raise IngestError(f"cannot resolve [{key}] from null as part of path [{path}]")
    raise IngestError(f"cannot resolve [{key}] from object of type [{java_type(container)}] as part of path [{path}]")


def _append_values(existing: Any, value: Any, allow_duplicates: bool) -> Any:
    """``IngestDocument.appendValues``: a scalar becomes a list; without duplicates, unchanged if nothing new."""
    target = existing if isinstance(existing, list) else [existing]
    new = value if isinstance(value, list) else [value]
    if allow_duplicates:
        target.extend(new)
        return target
    appended = False
    for item in new:
        if not any(_object_equals(item, old) for old in target):
            target.append(item)
            appended = True
    return target if appended else existing


def split_metadata(doc: dict) -> tuple[dict, dict]:
    """Separate a :func:`simulate` result into (``_source``, metadata fields such as ``_index``)."""
    source = {k: v for k, v in doc.items() if k not in METADATA_FIELDS}
    return source, {k: v for k, v in doc.items() if k in METADATA_FIELDS}


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested objects to dotted keys (lists are kept as values), like the Filebeat test harness."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, full))
        else:
            out[full] = value
    return out


# --------------------------------------------------------------------------- mustache


def _json_escape(text: str) -> str:
    """Jackson ``quoteAsString``: escape quote, backslash and control characters."""
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20:
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\u{ord(ch):04X}"))
        else:
            out.append(ch)
    return "".join(out)


_MUSTACHE_TAG = re.compile(r"\{\{\{\s*(.*?)\s*\}\}\}|\{\{\s*([#^/&!]?)\s*(.*?)\s*\}\}", re.S)
_ES_MUSTACHE_LAMBDAS = {"toJson", "join", "url"}


@lru_cache(maxsize=4096)
def _mustache_parse(template: str) -> tuple:
    """Parse into a tree of ("text", s) / ("var", name, escaped) / ("section", name, inverted, children)."""
    root: list = []
    stack: list[tuple[str, list]] = [("", root)]
    pos = 0
    for m in _MUSTACHE_TAG.finditer(template):
        if m.start() > pos:
            stack[-1][1].append(("text", template[pos : m.start()]))
        pos = m.end()
        if m.group(1) is not None:
            stack[-1][1].append(("var", m.group(1), False))
            continue
        sigil, name = m.group(2), m.group(3)
        if sigil == "!":
            continue
        if sigil in ("#", "^"):
            children: list = []
            stack[-1][1].append(("section", name, sigil == "^", children))
            stack.append((name, children))
        elif sigil == "/":
            if len(stack) == 1 or stack[-1][0] != name:
                raise EmulatorLimitation(f"unbalanced mustache section {name!r} in {template!r}")
            stack.pop()
        else:
            stack[-1][1].append(("var", name, sigil != "&"))
    if len(stack) != 1:
        raise EmulatorLimitation(f"unclosed mustache section in {template!r}")
    if pos < len(template):
        root.append(("text", template[pos:]))
    return tuple(root)


def _mustache_lookup(name: str, scopes: list[Any]) -> Any:
    if name == ".":
        return scopes[-1]
    parts = name.split(".")
    for scope in reversed(scopes):
        if isinstance(scope, dict) and parts[0] in scope:
            value = scope[parts[0]]
            break
    else:
        return None
    for part in parts[1:]:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _mustache_render(nodes: tuple | list, scopes: list[Any], escape: str) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "var":
            value = _mustache_lookup(node[1], scopes)
            text = "" if value is None else (value if isinstance(value, str) else java_str(value))
            if node[2] and escape == "json":
                text = _json_escape(text)
            elif node[2] and escape == "url":
                from urllib.parse import quote_plus

                text = quote_plus(text)
            out.append(text)
        else:
            _, name, inverted, children = node
            value = _mustache_lookup(name, scopes)
            if value is None and name in _ES_MUSTACHE_LAMBDAS:
                raise EmulatorLimitation(f"mustache lambda {{{{#{name}}}}} is not emulated")
            falsy = value is None or value is False or value == [] or value == ""
            if inverted:
                if falsy:
                    out.append(_mustache_render(children, scopes, escape))
            elif not falsy:
                for item in value if isinstance(value, list) else [value]:
                    out.append(_mustache_render(children, [*scopes, item], escape))
    return "".join(out)


def render_mustache(template: str, model: Mapping[str, Any], *, escape: str = "json") -> str:
    """Render an Elasticsearch ingest template (mustache.java as ES configures it).

    ``{{a.b}}`` is escaped for the media type (``escape``: ``"json"`` — the default
    ``application/json``, ``"plain"`` or ``"url"``); ``{{{a.b}}}`` and ``{{& a.b}}`` are raw;
    ``{{a.1}}`` indexes a list; ``{{#x}}…{{/x}}`` / ``{{^x}}…{{/x}}`` are sections.  Non-string values
    render with Java's ``toString()``; missing names render as the empty string.
    """
    return _mustache_render(_mustache_parse(template), [dict(model)], escape)


_MEDIA_TYPES = {"application/json": "json", "text/plain": "plain", "application/x-www-form-urlencoded": "url"}


def _resolve_value(value: Any, doc: _Doc, escape: str) -> tuple[Any, bool]:
    """``ValueSource.copyAndResolve``: (value, was_a_template)."""
    if isinstance(value, str):
        if "{{" in value:
            return render_mustache(value, doc.model(), escape=escape), True
        return value, False
    if isinstance(value, list):
        return [_resolve_value(v, doc, escape)[0] for v in value], False
    if isinstance(value, dict):
        return {_resolve_value(k, doc, escape)[0]: _resolve_value(v, doc, escape)[0] for k, v in value.items()}, False
    return copy.deepcopy(value), False


def _field(cfg: Mapping[str, Any], key: str, doc: _Doc, default: Any = _MISSING) -> str:
    """A field-name option, rendered if it is a template."""
    if key not in cfg:
        if default is _MISSING:
            raise EmulatorLimitation(f"required option [{key}] missing")
        return default
    name = cfg[key]
    if not isinstance(name, str):
        raise EmulatorLimitation(f"option [{key}] must be a string, got {name!r}")
    return render_mustache(name, doc.model()) if "{{" in name else name


# --------------------------------------------------------------------------- Painless expressions

_PL_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?[dDfF]?|[0-9]+[lLdDfF]?)
     |(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
     |(?P<op>\?\.|==|!=|<=|>=|&&|\|\||[<>!().\[\],-])
     |(?P<id>[A-Za-z_][A-Za-z_0-9]*)
    )""",
    re.X,
)
_PL_METHODS = {
    "contains",
    "containsKey",
    "startsWith",
    "endsWith",
    "equals",
    "equalsIgnoreCase",
    "size",
    "isEmpty",
    "length",
    "toLowerCase",
    "toUpperCase",
    "trim",
    "indexOf",
    "get",
}
_PL_TYPES: dict[str, Callable[[Any], bool]] = {
    "String": lambda v: isinstance(v, str),
    "Map": lambda v: isinstance(v, dict),
    "HashMap": lambda v: isinstance(v, dict),
    "List": lambda v: isinstance(v, list),
    "ArrayList": lambda v: isinstance(v, list),
    "Collection": lambda v: isinstance(v, list),
    "Number": _is_number,
    "Integer": lambda v: _is_number(v) and isinstance(v, int) and -(2**31) <= v < 2**31,
    "Long": lambda v: _is_number(v) and isinstance(v, int),
    "Double": lambda v: isinstance(v, float),
    "Boolean": lambda v: isinstance(v, bool),
    "Object": lambda v: v is not None,
}


class UnsupportedPainless(EmulatorLimitation):
    """A Painless condition outside the emulated subset."""


def _npe(what: str) -> PainlessError:
    return PainlessError(f"java.lang.NullPointerException: {what}")


def _pl_field(obj: Any, name: str, null_safe: bool) -> Any:
    if obj is None:
        if null_safe:
            return None
        raise _npe(f"cannot access field [{name}] of null")
    if isinstance(obj, dict):
        return obj.get(name)
    if isinstance(obj, list | str) and name == "length":
        return len(obj)
    raise PainlessError(f"java.lang.IllegalArgumentException: dynamic getter [{java_type(obj)}, {name}] not found")


def _pl_index(obj: Any, key: Any) -> Any:
    if obj is None:
        raise _npe("cannot index null")
    if isinstance(obj, dict):
        return obj.get(key)
    if isinstance(obj, list):
        if not _is_number(key) or not isinstance(key, int):
            raise PainlessError(f"java.lang.ClassCastException: cannot index a list with [{key!r}]")
        if not -len(obj) <= key < len(obj):
            raise PainlessError(f"java.lang.IndexOutOfBoundsException: Index {key} out of bounds for length {len(obj)}")
        return obj[key]
    raise PainlessError(f"java.lang.IllegalArgumentException: cannot index [{java_type(obj)}]")


def _pl_str_arg(method: str, arg: Any) -> str:
    if arg is None:
        raise _npe(f"{method}(null)")
    if not isinstance(arg, str):
        raise PainlessError(f"java.lang.ClassCastException: cannot cast [{java_type(arg)}] to [java.lang.String]")
    return arg


def _pl_call(obj: Any, name: str, args: list[Any], null_safe: bool) -> Any:
    if obj is None:
        if null_safe:
            return None
        raise _npe(f"cannot invoke [{name}] on null")
    sig = (name, len(args))
    if isinstance(obj, str):
        if sig == ("contains", 1):
            return _pl_str_arg(name, args[0]) in obj
        if sig == ("startsWith", 1):
            return obj.startswith(_pl_str_arg(name, args[0]))
        if sig == ("endsWith", 1):
            return obj.endswith(_pl_str_arg(name, args[0]))
        if sig == ("equals", 1):
            return isinstance(args[0], str) and obj == args[0]
        if sig == ("equalsIgnoreCase", 1):
            return isinstance(args[0], str) and obj.lower() == args[0].lower()
        if sig in (("length", 0), ("size", 0)) and name == "length":
            return len(obj)
        if sig == ("isEmpty", 0):
            return obj == ""
        if sig == ("toLowerCase", 0):
            return obj.lower()
        if sig == ("toUpperCase", 0):
            return obj.upper()
        if sig == ("trim", 0):
            return _java_trim(obj)
        if sig == ("indexOf", 1):
            return obj.find(_pl_str_arg(name, args[0]))
    elif isinstance(obj, list):
        if sig == ("contains", 1):
            return any(_object_equals(args[0], item) for item in obj)
        if sig == ("size", 0):
            return len(obj)
        if sig == ("isEmpty", 0):
            return not obj
        if sig == ("get", 1):
            return _pl_index(obj, args[0])
        if sig == ("equals", 1):
            return _object_equals(obj, args[0])
        if sig == ("indexOf", 1):
            return next((i for i, item in enumerate(obj) if _object_equals(args[0], item)), -1)
    elif isinstance(obj, dict):
        if sig == ("containsKey", 1):
            return args[0] in obj
        if sig == ("get", 1):
            return obj.get(args[0])
        if sig == ("size", 0):
            return len(obj)
        if sig == ("isEmpty", 0):
            return not obj
        if sig == ("equals", 1):
            return _object_equals(obj, args[0])
    elif sig == ("equals", 1):
        return _object_equals(obj, args[0])
    raise PainlessError(
        f"java.lang.IllegalArgumentException: dynamic method [{java_type(obj)}, {name}/{len(args)}] not found"
    )


def _pl_bool(value: Any, what: str) -> bool:
    if value is None:
        raise _npe(f"cannot unbox null for {what}")
    if not isinstance(value, bool):
        raise PainlessError(f"java.lang.ClassCastException: cannot cast [{java_type(value)}] to [boolean]")
    return value


def _pl_compare(op: str, a: Any, b: Any) -> bool:
    if a is None or b is None:
        raise _npe(f"cannot compare null with [{op}]")
    if not (_is_number(a) and _is_number(b)):
        raise PainlessError(
            f"java.lang.ClassCastException: cannot apply [{op}] to [{java_type(a)}] and [{java_type(b)}]"
        )
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


class _PainlessParser:
    """Recursive descent over the Painless expression subset; produces closures ``env -> value``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(source):
            if source[pos:].strip() == "":
                break
            m = _PL_TOKEN.match(source, pos)
            if not m or m.end() == pos:
                raise UnsupportedPainless(f"cannot tokenize Painless at {source[pos:]!r} in {source!r}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self, value: str | None = None, kind: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        tk, tv = self.tokens[self.i]
        return (value is None or tv == value) and (kind is None or tk == kind)

    def take(self, value: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens) or (value is not None and self.tokens[self.i][1] != value):
            got = self.tokens[self.i][1] if self.i < len(self.tokens) else "end of input"
            raise UnsupportedPainless(f"expected {value or 'a token'}, got {got!r} in {self.source!r}")
        self.i += 1
        return self.tokens[self.i - 1]

    def parse(self) -> Callable[[dict], Any]:
        node = self.or_expr()
        if self.i != len(self.tokens):
            raise UnsupportedPainless(f"unexpected {self.tokens[self.i][1]!r} in {self.source!r}")
        return node

    def or_expr(self) -> Callable[[dict], Any]:
        node = self.and_expr()
        while self.peek("||"):
            self.take()
            left, right = node, self.and_expr()
            node = lambda env, a=left, b=right: _pl_bool(a(env), "||") or _pl_bool(b(env), "||")  # noqa: E731
        return node

    def and_expr(self) -> Callable[[dict], Any]:
        node = self.eq_expr()
        while self.peek("&&"):
            self.take()
            left, right = node, self.eq_expr()
            node = lambda env, a=left, b=right: _pl_bool(a(env), "&&") and _pl_bool(b(env), "&&")  # noqa: E731
        return node

    def eq_expr(self) -> Callable[[dict], Any]:
        node = self.rel_expr()
        while self.peek("==") or self.peek("!="):
            op = self.take()[1]
            left, right = node, self.rel_expr()
            if op == "==":
                node = lambda env, a=left, b=right: _painless_equals(a(env), b(env))  # noqa: E731
            else:
                node = lambda env, a=left, b=right: not _painless_equals(a(env), b(env))  # noqa: E731
        return node

    def rel_expr(self) -> Callable[[dict], Any]:
        node = self.unary()
        while True:
            if any(self.peek(op) for op in ("<", "<=", ">", ">=")):
                op = self.take()[1]
                left, right = node, self.unary()
                node = lambda env, a=left, b=right, o=op: _pl_compare(o, a(env), b(env))  # noqa: E731
            elif self.peek("instanceof"):
                self.take()
                type_name = self.take()[1]
                if type_name not in _PL_TYPES:
                    raise UnsupportedPainless(f"instanceof {type_name} is not emulated ({self.source!r})")
                check, inner = _PL_TYPES[type_name], node
                node = lambda env, c=check, n=inner: c(n(env))  # noqa: E731
            else:
                return node

    def unary(self) -> Callable[[dict], Any]:
        if self.peek("!"):
            self.take()
            inner = self.unary()
            return lambda env: not _pl_bool(inner(env), "!")
        if self.peek("-"):
            self.take()
            inner = self.unary()

            def neg(env: dict) -> Any:
                value = inner(env)
                if not _is_number(value):
                    raise PainlessError(f"java.lang.ClassCastException: cannot negate [{java_type(value)}]")
                return -value

            return neg
        return self.postfix()

    def postfix(self) -> Callable[[dict], Any]:
        node = self.primary()
        while True:
            if self.peek(".") or self.peek("?."):
                null_safe = self.take()[1] == "?."
                name = self.take()[1]
                if self.peek("("):
                    if name not in _PL_METHODS:
                        raise UnsupportedPainless(f"method {name}() is not emulated ({self.source!r})")
                    args = self.arguments()
                    node = lambda env, o=node, n=name, a=args, s=null_safe: _pl_call(o(env), n, [x(env) for x in a], s)  # noqa: E731
                else:
                    node = lambda env, o=node, n=name, s=null_safe: _pl_field(o(env), n, s)  # noqa: E731
            elif self.peek("["):
                self.take()
                key = self.or_expr()
                self.take("]")
                node = lambda env, o=node, k=key: _pl_index(o(env), k(env))  # noqa: E731
            else:
                return node

    def arguments(self) -> list[Callable[[dict], Any]]:
        self.take("(")
        args = []
        while not self.peek(")"):
            args.append(self.or_expr())
            if not self.peek(")"):
                self.take(",")
        self.take(")")
        return args

    def primary(self) -> Callable[[dict], Any]:
        kind, value = self.take()
        if kind == "num":
            body = value.rstrip("lLdDfF")
            number: Any = float(body) if ("." in body or value[-1] in "dDfF") else int(body)
            return lambda env: number
        if kind == "str":
            text = re.sub(
                r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), value[1:-1]
            )
            return lambda env: text
        if kind == "id":
            if value == "null":
                return lambda env: None
            if value in ("true", "false"):
                flag = value == "true"
                return lambda env: flag
            if value in ("ctx", "params"):
                return lambda env: env[value]
            raise UnsupportedPainless(f"unknown identifier {value!r} in {self.source!r}")
        if value == "(":
            node = self.or_expr()
            self.take(")")
            return node
        raise UnsupportedPainless(f"unexpected {value!r} in {self.source!r}")


@lru_cache(maxsize=1024)
def compile_painless(source: str) -> Callable[[dict], Any]:
    """Compile a Painless expression (the ``if`` subset) to a function of ``{"ctx": ..., "params": ...}``."""
    return _PainlessParser(source).parse()


def painless_eval(source: str, ctx: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Any:
    """Evaluate a Painless expression against ``ctx``; raises :class:`PainlessError` like Painless would."""
    return compile_painless(source)({"ctx": ctx, "params": params or {}})


# --------------------------------------------------------------------------- Painless scripts


def script_sha256(source: str) -> str:
    """The key of :data:`PAINLESS_SCRIPTS` / the Beats JS table: sha256 of the exact source text."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _get(obj: Any, key: str) -> Any:
    """Painless ``obj.key`` / ``obj[key]`` on a def (NPE on null)."""
    return _pl_field(obj, key, null_safe=False)


def _safe(obj: Any, *keys: str) -> Any:
    """Painless ``obj?.k1?.k2...``."""
    for key in keys:
        obj = _pl_field(obj, key, null_safe=True)
    return obj


def _put(obj: Any, key: str, value: Any) -> None:
    """Painless ``obj.key = value`` / ``obj[key] = value``."""
    if obj is None:
        raise _npe(f"cannot set [{key}] on null")
    if not isinstance(obj, dict):
        raise PainlessError(f"java.lang.IllegalArgumentException: dynamic setter [{java_type(obj)}, {key}] not found")
    obj[key] = value


def _as_long(value: Any) -> int:
    """Painless implicit ``def`` -> ``long`` cast (Integer/Long only)."""
    if value is None:
        raise _npe("cannot unbox null to long")
    if not (_is_number(value) and isinstance(value, int)):
        raise PainlessError(f"java.lang.ClassCastException: cannot cast [{java_type(value)}] to [long]")
    return value


def _str_method(value: Any, method: str) -> str:
    if value is None:
        raise _npe(f"cannot invoke [{method}] on null")
    if not isinstance(value, str):
        raise PainlessError(
            f"java.lang.IllegalArgumentException: dynamic method [{java_type(value)}, {method}] not found"
        )
    return value


def _sc_host_mac(ctx: dict, params: Mapping[str, Any]) -> None:
    """suricata eve default.yml: upper-case host.mac entries and use '-' separators."""
    macs = _safe(_get(ctx, "host"), "mac")
    if macs is not None and not isinstance(macs, list):
        raise PainlessError(f"java.lang.ClassCastException: cannot cast [{java_type(macs)}] to [java.util.ArrayList]")
    if macs is None:
        raise _npe("macs.length")
    for i in range(len(macs)):
        macs[i] = _str_method(macs[i], "replace").replace(":", "-").upper()
    _put(_get(ctx, "host"), "mac", macs)


def _sc_event_params(ctx: dict, params: Mapping[str, Any]) -> None:
    """suricata eve default.yml: event.kind/category/type and network.protocol per event_type (params)."""
    event = _get(ctx, "event")
    _put(event, "kind", "event")
    _put(event, "category", ["network"])
    type_params = params.get(_safe(ctx, "suricata", "eve", "event_type"))
    if type_params is None:
        return
    for k, v in type_params.items():
        if k == "network_protocol":
            if ctx.get("network") is None:
                ctx["network"] = {"protocol": v}
            else:
                _put(ctx["network"], "protocol", v)
        elif isinstance(v, list):
            _put(_get(ctx, "event"), k, list(v))
        else:
            _put(_get(ctx, "event"), k, copy.deepcopy(v))


def _sc_dedupe_dest_domain(ctx: dict, params: Mapping[str, Any]) -> None:
    """suricata eve default.yml (suricata_deduplicate_dest_domain): distinct destination.domain, unwrap one."""
    domain = _safe(_get(ctx, "destination"), "domain")
    if isinstance(domain, list):
        distinct: list = []
        for item in domain:
            if not any(_object_equals(item, seen) for seen in distinct):
                distinct.append(item)
        value: Any = distinct[0] if len(distinct) == 1 else distinct
        _put(_get(ctx, "destination"), "domain", value)


def _sc_network_totals(ctx: dict, params: Mapping[str, Any]) -> None:
    """suricata eve default.yml: network.bytes / network.packets from source/destination counters."""

    def get_or_zero(obj: Any, key: str) -> int:
        if obj is not None and _pl_index(obj, key) is not None:
            return _as_long(_pl_index(obj, key))
        return 0

    network, source, dest = ctx.get("network"), ctx.get("source"), ctx.get("destination")
    sp, sb = get_or_zero(source, "packets"), get_or_zero(source, "bytes")
    dp, db = get_or_zero(dest, "packets"), get_or_zero(dest, "bytes")
    if sb + db + sp + dp > 0:
        if network is None:
            network = {}
            ctx["network"] = network
        if sb + db > 0:
            _put(network, "bytes", sb + db)
        if sp + dp > 0:
            _put(network, "packets", sp + dp)


_ISO_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}(?::\d{2})?)"
)


def _instant_nanos(text: Any) -> int | None:
    """``Instant.parse`` (ISO_INSTANT, offsets accepted as in JDK >= 12) as epoch nanos; None on error."""
    if not isinstance(text, str):
        return None
    m = _ISO_INSTANT.fullmatch(text)
    if not m:
        return None
    try:
        day = dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
    hour, minute, second = int(m[4]), int(m[5]), int(m[6])
    if hour > 23 or minute > 59 or second > 59:
        return None
    offset = 0
    if m[8] != "Z":
        sign = -1 if m[8][0] == "-" else 1
        hh, mm, *ss = m[8][1:].split(":")
        offset = sign * (int(hh) * 3600 + int(mm) * 60 + (int(ss[0]) if ss else 0))
    seconds = (day - dt.date(1970, 1, 1)).days * 86400 + hour * 3600 + minute * 60 + second - offset
    return seconds * 1_000_000_000 + int((m[7] or "0").ljust(9, "0"))


def _sc_event_duration(ctx: dict, params: Mapping[str, Any]) -> None:
    """suricata eve default.yml: event.duration (ns) from event.start/event.end when start <= end."""
    ev = ctx.get("event")
    if ev is not None:
        start, end = _instant_nanos(_pl_index(ev, "start")), _instant_nanos(_pl_index(ev, "end"))
        if start is not None and end is not None and not start > end:
            _put(ev, "duration", end - start)


def _sc_dns_answer_v1(ctx: dict, params: Mapping[str, Any]) -> None:
    """suricata dns-answer-v1.yml: one dns.answers entry (and dns.resolved_ip for A/AAAA)."""
    name = _safe(ctx, "suricata", "eve", "dns", "rrname")
    data = _safe(ctx, "suricata", "eve", "dns", "rdata")
    rtype = _safe(ctx, "suricata", "eve", "dns", "rrtype")
    ttl = _safe(ctx, "suricata", "eve", "dns", "ttl")
    answer = {k: v for k, v in (("name", name), ("data", data), ("type", rtype), ("ttl", ttl)) if v is not None}
    if answer:
        _put(_get(ctx, "dns"), "answers", [answer])
    if _painless_equals(rtype, "A") or _painless_equals(rtype, "AAAA"):
        _put(_get(ctx, "dns"), "resolved_ip", [data])


def _sc_dns_answers_v2(ctx: dict, params: Mapping[str, Any]) -> None:
    """suricata dns-answer-v2.yml: rename rrname/rrtype/rdata in dns.answers, collect A/AAAA data."""
    answers = _safe(ctx, "dns", "answers")
    if answers is None:
        raise _npe("for-each over null")
    if not isinstance(answers, list):
        raise PainlessError(f"java.lang.ClassCastException: cannot iterate [{java_type(answers)}]")
    resolved = []
    for answer in answers:
        if not isinstance(answer, dict):
            raise PainlessError(f"java.lang.IllegalArgumentException: dynamic method [{java_type(answer)}, remove/1]")
        values = {}
        for old, new in (("rrname", "name"), ("rrtype", "type"), ("rdata", "data")):
            values[new] = answer.pop(old, None)
            if values[new] is not None:
                answer[new] = values[new]
        if _painless_equals(values["type"], "A") or _painless_equals(values["type"], "AAAA"):
            resolved.append(values["data"])
    if resolved:
        _put(_get(ctx, "dns"), "resolved_ip", resolved)


def _sc_dns_tld(ctx: dict, params: Mapping[str, Any]) -> None:
    """suricata dns.yml: dns.question.top_level_domain = registered_domain after its first dot."""
    rd = _str_method(_get(_get(_get(ctx, "dns"), "question"), "registered_domain"), "indexOf")
    first_dot = rd.find(".")
    if first_dot == -1:
        return
    _put(ctx["dns"]["question"], "top_level_domain", rd[first_dot + 1 :])


def _sc_tls_sni(ctx: dict, params: Mapping[str, Any]) -> None:
    """suricata tls.yml: drop one trailing '.' from suricata.eve.tls.sni."""
    tls = _get(_get(_get(ctx, "suricata"), "eve"), "tls")
    sni = _str_method(_get(tls, "sni"), "endsWith")
    if not sni.endswith("."):
        return
    _put(tls, "sni", sni[:-1])


PAINLESS_SCRIPTS: dict[str, Callable[[dict, Mapping[str, Any]], None]] = {
    # elastic-integrations suricata eve default.yml (ECS 8.11.0 copy)
    "d4806e8ffc92e2f74dc38a872168d9f7483f441f227ccbfb3825faabefd42190": _sc_host_mac,
    "7de3593c250326decf1f6169cb386dbc084e24b1f985edf2d1187c9e240b7299": _sc_event_params,
    "8a2b0b344d466f6a11538abed238a155b99b0a08ff345b8e799623a80d1eef22": _sc_dedupe_dest_domain,
    "9ae037c1027e46bc2b120d5d4906d32f4e8f18f5a31fb9ea59bbe032b5a2e9df": _sc_network_totals,
    "34bb61ce7151507bb3f3d0c74ecb3e435b150119a19abb00ff6024193f8a2af1": _sc_event_duration,
    # dns-answer-v1.yml, dns-answer-v2.yml, dns.yml, tls.yml
    "f1599eeadaffd749bef5764ad07b7341fc907c393155911e4f17e6de711c4b13": _sc_dns_answer_v1,
    "bc8f76eb435c104cf0076c978665aba3b84ec9f2cc299c130fe43e6401095703": _sc_dns_answers_v2,
    "62bb80f84e16ece09fa31bce784bbcfda892715f943e2bc81cb796c336ac25bd": _sc_dns_tld,
    "a7f3dbe33c8b26fe799c1db0c12adc0329e23586b2dd8586f9d93fc08eeeede2": _sc_tls_sni,
}
"""sha256(script ``source``) -> Python translation taking ``(ctx, params)``; mutates ``ctx``."""


# --------------------------------------------------------------------------- community id

# Port equivalents for ICMP, as in the Community ID spec's reference implementation (community-id.py)
ICMP4_EQUIVALENTS_SPEC = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 17: 18, 18: 17}
ICMP6_EQUIVALENTS_SPEC = {
    128: 129,
    129: 128,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    130: 131,
    131: 130,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}
# ... and as Elasticsearch's CommunityIdProcessor.IcmpType tables have them (slightly different)
ICMP4_EQUIVALENTS_ES = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_EQUIVALENTS_ES = {
    128: 129,
    129: 128,
    133: 134,
    134: 133,
    136: 135,
    135: 136,
    130: 131,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}
_TRANSPORTS = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "eigrp": 88,
    "ospf": 89,
    "pim": 103,
    "sctp": 132,
}


def _ip_bytes(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.packed


def community_id(
    source_ip: str,
    destination_ip: str,
    protocol: int,
    source_port: int | None = None,
    destination_port: int | None = None,
    *,
    seed: int = 0,
    icmp_equivalents: Mapping[int, int] | None = None,
) -> str:
    """Community ID v1 (https://github.com/corelight/community-id-spec): ``"1:" + b64(sha1(...))``.

    For ICMP/ICMPv6 pass the ICMP type as ``source_port`` and the code as ``destination_port``; the
    type is mapped to its counterpart (``icmp_equivalents``, default: the spec's table) and one-way
    types keep their order.  Protocols other than TCP/UDP/SCTP/ICMP hash no ports.
    """
    src, dst = _ip_bytes(source_ip), _ip_bytes(destination_ip)
    has_ports = protocol in (1, 6, 17, 58, 132)
    sport, dport = source_port or 0, destination_port or 0
    one_way = False
    if protocol in (1, 58):
        table = icmp_equivalents
        if table is None:
            table = ICMP4_EQUIVALENTS_SPEC if protocol == 1 else ICMP6_EQUIVALENTS_SPEC
        equivalent = table.get(sport)
        one_way = equivalent is None
        dport = dport if equivalent is None else equivalent
    src_n, dst_n = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
    keep = one_way or src_n < dst_n or (src_n == dst_n and sport < dport)
    if not keep:
        src, dst, sport, dport = dst, src, dport, sport
    data = struct.pack("!H", seed) + src + dst + struct.pack("!BB", protocol, 0)
    if has_ports:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


# --------------------------------------------------------------------------- dates

_ISO8601 = re.compile(
    r"(?P<y>[+-]?\d{4,9})(?:-(?P<mo>\d{1,2})(?:-(?P<d>\d{1,2})"
    r"(?:[Tt](?P<h>\d{1,2})(?::(?P<mi>\d{1,2})(?::(?P<s>\d{1,2})(?:[.,](?P<f>\d{1,9}))?)?)?"
    r"(?P<z>[Zz]|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)


def _zone(name: str | None) -> dt.tzinfo:
    """``ZoneId.of``: UTC, ``Z``, ``+01:00``/``+0100``/``+01``, ``UTC+1``-style or a region id."""
    if name is None or name in ("UTC", "Z", "GMT", "UT"):
        return dt.UTC
    m = re.fullmatch(r"(?:UTC|GMT|UT)?([+-])(\d{1,2})(?::?(\d{2}))?", name)
    if m:
        delta = dt.timedelta(hours=int(m[2]), minutes=int(m[3] or 0))
        return dt.timezone(-delta if m[1] == "-" else delta)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise IngestError(f"Unknown time-zone ID: {name}") from None


def _offset_zone(text: str) -> dt.tzinfo:
    if text in ("Z", "z"):
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    return dt.timezone(sign * delta)


def _parse_iso8601(text: str, zone: dt.tzinfo) -> dt.datetime:
    m = _ISO8601.fullmatch(text)
    if not m:
        raise ValueError(text)
    g = m.groupdict()
    frac = (g["f"] or "").ljust(6, "0")[:6]
    value = dt.datetime(
        int(g["y"]),
        int(g["mo"] or 1),
        int(g["d"] or 1),
        int(g["h"] or 0),
        int(g["mi"] or 0),
        int(g["s"] or 0),
        int(frac),
    )
    tz = _offset_zone(g["z"]) if g["z"] else zone
    return value.replace(tzinfo=tz)


_JAVA_LETTERS = re.compile(r"'(?:[^']|'')*'|([A-Za-z])\1*|[^A-Za-z']")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _java_tokens(pattern: str) -> list[tuple[str, str]]:
    """Split a DateTimeFormatter pattern into ("lit", text) / (letter, run) tokens."""
    tokens = []
    for m in _JAVA_LETTERS.finditer(pattern):
        text = m.group(0)
        if text.startswith("'"):
            tokens.append(("lit", text[1:-1].replace("''", "'") if text != "''" else "'"))
        elif m.group(1):
            if m.group(1) not in "yuMdHmsSXZEa":
                raise EmulatorLimitation(f"date pattern letter {m.group(1)!r} is not emulated ({pattern!r})")
            tokens.append((m.group(1), text))
        else:
            if text in "[]#{}":
                raise EmulatorLimitation(f"date pattern syntax {text!r} is not emulated ({pattern!r})")
            tokens.append(("lit", text))
    return tokens


def _parse_java_date(text: str, pattern: str, zone: dt.tzinfo) -> dt.datetime:
    regex, names = [], []
    for kind, run in _java_tokens(pattern):
        if kind == "lit":
            regex.append(re.escape(run))
            continue
        n = len(run)
        names.append((kind, n))
        if kind in "yu":
            regex.append(r"(\d{2})" if n == 2 else r"([+-]?\d{4,9})")
        elif kind == "M" and n >= 3:
            regex.append("(" + "|".join(_MONTHS) + ")")
        elif kind == "E":
            regex.append("(" + "|".join(_DAYS) + ")")
        elif kind == "a":
            regex.append("(AM|PM)")
        elif kind == "S":
            regex.append(rf"(\d{{{n}}})")
        elif kind in "XZ":
            regex.append(r"(Z|[+-]\d{2}(?::?\d{2})?)")
        else:
            regex.append(rf"(\d{{{n},2}})" if n == 1 else rf"(\d{{{n}}})")
    m = re.fullmatch("".join(regex), text)
    if not m:
        raise ValueError(text)
    parts: dict[str, Any] = {"y": 1970, "M": 1, "d": 1, "H": 0, "m": 0, "s": 0, "S": 0}
    tz: dt.tzinfo = zone
    year_seen = pm = False
    for (kind, n), value in zip(names, m.groups()):
        if kind in "yu":
            parts["y"] = 2000 + int(value) if n == 2 else int(value)
            year_seen = True
        elif kind == "M":
            parts["M"] = _MONTHS.index(value) + 1 if n >= 3 else int(value)
        elif kind == "S":
            parts["S"] = int(value.ljust(6, "0")[:6])
        elif kind in "XZ":
            tz = _offset_zone(value)
        elif kind == "a":
            pm = value == "PM"
        elif kind != "E":
            parts[kind] = int(value)
    if not year_seen:
        parts["y"] = dt.datetime.now(dt.UTC).year
    hour = parts["H"] + (12 if pm and parts["H"] < 12 else 0)
    return dt.datetime(parts["y"], parts["M"], parts["d"], hour, parts["m"], parts["s"], parts["S"], tzinfo=tz)


def _format_java_date(value: dt.datetime, pattern: str) -> str:
    out = []
    for kind, run in _java_tokens(pattern):
        n = len(run)
        if kind == "lit":
            out.append(run)
        elif kind in "yu":
            out.append(f"{value.year % 100:02d}" if n == 2 else f"{value.year:0{n}d}")
        elif kind == "M":
            out.append(_MONTHS[value.month - 1] if n >= 3 else f"{value.month:0{n}d}")
        elif kind == "d":
            out.append(f"{value.day:0{n}d}")
        elif kind == "H":
            out.append(f"{value.hour:0{n}d}")
        elif kind == "m":
            out.append(f"{value.minute:0{n}d}")
        elif kind == "s":
            out.append(f"{value.second:0{n}d}")
        elif kind == "S":
            out.append(f"{value.microsecond:06d}000"[:n])
        elif kind == "E":
            out.append(_DAYS[value.weekday()])
        elif kind == "a":
            out.append("PM" if value.hour >= 12 else "AM")
        else:  # X / Z offsets
            offset = value.utcoffset() or dt.timedelta(0)
            seconds = int(offset.total_seconds())
            if seconds == 0 and kind == "X":
                out.append("Z")
                continue
            sign = "-" if seconds < 0 else "+"
            hh, mm = divmod(abs(seconds) // 60, 60)
            if kind == "Z" or n == 2:
                out.append(f"{sign}{hh:02d}{mm:02d}")
            elif n == 1:
                out.append(f"{sign}{hh:02d}" + (f"{mm:02d}" if mm else ""))
            else:
                out.append(f"{sign}{hh:02d}:{mm:02d}")
    return "".join(out)


def _parse_date(text: str | None, fmt: str, zone: dt.tzinfo) -> dt.datetime:
    """One ``DateFormat`` of the date processor; raises ValueError when it does not apply."""
    if text is None:
        raise ValueError("null")
    if fmt == "ISO8601":
        return _parse_iso8601(text, zone).astimezone(zone)
    if fmt == "UNIX":
        millis = int(_parse_java_double(text) * 1000.0)
        return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=millis)).astimezone(zone)
    if fmt == "UNIX_MS":
        millis = _parse_java_int(text, 64)
        return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=millis)).astimezone(zone)
    if fmt == "TAI64N":
        raise EmulatorLimitation("date format TAI64N is not emulated")
    if fmt in ("iso8601", "strict_date_optional_time", "date_optional_time"):
        return _parse_iso8601(text, zone).astimezone(zone)
    if re.fullmatch(r"[a-z_]+", fmt):
        raise EmulatorLimitation(f"named date format {fmt!r} is not emulated")
    return _parse_java_date(text, fmt[1:] if fmt.startswith("8") else fmt, zone).astimezone(zone)


# --------------------------------------------------------------------------- grok

GROK_PATTERNS = {
    "USERNAME": r"[a-zA-Z0-9._-]+",
    "USER": r"%{USERNAME}",
    "WORD": r"\b\w+\b",
    "NOTSPACE": r"\S+",
    "SPACE": r"\s*",
    "DATA": r".*?",
    "GREEDYDATA": r".*",
    "INT": r"(?:[+-]?(?:[0-9]+))",
    "BASE10NUM": r"(?<![0-9.+-])(?>[+-]?(?:(?:[0-9]+(?:\.[0-9]+)?)|(?:\.[0-9]+)))",
    "NUMBER": r"(?:%{BASE10NUM})",
    "POSINT": r"\b(?:[1-9][0-9]*)\b",
    "NONNEGINT": r"\b(?:[0-9]+)\b",
}
"""The grok patterns the SOC files use (with a few basic neighbours), as in Elasticsearch's bank."""

_GROK_REF = re.compile(r"%\{(\w+)(?::([^:}]+))?(?::(\w+))?\}")


@lru_cache(maxsize=256)
def _grok_compile(pattern: str, definitions: tuple[tuple[str, str], ...]) -> tuple[re.Pattern, tuple]:
    bank = {**GROK_PATTERNS, **dict(definitions)}
    captures: list[tuple[str, str, str | None]] = []

    def expand(text: str, depth: int) -> str:
        if depth > 50:
            raise EmulatorLimitation(f"grok pattern recursion too deep in {pattern!r}")

        def repl(m: re.Match) -> str:
            name, field, kind = m.group(1), m.group(2), m.group(3)
            if name not in bank:
                raise EmulatorLimitation(f"grok pattern %{{{name}}} is not in the emulator's table")
            inner = expand(bank[name], depth + 1)
            if field is None:
                return f"(?:{inner})"
            group = f"g{len(captures)}"
            captures.append((group, field.replace("][", ".").strip("[]"), kind))
            return f"(?P<{group}>{inner})"

        text = _GROK_REF.sub(repl, text)

        def named(m: re.Match) -> str:
            group = f"g{len(captures)}"
            captures.append((group, m.group(1), None))
            return f"(?P<{group}>"

        return re.sub(r"\(\?<([A-Za-z_][\w.@]*)>", named, text)

    return re.compile(expand(pattern, 0)), tuple(captures)


def _grok_convert(value: str, kind: str | None) -> Any:
    if kind is None:
        return value
    if kind in ("int", "long"):
        return _parse_java_int(value, 32 if kind == "int" else 64)
    if kind == "float":
        return _to_float32(_parse_java_double(value))
    if kind == "double":
        return _parse_java_double(value)
    if kind == "boolean":
        return value.lower() == "true"
    raise EmulatorLimitation(f"grok conversion :{kind} is not emulated")


# --------------------------------------------------------------------------- dissect


def dissect(tokenizer: str, text: str) -> dict[str, tuple[int, int]]:
    """The dissect algorithm shared by Beats and Elasticsearch: key -> (start, end) in ``text``.

    The text must start with the leading literal; each key ends at the next occurrence of the
    following literal; a last key with no trailing literal takes the rest; ``->`` (padding) skips
    repeated delimiters; ``%{}`` and ``%{?name}`` are matched but not returned.  Append (``+``) and
    reference (``*``/``&``) modifiers raise :class:`EmulatorLimitation`.  Raises ValueError when the
    text does not match.
    """
    parts = re.split(r"%\{([^}]*)\}", tokenizer)
    delimiters, keys = parts[0::2], parts[1::2]
    if not text:
        raise ValueError("unable to dissect an empty string")
    if not text.startswith(delimiters[0]):
        raise ValueError(f"could not find beginning delimiter {delimiters[0]!r} in {text!r}")
    offset = len(delimiters[0])
    spans: list[tuple[str, int, int]] = []
    for i, key in enumerate(keys):
        greedy = key.endswith("->")
        name = key[:-2] if greedy else key
        if name[:1] in ("+", "*", "&") or "/" in name:
            raise EmulatorLimitation(f"dissect modifier in %{{{key}}} is not emulated")
        following = delimiters[i + 1]
        start = offset
        if following == "" and i == len(keys) - 1:
            end = len(text)
            offset = end
        else:
            if following == "":
                raise EmulatorLimitation(f"consecutive dissect keys in {tokenizer!r} are not emulated")
            end = text.find(following, offset)
            if end == -1:
                raise ValueError(f"could not find delimiter {following!r} in {text[offset:]!r}")
            offset = end
            if greedy:
                while text.startswith(following, offset + len(following)):
                    offset += len(following)
            offset += len(following)
        spans.append((name, start, end))
    return {name: (start, end) for name, start, end in spans if name and not name.startswith("?")}


# --------------------------------------------------------------------------- registered domain

_SUFFIX_TEXT = """com net org edu gov mil int io info biz co us uk co.uk org.uk ac.uk gov.uk de fr nl se ru cn com.cn
jp co.jp au com.au br com.br in co.in ca eu me tv arpa in-addr.arpa"""
PUBLIC_SUFFIXES = frozenset(_SUFFIX_TEXT.split())
"""A tiny public-suffix list for ``registered_domain`` (not the real PSL)."""


def _registered_domain(name: str) -> tuple[str | None, str | None, str | None, str | None] | None:
    """(domain, registered_domain, top_level_domain, subdomain) as RegisteredDomainProcessor sets them.

    None when Elasticsearch finds no registrable domain.  The suffix rules are :data:`PUBLIC_SUFFIXES`
    plus "any alphabetic last label of a dotted name" (the real PSL lists every ICANN TLD).
    """
    host = name.lower().removeprefix(".")
    labels = host.split(".")

    def is_suffix(candidate: list[str]) -> bool:
        text = ".".join(candidate)
        if text in PUBLIC_SUFFIXES:
            return True
        return len(candidate) == 1 and len(labels) > 1 and candidate[0].isalpha() and len(candidate[0]) >= 2

    suffix_len = next((n for n in range(len(labels), 0, -1) if is_suffix(labels[-n:])), 0)
    if suffix_len == 0:
        return None  # no public suffix rule: Apache's matcher yields a dot-less root, ES gives up
    if suffix_len == len(labels):
        return name, None, name, None  # the name is itself a public suffix
    registered = ".".join(labels[-suffix_len - 1 :])
    index = registered.index(".") + 1
    sub_index = name.lower().rfind("." + registered)
    subdomain = name[:sub_index] if sub_index > 0 else None
    return name, registered, registered[index:], subdomain


# --------------------------------------------------------------------------- processors

_COMMON = {"if", "tag", "description", "ignore_failure", "on_failure"}
_Processor = Callable[["_Engine", _Doc, dict], bool | None]
_PROCESSORS: dict[str, tuple[_Processor, frozenset[str]]] = {}


def _processor(name: str, *options: str) -> Callable[[_Processor], _Processor]:
    def register(fn: _Processor) -> _Processor:
        _PROCESSORS[name] = (fn, frozenset(options) | _COMMON)
        return fn

    return register


def _string_values(doc: _Doc, cfg: dict, fn: Callable[[str], Any], what: str = "") -> None:
    """AbstractStringProcessor: string or list of strings, ignore_missing, target_field."""
    field = _field(cfg, "field", doc)
    ignore_missing = cfg.get("ignore_missing", False)
    value = doc.get(field, ignore_missing)
    if value is None:
        if ignore_missing:
            return
        raise IngestError(f"field [{field}] is null, cannot process it.")
    if isinstance(value, list):
        new = []
        for item in value:
            if not isinstance(item, str):
                raise IngestError(
                    f"value [{java_str(item)}] of type [{java_type(item)}] in list field [{field}]"
                    " cannot be cast to [java.lang.String]"
                )
            new.append(fn(item))
    elif isinstance(value, str):
        new = fn(value)
    else:
        raise IngestError(f"field [{field}] of type [{java_type(value)}] cannot be cast to [java.lang.String]")
    doc.set(_field(cfg, "target_field", doc, field), new)


@_processor("lowercase", "field", "target_field", "ignore_missing")
def _p_lowercase(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    _string_values(doc, cfg, str.lower)


@_processor("uppercase", "field", "target_field", "ignore_missing")
def _p_uppercase(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    _string_values(doc, cfg, str.upper)


@_processor("trim", "field", "target_field", "ignore_missing")
def _p_trim(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    _string_values(doc, cfg, _java_trim)


def _java_replacement(replacement: str) -> Callable[[re.Match], str]:
    """``Matcher.replaceAll`` replacement syntax: ``$n``, ``${name}``, ``\\x`` escapes."""
    parts: list[str | int] = []
    i = 0
    literal = []
    while i < len(replacement):
        ch = replacement[i]
        if ch == "\\" and i + 1 < len(replacement):
            literal.append(replacement[i + 1])
            i += 2
        elif ch == "$":
            if literal:
                parts.append("".join(literal))
                literal = []
            m = re.match(r"\{(\w+)\}|(\d+)", replacement[i + 1 :])
            if not m:
                raise IngestError("Illegal group reference")
            parts.append(m.group(1) if m.group(1) else int(m.group(2)))
            i += 1 + m.end()
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))

    def expand(match: re.Match) -> str:
        out = []
        for part in parts:
            if isinstance(part, int):
                group = part
                # Java keeps consuming digits only while the number is a valid group
                text = str(group)
                while group > match.re.groups and len(text) > 1:
                    text = text[:-1]
                    group = int(text)
                out.append((match.group(group) or "") + str(part)[len(text) :])
            elif isinstance(part, str) and part.isidentifier() and part in match.re.groupindex:
                out.append(match.group(part) or "")
            else:
                out.append(str(part))
        return "".join(out)

    return expand


@_processor("gsub", "field", "pattern", "replacement", "target_field", "ignore_missing")
def _p_gsub(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    regex = re.compile(cfg["pattern"])
    expand = _java_replacement(str(cfg["replacement"]))
    _string_values(doc, cfg, lambda s: regex.sub(expand, s))


@_processor("append", "field", "value", "allow_duplicates", "media_type")
def _p_append(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    value, _ = _resolve_value(cfg["value"], doc, _MEDIA_TYPES[cfg.get("media_type", "application/json")])
    doc.set(_field(cfg, "field", doc), value, append=True, allow_duplicates=cfg.get("allow_duplicates", True))


@_processor("set", "field", "value", "copy_from", "override", "ignore_empty_value", "media_type")
def _p_set(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field = _field(cfg, "field", doc)
    ignore_empty = cfg.get("ignore_empty_value", False)
    if not (cfg.get("override", True) or not doc.has(field) or doc.get(field) is None):
        return
    if "copy_from" in cfg:
        value = copy.deepcopy(doc.get(_field(cfg, "copy_from", doc), ignore_empty))
        if ignore_empty and (value is None or value == ""):
            return
    else:
        value, templated = _resolve_value(cfg["value"], doc, _MEDIA_TYPES[cfg.get("media_type", "application/json")])
        if ignore_empty and templated and (value is None or value == ""):
            return
    doc.set(field, value)


@_processor("remove", "field", "ignore_missing")
def _p_remove(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    fields = cfg["field"] if isinstance(cfg["field"], list) else [cfg["field"]]
    for raw in fields:
        path = render_mustache(raw, doc.model()) if "{{" in raw else raw
        if cfg.get("ignore_missing", False) and not doc.has(path):
            continue
        doc.remove(path)


@_processor("rename", "field", "target_field", "ignore_missing", "override")
def _p_rename(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    path = _field(cfg, "field", doc)
    if not doc.has(path, fail_out_of_range=True):
        if cfg.get("ignore_missing", False):
            return
        raise IngestError(f"field [{path}] doesn't exist")
    target = _field(cfg, "target_field", doc)
    if doc.has(target, fail_out_of_range=True) and not cfg.get("override", False):
        raise IngestError(f"field [{target}] already exists")
    value = doc.get(path)
    doc.remove(path)
    try:
        doc.set(target, value)
    except IngestError:
        doc.set(path, value)
        raise


def _convert_one(kind: str, value: Any) -> Any:
    text = java_str(value)
    try:
        if kind == "integer":
            return _parse_java_int(text, 32)
        if kind == "long":
            return _parse_java_int(text, 64)
        if kind == "float":
            return _to_float32(_parse_java_double(text))
        if kind == "double":
            return _parse_java_double(text)
    except ValueError:
        raise IngestError(f"unable to convert [{text}] to {kind}") from None
    if kind == "boolean":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise IngestError(f"[{text}] is not a boolean value, cannot convert to boolean")
    if kind == "string":
        return text
    if kind == "ip":
        if not isinstance(value, str):
            raise IngestError(f"class {java_type(value)} cannot be cast to class java.lang.String")
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise IngestError(f"'{value}' is not an IP string literal.") from None
        return value
    if kind == "auto":
        if not isinstance(value, str):
            return value
        for attempt in ("boolean", "integer", "long", "float", "double"):
            try:
                return _convert_one(attempt, value)
            except IngestError:
                continue
        return value
    raise EmulatorLimitation(f"convert type [{kind}] not supported")


@_processor("convert", "field", "target_field", "type", "ignore_missing")
def _p_convert(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field = _field(cfg, "field", doc)
    kind = str(cfg["type"]).lower()
    if kind not in ("integer", "long", "float", "double", "boolean", "string", "ip", "auto"):
        raise EmulatorLimitation(f"convert type [{kind}] not supported")
    ignore_missing = cfg.get("ignore_missing", False)
    value = doc.get(field, ignore_missing)
    if value is None:
        if ignore_missing:
            return
        raise IngestError(f"Field [{field}] is null, cannot be converted to type [{kind}]")
    new = [_convert_one(kind, v) for v in value] if isinstance(value, list) else _convert_one(kind, value)
    doc.set(_field(cfg, "target_field", doc, field), new)


@_processor("date", "field", "target_field", "formats", "timezone", "locale", "output_format")
def _p_date(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field = _field(cfg, "field", doc)
    raw = doc.get(field)
    text = None if raw is None else java_str(raw)
    tz_name = cfg.get("timezone")
    if tz_name is not None and "{{" in tz_name:
        tz_name = render_mustache(tz_name, doc.model())
    zone = _zone(tz_name)
    locale = cfg.get("locale")
    if locale not in (None, "en", "en_US", "en-US", "ROOT"):
        raise EmulatorLimitation(f"date locale {locale!r} is not emulated")
    parsed = None
    for fmt in cfg["formats"]:
        try:
            parsed = _parse_date(text, fmt, zone)
            break
        except (ValueError, OverflowError):
            continue
    if parsed is None:
        raise IngestError(f"unable to parse date [{java_str(text)}]")
    output = cfg.get("output_format", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX")
    doc.set(_field(cfg, "target_field", doc, "@timestamp"), _format_java_date(parsed, output))


@_processor("dot_expander", "field", "path", "override")
def _p_dot_expander(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field, path = cfg["field"], cfg.get("path")
    container = doc.get(path) if path is not None else doc.source
    if not isinstance(container, dict):
        raise IngestError(f"field [{path}] of type [{java_type(container)}] cannot be cast to [java.util.Map]")
    keys = [k for k in list(container) if "." in k[1:]] if field == "*" else [field]
    for key in keys:
        if key not in container:
            continue
        full = f"{path}.{key}" if path is not None else key
        if doc.has(full):
            value = container.pop(key)
            if cfg.get("override", False):
                doc.set(full, value)
            else:
                doc.set(full, value, append=True)
            continue
        parts = full.split(".")
        for i in range(1, len(parts)):
            partial = ".".join(parts[:i])
            if not doc.has(partial):
                break
            if not isinstance(doc.get(partial), dict):
                raise IngestError(
                    f"cannot expand [{full}], because [{partial}] is not an object field, but a value field"
                )
        doc.set(full, container.pop(key))


@_processor("drop")
def _p_drop(eng: _Engine, doc: _Doc, cfg: dict) -> bool:
    return False


@_processor("fail", "message")
def _p_fail(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    raise IngestError(render_mustache(cfg["message"], doc.model()))


@_processor("fingerprint", "fields", "target_field", "salt", "method", "ignore_missing")
def _p_fingerprint(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    algorithms = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}
    method = cfg.get("method", "SHA-1")
    if method not in algorithms:
        raise EmulatorLimitation(f"fingerprint method {method!r} is not emulated")
    hasher = hashlib.new(algorithms[method])
    hasher.update(str(cfg.get("salt", "")).encode("utf-8"))
    values: list[Any] = []
    for field in sorted(cfg["fields"]):
        value = doc.get(field, ignore_missing=True)
        if value is None:
            if cfg.get("ignore_missing", False):
                continue
            raise IngestError(f"missing field [{field}] when calculating fingerprint")
        values.append(value)
    if not values:
        return
    stack = list(reversed(values))
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(reversed(value))
        elif isinstance(value, dict):
            stack.extend(reversed(sorted(value.items())))
        elif isinstance(value, tuple):  # a map entry
            hasher.update(b"\x00" + value[0].encode("utf-8"))
            stack.append(value[1])
        else:
            hasher.update(b"\x00" + _fingerprint_bytes(value))
    doc.set(cfg.get("target_field", "fingerprint"), base64.b64encode(hasher.digest()).decode("ascii"))


def _fingerprint_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return b"\x01" if value else b"\x02"
    if isinstance(value, int):
        return struct.pack("<i", value) if -(2**31) <= value < 2**31 else struct.pack("<q", value)
    if isinstance(value, float):
        return struct.pack("<d", value)
    if value is None:
        return b""
    raise IngestError(f"cannot convert object of type [{java_type(value)}] to bytes")


def _foreach_step(eng: _Engine, doc: _Doc, proc: dict) -> bool:
    """Run the nested processor; its failures count as the foreach's own (ES adds no headers there)."""
    try:
        return eng.run_processor(doc, proc)
    except ProcessorError as err:
        ((_, nested),) = proc.items()
        if (nested or {}).get("on_failure"):
            raise
        raise IngestError(err.message) from err


@_processor("foreach", "field", "processor", "ignore_missing")
def _p_foreach(eng: _Engine, doc: _Doc, cfg: dict) -> bool:
    field = _field(cfg, "field", doc)
    ignore_missing = cfg.get("ignore_missing", False)
    values = doc.get(field, ignore_missing)
    if values is None:
        if ignore_missing:
            return True
        raise IngestError(f"field [{field}] is null, cannot loop over its elements.")
    if isinstance(values, list):
        new: list = []
        for value in values:
            previous = doc.ingest.get("_value", _MISSING)
            doc.ingest["_value"] = value
            try:
                kept = _foreach_step(eng, doc, cfg["processor"])
            finally:
                new.append(doc.ingest.pop("_value", None))
                if previous is not _MISSING:
                    doc.ingest["_value"] = previous
            if not kept:
                return False
        doc.set(field, new)
        return True
    if isinstance(values, dict):
        new_map: dict = {}
        for key, value in list(values.items()):
            saved = {k: doc.ingest.get(k, _MISSING) for k in ("_key", "_value")}
            doc.ingest["_key"], doc.ingest["_value"] = key, value
            try:
                kept = _foreach_step(eng, doc, cfg["processor"])
                new_map[doc.ingest["_key"]] = doc.ingest["_value"]
            finally:
                for k, v in saved.items():
                    if v is _MISSING:
                        doc.ingest.pop(k, None)
                    else:
                        doc.ingest[k] = v
            if not kept:
                return False
        doc.set(field, new_map)
        return True
    raise IngestError(f"field [{field}] of type [{java_type(values)}] cannot be cast to a list or map")


@_processor("grok", "field", "patterns", "pattern_definitions", "ignore_missing", "trace_match", "ecs_compatibility")
def _p_grok(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field = cfg["field"]
    ignore_missing = cfg.get("ignore_missing", False)
    value = doc.get(field, ignore_missing)
    if value is None:
        if ignore_missing:
            return
        raise IngestError(f"field [{field}] is null, cannot process it.")
    if not isinstance(value, str):
        raise IngestError(f"field [{field}] of type [{java_type(value)}] cannot be cast to [java.lang.String]")
    definitions = tuple(sorted((cfg.get("pattern_definitions") or {}).items()))
    for index, pattern in enumerate(cfg["patterns"]):
        regex, captures = _grok_compile(pattern, definitions)
        m = regex.search(value)
        if not m:
            continue
        for group, target, kind in captures:
            if m.group(group) is not None:
                doc.set(target, _grok_convert(m.group(group), kind))
        if cfg.get("trace_match", False):
            doc.ingest["_grok_match_index"] = str(index)
        return
    raise IngestError(f"Provided Grok expressions do not match field value: [{value}]")


@_processor("dissect", "field", "pattern", "append_separator", "ignore_missing")
def _p_dissect(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field = cfg["field"]
    ignore_missing = cfg.get("ignore_missing", False)
    value = doc.get(field, ignore_missing)
    if value is None:
        if ignore_missing:
            return
        raise IngestError(f"field [{field}] is null, cannot process it.")
    if not isinstance(value, str):
        raise IngestError(f"field [{field}] of type [{java_type(value)}] cannot be cast to [java.lang.String]")
    try:
        spans = dissect(cfg["pattern"], value)
    except ValueError as exc:
        raise IngestError(
            f"Unable to find match for dissect pattern: {cfg['pattern']} against source: {value}"
        ) from exc
    for key, (start, end) in spans.items():
        doc.set(key, value[start:end])


@_processor(
    "json",
    "field",
    "target_field",
    "add_to_root",
    "add_to_root_conflict_strategy",
    "allow_duplicate_keys",
    "strict_json_parsing",
)
def _p_json(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field = cfg["field"]
    add_to_root = cfg.get("add_to_root", False)
    raw = doc.source.get(field) if add_to_root else doc.get(field)
    text = "null" if raw is None else java_str(raw)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out and not cfg.get("allow_duplicate_keys", False):
                raise ValueError(f'Duplicate field "{key}"')
            out[key] = value
        return out

    def reject_constant(name: str) -> Any:
        raise ValueError(f"Non-standard token '{name}'")

    try:
        if text.strip() == "":
            value = None
        elif cfg.get("strict_json_parsing", True):
            value = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=reject_constant)
        else:
            value, _ = json.JSONDecoder(object_pairs_hook=no_duplicates, parse_constant=reject_constant).raw_decode(
                text.lstrip()
            )
    except ValueError as exc:
        if str(exc).startswith("Extra data"):  # the first value parsed; strict mode rejects what follows
            raise IngestError(
                f"The input {text} is not valid JSON and the strict_json_parsing parameter is true"
            ) from None
        raise IngestError(f"com.fasterxml.jackson.core.JsonParseException: {exc}") from None
    if add_to_root:
        if not isinstance(value, dict):
            raise IngestError("cannot add non-map fields to root of document")
        if cfg.get("add_to_root_conflict_strategy", "replace") == "merge":
            _recursive_merge(doc.source, value)
        else:
            doc.source.update(value)
    else:
        doc.set(cfg.get("target_field", field), value)


def _recursive_merge(target: dict, source: dict) -> None:
    for key, value in source.items():
        if isinstance(target.get(key), dict) and isinstance(value, dict):
            _recursive_merge(target[key], value)
        else:
            target[key] = value


@_processor("join", "field", "separator", "target_field")
def _p_join(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field = cfg["field"]
    value = doc.get(field)
    if value is None:
        raise IngestError(f"field [{field}] is null, cannot join.")
    if not isinstance(value, list):
        raise IngestError(f"field [{field}] of type [{java_type(value)}] cannot be cast to [java.util.List]")
    joined = cfg["separator"].join(v if isinstance(v, str) else java_str(v) for v in value)
    doc.set(cfg.get("target_field", field), joined)


def java_split(regex: str, text: str, limit: int = 0) -> list[str]:
    """``String.split(regex, limit)``: Java's rules for leading empty matches and trailing empties."""
    if text == "":
        return [""]
    pattern = re.compile(regex)
    parts: list[str] = []
    index = 0
    for m in pattern.finditer(text):
        if limit > 0 and len(parts) >= limit - 1:
            break
        if m.end() == 0:  # a zero-width match at the beginning never yields a leading empty string
            continue
        if m.start() == m.end() and m.start() >= len(text):
            break
        parts.append(text[index : m.start()])
        index = m.end()
    if not parts:
        return [text]
    parts.append(text[index:])
    if limit == 0:
        while parts and parts[-1] == "":
            parts.pop()
    return parts


@_processor("split", "field", "separator", "target_field", "ignore_missing", "preserve_trailing")
def _p_split(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field = cfg["field"]
    ignore_missing = cfg.get("ignore_missing", False)
    value = doc.get(field, ignore_missing)
    if value is None:
        if ignore_missing:
            return
        raise IngestError(f"field [{field}] is null, cannot split.")
    if not isinstance(value, str):
        raise IngestError(f"field [{field}] of type [{java_type(value)}] cannot be cast to [java.lang.String]")
    parts = java_split(cfg["separator"], value, -1 if cfg.get("preserve_trailing", False) else 0)
    doc.set(cfg.get("target_field", field), parts)


@_processor(
    "kv",
    "field",
    "field_split",
    "value_split",
    "target_field",
    "ignore_missing",
    "include_keys",
    "exclude_keys",
    "trim_key",
    "trim_value",
    "strip_brackets",
    "prefix",
)
def _p_kv(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    field = _field(cfg, "field", doc)
    ignore_missing = cfg.get("ignore_missing", False)
    if not field or not doc.has(field, fail_out_of_range=True):
        if ignore_missing:
            return
        raise IngestError(f"field [{field}] doesn't exist")
    value = doc.get(field)
    if value is None:
        if ignore_missing:
            return
        raise IngestError(f"field [{field}] is null, cannot extract key-value pairs.")
    if not isinstance(value, str):
        raise IngestError(f"field [{field}] of type [{java_type(value)}] cannot be cast to [java.lang.String]")
    target = _field(cfg, "target_field", doc, "")
    prefix = (target + "." if target else "") + cfg.get("prefix", "")
    include, exclude = cfg.get("include_keys"), cfg.get("exclude_keys")

    def trimmer(chars: str | None) -> Callable[[str], str]:
        if chars is None:
            return lambda s: s
        regex = re.compile(f"(^([{chars}]+))|([{chars}]+$)")
        return lambda s: regex.sub("", s)

    trim_key, trim_value = trimmer(cfg.get("trim_key")), trimmer(cfg.get("trim_value"))
    strip = re.compile(r"(^[\(\[<\"'])|([\]\)>\"']$)")
    for part in java_split(cfg["field_split"], value, 0):
        kv = java_split(cfg["value_split"], part, 2)
        if len(kv) != 2:
            raise IngestError(f"field [{field}] does not contain value_split [{cfg['value_split']}]")
        key = trim_key(kv[0])
        if (include is not None and key not in include) or (exclude is not None and key in exclude):
            continue
        item = kv[1]
        if cfg.get("strip_brackets", False):
            item = strip.sub("", item)
        path = prefix + key
        if doc.has(path):
            doc.set(path, trim_value(item), append=True)
        else:
            doc.set(path, trim_value(item))


@_processor(
    "community_id",
    "source_ip",
    "source_port",
    "destination_ip",
    "destination_port",
    "iana_number",
    "transport",
    "icmp_type",
    "icmp_code",
    "target_field",
    "seed",
    "ignore_missing",
)
def _p_community_id(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    ignore_missing = cfg.get("ignore_missing", True)

    def value(key: str, default: str, tolerant: bool) -> Any:
        return doc.get(cfg.get(key, default), ignore_missing or tolerant)

    def as_string(key: str, default: str) -> str | None:
        v = value(key, default, False)
        if v is not None and not isinstance(v, str):
            raise IngestError(
                f"field [{cfg.get(key, default)}] of type [{java_type(v)}] cannot be cast to [java.lang.String]"
            )
        return v

    def as_int(v: Any, what: str) -> int:
        if v is None:
            return 0
        if _is_number(v):
            return int(v)
        if isinstance(v, str):
            try:
                return _parse_java_int(v, 32)
            except ValueError:
                pass
        raise IngestError(f"unable to parse {what} [{java_str(v)}]")

    source_ip, destination_ip = as_string("source_ip", "source.ip"), as_string("destination_ip", "destination.ip")
    protocol = value("iana_number", "network.iana_number", True)
    flow_ok = source_ip is not None and destination_ip is not None
    if flow_ok and protocol is None:
        protocol = value("transport", "network.transport", False)
        flow_ok = protocol is not None
    if not flow_ok:
        if ignore_missing:
            return
        raise IngestError("unable to construct flow from document")
    for address in (source_ip, destination_ip):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise IngestError(f"'{address}' is not an IP string literal.") from None
    if _is_number(protocol):
        number = int(protocol)
    elif isinstance(protocol, str):
        number = _TRANSPORTS.get(protocol.lower())
        if number is None:
            try:
                number = _parse_java_int(protocol, 32)
            except ValueError:
                raise IngestError(f"could not convert string [{protocol}] to transport protocol") from None
    else:
        raise IngestError(f"could not convert value of type [{java_type(protocol)}] to transport protocol")
    if not 0 <= number < 255:
        raise IngestError(f"invalid transport protocol number [{number}]")
    sport = dport = 0
    if number in (6, 17, 132):
        sport = as_int(value("source_port", "source.port", False), "source port")
        dport = as_int(value("destination_port", "destination.port", False), "destination port")
        for port, what in ((sport, "source"), (dport, "destination")):
            if not 0 <= port <= 65535:
                raise IngestError(f"invalid {what} port [{port}]")
    elif number in (1, 58):
        sport = as_int(value("icmp_type", "icmp.type", True), "icmp type")
        dport = as_int(value("icmp_code", "icmp.code", True), "icmp code")
    table = ICMP4_EQUIVALENTS_ES if number == 1 else ICMP6_EQUIVALENTS_ES
    result = community_id(
        source_ip, destination_ip, number, sport, dport, seed=int(cfg.get("seed", 0)), icmp_equivalents=table
    )
    doc.set(cfg.get("target_field", "network.community_id"), result)


@_processor("registered_domain", "field", "target_field", "ignore_missing")
def _p_registered_domain(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    ignore_missing = cfg.get("ignore_missing", True)
    value = doc.get(cfg["field"], ignore_missing)
    if value is not None and not isinstance(value, str):
        raise IngestError(f"field [{cfg['field']}] of type [{java_type(value)}] cannot be cast to [java.lang.String]")
    info = _registered_domain(value) if value is not None else None
    if info is None:
        if ignore_missing:
            return
        raise IngestError("unable to set domain information for document")
    prefix = cfg.get("target_field", "")
    prefix = prefix + "." if prefix else ""
    for suffix, item in zip(("domain", "registered_domain", "top_level_domain", "subdomain"), info):
        if item is not None:
            doc.set(prefix + suffix, item)


def _no_database(doc: _Doc, cfg: dict, check_ip: bool) -> None:
    field = cfg["field"]
    ignore_missing = cfg.get("ignore_missing", False)
    value = doc.get(field, ignore_missing)
    if value is None:
        if ignore_missing:
            return
        raise IngestError(
            f"field [{field}] is null, cannot extract {'geoip' if check_ip else 'user agent'} information."
        )
    if check_ip:
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                raise IngestError(f"field [{field}] of type [{java_type(item)}] cannot be cast to [java.lang.String]")
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise IngestError(f"'{item}' is not an IP string literal.") from None


@_processor(
    "geoip",
    "field",
    "target_field",
    "database_file",
    "properties",
    "ignore_missing",
    "first_only",
    "download_database_on_pipeline_creation",
)
def _p_geoip(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    """No GeoIP database here: validate the input like ES, add nothing."""
    _no_database(doc, cfg, check_ip=True)


@_processor("user_agent", "field", "target_field", "regex_file", "properties", "extract_device_type", "ignore_missing")
def _p_user_agent(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    """No regex database here: validate the input like ES, add nothing."""
    _no_database(doc, cfg, check_ip=False)


@_processor("script", "lang", "source", "id", "params")
def _p_script(eng: _Engine, doc: _Doc, cfg: dict) -> None:
    if cfg.get("lang", "painless") != "painless" or "source" not in cfg:
        raise EmulatorLimitation(f"only inline painless scripts are emulated: {cfg!r}")
    source = cfg["source"]
    translation = PAINLESS_SCRIPTS.get(script_sha256(source))
    if translation is None:
        first = next((line for line in source.splitlines() if line.strip()), "")
        raise UnsupportedScript(f"no translation for Painless script starting {first.strip()!r}")
    translation(doc.source, cfg.get("params") or {})


@_processor("pipeline", "name", "ignore_missing_pipeline")
def _p_pipeline(eng: _Engine, doc: _Doc, cfg: dict) -> bool:
    name = eng.registry.resolve(cfg["name"])
    if "{{" in name:
        name = render_mustache(name, doc.model())
    if name not in eng.registry:
        if cfg.get("ignore_missing_pipeline", False):
            return True
        raise IngestError(f"Pipeline processor configured for non-existent pipeline [{name}]")
    return eng.run_pipeline(doc, name)


# --------------------------------------------------------------------------- engine

_FAILURE_KEYS = ("on_failure_message", "on_failure_processor_type", "on_failure_processor_tag", "on_failure_pipeline")


class _Engine:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.stack: list[str] = []

    def run_pipeline(self, doc: _Doc, name: str) -> bool:
        if name in self.stack:
            raise IngestError(f"Cycle detected for pipeline: {name}")
        pipeline = self.registry.get(name)
        self.stack.append(name)
        previous = doc.ingest.get("pipeline", _MISSING)
        doc.ingest["pipeline"] = name
        try:
            for proc in pipeline["processors"]:
                try:
                    if not self.run_processor(doc, proc):
                        return False
                except ProcessorError as err:
                    if pipeline.get("on_failure"):
                        return self.run_on_failure(doc, pipeline["on_failure"], err)
                    raise
            return True
        finally:
            self.stack.pop()
            if previous is _MISSING:
                doc.ingest.pop("pipeline", None)
            else:
                doc.ingest["pipeline"] = previous

    def run_on_failure(self, doc: _Doc, processors: list, err: ProcessorError) -> bool:
        saved = {k: doc.ingest.get(k, _MISSING) for k in _FAILURE_KEYS}
        doc.ingest.update(
            on_failure_message=err.message,
            on_failure_processor_type=err.processor_type,
            on_failure_processor_tag=err.tag,
            on_failure_pipeline=err.pipeline,
        )
        try:
            return all(self.run_processor(doc, proc) for proc in processors)
        finally:
            for key, value in saved.items():
                if value is _MISSING:
                    doc.ingest.pop(key, None)
                else:
                    doc.ingest[key] = value

    def run_processor(self, doc: _Doc, proc: Mapping[str, Any]) -> bool:
        """Run one processor; False when the document was dropped."""
        if not isinstance(proc, Mapping) or len(proc) != 1:
            raise EmulatorLimitation(f"a processor must be a single-key object: {proc!r}")
        ((ptype, cfg),) = proc.items()
        cfg = cfg or {}
        if ptype not in _PROCESSORS:
            raise EmulatorLimitation(f"processor [{ptype}] is not emulated")
        fn, allowed = _PROCESSORS[ptype]
        unknown = set(cfg) - allowed
        if unknown:
            raise EmulatorLimitation(f"processor [{ptype}] options {sorted(unknown)} are not emulated")
        tag = cfg.get("tag")
        try:
            condition = cfg.get("if")
            if condition is not None:
                source = condition["source"] if isinstance(condition, Mapping) else condition
                if not _pl_bool(painless_eval(source, doc.source), "if"):
                    return True
            result = fn(self, doc, cfg)
            return result is not False
        except IngestError as exc:
            if isinstance(exc, ProcessorError) and exc.processor_type is not None:
                err = exc
            else:
                err = ProcessorError(str(exc), ptype, tag, self.stack[-1] if self.stack else None)
            if cfg.get("ignore_failure", False):
                return True
            if cfg.get("on_failure"):
                return self.run_on_failure(doc, cfg["on_failure"], err)
            raise err from exc


def _now_java() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def simulate(
    registry: Registry,
    name: str,
    source: Mapping[str, Any],
    *,
    metadata: Mapping[str, Any] | None = None,
    ingest_timestamp: str | None = None,
) -> dict | None:
    """Run pipeline ``name`` on a deep copy of ``source``; the result, or None if dropped.

    ``metadata`` seeds metadata fields (``_index``, ``_id``, ...); they and any a processor sets are
    returned as top-level keys (see the module docstring).  ``ingest_timestamp`` is
    ``_ingest.timestamp`` (default: now, UTC).  Raises :class:`IngestFailure` if a processor fails
    and no ``on_failure`` handles it.
    """
    name = registry.resolve(name)
    if name not in registry:
        raise KeyError(f"pipeline [{name}] is not registered")
    body = copy.deepcopy(dict(source))
    for key in METADATA_FIELDS:
        if key in body:
            raise ValueError(f"{key} is a metadata field, pass it in metadata=")
    body.update(copy.deepcopy(dict(metadata or {})))
    doc = _Doc(body, {"timestamp": ingest_timestamp or _now_java()})
    try:
        kept = _Engine(registry).run_pipeline(doc, name)
    except ProcessorError as err:
        raise IngestFailure(err.message, err.processor_type, err.tag, err.pipeline) from err
    return doc.source if kept else None


def iter_processors(pipeline: Mapping[str, Any]) -> Iterator[tuple[str, dict]]:
    """Every processor of a pipeline, nested ``on_failure`` and ``foreach`` ones included."""

    def walk(processors: list) -> Iterator[tuple[str, dict]]:
        for proc in processors or []:
            ((ptype, cfg),) = proc.items()
            cfg = cfg or {}
            yield ptype, cfg
            yield from walk(cfg.get("on_failure", []))
            if ptype == "foreach":
                yield from walk([cfg["processor"]])

    yield from walk(pipeline.get("processors", []))
    yield from walk(pipeline.get("on_failure", []))


def validate_pipeline(pipeline: Mapping[str, Any]) -> list[str]:
    """Problems the emulator would hit on ``pipeline``, found statically (empty list: fully covered).

    Checks every processor (nested ones included) for an emulated type and options, compiles each
    ``if`` condition and grok pattern, and looks up each ``script`` in :data:`PAINLESS_SCRIPTS`.
    """
    problems = []
    for ptype, cfg in iter_processors(pipeline):
        if ptype not in _PROCESSORS:
            problems.append(f"processor [{ptype}] is not emulated")
            continue
        unknown = set(cfg) - _PROCESSORS[ptype][1]
        if unknown:
            problems.append(f"processor [{ptype}] options {sorted(unknown)} are not emulated")
        condition = cfg.get("if")
        if condition is not None:
            try:
                compile_painless(condition["source"] if isinstance(condition, Mapping) else condition)
            except EmulatorLimitation as exc:
                problems.append(str(exc))
        if ptype == "script" and script_sha256(cfg.get("source", "")) not in PAINLESS_SCRIPTS:
            first = next((line for line in cfg.get("source", "").splitlines() if line.strip()), "")
            problems.append(f"no translation for Painless script starting {first.strip()!r}")
        if ptype == "grok":
            definitions = tuple(sorted((cfg.get("pattern_definitions") or {}).items()))
            for pattern in cfg.get("patterns", []):
                try:
                    _grok_compile(pattern, definitions)
                except EmulatorLimitation as exc:
                    problems.append(str(exc))
    return problems
