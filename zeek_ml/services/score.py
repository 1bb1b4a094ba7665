"""Offline scoring: conn logs in, a notice log (and optionally an enriched conn log) out."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zeek_ml.formats.safeio import Output, check_outputs, open_output
from zeek_ml.model.scorer import Scorer, Sink
from zeek_ml.sinks.logs import EnrichedSink, build_notice_sink, enriched_fields, file_writer, match_sensor
from zeek_ml.sources.files import iter_batches, sensor_groups, sniff_format
from zeek_ml.sources.reading import ReadStats, RejectLog, SourceError

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


def _progress(enabled: bool | None, unit: str = " conn", total: int | None = None) -> Any:
    """A tqdm counter (a bar with ``total``) on a terminal, nothing otherwise."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit=unit, unit_scale=total is None, total=total, file=sys.stderr, dynamic_ncols=True)


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
    sensor_from: str | None = None,
    sensor_runner: SensorRunner | None = None,
    split_days: bool = False,
    threads: int = 1,
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
    ``sensor_from`` names sensors (:func:`~zeek_ml.sources.files.sensor_groups`); several sensors are
    scored each on its own, by ``sensor_runner`` where given (a Dask cluster:
    :class:`~zeek_ml.services.distributed.SensorTasks`). ``split_days``: ``notice_out`` is a directory
    that gets one notice log per sensor and day, ``<sensor>/<YYYY-MM-DD>/notice.log`` (UTC days of the
    notices' ``ts``; without sensors ``<YYYY-MM-DD>/notice.log``), as Zeek archives its logs.
    ``threads`` >= 2 runs the model in a thread of its own beside reading and writing
    (:meth:`~zeek_ml.model.scorer.Scorer.stream`; one process, not on a cluster).

    Outputs are written safely (:mod:`zeek_ml.formats.safeio`): an output that is also an input is refused,
    each file is written under a temporary name and renamed into place only when the whole run
    succeeded; on any failure nothing is left at the output paths (a file already there stays as
    it was). ``-`` streams to stdout. I/O failures are :class:`~zeek_ml.formats.safeio.OutputError`.
    """
    groups = sensor_groups(inputs, sensor_from=sensor_from, source=source)
    files = [f for _, group in groups for f in group]
    check_outputs({"-o": None if split_days else notice_out, "--all": all_out, "--rejects": rejects_out}, files)
    if "auto" in (fmt, json_ts):
        fmt, json_ts = match_sensor(fmt, json_ts, [sniff_format(os.fspath(f)) for f in files])
    sensors = groups[0][0] is not None
    if (sensors or split_days) and fmt == "eve":
        what = "one notice log per day" if split_days else "several sensors"
        raise SourceError(f"{what}: the notices are written as Zeek notice logs (--format tsv or json)")
    if split_days:
        _check_split_dir(notice_out)
    options = {
        "strict": strict,
        "fields": fields,
        "source": source,
        "local_nets": local_nets,
    }
    notice_options = {
        "aggregate": aggregate,
        "suppress_for": suppress_for,
        "local_nets": local_nets,
        "min_severity": min_severity,
        "profile": profile,
        "local_discovery": local_discovery,
    }
    outputs: list[Output] = []
    write_notices: Any = None
    try:
        notice_file = None if split_days else _open(notice_out, outputs)
        write_notices = (
            _DayFiles(os.fspath(notice_out), fmt, json_ts, outputs)
            if split_days
            else _Merged(notice_file, fmt, json_ts)
        )
        all_file = _open(all_out, outputs) if all_out is not None else None
        if rejects_out is not None:
            rejects = RejectLog(strict=strict, target=_open(rejects_out, outputs))
        elif rejects is None:
            rejects = RejectLog(strict=strict)
        try:
            if sensors:
                summary = _score_sensors(
                    groups,
                    model,
                    threshold,
                    write_notices,
                    all_file,
                    rejects,
                    fmt=fmt,
                    json_ts=json_ts,
                    progress=progress,
                    notice_options=notice_options,
                    runner=sensor_runner,
                    threads=threads,
                    **options,
                )
            else:
                collect: list[_Collect] = []
                sinks = _notice_sinks(
                    notice_file, all_file, fmt, json_ts, notice_options, collect if split_days else None
                )
                summary = _score(
                    files,
                    Scorer(model, threshold),
                    sinks,
                    rejects,
                    progress=progress,
                    engine=engine,
                    threads=threads,
                    **options,
                )
                for sink in sinks:
                    sink.close()
                summary.notices = int(getattr(sinks[0], "notices", 0))
                if split_days:
                    write_notices([f for c in collect for f in c.frames], collect[0].fields)
        finally:
            rejects.close()
        for out in outputs:  # all made durable first: a failure there replaces none of the targets
            out.prepare()
        for out in outputs:
            out.commit()
    except BaseException:
        for out in outputs:
            out.discard()
        if isinstance(write_notices, _DayFiles):
            write_notices.remove_made()
        raise
    return summary


# --- issue 14: several sensors, each a network of its own -----------------------------------------------------


@dataclass
class SensorResult:
    """One sensor scored on its own: its notice rows (``peer_descr`` = the sensor), the lines it rejected
    (as ``--rejects`` writes them) and its summary."""

    sensor: str
    notices: list[Any]
    fields: list[tuple[str, str]]
    rejects: bytes
    summary: ScoreSummary
    all_rows: list[Any] = field(default_factory=list)
    """With ``keep_all``: every connection with its score, as ``--all`` writes them (batch by batch)."""


class _Collect:
    """A notice writer that keeps the rows (few: one per incident) for the merge by time."""

    def __init__(self, sensor: str, fields: Any):
        self.sensor = sensor
        self.fields = list(fields)
        self.frames: list[Any] = []

    def write(self, frame: Any, extra: dict[str, Any] | None = None, prepared: Any = None) -> int:
        """Keep ``frame`` (with the columns ``extra``, as :meth:`ZeekLogWriter.write` takes them; nothing is
        rendered here, so ``prepared`` is not needed)."""
        if len(frame):
            columns = dict(extra or {})
            if self.sensor:
                columns["peer_descr"] = self.sensor
            self.frames.append(frame.assign(**columns) if columns else frame.copy())
        return len(frame)

    def close(self, close_time: float | None = None) -> None:
        pass


def _collector(into: list[_Collect], sensor: str = "") -> Any:
    """A writer factory whose writers keep their rows (appended to ``into``) instead of writing them."""

    def make(path: str, columns: Any) -> _Collect:
        into.append(_Collect(sensor, columns))
        return into[-1]

    return make


def score_sensor(
    sensor: str,
    files: list[str],
    model: Any,
    threshold: float | None,
    *,
    strict: bool,
    fields: list[str] | None,
    source: str,
    local_nets: Any,
    notice_options: dict[str, Any],
    keep_rejects: bool,
    keep_all: bool = False,
    progress: bool | None = None,
    extra_sinks: list[Sink] | None = None,
    threads: int = 1,
) -> SensorResult:
    """Score one sensor's files with a context and incidents of their own (in this process, or as a task
    on a Dask worker: :mod:`zeek_ml.services.distributed`). ``extra_sinks`` (the shared ``--all`` log)
    also get every batch; ``keep_rejects`` keeps the rejected lines for ``--rejects``, ``keep_all`` every
    connection with its score for ``--all`` (every row travels back: for large archives leave ``--all`` out)."""
    import io

    kept = io.BytesIO() if keep_rejects else None
    rejects = RejectLog(strict=strict, target=kept)
    collect: list[_Collect] = []
    notice_sink = build_notice_sink(_collector(collect, sensor), **notice_options)
    every: list[_Collect] = []
    if keep_all:
        extra_sinks = [*(extra_sinks or []), EnrichedSink(_collector(every), keep_extra=False)]
    summary = _score(
        files,
        Scorer(model, threshold),
        [notice_sink, *(extra_sinks or [])],
        rejects,
        strict=strict,
        fields=fields,
        progress=progress,
        source=source,
        local_nets=local_nets,
        threads=threads,
    )
    notice_sink.close()
    summary.notices = int(getattr(notice_sink, "notices", 0))
    return SensorResult(
        sensor,
        [frame for c in collect for frame in c.frames],
        collect[0].fields if collect else [],
        kept.getvalue() if kept is not None else b"",
        summary,
        [frame[[n for n, _ in c.fields]] for c in every for frame in c.frames],
    )


SensorRunner = Callable[[list[tuple[str, list[str]]], dict[str, Any]], Iterator[SensorResult]]
"""``runner(groups, options) -> results`` in the groups' order, each from :func:`score_sensor` (issue 14:
on a Dask cluster, :class:`~zeek_ml.services.distributed.SensorTasks`)."""


def _score_sensors(
    groups: list[tuple[Any, list[str]]],
    model: Any,
    threshold: float | None,
    write_notices: Callable[[list[Any], list[tuple[str, str]]], None],
    all_file: Output | None,
    rejects: RejectLog,
    *,
    fmt: str,
    json_ts: str,
    progress: bool | None,
    notice_options: dict[str, Any],
    runner: SensorRunner | None,
    threads: int = 1,
    **options: Any,
) -> ScoreSummary:
    """Every sensor on its own, then one notice log: the sensors' notices merged by time (a stable sort:
    one sensor's own order kept, ties in sensor order), each naming its sensor in ``peer_descr`` as a Zeek
    cluster names the node that raised a notice. ``--all`` holds conn.log's standard columns, sensor after
    sensor; ``--rejects`` too."""
    started = time.perf_counter()
    keep = rejects.writes
    all_sink = all_writer = None
    if all_file is not None and runner is None:  # one --all log the sensors write in turn
        all_sink = EnrichedSink(file_writer(all_file, fmt, json_ts), keep_extra=False)
    elif all_file is not None:  # the workers send every row back; written here, sensor after sensor
        all_writer = file_writer(all_file, fmt, json_ts)("conn", enriched_fields(None))
    if runner is not None:
        results: Iterable[SensorResult] = runner(
            [(str(s), g) for s, g in groups],
            {
                "threshold": threshold,
                "notice_options": notice_options,
                "keep_rejects": keep,
                "keep_all": all_writer is not None,
                **options,
            },
        )
    else:
        results = (
            score_sensor(
                "" if sensor is None else str(sensor),
                group,
                model,
                threshold,
                notice_options=notice_options,
                keep_rejects=keep,
                progress=progress,
                extra_sinks=[all_sink] if all_sink is not None else None,
                threads=threads,
                **options,
            )
            for sensor, group in groups
        )
    summary = ScoreSummary()
    frames: list[Any] = []
    columns: list[tuple[str, str]] = []
    bar = _progress(progress, " sensor", len(groups)) if runner is not None else None
    for result in results:
        if bar is not None:
            bar.update(1)
        frames.extend(result.notices)
        columns = columns or result.fields
        if all_writer is not None:
            for rows in result.all_rows:
                all_writer.write(rows)
        rejects.write_lines(result.rejects)
        for name in ("files", "records", "rejected", "scored", "notices", "ignored_events"):
            setattr(summary, name, getattr(summary, name) + getattr(result.summary, name))
        summary.first_rejects.extend(result.summary.first_rejects)
        rejects.count += result.summary.rejected
    if bar is not None:
        bar.close()
    del summary.first_rejects[rejects.keep :]
    write_notices(frames, columns or _notice_fields(notice_options))
    if all_sink is not None:
        all_sink.close()
    if all_writer is not None:
        all_writer.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _by_time(frames: list[Any]) -> Any:
    """The notice rows of every sensor in one frame, by time (stable: one sensor's order kept, ties in sensor
    order); None without rows."""
    import pandas as pd

    if not frames:
        return None
    merged = pd.concat(frames, ignore_index=True)
    return merged.iloc[merged["ts"].argsort(kind="stable")]


class _Merged:
    """Notices into one notice log, by time."""

    def __init__(self, target: Output | None, fmt: str, json_ts: str):
        self.target, self.fmt, self.json_ts = target, fmt, json_ts

    def __call__(self, frames: list[Any], columns: list[tuple[str, str]]) -> None:
        writer = file_writer(self.target, self.fmt, self.json_ts)("notice", columns)  # type: ignore[arg-type]
        rows = _by_time(frames)
        if rows is not None:
            writer.write(rows)
        writer.close()


_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]")


class _DayFiles:
    """Notices into ``DIR/<sensor>/<YYYY-MM-DD>/notice.log`` (UTC days), each file written atomically with
    the run's other outputs; the folders this run made are removed again if it fails."""

    def __init__(self, root: str, fmt: str, json_ts: str, outputs: list[Output]):
        self.root, self.fmt, self.json_ts, self.outputs = root, fmt, json_ts, outputs
        self.made: list[str] = []

    def _mkdirs(self, path: str) -> None:
        missing = []
        while path and not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for folder in reversed(missing):
            os.mkdir(folder)
            self.made.append(folder)

    def __call__(self, frames: list[Any], columns: list[tuple[str, str]]) -> None:
        import pandas as pd

        self._mkdirs(self.root)
        rows = _by_time(frames)
        if rows is None:
            return
        day = pd.to_datetime(rows["ts"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
        sensor = rows["peer_descr"].fillna("") if "peer_descr" in rows else pd.Series("", index=rows.index)
        for (name, date), part in rows.groupby([sensor, day], sort=True):
            folder = os.path.join(self.root, *([_UNSAFE.sub("_", name).lstrip(".") or "_"] if name else []), date)
            self._mkdirs(folder)
            writer = file_writer(_open(os.path.join(folder, "notice.log"), self.outputs), self.fmt, self.json_ts)
            w = writer("notice", columns)
            w.write(part)
            w.close()

    def remove_made(self) -> None:
        for folder in reversed(self.made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _check_split_dir(path: str | os.PathLike[str]) -> None:
    """``-o`` of a run split by day must be a directory (or not exist yet)."""
    path = os.fspath(path)
    if path == "-" or (os.path.lexists(path) and not os.path.isdir(path)):
        raise SourceError(f"{path}: --split-days writes a folder of notice logs; -o must name a directory")


def _notice_fields(notice_options: dict[str, Any]) -> list[tuple[str, str]]:
    """The notice log's columns where no sensor raised a notice (the sink's own, from an empty run)."""
    kept: list[_Collect] = []
    build_notice_sink(_collector(kept), **notice_options).close()
    return kept[0].fields


def _open(path: str | os.PathLike[str], outputs: list[Output]) -> Output:
    out = open_output(path)
    outputs.append(out)
    return out


def _notice_sinks(
    notice_file: Output | None,
    all_file: Output | None,
    fmt: str,
    json_ts: str,
    notice_options: dict[str, Any],
    collect: list[_Collect] | None = None,
) -> list[Sink]:
    """The notice sink (a Zeek notice log, or Suricata eve alerts; into ``collect`` where given) and, with
    ``--all``, the enriched conn log."""
    if collect is not None:
        notice_sink: Any = build_notice_sink(_collector(collect), **notice_options)
    elif fmt == "eve":
        from zeek_ml.sinks.eve import EveAlertSink

        notice_sink = EveAlertSink(notice_file, **notice_options)
        fmt = "json"  # for --all: an enriched conn log has no eve form
    else:
        notice_sink = build_notice_sink(file_writer(notice_file, fmt, json_ts), **notice_options)
    sinks: list[Sink] = [notice_sink]
    if all_file is not None:
        sinks.append(EnrichedSink(file_writer(all_file, fmt, json_ts)))
    return sinks


def _score(
    files: list[str],
    scorer: Scorer,
    sinks: list[Sink],
    rejects: RejectLog,
    *,
    strict: bool,
    fields: list[str] | None,
    progress: bool | None,
    source: str,
    local_nets: Any,
    engine: Engine | None = None,
    threads: int = 1,
) -> ScoreSummary:
    """The scoring loop: read ``files``, score, write every batch's verdicts to ``sinks`` (closed by the caller,
    and only after a run that got through: the end of a failed one is discarded unwritten)."""
    stats = ReadStats()
    summary = ScoreSummary()
    started = time.perf_counter()
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
                local_nets=local_nets,
            )
            if len(batch)
        )
        # --- issue 14: the verdicts come from the engine (a Dask cluster) when one is given
        scored = engine(batches) if engine is not None else scorer.stream(batches, threads)
        for batch, verdicts in scored:
            summary.scored += len(batch)
            for sink in sinks:
                sink.write(verdicts)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    summary.files = stats.files
    summary.records = stats.records
    summary.rejected = stats.rejected
    summary.ignored_events = stats.ignored_events
    summary.first_rejects = [str(r) for r in rejects.first]
    summary.seconds = time.perf_counter() - started
    return summary
