"""The Beats / Elastic Agent input side of the SOC ingest paths, for tests.

What a Filebeat ``log`` input (or an Elastic Agent ``logfile`` stream) makes of a log line, the
agent-side processors that the SOC definitions configure, and the configuration templates they are
written in.  Pair it with :mod:`tests.soc.ingest` for the Elasticsearch side::

    cfg = render_agent_template(ZEEK / "config/notice.yml", vars)      # paths, processors, json settings
    event = agent_event(line, "/var/log/bro/current/notice.log", tags=cfg["tags"], json_under="json")
    event = run_processors(cfg["processors"], event)                  # None if dropped
    doc, pipeline = to_wire(event)                                     # what Elasticsearch receives
    result = ingest.simulate(registry, pipeline or "default", doc)

Public API
----------
``agent_event(line, path, *, offset=0, tags=(), json_under=None, ...) -> dict``
    The event a log input emits for one line (``message`` or decoded ``json``, ``log.file.path``,
    ``log.offset``, ``input.type``, ``@timestamp``, ``tags``).
``agent_events(text, path, **kw) -> Iterator[dict]``
    One event per non-empty line of ``text``, with byte offsets as the input computes them.
``run_processors(processors, event, *, errors=None) -> dict | None``
    Run Beats processors on a copy of ``event`` (None when dropped).  As in libbeat, a processor
    that fails logs (here: appends to ``errors``) and processing continues with the event it returned.
``to_wire(event) -> tuple[dict, str | None]``
    The JSON document the Elasticsearch output sends (floats encoded like go-structform, ``%g``: an
    integral float below 1e6 arrives as an integer) and the ingest pipeline from ``@metadata.pipeline``.
``render_agent_template(path, variables) -> dict``
    Render an elastic-package ``*.yml.hbs`` (Handlebars, with Fleet's ``contains`` helper) or a
    Filebeat module ``config/*.yml`` (Go ``text/template`` with ``tojson``/``inList``) and parse the YAML.
``parse_so_policy(path, defaults_path=None) -> dict``
    Security Onion's Jinja-wrapped Fleet policy JSON (``elasticfleet/zeek-logs.json``, ...) as
    ``{"paths", "exclude_files", "processors", "pipeline", "dataset", "tags", ...}``.
``glob_matches(pattern, path)``, ``excluded(path, patterns)``, ``input_accepts(config, path)``
    Input ``paths`` globs (Go ``filepath.Match`` plus Filebeat's ``**``) and ``exclude_files`` regexps.

Field access follows libbeat's ``mapstr`` (``mapFind``): at every level the *remaining* dotted key
is first tried literally, then split at its first dot; so ``zeek.notice.id.orig_h`` reaches a key
``"id.orig_h"`` under ``zeek.notice`` (unlike Elasticsearch, which needs ``dot_expander``).

Notes from the Beats sources
----------------------------
* ``dissect``: ``trim_chars`` only applies when ``trim_values`` is ``left``/``right``/``all``; the
  default is ``none`` (``libbeat/processors/dissect/config.go``, ``processor.go``), so a
  ``trim_chars`` on its own changes nothing.
* JSON decoding (``json.*`` settings): a line that is not a JSON object keeps its text in ``message``;
  with ``json.add_error_key: true`` the error goes to ``json.error.message``/``json.error.type``
  (``libbeat/reader/readjson/json.go``).
* ``add_host_metadata`` / ``add_observer_metadata`` add machine facts this emulator does not know:
  they are no-ops here.  ``script`` (JavaScript) runs a Python translation looked up by the sha256 of
  its source (:data:`JS_SCRIPTS`); an unknown script raises :class:`tests.soc.ingest.UnsupportedScript`.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import json
import math
import re
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.soc.ingest import (
    EmulatorLimitation,
    UnsupportedScript,
    community_id,
    dissect,
    load_yaml,
    render_jinja,
    script_sha256,
)

__all__ = [
    "JS_SCRIPTS",
    "BeatsError",
    "agent_event",
    "agent_events",
    "delete",
    "excluded",
    "get_value",
    "glob_matches",
    "input_accepts",
    "manifest_vars",
    "parse_so_policy",
    "put_value",
    "render_agent_template",
    "render_go_template",
    "render_handlebars",
    "run_processors",
    "to_wire",
]


class BeatsError(Exception):
    """A processor error as libbeat returns it (logged; the chain continues)."""


# --------------------------------------------------------------------------- mapstr


class _KeyNotFound(BeatsError):
    pass


def _map_find(key: str, data: dict, create: bool) -> tuple[str, dict, Any, bool]:
    """libbeat ``mapFind``: (sub_key, sub_map, old_value, present); literal remaining key first."""
    while True:
        if key in data:
            return key, data, data[key], True
        idx = key.find(".")
        if idx < 0:
            return key, data, None, False
        head, key = key[:idx], key[idx + 1 :]
        if head not in data:
            if not create:
                raise _KeyNotFound(f"key not found: {head}")
            data[head] = {}
        sub = data[head]
        if not isinstance(sub, dict):
            raise BeatsError(f"expected map but type is {type(sub).__name__}")
        data = sub


def get_value(event: dict, key: str) -> Any:
    """``event.GetValue``: raises :class:`BeatsError` (key not found / not a map)."""
    _, _, value, present = _map_find(key, event, False)
    if not present:
        raise _KeyNotFound(f"key not found: {key}")
    return value


def has_key(event: dict, key: str) -> bool:
    """``MapStr.HasKey``."""
    try:
        return _map_find(key, event, False)[3]
    except BeatsError:
        return False


def put_value(event: dict, key: str, value: Any) -> None:
    """``event.PutValue`` (creates intermediate maps)."""
    sub_key, sub_map, _, _ = _map_find(key, event, True)
    sub_map[sub_key] = value


def delete(event: dict, key: str) -> None:
    """``MapStr.Delete``: raises when the key is missing."""
    sub_key, sub_map, _, present = _map_find(key, event, False)
    if not present:
        raise _KeyNotFound(f"key not found: {key}")
    del sub_map[sub_key]


def _expand(fields: Mapping[str, Any]) -> dict:
    """go-ucfg unpacking with PathSep("."): dotted config keys become nested maps."""
    out: dict = {}
    for key, value in fields.items():
        value = _expand(value) if isinstance(value, Mapping) else copy.deepcopy(value)
        target = out
        parts = str(key).split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if isinstance(value, dict) and isinstance(target.get(parts[-1]), dict):
            _deep_update(target[parts[-1]], value)
        else:
            target[parts[-1]] = value
    return out


def _deep_update(target: dict, source: Mapping[str, Any]) -> None:
    """``MapStr.DeepUpdate`` (overwrite)."""
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _go_string(value: Any) -> str:
    """``fmt.Sprintf("%v")`` of a decoded JSON value."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, list):
        return "[" + " ".join(_go_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_string(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _go_float(value: float) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)`` (also ``%v``): ``%e`` when the exponent is < -4 or >= 6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exponent = int(exponent) + len(digits) - len(stripped)
    digits = stripped
    exp = len(digits) - 1 + exponent
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    point = exp + 1
    if point <= 0:
        return sign + "0." + "0" * (-point) + digits
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return sign + digits[:point] + "." + digits[point:]


# --------------------------------------------------------------------------- input side


def _now_beats() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _go_json_numbers(value: Any) -> Any:
    """``jsontransform.TransformNumbers``: integers beyond int64 become float64."""
    if isinstance(value, dict):
        return {k: _go_json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_json_numbers(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def agent_event(
    line: str,
    path: str,
    *,
    offset: int = 0,
    tags: Sequence[str] = (),
    json_under: str | None = None,
    add_error_key: bool = False,
    timestamp: str | None = None,
    input_type: str = "log",
    fields: Mapping[str, Any] | None = None,
) -> dict:
    """The event a Filebeat ``log`` input / Elastic Agent ``logfile`` stream emits for one line.

    ``json_under="json"`` is ``json.keys_under_root: false``: the line is decoded into ``json`` and
    no ``message`` is kept; a line that is not a JSON object keeps ``message`` (and, with
    ``add_error_key``, gets ``json.error``).  ``timestamp`` is ``@timestamp`` (the read time; default
    now); ``fields`` are extra fields the harness adds (e.g. a Filebeat module's ``event.module``),
    dotted keys expanded.  ``tags`` is omitted when empty, as Beats does.
    """
    if json_under not in (None, "json"):
        raise EmulatorLimitation("only json.keys_under_root: false (json_under='json') or no JSON is emulated")
    event: dict[str, Any] = {
        "@timestamp": timestamp or _now_beats(),
        "log": {"offset": offset, "file": {"path": path}},
        "input": {"type": input_type},
    }
    if json_under is None:
        event["message"] = line
    else:
        try:  # Go's json.Decoder.Decode: the first value only, trailing text is not looked at
            decoded, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(line.lstrip(" \t\r\n"))
            error = None if isinstance(decoded, dict) else f"json: cannot unmarshal {type(decoded).__name__} into map"
        except ValueError as exc:
            decoded, error = None, str(exc)
        if error is None:
            event["json"] = _go_json_numbers(decoded)
        else:
            event["message"] = line
            if add_error_key:
                event["json"] = {"error": {"message": f"Error decoding JSON: {error}", "type": "json"}}
    if tags:
        event["tags"] = list(tags)
    if fields:
        _deep_update(event, _expand(fields))
    return event


def agent_events(text: str, path: str, **kwargs: Any) -> Iterator[dict]:
    """One :func:`agent_event` per non-empty line of ``text``; ``log.offset`` counts UTF-8 bytes."""
    offset = 0
    for raw in text.splitlines(keepends=True):
        line = raw.rstrip("\n").rstrip("\r")
        if line:
            yield agent_event(line, path, offset=offset, **kwargs)
        offset += len(raw.encode("utf-8"))


def to_wire(event: Mapping[str, Any]) -> tuple[dict, str | None]:
    """(document Elasticsearch receives, ingest pipeline from ``@metadata.pipeline``).

    ``@metadata`` is not sent.  go-structform encodes floats with ``%g`` (shortest): an integral
    float with exponent < 6 is written without a decimal point and arrives as an integer.
    """

    def wire(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: wire(v) for k, v in value.items()}
        if isinstance(value, list):
            return [wire(v) for v in value]
        if isinstance(value, float):
            text = _go_float(value)  # what go-structform writes; Elasticsearch re-parses it
            return int(text) if re.fullmatch(r"-?[0-9]+", text) else value
        return value

    doc = {k: wire(copy.deepcopy(v)) for k, v in event.items() if k != "@metadata"}
    meta = event.get("@metadata") or {}
    return doc, meta.get("pipeline") if isinstance(meta, dict) else None


# --------------------------------------------------------------------------- conditions

_NAMED_NETWORKS: dict[str, Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]] = {
    "loopback": lambda ip: ip.is_loopback,
    "unspecified": lambda ip: ip.is_unspecified,
    "multicast": lambda ip: ip.is_multicast,
    "link_local_unicast": lambda ip: ip.is_link_local and not ip.is_multicast,
    "private": lambda ip: any(
        ip in ipaddress.ip_network(net)
        for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8")
        if ip.version == ipaddress.ip_network(net).version
    ),
}
_NAMED_NETWORKS["public"] = lambda ip: (
    not any(
        _NAMED_NETWORKS[name](ip) for name in ("loopback", "unspecified", "multicast", "link_local_unicast", "private")
    )
)
_NAMED_NETWORKS["unicast"] = lambda ip: not ip.is_multicast
_NAMED_NETWORKS["global_unicast"] = lambda ip: not (ip.is_multicast or ip.is_loopback or ip.is_link_local)


def _network_contains(address: str, networks: Sequence[str]) -> bool:
    ip = ipaddress.ip_address(address)
    for network in networks:
        if network in _NAMED_NETWORKS:
            if _NAMED_NETWORKS[network](ip):
                return True
            continue
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            raise EmulatorLimitation(f"network {network!r} is not emulated") from None
    return False


def _condition(cond: Mapping[str, Any], event: dict) -> bool:
    """libbeat ``conditions``: equals, contains, regexp, has_fields, network, and, or, not."""
    result = True
    for kind, arg in cond.items():
        if kind == "or":
            ok = any(_condition(c, event) for c in arg)
        elif kind == "and":
            ok = all(_condition(c, event) for c in arg)
        elif kind == "not":
            ok = not _condition(arg, event)
        elif kind == "has_fields":
            ok = all(has_key(event, f) for f in arg)
        elif kind in ("equals", "contains", "regexp", "network"):
            ok = all(_field_condition(kind, field, want, event) for field, want in _expand_flat(arg).items())
        else:
            raise EmulatorLimitation(f"condition [{kind}] is not emulated")
        result = result and ok
    return result


def _expand_flat(arg: Mapping[str, Any]) -> dict[str, Any]:
    """Condition arguments are field -> value; keep the dotted field names as written."""
    return dict(arg)


def _field_condition(kind: str, field: str, want: Any, event: dict) -> bool:
    try:
        value = get_value(event, field)
    except BeatsError:
        return False
    values = value if isinstance(value, list) else [value]
    if kind == "equals":
        return any(_beats_equals(v, want) for v in values)
    if kind == "contains":
        return any(isinstance(v, str) and str(want) in v for v in values)
    if kind == "regexp":
        regex = re.compile(_go_regex(str(want)))
        return any(isinstance(v, str) and regex.search(v) is not None for v in values)
    nets = want if isinstance(want, list) else [want]
    return any(isinstance(v, str) and _valid_ip(v) and _network_contains(v, nets) for v in values)


def _beats_equals(value: Any, want: Any) -> bool:
    """``equals`` condition: a configured bool/number/string matches a field of the same kind."""
    if isinstance(want, bool):
        return isinstance(value, bool) and value == want
    if isinstance(want, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool) and value == want
    return isinstance(value, str) and value == str(want)


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _go_regex(pattern: str) -> str:
    """RE2 syntax to Python ``re`` (the constructs the SOC files use are shared)."""
    return pattern.replace(r"\z", r"\Z")


# --------------------------------------------------------------------------- processors

_Proc = Callable[[dict, dict], dict | None]
_BEATS: dict[str, tuple[_Proc, frozenset[str]]] = {}


def _beats(name: str, *options: str) -> Callable[[_Proc], _Proc]:
    def register(fn: _Proc) -> _Proc:
        _BEATS[name] = (fn, frozenset(options) | {"when"})
        return fn

    return register


@_beats("drop_fields", "fields", "ignore_missing")
def _b_drop_fields(cfg: dict, event: dict) -> dict:
    errors = []
    for field in cfg["fields"]:
        if field.startswith("/") and field.endswith("/") and len(field) > 1:
            regex = re.compile(_go_regex(field[1:-1]))
            for key in [k for k in _flat_keys(event) if regex.search(k)]:
                delete(event, key)
            continue
        if field in ("@timestamp", "type"):
            continue  # processors.MandatoryExportedFields are never dropped
        try:
            delete(event, field)
        except _KeyNotFound:
            if not cfg.get("ignore_missing", False):
                errors.append(f"failed to drop field [{field}]: key not found")
        except BeatsError as exc:
            errors.append(f"failed to drop field [{field}]: {exc}")
    if errors:
        raise _Partial(event, "; ".join(errors))
    return event


def _flat_keys(event: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in event.items():
        full = f"{prefix}.{key}" if prefix else key
        keys.extend(_flat_keys(value, full) if isinstance(value, dict) and value else [full])
    return keys


class _Partial(BeatsError):
    """A processor error that still returns an event (libbeat continues with it)."""

    def __init__(self, event: dict | None, message: str) -> None:
        super().__init__(message)
        self.event = event


@_beats("rename", "fields", "ignore_missing", "fail_on_error")
def _b_rename(cfg: dict, event: dict) -> dict:
    fail_on_error = cfg.get("fail_on_error", True)
    backup = copy.deepcopy(event) if fail_on_error else None
    for pair in cfg["fields"]:
        source, target = pair["from"], pair["to"]
        try:
            if has_key(event, target):
                raise BeatsError(f"target field {target} already exists, drop or rename this field first")
            try:
                value = get_value(event, source)
            except _KeyNotFound:
                if cfg.get("ignore_missing", False):
                    continue
                raise BeatsError(f"could not fetch value for key: {target}, Error: key not found") from None
            delete(event, source)
            put_value(event, target, value)
        except BeatsError as exc:
            if fail_on_error:
                assert backup is not None
                put_value(backup, "error.message", f"Failed to rename fields in processor: {exc}")
                raise _Partial(backup, str(exc)) from None
    return event


def _go_parse_int(text: str, bits: int) -> int:
    body = text
    base = 10
    sign = ""
    if body[:1] in "+-":
        sign, body = body[0], body[1:]
    if body[:2] in ("0x", "0X"):
        base, body = 16, body[2:]
    if not body or not re.fullmatch(r"[0-9a-fA-F]+" if base == 16 else r"[0-9]+", body):
        raise BeatsError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(sign + body, base)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise BeatsError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


def _wrap(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _beats_convert(kind: str | None, value: Any) -> Any:
    """libbeat ``processors/convert`` transformType."""
    if kind is None:
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        if value is None:
            raise BeatsError("invalid conversion of [null] to string")
        return value if isinstance(value, str) else _go_string(value)
    if kind in ("integer", "long"):
        bits = 32 if kind == "integer" else 64
        if isinstance(value, str):
            return _go_parse_int(value, bits)
        if number:
            return _wrap(int(value), bits)
        raise BeatsError(f"invalid conversion of [{type(value).__name__}] to {kind}")
    if kind in ("float", "double"):
        if isinstance(value, str):
            try:
                result = float(value)
            except ValueError:
                raise BeatsError(f'strconv.ParseFloat: parsing "{value}": invalid syntax') from None
        elif number:
            result = float(value)
        else:
            raise BeatsError(f"invalid conversion of [{type(value).__name__}] to float")
        if kind == "float":
            result = struct.unpack("f", struct.pack("f", result))[0]
        return result
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in (
            "1",
            "t",
            "T",
            "TRUE",
            "true",
            "True",
            "0",
            "f",
            "F",
            "FALSE",
            "false",
            "False",
        ):
            return value in ("1", "t", "T", "TRUE", "true", "True")
        raise BeatsError(f"invalid conversion of [{value!r}] to boolean")
    if kind == "ip":
        if isinstance(value, str) and _valid_ip(value):
            return value
        raise BeatsError("value is not a valid IP address")
    raise EmulatorLimitation(f"convert type {kind!r} is not emulated")


@_beats("convert", "fields", "ignore_missing", "fail_on_error", "mode", "tag")
def _b_convert(cfg: dict, event: dict) -> dict:
    fail_on_error = cfg.get("fail_on_error", True)
    mode = cfg.get("mode", "copy")
    converted: list[Any] = []
    skip = object()
    for conv in cfg["fields"]:
        try:
            try:
                value = get_value(event, conv["from"])
            except _KeyNotFound:
                if cfg.get("ignore_missing", False):
                    converted.append(skip)
                    continue
                raise BeatsError(f"field [{conv['from']}] is missing") from None
            converted.append(_beats_convert(conv.get("type"), value))
        except BeatsError as exc:
            if fail_on_error:
                raise _Partial(event, f"failed in processor.convert: {exc}") from None
            converted.append(skip)
    saved = copy.deepcopy(event) if fail_on_error and len(cfg["fields"]) > 1 else event
    for conv, value in zip(cfg["fields"], converted):
        if value is skip:
            continue
        try:
            if conv.get("to"):
                put_value(event, conv["to"], copy.deepcopy(value))
                if mode == "rename":
                    delete(event, conv["from"])
            else:
                put_value(event, conv["from"], value)
        except BeatsError as exc:
            if fail_on_error:
                raise _Partial(saved, f"failed in processor.convert: {exc}") from None
    return event


@_beats("add_fields", "fields", "target")
def _b_add_fields(cfg: dict, event: dict) -> dict:
    fields = _expand(cfg.get("fields") or {})
    target = cfg.get("target", "fields")
    if target:
        fields = {target: fields}  # the target is a literal key (DeepUpdate does not split it)
    _deep_update(event, fields)
    return event


@_beats("add_tags", "tags", "target")
def _b_add_tags(cfg: dict, event: dict) -> dict:
    tags = cfg["tags"] if isinstance(cfg["tags"], list) else [cfg["tags"]]
    _add_tags(event, cfg.get("target") or "tags", [str(t) for t in tags])
    return event


def _add_tags(event: dict, key: str, tags: list[str]) -> None:
    """``mapstr.AddTagsWithKey``: append (no de-duplication), creating the list."""
    sub_key, sub_map, old, present = _map_find(key, event, True)
    if not present:
        sub_map[sub_key] = list(tags)
    elif isinstance(old, list):
        sub_map[sub_key] = [*old, *tags]
    else:
        raise BeatsError(f"expected string array by type is {type(old).__name__}")


_CID_DEFAULTS = {
    "source_ip": "source.ip",
    "source_port": "source.port",
    "destination_ip": "destination.ip",
    "destination_port": "destination.port",
    "transport": "network.transport",
    "iana_number": "network.iana_number",
    "icmp_type": "icmp.type",
    "icmp_code": "icmp.code",
}
_CID_TRANSPORTS = {
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


def _to_uint(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return None
    return None


@_beats("community_id", "fields", "target", "seed")
def _b_community_id(cfg: dict, event: dict) -> dict:
    fields = {**_CID_DEFAULTS, **(cfg.get("fields") or {})}
    target = cfg.get("target", "network.community_id")
    if has_key(event, target):
        return event

    def get(key: str) -> Any:
        try:
            return get_value(event, fields[key])
        except BeatsError:
            return _KeyNotFound

    src, dst = get("source_ip"), get("destination_ip")
    if not (isinstance(src, str) and _valid_ip(src) and isinstance(dst, str) and _valid_ip(dst)):
        return event
    proto_value = get("iana_number")
    if proto_value is _KeyNotFound:
        proto_value = get("transport")
        if proto_value is _KeyNotFound:
            return event
    proto = _CID_TRANSPORTS.get(proto_value) if isinstance(proto_value, str) else None
    if proto is None and isinstance(proto_value, str):
        proto = _CID_TRANSPORTS.get(proto_value.lower())
    if proto is None:
        number = _to_uint(proto_value)
        if number is None:
            return event
        proto = number & 0xFF
    sport = dport = 0
    if proto in (6, 17, 132):
        sport, dport = _to_uint(get("source_port")), _to_uint(get("destination_port"))  # type: ignore[assignment]
        if sport is None or dport is None or sport > 65535 or dport > 65535:
            return event
    elif proto in (1, 58):
        icmp_type, icmp_code = _to_uint(get("icmp_type")), _to_uint(get("icmp_code"))
        if icmp_type is not None and icmp_code is not None:
            sport, dport = icmp_type & 0xFF, icmp_code & 0xFF
    put_value(event, target, community_id(src, dst, proto, sport, dport, seed=int(cfg.get("seed", 0))))
    return event


_DISSECT_TYPES = {"integer", "long", "float", "double", "boolean", "ip", "string"}


def _dissect_convert(kind: str, value: str) -> Any:
    """``convertData``: on a conversion error the string is kept."""
    text = value.rstrip(" ")
    try:
        if kind in ("integer", "long"):
            return _go_parse_int(text, 32 if kind == "integer" else 64)
        if kind in ("float", "double"):
            return _beats_convert(kind, text)
        if kind == "boolean":
            return _beats_convert("boolean", text)
        if kind == "ip":
            return _beats_convert("ip", text)
    except BeatsError:
        return value
    return text


@_beats(
    "dissect",
    "tokenizer",
    "field",
    "target_prefix",
    "ignore_failure",
    "overwrite_keys",
    "trim_values",
    "trim_chars",
    "tag",
)
def _b_dissect(cfg: dict, event: dict) -> dict:
    field = cfg.get("field", "message")
    prefix = cfg.get("target_prefix", "dissect")
    trim_mode = cfg.get("trim_values", "none")
    if trim_mode not in ("none", "left", "right", "all"):
        raise EmulatorLimitation(f"dissect trim_values {trim_mode!r} is invalid")
    trim_chars = cfg.get("trim_chars", " ")
    value = get_value(event, field)
    if not isinstance(value, str):
        raise BeatsError(f"field is not a string, value: `{value}`, field: `{field}`")
    tokenizer = cfg["tokenizer"]
    typed = {}
    plain_tokenizer = tokenizer
    for key in re.findall(r"%\{([^}]*)\}", tokenizer):
        name, sep, kind = key.partition("|")
        if sep:
            if kind not in _DISSECT_TYPES:
                raise EmulatorLimitation(f"dissect data type {kind!r}")
            typed[name.removesuffix("->")] = kind
            plain_tokenizer = plain_tokenizer.replace("%{" + key + "}", "%{" + name + "}")
    try:
        spans = dissect(plain_tokenizer, value)
    except ValueError as exc:
        _add_tags(event, "log.flags", ["dissect_parsing_error"])
        if cfg.get("ignore_failure", False):
            return event
        raise _Partial(event, str(exc)) from None
    extracted: dict[str, Any] = {}
    for key, (start, end) in spans.items():
        if trim_mode != "none" and not typed.get(key):
            if trim_mode in ("left", "all"):
                while start < end and value[start] in trim_chars:
                    start += 1
            if trim_mode in ("right", "all"):
                while end > start and value[end - 1] in trim_chars:
                    end -= 1
        extracted[key] = _dissect_convert(typed[key], value[start:end]) if key in typed else value[start:end]
    backup = copy.deepcopy(event)
    for key, item in extracted.items():
        full = f"{prefix}.{key}" if prefix else key
        try:
            _map_find(full, event, False)
            exists = has_key(event, full)
        except _KeyNotFound:
            exists = False
        except BeatsError:
            raise _Partial(backup, f"cannot override existing key with `{full}`") from None
        if exists and not cfg.get("overwrite_keys", False):
            raise _Partial(backup, f"cannot override existing key with `{full}`")
        put_value(event, full, item)
    return event


class _JsEvent:
    """The ``event`` object a Beats JavaScript processor sees (Get/Put/Delete/Tag)."""

    def __init__(self, event: dict) -> None:
        self.fields = event

    def Get(self, key: str) -> Any:
        try:
            return get_value(self.fields, key)
        except BeatsError:
            return None

    def Put(self, key: str, value: Any) -> None:
        put_value(self.fields, key, value)


class JsTypeError(Exception):
    """A JavaScript TypeError (e.g. a method call on null) inside a translated script."""


def _js_concat(prefix: str, value: Any) -> str:
    """JS ``"str" + value`` (null -> "null", numbers as JS prints them)."""
    if value is None:
        return prefix + "null"
    if isinstance(value, bool):
        return prefix + ("true" if value else "false")
    if isinstance(value, float) and value.is_integer():
        return prefix + str(int(value))
    return prefix + (
        value if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) else str(value)
    )


def _js_so_zeek_pipeline(event: _JsEvent) -> None:
    """SO elasticfleet/zeek-logs.json: ``@metadata.pipeline = "zeek." + event.Get("pipeline")``."""
    event.Put("@metadata.pipeline", _js_concat("zeek.", event.Get("pipeline")))


def _js_so_import_zeek_pipeline(event: _JsEvent) -> None:
    """SO elasticfleet/import-zeek-logs.json: ``"zeek." + event.Get("import.file").slice(0,-4)``."""
    name = event.Get("import.file")
    if name is None:
        raise JsTypeError("Cannot read property 'slice' of null")
    if not isinstance(name, str):
        raise JsTypeError("slice is not a function")
    event.Put("@metadata.pipeline", "zeek." + name[: max(len(name) - 4, 0)])


JS_SCRIPTS: dict[str, Callable[[_JsEvent], None]] = {
    # securityonion elasticfleet/zeek-logs.json
    "529b8d9673919ff85ec0dc406d0b629a25c9087e455f4a977ea120b91f2fc459": _js_so_zeek_pipeline,
    # securityonion elasticfleet/import-zeek-logs.json
    "0c9942c24cc35dbbcf8e92da72e57feef2c47453c039b1fd3869acf86389899b": _js_so_import_zeek_pipeline,
}
"""sha256(JavaScript ``source``) -> Python translation of ``process(event)``."""


@_beats(
    "script",
    "lang",
    "source",
    "file",
    "files",
    "id",
    "params",
    "tag",
    "tag_on_exception",
    "timeout",
    "max_cached_sessions",
)
def _b_script(cfg: dict, event: dict) -> dict:
    if cfg.get("lang") not in ("javascript", "js") or "source" not in cfg:
        raise EmulatorLimitation(f"only inline javascript scripts are emulated: {cfg!r}")
    translation = JS_SCRIPTS.get(script_sha256(cfg["source"]))
    if translation is None:
        first = next((line for line in cfg["source"].splitlines() if line.strip()), "")
        raise UnsupportedScript(f"no translation for JavaScript starting {first.strip()!r}")
    try:
        translation(_JsEvent(event))
    except JsTypeError as exc:
        _add_tags(event, "tags", [cfg.get("tag_on_exception", "_js_exception")])
        raise _Partial(event, f"TypeError: {exc}") from None
    return event


@_beats("drop_event")
def _b_drop_event(cfg: dict, event: dict) -> None:
    return None


@_beats("add_network_direction", "source", "destination", "target", "internal_networks")
def _b_add_network_direction(cfg: dict, event: dict) -> dict:
    try:
        source, destination = get_value(event, cfg["source"]), get_value(event, cfg["destination"])
    except BeatsError:
        return event
    if not (isinstance(source, str) and source and isinstance(destination, str) and destination):
        return event
    if not (_valid_ip(source) and _valid_ip(destination)):
        return event
    networks = cfg["internal_networks"]
    networks = networks if isinstance(networks, list) else [networks]
    internal_source = _network_contains(source, networks)
    internal_destination = _network_contains(destination, networks)
    if internal_source and internal_destination:
        direction = "internal"
    elif internal_source:
        direction = "outbound"
    elif internal_destination:
        direction = "inbound"
    else:
        direction = "external"
    put_value(event, cfg["target"], direction)
    return event


@_beats("add_host_metadata", "netinfo.enabled", "cache.ttl", "geo", "replace_fields")
def _b_add_host_metadata(cfg: dict, event: dict) -> dict:
    """Machine facts unknown here: a no-op."""
    return event


@_beats("add_observer_metadata", "netinfo.enabled", "cache.ttl", "geo")
def _b_add_observer_metadata(cfg: dict, event: dict) -> dict:
    """Machine facts unknown here: a no-op."""
    return event


def run_processors(
    processors: Sequence[Mapping[str, Any]], event: Mapping[str, Any], *, errors: list[str] | None = None
) -> dict | None:
    """Run Beats processors on a deep copy of ``event``; the result, or None if dropped.

    A failing processor behaves as in libbeat: its error is logged (appended to ``errors``) and the
    next processor runs on the event it returned (the original one for processors that roll back).
    """
    current: dict | None = copy.deepcopy(dict(event))
    for proc in processors or []:
        if not isinstance(proc, Mapping) or len(proc) != 1:
            raise EmulatorLimitation(f"a processor must be a single-key object: {proc!r}")
        ((name, cfg),) = proc.items()
        cfg = dict(cfg or {})
        if name not in _BEATS:
            raise EmulatorLimitation(f"Beats processor [{name}] is not emulated")
        fn, allowed = _BEATS[name]
        unknown = set(cfg) - allowed
        if unknown:
            raise EmulatorLimitation(f"Beats processor [{name}] options {sorted(unknown)} are not emulated")
        assert current is not None
        when = cfg.pop("when", None)
        if when is not None and not _condition(when, current):
            continue
        try:
            current = fn(cfg, current)
        except _Partial as exc:
            if errors is not None:
                errors.append(f"{name}: {exc}")
            current = exc.event
        except BeatsError as exc:
            if errors is not None:
                errors.append(f"{name}: {exc}")
        if current is None:
            return None
    return current


# --------------------------------------------------------------------------- globs


def _glob_regex(pattern: str) -> str:
    """Go ``filepath.Match`` (``*``, ``?``, ``[...]``, ``\\`` escapes) plus Filebeat's ``**`` (up to 8 dirs)."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if (
            pattern.startswith("**", i)
            and (i == 0 or pattern[i - 1] == "/")
            and (i + 2 == len(pattern) or pattern[i + 2] == "/")
        ):
            out.append(r"[^/]*(?:/[^/]*){0,7}")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise ValueError(f"syntax error in pattern {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


def glob_matches(pattern: str, path: str) -> bool:
    """Whether an input ``paths`` glob selects ``path`` (whole-path match, ``*`` stays in one directory)."""
    return re.fullmatch(_glob_regex(pattern), path) is not None


def excluded(path: str, patterns: Sequence[str]) -> bool:
    """``exclude_files``: Go regexps matched anywhere in the path (unanchored)."""
    return any(re.search(_go_regex(p), path) for p in patterns or [])


def input_accepts(config: Mapping[str, Any], path: str) -> bool:
    """Whether an input config (``paths`` + ``exclude_files``) would harvest ``path``."""
    return any(glob_matches(p, path) for p in config.get("paths") or []) and not excluded(
        path, config.get("exclude_files") or []
    )


# --------------------------------------------------------------------------- templates


def _hbs_standalone(template: str) -> str:
    """Handlebars drops lines that hold only a block tag (``{{#…}}``, ``{{/…}}``, ``{{else}}``)."""
    return re.sub(r"(?m)^[ \t]*(\{\{(?:[#/^][^}]*|else)\}\})[ \t]*\r?\n", r"\1", template)


_HBS_TAG = re.compile(r"\{\{\{\s*(.*?)\s*\}\}\}|\{\{~?\s*([#/^]?)\s*(.*?)\s*~?\}\}", re.S)


def _hbs_parse(template: str) -> list:
    root: list = []
    stack: list[tuple[str, list, dict]] = [("", root, {})]
    pos = 0
    for m in _HBS_TAG.finditer(template):
        if m.start() > pos:
            stack[-1][1].append(("text", template[pos : m.start()]))
        pos = m.end()
        if m.group(1) is not None:
            stack[-1][1].append(("var", m.group(1)))
            continue
        sigil, body = m.group(2), m.group(3)
        if body.startswith("!"):
            continue
        if sigil == "#":
            words = body.split(None, 1)
            node = {"helper": words[0], "args": words[1] if len(words) > 1 else "", "fn": [], "inverse": []}
            stack[-1][1].append(("block", node))
            stack.append((words[0], node["fn"], node))
        elif sigil == "/":
            if stack[-1][0] != body:
                raise EmulatorLimitation(f"unbalanced handlebars block {body!r}")
            stack.pop()
        elif body == "else":
            node = stack[-1][2]
            stack[-1] = (stack[-1][0], node["inverse"], node)
        else:
            stack[-1][1].append(("var", body))
    if len(stack) != 1:
        raise EmulatorLimitation("unclosed handlebars block")
    if pos < len(template):
        root.append(("text", template[pos:]))
    return root


def _hbs_lookup(expr: str, frames: list[dict]) -> Any:
    """Resolve ``this``, ``../x``, ``a.b``, ``@index``, block params and string literals."""
    if len(expr) >= 2 and expr[0] == expr[-1] and expr[0] in "\"'":
        return expr[1:-1]
    depth = len(frames) - 1
    while expr.startswith("../"):
        expr, depth = expr[3:], depth - 1
    frame = frames[max(depth, 0)]
    if expr in ("this", "."):
        return frame["this"]
    head, _, rest = expr.partition(".")
    if head.startswith("this"):
        value: Any = frame["this"]
        parts = expr.split(".")[1:]
    else:
        for f in reversed(frames[: depth + 1]):
            if head in f.get("params", {}):
                value = f["params"][head]
                break
            if head.startswith("@") and head in f.get("data", {}):
                value = f["data"][head]
                break
        else:
            value = frame["this"].get(head) if isinstance(frame["this"], dict) else None
            if value is None and isinstance(frames[0]["this"], dict) and depth == 0:
                value = frames[0]["this"].get(head)
        parts = rest.split(".") if rest else []
    for part in parts:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _hbs_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_hbs_text(v) for v in value)
    return str(value)


def _hbs_truthy(value: Any) -> bool:
    return value not in (None, False, "", 0) and value != []


def _hbs_render(nodes: list, frames: list[dict]) -> str:
    out = []
    for kind, node in nodes:
        if kind == "text":
            out.append(node)
        elif kind == "var":
            out.append(_hbs_text(_hbs_lookup(node, frames)))
        else:
            helper, args = node["helper"], node["args"]
            if helper == "each":
                m = re.fullmatch(r"(\S+)(?:\s+as\s+\|\s*(\w+)(?:\s+(\w+))?\s*\|)?", args)
                if not m:
                    raise EmulatorLimitation(f"unsupported #each arguments {args!r}")
                items = _hbs_lookup(m.group(1), frames) or []
                if not items:
                    out.append(_hbs_render(node["inverse"], frames))
                for index, item in enumerate(items):
                    params = {}
                    if m.group(2):
                        params[m.group(2)] = item
                    if m.group(3):
                        params[m.group(3)] = index
                    frame = {"this": item, "params": params, "data": {"@index": index}}
                    out.append(_hbs_render(node["fn"], [*frames, frame]))
            elif helper in ("if", "unless"):
                ok = _hbs_truthy(_hbs_lookup(args.strip(), frames)) != (helper == "unless")
                out.append(_hbs_render(node["fn"] if ok else node["inverse"], frames))
            elif helper == "contains":
                # Fleet: containsHelper(item, list) -> Array.isArray(list) && list.includes(item)
                item_expr, list_expr = re.findall(r'"[^"]*"|\'[^\']*\'|\S+', args)
                item, container = _hbs_lookup(item_expr, frames), _hbs_lookup(list_expr, frames)
                ok = isinstance(container, list) and item in container
                out.append(_hbs_render(node["fn"] if ok else node["inverse"], frames))
            else:
                raise EmulatorLimitation(f"handlebars helper #{helper} is not emulated")
    return "".join(out)


def render_handlebars(template: str, variables: Mapping[str, Any]) -> str:
    """Render an elastic-package stream template as Fleet does (``noEscape``, Fleet's ``contains``)."""
    return _hbs_render(_hbs_parse(_hbs_standalone(template)), [{"this": dict(variables), "params": {}, "data": {}}])


_GO_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)


def _go_eval(expr: str, scope: dict[str, Any], dot: Any) -> Any:
    """A Go template pipeline: ``.a.b``, ``$x``, literals, ``fn args``, ``x | fn``."""
    stages = [s.strip() for s in expr.split("|")]
    value: Any = None
    for n, stage in enumerate(stages):
        words = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', stage)
        if not words:
            raise EmulatorLimitation(f"empty Go template pipeline in {expr!r}")

        def arg(word: str) -> Any:
            if word.startswith('"'):
                return json.loads(word)
            if word.startswith("$"):
                name, _, rest = word.partition(".")
                val = scope[name]
                for part in rest.split(".") if rest else []:
                    val = val.get(part) if isinstance(val, dict) else None
                return val
            if word == ".":
                return dot
            if word.startswith("."):
                val = dot
                for part in word[1:].split("."):
                    val = val.get(part) if isinstance(val, dict) else None
                return val
            if word in ("true", "false"):
                return word == "true"
            if re.fullmatch(r"-?\d+", word):
                return int(word)
            raise EmulatorLimitation(f"Go template word {word!r} is not emulated")

        fn, args = words[0], [arg(w) for w in words[1:]]
        if n > 0:
            args.append(value)
        if fn == "tojson":
            value = json.dumps(args[0], separators=(",", ":"))
        elif fn == "inList":
            value = args[1] in (args[0] or [])
        elif n == 0 and not args:
            value = arg(fn)
        else:
            raise EmulatorLimitation(f"Go template function {fn!r} is not emulated")
    return value


def _go_text(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go_text(v) for v in value) + "]"
    return str(value)


def render_go_template(template: str, variables: Mapping[str, Any]) -> str:
    """Render the Go ``text/template`` subset of Filebeat module configs (range/if/else/end, pipelines)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    for m in _GO_ACTION.finditer(template):
        text = template[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        if tokens and tokens[-1][0] == "trim_next":
            tokens.pop()
            text = text.lstrip()
        tokens.append(("text", text))
        tokens.append(("action", m.group(2)))
        if m.group(3):
            tokens.append(("trim_next", ""))
        pos = m.end()
    tail = template[pos:]
    if tokens and tokens[-1][0] == "trim_next":
        tokens.pop()
        tail = tail.lstrip()
    tokens.append(("text", tail))

    def block(i: int, scope: dict[str, Any], dot: Any, emit: bool) -> tuple[str, int, str]:
        """Render from token i until else/end; returns (text, index after, terminator)."""
        out = []
        while i < len(tokens):
            kind, body = tokens[i]
            i += 1
            if kind == "text":
                if emit:
                    out.append(body)
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in ("end", "else"):
                return "".join(out), i, word
            if word == "range":
                m = re.fullmatch(r"range\s+(?:(\$\w+)\s*,\s*(\$\w+)\s*:=\s*)?(.+)", body)
                if not m:
                    raise EmulatorLimitation(f"unsupported range {body!r}")
                items = _go_eval(m.group(3), scope, dot) if emit else []
                start = i
                rendered, i, term = block(start, scope, dot, False)
                for index, item in enumerate(items or []):
                    inner = dict(scope)
                    if m.group(1):
                        inner[m.group(1)], inner[m.group(2)] = index, item
                    rendered, i, term = block(start, inner, item, emit)
                    out.append(rendered)
                if term == "else":
                    rendered, i, term = block(i, scope, dot, emit and not items)
                    out.append(rendered)
            elif word == "if":
                ok = emit and _hbs_truthy(_go_eval(body[2:].strip(), scope, dot))
                rendered, i, term = block(i, scope, dot, ok)
                out.append(rendered)
                if term == "else":
                    rendered, i, term = block(i, scope, dot, emit and not ok)
                    out.append(rendered)
            elif emit:
                out.append(_go_text(_go_eval(body, scope, dot)))
        return "".join(out), i, ""

    rendered, _, _ = block(0, {"$": dict(variables)}, dict(variables), True)
    return rendered


def render_agent_template(path: str | Path, variables: Mapping[str, Any]) -> dict:
    """Render an input template (``*.hbs`` Handlebars, else Go template) and parse it as YAML."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    rendered = render_handlebars(text, variables) if path.suffix == ".hbs" else render_go_template(text, variables)
    config = load_yaml(rendered)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: template did not render to a YAML object")
    return config


def manifest_vars(*manifests: str | Path, input_type: str | None = None, os_name: str | None = None) -> dict[str, Any]:
    """Default variable values from package / data-stream / Filebeat module manifests.

    Reads ``vars`` of ``streams[]`` (data stream manifest), of ``policy_templates[].inputs[]``
    (package manifest, filtered by ``input_type``) and Filebeat's ``var:`` list (``os.<os_name>``
    overrides ``default``).  Later manifests win.
    """
    values: dict[str, Any] = {}

    def take(entries: Sequence[Mapping[str, Any]] | None) -> None:
        for entry in entries or []:
            if os_name and f"os.{os_name}" in entry:
                values[entry["name"]] = entry[f"os.{os_name}"]
            elif "default" in entry:
                values[entry["name"]] = entry["default"]

    for manifest in manifests:
        data = load_yaml(Path(manifest).read_text(encoding="utf-8")) or {}
        take(data.get("var"))
        for stream in data.get("streams", []):
            if input_type is None or stream.get("input") == input_type:
                take(stream.get("vars"))
        for template in data.get("policy_templates", []):
            for item in template.get("inputs", []):
                if input_type is None or item.get("type") == input_type:
                    take(item.get("vars"))
    return values


def parse_so_policy(path: str | Path, defaults_path: str | Path | None = None) -> dict[str, Any]:
    """A Security Onion Fleet package policy (Jinja-wrapped JSON) as an input config.

    ``defaults_path`` is ``elasticfleet/defaults.yaml`` (its ``elasticfleet`` map stands in for
    ``ELASTICFLEETMERGED``, i.e. no site pillar overrides).  Returns ``paths``, ``exclude_files``
    (from the ``custom`` YAML), ``processors`` (parsed), ``pipeline`` (from ``custom``, if any),
    ``dataset``, ``tags``, ``name`` and the rendered ``policy``.
    """
    variables: dict[str, Any] = {}
    if defaults_path is not None:
        variables["ELASTICFLEETMERGED"] = (load_yaml(Path(defaults_path).read_text(encoding="utf-8")) or {}).get(
            "elasticfleet", {}
        )
    policy = json.loads(render_jinja(Path(path).read_text(encoding="utf-8"), variables))
    inputs = policy["inputs"]
    ((_, stream_input),) = [(k, v) for k, v in inputs.items() if v.get("enabled", True)]
    streams = [s for s in stream_input["streams"].values() if s.get("enabled", True)]
    if len(streams) != 1:
        raise EmulatorLimitation("expected exactly one enabled stream")
    var = streams[0]["vars"]
    custom = load_yaml(var.get("custom") or "") or {}
    return {
        "name": policy.get("name"),
        "paths": list(var.get("paths", [])),
        "exclude_files": list(custom.get("exclude_files", [])),
        "processors": load_yaml(var.get("processors") or "") or [],
        "pipeline": custom.get("pipeline"),
        "dataset": var.get("data_stream.dataset"),
        "tags": list(var.get("tags", [])),
        "custom": custom,
        "policy": policy,
    }
