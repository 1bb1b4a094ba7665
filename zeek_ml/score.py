"""Offline scoring: conn logs in, a notice log (and optionally an enriched conn log) out."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from zeek_ml.pipeline import Scorer, Sink
from zeek_ml.sinks import EnrichedSink, NoticeSink, file_writer
from zeek_ml.zeeklog import ReadStats, RejectLog, iter_batches


@dataclass
class ScoreSummary:
    """What one scoring run did."""

    files: int = 0
    records: int = 0
    rejected: int = 0
    scored: int = 0
    notices: int = 0
    seconds: float = 0.0
    first_rejects: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"read {self.records:,} records from {self.files} file(s), rejected {self.rejected:,}, "
            f"scored {self.scored:,}, notices {self.notices:,}, "
            f"{self.seconds:.2f} s ({self.rate:,.0f} records/s)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "records": self.records,
            "rejected": self.rejected,
            "scored": self.scored,
            "notices": self.notices,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.rate, 1),
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
    strict: bool = False,
    fields: list[str] | None = None,
    progress: bool | None = None,
) -> ScoreSummary:
    """Score every connection of ``inputs`` and write the notices to ``notice_out``.

    ``threshold`` overrides the model card's. ``all_out`` also writes every
    connection with its score (an enriched conn log). Malformed lines go to
    ``rejects`` and the run goes on, unless ``strict``.
    """
    scorer = Scorer(model, threshold)
    rejects = rejects if rejects is not None else RejectLog(strict=strict)
    stats = ReadStats()
    summary = ScoreSummary()
    started = time.perf_counter()
    bar = _progress(progress)
    sinks: list[Sink] = [NoticeSink(file_writer(notice_out, fmt, json_ts))]
    if all_out is not None:
        sinks.append(EnrichedSink(file_writer(all_out, fmt, json_ts)))
    notices = sinks[0]
    try:
        for batch in iter_batches(inputs, strict=strict, rejects=rejects, stats=stats, fields=fields):
            if not len(batch):
                continue
            verdicts = scorer(batch)
            summary.scored += len(batch)
            for sink in sinks:
                written = sink.write(verdicts)
                if sink is notices:
                    summary.notices += written
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        for sink in sinks:
            sink.close()
        rejects.close()
        summary.files = stats.files
        summary.records = stats.records
        summary.rejected = stats.rejected
        summary.first_rejects = [str(r) for r in rejects.first]
        summary.seconds = time.perf_counter() - started
    return summary
