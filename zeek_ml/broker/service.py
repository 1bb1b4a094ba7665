"""The ``zeek-ml broker`` loop: conn events in, verdict events out.

Two threads. The receiver drains the transport into a bounded queue as fast as
events come (so Zeek's side never backs up on us); when the queue is full, new
events are dropped and counted (``dropped``). The scorer takes up to
``batch_size`` events (or what arrived within ``max_wait`` seconds), builds a
frame in the conn schema, scores it, and queues a ``ZeekML::verdict`` event per
flagged connection, then one ``ZeekML::scored`` acknowledgment listing the
batch's uids. Those wait in a bounded outbox until a peer is connected, so
verdicts for events already received survive a lost peer and go out when it
(or Zeek after a restart) peers again.

Order: the model is stateful (per-host temporal context), so a connection's
score depends on the connections before it. Events are scored exactly in the
order they arrive (one subscriber, a FIFO queue, batches taken from its front,
malformed records dropped without reordering the rest) by one
:class:`~zeek_ml.pipeline.Scorer` for the whole stream: the scores equal
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

from zeek_ml.broker.codec import MalformedEvent, conn_frame
from zeek_ml.broker.transport import Event, Transport
from zeek_ml.pipeline import Scorer, Sink, plain
from zeek_ml.verdicts import (
    ACK_EVENT,
    ACK_TOPIC,
    CONN_EVENT,
    CONN_TOPIC,
    VERDICT_EVENT,
    VERDICT_FIELDS,
    VERDICT_TOPIC,
    verdict_rows,
)
from zeek_ml.watch.durable import read_json, write_json_atomic

STATE_ENV = "ZEEK_ML_BROKER_STATE"
"""Environment variable naming the state file when ``state_path`` is not given."""
STATE_VERSION = 1


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
    log_json: bool = False
    state_path: str | None = None
    """Persist the scorer's context here (atomically, after each batch); default: ``$ZEEK_ML_BROKER_STATE``."""
    state_recent: int = 10_000
    """Most recently scored connections whose verdicts the state file keeps, to answer a resend after a crash."""


class BrokerService:
    """Receive ``ZeekML::conn_finished``, score in batches, publish ``ZeekML::verdict`` and ``ZeekML::scored``."""

    def __init__(self, transport: Transport, model: Any, options: BrokerOptions, sinks: dict[str, Sink] | None = None):
        self.transport = transport
        self.opts = options
        self.scorer = Scorer(model, options.threshold)
        self.sinks = dict(sinks or {})
        self.queue: collections.deque[Any] = collections.deque()
        self.outbox: collections.deque[tuple[str, Event]] = collections.deque()
        self.lock = threading.Condition()
        self.stop_requested = threading.Event()
        self.counts = {
            "received": 0,
            "dropped": 0,
            "malformed": 0,
            "other_events": 0,
            "scored": 0,
            "verdicts": 0,
            "published": 0,
            "outbox_dropped": 0,
            "batches": 0,
        }
        self._receiver: threading.Thread | None = None
        self._was_connected = False
        self.state_path = options.state_path or os.environ.get(STATE_ENV) or None
        self.recent: collections.OrderedDict[str, dict[str, Any] | None] = collections.OrderedDict()
        """uid -> its verdict (None when not flagged) for the last ``state_recent`` scored connections."""
        self.counts["replayed"] = 0

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
        if saved.get("version") != STATE_VERSION or saved.get("id") != self._model_id():
            self.log(
                "state_ignored",
                {"path": self.state_path, "message": "written for another model or threshold; context starts empty"},
                "warning",
            )
            return
        self.scorer.restore(saved.get("context") or {})
        self.recent = collections.OrderedDict((uid, v) for uid, v in saved.get("recent") or [])
        self.log("state_restored", {"path": self.state_path, "recent": len(self.recent)})

    def save_state(self) -> None:
        if not self.state_path:
            return
        write_json_atomic(
            self.state_path,
            {
                "version": STATE_VERSION,
                "id": self._model_id(),
                "context": self.scorer.state(),
                "recent": [[uid, v] for uid, v in self.recent.items()],
            },
        )

    # ------------------------------------------------------------------ log
    def log(self, event: str, info: dict[str, Any] | None = None, level: str = "info") -> None:
        info = dict(info or {})
        if self.opts.log_json:
            line = json.dumps({"ts": round(time.time(), 6), "level": level, "event": event, **info}, default=str)
        else:
            fields = " ".join(f"{k}={v}" for k, v in info.items())
            line = f"zeek-ml broker: {level}: {event}" + (f" ({fields})" if fields else "")
        print(line, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ receiver thread
    def _receive_loop(self) -> None:
        """Queue what peers send; log the status line every ``status_interval`` (live, even while a
        batch fills for ``max_wait``)."""
        limit = self.opts.queue_size
        last_status = time.monotonic()
        while not self.stop_requested.is_set():
            if time.monotonic() - last_status >= self.opts.status_interval:
                with self.lock:
                    status = self.status()
                self.log("status", status)
                last_status = time.monotonic()
            try:
                events = self.transport.receive(0.2)
            except Exception as e:  # keep receiving; say why
                self.log("receive_error", {"error": repr(e)}, "warning")
                time.sleep(0.2)
                continue
            if not events:
                continue
            with self.lock:
                for event in events:
                    if event.name != CONN_EVENT:
                        self.counts["other_events"] += 1
                        continue
                    if len(event.args) != 1:
                        self.counts["malformed"] += 1
                        continue
                    if len(self.queue) >= limit:
                        self.counts["dropped"] += 1
                        continue
                    self.queue.append(event.args[0])
                    self.counts["received"] += 1
                self.lock.notify_all()

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        self.load_state()
        self.transport.start()
        self.log("started", {"transport": self.transport.describe(), "conn_topic": self.opts.conn_topic})
        self._receiver = threading.Thread(target=self._receive_loop, name="zeek-ml-broker-receive", daemon=True)
        self._receiver.start()
        try:
            while not self.stop_requested.is_set():
                batch = self._next_batch()
                if batch:
                    self._score(batch)
                self._flush_outbox()
        finally:
            self._shutdown()
        return 0

    def _next_batch(self) -> list[Any]:
        """Up to ``batch_size`` queued records, once the batch is full or ``max_wait`` has passed."""
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
            n = min(len(self.queue), o.batch_size)
            return [self.queue.popleft() for _ in range(n)]

    def _score(self, records: list[Any]) -> None:
        """Score ``records`` in the order given, queue their verdicts and the batch's acknowledgment."""
        try:
            frame = conn_frame(records)
        except MalformedEvent:
            # Find the bad ones; score the rest, in their order.
            good = []
            for record in records:
                try:
                    conn_frame([record])
                    good.append(record)
                except MalformedEvent as e:
                    self.counts["malformed"] += 1
                    if self.counts["malformed"] <= 5:
                        self.log("malformed_event", {"error": str(e)[:300]}, "warning")
            if not good:
                return
            frame = conn_frame(good)
        uids = [str(u) for u in frame["uid"].tolist()]
        # A resend of a connection scored before a restart (its context is in the restored state):
        # answer with the stored verdict, never feed it to the context twice.
        replay = np.array([u in self.recent for u in uids], dtype=bool)
        stored = [self.recent[u] for u in np.asarray(uids, dtype=object)[replay]]
        fresh = frame[~replay].reset_index(drop=True) if replay.any() else frame
        rows: list[dict[str, Any]] = [v for v in stored if v is not None]
        if len(fresh):
            verdicts = self.scorer(fresh)
            self.counts["scored"] += len(fresh)
            self.counts["batches"] += 1
            flagged = verdicts.flagged
            fresh_rows = verdict_rows(verdicts.take(flagged)).to_dict("records") if flagged.any() else []
            rows += fresh_rows
            for sink in self.sinks.values():
                sink.write(verdicts)
                sink.flush()
            if self.state_path:
                by_uid = {r["uid"]: {k: _jsonable(v) for k, v in r.items()} for r in fresh_rows}
                for uid in fresh["uid"].tolist():
                    self.recent[str(uid)] = by_uid.get(uid)
                    self.recent.move_to_end(str(uid))
                while len(self.recent) > self.opts.state_recent:
                    self.recent.popitem(last=False)
                self.save_state()  # before any of this batch's events can leave
        self.counts["replayed"] += int(np.count_nonzero(replay))
        self.counts["verdicts"] += len(rows)
        events: list[tuple[str, Event]] = []
        if rows:
            table = pd.DataFrame(rows, columns=[f.name for f in VERDICT_FIELDS])
            for record in self.transport.verdict_args(table):
                events.append((self.opts.verdict_topic, Event(VERDICT_EVENT, (record,))))
        events.append((self.opts.ack_topic, Event(ACK_EVENT, (tuple(uids),))))
        with self.lock:
            for item in events:
                if len(self.outbox) >= self.opts.outbox_size:
                    self.counts["outbox_dropped"] += 1
                    continue
                self.outbox.append(item)

    def _flush_outbox(self) -> None:
        connected = self.transport.connected()
        if connected != self._was_connected:
            if connected:
                self.log("peer_connected", {"outbox": len(self.outbox)})
            else:
                self.log("peer_lost", {"outbox": len(self.outbox), "message": "holding verdicts until a peer is back"})
            self._was_connected = connected
        if not connected or not self.outbox:
            return
        while self.outbox:
            topic, event = self.outbox.popleft()
            self.transport.publish(topic, [event])
            self.counts["published"] += 1

    def status(self) -> dict[str, int]:
        """The counters, plus the queue and outbox lengths now."""
        return {**self.counts, "queued": len(self.queue), "outbox": len(self.outbox)}

    def request_stop(self) -> None:
        self.stop_requested.set()
        with self.lock:
            self.lock.notify_all()

    def _shutdown(self) -> None:
        self.stop_requested.set()
        if self._receiver is not None:
            self._receiver.join(timeout=2)
        while self.queue:  # score what was received
            n = min(len(self.queue), self.opts.batch_size)
            self._score([self.queue.popleft() for _ in range(n)])
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
        self.log("stopped", self.status())


def _jsonable(value: Any) -> Any:
    """A verdict row's cell as JSON: numpy scalars unwrapped, NaN -> None, lists of plain values."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    return plain(value)
