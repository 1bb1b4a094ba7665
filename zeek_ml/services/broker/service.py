"""The ``zeek-ml broker`` loop: conn events in, verdict events out.

Two threads. The receiver drains the transport as fast as events come (so the
backlog sits in our queue, where it is counted, rather than in the sender's
Broker buffers, where it is not): it checks and decodes each message
(:class:`~zeek_ml.sources.broker.ConnDecoder`: every value against the record
definition) and queues the valid connections in a bounded queue. A message
that is not a valid ``ZeekML::conn_finished`` event never reaches the model: it
is counted by kind (``malformed``, and per kind in the metrics), the first of
each kind is logged with its reason, repeats are summed up at most once per
``status_interval``, and it is dropped; the rest of the stream goes on, in
order. When the queue is full, new events are dropped and counted (``dropped``).

The scorer takes up to ``batch_size`` connections (or what arrived within
``max_wait`` seconds), builds a frame in the conn schema, scores it, and queues
a ``ZeekML::verdict`` event per flagged connection, then one ``ZeekML::scored``
acknowledgment listing the batch's uids. Those wait in a bounded outbox until a
peer is connected and are published in one batch, so verdicts for events
already received survive a lost peer and go out when it (or Zeek after a
restart) peers again. Should the model still fail on a batch (it should not: its
input is checked), the batch is scored again one connection at a time and only
the connections it cannot take are dropped, counted as ``model.error``.

Order: the model is stateful (per-host temporal context), so a connection's
score depends on the connections before it. Events are scored exactly in the
order they arrive (one subscriber, a FIFO queue, batches taken from its front,
malformed events dropped without reordering the rest) by one
:class:`~zeek_ml.model.scorer.Scorer` for the whole stream: the scores equal
``zeek-ml score`` over the same rows in the same order, whatever the batch sizes.

What is not kept across a restart of ``zeek-ml broker`` itself: events still in
Broker's buffers or in our queue, and verdicts in the outbox, live in memory
only (Broker persists nothing). An event is safe once its uid was in a
``ZeekML::scored`` acknowledgment a peer received: its verdict, if any, went out
before the acknowledgment on the same path.

With a state file (``state_path``), the model's context survives a restart:
after each batch is scored, and before any of its events can leave, the
scorer's state is written atomically together with the uids of the last
``state_recent`` scored connections and their verdicts. A sender that resends
what was never acknowledged gets, for a uid already in that list, the stored
verdict and an acknowledgment, without the connection entering the context a
second time; the rest is scored with the restored context. So scores after a
restart equal offline ones. Without a state file the context starts empty.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.formats.records import (
    ACK_EVENT,
    ACK_TOPIC,
    CONN_EVENT,
    CONN_TOPIC,
    VERDICT_EVENT,
    VERDICT_FIELDS,
    VERDICT_TOPIC,
)
from zeek_ml.formats.safeio import write_json_atomic
from zeek_ml.formats.schema import MAX_VALUE_CHARS
from zeek_ml.model.scorer import Scorer, Sink, Verdicts, plain
from zeek_ml.services.broker.transport import Transport
from zeek_ml.services.durable import (
    DISK_FULL_REMINDER,
    drop_other_snapshots,
    is_disk_full,
    read_json,
    restore_scorer,
    save_scorer,
    wait_out_disk_full,
)
from zeek_ml.sinks.verdict_file import verdict_rows
from zeek_ml.sources.broker import ForeignEvent, Rejected, clip, conn_frame

STATE_ENV = "ZEEK_ML_BROKER_STATE"
"""Environment variable naming the state file when ``state_path`` is not given."""
STATE_VERSION = 2
"""2: the host context's tables are an arrays file beside the state file (1, JSON only, is still read)."""
PUBLISH_CHUNK = 10_000
"""Most messages handed to Broker in one ``publish_batch``."""
TAKE_CHUNK = 1000
"""Received messages decoded and queued at a time."""

_ROW_TS = 0
_ROW_DURATION = 8
"""Where ``ts`` and ``duration`` sit in a decoded row (the order of :data:`~zeek_ml.formats.records.CONN_FIELDS`)."""


@dataclass
class BrokerOptions:
    """What ``zeek-ml broker`` was asked to do."""

    conn_topic: str = CONN_TOPIC
    verdict_topic: str = VERDICT_TOPIC
    ack_topic: str = ACK_TOPIC
    threshold: float | None = None
    batch_size: int = 1000
    max_wait: float = 0.5
    """Seconds a partial batch waits for more events before it is scored."""
    queue_size: int = 100_000
    """Most connections waiting to be scored; beyond, new ones are dropped and counted (``dropped``)."""
    outbox_size: int = 100_000
    """Most events waiting for a peer; beyond, new ones are dropped and counted (``outbox_dropped``)."""
    status_interval: float = 60.0
    """Seconds between status lines; also the most often repeats of a malformed kind are summed up."""
    log_json: bool = False
    state_path: str | None = None
    """Persist the scorer's context here (atomically, after each batch); default: ``$ZEEK_ML_BROKER_STATE``."""
    state_recent: int = 10_000
    """Most recently scored connections whose verdicts the state file keeps, to answer a resend after a crash."""


class KindLog:
    """Rate-limited warnings: the first occurrence of each kind is logged with its detail, later ones
    are counted and summed up in one line at most once per ``interval`` seconds (and at exit)."""

    def __init__(self, service: BrokerService, event: str, interval: float):
        self.service = service
        self.event = event
        self.interval = interval
        self.seen: set[str] = set()
        self.repeats: collections.Counter[str] = collections.Counter()
        self.last = time.monotonic()

    def note(self, kind: str, info: dict[str, Any]) -> None:
        if kind in self.seen:
            self.repeats[kind] += 1
            return
        self.seen.add(kind)
        message = "first of its kind; repeats are counted and summed up"
        self.service.log(self.event, {"kind": kind, **info, "message": message}, "warning")

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.repeats and (force or now - self.last >= self.interval):
            self.service.log(self.event + "_repeats", dict(sorted(self.repeats.items())), "warning")
            self.repeats.clear()
            self.last = now


class BrokerService:
    """Receive ``ZeekML::conn_finished``, score in batches, publish ``ZeekML::verdict`` and ``ZeekML::scored``."""

    def __init__(self, transport: Transport, model: Any, options: BrokerOptions, sinks: dict[str, Sink] | None = None):
        self.transport = transport
        self.opts = options
        self.scorer = Scorer(model, options.threshold)
        self.sinks = dict(sinks or {})
        self.queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self.arrivals: collections.deque[list[float | int]] = collections.deque()
        """[monotonic arrival time, connections] per received chunk still (partly) queued."""
        self.outbox: collections.deque[Any] = collections.deque()
        self.lock = threading.Condition()
        self.stop_requested = threading.Event()
        self.counts = {
            "received": 0,
            "dropped": 0,
            "malformed": 0,
            "other_events": 0,
            "capped": 0,
            "scored": 0,
            "verdicts": 0,
            "published": 0,
            "outbox_dropped": 0,
            "batches": 0,
            "replayed": 0,
            "peer_overflows": 0,
        }
        self.malformed_kinds: collections.Counter[str] = collections.Counter()
        """Malformed events by kind (``orig_bytes.range``, ``event.arity``...: :class:`~.codec.Rejected`)."""
        self.newest_scored_end: float | None = None
        """End (``ts + duration``) of the newest connection scored, for ``lag_seconds``."""
        self.receive_delay: float | None = None
        """At the last receive: wall clock minus the end of the newest connection received."""
        self._receiver: threading.Thread | None = None
        self._was_connected = False
        self._malformed_log = KindLog(self, "malformed_event", options.status_interval)
        self._error_log = KindLog(self, "internal_error", options.status_interval)
        self._capped_seen: dict[str, int] = {}
        self.state_path = options.state_path or os.environ.get(STATE_ENV) or None
        self.recent: collections.OrderedDict[str, dict[str, Any] | None] = collections.OrderedDict()
        """uid -> its verdict (None when not flagged) for the last ``state_recent`` scored connections."""

    # ------------------------------------------------------------------ state
    def _model_id(self) -> dict[str, Any]:
        m = self.scorer.model
        return {"model": str(m.name), "model_version": str(m.version), "threshold": self.scorer.threshold}

    def load_state(self) -> None:
        """Resume the scorer's context from the state file, if there is one for this model and threshold."""
        if not self.state_path:
            return
        saved = read_json(self.state_path)
        if saved is None:
            self.log("state_new", {"path": self.state_path})
            return
        if saved.get("version") not in (1, STATE_VERSION) or saved.get("id") != self._model_id():
            self.log(
                "state_ignored",
                {"path": self.state_path, "message": "written for another model or threshold; context starts empty"},
                "warning",
            )
            return
        restore_scorer(self.state_path, self.scorer, saved.get("context") or {})
        for uid, verdict in saved.get("recent") or []:
            self.recent[str(uid)] = verdict
        self.log("state_restored", {"path": self.state_path, "recent": len(self.recent)})

    def save_state(self) -> None:
        if not self.state_path:
            return
        context = save_scorer(self.state_path, self.scorer)  # host tables as arrays beside it, as watch's
        write_json_atomic(
            self.state_path,
            {
                "version": STATE_VERSION,
                "id": self._model_id(),
                "context": context,
                "recent": [[uid, v] for uid, v in self.recent.items()],
            },
        )
        drop_other_snapshots(self.state_path, context)

    def _durably(self, write: Any, what: str) -> None:
        """``write()``, waiting out a full disk or quota as ``watch`` does (logged, retried with a backoff; the
        batch's verdicts wait with it); any other error, or a stop while the disk is full, is raised."""
        since, said = time.monotonic(), [0.0]

        def full(e: OSError) -> None:
            now = time.monotonic()
            if not said[0] or now - said[0] >= DISK_FULL_REMINDER:
                info = {"what": what, "file": e.filename, "error": e.strerror, "waited_s": round(now - since)}
                self.log("disk_full", info, "warning")
                said[0] = now

        if wait_out_disk_full(write, self.stop_requested, full):
            self.log("disk_ok", {"what": what, "waited_s": round(time.monotonic() - since, 1)})

    # ------------------------------------------------------------------ log
    def log(self, event: str, info: dict[str, Any] | None = None, level: str = "info") -> None:
        """One line on stderr: ``zeek-ml broker: LEVEL: EVENT (k=v ...)``, or a JSON object (``--log-format json``)."""
        info = dict(info or {})
        if self.opts.log_json:
            line = json.dumps({"ts": round(time.time(), 6), "level": level, "event": event, **info}, default=str)
        else:
            fields = " ".join(f"{k}={v}" for k, v in info.items())
            line = f"zeek-ml broker: {level}: {event}" + (f" ({fields})" if fields else "")
        print(line, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ receiver thread
    def _receive_loop(self) -> None:
        """Check, decode and queue what peers send; log the status line every ``status_interval`` (live,
        even while a batch fills for ``max_wait``). Nothing a peer sends can stop this loop."""
        last_status = time.monotonic()
        while not self.stop_requested.is_set():
            if time.monotonic() - last_status >= self.opts.status_interval:
                self.log("status", self.status())
                self._malformed_log.flush()
                self._error_log.flush()
                last_status = time.monotonic()
            try:
                self._peer_statuses()
                messages = self.transport.receive(0.2)
                for start in range(0, len(messages), TAKE_CHUNK):  # the scorer may start on the first ones
                    self._take(messages[start : start + TAKE_CHUNK])
            except Exception as e:  # keep receiving; say why, once per kind
                self._error_log.note("receive." + type(e).__name__, {"error": clip(str(e), 200)})
                time.sleep(0.2)

    def _peer_statuses(self) -> None:
        """Log what Broker says about peers; count the peerings it dropped because a buffer overflowed."""
        for text in self.transport.statuses():
            overflow = "overflow" in text
            if overflow:
                with self.lock:
                    self.counts["peer_overflows"] += 1
            level = "warning" if overflow or "removed" in text or "lost" in text or "error" in text else "info"
            self.log("broker_status", {"status": clip(text, 300)}, level)

    def _take(self, messages: list[Any]) -> None:
        """Decode ``messages`` in order and queue the valid connections; count everything else."""
        room = self.opts.queue_size - len(self.queue)  # only this thread adds: room can only grow meanwhile
        rows: list[tuple[Any, ...]] = []
        rejected: list[Rejected] = []
        foreign: list[str] = []
        dropped = 0
        decode = self.transport.decode
        for message in messages:
            if len(rows) >= room:
                dropped += 1
                continue
            try:
                rows.append(decode(message))
            except Rejected as r:
                rejected.append(r)
            except ForeignEvent as f:
                foreign.append(f.name)
            except Exception as e:  # a check we lack must not stop the stream: the message is dropped
                rejected.append(Rejected("message.undecodable", f"{type(e).__name__}: {clip(str(e), 120)}"))
        now = time.time()
        newest = max((r[_ROW_TS] + (r[_ROW_DURATION] or 0.0) for r in rows), default=None)
        with self.lock:
            if rows:
                self.queue.extend(rows)
                self.arrivals.append([time.monotonic(), len(rows)])
                self.counts["received"] += len(rows)
            self.counts["dropped"] += dropped
            self.counts["malformed"] += len(rejected)
            self.counts["other_events"] += len(foreign)
            for r in rejected:
                self.malformed_kinds[r.kind] += 1
            if newest is not None:
                self.receive_delay = now - newest
            self.lock.notify_all()
        for r in rejected:
            info: dict[str, Any] = {"reason": clip(r.reason, 200)}
            if r.uid is not None:
                info["uid"] = clip(r.uid, 40)
            self._malformed_log.note(r.kind, info)
        for name in foreign:
            self._malformed_log.note("other_event", {"name": clip(name, 80), "reason": f"not {CONN_EVENT}"})
        capped = self.transport.capped()
        if capped != self._capped_seen:
            for field in capped.keys() - self._capped_seen.keys():
                message = f"strings longer than {MAX_VALUE_CHARS} characters cut, as the log reader cuts them; counted"
                self.log("capped", {"field": field, "message": message}, "warning")
            with self.lock:
                self.counts["capped"] = sum(capped.values())
            self._capped_seen = capped

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        self.load_state()
        self.transport.start()
        self.log("started", {"transport": self.transport.describe(), "conn_topic": self.opts.conn_topic})
        self._receiver = threading.Thread(target=self._receive_loop, name="zeek-ml-broker-receive", daemon=True)
        self._receiver.start()
        failed = True
        try:
            while not self.stop_requested.is_set():
                batch = self._next_batch()
                if batch:
                    self._score(batch)
                self._flush_outbox()
            failed = False
        finally:
            self._shutdown(failed)
        return 0

    def _pop(self, n: int) -> list[tuple[Any, ...]]:
        """The first ``n`` queued rows (the lock held)."""
        rows = [self.queue.popleft() for _ in range(n)]
        while n and self.arrivals:
            chunk = self.arrivals[0]
            take = min(n, int(chunk[1]))
            chunk[1] -= take
            n -= take
            if not chunk[1]:
                self.arrivals.popleft()
        return rows

    def _next_batch(self) -> list[tuple[Any, ...]]:
        """Up to ``batch_size`` queued rows, once the batch is full or ``max_wait`` has passed."""
        o = self.opts
        with self.lock:
            if not self.queue:
                self.lock.wait(0.2)
                if not self.queue:
                    return []
            deadline = time.monotonic() + o.max_wait
            while len(self.queue) < o.batch_size and not self.stop_requested.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.lock.wait(min(left, 0.2))
            return self._pop(min(len(self.queue), o.batch_size))

    def _score(self, rows: list[tuple[Any, ...]]) -> None:
        """Score ``rows`` in the order given, queue their verdicts and the batch's acknowledgment."""
        frame = conn_frame(rows)
        uids = [str(u) for u in frame["uid"].tolist()]
        # A resend of a connection scored before a restart (its context is in the restored state):
        # answer with the stored verdict, never feed it to the context twice.
        replay = np.array([u in self.recent for u in uids], dtype=bool)
        stored = [self.recent[u] for u in np.asarray(uids, dtype=object)[replay]]
        fresh = frame[~replay].reset_index(drop=True) if replay.any() else frame
        out: list[dict[str, Any]] = [v for v in stored if v is not None]
        scored_uids: list[str] = []
        if len(fresh):
            for part, verdicts, rows in self._model(fresh):
                self._emit(part, verdicts, rows)
                out += rows
                scored_uids += [str(u) for u in part["uid"].tolist()]
            if self.state_path:
                self._durably(self.save_state, "state")  # before any of this batch's events can leave
        with self.lock:
            self.counts["replayed"] += int(np.count_nonzero(replay))
            self.counts["verdicts"] += len(out)
        scored = set(scored_uids)
        acked = [u for u, r in zip(uids, replay) if r or u in scored]
        messages: list[Any] = []
        if out:
            table = pd.DataFrame(out, columns=[f.name for f in VERDICT_FIELDS])
            messages += self.transport.verdict_messages(self.opts.verdict_topic, VERDICT_EVENT, table)
        messages.append(self.transport.ack_message(self.opts.ack_topic, ACK_EVENT, acked))
        with self.lock:
            room = max(0, self.opts.outbox_size - len(self.outbox))
            self.outbox.extend(messages[:room])
            self.counts["outbox_dropped"] += len(messages) - min(room, len(messages))

    def _model(self, frame: pd.DataFrame) -> list[tuple[pd.DataFrame, Verdicts, list[dict[str, Any]]]]:
        """``frame`` scored: [(frame, verdicts, verdict rows)]. Should the model fail on it, one connection
        at a time, without the connections it fails on (counted ``model.error``, logged once per type)."""
        try:
            return [(frame, *self._verdicts(frame))]
        except Exception as e:
            self._error_log.note("model." + type(e).__name__, {"error": clip(str(e), 200), "rows": len(frame)})
        parts = []
        for i in range(len(frame)):
            one = frame.iloc[i : i + 1].reset_index(drop=True)
            try:
                parts.append((one, *self._verdicts(one)))
            except Exception as e:
                with self.lock:
                    self.counts["malformed"] += 1
                    self.malformed_kinds["model.error"] += 1
                self._malformed_log.note("model.error", {"uid": clip(one["uid"].iloc[0], 40), "error": clip(str(e))})
        return parts

    def _verdicts(self, frame: pd.DataFrame) -> tuple[Verdicts, list[dict[str, Any]]]:
        """The model's verdicts on ``frame`` and the ``ZeekML::Verdict`` rows of its flagged connections."""
        verdicts = self.scorer(frame)
        flagged = verdicts.flagged
        rows = verdict_rows(verdicts.take(flagged)).to_dict("records") if flagged.any() else []
        return verdicts, rows

    def _emit(self, frame: pd.DataFrame, verdicts: Verdicts, rows: list[dict[str, Any]]) -> None:
        """Count a scored part, write it to the sinks and remember its verdicts for a resend."""
        for sink in self.sinks.values():
            try:
                sink.write(verdicts)  # buffered whole in the log before it is drained
            except OSError as e:
                if not is_disk_full(e):
                    raise
            self._durably(sink.flush, "notice log")  # the drain resumes at the exact byte
        ends = frame["ts"].to_numpy(dtype=float) + np.nan_to_num(frame["duration"].to_numpy(dtype=float))
        newest = float(np.nanmax(ends)) if len(ends) and np.isfinite(ends).any() else None
        with self.lock:
            self.counts["scored"] += len(frame)
            self.counts["batches"] += 1
            if newest is not None and (self.newest_scored_end is None or newest > self.newest_scored_end):
                self.newest_scored_end = newest
        if self.state_path:
            by_uid = {r["uid"]: {k: _jsonable(v) for k, v in r.items()} for r in rows}
            for uid in frame["uid"].tolist():
                self.recent[str(uid)] = by_uid.get(uid)
                self.recent.move_to_end(str(uid))
            while len(self.recent) > self.opts.state_recent:
                self.recent.popitem(last=False)

    def _flush_outbox(self) -> None:
        connected = self.transport.connected()
        if connected != self._was_connected:
            if connected:
                self.log("peer_connected", {"outbox": len(self.outbox)})
            else:
                self.log("peer_lost", {"outbox": len(self.outbox), "message": "holding verdicts until a peer is back"})
            self._was_connected = connected
        if not connected:
            return
        while self.outbox:
            with self.lock:
                chunk = [self.outbox.popleft() for _ in range(min(len(self.outbox), PUBLISH_CHUNK))]
            self.transport.publish(chunk)
            with self.lock:
                self.counts["published"] += len(chunk)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, int]:
        """The counters, plus Broker's backlog and the queue and outbox lengths now (whole numbers)."""
        backlog = self._backlog()
        with self.lock:
            return {**self.counts, "backlog": backlog, "queued": len(self.queue), "outbox": len(self.outbox)}

    def _backlog(self) -> int:
        try:
            return int(self.transport.backlog())
        except Exception:
            return 0

    def snapshot(self) -> dict[str, Any]:
        """Everything the metrics show, read at once: counters, kinds, lengths, lags (seconds or None)."""
        backlog = self._backlog()
        try:
            peers = int(self.transport.peer_count())
        except Exception:
            peers = 0
        now_wall, now = time.time(), time.monotonic()
        with self.lock:
            oldest = self.arrivals[0][0] if self.arrivals else None
            lag = None if self.newest_scored_end is None else max(0.0, now_wall - self.newest_scored_end)
            return {
                "counts": dict(self.counts),
                "malformed_kinds": dict(self.malformed_kinds),
                "capped": dict(self._capped_seen),
                "queued": len(self.queue),
                "queue_size": self.opts.queue_size,
                "outbox": len(self.outbox),
                "outbox_size": self.opts.outbox_size,
                "backlog": backlog,
                "peers": peers,
                "queue_wait_seconds": 0.0 if oldest is None else now - float(oldest),
                "lag_seconds": lag,
                "receive_delay_seconds": self.receive_delay,
            }

    def request_stop(self) -> None:
        self.stop_requested.set()
        with self.lock:
            self.lock.notify_all()

    def _shutdown(self, failed: bool = False) -> None:
        """Score what was received (not after a failure: it would fail again), publish, close everything."""
        self.stop_requested.set()
        if self._receiver is not None:
            self._receiver.join(timeout=2)
        try:
            while self.queue and not failed:  # score what was received
                with self.lock:
                    rows = self._pop(min(len(self.queue), self.opts.batch_size))
                self._score(rows)
        finally:
            self._close()

    def _close(self) -> None:
        deadline = time.monotonic() + 5.0
        while self.outbox and time.monotonic() < deadline:
            self._flush_outbox()
            if self.outbox:
                time.sleep(0.1)
        if self.outbox:
            self.log("unsent", {"outbox": len(self.outbox), "message": "no peer for the last verdicts"}, "warning")
        time.sleep(0.2)  # let Broker hand the last events to the peer
        self.transport.close()
        for sink in self.sinks.values():
            sink.close()
        self._malformed_log.flush(force=True)
        self._error_log.flush(force=True)
        if self.malformed_kinds:
            self.log("malformed_summary", dict(sorted(self.malformed_kinds.items())))
        self.log("stopped", self.status())


def _jsonable(value: Any) -> Any:
    """A verdict row's cell as JSON: numpy scalars unwrapped, NaN -> None, lists of plain values."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    return plain(value)
