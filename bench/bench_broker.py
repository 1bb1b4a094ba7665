#!/usr/bin/env python3
"""End-to-end capacity of ``zeek-ml broker``: events/s from a real Broker peer to verdicts back.

A Broker endpoint in this process (standing in for Zeek) peers with ``zeek-ml broker``
(the CLI, a subprocess, listening on 127.0.0.1), publishes ``--events`` ``ZeekML::conn_finished``
events as fast as the service takes them, and waits until every uid has come back in a
``ZeekML::scored`` acknowledgment. Capacity = events / (last ack - first publish). The
service's CPU seconds over the same window come from ``/proc/PID/stat``.

The sender keeps at most ``--window`` events unacknowledged (default 2,000). Broker cannot take
an unbounded burst: a sender whose per-peer send buffer overflows drops the peering
(``caf::sec::backpressure_overflow``: the default of a Python endpoint; Zeek's default is to
drop the oldest events, silently), whatever the receiver does. 5,000 events published at once
from this process overflow it about one run in three, so a larger window measures Broker's
buffer, not zeek-ml; with 1,000 to 3,000 the rate is the same and no run fails.

The events are replayed real rows: the connections of ``sample_logs/`` (a malicious
IoT capture and a CTU-Normal one), cycled, every field copied except a fresh unique
``uid`` and a strictly increasing ``ts``. They are built before the clock starts, as
raw Broker data, so the sender's own Python costs little.

``--code DIR`` (repeatable) runs the service from another checkout of the package
(``PYTHONPATH=DIR``; e.g. ``git archive HEAD zeek_ml | tar -x -C /tmp/base``), and the
runs of all code versions are interleaved (A B A B A B), so a slow spell of the machine
hits each alike. Printed per code version and threshold: min and median of the runs.

    python bench/bench_broker.py                          # this checkout, 20,000 events, 3 runs
    python bench/bench_broker.py --code /tmp/base --code . --threshold 0 --threshold model
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CLK_TCK = os.sysconf("SC_CLK_TCK")
SOURCES = (
    "sample_logs/001-zeek-scenario-malicious.labeled-conn.log.gz",
    "sample_logs/ctu-normal-40.first2000.conn.log.labeled.gz",
)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replayed_frame(n: int) -> Any:
    """``n`` replayed real conn rows: sample_logs' connections cycled, fresh uid and increasing ts."""
    import numpy as np
    import pandas as pd

    from zeek_ml.formats.records import CONN_FIELDS
    from zeek_ml.formats.schema import CONN_TYPES
    from zeek_ml.sources.files import iter_batches

    cols = [f.frame_column for f in CONN_FIELDS]
    parts = [pd.concat(list(iter_batches([os.path.join(ROOT, p)])), ignore_index=True)[cols] for p in SOURCES]
    real = pd.concat(parts, ignore_index=True)
    frame = real.iloc[np.arange(n) % len(real)].reset_index(drop=True)
    frame["uid"] = [f"CB{i:016d}" for i in range(n)]
    frame["ts"] = 1.7e9 + np.arange(n) * 1e-3
    frame.attrs["types"] = dict(CONN_TYPES)  # as the service's frames have it
    return frame


def build_events(broker: Any, n: int) -> tuple[list[Any], Any]:
    """Raw ``broker.Data`` of ``n`` conn events (as the Zeek package publishes them), and their frame."""
    from zeek_ml.formats.records import CONN_EVENT
    from zeek_ml.sinks.broker import conn_records

    frame = replayed_frame(n)
    records = conn_records(broker, frame)
    data = [broker.Data(broker.zeek.Event(CONN_EVENT, r)) for r in records]
    return data, frame


def scoring_floor(frame: Any, threshold: str, batch_size: int) -> dict[str, float]:
    """What scoring alone allows, in this process, no Broker: the same rows in batches of ``batch_size``,
    scored, and the verdict rows of the flagged ones built (explanations included), as the service does."""
    from zeek_ml.cli import _load
    from zeek_ml.model.scorer import Scorer
    from zeek_ml.sinks.verdict_file import verdict_rows

    scorer = Scorer(_load(None), None if threshold == "model" else float(threshold))
    cpu0, t0 = time.process_time(), time.perf_counter()
    for start in range(0, len(frame), batch_size):
        verdicts = scorer(frame.iloc[start : start + batch_size].reset_index(drop=True))
        if verdicts.flagged.any():
            verdict_rows(verdicts.take(verdicts.flagged)).to_dict("records")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"events_per_s": len(frame) / seconds, "seconds": seconds, "cpu_s": cpu, "verdicts": -1}


class Peer:
    """The Zeek stand-in: one endpoint, subscribed to verdicts and acks (raw polling, little Python)."""

    def __init__(self, broker: Any):
        from zeek_ml.formats.records import ACK_TOPIC, VERDICT_TOPIC

        self.b = broker
        self.endpoint = broker.Endpoint()
        self.status = self.endpoint.make_status_subscriber(True)
        self.verdict_sub = self.endpoint.make_subscriber(VERDICT_TOPIC, 1_000_000)
        self.ack_sub = self.endpoint.make_subscriber(ACK_TOPIC, 1_000_000)
        self.acked = 0
        self.verdicts = 0

    def peer(self, port: int, timeout: float = 60) -> None:
        self.endpoint.peer_nosync("127.0.0.1", port, 1.0)
        deadline = time.monotonic() + timeout
        while not any(p.status == self.b.PeerStatus.Peered for p in self.endpoint.peers()):
            if time.monotonic() > deadline:
                raise SystemExit("no peering with zeek-ml broker")
            time.sleep(0.02)
        time.sleep(0.5)  # let the subscriptions propagate both ways

    def drain(self) -> bool:
        got = False
        for _topic, data in self.ack_sub._subscriber.poll():
            event = self.b._broker.zeek.Event(data)
            self.acked += sum(len(a.as_vector()) for a in event.args())
            got = True
        for _ in self.verdict_sub._subscriber.poll():
            self.verdicts += 1
            got = True
        return got

    def close(self) -> None:
        self.endpoint.shutdown()


def one_run(broker: Any, code: str, threshold: str, data: list[Any], extra: list[str], window: int) -> dict[str, float]:
    """Start the service from ``code``, send every event, wait for every ack; the figures of this run."""
    from zeek_ml.formats.records import CONN_TOPIC

    port = free_port()
    code = os.path.abspath(code)
    env = dict(os.environ, PYTHONPATH=code + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["ZEEK_ML_MODEL"] = os.environ.get("ZEEK_ML_MODEL", os.path.join(ROOT, "models", "conn-cnn-v2.onnx"))
    args = [sys.executable, "-m", "zeek_ml", "broker", "--listen", f"127.0.0.1:{port}", "--status-interval", "3600"]
    if threshold != "model":
        args += ["--threshold", threshold]
    with tempfile.TemporaryFile() as err:
        # cwd=code: ``python -m`` puts the working directory first on sys.path
        proc = subprocess.Popen(args + extra, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 120
            while not re.search(rb': started|"started"', err.seek(0) or err.read()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    raise SystemExit(f"zeek-ml broker did not start:\n{err.read().decode(errors='replace')}")
                time.sleep(0.02)
            peer = Peer(broker)
            peer.peer(port)
            topic = broker.Topic(CONN_TOPIC)
            publish = broker._broker.Endpoint.publish
            cpu0, t0 = proc_cpu_seconds(proc.pid), time.perf_counter()
            sent, progress = 0, time.monotonic()
            while peer.acked < len(data):
                while sent < len(data) and sent - peer.acked < window:
                    publish(peer.endpoint, topic, data[sent])
                    sent += 1
                    if sent % 500 == 0:
                        peer.drain()
                if peer.drain():
                    progress = time.monotonic()
                    continue
                if proc.poll() is not None or time.monotonic() - progress > 30:
                    err.seek(0)
                    said = "\n".join(str(x) for x in peer.status.poll())
                    said += f"\npeers: {[(str(p.status), str(p.peer.network)) for p in peer.endpoint.peers()]}"
                    said += f"\nsent {sent} at {t0:.3f}, stalled at {time.perf_counter():.3f}"
                    log = err.read().decode(errors="replace")
                    raise SystemExit(f"stalled at {peer.acked} acks:\n{log}\nBroker here:\n{said}")
                time.sleep(0.001)
            t1, cpu1 = time.perf_counter(), proc_cpu_seconds(proc.pid)
            quiet = time.monotonic()
            while time.monotonic() - quiet < 0.5:  # the verdicts' subscriber may trail the acks' (Broker 2.x)
                if peer.drain():
                    quiet = time.monotonic()
                time.sleep(0.01)
            proc.terminate()
            proc.wait(timeout=60)
            err.seek(0)
            text = err.read().decode(errors="replace")
            stopped = [ln for ln in text.splitlines() if ": stopped" in ln]
            counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", stopped[-1])} if stopped else {}
            peer.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    seconds = t1 - t0
    return {
        "events_per_s": len(data) / seconds,
        "seconds": seconds,
        "cpu_s": cpu1 - cpu0,
        "verdicts": peer.verdicts,
        "dropped": counts.get("dropped", -1),
        "batches": counts.get("batches", -1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="events per run (default: 20000)")
    p.add_argument("--runs", type=int, default=3, help="runs per code version and threshold (default: 3)")
    p.add_argument("--code", action="append", help="directory holding the zeek_ml package to run (default: .)")
    p.add_argument(
        "--threshold",
        action="append",
        help="service --threshold: a number, or 'model' for the card's (default: model); repeatable",
    )
    p.add_argument("--batch-size", type=int, default=1000, help="service --batch-size (default: 1000)")
    p.add_argument("--window", type=int, default=2000, help="most events unacknowledged at once (default: 2000)")
    p.add_argument("--service-arg", action="append", default=[], help="extra zeek-ml broker argument (repeatable)")
    args = p.parse_args(argv)
    codes = [os.path.abspath(c) for c in (args.code or [ROOT])]
    thresholds = args.threshold or ["model"]

    from zeek_ml.services.broker.bindings import broker_version, import_broker

    broker = import_broker()
    print(f"Broker {broker_version(broker)} ({os.path.dirname(broker.__file__)}), {os.cpu_count()} CPUs", flush=True)
    t = time.perf_counter()
    data, frame = build_events(broker, args.events)
    print(f"{len(data)} events built in {time.perf_counter() - t:.1f} s (replayed real rows of sample_logs/)")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in range(args.runs):
        for threshold in thresholds:
            floor = scoring_floor(frame, threshold, args.batch_size)
            results.setdefault(("scoring alone", threshold), []).append(floor)
            print(f"run {run + 1} scoring alone threshold={threshold}: {floor['events_per_s']:,.0f} events/s")
            for code in codes:
                extra = ["--batch-size", str(args.batch_size), *args.service_arg]
                r = one_run(broker, code, threshold, data, extra, args.window)
                results.setdefault((code, threshold), []).append(r)
                print(
                    f"run {run + 1} code={code} threshold={threshold}: {r['events_per_s']:,.0f} events/s, "
                    f"{r['seconds']:.2f} s, service CPU {r['cpu_s']:.2f} s, verdicts {r['verdicts']}, "
                    f"dropped {r['dropped']}, batches {r['batches']}",
                    flush=True,
                )
    print()
    print("| code | threshold | events | events/s min | events/s median | CPU-s min | CPU-s median | verdicts |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (code, threshold), rs in results.items():
        rate = [r["events_per_s"] for r in rs]
        cpu = [r["cpu_s"] for r in rs]
        print(
            f"| {code} | {threshold} | {args.events:,} | {min(rate):,.0f} | {statistics.median(rate):,.0f} | "
            f"{min(cpu):.2f} | {statistics.median(cpu):.2f} | {rs[-1]['verdicts'] if rs[-1]['verdicts'] >= 0 else ''} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
