"""The core every front end shares: a batch of conn records -> verdicts -> sinks.

``score`` (offline files), ``watch`` (live tailing) and ``broker`` (events from
Zeek) differ only in where batches come from. Each builds a :class:`Scorer`
(the model, its threshold, any state it keeps across batches) and hands the
:class:`Verdicts` of each batch to its sinks (notice log, enriched conn log,
verdict file for Zeek's Input framework, eve alerts...). Sources and sinks never
touch features or the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd


def plain(value: Any) -> Any:
    """A JSON-able Python scalar from a frame cell: numpy scalars unwrapped, NA and NaN -> None."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


Explain = Callable[[np.ndarray], tuple[list[str], list[tuple[str, ...]]]]
"""``explain(rows) -> (words, codes)``: why the given rows of a batch scored as they did."""


@dataclass
class Verdicts:
    """The model's answer for one batch of conn records, row for row.

    Reasons are computed when first asked for (``reasons``/``reason_codes`` for every flagged
    row, :meth:`why` for a few), so that an incident's notice explains one connection, not
    thousands: explanations cost a forward pass per feature group.
    """

    conns: pd.DataFrame
    """The batch, in the conn record schema (conn.log's field names)."""
    scores: np.ndarray
    """P(malicious), float [N], rounded to 1e-6 so that verdicts do not depend on batch sizes."""
    threshold: float
    model_name: str
    model_version: str
    family: np.ndarray | None = None
    """Predicted attack family per row (object [N] of str), when the model names one."""
    explain: Explain | None = field(default=None, repr=False)
    """How to explain rows of this batch, when the model can."""
    _reasons: np.ndarray | None = field(default=None, repr=False)
    _reason_codes: np.ndarray | None = field(default=None, repr=False)

    @property
    def flagged(self) -> np.ndarray:
        """Rows at or above the threshold, bool [N]."""
        return np.asarray(self.scores) >= self.threshold

    def __len__(self) -> int:
        return len(self.conns)

    @property
    def reasons(self) -> np.ndarray | None:
        """Why a row scored high, in words (object [N] of str; empty for rows not flagged)."""
        self._explain_flagged()
        return self._reasons

    @reasons.setter
    def reasons(self, value: np.ndarray | None) -> None:
        self._reasons = value

    @property
    def reason_codes(self) -> np.ndarray | None:
        """The same, machine-readable (object [N] of tuples of feature-group names)."""
        self._explain_flagged()
        return self._reason_codes

    @reason_codes.setter
    def reason_codes(self, value: np.ndarray | None) -> None:
        self._reason_codes = value

    def why(self, rows: np.ndarray) -> tuple[list[str], list[tuple[str, ...]]] | None:
        """(words, codes) for a few ``rows`` only; None if the model gives no reasons."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._reasons is not None and self._reason_codes is not None:
            return [str(self._reasons[i]) for i in rows], [tuple(self._reason_codes[i]) for i in rows]
        if self.explain is None:
            return None
        return self.explain(rows)

    def _explain_flagged(self) -> None:
        if self.explain is None or self._reasons is not None:
            return
        n = len(self)
        words = np.full(n, "", dtype=object)
        codes = np.empty(n, dtype=object)
        codes[:] = [()] * n
        rows = np.flatnonzero(self.flagged)
        if len(rows):
            got_words, got_codes = self.explain(rows)
            words[rows] = got_words
            for i, c in zip(rows, got_codes, strict=True):
                codes[i] = c
        self._reasons, self._reason_codes = words, codes

    def take(self, mask: np.ndarray) -> Verdicts:
        """The rows where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        parent = self.explain
        return Verdicts(
            conns=self.conns.iloc[idx],
            scores=np.asarray(self.scores)[idx],
            threshold=self.threshold,
            model_name=self.model_name,
            model_version=self.model_version,
            family=None if self.family is None else self.family[idx],
            explain=None if parent is None else (lambda rows: parent(idx[np.asarray(rows, dtype=np.int64)])),
            _reasons=None if self._reasons is None else self._reasons[idx],
            _reason_codes=None if self._reason_codes is None else self._reason_codes[idx],
        )


class Sink(Protocol):
    """Where verdicts go. ``state``/``restore`` carry anything kept across batches
    (open incidents...) through a checkpoint, so a restart resumes exactly."""

    def write(self, verdicts: Verdicts) -> int:
        """Write what this sink writes for a batch; return the count of records written."""

    def flush(self) -> None:
        """Make what was written durable (the watcher checkpoints only after this)."""

    def close(self) -> None: ...


class Scorer:
    """A model with its threshold: ``scorer(batch) -> Verdicts``.

    Holds whatever the model needs across batches (per-host context for temporal
    features), exposed as JSON-able ``state()``/``restore()`` for checkpoints.
    """

    def __init__(self, model: Any, threshold: float | None = None):
        self.model = model
        self.threshold = float(model.threshold if threshold is None else threshold)
        self.context = model.new_context() if hasattr(model, "new_context") else None

    def __call__(self, batch: pd.DataFrame) -> Verdicts:
        if self.context is not None:
            scores = self.model.score_frame(batch, context=self.context)
        else:
            scores = self.model.score_frame(batch)
        return self._verdicts(batch, scores)

    def stream(self, batches: Iterable[pd.DataFrame], threads: int = 1) -> Iterator[tuple[pd.DataFrame, Verdicts]]:
        """``(batch, verdicts)`` for each batch, in order, as ``self(batch)`` gives them.

        With ``threads`` >= 2 the model runs on batch ``k`` in a second thread (onnxruntime lets go
        of the GIL) while this one reads batch ``k + 1`` and computes its features (the host context
        still takes the rows in log order, here) and the caller writes batch ``k - 1``: the same
        verdicts, sooner. One batch waits for the next, so this is for files, not live tails.
        """
        if threads < 2 or not self.splits:
            for batch in batches:
                yield batch, self(batch)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="zeek-ml-model") as pool:
            pending: tuple[pd.DataFrame, Callable[[], Verdicts]] | None = None
            for batch in batches:
                running = self.begin(batch, pool)
                if pending is not None:
                    yield pending[0], pending[1]()
                pending = (batch, running)
            if pending is not None:
                yield pending[0], pending[1]()

    @property
    def splits(self) -> bool:
        """Whether the model's features and its run can be apart (:meth:`begin` runs the model in a pool)."""
        return all(hasattr(self.model, a) for a in ("features", "predict_all", "explain"))

    def begin(self, batch: pd.DataFrame, pool: Executor | None, threads: int | None = None) -> Callable[[], Verdicts]:
        """``self(batch)`` in two steps: the features now (the host context takes the batches in the order
        they begin), the model in ``pool`` (onnxruntime lets go of the GIL); call the result for the
        verdicts (``threads``: the model's threads for this batch, default its own). Without a pool, or
        with a model that cannot split, it all happens now."""
        if pool is None or not self.splits:
            verdicts = self(batch)
            return lambda: verdicts
        X = self.model.features(batch, self.context) if self.context is not None else self.model.features(batch)
        running = pool.submit(self.model.predict_all, X, threads)
        return lambda: self._finish(batch, X, running)

    def _finish(self, batch: pd.DataFrame, X: Any, running: Future) -> Verdicts:
        scores, fam = running.result()
        return self._verdicts(batch, scores, (X, fam))

    def _verdicts(self, batch: pd.DataFrame, scores: Any, last: tuple[Any, Any] | None = None) -> Verdicts:
        # Rounded to 1e-6: onnxruntime's last bits depend on how many rows it is given at once,
        # and the same connection must get the same verdict (and be the same incident's top
        # connection) offline, live, in any batch, and after a restart.
        verdicts = Verdicts(
            conns=batch,
            scores=np.round(np.asarray(scores, dtype=np.float64), 6),
            threshold=self.threshold,
            model_name=self.model.name,
            model_version=str(self.model.version),
        )
        explain = getattr(self.model, "explain", None)
        if explain is not None:
            if last is not None:
                explain(verdicts, last)
            else:
                explain(verdicts)
        return verdicts

    def state(self) -> dict[str, Any]:
        return {} if self.context is None else self.context.state()

    def restore(self, state: dict[str, Any]) -> None:
        if self.context is not None and state:
            self.context.restore(state)

    def snapshot(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """:meth:`state` as a JSON-able part and arrays, for large checkpoints
        (:meth:`zeek_ml.features.context.HostContext.snapshot`); ``({}, {})`` without a host context."""
        return ({}, {}) if self.context is None else self.context.snapshot()

    def restore_snapshot(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if self.context is not None and meta:
            self.context.restore_snapshot(meta, arrays)
