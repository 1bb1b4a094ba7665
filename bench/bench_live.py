#!/usr/bin/env python3
"""Live benchmark: line-to-verdict latency, CPU and memory of ``zeek-ml watch`` under load.

A writer (bench/zeek_live_writer.py) appends replayed real conn rows to a live
conn.log at a fixed rate and rotates it every ``--rotate-seconds``; it records
the wall-clock time each uid was written. ``zeek-ml watch`` scores the log and
appends every connection with its score (``--all``); this script tails that
output and stamps the time each uid's verdict appeared. Latency is the
difference, per connection. CPU and peak RSS of the watcher come from /proc.

The baseline, measured in the same run on the same writer: ``tail -F``-like
copying of the live log's lines to a file with the same kind of polling
(Python, no parsing, no model): the floor any tailer pays on this machine.
The ratio is what matters; absolute figures drift with the machine.

    python bench/bench_live.py --rates 10000 50000 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITER = os.path.join(ROOT, "bench", "zeek_live_writer.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


class OutputTail(threading.Thread):
    """Stamp the arrival time of each uid in a growing TSV file (uid in column ``uid_col``)."""

    def __init__(self, path: str, uid_col: int, interval: float = 0.002):
        super().__init__(daemon=True)
        self.path, self.uid_col, self.interval = path, uid_col, interval
        self.arrived: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not os.path.exists(self.path) and not self.stop.is_set():
            time.sleep(self.interval)
        with open(self.path, "rb") as f:
            partial = b""
            while True:
                chunk = f.read()
                if chunk:
                    now = time.time()
                    buf = partial + chunk
                    cut = buf.rfind(b"\n") + 1
                    partial = buf[cut:]
                    for line in buf[:cut].split(b"\n"):
                        if line and not line.startswith(b"#"):
                            cols = line.split(b"\t")
                            if len(cols) > self.uid_col:
                                self.arrived.setdefault(cols[self.uid_col].decode(), now)
                elif self.stop.is_set():
                    return
                else:
                    time.sleep(self.interval)


def baseline_tailer(live_dir: str, out_path: str, stop: threading.Event, interval: float) -> None:
    """The floor: follow conn.log by name, reopen on rotation, copy whole lines out."""
    path = os.path.join(live_dir, "conn.log")
    with open(out_path, "wb") as out:
        f = None
        ino = None
        partial = b""
        while not stop.is_set():
            if f is None:
                try:
                    f = open(path, "rb")  # noqa: SIM115
                    ino = os.fstat(f.fileno()).st_ino
                except FileNotFoundError:
                    time.sleep(interval)
                    continue
            chunk = f.read()
            if chunk:
                buf = partial + chunk
                cut = buf.rfind(b"\n") + 1
                partial = buf[cut:]
                out.write(buf[:cut])
                out.flush()
                continue
            try:
                if os.stat(path).st_ino != ino:
                    f.close()
                    f, partial = None, b""
                    continue
            except FileNotFoundError:
                pass
            time.sleep(interval)


def wait_started(watcher: subprocess.Popen, err_path: str, timeout: float = 120.0) -> None:
    """Until the watcher logs its ``started`` event (model loaded, warmed up, following the log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(err_path, "rb") as f:
            if b'"event": "started"' in f.read():
                return
        if watcher.poll() is not None:
            raise RuntimeError(f"zeek-ml watch exited with {watcher.returncode} before it started (see {err_path})")
        time.sleep(0.05)
    raise RuntimeError(f"zeek-ml watch did not start within {timeout:g} s (see {err_path})")


def read_stamps(path: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with open(path) as f:
        for line in f:
            uid, t = line.split("\t")
            out[uid] = float(t)
    return out


def run_once(
    kind: str, rate: int, seconds: float, rotate_seconds: float, work: str, burst: int | None = None
) -> dict[str, float]:
    logs = os.path.join(work, f"{kind}-{rate}")
    shutil.rmtree(logs, ignore_errors=True)
    os.makedirs(logs)
    stamps_path = os.path.join(work, f"{kind}-{rate}.stamps")
    out_path = os.path.join(work, f"{kind}-{rate}.out")
    rows = int(rate * seconds)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    watcher = None
    stop = threading.Event()
    if kind == "zeek-ml":
        ckpt = out_path + ".ckpt"
        cmd = [sys.executable, "-m", "zeek_ml", "watch", logs, "-o", out_path + ".notice", "--all", out_path]
        cmd += ["--checkpoint", ckpt, "--poll-interval", "0.05", *WATCH_ARGS]
        err_path = out_path + ".err"
        with open(err_path, "wb") as err:
            watcher = subprocess.Popen([*cmd, "--log-format", "json"], env=env, stderr=err)
        tail = OutputTail(out_path, uid_col=1)
        wait_started(watcher, err_path)  # the model loaded and warmed up before the clock starts
        cpu0 = proc_cpu_seconds(watcher.pid)
    else:
        t = threading.Thread(target=baseline_tailer, args=(logs, out_path, stop, 0.05), daemon=True)
        t.start()
        tail = OutputTail(out_path, uid_col=1)
        cpu0 = 0.0
    tail.start()
    zeek_writes = burst is not None  # as Zeek writes: --burst rows a write, each line whole
    burst = burst or max(1, rate // 200)  # by default a write every 5 ms, now and then ending mid-line
    started = time.monotonic()
    subprocess.run(
        [
            *(sys.executable, WRITER, logs, "--rows", str(rows), "--rotate-every", str(int(rate * rotate_seconds))),
            *("--burst", str(burst), "--rate", str(rate), "--style", "zeekctl", "--timestamps", stamps_path),
            *(["--whole-writes"] if zeek_writes else []),
        ],
        env=env,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    wrote_for = time.monotonic() - started
    stamps = read_stamps(stamps_path)
    deadline = time.monotonic() + 60
    while len(tail.arrived) < len(stamps) and time.monotonic() < deadline:
        time.sleep(0.05)
    result: dict[str, float] = {"rate": rate, "rows": len(stamps), "write_seconds": wrote_for}
    if watcher is not None:
        result["cpu_percent"] = 100 * (proc_cpu_seconds(watcher.pid) - cpu0) / wrote_for
        result["rss_mib"], result["peak_rss_mib"] = proc_rss_mib(watcher.pid)
        watcher.terminate()
        watcher.wait(timeout=30)
    stop.set()
    tail.stop.set()
    tail.join(timeout=5)
    lat = np.array([tail.arrived[u] - t for u, t in stamps.items() if u in tail.arrived]) * 1000
    with open(os.path.join(work, f"{kind}-{rate}.latency"), "w") as f:  # uid, written at, ms to its verdict
        f.writelines(
            f"{u}\t{t:.6f}\t{1000 * (tail.arrived[u] - t):.3f}\n" for u, t in stamps.items() if u in tail.arrived
        )
    result["seen"] = len(lat)
    result["p50_ms"] = float(np.percentile(lat, 50)) if len(lat) else float("nan")
    result["p99_ms"] = float(np.percentile(lat, 99)) if len(lat) else float("nan")
    result["max_ms"] = float(lat.max()) if len(lat) else float("nan")
    return result


WATCH_ARGS: list[str] = []
"""Extra arguments for ``zeek-ml watch`` (``--watch-arg``)."""


def timeline(path: str, step: float) -> None:
    """p50 and max latency of the rows written in each ``step`` seconds (from a ``.latency`` file)."""
    data = np.loadtxt(path, usecols=(1, 2), ndmin=2)
    if not len(data):
        return
    at, lat = data[:, 0] - data[:, 0].min(), data[:, 1]
    for start in np.arange(0.0, float(at.max()) + step, step):
        rows = (at >= start) & (at < start + step)
        if rows.any():
            worst, p50 = float(lat[rows].max()), float(np.percentile(lat[rows], 50))
            print(f"  {start:7.2f} s  p50 {p50:6.0f} ms  max {worst:6.0f} ms  {'#' * int(worst / 10)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", type=int, nargs="+", default=[10000, 50000], help="conn rows per second")
    p.add_argument("--seconds", type=float, default=20.0, help="how long the writer writes, per rate")
    p.add_argument("--rotate-seconds", type=float, default=5.0, help="rotate conn.log this often")
    p.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    p.add_argument(
        "--watch-arg",
        action="append",
        default=[],
        help="an extra argument for zeek-ml watch (repeat it: --watch-arg=--gather --watch-arg=0)",
    )
    p.add_argument(
        "--burst",
        type=int,
        metavar="ROWS",
        help="rows per write, each ending a line (default: a write every 5 ms, now and then ending mid-line); "
        "1000 writes as a real Zeek does, whose writer gets its records 1,000 at a time "
        "(Log::write_buffer_size) or once a second (Log::flush_interval)",
    )
    p.add_argument(
        "--timeline",
        type=float,
        metavar="SECONDS",
        help="also print zeek-ml's p50 and max latency per SECONDS of write time (where the slow rows are)",
    )
    args = p.parse_args(argv)
    WATCH_ARGS[:] = args.watch_arg
    work = args.keep or tempfile.mkdtemp(prefix="zeek-ml-live-")
    os.makedirs(work, exist_ok=True)
    print(
        f"{'tailer':<9} {'rate/s':>7} {'rows':>8} {'seen':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'CPU %':>6} {'RSS MiB':>8} {'peak MiB':>9} {'p99 / floor':>11}"
    )
    for rate in args.rates:
        burst = min(args.burst, rate) if args.burst else None
        base = run_once("baseline", rate, args.seconds, args.rotate_seconds, work, burst)
        ours = run_once("zeek-ml", rate, args.seconds, args.rotate_seconds, work, burst)
        for name, r in (("floor", base), ("zeek-ml", ours)):
            ratio = r["p99_ms"] / base["p99_ms"] if base["p99_ms"] > 0 else float("nan")
            print(
                f"{name:<9} {r['rate']:>7.0f} {r['rows']:>8.0f} {r['seen']:>8.0f} {r['p50_ms']:>8.1f} "
                f"{r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {r.get('cpu_percent', float('nan')):>6.1f} "
                f"{r.get('rss_mib', float('nan')):>8.0f} {r.get('peak_rss_mib', float('nan')):>9.0f} {ratio:>11.2f}"
            )
        if args.timeline:
            timeline(os.path.join(work, f"zeek-ml-{rate}.latency"), args.timeline)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
