"""``zeek-ml watch``: score a live Zeek conn.log (or Suricata eve.json) as it is written.

One loop, one thread doing the work: read the whole lines available (across
rotations), parse and score them in memory, append the batch to the outputs,
and every ``--checkpoint-interval`` fsync the outputs, then write the
checkpoint. The checkpoint only ever records what was durably written: after
any failure (a malformed value in ``--strict``, an exception, an I/O error) the
watcher stops without writing one, and a restart scores those lines again
(exactly once: see :mod:`zeek_ml.services.durable`). A full disk (outputs or
checkpoint) is not a failure: the watcher stops reading, keeps the batch it
could not write, retries with a backoff, and resumes at the exact byte where
the output ends once space is freed; it logs it and shows it in the metrics.
Watchdog (inotify) wakes the loop when the directory changes; a short poll
covers file systems that send no events. SIGTERM/SIGINT drain and stop cleanly
(exit 0); SIGHUP starts fresh outputs at once after logrotate moved them (moved
or deleted outputs are noticed at the next write anyway).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.formats.safeio import write_json_atomic
from zeek_ml.formats.writer import ZeekLogWriter, zeek_time_string
from zeek_ml.model.scorer import Scorer
from zeek_ml.services.durable import (
    DISK_FULL_BACKOFF,
    DISK_FULL_REMINDER,
    SNAPSHOT_INFIX,
    AppendLog,
    drop_other_snapshots,
    read_json,
    restore_scorer,
    save_scorer,
    wait_out_disk_full,
)
from zeek_ml.services.watch.warmup import warm_up
from zeek_ml.sinks.logs import EnrichedSink, build_notice_sink, enriched_fields, match_sensor
from zeek_ml.sources.files import make_parser, reject_long_line, sniff_format
from zeek_ml.sources.reading import MalformedLineError, ReadContext, ReadStats, RejectLog
from zeek_ml.sources.tail import LogFollower, Segment, rotated_patterns

CHECKPOINT_VERSION = 2
"""2: the host context's tables are an arrays file beside the checkpoint (1, which kept them as JSON,
is still read)."""

LIVE_NAMES = ("conn.log", "eve.json")
"""What to follow in a directory: Zeek's live conn.log, else Suricata's eve.json."""

CRASH_ENV = "ZEEK_ML_WATCH_CRASH_AT"
"""Fault injection for the tests: ``POINT:N`` (``POINT:N:raise``) makes the watcher kill itself with
SIGKILL (raise an exception) the N-th time it reaches POINT; see :class:`CrashPoints`."""


class BatchFailed(Exception):
    """Scoring a batch failed: nothing of it is checkpointed, a restart scores it again."""

    def __init__(self, where: str, error: BaseException):
        super().__init__(
            f"scoring {where} failed ({type(error).__name__}: {error}); the checkpoint stays before "
            "these lines: a restart scores them again"
        )


class CrashPoints:
    """Named points of the watcher's life where a test may kill it (``ZEEK_ML_WATCH_CRASH_AT``).

    ``batch_read`` (lines read, nothing scored), ``batch_scored`` (scored in memory),
    ``output_torn`` (half of a batch's output written), ``batch_written``, ``synced`` (outputs
    fsync'ed, no checkpoint yet), ``arrays_written`` (the host tables' arrays file of the next
    checkpoint written, the checkpoint not yet), ``checkpoint_write`` (the checkpoint's temporary file half
    written, not renamed), ``checkpointed``, ``rotation`` (the follower finishing or opening a
    file), ``output_switched`` (an output moved or deleted under us, its new file opened).
    Unset, every call is a no-op.
    """

    def __init__(self, spec: str | None):
        self.point: str | None = None
        self.at = 1
        self.mode = "kill"
        self.hits = 0
        if spec:
            name, _, rest = spec.partition(":")
            count, _, mode = rest.partition(":")
            self.point, self.at, self.mode = name, int(count or 1), mode or "kill"

    def __call__(self, point: str, before: Callable[[], Any] | None = None) -> None:
        if point != self.point:
            return
        self.hits += 1
        if self.hits != self.at:
            return
        if before is not None:
            before()
        if self.mode == "raise":
            raise RuntimeError(f"fault injected at {point} ({CRASH_ENV})")
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class WatchOptions:
    """Everything ``zeek-ml watch`` was asked to do."""

    path: str
    notice_out: str
    fmt: str = "tsv"
    json_ts: str = "epoch"
    all_out: str | None = None
    verdicts_out: str | None = None
    """Verdict file for the Zeek package's Input framework (append-only, never rotated by us)."""
    rejects_out: str | None = None
    checkpoint: str | None = None
    threshold: float | None = None
    poll_interval: float = 1.0
    use_events: bool = True
    batch_bytes: int = 4 << 20
    from_end: bool = False
    rotated_dirs: list[str] = field(default_factory=list)
    log_json: bool = False
    metrics: str | None = None
    strict: bool = False
    exit_when_idle: float | None = None
    """Stop (drained, checkpointed) after this many seconds without new lines (tests, batch catch-up)."""
    gather: float = 0.0
    """Once new lines arrive, wait up to this long (seconds) for more, and score them as one batch: a batch
    has a fixed cost (a few milliseconds), so fewer, larger batches cost less CPU, at the price of that
    much more latency (bench/README.md). 0: score whatever is there at once."""
    checkpoint_interval: float = 1.0
    """Fsync the outputs and write the checkpoint at most this often while lines keep coming (and
    at once when they stop); 0: after every batch. Exactly once either way."""
    notice_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of :func:`zeek_ml.sinks.logs.build_notice_sink` (aggregation, severity, profile)."""


class EventLog:
    """Structured log lines on stderr: ``zeek-ml watch: event key=value`` or one JSON object a line."""

    def __init__(self, as_json: bool, stream: Any = None):
        self.as_json = as_json
        self.stream = stream or sys.stderr

    def __call__(self, event: str, info: dict[str, Any] | None = None, level: str = "info") -> None:
        info = dict(info or {})
        if self.as_json:
            row = {"ts": round(time.time(), 6), "level": level, "event": event, **info}
            line = json.dumps(row, default=str)
        else:
            message = info.pop("message", None)
            fields = " ".join(f"{k}={v}" for k, v in info.items())
            line = (
                f"zeek-ml watch: {level}: {event}"
                + (f": {message}" if message else "")
                + (f" ({fields})" if fields else "")
            )
        print(line, file=self.stream, flush=True)


def resolve_live(path: str) -> str:
    """The file to follow: PATH itself, or the live log in directory PATH."""
    if os.path.isdir(path):
        for name in LIVE_NAMES:
            if os.path.exists(os.path.join(path, name)):
                return os.path.join(path, name)
        return os.path.join(path, LIVE_NAMES[0])
    return path


class Watcher:
    """The live scoring service (see the module docstring)."""

    def __init__(self, options: WatchOptions, model: Any, log: EventLog | None = None):
        self.opts = options
        self.model = model
        self.log = log or EventLog(options.log_json)
        self.stop_requested = threading.Event()
        self.wake = threading.Event()
        self.reopen_requested = False
        self.stats = ReadStats()
        self.counts = {
            "notices": 0,
            "scored": 0,
            "batches": 0,
            "missed_files": 0,
            "replayed_lines_skipped": 0,
            "disk_full_episodes": 0,
            "output_switches": 0,
        }
        self.metrics: Any = None
        self.checkpoint_path = options.checkpoint or f"{options.notice_out}.checkpoint.json"
        self._observer: Any = None
        self._last_data = time.monotonic()
        self.run_ended = False
        self._dirty = False
        self._last_commit = time.monotonic()
        self.outputs: dict[str, AppendLog] = {}
        self.crash = CrashPoints(os.environ.get(CRASH_ENV))
        self.disk_full_since: float | None = None
        self._disk_full_said = 0.0
        self._disk_full_tries = 0
        self._model_pool: ThreadPoolExecutor | None = None
        """With two threads or more (``--threads``): where the model runs beside the writers (see :meth:`_process`)."""

    # ------------------------------------------------------------------ setup
    def _resolve_format(self, live: str) -> None:
        """``--format auto``/``--json-ts auto``: write notices as the sensor writes its log.

        Decided from the live log, else the newest rotated one, else the notice log we wrote
        before (a restart keeps its format); with none of them, Zeek's defaults (TSV).
        """
        o = self.opts
        if "auto" not in (o.fmt, o.json_ts):
            return
        sensor = sniff_format(live)
        if sensor is None:
            rotated = [p for d in o.rotated_dirs for p in sorted(glob.glob(os.path.join(d, "*")), key=os.path.getmtime)]
            sensor = next((f for f in map(sniff_format, reversed(rotated)) if f is not None), None)
        if sensor is None and o.fmt == "auto":
            previous = sniff_format(o.notice_out)
            sensor = previous if previous is None or previous[0] != "eve" else None
        o.fmt, o.json_ts = match_sensor(o.fmt, o.json_ts, [sensor])
        self.log("format", {"format": o.fmt, "json_ts": o.json_ts, "from": live if sensor else "default"})

    def _open_outputs(self) -> None:
        o = self.opts
        self.outputs = {}
        self.scorer = Scorer(self.model, o.threshold)
        on_event = self._on_output_event

        def live_writer(name: str) -> Callable[[str, Any], ZeekLogWriter]:
            fmt = "json" if o.fmt == "eve" else o.fmt  # --all has no eve form: JSON lines
            # drained by the batch loop, not at each flush: the checkpoint decides when the bytes are durable
            return appending_writer(
                self._output_path(name),
                fmt,
                o.json_ts,
                on_event,
                log_class=AppendLog,
                on_open=lambda out: self._register(name, out),
            )

        if o.fmt == "eve":  # Suricata-style alert events (no header, no #close)
            from zeek_ml.sinks.eve import EveAlertSink

            alerts = AppendLog(o.notice_out, on_event=on_event)
            self._register("notice", alerts)
            self.sinks: dict[str, Any] = {"notice": EveAlertSink(alerts, **o.notice_options)}
        else:
            self.sinks = {"notice": build_notice_sink(live_writer("notice"), **o.notice_options)}
        if o.all_out:
            sink = EnrichedSink(live_writer("all"), keep_extra=False)
            self.sinks["all"] = sink
            # Open it now so its checkpointed size is known before the first batch.
            sink.writer = live_writer("all")("conn", enriched_fields(None))
        if o.verdicts_out:
            from zeek_ml.sinks.verdict_file import verdict_file_header, verdict_file_sink

            # no #close: Zeek follows it
            verdict_file = AppendLog(o.verdicts_out, header=verdict_file_header(), on_event=on_event)
            self._register("verdicts", verdict_file)
            # The same notices as the notice log (incidents by default), as lines Zeek turns into NOTICEs.
            self.sinks["verdicts"] = verdict_file_sink(verdict_file, **o.notice_options)
        rejects_target = None
        if o.rejects_out:
            rejects_target = AppendLog(o.rejects_out, on_event=on_event)
            self._register("rejects", rejects_target)
        self.rejects = RejectLog(strict=o.strict, target=rejects_target)
        self.ctx = ReadContext(self.rejects, self.stats, o.batch_bytes, True, None)

    def _output_path(self, name: str) -> str:
        return {"notice": self.opts.notice_out, "all": self.opts.all_out}[name]  # type: ignore[return-value]

    def _register(self, name: str, out: AppendLog) -> None:
        self.outputs[name] = out
        if out.moved_aside:
            self.log(
                "output_moved_aside",
                {"file": out.path, "to": out.moved_aside, "message": "its header differs from what we write"},
                "warning",
            )

    def _make_parser(self, path: str, first_bytes: bytes) -> Any:
        return make_parser(path, first_bytes, self.ctx)

    def _on_follower_event(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "line_too_long":  # a rejected line like any other (counted, --rejects, --strict)
            reject_long_line(self.ctx, info["file"], info["line"], info["head"], final=False)
            return
        level = "warning" if kind in ("file_missing", "file_truncated", "file_corrupt") else "info"
        if kind == "file_missing":
            self.counts["missed_files"] += 1
        self.log(kind, info, level)
        if kind in ("file_done", "file_open"):
            self.crash("rotation")

    def _on_output_event(self, kind: str, info: dict[str, Any]) -> None:
        self.counts["output_switches"] += 1
        self.log(kind, info, "warning")
        if self.metrics is not None:
            self.metrics.output_switches.inc()
        self.crash("output_switched")

    def _refuse_outputs_among_inputs(self, live: str) -> None:
        """An output (or the checkpoint) that is the live log, or that the follower would take for one of its
        rotated files, would be read back as input (or move Zeek's log aside): a ValueError naming it."""
        o = self.opts
        named = {
            "-o": o.notice_out,
            "--all": o.all_out,
            "--verdicts": o.verdicts_out,
            "--rejects": o.rejects_out,
            "--checkpoint": self.checkpoint_path,
        }
        live = os.path.abspath(live)
        directory = os.path.dirname(live)
        watched = {directory, os.path.join(directory, "log-queue")}
        for entry in o.rotated_dirs or []:
            watched.update(os.path.abspath(d) for d in glob.glob(entry))
        patterns = rotated_patterns(live)
        for option, path in named.items():
            if not path or path == "-":
                continue
            full = os.path.abspath(path)
            same = full == live
            with contextlib.suppress(OSError):
                same = same or os.path.samefile(full, live)
            rotated = os.path.dirname(full) in watched and any(
                fnmatch.fnmatchcase(os.path.basename(full), p) for p in patterns
            )
            if same or rotated:
                what = "the log being watched" if same else f"named like a rotated {os.path.basename(live)}"
                raise ValueError(f"{option} {path}: is {what}; zeek-ml would read its own output (choose another name)")

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        """Follow, score and write until stopped; 0 on a clean stop (errors are raised, see the module)."""
        o = self.opts
        live = self._wait_for_path()
        if live is None:
            return 0
        self._refuse_outputs_among_inputs(live)
        self._resolve_format(live)
        self._start_metrics()
        self._remove_stale_temps()
        self._durably(self._open_outputs_once)
        self.follower = LogFollower(
            live,
            self._make_parser,
            rotated_dirs=o.rotated_dirs,
            batch_bytes=o.batch_bytes,
            from_end=o.from_end,
            on_event=self._on_follower_event,
        )
        clean = False
        if getattr(self.model, "threads", 1) >= 2:
            self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="zeek-ml-model")
        try:
            self._restore()
            self._start_events(os.path.dirname(live))
            warm = self._warm_up()
            self.log(
                "started",
                {"file": live, "checkpoint": self.checkpoint_path, "notice_log": o.notice_out, "warm_up_ms": warm},
            )
            self._loop()
            self._finish()
            clean = True
        finally:
            self._close(clean)
        return 0

    def _warm_up(self) -> int:
        """Run made-up lines through throwaway stages (:mod:`.warmup`): milliseconds taken, -1 if it failed
        (only the first batch is slower then: a warning, not a stop)."""
        o = self.opts
        try:
            return round(1000 * warm_up(self.model, o.fmt, o.json_ts, o.notice_options, o.batch_bytes))
        except Exception as e:  # a made-up batch must never keep the service from its real work
            self.log("warm_up_failed", {"message": f"{type(e).__name__}: {e}"}, "warning")
            return -1

    def _open_outputs_once(self) -> None:
        try:
            self._open_outputs()
        except BaseException:
            for out in self.outputs.values():
                out.close()
            raise

    def _remove_stale_temps(self) -> None:
        """Temporary checkpoint (and arrays) files a kill left behind (never links' targets: unlink removes
        the link)."""
        directory, name = os.path.split(os.path.abspath(self.checkpoint_path))
        arrays = re.escape(SNAPSHOT_INFIX) + r"[0-9a-f]{16}\.npz"
        pattern = re.compile(r"\." + re.escape(name) + rf"({arrays})?(\.[0-9a-f]+)?\.tmp")  # ours, older versions'
        with contextlib.suppress(OSError), os.scandir(directory) as entries:
            for entry in entries:
                if pattern.fullmatch(entry.name) and not entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def _wait_for_path(self) -> str | None:
        path = self.opts.path
        said = False
        while True:
            directory = path if os.path.isdir(path) or not os.path.splitext(path)[1] else os.path.dirname(path) or "."
            if os.path.isdir(directory):
                if not os.access(directory, os.R_OK | os.X_OK):
                    raise PermissionError(f"{directory}: not readable by this user (uid {os.getuid()})")
                return resolve_live(path)
            if not said:
                self.log("waiting", {"message": f"{directory} does not exist yet; waiting for it", "dir": directory})
                said = True
            if self.stop_requested.wait(self.opts.poll_interval):
                return None

    def _restore(self) -> None:
        saved = read_json(self.checkpoint_path)
        if saved is None:
            self.log("checkpoint", {"message": f"no checkpoint at {self.checkpoint_path}: starting fresh"})
            self.follower.restore(None)
            self.replaying = False
            self._commit()  # names the live file before a line is scored (retried while the disk is full)
            return
        if saved.get("version") not in (1, CHECKPOINT_VERSION):
            raise ValueError(
                f"{self.checkpoint_path}: checkpoint version {saved.get('version')} is not 1 or {CHECKPOINT_VERSION}"
            )
        self.follower.restore(saved.get("input"))
        restore_scorer(self.checkpoint_path, self.scorer, saved.get("scorer") or {})
        for name, sink in self.sinks.items():
            if hasattr(sink, "restore") and name in saved.get("sinks", {}):
                sink.restore(saved["sinks"][name])
        replay = 0
        for name, out in self.outputs.items():
            replay += out.recover(saved.get("outputs", {}).get(name))
        self.replaying = replay > 0
        current = (saved.get("input") or {}).get("current") or {}
        self.log(
            "resumed",
            {
                "checkpoint": self.checkpoint_path,
                "file": current.get("path"),
                "offset": current.get("offset"),
                "unconfirmed_output_lines": replay,
            },
        )

    def _loop(self) -> None:
        o = self.opts
        while not self.stop_requested.is_set():
            if self.reopen_requested:
                self._reopen()
            segments = self.follower.read()
            if segments:
                self._process(self._gather(segments) if o.gather > 0 else segments)
                self._last_data = time.monotonic()
                continue
            if self._dirty:
                self._commit()
            self._caught_up()
            if o.exit_when_idle is not None and time.monotonic() - self._last_data >= o.exit_when_idle:
                self.log("idle", {"message": f"no new lines for {o.exit_when_idle:g} s: stopping"})
                self.run_ended = True
                break
            self.wake.wait(o.poll_interval if self._observer is not None else min(o.poll_interval, 0.25))
            self.wake.clear()
        # Drain what is already written, then stop.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            segments = self.follower.read()
            if not segments:
                break
            self._process(segments)

    def _gather(self, segments: list[Segment]) -> list[Segment]:
        """``segments`` and the lines that follow them within :attr:`WatchOptions.gather` seconds (about
        ``batch_bytes`` at most), a file's consecutive reads joined into one segment (one batch to score)."""
        o = self.opts
        deadline = time.monotonic() + o.gather
        size = sum(len(seg.data) for seg in segments)
        # Only at the live end of the stream: behind it (a backlog, a restart's catch-up) batches are full.
        while size < o.batch_bytes and not self.follower.behind() and not self.stop_requested.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.wake.wait(left if self._observer is not None else min(left, 0.005))
            self.wake.clear()
            more = self.follower.read()
            size += sum(len(seg.data) for seg in more)
            for seg in more:
                last = segments[-1]
                if seg.file is last.file and not last.final:
                    segments[-1] = Segment(last.file, last.data + seg.data, last.first_line, seg.final)
                else:
                    segments.append(seg)
        return segments

    def _caught_up(self) -> None:
        if getattr(self, "replaying", False):
            self.replaying = False
            left = sum(out.unmatched() for out in self.outputs.values())
            skipped = sum(out.skipped for out in self.outputs.values())
            self.counts["replayed_lines_skipped"] = skipped
            info = {"skipped_duplicates": skipped, "unmatched": left}
            if left:
                info["message"] = f"{left} output lines written before the restart were not produced again"
            self.log("replay_done", info, "warning" if left else "info")

    # ------------------------------------------------------------------ one batch
    def _process(self, segments: list[Segment]) -> None:
        """Score a batch in memory, write it (waiting out a full disk), checkpoint when due."""
        started = time.perf_counter()
        self.crash("batch_read")
        newest = np.nan
        try:
            frames: list[pd.DataFrame] = []
            for seg in segments:
                frames.extend(f for f in seg.file.parser.feed(seg.data, seg.first_line, seg.final) if len(f))
            early = [name for name, sink in self.sinks.items() if hasattr(sink, "prepare")]
            for frame in frames:
                # With --all the model runs in the pool while this thread renders the batch's own columns, on
                # one thread (this one, not the model's, is the slower; splitting the model again cost more
                # CPU than it saved: p99 at 50k conn/s 118-201 ms against 171-307). Without, as one call.
                running = self.scorer.begin(frame, self._model_pool if early else None, threads=1)
                prepared = {name: self.sinks[name].prepare(frame) for name in early}
                verdicts = running()
                self.counts["scored"] += len(frame)
                for name, sink in self.sinks.items():
                    written = sink.write(verdicts, prepared[name]) if name in prepared else sink.write(verdicts)
                    if name == "notice":
                        self.counts["notices"] += written
                if self.metrics is not None:  # lag: the end of the newest connection scored
                    ends = frame["ts"].to_numpy(dtype=float, na_value=np.nan) + frame["duration"].to_numpy(
                        dtype=float, na_value=0.0
                    )
                    if len(ends) and not np.all(np.isnan(ends)):
                        newest = np.nanmax([newest, np.nanmax(ends)])
            self.crash("batch_scored")
        except (MalformedLineError, OSError):
            raise  # --strict (exit 4), an unreadable file (one line naming it): no checkpoint either way
        except Exception as e:
            raise BatchFailed(_where(segments), e) from e
        self._durably(self._write_outputs)
        self.crash("batch_written")
        self._dirty = True
        switched = any(out.switched for out in self.outputs.values())
        if switched or time.monotonic() - self._last_commit >= self.opts.checkpoint_interval:
            self._commit()  # at once after an output was replaced: the checkpoint names the new file
        self.counts["batches"] += 1
        self._observe(time.perf_counter() - started, newest)

    def _write_outputs(self) -> None:
        self.crash("output_torn", before=self._write_half)
        for out in self.outputs.values():
            out.drain()

    def _write_half(self) -> None:
        """For the ``output_torn`` crash point: half of the biggest pending output, cut mid-line."""
        out = max(self.outputs.values(), key=lambda o: len(o.unwritten))
        os.write(out.fd, bytes(out.unwritten[: max(1, len(out.unwritten) // 2)]))

    def _commit(self) -> None:
        """Make the outputs durable, then record how far we got. A kill between the two is
        safe: the replay finds the lines written since the last checkpoint and skips them.
        A full disk (outputs or checkpoint) is waited out; nothing is read meanwhile."""
        self._durably(self._sync_and_checkpoint)
        self._dirty = False
        self._last_commit = time.monotonic()
        for out in self.outputs.values():
            out.switched = False

    def _sync_and_checkpoint(self) -> None:
        for out in self.outputs.values():
            out.drain()
            out.sync()
        self.crash("synced")
        self._checkpoint()
        self.crash("checkpointed")
        if self.metrics is not None:
            self.metrics.checkpoint_time.set(time.time())

    def _checkpoint_state(self, scorer: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "written": time.time(),
            "input": self.follower.state(),
            "outputs": {name: out.identity() for name, out in self.outputs.items()},
            "scorer": scorer,
            "sinks": {n: s.state() for n, s in self.sinks.items() if hasattr(s, "state")},
            "model": {"name": self.model.name, "version": self.model.version, "sha256": self.model.sha256},
            "counts": {**self.counts, "records": self.stats.records, "rejected": self.stats.rejected},
        }

    def _checkpoint(self) -> None:
        # The host tables first, as arrays in a file of their own (JSON of 100,000 hosts costs seconds
        # each time); the checkpoint that names them after, so a kill between leaves the old pair.
        scorer = save_scorer(self.checkpoint_path, self.scorer)
        self.crash("arrays_written")
        state = self._checkpoint_state(scorer)
        self.crash("checkpoint_write", before=lambda: self._half_written_checkpoint(state))
        write_json_atomic(self.checkpoint_path, state)
        drop_other_snapshots(self.checkpoint_path, scorer)

    def _half_written_checkpoint(self, state: dict[str, Any]) -> None:
        """For the ``checkpoint_write`` crash point: what a kill inside the atomic write leaves."""
        directory, name = os.path.split(os.path.abspath(self.checkpoint_path))
        payload = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
        with open(os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp"), "xb") as f:
            f.write(payload[: len(payload) // 2])

    # ------------------------------------------------------------------ disk full
    def _durably(self, action: Callable[[], None]) -> None:
        """Run ``action`` (writes); while the disk is full, wait and try again with a backoff.

        Any other error is raised. A stop request while the disk is full ends the wait with an
        error: what could not be written is not checkpointed, so a restart writes it.
        """

        def stopped(e: OSError) -> OSError:
            unwritten = sum(len(out.unwritten) for out in self.outputs.values())
            return OSError(
                e.errno,
                f"{e.strerror}; stopped with {unwritten} bytes of output not written: the checkpoint "
                "stays before them, a restart scores those lines again",
                e.filename,
            )

        wait_out_disk_full(action, self.stop_requested, self._disk_full, stopped)
        if self.disk_full_since is not None:
            self._disk_ok()

    def _disk_full(self, e: OSError) -> None:
        now = time.monotonic()
        unwritten = sum(len(out.unwritten) for out in self.outputs.values())
        self._disk_full_tries += 1
        if self.disk_full_since is None:
            self.disk_full_since = self._disk_full_said = now
            self._disk_full_tries = 1
            self.counts["disk_full_episodes"] += 1
            if self.metrics is not None:
                self.metrics.disk_full_episodes.inc()
            self.log(
                "disk_full",
                {
                    "file": e.filename,
                    "message": f"{e.strerror}: not reading on until it can be written; retrying every "
                    f"{DISK_FULL_BACKOFF[0]:g} to {DISK_FULL_BACKOFF[1]:g} s, nothing is lost",
                    "unwritten_bytes": unwritten,
                },
                "error",
            )
        elif now - self._disk_full_said >= DISK_FULL_REMINDER:
            self._disk_full_said = now
            self.log(
                "disk_full",
                {
                    "file": e.filename,
                    "message": f"still {e.strerror} after {now - self.disk_full_since:.0f} s",
                    "unwritten_bytes": unwritten,
                },
                "error",
            )
        if self.metrics is not None:
            self.metrics.set_health(disk_full=True, unwritten_bytes=unwritten)
            with contextlib.suppress(Exception):
                self.metrics.lag_bytes.set(self.follower.lag_bytes())

    def _disk_ok(self) -> None:
        assert self.disk_full_since is not None
        waited = time.monotonic() - self.disk_full_since
        self.disk_full_since = None
        self.log(
            "disk_ok",
            {
                "message": f"written after {waited:.1f} s ({self._disk_full_tries} tries): reading on",
                "seconds": round(waited, 3),
            },
        )
        if self.metrics is not None:
            self.metrics.set_health(disk_full=False, unwritten_bytes=0)

    # ------------------------------------------------------------------ reopen, stop
    def _reopen(self) -> None:
        self.reopen_requested = False
        if self._dirty:
            self._commit()

        def reopen_all() -> None:
            for out in self.outputs.values():
                out.reopen()

        self._durably(reopen_all)
        self._commit()
        self.log("reopened", {"message": "outputs checked (SIGHUP)", "files": ",".join(self.outputs)})

    def _finish(self) -> None:
        """A clean stop: SIGTERM keeps open incidents in the checkpoint for the next start; the end
        of a catch-up run (--exit-when-idle) writes them, as offline scoring does at its end."""
        for name in ("notice", "verdicts"):
            if name in self.sinks:
                self.sinks[name].close(final=self.run_ended)
        self._commit()

    def _close(self, clean: bool) -> None:
        """Let go of files and threads. After a failure nothing is written: no checkpoint past it."""
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(timeout=2)
        for out in self.outputs.values():
            with contextlib.suppress(OSError):
                out.close()
        with contextlib.suppress(Exception):
            self.follower.close()
        if self._model_pool is not None:
            self._model_pool.shutdown(wait=True)
        if clean:
            self.log(
                "stopped",
                {
                    "records": self.stats.records,
                    "rejected": self.stats.rejected,
                    "scored": self.counts["scored"],
                    "notices": self.counts["notices"],
                },
            )

    # ------------------------------------------------------------------ signals, events, metrics
    def install_signals(self) -> None:
        def stop(signum: int, frame: Any) -> None:
            self.log("signal", {"message": f"{signal.Signals(signum).name}: draining and stopping"})
            self.stop_requested.set()
            self.wake.set()

        def hup(signum: int, frame: Any) -> None:
            self.reopen_requested = True
            self.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    def _start_events(self, directory: str) -> None:
        if not self.opts.use_events:
            return
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return
        wake = self.wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                wake.set()

        try:
            observer = Observer()
            observer.schedule(Handler(), directory, recursive=False)
            queue = os.path.join(directory, "log-queue")
            if os.path.isdir(queue):
                observer.schedule(Handler(), queue, recursive=False)
            observer.daemon = True
            observer.start()
        except OSError as e:
            self.log(
                "polling", {"message": f"no file-system events ({e}); polling every {self.opts.poll_interval:g} s"}
            )
            return
        self._observer = observer

    def _start_metrics(self) -> None:
        if not self.opts.metrics:
            return
        from zeek_ml.services.watch.metrics import WatchMetrics

        self.metrics = WatchMetrics(self.opts.metrics)
        self.metrics.set_health(disk_full=False, unwritten_bytes=0)
        self.log("metrics", {"message": f"Prometheus metrics on http://{self.metrics.address}/metrics"})

    def _observe(self, seconds: float, newest_end: float) -> None:
        if self.metrics is None:
            return
        self.metrics.update(
            records=self.stats.records,
            scored=self.counts["scored"],
            rejected=self.stats.rejected,
            notices=self.counts["notices"],
            lag_seconds=(time.time() - newest_end) if np.isfinite(newest_end) else None,
            lag_bytes=self.follower.lag_bytes(),
            batch_seconds=seconds,
        )


def _where(segments: list[Segment]) -> str:
    """``FILE lines A-B`` for the lines of a batch (for an error message)."""
    spans: dict[str, list[int]] = {}
    for seg in segments:
        last = seg.first_line + max(0, seg.data.count(b"\n") - (1 if seg.data.endswith(b"\n") else 0))
        span = spans.setdefault(seg.file.path, [seg.first_line, last])
        span[0], span[1] = min(span[0], seg.first_line), max(span[1], last)
    return ", ".join(f"{path} lines {a}-{b}" for path, (a, b) in spans.items()) or "a batch"


def _close_line() -> bytes:
    return f"#close\t{zeek_time_string(time.time())}\n".encode()


class FlushingLog(AppendLog):
    """An :class:`AppendLog` written at each flush, for a service without a checkpoint (``zeek-ml broker -o``)."""

    def flush(self) -> None:
        self.drain()


def appending_writer(
    path: str,
    fmt: str = "tsv",
    json_ts: str = "epoch",
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    *,
    log_class: type[AppendLog] = FlushingLog,
    on_open: Callable[[AppendLog], None] | None = None,
) -> Callable[[str, Any], ZeekLogWriter]:
    """A writer factory that appends to ``path`` across restarts (its header written only to a new file; a file
    with another header or format moved aside): never truncated, never through a link, followed through
    logrotate. ``log_class`` is the file (:class:`FlushingLog`, written at each flush; ``watch`` drains its
    :class:`AppendLog` itself), ``on_open`` sees it once opened."""

    def make(zeek_path: str, fields: Any) -> ZeekLogWriter:
        probe = ZeekLogWriter(_Null(), zeek_path, fields, fmt=fmt, json_ts=json_ts, header=False)
        out = log_class(
            path, header=probe.header_bytes(), trailer=_close_line if fmt == "tsv" else b"", on_event=on_event
        )
        if on_open is not None:
            on_open(out)
        return ZeekLogWriter(out, zeek_path, fields, fmt=fmt, json_ts=json_ts, header=False, close_line=False)

    return make


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass
