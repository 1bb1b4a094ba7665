"""Warm the watcher's code paths before the first real batch.

The first batch a fresh process scores runs every path cold (onnxruntime's first runs at a new
size, pandas and Arrow kernels, lazily imported modules): about three times a steady batch's
time. Under load the lines that arrive meanwhile wait, and at 50k conn/s the queue that builds
takes half a second to drain. :func:`warm_up` sends made-up conn lines through a parser, scorer
and sinks of its own (nothing is kept, nothing is written, the watcher's host context and
incidents are not touched) before the watcher says it has started.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from zeek_ml.formats.schema import CONN_FIELDS
from zeek_ml.formats.writer import ZeekLogWriter
from zeek_ml.model.scorer import Scorer
from zeek_ml.sinks.logs import EnrichedSink, build_notice_sink, enriched_fields, file_writer
from zeek_ml.sources.files import make_parser
from zeek_ml.sources.reading import ReadContext, ReadStats, RejectLog

WARM_ROWS = 1000
"""Rows of made-up traffic (a real Zeek hands its writer 1,000 records at a time)."""


def warm_lines(rows: int = WARM_ROWS, seed: int = 7) -> bytes:
    """A Zeek TSV conn.log (header and ``rows`` lines) of made-up, varied connections: TCP, UDP and
    ICMP, answered and not, to local, remote and multicast addresses, with and without a service."""
    rng = np.random.default_rng(seed)
    states = np.array(["S0", "SF", "REJ", "RSTO", "OTH", "SH", "RSTR", "S1"])
    history = np.array(["S", "ShADadFf", "Sr", "ShADadR", "D", "Dd", "ShADdaFf", "^hADadfF"])
    ports = np.array([22, 23, 53, 80, 123, 443, 445, 3389, 5353, 8080])
    services = np.array(["ssh", "-", "dns", "http", "-", "ssl", "-", "-", "dns", "http"])
    lines = []
    for i in range(rows):
        k = int(rng.integers(len(ports)))
        proto = "udp" if ports[k] in (53, 123, 5353) else ("icmp" if i % 97 == 0 else "tcp")
        resp = ("224.0.0.251" if ports[k] == 5353 else f"192.168.{i % 7}.{1 + i % 200}") if i % 3 else "203.0.113.9"
        dur = "-" if i % 5 == 0 else f"{rng.exponential(2.0):.6f}"
        ob, rb = (int(x) for x in rng.integers(0, 5000, 2))
        local = "T" if i % 4 else "F"
        lines.append(
            f"{1.7e9 + i * 0.004:.6f}\tCwarmup{i:011d}\t10.1.{i % 13}.{1 + i % 250}\t{int(rng.integers(1024, 65535))}"
            f"\t{resp}\t{ports[k]}\t{proto}\t{services[k]}\t{dur}\t{ob}\t{rb}\t{states[i % len(states)]}"
            f"\t{local}\tF\t0\t{history[i % len(history)]}\t{1 + ob // 500}\t{ob + 40}\t{rb // 500}\t{rb + 40}\t(empty)"
        )
    header = ZeekLogWriter(io.BytesIO(), "conn", CONN_FIELDS, header=False).header_bytes(1.7e9)
    return header + ("\n".join(lines) + "\n").encode()


def warm_up(model: Any, fmt: str, json_ts: str, notice_options: dict[str, Any], batch_bytes: int) -> float:
    """Score :func:`warm_lines` through throwaway copies of the watcher's stages; the seconds it took."""
    started = time.perf_counter()
    text = warm_lines()
    ctx = ReadContext(RejectLog(None), ReadStats(), batch_bytes, True, None)
    parser = make_parser("(warm-up)", text[:4096], ctx)
    scorer = Scorer(model)  # a few dozen of these rows are flagged: the notice paths run too
    out_fmt = "json" if fmt == "eve" else fmt
    sinks = [EnrichedSink(file_writer(io.BytesIO(), out_fmt, json_ts), keep_extra=False)]
    if fmt != "eve":
        sinks.append(build_notice_sink(file_writer(io.BytesIO(), fmt, json_ts), **notice_options))
    sinks[0].writer = sinks[0].factory("conn", enriched_fields(None))
    for frame in parser.feed(text, 1, True):
        verdicts = scorer(frame)
        for sink in sinks:
            sink.write(verdicts)
    return time.perf_counter() - started
