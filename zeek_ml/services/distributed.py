"""Score on a Dask cluster, identical to one process (``zeek-ml score --workers N`` / ``--cluster ADDRESS``).

Two ways, by what the inputs hold. **Several sensors** (:class:`SensorTasks`): sensors share nothing, so
each is one task that scores its files whole on a worker (:func:`~zeek_ml.services.score.score_sensor`) and
the driver only merges their notices. **One stream** (:class:`ClusterEngine`, below): what costs is per
connection, the per-host context (:class:`~zeek_ml.features.context.HostContext`) and the ONNX model
(together about 60 % of a run on a replayed lab capture). What depends on everything before it stays on
the driver, exactly as one process runs it: reading the inputs (the same
:func:`~zeek_ml.sources.files.iter_batches`, so rejects, ``--strict`` and the counters are the same), the
incident aggregation and every output. That part is serial: cheap where few connections are flagged
(6 % of a run on a mostly benign capture), but half of a run on attack captures where 45 % of the
connections are flagged (the incident code then handles each of them in Python). Only the
``scorer(batch)`` step of :mod:`zeek_ml.services.score` is replaced by :class:`ClusterEngine`:

1. The rows read are cut into *partitions* of ``partition_rows`` consecutive rows (cuts fall anywhere:
   inside a file, inside an incident, inside a host's history). Each partition's conn columns are sent
   to the cluster as a task of their own, so a worker that dies loses nothing Dask cannot recompute.
2. **The context chain** (default): the host context before partition ``p`` is exact by construction: a
   chain of cheap Dask tasks (:func:`advance`) takes each partition's rows into a copy of the context
   before it, without features or model (:func:`absorb`, about a fifth of scoring a row). Partition
   ``p`` is scored from a copy of the chain's context ``p``, as soon as that is ready, in parallel with
   the others. The chain is the one sequential stage on the workers (about 320,000 rows/s here), so it
   bounds the speed-up (about 5x; see ``bench/bench_distributed.py``).
   No time-bounded warm-up can be exact in general: a host keeps its last ``k`` connections as long as
   it is seen within ``ttl_s``, so a host with slow periodic traffic (IPv6 neighbour discovery every 20
   minutes) remembers connections from many hours back; least-recently-used eviction and expiry order
   depend on every host ever seen.
3. **Checked, always**: a worker reports a fingerprint (:func:`context_fingerprint`) of its context
   before and after its partition. The driver takes the partitions in order and accepts partition ``p``
   only when its fingerprint before equals partition ``p - 1``'s after (computed with the ordinary
   ``HostContext.update``): the contexts are then the same state, and since the context is a
   deterministic function of its state and the rows that follow, ``p`` got exactly the features one
   process gives it (by induction from partition 0's fresh context). A partition that fails the check
   is scored again from the accepted context (kept on the cluster, never on the driver); the summary
   line counts such partitions.
4. **Speculative warm-up** (``warmup_rows`` > 0, ``--warmup-rows N``): instead of the chain, each
   partition starts from a fresh context that takes in the N rows before it; the check above decides,
   and a partition whose warm-up did not rebuild the context (common: see 2) is re-scored, in sequence.
   Useful only where moving a context between workers costs more than that (very many hosts).

The model is opened on each worker from its path (checked against the driver's by sha256); nothing a user
loads from disk is pickled. Explanations (``why:`` in a notice) are computed on the driver from the
feature rows the workers send back for rows at or above the lowest threshold in use, with the driver's
own copy of the model, as :meth:`~zeek_ml.model.conn_model.ConnModel.explain` does in one process.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import operator
import os
import signal
import sys
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zeek_ml.formats.schema import CONN_FIELDS
from zeek_ml.model.scorer import Verdicts

__all__ = [
    "ClusterEngine",
    "ClusterStats",
    "PartitionError",
    "SensorTasks",
    "context_fingerprint",
    "dask_client",
]

DEFAULT_PARTITION_ROWS = 50_000
"""Rows per partition: large enough that Dask's per-task overhead (a few ms) is noise, small enough that
a worker holds little and a re-scored partition costs little."""

KILL_ENV = "ZEEK_ML_DASK_KILL_ONCE"
"""Test hook: ``PATH:INDEX`` makes the first worker that starts partition (or sensor) INDEX kill itself
(SIGKILL), once (PATH is created to remember it was done): the job must still finish, with the same output."""

_CONN_COLUMNS = tuple(name for name, _ in CONN_FIELDS if name != "tunnel_parents")
"""The columns a partition carries to the cluster: conn.log's, less ``tunnel_parents`` (no feature reads
it, and a column of Python sets costs more to pickle than all the others together)."""


class PartitionError(RuntimeError):
    """A partition failed on the cluster (after Dask's retries); names its rows and files."""


def context_fingerprint(ctx: Any) -> str:
    """A digest of everything in a host context that decides the features of the rows that follow:
    its checkpoint (:meth:`~zeek_ml.features.context.HostContext.state`: parameters, clock, every host's
    remembered connections and window, the stream clock's held rows) less the counters kept only for
    messages (rows taken, clamped rows, epochs, the uid a warning names). Equal digests: the same future
    features, since a context restored from its state gives the same features as the original."""
    if ctx is None:
        return "none"
    state = ctx.state()
    state.pop("rows", None)
    clock = dict(state.get("time") or {})
    for counter in ("clamped", "epochs", "label"):
        clock.pop(counter, None)
    state["time"] = clock
    return hashlib.sha256(json.dumps(state, sort_keys=True, allow_nan=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- worker side

_local = threading.local()


def _worker_model(path: str, sha256: str) -> Any:
    """The model at ``path``, opened once per worker thread (ConnModel keeps the last batch's features)."""
    from zeek_ml.model.conn_model import load_model, sha256_file

    cache = getattr(_local, "models", None)
    if cache is None:
        cache = _local.models = {}
    model = cache.get((path, sha256))
    if model is None:
        if sha256_file(path) != sha256:
            raise RuntimeError(f"the model at {path} on this worker is not the driver's (sha256 differs)")
        model = cache[(path, sha256)] = load_model(path)
        logging.getLogger("zeek_ml.time").setLevel(logging.ERROR)  # the driver's incident clock says the same
    return model


def absorb(ctx: Any, frame: pd.DataFrame) -> None:
    """Take ``frame``'s rows into the host context ``ctx``: ``ctx.update(frame)``, whose compiled loop
    costs about a microsecond a row (the chain's step; the features it also returns are dropped)."""
    if len(frame):
        ctx.update(frame)


def _copy(ctx: Any) -> Any:
    """An independent copy of a host context (a task must never change an object another task may
    read): its flat host arrays, address table and stream clock copied (``copy.deepcopy``)."""
    return None if ctx is None else copy.deepcopy(ctx)


def advance(ctx: Any, frame: pd.DataFrame) -> Any:
    """The context chain's step: a copy of ``ctx`` that has taken in ``frame`` (:func:`absorb`)."""
    ctx = _copy(ctx)
    if ctx is not None:
        absorb(ctx, frame)
    return ctx


def _identity(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


def _maybe_kill(index: int) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    path, _, at = spec.rpartition(":")
    if int(at) != index:
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def score_partition(
    model_path: str,
    sha256: str,
    threshold: float,
    explain_floor: float,
    index: int,
    frame: pd.DataFrame,
    warmup: list[pd.DataFrame],
    start: Any = None,
) -> tuple[dict[str, Any], Any]:
    """Score one partition on a worker: ``(payload, context after it)``.

    ``start``: the accepted context before the partition (copied, never changed); without it a fresh
    context takes in the ``warmup`` frames first. The payload holds the scores (rounded as
    :class:`~zeek_ml.model.scorer.Scorer` rounds them), families, the feature rows of rows scoring at least
    ``explain_floor`` (for explanations on the driver) and the context fingerprints before and after.
    """
    from zeek_ml.model.scorer import Scorer

    _maybe_kill(index)
    cpu = time.process_time()
    model = _worker_model(model_path, sha256)
    scorer = Scorer(model, threshold)
    if start is not None:
        scorer.context = _copy(start)
    elif scorer.context is not None:
        for w in warmup:
            absorb(scorer.context, w)
    before = context_fingerprint(scorer.context)
    verdicts = scorer(frame)
    scores = np.asarray(verdicts.scores, dtype=np.float64)
    keep = np.flatnonzero(scores >= explain_floor)
    X = None
    last = getattr(model, "_last", None)
    if getattr(model, "explainer", None) is not None and last is not None and len(last[0]) == len(frame):
        X = np.ascontiguousarray(last[0][keep])
    payload = {
        "index": index,
        "rows": len(frame),
        "before": before,
        "after": context_fingerprint(scorer.context),
        "scores": scores,
        "family": None if verdicts.family is None else np.asarray(verdicts.family, dtype=object),
        "keep": keep,
        "X": X,
        "cpu": time.process_time() - cpu,
    }
    return payload, scorer.context


# ---------------------------------------------------------------------------------------------- driver side


@dataclass
class ClusterStats:
    """What the engine did: partitions sent, accepted on their warm-up, re-scored from the accepted context."""

    partitions: int = 0
    chained: int = 0
    warm_accepted: int = 0
    rescored: int = 0
    rescored_at: list[int] = field(default_factory=list)
    task_cpu: float = 0.0
    """CPU seconds the accepted scoring tasks took on the workers (model loads included)."""

    def line(self) -> str:
        return (
            f"{self.partitions:,} partition(s): {self.chained:,} started from the context chain, "
            f"{self.warm_accepted:,} exact after their warm-up, "
            f"{self.rescored:,} re-scored from the previous partition's context; "
            f"{self.task_cpu:.2f} CPU-s in scoring tasks"
        )


@dataclass
class _Part:
    index: int
    start: int
    rows: int
    frame: Any  # future of the partition's frame
    result: Any  # future of (payload, context)
    payload: Any  # future of the payload
    sources: list[str]


class ClusterEngine:
    """``engine(batches) -> (batch, verdicts)`` in order, the verdicts computed on a Dask cluster.

    Use it as :func:`zeek_ml.services.score.score_logs`'s ``engine``. ``model`` is the driver's loaded model
    (for its path, sha256, name and explanations); ``ahead`` partitions are in flight at once
    (default: two per worker thread, at least 4), which bounds the driver's memory.
    """

    def __init__(
        self,
        client: Any,
        model: Any,
        threshold: float | None = None,
        *,
        partition_rows: int = DEFAULT_PARTITION_ROWS,
        warmup_rows: int | None = None,
        explain_floor: float | None = None,
        ahead: int | None = None,
    ):
        if partition_rows < 1 or (warmup_rows is not None and warmup_rows < 0):
            raise ValueError(f"partition_rows must be >= 1 and warmup_rows >= 0, got {partition_rows}, {warmup_rows}")
        self.client = client
        self.model = model
        self.threshold = float(model.threshold if threshold is None else threshold)
        self.explain_floor = self.threshold if explain_floor is None else min(self.threshold, float(explain_floor))
        self.partition_rows = int(partition_rows)
        self.warmup_rows = int(warmup_rows or 0)
        if ahead is None:
            threads = sum(client.nthreads().values()) or 1
            ahead = max(4, 2 * threads)
        self.ahead = int(ahead)
        self.stats = ClusterStats()
        self._token = uuid.uuid4().hex[:8]
        self._path = os.path.abspath(model.path)
        self._has_context = hasattr(model, "new_context") and model.new_context() is not None
        self._chain: Any = model.new_context() if self._has_context else None
        """The exact context before the next partition to send (a future, or the fresh context)."""

    # -------------------------------------------------------------- submitting

    def _submit(self, index: int, frame_fut: Any, warm: list[Any], start: Any, attempt: str) -> tuple[Any, Any]:
        result = self.client.submit(
            score_partition,
            self._path,
            self.model.sha256,
            self.threshold,
            self.explain_floor,
            index,
            frame_fut,
            warm,
            start,
            key=f"zeek-ml-score-{self._token}-{index}-{attempt}",
            retries=2,
        )
        payload = self.client.submit(
            operator.getitem, result, 0, key=f"zeek-ml-payload-{self._token}-{index}-{attempt}"
        )
        return result, payload

    def _send(self, pieces: list[pd.DataFrame], start: int, parts: deque[_Part], history: deque[_Part]) -> _Part:
        index = self.stats.partitions
        self.stats.partitions += 1
        frame = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0].reset_index(drop=True)
        sources = list(dict.fromkeys(str(p.attrs.get("source", "?")) for p in pieces))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "large object in the task": on purpose, so that Dask can recompute it
            frame_fut = self.client.submit(_identity, frame, key=f"zeek-ml-rows-{self._token}-{index}")
        if self.warmup_rows:  # speculative: a warm-up on the rows before, checked by the driver
            warm: list[Any] = []
            rows = 0
            for prev in reversed(history):
                if rows >= self.warmup_rows:
                    break
                warm.insert(0, prev.frame)
                rows += prev.rows
            result, payload = self._submit(index, frame_fut, warm if index else [], None, "warm")
        else:  # from the context chain: exact by construction
            result, payload = self._submit(index, frame_fut, [], self._chain, "chain")
            self._extend_chain(index, frame_fut)
        part = _Part(index, start, len(frame), frame_fut, result, payload, sources)
        parts.append(part)
        history.append(part)
        while len(history) > 1 and sum(p.rows for p in list(history)[1:]) >= self.warmup_rows:
            history.popleft()
        return part

    def _extend_chain(self, index: int, frame_fut: Any) -> None:
        if self._has_context:
            self._chain = self.client.submit(
                advance,
                self._chain,
                frame_fut,
                key=f"zeek-ml-ctx-{self._token}-{index + 1}-{uuid.uuid4().hex[:6]}",
                priority=10,
            )

    # -------------------------------------------------------------- the engine

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[tuple[pd.DataFrame, Verdicts]]:
        parts: deque[_Part] = deque()  # sent, not yet taken
        history: deque[_Part] = deque()  # recent partitions, for warm-ups
        waiting: deque[tuple[pd.DataFrame, int]] = deque()  # batches read, with their first row's number
        done: deque[tuple[int, dict[str, Any]]] = deque()  # accepted payloads not yet fully handed out
        pieces: list[pd.DataFrame] = []
        filled = 0  # rows in pieces
        read = 0  # rows read
        sent = 0  # rows sent in partitions
        accepted = 0  # rows covered by accepted partitions
        exact: tuple[Any, str] = (
            None,
            context_fingerprint(self.model.new_context() if hasattr(self.model, "new_context") else None),
        )
        it = iter(batches)
        exhausted = False
        cols: list[str] | None = None
        try:
            while True:
                # read and send until enough partitions are in flight
                while not exhausted and len(parts) < self.ahead:
                    batch = next(it, None)
                    if batch is None:
                        exhausted = True
                        if pieces:
                            self._send(pieces, sent, parts, history)
                            sent += filled
                            pieces, filled = [], 0
                        break
                    if not len(batch):
                        continue
                    waiting.append((batch, read))
                    read += len(batch)
                    cols = [c for c in batch.columns if c in _CONN_COLUMNS]
                    at = 0
                    while at < len(batch):
                        take = min(len(batch) - at, self.partition_rows - filled)
                        piece = batch.iloc[at : at + take][cols]
                        piece.attrs = dict(batch.attrs)
                        pieces.append(piece)
                        filled += take
                        at += take
                        if filled == self.partition_rows:
                            self._send(pieces, sent, parts, history)
                            sent += filled
                            pieces, filled = [], 0
                if not parts:
                    break
                # take the oldest partition: accept it, or score it again from the accepted context
                part = parts.popleft()
                payload = self._result(part, part.payload)
                if payload["before"] == exact[1]:
                    result = part.result
                    if part.index and self.warmup_rows:
                        self.stats.warm_accepted += 1
                    elif part.index:
                        self.stats.chained += 1
                else:
                    self.stats.rescored += 1
                    self.stats.rescored_at.append(part.index)
                    start = self.client.submit(
                        operator.getitem, exact[0], 1, key=f"zeek-ml-ctx-{self._token}-{part.index}"
                    )
                    result, fut = self._submit(part.index, part.frame, [], start, "exact")
                    payload = self._result(part, fut)
                    if payload["before"] != exact[1]:
                        raise PartitionError(f"partition {part.index}: the accepted context did not carry over")
                    if not self.warmup_rows:  # the chain went wrong: start it again from the exact context
                        self._chain = self.client.submit(operator.getitem, result, 1)
                        for later in parts:
                            self._extend_chain(later.index, later.frame)
                exact = (result, payload["after"])
                done.append((part.start, payload))
                self.stats.task_cpu += payload["cpu"]
                accepted += part.rows
                # hand out every batch whose rows are all scored
                while waiting and waiting[0][1] + len(waiting[0][0]) <= accepted:
                    batch, first = waiting.popleft()
                    yield batch, self._verdicts(batch, first, done)
                    while done and done[0][0] + done[0][1]["rows"] <= first + len(batch):
                        done.popleft()
            if waiting:
                raise PartitionError(f"{len(waiting)} batch(es) read but never scored")
        finally:
            for part in parts:
                part.result.cancel()

    def _result(self, part: _Part, fut: Any) -> dict[str, Any]:
        try:
            return fut.result()
        except Exception as e:
            where = ", ".join(part.sources)
            raise PartitionError(
                f"partition {part.index} (rows {part.start:,}-{part.start + part.rows - 1:,} of the run, from {where}) "
                f"failed on the cluster: {type(e).__name__}: {e}"
            ) from e

    def _verdicts(self, batch: pd.DataFrame, first: int, done: deque[tuple[int, dict[str, Any]]]) -> Verdicts:
        """The verdicts of one batch read by the driver, from the accepted partitions that cover it."""
        n = len(batch)
        scores = np.empty(n, dtype=np.float64)
        family: np.ndarray | None = None
        X: np.ndarray | None = None
        have_x = np.zeros(n, dtype=bool)
        for start, p in done:
            lo, hi = max(first, start), min(first + n, start + p["rows"])
            if lo >= hi:
                continue
            a, b = lo - first, hi - first  # in the batch
            c, d = lo - start, hi - start  # in the partition
            scores[a:b] = p["scores"][c:d]
            if p["family"] is not None:
                if family is None:
                    family = np.full(n, "", dtype=object)
                family[a:b] = p["family"][c:d]
            if p["X"] is not None:
                keep = p["keep"]
                sel = (keep >= c) & (keep < d)
                if X is None:
                    X = np.zeros((n, p["X"].shape[1]), dtype=np.float32)
                X[keep[sel] - c + a] = p["X"][sel]
                have_x[keep[sel] - c + a] = True
        verdicts = Verdicts(
            conns=batch,
            scores=scores,
            threshold=self.threshold,
            model_name=self.model.name,
            model_version=str(self.model.version),
            family=family,
        )
        explainer = getattr(self.model, "explainer", None)
        if explainer is not None and X is not None:
            feats, known = X, have_x

            def explain(rows: np.ndarray) -> tuple[list[str], list[tuple[str, ...]]]:
                rows = np.asarray(rows, dtype=np.int64)
                if not known[rows].all():
                    raise PartitionError("an explanation was asked for a row below every threshold in use")
                return explainer.explain(feats[rows], scores[rows])

            verdicts.explain = explain
        return verdicts


# ---------------------------------------------------------------------------------------------- sensors


def score_sensor_task(
    model_path: str, sha256: str, index: int, sensor: str, files: list[str], options: dict[str, Any]
) -> Any:
    """Sensor number ``index`` scored whole on a worker (:func:`~zeek_ml.services.score.score_sensor`): it
    reads its files where they lie (a path every worker sees, or a URL), with a context and incidents of its
    own."""
    from zeek_ml.services.score import score_sensor

    _maybe_kill(index)
    cpu = time.process_time()
    result = score_sensor(sensor, files, _worker_model(model_path, sha256), **options)
    result.summary.seconds = time.process_time() - cpu
    return result


@dataclass
class SensorStats:
    """What :class:`SensorTasks` did."""

    sensors: int = 0
    task_cpu: float = 0.0

    def line(self) -> str:
        return f"{self.sensors:,} sensor(s) scored as tasks of their own; {self.task_cpu:.2f} CPU-s in those tasks"


class SensorTasks:
    """``runner(groups, options) -> results`` for :func:`~zeek_ml.services.score.score_logs`'s
    ``sensor_runner``: each sensor is one Dask task (sensors share nothing, so they run side by side,
    every worker busy with no driver in the loop); results come back in the groups' order, so the merged
    notice log is the one a single process writes. A sensor that fails is named with its files
    (Dask retries it twice first); a malformed line under ``--strict`` or an unreadable input stops the
    run as in one process."""

    def __init__(self, client: Any, model: Any):
        self.client = client
        self.model = model
        self.stats = SensorStats()
        self._token = uuid.uuid4().hex[:8]

    def __call__(self, groups: list[tuple[str, list[str]]], options: dict[str, Any]) -> Iterator[Any]:
        from zeek_ml.sources.reading import MalformedLineError, SourceError

        path = os.path.abspath(self.model.path)
        futures = [
            self.client.submit(
                score_sensor_task,
                path,
                self.model.sha256,
                i,
                sensor,
                files,
                options,
                key=f"zeek-ml-sensor-{self._token}-{i}",
                retries=2,
            )
            for i, (sensor, files) in enumerate(groups)
        ]
        try:
            for (sensor, files), fut in zip(groups, futures):
                try:
                    result = fut.result()
                except (MalformedLineError, SourceError, OSError):
                    raise
                except Exception as e:
                    where = files[0] + (f" and {len(files) - 1:,} more file(s)" if len(files) > 1 else "")
                    raise PartitionError(
                        f"sensor {sensor} ({where}) failed on the cluster: {type(e).__name__}: {e}"
                    ) from e
                self.stats.sensors += 1
                self.stats.task_cpu += result.summary.seconds
                yield result
        finally:
            for fut in futures:
                fut.cancel()


# ---------------------------------------------------------------------------------------------- the cluster


@contextlib.contextmanager
def dask_client(workers: int | None = None, address: str | None = None, *, quiet: bool = False) -> Iterator[Any]:
    """A ``distributed.Client``: to the scheduler at ``address``, or to a new local cluster of ``workers``
    worker processes (one thread each) listening on 127.0.0.1 only, with its dashboard on 127.0.0.1 when
    bokeh is installed. The local cluster is shut down on exit."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as e:  # pragma: no cover - the optional extra
        raise RuntimeError("--workers/--cluster need Dask: pip install 'zeek-ml[cluster]'") from e
    cluster = None
    if address:
        client = Client(address)  # gives up after distributed.comm.timeouts.connect (30 s; DASK_DISTRIBUTED__...)
    else:
        try:
            import bokeh  # noqa: F401

            dashboard: str | None = "127.0.0.1:0"
        except ImportError:
            dashboard = None
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        # Dask's statistical profiler samples each worker's stack every 10 ms (for the dashboard): with
        # pure-Python tasks that costs CPU for nothing here. The nannies pass this to their workers.
        dask.config.set({"distributed.worker.profile.enabled": False})
        cluster = LocalCluster(
            n_workers=int(workers or 1),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    try:
        if not quiet:
            # only a dashboard that is there (Dask makes up a link from its config when there is none)
            served = "dashboard" in (client.scheduler_info().get("services") or {})
            link = client.dashboard_link if served else ""
            threads = sum(client.nthreads().values())
            where = address or f"a local cluster of {workers} worker process(es)"
            extra = f", dashboard {link}" if link else ""
            print(f"zeek-ml: scoring on {where} ({threads} thread(s)){extra}", file=sys.stderr, flush=True)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
