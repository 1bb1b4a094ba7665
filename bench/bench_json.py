#!/usr/bin/env python3
"""Rows per CPU-second of the Zeek reader: TSV against JSON (columnar fast path and line by line).

Build a replayed TSV conn.log first, then run this on it; the JSON copy is written next to it
(``LogAscii::use_json=T`` form, by :class:`zeek_ml.formats.writer.ZeekLogWriter`) unless it exists:

    python bench/make_conn.py --rows 200000 -o /tmp/c.log
    python bench/bench_json.py /tmp/c.log [--repeats 3]

Each contender reads the whole file with :func:`zeek_ml.sources.files.iter_batches` (one process,
what ``zeek-ml score`` reads with); the contenders run interleaved, ``--repeats`` rounds, and the
table gives the min and median of rows per CPU-second (process time, since shared machines are
noisy), the median wall-clock rate, and the CPU cost relative to TSV (``x TSV``, medians).
``json (line by line)`` is the reference path the fast one must equal (``ZEEK_ML_JSON_FAST=0``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zeek_ml.formats.schema import CONN_FIELDS
from zeek_ml.formats.writer import ZeekLogWriter
from zeek_ml.sources import files, reading, zeeklog


def write_json(tsv: str, out: str) -> None:
    """The TSV log rewritten as Zeek JSON lines, batch by batch."""
    tmp = out + ".tmp"
    with ZeekLogWriter(tmp, "conn", list(CONN_FIELDS), fmt="json") as writer:
        for frame in files.iter_batches(tsv):
            writer.write(frame[[name for name, _ in CONN_FIELDS]])
    os.replace(tmp, out)


def read_once(path: str, fast: bool) -> tuple[int, float, float]:
    """(rows, CPU seconds, wall seconds) of one full read."""
    zeeklog.JSON_FAST = fast
    cpu, wall = time.process_time(), time.perf_counter()
    stats = reading.ReadStats()
    rows = sum(len(frame) for frame in files.iter_batches(path, stats=stats))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if stats.rejected:
        raise SystemExit(f"{path}: {stats.rejected} rejected lines: not a clean benchmark input")
    return rows, cpu, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tsv", help="a Zeek TSV conn.log (bench/make_conn.py)")
    ap.add_argument("--json", help="its JSON copy (default: TSV path + .json, written if missing)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-slow", action="store_true", help="skip the line-by-line JSON path")
    args = ap.parse_args(argv)
    json_path = args.json or args.tsv + ".json"
    if not os.path.exists(json_path):
        write_json(args.tsv, json_path)
    contenders = [("tsv", args.tsv, True), ("json (columnar)", json_path, True)]
    if not args.no_slow:
        contenders.append(("json (line by line)", json_path, False))
    runs: dict[str, list[tuple[int, float, float]]] = {name: [] for name, _, _ in contenders}
    for _ in range(args.repeats):
        for name, path, fast in contenders:
            runs[name].append(read_once(path, fast))
    tsv_median = statistics.median(rows / cpu for rows, cpu, _ in runs["tsv"])
    print(f"{'reader':<22}{'rows':>10}{'rows/CPU-s min':>16}{'median':>12}{'rows/s wall med':>17}{'x TSV':>8}")
    for name, _, _ in contenders:
        rates = [rows / cpu for rows, cpu, _ in runs[name]]
        walls = [rows / wall for rows, _, wall in runs[name]]
        rows = runs[name][0][0]
        print(
            f"{name:<22}{rows:>10,}{min(rates):>16,.0f}{statistics.median(rates):>12,.0f}"
            f"{statistics.median(walls):>17,.0f}{tsv_median / statistics.median(rates):>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
