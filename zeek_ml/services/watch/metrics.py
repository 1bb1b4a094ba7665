"""Prometheus metrics for ``zeek-ml watch`` (prometheus_client: the exposition format and
its HTTP server, histograms included, are theirs to get right, not ours)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


def parse_address(address: str) -> tuple[str, int]:
    """``127.0.0.1:9101`` or ``9101`` (then 127.0.0.1, never every interface by default)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--metrics {address!r}: expected HOST:PORT or PORT")
    return (host.strip("[]") or "127.0.0.1"), int(port)


class WatchMetrics:
    """The watcher's counters, served at http://HOST:PORT/metrics."""

    def __init__(self, address: str):
        host, port = parse_address(address)
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter("zeek_ml_records_read", "Conn records read from the logs", registry=r)
        self.scored = Counter("zeek_ml_records_scored", "Conn records scored by the model", registry=r)
        self.rejected = Counter("zeek_ml_lines_rejected", "Malformed lines set aside", registry=r)
        self.notices = Counter("zeek_ml_notices", "Notices written", registry=r)
        self.lag_seconds = Gauge(
            "zeek_ml_lag_seconds", "Wall-clock time since the end of the newest connection scored", registry=r
        )
        self.lag_bytes = Gauge("zeek_ml_lag_bytes", "Bytes written to the live log and not read yet", registry=r)
        self.batch_seconds = Histogram(
            "zeek_ml_batch_seconds",
            "Time to parse, score, write and checkpoint one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.healthy = Gauge(
            "zeek_ml_watch_healthy",
            "1 while the watcher reads and writes; 0 while an output or the checkpoint cannot be written",
            registry=r,
        )
        self.disk_full = Gauge(
            "zeek_ml_watch_disk_full",
            "1 while an output or the checkpoint cannot be written for lack of space (reading paused)",
            registry=r,
        )
        self.disk_full_episodes = Counter(
            "zeek_ml_watch_disk_full_episodes", "Times the disk filled up under the outputs or checkpoint", registry=r
        )
        self.unwritten_bytes = Gauge(
            "zeek_ml_watch_unwritten_bytes", "Output bytes scored and waiting for space to be written", registry=r
        )
        self.checkpoint_time = Gauge(
            "zeek_ml_watch_checkpoint_timestamp_seconds", "When the last checkpoint was written (Unix time)", registry=r
        )
        self.output_switches = Counter(
            "zeek_ml_watch_output_switches",
            "Outputs found moved or deleted under the watcher (a fresh file started)",
            registry=r,
        )
        self._last = {"records": 0, "scored": 0, "rejected": 0, "notices": 0}
        self.server, self.thread = start_http_server(port, addr=host, registry=r)
        self.address = f"{host}:{self.server.server_port}"

    def set_health(self, *, disk_full: bool, unwritten_bytes: int) -> None:
        """Whether the disk is full (then not healthy) and how much output waits to be written."""
        self.disk_full.set(1 if disk_full else 0)
        self.healthy.set(0 if disk_full else 1)
        self.unwritten_bytes.set(unwritten_bytes)

    def update(
        self,
        *,
        records: int,
        scored: int,
        rejected: int,
        notices: int,
        lag_seconds: float | None,
        lag_bytes: int,
        batch_seconds: float,
    ) -> None:
        for name, total in (("records", records), ("scored", scored), ("rejected", rejected), ("notices", notices)):
            delta = total - self._last[name]
            if delta > 0:
                getattr(self, name).inc(delta)
            self._last[name] = total
        if lag_seconds is not None:
            self.lag_seconds.set(lag_seconds)
        self.lag_bytes.set(lag_bytes)
        self.batch_seconds.observe(batch_seconds)
