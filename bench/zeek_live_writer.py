#!/usr/bin/env python3
"""Play Zeek: append real conn rows to a live conn.log and rotate it exactly as Zeek does.

Rows are real connections (from ``sample_logs/`` by default), replayed with a
fresh ``uid`` and a ``ts`` from a simulated clock. The file is written the way
Zeek's ASCII writer writes it: the header block with ``#open``, rows appended in
bursts (a burst may end in the middle of a line, finished by the next one), and
at rotation a ``#close`` line, a rename, and a new ``conn.log`` with a fresh
header. Rotation styles:

- ``zeekctl``: ``conn.log`` -> ``conn.<open>.log`` in the same directory;
- ``archiver``: ``conn.log`` -> ``log-queue/conn__<open>__<close>__.log``; the next
  rotation then gzips the previous queue file into
  ``archive/YYYY-MM-DD/conn.HH:MM:SS-HH:MM:SS.log.gz`` and deletes it, as
  zeek-archiver does;
- ``mixed``: a random choice at each rotation.

Every uid written is listed, in order, in ``--manifest`` (JSON), the ground
truth for exactly-once tests and the live benchmark.

    python bench/zeek_live_writer.py DIR --rows 20000 --rotate-every 3000 --rate 10000
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import shutil
import sys
import time

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from zeek_ml.formats.schema import CONN_FIELDS  # noqa: E402
from zeek_ml.formats.writer import ZeekLogWriter  # noqa: E402
from zeek_ml.sources.files import read_frames  # noqa: E402

DEFAULT_SOURCES = [
    os.path.join(ROOT, "sample_logs", "ctu-normal-40.first2000.conn.log.labeled.gz"),
    os.path.join(ROOT, "sample_logs", "slips-port-scans-horizontal.conn.log"),
    os.path.join(ROOT, "sample_logs", "zat.conn.log"),
]
START = 1_700_000_000.0


def stamp(t: float, fmt: str = "%Y-%m-%d-%H-%M-%S") -> str:
    return time.strftime(fmt, time.localtime(t))


class LiveConnLog:
    """conn.log in ``directory``, written and rotated like Zeek does."""

    def __init__(
        self,
        directory: str,
        rows: pd.DataFrame,
        style: str,
        rng: random.Random,
        extra_field: bool,
        whole_writes: bool = False,
    ):
        self.dir = directory
        self.whole_writes = whole_writes
        self.rows = rows
        self.style = style
        self.rng = rng
        self.extra_field = extra_field
        self.clock = START
        self.seq = 0
        self.files = 0
        self.manifest: list[list[str]] = []
        self.queue_previous: str | None = None
        self._rendered: list[bytes] | None = None
        self.open_file()

    def fields(self) -> list[tuple[str, str]]:
        fields = list(CONN_FIELDS)
        if self.extra_field and self.files % 2 == 1:
            fields.append(("ip_proto", "count"))  # Zeek 7.1 adds it: the header changes between files
        return fields

    def open_file(self) -> None:
        self.open_time = self.clock
        self.f = open(os.path.join(self.dir, "conn.log"), "wb")  # noqa: SIM115
        self.writer = ZeekLogWriter(self.f, "conn", self.fields(), open_time=self.open_time)
        self.f.flush()
        self.manifest.append([])
        self.files += 1
        self.pending = b""

    def write_rows(self, n: int) -> None:
        seq = self.seq
        uids = [f"C{seq + i:09d}zk{self.files:05d}" for i in range(n)]
        # ``ts`` and ``uid`` are fresh, the rest of each line is its source row's, rendered once by
        # ZeekLogWriter (rendering every burst through pandas cost this writer a core at 50k rows/s,
        # a core the watcher it feeds then lacked)
        stamps = ZeekLogWriter(io.BytesIO(), "conn", [("ts", "time")], header=False).render(
            pd.DataFrame({"ts": self.clock + np.arange(n) * 0.001})
        )
        tail = b"\t6\n" if self.writer.fields[-1][0] == "ip_proto" else b"\n"
        rest = self._rest()
        lines = [
            b"%s\t%s\t%s%s" % (t, u.encode(), rest[(seq + i) % len(rest)], tail)
            for i, (t, u) in enumerate(zip(stamps.split(b"\n"), uids, strict=False))
        ]
        self.seq += n
        self.clock += n * 0.001
        self.manifest[-1].extend(uids)
        data = self.pending + b"".join(lines)
        # End the burst in the middle of a line now and then: a reader must wait for the newline
        # (not with whole_writes: Zeek's writer writes each record whole).
        whole = self.whole_writes or self.rng.random() < 0.5
        cut = len(data) if whole else self.rng.randrange(1, len(data) + 1)
        self.f.write(data[:cut])
        self.f.flush()
        self.pending = data[cut:]

    def _rest(self) -> list[bytes]:
        """Each source row's line from its third field on (after ``ts`` and ``uid``), without the newline."""
        if self._rendered is None:
            text = ZeekLogWriter(io.BytesIO(), "conn", list(CONN_FIELDS), header=False).render(self.rows)
            self._rendered = [line.split(b"\t", 2)[2] for line in text.split(b"\n")[:-1]]
        return self._rendered

    def rotate(self) -> None:
        if self.pending:
            self.f.write(self.pending)
            self.pending = b""
        self.clock = max(self.clock, self.open_time) + 1.0  # #open has 1 s resolution
        close_time = self.clock
        self.writer.close(close_time=close_time)
        self.f.close()
        style = self.style if self.style != "mixed" else self.rng.choice(["zeekctl", "archiver"])
        live = os.path.join(self.dir, "conn.log")
        if style == "zeekctl":
            os.rename(live, os.path.join(self.dir, f"conn.{stamp(self.open_time)}.log"))
        else:
            queue = os.path.join(self.dir, "log-queue")
            os.makedirs(queue, exist_ok=True)
            self.archive_previous()
            name = f"conn__{stamp(self.open_time)}__{stamp(close_time)}__.log"
            os.rename(live, os.path.join(queue, name))
            self.queue_previous = os.path.join(queue, name)
        self.clock += 1.0
        self.open_file()

    def archive_previous(self) -> None:
        """zeek-archiver: gzip the queued file into archive/DAY/ and delete it."""
        src = self.queue_previous
        if not src or not os.path.exists(src):
            return
        base = os.path.basename(src)
        _, open_s, close_s, _ = base.split("__")
        day = open_s[:10]
        t1 = open_s[11:].replace("-", ":")
        t2 = close_s[11:].replace("-", ":")
        dest_dir = os.path.join(self.dir, "archive", day)
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, f"conn.{t1}-{t2}.log.gz")
        with open(src, "rb") as f, gzip.open(dest + ".tmp", "wb") as g:
            shutil.copyfileobj(f, g)
        os.rename(dest + ".tmp", dest)
        os.unlink(src)
        self.queue_previous = None

    def finish(self) -> None:
        if self.pending:
            self.f.write(self.pending)
            self.pending = b""
        self.f.flush()


def load_rows(sources: list[str]) -> pd.DataFrame:
    frame = read_frames([s for s in sources if os.path.exists(s)])
    return frame[[name for name, _ in CONN_FIELDS]].reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="directory to write conn.log into (created)")
    p.add_argument("--rows", type=int, default=10000, help="rows in all")
    p.add_argument("--rotate-every", type=int, default=2000, help="rows per file")
    p.add_argument("--burst", type=int, default=100, help="rows per write")
    p.add_argument("--rate", type=float, default=5000, help="rows per second (0: as fast as possible)")
    p.add_argument("--style", choices=("zeekctl", "archiver", "mixed"), default="mixed")
    p.add_argument("--header-change", action="store_true", help="every other file adds an ip_proto column")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--manifest", help="write the uids written, per file, here (JSON)")
    p.add_argument("--source", action="append", help="conn logs to replay rows from (default: sample_logs)")
    p.add_argument("--timestamps", help="append 'uid<TAB>wall-clock time written' lines here (latency bench)")
    p.add_argument(
        "--whole-writes",
        action="store_true",
        help="end every write with a whole line, as Zeek does (default: a burst may end mid-line)",
    )
    args = p.parse_args(argv)

    os.makedirs(args.dir, exist_ok=True)
    rng = random.Random(args.seed)
    rows = load_rows(args.source or DEFAULT_SOURCES)
    log = LiveConnLog(args.dir, rows, args.style, rng, args.header_change, args.whole_writes)
    stamps = open(args.timestamps, "w") if args.timestamps else None  # noqa: SIM115
    written = in_file = 0
    started = time.monotonic()
    while written < args.rows:
        n = min(args.burst, args.rows - written, args.rotate_every - in_file)
        log.write_rows(n)
        if stamps is not None:
            now = time.time()
            stamps.writelines(f"{uid}\t{now:.6f}\n" for uid in log.manifest[-1][-n:])
        written += n
        in_file += n
        if in_file >= args.rotate_every and written < args.rows:
            log.rotate()
            in_file = 0
        if args.rate > 0:
            ahead = written / args.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    log.finish()
    if stamps is not None:
        stamps.close()
    if args.manifest:
        with open(args.manifest, "w") as f:
            json.dump({"files": log.manifest, "rows": written}, f)
    print(f"wrote {written} rows in {log.files} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
