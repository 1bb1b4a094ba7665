"""The ZeekML records and events that the Zeek package and zeek-ml exchange (one definition for both
sides: Broker/WebSocket events, the verdict file the Input framework reads, the package's .zeek types)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
