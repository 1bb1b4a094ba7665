"""Offline scoring: conn logs in, a notice log (and optionally an enriched conn log) out."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from zeek_ml.notice import NOTICE_LOG_FIELDS, SCORE_FIELDS, notices_from_conns
from zeek_ml.zeeklog import ReadStats, RejectLog, iter_batches
from zeek_ml.zeeklog.schema import CONN_FIELDS, CONN_TYPES
from zeek_ml.zeeklog.writer import ZeekLogWriter


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
    threshold = float(model.threshold if threshold is None else threshold)
    rejects = rejects if rejects is not None else RejectLog(strict=strict)
    stats = ReadStats()
    summary = ScoreSummary()
    started = time.perf_counter()
    bar = _progress(progress)
    notices = ZeekLogWriter(notice_out, "notice", NOTICE_LOG_FIELDS, fmt=fmt, json_ts=json_ts)
    enriched: ZeekLogWriter | None = None
    try:
        for batch in iter_batches(inputs, strict=strict, rejects=rejects, stats=stats, fields=fields):
            if not len(batch):
                continue
            scores = model.score_frame(batch)
            flagged = scores >= threshold
            summary.scored += len(batch)
            if flagged.any():
                rows = notices_from_conns(batch[flagged], scores[flagged], threshold, model.name, str(model.version))
                summary.notices += notices.write(rows)
            if all_out is not None:
                if enriched is None:
                    enriched = _enriched_writer(all_out, batch, fmt, json_ts)
                out = batch.assign(
                    **{"zeek_ml.score": scores.astype(float), "zeek_ml.verdict": flagged, "zeek_ml.model": model.name}
                )
                enriched.write(out)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        notices.close()
        if enriched is not None:
            enriched.close()
        rejects.close()
        summary.files = stats.files
        summary.records = stats.records
        summary.rejected = stats.rejected
        summary.first_rejects = [str(r) for r in rejects.first]
        summary.seconds = time.perf_counter() - started
    return summary


def _enriched_writer(target: str | os.PathLike[str], batch: pd.DataFrame, fmt: str, json_ts: str) -> ZeekLogWriter:
    types = dict(batch.attrs.get("types", {}))
    fields = list(CONN_FIELDS)
    fields += [(c, types.get(c, "string")) for c in batch.columns if c not in CONN_TYPES]
    fields += list(SCORE_FIELDS)
    return ZeekLogWriter(target, "conn", fields, fmt=fmt, json_ts=json_ts)
