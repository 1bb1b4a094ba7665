"""Sinks for verdicts: the notice log and the enriched conn log (``--all``).

A sink renders through a :class:`~zeek_ml.formats.writer.ZeekLogWriter`, whose
target may be a path, ``-`` or any binary file object: offline ``score`` passes
its :mod:`zeek_ml.formats.safeio` outputs (renamed into place when the run succeeds), the
live watcher its durable, append-only outputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd

from zeek_ml.formats.schema import CONN_FIELDS, CONN_TYPES
from zeek_ml.formats.writer import Prepared, WriterFactory, ZeekLogWriter
from zeek_ml.model.scorer import Verdicts
from zeek_ml.notices.notice import NOTICE_LOG_FIELDS, SCORE_FIELDS, notices_from_verdicts

if TYPE_CHECKING:
    from zeek_ml.notices.incidents import ConnectionNoticeSink, IncidentSink
    from zeek_ml.notices.profile import SiteProfile

Target = str | os.PathLike[str] | IO[bytes]


def match_sensor(fmt: str, json_ts: str, sensors: Sequence[tuple[str, str] | None]) -> tuple[str, str]:
    """The notice log's format and JSON time form, ``auto`` taking the sensor's own.

    ``sensors`` holds :func:`zeek_ml.sources.files.sniff_format` of the inputs (None for one
    with nothing to go by). When every input is JSON (Zeek's ``LogAscii::use_json``, or
    Suricata eve.json) the notices are JSON, with the first Zeek JSON input's ``ts`` form (epoch,
    millis or ISO 8601); otherwise (TSV, a mix, nothing yet) Zeek's defaults: TSV, epoch
    seconds. Suricata input gives a JSON notice log; ``--format eve`` gives alerts.
    """
    known = [s for s in sensors if s is not None]
    if fmt == "auto":
        fmt = "json" if known and all(kind in ("json", "eve") for kind, _ in known) else "tsv"
    if json_ts == "auto":
        json_ts = next((form for kind, form in known if kind == "json"), "epoch")
    return fmt, json_ts


def file_writer(target: Target, fmt: str = "tsv", json_ts: str = "epoch") -> WriterFactory:
    """A factory writing a fresh log (header and all) to ``target``.

    ``target``: an open output (a :mod:`zeek_ml.formats.safeio` output, which the caller commits), ``-``
    for stdout, or a path, which the writer opens without following links and writes as it goes.
    """

    def make(path: str, fields: Sequence[tuple[str, str]]) -> ZeekLogWriter:
        return ZeekLogWriter(target, path, fields, fmt=fmt, json_ts=json_ts)

    return make


class NoticeSink:
    """Flagged connections as notice.log rows (Zeek's 26 columns, then ours)."""

    fields: tuple[tuple[str, str], ...] = NOTICE_LOG_FIELDS

    def __init__(self, factory: WriterFactory):
        self.writer = factory("notice", self.fields)
        self.notices = 0

    def write(self, verdicts: Verdicts) -> int:
        flagged = verdicts.flagged
        if not flagged.any():
            return 0
        written = self.writer.write(notices_from_verdicts(verdicts.take(flagged)))
        self.notices += written
        return written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.writer.close()


def enriched_fields(batch: pd.DataFrame | None) -> list[tuple[str, str]]:
    """conn.log's columns, the batch's extra ones (labels...), then the score columns."""
    fields = list(CONN_FIELDS)
    if batch is not None:
        types = dict(batch.attrs.get("types", {}))
        fields += [(c, types.get(c, "string")) for c in batch.columns if c not in CONN_TYPES]
    return fields + list(SCORE_FIELDS)


class EnrichedSink:
    """Every connection with its score and verdict (an enriched conn log).

    With ``keep_extra`` the first batch's extra columns are kept (offline); the
    live watcher writes conn.log's standard columns only, so its header is fixed.
    """

    def __init__(self, factory: WriterFactory, keep_extra: bool = True):
        self.factory = factory
        self.keep_extra = keep_extra
        self.writer: ZeekLogWriter | None = None

    def prepare(self, batch: pd.DataFrame) -> Prepared | None:
        """Render ``batch``'s own columns before its verdicts exist (see :meth:`ZeekLogWriter.prepare`); pass
        the result to :meth:`write` with the batch's verdicts."""
        return self._writer(batch).prepare(batch, [name for name, _ in SCORE_FIELDS])

    def _writer(self, batch: pd.DataFrame) -> ZeekLogWriter:
        if self.writer is None:
            self.writer = self.factory("conn", enriched_fields(batch if self.keep_extra else None))
        return self.writer

    def write(self, verdicts: Verdicts, prepared: Prepared | None = None) -> int:
        batch = verdicts.conns
        writer = self._writer(batch)
        n, index = len(batch), batch.index
        scores = pd.Series(np.asarray(verdicts.scores, dtype=float), index=index, copy=False)
        model = pd.Series(np.full(n, verdicts.model_name, dtype=object), index=index, copy=False)
        verdict = pd.Series(verdicts.flagged, index=index)
        extra = {"zeek_ml.score": scores, "zeek_ml.verdict": verdict, "zeek_ml.model": model}
        return writer.write(batch, extra, prepared)  # (a new frame with three more columns cost more than the rows)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.writer is None:  # no connection at all: still a complete log (header and #close)
            self.writer = self.factory("conn", enriched_fields(None))
        self.writer.close()


def build_notice_sink(
    factory: WriterFactory,
    *,
    aggregate: bool = True,
    suppress_for: float | None = None,
    local_nets: str | Sequence[str] | None = None,
    min_severity: str = "low",
    profile: str | os.PathLike[str] | SiteProfile | None = None,
    local_discovery: bool = False,
) -> IncidentSink | ConnectionNoticeSink:
    """The notice sink ``score`` and ``watch`` write through, built from their options.

    ``aggregate``: one notice per incident (:class:`~zeek_ml.notices.notices.incidents.IncidentSink`), else one
    per connection; ``suppress_for``: the suppression interval in seconds (default: the
    profile's, else 3600); ``local_nets``: CIDRs (text ``"10.0.0.0/8,..."`` or a list) for
    direction where the log has no ``local_orig``/``local_resp``; ``min_severity``: ``low``,
    ``medium`` or ``high``; ``profile``: a site profile (path or
    :class:`~zeek_ml.notices.notices.profile.SiteProfile`); ``local_discovery``: also notice mDNS/LLMNR/NetBIOS/SSDP
    chatter to multicast or broadcast addresses (left out by default). Raises ValueError on a bad option.
    """
    from zeek_ml.notices.incidents import ConnectionNoticeSink, IncidentSink, NoticePolicy
    from zeek_ml.notices.notice import DEFAULT_SUPPRESS_FOR
    from zeek_ml.notices.profile import SiteProfile
    from zeek_ml.sources.local_nets import LocalNets

    site = None
    if profile is not None:
        site = profile if isinstance(profile, SiteProfile) else SiteProfile.load(profile)
    if suppress_for is None:
        suppress_for = site.suppress_for if site is not None else DEFAULT_SUPPRESS_FOR
    policy = NoticePolicy(
        local_nets=None if local_nets is None else LocalNets.parse(local_nets),
        suppress_for=float(suppress_for),
        min_severity=min_severity,
        profile=site,
        local_discovery=local_discovery,
    )
    return IncidentSink(factory, policy) if aggregate else ConnectionNoticeSink(factory, policy)
