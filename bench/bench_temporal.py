#!/usr/bin/env python3
"""Benchmark the per-host context alone (``HostContext.update``) on one large conn.log.

Each measurement runs in a fresh interpreter (in checkouts from before issue 13's third slice the numba
cache load or compile is part of the first batch, as at every CLI start; since then the loop is a C
extension, built in place in a checkout that lacks it): the file is read into batches first (not timed),
then every batch goes through ``HostContext.update``; CPU-seconds of the updates (all batches, and all but
the first), rows per CPU-second, and a digest of the features (the same digest: bit-identical features).
Code versions are compared interleaved (repeat 1: a, b; repeat 2: a, b; ...), min and median::

    git archive db654c2 zeek_ml | tar -x -C /tmp/base
    python bench/bench_temporal.py --reuse conn.log --code base=/tmp/base --code new=. --repeat 3
    python bench/bench_temporal.py --reuse conn.log --code old=/tmp/old --cold   # numba compiles (empty cache)

Without ``--reuse`` a 1 M-row file is built by ``make_conn.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_score  # ensure_compiled: a checkout's C extension, built in place

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


def child(path: str, rows: int) -> dict[str, object]:
    """In a fresh interpreter whose path starts with the checkout to measure."""
    from zeek_ml.sources.files import iter_batches

    batches, n = [], 0
    for batch in iter_batches([path]):
        batches.append(batch)
        n += len(batch)
        if rows and n >= rows:
            break
    t0 = time.process_time()
    from zeek_ml.features.context import HostContext

    imported = time.process_time() - t0
    ctx = HostContext()
    digest = hashlib.sha256()
    t0 = time.process_time()
    first = 0.0
    for i, batch in enumerate(batches):
        digest.update(ctx.update(batch).to_numpy().tobytes())
        if i == 0:
            first = time.process_time() - t0
    total = time.process_time() - t0
    t0 = time.process_time()
    state = json.dumps(ctx.state())
    return {
        "rows": n,
        "rows_first": len(batches[0]),
        "import": imported,
        "first": first,
        "total": total,
        "state": time.process_time() - t0,
        "digest": digest.hexdigest()[:12],
        "state_digest": hashlib.sha256(state.encode()).hexdigest()[:12],
        "hosts": len(ctx),
    }


def run(code_dir: str, path: str, rows: int, cold: bool) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [code_dir, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", path, "--rows", str(rows)],
            env=env,
            cwd=code_dir,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"{code_dir}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", metavar="PATH", help="measure this conn.log (else a 1 M-row one is built)")
    parser.add_argument("--rows", type=int, default=0, help="only the first batches holding this many rows")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--code", action="append", default=[], metavar="NAME=DIR", help="checkouts to compare")
    parser.add_argument("--cold", action="store_true", help="an empty numba cache: the compile is measured")
    parser.add_argument("--child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.rows)))
        return 0
    path = args.reuse
    if not path:
        path = str(BENCH_DIR / "_data" / "conn-1M.log")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            make = [sys.executable, str(BENCH_DIR / "make_conn.py"), "--rows", "1000000", "-o", path]
            subprocess.run(make, check=True)
    codes = [tuple(c.split("=", 1)) for c in args.code] or [("this", str(REPO_ROOT))]
    for _, code_dir in codes:
        bench_score.ensure_compiled(os.path.abspath(code_dir))
    runs: dict[str, list[dict]] = {name: [] for name, _ in codes}
    for rep in range(args.repeat):
        for name, code_dir in codes:
            r = run(os.path.abspath(code_dir), os.path.abspath(path), args.rows, args.cold)
            runs[name].append(r)
            line = f"  repeat {rep + 1} {name:<8} {r['total']:7.2f} CPU-s (first batch {r['first']:.2f})"
            print(line, file=sys.stderr)
    n = runs[codes[0][0]][0]["rows"]
    print(f"\nfile: {path} ({n:,} rows), HostContext.update, {args.repeat} interleaved repeat(s), "
          f"numba cache {'empty (compile measured)' if args.cold else 'as found'}")  # fmt: skip
    print(f"{'code':<8} {'CPU-s min':>9} {'median':>7} {'rows/CPU-s':>11} {'1st batch':>9} "
          f"{'rest rows/CPU-s':>15} {'state s':>7}  features, state")  # fmt: skip
    for name, _ in codes:
        rs = runs[name]
        total = [r["total"] for r in rs]
        rest = min((r["total"] - r["first"]) / (r["rows"] - r["rows_first"]) for r in rs if r["rows"] > r["rows_first"])
        digests = sorted({f"{r['digest']} {r['state_digest']}" for r in rs})
        print(
            f"{name:<8} {min(total):9.2f} {statistics.median(total):7.2f} {n / min(total):11,.0f} "
            f"{statistics.median(r['first'] for r in rs):9.2f} {1 / rest:15,.0f} "
            f"{statistics.median(r['state'] for r in rs):7.2f}  {', '.join(digests)}"
        )
    print("(1st batch: median CPU-s of the first update, numba cache load or compile included; rest: the others)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
