#!/usr/bin/env python3
"""Inference speed per stage, one thread: what the model card quotes.

Each stage runs in its own subprocess (peak RSS from ``os.wait4``) on the same
file of replayed real rows (``make_conn.py``) and reports only the time of its
own step, so the stages add up to where scoring time goes:

0. ``parse``: the floor, ``pyarrow.csv`` parsing the data lines (``bench_score.py``'s), here on one thread.
1. ``reader`` (the baseline): ``zeek_ml.sources.files.iter_batches``, counting rows.
2. ``features-v1``: the 53 per-connection features (conn-v1), batches read first.
3. ``features-v2``: conn-v2 = conn-v1 plus the per-host context (``HostContext``).
4. ``model-v1`` / ``model-v2``: onnxruntime on precomputed features, one intra-op
   thread (``load_model``'s default), conn-cnn-v1 and conn-cnn-v2.
5. ``explain-v2``: occlusion reasons, rows/s of *notices* explained (it runs
   only for rows that become notices).
6. ``score-v2``: ``zeek-ml score FILE`` end to end (process start included).

Ratios to the reader are the figures to compare across machines; the ratio to the parse says what a
stage alone costs against issue 13's target (everything at most 3x the parse).

    python bench/bench_model.py                       # 200,000 rows
    python bench/bench_model.py --rows 500000 --json models/bench-conn-cnn-v2.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import bench_score  # noqa: E402  (the subprocess and data helpers)

MODELS = {"v1": REPO_ROOT / "models" / "conn-cnn-v1.onnx", "v2": REPO_ROOT / "models" / "conn-cnn-v2.onnx"}
EXPLAIN_ROWS = 2000
STAGES = ("parse", "reader", "features-v1", "features-v2", "model-v1", "model-v2", "explain-v2")


def _frames(path: str) -> list:
    from zeek_ml.sources.files import iter_batches

    return list(iter_batches(path))


def child(stage: str, path: str) -> dict[str, object]:
    """Run one stage here; return rows and the seconds of that stage's own step."""
    import numpy as np

    from zeek_ml.features.conn import CONTEXT_SPEC, FEATURE_SPEC, compute_features
    from zeek_ml.features.context import HostContext
    from zeek_ml.model.conn_model import load_model

    if stage == "parse":
        res = bench_score.child_pyarrow(path, use_threads=False)
        return {"rows": res["rows"], "seconds": res["cpu"]}
    if stage == "reader":
        t0 = time.perf_counter()
        rows = sum(len(b) for b in _frames(path))
        return {"rows": rows, "seconds": time.perf_counter() - t0}
    frames = _frames(path)
    if stage.startswith("features-"):
        spec, ctx = (FEATURE_SPEC, None) if stage.endswith("v1") else (CONTEXT_SPEC, HostContext())
        t0 = time.perf_counter()
        rows = sum(len(compute_features(f, spec, ctx)) for f in frames)
        return {"rows": rows, "seconds": time.perf_counter() - t0}
    model = load_model(MODELS[stage.split("-")[1]])
    ctx = model.new_context()
    X = np.concatenate([model.features(f, ctx) for f in frames])
    if stage.startswith("model-"):
        t0 = time.perf_counter()
        scores = model.predict_proba(X)
        return {"rows": len(scores), "seconds": time.perf_counter() - t0}
    Xe = X[:EXPLAIN_ROWS]
    scores = model.predict_proba(Xe)
    t0 = time.perf_counter()
    words, _ = model.explainer.explain(Xe, scores)
    return {"rows": len(words), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    """Measure every stage, print a Markdown table, optionally write JSON (for the model card)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the generated file")
    ap.add_argument("--reuse", help="measure this conn.log instead of a generated one")
    ap.add_argument("--repeat", type=int, default=1, help="best of K runs per stage")
    ap.add_argument("--json", help="also write the figures (and the table) as JSON here")
    ap.add_argument("--child", nargs=2, metavar=("STAGE", "PATH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(*a.child)))
        return 0
    path = a.reuse or bench_score.bench_file(a.rows)
    measures = []
    for stage in STAGES:
        best = bench_score.Measure(stage)
        for _ in range(a.repeat):
            code, text, _, rss = bench_score.run_measured([sys.executable, __file__, "--child", stage, path])
            try:
                res = json.loads(text.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                best.note = f"failed (exit {code}): {bench_score.last_line(text)}"
                break
            if best.seconds is None or res["seconds"] < best.seconds:
                best.rows, best.seconds = res["rows"], res["seconds"]
            best.peak_rss_mib = max(best.peak_rss_mib or 0.0, rss)
        measures.append(best)
        print(f"{stage}: {bench_score.fmt(best.rows_per_s, ',.0f')} rows/s {best.note}", file=sys.stderr)
    rows = bench_score.count_data_lines(path)
    e2e = bench_score.measure_score(path, rows, a.repeat, ["--model", str(MODELS["v2"])])
    e2e.stage = "score-v2"
    measures.append(e2e)
    parse, base = measures[0].rows_per_s, measures[1].rows_per_s
    table = [
        "| stage | rows | seconds | rows/s | x reader time | x the parse | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    out = {}
    for m in measures:
        ratio = base / m.rows_per_s if base and m.rows_per_s else None
        x_parse = parse / m.rows_per_s if parse and m.rows_per_s else None
        table.append(
            f"| {m.stage} | {bench_score.fmt(m.rows, ',')} | {bench_score.fmt(m.seconds, '.2f')} | "
            f"{bench_score.fmt(m.rows_per_s, ',.0f')} | {bench_score.fmt(ratio, '.2f')} | "
            f"{bench_score.fmt(x_parse, '.2f')} | {bench_score.fmt(m.peak_rss_mib, '.0f')} |"
        )
        out[m.stage] = {"rows": m.rows, "seconds": m.seconds, "rows_per_s": m.rows_per_s, "note": m.note}
        out[m.stage] |= {"peak_rss_mib": m.peak_rss_mib, "x_reader": ratio, "x_parse": x_parse}
    when = dt.date.today().isoformat()
    head = (
        f"{rows:,} replayed real conn rows (`bench/make_conn.py`), {when}, {platform.machine()} "
        f"with {os.cpu_count()} cores, onnxruntime one intra-op thread, `parse` one pyarrow thread (CPU-seconds); "
        f"`explain-v2` counts notices explained ({EXPLAIN_ROWS} rows), `score-v2` is the whole `zeek-ml score` "
        "process (wall time, its default threads). Rerun: "
        "`python bench/bench_model.py`."
    )
    print(head + "\n\n" + "\n".join(table))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": when, "rows": rows, "stages": out, "markdown": [head, "", *table]}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
