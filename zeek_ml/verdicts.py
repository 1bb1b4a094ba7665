"""The one definition of what crosses between zeek-ml and Zeek, and the verdict file.

Three Zeek records are declared in ``zeek_scripts/scripts/main.zeek`` and here;
``tests/test_zeek_scripts.py`` parses the script and checks that each record
there has exactly these fields, in this order, with these types and attributes:

- :data:`CONN_FIELDS` (``ZeekML::FinishedConn``): what the package publishes for
  each finished connection (event :data:`CONN_EVENT`, on :data:`CONN_TOPIC`).
  Each field names the conn.log column it carries, so a batch of these events
  becomes a frame in the conn record schema that every source produces.
- :data:`VERDICT_FIELDS` (``ZeekML::Verdict``): one model verdict, sent back as
  event :data:`VERDICT_EVENT` (Broker) or as one line of the verdict file that
  the package follows with the Input framework (``Input::add_event``, STREAM).
  The file's ``#fields``/``#types`` header is rendered from the same fields.
- :data:`NOTICE_INFO_FIELDS` (``ZeekML::NoticeInfo``): the extra notice.log
  columns (``zeek_ml.score``, ``zeek_ml.threshold``, ...), the same names the
  offline notice log uses.

Python is the source of truth; the script is written to match it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pandas as pd

from zeek_ml.notice import connection_subs, notices_from_verdicts
from zeek_ml.pipeline import Verdicts
from zeek_ml.site import LocalNets, directions, severities
from zeek_ml.zeeklog.writer import ZeekLogWriter


@dataclass(frozen=True)
class RecordField:
    """One field of a Zeek record shared by Python and the Zeek script."""

    name: str
    """The field name in the Zeek record (``orig_h``)."""
    zeek_type: str
    """Its Zeek type as declared in the script (``addr``, ``transport_proto``, ``vector of string``...)."""
    optional: bool = False
    """Declared ``&optional`` (unset travels as Broker ``nil``, ``-`` in a file)."""
    column: str = ""
    """The column it carries in zeek-ml's frames (conn.log's name for conn fields); default: ``name``."""
    logged: bool = False
    """Declared ``&log`` (the fields of ``ZeekML::NoticeInfo``, so notice.log gets them as columns)."""

    @property
    def frame_column(self) -> str:
        return self.column or self.name

    @property
    def attributes(self) -> tuple[str, ...]:
        """Its attributes in the order the script writes them (``&log``, ``&optional``)."""
        return (("&log",) if self.logged else ()) + (("&optional",) if self.optional else ())

    def declaration(self) -> str:
        """The field as written in a Zeek record declaration, without its ``##`` comment."""
        return f"{self.name}: {self.zeek_type}{''.join(' ' + a for a in self.attributes)};"


MODULE = "ZeekML"

CONN_RECORD = "ZeekML::FinishedConn"
CONN_EVENT = "ZeekML::conn_finished"
"""``event ZeekML::conn_finished(c: ZeekML::FinishedConn)``: one finished connection, published by the package."""
CONN_TOPIC = "zeek/ml/conn"

VERDICT_RECORD = "ZeekML::Verdict"
VERDICT_EVENT = "ZeekML::verdict"
"""``event ZeekML::verdict(v: ZeekML::Verdict)``: one verdict, published by ``zeek-ml broker``."""
VERDICT_TOPIC = "zeek/ml/verdict"

ACK_EVENT = "ZeekML::scored"
"""``ZeekML::scored(uids: vector of string)``: the connections of one scored batch.

Published by ``zeek-ml broker`` after a batch's verdicts, on :data:`ACK_TOPIC`;
a sender that keeps what it sent can resend what was never acknowledged (the
package does not subscribe to it: Zeek keeps nothing to resend)."""
ACK_TOPIC = "zeek/ml/ack"

NOTICE_INFO_RECORD = "ZeekML::NoticeInfo"

CONN_FIELDS: tuple[RecordField, ...] = (
    RecordField("ts", "time", column="ts"),
    RecordField("uid", "string", column="uid"),
    RecordField("orig_h", "addr", column="id.orig_h"),
    RecordField("orig_p", "port", column="id.orig_p"),
    RecordField("resp_h", "addr", column="id.resp_h"),
    RecordField("resp_p", "port", column="id.resp_p"),
    RecordField("proto", "transport_proto", column="proto"),
    RecordField("service", "string", True, "service"),
    RecordField("duration", "interval", True, "duration"),
    RecordField("orig_bytes", "count", True, "orig_bytes"),
    RecordField("resp_bytes", "count", True, "resp_bytes"),
    RecordField("conn_state", "string", True, "conn_state"),
    RecordField("local_orig", "bool", True, "local_orig"),
    RecordField("local_resp", "bool", True, "local_resp"),
    RecordField("missed_bytes", "count", True, "missed_bytes"),
    RecordField("history", "string", True, "history"),
    RecordField("orig_pkts", "count", True, "orig_pkts"),
    RecordField("orig_ip_bytes", "count", True, "orig_ip_bytes"),
    RecordField("resp_pkts", "count", True, "resp_pkts"),
    RecordField("resp_ip_bytes", "count", True, "resp_ip_bytes"),
    RecordField("tunnel_parents", "set[string]", True, "tunnel_parents"),
)
"""``ZeekML::FinishedConn``: conn.log's standard fields, flattened (``id.orig_h`` -> ``orig_h``)."""

CONN_SOURCES: dict[str, str] = {
    f.name: ("rec$id$" + f.name if f.column.startswith("id.") else "rec$" + f.name) for f in CONN_FIELDS
}
"""Where main.zeek takes each field from, given ``rec: Conn::Info`` in ``Conn::log_conn``."""

VERDICT_FIELDS: tuple[RecordField, ...] = (
    RecordField("ts", "time"),
    RecordField("uid", "string"),
    RecordField("orig_h", "addr"),
    RecordField("orig_p", "port"),
    RecordField("resp_h", "addr"),
    RecordField("resp_p", "port"),
    RecordField("score", "double"),
    RecordField("threshold", "double"),
    RecordField("model", "string"),
    RecordField("model_version", "string"),
    RecordField("family", "string", True),
    RecordField("reasons", "vector of string", True),
    RecordField("msg", "string"),
    RecordField("sub", "string", True),
    RecordField("n", "count", True),
    RecordField("severity", "string", True),
    RecordField("direction", "string", True),
    RecordField("incident", "string", True),
    RecordField("first_ts", "time", True),
    RecordField("last_ts", "time", True),
    RecordField("srcs", "count", True),
    RecordField("dsts", "count", True),
    RecordField("ports", "count", True),
)
"""``ZeekML::Verdict``: one notice of zeek-ml's (an incident, or one flagged connection): the
connection it names, the score, the model, the notice's message and ``sub``, and, for an
incident, how many connections it stands for (``n``), its key, time span and distinct
originators, responders and ports."""

NOTICE_INFO_FIELDS: tuple[RecordField, ...] = (
    RecordField("score", "double", logged=True),
    RecordField("threshold", "double", logged=True),
    RecordField("model", "string", logged=True),
    RecordField("model_version", "string", logged=True),
    RecordField("family", "string", True, logged=True),
    RecordField("reasons", "vector of string", True, logged=True),
    RecordField("severity", "string", True, logged=True),
    RecordField("direction", "string", True, logged=True),
    RecordField("incident", "string", True, logged=True),
    RecordField("first_ts", "time", True, logged=True),
    RecordField("last_ts", "time", True, logged=True),
    RecordField("srcs", "count", True, logged=True),
    RecordField("dsts", "count", True, logged=True),
    RecordField("ports", "count", True, logged=True),
)
"""``ZeekML::NoticeInfo``, logged as ``zeek_ml.score``, ``zeek_ml.threshold``, ... in notice.log:
the same columns, names and types as zeek-ml's own notice log after Zeek's 26."""

INFO_FROM_VERDICT: tuple[str, ...] = tuple(f.name for f in NOTICE_INFO_FIELDS)
"""The ``ZeekML::Verdict`` fields main.zeek copies into ``ZeekML::NoticeInfo`` (same names)."""

_LOG_TYPES = {"transport_proto": "enum", "vector of string": "vector[string]"}


def log_type(zeek_type: str) -> str:
    """The type a Zeek log header states for a field of this script type (``transport_proto`` -> ``enum``)."""
    return _LOG_TYPES.get(zeek_type, zeek_type)


NOTICE_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    ("zeek_ml." + f.name, log_type(f.zeek_type)) for f in NOTICE_INFO_FIELDS
)
"""The notice.log columns Zeek writes for ``Notice::Info$zeek_ml`` (name, log type)."""


def verdict_file_fields() -> list[tuple[str, str]]:
    """The verdict file's columns: the ``ZeekML::Verdict`` fields, named and typed as the Input framework reads them."""
    return [(f.name, log_type(f.zeek_type)) for f in VERDICT_FIELDS]


def record_declaration(name: str, fields: Sequence[RecordField]) -> str:
    """``type Name: record { ... };`` as the script declares it (for docs and error messages)."""
    body = "\n".join(f"\t{f.declaration()}" for f in fields)
    return f"type {name.split('::')[-1]}: record {{\n{body}\n}};"


# --------------------------------------------------------------------------- verdict rows


def _port_text(ports: pd.Series, protos: pd.Series) -> np.ndarray:
    """``80/tcp``: a Zeek port with its protocol, as the Input framework parses it."""
    numbers = pd.to_numeric(ports, errors="coerce")
    proto = protos.astype(object).where(protos.notna(), "unknown").astype(str).str.lower()
    proto = proto.where(proto.isin(["tcp", "udp", "icmp"]), "unknown")
    text = numbers.astype("Int64").astype(str) + "/" + proto
    return text.where(numbers.notna(), None).to_numpy(dtype=object)


def _optional(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column's values with NaN/NA as None, or all None when the frame lacks it."""
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    values = frame[column].astype(object).to_numpy()
    return np.array([None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v for v in values],
                    dtype=object)  # fmt: skip


def verdict_rows_from_notices(notices: pd.DataFrame) -> pd.DataFrame:
    """Notice rows (zeek-ml's notice log, any aggregation) -> rows with the ``ZeekML::Verdict`` fields.

    So the notices Zeek raises from the verdict file or Broker are the ones zeek-ml's own notice
    log holds: same connection, message, ``sub`` and ``zeek_ml.*`` values. Ports become
    ``NUMBER/PROTO`` text; a notice for one connection gets ``n`` = 1.
    """
    n = len(notices)
    count = _optional(notices, "n")
    count[np.equal(count, None)] = 1
    family = _optional(notices, "zeek_ml.family")
    family[family == ""] = None
    reasons = np.empty(n, dtype=object)
    listed = _optional(notices, "zeek_ml.reasons")
    reasons[:] = [None if r is None or len(r) == 0 else [str(x) for x in r] for r in listed]
    rows = {
        "ts": notices["ts"].to_numpy(dtype=float, na_value=np.nan),
        "uid": _optional(notices, "uid"),
        "orig_h": _optional(notices, "id.orig_h"),
        "orig_p": _port_text(notices["id.orig_p"], notices["proto"]),
        "resp_h": _optional(notices, "id.resp_h"),
        "resp_p": _port_text(notices["id.resp_p"], notices["proto"]),
        "msg": notices["msg"].to_numpy(dtype=object),
        "sub": _optional(notices, "sub"),
        "n": count,
    }
    for f in NOTICE_INFO_FIELDS:
        rows[f.name] = _optional(notices, "zeek_ml." + f.name)
    rows["family"], rows["reasons"] = family, reasons
    rows["score"] = notices["zeek_ml.score"].to_numpy(dtype=float, na_value=np.nan)
    rows["threshold"] = notices["zeek_ml.threshold"].to_numpy(dtype=float, na_value=np.nan)
    rows["model_version"] = np.array([None if v is None else str(v) for v in rows["model_version"]], dtype=object)
    return pd.DataFrame({f.name: rows[f.name] for f in VERDICT_FIELDS}, index=pd.RangeIndex(n))


def verdict_rows(verdicts: Verdicts, local_nets: LocalNets | None = None) -> pd.DataFrame:
    """One row per connection of ``verdicts`` (pass the flagged ones) with the ``ZeekML::Verdict`` fields.

    What ``zeek-ml broker`` sends for each flagged connection: the per-connection notice
    (``--no-aggregate``'s), with its severity and direction (``local_nets`` where the
    connection has no ``local_orig``/``local_resp``).
    """
    notices = notices_from_verdicts(verdicts)
    direction = directions(verdicts.conns, local_nets)
    notices["zeek_ml.direction"] = direction
    notices["zeek_ml.severity"] = severities(direction, verdicts.family)
    notices["sub"] = connection_subs(notices)
    return verdict_rows_from_notices(notices)


# --------------------------------------------------------------------------- verdict file


def verdict_file_header(open_time: float | None = None) -> bytes:
    """The verdict file's Zeek TSV header (``#separator`` ... ``#types``)."""
    return ZeekLogWriter(_Discard(), "zeek_ml_verdicts", verdict_file_fields(), header=False).header_bytes(open_time)


class VerdictLogWriter:
    """Notice rows as lines of the verdict file; the writer a notice sink renders through.

    Zeek TSV (``#fields``/``#types`` from :data:`VERDICT_FIELDS`), appended and never rotated
    nor closed with ``#close``: Zeek's Input framework in STREAM mode reads it as it grows.
    ``target`` is a path (a header is written when the file is new or empty) or a binary file
    object that already has one (the watcher's :class:`~zeek_ml.watch.durable.AppendLog`).
    """

    def __init__(self, target: str | os.PathLike[str] | IO[bytes]):
        self._own: IO[bytes] | None = None
        if isinstance(target, (str, os.PathLike)):
            self._own = open(target, "ab")  # noqa: SIM115
            if self._own.tell() == 0:
                self._own.write(verdict_file_header())
            target = self._own
        # Render ports as text (``80/tcp``); the header states their Zeek type.
        render = [(name, "string" if t == "port" else t) for name, t in verdict_file_fields()]
        self.writer = ZeekLogWriter(target, "zeek_ml_verdicts", render, header=False, close_line=False)
        self.rows = 0

    def write(self, notices: pd.DataFrame) -> int:
        if not len(notices):
            return 0
        written = self.writer.write(verdict_rows_from_notices(notices))
        self.rows += written
        if self._own is not None:
            self._own.flush()
        return written

    def close(self, close_time: float | None = None) -> None:
        """Close; the file gets no ``#close`` line (Zeek keeps following it)."""
        self.writer.close()
        if self._own is not None:
            self._own.close()
            self._own = None


def verdict_writer(target: str | os.PathLike[str] | IO[bytes]) -> Any:
    """A writer factory (:data:`zeek_ml.sinks.WriterFactory`) writing notices as verdict lines to ``target``."""

    def make(path: str, fields: Any) -> VerdictLogWriter:
        return VerdictLogWriter(target)

    return make


def verdict_file_sink(target: str | os.PathLike[str] | IO[bytes], **notice_options: Any) -> Any:
    """The verdict file as a notice sink: the notices zeek-ml's own log would get, as verdict lines.

    ``notice_options`` as :func:`zeek_ml.sinks.build_notice_sink` takes them: by default one line
    per incident when it closes (``n`` connections), ``aggregate=False`` one per flagged connection
    as soon as it is scored. Has ``state()``/``restore()`` for the watcher's checkpoint.
    """
    from zeek_ml.sinks import build_notice_sink

    return build_notice_sink(verdict_writer(target), **notice_options)


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass
