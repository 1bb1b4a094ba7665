"""Offline scoring: conn logs in, a notice log (and optionally an enriched conn log) out."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zeek_ml.formats.safeio import Output, check_outputs, open_output
from zeek_ml.model.scorer import Scorer, Sink
from zeek_ml.sinks.logs import EnrichedSink, build_notice_sink, file_writer, match_sensor
from zeek_ml.sources.files import expand_sources, iter_batches, sniff_format
from zeek_ml.sources.reading import ReadStats, RejectLog

Engine = Callable[[Iterator[Any]], Iterator[tuple[Any, Any]]]
"""``engine(batches) -> (batch, verdicts)`` pairs, in order (issue 14: :mod:`zeek_ml.services.distributed`)."""


@dataclass
class ScoreSummary:
    """What one scoring run did."""

    files: int = 0
    records: int = 0
    rejected: int = 0
    scored: int = 0
    notices: int = 0
    seconds: float = 0.0
    ignored_events: int = 0
    """Suricata eve events that are not flows (alert, dns, stats...): read and counted, not scored."""
    first_rejects: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"read {self.records:,} records from {self.files} file(s), rejected {self.rejected:,}, "
            f"scored {self.scored:,}, notices {self.notices:,}, "
            f"{self.seconds:.2f} s ({self.rate:,.0f} records/s)"
        ) + (f"; ignored {self.ignored_events:,} non-flow eve events" if self.ignored_events else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records": self.records,
            "rejected": self.rejected,
            "scored": self.scored,
            "notices": self.notices,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.rate, 1),
            "ignored_events": self.ignored_events,
        }


def _progress(enabled: bool | None) -> Any:
    """A tqdm counter on a terminal, nothing otherwise."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit=" conn", unit_scale=True, file=sys.stderr, dynamic_ncols=True)


def score_logs(
    inputs: Iterable[str | os.PathLike[str]],
    model: Any,
    notice_out: str | os.PathLike[str],
    *,
    fmt: str = "tsv",
    json_ts: str = "epoch",
    threshold: float | None = None,
    all_out: str | os.PathLike[str] | None = None,
    rejects: RejectLog | None = None,
    rejects_out: str | os.PathLike[str] | None = None,
    strict: bool = False,
    fields: list[str] | None = None,
    progress: bool | None = None,
    aggregate: bool = True,
    suppress_for: float | None = None,
    local_nets: str | list[str] | None = None,
    min_severity: str = "low",
    profile: Any = None,
    source: str = "auto",
    local_discovery: bool = False,
    engine: Engine | None = None,
) -> ScoreSummary:
    """Score every connection of ``inputs`` and write the notices to ``notice_out``.

    ``threshold`` overrides the model card's. ``all_out`` also writes every
    connection with its score (an enriched conn log). Malformed lines go to
    ``rejects`` (or a new :class:`RejectLog` writing ``rejects_out``) and the run goes on,
    unless ``strict``. ``aggregate``, ``suppress_for``,
    ``local_nets``, ``min_severity``, ``profile`` and ``local_discovery`` shape the notices
    (:func:`~zeek_ml.sinks.logs.logs.build_notice_sink`). ``source``: ``auto``, ``zeek`` or ``suricata``
    (eve.json flow events; ``local_nets`` also sets their ``local_orig``/``local_resp``).
    ``fmt="eve"`` writes the notices as Suricata eve alert events
    (:class:`~zeek_ml.sinks.logs.eve.EveAlertSink`; ``--all`` then writes JSON lines); ``fmt`` and
    ``json_ts`` ``"auto"`` follow how the inputs are written (:func:`~zeek_ml.sinks.logs.logs.match_sensor`).
    ``engine`` (issue 14) computes the verdicts of the batches read, in order, elsewhere (a Dask
    cluster: :class:`~zeek_ml.services.distributed.ClusterEngine`); by default one :class:`Scorer` here.

    Outputs are written safely (:mod:`zeek_ml.formats.safeio`): an output that is also an input is refused,
    each file is written under a temporary name and renamed into place only when the whole run
    succeeded; on any failure nothing is left at the output paths (a file already there stays as
    it was). ``-`` streams to stdout. I/O failures are :class:`~zeek_ml.formats.safeio.OutputError`.
    """
    files = expand_sources(inputs, source=source)
    check_outputs({"-o": notice_out, "--all": all_out, "--rejects": rejects_out}, files)
    if "auto" in (fmt, json_ts):
        fmt, json_ts = match_sensor(fmt, json_ts, [sniff_format(os.fspath(f)) for f in files])
    scorer = Scorer(model, threshold)
    outputs: list[Output] = []
    try:
        notice_file = _open(notice_out, outputs)
        all_file = _open(all_out, outputs) if all_out is not None else None
        if rejects_out is not None:
            rejects = RejectLog(strict=strict, target=_open(rejects_out, outputs))
        summary = _score(
            files,
            scorer,
            notice_file,
            all_file,
            rejects if rejects is not None else RejectLog(strict=strict),
            fmt=fmt,
            json_ts=json_ts,
            strict=strict,
            fields=fields,
            progress=progress,
            source=source,
            engine=engine,
            notice_options={
                "aggregate": aggregate,
                "suppress_for": suppress_for,
                "local_nets": local_nets,
                "min_severity": min_severity,
                "profile": profile,
                "local_discovery": local_discovery,
            },
        )
        for out in outputs:  # all made durable first: a failure there replaces none of the targets
            out.prepare()
        for out in outputs:
            out.commit()
    except BaseException:
        for out in outputs:
            out.discard()
        raise
    return summary


def _open(path: str | os.PathLike[str], outputs: list[Output]) -> Output:
    out = open_output(path)
    outputs.append(out)
    return out


def _score(
    files: list[str],
    scorer: Scorer,
    notice_file: Output,
    all_file: Output | None,
    rejects: RejectLog,
    *,
    fmt: str,
    json_ts: str,
    strict: bool,
    fields: list[str] | None,
    progress: bool | None,
    source: str,
    notice_options: dict[str, Any],
    engine: Engine | None = None,
) -> ScoreSummary:
    """The scoring loop of :func:`score_logs`, writing to outputs it already opened."""
    stats = ReadStats()
    summary = ScoreSummary()
    started = time.perf_counter()
    if fmt == "eve":
        from zeek_ml.sinks.eve import EveAlertSink

        notice_sink: Any = EveAlertSink(notice_file, **notice_options)
        fmt = "json"  # for --all: an enriched conn log has no eve form
    else:
        notice_sink = build_notice_sink(file_writer(notice_file, fmt, json_ts), **notice_options)
    sinks: list[Sink] = [notice_sink]  # type: ignore[list-item]
    if all_file is not None:
        sinks.append(EnrichedSink(file_writer(all_file, fmt, json_ts)))
    bar = _progress(progress)
    try:
        batches = (
            batch
            for batch in iter_batches(
                files,
                strict=strict,
                rejects=rejects,
                stats=stats,
                fields=fields,
                source=source,
                local_nets=notice_options["local_nets"],
            )
            if len(batch)
        )
        # --- issue 14: the verdicts come from the engine (a Dask cluster) when one is given
        scored = engine(batches) if engine is not None else ((batch, scorer(batch)) for batch in batches)
        for batch, verdicts in scored:
            summary.scored += len(batch)
            for sink in sinks:
                sink.write(verdicts)
            if bar is not None:
                bar.update(len(batch))
        for sink in sinks:  # only a run that got through: the end of a failed one is discarded unwritten
            sink.close()
    finally:
        if bar is not None:
            bar.close()
        rejects.close()
    summary.notices = int(getattr(notice_sink, "notices", 0))
    summary.files = stats.files
    summary.records = stats.records
    summary.rejected = stats.rejected
    summary.ignored_events = stats.ignored_events
    summary.first_rejects = [str(r) for r in rejects.first]
    summary.seconds = time.perf_counter() - started
    return summary
