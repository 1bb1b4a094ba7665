"""The default model's output, bit-identical to the recorded one (issue 13).

Every speed-up of the scoring path (reader, features, host context, model, notice policy,
incidents, writers) must leave what ``zeek-ml score`` writes unchanged. For every shipped
sample log, the real logs under ``tests/data/`` and the labelled captures of
``../shared/data/zeek_labeled/``, this test scores the file as ``score`` does
(:func:`zeek_ml.services.score.score_logs`, the CLI's own function) and compares digests of

- the notice log (one notice per incident: incidents, severities, reasons),
- ``--all`` (every connection's score and verdict),
- ``--no-aggregate`` (one notice per flagged connection, each with its reasons),
- the checkpoint a watcher would save after the file: the host context's and the incident
  sink's ``state()`` (open incidents, stream clock).

with those recorded in ``tests/data/golden-conn-cnn-v2.json``. Header lines that carry the time
of the run (``#open``, ``#close``) are left out. The digests were recorded at commit 2d29f79, before
issue 13's second slice of speed work, with ``python -m tests.test_golden --record``; record again
only for a change that is meant to change the output (a new model, a new notice field), and say so.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, need_shared

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "data" / "golden-conn-cnn-v2.json"
MODEL = REPO / "models" / "conn-cnn-v2.onnx"
LOCAL_INPUTS = [
    *sorted(p for p in (REPO / "sample_logs").glob("*.log*")),
    REPO / "tests/data/zeek8/conn.tsv.log",
    REPO / "tests/data/zeek8/conn.json.log",
    REPO / "tests/data/iot23-quirk.conn.log.labeled",
    *sorted((REPO / "tests/data/ctu").glob("*.gz")),
    *sorted((REPO / "tests/data/lab").glob("*.gz")),
]


def _shared_labelled() -> Path | None:
    root = DATA / "zeek_labeled"  # conftest's ../shared/data, or $ZEEK_ML_SHARED_DATA
    return root if root.is_dir() else None


def _digest(path: Path) -> str:
    """sha256 of a log without the lines that hold the run's own time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for line in f:
            if not line.startswith((b"#open", b"#close")):
                h.update(line)
    return h.hexdigest()


def outputs(path: Path, tmp: Path, threads: int = 1) -> dict[str, str]:
    """The digests of everything ``score`` writes for ``path`` (the model in a thread of its own with
    ``threads`` 2: :meth:`~zeek_ml.model.scorer.Scorer.stream`, and notices explained in 2 threads, as
    ``zeek-ml score --threads 2`` runs), and of the checkpoint after it."""
    from zeek_ml.model.conn_model import load_model
    from zeek_ml.model.scorer import Scorer
    from zeek_ml.services.score import score_logs
    from zeek_ml.sinks.logs import build_notice_sink, file_writer
    from zeek_ml.sources.files import iter_batches

    model = load_model(MODEL)
    model.explain_threads = threads
    out = {}
    notice, every, per_conn = tmp / "notice.log", tmp / "all.log", tmp / "conn-notice.log"
    score_logs([path], model, notice, fmt="tsv", all_out=every, progress=False, threads=threads)
    score_logs([path], model, per_conn, fmt="tsv", aggregate=False, progress=False, threads=threads)
    out["notice"], out["all"], out["no_aggregate"] = _digest(notice), _digest(every), _digest(per_conn)

    scorer = Scorer(model)
    sink = build_notice_sink(file_writer(str(tmp / "checkpoint-notice.log")))
    for batch in iter_batches([path]):
        sink.write(scorer(batch))
    state = {"scorer": scorer.state(), "sink": sink.state()}
    sink.close()
    text = json.dumps(state, sort_keys=True, allow_nan=True).encode()
    out["checkpoint"] = hashlib.sha256(text).hexdigest()
    return out


def _key(path: Path) -> str:
    return path.name if not path.is_relative_to(REPO) else str(path.relative_to(REPO))


def _recorded() -> dict[str, dict[str, str]]:
    return json.loads(GOLDEN.read_text())["outputs"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("path", LOCAL_INPUTS, ids=_key)
def test_shipped_and_test_logs_score_as_recorded(path: Path, threads: int, tmp_path: Path) -> None:
    want = _recorded()[_key(path)]
    got = outputs(path, tmp_path, threads)
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, f"{_key(path)}: outputs differ from the recorded ones in {differ}"


def test_shared_labelled_captures_score_as_recorded(tmp_path: Path) -> None:
    root = need_shared(DATA / "zeek_labeled")
    recorded = _recorded()
    paths = sorted(root.glob("*.gz"))
    assert len(paths) == 9, f"expected the 9 labelled captures in {root}, found {len(paths)}"
    differ = []
    for path in paths:
        sub = tmp_path / path.name
        sub.mkdir()
        got, want = outputs(path, sub, threads=2), recorded[f"shared:{path.name}"]
        differ += [f"{path.name}: {k}" for k in want if got[k] != want[k]]
    assert not differ, f"outputs differ from the recorded ones: {differ}"


def record() -> None:
    """Write the golden file from this checkout (only for a change meant to change the output)."""
    import subprocess
    import tempfile

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    result = {}
    paths = [(_key(p), p) for p in LOCAL_INPUTS]
    root = _shared_labelled()
    if root is not None:
        paths += [(f"shared:{p.name}", p) for p in sorted(root.glob("*.gz"))]
    for key, path in paths:
        with tempfile.TemporaryDirectory() as tmp:
            result[key] = outputs(path, Path(tmp))
        print(key, result[key]["notice"][:12], file=sys.stderr)
    doc = {"recorded_at": commit.stdout.strip(), "model": MODEL.name, "outputs": result}
    GOLDEN.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m tests.test_golden --record")
    record()


def test_the_model_in_its_own_thread_gives_every_batch_the_same_verdicts() -> None:
    """``Scorer.stream(threads=2)`` over many small batches (the model of one batch runs while the next
    is read): the same scores, families, reasons and host context as scoring batch after batch."""
    import numpy as np

    from zeek_ml.model.conn_model import load_model
    from zeek_ml.model.scorer import Scorer
    from zeek_ml.sources.files import iter_batches

    path = REPO / "tests/data/lab/lab-namespaces-2026.part1.head4000.conn.log.labeled.gz"
    model = load_model(MODEL)
    batches = list(iter_batches([path], batch_bytes=1 << 15))
    assert len(batches) > 10
    one, two = Scorer(model), Scorer(model)
    serial = [one(b) for b in batches]
    streamed = list(two.stream(iter(batches), threads=2))
    assert [b is s for (b, _), s in zip(streamed, batches, strict=True)] == [True] * len(batches)
    flagged = 0
    for a, (_, b) in zip(serial, streamed, strict=True):
        assert np.array_equal(a.scores, b.scores)
        assert list(a.family) == list(b.family)
        assert list(a.reasons) == list(b.reasons) and list(a.reason_codes) == list(b.reason_codes)
        flagged += int(a.flagged.sum())
    assert flagged > 1000  # the nmap scans in these rows: reasons were compared, not only empty ones
    assert json.dumps(one.state(), sort_keys=True) == json.dumps(two.state(), sort_keys=True)
