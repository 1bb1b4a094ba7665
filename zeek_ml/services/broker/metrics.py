"""Prometheus metrics for ``zeek-ml broker`` (prometheus_client serves them; the values are read from
the service at each scrape, so they never disagree with its status line).

Where a backlog can sit, and what shows it:

- in our queue (scored too slowly): ``zeek_ml_broker_queue_length`` (against ``..._queue_capacity``),
  ``zeek_ml_broker_queue_wait_seconds`` (how long the oldest queued connection has waited), then
  ``zeek_ml_broker_dropped_total`` once it is full;
- in Broker's subscriber buffer inside this process (received too slowly):
  ``zeek_ml_broker_subscriber_backlog``;
- in the sender's Broker buffers (Zeek's ``Broker::peer_buffer_size``; what overflows is dropped
  there by ``Broker::peer_overflow_policy``, never seen here): connections arrive late, so
  ``zeek_ml_broker_receive_delay_seconds`` (wall clock at arrival minus the connection's end) grows;
- in the outbox (no peer to take verdicts): ``zeek_ml_broker_outbox_length``,
  ``zeek_ml_broker_outbox_dropped_total``.

``zeek_ml_broker_lag_seconds`` is the end-to-end lag: now minus the end of the newest connection scored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from zeek_ml.services.broker.transport import parse_address

COUNTERS = {
    "received": "Valid conn events received and queued",
    "dropped": "Conn events dropped because the queue was full (overload)",
    "other_events": "Well-formed events of another name received on the conn topic",
    "capped": "String values cut to the reader's cap (the connection is kept)",
    "scored": "Connections scored",
    "verdicts": "Verdict events queued for publishing",
    "published": "Events (verdicts and acknowledgments) handed to Broker",
    "outbox_dropped": "Events dropped because the outbox was full (no peer for too long)",
    "batches": "Batches scored",
    "replayed": "Resent connections answered from the state file",
    "peer_overflows": "Peerings Broker dropped because a send buffer overflowed (backpressure_overflow)",
}


class Snapshots(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


class BrokerCollector(Collector):
    """Reads :meth:`~zeek_ml.services.broker.service.BrokerService.snapshot` at each scrape."""

    def __init__(self, service: Snapshots):
        self.service = service

    def collect(self) -> Iterator[Any]:
        s = self.service.snapshot()
        counts = s["counts"]
        for name, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"zeek_ml_broker_{name}", help_text)
            family.add_metric([], counts.get(name, 0))
            yield family
        malformed = CounterMetricFamily(
            "zeek_ml_broker_malformed",
            "Malformed events dropped before the model, by kind (field.problem)",
            labels=["kind"],
        )
        for kind, n in sorted(s["malformed_kinds"].items()):
            malformed.add_metric([kind], n)
        yield malformed
        gauges = {
            "queue_length": ("Connections waiting to be scored", s["queued"]),
            "queue_capacity": ("Most connections the queue holds (--queue-size)", s["queue_size"]),
            "outbox_length": ("Events waiting for a peer", s["outbox"]),
            "outbox_capacity": ("Most events the outbox holds (--outbox-size)", s["outbox_size"]),
            "subscriber_backlog": ("Messages in Broker's subscriber buffer, not received yet", s["backlog"]),
            "peers": ("Broker peers connected", s["peers"]),
            "queue_wait_seconds": ("How long the oldest queued connection has waited", s["queue_wait_seconds"]),
            "lag_seconds": ("Wall clock minus the end of the newest connection scored", s["lag_seconds"]),
            "receive_delay_seconds": (
                "At the last arrival: wall clock minus the end of the newest connection received",
                s["receive_delay_seconds"],
            ),
        }
        for name, (help_text, value) in gauges.items():
            if value is None:
                continue
            gauge = GaugeMetricFamily(f"zeek_ml_broker_{name}", help_text)
            gauge.add_metric([], float(value))
            yield gauge


class BrokerMetrics:
    """The service's metrics, served at ``http://HOST:PORT/metrics`` (HOST defaults to 127.0.0.1)."""

    def __init__(self, service: Snapshots, address: str):
        host, port = parse_address(address)
        self.registry = CollectorRegistry()
        self.registry.register(BrokerCollector(service))
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        bound = self.server.server_port
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
