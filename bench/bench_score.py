#!/usr/bin/env python3
"""Benchmark zeek-ml against the pyarrow parse floor on one large conn.log.

Stages, each run in its own subprocess so that its peak RSS is its own
(``os.wait4`` returns the resource usage of exactly that child):

1. ``pyarrow``: ``pyarrow.csv.read_csv`` of the data lines only (tab
   delimiter, comment lines skipped, all 21 columns typed): the floor.
2. ``reader``: ``zeek_ml.sources.files.iter_batches`` over the file, counting rows.
3. ``score``: ``zeek-ml score FILE -o OUT`` end to end (interpreter start,
   imports and model load included).

Then a memory-flatness check runs stages 2 and 3 on a 0.5 M-row and a 2 M-row
file and compares their peak RSS. The input is built by ``make_conn.py``:
replayed real rows with fresh ts and uid. Machines are noisy, so the figures
to compare are the ratios, not the absolute times.

    python bench/bench_score.py                  # 2 M rows, best of 1
    python bench/bench_score.py --repeat 3       # best of 3
    python bench/bench_score.py --reuse conn.log # measure an existing file

Two code versions side by side (``--code``): ``zeek-ml score`` run from each checkout, interleaved
(repeat 1: base, new; repeat 2: base, new; ...), CPU-seconds and wall time, min and median, peak RSS,
and whether both wrote the same notices::

    git archive HEAD zeek_ml models pyproject.toml | tar -x -C /tmp/base
    python bench/bench_score.py --reuse conn.log --code base=/tmp/base --code new=. \\
        --variant default= --variant no-aggregate=--no-aggregate --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "_data"

TARGET_ROWS_PER_S = 1_000_000
TARGET_FLOOR_RATIO = 1.5
FLAT_RSS_RATIO = 1.25  # peak RSS at 4x the rows may grow at most this much

# Column types for the floor parse: what a conn reader has to produce anyway.
FLOOR_TYPES = {
    "ts": "float64",
    "id.orig_p": "int64",
    "id.resp_p": "int64",
    "duration": "float64",
    "orig_bytes": "int64",
    "resp_bytes": "int64",
    "missed_bytes": "int64",
    "orig_pkts": "int64",
    "orig_ip_bytes": "int64",
    "resp_pkts": "int64",
    "resp_ip_bytes": "int64",
}


# --------------------------------------------------------------------------
# Children: each stage runs here, in a fresh interpreter.


def read_header(path: str) -> tuple[list[str], int]:
    """The ``#fields`` names of a Zeek TSV log (plain or gzipped) and its header lines."""
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    names: list[str] = []
    lines = 0
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines += 1
            if line.startswith("#fields"):
                names = line.rstrip("\r\n").split("\t")[1:]
    if not names:
        raise SystemExit(f"{path}: no #fields line")
    return names, lines


def child_pyarrow(path: str, use_threads: bool = True) -> dict[str, object]:
    """Stage 1: parse the data lines with pyarrow.csv, nothing else (``cpu``: the process's CPU-seconds)."""
    import pyarrow.csv as pacsv

    names, header_lines = read_header(path)
    t0, c0 = time.perf_counter(), time.process_time()
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=header_lines, use_threads=use_threads),
        parse_options=pacsv.ParseOptions(
            delimiter="\t",
            quote_char=False,
            double_quote=False,
            # comment lines after the header (#close, a new header) have the
            # wrong column count: skip them
            invalid_row_handler=lambda row: "skip",
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={n: FLOOR_TYPES.get(n, "string") for n in names},
            null_values=["-"],
            strings_can_be_null=True,
        ),
    )
    return {"rows": table.num_rows, "seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}


def child_reader(path: str) -> dict[str, object]:
    """Stage 2: zeek-ml's reader alone, counting rows."""
    try:
        from zeek_ml.sources.files import iter_batches
    except ImportError as exc:
        return {"unavailable": f"zeek_ml.sources.files.iter_batches: {exc}"}
    t0 = time.perf_counter()
    rows = 0
    for batch in iter_batches(path):
        rows += len(batch)
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def run_child(stage: str, path: str) -> None:
    """Run one stage in this process and print its result as JSON."""
    result = {"pyarrow": child_pyarrow, "reader": child_reader}[stage](path)
    print(json.dumps(result))


# --------------------------------------------------------------------------
# Parent: runs the children and measures them.


@dataclass
class Measure:
    """One stage's best run."""

    stage: str
    rows: int | None = None
    seconds: float | None = None
    peak_rss_mib: float | None = None
    note: str = ""

    @property
    def rows_per_s(self) -> float | None:
        """Rows per second, if measured."""
        if self.rows is None or not self.seconds:
            return None
        return self.rows / self.seconds


def last_line(text: str) -> str:
    """The last non-empty line of a child's output (its error, usually)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


def child_env() -> dict[str, str]:
    """Environment for children: the checkout's zeek_ml first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_measured(cmd: list[str]) -> tuple[int, str, float, float]:
    """Run `cmd`; return (exit status, output, wall seconds, peak RSS MiB of that child)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=REPO_ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return proc.returncode, text, seconds, usage.ru_maxrss / 1024  # Linux: KiB


def measure_child(stage: str, path: str, repeat: int) -> Measure:
    """Stage 1 or 2: time reported by the child, peak RSS from wait4."""
    best = Measure(stage)
    for _ in range(repeat):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, path]
        code, text, _, rss = run_measured(cmd)
        try:
            result = json.loads(text.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return Measure(stage, note=f"failed (exit {code}): {last_line(text)}")
        if "unavailable" in result:
            return Measure(stage, note=f"not available ({result['unavailable']})")
        if best.seconds is None or result["seconds"] < best.seconds:
            best.rows, best.seconds = result["rows"], result["seconds"]
        best.peak_rss_mib = max(best.peak_rss_mib or 0.0, rss)
    return best


def score_command() -> list[str] | None:
    """The zeek-ml CLI, as an installed script or ``python -m zeek_ml``."""
    script = shutil.which("zeek-ml")
    if script:
        return [script]
    probe = [
        sys.executable,
        "-c",
        "import importlib.util as u; assert u.find_spec('zeek_ml.__main__')",
    ]
    if subprocess.run(probe, check=False, env=child_env(), cwd=REPO_ROOT, capture_output=True).returncode == 0:
        return [sys.executable, "-m", "zeek_ml"]
    return None


def count_data_lines(path: str) -> int:
    """Data lines (not starting with ``#``) of a written log."""
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if not line.startswith(b"#"))


def measure_score(path: str, rows: int, repeat: int, extra: list[str]) -> Measure:
    """Stage 3: ``zeek-ml score FILE -o OUT`` end to end, wall time of the process."""
    cli = score_command()
    if cli is None:
        return Measure("score", note="not available (no zeek-ml script, no zeek_ml.__main__)")
    best = Measure("score")
    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "notice.log")
        for _ in range(repeat):
            if os.path.exists(out_path):
                os.remove(out_path)
            code, text, seconds, rss = run_measured([*cli, "score", path, "-o", out_path, *extra])
            if code != 0:
                return Measure("score", note=f"failed (exit {code}): {last_line(text)}")
            if best.seconds is None or seconds < best.seconds:
                best.rows, best.seconds = rows, seconds
            best.peak_rss_mib = max(best.peak_rss_mib or 0.0, rss)
        best.note = f"{count_data_lines(out_path):,} notice lines written"
    return best


def bench_file(rows: int, gzip_output: bool = False) -> str:
    """A generated conn.log of `rows` replayed rows, made once and cached in bench/_data."""
    sys.path.insert(0, str(BENCH_DIR))
    import make_conn

    DATA_DIR.mkdir(exist_ok=True)
    path = DATA_DIR / f"conn-{rows}.log{'.gz' if gzip_output else ''}"
    if path.exists():
        print(f"reusing {path.relative_to(REPO_ROOT)}", file=sys.stderr)
    else:
        t0 = time.perf_counter()
        make_conn.make_conn(str(path), rows=rows, compress=gzip_output)
        print(
            f"generated {path.relative_to(REPO_ROOT)} ({rows:,} replayed real rows) "
            f"in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return str(path)


def fmt(value: float | None, spec: str) -> str:
    """Format a number or a dash."""
    return "-" if value is None else format(value, spec)


def print_table(measures: list[Measure], path: str) -> None:
    """The stage table, with each stage's time as a ratio to the pyarrow floor."""
    floor = measures[0].seconds
    print(f"\nfile: {path} ({os.path.getsize(path) / 2**20:.0f} MiB)")
    print(f"{'stage':<8} {'rows':>10} {'seconds':>8} {'rows/s':>11} {'peak RSS MiB':>13} {'x floor':>8}")
    for m in measures:
        ratio = m.seconds / floor if m.seconds and floor else None
        print(
            f"{m.stage:<8} {fmt(m.rows, ',d'):>10} {fmt(m.seconds, '.2f'):>8} "
            f"{fmt(m.rows_per_s, ',.0f'):>11} {fmt(m.peak_rss_mib, '.0f'):>13} "
            f"{fmt(ratio, '.2f'):>8}  {m.note}"
        )


def print_targets(measures: list[Measure]) -> None:
    """Check the end-to-end targets."""
    floor, score = measures[0], measures[-1]
    if score.seconds is None or floor.seconds is None:
        print("\ntargets: not checked (no score measurement)")
        return
    rate, ratio = score.rows_per_s or 0.0, score.seconds / floor.seconds
    ok_rate, ok_ratio = rate >= TARGET_ROWS_PER_S, ratio <= TARGET_FLOOR_RATIO
    print("\ntargets:")
    print(f"  end to end >= {TARGET_ROWS_PER_S:,} rows/s: {rate:,.0f}  {'PASS' if ok_rate else 'FAIL'}")
    print(f"  end to end <= {TARGET_FLOOR_RATIO} x pyarrow parse: {ratio:.2f}  {'PASS' if ok_ratio else 'FAIL'}")


def flatness(sizes: list[int], repeat: int, extra: list[str]) -> None:
    """Peak RSS of stages 2 and 3 on a small and a large file: flat means about equal."""
    small, large = sizes
    files = {n: bench_file(n) for n in sizes}
    print(f"\nmemory flatness (peak RSS MiB; flat if {large // small}x the rows costs <= {FLAT_RSS_RATIO}x the RSS)")
    print(f"{'stage':<8} {f'{small:,} rows':>14} {f'{large:,} rows':>14} {'ratio':>6}")
    for stage in ("reader", "score"):
        if stage == "reader":
            ms = [measure_child("reader", files[n], repeat) for n in sizes]
        else:
            ms = [measure_score(files[n], n, repeat, extra) for n in sizes]
        if ms[0].peak_rss_mib is None or ms[1].peak_rss_mib is None:
            print(f"{stage:<8} {'-':>14} {'-':>14} {'-':>6}  {ms[0].note or ms[1].note}")
            continue
        ratio = ms[1].peak_rss_mib / ms[0].peak_rss_mib
        verdict = "flat" if ratio <= FLAT_RSS_RATIO else "GROWS with file size"
        print(f"{stage:<8} {ms[0].peak_rss_mib:>14.0f} {ms[1].peak_rss_mib:>14.0f} {ratio:>6.2f}  {verdict}")


# --------------------------------------------------------------------------
# Code versions side by side (--code).


@dataclass
class Runs:
    """Every run of one (code, variant) pair."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    digest: set[str] = field(default_factory=set)
    note: str = ""


def notice_digest(path: str) -> str:
    """SHA-256 of a notice log's data lines (the ``#open``/``#close`` stamps differ from run to run)."""
    h = hashlib.sha256()
    if os.path.exists(path):
        with open(path, "rb") as f:
            for line in f:
                if not line.startswith(b"#"):
                    h.update(line)
    return h.hexdigest()[:12]


def ensure_compiled(code_dir: str) -> None:
    """Build a checkout's compiled per-host context in place when it has the source (``_hostkernel.pyx``,
    since issue 13's third slice) but no extension, or one older than the source: a checkout made by
    ``git worktree`` or ``git archive`` was never installed, and would run the slow Python fallback.
    Built by setuptools from the checkout's own ``pyproject.toml``, with the flags an install uses."""
    pyx = Path(code_dir) / "zeek_ml" / "features" / "_hostkernel.pyx"
    if not pyx.exists():
        return
    built = list(pyx.parent.glob("_hostkernel*.so"))
    if not built or min(b.stat().st_mtime for b in built) < pyx.stat().st_mtime:
        build = [sys.executable, "-c", "from setuptools import setup; setup()", "build_ext", "--inplace", "--force"]
        subprocess.run(build, check=True, cwd=code_dir, stdout=subprocess.DEVNULL)


def run_code(code_dir: str, args: list[str]) -> tuple[int, str, float, float, float]:
    """``python -m zeek_ml ARGS`` from ``code_dir``: (exit status, output, wall s, CPU s, peak RSS MiB)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [code_dir, env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "zeek_ml", *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=code_dir
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    return os.waitstatus_to_exitcode(status), text, wall, cpu, usage.ru_maxrss / 1024


def compare_codes(path: str, codes: list[tuple[str, str]], variants: list[tuple[str, list[str]]], repeat: int) -> int:
    """Run ``zeek-ml score`` of every code version and variant, interleaved, and print one table."""
    rows = count_data_lines(path)
    runs = {(c, v): Runs() for c, _ in codes for v, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeat):
            for vname, extra in variants:
                for cname, cdir in codes:
                    out = os.path.join(tmp, f"{cname}-{vname}.log")
                    if os.path.exists(out):
                        os.remove(out)
                    code, text, wall, cpu, rss = run_code(cdir, ["score", os.path.abspath(path), "-o", out, *extra])
                    r = runs[(cname, vname)]
                    if code != 0:
                        r.note = f"failed (exit {code}): {last_line(text)}"
                        continue
                    r.cpu.append(cpu)
                    r.wall.append(wall)
                    r.rss.append(rss)
                    r.digest.add(notice_digest(out))
                    print(f"  repeat {rep + 1} {vname:<14} {cname:<8} {cpu:7.2f} CPU-s {wall:7.2f} s", file=sys.stderr)
    print(f"\nfile: {path} ({rows:,} rows), {repeat} interleaved repeat(s); rows per CPU-second from the min")
    head = f"{'variant':<14} {'code':<8} {'CPU-s min':>9} {'median':>7} {'rows/CPU-s':>11}"
    print(f"{head} {'wall min':>8} {'median':>7} {'rows/s':>9} {'RSS MiB':>8} {'x first':>7}  notices")
    status = 0
    for vname, _ in variants:
        first = runs[(codes[0][0], vname)]
        for cname, _ in codes:
            r = runs[(cname, vname)]
            if not r.cpu:
                print(f"{vname:<14} {cname:<8} {r.note}")
                status = 1
                continue
            speedup = min(first.cpu) / min(r.cpu) if first.cpu else None
            same = "identical to first" if r.digest == first.digest and len(r.digest) == 1 else f"{sorted(r.digest)}"
            print(
                f"{vname:<14} {cname:<8} {min(r.cpu):9.2f} {statistics.median(r.cpu):7.2f} "
                f"{rows / min(r.cpu):11,.0f} {min(r.wall):8.2f} {statistics.median(r.wall):7.2f} "
                f"{rows / min(r.wall):9,.0f} {max(r.rss):8.0f} {fmt(speedup, '.2f'):>7}  {same}"
            )
            if r.digest != first.digest:
                status = 1
    print("(x first: the first code's min CPU-seconds / this one's; notices: data lines of the notice log)")
    return status


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the generated file")
    parser.add_argument(
        "--reuse",
        metavar="PATH",
        help="measure this conn.log instead of generating one",
    )
    parser.add_argument("--repeat", type=int, default=1, help="take the best of K runs")
    parser.add_argument(
        "--flat-rows",
        default="500000,2000000",
        help="the two file sizes of the memory-flatness check ('' to skip)",
    )
    parser.add_argument(
        "--score-arg",
        action="append",
        default=[],
        help="extra argument for 'zeek-ml score' (repeatable)",
    )
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="compare 'zeek-ml score' run from these checkouts (repeatable; the first is the baseline)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="with --code: a score variant, NAME=space-separated extra arguments (default: default=)",
    )
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run_child(*args.child)
        return 0
    sys.stdout.reconfigure(line_buffering=True)  # interleave with progress on stderr

    path = args.reuse or bench_file(args.rows)
    if args.code:
        codes = [(c.partition("=")[0], os.path.abspath(c.partition("=")[2] or ".")) for c in args.code]
        for _, code_dir in codes:
            ensure_compiled(code_dir)
        variants = [(v.partition("=")[0], v.partition("=")[2].split()) for v in args.variant or ["default="]]
        return compare_codes(path, codes, variants, args.repeat)
    floor = measure_child("pyarrow", path, args.repeat)
    if floor.rows is None:
        print_table([floor], path)
        return 1
    measures = [
        floor,
        measure_child("reader", path, args.repeat),
        measure_score(path, floor.rows, args.repeat, args.score_arg),
    ]
    print_table(measures, path)
    print_targets(measures)
    if args.flat_rows:
        sizes = [int(n) for n in args.flat_rows.split(",")]
        flatness(sizes, args.repeat, args.score_arg)
    if not args.reuse or args.flat_rows:
        print("\n(input: replayed real conn rows, fresh ts and uid: bench/make_conn.py)")
    print("(machines are noisy: compare the ratios, not the seconds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
