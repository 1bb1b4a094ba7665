#!/usr/bin/env python3
"""Build a large Zeek TSV conn.log for benchmarks by replaying real rows.

The rows are replayed real rows: every data line is a real connection taken
from the labelled Zeek conn logs in the shared data folder
(``../shared/data/zeek_labeled/*.gz`` by default, see ``--source``), cycled
in file order. Only ``ts`` and ``uid`` are fresh:

- ``ts`` increases strictly monotonically; the gap between two rows is the
  real gap between them in their source file, clipped to [1 us, --max-gap s].
- ``uid`` is ``C`` + 17 base62 characters, unique within the file (a bijective
  64-bit mix of the row number, plus 6 pseudo-random characters).

The file has the standard Zeek conn header with exactly the 21 standard
fields (label columns are dropped, fields are mapped by their ``#fields``
names, IoT-23's three-space separators and CRLF line ends are fixed) and ends
with a ``#close`` line. It is written in chunks with vectorised numpy/pyarrow
code, so memory stays bounded whatever ``--rows`` is.

    python bench/make_conn.py --rows 2000000 -o /tmp/conn-2M.log [--gzip]
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import gzip
import io
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_SOURCES = (
    os.path.join(
        os.environ.get("ZEEK_ML_SHARED_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")),
        "zeek_labeled",
        "*.gz",
    ),
)

CONN_FIELDS: tuple[str, ...] = (
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
)
CONN_TYPES: tuple[str, ...] = (
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
)
REPLAYED_FIELDS = CONN_FIELDS[2:]  # everything but ts and uid is copied as is

BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
TS_WIDTH = 17  # 10 digits . 6 digits
UID_WIDTH = 18  # "C" + 17 base62 characters
PREFIX_WIDTH = TS_WIDTH + 1 + UID_WIDTH + 1  # ts TAB uid TAB
ZEEK_TIME_FORMAT = "%Y-%m-%d-%H-%M-%S"


@dataclass
class ReplayRows:
    """The real rows to replay: their tails and the real gaps before them."""

    tails: pa.StringArray  # "id.orig_h<TAB>...<TAB>tunnel_parents\n" per row
    gaps_us: np.ndarray  # int64 microseconds between this row and the previous one
    files: list[tuple[str, int]]  # (path, rows used) per source file

    def __len__(self) -> int:
        """Number of replayable rows."""
        return len(self.tails)


def _open_text(path: str) -> io.TextIOBase:
    """Open a plain or gzipped log as text, keeping escapes and odd bytes intact."""
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8", errors="surrogateescape", newline="")


def _split(line: str) -> list[str]:
    """Split one Zeek TSV line, fixing IoT-23's three-space separators and CRLF."""
    return line.rstrip("\r\n").replace("   ", "\t").split("\t")


def read_replay_rows(paths: Iterable[str], max_gap_s: float) -> ReplayRows:
    """Load the real conn rows of the given Zeek TSV logs (plain or .gz)."""
    tails: list[str] = []
    gaps: list[int] = []
    used: list[tuple[str, int]] = []
    max_gap_us = int(max_gap_s * 1e6)
    for path in paths:
        index: list[int] | None = None
        prev_ts: float | None = None
        n = 0
        with _open_text(path) as f:
            for line in f:
                if line.startswith("#"):
                    if line.startswith("#fields"):
                        names = _split(line)[1:]
                        where = {name: i for i, name in enumerate(names)}
                        if "ts" not in where:
                            break
                        index = [where.get(name, -1) for name in REPLAYED_FIELDS]
                        ts_col = where["ts"]
                        width = len(names)
                    continue
                if line.startswith("{"):
                    break  # a JSON log: not replayed
                if index is None:
                    break
                values = _split(line)
                if len(values) != width:
                    continue
                try:
                    ts = float(values[ts_col])
                except ValueError:
                    continue
                gap = 1000 if prev_ts is None else round((ts - prev_ts) * 1e6)
                prev_ts = ts
                gaps.append(min(max(gap, 1), max_gap_us))
                tails.append("\t".join(values[i] if i >= 0 else "-" for i in index) + "\n")
                n += 1
        if n:
            used.append((path, n))
    if not tails:
        raise SystemExit("no conn rows found in the source files")
    return ReplayRows(
        tails=pa.array(tails, type=pa.string()),
        gaps_us=np.asarray(gaps, dtype=np.int64),
        files=used,
    )


def _mix64(x: np.ndarray, salt: int) -> np.ndarray:
    """Bijective 64-bit mix (splitmix64 finalizer): distinct inputs stay distinct."""
    z = x + np.uint64((0x9E3779B97F4A7C15 * (salt + 1)) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _put_base62(out: np.ndarray, col_end: int, value: np.ndarray, digits: int) -> None:
    """Write `digits` base62 characters of `value` ending before column `col_end`."""
    v = value.copy()
    for k in range(1, digits + 1):
        out[:, col_end - k] = BASE62[(v % np.uint64(62)).astype(np.intp)]
        v //= np.uint64(62)


def _put_decimal(out: np.ndarray, col_end: int, value: np.ndarray, digits: int) -> None:
    """Write `digits` zero-padded decimal digits of `value` ending before `col_end`."""
    v = value.copy()
    for k in range(1, digits + 1):
        out[:, col_end - k] = 48 + (v % 10)
        v //= 10


def make_prefix(ts_us: np.ndarray, row_ids: np.ndarray, seed: int) -> np.ndarray:
    """Build the fixed-width ``ts<TAB>uid<TAB>`` bytes of each row, shape (n, 37)."""
    n = len(ts_us)
    out = np.empty((n, PREFIX_WIDTH), dtype=np.uint8)
    _put_decimal(out, 10, ts_us // 1_000_000, 10)
    out[:, 10] = ord(".")
    _put_decimal(out, TS_WIDTH, ts_us % 1_000_000, 6)
    out[:, TS_WIDTH] = ord("\t")
    uid0 = TS_WIDTH + 1
    out[:, uid0] = ord("C")
    ids = row_ids.astype(np.uint64)
    _put_base62(out, uid0 + 7, _mix64(ids, 2 * seed + 1) % np.uint64(62**6), 6)
    _put_base62(out, uid0 + UID_WIDTH, _mix64(ids, 2 * seed), 11)  # unique part
    out[:, PREFIX_WIDTH - 1] = ord("\t")
    return out


def _fixed_width_strings(block: np.ndarray) -> pa.StringArray:
    """View an (n, w) uint8 block as an Arrow string array without copying."""
    n, w = block.shape
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(block).reshape(-1)))


def _write_lines(out: BinaryIO, lines: pa.Array) -> None:
    """Write the bytes of an Arrow string array whose values end with newlines."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    out.write(memoryview(lines.buffers()[2])[start:end])


def header(open_time: float) -> bytes:
    """The standard Zeek conn.log header with the 21 standard fields."""
    stamp = dt.datetime.fromtimestamp(open_time, dt.UTC).strftime(ZEEK_TIME_FORMAT)
    lines = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tconn",
        f"#open\t{stamp}",
        "#fields\t" + "\t".join(CONN_FIELDS),
        "#types\t" + "\t".join(CONN_TYPES),
    ]
    return ("\n".join(lines) + "\n").encode()


def write_conn_log(
    out: BinaryIO,
    replay: ReplayRows,
    rows: int,
    start_ts: float,
    seed: int = 0,
    chunk_rows: int = 1 << 18,
) -> float:
    """Write `rows` replayed rows with header and ``#close``; return the last ts."""
    out.write(header(start_ts))
    n_src = len(replay)
    ts_us = round(start_ts * 1e6)
    for first in range(0, rows, chunk_rows):
        n = min(chunk_rows, rows - first)
        row_ids = np.arange(first, first + n, dtype=np.int64)
        src = row_ids % n_src
        ts = ts_us + np.cumsum(replay.gaps_us[src])
        ts_us = int(ts[-1])
        if ts_us >= 10**16:
            raise SystemExit("ts ran past 9999999999.999999; use a smaller --start")
        prefix = _fixed_width_strings(make_prefix(ts, row_ids, seed))
        tails = replay.tails.take(pa.array(src))
        _write_lines(out, pc.binary_join_element_wise(prefix, tails, ""))
    close = dt.datetime.fromtimestamp(ts_us / 1e6, dt.UTC)
    out.write(f"#close\t{close.strftime(ZEEK_TIME_FORMAT)}\n".encode())
    return ts_us / 1e6


def source_paths(patterns: Iterable[str]) -> list[str]:
    """Expand the source globs, sorted within each pattern."""
    paths: list[str] = []
    for pattern in patterns:
        paths.extend(sorted(glob.glob(pattern)) or ([pattern] if os.path.exists(pattern) else []))
    return paths


def make_conn(
    path: str,
    rows: int = 2_000_000,
    sources: Iterable[str] = DEFAULT_SOURCES,
    compress: bool = False,
    start_ts: float = 1_700_000_000.0,
    max_gap_s: float = 1.0,
    seed: int = 0,
) -> ReplayRows:
    """Write a replayed conn.log of `rows` rows to `path` (gzip if `compress`)."""
    replay = read_replay_rows(source_paths(sources), max_gap_s)
    tmp = path + ".part"
    with open(tmp, "wb") as raw:
        if compress:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
                write_conn_log(gz, replay, rows, start_ts, seed)
        else:
            write_conn_log(raw, replay, rows, start_ts, seed)
    os.replace(tmp, path)
    return replay


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="data rows (2,000,000)")
    parser.add_argument("-o", "--output", default=None, help="output path (conn-<rows>.log)")
    parser.add_argument("--gzip", action="store_true", help="gzip the output (level 1)")
    parser.add_argument(
        "--source",
        action="append",
        help=f"Zeek TSV conn logs or globs to replay (default {DEFAULT_SOURCES[0]})",
    )
    parser.add_argument("--start", type=float, default=1_700_000_000.0, help="first ts")
    parser.add_argument(
        "--max-gap",
        type=float,
        default=1.0,
        help="clip replayed ts gaps to this many seconds",
    )
    parser.add_argument("--seed", type=int, default=0, help="salt for the uids")
    args = parser.parse_args(argv)

    path = args.output or f"conn-{args.rows}.log"
    if args.gzip and not path.endswith(".gz"):
        path += ".gz"
    t0 = time.perf_counter()
    replay = make_conn(
        path,
        rows=args.rows,
        sources=args.source or DEFAULT_SOURCES,
        compress=args.gzip,
        start_ts=args.start,
        max_gap_s=args.max_gap,
        seed=args.seed,
    )
    seconds = time.perf_counter() - t0
    print(
        f"wrote {path}: {args.rows:,} replayed real rows "
        f"(from {len(replay):,} rows of {len(replay.files)} files), "
        f"{os.path.getsize(path) / 2**20:.1f} MiB in {seconds:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
