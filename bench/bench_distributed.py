#!/usr/bin/env python3
"""Issue 14: ``zeek-ml score`` in one process vs ``--workers 1`` and ``--workers 2`` (a local Dask cluster).

Each configuration runs the real CLI as a subprocess over the same inputs; configurations are
interleaved (one of each per round) so that drift in the machine's load hits all alike. Reported
per configuration: wall seconds and CPU seconds (user + system of the command and every process it
waited for: the local cluster's nanny and worker processes included), min and median over the
rounds, rows per wall second, and the engine's partition counts. Every cluster run's notice log is
checked against the single-process one (byte for byte but ``#open``/``#close``).

    python bench/bench_distributed.py                        # the shared labelled captures (103,751 rows)
    python bench/bench_distributed.py --replay-rows 600000   # + bench/make_conn.py's replay of them
    python bench/bench_distributed.py --replay-rows 1000000 --sensors 4   # an archive of 4 sensors
    python bench/bench_distributed.py --sensor-from 'zeek_labeled/([^/.]+)'  # each shared capture a sensor

Several sensors are scored as tasks of their own (one per sensor, no driver in the loop); one sensor's
rows go through the partition engine (the host-context chain).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "zeek_labeled"


def run(inputs: list[str], out: Path, extra: list[str]) -> tuple[float, float, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "zeek_ml", "score", *inputs, "-o", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"failed: {' '.join(extra)}: {r.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.stderr


def body(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if not ln.startswith(("#open", "#close"))]


def model_of_scaling(inputs: list[str]) -> None:
    """Time each phase of one process, in this process: what stays on the driver (reading, incidents and
    the notice log) and what the workers do (host context + model; the context chain's absorb)."""
    sys.path.insert(0, str(ROOT))
    from zeek_ml.api import find_model
    from zeek_ml.model.conn_model import load_model
    from zeek_ml.model.scorer import Scorer
    from zeek_ml.services.distributed import absorb
    from zeek_ml.sinks.logs import build_notice_sink, file_writer
    from zeek_ml.sources.files import expand_sources, iter_batches
    from zeek_ml.sources.reading import ReadStats, RejectLog

    model = load_model(find_model())
    t = time.process_time()
    batches = [b for b in iter_batches(expand_sources(inputs), rejects=RejectLog(), stats=ReadStats()) if len(b)]
    read = time.process_time() - t
    rows = sum(map(len, batches))
    scorer = Scorer(model)
    t = time.process_time()
    verdicts = [scorer(b) for b in batches]
    score = time.process_time() - t
    ctx = model.new_context()
    t = time.process_time()
    for b in batches:
        absorb(ctx, b)
    chain = time.process_time() - t
    with open(os.devnull, "wb") as null:
        sink = build_notice_sink(file_writer(null))
        t = time.process_time()
        for v in verdicts:
            sink.write(v)
        sink.close()
    notices = time.process_time() - t
    flagged = sum(int(v.flagged.sum()) for v in verdicts)
    serial = read + notices
    print(f"phases of one process ({rows:,} rows, {flagged:,} flagged), CPU seconds:")
    print(f"  driver:  read {read:.2f}, incidents + notice log {notices:.2f}  (serial: {serial:.2f})")
    print(f"  workers: host context + model {score:.2f} ({rows / score:,.0f} rows/s per worker), "
          f"context chain {chain:.2f} ({rows / chain:,.0f} rows/s, sequential)")  # fmt: skip
    # driver, context chain and workers are pipelined: the slowest stage bounds the run, and so does the
    # CPU there is (cluster start-up, pickling and Dask's per-task overhead come on top: see the runs below)
    one = read + score + notices
    total = serial + score + chain
    for n in (1, 2, 4, 8, 16):
        bound = max(serial, chain, (score + chain) / n)
        cores = max(bound, total / 2)
        print(
            f"  {n:2d} worker(s): >= {bound:.2f} s with a core each ({one / bound:.2f}x one process); "
            f"on 2 cores in all >= {cores:.2f} s ({one / cores:.2f}x)"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", help=f"conn logs (default: {SHARED})")
    ap.add_argument("--replay-rows", type=int, help="score a replay of the shared captures this long instead")
    ap.add_argument("--replay-source", help="the captures make_conn.py replays (default: all the shared ones)")
    ap.add_argument("--sensors", type=int, default=0, help="split the replay into an archive of N sensors")
    ap.add_argument("--sensor-from", help="passed to zeek-ml score: a sensor per match of this regex on the path")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--partition-rows", type=int, default=50_000)
    ap.add_argument("--warmup-rows", type=int)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="zeek-ml-bench-"))
    inputs = args.inputs or [str(SHARED)]
    if args.replay_rows:
        sensors = max(1, args.sensors)
        for i in range(sensors):
            replay = tmp / f"conn-{args.replay_rows}.log"
            if args.sensors:  # ARCHIVE/<sensor>/<day>/conn.<hours>.log, each sensor its own replay
                replay = tmp / "archive" / f"sensor{i}" / "2026-11-30" / "conn.00:00:00-01:00:00.log"
                replay.parent.mkdir(parents=True)
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "make_conn.py"), "--rows", str(args.replay_rows // sensors)]
                + ["-o", str(replay), "--seed", str(i)]
                + (["--source", args.replay_source] if args.replay_source else []),
                check=True,
                capture_output=True,
            )
        inputs = [str(tmp / "archive")] if args.sensors else [str(replay)]
    part = ["--partition-rows", str(args.partition_rows)]
    if args.sensor_from:
        part += ["--sensor-from", args.sensor_from]
    if args.warmup_rows is not None:
        part += ["--warmup-rows", str(args.warmup_rows)]
    model_of_scaling(inputs)
    one = ["--sensor-from", args.sensor_from] if args.sensor_from else []
    configs = {"1 process": one, "--workers 1": ["--workers", "1", *part], "--workers 2": ["--workers", "2", *part]}
    walls: dict[str, list[float]] = {k: [] for k in configs}
    cpus: dict[str, list[float]] = {k: [] for k in configs}
    rows = 0
    engine = {}
    for rnd in range(args.rounds):
        for name, extra in configs.items():
            out = tmp / f"{name.replace(' ', '_')}.{rnd}.log"
            wall, cpu, err = run(inputs, out, extra)
            walls[name].append(wall)
            cpus[name].append(cpu)
            m = re.search(r"read ([\d,]+) records", err)
            rows = int(m.group(1).replace(",", "")) if m else rows
            e = re.search(r"\d[\d,]* (?:partition|sensor)\(s\)[: ].*", err)
            if e:
                engine[name] = e.group(0)
            if name != "1 process" and body(out) != body(tmp / f"1_process.{rnd}.log"):
                raise SystemExit(f"{name}: the notice log differs from the single-process run")
            print(f"round {rnd + 1} {name:12s} wall {wall:6.2f} s  cpu {cpu:6.2f} s", file=sys.stderr, flush=True)
    print(f"inputs: {' '.join(inputs)} ({rows:,} rows); {os.cpu_count()} CPUs; {args.rounds} interleaved rounds")
    print(f"{'':12s} {'wall min':>9s} {'wall med':>9s} {'cpu min':>8s} {'cpu med':>8s} {'rows/s':>9s}  speed-up")
    base = min(walls["1 process"])
    for name in configs:
        w, c = walls[name], cpus[name]
        print(
            f"{name:12s} {min(w):9.2f} {statistics.median(w):9.2f} {min(c):8.2f} {statistics.median(c):8.2f} "
            f"{rows / min(w):9,.0f}  {base / min(w):.2f}x"
        )
    for name, line in engine.items():
        print(f"{name}: {line}")
    print("notice logs: identical to the single-process run in every round")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
