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
from typing import IO

import numpy as np
import pandas as pd

from zeek_ml.notice import notices_from_verdicts
from zeek_ml.pipeline import Verdicts
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
)
"""``ZeekML::Verdict``: a flagged connection, its score, the model, and the notice's message."""

NOTICE_INFO_FIELDS: tuple[RecordField, ...] = (
    RecordField("score", "double", logged=True),
    RecordField("threshold", "double", logged=True),
    RecordField("model", "string", logged=True),
    RecordField("model_version", "string", logged=True),
    RecordField("family", "string", True, logged=True),
    RecordField("reasons", "vector of string", True, logged=True),
)
"""``ZeekML::NoticeInfo``, logged as ``zeek_ml.score``, ``zeek_ml.threshold``, ... in notice.log."""

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


def verdict_rows(verdicts: Verdicts) -> pd.DataFrame:
    """One row per verdict with the ``ZeekML::Verdict`` fields as columns (pass the flagged rows).

    Ports are ``NUMBER/PROTO`` text; ``msg`` is the offline notice log's message.
    """
    conns = verdicts.conns
    n = len(conns)
    msg = notices_from_verdicts(verdicts)["msg"].to_numpy(dtype=object)
    family = verdicts.family if verdicts.family is not None else np.full(n, None, dtype=object)
    family = np.array([None if (f is None or f == "" or f != f) else str(f) for f in family], dtype=object)
    codes = verdicts.reason_codes if verdicts.reason_codes is not None else np.full(n, None, dtype=object)
    reasons = np.empty(n, dtype=object)
    reasons[:] = [None if c is None or len(c) == 0 else [str(x) for x in c] for c in codes]
    return pd.DataFrame(
        {
            "ts": conns["ts"].to_numpy(dtype=float, na_value=np.nan),
            "uid": conns["uid"].to_numpy(dtype=object),
            "orig_h": conns["id.orig_h"].to_numpy(dtype=object),
            "orig_p": _port_text(conns["id.orig_p"], conns["proto"]),
            "resp_h": conns["id.resp_h"].to_numpy(dtype=object),
            "resp_p": _port_text(conns["id.resp_p"], conns["proto"]),
            "score": np.asarray(verdicts.scores, dtype=float),
            "threshold": np.full(n, float(verdicts.threshold)),
            "model": [verdicts.model_name] * n,
            "model_version": [str(verdicts.model_version)] * n,
            "family": family,
            "reasons": reasons,
            "msg": msg,
        },
        index=pd.RangeIndex(n),
    )


# --------------------------------------------------------------------------- verdict file


def verdict_file_header(open_time: float | None = None) -> bytes:
    """The verdict file's Zeek TSV header (``#separator`` ... ``#types``)."""
    return ZeekLogWriter(_Discard(), "zeek_ml_verdicts", verdict_file_fields(), header=False).header_bytes(open_time)


class VerdictFileSink:
    """Flagged connections as lines of the verdict file that ``zeek_scripts/`` follows.

    Zeek TSV (``#fields``/``#types`` from :data:`VERDICT_FIELDS`), one line per
    verdict, appended and never rotated nor closed with ``#close``: Zeek's Input
    framework in STREAM mode reads it as it grows. ``target`` is a path (a header
    is written when the file is new or empty) or a binary file object that already
    has one (the watcher's :class:`~zeek_ml.watch.durable.AppendLog`).
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
        self.verdicts = 0

    def write(self, verdicts: Verdicts) -> int:
        flagged = verdicts.flagged
        if not flagged.any():
            return 0
        written = self.writer.write(verdict_rows(verdicts.take(flagged)))
        self.verdicts += written
        return written

    def flush(self) -> None:
        if self._own is not None:
            self._own.flush()

    def close(self, final: bool = True) -> None:
        """Close; the file gets no ``#close`` line (Zeek keeps following it). ``final`` is accepted, unused."""
        self.writer.close()
        if self._own is not None:
            self._own.close()
            self._own = None


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass
