#!/usr/bin/env python3
"""The speed table of issue 13 in one run: zeek-ml beside the parse floor and the zat peer.

Every contender is a whole process run on the same replayed conn.log (``make_conn.py``: real rows,
fresh ts and uid), measured by ``os.wait4``: CPU-seconds (user + system, interpreter start and
imports included), wall seconds and peak RSS. Contenders run interleaved (repeat 1: all of them,
repeat 2: all of them, ...) because these machines are shared and noisy; the table gives min and
median.

- ``pyarrow parse``: ``pyarrow.csv.read_csv`` of the data lines, all columns typed (the floor);
- ``zat peer``: what a user assembles in an afternoon, as zat's own anomaly example does it:
  ``LogToDataFrame`` -> ``DataFrameToMatrix`` over the usual conn columns -> scikit-learn
  ``IsolationForest`` (100 trees, fitted on the first 100,000 rows) scoring every row;
- ``zeek-ml score`` with the shipped conn-cnn-v1, with the default conn-cnn-v2, with
  ``--no-aggregate``, and on the same rows written as Zeek JSON (``LogAscii::use_json``);
- ``stages``: zeek-ml's reader, conn-cnn-v2's features and the model, one thread, and nothing else (no
  verdicts, notices or output): the most ``zeek-ml score`` could do with this model, whatever the rest cost.

    python bench/bench_table.py                      # 2 M rows, 3 interleaved repeats
    python bench/bench_table.py --rows 500000 --repeat 5
    python bench/bench_table.py --only floor,v2      # a subset

Live figures (line-to-verdict p50/p99 at 10 k and 50 k conn/s, RSS) are ``bench_live.py``'s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_ROOT)]  # this checkout's zeek_ml, as the children get it

import bench_score  # noqa: E402  (the floor child, the data file, the child environment)

ZAT_FEATURES = [
    "id.resp_p",
    "proto",
    "service",
    "conn_state",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "orig_pkts",
    "resp_pkts",
    "orig_ip_bytes",
    "resp_ip_bytes",
]


def child_zat(path: str) -> None:
    """The zat + scikit-learn peer (runs in its own process)."""
    import warnings

    warnings.simplefilter("ignore")
    from sklearn.ensemble import IsolationForest
    from zat.dataframe_to_matrix import DataFrameToMatrix
    from zat.log_to_dataframe import LogToDataFrame

    frame = LogToDataFrame().create_dataframe(path)
    X = frame[ZAT_FEATURES].copy()
    X["duration"] = X["duration"].dt.total_seconds()
    matrix = DataFrameToMatrix().fit_transform(X)
    model = IsolationForest(n_estimators=100, random_state=0).fit(matrix[:100_000])
    flagged = int((model.decision_function(matrix) < 0).sum())
    print(f"{len(frame)} rows, {flagged} flagged", file=sys.stderr)


def child_stages(path: str) -> None:
    """Reading, features and the model of the default ``score``, one thread, nothing written (own process)."""
    import numpy as np

    from zeek_ml.model.conn_model import load_model
    from zeek_ml.sources.files import iter_batches

    model = load_model(REPO_ROOT / "models" / "conn-cnn-v2.onnx")
    context = model.new_context()
    flagged = rows = 0
    for batch in iter_batches(path):
        scores, _ = model.predict_all(model.features(batch, context))
        flagged += int((np.round(scores.astype(np.float64), 6) >= model.threshold).sum())  # as verdicts are
        rows += len(batch)
    print(f"{rows} rows, {flagged} flagged ({100 * flagged / max(rows, 1):.1f} %)", file=sys.stderr)


def json_copy(path: str) -> str:
    """The same rows as a Zeek JSON log (made once, cached beside the TSV file, by a child process:
    this parent stays small, since a child's peak RSS starts from its parent's at the fork)."""
    out = Path(path).with_suffix(".json.log")
    if not out.exists():
        subprocess.run([sys.executable, __file__, "--child-json", path], check=True, env=bench_score.child_env())
    return str(out)


def child_json(path: str) -> None:
    """Write the JSON copy (runs in its own process)."""
    out = Path(path).with_suffix(".json.log")
    from zeek_ml.formats.writer import ZeekLogWriter
    from zeek_ml.sources.files import iter_batches

    fields, _ = bench_score.read_header(path)
    tmp = out.with_suffix(".tmp")
    writer = None
    for batch in iter_batches(path):
        if writer is None:
            from zeek_ml.formats.schema import CONN_TYPES

            types = [(name, CONN_TYPES.get(name, "string")) for name in fields if name in batch.columns]
            writer = ZeekLogWriter(str(tmp), "conn", types, fmt="json")
        writer.write(batch)
    assert writer is not None
    writer.close()
    tmp.rename(out)


@dataclass
class Contender:
    """One row of the table and its measured runs."""

    name: str
    cmd: list[str]
    rows: int
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    error: str = ""
    said: str = ""
    """The last line the child printed (``stages``: how many rows the model flagged)."""

    def run(self) -> None:
        """One measured run: CPU and RSS of exactly this child (``os.wait4``)."""
        with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as out:
            cmd = [part.replace("@TMP@", tmp) for part in self.cmd]
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=bench_score.child_env(), cwd=REPO_ROOT
            )
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            out.seek(0)
            said = bench_score.last_line(out.read().decode(errors="replace"))
            if os.waitstatus_to_exitcode(status) != 0:
                self.error = said
                return
        self.said = said
        self.cpu.append(usage.ru_utime + usage.ru_stime)
        self.wall.append(wall)
        self.rss.append(usage.ru_maxrss / 1024)


def contenders(path: str, rows: int, only: set[str] | None) -> list[Contender]:
    """The table's rows, in the order printed."""
    py = sys.executable
    cli = [py, "-m", "zeek_ml"]
    v1 = str(REPO_ROOT / "models" / "conn-cnn-v1.onnx")
    out = "@TMP@/notice.log"
    floor = [py, str(BENCH_DIR / "bench_score.py"), "--child", "pyarrow", path]
    table = [
        (
            "floor",
            "pyarrow.csv parse only (the floor)",
            floor,
        ),
        ("zat", "zat LogToDataFrame -> DataFrameToMatrix -> IsolationForest", [py, __file__, "--child-zat", path]),
        ("v1", "zeek-ml score --model conn-cnn-v1", [*cli, "score", path, "-o", out, "--model", v1]),
        ("v2", "zeek-ml score (default, conn-cnn-v2)", [*cli, "score", path, "-o", out]),
        ("noagg", "zeek-ml score --no-aggregate", [*cli, "score", path, "-o", out, "--no-aggregate"]),
        ("json", "zeek-ml score, the same rows as Zeek JSON", [*cli, "score", "@JSON@", "-o", out]),
        ("stages", "zeek-ml's reader + conn-cnn-v2 features + model only", [py, __file__, "--child-stages", path]),
    ]
    chosen = [t for t in table if only is None or t[0] in only]
    if any(key == "json" for key, _, _ in chosen):
        jpath = json_copy(path)
        chosen = [(k, n, [jpath if p == "@JSON@" else p for p in c]) for k, n, c in chosen]
    return [Contender(name, cmd, rows) for _, name, cmd in chosen]


def print_table(table: list[Contender], path: str, repeat: int) -> None:
    """Rows per CPU-second (min and median over the repeats), x the floor, wall rows/s, peak RSS."""
    floor = next((c for c in table if c.name.startswith("pyarrow") and c.cpu), None)
    floor_rate = floor.rows / statistics.median(floor.cpu) if floor else None
    print(f"\n{table[0].rows:,} rows of {path}; {repeat} interleaved repeats; CPU = user + system of the process")
    print("| contender | rows per CPU-s (median) | (best) | x the parse | wall rows/s (median) | peak RSS MiB (max) |")
    print("|---|---|---|---|---|---|")
    for c in table:
        if not c.cpu:
            print(f"| {c.name} | failed: {c.error} | | | | |")
            continue
        med = c.rows / statistics.median(c.cpu)
        best = c.rows / min(c.cpu)
        ratio = f"{floor_rate / med:.1f}" if floor_rate else "-"
        wall = c.rows / statistics.median(c.wall)
        print(f"| {c.name} | {med:,.0f} | {best:,.0f} | {ratio} | {wall:,.0f} | {max(c.rss):,.0f} |")
    for c in table:
        if c.said and c.cmd[-2] == "--child-stages":
            print(f"\nstages: {c.said} (`--no-aggregate` explains each flagged connection)")


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the file, run the contenders interleaved, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000, help="rows of the generated conn.log")
    p.add_argument("--reuse", help="measure this Zeek TSV conn.log instead of a generated one")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repeats")
    p.add_argument("--only", help="comma-separated subset of floor,zat,v1,v2,noagg,json,stages")
    p.add_argument("--child-zat", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--child-json", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--child-stages", metavar="PATH", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child_stages:
        child_stages(a.child_stages)
        return 0
    if a.child_zat:
        child_zat(a.child_zat)
        return 0
    if a.child_json:
        child_json(a.child_json)
        return 0
    path = a.reuse or bench_score.bench_file(a.rows)
    rows = bench_score.count_data_lines(path) if a.reuse else a.rows
    table = contenders(path, rows, set(a.only.split(",")) if a.only else None)
    for i in range(a.repeat):
        for c in table:
            if not c.error:
                c.run()
                print(f"repeat {i + 1}: {c.name}: {c.cpu[-1] if c.cpu and not c.error else c.error}", file=sys.stderr)
    print_table(table, path, a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
