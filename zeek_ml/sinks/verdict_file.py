"""Verdicts back to Zeek through a file: the ``ZeekML::Verdict`` log that the package's Input
framework reader turns into notices (the ``--verdicts`` output of ``watch``)."""

from __future__ import annotations

import os
from typing import IO, Any

import numpy as np
import pandas as pd

from zeek_ml.formats.records import NOTICE_INFO_FIELDS, VERDICT_FIELDS, verdict_file_fields
from zeek_ml.formats.writer import ZeekLogWriter
from zeek_ml.model.scorer import Verdicts
from zeek_ml.notices.notice import connection_subs, notices_from_verdicts
from zeek_ml.notices.site import directions, severities
from zeek_ml.sources.local_nets import LocalNets


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


def verdict_file_header(open_time: float | None = None) -> bytes:
    """The verdict file's Zeek TSV header (``#separator`` ... ``#types``)."""
    return ZeekLogWriter(_Discard(), "zeek_ml_verdicts", verdict_file_fields(), header=False).header_bytes(open_time)


class VerdictLogWriter:
    """Notice rows as lines of the verdict file; the writer a notice sink renders through.

    Zeek TSV (``#fields``/``#types`` from :data:`VERDICT_FIELDS`), appended and never rotated
    nor closed with ``#close``: Zeek's Input framework in STREAM mode reads it as it grows.
    ``target`` is a path (a header is written when the file is new or empty) or a binary file
    object that already has one (the watcher's :class:`~zeek_ml.services.durable.AppendLog`).
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
    """A writer factory (:data:`~zeek_ml.formats.writer.WriterFactory`) writing notices as verdict lines
    to ``target``."""

    def make(path: str, fields: Any) -> VerdictLogWriter:
        return VerdictLogWriter(target)

    return make


def verdict_file_sink(target: str | os.PathLike[str] | IO[bytes], **notice_options: Any) -> Any:
    """The verdict file as a notice sink: the notices zeek-ml's own log would get, as verdict lines.

    ``notice_options`` as :func:`zeek_ml.sinks.logs.build_notice_sink` takes them: by default one line
    per incident when it closes (``n`` connections), ``aggregate=False`` one per flagged connection
    as soon as it is scored. Has ``state()``/``restore()`` for the watcher's checkpoint.
    """
    from zeek_ml.sinks.logs import build_notice_sink

    return build_notice_sink(verdict_writer(target), **notice_options)


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass
