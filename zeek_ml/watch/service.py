"""``zeek-ml watch``: score a live Zeek conn.log (or Suricata eve.json) as it is written.

One loop, one thread doing the work: read the whole lines available (across
rotations), parse, score, append to the outputs, fsync them, then write the
checkpoint. Watchdog (inotify) wakes the loop when the directory changes; a
short poll covers file systems that send no events. SIGTERM/SIGINT drain and
stop cleanly (exit 0); SIGHUP reopens the outputs after logrotate moved them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.pipeline import Scorer
from zeek_ml.sinks import EnrichedSink, build_notice_sink, enriched_fields, match_sensor
from zeek_ml.watch.durable import AppendLog, read_json, write_json_atomic
from zeek_ml.watch.tail import LogFollower, Segment
from zeek_ml.zeeklog.reader import ReadStats, RejectLog, _Context, make_parser, sniff_format
from zeek_ml.zeeklog.writer import ZeekLogWriter, zeek_time_string

CHECKPOINT_VERSION = 1

LIVE_NAMES = ("conn.log", "eve.json")
"""What to follow in a directory: Zeek's live conn.log, else Suricata's eve.json."""


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
    checkpoint_interval: float = 1.0
    """Fsync the outputs and write the checkpoint at most this often while lines keep coming (and
    at once when they stop); 0: after every batch. Exactly once either way."""
    notice_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of :func:`zeek_ml.sinks.build_notice_sink` (aggregation, severity, profile)."""


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
        self.counts = {"notices": 0, "scored": 0, "batches": 0, "missed_files": 0, "replayed_lines_skipped": 0}
        self.metrics: Any = None
        self.checkpoint_path = options.checkpoint or f"{options.notice_out}.checkpoint.json"
        self._observer: Any = None
        self._last_data = time.monotonic()
        self.run_ended = False
        self._dirty = False
        self._last_commit = time.monotonic()

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
        self.outputs: dict[str, AppendLog] = {}
        self.scorer = Scorer(self.model, o.threshold)

        def live_writer(name: str) -> Callable[[str, Any], ZeekLogWriter]:
            fmt = "json" if o.fmt == "eve" else o.fmt  # --all has no eve form: JSON lines

            def make(zeek_path: str, fields: Any) -> ZeekLogWriter:
                probe = ZeekLogWriter(_Null(), zeek_path, fields, fmt=fmt, json_ts=o.json_ts, header=False)
                out = AppendLog(
                    self._output_path(name),
                    header=probe.header_bytes(),
                    trailer=_close_line if fmt == "tsv" else b"",
                )
                self._register(name, out)
                return ZeekLogWriter(out, zeek_path, fields, fmt=fmt, json_ts=o.json_ts, header=False, close_line=False)

            return make

        if o.fmt == "eve":  # Suricata-style alert events (no header, no #close)
            from zeek_ml.suricata import EveAlertSink

            alerts = AppendLog(o.notice_out)
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
            from zeek_ml.verdicts import verdict_file_header, verdict_file_sink

            verdict_file = AppendLog(o.verdicts_out, header=verdict_file_header())  # no #close: Zeek follows it
            self._register("verdicts", verdict_file)
            # The same notices as the notice log (incidents by default), as lines Zeek turns into NOTICEs.
            self.sinks["verdicts"] = verdict_file_sink(verdict_file, **o.notice_options)
        rejects_target = None
        if o.rejects_out:
            rejects_target = AppendLog(o.rejects_out)
            self._register("rejects", rejects_target)
        self.rejects = RejectLog(strict=o.strict, target=rejects_target)
        self.ctx = _Context(self.rejects, self.stats, o.batch_bytes, True, None)

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
        level = "warning" if kind in ("file_missing", "file_truncated") else "info"
        if kind == "file_missing":
            self.counts["missed_files"] += 1
        self.log(kind, info, level)

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        o = self.opts
        live = self._wait_for_path()
        if live is None:
            return 0
        self._resolve_format(live)
        self._open_outputs()
        self.follower = LogFollower(
            live,
            self._make_parser,
            rotated_dirs=o.rotated_dirs,
            batch_bytes=o.batch_bytes,
            from_end=o.from_end,
            on_event=self._on_follower_event,
        )
        self._restore()
        self._start_metrics()
        self._start_events(os.path.dirname(live))
        self.log("started", {"file": live, "checkpoint": self.checkpoint_path, "notice_log": o.notice_out})
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

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
            self._checkpoint()
            return
        if saved.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"{self.checkpoint_path}: checkpoint version {saved.get('version')} is not {CHECKPOINT_VERSION}"
            )
        self.follower.restore(saved.get("input"))
        self.scorer.restore(saved.get("scorer") or {})
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
                self._process(segments)
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
        started = time.perf_counter()
        frames: list[pd.DataFrame] = []
        for seg in segments:
            frames.extend(f for f in seg.file.parser.feed(seg.data, seg.first_line, seg.final) if len(f))
        newest = np.nan
        for frame in frames:
            verdicts = self.scorer(frame)
            self.counts["scored"] += len(frame)
            for name, sink in self.sinks.items():
                written = sink.write(verdicts)
                if name == "notice":
                    self.counts["notices"] += written
            if self.metrics is not None:  # lag: the end of the newest connection scored
                ends = frame["ts"].to_numpy(dtype=float, na_value=np.nan) + frame["duration"].to_numpy(
                    dtype=float, na_value=0.0
                )
                if len(ends) and not np.all(np.isnan(ends)):
                    newest = np.nanmax([newest, np.nanmax(ends)])
        self._dirty = True
        if time.monotonic() - self._last_commit >= self.opts.checkpoint_interval:
            self._commit()
        self.counts["batches"] += 1
        self._observe(time.perf_counter() - started, newest)

    def _commit(self) -> None:
        """Make the outputs durable, then record how far we got. A kill between the two is
        safe: the replay finds the lines written since the last checkpoint and skips them."""
        for out in self.outputs.values():
            out.sync()
        self._checkpoint()
        self._dirty = False
        self._last_commit = time.monotonic()

    def _checkpoint(self) -> None:
        state = {
            "version": CHECKPOINT_VERSION,
            "written": time.time(),
            "input": self.follower.state(),
            "outputs": {name: out.identity() for name, out in self.outputs.items()},
            "scorer": self.scorer.state(),
            "sinks": {n: s.state() for n, s in self.sinks.items() if hasattr(s, "state")},
            "model": {"name": self.model.name, "version": self.model.version, "sha256": self.model.sha256},
            "counts": {**self.counts, "records": self.stats.records, "rejected": self.stats.rejected},
        }
        write_json_atomic(self.checkpoint_path, state)

    def _reopen(self) -> None:
        self.reopen_requested = False
        if self._dirty:
            self._commit()
        for out in self.outputs.values():
            out.reopen()
        self._checkpoint()
        self.log("reopened", {"message": "outputs reopened (SIGHUP)", "files": ",".join(self.outputs)})

    def _shutdown(self) -> None:
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(timeout=2)
        # A stop (SIGTERM) keeps open incidents in the checkpoint for the next start; the end of a
        # catch-up run (--exit-when-idle) writes them, as offline scoring does at its end.
        for name in ("notice", "verdicts"):
            if name in self.sinks:
                self.sinks[name].close(final=self.run_ended)
        for out in self.outputs.values():
            out.sync()
        with contextlib.suppress(Exception):
            self._checkpoint()
        for out in self.outputs.values():
            out.close()
        self.follower.close()
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
        from zeek_ml.watch.metrics import WatchMetrics

        self.metrics = WatchMetrics(self.opts.metrics)
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


def _close_line() -> bytes:
    return f"#close\t{zeek_time_string(time.time())}\n".encode()


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass
